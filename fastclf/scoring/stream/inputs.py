"""The inputs of a streaming run: a file, folder or glob resolved into files, each file's header
(:func:`inspect_file`) and its rows in chunks (:func:`iter_chunks`)."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fastclf.data import read_table
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
from fastclf.data.labeled import find_text_column
from fastclf.errors import DataError, DataFileNotFound, FastclfError

DEFAULT_CHUNK_SIZE = 2048  # rows read, scored and written at a time by the local engine

_GLOB_CHARS = ("*", "?", "[")

Chunks = Iterator[tuple[pd.DataFrame, int]]  # chunks of rows, each with the bytes of the file read so far


@dataclass
class FileJob:
    """One input file to score (its format, compression, text column and columns) and where its rows go."""

    source: Path
    fmt: str  # csv, tsv, jsonl or parquet
    compression: str | None  # pandas' name (gzip...)
    text_column: str
    columns: list[str]
    rows: int | None  # known without reading the file (Parquet), else None
    size: int  # bytes
    target: Path | None = None  # None: CSV on stdout
    json_array: bool = field(default=False, repr=False)  # one JSON array (read whole), not JSON Lines
    sep: str | None = field(default=None, repr=False)  # CSV/TSV: the separator its header line shows


def resolve_inputs(spec: str | Path) -> list[Path]:
    """The files an input stands for: a file, every supported file of a folder (sorted by name, hidden
    files skipped), or the files a glob pattern matches (sorted)."""
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


def is_multi(spec: str | Path) -> bool:  # a folder or a glob pattern
    text = str(spec)
    return Path(text).is_dir() or (not Path(text).exists() and any(c in text for c in _GLOB_CHARS))


def inspect_file(path: Path, text_column: str | None = None) -> FileJob:
    """One input's format, separator, columns (from its first row), text column and, for Parquet, row count."""
    job = FileJob(path, format_of(path), compression_of(path), "", [], None, path.stat().st_size)
    try:
        if job.fmt == "parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path)
            job.rows = meta.metadata.num_rows
            job.columns = [n for n in meta.schema_arrow.names if not n.startswith("__index_level_")]
        else:
            with open_decompressed(path) as fh:
                if job.fmt == "jsonl":  # a JSON array cannot be read in chunks: it is read whole
                    job.json_array = fh.read(4096).lstrip().startswith(b"[")
                else:
                    job.sep = csv_separator(path, job.fmt, fh.readline())
    except FastclfError:
        raise
    except READ_ERRORS as exc:
        raise read_error(path, job.fmt, exc) from None
    if job.rows == 0:
        raise DataError(f"{path} has no data rows")
    if job.rows is None:
        job.columns = [str(c) for c in next(iter_chunks(job, 1))[0].columns]
    job.text_column = find_text_column(job.columns, text_column, path)
    return job


def iter_chunks(job: FileJob, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Chunks:
    """The rows of ``job.source`` in chunks, each with the bytes read so far (Parquet, JSON arrays: the share of the
    size its rows stand for); CSV cells are strings (empty ones missing), as :func:`fastclf.data.read_table` reads."""
    n = 0
    try:
        for chunk, pos in _chunks(job, chunk_size):
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


def _chunks(job: FileJob, chunk_size: int) -> Chunks:
    if job.fmt == "parquet":
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(job.source).iter_batches(batch_size=chunk_size, columns=job.columns):
            n += batch.num_rows
            yield batch.to_pandas(), int(job.size * n / (job.rows or 1))
        return
    if job.json_array:
        df = read_table(job.source)
        for start in range(0, len(df), chunk_size):
            yield df.iloc[start:start + chunk_size], int(job.size * min(start + chunk_size, len(df)) / len(df))
        return
    with open(job.source, "rb") as fh:
        if job.fmt == "jsonl":
            reader = pd.read_json(fh, lines=True, chunksize=chunk_size, compression=job.compression, dtype=False,
                                  encoding="utf-8")
        else:  # a blank line is a row (an empty text, refused by name): skipping it would shift the later rows
            reader = pd.read_csv(fh, chunksize=chunk_size, compression=job.compression, skip_blank_lines=False,
                                 **csv_options(job.fmt, job.sep))
        with reader:
            for chunk in reader:
                yield chunk, fh.tell()
