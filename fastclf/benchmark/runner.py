"""``Benchmark``: measure each row in its own process, one after the other, keeping the results
(and the report files) up to date after each."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from fastclf._util import package_versions
from fastclf.accelerate.parity import DEFAULT_MAX_ACCURACY_LOSS
from fastclf.backends import REFERENCE, get_spec
from fastclf.benchmark.baseline import BASELINE_SETFIT, SETFIT_DESCRIPTION
from fastclf.benchmark.plots import require_matplotlib
from fastclf.benchmark.recommend import BUSY_CORES, finalize
from fastclf.benchmark.report import write_report
from fastclf.benchmark.results import BenchmarkResults, DataSummary, Row, Settings
from fastclf.benchmark.rows import CONFIDENCE, N_BOOT, Scoring, build_row, resolve_variants
from fastclf.benchmark.spawn import OtherLoad, Progress, measure, sigint_ignored
from fastclf.benchmark.worker import EVAL_BATCH_SIZE, LATENCY_MIN_CALLS, THROUGHPUT_MIN_BATCHES, Job
from fastclf.errors import DataError
from fastclf.machine import platform_info, usable_cpus

MAX_TIMING_TEXTS = 2000
LIBRARIES = ("fastclf", "torch", "onnxruntime", "openvino", "sentence-transformers", "setfit", "transformers",
             "tokenizers", "optimum", "optimum-onnx", "optimum-intel", "nncf", "neural-compressor", "torchao",
             "numpy", "scikit-learn")


class BenchmarkInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Benchmark.run`; ``results`` (and the report files) hold what was measured."""

    def __init__(self, results: BenchmarkResults, message: str):
        super().__init__(message)
        self.results = results


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class _Plan:
    """The rows to measure, in order, and the texts they are measured on."""

    rows: list[tuple[str, str]]  # (name, kind)
    eval_texts: list[str]
    timing_texts: list[str]
    scoring: Scoring
    data: DataSummary
    notes: list[str]


class Benchmark:
    """Compare the variants of a model on labeled ``data`` (a file or a LabeledData); bad settings, names, models
    and data raise before anything is measured. ``variants`` None: every exported one (torch-fp32, the reference,
    always runs); ``baseline="setfit"``: setfit's ``SetFitModel.predict``, the speed-ups' reference; ``duration``,
    ``warmup`` (default a fifth): seconds of timed, untimed calls a measurement; ``max_eval``: texts scored at most;
    ``tolerance``: accuracy points a recommended variant may lose; ``threads``: the measuring processes'
    OMP_NUM_THREADS; ``output``: the report's folder, rewritten after each row."""

    def __init__(self, model_dir: str | Path, data: Any, variants: Sequence[str] | None = None,
                 batch_sizes: Sequence[int] = (1, 8, 32, 128), baseline: str | None = None, duration: float = 5.0,
                 max_eval: int = 1000, tolerance: float = DEFAULT_MAX_ACCURACY_LOSS, threads: int | None = None,
                 progress: Progress | None = None, warmup: float | None = None, output: str | Path | None = None):
        self.model_dir, self.data, self.progress = Path(model_dir), data, progress
        self.variants = list(variants) if variants is not None else None
        self.output = Path(output) if output is not None else None
        baseline = None if baseline in (None, "", "none") else baseline
        self.settings = Settings(
            batch_sizes=sorted({int(b) for b in batch_sizes}), baseline=baseline, duration_s=float(duration),
            warmup_s=float(warmup) if warmup is not None else float(duration) / 5, max_eval=int(max_eval),
            tolerance_points=float(tolerance), threads_requested=threads, reference=REFERENCE,
            speedup_reference=BASELINE_SETFIT if baseline else REFERENCE, eval_batch_size=EVAL_BATCH_SIZE,
            bootstrap_resamples=N_BOOT, confidence=CONFIDENCE, latency_min_calls=LATENCY_MIN_CALLS,
            throughput_min_batches=THROUGHPUT_MIN_BATCHES,
            isolation="each row measured in its own fresh Python process")

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def _check(self) -> None:
        s = self.settings
        if s.baseline not in (None, BASELINE_SETFIT):
            raise DataError(f"unknown baseline {s.baseline!r}; choose 'setfit' or none")
        if not s.batch_sizes or s.batch_sizes[0] < 1:
            raise DataError(f"batch sizes must be positive integers, got {s.batch_sizes}")
        if s.duration_s <= 0 or s.warmup_s < 0:
            raise DataError("duration must be positive and warm-up not negative")
        if s.max_eval < 1:
            raise DataError("max_eval must be at least 1")
        if s.threads_requested is not None and s.threads_requested < 1:
            raise DataError("threads must be at least 1")
        if self.output is not None:  # the report's plots need it: fail now, not after the first row
            require_matplotlib()

    def _plan(self) -> _Plan:
        """Check everything and choose the texts, before anything is measured."""
        from fastclf.config import ModelConfig
        from fastclf.data import LabeledData, read_labeled
        from fastclf.evaluation import check_labels

        self._check()
        cfg = ModelConfig.read(self.model_dir)
        names, notes = resolve_variants(self.model_dir, self.variants)
        data = self.data if isinstance(self.data, LabeledData) else read_labeled(self.data)
        if len(data) == 0:
            raise DataError(f"{data.source}: no texts")
        labels, multi = list(cfg.labels), cfg.multi_label
        check_labels(SimpleNamespace(classes_=np.array(labels, dtype=object), multi_label=multi), data)
        rng = np.random.default_rng(0)
        eval_idx = (sorted(int(i) for i in rng.choice(len(data), self.settings.max_eval, replace=False))
                    if len(data) > self.settings.max_eval else list(range(len(data))))
        timing_texts = [data.texts[i] for i in rng.permutation(len(data))[:MAX_TIMING_TEXTS]]
        rows = [(REFERENCE, "variant")] + ([(BASELINE_SETFIT, "baseline")] if self.settings.baseline else [])
        rows += [(n, "variant") for n in names if n != REFERENCE]
        if len(timing_texts) < max(self.settings.batch_sizes):
            notes.append(f"the data has {len(timing_texts)} texts, fewer than the largest batch size "
                         f"{max(self.settings.batch_sizes)}: batches repeat texts")
        summary = DataSummary(source=str(data.source or ""), texts=len(data),
                              eval_texts=len(eval_idx), timing_texts=len(timing_texts), classes=labels,
                              multi_label=multi, mean_chars=float(np.mean([len(t) for t in timing_texts])))
        scoring = Scoring(labels=[data.labels[i] for i in eval_idx], classes=labels, multi_label=multi)
        return _Plan(rows=rows, eval_texts=[data.texts[i] for i in eval_idx], timing_texts=timing_texts,
                     scoring=scoring, data=summary, notes=notes)

    def _start(self, plan: _Plan) -> BenchmarkResults:
        self.settings.variants = [n for n, _ in plan.rows]
        results = BenchmarkResults(model=str(self.model_dir), data=plan.data, settings=self.settings,
                                   machine=platform_info(), versions=package_versions(LIBRARIES, include_missing=True),
                                   notes=plan.notes, started=_now())
        for note in plan.notes:
            self._say(f"note: {note}")
        cpu = results.machine["cpu"]
        flags = ", ".join(f for f, on in cpu.get("flags", {}).items() if on) or "none of the tracked flags"
        self._say(f"benchmarking {len(plan.rows)} row(s) on {cpu.get('model')} ({cpu.get('usable_cpus')} usable "
                  f"CPUs; {flags}); {len(plan.eval_texts)} texts for accuracy, {self.settings.duration_s:g} s a timing")
        return results

    def run(self) -> BenchmarkResults:
        """Measure every row, each in a fresh process.

        Raises:
            BenchmarkInterrupted: Ctrl-C; its ``results`` hold the rows measured so far.
        """
        plan = self._plan()
        results = self._start(plan)
        current = ""
        try:
            with tempfile.TemporaryDirectory(prefix="fastclf-bench-") as tmp:
                for i, (name, kind) in enumerate(plan.rows, start=1):
                    current = name
                    row = self._measure_row(name, kind, Path(tmp), plan, step=f"[{i}/{len(plan.rows)}]")
                    results.rows.append(row)
                    finalize(results)
                    if row.status == "interrupted":
                        raise KeyboardInterrupt
                    results.partial = i < len(plan.rows)
                    results.finished = None if results.partial else _now()
                    self._update(results)
        except KeyboardInterrupt:
            raise self._interrupted(results, current) from None
        return results

    def _measure_row(self, name: str, kind: str, tmp: Path, plan: _Plan, step: str) -> Row:
        description = get_spec(name).description if kind == "variant" else SETFIT_DESCRIPTION
        self._say(f"{step} {name}: {description}")
        start = time.perf_counter()
        s = self.settings
        job = Job(name=name, kind=kind, model_dir=str(self.model_dir.resolve()), eval_texts=plan.eval_texts,
                  timing_texts=plan.timing_texts, batch_sizes=s.batch_sizes, duration=s.duration_s,
                  warmup=s.warmup_s, result=str(tmp / f"{name}.result.json"), progress=self.progress is not None,
                  threads=s.threads_requested)
        with OtherLoad() as other:
            raw = measure(job, tmp / f"{name}.job.json", self.progress)
        if name == REFERENCE:  # what the later rows agree with (and it, fully, with itself)
            plan.scoring.reference = raw.get("predictions")
        row = build_row(self.model_dir, name, kind, description, raw, plan.scoring)
        row.other_load_cores = other.cores
        self._say(f"  FAILED: {row.error}" if row.status == "error"
                  else f"  {row.status} in {time.perf_counter() - start:.1f} s")
        if other.cores is not None and other.cores > BUSY_CORES:  # the report lists the flagged rows too
            self._say(f"  WARNING: other processes used {other.cores:.2f} of {usable_cpus()} CPUs while "
                      f"{name} was measured: its timings are disturbed")
        return row

    def _update(self, results: BenchmarkResults) -> None:
        if self.output is not None:
            write_report(results, self.output)

    def _interrupted(self, results: BenchmarkResults, current: str) -> BenchmarkInterrupted:
        """Mark the results partial and write them; the exception to raise."""
        with sigint_ignored():
            results.partial = True
            total = len(results.settings.variants)
            done = sum(1 for r in results.rows if r.status != "interrupted")
            results.notes.append(f"interrupted (Ctrl-C) while measuring {current}: "
                                 f"{total - done} of {total} row(s) not measured completely")
            self._update(results)
        message = f"interrupted: the report is PARTIAL ({results.rows_complete} of {total} rows complete)"
        if self.output is not None:
            message += f", written to {self.output / 'report.html'}"
        return BenchmarkInterrupted(results, message)
