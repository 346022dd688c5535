"""Benchmark the variants of a model before deploying it: accuracy, latency, throughput,
size, memory and load time, with the machine and library versions next to the figures.

Every variant (and the optional ``setfit`` baseline) is measured in its own fresh Python
process (``python -m fastclf.benchmark --worker JOB``), so that

- the load time is a real cold start: interpreter, imports, ``Classifier.load`` and the
  first prediction, timed from the moment the process is spawned;
- the peak memory is that process's own (``ru_maxrss``);
- variants do not disturb each other (torch.compile caches, runtime thread pools).

Timing follows optimum's ``TimeBenchmark`` and spaCy's ``benchmark speed``: real texts
from the test file, tokenization and head included (``Classifier.predict``), warm-up
calls first, then a fixed duration of calls each timed with ``perf_counter_ns``;
percentiles come with bootstrap confidence intervals.

    from fastclf import Benchmark
    results = Benchmark("model", data="test.csv", baseline="setfit", output="report").run()
    results.recommendation["variant"]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._util import atomic_write_text, package_versions
from .backends import REFERENCE, RUNTIME_DIRS, get_spec, is_exported, silence_import_warnings
from .errors import DataError, FastclfError, VariantNotExported, first_line

SCHEMA_VERSION = 1
BASELINE_SETFIT = "setfit"
DEFAULT_BATCH_SIZES = (1, 8, 32, 128)
DEFAULT_DURATION = 5.0
DEFAULT_MAX_EVAL = 1000
DEFAULT_TOLERANCE = 1.0  # accuracy points
MAX_TIMING_TEXTS = 2000
N_BOOT = 1000
BUSY_CORES = 0.25  # CPU used by other processes above which a row's timings are flagged
CONFIDENCE = 0.95
LATENCY_MIN_CALLS = 20
THROUGHPUT_MIN_BATCHES = 3
EVAL_BATCH_SIZE = 32
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pt2", ".pth", ".onnx", ".onnx_data", ".h5", ".msgpack",
                   ".ckpt", ".xml")
LIBRARIES = ("fastclf", "torch", "onnxruntime", "openvino", "sentence-transformers", "setfit", "transformers",
             "tokenizers", "optimum", "optimum-onnx", "optimum-intel", "nncf", "neural-compressor", "torchao",
             "numpy", "scikit-learn")
CPU_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

Echo = Callable[[str], None]


class BenchmarkInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Benchmark.run`; ``results`` holds what was measured so far."""

    def __init__(self, results: BenchmarkResults):
        super().__init__("benchmark interrupted")
        self.results = results


# ---------------------------------------------------------------------------- statistics


def percentile_ci(samples: Sequence[float], q: float, *, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                  seed: int = 0) -> tuple[float, float, float]:
    """The ``q``-th percentile of ``samples`` with a bootstrap confidence interval.

    Returns ``(value, low, high)``: the percentile (linear interpolation, numpy's default)
    and the percentile-bootstrap interval over ``n_boot`` resamples.

    Raises:
        ValueError: no samples.
    """
    (value, low, high), = _percentiles_ci(np.asarray(samples, dtype=np.float64), (q,), n_boot=n_boot,
                                          confidence=confidence, seed=seed)
    return value, low, high


def _percentiles_ci(x: np.ndarray, qs: Sequence[float], *, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                    seed: int = 0) -> list[tuple[float, float, float]]:
    if x.size == 0:
        raise ValueError("no samples")
    values = np.percentile(x, qs)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 2_000_000 // x.size))
    boots = []
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        idx = rng.integers(0, x.size, size=(m, x.size))
        boots.append(np.percentile(x[idx], qs, axis=1))  # (len(qs), m)
        done += m
    b = np.concatenate(boots, axis=1)
    alpha = (1.0 - confidence) / 2
    lows = np.quantile(b, alpha, axis=1)
    highs = np.quantile(b, 1 - alpha, axis=1)
    return [(float(v), float(min(lo, v)), float(max(hi, v))) for v, lo, hi in zip(values, lows, highs)]


def latency_summary(samples_ns: Sequence[int], *, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                    seed: int = 0) -> dict[str, Any]:
    """p50/p95/p99 (with bootstrap CIs), mean, min and max in milliseconds of per-call timings."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    out: dict[str, Any] = {"n": int(ms.size), "mean": float(ms.mean()), "min": float(ms.min()),
                           "max": float(ms.max())}
    for q, (v, lo, hi) in zip((50, 95, 99), _percentiles_ci(ms, (50, 95, 99), n_boot=n_boot,
                                                            confidence=confidence, seed=seed)):
        out[f"p{q}"] = {"value": v, "ci": [lo, hi]}
    return out


def throughput_summary(batch_ns: Sequence[int], texts_per_batch: Sequence[int], *, n_boot: int = N_BOOT,
                       confidence: float = CONFIDENCE, seed: int = 0) -> dict[str, Any]:
    """Texts a second over timed batches, with a bootstrap CI (batches resampled)."""
    t = np.asarray(batch_ns, dtype=np.float64) / 1e9
    n = np.asarray(texts_per_batch, dtype=np.float64)
    rate = float(n.sum() / t.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.size, size=(n_boot, t.size))
    rates = n[idx].sum(axis=1) / t[idx].sum(axis=1)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(rates, [alpha, 1 - alpha])
    return {"texts_per_s": rate, "ci": [float(min(lo, rate)), float(max(hi, rate))], "batches": int(t.size),
            "texts": int(n.sum()), "seconds": float(t.sum()),
            "ms_per_batch": float(np.median(t) * 1e3)}


# ---------------------------------------------------------------------------- machine


def cpu_info() -> dict[str, Any]:
    """CPU model, cores and the instruction-set flags that matter for int8/bf16 inference."""
    import platform

    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "vendor": None,
                            "logical_cpus": os.cpu_count()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["usable_cpus"] = os.cpu_count()
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    phys = None
    named = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and not named:
            info["model"] = value
            named = True
        elif key == "vendor_id" and info["vendor"] is None:
            info["vendor"] = value
        elif key == "cpu family" and "family" not in info:
            info["family"] = value
        elif key == "model" and "model_number" not in info:
            info["model_number"] = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "physical id":
            phys = value
            sockets.add(value)
        elif key == "core id":
            cores.add((phys or "0", value))
    if info.get("vendor") is None:
        info["vendor"] = platform.machine()
    info["physical_cores"] = len(cores) or None
    info["sockets"] = len(sockets) or None
    info["flags"] = {f: f in flags for f in CPU_FLAGS} if flags else {}
    info["hypervisor"] = "hypervisor" in flags if flags else None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def _busy_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy since boot (all processes, /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _OtherLoad:
    """CPU used by *other* processes while a row is measured: the machine's busy time minus
    this process's and the measuring child's own CPU time, in cores on average."""

    def __enter__(self) -> _OtherLoad:
        import resource

        self.wall = time.monotonic()
        self.busy = _busy_cpu_seconds()
        self.own = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        self.cores: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        import resource

        busy = _busy_cpu_seconds()
        wall = time.monotonic() - self.wall
        if busy is None or self.busy is None or wall <= 0:
            return
        now = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        own = sum((b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime) for a, b in zip(self.own, now))
        self.cores = max(0.0, (busy - self.busy - own) / wall)


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries the figures depend on (None: not installed)."""
    return package_versions(LIBRARIES, include_missing=True)


def machine_info() -> dict[str, Any]:
    import platform

    return {"cpu": cpu_info(), "os": platform.platform(), "python": platform.python_version(),
            "python_implementation": platform.python_implementation()}


# ---------------------------------------------------------------------------- sizes


def _support_files(body_dir: Path) -> list[Path]:
    """Config and tokenizer files of the sentence-transformers folder (no weights, no exports)."""
    out = []
    for p in sorted(body_dir.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(body_dir)
        if rel.parts[0] in RUNTIME_DIRS or p.suffix.lower() in WEIGHT_SUFFIXES or p.suffix.lower() == ".md":
            continue
        out.append(p)
    return out


def variant_files(model_dir: str | Path, variant: str) -> list[Path]:
    """The files a variant needs to run: its weights, the tokenizer and config files, the head.

    Every torch variant loads the sentence-transformers weights in ``body/`` (torch-int8 and
    inc-int8 rebuild their int8 graph from them at load) plus its own ``VariantSpec.files``;
    the other runtimes load only their ``VariantSpec.files`` (plus an ONNX external-data file
    next to the model, if any).
    """
    from .model import BODY_DIR, CONFIG_FILE, read_config

    model_dir = Path(model_dir)
    body_dir = model_dir / BODY_DIR
    cfg = read_config(model_dir)
    spec = get_spec(variant)
    files: list[Path] = []
    if spec.runtime == "torch" or not spec.files:
        weights = [body_dir / n for n in ("model.safetensors", "pytorch_model.bin") if (body_dir / n).is_file()]
        files.extend(weights[:1])
    for f in spec.files:
        p = body_dir / f
        files.append(p)
        for extra in (p.with_name(p.name + "_data"), p.with_name(p.name + ".data"), p.with_suffix(".onnx_data")):
            if extra.is_file() and extra not in files:
                files.append(extra)
    files.extend(_support_files(body_dir))
    files.append(model_dir / cfg.head.file)
    files.append(model_dir / CONFIG_FILE)
    return [p for p in dict.fromkeys(files) if p.is_file()]


def variant_size(model_dir: str | Path, variant: str) -> dict[str, Any]:
    files = variant_files(model_dir, variant)
    model_dir = Path(model_dir)
    total = sum(p.stat().st_size for p in files)
    return {"bytes": total, "mb": total / 1e6, "files": [str(p.relative_to(model_dir)) for p in files]}


# ---------------------------------------------------------------------------- variants


def _runtime_package(variant: str) -> str:
    """The Python package a variant's runtime needs (checked without importing it)."""
    from .backends import _RUNTIMES

    return _RUNTIMES[get_spec(variant).runtime][0]


def _runtime_installed(variant: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(_runtime_package(variant)) is not None


def resolve_variants(model_dir: str | Path, variants: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Check the variant names before any measuring: return (variants to run, notes).

    torch-fp32 is always run: it is the reference for agreement and for the recommendation.

    Raises:
        UnknownVariant: a name fastclf does not know.
        VariantNotExported: a variant that is not exported in the model directory.
        MissingDependency: a variant whose runtime is not installed.
    """
    from .errors import missing_dependency
    from .model import BODY_DIR, Classifier, exported_variants

    model_dir = Path(model_dir)
    notes: list[str] = []
    if variants is None:
        chosen = exported_variants(model_dir)
        runnable = [v for v in chosen if _runtime_installed(v)]
        skipped = [v for v in chosen if v not in runnable]
        if skipped:
            notes.append(f"skipped {', '.join(skipped)}: runtime not installed")
        return runnable, notes
    names = list(dict.fromkeys(v.strip() for v in variants if v.strip()))
    for v in names:
        get_spec(v)
    body_dir = model_dir / BODY_DIR
    for v in names:
        if not is_exported(body_dir, v):
            Classifier.load(model_dir, variant=v)  # raises VariantNotExported with the command that fixes it
            raise VariantNotExported(f"variant {v!r} is not exported in {model_dir}")
        if not _runtime_installed(v):
            raise missing_dependency(_runtime_package(v), get_spec(v).extra)
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
        notes.append(f"{REFERENCE} added: it is the reference for agreement and for the recommendation")
    else:
        names.remove(REFERENCE)
        names.insert(0, REFERENCE)
    return names, notes


# ---------------------------------------------------------------------------- results


@dataclass
class BenchmarkResults:
    """Everything a benchmark run measured; :meth:`to_dict` is what ``report.json`` holds."""

    model: str
    data: dict[str, Any]
    settings: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str | None]
    rows: list[dict[str, Any]] = field(default_factory=list)
    recommendation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    started: str = ""
    finished: str | None = None
    partial: bool = True

    def row(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["name"] == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "partial": self.partial,
            "model": self.model,
            "data": self.data,
            "settings": self.settings,
            "machine": self.machine,
            "versions": self.versions,
            "started": self.started,
            "finished": self.finished,
            "rows": self.rows,
            "recommendation": self.recommendation,
            "notes": self.notes,
        }

    def __getitem__(self, key: str) -> Any:  # results["rows"], like the JSON
        return self.to_dict()[key]


def _finalize_rows(results: BenchmarkResults) -> None:
    """Speed-ups against the baseline (setfit if measured, else torch-fp32) and the recommendation."""
    ref_name = results.settings["speedup_reference"]
    ref = results.row(ref_name)
    if ref is None or ref.get("latency_ms") is None:
        ref = results.row(REFERENCE)
        ref_name = REFERENCE
    for row in results.rows:
        speed: dict[str, Any] = {"vs": ref_name if ref is not None else None, "latency_p50": None, "throughput": {}}
        if ref is not None and ref.get("latency_ms") and row.get("latency_ms"):
            speed["latency_p50"] = ref["latency_ms"]["p50"]["value"] / row["latency_ms"]["p50"]["value"]
        if ref is not None:
            for b, t in (row.get("throughput") or {}).items():
                rt = (ref.get("throughput") or {}).get(b)
                if rt:
                    speed["throughput"][b] = t["texts_per_s"] / rt["texts_per_s"]
        row["speedup"] = speed
    results.recommendation = recommend(results.rows, tolerance=results.settings["tolerance_points"],
                                       speedup_reference=ref_name)


def recommend(rows: Sequence[dict[str, Any]], *, tolerance: float = DEFAULT_TOLERANCE,
              speedup_reference: str | None = None) -> dict[str, Any] | None:
    """The fastest variant for one text (lowest batch-1 p50 latency) among those whose
    accuracy is at least torch-fp32's minus ``tolerance`` points; also the variant with the
    highest throughput at any batch size among the same. The setfit baseline is not a
    candidate: it is what is being replaced."""
    ref = next((r for r in rows if r["name"] == REFERENCE), None)
    if ref is None or ref.get("accuracy") is None:
        return {"variant": None, "text": f"No recommendation: {REFERENCE} (the reference) was not measured."}
    floor = ref["accuracy"] - tolerance / 100.0
    candidates = [r for r in rows if r.get("kind") == "variant" and r.get("accuracy") is not None
                  and r.get("latency_ms") and r["accuracy"] >= floor - 1e-12]
    criterion = (f"lowest batch-1 p50 latency among variants with accuracy >= {REFERENCE}'s "
                 f"{ref['accuracy']:.1%} - {tolerance:g} point{'s' if tolerance != 1 else ''}")
    if not candidates:
        return {"variant": None, "criterion": criterion,
                "text": "No recommendation: no variant has both accuracy and latency measured within the tolerance."}
    best = min(candidates, key=lambda r: r["latency_ms"]["p50"]["value"])
    thr_best = None
    for r in candidates:
        for b, t in (r.get("throughput") or {}).items():
            if thr_best is None or t["texts_per_s"] > thr_best["texts_per_s"]:
                thr_best = {"variant": r["name"], "batch_size": int(b), "texts_per_s": t["texts_per_s"]}
    p50 = best["latency_ms"]["p50"]["value"]
    base = next((r for r in rows if r["name"] == speedup_reference and r.get("latency_ms")), None)
    vs = ""
    if base is not None and base is not best:
        base_p50 = base["latency_ms"]["p50"]["value"]
        vs = f" against {base_p50:.2f} ms for {speedup_reference}, {base_p50 / p50:.2f}x as fast"
    text = (f"Deploy {best['name']}: the fastest for one text (p50 {p50:.2f} ms{vs}) with accuracy "
            f"{best['accuracy']:.1%} ({REFERENCE}: {ref['accuracy']:.1%}, tolerance {tolerance:g} point"
            f"{'s' if tolerance != 1 else ''}; agreement with {REFERENCE} {best['agreement']:.1%}).")
    if thr_best is not None:
        same = " too" if thr_best["variant"] == best["name"] else ""
        text += (f" For batch work, {thr_best['variant']} has the highest throughput{same}: "
                 f"{thr_best['texts_per_s']:.0f} texts/s at batch {thr_best['batch_size']}.")
    busy = [r["name"] for r in rows if (r.get("other_load_cores") or 0) > BUSY_CORES]
    if busy:
        text += (f" Caution: other processes used the CPU while {len(busy)} of {len(rows)} rows were measured, "
                 "so these timings are disturbed and the ranking may change on a quiet machine.")
    return {"variant": best["name"], "criterion": criterion, "latency_p50_ms": p50, "accuracy": best["accuracy"],
            "reference_accuracy": ref["accuracy"], "tolerance_points": tolerance,
            "candidates": [r["name"] for r in candidates], "best_throughput": thr_best, "text": text}


# ---------------------------------------------------------------------------- parent side


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Let cleanup after a Ctrl-C finish even if the user presses it again."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


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
        progress: progress lines on stderr.
        output: folder for report.md/json/html, rewritten after each variant (None: no files).

    Raises:
        UnknownVariant, VariantNotExported, MissingDependency, ModelNotFound, ModelFormatError,
        DataError (from :meth:`run`, before anything is measured).
    """

    def __init__(self, model_dir: str | Path, data: Any, variants: Sequence[str] | None = None,
                 batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, baseline: str | None = None,
                 duration: float = DEFAULT_DURATION, max_eval: int = DEFAULT_MAX_EVAL,
                 tolerance: float = DEFAULT_TOLERANCE, threads: int | None = None, progress: bool = True,
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

    # -- checks

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

    def _load_data(self):
        from .data import LabeledData, read_labeled

        if isinstance(self.data, LabeledData):
            return self.data
        return read_labeled(self.data)

    def _say(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)

    # -- run

    def run(self, on_update: Callable[[BenchmarkResults], None] | None = None) -> BenchmarkResults:
        """Measure every variant, each in a fresh process; return the results.

        ``on_update`` is called with the results after each variant (the report is
        rewritten then when ``output`` was given).

        Raises:
            BenchmarkInterrupted: Ctrl-C; its ``results`` hold the variants measured so far
                (and the report files hold them too).
        """
        from .metrics import check_labels
        from .model import read_config

        self._check()
        cfg = read_config(self.model_dir)
        names, notes = resolve_variants(self.model_dir, self.variants)
        data = self._load_data()
        if len(data) == 0:
            raise DataError(f"{data.source}: no texts")
        labels = list(cfg.labels)
        multi = cfg.multi_label
        check_labels(_ModelLabels(labels, multi), data)

        rng = np.random.default_rng(self.seed)
        if len(data) > self.max_eval:
            eval_idx = sorted(int(i) for i in rng.choice(len(data), self.max_eval, replace=False))
        else:
            eval_idx = list(range(len(data)))
        eval_texts = [data.texts[i] for i in eval_idx]
        eval_labels = [data.labels[i] for i in eval_idx]
        timing_texts = [data.texts[i] for i in rng.permutation(len(data))[:MAX_TIMING_TEXTS]]

        plan: list[tuple[str, str]] = [(REFERENCE, "variant")]
        if self.baseline:
            plan.append((BASELINE_SETFIT, "baseline"))
        plan += [(n, "variant") for n in names if n != REFERENCE]
        if len(timing_texts) < max(self.batch_sizes):
            notes.append(f"the data has {len(timing_texts)} texts, fewer than the largest batch size "
                         f"{max(self.batch_sizes)}: batches repeat texts")

        results = BenchmarkResults(
            model=str(self.model_dir),
            data={"source": str(getattr(data, "source", "") or ""), "texts": len(data), "eval_texts": len(eval_texts),
                  "timing_texts": len(timing_texts), "classes": labels, "multi_label": multi,
                  "mean_chars": float(np.mean([len(t) for t in timing_texts]))},
            settings={"variants": [n for n, _ in plan], "batch_sizes": self.batch_sizes,
                      "baseline": self.baseline, "duration_s": self.duration, "warmup_s": self.warmup,
                      "max_eval": self.max_eval, "tolerance_points": self.tolerance,
                      "threads_requested": self.threads, "reference": REFERENCE,
                      "speedup_reference": BASELINE_SETFIT if self.baseline else REFERENCE,
                      "eval_batch_size": EVAL_BATCH_SIZE, "bootstrap_resamples": N_BOOT, "confidence": CONFIDENCE,
                      "latency_min_calls": LATENCY_MIN_CALLS, "throughput_min_batches": THROUGHPUT_MIN_BATCHES,
                      "isolation": "each row measured in its own fresh Python process"},
            machine=machine_info(), versions=library_versions(), notes=notes, started=_now())
        self.results = results
        for note in notes:
            self._say(f"note: {note}")
        cpu = results.machine["cpu"]
        flags = ", ".join(f for f, on in cpu.get("flags", {}).items() if on) or "none of the tracked flags"
        self._say(f"benchmarking {len(plan)} row(s) on {cpu.get('model')} ({cpu.get('usable_cpus')} usable CPUs; "
                  f"{flags}); {len(eval_texts)} texts for accuracy, {self.duration:g} s a timing")

        reference_predictions: list | None = None
        current = ""
        try:
            with tempfile.TemporaryDirectory(prefix="fastclf-bench-") as tmp:
                for i, (name, kind) in enumerate(plan, start=1):
                    current = name
                    desc = get_spec(name).description if kind == "variant" else SETFIT_DESCRIPTION
                    self._say(f"[{i}/{len(plan)}] {name}: {desc}")
                    start = time.perf_counter()
                    with _OtherLoad() as other:
                        raw, interrupted = self._measure(name, kind, Path(tmp), eval_texts, timing_texts)
                    row = self._row(name, kind, desc, raw, eval_labels, labels, multi, reference_predictions)
                    row["other_load_cores"] = other.cores
                    self._flag_busy(results, name, other.cores)
                    if name == REFERENCE and raw.get("predictions") is not None:
                        reference_predictions = raw["predictions"]
                        row["agreement"] = 1.0 if row.get("accuracy") is not None else None
                    if interrupted:
                        row["status"] = "interrupted"
                    results.rows.append(row)
                    if row["status"] == "error":
                        self._say(f"  FAILED: {row['error']}")
                    else:
                        self._say(f"  {row['status']} in {time.perf_counter() - start:.1f} s")
                    _finalize_rows(results)
                    if interrupted:
                        raise KeyboardInterrupt
                    results.partial = i < len(plan)
                    if not results.partial:
                        results.finished = _now()
                    self._update(results, on_update)
        except KeyboardInterrupt:
            with _sigint_ignored():
                results.partial = True
                done = sum(1 for r in results.rows if r["status"] != "interrupted")
                results.notes.append(f"interrupted (Ctrl-C) while measuring {current}: "
                                     f"{len(plan) - done} of {len(plan)} row(s) not measured completely")
                self._update(results, on_update)
            raise BenchmarkInterrupted(results) from None
        return results

    def _flag_busy(self, results: BenchmarkResults, name: str, cores: float | None) -> None:
        # the report's warning banner lists the flagged rows (from each row's other_load_cores)
        cpus = results.machine["cpu"].get("usable_cpus") or 1
        if cores is not None and cores > BUSY_CORES:
            self._say(f"  WARNING: other processes used {cores:.2f} of {cpus} CPUs while {name} was measured: "
                      "its timings are disturbed")

    def _update(self, results: BenchmarkResults, on_update) -> None:
        if self.output is not None:
            from .report import write_report

            write_report(results.to_dict(), self.output)
        if on_update is not None:
            on_update(results)

    def _measure(self, name: str, kind: str, tmp: Path, eval_texts: list[str],
                 timing_texts: list[str]) -> tuple[dict[str, Any], bool]:
        """Run one row in a fresh process; return (its raw measurements, interrupted)."""
        job_path = tmp / f"{name}.job.json"
        result_path = tmp / f"{name}.result.json"
        job = {"name": name, "kind": kind, "model_dir": str(self.model_dir.resolve()), "eval_texts": eval_texts,
               "timing_texts": timing_texts, "batch_sizes": self.batch_sizes, "duration": self.duration,
               "warmup": self.warmup, "progress": self.progress, "result": str(result_path),
               "threads": self.threads}
        env = dict(os.environ)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        if self.threads:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FASTCLF_THREADS"):
                env[var] = str(self.threads)  # FASTCLF_THREADS: read by the ONNX and OpenVINO bodies
        interrupted = False
        job_path.write_text(json.dumps(job), encoding="utf-8")
        # the worker's cold start is timed from here (CLOCK_MONOTONIC is system-wide)
        spawned_at = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "fastclf.benchmark", "--worker", str(job_path),
                                 "--spawned-at", repr(spawned_at)], env=env, stdin=subprocess.DEVNULL,
                                stdout=_stderr_fd())
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            with _sigint_ignored():
                rc = _stop(proc)
        raw: dict[str, Any] = {}
        if result_path.is_file():
            try:
                raw = json.loads(result_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                raw = {}
        if not raw:
            raw = {"status": "error"}
        if rc != 0 and raw.get("status") in ("ok", "running", None):
            raw["status"] = "interrupted" if interrupted else "error"
        if raw.get("status") == "error" and not raw.get("error"):
            raw["error"] = (f"the measuring process died (signal {-rc})" if rc < 0
                            else f"the measuring process exited with code {rc}")
        if raw.get("status") == "interrupted":
            interrupted = True
        return raw, interrupted

    def _row(self, name: str, kind: str, desc: str, raw: dict[str, Any], eval_labels: list, classes: list[str],
             multi: bool, reference_predictions: list | None) -> dict[str, Any]:
        from .metrics import scores

        size_variant = REFERENCE if kind == "baseline" else name
        size = variant_size(self.model_dir, size_variant)
        row: dict[str, Any] = {
            "name": name, "kind": kind, "description": desc, "status": raw.get("status", "error"),
            "error": raw.get("error"), "accuracy": None, "macro_f1": None, "agreement": None,
            "n_eval": None, "latency_ms": None, "throughput": {}, "size": size,
            "memory": raw.get("memory"), "load": raw.get("load"), "threads": raw.get("threads"),
            "runtime_settings": raw.get("runtime_settings"),
            "eval_seconds": raw.get("eval_seconds"),
        }
        preds = raw.get("predictions")
        if preds is not None and len(preds) == len(eval_labels):
            m = scores(classes, eval_labels, preds, multi_label=multi)
            row.update(accuracy=m["accuracy"], macro_f1=m["macro_f1"], n_eval=m["n"])
            if reference_predictions is not None and len(reference_predictions) == len(preds):
                norm = (lambda p: sorted(p)) if multi else (lambda p: p)
                row["agreement"] = float(np.mean([norm(a) == norm(b) for a, b in zip(preds, reference_predictions)]))
        lat = raw.get("latency")
        if lat and lat.get("samples_ns"):
            row["latency_ms"] = {**latency_summary(lat["samples_ns"], seed=self.seed),
                                 "warmup_calls": lat.get("warmup_calls"), "seconds": lat.get("seconds")}
        for b, t in (raw.get("throughput") or {}).items():
            if t.get("batch_ns"):
                row["throughput"][str(b)] = {**throughput_summary(t["batch_ns"], t["texts"], seed=self.seed),
                                             "batch_size": int(b), "warmup_batches": t.get("warmup_batches")}
        return row


class _ModelLabels:
    """What :func:`fastclf.metrics.check_labels` needs of a classifier, read from the config."""

    def __init__(self, labels: list[str], multi_label: bool):
        self.classes_ = np.array(labels, dtype=object)
        self.multi_label = multi_label


def _stderr_fd():
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _stop(proc: subprocess.Popen) -> int:
    """After Ctrl-C: let the worker save what it has and exit; interrupt or kill it if it does not."""
    for action, wait in ((None, 3), (signal.SIGINT, 15), ("kill", 5)):
        if action == "kill":
            proc.kill()
        elif action is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(action)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


# ---------------------------------------------------------------------------- worker side

SETFIT_DESCRIPTION = ("setfit.SetFitModel.predict in fp32 (torch eager) on the same body, with an equivalent "
                      "scikit-learn LogisticRegression head: what setfit users run today")


def _rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024**2


def _sklearn_head(head, n_classes: int, multi_label: bool):
    """A fitted scikit-learn estimator whose weights are fastclf's head: what setfit's
    ``SetFitModel`` expects as ``model_head`` (LogisticRegression, or one-vs-rest for multi-label)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    if multi_label:
        from sklearn.multiclass import OneVsRestClassifier

        k = head.coef.shape[0]
        y = np.vstack([np.eye(k, dtype=int), 1 - np.eye(k, dtype=int)])
        ovr = OneVsRestClassifier(LogisticRegression()).fit(rng.normal(size=(len(y), head.dim)), y)
        for j, est in enumerate(ovr.estimators_):
            est.coef_ = head.coef[j:j + 1].copy()
            est.intercept_ = head.intercept[j:j + 1].copy()
        return ovr
    y = np.repeat(np.arange(n_classes), 2)
    lr = LogisticRegression().fit(rng.normal(size=(len(y), head.dim)), y)
    lr.coef_ = head.coef.copy()
    lr.intercept_ = head.intercept.copy()
    return lr


def _load_setfit(model_dir: Path) -> tuple[Callable[[list[str], int], list], Any]:
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel

    from .head import LogisticHead
    from .model import BODY_DIR, read_config

    cfg = read_config(model_dir)
    labels = list(cfg.labels)
    multi = cfg.multi_label
    head = LogisticHead.load(cfg.head_path(model_dir))
    from .safety import check_body

    check_body(model_dir / BODY_DIR)  # the same check as every other load: no code from the model folder
    body = SentenceTransformer(str(model_dir / BODY_DIR), device="cpu", local_files_only=True)
    model = SetFitModel(model_body=body, model_head=_sklearn_head(head, len(labels), multi), labels=labels,
                        multi_target_strategy="one-vs-rest" if multi else None)

    def predict(texts: list[str], batch_size: int) -> list:
        out = model.predict(texts, batch_size=batch_size, as_numpy=True, show_progress_bar=False)
        if multi:
            return [[labels[j] for j in np.flatnonzero(np.asarray(row))] for row in out]
        return [str(x) for x in out]

    return predict, model


def _load_fastclf(model_dir: Path, variant: str) -> tuple[Callable[[list[str], int], list], Any]:
    from .model import Classifier

    clf = Classifier.load(model_dir, variant=variant)

    def predict(texts: list[str], batch_size: int) -> list:
        return clf.predict(texts, batch_size=batch_size)

    return predict, clf


def _thread_info(obj: Any, requested: int | None) -> dict[str, Any]:
    """Thread counts of the runtimes this process loaded, found on the loaded objects."""
    info: dict[str, Any] = {"requested": requested, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    if "torch" in sys.modules:
        import torch

        info["torch_intra_op"] = torch.get_num_threads()
        info["torch_inter_op"] = torch.get_num_interop_threads()
    seen: set[int] = set()

    def visit(o: Any, depth: int) -> None:
        if o is None or id(o) in seen or depth > 3 or isinstance(o, (str, bytes, int, float, np.ndarray)):
            return
        seen.add(id(o))
        module = type(o).__module__ or ""
        if module.startswith("onnxruntime") and hasattr(o, "get_session_options"):
            opts = o.get_session_options()
            info["onnxruntime_intra_op"] = opts.intra_op_num_threads or "default (physical cores)"
            info["onnxruntime_inter_op"] = opts.inter_op_num_threads or "default"
            return
        if module.startswith("openvino") and hasattr(o, "get_property"):
            for prop in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "INFERENCE_PRECISION_HINT"):
                with contextlib.suppress(Exception):
                    info[f"openvino_{prop.lower()}"] = str(o.get_property(prop))
            if "openvino_inference_num_threads" in info:
                return
        if isinstance(o, (list, tuple)):
            for x in o[:8]:
                visit(x, depth + 1)
            return
        if isinstance(o, dict):
            for x in list(o.values())[:32]:
                visit(x, depth + 1)
            return
        if module.startswith(("torch", "transformers", "sentence_transformers", "tokenizers", "sklearn")):
            return
        d = getattr(o, "__dict__", None)
        if isinstance(d, dict):
            for x in list(d.values())[:32]:
                visit(x, depth + 1)

    with contextlib.suppress(Exception):
        visit(obj, 0)
    return info


def _batches(texts: list[str], size: int, start: int = 0) -> Iterator[list[str]]:
    """Consecutive batches of ``size`` texts, cycling through ``texts``."""
    i = start
    n = len(texts)
    while True:
        yield [texts[(i + k) % n] for k in range(size)]
        i = (i + size) % n


def _time_calls(call: Callable[[list[str]], Any], batches: Iterator[list[str]], *, warmup_s: float,
                warmup_min: int, duration_s: float, min_calls: int) -> tuple[list[int], list[int], int]:
    """Warm up, then time calls for ``duration_s`` (and at least ``min_calls``); return
    (per-call ns, texts per call, warm-up calls)."""
    clock = time.perf_counter_ns
    warm = 0
    end = clock() + int(warmup_s * 1e9)
    while warm < warmup_min or clock() < end:
        call(next(batches))
        warm += 1
    times: list[int] = []
    sizes: list[int] = []
    end = clock() + int(duration_s * 1e9)
    while len(times) < min_calls or clock() < end:
        batch = next(batches)
        t0 = clock()
        call(batch)
        times.append(clock() - t0)
        sizes.append(len(batch))
    return times, sizes, warm


def _quiet_libraries() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    silence_import_warnings()
    for name in ("transformers", "sentence_transformers", "setfit", "datasets", "optimum", "nncf", "openvino",
                 "neural_compressor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("LOGLEVEL", "ERROR")  # Intel Neural Compressor sets its logger's level from it


def _worker(job: dict[str, Any], spawned_at: float) -> int:
    name = job["name"]
    out = Path(job["result"])
    res: dict[str, Any] = {"name": name, "status": "running", "pid": os.getpid()}
    say = (lambda m: print(f"  {name}: {m}", file=sys.stderr, flush=True)) if job.get("progress") else (lambda m: None)

    def save() -> None:
        res["memory"] = {**(res.get("memory") or {}), "peak_rss_mb": _peak_rss_mb()}
        atomic_write_text(out, json.dumps(res))

    try:
        started = time.monotonic()
        _quiet_libraries()
        model_dir = Path(job["model_dir"])
        texts: list[str] = job["timing_texts"]
        t0 = time.monotonic()
        if job["kind"] == "baseline":
            predict, obj = _load_setfit(model_dir)
        else:
            predict, obj = _load_fastclf(model_dir, name)
        t1 = time.monotonic()
        predict([texts[0]], 1)
        t2 = time.monotonic()
        res["load"] = {"cold_start_s": t2 - spawned_at, "startup_s": started - spawned_at, "load_s": t1 - t0,
                       "first_predict_s": t2 - t1}
        res["memory"] = {"rss_after_load_mb": _rss_mb()}
        res["threads"] = _thread_info(obj, job.get("threads"))
        from .backends import runtime_settings

        res["runtime_settings"] = {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
                                   for k, v in runtime_settings(getattr(obj, "body", None)).items()}
        say(f"cold start {res['load']['cold_start_s']:.2f} s (process start, imports, load, first prediction)")
        save()

        t0 = time.monotonic()
        res["predictions"] = predict(list(job["eval_texts"]), EVAL_BATCH_SIZE)
        res["eval_seconds"] = time.monotonic() - t0
        say(f"predicted {len(res['predictions'])} texts for accuracy in {res['eval_seconds']:.1f} s")
        save()

        duration, warmup = float(job["duration"]), float(job["warmup"])
        times, _, warm = _time_calls(lambda b: predict(b, 1), _batches(texts, 1), warmup_s=warmup, warmup_min=5,
                                     duration_s=duration, min_calls=LATENCY_MIN_CALLS)
        res["latency"] = {"samples_ns": times, "warmup_calls": warm, "seconds": sum(times) / 1e9}
        p = np.percentile(np.asarray(times) / 1e6, [50, 95, 99])
        say(f"latency, 1 text: p50 {p[0]:.2f} ms, p95 {p[1]:.2f} ms, p99 {p[2]:.2f} ms ({len(times)} calls)")
        save()

        res["throughput"] = {}
        for i, b in enumerate(job["batch_sizes"]):
            times, sizes, warm = _time_calls(lambda x, b=b: predict(x, b), _batches(texts, b, start=i * 7),
                                             warmup_s=warmup, warmup_min=1, duration_s=duration,
                                             min_calls=THROUGHPUT_MIN_BATCHES)
            res["throughput"][str(b)] = {"batch_ns": times, "texts": sizes, "warmup_batches": warm}
            say(f"throughput, batch {b}: {sum(sizes) / (sum(times) / 1e9):.1f} texts/s ({len(times)} batches)")
            save()
        res["status"] = "ok"
        save()
        return 0
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        res["status"] = "interrupted"
        save()
        return 130
    except Exception as exc:  # any runtime's own failure: report it in one line, the parent goes on
        res["status"] = "error"
        res["error"] = first_line(exc) if isinstance(exc, FastclfError) else f"{type(exc).__name__}: {first_line(exc)}"
        save()
        return 1


# ---------------------------------------------------------------------------- command


def benchmark_command(model_dir: Path, data: Path, *, read: Callable[[Path], Any], variants: list[str] | None,
                      batch_sizes: list[int], baseline: str, output: Path, duration: float, max_eval: int,
                      tolerance: float, echo: Echo = print, threads: int | None = None) -> BenchmarkResults:
    """``fastclf benchmark``: measure, write report.md/json/html after each variant, print the
    table and the recommendation. On Ctrl-C the report keeps what was measured and the
    process exits with code 130.

    Raises:
        UnknownVariant, VariantNotExported, MissingDependency, ModelNotFound, DataError
    """
    from .report import render_markdown, write_report

    labeled = read(Path(data))
    bench = Benchmark(model_dir, labeled, variants=variants, batch_sizes=batch_sizes,
                      baseline=None if baseline in (None, "none") else baseline, duration=duration,
                      max_eval=max_eval, tolerance=tolerance, threads=threads, output=output)
    try:
        results = bench.run()
    except BenchmarkInterrupted as exc:
        with _sigint_ignored():
            paths = write_report(exc.results.to_dict(), output)
            measured = sum(1 for r in exc.results.rows if r["status"] == "ok")
            print(f"interrupted: the report is PARTIAL ({measured} of {len(exc.results.settings['variants'])} rows "
                  f"complete), written to {paths['html']}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    paths = write_report(results.to_dict(), output)
    echo(render_markdown(results.to_dict(), brief=True))
    echo(f"report: {paths['md']}, {paths['json']}, {paths['html']}")
    return results


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fastclf.benchmark",
                                     description="internal: measure one variant in a fresh process")
    parser.add_argument("--worker", type=Path, required=True, help="job file written by Benchmark.run")
    parser.add_argument("--spawned-at", type=float, required=True, help="time.monotonic() at spawn")
    args = parser.parse_args(argv)
    job = json.loads(args.worker.read_text(encoding="utf-8"))
    return _worker(job, args.spawned_at)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
