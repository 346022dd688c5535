"""``fastclf accelerate --auto``: the candidates, and the choice of the fastest for one text of
those that pass the gate as the model's ``default_variant``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastclf.accelerate.parity import within
from fastclf.backends import REFERENCE, VARIANTS, auto_candidates, cpu_info, runtime_installed
from fastclf.config import ModelConfig, now
from fastclf.modeldir import writer_lock

if TYPE_CHECKING:
    from fastclf.accelerate.export import ExportResult
    from fastclf.timing import Timing

AUTO_CANDIDATES = auto_candidates(torch=False)
CRITERION = "the lowest one-text p50 latency of the variants that pass the gate"


@dataclass
class AutoChoice:
    """What ``accelerate --auto`` chose and why."""

    variant: str
    passed: list[str]  # the variants that passed the gate, torch-fp32 first
    record: dict[str, Any]  # fastclf.json's default_variant_choice


def choose_default(model_dir: Path, results: Sequence[ExportResult], reference_timing: Timing, *,
                   max_accuracy_loss: float) -> AutoChoice:
    """Record as ``default_variant`` the passing variant with the lowest one-text latency (torch-fp32 when none
    beats it), with the machine and every candidate's figures."""
    figures: dict[str, Any] = {REFERENCE: {"passed": True, **asdict(reference_timing)}}
    for r in results:
        row: dict[str, Any] = {"passed": bool(r.ok and not r.kept_below_tolerance)}
        if r.gate is not None:
            row.update(flips=r.gate.flips, n=r.gate.n, interval=[round(r.gate.lower, 5), round(r.gate.upper, 5)])
        if r.error:
            row["error"] = r.error[:300]
        figures[r.variant] = {**row, **(asdict(r.timing) if r.timing is not None else {})}
    passed = [v for v, row in figures.items() if row["passed"] and "one_text_p50_ms" in row]
    best = min(passed, key=lambda v: figures[v]["one_text_p50_ms"])
    record = {"variant": best, "machine": cpu_info(), "date": now(),
              "criterion": f"{CRITERION} ({within(max_accuracy_loss)} at 95% confidence)",
              "max_accuracy_loss": max_accuracy_loss, "load_average": list(os.getloadavg()), "candidates": figures}
    with writer_lock(model_dir):  # read under the lock: the exports changed fastclf.json since the run began
        cfg = ModelConfig.read(model_dir)
        cfg.model_copy(update={"default_variant": best, "default_variant_choice": dict(record)}).write(model_dir)
    return AutoChoice(best, passed, record)


def installed(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the variants of ``names`` whose runtime is installed, the others)."""
    found = [name for name in names if runtime_installed(name)]
    return found, [n for n in names if n not in found]


def candidates(include_torch: bool) -> tuple[list[str], list[str]]:
    """(``--auto``'s candidates whose runtime is installed, those skipped for a missing runtime)."""
    return installed([*AUTO_CANDIDATES, *(auto_candidates(torch=True) if include_torch else ())])


def available_variants() -> list[str]:
    """Every variant but torch-fp32 whose runtime is installed (``--all``)."""
    return installed([v for v in VARIANTS if v != REFERENCE])[0]
