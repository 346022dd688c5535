"""Streaming batch prediction of big files: read a chunk of rows, score it, write it, repeat.

Memory stays flat whatever the size of the input: only one chunk of rows (plus the model) is
held at a time. An input is a file, a folder (every supported file in it, sorted by name) or a
glob pattern (``corpus/*.parquet``); CSV, TSV, JSON Lines (also gzip/bz2/xz/zstd/zip
compressed) and Parquet are read. Each output is written to a temporary file beside it and
renamed into place when complete, so a failure or Ctrl-C leaves no partial output behind.

The output has the input's columns, then ``predicted`` (multi-label: the labels joined by
``|``) and one ``proba_<label>`` column per class, in ``clf.classes_`` order.

The Ray engine (:mod:`fastclf.ray`) reuses the planning and the writers of this module, so
both engines write the same files.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from . import data as _data
from ._util import atomic_write
from .errors import DataError, DataFileNotFound, FastclfError, first_line

DEFAULT_CHUNK_SIZE = 2048
"""Rows read, scored and written at a time by the local engine."""

_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}
_WRITABLE_COMPRESSION = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_GLOB_CHARS = ("*", "?", "[")


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


@dataclass
class ScoreResult:
    """What a scoring run wrote: rows scored in all, and the files written (empty for stdout)."""

    rows: int
    outputs: list[Path]


# ----------------------------------------------------------------------------- inputs


def _format_and_compression(path: Path) -> tuple[str, str | None]:
    fmt = _data._format_of(path)  # raises DataError on an unknown extension
    suffix = path.suffix.lower()
    return fmt, _COMPRESSION.get(suffix)


def _is_supported(path: Path) -> bool:
    try:
        _data._format_of(path)
    except DataError:
        return False
    return True


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
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _is_supported(p))
        if not files:
            raise DataError(f"{path}: no .csv, .tsv, .jsonl or .parquet file in this folder")
        return files
    if path.exists():
        _data._format_of(path)
        return [path]
    if any(c in text for c in _GLOB_CHARS):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not matches:
            raise DataFileNotFound(f"no file matches {text}")
        files = [p for p in matches if _is_supported(p)]
        if not files:
            raise DataError(f"{text} matches no .csv, .tsv, .jsonl or .parquet file")
        return files
    raise DataFileNotFound(f"data file not found: {path}")


def _is_multi(spec: str | Path) -> bool:
    text = str(spec)
    return Path(text).is_dir() or (not Path(text).exists() and any(c in text for c in _GLOB_CHARS))


def _open_binary(path: Path, compression: str | None) -> IO[bytes]:
    """The decompressed bytes of a file (used only to peek at its start)."""
    if compression in _WRITABLE_COMPRESSION:
        return _WRITABLE_COMPRESSION[compression](path, "rb")
    if compression == "zstd":
        import zstandard  # pandas needs it too for .zst

        return zstandard.open(path, "rb")
    if compression == "zip":
        import zipfile

        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if len(names) != 1:
            raise DataError(f"{path}: a .zip input must hold exactly one file, found {len(names)}")
        return archive.open(names[0])
    return open(path, "rb")


def _read_error(path: Path, fmt: str, exc: BaseException) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{path} is not UTF-8 text (invalid byte at position {exc.start}); re-save it as UTF-8")
    return DataError(f"{path}: cannot read as {fmt}: {first_line(exc)}")


def _find_text_column(columns: list[str], text_column: str | None, path: Path) -> str:
    """The text column among ``columns``, found as :func:`fastclf.data.read_texts` finds it."""
    frame = pd.DataFrame(columns=columns)
    if text_column:
        return _data._require_column(frame, text_column, "--text-column", path)
    col = _data._find_column(frame, _data.TEXT_COLUMNS, "text", "--text-column", path)
    if col is None and len(columns) == 1:
        col = columns[0]
    if col is None:
        raise DataError(
            f"{path}: no text column found (looked for {', '.join(_data.TEXT_COLUMNS)}); "
            f"columns are: {', '.join(columns)}; name it with --text-column"
        )
    return col


def inspect_file(path: Path, text_column: str | None = None) -> FileJob:
    """Read the header of one input (no rows): its format, columns, text column and, for
    Parquet, its row count.

    Raises:
        DataFileNotFound: the file does not exist.
        DataError: unsupported type, unreadable, empty, not UTF-8, or no text column.
    """
    if not path.exists():
        raise DataFileNotFound(f"data file not found: {path}")
    fmt, compression = _format_and_compression(path)
    size = path.stat().st_size
    rows: int | None = None
    json_array = False
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path)
            columns = [n for n in meta.schema_arrow.names if not n.startswith("__index_level_")]
            rows = meta.metadata.num_rows
            if rows == 0:
                raise DataError(f"{path} has no data rows")
        elif fmt in ("csv", "tsv"):
            with open(path, "rb") as fh:
                header = pd.read_csv(fh, sep="\t" if fmt == "tsv" else ",", nrows=0, encoding="utf-8",
                                     compression=compression, dtype=object)
            columns = [str(c) for c in header.columns]
        else:
            with _open_binary(path, compression) as fh:
                start = fh.read(4096).decode("utf-8", errors="replace").lstrip()
            if not start:
                raise DataError(f"{path} has no data rows")
            json_array = start.startswith("[")
            if json_array:  # a JSON array cannot be read in chunks: read it whole
                columns = [str(c) for c in _data.read_table(path).columns]
            else:
                first = next(iter(_jsonl_chunks(path, compression, 1)), None)
                if first is None:
                    raise DataError(f"{path} has no data rows")
                columns = [str(c) for c in first[0].columns]
    except FastclfError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no data rows") from None
    except (pd.errors.ParserError, ValueError, OSError, ImportError, UnicodeDecodeError, EOFError,
            zlib.error, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise _read_error(path, fmt, exc) from None
    return FileJob(path, fmt, compression, _find_text_column(columns, text_column, path), columns, rows, size,
                   json_array=json_array)


def _jsonl_chunks(path: Path, compression: str | None, chunk_size: int) -> Iterator[tuple[pd.DataFrame, int]]:
    with open(path, "rb") as fh:
        reader = pd.read_json(fh, lines=True, chunksize=chunk_size, compression=compression, dtype=False,
                              encoding="utf-8")
        with reader:
            for chunk in reader:
                yield chunk, fh.tell()


def iter_chunks(job: FileJob, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[tuple[pd.DataFrame, int]]:
    """The rows of ``job.source`` in chunks of at most ``chunk_size`` rows, each with the number
    of bytes of the file read so far (for Parquet: the share of the file's size its rows stand for).

    CSV and TSV cells are read as strings (empty cells as missing), as :func:`fastclf.data.read_table` does.

    Raises:
        DataError: the file cannot be parsed, is not UTF-8, or has no rows.
    """
    path, fmt = job.source, job.fmt
    if chunk_size < 1:
        raise DataError(f"chunk size must be at least 1, got {chunk_size}")
    n = 0
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            total = job.rows or pf.metadata.num_rows or 1
            for batch in pf.iter_batches(batch_size=chunk_size, columns=job.columns):
                chunk = batch.to_pandas()
                n += len(chunk)
                yield chunk, int(job.size * n / total)
        elif fmt in ("csv", "tsv"):
            with open(path, "rb") as fh:
                reader = pd.read_csv(fh, sep="\t" if fmt == "tsv" else ",", chunksize=chunk_size, encoding="utf-8",
                                     compression=job.compression, dtype=object, keep_default_na=False,
                                     na_values=[""])
                with reader:
                    for chunk in reader:
                        chunk.columns = [str(c) for c in chunk.columns]
                        n += len(chunk)
                        if len(chunk):
                            yield chunk, fh.tell()
        elif job.json_array:
            df = _data.read_table(path)
            for start in range(0, len(df), chunk_size):
                part = df.iloc[start:start + chunk_size]
                n += len(part)
                yield part, int(job.size * n / len(df))
        else:
            for chunk, pos in _jsonl_chunks(path, job.compression, chunk_size):
                chunk.columns = [str(c) for c in chunk.columns]
                n += len(chunk)
                yield chunk, pos
    except FastclfError:
        raise
    except pd.errors.EmptyDataError:
        pass
    except (pd.errors.ParserError, ValueError, OSError, UnicodeDecodeError, EOFError, zlib.error,
            zipfile.BadZipFile, lzma.LZMAError) as exc:  # damaged compressed files too
        raise _read_error(path, fmt, exc) from None
    if n == 0:
        raise DataError(f"{path} has no data rows")


def is_missing_text(value: Any) -> bool:
    """Whether a text cell is empty or missing (None, NaN, pandas' NA, blank)."""
    return value is pd.NA or value is pd.NaT or _data._is_missing(value)


def texts_of(chunk: pd.DataFrame, column: str, path: Path, offset: int) -> list[str]:
    """The texts of a chunk as strings.

    Raises:
        DataError: a text is empty or missing (rows counted from 1 in the whole file).
    """
    if column not in chunk.columns:
        raise DataError(f"{path}: no column {column!r} in rows {offset + 1}-{offset + len(chunk)}")
    values = chunk[column].tolist()
    bad = [offset + i for i, v in enumerate(values) if is_missing_text(v)]
    if bad:
        raise DataError(
            f"{path}: empty or missing text in column {column!r} at {_data._rows(bad)} "
            "(rows counted from 1, header excluded)"
        )
    return [str(v) for v in values]


def add_predictions(chunk: pd.DataFrame, proba: np.ndarray, labels: list, classes: Iterable[str],
                    multi_label: bool) -> pd.DataFrame:
    """``chunk`` with ``predicted`` and one ``proba_<label>`` column per class added (in place)."""
    chunk["predicted"] = ["|".join(row) for row in labels] if multi_label else list(labels)
    for c, col in zip(classes, np.asarray(proba).T):
        chunk[f"proba_{c}"] = col
    return chunk


# ----------------------------------------------------------------------------- outputs


def _output_format(path: Path) -> tuple[str, str | None]:
    """Format and compression of an output file by its name.

    Raises:
        DataError: an extension that is not a supported format (``.xlsx`` is not CSV), or a
            compression fastclf cannot write (.zst, .zip).
    """
    compression = _COMPRESSION.get(path.suffix.lower())
    if compression is not None and compression not in _WRITABLE_COMPRESSION:
        raise DataError(f"{path}: cannot write {path.suffix} files; use .gz, .bz2 or .xz, or no compression")
    try:
        fmt = _data._format_of(path)
    except DataError:
        raise DataError(f"--output {path}: unsupported file type; use .csv, .tsv, .jsonl or .parquet "
                        "(text formats may end in .gz, .bz2 or .xz)") from None
    if fmt == "parquet" and compression:
        raise DataError(f"{path}: Parquet is compressed inside; drop the {path.suffix} suffix")
    return fmt, compression


def _output_name(source: Path) -> str:
    """The output file's name for an input written into an output folder: the input's name,
    without a .zst/.zip suffix, which fastclf does not write."""
    name = source.name
    suffix = source.suffix.lower()
    if _COMPRESSION.get(suffix) and _COMPRESSION[suffix] not in _WRITABLE_COMPRESSION:
        name = name[: -len(suffix)]
    return name


def plan(input_spec: str | Path, output: str | Path | None, *, text_column: str | None = None) -> list[FileJob]:
    """Resolve the inputs, read their headers, and decide where each one's rows go.

    ``output`` is a folder (one output file per input, with the input's name) when it is an
    existing folder, ends with ``/``, or has no file extension while the input is a folder
    or a glob; otherwise it is one file that receives the rows of every input (their columns
    must then match). None writes CSV to stdout.

    Raises:
        DataFileNotFound, DataError: unreadable inputs, no text column, an output that
            would overwrite an input, two inputs writing one output file name, or inputs
            whose columns differ when they go to one file.
    """
    sources = resolve_inputs(input_spec)
    jobs = [inspect_file(p, text_column) for p in sources]
    if output is None:
        _check_same_columns(jobs, "stdout")
        return jobs
    out_text = str(output)
    out = Path(out_text)
    to_folder = (out.is_dir() or out_text.endswith(("/", os.sep))
                 or (_is_multi(input_spec) and not out.suffix))
    if to_folder:
        if out.exists() and not out.is_dir():
            raise DataError(f"{out} exists and is not a folder")
        seen: dict[str, Path] = {}
        for job in jobs:
            name = _output_name(job.source)
            if name in seen:
                raise DataError(f"{seen[name]} and {job.source} would both be written to {out / name}; "
                                "give inputs with distinct file names")
            seen[name] = job.source
            job.target = out / name
            _output_format(job.target)
    else:
        if out.is_dir():
            raise DataError(f"{out} is a folder")
        _output_format(out)
        _check_same_columns(jobs, str(out))
        for job in jobs:
            job.target = out
    inputs = {p.resolve() for p in sources}
    for job in jobs:
        if job.target is not None and job.target.resolve() in inputs:
            raise DataError(f"{job.target} is an input; write the scores to another file or folder")
    return jobs


def _check_same_columns(jobs: list[FileJob], where: str) -> None:
    first = jobs[0]
    for job in jobs[1:]:
        if job.columns != first.columns:
            raise DataError(f"{job.source} has other columns than {first.source} and both go to {where}; "
                            "write to an output folder (--output DIR/) instead")


class TableWriter:
    """Append scored chunks to one file (CSV, TSV, JSON Lines, optionally gzip/bz2/xz
    compressed, or Parquet); ``close()`` finishes it. Used on the temporary file of an atomic write.

    Raises:
        DataError (from :meth:`write`): a later chunk's column types cannot be stored in the
            Parquet schema set by the first chunk.
    """

    def __init__(self, path: Path, fmt: str, compression: str | None = None, *, label: Path | None = None):
        self.path, self.fmt, self.compression = Path(path), fmt, compression
        self.label = label or self.path
        self.rows = 0
        self._handle: IO[str] | None = None
        self._parquet: Any = None
        self._schema: Any = None

    def _text_handle(self) -> IO[str]:
        if self._handle is None:
            opener = _WRITABLE_COMPRESSION.get(self.compression or "")
            if opener is not None:
                self._handle = opener(self.path, "wt", encoding="utf-8", newline="")
            else:
                self._handle = open(self.path, "w", encoding="utf-8", newline="")
        return self._handle

    def write(self, df: pd.DataFrame) -> None:
        """Append the rows of ``df``."""
        if self.fmt == "parquet":
            self._write_parquet(df)
        elif self.fmt == "jsonl":
            text = df.to_json(orient="records", lines=True, force_ascii=False) if len(df) else ""
            if text and not text.endswith("\n"):
                text += "\n"
            self._text_handle().write(text)
        else:
            df.to_csv(self._text_handle(), sep="\t" if self.fmt == "tsv" else ",", index=False,
                      header=self.rows == 0)
        self.rows += len(df)

    def _write_parquet(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._parquet is None:
            # a column that is empty in the first chunk has type null: store it as strings
            fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            self._schema = pa.schema(fields, metadata=table.schema.metadata)
            self._parquet = pq.ParquetWriter(self.path, self._schema)
        if table.schema != self._schema:
            try:
                table = table.select(self._schema.names).cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as exc:
                raise DataError(f"{self.label}: rows {self.rows + 1}-{self.rows + len(df)} do not fit the column "
                                f"types of the first rows ({first_line(exc)}); write CSV or JSON Lines instead") from None
        self._parquet.write_table(table)

    def close(self) -> None:
        """Finish the file (an empty Parquet output still gets a valid file)."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        elif self.fmt != "parquet" and self.rows == 0:
            self.path.write_bytes(b"")


# ----------------------------------------------------------------------------- running


ScoredChunks = Callable[[FileJob], Iterator[tuple[pd.DataFrame, float]]]
"""An engine: for one input, its scored chunks, each with how far the progress bar advances."""


def progress_bar(jobs: list[FileJob], *, by_bytes: bool, enabled: bool, desc: str = "scoring"):
    """A tqdm bar over all inputs: rows when every row count is known (Parquet), else bytes
    read of the total (``by_bytes``) or rows without a total. Off when ``enabled`` is False or
    stderr is not a terminal."""
    from tqdm.auto import tqdm

    rows = [j.rows for j in jobs]
    if all(r is not None for r in rows):
        return tqdm(total=sum(rows), unit="rows", desc=desc, disable=None if enabled else True, unit_scale=True)
    if by_bytes:
        return tqdm(total=sum(j.size for j in jobs), unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                    disable=None if enabled else True)
    return tqdm(unit="rows", desc=desc, disable=None if enabled else True, unit_scale=True)


def write_jobs(jobs: list[FileJob], scored: ScoredChunks, bar: Any, *, stdout: IO[str] | None = None) -> ScoreResult:
    """Write the scored chunks of every job: to stdout (CSV) when the jobs have no target,
    else each target atomically (a temporary file beside it, renamed when complete).

    Raises:
        whatever ``scored`` raises; the output being written is then removed.
    """
    total = 0
    outputs: list[Path] = []
    if jobs and jobs[0].target is None:
        out = stdout if stdout is not None else sys.stdout
        header = True
        for job in jobs:
            for chunk, advance in scored(job):
                if len(chunk):
                    chunk.to_csv(out, index=False, header=header)
                    header = False
                    total += len(chunk)
                bar.update(advance)
        out.flush()
        return ScoreResult(total, outputs)
    groups: dict[Path, list[FileJob]] = {}
    for job in jobs:
        groups.setdefault(job.target, []).append(job)
    for target, group in groups.items():
        fmt, compression = _output_format(target)
        written = [0]

        def fill(tmp: Path, group: list[FileJob] = group, fmt: str = fmt, compression: str | None = compression,
                 target: Path = target, written: list[int] = written) -> None:
            writer = TableWriter(tmp, fmt, compression, label=target)
            try:
                for job in group:
                    for chunk, advance in scored(job):
                        if len(chunk):
                            writer.write(chunk)
                        bar.update(advance)
            finally:
                writer.close()
            written[0] = writer.rows

        atomic_write(target, fill)
        total += written[0]
        outputs.append(target)
    return ScoreResult(total, outputs)


def local_engine(clf: Any, *, batch_size: int = 32, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 by_bytes: bool = True) -> ScoredChunks:
    """The in-process engine: read a chunk, ``clf.predict_proba`` it, hand it on.

    The progress advance of a chunk is the bytes read since the last chunk (``by_bytes``), else its rows.
    """
    classes = [str(c) for c in clf.classes_]

    def scored(job: FileJob) -> Iterator[tuple[pd.DataFrame, float]]:
        offset = 0
        last = 0
        for chunk, pos in iter_chunks(job, chunk_size):
            texts = texts_of(chunk, job.text_column, job.source, offset)
            proba = clf.predict_proba(texts, batch_size=batch_size)
            add_predictions(chunk, proba, clf.labels_from_proba(proba), classes, clf.multi_label)
            offset += len(chunk)
            advance = (pos - last) if by_bytes else len(chunk)
            last = pos
            yield chunk, advance
        if by_bytes and job.rows is None and job.size > last:
            yield chunk.iloc[:0], job.size - last  # the bar ends at the file's size (read-ahead, compression)

    return scored


def predict_files(clf: Any, input_spec: str | Path, output: str | Path | None, *, text_column: str | None = None,
                  batch_size: int = 32, chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool = False,
                  stdout: IO[str] | None = None) -> ScoreResult:
    """Score a file, a folder of files or a glob pattern with ``clf`` in chunks of rows, and write
    the rows with ``predicted`` and ``proba_<label>`` columns to ``output`` (see :func:`plan`;
    None: CSV on stdout). Each output file appears complete or not at all.

    Raises:
        DataFileNotFound, DataError: bad inputs or outputs (checked before any scoring where
            possible: every input's header is read first).
    """
    jobs = plan(input_spec, output, text_column=text_column)
    by_bytes = not all(j.rows is not None for j in jobs)
    with progress_bar(jobs, by_bytes=True, enabled=progress) as bar:
        return write_jobs(jobs, local_engine(clf, batch_size=batch_size, chunk_size=chunk_size, by_bytes=by_bytes),
                          bar, stdout=stdout)
