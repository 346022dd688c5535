"""Training, saving, loading and the CLI, on a tiny random body (fast) and once on the
real packaged MiniLM (the end-to-end check)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from samples import FOOD, SPORT, run, train_tiny

from fastclf import Classifier
from fastclf.data import read_labeled
from fastclf.errors import ModelFormatError, ModelNotFound, UnknownVariant, VariantNotExported

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_body_dir) -> Path:
    return train_tiny(tiny_body_dir).save(tmp_path_factory.mktemp("m") / "model")


@pytest.fixture
def csv(tmp_path) -> Path:
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": SPORT + FOOD, "label": ["sport"] * 6 + ["food"] * 6}).to_csv(path, index=False)
    return path




def test_save_load_predict_round_trip(tiny_model, tiny_body_dir):
    clf = Classifier.load(tiny_model)
    assert list(clf.classes_) == ["food", "sport"]
    proba = clf.predict_proba(SPORT + FOOD)
    assert proba.shape == (12, 2) and np.allclose(proba.sum(axis=1), 1)
    assert clf.predict_proba("a goal").shape == (1, 2)
    assert clf.predict("a goal")[0] in ("food", "sport")
    assert clf.predict([]) == [] and clf.predict_proba([]).shape == (0, 2)
    cfg = json.loads((tiny_model / "fastclf.json").read_text())
    assert cfg["format_version"] == 1 and cfg["labels"] == ["food", "sport"]
    assert cfg["body"]["pooling"] == "mean" and cfg["body"]["normalize"] is True
    # the body folder is a plain sentence-transformers folder
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_model / "body"), device="cpu")
    np.testing.assert_allclose(st.encode(SPORT), clf.embed(SPORT), atol=1e-5)


def test_training_is_reproducible(tiny_body_dir, tiny_model):
    again = train_tiny(tiny_body_dir)
    saved = Classifier.load(tiny_model)
    np.testing.assert_allclose(again.predict_proba(FOOD), saved.predict_proba(FOOD), atol=1e-5)


def test_loading_never_unpickles(tiny_model, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("unpickling during load")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    import torch

    monkeypatch.setattr(torch, "load", refuse)
    Classifier.load(tiny_model).predict(["a goal"])


def test_save_is_atomic(tiny_model, tmp_path, monkeypatch):
    clf = Classifier.load(tiny_model)
    from fastclf import head as head_mod

    def boom(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(head_mod.LogisticHead, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        clf.save(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    # replacing an existing model that fails keeps the old one whole
    good = clf.__class__.load(tiny_model)
    monkeypatch.undo()
    good.save(tmp_path / "out")
    monkeypatch.setattr(head_mod.LogisticHead, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        good.save(tmp_path / "out")
    assert Classifier.load(tmp_path / "out").predict(["x"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    monkeypatch.undo()
    with pytest.raises(FileExistsError):
        good.save(tmp_path / "other")


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "fastclf.json").unlink(), "not a fastclf model"),
    (lambda d: (d / "fastclf.json").write_text("{not json"), "corrupted"),
    (lambda d: (d / "fastclf.json").write_text(
        (d / "fastclf.json").read_text().replace('"format_version": 1', '"format_version": 99')), "format version 99"),
    (lambda d: (d / "head.safetensors").write_bytes(b"xx"), "corrupted"),
    (lambda d: (d / "head.safetensors").unlink(), "head.safetensors is missing"),
    (lambda d: shutil.rmtree(d / "body"), "body/ is missing"),
])
def test_damaged_model_dirs(tiny_model, tmp_path, damage, message):
    d = tmp_path / "m"
    shutil.copytree(tiny_model, d)
    damage(d)
    with pytest.raises(ModelFormatError, match=message):
        Classifier.load(d)
    code, out = run("predict", d, "hello")
    assert code == 1 and out.strip().startswith("error:") and len(out.strip().splitlines()) == 1


def test_variant_errors(tiny_model, tmp_path):
    with pytest.raises(UnknownVariant, match="valid variants: torch-fp32, .*onnx-int8"):
        Classifier.load(tiny_model, variant="turbo")
    with pytest.raises(VariantNotExported, match="fastclf accelerate .* --variant onnx-int8"):
        Classifier.load(tiny_model, variant="onnx-int8")
    with pytest.raises(ModelNotFound, match="not found"):
        Classifier.load(tmp_path / "nope")


def test_cli_train_predict_eval_info(csv, tiny_body_dir, tmp_path):
    out = tmp_path / "model"
    code, text = run("train", csv, "-o", out, "--model", tiny_body_dir, "--epochs", "1", "--holdout", "0.34", "-q")
    assert code == 0, text
    assert "accuracy:" in text and "confusion matrix" in text and (out / "fastclf.json").is_file()
    assert "train_runtime" not in text  # transformers' metrics dict is not shown to the user
    cfg = json.loads((out / "fastclf.json").read_text())
    assert cfg["training"]["examples"] == 8 and cfg["training"]["eval"]["n"] == 4

    code, text = run("predict", out, "the goalkeeper", "lemon tart")
    lines = text.strip().splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].split("\t")[0] in ("sport", "food")

    scored = tmp_path / "scored.csv"
    code, text = run("predict", out, "--input", csv, "--output", scored)
    df = pd.read_csv(scored)
    assert code == 0 and len(df) == 12 and {"predicted", "proba_food", "proba_sport"} <= set(df.columns)
    assert np.allclose(df["proba_food"] + df["proba_sport"], 1)

    code, text = run("eval", out, csv)
    assert code == 0 and "macro-F1" in text and "sport" in text
    code, text = run("eval", out, csv, "--json")
    assert 0 <= json.loads(text)["accuracy"] <= 1

    code, text = run("info", out)
    assert code == 0 and "labels (2): food, sport" in text and "torch-fp32" in text
    code, text = run("variants", out)
    assert code == 0 and "[exported] torch-fp32" in text and "[-]" in text


@pytest.mark.parametrize("content, message", [
    (None, "data file not found"),
    ("text,label\na,x\nb,x\n", "only one class"),
    ("text,label\na,x\nb,x\nc,y\n", "single example"),
    ("words,label\na,x\nb,y\n", "no text column"),
    ("text,label\na,x\n,y\nc,y\n", "row 2"),
])
def test_cli_bad_training_data_writes_nothing(tmp_path, tiny_body_dir, content, message):
    data = tmp_path / "d.csv"
    if content is not None:
        data.write_text(content, encoding="utf-8")
    out = tmp_path / "model"
    code, text = run("train", data, "-o", out, "--model", tiny_body_dir, "-q")
    assert code == 1 and message in text and text.startswith("error:")
    assert not out.exists()


def test_cli_unknown_model_and_bad_predict_input(tmp_path, csv, tiny_model):
    code, text = run("train", csv, "-o", tmp_path / "m", "--model", tmp_path / "no-such-model", "-q")
    assert code == 1 and "model folder not found" in text and not (tmp_path / "m").exists()
    code, text = run("predict", tiny_model)
    assert code == 1 and "give texts" in text
    code, text = run("predict", tiny_model, "x", "--variant", "warp9")
    assert code == 1 and "unknown variant 'warp9'" in text


def test_cli_multilabel(tmp_path, tiny_body_dir):
    texts = SPORT + FOOD + ["a picnic at the stadium", "hot dogs at the match", "beer and a football game"]
    labels = ["sport"] * 6 + ["food"] * 6 + ["sport|food"] * 3
    path = tmp_path / "ml.csv"
    pd.DataFrame({"text": texts, "labels": labels}).to_csv(path, index=False)
    out = tmp_path / "ml"
    code, text = run("train", path, "-o", out, "--model", tiny_body_dir, "--epochs", "1", "-q")
    assert code == 0, text
    clf = Classifier.load(out)
    assert clf.multi_label and clf.predict_proba(texts).shape == (15, 2)
    assert all(isinstance(p, list) for p in clf.predict(texts))
    code, text = run("eval", out, path)
    assert code == 0 and "micro-F1" in text


def test_end_to_end_real_model(tmp_path):
    """The README's main job, shortened: the packaged MiniLM on Rotten Tomatoes snippets."""
    test = read_labeled(ROOT / "examples" / "test.csv").subset(range(300))
    out = tmp_path / "rt"
    code, text = run("train", ROOT / "examples" / "train.csv", "-o", out, "--epochs", "2", "-q")
    assert code == 0, text
    clf = Classifier.load(out)
    acc = np.mean(np.array(clf.predict(test.texts)) == np.array(test.labels))
    assert acc > 0.6  # chance is 0.5; 10 epochs reach about 0.72
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
