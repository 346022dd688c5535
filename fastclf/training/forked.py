"""Run CPU-bound jobs side by side in forked children (cross-validation folds; benchmarks/studies/training-time.md):
a fork shares the loaded model without pickling; each child sets its threads and sends back its small result."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastclf.errors import FastclfError, TrainingError

T = TypeVar("T")


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _child(job: Callable[[], Any], threads: int, conn: Any) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the tokenizer's own threads would not survive the fork
    try:
        import torch

        torch.set_num_threads(threads)
        conn.send(("ok", job()))
    except BaseException as exc:  # noqa: BLE001  (everything goes back to the parent)
        conn.send(("error", str(exc) if isinstance(exc, FastclfError) else f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_forked(jobs: Sequence[Callable[[], T]], *, threads_each: int) -> list[T]:
    """The results of ``jobs``, in order, each run at once in a forked child with ``threads_each`` torch
    threads; TrainingError with a job's message, or when its process died."""
    ctx = multiprocessing.get_context("fork")
    running = []
    for job in jobs:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(job, threads_each, child), daemon=True)
        proc.start()
        child.close()
        running.append((proc, parent))
    results: list[T] = []
    failure: str | None = None
    try:
        for proc, conn in running:
            try:
                message = conn.recv()
            except EOFError:
                message = ("error", f"a cross-validation process died (exit code {proc.exitcode})")
            proc.join()
            if message[0] == "ok":
                results.append(message[1])
            elif failure is None:
                failure = message[1]
    finally:
        for proc, _conn in running:
            if proc.is_alive():
                proc.terminate()
                proc.join()
    if failure is not None:
        raise TrainingError(failure)
    return results
