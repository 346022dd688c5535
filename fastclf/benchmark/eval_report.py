"""The page ``fastclf eval --report DIR`` writes: a reliability diagram, the accuracy-coverage curve, the figures."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from fastclf._util import atomic_write_text
from fastclf.benchmark.plots import PALETTE, styled_axes, to_svg
from fastclf.benchmark.report import CSS
from fastclf.evaluation import format_confidence

REPORT_FILE = "eval.html"


def _reliability(result: dict[str, Any]) -> str:
    with styled_axes("Reliability", "reliability") as (_, fig, ax):
        ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect calibration")
        calibrated = "calibrated" if "uncalibrated" in result else "as predicted (not calibrated)"
        for i, (key, name) in enumerate((("uncalibrated", "uncalibrated"), ("confidence", calibrated))):
            bins = (result.get(key) or {}).get("reliability")
            if bins:
                ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                        color=PALETTE[i], label=f"{name} (ECE {result[key]['ece']:.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence (mean of a bin)", ylabel="accuracy in the bin")
        ax.legend(loc="upper left")
        return to_svg(fig, {})


def _coverage_curve(result: dict[str, Any]) -> str:
    conf = result["confidence"]
    with styled_axes("Accuracy against coverage (labels: min confidence)", "coverage") as (_, fig, ax):
        rows = [r for r in conf["table"] if r["accuracy"] is not None]
        ax.plot([r["answered"] for r in rows], [r["accuracy"] for r in rows], marker="o", color=PALETTE[0])
        for r in rows:
            ax.annotate(f"{r['threshold']:g}", (r["answered"], r["accuracy"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set(xlim=(0, 1.02), xlabel="share of texts answered", ylabel="accuracy of the answered texts")
        ax.set_ylim(min(np.nanmin([r["accuracy"] for r in rows]), conf["accuracy"]) - 0.02, 1.0)
        return to_svg(fig, {})


def write_eval_report(result: dict[str, Any], classes: list[str], folder: str | Path, *, title: str) -> Path:
    """Write the page of :func:`fastclf.evaluation.evaluate`'s ``result`` for a single-label model into ``folder``:
    the two plots, then the figures (the accuracy-coverage table among them) as ``fastclf eval`` prints them.

    Raises:
        MissingDependency: matplotlib is not installed.
    """
    escape = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{escape(title)}</title>", f"<style>{CSS}</style></head><body>", f"<h1>{escape(title)}</h1>",
             f'<p class="sub">{result["n"]} labeled texts &middot; accuracy {result["accuracy"]:.3f} &middot; '
             f'{len(classes)} labels</p>',
             '<div class="plots">', f"<figure>{_reliability(result)}</figure>",
             f"<figure>{_coverage_curve(result)}</figure>", "</div>",
             "<h2>Figures</h2>", "<pre>" + escape("\n".join(format_confidence(result)).strip()) + "</pre>",
             "</body></html>"]
    atomic_write_text(Path(folder) / REPORT_FILE, "\n".join(parts) + "\n")
    return Path(folder) / REPORT_FILE
