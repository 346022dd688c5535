"""fastclf accelerate: exports land in the model directory only after they pass the parity
check against torch-fp32, load back by name, and predict without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import samples
from samples import run, tiny_data, train_tiny

from fastclf import Classifier
from fastclf.accelerate.parity import split_texts
from fastclf.backends import get_spec, runtime_module
from fastclf.errors import MissingDependency, ModelFormatError

SPORT = samples.SPORT + samples.SPORT_EXTRA
FOOD = samples.FOOD + samples.FOOD_EXTRA


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_body_dir) -> Path:
    clf = train_tiny(tiny_body_dir, tiny_data(SPORT, FOOD))
    return clf.save(tmp_path_factory.mktemp("acc") / "model")


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cal") / "calib.csv"
    pd.DataFrame({"text": SPORT + FOOD}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def accelerated(trained, calib, tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("acc2") / "model"
    shutil.copytree(trained, model)
    code, out = run("accelerate", model, "--variant", "onnx-fp32", "--variant", "onnx-int8", "--calibration", calib,
                    "--max-accuracy-loss", "40")
    assert code == 0, out
    assert "checking 2 variants within 40 accuracy points of torch-fp32 at 95% confidence" in out
    return model


def test_too_few_check_texts_say_so_and_discard(trained, calib, tmp_path):
    model = shutil.copytree(trained, tmp_path / "m")
    code, out = run("accelerate", model, "--variant", "onnx-fp32", "--calibration", calib)
    # 16 check texts cannot show 1 point: the output says so and how to make the check finer
    assert code == 1 and "with 16 texts no export can pass" in out and "--check FILE" in out
    assert "(--max-accuracy-loss 1): export discarded" in out


def test_split_texts_do_not_overlap():
    texts = [f"text {i}" for i in range(50)] + ["text 1", "  "]
    cal, check = split_texts(texts, num_calibration=10)
    # every distinct text calibration does not use is a check text
    assert len(cal) == 10 and len(check) == 40 and not set(cal) & set(check)


def test_exports_are_recorded_and_load_by_name(accelerated):
    cfg = json.loads((accelerated / "fastclf.json").read_text())
    for name in ("onnx-fp32", "onnx-int8"):
        entry = cfg["variants"][name]
        # onnx-int8 chooses what stays fp32 on calibration texts: with nothing else to check on,
        # half of the 16 distinct texts calibrate and the other half are the check texts
        assert entry["agreement"] >= 0.98 and entry["n"] == 8 and entry["mean_cosine"] > 0.9
        assert entry["gate"]["passed"] and entry["gate"]["n"] == 8 and len(entry["gate"]["interval"]) == 2
        for f in entry["files"]:
            assert (accelerated / "body" / f).is_file()
    assert not [p for p in accelerated.iterdir() if p.name.startswith(".staging")]
    ref = Classifier.load(accelerated)
    fast = Classifier.load(accelerated, variant="onnx-fp32")
    assert type(fast) is type(ref) and fast.variant == "onnx-fp32"
    np.testing.assert_allclose(fast.predict_proba(SPORT), ref.predict_proba(SPORT), atol=1e-4)
    assert fast.predict(SPORT) == ref.predict(SPORT)
    code, out = run("info", accelerated)
    assert "onnx-int8" in out and "agreement" in out
    code, out = run("variants", accelerated)
    assert "[exported] onnx-int8" in out
    code, out = run("predict", accelerated, "a goal", "--variant", "onnx-int8")
    assert code == 0 and out.split("\t")[0] in ("sport", "food")


def test_below_tolerance_is_discarded(trained, calib, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(trained, model)
    before = (model / "fastclf.json").read_text()
    code, out = run("accelerate", model, "--variant", "onnx-int8", "--calibration", calib, "--max-accuracy-loss", "0")
    assert code == 1 and "above the 0.0% allowed" in out and "FAILED" in out
    assert (model / "fastclf.json").read_text() == before
    assert not (model / "body" / "onnx").exists()
    assert not [p for p in model.iterdir() if p.name.startswith(".staging")]
    code, out = run("accelerate", model, "--variant", "onnx-int8", "--calibration", calib, "--max-accuracy-loss", "0",
                    "--keep")
    assert code == 0 and "WARNING" in out
    assert json.loads((model / "fastclf.json").read_text())["variants"]["onnx-int8"]["kept_below_tolerance"]


def test_bad_requests(trained, calib, monkeypatch):
    code, out = run("accelerate", trained, "--variant", "onnx-int9", "--calibration", calib)
    assert code == 1 and "unknown variant 'onnx-int9'" in out and "onnx-int8" in out
    code, out = run("accelerate", trained, "--calibration", calib)
    assert code == 1 and "--variant NAME" in out
    import importlib

    real = importlib.import_module

    def no_openvino(name, *a, **k):
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_openvino)
    with pytest.raises(MissingDependency, match=r"pip install 'fastclf\[openvino\]'"):
        runtime_module(get_spec("openvino-fp32"))


def test_corrupted_export_is_one_clear_error(accelerated, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(accelerated, model)
    onnx = model / "body" / "onnx" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])
    with pytest.raises(ModelFormatError):
        Classifier.load(model, variant="onnx-fp32")
    code, out = run("predict", model, "x", "--variant", "onnx-fp32")
    assert code == 1 and out.startswith("error:") and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("variant", ["onnx-int8", "onnx-fp32"])
def test_onnx_prediction_does_not_import_torch(accelerated, variant):
    code = (
        "import sys\n"
        "from fastclf import Classifier\n"
        f"clf = Classifier.load({str(accelerated)!r}, variant={variant!r})\n"
        "print(clf.predict(['a late goal', 'lemon cake']))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'sentence_transformers' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("[")
