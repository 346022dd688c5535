"""Evaluation: accuracy, macro-F1, per-class figures and confusion; and how far the probabilities can be
trusted (log-loss, calibration error, accuracy against the share answered, conformal coverage)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclf.data import LabeledData
from fastclf.errors import DataError


def check_labels(clf, data: LabeledData) -> None:
    """DataError if the data holds labels the model does not know, or the wrong kind of labels."""
    if bool(data.multi_label) != bool(clf.multi_label):
        kind = "multi-label" if clf.multi_label else "single-label"
        raise DataError(f"{data.source}: the model is {kind} but the data is not")
    known = set(map(str, clf.classes_))
    unknown = sorted(set(data.classes) - known)
    if unknown:
        raise DataError(f"{data.source}: labels {', '.join(map(repr, unknown[:5]))} are not among the model's labels "
                        f"({', '.join(sorted(known))})")


def scores(classes: list[str], y_true: list, y_pred: list, *, multi_label: bool = False) -> dict[str, Any]:
    """Metrics for predictions against true labels (label strings, or lists of them if multi-label)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    t, p = y_true, y_pred
    labels: list[str] | None = classes
    if multi_label:  # accuracy is exact-match (subset) accuracy
        binarize = MultiLabelBinarizer(classes=classes).fit(None)
        t, p, labels = binarize.transform(y_true), binarize.transform(y_pred), None
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    result: dict[str, Any] = {
        "n": len(y_true), "accuracy": float(accuracy_score(t, p)),
        "macro_f1": float(f1_score(t, p, labels=labels, average="macro", zero_division=0)),
        "per_class": {c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                          "support": int(sup[i])} for i, c in enumerate(classes)}}
    if multi_label:
        result["micro_f1"] = float(f1_score(t, p, average="micro", zero_division=0))
    else:
        result["confusion"] = confusion_matrix(t, p, labels=classes).tolist()
    return result


def evaluate(clf, data: LabeledData, *, batch_size: int = 32) -> dict[str, Any]:
    """:func:`scores` of ``clf`` on ``data``; for a single-label model also :func:`confidence_scores` of the
    probabilities (and of the uncalibrated ones, and the sets, when calibrated). DataError for foreign labels."""
    check_labels(clf, data)
    classes = [str(c) for c in clf.classes_]
    emb = clf.embed(data.texts, batch_size=batch_size)
    proba = clf.proba_of(emb)
    result = scores(classes, data.labels, clf.labels_from_proba(proba), multi_label=clf.multi_label)
    if not clf.multi_label:
        y = np.array([classes.index(label) for label in data.labels])
        result["confidence"] = confidence_scores(proba, y)
        cal = clf.config.calibration
        if cal is not None:
            result["uncalibrated"] = confidence_scores(clf.proba_of(emb, calibrated=False), y)
            if cal.conformal:
                result["sets"] = {str(a): set_scores(clf.sets_from_proba(proba, a), data.labels) for a in SET_COVERAGES}
    return result


#: confidence thresholds of the accuracy-coverage table; coverages of the conformal sets reported
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SET_COVERAGES = (0.8, 0.9, 0.95)
ECE_BINS = 15


def confidence_scores(proba: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """How far single-label ``proba`` can be trusted against class indices ``y``: log-loss, top-label ECE and
    reliability bins, the accuracy-coverage table, and the share answerable at 90% and 95% accuracy."""
    proba = np.asarray(proba, dtype=np.float64)
    conf, right = proba.max(axis=1), proba.argmax(axis=1) == y
    n = len(y)
    bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
    reliability = [{"lo": b / ECE_BINS, "n": int((bins == b).sum()), "confidence": float(conf[bins == b].mean()),
                    "accuracy": float(right[bins == b].mean())} for b in range(ECE_BINS) if (bins == b).any()]
    ece = sum(r["n"] * abs(r["confidence"] - r["accuracy"]) for r in reliability) / n
    table = [{"threshold": t, "answered": float((conf >= t).mean()),
              "accuracy": float(right[conf >= t].mean()) if (conf >= t).any() else None} for t in THRESHOLDS]
    order = np.argsort(-conf, kind="stable")
    running = np.cumsum(right[order]) / np.arange(1, n + 1)  # accuracy of the k most confident

    def answerable(target: float) -> float:
        ok = np.flatnonzero(running >= target)
        return float((ok.max() + 1) / n) if len(ok) else 0.0

    log_loss = float(-np.mean(np.log(np.clip(proba[np.arange(n), y], 1e-15, 1.0))))
    return {"log_loss": log_loss, "ece": float(ece), "mean_confidence": float(conf.mean()),
            "accuracy": float(right.mean()), "reliability": reliability, "table": table,
            "answered_at_90": answerable(0.9), "answered_at_95": answerable(0.95)}


def set_scores(sets: Sequence[Sequence[str]], truth: Sequence[str]) -> dict[str, float]:
    """Achieved coverage (share of sets holding the true label) and mean size of prediction sets."""
    return {"coverage": float(np.mean([t in s for s, t in zip(sets, truth)])),
            "mean_size": float(np.mean([len(s) for s in sets]))}


def format_confidence(result: dict[str, Any]) -> list[str]:
    """The confidence lines of a report (none for a multi-label result)."""
    conf = result.get("confidence")
    if conf is None:
        return []
    raw = result.get("uncalibrated")
    before = (lambda key: f" (uncalibrated {raw[key]:.3f})") if raw else (lambda key: "")
    lines = ["", f"log-loss: {conf['log_loss']:.3f}{before('log_loss')}",
             f"calibration error (ECE, {ECE_BINS} bins): {conf['ece']:.3f}{before('ece')}"
             + ("" if raw else "  [model not calibrated]"),
             f"mean confidence {conf['mean_confidence']:.3f} at accuracy {conf['accuracy']:.3f}; share answerable "
             f"at 90% accuracy {conf['answered_at_90']:.1%}, at 95% {conf['answered_at_95']:.1%}",
             "", "min confidence  answered  accuracy"]
    for row in conf["table"]:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        lines.append(f"{row['threshold']:>14.2f}  {row['answered']:>8.1%}  {acc:>8}")
    for coverage, s in (result.get("sets") or {}).items():
        lines.append(f"prediction sets at coverage {float(coverage):.2f}: achieved {s['coverage']:.3f}, "
                     f"mean size {s['mean_size']:.2f}")
    return lines


#: classes above which the text report lists the most confused pairs instead of the whole matrix
MATRIX_MAX_CLASSES = 12


def most_confused(confusion: Sequence[Sequence[int]], classes: Sequence[str],
                  top: int = 10) -> list[tuple[str, str, int]]:
    """The ``top`` largest off-diagonal cells of ``confusion`` as (true class, predicted class, count)."""
    cells = [(int(n), i, j) for i, row in enumerate(confusion) for j, n in enumerate(row) if i != j and n]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(classes[i], classes[j], n) for n, i, j in cells[:top]]


def format_report(result: dict[str, Any], classes: list[str]) -> str:
    """A plain-text report: headline figures, per-class table, confusion matrix."""
    lines = [f"examples: {result['n']}", f"accuracy: {result['accuracy']:.4f}", f"macro-F1: {result['macro_f1']:.4f}"]
    if "micro_f1" in result:
        lines.append(f"micro-F1: {result['micro_f1']:.4f}")
    width = max(8, *(len(c) for c in classes))
    lines += ["", f"{'class':<{width}}  precision  recall     f1  support"]
    for c in classes:
        r = result["per_class"][c]
        lines.append(f"{c:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    if "confusion" in result and len(classes) > MATRIX_MAX_CLASSES:
        lines += ["", "most confused (true -> predicted; the whole matrix: fastclf eval MODEL DATA --json)"]
        lines += [f"  {t} -> {p}: {n}" for t, p, n in most_confused(result["confusion"], classes)] or ["  none"]
    elif "confusion" in result:
        cw = max(6, *(len(c) for c in classes))
        lines += ["", "confusion matrix (rows: true, columns: predicted)",
                  " " * width + "  " + "  ".join(f"{c:>{cw}}" for c in classes)]
        for c, row in zip(classes, result["confusion"]):
            lines.append(f"{c:<{width}}  " + "  ".join(f"{v:>{cw}d}" for v in row))
    return "\n".join(lines + format_confidence(result))
