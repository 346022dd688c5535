"""``fastclf serve``: an HTTP server for a fastclf model (FastAPI + uvicorn; the ``serve`` extra).

``POST /predict {"inputs": "text" | ["text", ...], "top_k": 2}`` answers each text's labels ranked by score
(one list for one string, as text-embeddings-inference does); ``GET /health``, ``/info``, ``/metrics``
(Prometheus). Each request is checked and its tokens counted on its own, then :class:`MicroBatcher` batches the
texts of concurrent requests by tokens; SIGTERM drains them. Modules: settings, protocol (the /predict body
and answer), batcher, metrics, app (routes and middleware), server (socket, uvicorn, signals).
"""

from __future__ import annotations

from fastclf.scoring.serve.app import create_app
from fastclf.scoring.serve.batcher import MicroBatcher, QueueFull, ShuttingDown
from fastclf.scoring.serve.protocol import parse_predict_body, rank_labels
from fastclf.scoring.serve.server import _bind as _bind  # tests check the listening socket
from fastclf.scoring.serve.server import serve
from fastclf.scoring.serve.settings import ServeError, ServeSettings, ServeSettingsError, parse_size

__all__ = [
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
    "serve",
]
