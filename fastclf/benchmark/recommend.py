"""From measured rows to decisions: speed-ups against the reference, and the variant to deploy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastclf.accelerate.parity import DEFAULT_MAX_ACCURACY_LOSS, within
from fastclf.backends import REFERENCE
from fastclf.benchmark.results import BenchmarkResults, Row, Speedup

BUSY_CORES = 0.25  # CPU used by other processes above which a row's timings are flagged


def speedup(row: Row, ref: Row | None) -> Speedup:
    """``row``'s batch-1 p50 latency and throughput at each batch size as ratios to ``ref``'s."""
    if ref is None:
        return Speedup()
    out = Speedup(vs=ref.name)
    if ref.latency_ms is not None and row.latency_ms is not None:
        out.latency_p50 = ref.latency_ms.p50.value / row.latency_ms.p50.value
    for batch, figures in row.throughput.items():
        base = ref.throughput.get(batch)
        if base is not None:
            out.throughput[batch] = figures.texts_per_s / base.texts_per_s
    return out


def finalize(results: BenchmarkResults) -> None:
    """Set every row's speed-ups against the baseline (setfit if measured, else torch-fp32) and the recommendation."""
    ref = results.row(results.settings.speedup_reference)
    if ref is None or ref.latency_ms is None:
        ref = results.row(REFERENCE)
    for row in results.rows:
        row.speedup = speedup(row, ref)
    results.recommendation = recommend(results.rows, tolerance=results.settings.tolerance_points,
                                       speedup_reference=ref.name if ref is not None else REFERENCE)


def _advice(best: Row, ref: Row, rows: Sequence[Row], thr_best: dict[str, Any] | None, tolerance: float,
            speedup_reference: str | None) -> str:
    assert best.latency_ms is not None and best.accuracy is not None and ref.accuracy is not None
    p50 = best.latency_ms.p50.value
    base_p50 = next((r.latency_ms.p50.value for r in rows if r.latency_ms is not None
                     and r.name == speedup_reference and r.name != best.name), None)
    vs = ("" if base_p50 is None
          else f" against {base_p50:.2f} ms for {speedup_reference}, {base_p50 / p50:.2f}x as fast")
    agreement = f"{best.agreement:.1%}" if best.agreement is not None else "not measured"
    text = (f"Deploy {best.name}: the lowest one-text p50 latency ({p50:.2f} ms{vs}) of the variants whose accuracy "
            f"on these texts is {within(tolerance)} of {REFERENCE}'s ({best.accuracy:.1%} against "
            f"{ref.accuracy:.1%}; agreement with {REFERENCE} {agreement}). fastclf accelerate --auto ranks by the "
            f"same latency but asks the 95% confidence bound to be {within(tolerance)} (the labels an export "
            "changes, a new model's accuracy loss on --check), so with few texts it may keep a slower variant.")
    if best.agreement is not None and 1 - best.agreement > tolerance / 100:
        text += (f" Note: {best.name} changes {1 - best.agreement:.1%} of {REFERENCE}'s labels on these texts, more "
                 f"than {within(tolerance)} allows an export of the model; its accuracy held here, so check it on "
                 "texts of your own before deploying it.")
    if thr_best is not None:
        same = " too" if thr_best["variant"] == best.name else ""
        text += (f" For batch work (highest throughput at any batch size, a criterion --auto does not use), "
                 f"{thr_best['variant']} is the fastest{same}: {thr_best['texts_per_s']:.0f} texts/s at batch "
                 f"{thr_best['batch_size']}.")
    return text


def recommend(rows: Sequence[Row], *, tolerance: float = DEFAULT_MAX_ACCURACY_LOSS,
              speedup_reference: str | None = None) -> dict[str, Any]:
    """report.json's ``recommendation``: the lowest batch-1 p50 latency, and the highest throughput, among the
    variants (not the setfit baseline) within ``tolerance`` points of torch-fp32's accuracy; ``variant`` None: none."""
    ref = next((r for r in rows if r.name == REFERENCE), None)
    if ref is None or ref.accuracy is None:
        return {"variant": None, "text": f"No recommendation: {REFERENCE} (the reference) was not measured."}
    floor = ref.accuracy - tolerance / 100.0
    candidates = [r for r in rows if r.kind == "variant" and r.accuracy is not None and r.latency_ms is not None
                  and r.accuracy >= floor - 1e-12]
    criterion = f"lowest one-text p50 latency among variants with accuracy {within(tolerance)} of {REFERENCE}'s"
    if not candidates:
        return {"variant": None, "criterion": criterion,
                "text": f"No recommendation: no variant has both latency and accuracy measured, {within(tolerance)} of "
                        f"{REFERENCE}'s."}
    best = min(candidates, key=lambda r: r.latency_ms.p50.value if r.latency_ms is not None else float("inf"))
    tops: list[dict[str, Any]] = [{"variant": r.name, "batch_size": top[0], "texts_per_s": top[1].texts_per_s}
                                  for r in candidates if (top := r.best_throughput()) is not None]
    thr_best = max(tops, key=lambda t: t["texts_per_s"], default=None)  # at any batch size
    assert best.latency_ms is not None
    return {"variant": best.name, "criterion": criterion, "latency_p50_ms": best.latency_ms.p50.value,
            "accuracy": best.accuracy, "reference_accuracy": ref.accuracy, "tolerance_points": tolerance,
            "candidates": [r.name for r in candidates], "best_throughput": thr_best,
            "text": _advice(best, ref, rows, thr_best, tolerance, speedup_reference)}
