"""Calibrated probabilities, abstention and conformal prediction sets (fastclf.calibration, the
``calibration`` section of fastclf.json, Classifier.predict/predict_set, the CLI, serve and streaming)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from samples import FOOD, SPORT, run

from fastclf.calibration import fit, single_label_loss
from fastclf.config import Calibration, ModelConfig
from fastclf.data import LabeledData
from fastclf.errors import DataError
from fastclf.head import LogisticHead
from fastclf.model import Classifier
from fastclf.scoring import stream

TEXTS = ["the striker scored twice", "a spicy curry with rice", "rain all week", "a goal and a pie"]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _draw(p, rng):
    return np.array([rng.choice(len(row), p=row) for row in p])


def _task(n, rng, k=4):
    """Logits of ``k`` imbalanced classes and labels drawn from their softmax: calibrated at T=1."""
    z = rng.normal(0, 2.0, (n, k)) + np.log([0.55, 0.25, 0.15, 0.05][:k])
    return z, _draw(_softmax(z), rng)


def test_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z, y = _task(4000, rng)
    for true_t in (0.5, 2.5):  # the head's scores are z * true_t: over- or under-confident by that much
        cal = fit(z * true_t, y, multi_label=False, n_classes=4)
        assert isinstance(cal, Calibration)
        assert cal.temperature[0] == pytest.approx(true_t, rel=0.08)
        assert single_label_loss(z * true_t, y, cal.temperature[0]) < single_label_loss(z * true_t, y, 1.0)
    labels = (rng.random((3000, 3)) < 1 / (1 + np.exp(-z[:3000, :3]))).astype(int)
    multi = fit(z[:3000, :3] * 2.0, labels, multi_label=True, n_classes=3)
    assert isinstance(multi, Calibration) and len(multi.temperature) == 3 and not multi.conformal
    assert np.allclose(multi.temperature, 2.0, rtol=0.1)


def test_too_few_held_out_texts_leave_the_scores_as_they_are():
    rng = np.random.default_rng(1)
    z, y = _task(15, rng, k=3)
    assert "too few to calibrate" in fit(z, y, multi_label=False, n_classes=3)
    z, y = _task(60, rng, k=3)
    y[y == 2] = 0
    y[0] = 2  # one example of a class
    assert "1 of the rarest class" in fit(z, y, multi_label=False, n_classes=3)


def test_conformal_sets_reach_their_coverage_on_a_task_with_known_probabilities():
    rng = np.random.default_rng(2)
    achieved = {0.8: [], 0.9: [], 0.95: []}
    for _ in range(5):
        z, y = _task(400, rng)
        cal = fit(z, y, multi_label=False, n_classes=4)
        assert isinstance(cal, Calibration)
        zt, yt = _task(3000, rng)
        p = _softmax(zt / cal.temperature[0])
        for coverage in achieved:
            floor = 1 - cal.conformal_threshold(coverage)
            inside = (p >= floor) | (np.arange(4) == p.argmax(axis=1)[:, None])
            achieved[coverage].append(inside[np.arange(len(yt)), yt].mean())
    for coverage, values in achieved.items():
        assert np.mean(values) == pytest.approx(coverage, abs=0.03)
    assert Calibration(conformal=(0.1, 0.2)).conformal_threshold(0.9) == 1.0  # too few: every label


class _Body:
    variant = "torch-fp32"

    def __init__(self, emb):
        self.emb = emb

    def encode(self, texts, *, batch_size=32):
        return self.emb[: len(texts)]


def _classifier(rng, temperature=None, conformal=()):
    """A 4-class classifier (imbalanced logits) over fixed embeddings, with a calibration when ``temperature``."""
    head = LogisticHead(rng.normal(0, 3, (4, 8)), np.log([0.55, 0.25, 0.15, 0.05]), "multiclass")
    cal = None if temperature is None else Calibration(temperature=(temperature,), n=50, conformal=tuple(conformal))
    cfg = ModelConfig(labels=("sport", "food", "weather", "news"), calibration=cal)
    return Classifier(_Body(rng.normal(0, 1, (40, 8))), head, cfg.labels, config=cfg)


def test_calibration_never_changes_the_top_label():
    for seed, t in ((3, 0.3), (4, 4.0)):
        clf = _classifier(np.random.default_rng(seed), t)
        raw = clf.proba_of(clf.body.emb, calibrated=False)
        cal = clf.predict_proba(["x"] * 40)
        assert not np.allclose(raw, cal)
        assert (raw.argmax(1) == cal.argmax(1)).all()
        assert clf.predict(["x"] * 40) == [clf.classes_[i] for i in raw.argmax(1)]


def test_min_confidence_answers_the_unsure_label_below_it():
    clf = _classifier(np.random.default_rng(5), 2.0)
    texts = ["x"] * 40
    conf = clf.predict_proba(texts).max(axis=1)
    cut = float(np.median(conf))
    answers = clf.predict(texts, min_confidence=cut)
    assert [a == "unsure" for a in answers] == list(conf < cut)
    sure = clf.predict(texts)
    assert all(a == s for a, s, c in zip(answers, sure, conf) if c >= cut)
    assert set(clf.predict(texts, min_confidence=1.0, unsure_label="ask a human")) == {"ask a human"}
    assert clf.predict(texts, min_confidence=0) == sure


def test_prediction_sets_hold_the_top_label_and_grow_with_coverage():
    clf = _classifier(np.random.default_rng(6), 1.0, conformal=np.linspace(0.05, 0.9, 60).round(3))
    texts = ["x"] * 40
    small, large = clf.predict_set(texts, coverage=0.5), clf.predict_set(texts, coverage=0.95)
    assert [s[0] for s in small] == clf.predict(texts)
    assert all(set(a) <= set(b) for a, b in zip(small, large))
    assert sum(map(len, large)) > sum(map(len, small))


@pytest.mark.parametrize("call, message", [
    (lambda clf: clf.predict(TEXTS, min_confidence=1.5), "min_confidence must be a probability from 0 to 1"),
    (lambda clf: clf.predict(TEXTS, min_confidence=0.8, unsure_label="food"), "is one of the model's labels"),
    (lambda clf: clf.predict_set(TEXTS, coverage=0), "coverage must be strictly between 0 and 1"),
    (lambda clf: clf.predict_set(TEXTS, coverage=1.0), "coverage must be strictly between 0 and 1"),
])
def test_bad_values_raise_one_line(call, message):
    clf = _classifier(np.random.default_rng(7), 1.0, conformal=(0.1, 0.5))
    with pytest.raises(DataError, match=message) as err:
        call(clf)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def calibrated_model(tiny_model, tmp_path_factory):
    """The tiny model (saved without calibration) with a calibration section written into its fastclf.json."""
    path = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(tiny_model, path)
    cfg = ModelConfig.read(path)
    cal = Calibration(temperature=(0.05,), n=40, conformal=tuple(np.linspace(0, 0.8, 40).round(3)))
    cfg.model_copy(update={"calibration": cal}).write(path)
    return path


def test_a_model_without_calibration_loads_and_predicts_as_before(tiny_model, calibrated_model):
    assert "calibration" not in json.loads((tiny_model / "fastclf.json").read_text())
    old = Classifier.load(tiny_model)
    assert old.config.calibration is None
    texts = ["a late goal", "fresh bread", "the soup was cold"]
    assert np.array_equal(old.predict_proba(texts), old.head.predict_proba(old.embed(texts)))
    new = Classifier.load(calibrated_model)
    assert new.config.calibration.temperature == (0.05,)
    assert new.predict(texts) == old.predict(texts)
    assert not np.allclose(new.predict_proba(texts), old.predict_proba(texts))
    with pytest.raises(DataError, match="no conformal scores"):
        old.predict_set(texts)


def test_training_calibrates_on_the_cross_validation_held_out_scores(tiny_body_dir, tmp_path):
    from fastclf.training.trainer import TrainConfig, train

    words = {"sport": ("goal", "match", "keeper", "striker"), "food": ("soup", "bread", "curry"),
             "weather": ("rain", "snow")}
    counts = {"sport": 14, "food": 10, "weather": 6}
    texts, labels = [], []
    for label, n in counts.items():
        for i in range(n):
            texts.append(f"{words[label][i % len(words[label])]} number {i} of the {label} kind")
            labels.append(label)
    config = TrainConfig(model=str(tiny_body_dir), finetune="never", show_progress=False)
    result = train(LabeledData(texts, labels), config)
    cal = result.classifier.config.calibration
    assert isinstance(cal, Calibration) and cal.n == 30 and len(cal.conformal) == 30
    assert result.info["calibration"].startswith("calibrated on 30 held-out scores")
    saved = Classifier.load(result.classifier.save(tmp_path / "m"))
    assert saved.config.calibration == cal
    assert saved.predict(texts) == [str(saved.classes_[i]) for i in
                                    saved.proba_of(saved.embed(texts), calibrated=False).argmax(1)]
    few = train(LabeledData(texts[:8] + texts[14:18] + texts[24:28], labels[:8] + labels[14:18] + labels[24:28]),
                config)
    assert few.classifier.config.calibration is None and "too few to calibrate" in few.info["calibration"]


def test_cli_serve_and_streaming_answer_with_abstention_and_sets(calibrated_model, tmp_path):
    code, out = run("predict", calibrated_model, "a late goal", "fresh bread", "--min-confidence", "0.999999",
                    "--coverage", "0.9")
    assert code == 0 and len(out.splitlines()) == 2
    assert all(line.split("\t")[0] in ("unsure", "sport", "food") and "{" in line for line in out.splitlines())
    for args, message in ((("--min-confidence", "1.5"), "min_confidence must be"), (("--coverage", "1"), "coverage"),
                          (("--min-confidence", "0.5", "--unsure-label", "food"), "one of the model's labels")):
        code, out = run("predict", calibrated_model, "a late goal", *args)
        assert code == 1 and out.startswith("error: ") and message in out and len(out.strip().splitlines()) == 1

    path = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a late goal", "fresh bread", "rain"]}).to_csv(path, index=False)
    clf = Classifier.load(calibrated_model)
    stream.predict_files(clf, path, tmp_path / "out.csv", answer={"min_confidence": 1.0, "coverage": 0.9})
    df = pd.read_csv(tmp_path / "out.csv")
    assert set(df.predicted) == {"unsure"} and df.prediction_set.str.len().min() > 0

    from fastclf.scoring.serve.protocol import RequestError, parse_predict_body, with_answers

    proba = clf.predict_proba(["a late goal"])
    answer = parse_predict_body(b'{"inputs": "x", "min_confidence": 0.0, "coverage": 0.9}', 1, clf.config)[3]
    item = with_answers([[{"label": "sport", "score": 1.0}]], proba, clf, answer)[0]
    assert item["label"] == clf.predict(["a late goal"])[0] and item["prediction_set"][0] == item["label"]
    with pytest.raises(RequestError, match="coverage must be"):
        parse_predict_body(b'{"inputs": "x", "coverage": 0}', 1, clf.config)


def test_eval_reports_confidence_figures_and_writes_the_page(calibrated_model, tiny_model, tmp_path):
    data = tmp_path / "test.csv"
    pd.DataFrame({"text": SPORT + FOOD, "label": ["sport"] * len(SPORT) + ["food"] * len(FOOD)}).to_csv(data, index=False)
    code, out = run("eval", calibrated_model, data, "--report", tmp_path / "report")
    assert code == 0 and "log-loss: " in out and "(uncalibrated " in out and "min confidence  answered" in out
    assert "prediction sets at coverage 0.90: achieved" in out
    page = (tmp_path / "report" / "eval.html").read_text()
    assert page.count("<svg") == 2 and "Reliability" in page
    code, out = run("eval", tiny_model, data, "--json")
    metrics = json.loads(out)
    assert code == 0 and "uncalibrated" not in metrics and 0 <= metrics["confidence"]["ece"] <= 1
    assert [row["threshold"] for row in metrics["confidence"]["table"]] == [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
