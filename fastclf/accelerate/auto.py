"""``fastclf accelerate --auto``: which variants are candidates, and the choice of the fastest
one that passes the parity gate as the model's ``default_variant``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastclf.backends import REFERENCE, VARIANTS, cpu_info, runtime_module
from fastclf.backends import auto_candidates as registry_candidates
from fastclf.config import ModelConfig, now
from fastclf.errors import MissingDependency
from fastclf.modeldir import writer_lock

if TYPE_CHECKING:
    from fastclf.accelerate.export import ExportResult
    from fastclf.timing import Timing

AUTO_CANDIDATES = registry_candidates(torch=False)
TORCH_CANDIDATES = registry_candidates(torch=True)


@dataclass
class AutoChoice:
    """What ``accelerate --auto`` chose and why."""

    variant: str
    results: list[ExportResult]
    reference_timing: Timing
    record: dict[str, Any]  # fastclf.json's default_variant_choice


def choose_default(model_dir: str | Path, results: Sequence[ExportResult], reference_timing: Timing, *,
                   budget_points: float) -> AutoChoice:
    """Record as the model's ``default_variant`` the passing variant with the lowest one-text
    latency (torch-fp32 when none beats it), with the machine and every candidate's figures.

    Raises:
        ModelNotFound, ModelFormatError: the model directory cannot be read.
    """
    model_dir = Path(model_dir)
    figures: dict[str, Any] = {REFERENCE: {"passed": True, **asdict(reference_timing)}}
    best, best_ms = REFERENCE, reference_timing.one_text_p50_ms
    for r in results:
        row: dict[str, Any] = {"passed": bool(r.ok and not r.kept_below_tolerance)}
        if r.gate is not None:
            row.update(flips=r.gate.flips, n=r.gate.n, interval=[round(r.gate.lower, 5), round(r.gate.upper, 5)])
        if r.error:
            row["error"] = r.error[:300]
        if r.timing is not None:
            row.update(asdict(r.timing))
        figures[r.variant] = row
        if row["passed"] and r.timing is not None and r.timing.one_text_p50_ms < best_ms:
            best, best_ms = r.variant, r.timing.one_text_p50_ms
    record = {
        "variant": best,
        "machine": cpu_info(),
        "date": now(),
        "criterion": "lowest one-text p50 latency among the variants that pass the parity gate",
        "budget_points": budget_points,
        "load_average": _loadavg(),
        "candidates": figures,
    }
    with writer_lock(model_dir):  # read under the lock: the exports changed fastclf.json since the run began
        ModelConfig.read(model_dir).with_default_variant(best, record).write(model_dir)
    return AutoChoice(best, list(results), reference_timing, record)


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def auto_candidates(include_torch: bool = False) -> tuple[list[str], list[str]]:
    """(candidates whose runtime is installed, those skipped for a missing runtime)."""
    names = list(AUTO_CANDIDATES) + (list(TORCH_CANDIDATES) if include_torch else [])
    installed = set(available_variants())
    return [v for v in names if v in installed], [v for v in names if v not in installed]


def available_variants() -> list[str]:
    """Every non-reference variant whose runtime is installed."""
    out = []
    for name, spec in VARIANTS.items():
        if name == REFERENCE:
            continue
        try:
            runtime_module(spec)
        except MissingDependency:
            continue
        out.append(name)
    return out

