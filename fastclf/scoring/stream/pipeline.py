"""Running a streaming run: scoring chunks, the progress bar, and the local engine, in this process or in
worker processes that each load the model once."""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastclf.backends import MATH_THREADS_ENV, requested_threads
from fastclf.errors import DataError, first_line
from fastclf.machine import physical_cores
from fastclf.model import Classifier
from fastclf.modeldir import ModelDir
from fastclf.scoring.stream.inputs import DEFAULT_CHUNK_SIZE, FileJob, iter_chunks
from fastclf.scoring.stream.outputs import ScoredChunks, ScoreResult, plan, write_jobs
from fastclf.texts import check_texts

Task = tuple[pd.DataFrame, str, Path, int]  # rows, text column, file, file row of the first row (0-based)


def add_predictions(chunk: pd.DataFrame, proba: np.ndarray, labels: Sequence[Any], classes: Iterable[str],
                    multi_label: bool) -> pd.DataFrame:
    """``chunk`` with ``predicted`` and one ``proba_<label>`` column per class added (in place)."""
    joined = ["|".join(row) if isinstance(row, list) else row for row in labels]
    chunk["predicted"] = joined if multi_label else list(labels)
    for c, col in zip(classes, np.asarray(proba).T):
        chunk[f"proba_{c}"] = col
    return chunk


class ChunkScorer:
    """Scores chunks with one Classifier (given, or loaded once by a worker process or Ray actor with ``threads``,
    its share of the cores); ``answer``: ``min_confidence``, ``unsure_label``, ``coverage`` (``prediction_set``)."""

    def __init__(self, model: Any, variant: str | None, batch_size: int, answer: Mapping[str, Any] | None = None,
                 threads: int | None = None):
        if not isinstance(model, Classifier):
            if threads:  # at most the physical cores, unless $FASTCLF_THREADS; set for the math libraries too
                threads = requested_threads() or max(1, min(threads, physical_cores()))
                for name in MATH_THREADS_ENV:
                    os.environ.setdefault(name, str(threads))
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            model = Classifier.load(model, variant=variant, threads=threads)
        self.clf, self.batch_size, self.answer = model, batch_size, answer or {}

    def __call__(self, chunk: pd.DataFrame, column: str, path: Path | str, offset: int = 0) -> pd.DataFrame:
        """``chunk`` (rows from file row ``offset`` of ``path``, which errors name) with its predictions added."""
        if column not in chunk.columns:
            raise DataError(f"{path}: no column {column!r} in rows {offset + 1}-{offset + len(chunk)}; columns are: "
                            f"{', '.join(map(str, chunk.columns))}")
        clf, answer = self.clf, self.answer
        texts = check_texts(chunk[column].tolist(), path, column=column, offset=offset)
        proba = clf.predict_proba(texts, batch_size=self.batch_size)
        labels, _, sets = clf.answers(proba, **answer)
        add_predictions(chunk, proba, labels, [str(c) for c in clf.classes_], clf.multi_label)
        if sets is not None:
            chunk["prediction_set"] = ["|".join(s) for s in sets]
        return chunk


def progress_bar(jobs: list[FileJob], *, by_bytes: bool, enabled: bool) -> Any:
    """A tqdm bar over all inputs: rows when every row count is known (Parquet), else bytes read
    (``by_bytes``) or rows without a total. Off when not ``enabled`` or stderr is not a terminal."""
    from tqdm.auto import tqdm

    options = {"desc": "scoring", "disable": None if enabled else True, "unit_scale": True}
    if all(j.rows is not None for j in jobs):
        return tqdm(total=sum(j.rows or 0 for j in jobs), unit="rows", **options)
    if by_bytes:
        return tqdm(total=sum(j.size for j in jobs), unit="B", unit_divisor=1024, **options)
    return tqdm(unit="rows", **options)


def local_engine(score: Callable[[Iterator[Task]], Iterator[pd.DataFrame]], *, chunk_size: int,
                 by_bytes: bool) -> ScoredChunks:
    """Read each input in chunks for ``score``, which yields them scored, in order; the bar advances by the
    bytes read since the last chunk (``by_bytes``), else by its rows."""

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


_scorer: ChunkScorer | None = None  # a worker process's model, loaded by its first chunk


def _start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.dup2(2, 1)  # what a runtime prints goes to stderr: stdout may be the scored CSV


def _score_in_worker(settings: dict[str, Any], *task: Any) -> pd.DataFrame:
    """Score a chunk in a worker process; its first chunk loads the model (so load errors reach the parent)."""
    global _scorer
    if _scorer is None:
        _scorer = ChunkScorer(**settings)
    return _scorer(*task)


def predict_files(model: Any, input_spec: str | Path, output: str | Path | None, *, variant: str | None = None,
                  workers: int | None = 1, text_column: str | None = None, batch_size: int = 32,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool = False,
                  answer: Mapping[str, Any] | None = None) -> ScoreResult:
    """Score a file, folder or glob (:func:`plan`; ``output`` None: CSV on stdout) in chunks with ``model`` (Classifier
    or folder) as :class:`ChunkScorer` does, each output complete or absent. ``workers``: processes loading the model
    once each (1: this one; None: a worker a chunk of rows, a row counted as 32 bytes, up to the physical cores)."""
    jobs = plan(input_spec, output, text_column=text_column)
    if workers is None:
        rows = sum(j.size // 32 if j.rows is None else j.rows for j in jobs)
        workers = max(1, min(physical_cores(), -(-rows // chunk_size)))
    by_bytes = not all(j.rows is not None for j in jobs)
    if workers == 1:
        scorer = ChunkScorer(model, variant, batch_size, answer)
        with progress_bar(jobs, by_bytes=True, enabled=progress) as bar:
            engine = local_engine(lambda tasks: itertools.starmap(scorer, tasks), chunk_size=chunk_size,
                                  by_bytes=by_bytes)
            return write_jobs(jobs, engine, bar)
    if isinstance(model, Classifier):
        model, variant = model.path, variant or model.variant
    settings = {"model": str(model), "variant": ModelDir(model).resolve(variant),  # a bad model fails here
                "batch_size": batch_size, "answer": answer, "threads": max(1, physical_cores() // workers)}
    score = functools.partial(_score_in_worker, settings)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker)
    try:  # chunks go to the workers as they are read, two a worker in flight
        with progress_bar(jobs, by_bytes=True, enabled=progress) as bar:
            engine = local_engine(lambda tasks: in_order(pool, score, tasks, 2 * workers), chunk_size=chunk_size,
                                  by_bytes=by_bytes)
            return write_jobs(jobs, engine, bar)
    except BrokenProcessPool as exc:
        raise DataError(f"a scoring worker stopped ({first_line(exc)}); out of memory? try fewer --workers") from None
    finally:
        pool.shutdown(cancel_futures=True)  # the chunks being scored finish; no worker is left behind
