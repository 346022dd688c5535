"""Micro-batching by tokens: the texts of concurrent requests gathered into ``predict_proba`` calls."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastclf.scoring.serve.metrics import Metrics
from fastclf.scoring.serve.settings import ServeSettings


class QueueFull(Exception):
    """More tokens are waiting than the queue holds."""


class ShuttingDown(Exception):
    """The batcher no longer takes work."""


def token_counter(clf: Any) -> Callable[[list[str]], list[int]]:
    """The tokens each text costs ``clf``, by its Chunker's rule; its characters without a fast tokenizer."""
    chunker = clf.chunker
    return chunker.count_tokens if chunker is not None else count_chars


def count_chars(texts: list[str]) -> list[int]:
    return [max(1, len(t)) for t in texts]


def _trim_heap() -> None:
    """glibc keeps freed memory for reuse; ``malloc_trim`` returns it, so memory falls back after a large request."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass(eq=False)
class _Request:
    """One request's texts, their token costs, how many are taken into a batch and answered, and its future."""

    texts: list[str]
    costs: list[int]
    future: asyncio.Future[np.ndarray]
    taken: int = 0
    done: int = 0
    result: np.ndarray | None = None


_Slice = tuple[_Request, int, int]  # a request's texts [start:stop] in a batch


class MicroBatcher:
    """Batches of at most ``max_batch`` texts and ``max_batch_tokens`` tokens, one text of each waiting request in
    turn, run in one worker thread once full or ``max_wait_ms`` after the oldest text; use on one event loop."""

    def __init__(self, predict_proba: Callable[[list[str]], np.ndarray], settings: ServeSettings, *,
                 count_tokens: Callable[[list[str]], list[int]] | None = None, metrics: Metrics | None = None,
                 executor: ThreadPoolExecutor | None = None):
        self._predict = predict_proba
        self._count = count_tokens or count_chars
        self._counter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastclf-count")
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastclf-infer")
        self._queue: deque[tuple[float, _Request]] = deque()
        self.waiting = 0  # tokens not yet taken into a batch
        self._wakeup = asyncio.Event()  # bound to the loop that first waits on it
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fastclf-batcher")

    async def submit(self, texts: list[str]) -> np.ndarray:
        """The probabilities of ``texts``; QueueFull past ``max_queue`` tokens waiting, ShuttingDown once closing."""
        if self._closing or self._task is None:
            raise ShuttingDown("the server is shutting down")
        costs = await asyncio.get_running_loop().run_in_executor(self._counter, self._count, texts)
        if self._task.done():  # closed while counting
            raise ShuttingDown("the server is shutting down")
        tokens = sum(costs)
        if self.waiting and self.waiting + tokens > self.settings.max_queue:
            raise QueueFull(f"{self.waiting} tokens are waiting, this request has {tokens}; "
                            f"the queue holds {self.settings.max_queue}")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append((time.monotonic(), _Request(texts, costs, future)))
        self._set_waiting(self.waiting + tokens)
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Stop taking work, finish every queued text, then stop the worker."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
        self._executor.shutdown(wait=True)
        self._counter.shutdown(wait=True)

    def _set_waiting(self, n: int) -> None:
        self.waiting = n
        self.metrics.queue_depth.set(n)

    def _drop(self, request: _Request) -> None:
        """Forget the texts of ``request`` not yet taken into a batch (cancelled, or failed in an earlier batch)."""
        self._set_waiting(self.waiting - sum(request.costs[request.taken:]))
        request.taken = len(request.texts)

    async def _run(self) -> None:
        while await self._wait_for_work():
            await self._wait_for_batch()
            parts = self._take()
            if parts:
                await self._infer(parts)
            if not self._queue:  # idle: hand the heap that the batches freed back to the system
                await asyncio.get_running_loop().run_in_executor(self._executor, _trim_heap)

    async def _wait_for_work(self) -> bool:
        """Wait until a text is queued: True, or False once closing with nothing queued."""
        while not self._queue:
            if self._closing:
                return False
            self._wakeup.clear()
            await self._wakeup.wait()
        return True

    async def _wait_for_batch(self) -> None:
        """Wait until a full batch is queued, the oldest text has waited ``max_wait_ms``, or closing."""
        deadline = self._queue[0][0] + self.settings.max_wait_ms / 1000
        while (self.waiting < self.settings.max_batch_tokens and not self._closing
               and sum(len(r.texts) - r.taken for _, r in self._queue) < self.settings.max_batch):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):  # past the deadline: the next test returns
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _take(self) -> list[_Slice]:
        """The next batch: one text from each waiting request in turn, within the budgets."""
        for _, request in self._queue:
            if request.future.cancelled():  # nobody waits for these texts any more
                self._drop(request)
        starts: dict[_Request, int] = {}  # each request's first text in this batch
        texts = tokens = 0
        added = True
        max_batch, max_tokens = self.settings.max_batch, self.settings.max_batch_tokens
        while added and texts < max_batch:
            added = False
            for _, request in self._queue:
                i = request.taken
                if i == len(request.texts) or texts == max_batch or texts and tokens + request.costs[i] > max_tokens:
                    continue
                starts.setdefault(request, i)
                request.taken += 1
                texts, tokens, added = texts + 1, tokens + request.costs[i], True
        self._queue = deque(item for item in self._queue if item[1].taken < len(item[1].texts))
        self._set_waiting(self.waiting - tokens)
        return [(request, start, request.taken) for request, start in starts.items()]

    async def _infer(self, parts: list[_Slice]) -> None:
        """One ``predict_proba`` call in the worker thread; if it fails, each request's part runs alone,
        so only the failing request gets the error."""
        texts = [t for request, a, b in parts for t in request.texts[a:b]]
        started = time.perf_counter()
        try:
            proba = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, texts)
        except Exception as exc:  # noqa: BLE001 - handed to the request it belongs to
            if len(parts) > 1:
                for part in parts:
                    await self._infer([part])
                return
            request = parts[0][0]
            if not request.future.done():
                request.future.set_exception(exc)
            self._drop(request)
            self._queue = deque(item for item in self._queue if item[1] is not request)
            return
        self.metrics.batch_done(len(texts), time.perf_counter() - started)
        offset = 0
        for request, a, b in parts:  # each slice's rows into its request; answer those now complete
            rows = proba[offset:offset + b - a]
            offset += b - a
            if request.future.done():  # failed in an earlier batch, or the client went away
                continue
            if request.result is None:
                request.result = np.empty((len(request.texts), proba.shape[1]), dtype=proba.dtype)
            request.result[a:b] = rows
            request.done += b - a
            if request.done == len(request.texts):
                request.future.set_result(request.result)
