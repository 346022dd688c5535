"""The one place that quiets third-party libraries: their loggers, warnings and (for exporters) what they print,
logged at DEBUG instead. Each is a context that restores what it changed."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings

logger = logging.getLogger(__name__)

#: libraries whose INFO chatter and warnings say nothing about the user's model
CHATTY = ("transformers", "sentence_transformers", "setfit", "datasets", "optimum", "nncf", "openvino",
          "neural_compressor", "torchao", "torch.utils._pytree")


@contextlib.contextmanager
def quiet_logs(names: tuple[str, ...] = CHATTY):
    """Loggers ``names`` at ERROR and Python warnings off inside the block."""
    loggers = {lg: lg.level for lg in map(logging.getLogger, names)}
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in loggers.items():
            lg.setLevel(level)


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False):
    """Capture stdout, stderr (also at the file-descriptor level, where C++ libraries write) and warnings, and
    log them at DEBUG; ``verbose`` lets everything through."""
    if verbose:
        yield
        return
    buffer = io.StringIO()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
            with contextlib.suppress(Exception):
                stream.flush()
            with contextlib.suppress(OSError):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        caught: list = []
        try:
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buffer), \
                    contextlib.redirect_stderr(buffer):
                warnings.simplefilter("always")
                yield
        finally:
            for fd, dup in saved:
                os.dup2(dup, fd)
                os.close(dup)
            sink.seek(0)
            for w in caught or []:
                logger.debug("%s: %s", w.category.__name__, w.message)
            text = (buffer.getvalue() + sink.read().decode("utf-8", "replace")).strip()
            if text:
                logger.debug("third-party output:\n%s", text[-20000:])
