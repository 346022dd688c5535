"""The benchmark report: report.json, and the same sections rendered as report.md and as a self-contained
report.html (inline SVG plots, nothing loaded from the network); both render from report.json alone too."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastclf._util import atomic_write_text
from fastclf.backends import REFERENCE, thread_counts
from fastclf.benchmark.plots import plot_accuracy_latency, plot_throughput
from fastclf.benchmark.recommend import BUSY_CORES
from fastclf.benchmark.results import BenchmarkResults, Load, Memory, Row

Results = BenchmarkResults | Mapping[str, Any]
FLAG_NAMES = (("avx512_vnni", "AVX-512 VNNI"), ("avx512_bf16", "AVX-512 BF16"), ("amx_tile", "AMX"),
              ("avx512f", "AVX-512F"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"))
DASH = "–"


def _typed(results: Results) -> BenchmarkResults:
    return results if isinstance(results, BenchmarkResults) else BenchmarkResults.model_validate(results)


def report_paths(output: str | Path) -> dict[str, Path]:
    """The report files in ``output``, by kind (``json``, ``md``, ``html``)."""
    return {kind: Path(output) / f"report.{kind}" for kind in ("json", "md", "html")}


def write_report(results: Results, output: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into ``output``, each atomically; their paths by kind.

    Raises:
        MissingDependency: matplotlib (``pip install 'fastclf[bench]'``) is not installed.
    """
    typed, paths = _typed(results), report_paths(output)
    page = render_html(typed)  # first: fails before any file is written when matplotlib is missing
    atomic_write_text(paths["json"], json.dumps(typed.to_dict(), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(paths["md"], render_markdown(typed))
    atomic_write_text(paths["html"], page)
    return paths



def _fmt(x: float | None, spec: str = ".2f", unit: str = "") -> str:
    return DASH if x is None else f"{x:{spec}}{unit}"


def _short(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if x < 100 else f"{x:.0f}"


def _latency_cell(row: Row, q: str = "p50", ci: bool = True) -> str:
    if row.latency_ms is None:
        return DASH
    e = getattr(row.latency_ms, q)
    return f"{_short(e.value)} ({_short(e.ci[0])}{DASH}{_short(e.ci[1])})" if ci else _short(e.value)


def _throughput_cell(row: Row, batch: str) -> str:
    figures = row.throughput.get(batch)
    if figures is None:
        return DASH
    ratio = row.speedup.throughput.get(batch) if row.speedup else None
    return (f"{_short(figures.texts_per_s, 1)} ({_short(figures.ci[0], 1)}{DASH}{_short(figures.ci[1], 1)})"
            + (f", {ratio:.2f}×" if ratio is not None else ""))


def _cpu(cpu: Mapping[str, Any]) -> str:
    """The CPU in one line: model, family, cores, memory."""
    extra = [f"family {cpu['family']}, model {cpu.get('model_number')}"] if cpu.get("family") is not None else []
    extra += ["virtual machine"] if cpu.get("hypervisor") else []
    cores = (f"{cpu.get('physical_cores') or '?'} physical cores, {cpu.get('logical_cpus')} logical CPUs, "
             f"{cpu.get('usable_cpus')} usable") + (f", {cpu['memory_gb']} GB RAM" if cpu.get("memory_gb") else "")
    return f"{cpu.get('model') or 'unknown CPU'}" + (f" ({'; '.join(extra)})" if extra else "") + f"; {cores}"



def _speed_reference(results: BenchmarkResults) -> str:
    return next((r.speedup.vs for r in results.rows if r.speedup is not None and r.speedup.vs),
                results.settings.speedup_reference)


def _warnings(results: BenchmarkResults) -> list[str]:
    """The partial-report and busy-machine warnings, when they apply."""
    out = []
    if results.partial:
        out.append(f"PARTIAL REPORT: {results.rows_complete} of {len(results.settings.variants)} rows measured "
                   "completely (the run was interrupted or is still going).")
    busy = [f"{r.name} ({r.other_load_cores:.2f})" for r in results.rows if (r.other_load_cores or 0) > BUSY_CORES]
    if busy:
        out.append(f"The machine was busy: other processes used CPU while these rows were measured (average cores "
                   f"of {results.machine.get('cpu', {}).get('usable_cpus')}): {', '.join(busy)}. Their timings are "
                   "disturbed; rerun on a quiet machine for figures to rely on.")
    return out


def _recommendation(results: BenchmarkResults) -> str:
    return (results.recommendation or {}).get("text") or "No recommendation."


@dataclass
class _Section:
    """A titled table (header first) or list of lines, rendered alike in Markdown and HTML."""

    title: str
    table: list[list[str]] | None = None
    items: list[str] | None = None
    per_row: bool = False  # a line a result row: the HTML marks the baseline, recommended and failed rows


def _summary(results: BenchmarkResults) -> list[list[str]]:
    table = [["variant", "accuracy", "macro-F1", f"agreement with {REFERENCE}", "latency p50 ms (95% CI)", "p95 ms",
              "p99 ms", f"p50 speed-up vs {_speed_reference(results)}", "best texts/s (batch)", "size MB",
              "peak memory MB", "cold start s"]]
    for row in results.rows:
        best = row.best_throughput()
        table.append([
            row.label + ("" if row.status == "ok" else f" [{row.status}]"), _fmt(row.accuracy, ".1%"),
            _fmt(row.macro_f1, ".3f"), _fmt(row.agreement, ".1%"), _latency_cell(row),
            _latency_cell(row, "p95", ci=False), _latency_cell(row, "p99", ci=False),
            _fmt(row.speedup.latency_p50 if row.speedup else None, unit="×"),
            f"{_short(best[1].texts_per_s, 1)} ({best[0]})" if best else DASH,
            _fmt(row.size.mb if row.size else None, ".1f"), _fmt(row.memory.peak_rss_mb if row.memory else None, ".0f"),
            _fmt(row.load.cold_start_s if row.load else None, ".1f")])
    return table


def _details(results: BenchmarkResults) -> list[list[str]]:
    table = [["row", "status", "cold start s", "of which: process start + imports s", "load s", "first predict s",
              "memory after load MB", "peak memory MB", "threads", "CPU used by other processes",
              "window tokens", "size MB (files)"]]
    for row in results.rows:
        load, memory, size = row.load or Load(), row.memory or Memory(), row.size
        table.append([
            row.label, row.status, _fmt(load.cold_start_s), _fmt(load.startup_s), _fmt(load.load_s),
            _fmt(load.first_predict_s), _fmt(memory.rss_after_load_mb, ".0f"), _fmt(memory.peak_rss_mb, ".0f"),
            ", ".join(f"{name} {n}" for name, n in thread_counts(row.threads)) or DASH,
            _fmt(row.other_load_cores, unit=" cores"),
            str(row.max_tokens or DASH), f"{size.mb:.1f} ({len(size.files)})" if size else DASH])
    return table


def _method(results: BenchmarkResults) -> list[str]:
    s, d = results.settings, results.data
    threads = f"OMP_NUM_THREADS={s.threads_requested}" if s.threads_requested else "each runtime's default"
    lines = [
        "Each row ran in its own fresh Python process (python -m fastclf.benchmark), one after the other, "
        "so runtimes, compiler caches and thread pools do not disturb each other.",
        f"Accuracy, macro-F1 and agreement: {d.eval_texts} texts of {d.source or 'the data'} "
        f"(batch {s.eval_batch_size}); agreement is the share of texts given the same label as {REFERENCE}.",
        f"Latency: one real text a call (`predict`: tokenization and head included), cycling through "
        f"{d.timing_texts} shuffled test texts (mean {d.mean_chars:.0f} characters); {s.warmup_s:g} s of warm-up "
        f"calls, then {s.duration_s} s of timed calls (at least {s.latency_min_calls}), each timed with "
        f"perf_counter_ns. Percentiles with {s.confidence:.0%} bootstrap intervals "
        f"({s.bootstrap_resamples} resamples).",
        f"Throughput: batches of consecutive real texts through `predict(batch, batch_size=B)`, after "
        f"{s.warmup_s:g} s of warm-up, for {s.duration_s} s (at least {s.throughput_min_batches} batches); "
        f"texts/s = texts / summed batch time, CI by resampling batches. Speed-ups are against "
        f"{_speed_reference(results)}, measured in the same run.",
        "Size on disk: the files the variant loads (the sentence-transformers weights for the torch variants and "
        "the setfit baseline, plus calibration files; the exported files for ONNX Runtime and OpenVINO; for all, "
        "body/'s tokenizer and configs, head.safetensors and fastclf.json). Other variants' exports are not counted.",
        "Peak memory: the measuring process's peak resident set size (ru_maxrss) over loading, the accuracy pass "
        "and every timing. Cold start: from spawning the process to the first prediction returned (interpreter "
        "start, imports, loading and one prediction; report.json splits it up).",
        f"Threads: {threads}; what each runtime used is listed per row. Window: the tokens a body embeds at once; "
        "setfit cuts a longer text there, fastclf too with long_texts truncate, and splits it with chunk.",
        "CPU used by other processes: the machine's busy CPU time (/proc/stat) during a row minus the CPU time of "
        f"the benchmark and its measuring process, in cores on average; above {BUSY_CORES} the row is flagged "
        "(helper processes a runtime starts and does not wait for, such as torch.compile workers, count as other).",
    ]
    criterion = (results.recommendation or {}).get("criterion")
    return lines + ([f"Recommendation: {criterion}; the setfit baseline is not a candidate."] if criterion else [])


def _sections(results: BenchmarkResults, brief: bool = False) -> list[_Section]:
    """The report's sections in order; ``brief``: the tables of results only."""
    sizes = [str(b) for b in results.settings.batch_sizes]
    throughput = [["variant"] + [f"batch {b}" for b in sizes]]
    throughput += [[row.label] + [_throughput_cell(row, b) for b in sizes] for row in results.rows]
    errors = [f"{r.name}: {r.status}: {r.error}" for r in results.rows if r.error]
    out = [_Section("Summary", _summary(results), per_row=True),
           _Section(f"Throughput (texts/s, 95% CI, speed-up vs {_speed_reference(results)})", throughput, per_row=True)]
    out += [_Section("Errors", items=errors)] if errors else []
    if brief:
        return out
    m, cpu = results.machine, results.machine.get("cpu", {})
    flags = (", ".join(f"{label} {'yes' if cpu['flags'].get(key) else 'no'}" for key, label in FLAG_NAMES)
             if cpu.get("flags") else "unknown (no /proc/cpuinfo)")
    machine = [["", ""], ["CPU", _cpu(cpu)], ["Instruction sets", flags], ["OS", str(m.get("os"))],
               ["Python", f"{m.get('python')} ({m.get('python_implementation')})"],
               ["Run", f"{results.started} to {results.finished or '(not finished)'}"]]
    versions = [["library", "version"]] + [[k, v or "not installed"] for k, v in results.versions.items()]
    out += [_Section("Load, memory and threads", _details(results), per_row=True),
            _Section("Machine", machine), _Section("Versions", versions), _Section("Method", items=_method(results))]
    return out + ([_Section("Notes", items=results.notes)] if results.notes else [])



def md_table(table: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(table[0]))) + "|"
    return "\n".join([line(table[0]), rule] + [line(row) for row in table[1:]])


def render_markdown(results: Results, *, brief: bool = False) -> str:
    """The report as Markdown; ``brief`` keeps the warnings, the recommendation and the result tables."""
    typed = _typed(results)
    out = [] if brief else [f"# fastclf benchmark: {typed.model}", ""]
    for text in _warnings(typed):
        out += [f"**{text}**" if text.startswith("PARTIAL") else f"**Warning:** {text}", ""]
    out += [f"**Recommendation:** {_recommendation(typed)}", ""]
    for section in _sections(typed, brief):
        out += [] if brief else [f"## {section.title}", ""]
        out += [md_table(section.table)] if section.table else [f"- {item}" for item in section.items or []]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       margin: 24px auto; max-width: 1280px; padding: 0 20px; line-height: 1.45; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.sub { color: #666; margin-top: 0; }
.rec { background: #eef6ee; border-left: 5px solid #59a14f; padding: 10px 14px; font-size: 15px; }
.partial { background: #fdecea; border-left: 5px solid #e15759; padding: 10px 14px; font-weight: 600; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; } .scroll { overflow-x: auto; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 5px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; font-weight: 600; white-space: normal; vertical-align: bottom; min-width: 48px; }
td:first-child, th:first-child { text-align: left; } tr.error td { color: #b03a2e; }
tr.baseline td { color: #555; font-style: italic; } tr.recommended td { background: #f2f9f2; font-weight: 600; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; } .plots svg { width: 100%; height: auto; display: block; }
.plots figure { margin: 0; flex: 1 1 560px; max-width: 640px; border: 1px solid #e3e3e3; }
.meta td, .meta th { text-align: left; white-space: normal; } ul.method li { margin: 3px 0; }
"""


def html_table(table: list[list[str]], row_classes: Sequence[str] | None = None, header: bool = True) -> str:
    cells = ["<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table[0]) + "</tr>"] if header else []
    for i, row in enumerate(table[1:]):
        css = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return "\n".join(['<div class="scroll"><table>', *cells, "</table></div>"])


def _html_section(section: _Section, classes: list[str]) -> list[str]:
    out = [f"<h2>{html.escape(section.title)}</h2>"]
    if section.table:
        table = html_table(section.table, classes if section.per_row else None, header=any(section.table[0]))
        return out + ([table] if section.per_row else ['<div class="meta">', table, "</div>"])
    css = ' class="method"' if section.title == "Method" else ""
    return out + [f"<ul{css}>"] + [f"<li>{html.escape(item)}</li>" for item in section.items or []] + ["</ul>"]


def render_html(results: Results) -> str:
    """A self-contained page: recommendation, tables, the two plots, machine, versions, method.

    Raises:
        MissingDependency: matplotlib (``pip install 'fastclf[bench]'``) is not installed.
    """
    typed, esc = _typed(results), html.escape
    title, recommended = f"fastclf benchmark: {typed.model}", (typed.recommendation or {}).get("variant")
    classes = [" ".join(css for css, on in (("baseline", row.is_baseline), ("recommended", row.name == recommended),
                                            ("error", row.status == "error")) if on) for row in typed.rows]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)}</title>", f"<style>{CSS}</style></head><body>", f"<h1>{esc(title)}</h1>",
             f'<p class="sub">{typed.data.eval_texts} labeled texts from {esc(typed.data.source or "the data")} '
             f'&middot; {esc(_cpu(typed.machine.get("cpu", {})))} &middot; {esc(typed.started)}</p>']
    parts += [f'<p class="partial">{esc(text)}</p>' for text in _warnings(typed)]
    parts.append(f'<p class="rec"><strong>Recommendation:</strong> {esc(_recommendation(typed))}</p>')
    for i, section in enumerate(_sections(typed)):
        parts += _html_section(section, classes)
        if i == 0:
            parts += ['<div class="plots">', f"<figure>{plot_accuracy_latency(typed)}</figure>",
                      f"<figure>{plot_throughput(typed)}</figure>", "</div>"]
    return "\n".join(parts + ["</body></html>"]) + "\n"

