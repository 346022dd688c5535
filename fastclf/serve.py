"""``fastclf serve``: an HTTP server for a fastclf model (FastAPI + uvicorn).

Endpoints (request shape as text-embeddings-inference users know it)::

    POST /predict  {"inputs": "text" | ["text", ...], "top_k": 2}
        -> for one string: [{"label": ..., "score": ...}, ...]          (one list, as TEI does)
        -> for a list:     [[{"label": ..., "score": ...}, ...], ...]   (one list per text)
    GET  /health   200 {"status": "ok"} when the model is loaded, 503 {"status": "loading"} before
    GET  /info     labels, variant, multi_label, threshold, model path, versions, limits
    GET  /metrics  Prometheus text format

Each text's list is sorted by score, highest first. Without ``top_k`` a single-label model
answers its best label only (top_k=1); a multi-label model answers every label whose
probability is at least the model's threshold (possibly none). With ``top_k`` both answer the
``top_k`` best labels (all of them if ``top_k`` is larger than the number of labels).

Concurrent requests are gathered by a :class:`MicroBatcher`: it waits at most
``max_wait_ms`` after the first pending text, takes at most ``max_batch`` texts, and runs ONE
``clf.predict_proba`` call in a worker thread, so inference never blocks the event loop. The
texts waiting for a batch are bounded by ``max_queue``: past it a request is answered 429 with
a ``Retry-After`` header. Every error is JSON ``{"error": "...", "error_type": "..."}``.

On SIGTERM or SIGINT the server stops accepting connections, answers the requests already
received (the batcher is drained in the FastAPI lifespan) and :func:`serve` returns.

fastapi and uvicorn are imported only when a server is built (the ``serve`` extra), and the
model's runtime only when it is loaded: serving an ONNX or OpenVINO variant never imports torch.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import platform
import re
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import FastclfError, first_line, missing_dependency

try:  # the route functions' annotations are resolved in this module's globals (postponed annotations)
    from starlette.requests import Request
except ImportError:  # the serve extra is missing: create_app and serve say so
    Request = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from .model import Classifier

#: the runtime package of each variant runtime, for /info
_RUNTIME_PACKAGES = {"torch": ("torch",), "onnx": ("onnxruntime",), "openvino": ("openvino",)}


class ServeError(FastclfError, RuntimeError):
    """The server cannot start or stopped because of an error."""


class ServeSettingsError(FastclfError, ValueError):
    """A server setting is out of range."""


def parse_size(text: str | int) -> int:
    """A byte count from ``"1MB"``, ``"512KiB"``, ``"2000"`` (KB/MB/GB are powers of 1000,
    KiB/MiB/GiB of 1024).

    Raises:
        ServeSettingsError: the text is not a size.
    """
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?[bB]|[bB])?\s*", str(text))
    if not m:
        raise ServeSettingsError(f"not a size: {text!r} (write e.g. 1MB, 512KiB or 2000)")
    unit = (m.group(2) or "b").lower()
    scale = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}[unit]
    return int(float(m.group(1)) * scale)


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens, batches and limits requests.

    ``max_queue`` counts texts waiting for a batch (None: ``max(4 * max_batch, max_inputs)``).
    ``test_delay_ms`` sleeps that long in the worker before each batch: for tests of slow
    requests only.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    variant: str | None = None
    api_key: str | None = None
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_queue: int | None = None
    max_inputs: int = 256
    max_body_bytes: int = 1_000_000
    shutdown_timeout_s: float = 30.0
    access_log: bool = False
    test_delay_ms: float = 0.0

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ServeSettingsError(message)

        need(0 <= self.port <= 65535, f"--port must be between 0 and 65535, not {self.port}")
        need(self.max_batch >= 1, f"--max-batch must be at least 1, not {self.max_batch}")
        need(self.max_wait_ms >= 0, f"--max-wait-ms must be 0 or more, not {self.max_wait_ms}")
        need(self.max_inputs >= 1, f"--max-inputs must be at least 1, not {self.max_inputs}")
        need(self.max_body_bytes >= 1, f"--max-body-bytes must be at least 1, not {self.max_body_bytes}")
        need(self.test_delay_ms >= 0, f"test delay must be 0 or more, not {self.test_delay_ms}")
        if self.max_queue is not None:
            need(self.max_queue >= self.max_inputs,
                 f"--max-queue ({self.max_queue}) must be at least --max-inputs ({self.max_inputs}): "
                 "a request that fits --max-inputs must be able to wait in the queue")
        need(self.api_key is None or self.api_key.strip() != "", "the API key is empty")

    @property
    def queue_limit(self) -> int:
        """The effective ``max_queue``."""
        return self.max_queue if self.max_queue is not None else max(4 * self.max_batch, self.max_inputs)


# ---------------------------------------------------------------------------------- metrics

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_PATHS = ("/predict", "/health", "/info", "/metrics")


class _Histogram:
    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{_fmt(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {_fmt(self.sum)}", f"{name}_count {self.count}"]
        return out


def _fmt(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else f"{float(x):.1f}"


class Metrics:
    """The server's counters, written by hand in the Prometheus text format (0.0.4)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = _Histogram(_LATENCY_BUCKETS)
        self.batch_size = _Histogram(_BATCH_BUCKETS)
        self.inference = _Histogram(_LATENCY_BUCKETS)
        self.texts = 0
        self.queue_depth = 0
        self.in_flight = 0

    def request_done(self, path: str, code: int, seconds: float) -> None:
        path = path if path in _PATHS else "other"
        with self._lock:
            self.requests[(path, code)] = self.requests.get((path, code), 0) + 1
            if path == "/predict":
                self.latency.observe(seconds)

    def batch_done(self, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(size)
            self.inference.observe(seconds)
            self.texts += size

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP fastclf_requests_total HTTP requests answered, by path and status code.",
                "# TYPE fastclf_requests_total counter",
            ]
            lines += [f'fastclf_requests_total{{path="{p}",code="{c}"}} {n}'
                      for (p, c), n in sorted(self.requests.items())]
            lines += ["# HELP fastclf_request_duration_seconds Latency of POST /predict, all status codes.",
                      "# TYPE fastclf_request_duration_seconds histogram",
                      *self.latency.lines("fastclf_request_duration_seconds"),
                      "# HELP fastclf_batch_size Texts in each predict_proba call.",
                      "# TYPE fastclf_batch_size histogram",
                      *self.batch_size.lines("fastclf_batch_size"),
                      "# HELP fastclf_inference_seconds Duration of each predict_proba call.",
                      "# TYPE fastclf_inference_seconds histogram",
                      *self.inference.lines("fastclf_inference_seconds"),
                      "# HELP fastclf_texts_total Texts classified.",
                      "# TYPE fastclf_texts_total counter",
                      f"fastclf_texts_total {self.texts}",
                      "# HELP fastclf_queue_depth Texts waiting for a batch.",
                      "# TYPE fastclf_queue_depth gauge",
                      f"fastclf_queue_depth {self.queue_depth}",
                      "# HELP fastclf_requests_in_flight POST /predict requests received and not yet answered.",
                      "# TYPE fastclf_requests_in_flight gauge",
                      f"fastclf_requests_in_flight {self.in_flight}"]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- batching


class QueueFull(Exception):
    """More texts are waiting than the queue holds."""


class ShuttingDown(Exception):
    """The batcher no longer takes work."""


class _Job:
    __slots__ = ("texts", "taken", "done", "result", "future")

    def __init__(self, texts: list[str], future: asyncio.Future):
        self.texts = texts
        self.taken = 0  # texts already put into a batch
        self.done = 0  # texts whose probabilities are in
        self.result: np.ndarray | None = None
        self.future = future


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
        self._jobs: deque[tuple[float, _Job]] = deque()
        self._waiting = 0  # texts not yet taken into a batch
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    @property
    def waiting(self) -> int:
        """Texts waiting for a batch."""
        return self._waiting

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._wakeup = asyncio.Event()
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
        future = asyncio.get_running_loop().create_future()
        self._jobs.append((time.monotonic(), _Job(texts, future)))
        self._waiting += len(texts)
        self.metrics.queue_depth = self._waiting
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Stop taking work, finish every queued text, then stop the worker."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
        self._executor.shutdown(wait=True)

    def _take(self) -> list[tuple[_Job, int, int]]:
        """Up to ``max_batch`` texts from the front of the queue: (job, start, stop) slices."""
        parts, room = [], self.max_batch
        while self._jobs and room:
            _, job = self._jobs[0]
            if job.future.cancelled():  # nobody waits for these texts any more
                self._jobs.popleft()
                self._waiting -= len(job.texts) - job.taken
                continue
            n = min(room, len(job.texts) - job.taken)
            parts.append((job, job.taken, job.taken + n))
            job.taken += n
            room -= n
            if job.taken == len(job.texts):
                self._jobs.popleft()
        self._waiting -= self.max_batch - room
        self.metrics.queue_depth = self._waiting
        return parts

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._jobs[0][0] + self.max_wait_s
            while self._waiting < self.max_batch and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            parts = self._take()
            texts = [t for job, a, b in parts for t in job.texts[a:b]]
            if not texts:
                continue
            started = time.perf_counter()
            try:
                proba = await loop.run_in_executor(self._executor, self._predict, texts)
            except Exception as exc:  # noqa: BLE001 - handed to each request of the batch
                for job, _, _ in parts:
                    if not job.future.done():
                        job.future.set_exception(exc)
                    self._drop(job)
                continue
            self.metrics.batch_done(len(texts), time.perf_counter() - started)
            offset = 0
            for job, a, b in parts:
                if job.future.done():  # failed in an earlier batch, or the client went away
                    offset += b - a
                    continue
                if job.result is None:
                    job.result = np.empty((len(job.texts), proba.shape[1]), dtype=proba.dtype)
                job.result[a:b] = proba[offset:offset + b - a]
                offset += b - a
                job.done += b - a
                if job.done == len(job.texts):
                    job.future.set_result(job.result)

    def _drop(self, job: _Job) -> None:
        """Forget the texts of a failed job that are still queued."""
        if job.taken < len(job.texts):
            self._waiting -= len(job.texts) - job.taken
            job.taken = len(job.texts)
            self._jobs = deque(item for item in self._jobs if item[1] is not job)
            self.metrics.queue_depth = self._waiting


# ---------------------------------------------------------------------------------- the app


class _RequestError(Exception):
    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error_type, self.message, self.headers = status, error_type, message, headers


def _require_web() -> None:
    """Raises:
        MissingDependency: fastapi or uvicorn is not installed.
    """
    for package in ("fastapi", "uvicorn"):
        try:
            __import__(package)
        except ImportError as exc:
            raise missing_dependency(package, "serve") from exc


def parse_predict_request(payload: Any, max_inputs: int) -> tuple[list[str], bool, int | None]:
    """Check a decoded /predict body: (texts, whether ``inputs`` was one string, top_k).

    Raises:
        _RequestError: 422 for a wrong shape or type, 413 for more than ``max_inputs`` texts.
    """
    def invalid(message: str) -> _RequestError:
        return _RequestError(422, "invalid_request", message)

    if not isinstance(payload, dict):
        raise invalid(f'the body must be a JSON object like {{"inputs": ["text"]}}, not {type(payload).__name__}')
    unknown = sorted(set(payload) - {"inputs", "top_k", "truncate"})
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(unknown)}; expected 'inputs' and optionally 'top_k'")
    if not isinstance(payload.get("truncate", True), bool):
        raise invalid("'truncate' must be true or false (texts are always truncated to the model's max length)")
    if "inputs" not in payload:
        raise invalid("'inputs' is missing: send a string or a list of strings")
    inputs = payload["inputs"]
    single = isinstance(inputs, str)
    if single:
        texts = [inputs]
    elif isinstance(inputs, list):
        if not inputs:
            raise invalid("'inputs' is an empty list: send at least one text")
        for i, item in enumerate(inputs):
            if not isinstance(item, str):
                raise invalid(f"'inputs' must hold strings only; item {i} is {_json_type(item)}")
        texts = inputs
    else:
        raise invalid(f"'inputs' must be a string or a list of strings, not {_json_type(inputs)}")
    if len(texts) > max_inputs:
        raise _RequestError(413, "too_many_inputs",
                            f"{len(texts)} inputs in one request; the server takes at most {max_inputs}")
    top_k = payload.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise invalid(f"'top_k' must be a positive integer, not {json.dumps(top_k)}")
    return texts, single, top_k


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def rank_labels(proba: np.ndarray, classes: Sequence[str], *, multi_label: bool, threshold: float,
                top_k: int | None) -> list[list[dict[str, Any]]]:
    """Each row of ``proba`` as a list of ``{"label", "score"}`` sorted by score (see the module doc
    for which labels are kept)."""
    out = []
    for row in proba:
        order = np.argsort(-row, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        elif multi_label:
            order = [i for i in order if row[i] >= threshold]
        else:
            order = order[:1]
        out.append([{"label": str(classes[i]), "score": float(row[i])} for i in order])
    return out


def runtime_versions(variant: str) -> dict[str, str]:
    """Versions of fastclf, Python and the packages that run ``variant``."""
    from ._util import package_versions
    from .backends import get_spec

    runtime = get_spec(variant).runtime
    versions = {"fastclf": __version__, "python": platform.python_version()}
    versions.update({k: v for k, v in package_versions(_RUNTIME_PACKAGES.get(runtime, ()) + ("numpy",)).items() if v})
    return versions


def create_app(classifier_or_loader: Classifier | Callable[[], Classifier], settings: ServeSettings | None = None, *,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The FastAPI application serving a classifier.

    ``classifier_or_loader`` is a loaded :class:`~fastclf.Classifier`, or a function that loads
    one: it is then called in the worker thread when the app starts, and ``/health`` answers
    503 until it returns. If it raises, ``on_load_error`` is called with the exception (the
    server started by :func:`serve` then stops) and the app keeps answering 503.

    Raises:
        MissingDependency: fastapi or uvicorn is not installed (``pip install 'fastclf[serve]'``).
    """
    _require_web()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    settings = settings or ServeSettings()
    metrics = Metrics()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastclf-infer")
    state: dict[str, Any] = {"clf": None, "batcher": None, "load_error": None, "info": None}
    delay_s = settings.test_delay_ms / 1000

    def error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)

    def ready(clf: Classifier) -> None:
        def predict(texts: list[str]) -> np.ndarray:
            if delay_s:
                time.sleep(delay_s)
            return clf.predict_proba(texts, batch_size=len(texts))

        batcher = MicroBatcher(predict, max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000,
                               max_queue=settings.queue_limit, metrics=metrics, executor=executor)
        batcher.start()
        state["info"] = {
            "labels": [str(c) for c in clf.classes_],
            "variant": clf.variant,
            "multi_label": bool(clf.multi_label),
            "threshold": float(clf.threshold),
            "model_path": str(Path(clf.path).resolve()) if clf.path is not None else None,
            "versions": runtime_versions(clf.variant),
            "limits": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                       "max_queue": settings.queue_limit, "max_inputs": settings.max_inputs,
                       "max_body_bytes": settings.max_body_bytes},
        }
        state["clf"], state["batcher"] = clf, batcher

    async def load() -> None:
        try:
            clf = await asyncio.get_running_loop().run_in_executor(executor, classifier_or_loader)
        except Exception as exc:  # noqa: BLE001 - reported to serve(), which stops the server
            state["load_error"] = exc
            if on_load_error is not None:
                on_load_error(exc)
            return
        ready(clf)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = None
        if not hasattr(classifier_or_loader, "predict_proba"):
            loading = asyncio.get_running_loop().create_task(load())
        else:
            ready(classifier_or_loader)
        try:
            yield
        finally:
            if loading is not None:
                await loading
            if state["batcher"] is not None:
                await state["batcher"].close()
            executor.shutdown(wait=True)

    app = FastAPI(title="fastclf", version=__version__, lifespan=lifespan,
                  description="Few-shot text classification with a fastclf model.")
    app.state.fastclf = state
    app.state.metrics = metrics

    class _Metered:
        """Pure ASGI middleware: counts every HTTP answer by path and status, and times /predict."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            started, status = time.perf_counter(), [500]
            predict = scope.get("path") == "/predict"
            if predict:
                metrics.in_flight += 1

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await self.inner(scope, receive, send_status)
            finally:
                if predict:
                    metrics.in_flight -= 1
                metrics.request_done(scope.get("path", ""), status[0], time.perf_counter() - started)

    app.add_middleware(_Metered)

    @app.exception_handler(_RequestError)
    async def _request_error(request: Request, exc: _RequestError):
        return error(exc.status, exc.error_type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:3]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        return error(500, "internal", f"internal error: {first_line(exc)}")

    def check_key(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise _RequestError(401, "unauthorized",
                                "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                                {"WWW-Authenticate": "Bearer"})

    def not_ready() -> _RequestError:
        if state["load_error"] is not None:
            return _RequestError(503, "not_ready", f"the model failed to load: {first_line(state['load_error'])}")
        return _RequestError(503, "not_ready", "the model is still loading", {"Retry-After": "1"})

    async def read_body(request: Request) -> bytes:
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _RequestError(413, "payload_too_large",
                                f"the body has {int(declared)} bytes; the server takes at most {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _RequestError(413, "payload_too_large", f"the body is over {limit} bytes, the server's limit")
            chunks.append(chunk)
        return b"".join(chunks)

    predict_schema = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "inputs": {"oneOf": [{"type": "string"},
                                         {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
                    "top_k": {"type": "integer", "minimum": 1},
                },
            }}},
        }
    }

    @app.post("/predict", openapi_extra=predict_schema,
              summary="Labels and scores of one text (a list) or of several (a list of lists)")
    async def predict(request: Request):
        check_key(request)
        batcher: MicroBatcher | None = state["batcher"]
        if batcher is None:
            raise not_ready()
        raw = await read_body(request)
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _RequestError(422, "invalid_request", f"the body is not valid JSON: {exc}") from None
        texts, single, top_k = parse_predict_request(payload, settings.max_inputs)
        try:
            proba = await batcher.submit(texts)
        except QueueFull as exc:
            # the batches ahead of this request times the mean inference time, at least 1 s
            mean_s = metrics.inference.sum / metrics.inference.count if metrics.inference.count else 0.0
            retry = max(1, math.ceil(math.ceil(batcher.waiting / settings.max_batch) * mean_s))
            raise _RequestError(429, "queue_full", f"the server is busy: {exc}; retry later",
                                {"Retry-After": str(retry)}) from None
        except ShuttingDown as exc:
            raise _RequestError(503, "shutting_down", str(exc)) from None
        clf = state["clf"]
        ranked = rank_labels(proba, clf.classes_, multi_label=clf.multi_label, threshold=clf.threshold, top_k=top_k)
        return JSONResponse(ranked[0] if single else ranked)  # built by hand: no jsonable_encoder pass

    @app.get("/health", summary="200 when the model is loaded, 503 while it loads")
    async def health():
        if state["batcher"] is None:
            status = "failed" if state["load_error"] is not None else "loading"
            return JSONResponse({"status": status}, status_code=503)
        return {"status": "ok"}

    @app.get("/info", summary="Labels, variant, versions and limits of the served model")
    async def info(request: Request):
        check_key(request)
        if state["info"] is None:
            raise not_ready()
        return JSONResponse(state["info"])

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics_endpoint(request: Request):
        check_key(request)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


# ---------------------------------------------------------------------------------- serve()


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free port).

    Raises:
        ServeError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and without it
    # every keep-alive response (headers and body written apart) waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(model_dir: str | Path, settings: ServeSettings | None = None, *,
          echo: Callable[[str], None] = lambda s: None) -> None:
    """Serve the model in ``model_dir`` over HTTP until SIGTERM or SIGINT, then return.

    The model directory and variant are checked before the port is bound; the model is then
    loaded in the worker thread while ``/health`` answers 503. ``echo`` receives progress lines
    (the URL once listening, then "ready").

    Raises:
        MissingDependency: fastapi or uvicorn is not installed.
        ModelNotFound, ModelFormatError, UnknownVariant, VariantNotExported: the model cannot be loaded.
        ServeError: the address cannot be bound, or loading failed otherwise.
    """
    _require_web()
    import uvicorn

    from .backends import get_spec, is_exported
    from .errors import VariantNotExported
    from .model import BODY_DIR, Classifier, default_variant, read_config

    settings = settings or ServeSettings()
    model_dir = Path(model_dir)
    cfg = read_config(model_dir)
    variant = settings.variant or default_variant(model_dir, cfg)
    get_spec(variant)
    if not is_exported(model_dir / BODY_DIR, variant):
        raise VariantNotExported(f"variant {variant!r} is not exported in {model_dir}; "
                                 f"export it with: fastclf accelerate {model_dir} --variant {variant}")

    def load() -> Classifier:
        clf = Classifier.load(model_dir, variant=variant)
        echo(f"ready: {model_dir} ({clf.variant}), labels: {', '.join(str(c) for c in clf.classes_)}")
        return clf

    server: uvicorn.Server | None = None

    def stop(exc: BaseException) -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(load, settings, on_load_error=stop)
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, log_level="warning", access_log=settings.access_log, lifespan="on",
                            timeout_graceful_shutdown=settings.shutdown_timeout_s, server_header=False)
    server = uvicorn.Server(config)
    echo(f"listening on http://{shown}:{port} (loading {model_dir}, variant {variant})")
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers in
    # place that is a no-op and serve() returns normally (exit code 0), instead of dying of SIGTERM
    # or raising KeyboardInterrupt.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    error = app.state.fastclf["load_error"]
    if error is not None:
        if isinstance(error, FastclfError):
            raise error
        raise ServeError(f"loading {model_dir} failed: {first_line(error)}") from error
    echo("stopped")
