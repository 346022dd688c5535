"""The cells and tables of the benchmark report, shared by its Markdown and HTML renderings
(:mod:`fastclf.benchmark.report`): number formats, the machine's description, the summary,
throughput and detail tables, and the method notes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastclf.backends import REFERENCE, thread_counts
from fastclf.benchmark.recommend import BUSY_CORES
from fastclf.benchmark.results import BenchmarkResults, Load, Memory, Row

FLAG_NAMES = (("avx512_vnni", "AVX-512 VNNI"), ("avx512_bf16", "AVX-512 BF16"), ("amx_tile", "AMX"),
              ("avx512f", "AVX-512F"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"))
DASH = "–"


# ---------------------------------------------------------------------------- formatting


def _pct(x: float | None, digits: int = 1) -> str:
    return DASH if x is None else f"{x * 100:.{digits}f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def _ms(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def _rate(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _times(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}×"


def _latency_cell(row: Row, q: str = "p50", ci: bool = True) -> str:
    if row.latency_ms is None:
        return DASH
    estimate = getattr(row.latency_ms, q)
    if not ci:
        return _ms(estimate.value)
    return f"{_ms(estimate.value)} ({_ms(estimate.low)}{DASH}{_ms(estimate.high)})"


def threads_text(threads: Mapping[str, Any] | None) -> str:
    parts = [f"{name} {count}" for name, count in thread_counts(threads)]
    return ", ".join(parts) or DASH


def flags_text(cpu: Mapping[str, Any]) -> str:
    flags = cpu.get("flags") or {}
    if not flags:
        return "unknown (no /proc/cpuinfo)"
    return ", ".join(f"{label} {'yes' if flags.get(key) else 'no'}" for key, label in FLAG_NAMES)


def cpu_text(cpu: Mapping[str, Any]) -> str:
    model = cpu.get("model") or "unknown CPU"
    extra = []
    if cpu.get("family") is not None:
        extra.append(f"family {cpu['family']}, model {cpu.get('model_number')}")
    if cpu.get("hypervisor"):
        extra.append("virtual machine")
    cores = (f"{cpu.get('physical_cores') or '?'} physical cores, {cpu.get('logical_cpus')} logical CPUs, "
             f"{cpu.get('usable_cpus')} usable")
    mem = f", {cpu['memory_gb']} GB RAM" if cpu.get("memory_gb") else ""
    return f"{model} ({'; '.join(extra)}); {cores}{mem}" if extra else f"{model}; {cores}{mem}"


def speed_reference(results: BenchmarkResults) -> str:
    """The row the speed-ups are against."""
    return next((r.speedup.vs for r in results.rows if r.speedup is not None and r.speedup.vs),
                results.settings.speedup_reference)


def partial_text(results: BenchmarkResults) -> str | None:
    if not results.partial:
        return None
    return (f"PARTIAL REPORT: {results.rows_complete} of {len(results.settings.variants)} rows measured completely "
            "(the run was interrupted or is still going).")


def busy_text(results: BenchmarkResults) -> str | None:
    busy = [(r.name, r.other_load_cores) for r in results.rows if (r.other_load_cores or 0) > BUSY_CORES]
    if not busy:
        return None
    cpus = results.machine.get("cpu", {}).get("usable_cpus")
    rows = ", ".join(f"{name} ({cores:.2f})" for name, cores in busy)
    return (f"The machine was busy: other processes used CPU while these rows were measured (average cores of "
            f"{cpus}): {rows}. Their timings are disturbed; rerun on a quiet machine for figures to rely on.")


def recommendation_text(results: BenchmarkResults) -> str:
    return (results.recommendation or {}).get("text") or "No recommendation."


# ---------------------------------------------------------------------------- tables


def summary_table(results: BenchmarkResults) -> list[list[str]]:
    header = ["variant", "accuracy", "macro-F1", f"agreement with {REFERENCE}", "latency p50 ms (95% CI)",
              "p95 ms", "p99 ms", f"p50 speed-up vs {speed_reference(results)}", "best texts/s (batch)", "size MB",
              "peak memory MB", "cold start s"]
    table = [header]
    for row in results.rows:
        best = row.best_throughput()
        table.append([
            row.label + ("" if row.status == "ok" else f" [{row.status}]"), _pct(row.accuracy),
            _num(row.macro_f1, 3), _pct(row.agreement), _latency_cell(row), _latency_cell(row, "p95", ci=False),
            _latency_cell(row, "p99", ci=False), _times(row.speedup.latency_p50 if row.speedup else None),
            f"{_rate(best[1].texts_per_s)} ({best[0]})" if best else DASH,
            _num(row.size.mb if row.size else None, 1), _num(row.memory.peak_rss_mb if row.memory else None, 0),
            _num(row.load.cold_start_s if row.load else None, 1),
        ])
    return table


def _throughput_cell(row: Row, batch: str) -> str:
    figures = row.throughput.get(batch)
    if figures is None:
        return DASH
    ratio = row.speedup.throughput.get(batch) if row.speedup else None
    low, high = figures.ci
    return (f"{_rate(figures.texts_per_s)} ({_rate(low)}{DASH}{_rate(high)})"
            + (f", {_times(ratio)}" if ratio is not None else ""))


def throughput_table(results: BenchmarkResults) -> list[list[str]]:
    sizes = [str(b) for b in results.settings.batch_sizes]
    table = [["variant"] + [f"batch {b}" for b in sizes]]
    table += [[row.label] + [_throughput_cell(row, b) for b in sizes] for row in results.rows]
    return table


def detail_table(results: BenchmarkResults) -> list[list[str]]:
    table = [["row", "status", "cold start s", "of which: process start + imports s", "load s", "first predict s",
              "memory after load MB", "peak memory MB", "threads", "CPU used by other processes",
              "size MB (files)"]]
    for row in results.rows:
        load, memory, size = row.load or Load(), row.memory or Memory(), row.size
        table.append([
            row.label, row.status, _num(load.cold_start_s), _num(load.startup_s), _num(load.load_s),
            _num(load.first_predict_s), _num(memory.rss_after_load_mb, 0), _num(memory.peak_rss_mb, 0),
            threads_text(row.threads),
            f"{_num(row.other_load_cores)} cores" if row.other_load_cores is not None else DASH,
            f"{_num(size.mb, 1)} ({len(size.files)})" if size else DASH,
        ])
    return table


def md_table(table: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    header = table[0]
    lines = ["| " + " | ".join(cell(c) for c in header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table[1:]]
    return "\n".join(lines)


def method_lines(results: BenchmarkResults) -> list[str]:
    s, d = results.settings, results.data
    threads = f"OMP_NUM_THREADS={s.threads_requested}" if s.threads_requested else "each runtime's default"
    lines = [
        "Each row ran in its own fresh Python process (python -m fastclf.benchmark), one after the other, "
        "so runtimes, compiler caches and thread pools do not disturb each other.",
        f"Accuracy, macro-F1 and agreement: {d.eval_texts} texts of {d.source or 'the data'} "
        f"(batch {s.eval_batch_size}); agreement is the share of texts given the same label as {REFERENCE}.",
        f"Latency: one real text a call (`predict`, so tokenization and head included), cycling through "
        f"{d.timing_texts} shuffled test texts (mean {d.mean_chars:.0f} characters); "
        f"{s.warmup_s:g} s of warm-up calls, then {s.duration_s} s of timed calls "
        f"(at least {s.latency_min_calls}), each timed with perf_counter_ns. Percentiles with "
        f"{s.confidence:.0%} bootstrap intervals ({s.bootstrap_resamples} resamples).",
        f"Throughput: batches of consecutive real texts through `predict(batch, batch_size=B)`, after "
        f"{s.warmup_s:g} s of warm-up, for {s.duration_s} s (at least "
        f"{s.throughput_min_batches} batches); texts/s = texts / summed batch time, CI by resampling batches.",
        f"Speed-ups are against {speed_reference(results)}, measured in the same run.",
        "Size on disk: the files the variant loads: the sentence-transformers weights for the torch variants and "
        "the setfit baseline (torch-int8 and inc-int8 rebuild their int8 graph from them at load, plus their "
        "calibration files), the exported files for ONNX Runtime and OpenVINO; and for all, the tokenizer and "
        "config files of body/, head.safetensors and fastclf.json. Other variants' exports are not counted.",
        "Peak memory: the measuring process's own peak resident set size (ru_maxrss), over loading, the accuracy "
        "pass and every timing (so it includes the largest batch).",
        "Cold start: from spawning the process to the first prediction returned: interpreter start, imports, "
        "loading and one prediction (the details in report.json split it up).",
        f"Threads: {threads}; what each runtime used is listed per row.",
        "CPU used by other processes: the machine's busy CPU time (/proc/stat) during a row minus the CPU time of "
        f"the benchmark and its measuring process, in cores on average; above {BUSY_CORES} the row is flagged "
        "(helper processes a runtime starts and does not wait for, such as torch.compile workers, count as other).",
    ]
    criterion = (results.recommendation or {}).get("criterion")
    if criterion:
        lines.append(f"Recommendation: {criterion}; the setfit baseline is not a candidate.")
    return lines
