"""From a measuring process's raw output to a :class:`~fastclf.benchmark.results.Row`:
accuracy and agreement scored against the labels, timings summarized with their CIs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fastclf.backends import REFERENCE
from fastclf.benchmark.results import Latency, Load, Memory, Row, Throughput
from fastclf.benchmark.stats import latency_summary, throughput_summary
from fastclf.benchmark.variants import variant_size


@dataclass
class Scoring:
    """What a row's predictions are scored against."""

    labels: list  # the true labels of the evaluation texts (a list of labels a text when multi-label)
    classes: list[str]
    multi_label: bool
    reference: list | None = None  # torch-fp32's predictions, once measured
    seed: int = 0


def _agreement(preds: list, reference: list, multi_label: bool) -> float:
    def norm(p: Any) -> Any:
        return sorted(p) if multi_label else p

    return float(np.mean([norm(a) == norm(b) for a, b in zip(preds, reference)]))


def _score(row: Row, preds: list | None, scoring: Scoring) -> None:
    from fastclf.evaluation import scores

    if preds is None or len(preds) != len(scoring.labels):
        return
    m = scores(scoring.classes, scoring.labels, preds, multi_label=scoring.multi_label)
    row.accuracy, row.macro_f1, row.n_eval = m["accuracy"], m["macro_f1"], m["n"]
    if scoring.reference is not None and len(scoring.reference) == len(preds):
        row.agreement = _agreement(preds, scoring.reference, scoring.multi_label)


def _latency(raw: dict[str, Any], seed: int) -> Latency | None:
    lat = raw.get("latency")
    if not lat or not lat.get("samples_ns"):
        return None
    out = latency_summary(lat["samples_ns"], seed=seed)
    out.warmup_calls, out.seconds = lat.get("warmup_calls"), lat.get("seconds")
    return out


def _throughput(raw: dict[str, Any], seed: int) -> dict[str, Throughput]:
    out = {}
    for batch, t in (raw.get("throughput") or {}).items():
        if t.get("batch_ns"):
            figures = throughput_summary(t["batch_ns"], t["texts"], seed=seed)
            figures.batch_size, figures.warmup_batches = int(batch), t.get("warmup_batches")
            out[str(batch)] = figures
    return out


def build_row(model_dir, name: str, kind: str, description: str, raw: dict[str, Any], scoring: Scoring) -> Row:
    """The row of ``name`` from the raw measurements of its process.

    Raises:
        ModelNotFound, ModelFormatError: the model folder changed under the benchmark.
    """
    memory, load = raw.get("memory") or {}, raw.get("load") or {}
    row = Row(name=name, kind=kind, description=description, status=raw.get("status", "error"),
              error=raw.get("error"), size=variant_size(model_dir, REFERENCE if kind == "baseline" else name),
              memory=Memory(**memory) if memory else None, load=Load(**load) if load else None,
              threads=raw.get("threads"), runtime_settings=raw.get("runtime_settings"),
              eval_seconds=raw.get("eval_seconds"), latency_ms=_latency(raw, scoring.seed),
              throughput=_throughput(raw, scoring.seed))
    _score(row, raw.get("predictions"), scoring)
    return row
