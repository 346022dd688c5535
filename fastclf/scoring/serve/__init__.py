"""``fastclf serve``: an HTTP server for a fastclf model (the ``serve`` extra). Modules: settings, protocol (the
/predict body and answer), batcher (micro-batches by tokens), metrics, app (FastAPI and uvicorn: routes, serve)."""

from __future__ import annotations

import importlib
from typing import Any

# each public name's module, imported at first use: the CLI reads the settings without loading fastapi
_MODULES = {"create_app": "app", "serve": "app", "MicroBatcher": "batcher", "QueueFull": "batcher",
            "ShuttingDown": "batcher", "parse_predict_body": "protocol", "rank_labels": "protocol",
            "ServeError": "settings", "ServeSettings": "settings", "ServeSettingsError": "settings",
            "parse_size": "settings"}
__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
