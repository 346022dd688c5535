"""Reading a whole data file (CSV, TSV, JSON Lines or array, Parquet; compressed too) into a DataFrame."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from fastclf._util import load_json_as
from fastclf.data.formats import csv_options, csv_separator, format_of, read_bytes, read_error
from fastclf.errors import DataError, DataFileNotFound, first_line


def read_table(path: str | Path) -> pd.DataFrame:
    """A data file as a DataFrame (CSV cells as strings, empty ones missing), every error one clear line.

    Raises:
        DataFileNotFound, DataError: not decompressed or parsed, not UTF-8, no rows, duplicate column names.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileNotFound(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a data file")
    fmt = format_of(path)
    try:
        data = read_bytes(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {first_line(exc)}") from None
    try:
        df = _parse(path, fmt, data)
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # pandas, pyarrow and csv raise many types for a malformed file
        raise read_error(path, fmt, exc) from None
    if len(df) == 0:
        raise DataError(f"{path} has no data rows")
    df.columns = [str(c) for c in df.columns]
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise DataError(f"{path}: duplicate column names: {', '.join(dup)}")
    return df


def _parse(path: Path, fmt: str, data: bytes) -> pd.DataFrame:
    if fmt in ("csv", "tsv"):
        data.decode("utf-8")  # a clear message for a file that is not UTF-8
        return pd.read_csv(io.BytesIO(data), **csv_options(fmt, csv_separator(path, fmt, data)))
    if fmt == "jsonl":
        return _read_json(path, data)
    return pd.read_parquet(io.BytesIO(data))


def _read_json(path: Path, data: bytes) -> pd.DataFrame:
    """JSON Lines (one object a line), or one JSON array of objects."""
    text = data.decode("utf-8").lstrip("\ufeff")
    if text.lstrip().startswith("["):
        records = load_json_as(text, list, DataError, lambda exc: f"{path}: invalid JSON: {first_line(exc)}",
                               f"{path}: expected a JSON array of objects")
        for i, row in enumerate(records):
            if not isinstance(row, dict):
                raise DataError(f"{path}: item {i + 1} of the JSON array is {type(row).__name__}, not an object")
        return pd.DataFrame.from_records(records)
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        rows.append(load_json_as(
            line, dict, DataError,
            lambda exc: f"{path}: line {lineno} is not valid JSON: "  # noqa: B023
                        f"{getattr(exc, 'msg', first_line(exc))}",
            f"{path}: line {lineno} is not a JSON object"))
    return pd.DataFrame.from_records(rows)
