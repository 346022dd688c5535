"""Labeled data: :class:`LabeledData`, and reading texts with their labels (single-label,
multi-label by separator or list, or 0/1 label columns) or texts alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastclf.data.columns import (
    LABEL_COLUMNS,
    find_column,
    find_text_column,
    is_binary_column,
    is_missing,
    is_nested,
    refuse_cells,
    require_column,
)
from fastclf.data.formats import read_table
from fastclf.errors import DataError
from fastclf.texts import COUNTED, check_texts, rows

DEFAULT_LABEL_SEPARATOR = "|"


@dataclass
class LabeledData:
    """Texts with their labels (a string, or a list of strings if multi-label); ``classes``: the sorted labels."""

    texts: list[str]
    labels: list
    multi_label: bool = False
    classes: list[str] = field(default_factory=list)
    source: str = ""
    text_column: str = ""
    label_columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.classes:
            self.classes = sorted({c for row in self.labels for c in row} if self.multi_label else set(self.labels))

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        """Examples per class (for multi-label data: texts that carry each label)."""
        counter = Counter(c for row in self.labels for c in row) if self.multi_label else Counter(self.labels)
        return {c: counter.get(c, 0) for c in self.classes}

    def subset(self, indices: Iterable[int]) -> LabeledData:
        indices = list(indices)
        return replace(self, texts=[self.texts[i] for i in indices], labels=[self.labels[i] for i in indices],
                       classes=list(self.classes))

    def label_matrix(self) -> np.ndarray:
        """Multi-hot matrix (n, n_classes) of a multi-label set."""
        from sklearn.preprocessing import MultiLabelBinarizer

        return MultiLabelBinarizer(classes=self.classes).fit_transform(self.labels).astype(np.int64)


def read_labeled(path: str | Path, *, text_column: str | None = None, label_column: str | None = None,
                 label_columns: list[str] | None = None, label_separator: str = DEFAULT_LABEL_SEPARATOR) -> LabeledData:
    """Texts and labels of a data file, columns found by common names unless given. Multi-label when a
    label cell holds a list or ``label_separator``, or labels are 0/1 columns (given, or all other columns)."""
    if not isinstance(label_separator, str) or not label_separator:
        raise DataError("--label-separator must be at least one character")
    df = read_table(path)
    columns = list(df.columns)
    text_col = find_text_column(columns, text_column, path, sole_column=False)
    texts = check_texts(df[text_col].tolist(), path, column=text_col)

    if label_columns:
        for c in label_columns:
            require_column(columns, c, "--label-columns", path)
        return _from_binary_columns(df, list(label_columns), path, texts, text_col)

    label_col = (require_column(columns, label_column, "--label-column", path) if label_column
                 else find_column(columns, LABEL_COLUMNS, "label", "--label-column", path))
    if label_col is None:
        others = [c for c in columns if c != text_col]
        if len(others) >= 2 and all(is_binary_column(df[c]) for c in others):
            return _from_binary_columns(df, others, path, texts, text_col)
        raise DataError(f"{path}: no label column found (looked for {', '.join(LABEL_COLUMNS)}); "
                        f"columns are: {', '.join(columns)}; name it with --label-column")
    labels, multi = _labels_of(df[label_col].tolist(), label_col, label_separator, path)
    return LabeledData(texts, labels, multi_label=multi, source=str(path), text_column=text_col,
                       label_columns=[label_col])


def _labels_of(values: list[Any], column: str, separator: str, path: str | Path) -> tuple[list[Any], bool]:
    """The labels of a column: (a string a row, False), or (a sorted list of strings a row, True)."""
    refuse_cells(values, is_missing, lambda at: f"{path}: empty or missing label in column {column!r} at {at} "
                 f"{COUNTED}")
    refuse_cells(values, _not_a_label, lambda at: (f"{path}: column {column!r} holds an object (or a list of "
                                                   f"non-labels) at {at}; a label is a string, or a list of strings"))
    multi = any(isinstance(v, (list, tuple, np.ndarray)) or isinstance(v, str) and separator in v for v in values)
    if not multi:
        return [_label_str(v).strip() for v in values], False
    labels: list[list[str]] = []
    for v in values:
        parts = list(v) if isinstance(v, (list, tuple, np.ndarray)) else str(v).split(separator)
        labels.append(sorted({_label_str(p).strip() for p in parts if str(p).strip()}))
    return labels, True


def _not_a_label(value: Any) -> bool:
    """An object, or a list holding anything but labels."""
    return isinstance(value, (dict, set)) or is_nested(value) and any(is_nested(p) or p is None for p in value)


def _label_str(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _from_binary_columns(df: pd.DataFrame, columns: list[str], path: str | Path, texts: list[str],
                         text_column: str) -> LabeledData:
    """Multi-label data from 0/1 label ``columns`` (DataError for a cell that is empty or not 0/1)."""
    labels: list[list[str]] = [[] for _ in texts]
    for c in columns:
        for i, v in enumerate(df[c].tolist()):
            if is_missing(v):
                raise DataError(f"{path}: empty label cell in column {c!r} at {rows([i])}")
            s = str(v).strip().lower()
            if s in ("1", "1.0", "true"):
                labels[i].append(str(c))
            elif s not in ("0", "0.0", "false"):
                raise DataError(f"{path}: column {c!r} must hold 0 or 1, found {v!r} at {rows([i])}")
    return LabeledData(texts, labels, multi_label=True, classes=[str(c) for c in columns], source=str(path),
                       text_column=text_column, label_columns=list(columns))


def read_texts(path: str | Path, *, text_column: str | None = None) -> tuple[pd.DataFrame, str]:
    """A file of texts to predict: the table and its text column (by common names, or the only column)."""
    df = read_table(path)
    col = find_text_column(list(df.columns), text_column, path)
    check_texts(df[col].tolist(), path, column=col)
    return df, col
