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
#: the settings ``GET /info`` shows
LIMITS = ("max_batch", "max_batch_tokens", "max_wait_ms", "max_queue", "max_inputs", "max_body_bytes",
          "read_timeout_s", "max_connections")


def parse_size(text: str) -> int:
    """A byte count from ``"1MB"``, ``"512KiB"``, ``"2000"`` (KB: 1000 bytes, KiB: 1024); ServeSettingsError else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?[bB]|[bB])?\s*", text)
    if not m:
        raise ServeSettingsError(f"not a size: {text!r} (write e.g. 1MB, 512KiB or 2000)")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens, batches and limits requests (``fastclf serve --help`` says what each does);
    ServeSettingsError for one out of range. ``max_queue`` counts tokens: its default takes any 1 MB body."""

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
    allowed_hosts: tuple[str, ...] | None = None  # None: the loopback names and ``host``; ("*",): any
    shutdown_timeout_s: float = 30.0
    access_log: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_batch_tokens", "max_queue", "max_inputs", "max_body_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise ServeSettingsError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        for ok, message in (
            (0 <= self.port <= 65535, f"--port must be between 0 and 65535, not {self.port}"),
            (self.max_wait_ms >= 0, f"--max-wait-ms must be 0 or more, not {self.max_wait_ms}"),
            (self.read_timeout_s > 0, f"--read-timeout must be more than 0, not {self.read_timeout_s}"),
            (self.api_key is None or self.api_key.strip() != "", "the API key is empty"),
            (self.api_key is None or self.api_key == self.api_key.strip(),
             "the API key starts or ends with whitespace (a space or a newline); no client would send it: remove it"),
        ):
            if not ok:
                raise ServeSettingsError(message)

    @property
    def hosts(self) -> list[str]:
        """The Host header values answered."""
        if self.allowed_hosts is not None:
            return list(self.allowed_hosts)
        return ["127.0.0.1", "localhost", "[::1]", f"[{self.host}]" if ":" in self.host else self.host]
