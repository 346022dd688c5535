"""The parent's side of a measuring process: spawn it, forward its progress lines, stop it cleanly
on Ctrl-C, read back its raw measurements, and the CPU other processes used meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastclf.backends import MATH_THREADS_ENV, THREADS_ENV
from fastclf.benchmark.worker import Job

Progress = Callable[[str], None]


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
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


def _busy_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy since boot (all processes, /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _own_cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


class OtherLoad:
    """CPU used by *other* processes while a row is measured (``cores``, on average): the machine's busy time
    minus this process's and its children's."""

    def __enter__(self) -> OtherLoad:
        self.wall, self.busy, self.own = time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds()
        self.cores: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        busy, wall = _busy_cpu_seconds(), time.monotonic() - self.wall
        if busy is not None and self.busy is not None and wall > 0:
            self.cores = max(0.0, (busy - self.busy - (_own_cpu_seconds() - self.own)) / wall)


def _stop(proc: subprocess.Popen) -> int:
    """After Ctrl-C: let the worker save what it has and exit; interrupt or kill it if it does not."""
    for signum, wait in ((None, 3), (signal.SIGINT, 15), (signal.SIGKILL, 5)):
        if signum is not None:
            proc.send_signal(signum)  # a no-op once the process has exited
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(timeout=wait)
    return proc.wait()


def _read_result(path: Path, rc: int, interrupted: bool) -> dict[str, Any]:
    raw: dict[str, Any] = {"status": "error"}  # no file: the process died before its first step
    with contextlib.suppress(OSError, json.JSONDecodeError):
        raw = json.loads(path.read_text(encoding="utf-8")) or raw
    if rc != 0 and raw.get("status") in ("ok", "running", None):
        raw["status"] = "error"
    if raw.get("status") == "error" and not raw.get("error"):
        raw["error"] = (f"the measuring process died (signal {-rc})" if rc < 0
                        else f"the measuring process exited with code {rc}")
    if interrupted:  # even if the process finished first: the user asked to stop
        raw["status"] = "interrupted"
    return raw


def measure(job: Job, job_path: Path, progress: Progress | None) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process; return its raw measurements (``status``: ok, error or
    interrupted). A Ctrl-C stops the process cleanly and is not re-raised."""
    job_path.write_text(job.model_dump_json(), encoding="utf-8")
    env = {"TOKENIZERS_PARALLELISM": "false", **os.environ}
    if job.threads:  # FASTCLF_THREADS: read by the ONNX and OpenVINO bodies
        env.update(dict.fromkeys((*MATH_THREADS_ENV, THREADS_ENV), str(job.threads)))
    spawned_at = time.monotonic()  # the worker's cold start is timed from here (system-wide clock)
    proc = subprocess.Popen([sys.executable, "-m", "fastclf.benchmark", str(job_path), repr(spawned_at)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, errors="replace")

    def forward() -> None:  # the worker's progress lines to ``progress`` (or nowhere) until its stdout closes
        with contextlib.suppress(ValueError, OSError):
            for line in proc.stdout or ():
                if progress is not None:
                    progress(line.rstrip("\n"))

    reader = threading.Thread(target=forward, name="fastclf-benchmark-progress", daemon=True)
    reader.start()
    interrupted = False
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        interrupted = True
        with sigint_ignored():
            rc = _stop(proc)
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return _read_result(Path(job.result), rc, interrupted)
