"""The rows of a benchmark: which variants run (checked before anything is measured), and each
one's row from its measuring process's raw output, scored against the labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastclf.backends import REFERENCE, get_spec, runtime_installed
from fastclf.benchmark.results import Latency, Load, Memory, Row, Size, Throughput
from fastclf.benchmark.stats import latency_summary, throughput_summary
from fastclf.errors import missing_dependency
from fastclf.modeldir import ModelDir


def resolve_variants(model_dir: str | Path, variants: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(variants to run, notes): None runs every exported variant whose runtime is installed;
    torch-fp32, the reference, always runs first.

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


def _latency(raw: dict[str, Any]) -> Latency | None:
    lat = raw.get("latency") or {}
    if not lat.get("samples_ns"):
        return None
    out = latency_summary(lat["samples_ns"])
    out.warmup_calls, out.seconds = lat.get("warmup_calls"), lat.get("seconds")
    return out


def _throughput(raw: dict[str, Any]) -> dict[str, Throughput]:
    out = {}
    for batch, t in (raw.get("throughput") or {}).items():
        if t.get("batch_ns"):
            out[str(batch)] = figures = throughput_summary(t["batch_ns"], t["texts"])
            figures.batch_size, figures.warmup_batches = int(batch), t.get("warmup_batches")
    return out


def build_row(model_dir, name: str, kind: str, description: str, raw: dict[str, Any], scoring: Scoring) -> Row:
    """The row of ``name`` from the raw measurements of its process."""
    row = Row(name=name, kind=kind, description=description, status=raw.get("status", "error"),
              error=raw.get("error"), size=variant_size(model_dir, REFERENCE if kind == "baseline" else name),
              memory=Memory(**raw["memory"]) if raw.get("memory") else None,
              load=Load(**raw["load"]) if raw.get("load") else None,
              threads=raw.get("threads"), runtime_settings=raw.get("runtime_settings"),
              eval_seconds=raw.get("eval_seconds"), max_tokens=raw.get("max_tokens"), latency_ms=_latency(raw),
              throughput=_throughput(raw))
    scoring.score(row, raw.get("predictions"))
    return row
