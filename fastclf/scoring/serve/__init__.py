"""``fastclf serve``: an HTTP server for a fastclf model (FastAPI + uvicorn).

Endpoints (request shape as text-embeddings-inference users know it)::

    POST /predict  {"inputs": "text" | ["text", ...], "top_k": 2}
        -> for one string: [{"label": ..., "score": ...}, ...]          (one list, as TEI does)
        -> for a list:     [[{"label": ..., "score": ...}, ...], ...]   (one list per text)
    GET  /health   200 {"status": "ok"} when the model is loaded, 503 {"status": "loading"} before
    GET  /info     labels, variant, multi_label, threshold, model folder name, versions, limits
    GET  /metrics  Prometheus text format

Each text's list is sorted by score, highest first. Without ``top_k`` a single-label model
answers its best label only (top_k=1); a multi-label model answers every label whose
probability is at least the model's threshold (possibly none). With ``top_k`` both answer the
``top_k`` best labels (all of them if ``top_k`` is larger than the number of labels).
With ``min_confidence`` (and ``unsure_label``) or ``coverage`` in the request, each text's answer
is an object instead: ``{"label", "confidence", "scores": [the list above], "prediction_set"}``,
the label being the unsure label below ``min_confidence`` (see ``fastclf predict --help``).

Each request's texts are checked and their tokens counted on their own; a
:class:`MicroBatcher` then gathers the texts of concurrent requests, waiting at most
``max_wait_ms`` after the first, into batches of at most ``max_batch`` texts and
``max_batch_tokens`` tokens, taking one text of each waiting request in turn, and runs one
``clf.predict_proba`` call a batch in a worker thread, so inference never blocks the event loop.
The tokens waiting are bounded by ``max_queue``: past it a request is answered 429 with a
``Retry-After`` header. Every error is JSON ``{"error": "...", "error_type": "..."}``.

On SIGTERM or SIGINT the server stops accepting connections, answers the requests already
received (the batcher is drained in the FastAPI lifespan) and :func:`serve` returns.

fastapi and uvicorn are imported only when a server is built (the ``serve`` extra), and the
model's runtime only when it is loaded: serving an ONNX or OpenVINO variant never imports torch.

The package, one job a module:

- :mod:`.settings`: :class:`ServeSettings` and :func:`parse_size`, with the errors they raise.
- :mod:`.protocol`: the /predict body check and the ranked answer (no web framework needed).
- :mod:`.batcher`: :class:`MicroBatcher`, gathering concurrent texts into batches.
- :mod:`.metrics`: the Prometheus counters and histograms.
- :mod:`.app`: :func:`create_app`, the FastAPI routes, errors and middleware.
- :mod:`.server`: :func:`serve`, the socket, uvicorn and signal handling.
"""

from __future__ import annotations

from fastclf.scoring.serve.app import create_app, runtime_versions
from fastclf.scoring.serve.batcher import MicroBatcher, QueueFull, ShuttingDown
from fastclf.scoring.serve.metrics import Metrics
from fastclf.scoring.serve.protocol import parse_predict_body, rank_labels
from fastclf.scoring.serve.server import _bind as _bind  # tests check the listening socket
from fastclf.scoring.serve.server import serve
from fastclf.scoring.serve.settings import ServeError, ServeSettings, ServeSettingsError, parse_size

__all__ = [
    "Metrics",
    "MicroBatcher",
    "QueueFull",
    "ServeError",
    "ServeSettings",
    "ServeSettingsError",
    "ShuttingDown",
    "create_app",
    "parse_predict_body",
    "parse_size",
    "rank_labels",
    "runtime_versions",
    "serve",
]
