"""Evaluation: accuracy, macro-F1, a per-class table and a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .data import LabeledData
from .errors import DataError


def check_labels(clf, data: LabeledData) -> None:
    """Raise DataError if the data holds labels the model does not know, or the wrong kind of labels."""
    if bool(data.multi_label) != bool(clf.multi_label):
        kind = "multi-label" if clf.multi_label else "single-label"
        raise DataError(f"{data.source}: the model is {kind} but the data is not")
    known = set(map(str, clf.classes_))
    unknown = sorted(set(data.classes) - known)
    if unknown:
        raise DataError(
            f"{data.source}: labels {', '.join(map(repr, unknown[:5]))} are not among the model's labels "
            f"({', '.join(sorted(known))})"
        )


def scores(classes: list[str], y_true: list, y_pred: list, *, multi_label: bool = False) -> dict[str, Any]:
    """Metrics for predictions against true labels (label strings, or lists of them if multi-label)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    if multi_label:
        index = {c: i for i, c in enumerate(classes)}

        def hot(rows):
            m = np.zeros((len(rows), len(classes)), dtype=int)
            for r, labels in enumerate(rows):
                for label in labels:
                    m[r, index[label]] = 1
            return m

        t, p = hot(y_true), hot(y_pred)
        prec, rec, f1, sup = precision_recall_fscore_support(t, p, zero_division=0)
        return {
            "n": len(y_true),
            "accuracy": float(accuracy_score(t, p)),  # exact-match (subset) accuracy
            "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(t, p, average="micro", zero_division=0)),
            "per_class": _per_class(classes, prec, rec, f1, sup),
        }
    prec, rec, f1, sup = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "per_class": _per_class(classes, prec, rec, f1, sup),
        "confusion": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def _per_class(classes, prec, rec, f1, sup) -> dict[str, dict[str, float]]:
    return {
        c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(sup[i])}
        for i, c in enumerate(classes)
    }


def evaluate(clf, data: LabeledData, *, batch_size: int = 32) -> dict[str, Any]:
    """Predict ``data`` with ``clf`` and score it.

    Raises:
        DataError: the data's labels do not fit the model.
    """
    check_labels(clf, data)
    y_pred = clf.predict(data.texts, batch_size=batch_size)
    return scores([str(c) for c in clf.classes_], data.labels, y_pred, multi_label=clf.multi_label)


#: classes above which the text report lists the most confused pairs instead of the whole matrix
MATRIX_MAX_CLASSES = 12


def most_confused(confusion: Sequence[Sequence[int]], classes: Sequence[str], top: int = 10) -> list[tuple[str, str, int]]:
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
    return "\n".join(lines)
