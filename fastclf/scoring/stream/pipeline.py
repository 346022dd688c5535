"""Running a streaming run: the texts of a chunk, scoring it, the progress bar, and the
in-process engine that :func:`predict_files` drives."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from fastclf.errors import DataError
from fastclf.model import UNSURE
from fastclf.scoring.stream.inputs import DEFAULT_CHUNK_SIZE, FileJob, iter_chunks
from fastclf.scoring.stream.outputs import ScoredChunks, ScoreResult, write_jobs
from fastclf.scoring.stream.plan import plan
from fastclf.texts import check_texts


def texts_of(chunk: pd.DataFrame, column: str, path: Path, offset: int) -> list[str]:
    """The texts of a chunk as strings; ``offset`` is the file row of the chunk's first row (0-based).

    Raises:
        DataError: the column is missing, or a text is empty, missing, a list or object, or not
            valid Unicode (rows counted from 1 in the whole file).
    """
    if column not in chunk.columns:
        raise DataError(f"{path}: no column {column!r} in rows {offset + 1}-{offset + len(chunk)}")
    return check_texts(chunk[column].tolist(), path, column=column, offset=offset)


def add_predictions(chunk: pd.DataFrame, proba: np.ndarray, labels: Sequence[Any], classes: Iterable[str],
                    multi_label: bool) -> pd.DataFrame:
    """``chunk`` with ``predicted`` and one ``proba_<label>`` column per class added (in place)."""
    chunk["predicted"] = ["|".join(row) if isinstance(row, list) else row for row in labels] if multi_label else list(labels)
    for c, col in zip(classes, np.asarray(proba).T):
        chunk[f"proba_{c}"] = col
    return chunk


def score_chunk(clf: Any, chunk: pd.DataFrame, texts: list[str], *, batch_size: int,
                answer: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """``chunk`` with the predictions of ``clf`` for ``texts`` (its text cells) added in place.
    ``answer``: ``min_confidence`` and ``unsure_label`` (the unsure label in ``predicted`` below
    it), ``coverage`` (a ``prediction_set`` column: the conformal set's labels joined by ``|``)."""
    answer = answer or {}
    proba = clf.predict_proba(texts, batch_size=batch_size)
    labels = clf.labels_from_proba(proba, min_confidence=answer.get("min_confidence"),
                                   unsure_label=answer.get("unsure_label", UNSURE))
    add_predictions(chunk, proba, labels, [str(c) for c in clf.classes_], clf.multi_label)
    if answer.get("coverage") is not None:
        chunk["prediction_set"] = ["|".join(s) for s in clf.sets_from_proba(proba, answer["coverage"])]
    return chunk


def progress_bar(jobs: list[FileJob], *, by_bytes: bool, enabled: bool, desc: str = "scoring") -> Any:
    """A tqdm bar over all inputs: rows when every row count is known (Parquet), else bytes
    read of the total (``by_bytes``) or rows without a total. Off when ``enabled`` is False or
    stderr is not a terminal."""
    from tqdm.auto import tqdm

    disable = None if enabled else True
    rows = [j.rows for j in jobs]
    if all(r is not None for r in rows):
        return tqdm(total=sum(r or 0 for r in rows), unit="rows", desc=desc, disable=disable, unit_scale=True)
    if by_bytes:
        return tqdm(total=sum(j.size for j in jobs), unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                    disable=disable)
    return tqdm(unit="rows", desc=desc, disable=disable, unit_scale=True)


def local_engine(clf: Any, *, batch_size: int = 32, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 by_bytes: bool = True, answer: Mapping[str, Any] | None = None) -> ScoredChunks:
    """The in-process engine: read a chunk, ``clf.predict_proba`` it, hand it on.

    The progress advance of a chunk is the bytes read since the last chunk (``by_bytes``), else its rows.
    """

    def scored(job: FileJob) -> Iterator[tuple[pd.DataFrame, float]]:
        offset = 0
        last = 0
        chunk = None
        for chunk, pos in iter_chunks(job, chunk_size):
            score_chunk(clf, chunk, texts_of(chunk, job.text_column, job.source, offset), batch_size=batch_size,
                        answer=answer)
            offset += len(chunk)
            advance = (pos - last) if by_bytes else len(chunk)
            last = pos
            yield chunk, advance
        if chunk is not None and by_bytes and job.rows is None and job.size > last:
            yield chunk.iloc[:0], job.size - last  # the bar ends at the file's size (read-ahead, compression)

    return scored


def predict_files(clf: Any, input_spec: str | Path, output: str | Path | None, *, text_column: str | None = None,
                  batch_size: int = 32, chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool = False,
                  stdout: IO[str] | None = None, answer: Mapping[str, Any] | None = None) -> ScoreResult:
    """Score a file, a folder of files or a glob pattern with ``clf`` in chunks of rows, and write
    the rows with ``predicted`` and ``proba_<label>`` columns to ``output`` (see :func:`plan`;
    None: CSV on stdout), and ``answer``'s abstention and sets (:func:`score_chunk`). Each output file
    appears complete or not at all.

    Raises:
        DataFileNotFound, DataError: bad inputs or outputs (checked before any scoring where
            possible: every input's header is read first).
    """
    jobs = plan(input_spec, output, text_column=text_column)
    by_bytes = not all(j.rows is not None for j in jobs)
    with progress_bar(jobs, by_bytes=True, enabled=progress) as bar:
        return write_jobs(jobs, local_engine(clf, batch_size=batch_size, chunk_size=chunk_size, by_bytes=by_bytes,
                                             answer=answer),
                          bar, stdout=stdout)
