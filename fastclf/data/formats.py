"""Reading a data file (CSV, TSV, JSON Lines or array, Parquet; compressed too): formats and compressions by
suffix, decompressed bytes, the whole file as a DataFrame, and the one-line read error."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd

from fastclf.errors import DataError, DataFileNotFound, first_line

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
#: compression suffixes and pandas' names for them
COMPRESSION_NAMES = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}
#: the compressions fastclf also writes, with their openers
WRITABLE_COMPRESSION: dict[str, Callable[..., IO[Any]]] = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
#: what reading a malformed, damaged or truncated file raises (besides DataError)
READ_ERRORS: tuple[type[BaseException], ...] = (
    pd.errors.ParserError, ValueError, OSError, ImportError, UnicodeDecodeError, EOFError, zlib.error,
    zipfile.BadZipFile, lzma.LZMAError)


def _format(path: Path) -> str | None:
    plain = path.with_suffix("") if compression_of(path) else path  # data.csv.gz: data.csv
    return FORMATS.get(plain.suffix.lower())


def format_of(path: Path) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet`` by the file's suffix (after a compression suffix)."""
    fmt = _format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix or '(none)'!r}; use .csv, .tsv, .jsonl or .parquet")
    return fmt


def compression_of(path: Path) -> str | None:
    """pandas' name of the file's compression (``gzip``...), or None."""
    return COMPRESSION_NAMES.get(path.suffix.lower())


def is_supported(path: Path) -> bool:
    """Whether :func:`format_of` knows the file's suffix."""
    return _format(path) is not None


#: a CSV or TSV header with more columns is refused before pandas parses it (gigabytes of memory otherwise)
MAX_COLUMNS = 10_000


def csv_separator(path: Path, fmt: str, data: bytes) -> str:
    """The separator of a CSV or TSV file starting with ``data``: the format's own unless the header has only another
    (``;`` or tab in a ``.csv``, comma in a ``.tsv``); DataError: over :data:`MAX_COLUMNS` columns, a name twice."""
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    own = "\t" if fmt == "tsv" else ","
    sep = own if own in header else next((s for s in ("\t", ";", ",") if s in header), own)
    n = header.count(sep) + 1
    if n > MAX_COLUMNS:
        raise DataError(f"{path}: the header has {n:,} columns, more than fastclf reads ({MAX_COLUMNS:,}); "
                        "is this a table of texts?")
    names = [c.strip() for c in next(csv.reader([header.rstrip("\r")], delimiter=sep), [])]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:  # pandas would rename the second one (text.1) and use the first without a word
        raise DataError(f"{path}: duplicate column names: {', '.join(dup)}")
    return sep


def csv_options(fmt: str, sep: str | None = None) -> dict[str, Any]:
    """``pandas.read_csv`` options of a CSV or TSV file: cells as strings, empty cells missing."""
    return {"sep": sep or ("\t" if fmt == "tsv" else ","), "encoding": "utf-8", "dtype": object,
            "keep_default_na": False, "na_values": [""]}


def open_decompressed(path: Path, fileobj: IO[bytes] | None = None) -> IO[bytes]:
    """The decompressed bytes of ``path`` (or of ``fileobj``, its bytes already read), by its last suffix.
    DataError for a .zip not holding exactly one file, or a .zst without the zstandard package."""
    compression = compression_of(path)
    source: Path | IO[bytes] = fileobj if fileobj is not None else path
    if compression in WRITABLE_COMPRESSION:
        return WRITABLE_COMPRESSION[compression](source, "rb")
    if compression == "zstd":
        try:
            import zstandard  # pandas needs it too for .zst
        except ImportError:
            raise DataError(f"{path}: reading .zst files needs the zstandard package: pip install zstandard") from None
        return zstandard.open(source, "rb")
    if compression == "zip":
        archive = zipfile.ZipFile(source)
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            archive.close()
            raise DataError(f"{path}: a .zip data file must hold exactly one file, found {len(members)}")
        return archive.open(members[0])
    return fileobj if fileobj is not None else open(path, "rb")


def read_bytes(path: Path) -> bytes:
    """All the decompressed bytes of ``path``; DataError for a damaged or truncated file."""
    raw = path.read_bytes()
    if compression_of(path) is None:
        return raw
    try:
        with open_decompressed(path, io.BytesIO(raw)) as fh:
            return fh.read()
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # zlib.error, EOFError (truncated), OSError, LZMAError, BadZipFile, ZstdError...
        raise DataError(f"{path}: cannot decompress ({path.suffix.lower()}): the file is damaged or truncated "
                        f"({type(exc).__name__}: {first_line(exc)})") from None


def read_error(path: Path, fmt: str, exc: BaseException) -> DataError:
    """The one-line error for a file that cannot be read as ``fmt``."""
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{path} is not UTF-8 text (invalid byte at position {exc.start}); re-save it as UTF-8")
    return DataError(f"{path}: cannot read as {fmt}: {first_line(exc)}")


def read_table(path: str | Path) -> pd.DataFrame:
    """A data file as a DataFrame (CSV cells as strings, empty ones missing); DataFileNotFound, or DataError
    (not decompressed or parsed, not UTF-8, no rows, duplicate column names) in one clear line."""
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
        try:
            records = json.loads(text)  # a list: the text starts with "["
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DataError(f"{path}: invalid JSON: {first_line(exc)}") from None
        for i, row in enumerate(records):
            if not isinstance(row, dict):
                raise DataError(f"{path}: item {i + 1} of the JSON array is {type(row).__name__}, not an object")
        return pd.DataFrame.from_records(records)
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DataError(f"{path}: line {lineno} is not valid JSON: {getattr(exc, 'msg', exc)}") from None
        if not isinstance(rows[-1], dict):
            raise DataError(f"{path}: line {lineno} is not a JSON object")
    return pd.DataFrame.from_records(rows)
