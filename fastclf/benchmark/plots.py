"""The report's two plots, drawn by matplotlib (optional: ``fastclf[bench]``) as SVG text to inline
in the page; only ``matplotlib.figure.Figure`` is used, never pyplot's global state."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastclf.backends import REFERENCE
from fastclf.benchmark.results import BenchmarkResults, Row
from fastclf.errors import missing_dependency

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
           "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
BASELINE_COLOR = "#555555"
TOLERANCE_COLOR = "#c0392b"
SIZE_INCHES = (6.4, 4.4)  # the axes; the legend goes below them
STYLE = {"svg.fonttype": "none",  # text as <text>, drawn in the page's font
         "font.family": "sans-serif", "font.size": 10, "axes.titlesize": 12, "axes.titleweight": "bold",
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#e6e6e6",
         "legend.fontsize": 9, "legend.frameon": False}


def require_matplotlib() -> Any:
    """matplotlib, or the MissingDependency that names the extra to install."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401  (the submodule used below)
    except ImportError as exc:
        raise missing_dependency("matplotlib", "bench") from exc
    return matplotlib


def to_svg(fig: Figure, tips: dict[str, str]) -> str:
    """A figure of :func:`styled_axes` as an ``<svg>`` element for an HTML page: no prolog or metadata, and
    ``tips`` (an artist's gid -> text) as hover titles."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
                bbox_inches="tight", pad_inches=0.1)
    svg = buffer.getvalue()
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg[svg.index("<svg"):], flags=re.S)
    svg = svg.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "").replace("xlink:href=", "href=")
    for gid, tip in tips.items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(tip)}</title>', 1)
    return svg.strip()


@contextmanager
def styled_axes(title: str, salt: str) -> Iterator[tuple[Any, Figure, Axes]]:
    """(matplotlib, figure, axes) in the report's style, titled; its SVG ids are unique to ``salt``."""
    mpl = require_matplotlib()
    with mpl.rc_context({**STYLE, "svg.hashsalt": salt}):
        fig = mpl.figure.Figure(figsize=SIZE_INCHES)
        ax = fig.add_subplot()
        ax.set_title(title)
        yield mpl, fig, ax


def _plot(title: str, salt: str, rows: Sequence[Row], empty: str, legend: str,
          draw: Callable[[Axes, Row, str], str], finish: Callable[[Any, Axes], None]) -> str:
    """A plot of ``rows``, each drawn by ``draw(ax, row, gid)`` (which returns its hover tip), or ``empty``."""
    with styled_axes(title, salt) as (mpl, fig, ax):
        if not rows:
            ax.set_axis_off()
            ax.text(0.5, 0.5, empty, ha="center", va="center", color="#888888", transform=ax.transAxes)
            return to_svg(fig, {})
        tips = {f"{salt}-row{i}": draw(ax, row, f"{salt}-row{i}") for i, row in enumerate(rows)}
        finish(mpl, ax)
        n = len(ax.get_legend_handles_labels()[1])  # the legend below the axes, in columns
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3 if n > 4 else n, title=legend,
                  title_fontsize=9, handletextpad=0.4, columnspacing=1.4)
        return to_svg(fig, tips)


def colors(rows: Sequence[Row]) -> dict[str, str]:
    """One color a row, the same in both plots; the baseline in grey."""
    variants = [r for r in rows if not r.is_baseline]
    return {**{r.name: PALETTE[i % len(PALETTE)] for i, r in enumerate(variants)},
            **{r.name: BASELINE_COLOR for r in rows if r.is_baseline}}


def plot_accuracy_latency(results: BenchmarkResults) -> str:
    """Each row as a point: its batch-1 p50 latency (95% CI bar) against its accuracy, with the
    tolerance floor below torch-fp32's accuracy dashed. SVG text."""
    rows = [r for r in results.rows if r.accuracy is not None and r.latency_ms is not None]
    palette, recommended = colors(results.rows), (results.recommendation or {}).get("variant")
    ref = results.row(REFERENCE)
    tolerance = results.settings.tolerance_points
    floor = ref.accuracy * 100 - tolerance if ref is not None and ref.accuracy is not None else None

    def draw(ax: Axes, row: Row, gid: str) -> str:
        assert row.latency_ms is not None and row.accuracy is not None
        (p50, (low, high)), y = (row.latency_ms.p50.value, row.latency_ms.p50.ci), row.accuracy * 100
        bars = ax.errorbar([p50], [y], xerr=[[p50 - low], [high - p50]],
                           fmt="s" if row.is_baseline else "o", ms=7, color=palette[row.name], mec="white", mew=0.8,
                           elinewidth=2, capsize=4, zorder=3,
                           label=row.label + ("  ★ recommended" if row.name == recommended else ""))
        bars.lines[0].set_gid(gid)  # the markers: hovering them shows the tip
        if row.name == recommended:
            ax.plot([p50], [y], "o", ms=15, mfc="none", mec="#222222", mew=1.5, zorder=4)
        return f"{row.label}: accuracy {row.accuracy:.1%}, p50 {p50:.2f} ms (95% CI {low:.2f}–{high:.2f})"

    def finish(mpl: Any, ax: Axes) -> None:
        lows = [r.latency_ms.p50.ci[0] for r in rows if r.latency_ms]
        highs = [r.latency_ms.p50.ci[1] for r in rows if r.latency_ms]
        log = max(highs) / max(min(lows), 1e-3) > 3
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(mpl.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        else:
            ax.set_xlim(0, max(highs) * 1.12)
        accuracies = [r.accuracy * 100 for r in rows if r.accuracy is not None] + ([floor] if floor is not None else [])
        pad = max(0.6, (max(accuracies) - min(accuracies)) * 0.18)
        ax.set_ylim(min(accuracies) - pad, max(accuracies) + pad)
        if floor is not None:
            ax.axhspan(ax.get_ylim()[0], floor, color=TOLERANCE_COLOR, alpha=0.06, lw=0, zorder=0)
            ax.axhline(floor, color=TOLERANCE_COLOR, ls=(0, (6, 4)), lw=1.2, zorder=1)
            ax.annotate(f"{REFERENCE} − {tolerance:g} point{'s' if tolerance != 1 else ''}: below is outside the "
                        "tolerance", xy=(1, floor), xycoords=("axes fraction", "data"), xytext=(-4, -4),
                        textcoords="offset points", ha="right", va="top", color=TOLERANCE_COLOR, fontsize=8.5)
        ax.set_xlabel("latency for one text, p50 ms" + (" (log scale)" if log else "") + "; bars: 95% CI")
        ax.set_ylabel("accuracy (%)")

    return _plot("Accuracy against latency for one text", "fastclf-accuracy", rows,
                 "no variant has both accuracy and latency yet", "better: up and to the left", draw, finish)


def plot_throughput(results: BenchmarkResults) -> str:
    """Texts a second against batch size (log axis) for each row, with 95% CI bars. SVG text."""
    rows = sorted((r for r in results.rows if r.throughput),  # fastest at the largest batch size first
                  key=lambda r: r.throughput[max(r.throughput, key=int)].texts_per_s, reverse=True)
    sizes = [int(b) for b in results.settings.batch_sizes]
    palette = colors(results.rows)

    def draw(ax: Axes, row: Row, gid: str) -> str:
        points = sorted((int(b), t) for b, t in row.throughput.items())
        bars = ax.errorbar([b for b, _ in points], [t.texts_per_s for _, t in points],
                           yerr=[[t.texts_per_s - t.ci[0] for _, t in points],
                                 [t.ci[1] - t.texts_per_s for _, t in points]],
                           fmt="s--" if row.is_baseline else "o-", color=palette[row.name], ms=5, mec="white", mew=0.6,
                           lw=2, elinewidth=1.2, capsize=3, label=row.label, zorder=3)
        bars.lines[0].set_gid(gid)  # the markers and line: hovering them shows the tip
        return f"{row.label}: " + ", ".join(
            f"batch {b}: {t.texts_per_s:.1f} texts/s (95% CI {t.ci[0]:.1f}–{t.ci[1]:.1f})" for b, t in points)

    def finish(mpl: Any, ax: Axes) -> None:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.set_xlim(min(sizes) / 1.35, max(sizes) * 1.35)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("batch size (log scale); bars: 95% CI")
        ax.set_ylabel("texts per second (higher is better)")

    return _plot("Throughput against batch size", "fastclf-throughput", rows if sizes else [],
                 "no throughput measured yet", f"fastest at batch {max(sizes, default=0)} first", draw, finish)
