"""A brief timing of a loaded variant on this machine, head included (``accelerate --auto``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .backends import settle_one_text


@dataclass
class Timing:
    """Speed of a loaded variant on this machine (head included)."""

    one_text_p50_ms: float
    one_text_calls: int
    batch_size: int
    texts_per_s: float
    batch_calls: int



def time_body(body, head, texts: Sequence[str], *, one_text_seconds: float = 1.5, batch_seconds: float = 2.0,
              batch_size: int = 32) -> Timing:
    """Brief timing on this machine: p50 of one-text calls over ``one_text_seconds`` (texts taken in
    turn), then texts/s at ``batch_size`` over ``batch_seconds``, after one warm-up call each."""
    texts = [t for t in texts if t.strip()] or ["a short example text"]

    def call(batch: list[str]) -> None:
        head.predict_proba(np.asarray(body.encode(batch, batch_size=batch_size), dtype=np.float32))

    call(texts[:1])
    settle_one_text(body, lambda text: call([text]), texts)  # OpenVINO's one-text shapes compiled first
    samples: list[float] = []
    end = time.perf_counter() + one_text_seconds
    i = 0
    while time.perf_counter() < end or len(samples) < 5:
        t0 = time.perf_counter()
        call([texts[i % len(texts)]])
        samples.append(time.perf_counter() - t0)
        i += 1
    batches = [(texts * (batch_size // len(texts) + 1))[k:k + batch_size] for k in range(0, len(texts), batch_size)]
    call(batches[0])
    done = calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < batch_seconds or calls < 2:
        batch = batches[calls % len(batches)]
        call(batch)
        done += len(batch)
        calls += 1
    elapsed = time.perf_counter() - start
    return Timing(round(float(np.median(samples)) * 1000, 3), len(samples), batch_size,
                  round(done / elapsed, 1), calls)

