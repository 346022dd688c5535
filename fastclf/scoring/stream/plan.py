"""Planning a streaming run: which files are read, and which output file each one's rows go to."""

from __future__ import annotations

import os
from pathlib import Path

from fastclf.errors import DataError
from fastclf.scoring.stream.inputs import FileJob, inspect_file, is_multi, resolve_inputs
from fastclf.scoring.stream.outputs import output_format, output_name


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
    if out.is_dir() or out_text.endswith(("/", os.sep)) or (is_multi(input_spec) and not out.suffix):
        _target_folder(jobs, out)
    else:
        _target_file(jobs, out)
    inputs = {p.resolve() for p in sources}
    for job in jobs:
        if job.target is not None and job.target.resolve() in inputs:
            raise DataError(f"{job.target} is an input; write the scores to another file or folder")
    return jobs


def _target_folder(jobs: list[FileJob], out: Path) -> None:
    """Each job to a file of its own name in the folder ``out``."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder")
    seen: dict[str, Path] = {}
    for job in jobs:
        name = output_name(job.source)
        if name in seen:
            raise DataError(f"{seen[name]} and {job.source} would both be written to {out / name}; "
                            "give inputs with distinct file names")
        seen[name] = job.source
        job.target = out / name
        output_format(job.target)


def _target_file(jobs: list[FileJob], out: Path) -> None:
    """Every job to the one file ``out``."""
    if out.is_dir():
        raise DataError(f"{out} is a folder")
    output_format(out)
    _check_same_columns(jobs, str(out))
    for job in jobs:
        job.target = out


def _check_same_columns(jobs: list[FileJob], where: str) -> None:
    first = jobs[0]
    for job in jobs[1:]:
        if job.columns != first.columns:
            raise DataError(f"{job.source} has other columns than {first.source} and both go to {where}; "
                            "write to an output folder (--output DIR/) instead")
