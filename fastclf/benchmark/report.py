"""The benchmark report: a Markdown table, JSON, and a self-contained HTML page with two
plots (accuracy against latency; throughput against batch size) drawn by matplotlib as
inline SVG (:mod:`fastclf.benchmark.plots`).

Everything here reads :class:`~fastclf.benchmark.results.BenchmarkResults`, or the plain
dict of its ``to_dict()`` (what ``report.json`` holds), so a report can be re-rendered from
its JSON::

    python -m fastclf.benchmark.report report/report.json     # rewrites report.md and report.html

The HTML page loads nothing from the network: no scripts, fonts or stylesheets.
"""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._util import atomic_write_text
from ..backends import REFERENCE
from .recommend import BUSY_CORES
from .results import BenchmarkResults, Load, Memory, Row

FLAG_NAMES = (("avx512_vnni", "AVX-512 VNNI"), ("avx512_bf16", "AVX-512 BF16"), ("amx_tile", "AMX"),
              ("avx512f", "AVX-512F"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"))
DASH = "–"
THREAD_KEYS = (("onnxruntime_intra_op", "onnxruntime"), ("openvino_inference_num_threads", "openvino"),
               ("torch_intra_op", "torch"))

Results = BenchmarkResults | Mapping[str, Any]


def _typed(results: Results) -> BenchmarkResults:
    return results if isinstance(results, BenchmarkResults) else BenchmarkResults.from_dict(results)


# ---------------------------------------------------------------------------- files


def report_paths(output: str | Path) -> dict[str, Path]:
    """The report files in ``output``, by kind (``json``, ``md``, ``html``)."""
    out = Path(output)
    return {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}


def write_report(results: Results, output: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``output``, each atomically.

    Returns the paths by kind (``json``, ``md``, ``html``).

    Raises:
        MissingDependency: matplotlib (``pip install 'fastclf[bench]'``) is not installed.
    """
    typed = _typed(results)
    paths = report_paths(output)
    page = render_html(typed)  # first: fails before any file is written when matplotlib is missing
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths["json"], json.dumps(typed.to_dict(), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(paths["md"], render_markdown(typed))
    atomic_write_text(paths["html"], page)
    return paths


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


def _threads_text(threads: Mapping[str, Any] | None) -> str:
    parts = [f"{name} {threads[key]}" for key, name in THREAD_KEYS if threads and key in threads]
    return ", ".join(parts) or DASH


def _flags_text(cpu: Mapping[str, Any]) -> str:
    flags = cpu.get("flags") or {}
    if not flags:
        return "unknown (no /proc/cpuinfo)"
    return ", ".join(f"{label} {'yes' if flags.get(key) else 'no'}" for key, label in FLAG_NAMES)


def _cpu_text(cpu: Mapping[str, Any]) -> str:
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


def _partial_text(results: BenchmarkResults) -> str | None:
    if not results.partial:
        return None
    return (f"PARTIAL REPORT: {results.rows_complete} of {len(results.settings.variants)} rows measured completely "
            "(the run was interrupted or is still going).")


def _busy_text(results: BenchmarkResults) -> str | None:
    busy = [(r.name, r.other_load_cores) for r in results.rows if (r.other_load_cores or 0) > BUSY_CORES]
    if not busy:
        return None
    cpus = results.machine.get("cpu", {}).get("usable_cpus")
    rows = ", ".join(f"{name} ({cores:.2f})" for name, cores in busy)
    return (f"The machine was busy: other processes used CPU while these rows were measured (average cores of "
            f"{cpus}): {rows}. Their timings are disturbed; rerun on a quiet machine for figures to rely on.")


def _recommendation_text(results: BenchmarkResults) -> str:
    return (results.recommendation or {}).get("text") or "No recommendation."


# ---------------------------------------------------------------------------- tables


def _summary_table(results: BenchmarkResults) -> list[list[str]]:
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


def _throughput_table(results: BenchmarkResults) -> list[list[str]]:
    sizes = [str(b) for b in results.settings.batch_sizes]
    table = [["variant"] + [f"batch {b}" for b in sizes]]
    table += [[row.label] + [_throughput_cell(row, b) for b in sizes] for row in results.rows]
    return table


def _detail_table(results: BenchmarkResults) -> list[list[str]]:
    table = [["row", "status", "cold start s", "of which: process start + imports s", "load s", "first predict s",
              "memory after load MB", "peak memory MB", "threads", "CPU used by other processes",
              "size MB (files)"]]
    for row in results.rows:
        load, memory, size = row.load or Load(), row.memory or Memory(), row.size
        table.append([
            row.label, row.status, _num(load.cold_start_s), _num(load.startup_s), _num(load.load_s),
            _num(load.first_predict_s), _num(memory.rss_after_load_mb, 0), _num(memory.peak_rss_mb, 0),
            _threads_text(row.threads),
            f"{_num(row.other_load_cores)} cores" if row.other_load_cores is not None else DASH,
            f"{_num(size.mb, 1)} ({len(size.files)})" if size else DASH,
        ])
    return table


def _md_table(table: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    header = table[0]
    lines = ["| " + " | ".join(cell(c) for c in header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table[1:]]
    return "\n".join(lines)


def _method_lines(results: BenchmarkResults) -> list[str]:
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


# ---------------------------------------------------------------------------- markdown


def _markdown_head(results: BenchmarkResults, brief: bool) -> list[str]:
    out = [] if brief else [f"# fastclf benchmark: {results.model}", ""]
    partial, busy = _partial_text(results), _busy_text(results)
    if partial:
        out += [f"**{partial}**", ""]
    if busy:
        out += [f"**Warning:** {busy}", ""]
    out += [f"**Recommendation:** {_recommendation_text(results)}", ""]
    out += [] if brief else ["## Summary", ""]
    out += [_md_table(_summary_table(results)), ""]
    out += [] if brief else [f"## Throughput (texts/s, 95% CI, speed-up vs {speed_reference(results)})", ""]
    out += [_md_table(_throughput_table(results)), ""]
    errors = [f"- {r.name}: {r.status}: {r.error}" for r in results.rows if r.error]
    return out + (errors + [""] if errors else [])


def _markdown_details(results: BenchmarkResults) -> list[str]:
    machine = results.machine
    cpu = machine.get("cpu", {})
    out = ["## Machine", "", f"- CPU: {_cpu_text(cpu)}", f"- Instruction sets: {_flags_text(cpu)}",
           f"- OS: {machine.get('os')}; Python {machine.get('python')}",
           f"- Run: {results.started} to {results.finished or '(not finished)'}", "",
           "Threads used by each row:", ""]
    out += [f"- {r.label}: {_threads_text(r.threads)}" for r in results.rows]
    out += ["", "## Versions", "", "| library | version |", "|---|---|"]
    out += [f"| {name} | {version or 'not installed'} |" for name, version in results.versions.items()]
    out += ["", "## Method", ""] + [f"- {line}" for line in _method_lines(results)]
    if results.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in results.notes]
    return out


def render_markdown(results: Results, *, brief: bool = False) -> str:
    """The report as Markdown; ``brief`` keeps only the tables and the recommendation."""
    typed = _typed(results)
    lines = _markdown_head(typed, brief) + ([] if brief else _markdown_details(typed))
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       margin: 24px auto; max-width: 1280px; padding: 0 20px; line-height: 1.45; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.sub { color: #666; margin-top: 0; }
.rec { background: #eef6ee; border-left: 5px solid #59a14f; padding: 10px 14px; font-size: 15px; }
.partial { background: #fdecea; border-left: 5px solid #e15759; padding: 10px 14px; font-weight: 600; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 5px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; font-weight: 600; white-space: normal; vertical-align: bottom; min-width: 48px; }
td:first-child, th:first-child { text-align: left; }
tr.baseline td { color: #555; font-style: italic; } tr.recommended td { background: #f2f9f2; font-weight: 600; }
tr.error td { color: #b03a2e; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; }
.plots figure { margin: 0; flex: 1 1 560px; max-width: 640px; border: 1px solid #e3e3e3; }
.plots svg { width: 100%; height: auto; display: block; }
.scroll { overflow-x: auto; }
.meta td, .meta th { text-align: left; white-space: normal; }
ul.method li { margin: 3px 0; } code { background: #f4f4f4; padding: 0 3px; }
"""


def _html_table(table: list[list[str]], row_classes: Sequence[str] | None = None, header: bool = True) -> str:
    escape = html.escape
    out = ['<div class="scroll"><table>']
    if header:
        out.append("<tr>" + "".join(f"<th>{escape(cell)}</th>" for cell in table[0]) + "</tr>")
    for i, row in enumerate(table[1:]):
        css = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{css}>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _row_classes(results: BenchmarkResults) -> list[str]:
    recommended = (results.recommendation or {}).get("variant")
    return [" ".join(css for css, on in (("baseline", row.is_baseline), ("recommended", row.name == recommended),
                                         ("error", row.status == "error")) if on) for row in results.rows]


def _html_items(title: str, items: Sequence[str], css: str = "") -> list[str]:
    escape = html.escape
    ul = f'<ul class="{css}">' if css else "<ul>"
    return [f"<h2>{escape(title)}</h2>", ul] + [f"<li>{item}</li>" for item in items] + ["</ul>"]


def _html_head(results: BenchmarkResults) -> list[str]:
    escape = html.escape
    title = f"fastclf benchmark: {results.model}"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(title)}</title>", f"<style>{_CSS}</style></head><body>", f"<h1>{escape(title)}</h1>",
           f'<p class="sub">{escape(str(results.data.eval_texts))} labeled texts from '
           f'{escape(results.data.source or "the data")} &middot; {escape(_cpu_text(results.machine.get("cpu", {})))}'
           f' &middot; {escape(results.started)}</p>']
    out += [f'<p class="partial">{escape(text)}</p>' for text in (_partial_text(results), _busy_text(results)) if text]
    out.append(f'<p class="rec"><strong>Recommendation:</strong> {escape(_recommendation_text(results))}</p>')
    return out


def _html_machine(results: BenchmarkResults) -> list[str]:
    machine = results.machine
    cpu = machine.get("cpu", {})
    table = [["", ""], ["CPU", _cpu_text(cpu)], ["Instruction sets", _flags_text(cpu)], ["OS", str(machine.get("os"))],
             ["Python", f"{machine.get('python')} ({machine.get('python_implementation')})"],
             ["Run", f"{results.started} to {results.finished or '(not finished)'}"]]
    versions = [["library", "version"]] + [[name, version or "not installed"]
                                           for name, version in results.versions.items()]
    return ["<h2>Machine</h2>", '<div class="meta">', _html_table(table, header=False), "</div>",
            "<h2>Versions</h2>", '<div class="meta">', _html_table(versions), "</div>"]


def render_html(results: Results) -> str:
    """A self-contained page: recommendation, tables, the two plots, machine, versions, method.

    Raises:
        MissingDependency: matplotlib (``pip install 'fastclf[bench]'``) is not installed.
    """
    from .plots import plot_accuracy_latency, plot_throughput

    typed = _typed(results)
    escape = html.escape
    classes = _row_classes(typed)
    parts = _html_head(typed)
    parts += ["<h2>Summary</h2>", _html_table(_summary_table(typed), classes)]
    parts += ['<div class="plots">', f"<figure>{plot_accuracy_latency(typed)}</figure>",
              f"<figure>{plot_throughput(typed)}</figure>", "</div>"]
    parts += [f"<h2>Throughput (texts/s, 95% CI, speed-up vs {escape(speed_reference(typed))})</h2>",
              _html_table(_throughput_table(typed), classes)]
    errors = [f"<strong>{escape(r.name)}</strong>: {escape(str(r.error))}" for r in typed.rows if r.error]
    if errors:
        parts += _html_items("Errors", errors)
    parts += ["<h2>Load, memory and threads</h2>", _html_table(_detail_table(typed), classes)]
    parts += _html_machine(typed)
    parts += _html_items("Method", [escape(line) for line in _method_lines(typed)], css="method")
    if typed.notes:
        parts += _html_items("Notes", [escape(note) for note in typed.notes])
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m fastclf.benchmark.report REPORT_JSON", file=sys.stderr)
        return 2
    path = Path(argv[0])
    paths = write_report(json.loads(path.read_text(encoding="utf-8")), path.parent)
    print(f"wrote {paths['md']} and {paths['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
