"""Finding the text and label columns, and checking label cells, with errors that name the rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastclf.errors import DataError
from fastclf.texts import rows

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
        raise DataError(
            f"{path}: no text column found (looked for {', '.join(TEXT_COLUMNS)}); "
            f"columns are: {', '.join(columns)}; name it with --text-column"
        )
    return col


def is_missing(value: Any) -> bool:
    """Whether a cell is empty or missing: None, NaN, pandas' NA, blank, or an empty list."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return isinstance(value, str) and not value.strip()


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
