"""The outputs of a streaming run: output formats by name, :class:`TableWriter` (appending
chunks to one file), and :func:`write_jobs` (every job's scored chunks to stdout or, atomically,
to its target file)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from fastclf._util import atomic_write
from fastclf.data.formats import COMPRESSION_NAMES, WRITABLE_COMPRESSION, compression_of, format_of
from fastclf.errors import DataError, first_line
from fastclf.scoring.stream.inputs import FileJob

ScoredChunks = Callable[[FileJob], Iterator[tuple[pd.DataFrame, float]]]
"""An engine: for one input, its scored chunks, each with how far the progress bar advances."""


@dataclass
class ScoreResult:
    """What a scoring run wrote: rows scored in all, and the files written (empty for stdout)."""

    rows: int
    outputs: list[Path]


def output_format(path: Path) -> tuple[str, str | None]:
    """Format and compression of an output file by its name.

    Raises:
        DataError: an extension that is not a supported format (``.xlsx`` is not CSV), or a
            compression fastclf cannot write (.zst, .zip).
    """
    compression = compression_of(path)
    if compression is not None and compression not in WRITABLE_COMPRESSION:
        raise DataError(f"{path}: cannot write {path.suffix} files; use .gz, .bz2 or .xz, or no compression")
    try:
        fmt = format_of(path)
    except DataError:
        raise DataError(f"--output {path}: unsupported file type; use .csv, .tsv, .jsonl or .parquet "
                        "(text formats may end in .gz, .bz2 or .xz)") from None
    if fmt == "parquet" and compression:
        raise DataError(f"{path}: Parquet is compressed inside; drop the {path.suffix} suffix")
    return fmt, compression


def output_name(source: Path) -> str:
    """The output file's name for an input written into an output folder: the input's name,
    without a .zst/.zip suffix, which fastclf does not write."""
    name = source.name
    suffix = source.suffix.lower()
    if COMPRESSION_NAMES.get(suffix) and COMPRESSION_NAMES[suffix] not in WRITABLE_COMPRESSION:
        name = name[: -len(suffix)]
    return name


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    return str(value)


def csv_cells(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its nested cells (lists, structs and maps of a Parquet input) as JSON text,
    which a CSV or TSV cell can hold (pandas would write a numpy repr)."""
    nested = (list, tuple, dict, np.ndarray)
    cols = [c for c in df.columns if df[c].dtype == object and df[c].map(lambda v: isinstance(v, nested)).any()]
    if not cols:
        return df
    df = df.copy()
    for c in cols:
        df[c] = df[c].map(lambda v: json.dumps(v, ensure_ascii=False, default=_json_default)
                          if isinstance(v, nested) else v)
    return df


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
            opener = WRITABLE_COMPRESSION.get(self.compression or "", open)
            self._handle = opener(self.path, "wt", encoding="utf-8", newline="")
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
            csv_cells(df).to_csv(self._text_handle(), sep="\t" if self.fmt == "tsv" else ",", index=False,
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


def write_jobs(jobs: list[FileJob], scored: ScoredChunks, bar: Any, *, stdout: IO[str] | None = None) -> ScoreResult:
    """Write the scored chunks of every job: to stdout (CSV) when the jobs have no target,
    else each target atomically (a temporary file beside it, renamed when complete).

    Raises:
        whatever ``scored`` raises; the output being written is then removed.
    """
    if jobs and jobs[0].target is None:
        return ScoreResult(_write_csv_stream(jobs, scored, bar, stdout if stdout is not None else sys.stdout), [])
    groups: dict[Path, list[FileJob]] = {}
    for job in jobs:
        assert job.target is not None  # planned: every job has a target, or none has
        groups.setdefault(job.target, []).append(job)
    total = sum(_write_file(target, group, scored, bar) for target, group in groups.items())
    return ScoreResult(total, list(groups))


def _write_csv_stream(jobs: list[FileJob], scored: ScoredChunks, bar: Any, out: IO[str]) -> int:
    """The scored rows of every job as one CSV on ``out`` (one header): the rows written."""
    total = 0
    for job in jobs:
        for chunk, advance in scored(job):
            if len(chunk):
                csv_cells(chunk).to_csv(out, index=False, header=total == 0)
                total += len(chunk)
            bar.update(advance)
    out.flush()
    return total


def _write_file(target: Path, group: list[FileJob], scored: ScoredChunks, bar: Any) -> int:
    """The scored rows of ``group`` into ``target``, atomically: the rows written."""
    fmt, compression = output_format(target)
    written = 0

    def fill(tmp: Path) -> None:
        nonlocal written
        writer = TableWriter(tmp, fmt, compression, label=target)
        try:
            for job in group:
                for chunk, advance in scored(job):
                    if len(chunk):
                        writer.write(chunk)
                    bar.update(advance)
        finally:
            writer.close()
        written = writer.rows

    atomic_write(target, fill)
    return written
