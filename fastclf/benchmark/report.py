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

from fastclf._util import atomic_write_text
from fastclf.benchmark.results import BenchmarkResults
from fastclf.benchmark.tables import (
    busy_text,
    cpu_text,
    detail_table,
    flags_text,
    md_table,
    method_lines,
    partial_text,
    recommendation_text,
    speed_reference,
    summary_table,
    threads_text,
    throughput_table,
)

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


# ---------------------------------------------------------------------------- markdown


def _markdown_head(results: BenchmarkResults, brief: bool) -> list[str]:
    out = [] if brief else [f"# fastclf benchmark: {results.model}", ""]
    partial, busy = partial_text(results), busy_text(results)
    if partial:
        out += [f"**{partial}**", ""]
    if busy:
        out += [f"**Warning:** {busy}", ""]
    out += [f"**Recommendation:** {recommendation_text(results)}", ""]
    out += [] if brief else ["## Summary", ""]
    out += [md_table(summary_table(results)), ""]
    out += [] if brief else [f"## Throughput (texts/s, 95% CI, speed-up vs {speed_reference(results)})", ""]
    out += [md_table(throughput_table(results)), ""]
    errors = [f"- {r.name}: {r.status}: {r.error}" for r in results.rows if r.error]
    return out + (errors + [""] if errors else [])


def _markdown_details(results: BenchmarkResults) -> list[str]:
    machine = results.machine
    cpu = machine.get("cpu", {})
    out = ["## Machine", "", f"- CPU: {cpu_text(cpu)}", f"- Instruction sets: {flags_text(cpu)}",
           f"- OS: {machine.get('os')}; Python {machine.get('python')}",
           f"- Run: {results.started} to {results.finished or '(not finished)'}", "",
           "Threads used by each row:", ""]
    out += [f"- {r.label}: {threads_text(r.threads)}" for r in results.rows]
    out += ["", "## Versions", "", "| library | version |", "|---|---|"]
    out += [f"| {name} | {version or 'not installed'} |" for name, version in results.versions.items()]
    out += ["", "## Method", ""] + [f"- {line}" for line in method_lines(results)]
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
           f'{escape(results.data.source or "the data")} &middot; {escape(cpu_text(results.machine.get("cpu", {})))}'
           f' &middot; {escape(results.started)}</p>']
    out += [f'<p class="partial">{escape(text)}</p>' for text in (partial_text(results), busy_text(results)) if text]
    out.append(f'<p class="rec"><strong>Recommendation:</strong> {escape(recommendation_text(results))}</p>')
    return out


def _html_machine(results: BenchmarkResults) -> list[str]:
    machine = results.machine
    cpu = machine.get("cpu", {})
    table = [["", ""], ["CPU", cpu_text(cpu)], ["Instruction sets", flags_text(cpu)], ["OS", str(machine.get("os"))],
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
    from fastclf.benchmark.plots import plot_accuracy_latency, plot_throughput

    typed = _typed(results)
    escape = html.escape
    classes = _row_classes(typed)
    parts = _html_head(typed)
    parts += ["<h2>Summary</h2>", _html_table(summary_table(typed), classes)]
    parts += ['<div class="plots">', f"<figure>{plot_accuracy_latency(typed)}</figure>",
              f"<figure>{plot_throughput(typed)}</figure>", "</div>"]
    parts += [f"<h2>Throughput (texts/s, 95% CI, speed-up vs {escape(speed_reference(typed))})</h2>",
              _html_table(throughput_table(typed), classes)]
    errors = [f"<strong>{escape(r.name)}</strong>: {escape(str(r.error))}" for r in typed.rows if r.error]
    if errors:
        parts += _html_items("Errors", errors)
    parts += ["<h2>Load, memory and threads</h2>", _html_table(detail_table(typed), classes)]
    parts += _html_machine(typed)
    parts += _html_items("Method", [escape(line) for line in method_lines(typed)], css="method")
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
