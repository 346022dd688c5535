"""Micro-batching: the texts of concurrent requests gathered into one ``predict_proba`` call."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .metrics import Metrics


class QueueFull(Exception):
    """More texts are waiting than the queue holds."""


class ShuttingDown(Exception):
    """The batcher no longer takes work."""


class _Request:
    """The texts of one submitted request, how far they are batched, and the future that answers it."""

    __slots__ = ("texts", "taken", "done", "result", "future")

    def __init__(self, texts: list[str], future: asyncio.Future[np.ndarray]):
        self.texts = texts
        self.taken = 0  # texts already put into a batch
        self.done = 0  # texts whose probabilities are in
        self.result: np.ndarray | None = None
        self.future = future

    @property
    def untaken(self) -> int:
        return len(self.texts) - self.taken


_Slice = tuple[_Request, int, int]  # a request's texts [start:stop] in a batch


class MicroBatcher:
    """Gathers the texts of concurrent requests into batches for one ``predict_proba`` call each.

    A batch starts when ``max_batch`` texts wait or ``max_wait_s`` after its oldest text
    arrived, whichever comes first; a request with more than ``max_batch`` texts is split
    over several batches. Inference runs in one worker thread, one batch at a time; the next
    batch is gathered while the current one runs. Use on one event loop: :meth:`start`,
    :meth:`submit`, and :meth:`close` (which drains the queue).
    """

    def __init__(self, predict_proba: Callable[[list[str]], np.ndarray], *, max_batch: int, max_wait_s: float,
                 max_queue: int, metrics: Metrics | None = None, executor: ThreadPoolExecutor | None = None):
        self._predict = predict_proba
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastclf-infer")
        self._queue: deque[tuple[float, _Request]] = deque()
        self._waiting = 0  # texts not yet taken into a batch
        self._wakeup = asyncio.Event()  # bound to the loop that first waits on it (Python 3.10+)
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def waiting(self) -> int:
        """Texts waiting for a batch."""
        return self._waiting

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fastclf-batcher")

    async def submit(self, texts: list[str]) -> np.ndarray:
        """Queue ``texts``; their probabilities ``(len(texts), n_classes)`` once computed.

        Raises:
            QueueFull: the queue cannot take ``len(texts)`` more texts.
            ShuttingDown: the batcher is closing.
        """
        if self._closing or self._task is None:
            raise ShuttingDown("the server is shutting down")
        if self._waiting + len(texts) > self.max_queue:
            raise QueueFull(f"{self._waiting} texts are waiting; the queue holds {self.max_queue}")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append((time.monotonic(), _Request(texts, future)))
        self._set_waiting(self._waiting + len(texts))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Stop taking work, finish every queued text, then stop the worker."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
        self._executor.shutdown(wait=True)

    def _set_waiting(self, n: int) -> None:
        self._waiting = n
        self.metrics.queue_depth = n

    async def _run(self) -> None:
        while await self._wait_for_work():
            await self._wait_for_batch()
            parts = self._take()
            if parts:
                await self._infer(parts)

    async def _wait_for_work(self) -> bool:
        """Wait until a text is queued: True, or False once closing with nothing queued."""
        while not self._queue:
            if self._closing:
                return False
            self._wakeup.clear()
            await self._wakeup.wait()
        return True

    async def _wait_for_batch(self) -> None:
        """Wait until ``max_batch`` texts are queued, the oldest has waited ``max_wait_s``, or closing."""
        deadline = self._queue[0][0] + self.max_wait_s
        while self._waiting < self.max_batch and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Slice]:
        """Up to ``max_batch`` texts from the front of the queue: (request, start, stop) slices."""
        parts: list[_Slice] = []
        room = self.max_batch
        while self._queue and room:
            _, request = self._queue[0]
            if request.future.cancelled():  # nobody waits for these texts any more
                self._queue.popleft()
                self._waiting -= request.untaken
                continue
            n = min(room, request.untaken)
            parts.append((request, request.taken, request.taken + n))
            request.taken += n
            room -= n
            if not request.untaken:
                self._queue.popleft()
        self._set_waiting(self._waiting - (self.max_batch - room))
        return parts

    async def _infer(self, parts: list[_Slice]) -> None:
        """One ``predict_proba`` call in the worker thread for ``parts``; hand out the rows. If the
        call fails, each request's part is run alone, so that only the failing request gets the error."""
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
            return
        self.metrics.batch_done(len(texts), time.perf_counter() - started)
        self._deliver(parts, proba)

    @staticmethod
    def _deliver(parts: list[_Slice], proba: np.ndarray) -> None:
        """Copy each slice's rows of ``proba`` into its request; answer the requests now complete."""
        offset = 0
        for request, a, b in parts:
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

    def _drop(self, request: _Request) -> None:
        """Forget the texts of a failed request that are still queued."""
        if request.untaken:
            self._waiting -= request.untaken
            request.taken = len(request.texts)
            self._queue = deque(item for item in self._queue if item[1] is not request)
            self.metrics.queue_depth = self._waiting
