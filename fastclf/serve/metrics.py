"""The server's counters and histograms, rendered by hand in the Prometheus text format (0.0.4)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_PATHS = ("/predict", "/health", "/info", "/metrics")


class _Histogram:
    """Cumulative buckets, a sum and a count, as a Prometheus histogram has them."""

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

    @property
    def mean(self) -> float:
        """The mean of the observed values (0 before the first)."""
        return self.sum / self.count if self.count else 0.0

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{_fmt(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {_fmt(self.sum)}", f"{name}_count {self.count}"]
        return out


def _fmt(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else f"{float(x):.1f}"


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


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
            lines = _header("fastclf_requests_total", "counter", "HTTP requests answered, by path and status code.")
            lines += [f'fastclf_requests_total{{path="{p}",code="{c}"}} {n}'
                      for (p, c), n in sorted(self.requests.items())]
            for name, help_text, histogram in (
                ("fastclf_request_duration_seconds", "Latency of POST /predict, all status codes.", self.latency),
                ("fastclf_batch_size", "Texts in each predict_proba call.", self.batch_size),
                ("fastclf_inference_seconds", "Duration of each predict_proba call.", self.inference),
            ):
                lines += [*_header(name, "histogram", help_text), *histogram.lines(name)]
            for name, kind, help_text, value in (
                ("fastclf_texts_total", "counter", "Texts classified.", self.texts),
                ("fastclf_queue_depth", "gauge", "Texts waiting for a batch.", self.queue_depth),
                ("fastclf_requests_in_flight", "gauge", "POST /predict requests received and not yet answered.",
                 self.in_flight),
            ):
                lines += [*_header(name, kind, help_text), f"{name} {value}"]
        return "\n".join(lines) + "\n"
