"""Running a streaming run: scoring a chunk, the progress bar, and the local engine, in this process
or in worker processes that each load the model once."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from fastclf.backends import requested_threads
from fastclf.errors import DataError, first_line
from fastclf.machine import physical_cores
from fastclf.model import UNSURE, Classifier
from fastclf.modeldir import ModelDir
from fastclf.scoring.stream.inputs import DEFAULT_CHUNK_SIZE, FileJob, iter_chunks
from fastclf.scoring.stream.outputs import ScoredChunks, ScoreResult, plan, write_jobs
from fastclf.texts import check_texts

Task = tuple[pd.DataFrame, str, Path, int]
"""A chunk to score: its rows, the text column, the file, the file row of its first row (0-based)."""


def texts_of(chunk: pd.DataFrame, column: str, path: Path, offset: int) -> list[str]:
    """The texts of a chunk; errors name the file and the row (counted from 1 in the whole file)."""
    if column not in chunk.columns:
        raise DataError(f"{path}: no column {column!r} in rows {offset + 1}-{offset + len(chunk)}")
    return check_texts(chunk[column].tolist(), path, column=column, offset=offset)


def add_predictions(chunk: pd.DataFrame, proba: np.ndarray, labels: Sequence[Any], classes: Iterable[str],
                    multi_label: bool) -> pd.DataFrame:
    """``chunk`` with ``predicted`` and one ``proba_<label>`` column per class added (in place)."""
    joined = ["|".join(row) if isinstance(row, list) else row for row in labels]
    chunk["predicted"] = joined if multi_label else list(labels)
    for c, col in zip(classes, np.asarray(proba).T):
        chunk[f"proba_{c}"] = col
    return chunk


def score_chunk(clf: Any, chunk: pd.DataFrame, texts: list[str], *, batch_size: int,
                answer: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """``chunk`` with the predictions of ``clf`` for ``texts`` added in place. ``answer``: ``min_confidence``
    and ``unsure_label`` (abstention in ``predicted``), ``coverage`` (a ``prediction_set`` column)."""
    answer = answer or {}
    proba = clf.predict_proba(texts, batch_size=batch_size)
    labels = clf.labels_from_proba(proba, min_confidence=answer.get("min_confidence"),
                                   unsure_label=answer.get("unsure_label", UNSURE))
    add_predictions(chunk, proba, labels, [str(c) for c in clf.classes_], clf.multi_label)
    if answer.get("coverage") is not None:
        chunk["prediction_set"] = ["|".join(s) for s in clf.sets_from_proba(proba, answer["coverage"])]
    return chunk


def progress_bar(jobs: list[FileJob], *, by_bytes: bool, enabled: bool, desc: str = "scoring") -> Any:
    """A tqdm bar over all inputs: rows when every row count is known (Parquet), else bytes read
    (``by_bytes``) or rows without a total. Off when not ``enabled`` or stderr is not a terminal."""
    from tqdm.auto import tqdm

    options = {"desc": desc, "disable": None if enabled else True, "unit_scale": True}
    if all(j.rows is not None for j in jobs):
        return tqdm(total=sum(j.rows or 0 for j in jobs), unit="rows", **options)
    if by_bytes:
        return tqdm(total=sum(j.size for j in jobs), unit="B", unit_divisor=1024, **options)
    return tqdm(unit="rows", **options)


def use_threads(threads: int) -> int:
    """The runtime threads of one of several scoring processes: ``threads`` (at most the physical cores), or a
    ``$FASTCLF_THREADS`` set by the user; also set for the math libraries that read it when first imported."""
    n = requested_threads() or max(1, min(threads, physical_cores()))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(n))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return n


def local_engine(score: Callable[[Iterator[Task]], Iterator[pd.DataFrame]], *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 by_bytes: bool = True) -> ScoredChunks:
    """Read each input in chunks and hand them to ``score``, which yields them scored, in order.

    The progress advance of a chunk is the bytes read since the last chunk (``by_bytes``), else its rows.
    """

    def scored(job: FileJob) -> Iterator[tuple[pd.DataFrame, float]]:
        advances: deque[float] = deque()
        last = 0

        def tasks() -> Iterator[Task]:
            nonlocal last
            offset = 0
            for chunk, pos in iter_chunks(job, chunk_size):
                advances.append((pos - last) if by_bytes else len(chunk))
                yield chunk, job.text_column, job.source, offset
                offset += len(chunk)
                last = pos

        for chunk in score(tasks()):
            yield chunk, advances.popleft()
        if by_bytes and job.rows is None and job.size > last:
            yield pd.DataFrame(), job.size - last  # the bar ends at the file's size (read-ahead, compression)

    return scored


def in_order(pool: Executor, fn: Callable[..., pd.DataFrame], tasks: Iterator[Task], depth: int) -> Iterator[Any]:
    """``fn(*task)`` of each task run in ``pool``, yielded in input order, at most ``depth`` in flight."""
    pending: deque[Any] = deque()
    try:
        for task in tasks:
            pending.append(pool.submit(fn, *task))
            if len(pending) >= depth:
                yield pending.popleft().result()
    except Exception:
        for future in pending:  # an earlier chunk's error is the one to report
            future.result()
        raise
    while pending:
        yield pending.popleft().result()


_worker: dict[str, Any] = {}


def _start_worker(threads: int, model_dir: str, variant: str | None, batch_size: int,
                  answer: Mapping[str, Any] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.dup2(2, 1)  # what a runtime prints goes to stderr: stdout may be the scored CSV
    _worker.update(threads=use_threads(threads), model_dir=model_dir, variant=variant, batch_size=batch_size,
                   answer=answer)


def _score_in_worker(chunk: pd.DataFrame, column: str, path: Path, offset: int) -> pd.DataFrame:
    """Score a chunk in a worker process; the model is loaded by the first call (its errors go to the parent)."""
    if "clf" not in _worker:
        _worker["clf"] = Classifier.load(_worker["model_dir"], variant=_worker["variant"], threads=_worker["threads"])
    return score_chunk(_worker["clf"], chunk, texts_of(chunk, column, path, offset),
                       batch_size=_worker["batch_size"], answer=_worker["answer"])


def predict_files(model: Any, input_spec: str | Path, output: str | Path | None, *, variant: str | None = None,
                  workers: int | None = 1, text_column: str | None = None, batch_size: int = 32,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool = False, stdout: IO[str] | None = None,
                  answer: Mapping[str, Any] | None = None) -> ScoreResult:
    """Score a file, a folder or a glob (see :func:`plan`; ``output`` None: CSV on stdout) in chunks of rows
    with ``model``, a Classifier or a model folder (workers load a Classifier again from its folder), and
    write the rows with ``predicted`` and ``proba_<label>`` columns and ``answer``'s abstention and sets
    (:func:`score_chunk`). Each output appears complete or not at all.

    ``workers`` > 1 scores in worker processes, each loading the model once with its share of the threads;
    1 in this process; None: a worker a chunk of rows (a row counted as 32 bytes), up to the physical cores.
    """
    jobs = plan(input_spec, output, text_column=text_column)
    if workers is None:
        rows = sum(j.size // 32 if j.rows is None else j.rows for j in jobs)
        workers = max(1, min(physical_cores(), -(-rows // chunk_size)))
    if isinstance(model, Classifier):
        model, variant = (model, model.variant) if workers == 1 else (model.path, variant or model.variant)
    elif workers == 1:
        model = Classifier.load(model, variant=variant)
    by_bytes = not all(j.rows is not None for j in jobs)
    with progress_bar(jobs, by_bytes=True, enabled=progress) as bar:
        if workers == 1:
            def score(tasks: Iterator[Task]) -> Iterator[pd.DataFrame]:
                return (score_chunk(model, chunk, texts_of(chunk, column, path, offset), batch_size=batch_size,
                                    answer=answer) for chunk, column, path, offset in tasks)

            return write_jobs(jobs, local_engine(score, chunk_size=chunk_size, by_bytes=by_bytes), bar, stdout=stdout)
        variant = ModelDir(model).resolve(variant)  # a bad model fails here, before any worker starts
        return _write_with_workers(jobs, str(model), variant, workers, bar, stdout=stdout, chunk_size=chunk_size,
                                   by_bytes=by_bytes, batch_size=batch_size, answer=answer)


def _write_with_workers(jobs: list[FileJob], model_dir: str, variant: str, workers: int, bar: Any, *,
                        stdout: IO[str] | None, chunk_size: int, by_bytes: bool, batch_size: int,
                        answer: Mapping[str, Any] | None) -> ScoreResult:
    """:func:`write_jobs` with the chunks scored by ``workers`` spawned processes (started as chunks come),
    two chunks a worker in flight."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(max(1, physical_cores() // workers), model_dir, variant, batch_size, answer))
    try:
        engine = local_engine(lambda tasks: in_order(pool, _score_in_worker, tasks, 2 * workers),
                              chunk_size=chunk_size, by_bytes=by_bytes)
        return write_jobs(jobs, engine, bar, stdout=stdout)
    except BrokenProcessPool as exc:
        raise DataError(f"a scoring worker stopped ({first_line(exc)}); out of memory? try fewer --workers") from None
    finally:
        pool.shutdown(cancel_futures=True)  # the chunks being scored finish; no worker is left behind
