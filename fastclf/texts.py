"""The one check of the texts given to a classifier (API, readers, streaming, server, Ray), and of batch sizes:
every text is a non-blank ``str`` of valid Unicode; the runtimes trust texts checked here."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fastclf.errors import DataError

_DECODE = "decode them first, e.g. data.decode('utf-8')"
COUNTED = "(rows counted from 1, header excluded)"
_SURROGATE = re.compile("[\ud800-\udfff]")  # what UTF-8 cannot encode


def rows(indices: Iterable[int]) -> str:
    """0-based data-row indices as 1-based row numbers, a few of them ("rows 3, 7")."""
    numbers = [int(i) + 1 for i in indices]
    more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    return f"row{'s' if len(numbers) > 1 else ''} {', '.join(str(n) for n in numbers[:10])}{more}"


def check_texts(texts: Any, source: str | Path | None = None, *, column: str = "text", offset: int = 0) -> list[str]:
    """``texts`` as a list of checked strings; with ``source`` (a file), the cells of ``column`` from file row
    ``offset`` (0-based), errors naming the rows. TypeError: bytes, set, mapping, non-string; DataError: bad text."""
    def refuse(found: list[int], item: str, cells: str) -> None:
        if found and source is None:
            raise DataError(f"text {found[0]} (counted from 0) {item}")
        if found:
            raise DataError(f"{source}: {cells.format(column=column)} at {rows(offset + i for i in found)} {COUNTED}")

    if source is None:
        items = _as_list(texts)
    else:
        from fastclf.data.labeled import is_missing, is_nested

        cells = list(texts)
        refuse([i for i, v in enumerate(cells) if is_nested(v)], "",
               "column {column!r} holds a list or object instead of a text")
        items = ["" if is_missing(v) else str(v) for v in cells]
    refuse([i for i, t in enumerate(items) if not t.strip()],
           "is empty or only whitespace; there is nothing to classify", "empty or missing text in column {column!r}")
    refuse([i for i, t in enumerate(items) if _SURROGATE.search(t)],
           "is not valid Unicode (a lone surrogate); decode the source with errors='replace'",
           "invalid Unicode (a lone surrogate) in column {column!r}")
    return items


def _as_list(texts: Any) -> list[str]:
    """An API argument as a list of strings: a string is one text; a set or mapping has no useful order."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray, memoryview)):
        raise TypeError(f"texts are bytes: {_DECODE}")
    if isinstance(texts, (set, frozenset)):
        raise TypeError("texts must be an ordered sequence (list, tuple, array), not a set: a set has no "
                        "defined order, so results could not be matched to texts; pass a list")
    if isinstance(texts, Mapping):
        raise TypeError("texts must be a sequence of strings, not a mapping; pass list(d.values())")
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a string or a sequence of strings, not {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            hint = f": {_DECODE}" if isinstance(t, (bytes, bytearray, memoryview)) else ""
            raise TypeError(f"texts must be strings; item {i} is {type(t).__name__}{hint}")
    return items


def check_batch_size(batch_size: object, name: str = "batch_size") -> int:
    """``batch_size`` as an int; TypeError for a non-integer, DataError below 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {type(batch_size).__name__} ({batch_size!r})")
    if batch_size < 1:
        raise DataError(f"{name} must be at least 1, got {batch_size}")
    return int(batch_size)
