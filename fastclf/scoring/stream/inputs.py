"""The inputs of a streaming run: resolving a file, folder or glob into files, reading each
file's header (:func:`inspect_file`), and reading its rows in chunks (:func:`iter_chunks`)."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fastclf.data import read_table
from fastclf.data.columns import find_text_column
from fastclf.data.formats import (
    READ_ERRORS,
    compression_of,
    csv_options,
    csv_separator,
    format_of,
    is_supported,
    open_decompressed,
    read_error,
)
from fastclf.errors import DataError, DataFileNotFound, FastclfError

DEFAULT_CHUNK_SIZE = 2048
"""Rows read, scored and written at a time by the local engine."""

_GLOB_CHARS = ("*", "?", "[")

Chunks = Iterator[tuple[pd.DataFrame, int]]
"""Chunks of rows, each with the bytes of the file read so far."""


@dataclass
class FileJob:
    """One input file to score and where its rows go.

    Attributes:
        source: the input file.
        fmt: its format: ``csv``, ``tsv``, ``jsonl`` or ``parquet``.
        compression: pandas' name of its compression (``gzip``...), or None.
        text_column: the column holding the texts.
        columns: the input's columns, in order.
        rows: the number of rows when known without reading the file (Parquet), else None.
        size: the file's size in bytes.
        target: the output file, or None for CSV on stdout.
        json_array: the file is one JSON array (read whole), not JSON Lines.
        sep: a CSV or TSV file's separator (see :func:`fastclf.data.formats.separator`).
    """

    source: Path
    fmt: str
    compression: str | None
    text_column: str
    columns: list[str]
    rows: int | None
    size: int
    target: Path | None = None
    json_array: bool = field(default=False, repr=False)
    sep: str | None = field(default=None, repr=False)  # CSV/TSV: the separator its header line shows


def resolve_inputs(spec: str | Path) -> list[Path]:
    """The files an input stands for: a file, every supported file of a folder (sorted by
    name, hidden files skipped), or the files a glob pattern matches (sorted).

    Raises:
        DataFileNotFound: the path does not exist, or the pattern matches nothing.
        DataError: a folder holds no supported file, or a file has an unsupported type.
    """
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and is_supported(p))
        if not files:
            raise DataError(f"{path}: no .csv, .tsv, .jsonl or .parquet file in this folder")
        return files
    if path.exists():
        format_of(path)
        return [path]
    if any(c in text for c in _GLOB_CHARS):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not matches:
            raise DataFileNotFound(f"no file matches {text}")
        files = [p for p in matches if is_supported(p)]
        if not files:
            raise DataError(f"{text} matches no .csv, .tsv, .jsonl or .parquet file")
        return files
    raise DataFileNotFound(f"data file not found: {path}")


def is_multi(spec: str | Path) -> bool:
    """Whether an input stands for several files: a folder or a glob pattern."""
    text = str(spec)
    return Path(text).is_dir() or (not Path(text).exists() and any(c in text for c in _GLOB_CHARS))


def inspect_file(path: Path, text_column: str | None = None) -> FileJob:
    """Read the header of one input (no rows): its format, columns, text column and, for
    Parquet, its row count.

    Raises:
        DataFileNotFound: the file does not exist.
        DataError: unsupported type, unreadable, empty, not UTF-8, or no text column.
    """
    if not path.exists():
        raise DataFileNotFound(f"data file not found: {path}")
    fmt, compression = format_of(path), compression_of(path)
    rows: int | None = None
    json_array = False
    sep = None
    try:
        if fmt == "parquet":
            columns, rows = _parquet_header(path)
        elif fmt in ("csv", "tsv"):
            columns, sep = _csv_header(path, fmt, compression)
        else:
            columns, json_array = _json_header(path, compression)
    except FastclfError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no data rows") from None
    except READ_ERRORS as exc:
        raise read_error(path, fmt, exc) from None
    return FileJob(path, fmt, compression, find_text_column(columns, text_column, path), columns, rows,
                   path.stat().st_size, json_array=json_array, sep=sep)


def _parquet_header(path: Path) -> tuple[list[str], int]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path)
    rows = meta.metadata.num_rows
    if rows == 0:
        raise DataError(f"{path} has no data rows")
    return [n for n in meta.schema_arrow.names if not n.startswith("__index_level_")], rows


def _csv_header(path: Path, fmt: str, compression: str | None) -> tuple[list[str], str]:
    """The columns of a CSV or TSV file and its separator."""
    with open_decompressed(path) as fh:
        sep = csv_separator(path, fmt, fh.readline())
    with open(path, "rb") as fh:
        header = pd.read_csv(fh, nrows=0, compression=compression, **csv_options(fmt, sep))
    return [str(c) for c in header.columns], sep


def _json_header(path: Path, compression: str | None) -> tuple[list[str], bool]:
    """The columns of a JSON Lines file (its first row) or of a JSON array (read whole), and
    whether it is an array."""
    with open_decompressed(path) as fh:
        start = fh.read(4096).decode("utf-8", errors="replace").lstrip()
    if not start:
        raise DataError(f"{path} has no data rows")
    if start.startswith("["):  # a JSON array cannot be read in chunks: read it whole
        return [str(c) for c in read_table(path).columns], True
    first = next(iter(_jsonl_chunks(path, compression, 1)), None)
    if first is None:
        raise DataError(f"{path} has no data rows")
    return [str(c) for c in first[0].columns], False


def iter_chunks(job: FileJob, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Chunks:
    """The rows of ``job.source`` in chunks of at most ``chunk_size`` rows, each with the number
    of bytes of the file read so far (for Parquet and JSON arrays: the share of the file's size
    its rows stand for).

    CSV and TSV cells are read as strings (empty cells as missing), as :func:`fastclf.data.read_table` does.

    Raises:
        DataError: the file cannot be parsed, is not UTF-8, or has no rows.
    """
    if chunk_size < 1:
        raise DataError(f"chunk size must be at least 1, got {chunk_size}")
    if job.fmt == "parquet":
        chunks = _parquet_chunks(job, chunk_size)
    elif job.fmt in ("csv", "tsv"):
        chunks = _csv_chunks(job, chunk_size)
    elif job.json_array:
        chunks = _json_array_chunks(job, chunk_size)
    else:
        chunks = _jsonl_chunks(job.source, job.compression, chunk_size)
    n = 0
    try:
        for chunk, pos in chunks:
            chunk.columns = [str(c) for c in chunk.columns]
            n += len(chunk)
            if len(chunk):
                yield chunk, pos
    except FastclfError:
        raise
    except pd.errors.EmptyDataError:
        pass
    except READ_ERRORS as exc:  # damaged compressed files too
        raise read_error(job.source, job.fmt, exc) from None
    if n == 0:
        raise DataError(f"{job.source} has no data rows")


def _parquet_chunks(job: FileJob, chunk_size: int) -> Chunks:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(job.source)
    total = job.rows or pf.metadata.num_rows or 1
    n = 0
    for batch in pf.iter_batches(batch_size=chunk_size, columns=job.columns):
        chunk = batch.to_pandas()
        n += len(chunk)
        yield chunk, int(job.size * n / total)


def _csv_chunks(job: FileJob, chunk_size: int) -> Chunks:
    with open(job.source, "rb") as fh:
        # a blank line is a row (an empty text, refused by name), not skipped: skipping it would shift
        # every later row of a one-column file against the input it is scored from
        reader = pd.read_csv(fh, chunksize=chunk_size, compression=job.compression, skip_blank_lines=False,
                             **csv_options(job.fmt, job.sep))
        with reader:
            for chunk in reader:
                yield chunk, fh.tell()


def _json_array_chunks(job: FileJob, chunk_size: int) -> Chunks:
    df = read_table(job.source)
    for start in range(0, len(df), chunk_size):
        part = df.iloc[start:start + chunk_size]
        yield part, int(job.size * (start + len(part)) / len(df))


def _jsonl_chunks(path: Path, compression: str | None, chunk_size: int) -> Chunks:
    with open(path, "rb") as fh:
        reader = pd.read_json(fh, lines=True, chunksize=chunk_size, compression=compression, dtype=False,
                              encoding="utf-8")
        with reader:
            for chunk in reader:
                yield chunk, fh.tell()
