"""The measuring process: load one variant (or the setfit baseline), predict, time calls (:mod:`fastclf.timing`);
its result file is rewritten after each step (a Ctrl-C or a crash keeps what was measured)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from fastclf._util import atomic_write_text
from fastclf.backends import runtime_settings, settle_one_text, thread_settings
from fastclf.benchmark.baseline import Predict
from fastclf.errors import FastclfError, first_line
from fastclf.quiet import quiet_logs
from fastclf.timing import cycle_batches, time_calls

EVAL_BATCH_SIZE = 32
LATENCY_MIN_CALLS = 20
THROUGHPUT_MIN_BATCHES = 3


class Job(pydantic.BaseModel):
    """What the parent asks a measuring process to do (written as JSON next to its result)."""

    name: str  # a variant, or "setfit"
    kind: str  # "variant" or "baseline"
    model_dir: str
    eval_texts: list[str]
    timing_texts: list[str]
    batch_sizes: list[int]
    duration: float
    warmup: float
    result: str  # the path of the result file
    progress: bool = False
    threads: int | None = None


def _rss_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024**2 if sys.platform == "darwin" else 1024)


class _Measurement:
    """One job's raw measurements, saved to its result file after each step."""

    def __init__(self, job: Job, spawned_at: float):
        self.job, self.spawned_at, self.body = job, spawned_at, None
        self.res: dict[str, Any] = {"name": job.name, "status": "running", "pid": os.getpid()}

    def say(self, message: str) -> None:
        if self.job.progress:
            print(f"  {self.job.name}: {message}", flush=True)

    def save(self) -> None:
        self.res["memory"] = {**(self.res.get("memory") or {}), "peak_rss_mb": _peak_rss_mb()}
        atomic_write_text(Path(self.job.result), json.dumps(self.res, default=str))  # runtimes' own types as text

    def load(self) -> Predict:
        """Import, load and predict once: the cold start."""
        from fastclf.benchmark.baseline import load_fastclf, load_setfit

        started = time.monotonic()
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("LOGLEVEL", "ERROR")  # Intel Neural Compressor sets its logger's level from it
        quiet_logs().__enter__()  # this process only measures: its libraries stay quiet until it exits
        model_dir = Path(self.job.model_dir)
        t0 = time.monotonic()
        predict, self.body, max_tokens = (load_setfit(model_dir) if self.job.kind == "baseline"
                                          else load_fastclf(model_dir, self.job.name))
        t1 = time.monotonic()
        predict([self.job.timing_texts[0]], batch_size=1)
        t2 = time.monotonic()
        self.res.update(load={"cold_start_s": t2 - self.spawned_at, "startup_s": started - self.spawned_at,
                              "load_s": t1 - t0, "first_predict_s": t2 - t1}, memory={"rss_after_load_mb": _rss_mb()},
                        threads={"requested": self.job.threads, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                                 **thread_settings(self.body)},
                        runtime_settings=runtime_settings(self.body), max_tokens=max_tokens)
        self.say(f"cold start {t2 - self.spawned_at:.2f} s (process start, imports, load, first prediction)")
        self.save()
        return predict

    def accuracy(self, predict: Predict) -> None:
        t0 = time.monotonic()
        self.res["predictions"] = predict(list(self.job.eval_texts), batch_size=EVAL_BATCH_SIZE)
        self.res["eval_seconds"] = time.monotonic() - t0
        self.say(f"predicted {len(self.res['predictions'])} texts for accuracy in {self.res['eval_seconds']:.1f} s")
        self.save()

    def latency(self, predict: Predict) -> None:
        # the steady state: the shapes this text mix brings compiled (OpenVINO's one-text shapes)
        settled_s = settle_one_text(self.body, lambda text: predict([text], batch_size=1), self.job.timing_texts)
        if settled_s is not None:
            self.res["runtime_settings"] = runtime_settings(self.body)
        times, _, warm = time_calls(functools.partial(predict, batch_size=1), cycle_batches(self.job.timing_texts, 1),
                                    warmup_s=self.job.warmup, warmup_min=5, duration_s=self.job.duration,
                                    min_calls=LATENCY_MIN_CALLS)
        self.res["latency"] = {"samples_ns": times, "warmup_calls": warm, "seconds": sum(times) / 1e9,
                               "settle_s": settled_s}
        p = np.percentile(np.asarray(times) / 1e6, [50, 95, 99])
        self.say(f"latency, 1 text: p50 {p[0]:.2f} ms, p95 {p[1]:.2f} ms, p99 {p[2]:.2f} ms ({len(times)} calls)")
        self.save()

    def throughput(self, predict: Predict) -> None:
        self.res["throughput"] = {}
        for i, b in enumerate(self.job.batch_sizes):
            times, sizes, warm = time_calls(functools.partial(predict, batch_size=b),
                                            cycle_batches(self.job.timing_texts, b, i * 7), warmup_s=self.job.warmup,
                                            warmup_min=1, duration_s=self.job.duration,
                                            min_calls=THROUGHPUT_MIN_BATCHES)
            self.res["throughput"][str(b)] = {"batch_ns": times, "texts": sizes, "warmup_batches": warm}
            self.say(f"throughput, batch {b}: {sum(sizes) / (sum(times) / 1e9):.1f} texts/s ({len(times)} batches)")
            self.save()

    def finish(self, status: str, error: str | None = None) -> None:
        self.res.update(status=status, **({"error": error} if error is not None else {}))
        self.save()


def run_job(job: Job, spawned_at: float) -> int:
    """Measure ``job``; return the process's exit code (0, 1: failed, 130: interrupted)."""
    m = _Measurement(job, spawned_at)
    try:
        predict = m.load()
        m.accuracy(predict)
        m.latency(predict)
        m.throughput(predict)
        m.finish("ok")
        return 0
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # saving the result is not interrupted again
        m.finish("interrupted")
        return 130
    except Exception as exc:  # any runtime's own failure: report it in one line, the parent goes on
        m.finish("error", first_line(exc) if isinstance(exc, FastclfError)
                 else f"{type(exc).__name__}: {first_line(exc)}")
        return 1

