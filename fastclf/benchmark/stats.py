"""Statistics of the timings: percentiles and throughput with percentile-bootstrap
confidence intervals (spaCy's ``benchmark speed`` reports speed the same way)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastclf.benchmark.results import Estimate, Latency, Throughput

N_BOOT = 1000
CONFIDENCE = 0.95


def percentile_ci(samples: Sequence[float], q: float, *, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                  seed: int = 0) -> tuple[float, float, float]:
    """The ``q``-th percentile of ``samples`` with a bootstrap confidence interval.

    Returns ``(value, low, high)``: the percentile (linear interpolation, numpy's default)
    and the percentile-bootstrap interval over ``n_boot`` resamples.

    Raises:
        ValueError: no samples.
    """
    (value, low, high), = percentiles_ci(np.asarray(samples, dtype=np.float64), (q,), n_boot=n_boot,
                                         confidence=confidence, seed=seed)
    return value, low, high


def percentiles_ci(x: np.ndarray, qs: Sequence[float], *, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                   seed: int = 0) -> list[tuple[float, float, float]]:
    """:func:`percentile_ci` for several percentiles ``qs`` of the same resamples.

    Raises:
        ValueError: no samples.
    """
    if x.size == 0:
        raise ValueError("no samples")
    values = np.percentile(x, qs)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 2_000_000 // x.size))  # resamples a step, to bound the memory
    boots = []
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        idx = rng.integers(0, x.size, size=(m, x.size))
        boots.append(np.percentile(x[idx], qs, axis=1))  # (len(qs), m)
        done += m
    resampled = np.concatenate(boots, axis=1)
    alpha = (1.0 - confidence) / 2
    lows = np.quantile(resampled, alpha, axis=1)
    highs = np.quantile(resampled, 1 - alpha, axis=1)
    return [(float(v), float(min(lo, v)), float(max(hi, v))) for v, lo, hi in zip(values, lows, highs)]


def latency_summary(samples_ns: Sequence[int], *, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                    seed: int = 0) -> Latency:
    """p50/p95/p99 (with bootstrap CIs), mean, min and max in milliseconds of per-call timings.

    Raises:
        ValueError: no samples.
    """
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p95, p99 = (Estimate(*v) for v in percentiles_ci(ms, (50, 95, 99), n_boot=n_boot, confidence=confidence,
                                                          seed=seed))
    return Latency(p50=p50, p95=p95, p99=p99, n=int(ms.size), mean=float(ms.mean()), min=float(ms.min()),
                   max=float(ms.max()))


def throughput_summary(batch_ns: Sequence[int], texts_per_batch: Sequence[int], *, n_boot: int = N_BOOT,
                       confidence: float = CONFIDENCE, seed: int = 0) -> Throughput:
    """Texts a second over timed batches, with a bootstrap CI (batches resampled)."""
    seconds = np.asarray(batch_ns, dtype=np.float64) / 1e9
    texts = np.asarray(texts_per_batch, dtype=np.float64)
    rate = float(texts.sum() / seconds.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, seconds.size, size=(n_boot, seconds.size))
    rates = texts[idx].sum(axis=1) / seconds[idx].sum(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(rates, [alpha, 1 - alpha])
    return Throughput(texts_per_s=rate, ci=(float(min(low, rate)), float(max(high, rate))),
                      batches=int(seconds.size), texts=int(texts.sum()), seconds=float(seconds.sum()),
                      ms_per_batch=float(np.median(seconds) * 1e3))
