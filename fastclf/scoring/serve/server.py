"""Running the app: bind the socket, run uvicorn until SIGTERM or SIGINT, report a failed load."""

from __future__ import annotations

import logging
import math
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastclf.errors import FastclfError, first_line
from fastclf.scoring.serve.app import create_app, require_web
from fastclf.scoring.serve.settings import ServeError, ServeSettings

if TYPE_CHECKING:  # pragma: no cover
    from fastclf.model import Classifier


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free port); ServeError when it cannot be bound."""
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
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: None)
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
