"""Labeled data: :class:`LabeledData`; finding the text and label columns and reading texts with their labels
(single-label, multi-label by separator or list, or 0/1 label columns) or texts alone, errors naming the rows;
checking the data can train, and drawing shots and hold-out sets from it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastclf.data.formats import read_table
from fastclf.errors import DataError
from fastclf.texts import COUNTED, check_texts, rows

TEXT_COLUMNS = ("text", "sentence", "review", "content")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target")


def find_column(columns: Sequence[str], names: tuple[str, ...], what: str, option: str, path: str | Path) -> str | None:
    """The one column named one of ``names`` (case and spaces ignored), or None; DataError if several are."""
    lower = {c.lower().strip(): c for c in columns}
    found = [lower[n] for n in names if n in lower]
    if len(found) > 1:
        raise DataError(f"{path}: several possible {what} columns ({', '.join(found)}); choose one with {option}")
    return found[0] if found else None


def require_column(columns: Sequence[str], name: str, option: str, path: str | Path) -> str:
    """``name``, checked to be one of ``columns`` (DataError if not)."""
    if name not in columns:
        raise DataError(f"{path}: no column {name!r} (given with {option}); columns are: {', '.join(columns)}")
    return name


def find_text_column(columns: Sequence[str], text_column: str | None, path: str | Path, *,
                     sole_column: bool = True) -> str:
    """The text column: ``text_column`` if given, else the one with a common name, else (with
    ``sole_column``) the only column; DataError if none or several qualify."""
    if text_column:
        return require_column(columns, text_column, "--text-column", path)
    col = find_column(columns, TEXT_COLUMNS, "text", "--text-column", path)
    if col is None and sole_column and len(columns) == 1:
        col = columns[0]
    if col is None:
        raise DataError(f"{path}: no text column found (looked for {', '.join(TEXT_COLUMNS)}); "
                        f"columns are: {', '.join(columns)}; name it with --text-column")
    return col


def is_missing(value: Any) -> bool:
    """Whether a cell is empty or missing: None, NaN, pandas' NA, blank, or an empty list."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    if isinstance(value, str):
        return not value.strip()
    return bool(pd.isna(value))


def is_nested(value: Any) -> bool:
    """Whether a cell holds a list or an object instead of a scalar."""
    return isinstance(value, (list, tuple, dict, set, np.ndarray))


def refuse_cells(values: Sequence[Any], test: Callable[[Any], bool], message: Callable[[str], str]) -> None:
    """Raise a DataError, ``message`` of the rows (as "rows 3, 7"), if ``test`` holds for any cell."""
    found = [i for i, v in enumerate(values) if test(v)]
    if found:
        raise DataError(message(rows(found)))


def is_binary_column(series: pd.Series) -> bool:
    """Whether every filled cell is 0 or 1 (or true/false)."""
    values = {str(v).strip() for v in series.tolist() if not is_missing(v)}
    return bool(values) and values <= {"0", "1", "0.0", "1.0", "True", "False", "true", "false"}


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


def validate_for_training(data: LabeledData) -> None:
    """DataError unless the data can train a classifier: two classes (labels) or more, two examples each."""
    counts = data.counts()
    if len(counts) < 2 and data.multi_label:
        raise DataError(f"{data.source}: multi-label data needs at least two labels, found {list(counts)}")
    if len(counts) < 2:
        raise DataError(f"{data.source}: only one class ({next(iter(counts), '')!r}); a classifier needs at least two")
    rare = ", ".join(repr(c) for c, k in counts.items() if k < 2)
    if rare and data.multi_label:
        raise DataError(f"{data.source}: label(s) {rare} appear on fewer than 2 texts; "
                        "every label needs at least 2 examples")
    if rare:
        raise DataError(f"{data.source}: class(es) {rare} have a single example; every class needs at least 2")
    always = ", ".join(repr(c) for c, k in counts.items() if k == len(data))  # single-label: caught above
    if always:
        raise DataError(f"{data.source}: label(s) {always} are on every text; a label needs negative examples too")


def sample_shots(data: LabeledData, shots: int, seed: int = 42) -> tuple[LabeledData, LabeledData]:
    """(sampled, rest): ``shots`` examples of each class drawn (seeded), all of a smaller class; multi-label:
    texts drawn until every label has ``shots``. DataError for ``shots`` below 2."""
    if shots < 2:
        raise DataError(f"--shots must be at least 2, got {shots}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    chosen: set[int] = set()
    have: Counter = Counter()
    for i in order:
        labels = data.labels[i] if data.multi_label else [data.labels[i]]
        if any(have[c] < shots for c in labels):
            chosen.add(int(i))
            have.update(labels)
    return data.subset(sorted(chosen)), data.subset(i for i in range(len(data)) if i not in chosen)


def split_holdout(data: LabeledData, fraction: float, seed: int = 42) -> tuple[LabeledData, LabeledData]:
    """(train, held_out): a stratified ``fraction`` of the rows held out (a group of 4 rows or more keeps 2).
    DataError for a fraction not between 0 and 1, or nothing to hold out."""
    if not 0 < fraction < 1:
        raise DataError(f"--holdout must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    keys = [("|".join(labels) if data.multi_label else labels) for labels in data.labels]
    held: set[int] = set()
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        rng.shuffle(idx)
        n_held = min(max(int(round(len(idx) * fraction)), 1), len(idx) - 2) if len(idx) >= 4 else 0
        held.update(idx[:n_held])
    if not held:
        raise DataError(f"{data.source}: too few rows to hold out {fraction:.0%} for evaluation; use --eval FILE")
    return data.subset(i for i in range(len(data)) if i not in held), data.subset(sorted(held))
