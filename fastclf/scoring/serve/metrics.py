"""The server's Prometheus metrics (prometheus_client, one registry for each app)."""

from __future__ import annotations

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_PATHS = ("/predict", "/health", "/info", "/metrics")


class Metrics:
    """Requests by path and status, /predict latency, batches, texts, tokens waiting and requests in flight."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.requests = Counter("fastclf_requests", "HTTP requests answered, by path and status code.",
                                ["path", "code"], registry=registry)
        self.latency = Histogram("fastclf_request_duration_seconds", "Latency of POST /predict, all status codes.",
                                 buckets=_LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram("fastclf_batch_size", "Texts in each predict_proba call.",
                                    buckets=_BATCH_BUCKETS, registry=registry)
        self.inference = Histogram("fastclf_inference_seconds", "Duration of each predict_proba call.",
                                   buckets=_LATENCY_BUCKETS, registry=registry)
        self.texts = Counter("fastclf_texts", "Texts classified.", registry=registry)
        self.queue_depth = Gauge("fastclf_queue_depth", "Tokens waiting for a batch.", registry=registry)
        self.in_flight = Gauge("fastclf_requests_in_flight", "POST /predict requests received and not yet answered.",
                               registry=registry)
        self.inference_mean = 0.0  # seconds, a running mean: the Retry-After of a 429
        self._batches = 0

    def request_done(self, path: str, code: int, seconds: float) -> None:
        path = path if path in _PATHS else "other"
        self.requests.labels(path, str(code)).inc()
        if path == "/predict":
            self.latency.observe(seconds)

    def batch_done(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        self.texts.inc(size)
        self._batches += 1
        self.inference_mean += (seconds - self.inference_mean) / self._batches
