"""The web side, FastAPI and uvicorn (loaded when used): the app's routes, API-key and body checks, JSON errors and
metering; :func:`serve` binds the socket and runs it until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import platform
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastclf._version import __version__
from fastclf.errors import FastclfError, first_line, missing_dependency
from fastclf.scoring.serve.batcher import MicroBatcher, QueueFull, ShuttingDown, token_counter
from fastclf.scoring.serve.metrics import Metrics
from fastclf.scoring.serve.protocol import RequestError, parse_predict_body, rank_labels, with_answers
from fastclf.scoring.serve.settings import LIMITS, ServeError, ServeSettings

try:  # the route functions' annotations are resolved in this module's globals (postponed annotations)
    from starlette.requests import Request
except ImportError:  # the serve extra is missing: create_app and serve say so
    Request = None  # type: ignore[assignment,misc]  # only an annotation then; create_app refuses to run

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from fastclf.model import Classifier

log = logging.getLogger("fastclf.scoring.serve")


def require_web() -> None:
    """MissingDependency unless fastapi, uvicorn and prometheus_client are installed."""
    for package in ("fastapi", "uvicorn", "prometheus_client"):
        try:
            __import__(package)
        except ImportError as exc:
            raise missing_dependency(package, "serve") from exc


class ServedModel:
    """The app's model: missing while it loads, then the classifier, its batcher and its /info; or its load error."""

    def __init__(self, settings: ServeSettings):
        self.settings, self.metrics = settings, Metrics()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastclf-infer")
        self.clf: Classifier | None = None
        self.batcher: MicroBatcher | None = None
        self.info: dict[str, Any] | None = None
        self.load_error: BaseException | None = None

    def ready(self, clf: Classifier) -> None:
        """Start serving ``clf``: its batcher runs on the current loop."""
        from fastclf._util import package_versions
        from fastclf.backends import get_spec

        # forwards of 16 pieces, taken in order of length: a short text is not padded to a long one's windows
        batcher = MicroBatcher(lambda texts: clf.predict_proba(texts, batch_size=16), self.settings,
                               count_tokens=token_counter(clf), metrics=self.metrics, executor=self.executor)
        batcher.start()
        self.info = {
            "labels": [str(c) for c in clf.classes_],
            "variant": clf.variant,
            "multi_label": bool(clf.multi_label),
            "threshold": float(clf.threshold),
            "model": Path(clf.path).name if clf.path is not None else None,  # not the absolute path
            "versions": {"fastclf": __version__, "python": platform.python_version(),
                         **package_versions((get_spec(clf.variant).package, "numpy"))},
            "limits": {name: getattr(self.settings, name) for name in LIMITS},
        }
        self.clf, self.batcher = clf, batcher

    async def load(self, loader: Callable[[], Classifier],
                   on_error: Callable[[BaseException], None] | None) -> None:
        """Run ``loader`` in the worker thread, then :meth:`ready`; on failure keep the error and tell ``on_error``."""
        try:
            clf = await asyncio.get_running_loop().run_in_executor(self.executor, loader)
        except Exception as exc:  # noqa: BLE001 - reported to serve(), which stops the server
            self.load_error = exc
            if on_error is not None:
                on_error(exc)
            return
        self.ready(clf)

    def not_ready(self) -> RequestError:
        """The 503 answer before the model is ready (loading, or failed to load)."""
        if self.load_error is not None:
            return RequestError(503, "not_ready", f"the model failed to load: {first_line(self.load_error)}")
        return RequestError(503, "not_ready", "the model is still loading", {"Retry-After": "1"})

    async def close(self) -> None:
        """Drain the batcher, then stop the worker thread."""
        if self.batcher is not None:
            await self.batcher.close()
        self.executor.shutdown(wait=True)


class MeteredMiddleware:
    """ASGI middleware: counts answers by path and status, times /predict; an unexpected error is a JSON 500."""

    def __init__(self, app: Any, metrics: Metrics):
        self.inner, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        started, status = time.perf_counter(), [0]
        predict = scope.get("path") == "/predict"
        if predict:
            self.metrics.in_flight.inc()

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.inner(scope, receive, send_status)
        except Exception as exc:  # noqa: BLE001 - a bug or a runtime failure: one line, the client gets JSON
            log.error("%s %s: %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__, first_line(exc))
            if not status[0]:  # nothing sent yet
                status[0] = 500
                await _error(500, "internal", f"internal error: {first_line(exc)}")(scope, receive, send)
        finally:
            if predict:
                self.metrics.in_flight.dec()
            self.metrics.request_done(scope.get("path", ""), status[0] or 500, time.perf_counter() - started)


def _error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"error": ..., "error_type": ...}``."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return _error(exc.status, exc.error_type, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))


def _check_key(request: Request, api_key: str | None) -> None:
    """A 401 RequestError unless the request has ``Authorization: Bearer <api_key>``."""
    if api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise RequestError(401, "unauthorized", "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                           {"WWW-Authenticate": "Bearer"})


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request's JSON body, up to ``limit`` bytes within ``timeout_s`` seconds; else a RequestError:
    413 too large, 422 not application/json, 408 too slow, 400 the client went away."""
    from starlette.requests import ClientDisconnect

    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(422, "invalid_request", f"send the body as 'Content-Type: application/json', not "
                                                   f"{kind[:40] or 'without a Content-Type'}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "payload_too_large",
                           f"the body has {int(declared)} bytes; the server takes at most {limit}")

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, "payload_too_large", f"the body is over {limit} bytes, the server's limit")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(408, "timeout", f"the body did not all come within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise RequestError(400, "client_disconnected", "the client went away before sending its body") from None


def _add_routes(app: FastAPI, model: ServedModel) -> None:
    from fastapi.responses import JSONResponse, Response

    settings, metrics = model.settings, model.metrics

    @app.post("/predict")
    async def predict(request: Request):
        _check_key(request, settings.api_key)
        batcher, clf = model.batcher, model.clf
        if batcher is None or clf is None:
            raise model.not_ready()
        body = await _read_body(request, settings.max_body_bytes, settings.read_timeout_s)
        texts, single, top_k, answer = parse_predict_body(body, settings.max_inputs, clf.config)  # before the batcher
        try:
            proba = await batcher.submit(texts)
        except QueueFull as exc:  # Retry-After: the full batches ahead times the mean inference time, at least 1 s
            retry = max(1, math.ceil(math.ceil(batcher.waiting / settings.max_batch_tokens) * metrics.inference_mean))
            raise RequestError(429, "queue_full", f"the server is busy: {exc}; retry later",
                               {"Retry-After": str(retry)}) from None
        except ShuttingDown as exc:
            raise RequestError(503, "shutting_down", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the inference of this request failed: one line, not a traceback
            log.error("POST /predict: inference failed: %s: %s", type(exc).__name__, first_line(exc))
            raise RequestError(500, "internal", f"inference failed: {first_line(exc)}") from None
        ranked = rank_labels(proba, clf.classes_, multi_label=clf.multi_label, threshold=clf.threshold, top_k=top_k)
        ranked = with_answers(ranked, proba, clf, answer)
        return JSONResponse(ranked[0] if single else ranked)  # built by hand: no jsonable_encoder pass

    @app.get("/health")
    async def health():
        if model.batcher is None:
            return JSONResponse({"status": "failed" if model.load_error is not None else "loading"}, status_code=503)
        return {"status": "ok"}

    @app.get("/info")
    async def info(request: Request):
        _check_key(request, settings.api_key)
        if model.info is None:
            raise model.not_ready()
        return JSONResponse(model.info)

    @app.get("/metrics")
    async def metrics_endpoint(request: Request):
        _check_key(request, settings.api_key)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(classifier_or_loader: Classifier | Callable[[], Classifier], settings: ServeSettings | None = None, *,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app serving a Classifier, or one a function loads in the worker thread at start-up (503 until then, and
    after a failed load, which ``on_load_error`` gets); ``app.state.fastclf`` is the :class:`ServedModel`."""
    require_web()
    from fastapi import FastAPI
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    model = ServedModel(settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = None
        if hasattr(classifier_or_loader, "predict_proba"):
            model.ready(classifier_or_loader)  # type: ignore[arg-type]
        else:
            loading = asyncio.get_running_loop().create_task(model.load(classifier_or_loader, on_load_error))
        try:
            yield
        finally:
            if loading is not None:
                await loading
            await model.close()

    # no /docs, /redoc, /openapi.json: they would load scripts from a CDN and need no key
    app = FastAPI(title="fastclf", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.fastclf = model
    # a Host header outside the allow-list is answered 400: a web page on a rebound DNS name cannot reach the server
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=model.settings.hosts)
    app.add_middleware(MeteredMiddleware, metrics=model.metrics)
    _add_error_handlers(app)
    _add_routes(app, model)
    return app


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free port); ServeError when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, or asyncio leaves TCP_NODELAY off and each keep-alive answer waits for a delayed ACK
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


def uvicorn_config(app: Any, settings: ServeSettings) -> Any:
    """uvicorn's configuration of ``app``: h11 (16 KiB of headers), a deadline for a request's headers, idle
    connections closed after 5 s, at most ``max_connections`` open."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        """Closes a connection without a whole request's headers ``read_timeout_s`` after it opened or answered."""

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.loop.call_later(settings.read_timeout_s, self._headers_due, self.cycle)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.loop.call_later(settings.read_timeout_s, self._headers_due, self.cycle)

        def _headers_due(self, cycle: Any) -> None:
            if self.cycle is cycle and not self.transport.is_closing():  # no request began since
                self.timeout_keep_alive_handler()

    config = uvicorn.Config(app, http=Protocol, log_level="warning", access_log=settings.access_log, lifespan="on",
                            timeout_keep_alive=5, h11_max_incomplete_event_size=16 * 1024,
                            limit_concurrency=settings.max_connections, server_header=False,
                            timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s))
    if settings.access_log:  # log_level="warning" also silenced the access log
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return config


@contextmanager
def _signals_handled_by_uvicorn() -> Iterator[None]:
    """No-op SIGINT and SIGTERM handlers (main thread only): uvicorn re-raises the signal that stopped it."""
    signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(model_dir: Path, settings: ServeSettings, *, echo: Callable[[str], None]) -> None:
    """Serve the model in ``model_dir`` over HTTP until SIGTERM or SIGINT, loading it once the port is bound (its
    folder and variant are checked before); ``echo`` gets progress lines. ServeError: no bind, or a failed load."""
    require_web()
    import uvicorn

    from fastclf.model import Classifier
    from fastclf.modeldir import ModelDir

    variant = ModelDir(model_dir).resolve(settings.variant)  # a bad model or variant fails before the port is bound

    def load() -> Classifier:
        clf = Classifier.load(model_dir, variant=variant)
        echo(f"ready: {model_dir} ({clf.variant}), labels: {', '.join(str(c) for c in clf.classes_)}")
        return clf

    def stop(exc: BaseException) -> None:  # the model loads once the server runs
        server.should_exit = True

    app = create_app(load, settings, on_load_error=stop)
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(app, settings))
    echo(f"listening on http://{f'[{host}]' if ':' in host else host}:{port} (loading {model_dir}, variant {variant})")
    try:
        with _signals_handled_by_uvicorn():
            server.run(sockets=[sock])
    finally:
        sock.close()
    error = app.state.fastclf.load_error
    if error is not None:
        if isinstance(error, FastclfError):
            raise error
        raise ServeError(f"loading {model_dir} failed: {first_line(error)}") from error
    echo("stopped")
