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
from samples import FOOD, FOOD_EXTRA, SPORT, SPORT_EXTRA, run, train_tiny

from fastclf import Classifier
from fastclf.config import ModelConfig, VariantRecord
from fastclf.data import read_labeled
from fastclf.errors import ModelFormatError, ModelNotFound, UnknownVariant, VariantNotExported

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def csv(tmp_path) -> Path:
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": SPORT + FOOD, "label": ["sport"] * 6 + ["food"] * 6}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def clear_model(tmp_path_factory, minilm_dir) -> Path:
    """The real MiniLM, untuned, with a head fit on SPORT and FOOD: clear enough that it must
    label unseen sport and food texts right (no fine-tuning: a few seconds)."""
    from samples import tiny_data

    from fastclf import TrainConfig, train

    config = TrainConfig(model=str(minilm_dir), num_epochs=0, head_c=10.0, show_progress=False)
    return train(tiny_data(), config).classifier.save(tmp_path_factory.mktemp("clear") / "model")


def test_save_load_predict_round_trip(tiny_model, tiny_body_dir):
    clf = Classifier.load(tiny_model)
    assert list(clf.classes_) == ["food", "sport"]
    proba = clf.predict_proba(SPORT + FOOD)
    assert proba.shape == (12, 2) and np.allclose(proba.sum(axis=1), 1)
    assert clf.predict_proba("a goal").shape == (1, 2)
    assert clf.predict(SPORT + FOOD) == [str(clf.classes_[i]) for i in proba.argmax(axis=1)]
    assert clf.predict("a goal") == clf.predict(["a goal"]) and len(clf.predict("a goal")) == 1
    assert clf.predict([]) == [] and clf.predict_proba([]).shape == (0, 2)
    cfg = json.loads((tiny_model / "fastclf.json").read_text())
    assert cfg["format_version"] == 1 and cfg["labels"] == ["food", "sport"]
    assert cfg["body"]["pooling"] == "mean" and cfg["body"]["normalize"] is True
    # the body folder is a plain sentence-transformers folder
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_model / "body"), device="cpu")
    np.testing.assert_allclose(st.encode(SPORT), clf.embed(SPORT), atol=1e-5)


def test_loading_in_an_app_prints_no_library_noise(tiny_model):
    """torch and torchao log optional-kernel warnings on import ("Failed to load ..._C_mxfp8...",
    pytree deprecations): an app that only loads and predicts must not see them on stderr."""
    import subprocess
    import sys

    code = (f"import logging; from fastclf import Classifier; print(Classifier.load({str(tiny_model)!r}).predict(['a text'])[0]); "
            "print(*(logging.getLogger(n).level for n in ('torchao', 'torch.utils._pytree', 'transformers')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    label, levels = done.stdout.strip().splitlines()
    assert label in ("sport", "food")
    assert levels == "0 0 0", "loading must leave the app's log levels as they were"
    for noise in ("Failed to load", "torchao", "_pytree", "UserWarning"):
        assert noise not in done.stderr, done.stderr


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
    np.testing.assert_allclose(Classifier.load(tmp_path / "out").predict_proba(SPORT), good.predict_proba(SPORT),
                               atol=1e-6)  # the old version, whole
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

    clf = Classifier.load(out)
    code, text = run("predict", out, "the goalkeeper", "lemon tart")
    rows = [line.split("\t") for line in text.strip().splitlines()]
    assert code == 0 and [r[0] for r in rows] == clf.predict(["the goalkeeper", "lemon tart"])
    assert [r[2] for r in rows] == ["the goalkeeper", "lemon tart"]
    np.testing.assert_allclose([float(r[1]) for r in rows], clf.predict_proba(["the goalkeeper", "lemon tart"])
                               .max(axis=1), atol=1e-3)

    scored = tmp_path / "scored.csv"
    code, text = run("predict", out, "--input", csv, "--output", scored)
    df = pd.read_csv(scored)
    assert code == 0 and len(df) == 12 and {"predicted", "proba_food", "proba_sport"} <= set(df.columns)
    assert np.allclose(df["proba_food"] + df["proba_sport"], 1)

    code, text = run("eval", out, csv)
    assert code == 0 and "macro-F1" in text and "sport" in text
    code, text = run("eval", out, csv, "--json")
    metrics = json.loads(text)
    truth = pd.read_csv(csv)
    assert code == 0 and metrics["n"] == 12
    assert metrics["accuracy"] == pytest.approx(np.mean(np.array(clf.predict(list(truth["text"]))) == truth["label"]))

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


def test_a_model_trained_on_clear_examples_labels_them(clear_model, tmp_path):
    clf = Classifier.load(clear_model)
    assert clf.predict(SPORT_EXTRA + FOOD_EXTRA) == ["sport"] * 2 + ["food"] * 2  # texts it never saw
    assert clf.predict(SPORT + FOOD) == ["sport"] * 6 + ["food"] * 6
    code, text = run("predict", clear_model, *SPORT_EXTRA, *FOOD_EXTRA)
    assert code == 0 and [line.split("\t")[0] for line in text.strip().splitlines()] == ["sport"] * 2 + ["food"] * 2
    data = tmp_path / "test.csv"
    pd.DataFrame({"text": SPORT_EXTRA + FOOD_EXTRA, "label": ["sport"] * 2 + ["food"] * 2}).to_csv(data, index=False)
    code, text = run("eval", clear_model, data, "--json")
    metrics = json.loads(text)
    assert code == 0 and metrics["n"] == 4 and metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0


def test_predict_prints_one_line_a_text_however_the_text_is_laid_out(clear_model):
    long_one = "the match went to extra time " * 20
    code, text = run("predict", clear_model, "the striker scored\ttwice\nin the final", long_one)
    lines = text.strip().splitlines()
    assert code == 0 and len(lines) == 2 and all(len(line.split("\t")) == 3 for line in lines)
    assert lines[0].split("\t")[2] == "the striker scored twice in the final"
    shown = lines[1].split("\t")[2]
    assert len(shown) == 80 and shown.endswith("...") and long_one.startswith(shown[:-3])


def test_predict_reads_texts_from_standard_input(clear_model):
    from click.testing import CliRunner

    from fastclf.cli.main import cli

    piped = "\n".join(SPORT_EXTRA + FOOD_EXTRA) + "\n"
    result = CliRunner().invoke(cli, ["predict", str(clear_model), "-"], input=piped)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["sport"] * 2 + ["food"] * 2
    assert [line.split("\t")[2] for line in lines] == SPORT_EXTRA + FOOD_EXTRA
    empty = CliRunner().invoke(cli, ["predict", str(clear_model), "-"], input="")
    assert empty.exit_code == 1 and empty.output.startswith("error: no texts on standard input")


def test_predict_json_lines_carry_text_label_and_every_probability(clear_model):
    code, text = run("predict", clear_model, "--json", SPORT_EXTRA[0], FOOD_EXTRA[0])
    assert code == 0
    rows = [json.loads(line) for line in text.strip().splitlines()]
    assert [r["text"] for r in rows] == [SPORT_EXTRA[0], FOOD_EXTRA[0]]
    assert [r["label"] for r in rows] == ["sport", "food"]
    proba = Classifier.load(clear_model).predict_proba([SPORT_EXTRA[0], FOOD_EXTRA[0]])
    for row, expected in zip(rows, proba):
        assert set(row["proba"]) == {"food", "sport"} and sum(row["proba"].values()) == pytest.approx(1.0)
        assert [row["proba"]["food"], row["proba"]["sport"]] == pytest.approx(expected.tolist(), abs=1e-6)
        assert row["label"] == max(row["proba"], key=row["proba"].get)


def test_train_shots_samples_each_class_and_evaluates_on_the_rest(csv, tiny_body_dir, tmp_path):
    out = tmp_path / "model"
    code, text = run("train", csv, "-o", out, "--model", tiny_body_dir, "--shots", "3", "--finetune", "never",
                     "--head-c", "1", "-q")
    assert code == 0, text
    assert "training on 6 examples (food: 3, sport: 3)" in text
    assert "evaluating on 6 rows not sampled for training" in text
    training = json.loads((out / "fastclf.json").read_text())["training"]
    assert training["examples"] == 6 and training["examples_per_class"] == {"food": 3, "sport": 3}
    assert training["eval"]["n"] == 6 and training["eval"]["data"] == "6 rows not sampled for training"
    assert training["selection"]["epochs"] == 0
    code, again = run("train", csv, "-o", tmp_path / "again", "--model", tiny_body_dir, "--shots", "3",
                      "--finetune", "never", "--head-c", "1", "-q")
    assert code == 0 and text.splitlines()[0] == again.splitlines()[0]  # the same seeded sample


def test_accelerate_all_exports_every_installed_runtime(tiny_model, tmp_path, monkeypatch):
    """``--all`` on the runtimes installed here, cut to the two cheapest exports (no calibration,
    no compilation) so that the test stays short: the plumbing is the same for every variant."""
    import fastclf.cli.accelerate as command
    from fastclf.accelerate.auto import available_variants
    from fastclf.backends import VARIANTS

    installed = available_variants()
    cheap = [v for v in ("onnx-fp32", "openvino-fp32") if v in installed]
    if not cheap:
        pytest.skip("neither onnxruntime nor openvino is installed")
    monkeypatch.setattr(command, "available_variants", lambda: cheap)  # where the command looks it up
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    calib = tmp_path / "calib.csv"
    pd.DataFrame({"text": SPORT + FOOD + SPORT_EXTRA + FOOD_EXTRA}).to_csv(calib, index=False)
    code, text = run("accelerate", model, "--all", "--calibration", calib, "--max-accuracy-loss", "100")
    assert code == 0, text
    assert f"exported: {', '.join(cheap)}" in text
    skipped = [v for v in VARIANTS if v != "torch-fp32" and v not in cheap]
    assert f"skipping {', '.join(skipped)}: runtime not installed" in text
    cfg = ModelConfig.read(model)
    assert list(cfg.variants) == cheap
    for name in cheap:
        record = cfg.variants[name]
        assert record.gate is not None and record.gate["passed"] and record.n == 16
        assert all((model / "body" / f).is_file() for f in record.files)
        np.testing.assert_allclose(Classifier.load(model, variant=name).predict_proba(SPORT),
                                   Classifier.load(model).predict_proba(SPORT), atol=1e-4)
    code, text = run("info", model)
    assert code == 0 and all(f"  {name}" in text for name in cheap)


def _todays_config() -> dict:
    """fastclf.json exactly as the trainer and Classifier.save of format version 1 write it."""
    return {
        "format": "fastclf", "format_version": 1,
        "base_model": "/models/tiny",
        "long_texts": {"mode": "chunk", "max_chunks": 16},
        "training": {
            "settings": {"model": "/models/tiny", "finetune": "auto", "num_epochs": 1, "loss": "supcon",
                         "batch_size": 16, "body_learning_rate": 5e-05, "num_iterations": 5, "head_c": 1.0,
                         "cv_folds": 2, "max_length": None, "long_texts": "chunk", "max_chunks": 16,
                         "bf16": False, "seed": 42, "show_progress": False},
            "selection": {"epochs": 1, "head_c": 1.0, "reason": "fixed by the settings", "folds": 0, "scores": {},
                          "description": "fixed by the settings"},
            "examples": 12, "examples_per_class": {"food": 6, "sport": 6}, "long_texts": 0, "seconds": 3.2,
            "seconds_by_step": {"load": 0.4, "cross_validation": 0.0, "fine_tuning": 2.5,
                                "embeddings_and_head": 0.3},
            "source": "tiny", "source_path": None, "text_column": "text", "label_columns": ["label"],
            "eval": {"data": "4 held-out rows (34% of the data)", "n": 4, "accuracy": 0.75, "macro_f1": 0.73},
        },
        "versions": {"setfit": "1.1.3", "sentence-transformers": "5.1.0", "torch": "2.8.0"},
        "fastclf_version": "0.1.0",
        "labels": ["food", "sport"], "multi_label": False, "threshold": 0.5,
        "head": {"file": "head.safetensors", "kind": "binary", "dim": 32},
        "body": {"path": "body", "modules": ["Transformer", "Pooling", "Normalize"], "normalize": True,
                 "pooling": "mean", "dim": 32, "max_seq_length": 128},
        "created": "2025-01-02T03:04:05Z",
        "variants": {"onnx-fp32": {
            "n": 16, "agreement": 1.0, "max_proba_diff": 1e-06, "mean_cosine": 1.0, "min_cosine": 0.99999, "flips": 0,
            "gate": {"passed": True, "n": 16, "flips": 0, "disagreement": 0.0, "interval": [0.0, 0.15629],
                     "confidence": 0.95, "max_disagreement": 0.02, "min_cosine": 0.95, "rule": "fail when ..."},
            "min_agreement": 0.98, "exported": "2025-01-02T03:05:00Z", "seconds": 4.1, "files": ["onnx/model.onnx"],
            "runtime": {"intra_op_threads": 2}}},
        "default_variant": "onnx-fp32",
        "default_variant_choice": {"variant": "onnx-fp32", "machine": {"cpu": "x", "cores": 2, "isa": ["avx2"]},
                                   "date": "2025-01-02T03:06:00Z", "criterion": "lowest one-text p50 latency",
                                   "budget_points": 1.0, "load_average": [0.5, 0.5, 0.5], "candidates": {}},
        "body_id": "0123456789abcdef0123456789abcdef",
        "a_future_key": {"kept": True},
    }


def test_a_model_dir_in_todays_format_loads_through_model_config(tiny_model, tmp_path):
    model = tmp_path / "old"
    shutil.copytree(tiny_model, model)
    written = _todays_config()
    (model / "fastclf.json").write_text(json.dumps(written, indent=2))
    cfg = ModelConfig.read(model)
    assert cfg.labels == ("food", "sport") and cfg.threshold == 0.5 and not cfg.multi_label
    assert cfg.head.kind == "binary" and cfg.head_path(model) == (model / "head.safetensors").resolve()
    assert cfg.body.pooling == "mean" and cfg.long_texts is not None and cfg.long_texts.max_chunks == 16
    assert cfg.training is not None and cfg.training.examples == 12 and cfg.training.eval["accuracy"] == 0.75
    assert cfg.variants["onnx-fp32"].files == ("onnx/model.onnx",) and cfg.variants["onnx-fp32"].agreement == 1.0
    assert cfg.default_variant == "onnx-fp32" and cfg.model_extra == {"a_future_key": {"kept": True}}
    assert cfg.to_dict() == written  # every key kept, unknown ones too
    clf = Classifier.load(model)  # onnx-fp32's files are not there: torch-fp32
    assert clf.variant == "torch-fp32" and clf.config == cfg
    np.testing.assert_allclose(clf.predict_proba(SPORT), Classifier.load(tiny_model).predict_proba(SPORT), atol=1e-6)
    clf.save(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "fastclf.json").read_text())
    assert again["a_future_key"] == {"kept": True} and again["training"] == written["training"]
    assert again["body_id"] != written["body_id"]  # a new body


@pytest.mark.parametrize("field, value, message", [
    ("labels", ["only"], r"labels: list should have at least 2 items after validation, not 1, got \['only'\]"),
    ("threshold", "high", "threshold: input should be a valid number, got 'high'"),
    ("long_texts", {"mode": "chunk", "max_chunks": 0}, "long_texts.max_chunks: input should be greater than or equal to 1"),
    ("head", {"file": 3}, "head.file: input should be a valid string, got 3"),
    ("variants", {"onnx-fp32": {"files": "onnx/model.onnx"}}, "variants.onnx-fp32.files: input should be a valid list"),
    ("calibration", {"temperature": [1.0, 2.0, 3.0]}, "calibration.temperature has 3 values for 2 labels"),
])
def test_model_config_names_the_file_and_the_bad_field(tmp_path, field, value, message):
    data = {**_todays_config(), field: value}
    with pytest.raises(ModelFormatError, match=message) as info:
        ModelConfig.from_dict(data, tmp_path / "fastclf.json")
    assert str(tmp_path / "fastclf.json") in str(info.value) and "\n" not in str(info.value)


def test_model_config_reads_odd_informational_fields_as_none(tmp_path):
    data = {**_todays_config(), "versions": ["torch"], "training": {"examples": "many", "eval": {"n": 4}}}
    cfg = ModelConfig.from_dict(data, tmp_path / "fastclf.json")
    assert cfg.versions is None and cfg.training is not None and cfg.training.examples is None
    assert cfg.training.eval == {"n": 4} and cfg.variants["onnx-fp32"].n == 16
    with pytest.raises(ValueError, match="valid integer"):  # built in code, an odd value is a bug, not None
        VariantRecord(n="many")


@pytest.mark.parametrize("class_weight", ["none", "balanced"])
def test_cli_train_names_skewed_classes_and_the_class_weight_option(tiny_body_dir, tmp_path, class_weight):
    path = tmp_path / "skewed.csv"
    rows = [(f"match report number {i}: the striker scored", "sport") for i in range(12)]
    rows += [("the soup was salty", "food"), ("a spicy curry with rice", "food"), ("fresh bread", "food")]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    out = tmp_path / "model"
    code, text = run("train", path, "-o", out, "--model", tiny_body_dir, "--epochs", "0", "--head-c", "1",
                     "--class-weight", class_weight, "-q")
    assert code == 0, text
    assert "the classes are skewed (sport: 12 examples, food: 3)" in text
    assert ("--class-weight balanced" in text) and (("try --class-weight" in text) == (class_weight == "none"))
    cfg = json.loads((out / "fastclf.json").read_text())
    assert cfg["training"]["settings"]["class_weight"] == class_weight


def test_server_counts_tokens_by_the_chunkers_rule(tiny_model):
    from fastclf.scoring.serve.batcher import token_counter

    clf = Classifier.load(tiny_model)
    chunker = clf.chunker
    cap = chunker.window * chunker.max_chunks
    short, long = "a goal in the last minute", "word " * (chunker.max_chars // 2)
    counts = token_counter(clf)([short, long, "x" * (chunker.max_chars + 100)])
    assert counts[0] == len(chunker.tokenizer.encode(short, add_special_tokens=False).ids)
    assert counts[1] == cap and 1 <= counts[2] <= cap  # a long text costs the windows the model embeds, no more
