"""The server's settings and their checks: :class:`ServeSettings`, :func:`parse_size`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastclf.errors import FastclfError


class ServeError(FastclfError, RuntimeError):
    """The server cannot start or stopped because of an error."""


class ServeSettingsError(FastclfError, ValueError):
    """A server setting is out of range."""


_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


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
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens, batches and limits requests.

    ``max_queue`` counts tokens waiting for a batch; its default, 2**20, takes any 1 MB body
    (a token covers at least one byte) with room for others beside it.
    ``read_timeout_s`` bounds the time to receive a request's headers and, apart, its body;
    ``max_connections`` the open connections (past it uvicorn answers 503); ``allowed_hosts``
    the Host header values answered (None: the loopback names and ``host``; ``"*"``: any).
    ``shutdown_timeout_s`` is rounded up to whole seconds (uvicorn takes an int).

    Raises:
        ServeSettingsError: a setting is out of range.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    variant: str | None = None
    api_key: str | None = None
    max_batch: int = 64
    max_batch_tokens: int = 2048
    max_wait_ms: float = 5.0
    max_queue: int = 1 << 20
    max_inputs: int = 256
    max_body_bytes: int = 1_000_000
    read_timeout_s: float = 30.0
    max_connections: int = 256
    allowed_hosts: tuple[str, ...] | None = None
    shutdown_timeout_s: float = 30.0
    access_log: bool = False

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ServeSettingsError(message)

        need(0 <= self.port <= 65535, f"--port must be between 0 and 65535, not {self.port}")
        need(self.max_batch >= 1, f"--max-batch must be at least 1, not {self.max_batch}")
        need(self.max_batch_tokens >= 1, f"--max-batch-tokens must be at least 1, not {self.max_batch_tokens}")
        need(self.max_queue >= 1, f"--max-queue must be at least 1, not {self.max_queue}")
        need(self.max_wait_ms >= 0, f"--max-wait-ms must be 0 or more, not {self.max_wait_ms}")
        need(self.max_inputs >= 1, f"--max-inputs must be at least 1, not {self.max_inputs}")
        need(self.max_body_bytes >= 1, f"--max-body-bytes must be at least 1, not {self.max_body_bytes}")
        need(self.read_timeout_s > 0, f"--read-timeout must be more than 0, not {self.read_timeout_s}")
        need(self.max_connections >= 1, f"--max-connections must be at least 1, not {self.max_connections}")
        need(self.api_key is None or self.api_key.strip() != "", "the API key is empty")
        need(self.api_key is None or self.api_key == self.api_key.strip(),
             "the API key starts or ends with whitespace (a space or a newline); no client would send it: remove it")

    @property
    def hosts(self) -> list[str]:
        """The Host header values answered."""
        if self.allowed_hosts is not None:
            return list(self.allowed_hosts)
        return ["127.0.0.1", "localhost", "[::1]", f"[{self.host}]" if ":" in self.host else self.host]

    def limits(self) -> dict[str, float | int]:
        """The request limits, as ``GET /info`` shows them."""
        return {"max_batch": self.max_batch, "max_batch_tokens": self.max_batch_tokens, "max_wait_ms": self.max_wait_ms,
                "max_queue": self.max_queue, "max_inputs": self.max_inputs, "max_body_bytes": self.max_body_bytes,
                "read_timeout_s": self.read_timeout_s, "max_connections": self.max_connections}
