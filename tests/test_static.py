"""The static tier: model2vec's distillation of the tiny body, its own head fit on the training
examples, the same embeddings as model2vec's StaticModel, and a process that predicts with it
without importing torch, onnxruntime or openvino."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from samples import CALIBRATION, fit_tiny_head, run, tiny_data

from fastclf.accelerate.parity import accuracy_decision
from fastclf.backends import export_variant, is_exported, load_body
from fastclf.errors import DataError
from fastclf.model import BODY_DIR, Classifier
from fastclf.training.selection import choose_c

DATA = tiny_data()


@pytest.fixture(scope="module")
def static_model(tiny_model, tmp_path_factory):
    model = shutil.copytree(tiny_model, tmp_path_factory.mktemp("static") / "model")
    export_variant(model / BODY_DIR, "static", CALIBRATION, fit_head=fit_tiny_head)
    cfg = json.loads((model / "fastclf.json").read_text())
    cfg["variants"]["static"] = {}  # as accelerate records it
    (model / "fastclf.json").write_text(json.dumps(cfg))
    return model


def test_static_body_matches_model2vec_and_has_its_own_head(static_model):
    from model2vec import StaticModel

    body_dir = static_model / BODY_DIR
    assert is_exported(body_dir, "static") and (body_dir / "static" / "head.safetensors").is_file()
    texts = [*DATA.texts, "naïve café 日本語 😀", "word " * 700, ""]
    ours = load_body(body_dir, "static").encode(texts)
    model = StaticModel.from_pretrained(str(body_dir / "static"))  # one text a call: 0.9 averages in a batch's padding
    theirs = np.vstack([model.encode([t]) for t in texts])
    np.testing.assert_allclose(ours, theirs, atol=2e-3)  # model2vec computes in float16
    clf = Classifier.load(static_model, "static")
    assert clf.head.dim == ours.shape[1] and clf.predict(DATA.texts) == DATA.labels  # the training examples


def test_a_new_model_needs_its_training_examples(tiny_model, tmp_path):
    body = shutil.copytree(tiny_model / BODY_DIR, tmp_path / "body")
    with pytest.raises(DataError, match="training"):
        export_variant(body, "static", CALIBRATION)
    assert not (body / "static").exists()


_NUMPY_ONLY = """
import json, sys
from fastclf.model import Classifier
clf = Classifier.load(sys.argv[1], "static")
labels = clf.predict(json.loads(sys.argv[2]))
heavy = sorted(m for m in ("torch", "onnxruntime", "openvino", "transformers", "model2vec") if m in sys.modules)
print(json.dumps({"labels": labels, "heavy": heavy}))
"""


def test_static_predicts_with_numpy_alone(static_model):
    out = subprocess.run([sys.executable, "-c", _NUMPY_ONLY, str(static_model), json.dumps(DATA.texts)],
                         capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"labels": Classifier.load(static_model, "static").predict(DATA.texts), "heavy": []}


def test_info_shows_a_new_models_accuracy_not_its_changed_labels(static_model, tmp_path):
    model = shutil.copytree(static_model, tmp_path / "model")
    g = accuracy_decision([True] * 5 + [False], [True] * 4 + [False, True], tolerance=0.01)
    cfg = json.loads((model / "fastclf.json").read_text())
    cfg["variants"]["static"] = {"n": g.n, "flips": g.flips, "gate": {  # as accelerate records a new model
        "passed": g.passed, "n": g.n, "flips": g.flips, "disagreement": g.disagreement, "interval": [g.lower, g.upper],
        "confidence": g.confidence, "max_disagreement": g.tolerance, "rule": g.rule, "accuracy": list(g.accuracy)}}
    (model / "fastclf.json").write_text(json.dumps(cfg))
    code, out = run("info", static_model)  # recorded without figures (as the fixture writes it)
    assert code == 0 and "static" in out and "no parity figures recorded" in out
    code, out = run("info", model)
    line = next(x for x in out.splitlines() if x.strip().startswith("static"))
    assert code == 0 and "accuracy 83.3% against 83.3% on 6 labeled texts (loss 0.0%" in line
    assert f"bound {g.upper:.1%}, tolerance 1.0%" in line and "reference" not in line and "differ" not in line
    cfg["variants"]["static"]["gate"].update(n=0, accuracy=[None, None])  # kept (--keep) without labeled texts
    cfg["variants"]["static"]["kept_below_tolerance"] = True
    (model / "fastclf.json").write_text(json.dumps(cfg))
    code, out = run("info", model)
    assert code == 0 and "accuracy not measured (no labeled check texts) [kept below tolerance]" in out
    cfg["variants"]["static"]["gate"]["accuracy"] = 5  # edited by hand: still one readable line
    (model / "fastclf.json").write_text(json.dumps(cfg))
    assert run("info", model) == (0, out)


def test_a_new_models_head_gets_its_c_by_cross_validation():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [12, 8, 4])  # three classes, imbalanced
    x = rng.normal(size=(3, 16))[y] + 0.5 * rng.normal(size=(len(y), 16))
    # shrunk embeddings (as a static body's may be) separate the classes only under weak regularisation
    assert choose_c(0.03 * x, y, multi_label=False, seed=0, n_classes=3) == 100.0
    assert choose_c(x, y, multi_label=False, seed=0, n_classes=3) == 1.0  # every C is right: the one nearest 1
    assert choose_c(x, np.r_[np.zeros(23, int), 1], multi_label=False, seed=0) == 1.0  # one example: no 2 folds
