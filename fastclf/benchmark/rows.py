"""The rows of a benchmark: which variants run (checked first), and each one's row from its process's raw output,
scored against the labels, timings with percentile-bootstrap confidence intervals (as spaCy's ``benchmark speed``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastclf.backends import REFERENCE, get_spec, runtime_installed
from fastclf.benchmark.results import Estimate, Latency, Load, Memory, Row, Size, Throughput
from fastclf.errors import missing_dependency
from fastclf.modeldir import ModelDir

N_BOOT = 1000
CONFIDENCE = 0.95


def resolve_variants(model_dir: str | Path, variants: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(variants to run, notes): None runs every exported variant whose runtime is installed; torch-fp32 runs first.

    Raises:
        UnknownVariant, VariantNotExported, MissingDependency: a name that cannot run.
    """
    folder = ModelDir(model_dir)
    if variants is None:
        chosen = folder.exported()
        skipped = [v for v in chosen if not runtime_installed(v)]
        notes = [f"skipped {', '.join(skipped)}: runtime not installed"] if skipped else []
        return [v for v in chosen if v not in skipped], notes
    names = list(dict.fromkeys(v.strip() for v in variants if v.strip()))
    for spec in [get_spec(v) for v in names]:
        folder.resolve(spec.name)
        if not runtime_installed(spec.name):
            raise missing_dependency(spec.package, spec.extra)
    notes = [] if REFERENCE in names else [f"{REFERENCE} added: it is the reference for agreement and for the "
                                           "recommendation"]
    return [REFERENCE] + [n for n in names if n != REFERENCE], notes


def variant_size(model_dir: str | Path, variant: str) -> Size:
    """The size on disk of the files that running ``variant`` reads."""
    root = Path(model_dir).resolve()
    files = ModelDir(root).files(variant)
    total = sum(p.stat().st_size for p in files)
    return Size(bytes=total, mb=total / 1e6, files=[str(p.relative_to(root)) for p in files])


def _interval(resampled: np.ndarray, value: float) -> list[float]:
    alpha = (1.0 - CONFIDENCE) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return [float(min(low, value)), float(max(high, value))]


def percentiles_ci(x: np.ndarray, qs: Sequence[float], seed: int = 0) -> list[Estimate]:
    """The percentiles ``qs`` of ``x`` (numpy's linear interpolation), each with its bootstrap interval (N_BOOT
    resamples).

    Raises:
        ValueError: no samples.
    """
    if x.size == 0:
        raise ValueError("no samples")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(N_BOOT, 2_000_000 // x.size))  # resamples a step, to bound the memory
    boots = [np.percentile(x[rng.integers(0, x.size, size=(min(chunk, N_BOOT - done), x.size))], qs, axis=1)
             for done in range(0, N_BOOT, chunk)]
    resampled = np.concatenate(boots, axis=1)  # (len(qs), N_BOOT)
    values = np.percentile(x, qs)
    return [Estimate(value=float(v), ci=_interval(r, v)) for v, r in zip(values, resampled)]


def percentile_ci(samples: Sequence[float], q: float, seed: int = 0) -> tuple[float, float, float]:
    """``(value, low, high)``: the ``q``-th percentile of ``samples`` and its bootstrap interval."""
    (e,) = percentiles_ci(np.asarray(samples, dtype=np.float64), (q,), seed)
    return e.value, e.ci[0], e.ci[1]


def latency_summary(samples_ns: Sequence[int], **extra: Any) -> Latency:
    """p50/p95/p99 (with bootstrap CIs), mean, min and max in milliseconds of per-call timings (and ``extra``)."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p95, p99 = percentiles_ci(ms, (50, 95, 99))
    return Latency(p50=p50, p95=p95, p99=p99, n=int(ms.size), mean=float(ms.mean()), min=float(ms.min()),
                   max=float(ms.max()), **extra)


def throughput_summary(batch_ns: Sequence[int], texts_per_batch: Sequence[int], **extra: Any) -> Throughput:
    """Texts a second over timed batches, with a bootstrap CI (batches resampled), and ``extra``."""
    seconds = np.asarray(batch_ns, dtype=np.float64) / 1e9
    texts = np.asarray(texts_per_batch, dtype=np.float64)
    rate = float(texts.sum() / seconds.sum())
    idx = np.random.default_rng(0).integers(0, seconds.size, size=(N_BOOT, seconds.size))
    rates = texts[idx].sum(axis=1) / seconds[idx].sum(axis=1)
    return Throughput(texts_per_s=rate, ci=_interval(rates, rate),
                      batches=int(seconds.size), texts=int(texts.sum()), seconds=float(seconds.sum()),
                      ms_per_batch=float(np.median(seconds) * 1e3), **extra)


@dataclass
class Scoring:
    """What a row's predictions are scored against."""

    labels: list  # the true labels of the evaluation texts (a list of labels a text when multi-label)
    classes: list[str]
    multi_label: bool
    reference: list | None = None  # torch-fp32's predictions, once measured

    def score(self, row: Row, preds: list | None) -> None:
        from fastclf.evaluation import scores

        if preds is None or len(preds) != len(self.labels):
            return
        m = scores(self.classes, self.labels, preds, multi_label=self.multi_label)
        row.accuracy, row.macro_f1, row.n_eval = m["accuracy"], m["macro_f1"], m["n"]
        if self.reference is not None and len(self.reference) == len(preds):
            norm = sorted if self.multi_label else (lambda p: p)
            row.agreement = float(np.mean([norm(a) == norm(b) for a, b in zip(preds, self.reference)]))


def build_row(model_dir, name: str, kind: str, description: str, raw: dict[str, Any], scoring: Scoring) -> Row:
    """The row of ``name`` from the raw measurements of its process."""
    row = Row(name=name, kind=kind, description=description, status=raw.get("status", "error"),
              error=raw.get("error"), size=variant_size(model_dir, REFERENCE if kind == "baseline" else name),
              memory=Memory(**raw["memory"]) if raw.get("memory") else None,
              load=Load(**raw["load"]) if raw.get("load") else None,
              threads=raw.get("threads"), runtime_settings=raw.get("runtime_settings"),
              eval_seconds=raw.get("eval_seconds"), max_tokens=raw.get("max_tokens"))
    lat = raw.get("latency") or {}
    if lat.get("samples_ns"):
        row.latency_ms = latency_summary(lat["samples_ns"], warmup_calls=lat.get("warmup_calls"),
                                         seconds=lat.get("seconds"))
    row.throughput = {str(b): throughput_summary(t["batch_ns"], t["texts"], batch_size=int(b),
                                                 warmup_batches=t.get("warmup_batches"))
                      for b, t in (raw.get("throughput") or {}).items() if t.get("batch_ns")}
    scoring.score(row, raw.get("predictions"))
    return row
