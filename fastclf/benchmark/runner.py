"""``Benchmark``: measure each row in its own process, one after the other, and keep the
results (and the report files) up to date after each."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastclf._util import package_versions
from fastclf.accelerate.parity import DEFAULT_MAX_ACCURACY_LOSS
from fastclf.backends import REFERENCE, get_spec
from fastclf.benchmark.baseline import BASELINE_SETFIT, SETFIT_DESCRIPTION
from fastclf.benchmark.recommend import BUSY_CORES, finalize
from fastclf.benchmark.results import BenchmarkResults, DataSummary, Row, Settings
from fastclf.benchmark.rows import Scoring, build_row
from fastclf.benchmark.spawn import OtherLoad, Progress, measure, sigint_ignored
from fastclf.benchmark.stats import CONFIDENCE, N_BOOT
from fastclf.benchmark.worker import EVAL_BATCH_SIZE, LATENCY_MIN_CALLS, THROUGHPUT_MIN_BATCHES, Job
from fastclf.errors import DataError
from fastclf.machine import platform_info

DEFAULT_BATCH_SIZES = (1, 8, 32, 128)
DEFAULT_DURATION = 5.0
DEFAULT_MAX_EVAL = 1000
MAX_TIMING_TEXTS = 2000
LIBRARIES = ("fastclf", "torch", "onnxruntime", "openvino", "sentence-transformers", "setfit", "transformers",
             "tokenizers", "optimum", "optimum-onnx", "optimum-intel", "nncf", "neural-compressor", "torchao",
             "numpy", "scikit-learn")


class BenchmarkInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Benchmark.run`; ``results`` holds what was measured so far (and
    the report files, when an output folder was given, hold it too)."""

    def __init__(self, results: BenchmarkResults, message: str = "benchmark interrupted"):
        super().__init__(message)
        self.results = results


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries the figures depend on (None: not installed)."""
    return package_versions(LIBRARIES, include_missing=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _ModelLabels:
    """What :func:`fastclf.evaluation.check_labels` needs of a classifier, read from the config."""

    def __init__(self, labels: list[str], multi_label: bool):
        self.classes_ = np.array(labels, dtype=object)
        self.multi_label = multi_label


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
    """Compare the variants of a model on labeled data.

    Args:
        model_dir: a fastclf model directory.
        data: a labeled data file (CSV, TSV, JSONL, Parquet) or :class:`~fastclf.data.LabeledData`.
        variants: variant names; None = torch-fp32 and every exported variant. torch-fp32 is
            always measured (it is the reference).
        batch_sizes: batch sizes for the throughput measurements.
        baseline: ``"setfit"`` adds a row for ``setfit.SetFitModel.predict`` (fp32) on the same
            body and head; speed-ups are then against it.
        duration: seconds of timed calls for each measurement (latency, each batch size).
        warmup: seconds of untimed calls before each measurement (default: a fifth of ``duration``).
        max_eval: texts scored for accuracy at most (a seeded sample when the file has more).
        tolerance: accuracy points below torch-fp32 that a recommended variant may lose.
        threads: sets OMP_NUM_THREADS in the measuring processes (torch follows it; ONNX
            Runtime and OpenVINO choose their own and the report records what they used).
        progress: called with each progress line (None: silent), e.g. ``print``.
        output: folder for report.md/json/html, rewritten after each variant (None: no files).

    Raises:
        UnknownVariant, VariantNotExported, MissingDependency (a runtime, or matplotlib for the
        report's plots), ModelNotFound, ModelFormatError, DataError (from :meth:`run`, before
        anything is measured).
    """

    def __init__(self, model_dir: str | Path, data: Any, variants: Sequence[str] | None = None,
                 batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, baseline: str | None = None,
                 duration: float = DEFAULT_DURATION, max_eval: int = DEFAULT_MAX_EVAL,
                 tolerance: float = DEFAULT_MAX_ACCURACY_LOSS, threads: int | None = None,
                 progress: Progress | None = None,
                 warmup: float | None = None, output: str | Path | None = None, seed: int = 0):
        self.model_dir = Path(model_dir)
        self.data = data
        self.variants = list(variants) if variants is not None else None
        self.batch_sizes = [int(b) for b in batch_sizes]
        self.baseline = None if baseline in (None, "", "none") else baseline
        self.duration = float(duration)
        self.warmup = float(warmup) if warmup is not None else self.duration / 5
        self.max_eval = int(max_eval)
        self.tolerance = float(tolerance)
        self.threads = threads
        self.progress = progress
        self.output = Path(output) if output is not None else None
        self.seed = seed
        self.results: BenchmarkResults | None = None

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def _check(self) -> None:
        if self.baseline not in (None, BASELINE_SETFIT):
            raise DataError(f"unknown baseline {self.baseline!r}; choose 'setfit' or none")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise DataError(f"batch sizes must be positive integers, got {self.batch_sizes}")
        self.batch_sizes = sorted(dict.fromkeys(self.batch_sizes))
        if self.duration <= 0 or self.warmup < 0:
            raise DataError("duration must be positive and warm-up not negative")
        if self.max_eval < 1:
            raise DataError("max_eval must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise DataError("threads must be at least 1")
        if self.output is not None:  # the report's plots need it: fail now, not after the first row
            from fastclf.benchmark.plots import require_matplotlib

            require_matplotlib()

    def _load_data(self):
        from fastclf.data import LabeledData, read_labeled

        data = self.data if isinstance(self.data, LabeledData) else read_labeled(self.data)
        if len(data) == 0:
            raise DataError(f"{data.source}: no texts")
        return data

    def _plan(self) -> _Plan:
        """Check everything and choose the texts, before anything is measured."""
        from fastclf.benchmark.variants import resolve_variants
        from fastclf.config import read_config
        from fastclf.evaluation import check_labels

        self._check()
        cfg = read_config(self.model_dir)
        names, notes = resolve_variants(self.model_dir, self.variants)
        data = self._load_data()
        labels, multi = list(cfg.labels), cfg.multi_label
        check_labels(_ModelLabels(labels, multi), data)
        rng = np.random.default_rng(self.seed)
        eval_idx = (sorted(int(i) for i in rng.choice(len(data), self.max_eval, replace=False))
                    if len(data) > self.max_eval else list(range(len(data))))
        timing_texts = [data.texts[i] for i in rng.permutation(len(data))[:MAX_TIMING_TEXTS]]
        rows = [(REFERENCE, "variant")] + ([(BASELINE_SETFIT, "baseline")] if self.baseline else [])
        rows += [(n, "variant") for n in names if n != REFERENCE]
        if len(timing_texts) < max(self.batch_sizes):
            notes.append(f"the data has {len(timing_texts)} texts, fewer than the largest batch size "
                         f"{max(self.batch_sizes)}: batches repeat texts")
        summary = DataSummary(source=str(getattr(data, "source", "") or ""), texts=len(data),
                              eval_texts=len(eval_idx), timing_texts=len(timing_texts), classes=labels,
                              multi_label=multi, mean_chars=float(np.mean([len(t) for t in timing_texts])))
        scoring = Scoring(labels=[data.labels[i] for i in eval_idx], classes=labels, multi_label=multi, seed=self.seed)
        return _Plan(rows=rows, eval_texts=[data.texts[i] for i in eval_idx], timing_texts=timing_texts,
                     scoring=scoring, data=summary, notes=notes)

    def _settings(self, plan: _Plan) -> Settings:
        return Settings(variants=[n for n, _ in plan.rows], batch_sizes=self.batch_sizes, baseline=self.baseline,
                        duration_s=self.duration, warmup_s=self.warmup, max_eval=self.max_eval,
                        tolerance_points=self.tolerance, threads_requested=self.threads, reference=REFERENCE,
                        speedup_reference=BASELINE_SETFIT if self.baseline else REFERENCE,
                        eval_batch_size=EVAL_BATCH_SIZE, bootstrap_resamples=N_BOOT, confidence=CONFIDENCE,
                        latency_min_calls=LATENCY_MIN_CALLS, throughput_min_batches=THROUGHPUT_MIN_BATCHES,
                        isolation="each row measured in its own fresh Python process")

    def _start(self, plan: _Plan) -> BenchmarkResults:
        results = BenchmarkResults(model=str(self.model_dir), data=plan.data, settings=self._settings(plan),
                                   machine=platform_info(), versions=library_versions(), notes=plan.notes,
                                   started=_now())
        for note in plan.notes:
            self._say(f"note: {note}")
        cpu = results.machine["cpu"]
        flags = ", ".join(f for f, on in cpu.get("flags", {}).items() if on) or "none of the tracked flags"
        self._say(f"benchmarking {len(plan.rows)} row(s) on {cpu.get('model')} ({cpu.get('usable_cpus')} usable "
                  f"CPUs; {flags}); {len(plan.eval_texts)} texts for accuracy, {self.duration:g} s a timing")
        return results

    def run(self, on_update: Callable[[BenchmarkResults], None] | None = None) -> BenchmarkResults:
        """Measure every row, each in a fresh process; return the results.

        ``on_update`` is called with the results after each row (the report is rewritten
        then when ``output`` was given).

        Raises:
            BenchmarkInterrupted: Ctrl-C; its ``results`` hold the rows measured so far
                (and the report files hold them too).
        """
        plan = self._plan()
        results = self.results = self._start(plan)
        current = ""
        try:
            with tempfile.TemporaryDirectory(prefix="fastclf-bench-") as tmp:
                for i, (name, kind) in enumerate(plan.rows, start=1):
                    current = name
                    self._say(f"[{i}/{len(plan.rows)}] {name}: {self._description(name, kind)}")
                    row = self._measure_row(name, kind, Path(tmp), plan)
                    results.rows.append(row)
                    finalize(results)
                    if row.status == "interrupted":
                        raise KeyboardInterrupt
                    results.partial = i < len(plan.rows)
                    results.finished = None if results.partial else _now()
                    self._update(results, on_update)
        except KeyboardInterrupt:
            raise self._interrupted(results, current, on_update) from None
        return results

    @staticmethod
    def _description(name: str, kind: str) -> str:
        return get_spec(name).description if kind == "variant" else SETFIT_DESCRIPTION

    def _measure_row(self, name: str, kind: str, tmp: Path, plan: _Plan) -> Row:
        start = time.perf_counter()
        job = Job(name=name, kind=kind, model_dir=str(self.model_dir.resolve()), eval_texts=plan.eval_texts,
                  timing_texts=plan.timing_texts, batch_sizes=self.batch_sizes, duration=self.duration,
                  warmup=self.warmup, result=str(tmp / f"{name}.result.json"), progress=self.progress is not None,
                  threads=self.threads)
        with OtherLoad() as other:
            raw = measure(job, tmp / f"{name}.job.json", self.progress)
        row = build_row(self.model_dir, name, kind, self._description(name, kind), raw, plan.scoring)
        row.other_load_cores = other.cores
        if name == REFERENCE and raw.get("predictions") is not None:
            plan.scoring.reference = raw["predictions"]
            row.agreement = 1.0 if row.accuracy is not None else None
        if row.status == "error":
            self._say(f"  FAILED: {row.error}")
        else:
            self._say(f"  {row.status} in {time.perf_counter() - start:.1f} s")
        if other.cores is not None and other.cores > BUSY_CORES:  # the report lists the flagged rows too
            self._say(f"  WARNING: other processes used {other.cores:.2f} of {self._usable_cpus()} CPUs while "
                      f"{name} was measured: its timings are disturbed")
        return row

    def _usable_cpus(self) -> int:
        return (self.results.machine["cpu"].get("usable_cpus") if self.results else None) or 1

    def _update(self, results: BenchmarkResults, on_update: Callable[[BenchmarkResults], None] | None) -> None:
        if self.output is not None:
            from fastclf.benchmark.report import write_report

            write_report(results, self.output)
        if on_update is not None:
            on_update(results)

    def _interrupted(self, results: BenchmarkResults, current: str,
                     on_update: Callable[[BenchmarkResults], None] | None) -> BenchmarkInterrupted:
        """Mark the results partial and write them; the exception to raise."""
        with sigint_ignored():
            results.partial = True
            total = len(results.settings.variants)
            done = sum(1 for r in results.rows if r.status != "interrupted")
            results.notes.append(f"interrupted (Ctrl-C) while measuring {current}: "
                                 f"{total - done} of {total} row(s) not measured completely")
            self._update(results, on_update)
        message = f"interrupted: the report is PARTIAL ({results.rows_complete} of {total} rows complete)"
        if self.output is not None:
            message += f", written to {self.output / 'report.html'}"
        return BenchmarkInterrupted(results, message)
