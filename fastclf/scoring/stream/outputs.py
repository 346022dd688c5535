"""The outputs of a streaming run: which file each input's rows go to (:func:`plan`), output formats,
:class:`TableWriter`, and :func:`write_jobs` (scored chunks to stdout or, atomically, to each target)."""

from __future__ import annotations

import json
import os
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
from fastclf.scoring.stream.inputs import FileJob, inspect_file, is_multi, resolve_inputs

ScoredChunks = Callable[[FileJob], Iterator[tuple[pd.DataFrame, float]]]  # an engine: scored chunks, bar advances


@dataclass
class ScoreResult:
    """What a scoring run wrote: rows scored in all, and the files written (empty for stdout)."""

    rows: int
    outputs: list[Path]


def plan(input_spec: str | Path, output: str | Path | None, *, text_column: str | None = None) -> list[FileJob]:
    """The inputs, their headers read, each with where its rows go: ``output`` is a folder (a file an input, named
    as it) when it is one, ends with ``/``, or has no extension while the input is a folder or a glob; else one
    file for the rows of every input (with the same columns); None: CSV on stdout."""
    sources = resolve_inputs(input_spec)
    jobs = [inspect_file(p, text_column) for p in sources]
    out = Path(str(output))
    to_folder = output is not None and (out.is_dir() or str(output).endswith(("/", os.sep))
                                        or (is_multi(input_spec) and not out.suffix))
    if not to_folder:
        for job in jobs[1:]:
            if job.columns != jobs[0].columns:
                raise DataError(f"{job.source} has other columns than {jobs[0].source} and both go to "
                                f"{'stdout' if output is None else out}; write to an output folder "
                                "(--output DIR/) instead")
        targets: list[Path | None] = [None if output is None else out] * len(jobs)
    elif out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder")
    else:
        targets = [out / output_name(job.source) for job in jobs]
        for i, target in enumerate(targets):
            if target in targets[:i]:
                raise DataError(f"{jobs[targets.index(target)].source} and {jobs[i].source} would both be written "
                                f"to {target}; give inputs with distinct file names")
    inputs = {p.resolve() for p in sources}
    for job, target in zip(jobs, targets):
        job.target = target
        if target is not None:
            output_format(target)
            if target.resolve() in inputs:
                raise DataError(f"{target} is an input; write the scores to another file or folder")
    return jobs


def output_format(path: Path) -> tuple[str, str | None]:
    """Format and compression of an output file by its name (DataError: one fastclf cannot write)."""
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
    """An input's name in an output folder, without a .zst/.zip suffix (fastclf does not write those)."""
    suffix = source.suffix.lower()
    unwritable = COMPRESSION_NAMES.get(suffix) and COMPRESSION_NAMES[suffix] not in WRITABLE_COMPRESSION
    return source.name[: -len(suffix)] if unwritable else source.name


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    return str(value)


def csv_cells(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its nested cells (a Parquet input's lists, structs, maps) as JSON text, not a numpy repr."""
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
    """Appends scored chunks to a file (CSV, TSV, JSON Lines, also gzip/bz2/xz compressed, or Parquet) or as
    CSV to an open ``handle``."""

    def __init__(self, path: Path | None, fmt: str, compression: str | None = None, *, label: Path | None = None,
                 handle: IO[str] | None = None):
        self.path, self.fmt, self.label, self.rows = path, fmt, label or path, 0
        if handle is None and fmt != "parquet":
            handle = WRITABLE_COMPRESSION.get(compression or "", open)(path, "wt", encoding="utf-8", newline="")
        self._handle: Any = handle
        self._parquet: Any = None
        self._schema: Any = None

    def write(self, df: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            self._write_parquet(df)
        elif self.fmt == "jsonl":
            text = df.to_json(orient="records", lines=True, force_ascii=False) if len(df) else ""
            self._handle.write(text if not text or text.endswith("\n") else text + "\n")
        else:
            csv_cells(df).to_csv(self._handle, sep="\t" if self.fmt == "tsv" else ",", index=False,
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
                raise DataError(f"{self.label}: rows {self.rows + 1}-{self.rows + len(df)} do not fit the column types "
                                f"of the first rows ({first_line(exc)}); write CSV or JSON Lines instead") from None
        self._parquet.write_table(table)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif self._handle is not None:
            self._handle.close()


def write_jobs(jobs: list[FileJob], scored: ScoredChunks, bar: Any) -> ScoreResult:
    """Write the scored chunks of every job: as one CSV to stdout when the jobs have no target, else each target
    atomically (:func:`fastclf._util.atomic_write`)."""

    def fill(writer: TableWriter, group: list[FileJob]) -> int:
        for job in group:
            for chunk, advance in scored(job):
                if len(chunk):
                    writer.write(chunk)
                bar.update(advance)
        return writer.rows

    if jobs[0].target is None:
        rows = fill(TableWriter(None, "csv", handle=sys.stdout), jobs)
        sys.stdout.flush()
        return ScoreResult(rows, [])
    groups: dict[Path, list[FileJob]] = {}
    for job in jobs:
        assert job.target is not None  # planned: every job has a target, or none has
        groups.setdefault(job.target, []).append(job)
    written = []
    for target, group in groups.items():
        def fill_file(tmp: Path, target: Path = target, group: list[FileJob] = group) -> None:
            writer = TableWriter(tmp, *output_format(target), label=target)
            try:
                written.append(fill(writer, group))
            finally:
                writer.close()

        atomic_write(target, fill_file)
    return ScoreResult(sum(written), list(groups))
