"""The text report of an evaluation and the training summary stay readable with many classes."""

from __future__ import annotations

import numpy as np

from fastclf.cli.commands import describe_counts
from fastclf.evaluation import MATRIX_MAX_CLASSES, format_report, most_confused


def _result(confusion: np.ndarray, classes: list[str]) -> dict:
    support = confusion.sum(axis=1)
    per_class = {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": int(s)} for c, s in zip(classes, support)}
    return {"n": int(confusion.sum()), "accuracy": float(np.trace(confusion) / confusion.sum()), "macro_f1": 0.5,
            "per_class": per_class, "confusion": confusion.tolist()}


def test_few_classes_get_the_whole_confusion_matrix():
    classes = ["food", "sport", "money"]
    text = format_report(_result(np.array([[5, 1, 0], [3, 2, 0], [0, 0, 4]]), classes), classes)
    assert "confusion matrix" in text and "most confused" not in text
    assert text.splitlines()[-2].split() == ["sport", "3", "2", "0"]


def test_many_classes_get_the_most_confused_pairs_instead_of_a_wide_matrix():
    classes = [f"class_{i:02d}" for i in range(60)]
    confusion = np.eye(60, dtype=int) * 10
    confusion[7, 3] = 4
    confusion[50, 51] = 2
    confusion[1, 0] = 2
    text = format_report(_result(confusion, classes), classes)
    assert len(classes) > MATRIX_MAX_CLASSES and "confusion matrix" not in text
    assert text.splitlines()[-3:] == ["  class_07 -> class_03: 4", "  class_01 -> class_00: 2",
                                      "  class_50 -> class_51: 2"]
    assert max(len(line) for line in text.splitlines()) < 100
    assert most_confused(np.eye(3, dtype=int).tolist(), ["a", "b", "c"]) == []


def test_training_counts_are_listed_for_few_classes_and_summarised_for_many():
    assert describe_counts({"fresh": 32, "rotten": 4}) == "fresh: 32, rotten: 4"
    many = {f"topic {i}": 6 for i in range(40)} | {"rare": 2}
    assert describe_counts(many) == "41 classes, 2 to 6 a class; fewest: rare: 2, topic 0: 6, topic 1: 6"
    assert describe_counts({f"t{i}": 5 for i in range(20)}) == "20 classes, 5 a class"
