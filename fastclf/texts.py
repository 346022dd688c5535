"""The one place that checks the texts given to a classifier or a body, and the batch size.

The rule, the same for the Python API (``predict``, ``predict_proba``, ``embed``), command-line
texts and ``--input`` files: every text is a ``str`` with at least one non-space character and
valid Unicode (no lone surrogates). An empty text carries nothing to classify, so it is refused
with its position instead of getting a confident-looking label. The runtimes' ``encode`` trusts
texts checked here (or by the readers, which name rows).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping

from fastclf.errors import DataError

_DECODE = "decode them first, e.g. data.decode('utf-8')"


def check_texts(texts: str | Iterable[str]) -> list[str]:
    """Return ``texts`` as a list of strings, after checking every item.

    A single string is one text.

    Raises:
        TypeError: ``texts`` is bytes, a set (no defined order), a mapping, not iterable, or
            holds an item that is not a string.
        DataError: an item is empty or whitespace only, or is not valid Unicode.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray, memoryview)):
        raise TypeError(f"texts are bytes: {_DECODE}")
    elif isinstance(texts, (set, frozenset)):
        raise TypeError("texts must be an ordered sequence (list, tuple, array), not a set: a set has no "
                        "defined order, so results could not be matched to texts; pass a list")
    elif isinstance(texts, Mapping):
        raise TypeError("texts must be a sequence of strings, not a mapping; pass list(d.values())")
    else:
        try:
            texts = list(texts)
        except TypeError:
            raise TypeError(f"texts must be a string or a sequence of strings, not {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            if isinstance(t, (bytes, bytearray, memoryview)):
                raise TypeError(f"texts must be strings; item {i} is bytes: {_DECODE}")
            raise TypeError(f"texts must be strings; item {i} is {type(t).__name__}")
        if not t.strip():
            raise DataError(f"text {i} (counted from 0) is empty or only whitespace; there is nothing to classify")
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise DataError(
                    f"text {i} (counted from 0) is not valid Unicode: a lone surrogate {t[exc.start]!r} "
                    f"at character {exc.start} (decode the source with errors='replace')"
                ) from None
    return texts


def check_batch_size(batch_size: object, name: str = "batch_size") -> int:
    """Return ``batch_size`` as an int.

    Raises:
        TypeError: it is not an integer (a bool, a float such as 1.5, a string).
        DataError: it is smaller than 1.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {type(batch_size).__name__} ({batch_size!r})")
    if batch_size < 1:
        raise DataError(f"{name} must be at least 1, got {batch_size}")
    return int(batch_size)
