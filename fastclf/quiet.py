"""The one place that quiets third-party libraries: their loggers and warnings, and (for exporters)
what they print, logged at DEBUG instead. Nothing here changes a setting for good: each is a
context that restores what it changed."""

from __future__ import annotations

import contextlib
import logging
import tempfile

logger = logging.getLogger(__name__)

#: libraries whose INFO chatter and warnings say nothing about the user's model
CHATTY = ("transformers", "sentence_transformers", "setfit", "datasets", "optimum", "nncf", "openvino",
          "neural_compressor", "torchao", "torch.utils._pytree")


@contextlib.contextmanager
def quiet_logs(names: tuple[str, ...] = CHATTY):
    """Loggers ``names`` at ERROR and Python warnings off inside the block; restored after."""
    import warnings

    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, old):
            lg.setLevel(level)


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False):
    """Hide what exporters and runtimes print (NNCF progress, transformers and hub warnings,
    inductor UserWarnings): stdout, stderr (also at the file-descriptor level, where C++
    libraries write) and Python warnings are captured and logged at DEBUG. ``verbose``: let
    everything through."""
    if verbose:
        yield
        return
    import io
    import os
    import sys
    import warnings

    buffer = io.StringIO()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in (1, 2):
            try:
                sys.stdout.flush() if fd == 1 else sys.stderr.flush()
            except Exception:
                pass
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
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
            text = buffer.getvalue() + sink.read().decode("utf-8", "replace")
            for w in caught or []:
                logger.debug("%s: %s", w.category.__name__, w.message)
            if text.strip():
                logger.debug("third-party output:\n%s", text.strip()[-20000:])

