"""The one timing loop (warm-up, then calls timed for a duration), used by the benchmark's workers and by
``accelerate --auto`` through ``Classifier.predict_proba`` (tokenizing and the head included)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastclf.backends import settle_one_text


@dataclass
class Timing:
    """Speed of a loaded variant on this machine (head included)."""

    one_text_p50_ms: float
    one_text_calls: int
    batch_size: int
    texts_per_s: float
    batch_calls: int


def cycle_batches(texts: Sequence[str], size: int, start: int = 0) -> Iterator[list[str]]:
    """Consecutive batches of ``size`` texts, cycling through ``texts``."""
    i, n = start, len(texts)
    while True:
        yield [texts[(i + k) % n] for k in range(size)]
        i = (i + size) % n


def time_calls(call: Callable[[list[str]], Any], batches: Iterator[list[str]], *, warmup_s: float,
               warmup_min: int, duration_s: float, min_calls: int) -> tuple[list[int], list[int], int]:
    """Warm up, then time ``min_calls`` calls or more for ``duration_s``: (ns, texts a call; warm-up calls)."""
    clock = time.perf_counter_ns
    warm = 0
    end = clock() + int(warmup_s * 1e9)
    while warm < warmup_min or clock() < end:
        call(next(batches))
        warm += 1
    times: list[int] = []
    sizes: list[int] = []
    end = clock() + int(duration_s * 1e9)
    while len(times) < min_calls or clock() < end:
        batch = next(batches)
        t0 = clock()
        call(batch)
        times.append(clock() - t0)
        sizes.append(len(batch))
    return times, sizes, warm


def time_classifier(clf: Any, texts: Sequence[str], *, one_text_seconds: float = 1.5, batch_seconds: float = 2.0,
                    batch_size: int = 32) -> Timing:
    """Brief timing of a Classifier: p50 of one-text calls, then texts/s at ``batch_size``."""
    texts = [t for t in texts if t.strip()] or ["a short example text"]

    def call(batch: list[str]) -> None:
        clf.predict_proba(batch, batch_size=batch_size)

    settle_one_text(clf.body, lambda text: call([text]), texts)  # OpenVINO's one-text shapes compiled first
    one, _, _ = time_calls(call, cycle_batches(texts, 1), warmup_s=0, warmup_min=1, duration_s=one_text_seconds,
                           min_calls=5)
    times, sizes, _ = time_calls(call, cycle_batches(texts, batch_size), warmup_s=0, warmup_min=1,
                                 duration_s=batch_seconds, min_calls=2)
    return Timing(round(float(np.median(one)) / 1e6, 3), len(one), batch_size,
                  round(sum(sizes) / (sum(times) / 1e9), 1), len(times))
