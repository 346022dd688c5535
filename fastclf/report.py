"""The benchmark report: a Markdown table, JSON, and a self-contained HTML page with two
plots (accuracy against latency; throughput against batch size) drawn as inline SVG.

Everything here works on the plain dict of ``BenchmarkResults.to_dict()`` (what
``report.json`` holds), so a report can be re-rendered from its JSON::

    python -m fastclf.report report/report.json     # rewrites report.md and report.html

The HTML page loads nothing from the network: no scripts, fonts or stylesheets.
"""

from __future__ import annotations

import html
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._util import atomic_write_text

REFERENCE = "torch-fp32"
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
           "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
BASELINE_COLOR = "#555555"
FLAG_NAMES = (("avx512_vnni", "AVX-512 VNNI"), ("avx512_bf16", "AVX-512 BF16"), ("amx_tile", "AMX"),
              ("avx512f", "AVX-512F"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"))
DASH = "–"
BUSY_CORES = 0.25


# ---------------------------------------------------------------------------- files


def write_report(results: dict[str, Any], output: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``output``, each atomically.

    Returns the paths by kind (``json``, ``md``, ``html``).
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    atomic_write_text(paths["json"], json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(paths["md"], render_markdown(results))
    atomic_write_text(paths["html"], render_html(results))
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


def _latency_cell(row: dict[str, Any], q: str = "p50", ci: bool = True) -> str:
    lat = row.get("latency_ms")
    if not lat:
        return DASH
    v = lat[q]
    if not ci:
        return _ms(v["value"])
    return f"{_ms(v['value'])} ({_ms(v['ci'][0])}{DASH}{_ms(v['ci'][1])})"


def _best_throughput(row: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    thr = row.get("throughput") or {}
    if not thr:
        return None
    b, t = max(thr.items(), key=lambda kv: kv[1]["texts_per_s"])
    return int(b), t


def _label(row: dict[str, Any]) -> str:
    return f"{row['name']} (baseline)" if row.get("kind") == "baseline" else row["name"]


def _threads_text(threads: dict[str, Any] | None) -> str:
    if not threads:
        return DASH
    parts = []
    if "onnxruntime_intra_op" in threads:
        parts.append(f"onnxruntime {threads['onnxruntime_intra_op']}")
    if "openvino_inference_num_threads" in threads:
        parts.append(f"openvino {threads['openvino_inference_num_threads']}")
    if "torch_intra_op" in threads:
        parts.append(f"torch {threads['torch_intra_op']}")
    return ", ".join(parts) or DASH


def _flags_text(cpu: dict[str, Any]) -> str:
    flags = cpu.get("flags") or {}
    if not flags:
        return "unknown (no /proc/cpuinfo)"
    return ", ".join(f"{label} {'yes' if flags.get(key) else 'no'}" for key, label in FLAG_NAMES)


def _cpu_text(cpu: dict[str, Any]) -> str:
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


def _speed_ref(results: dict[str, Any]) -> str:
    for row in results.get("rows", []):
        vs = (row.get("speedup") or {}).get("vs")
        if vs:
            return vs
    return results.get("settings", {}).get("speedup_reference", REFERENCE)


def _partial_text(results: dict[str, Any]) -> str | None:
    if not results.get("partial"):
        return None
    done = sum(1 for r in results.get("rows", []) if r.get("status") == "ok")
    total = len(results.get("settings", {}).get("variants", []))
    return (f"PARTIAL REPORT: {done} of {total} rows measured completely "
            "(the run was interrupted or is still going).")


def _busy_text(results: dict[str, Any]) -> str | None:
    busy = [(r["name"], r["other_load_cores"]) for r in results.get("rows", [])
            if (r.get("other_load_cores") or 0) > BUSY_CORES]
    if not busy:
        return None
    cpus = results.get("machine", {}).get("cpu", {}).get("usable_cpus")
    rows = ", ".join(f"{n} ({c:.2f})" for n, c in busy)
    return (f"The machine was busy: other processes used CPU while these rows were measured (average cores of "
            f"{cpus}): {rows}. Their timings are disturbed; rerun on a quiet machine for figures to rely on.")


def _recommendation_text(results: dict[str, Any]) -> str:
    rec = results.get("recommendation") or {}
    return rec.get("text") or "No recommendation."


# ---------------------------------------------------------------------------- markdown


def _summary_table(results: dict[str, Any]) -> list[list[str]]:
    ref = _speed_ref(results)
    header = ["variant", "accuracy", "macro-F1", f"agreement with {REFERENCE}", "latency p50 ms (95% CI)",
              "p95 ms", "p99 ms", f"p50 speed-up vs {ref}", "best texts/s (batch)", "size MB", "peak memory MB",
              "cold start s"]
    rows = [header]
    for r in results.get("rows", []):
        best = _best_throughput(r)
        mem = (r.get("memory") or {}).get("peak_rss_mb")
        load = (r.get("load") or {}).get("cold_start_s")
        name = _label(r) + ("" if r.get("status") == "ok" else f" [{r.get('status')}]")
        rows.append([
            name, _pct(r.get("accuracy")), _num(r.get("macro_f1"), 3), _pct(r.get("agreement")),
            _latency_cell(r), _latency_cell(r, "p95", ci=False), _latency_cell(r, "p99", ci=False),
            _times((r.get("speedup") or {}).get("latency_p50")),
            f"{_rate(best[1]['texts_per_s'])} ({best[0]})" if best else DASH,
            _num((r.get("size") or {}).get("mb"), 1), _num(mem, 0), _num(load, 1),
        ])
    return rows


def _throughput_table(results: dict[str, Any]) -> list[list[str]]:
    sizes = [str(b) for b in results.get("settings", {}).get("batch_sizes", [])]
    rows = [["variant"] + [f"batch {b}" for b in sizes]]
    for r in results.get("rows", []):
        cells = [_label(r)]
        for b in sizes:
            t = (r.get("throughput") or {}).get(b)
            if not t:
                cells.append(DASH)
                continue
            sp = (r.get("speedup") or {}).get("throughput", {}).get(b)
            cells.append(f"{_rate(t['texts_per_s'])} ({_rate(t['ci'][0])}{DASH}{_rate(t['ci'][1])})"
                         + (f", {_times(sp)}" if sp is not None else ""))
        rows.append(cells)
    return rows


def _md_table(rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(c) for c in rows[0]) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _method_lines(results: dict[str, Any]) -> list[str]:
    s = results.get("settings", {})
    d = results.get("data", {})
    ref = _speed_ref(results)
    threads = f"OMP_NUM_THREADS={s['threads_requested']}" if s.get("threads_requested") else "each runtime's default"
    return [
        "Each row ran in its own fresh Python process (python -m fastclf.benchmark), one after the other, "
        "so runtimes, compiler caches and thread pools do not disturb each other.",
        f"Accuracy, macro-F1 and agreement: {d.get('eval_texts')} texts of {d.get('source') or 'the data'} "
        f"(batch {s.get('eval_batch_size')}); agreement is the share of texts given the same label as {REFERENCE}.",
        f"Latency: one real text a call (`predict`, so tokenization and head included), cycling through "
        f"{d.get('timing_texts')} shuffled test texts (mean {d.get('mean_chars', 0):.0f} characters); "
        f"{s.get('warmup_s', 0):g} s of warm-up calls, then {s.get('duration_s')} s of timed calls "
        f"(at least {s.get('latency_min_calls')}), each timed with perf_counter_ns. Percentiles with "
        f"{s.get('confidence', 0.95):.0%} bootstrap intervals ({s.get('bootstrap_resamples')} resamples).",
        f"Throughput: batches of consecutive real texts through `predict(batch, batch_size=B)`, after "
        f"{s.get('warmup_s', 0):g} s of warm-up, for {s.get('duration_s')} s (at least "
        f"{s.get('throughput_min_batches')} batches); texts/s = texts / summed batch time, CI by resampling batches.",
        f"Speed-ups are against {ref}, measured in the same run.",
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


def render_markdown(results: dict[str, Any], *, brief: bool = False) -> str:
    """The report as Markdown; ``brief`` keeps only the tables and the recommendation."""
    out: list[str] = []
    partial = _partial_text(results)
    if not brief:
        out += [f"# fastclf benchmark: {results.get('model')}", ""]
    if partial:
        out += [f"**{partial}**", ""]
    busy = _busy_text(results)
    if busy:
        out += [f"**Warning:** {busy}", ""]
    out += [f"**Recommendation:** {_recommendation_text(results)}", ""]
    if not brief:
        out += ["## Summary", ""]
    out += [_md_table(_summary_table(results)), ""]
    if not brief:
        out += [f"## Throughput (texts/s, 95% CI, speed-up vs {_speed_ref(results)})", ""]
    out += [_md_table(_throughput_table(results)), ""]
    errors = [r for r in results.get("rows", []) if r.get("error")]
    for r in errors:
        out.append(f"- {r['name']}: {r.get('status')}: {r['error']}")
    if errors:
        out.append("")
    if brief:
        return "\n".join(out).rstrip() + "\n"
    m = results.get("machine", {})
    cpu = m.get("cpu", {})
    out += ["## Machine", "",
            f"- CPU: {_cpu_text(cpu)}",
            f"- Instruction sets: {_flags_text(cpu)}",
            f"- OS: {m.get('os')}; Python {m.get('python')}",
            f"- Run: {results.get('started')} to {results.get('finished') or '(not finished)'}",
            "", "Threads used by each row:", ""]
    out += [f"- {_label(r)}: {_threads_text(r.get('threads'))}" for r in results.get("rows", [])]
    out += ["", "## Versions", "", "| library | version |", "|---|---|"]
    out += [f"| {k} | {v or 'not installed'} |" for k, v in results.get("versions", {}).items()]
    out += ["", "## Method", ""] + [f"- {line}" for line in _method_lines(results)]
    rec = results.get("recommendation") or {}
    if rec.get("criterion"):
        out.append(f"- Recommendation: {rec['criterion']}; the setfit baseline is not a candidate.")
    notes = results.get("notes") or []
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------- SVG plots


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    step = _nice_step(hi - lo, n)
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(v, 10))
        v += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks covering [lo, hi] (lo > 0)."""
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 10:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                ticks.append(v)
        e += 1
    if len(ticks) < 2:
        return [lo, hi]
    return ticks


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _colors(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    out, i = {}, 0
    for r in rows:
        if r.get("kind") == "baseline":
            out[r["name"]] = BASELINE_COLOR
        else:
            out[r["name"]] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


class _Axes:
    def __init__(self, x0: float, x1: float, y0: float, y1: float, *, left: float, right: float, top: float,
                 bottom: float, xlog: bool = False, ylog: bool = False):
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.xlog, self.ylog = xlog, ylog

    def _t(self, v: float, a: float, b: float, log: bool) -> float:
        if log:
            v, a, b = math.log(max(v, 1e-12)), math.log(a), math.log(b)
        return (v - a) / (b - a) if b != a else 0.5

    def x(self, v: float) -> float:
        return self.left + self._t(v, self.x0, self.x1, self.xlog) * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - self._t(v, self.y0, self.y1, self.ylog) * (self.bottom - self.top)


def _svg_open(width: int, height: int, title: str, desc: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-labelledby="t d" font-family="system-ui, -apple-system, '
            f'Segoe UI, Helvetica, Arial, sans-serif" font-size="12">',
            f'<title id="t">{html.escape(title)}</title><desc id="d">{html.escape(desc)}</desc>',
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="14" font-weight="600" '
            f'fill="#222">{html.escape(title)}</text>']


def _axes_svg(ax: _Axes, xticks: Sequence[float], yticks: Sequence[float], xlabel: str, ylabel: str,
              xtick_labels: Sequence[str] | None = None) -> list[str]:
    s = [f'<rect x="{ax.left}" y="{ax.top}" width="{ax.right - ax.left}" height="{ax.bottom - ax.top}" '
         f'fill="#fbfbfb" stroke="#bbb"/>']
    for i, v in enumerate(xticks):
        x = ax.x(v)
        label = xtick_labels[i] if xtick_labels else _tick_label(v)
        s.append(f'<line x1="{x:.1f}" y1="{ax.top}" x2="{x:.1f}" y2="{ax.bottom}" stroke="#e6e6e6"/>')
        s.append(f'<text x="{x:.1f}" y="{ax.bottom + 16}" text-anchor="middle" fill="#444">{html.escape(label)}</text>')
    for v in yticks:
        y = ax.y(v)
        s.append(f'<line x1="{ax.left}" y1="{y:.1f}" x2="{ax.right}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        s.append(f'<text x="{ax.left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{_tick_label(v)}</text>')
    cx = (ax.left + ax.right) / 2
    s.append(f'<text x="{cx:.0f}" y="{ax.bottom + 38}" text-anchor="middle" fill="#222">{html.escape(xlabel)}</text>')
    cy = (ax.top + ax.bottom) / 2
    s.append(f'<text x="16" y="{cy:.0f}" text-anchor="middle" fill="#222" '
             f'transform="rotate(-90 16 {cy:.0f})">{html.escape(ylabel)}</text>')
    return s


def _place_labels(points: list[tuple[float, float, str]], bounds: tuple[float, float, float, float],
                  obstacles: Sequence[tuple[float, float, float, float]] = (), char_w: float = 7.0
                  ) -> list[tuple[float, float, str, str, float, float]]:
    """Greedy label placement next to points, avoiding other labels, markers and ``obstacles``
    (boxes x0, y0, x1, y1): returns (x, y, anchor, text, point x, point y) for each point.
    Where no spot is free, the one with the least overlap is taken."""
    left, top, right, bottom = bounds
    placed: list[tuple[float, float, float, float]] = []
    blocked = [(px - 7, py - 7, px + 7, py + 7) for px, py, _ in points] + list(obstacles)
    out = []
    offsets = [(8, -9, "start"), (8, 18, "start"), (-8, -9, "end"), (-8, 18, "end"), (12, 4, "start"),
               (-12, 4, "end")]
    for step in range(1, 7):
        for dy in (-9 - 14 * step, 18 + 14 * step):
            offsets += [(8, dy, "start"), (-8, dy, "end"), (8 + 20 * step, dy, "start"), (-8 - 20 * step, dy, "end")]

    def box(tx: float, ty: float, anchor: str, w: float) -> tuple[float, float, float, float]:
        return (tx, ty - 10, tx + w, ty + 3) if anchor == "start" else (tx - w, ty - 10, tx, ty + 3)

    def overlap(b: tuple[float, float, float, float]) -> float:
        x0, y0, x1, y1 = b
        if x0 < left or x1 > right or y0 < top or y1 > bottom:
            return math.inf
        return sum(max(0.0, min(x1, o[2]) - max(x0, o[0])) * max(0.0, min(y1, o[3]) - max(y0, o[1]))
                   for o in placed + blocked)

    for px, py, text in sorted(points, key=lambda p: (p[1], p[0])):
        w = len(text) * char_w
        best, best_cost = None, math.inf
        for i, (dx, dy, a) in enumerate(offsets):
            c = (px + dx, py + dy, a)
            cost = overlap(box(c[0], c[1], a, w))
            if cost == 0:
                best = c
                break
            if cost + i < best_cost:  # prefer nearer spots among equally crowded ones
                best, best_cost = c, cost + i
        if best is None:
            best = (px + 8, py - 9, "start")
        placed.append(box(best[0], best[1], best[2], w))
        out.append((best[0], best[1], best[2], text, px, py))
    return out


def plot_accuracy_latency(results: dict[str, Any], width: int = 620, height: int = 440) -> str:
    """Scatter of accuracy (%) against batch-1 p50 latency (ms), with 95% CI bars and the tolerance line."""
    rows = [r for r in results.get("rows", []) if r.get("accuracy") is not None and r.get("latency_ms")]
    colors = _colors(results.get("rows", []))
    title = "Accuracy against latency for one text"
    s = _svg_open(width, height, title, "Each point is a variant: x its median latency for one text, "
                  "y its accuracy; better is up and to the left.")
    left, right, top, bottom = 62, width - 18, 46, height - 56
    if not rows:
        s.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no variant has both '
                 'accuracy and latency yet</text></svg>')
        return "\n".join(s)
    tol = results.get("settings", {}).get("tolerance_points", 1.0)
    ref = next((r for r in rows if r["name"] == REFERENCE), None)
    floor = ref["accuracy"] * 100 - tol if ref else None
    los = [r["latency_ms"]["p50"]["ci"][0] for r in rows]
    his = [r["latency_ms"]["p50"]["ci"][1] for r in rows]
    xmin, xmax = max(min(los), 1e-3), max(his)
    xlog = xmax / xmin > 3
    if xlog:
        x0, x1 = xmin / 1.3, xmax * 1.3
        xticks = log_ticks(x0, x1)
        if len(xticks) < 3:
            xticks = sorted(set(xticks + nice_ticks(x0, x1, 4)))
            xticks = [t for t in xticks if x0 <= t <= x1]
    else:
        xticks = nice_ticks(0, xmax * 1.12, 5)
        x0, x1 = 0.0, xticks[-1]
    accs = [r["accuracy"] * 100 for r in rows] + ([floor] if floor is not None else [])
    span = max(accs) - min(accs)
    pad = max(0.6, span * 0.18)
    yticks = nice_ticks(min(accs) - pad, max(accs) + pad, 5)
    y0, y1 = yticks[0], yticks[-1]
    ax = _Axes(x0, x1, y0, y1, left=left, right=right, top=top, bottom=bottom, xlog=xlog)
    s += _axes_svg(ax, xticks, yticks, "latency for one text, p50 ms" + (" (log scale)" if xlog else "")
                   + "; bars: 95% CI", "accuracy (%)")
    if floor is not None and y0 <= floor <= y1:
        yf = ax.y(floor)
        s.append(f'<rect x="{left}" y="{yf:.1f}" width="{right - left}" height="{bottom - yf:.1f}" '
                 f'fill="#e15759" fill-opacity="0.06"/>')
        s.append(f'<line x1="{left}" y1="{yf:.1f}" x2="{right}" y2="{yf:.1f}" stroke="#c0392b" '
                 f'stroke-dasharray="6 4" stroke-width="1.2"/>')
        plural = "s" if tol != 1 else ""
        note = f"{REFERENCE} − {tol:g} point{plural}: below is outside the tolerance"
        s.append(f'<text x="{right - 6}" y="{yf + 14:.1f}" text-anchor="end" fill="#c0392b" font-size="11">'
                 f'{html.escape(note)}</text>')
    rec = (results.get("recommendation") or {}).get("variant")
    label_points = []
    bars = []
    for r in rows:
        p50 = r["latency_ms"]["p50"]
        cx, cy = ax.x(p50["value"]), ax.y(r["accuracy"] * 100)
        lo, hi = ax.x(p50["ci"][0]), ax.x(p50["ci"][1])
        bars.append((lo - 1, cy - 5, hi + 1, cy + 5))
        c = colors[r["name"]]
        tip = html.escape(f"{_label(r)}: accuracy {r['accuracy']:.1%}, p50 {p50['value']:.2f} ms "
                          f"(95% CI {p50['ci'][0]:.2f}–{p50['ci'][1]:.2f})")
        s.append(f'<g><title>{tip}</title>')
        s.append(f'<line x1="{lo:.1f}" y1="{cy:.1f}" x2="{hi:.1f}" y2="{cy:.1f}" stroke="{c}" stroke-width="2"/>')
        for xe in (lo, hi):
            s.append(f'<line x1="{xe:.1f}" y1="{cy - 4:.1f}" x2="{xe:.1f}" y2="{cy + 4:.1f}" stroke="{c}" '
                     f'stroke-width="1.5"/>')
        if r.get("kind") == "baseline":
            s.append(f'<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" fill="{c}" stroke="#fff"/>')
        else:
            s.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5.5" fill="{c}" stroke="#fff" stroke-width="1"/>')
        if r["name"] == rec:
            s.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="10" fill="none" stroke="#222" stroke-width="1.5"/>')
        s.append("</g>")
        label_points.append((cx, cy, _label(r) + (" ★" if r["name"] == rec else "")))
    if floor is not None and y0 <= floor <= y1:
        bars.append((right - 330, ax.y(floor) - 2, right, ax.y(floor) + 17))
    for x, y, anchor, text, px, py in _place_labels(label_points, (left + 2, top + 2, right - 2, bottom - 2), bars):
        if abs(y - 4 - py) > 16:  # displaced label: a leader line to its point
            lx = x - 2 if anchor == "start" else x + 2
            s.append(f'<line x1="{px:.1f}" y1="{py:.1f}" x2="{lx:.1f}" y2="{y - 4:.1f}" stroke="#999" '
                     'stroke-width="0.7"/>')
        s.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="#222" paint-order="stroke" '
                 f'stroke="#fbfbfb" stroke-width="3">{html.escape(text)}</text>')
    key = "★ recommended" + ("   ■ setfit baseline" if any(r.get("kind") == "baseline" for r in rows) else "")
    s.append(f'<text x="{right}" y="{top - 6}" text-anchor="end" fill="#555" font-size="11">{html.escape(key)}</text>')
    s.append("</svg>")
    return "\n".join(s)


def plot_throughput(results: dict[str, Any], width: int = 620, height: int = 440) -> str:
    """Lines of texts/s against batch size (log2 axis) for each row, with 95% CI bars and a legend."""
    all_rows = results.get("rows", [])
    rows = [r for r in all_rows if r.get("throughput")]
    colors = _colors(all_rows)
    title = "Throughput against batch size"
    s = _svg_open(width, height, title, "Texts per second for each batch size; higher is better.")
    legend_w = 170
    left, right, top, bottom = 62, width - legend_w - 10, 46, height - 56
    sizes = [int(b) for b in results.get("settings", {}).get("batch_sizes", [])]
    if not rows or not sizes:
        s.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no throughput '
                 'measured yet</text></svg>')
        return "\n".join(s)
    ymax = max(t["ci"][1] for r in rows for t in r["throughput"].values())
    yticks = nice_ticks(0, ymax * 1.08, 5)
    if len(sizes) == 1:
        x0, x1 = sizes[0] / 2, sizes[0] * 2
    else:
        x0, x1 = min(sizes) / 1.35, max(sizes) * 1.35
    ax = _Axes(x0, x1, 0, yticks[-1], left=left, right=right, top=top, bottom=bottom, xlog=True)
    s += _axes_svg(ax, sizes, yticks, "batch size (log scale); bars: 95% CI", "texts per second")
    for r in rows:
        c = colors[r["name"]]
        pts = sorted((int(b), t) for b, t in r["throughput"].items())
        dash = ' stroke-dasharray="5 3"' if r.get("kind") == "baseline" else ""
        path = " ".join(f"{'M' if i == 0 else 'L'}{ax.x(b):.1f},{ax.y(t['texts_per_s']):.1f}"
                        for i, (b, t) in enumerate(pts))
        s.append(f'<g><title>{html.escape(_label(r))}</title>')
        s.append(f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for b, t in pts:
            x, y = ax.x(b), ax.y(t["texts_per_s"])
            ylo, yhi = ax.y(t["ci"][0]), ax.y(t["ci"][1])
            tip = html.escape(f"{_label(r)}, batch {b}: {t['texts_per_s']:.1f} texts/s "
                              f"(95% CI {t['ci'][0]:.1f}–{t['ci'][1]:.1f})")
            s.append(f'<g><title>{tip}</title>')
            s.append(f'<line x1="{x:.1f}" y1="{ylo:.1f}" x2="{x:.1f}" y2="{yhi:.1f}" stroke="{c}" stroke-width="1.5"/>')
            if r.get("kind") == "baseline":
                s.append(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{c}" stroke="#fff"/>')
            else:
                s.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{c}" stroke="#fff"/>')
            s.append("</g>")
        s.append("</g>")
    # legend, ordered by throughput at the largest batch size
    def last_rate(r):
        pts = sorted((int(b), t["texts_per_s"]) for b, t in r["throughput"].items())
        return pts[-1][1]

    lx = right + 14
    s.append(f'<text x="{lx}" y="{top + 4}" fill="#444" font-size="11">fastest at batch {max(sizes)} first</text>')
    for i, r in enumerate(sorted(rows, key=last_rate, reverse=True)):
        ly = top + 22 + i * 18
        c = colors[r["name"]]
        dash = ' stroke-dasharray="5 3"' if r.get("kind") == "baseline" else ""
        s.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" stroke="{c}" stroke-width="2.5"{dash}/>')
        s.append(f'<text x="{lx + 26}" y="{ly}" fill="#222">{html.escape(_label(r))}</text>')
    s.append("</svg>")
    return "\n".join(s)


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


def _html_table(rows: list[list[str]], classes: Sequence[str] | None = None) -> str:
    out = ['<div class="scroll"><table>', "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>"]
    for i, row in enumerate(rows[1:]):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def render_html(results: dict[str, Any]) -> str:
    """A self-contained page: recommendation, tables, the two plots, machine, versions, method."""
    rows = results.get("rows", [])
    rec = (results.get("recommendation") or {}).get("variant")
    classes = []
    for r in rows:
        cls = []
        if r.get("kind") == "baseline":
            cls.append("baseline")
        if r["name"] == rec:
            cls.append("recommended")
        if r.get("status") == "error":
            cls.append("error")
        classes.append(" ".join(cls))
    m = results.get("machine", {})
    cpu = m.get("cpu", {})
    d = results.get("data", {})
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>fastclf benchmark: {e(str(results.get('model')))}</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>fastclf benchmark: {e(str(results.get('model')))}</h1>",
             f'<p class="sub">{e(str(d.get("eval_texts")))} labeled texts from {e(str(d.get("source") or "the data"))}'
             f' &middot; {e(_cpu_text(cpu))} &middot; {e(str(results.get("started")))}</p>']
    partial = _partial_text(results)
    if partial:
        parts.append(f'<p class="partial">{e(partial)}</p>')
    busy = _busy_text(results)
    if busy:
        parts.append(f'<p class="partial">{e(busy)}</p>')
    parts.append(f'<p class="rec"><strong>Recommendation:</strong> {e(_recommendation_text(results))}</p>')
    parts += ["<h2>Summary</h2>", _html_table(_summary_table(results), classes)]
    parts += ['<div class="plots">', f"<figure>{plot_accuracy_latency(results)}</figure>",
              f"<figure>{plot_throughput(results)}</figure>", "</div>"]
    parts += [f"<h2>Throughput (texts/s, 95% CI, speed-up vs {e(_speed_ref(results))})</h2>",
              _html_table(_throughput_table(results), classes)]
    errors = [r for r in rows if r.get("error")]
    if errors:
        parts += ["<h2>Errors</h2>", "<ul>"] + [f"<li><strong>{e(r['name'])}</strong>: {e(str(r['error']))}</li>"
                                                for r in errors] + ["</ul>"]
    detail = [["row", "status", "cold start s", "of which: process start + imports s", "load s", "first predict s",
               "memory after load MB", "peak memory MB", "threads", "CPU used by other processes", "size MB (files)"]]
    for r in rows:
        ld, mem, size = r.get("load") or {}, r.get("memory") or {}, r.get("size") or {}
        detail.append([_label(r), str(r.get("status")), _num(ld.get("cold_start_s")), _num(ld.get("startup_s")),
                       _num(ld.get("load_s")), _num(ld.get("first_predict_s")), _num(mem.get("rss_after_load_mb"), 0),
                       _num(mem.get("peak_rss_mb"), 0), _threads_text(r.get("threads")),
                       _num(r.get("other_load_cores")) + " cores" if r.get("other_load_cores") is not None else DASH,
                       f"{_num(size.get('mb'), 1)} ({len(size.get('files', []))})"])
    parts += ["<h2>Load, memory and threads</h2>", _html_table(detail, classes)]
    machine = [["", ""], ["CPU", _cpu_text(cpu)], ["Instruction sets", _flags_text(cpu)],
               ["OS", str(m.get("os"))], ["Python", f"{m.get('python')} ({m.get('python_implementation')})"],
               ["Run", f"{results.get('started')} to {results.get('finished') or '(not finished)'}"]]
    parts += ["<h2>Machine</h2>", '<div class="meta">', _html_table(machine).replace("<tr><th></th><th></th></tr>", ""),
              "</div>"]
    versions = [["library", "version"]] + [[k, v or "not installed"] for k, v in results.get("versions", {}).items()]
    parts += ["<h2>Versions</h2>", '<div class="meta">', _html_table(versions), "</div>"]
    method = _method_lines(results)
    r_ = results.get("recommendation") or {}
    if r_.get("criterion"):
        method.append(f"Recommendation: {r_['criterion']}; the setfit baseline is not a candidate.")
    parts += ["<h2>Method</h2>", '<ul class="method">'] + [f"<li>{e(line)}</li>" for line in method] + ["</ul>"]
    notes = results.get("notes") or []
    if notes:
        parts += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{e(n)}</li>" for n in notes] + ["</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m fastclf.report REPORT_JSON", file=sys.stderr)
        return 2
    path = Path(argv[0])
    paths = write_report(json.loads(path.read_text(encoding="utf-8")), path.parent)
    print(f"wrote {paths['md']} and {paths['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
