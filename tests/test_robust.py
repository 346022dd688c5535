"""A model folder is data, never code; every bad input ends in one error line; no torn model.

Each test here failed on the code before this suite was written (see the commit message).
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import json
import lzma
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from samples import FOOD, SPORT, run, tiny_data, train_tiny

import fastclf
from fastclf import Classifier, DataError, ModelFormatError, VariantNotExported
from fastclf.data import read_labeled, read_texts

ROOT = Path(fastclf.__file__).resolve().parent.parent  # the fastclf under test, for subprocesses


@pytest.fixture(scope="module")
def saved(tiny_model) -> Path:
    """The session's tiny sport/food model; tests copy it before changing anything."""
    return tiny_model


@pytest.fixture(scope="module")
def other(tiny_body_dir, tmp_path_factory) -> Classifier:
    """A second model, with other labels, to replace the first one while it is read."""
    from fastclf.data import LabeledData

    data = LabeledData(SPORT + FOOD, ["ball"] * len(SPORT) + ["meal"] * len(FOOD), source="other")
    clf = train_tiny(tiny_body_dir, data)
    path = tmp_path_factory.mktemp("robust-other") / "model"
    clf.save(path)
    return Classifier.load(path)


@pytest.fixture
def model(saved, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(saved, dst)
    return dst


def _cfg(path: Path) -> dict:
    return json.loads((path / "fastclf.json").read_text())


def _set_cfg(path: Path, cfg: dict) -> None:
    (path / "fastclf.json").write_text(json.dumps(cfg))


def one_line_error(code: int, output: str, *words: str) -> str:
    """The CLI failed with exit 1 and one line `error: ...` (no traceback) holding ``words``."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert code == 1, output
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for w in words:
        assert w in lines[0], output
    return lines[0]


# ---------------------------------------------------------------------------------------------
# 1. loading runs no code from the model folder


def _plant_module(body: Path, marker: Path) -> str:
    name = f"evil_mod_{uuid.uuid4().hex[:8]}"
    (body / f"{name}.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("ran")
        import torch
        class Evil(torch.nn.Module):
            @classmethod
            def load(cls, *args, **kwargs):
                return cls()
    """))
    modules = json.loads((body / "modules.json").read_text())
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "", "type": f"{name}.Evil"})
    (body / "modules.json").write_text(json.dumps(modules))
    return name


def test_custom_module_type_is_refused_before_anything_runs(model, tmp_path):
    marker = tmp_path / "marker"
    name = _plant_module(model / "body", marker)
    with pytest.raises(ModelFormatError, match=rf"modules.json.*{name}\.Evil"):
        Classifier.load(model)
    assert not marker.exists()
    assert name not in sys.modules


def test_cli_refuses_custom_module_in_one_line(model, tmp_path):
    marker = tmp_path / "marker"
    _plant_module(model / "body", marker)
    one_line_error(*run("predict", model, "a late goal"), "modules.json", "not one of sentence-transformers")
    assert not marker.exists()


def test_trainer_refuses_a_local_base_model_with_custom_code(tiny_body_dir, tmp_path):
    from fastclf.training.trainer import TrainConfig, train

    body = tmp_path / "base"
    shutil.copytree(tiny_body_dir, body)
    marker = tmp_path / "marker"
    _plant_module(body, marker)
    with pytest.raises(ModelFormatError, match="modules.json"):
        train(tiny_data(), TrainConfig(model=str(body), num_epochs=1, show_progress=False))
    assert not marker.exists()


@pytest.mark.parametrize("type_name", ["sentence_transformers.util.misc.import_from_string",
                                       "sentence_transformers.models.Router", "os.system", 7])
def test_only_data_module_types_are_trusted(model, type_name):
    modules = json.loads((model / "body" / "modules.json").read_text())
    modules[1]["type"] = type_name
    (model / "body" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFormatError, match="entry 1 has module type"):
        Classifier.load(model)


def test_module_types_that_sentence_transformers_writes_are_trusted():
    from fastclf.safety import trusted_module_type

    for name in ("sentence_transformers.models.Transformer",  # 2.x-4.x names (all-MiniLM-L6-v2)
                 "sentence_transformers.base.modules.transformer.Transformer",  # what 5.7 writes
                 "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
                 "sentence_transformers.sentence_transformer.modules.normalize.Normalize"):
        assert trusted_module_type(name), name


def test_module_path_must_stay_in_the_body(model, tmp_path):
    modules = json.loads((model / "body" / "modules.json").read_text())
    for bad in ("../../outside", "/etc", "1_Pooling/../../.."):
        modules[1]["path"] = bad
        (model / "body" / "modules.json").write_text(json.dumps(modules))
        with pytest.raises(ModelFormatError, match="entry 1 path"):
            Classifier.load(model)
    outside = tmp_path / "elsewhere"
    shutil.copytree(model / "body" / "1_Pooling", outside)
    shutil.rmtree(model / "body" / "1_Pooling")
    (model / "body" / "1_Pooling").symlink_to(outside)
    modules[1]["path"] = "1_Pooling"
    (model / "body" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFormatError, match="symbolic link"):
        Classifier.load(model)


def test_auto_map_and_python_files_are_refused(model):
    config = json.loads((model / "body" / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (model / "body" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="config.json.*auto_map"):
        Classifier.load(model)
    del config["auto_map"]
    (model / "body" / "config.json").write_text(json.dumps(config))
    (model / "body" / "modeling_evil.py").write_text("raise SystemExit('ran')\n")
    with pytest.raises(ModelFormatError, match="modeling_evil.py is code"):
        Classifier.load(model)


@pytest.mark.parametrize("head_file", ["../outside.safetensors", "/tmp/head.safetensors", "link.safetensors"])
def test_head_path_must_stay_in_the_model(model, head_file):
    shutil.copy(model / "head.safetensors", model.parent / "outside.safetensors")
    (model / "link.safetensors").symlink_to(model.parent / "outside.safetensors")
    cfg = _cfg(model)
    cfg["head"]["file"] = head_file
    _set_cfg(model, cfg)
    with pytest.raises(ModelFormatError, match="head.file"):
        Classifier.load(model)
    one_line_error(*run("info", model), "head.file")


# ---------------------------------------------------------------------------------------------
# 2. no torn model


def test_a_model_replaced_while_loading_is_read_again_whole(model, other, monkeypatch):
    import fastclf.model as model_module

    real = model_module.load_body
    calls = []

    def replace_then_load(body_dir, variant, **kwargs):
        if not calls:  # `fastclf train -o MODEL` finishes between the head and the body
            other.save(model)
        calls.append(variant)
        return real(body_dir, variant)

    monkeypatch.setattr(model_module, "load_body", replace_then_load)
    clf = Classifier.load(model)
    monkeypatch.undo()
    fresh = Classifier.load(model)
    assert list(clf.classes_) == ["ball", "meal"]
    assert len(calls) == 2
    texts = ["a late goal", "fresh bread"]
    np.testing.assert_allclose(clf.predict_proba(texts), fresh.predict_proba(texts), atol=1e-6)
    np.testing.assert_allclose(clf.head.coef, fresh.head.coef)


def test_save_over_a_model_never_leaves_the_path_without_a_model(model, other, monkeypatch):
    seen = []
    real_replace, real_rmtree = os.replace, shutil.rmtree

    def watch(fn):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            seen.append((model / "fastclf.json").is_file() and (model / "body" / "modules.json").is_file())
            return out
        return wrapper

    monkeypatch.setattr(os, "replace", watch(real_replace))
    monkeypatch.setattr(shutil, "rmtree", watch(real_rmtree))
    other.save(model)
    monkeypatch.undo()
    assert seen and all(seen)
    assert _cfg(model)["labels"] == ["ball", "meal"]


def test_leftovers_of_killed_runs_are_removed_but_not_a_live_runs(model, other):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = time.time() - 3600
    parent = model.parent
    leftovers = [parent / ".model.tmp-abcd1234", parent / ".model.old-abcd1234",
                 parent / f".model.tmp-{dead.pid}-xyz", model / ".staging-onnx-int8-abcd1234"]
    live = [parent / f".model.tmp-{os.getpid()}-live", parent / f".model.staging-onnx-int8-{os.getppid()}-live"]
    for d in leftovers + live:
        d.mkdir()
        (d / "f").write_text("x")
    for d in leftovers[:2] + leftovers[3:]:
        os.utime(d, (old, old))
    other.save(model)
    assert not any(d.exists() for d in leftovers)
    assert all(d.exists() for d in live)


def test_accelerate_publishes_whole_versions_and_discards_an_export_of_a_replaced_model(model, other, monkeypatch):
    pytest.importorskip("onnxruntime")
    import fastclf.accelerate.export as acc

    stale = model.parent / ".model.old-abcd1234"
    stale.mkdir()
    os.utime(stale, (time.time() - 3600,) * 2)
    texts = SPORT + FOOD + ["a cup of tea", "a penalty shoot-out"]
    results = acc.accelerate(model, ["onnx-fp32"], calibration_texts=texts, max_accuracy_loss=100).results
    assert results[0].ok, results[0].error
    assert not stale.exists()
    assert Classifier.load(model, variant="onnx-fp32").predict(["a late goal"])[0] in ("sport", "food")
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".model.")]

    real = acc.backends.export_variant

    def export_then_replace(body_dir, variant, calibration, fit_head=None):
        real(body_dir, variant, calibration, fit_head)
        other.save(model)  # `fastclf train -o model` finishes during the export

    monkeypatch.setattr(acc.backends, "export_variant", export_then_replace)
    results = acc.accelerate(model, ["onnx-o1"], calibration_texts=texts, max_accuracy_loss=100).results
    assert not results[0].ok and "replaced" in results[0].error
    cfg = _cfg(model)
    assert cfg["labels"] == ["ball", "meal"] and "onnx-o1" not in cfg["variants"]
    assert not (model / "body" / "onnx" / "model_O1.onnx").exists()


def test_variant_files_that_fastclf_json_does_not_record_are_not_loaded(model):
    (model / "body" / "onnx").mkdir()
    (model / "body" / "onnx" / "model.onnx").write_bytes(b"left by a killed accelerate")
    with pytest.raises(VariantNotExported, match="not recorded"):
        Classifier.load(model, variant="onnx-fp32")
    one_line_error(*run("predict", model, "--variant", "onnx-fp32", "a late goal"), "not recorded")


def test_a_model_without_the_new_fields_still_loads(model):
    cfg = _cfg(model)
    cfg.pop("body_id", None)
    _set_cfg(model, cfg)
    assert Classifier.load(model).predict(["a late goal"])[0] in ("sport", "food")


# ---------------------------------------------------------------------------------------------
# 3. one line, exit 1, nothing written


def _csv_bytes() -> bytes:
    return ("text,label\n" + "".join(f"{t},sport\n" for t in SPORT) + "".join(f"{t},food\n" for t in FOOD)).encode()


@pytest.mark.parametrize("name,payload", [
    ("d.csv.gz", b"\x1f\x8b\x08\x00garbage-not-deflate"),
    ("d.csv.zip", b"PK\x03\x04 not a zip at all"),
    ("d.csv.xz", b"\xfd7zXZ\x00 broken"),
    ("d.csv.bz2", b"BZh9 broken"),
    ("d.csv.zst", b"(\xb5/\xfd broken"),
    ("d.jsonl.gz", gzip.compress(b'{"text": "a", "label": "x"}\n' * 50)[:40]),  # truncated
])
def test_damaged_compressed_files_give_one_line(tmp_path, saved, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(DataError):
        read_labeled(path)
    out = tmp_path / "m"
    one_line_error(*run("train", path, "-o", out, "-q"), name)
    one_line_error(*run("predict", saved, "-i", path), name)
    assert not out.exists()


def test_compressed_files_that_are_fine_are_read(tmp_path):
    raw = _csv_bytes()
    for name, data in [("a.csv.gz", gzip.compress(raw)), ("a.csv.bz2", bz2.compress(raw)),
                       ("a.csv.xz", lzma.compress(raw))]:
        (tmp_path / name).write_bytes(data)
        assert len(read_labeled(tmp_path / name)) == 12
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.jsonl", "\n".join(json.dumps({"text": t, "label": "s"}) for t in SPORT))
    (tmp_path / "a.jsonl.zip").write_bytes(buf.getvalue())
    assert len(read_labeled(tmp_path / "a.jsonl.zip")) == 6
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(json.dumps([{"text": "x", "label": "y"}]).encode()))
    assert read_labeled(tmp_path / "b.jsonl.gz").texts == ["x"]


@pytest.mark.parametrize("content", ["[1, 2, 3]", '[{"text": "a", "label": "b"}, "loose"]', "[[1, 2]]"])
def test_json_array_of_non_objects(tmp_path, content):
    path = tmp_path / "d.json"
    path.write_text(content)
    one_line_error(*run("train", path, "-o", tmp_path / "m", "-q"), "not an object")
    assert not (tmp_path / "m").exists()


def test_empty_label_separator(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(_csv_bytes())
    with pytest.raises(DataError, match="label-separator"):
        read_labeled(path, label_separator="")
    one_line_error(*run("train", path, "-o", tmp_path / "m", "--label-separator", "", "-q"), "--label-separator")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(("setting", "words"), [
    ("no_such_field=1", ("--set", "cv_folds", "frozen_layers")),   # the valid fields are listed
    ("bf16=maybe", ("bf16", "bool")), ("cv_folds=2.5", ("cv_folds", "int")), ("cv_folds=1", ("cv_folds",)),
    ("loss", ("FIELD=VALUE",)),
])
def test_train_set_refuses_bad_fields_and_values_in_one_line(tmp_path, setting, words):
    one_line_error(*run("train", tmp_path / "x.csv", "-o", tmp_path / "m", "--set", setting), *words)
    assert not (tmp_path / "m").exists()


def test_train_set_applies_typed_values():
    from fastclf.training.trainer import TrainConfig

    config = TrainConfig().with_settings(["bf16=true", "body_learning_rate=1", "max_length=null", "loss=pairs",
                                          "frozen-layers=2"])
    assert (config.bf16, config.body_learning_rate, config.max_length, config.loss, config.frozen_layers) == \
        (True, 1.0, None, "pairs", 2)
    assert isinstance(config.body_learning_rate, float)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_batch_size_below_one_is_refused_by_the_cli(saved, tmp_path, value):
    one_line_error(*run("predict", saved, "--batch-size", value, "a late goal"), "--batch-size")
    one_line_error(*run("train", tmp_path / "x.csv", "-o", tmp_path / "m", "--set", f"batch_size={value}"), "batch_size")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("bad,error", [(0, DataError), (-1, DataError), (1.5, TypeError), (True, TypeError),
                                       ("8", TypeError)])
def test_batch_size_is_checked_by_the_library(saved, bad, error):
    clf = Classifier.load(saved)
    with pytest.raises(error, match="batch_size"):
        clf.predict(["a late goal"], batch_size=bad)
    with pytest.raises(error, match="batch_size"):
        clf.body.encode(["a late goal"], batch_size=bad) if hasattr(clf.body, "pipeline") else clf.embed(
            ["a late goal"], batch_size=bad)


def test_output_naming_a_directory(saved, tmp_path):
    inp = tmp_path / "in.csv"
    inp.write_text("text\na late goal\nfresh bread\n")
    target = tmp_path / "somedir"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    # predict writes into an existing folder, one file per input, and leaves the rest alone
    code, text = run("predict", saved, "-i", inp, "-o", target)
    assert code == 0, text
    assert sorted(p.name for p in target.iterdir()) == ["in.csv", "keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"
    (target / "in.csv").unlink()
    one_line_error(*run("train", inp, "-o", target, "-q"), "not a fastclf model")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_training_over_a_model_keeps_the_users_own_files(saved, tmp_path, tiny_body_dir):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"goal number {i},sport\nbread number {i},food\n" for i in range(4)))
    model = tmp_path / "model"
    shutil.copytree(saved, model)
    (model / "NOTES.md").write_text("mine")
    before = sorted(p.name for p in model.iterdir())
    one_line_error(*run("train", data, "-o", model, "--model", tiny_body_dir, "--finetune", "never", "-q"),
                   "also holds other files (NOTES.md)")
    assert sorted(p.name for p in model.iterdir()) == before and (model / "NOTES.md").read_text() == "mine"
    (model / "NOTES.md").unlink()
    code, text = run("train", data, "-o", model, "--model", tiny_body_dir, "--finetune", "never", "-q")
    assert code == 0, text  # a model folder with nothing else in it is replaced as before


@pytest.mark.parametrize("victim,payload", [
    ("model.safetensors", b"\x00garbage weights"),
    ("modules.json", b"{not json"),
    ("tokenizer.json", b"{\"truncated\": "),
    ("config.json", b"[]"),
])
def test_damaged_body_under_torch_fp32(model, victim, payload):
    (model / "body" / victim).write_bytes(payload)
    with pytest.raises(ModelFormatError):
        Classifier.load(model, variant="torch-fp32")
    one_line_error(*run("predict", model, "--variant", "torch-fp32", "a late goal"))


def test_head_of_unknown_kind(model):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(model / "head.safetensors"))
    save_file(tensors, str(model / "head.safetensors"), metadata={"kind": "ordinal"})
    with pytest.raises(ModelFormatError, match="ordinal"):
        Classifier.load(model)
    one_line_error(*run("predict", model, "a late goal"), "ordinal")


def test_head_kind_must_match_its_weights_and_fastclf_json(model):
    from safetensors.numpy import load_file, save_file

    cfg = _cfg(model)
    cfg["head"]["kind"] = "ordinal"
    _set_cfg(model, cfg)
    with pytest.raises(ModelFormatError, match="ordinal"):
        Classifier.load(model)
    cfg["head"]["kind"] = "binary"
    _set_cfg(model, cfg)
    tensors = load_file(str(model / "head.safetensors"))
    coef, intercept = tensors["coef"], tensors["intercept"]
    save_file({"coef": np.vstack([coef, -coef]), "intercept": np.concatenate([intercept, -intercept])},
              str(model / "head.safetensors"), metadata={"kind": "binary"})
    with pytest.raises(ModelFormatError, match="binary head has one row"):
        Classifier.load(model)
    one_line_error(*run("predict", model, "a late goal"), "binary head")


@pytest.mark.parametrize("threshold", ["high", None, 7, -0.5, [0.5], True])
def test_bad_threshold_in_fastclf_json(model, threshold):
    cfg = _cfg(model)
    cfg["threshold"] = threshold
    _set_cfg(model, cfg)
    with pytest.raises(ModelFormatError, match="threshold"):
        Classifier.load(model)
    one_line_error(*run("predict", model, "a late goal"), "threshold")


@pytest.mark.parametrize("field,value", [
    ("training", {"eval": {"data": "x"}, "settings": "pairs"}),
    ("training", {"eval": "yes"}),
    ("body", None),
    ("variants", {"onnx-fp32": "fast"}),
    ("versions", ["torch"]),
    ("created", None),
])
def test_info_shows_odd_or_missing_fields(model, field, value):
    cfg = _cfg(model)
    if value is None:
        cfg.pop(field, None)
    else:
        cfg[field] = value
    _set_cfg(model, cfg)
    code, out = run("info", model)
    assert code == 0, out
    assert "labels (2)" in out


# ---------------------------------------------------------------------------------------------
# 4. no silent coercion


def test_list_or_dict_cells_are_refused_with_their_row(tmp_path):
    rows = [{"text": t, "label": "sport"} for t in SPORT] + [{"text": t, "label": "food"} for t in FOOD]
    bad_text = [dict(r) for r in rows]
    bad_text[3]["text"] = ["a", "list"]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in bad_text))
    with pytest.raises(DataError, match="row 4"):
        read_labeled(path)
    with pytest.raises(DataError, match="row 4"):
        read_texts(path)
    bad_label = [dict(r) for r in rows]
    bad_label[2]["label"] = {"name": "sport"}
    path.write_text("\n".join(json.dumps(r) for r in bad_label))
    with pytest.raises(DataError, match="row 3"):
        read_labeled(path)
    pq = tmp_path / "d.parquet"
    pd.DataFrame({"text": [[t] for t in FOOD], "label": ["x"] * 6}).to_parquet(pq)  # list<string> texts
    with pytest.raises(DataError, match="holds a list or object instead of a text at rows 1, 2"):
        read_labeled(pq)
    pd.DataFrame({"text": FOOD, "label": [{"name": "x"}] * 6}).to_parquet(pq)  # struct labels
    with pytest.raises(DataError, match="holds an object .* at rows 1, 2"):
        read_labeled(pq)
    # a list of labels stays valid: multi-label data
    good = [dict(r) for r in rows]
    good[0]["label"] = ["sport", "food"]
    path.write_text("\n".join(json.dumps(r) for r in good))
    data = read_labeled(path)
    assert data.multi_label and data.labels[0] == ["food", "sport"]


def test_tab_separated_file_named_csv_reads_as_tab_separated(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text\tlabel\n" + "".join(f"{t}\tsport\n" for t in SPORT))
    data = read_labeled(path)
    assert data.texts == SPORT and data.labels == ["sport"] * len(SPORT)


# ---------------------------------------------------------------------------------------------
# 6. files readable as the umask says


def test_saved_files_follow_the_umask(saved, tmp_path):
    old = os.umask(0o022)
    try:
        clf = Classifier.load(saved)
        out = clf.save(tmp_path / "m")
    finally:
        os.umask(old)
    for p in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))


# ---------------------------------------------------------------------------------------------
# 7. one rule for texts, everywhere


@pytest.mark.parametrize("texts,error,words", [
    ("", DataError, "empty"),
    (["a late goal", "   "], DataError, "text 1"),
    ({"a", "b"}, TypeError, "set"),
    (b"a late goal", TypeError, "bytes: decode them first"),
    (["ok", b"a late goal"], TypeError, "bytes: decode them first"),
    (["ok", "bad \ud800 text"], DataError, "surrogate"),
    ([1, 2], TypeError, "item 0 is int"),
])
def test_texts_are_checked_in_one_place(saved, texts, error, words):
    clf = Classifier.load(saved)
    with pytest.raises(error, match=words):
        clf.predict(texts)
    with pytest.raises(error, match=words):
        clf.predict_proba(texts)


def test_empty_text_is_refused_by_the_cli_as_by_the_api(saved, tmp_path):
    one_line_error(*run("predict", saved, "a late goal", "  "), "empty")
    inp = tmp_path / "in.csv"
    inp.write_text('text\na late goal\n"  "\n')
    one_line_error(*run("predict", saved, "-i", inp), "empty")


def test_output_compression_and_refused_formats(saved, tmp_path):
    inp = tmp_path / "in.csv"
    inp.write_text("text\na late goal\nfresh bread\n")
    code, out = run("predict", saved, "-i", inp, "-o", tmp_path / "out.csv.gz")
    assert code == 0, out
    with gzip.open(tmp_path / "out.csv.gz", "rt") as f:
        back = pd.read_csv(f)
    assert list(back["text"]) == ["a late goal", "fresh bread"] and "predicted" in back
    one_line_error(*run("predict", saved, "-i", inp, "-o", tmp_path / "out.xlsx"), ".csv", ".parquet")
    assert not (tmp_path / "out.xlsx").exists()


# ---------------------------------------------------------------------------------------------
# 5. no network: OpenVINO's telemetry is off


_BLOCK = """
import socket, os
_log = os.environ["FASTCLF_NET_LOG"]
def _record(what):
    with open(_log, "a") as f:
        f.write(repr(what) + "\\n")
def _getaddrinfo(host, *a, **k):
    _record(("getaddrinfo", host))
    raise OSError("network blocked by the test")
def _connect(self, address):
    _record(("connect", address))
    raise OSError("network blocked by the test")
socket.getaddrinfo = _getaddrinfo
socket.socket.connect = _connect
"""


def test_openvino_accelerate_predict_and_benchmark_make_no_network_attempt(saved, tmp_path):
    pytest.importorskip("openvino")
    model = tmp_path / "model"
    shutil.copytree(saved, model)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BLOCK)
    log = tmp_path / "net.log"
    calibration = tmp_path / "cal.csv"
    calibration.write_text("text\n" + "\n".join(SPORT + FOOD + ["a cup of tea", "a penalty shoot-out"]) + "\n")
    labeled = tmp_path / "test.csv"
    pd.DataFrame({"text": SPORT + FOOD, "label": ["sport"] * len(SPORT) + ["food"] * len(FOOD)}).to_csv(
        labeled, index=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "FASTCLF_NET_LOG": str(log),
           "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path / "home")}
    env.pop("CI", None)  # openvino_telemetry stays quiet in CI: test the user's case
    (tmp_path / "home").mkdir()
    cmds = [["accelerate", str(model), "--variant", "openvino-fp32", "--calibration", str(calibration),
             "--max-accuracy-loss", "100"],
            ["predict", str(model), "--variant", "openvino-fp32", "a late goal"],
            ["benchmark", str(model), str(labeled), "--variants", "openvino-fp32", "--batch-sizes", "1",
             "--duration", "0.2", "--max-eval", "6", "--output", str(tmp_path / "report")]]
    for args in cmds:
        proc = subprocess.run([sys.executable, "-m", "fastclf", *args], env=env, capture_output=True, text=True,
                              timeout=400)
        assert proc.returncode == 0, proc.stderr[-2000:]
        time.sleep(0.5)  # telemetry sends from a thread
    assert not log.exists(), log.read_text()
    assert not (tmp_path / "home" / "intel").exists()  # and nothing written in the user's home


# ---------------------------------------------------------------------------------------------
# 6. hostile and heavy input (issue 31): bounded memory, one line for every failure

_RSS_CHILD = textwrap.dedent("""
    import re, sys
    from fastclf.cli.main import cli
    try:
        cli(sys.argv[1:], standalone_mode=False)
    finally:  # VmHWM: this process's own peak (ru_maxrss keeps the parent's peak across fork and exec)
        peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
        print("maxrss_kb", peak, file=sys.stderr)
""")


def test_one_huge_text_costs_memory_bounded_by_tokens(saved, tmp_path):
    """A 20 MB text is cut to what --max-chunks windows can use before it is tokenized: the peak
    memory stays far below the ~3 GB that tokenizing all of it took, and a warning says so once."""
    src = tmp_path / "big.jsonl"
    words = "alpha beta gamma delta " * (20_000_000 // 23)
    src.write_text(json.dumps({"text": words}) + "\n" + json.dumps({"text": "short one"}) + "\n")
    out = tmp_path / "out.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, "predict", str(saved), "--input", str(src),
                           "--output", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rss_mb = int(proc.stderr.rsplit("maxrss_kb", 1)[1].split()[0]) / 1024
    assert rss_mb < 1500, f"peak RSS {rss_mb:.0f} MB"
    assert proc.stderr.count("are cut to their first") == 1, proc.stderr[-2000:]
    assert len(pd.read_csv(out)) == 2


def test_windows_of_a_cut_text_are_spaced_over_the_kept_characters(minilm_dir):
    from tokenizers import Tokenizer

    from fastclf.chunking import CHARS_PER_TOKEN, Chunker

    chunker = Chunker(Tokenizer.from_file(str(minilm_dir / "tokenizer.json")), 16, max_chunks=3)
    assert chunker.max_chars == 3 * 16 * CHARS_PER_TOKEN
    long = "x" * 5000 + " tail words here"  # one 5,000-character word: one token for many characters
    pieces = chunker.split(["a short text", long, "word " * 2000])
    assert pieces.n_cut == 2 and pieces.n_inputs == 3
    assert all(len(p) <= chunker.max_chars for p in pieces.texts)
    assert "tail" not in " ".join(pieces.texts)
    assert (pieces.owner == 2).sum() == 3  # evenly spaced windows over the kept prefix


@pytest.mark.parametrize("sep", [",", "\t"])
def test_a_csv_with_absurdly_many_columns_is_refused_early(saved, tmp_path, sep):
    src = tmp_path / "wide.csv"
    src.write_text(sep.join(f"c{i}" for i in range(1_000_000)) + "\n" + sep.join("x" * 1_000_000) + "\n")
    with pytest.raises(DataError, match="1,000,000 columns"):
        read_texts(src)
    code, output = run("predict", saved, "--input", src, "--output", tmp_path / "out.csv")
    one_line_error(code, output, "1,000,000 columns")


def test_fastclf_json_linked_outside_the_model_is_refused(model, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(model / "fastclf.json", outside)
    (model / "fastclf.json").symlink_to(outside)
    with pytest.raises(ModelFormatError, match="fastclf.json leads outside"):
        Classifier.load(model)
    code, output = run("info", model)
    one_line_error(code, output, "fastclf.json leads outside")


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "1_Pooling/config.json"])
def test_body_files_linked_outside_the_model_are_refused(model, tmp_path, name):
    victim = model / "body" / name
    outside = tmp_path / "elsewhere"
    shutil.move(victim, outside)
    victim.symlink_to(outside)
    with pytest.raises(ModelFormatError, match="leads outside"):
        Classifier.load(model)
    victim.unlink()
    victim.symlink_to("/dev/zero")  # no longer an endless read
    code, output = run("predict", model, "a text")
    one_line_error(code, output, name, "leads outside")


def test_oversize_tokenizer_and_json_files_are_refused_before_they_are_read(model):
    tokenizer = model / "body" / "tokenizer.json"
    with open(tokenizer, "r+b") as fh:
        fh.truncate(2 * 1024**3)  # 2 GB, sparse: nothing is written
    with pytest.raises(ModelFormatError, match="tokenizer.json is 2048 MB, more than"):
        Classifier.load(model)
    from fastclf.backends import load_body

    with pytest.raises(ModelFormatError, match="tokenizer.json is 2048 MB, more than"):
        load_body(model / "body", "onnx-fp32")  # checked before the variant's own files are looked for


@pytest.mark.parametrize("depth", [3, 12, 200])
def test_code_keys_are_found_at_any_depth(model, depth):
    config = json.loads((model / "body" / "config.json").read_text())
    node: dict = config
    for i in range(depth):
        node[f"k{i}"] = {}
        node = node[f"k{i}"]
    node["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (model / "body" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="auto_map"):
        Classifier.load(model)


def test_large_json_with_a_code_key_is_refused_not_skipped(model):
    config = json.loads((model / "body" / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (model / "body" / "config.json").write_text(json.dumps(config) + " " * 51_000_000)
    with pytest.raises(ModelFormatError, match="config.json"):
        Classifier.load(model)


@pytest.fixture(scope="module")
def exported(saved, tmp_path_factory) -> Path:
    """The tiny model with onnx-fp32 and openvino-fp32 exported."""
    from samples import CALIBRATION

    from fastclf.accelerate.export import accelerate

    path = tmp_path_factory.mktemp("robust-exported") / "model"
    shutil.copytree(saved, path)
    accelerate(path, ["onnx-fp32", "openvino-fp32"], calibration_texts=CALIBRATION, max_accuracy_loss=100)
    return path


@pytest.mark.parametrize("variant", ["torch-fp32", "onnx-fp32", "openvino-fp32"])
def test_every_variant_runs_the_code_safety_check(exported, tmp_path, variant):
    model = tmp_path / "model"
    shutil.copytree(exported, model)
    modules = json.loads((model / "body" / "modules.json").read_text())
    modules[1]["path"] = "../../../outside/body"
    (model / "body" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFormatError, match="entry 1 path"):
        Classifier.load(model, variant=variant)
    modules[1]["path"] = "1_Pooling"
    (model / "body" / "modules.json").write_text(json.dumps(modules))
    (model / "body" / "custom.py").write_text("raise SystemExit('ran')\n")
    code, output = run("predict", model, "a text", "--variant", variant)
    one_line_error(code, output, "custom.py is code")


def _disk_full(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _safetensors_disk_full(*_a, **_k):
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("where", ["head", "body"])
def test_train_on_a_full_disk_ends_in_one_line(tiny_body_dir, tmp_path, monkeypatch, where):
    """A full file system (simulated: the writer raises as it does on ENOSPC): one line, exit 1,
    no model and no staging folder left."""
    from fastclf.head import LogisticHead

    csv = tmp_path / "train.csv"
    pd.DataFrame({"text": tiny_data().texts, "label": tiny_data().labels}).to_csv(csv, index=False)
    if where == "head":
        monkeypatch.setattr(LogisticHead, "save", _safetensors_disk_full)
    else:
        monkeypatch.setattr("sentence_transformers.SentenceTransformer.save", _disk_full)
    out = tmp_path / "out" / "model"
    code, output = run("train", csv, "-o", out, "--model", tiny_body_dir, "--epochs", "0", "--head-c", "1", "-q")
    errors = [line for line in output.splitlines() if line.startswith("error: ")]  # after the training lines
    assert code == 1 and "Traceback" not in output, output
    assert len(errors) == 1 and output.strip().endswith(errors[0]) and "no space left on device" in errors[0]
    assert not out.exists() and not [p for p in out.parent.iterdir()]


def test_predict_output_on_a_full_disk_ends_in_one_line(saved, tmp_path, monkeypatch):
    from fastclf.scoring.stream.outputs import TableWriter

    src = tmp_path / "in.csv"
    pd.DataFrame({"text": SPORT + FOOD}).to_csv(src, index=False)
    monkeypatch.setattr(TableWriter, "write", _disk_full)
    out = tmp_path / "out" / "scored.csv"
    out.parent.mkdir()
    code, output = run("predict", saved, "--input", src, "--output", out)
    one_line_error(code, output, "scored.csv", "no space left on device")
    assert list(out.parent.iterdir()) == []


def test_a_killed_predict_output_leaves_a_temp_file_that_the_next_run_removes(saved, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [f"the striker scored goal number {i}" for i in range(40_000)]}).to_csv(src, index=False)
    out = tmp_path / "out" / "scored.csv"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "fastclf", "predict", str(saved), "--input", str(src),
                             "--output", str(out), "--chunk-size", "64"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.parent.iterdir()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    left = list(out.parent.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".scored.csv.") and str(proc.pid) in left[0].name, left
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = out.parent / f".scored.csv.tmp-{live.pid}-abc_12.tmp"  # a concurrent run's file
        kept.write_text("")
        small = tmp_path / "small.csv"
        pd.DataFrame({"text": SPORT}).to_csv(small, index=False)
        code, output = run("predict", saved, "--input", small, "--output", out)
        assert code == 0, output
        assert sorted(p.name for p in out.parent.iterdir()) == sorted([kept.name, "scored.csv"])
    finally:
        live.kill()
        live.wait()


def test_duplicate_text_columns_are_refused_by_name(saved, tmp_path):
    src = tmp_path / "dup.csv"
    src.write_text("text,label,text\nthe striker scored,sport,a late goal\nsalty soup,food,fresh bread\n")
    with pytest.raises(DataError, match="duplicate column names: text"):
        read_texts(src)
    code, output = run("predict", saved, "--input", src, "--output", tmp_path / "out.csv")
    one_line_error(code, output, "duplicate column names: text")


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_nested_parquet_columns_are_written_to_csv_as_json(saved, tmp_path, suffix):
    src = tmp_path / "nested.parquet"
    pd.DataFrame({"text": ["the striker scored", "salty soup", "a late goal"],
                  "tags": [["a", "b"], [], ["é"]],
                  "meta": [{"n": 1, "xs": [1, 2]}, {"n": 2, "xs": []}, {"n": 3, "xs": [3]}]}).to_parquet(src)
    out = tmp_path / f"out{suffix}"
    code, output = run("predict", saved, "--input", src, "--output", out)
    assert code == 0, output
    df = pd.read_csv(out, sep="\t" if suffix == ".tsv" else ",", dtype=str)
    assert [json.loads(x) for x in df["tags"]] == [["a", "b"], [], ["é"]]
    assert [json.loads(x) for x in df["meta"]] == [{"n": 1, "xs": [1, 2]}, {"n": 2, "xs": []}, {"n": 3, "xs": [3]}]
    code, output = run("predict", saved, "--input", src)  # CSV on stdout too
    assert code == 0 and '"[""a"", ""b""]"' in output, output


def test_info_on_a_model_without_its_head_file_is_one_error_line(model):
    (model / "head.safetensors").unlink()
    code, output = run("info", model)
    one_line_error(code, output, "head.safetensors is missing")
    code, output = run("info", model, "--json")
    one_line_error(code, output, "head.safetensors is missing")


def test_json_output_writes_utf8_as_it_is(saved, tmp_path):
    code, output = run("predict", saved, "le café était froid ⚽", "--json")
    assert code == 0 and "le café était froid ⚽" in output and "\\u" not in output, output
    data = tmp_path / "eval.csv"
    pd.DataFrame({"text": SPORT + ["un café très salé"] + FOOD, "label": ["sport"] * 6 + ["food"] * 7}).to_csv(
        data, index=False)
    code, output = run("eval", saved, data, "--json")
    assert code == 0 and "\\u" not in output, output
    code, output = run("info", saved, "--json")
    assert code == 0 and json.loads(output)["labels"], output


def test_training_on_many_labels_says_what_the_long_steps_are(tiny_body_dir):
    from fastclf.data import LabeledData
    from fastclf.training.trainer import TrainConfig, train

    rng = np.random.default_rng(0)
    words = (SPORT + FOOD)
    texts = [f"{words[int(rng.integers(len(words)))]} item {i // 2}" for i in range(240)]
    data = LabeledData(texts, [f"label{i // 2}" for i in range(240)], source="many")
    said: list[str] = []
    train(data, TrainConfig(model=str(tiny_body_dir), finetune="never", show_progress=False), progress=said.append)
    head_lines = [s for s in said if "120 classes" in s]
    assert len(head_lines) == 2, said  # the cross-validation of the head, then the final head
    assert said.index(head_lines[0]) < said.index(head_lines[1])
