"""Finding the text and label columns, and checking cells, with errors that name the rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastclf.errors import DataError

TEXT_COLUMNS = ("text", "sentence", "review", "content")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target")

_Where = str | Path  # the file (or description) an error message names


def find_column(columns: Sequence[str], names: tuple[str, ...], what: str, option: str, path: _Where) -> str | None:
    """The one column among ``columns`` with a common name (``names``, case and spaces ignored), or None.

    Raises:
        DataError: several columns have such names.
    """
    lower = {c.lower().strip(): c for c in columns}
    found = [lower[n] for n in names if n in lower]
    if len(found) > 1:
        raise DataError(f"{path}: several possible {what} columns ({', '.join(found)}); choose one with {option}")
    return found[0] if found else None


def require_column(columns: Sequence[str], name: str, option: str, path: _Where) -> str:
    """``name``, checked to be one of ``columns``.

    Raises:
        DataError: there is no such column.
    """
    if name not in columns:
        raise DataError(f"{path}: no column {name!r} (given with {option}); columns are: {', '.join(columns)}")
    return name


def find_text_column(columns: Sequence[str], text_column: str | None, path: _Where, *,
                     sole_column: bool = True) -> str:
    """The text column: ``text_column`` if given, else the one with a common name, else (with
    ``sole_column``) the only column.

    Raises:
        DataError: the named column is missing, several columns qualify, or none does.
    """
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


def rows(indices: Iterable[int]) -> str:
    """Describe 0-based data-row indices as 1-based row numbers, a few of them."""
    numbers = [int(i) + 1 for i in indices]
    shown = ", ".join(str(n) for n in numbers[:10])
    more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    return f"row{'s' if len(numbers) > 1 else ''} {shown}{more}"


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


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


COUNTED = "(rows counted from 1, header excluded)"


def refuse_cells(values: Sequence[Any], test: Callable[[Any], bool], message: Callable[[str], str], *,
                 offset: int = 0) -> None:
    """Raise a DataError if ``test`` holds for any cell; its text is ``message`` of those cells'
    rows (as "rows 3, 7"; ``offset``: the file row of the first cell, 0-based).

    Raises:
        DataError: some cell passes ``test``.
    """
    found = [offset + i for i, v in enumerate(values) if test(v)]
    if found:
        raise DataError(message(rows(found)))


def text_cells(values: Sequence[Any], column: str, path: _Where, *, offset: int = 0) -> list[str]:
    """The cells of a text column as strings; ``offset`` is the file row of the first cell (0-based).

    Raises:
        DataError: a cell holds a list or object, a lone surrogate, or is empty or missing
            (the message names the rows, counted from 1 in the whole file).
    """
    refuse_cells(values, is_nested, lambda at: (
        f"{path}: column {column!r} holds a list or object instead of a text at {at} {COUNTED}"), offset=offset)
    refuse_cells(values, lambda v: isinstance(v, str) and not _utf8_ok(v), lambda at: (
        f"{path}: invalid Unicode (a lone surrogate) in column {column!r} at {at}"), offset=offset)
    refuse_cells(values, is_missing, lambda at: (
        f"{path}: empty or missing text in column {column!r} at {at} {COUNTED}"), offset=offset)
    return [str(v) for v in values]


def is_binary_column(series: pd.Series) -> bool:
    """Whether every filled cell is 0 or 1 (or true/false)."""
    values = {str(v).strip() for v in series.tolist() if not is_missing(v)}
    return bool(values) and values <= {"0", "1", "0.0", "1.0", "True", "False", "true", "false"}
