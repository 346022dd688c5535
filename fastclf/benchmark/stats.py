"""Percentiles and throughput with percentile-bootstrap confidence intervals (as spaCy's ``benchmark speed``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastclf.benchmark.results import Estimate, Latency, Throughput

N_BOOT = 1000
CONFIDENCE = 0.95


def _interval(resampled: np.ndarray, value: float, confidence: float) -> list[float]:
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return [float(min(low, value)), float(max(high, value))]


def percentiles_ci(x: np.ndarray, qs: Sequence[float], *, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                   seed: int = 0) -> list[Estimate]:
    """The percentiles ``qs`` of ``x`` (numpy's linear interpolation), each with its bootstrap interval.

    Raises:
        ValueError: no samples.
    """
    if x.size == 0:
        raise ValueError("no samples")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 2_000_000 // x.size))  # resamples a step, to bound the memory
    boots = [np.percentile(x[rng.integers(0, x.size, size=(min(chunk, n_boot - done), x.size))], qs, axis=1)
             for done in range(0, n_boot, chunk)]
    resampled = np.concatenate(boots, axis=1)  # (len(qs), n_boot)
    values = np.percentile(x, qs)
    return [Estimate(float(v), _interval(r, v, confidence)) for v, r in zip(values, resampled)]


def percentile_ci(samples: Sequence[float], q: float, **kwargs) -> tuple[float, float, float]:
    """``(value, low, high)``: the ``q``-th percentile of ``samples`` and its bootstrap interval."""
    (e,) = percentiles_ci(np.asarray(samples, dtype=np.float64), (q,), **kwargs)
    return e.value, e.low, e.high


def latency_summary(samples_ns: Sequence[int]) -> Latency:
    """p50/p95/p99 (with bootstrap CIs), mean, min and max in milliseconds of per-call timings."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p95, p99 = percentiles_ci(ms, (50, 95, 99))
    return Latency(p50=p50, p95=p95, p99=p99, n=int(ms.size), mean=float(ms.mean()), min=float(ms.min()),
                   max=float(ms.max()))


def throughput_summary(batch_ns: Sequence[int], texts_per_batch: Sequence[int]) -> Throughput:
    """Texts a second over timed batches, with a bootstrap CI (batches resampled)."""
    seconds = np.asarray(batch_ns, dtype=np.float64) / 1e9
    texts = np.asarray(texts_per_batch, dtype=np.float64)
    rate = float(texts.sum() / seconds.sum())
    idx = np.random.default_rng(0).integers(0, seconds.size, size=(N_BOOT, seconds.size))
    rates = texts[idx].sum(axis=1) / seconds[idx].sum(axis=1)
    return Throughput(texts_per_s=rate, ci=_interval(rates, rate, CONFIDENCE),
                      batches=int(seconds.size), texts=int(texts.sum()), seconds=float(seconds.sum()),
                      ms_per_batch=float(np.median(seconds) * 1e3))
