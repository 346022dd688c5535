"""Score a generated corpus with ``fastclf predict --input``: the local engine in one process
(``local``) or N worker processes (``workersN``) and the Ray engine with N actors (``rayN``), at two
corpus sizes, every run pinned with ``taskset`` to the same CPUs (``--cpus``).

For each engine and size it runs the CLI in a fresh process and reports the wall time, the
throughput (texts/s), the start-up time (the wall time the two sizes do not explain: process
start, imports, model load, Ray start), the peak memory of the whole process tree (the driver,
and with Ray its raylet, GCS and workers: summed RSS, which counts shared pages once per
process, and summed PSS, which shares them out) and whether every label equals the local
engine's.

    PYTHONPATH=. python benchmarks/score_corpus.py /tmp/stream-model --variant onnx-int8 \\
        --engines local,workers2,ray2 --cpus 0-1 --sizes 5000,20000 --workdir /tmp/score-corpus

The corpus: texts drawn (seeded, with replacement) from examples/test.csv and examples/train.csv,
shuffled, N rows, written as Parquet with an ``id`` and a ``text`` column.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]


def make_corpus(n: int, path: Path, seed: int = 0) -> Path:
    """N texts drawn from the example files, shuffled, as Parquet."""
    texts = pd.concat([pd.read_csv(ROOT / "examples" / name)["text"] for name in ("test.csv", "train.csv")])
    rng = np.random.default_rng(seed)
    picked = texts.to_numpy()[rng.integers(0, len(texts), n)]
    pd.DataFrame({"id": np.arange(n), "text": picked}).to_parquet(path, index=False)
    return path


def _tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """Summed RSS and PSS (bytes) of a process and all its descendants."""
    rss = pss = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for p in procs:
        try:
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        except psutil.Error:
            pass
    return rss, pss


def run_engine(model: Path, corpus: Path, out: Path, engine: str, variant: str | None, timeout: float,
               chunk_size: int | None = None, cpus: str | None = None) -> dict:
    """Run one ``fastclf predict`` (pinned to ``cpus``, a taskset list) and watch its process tree."""
    cmd = [sys.executable, "-m", "fastclf", "predict", str(model), "--input", str(corpus), "--output", str(out), "-q"]
    if variant:
        cmd += ["--variant", variant]
    if engine.startswith("ray"):
        cmd += ["--engine", "ray", "--concurrency", engine[3:] or "1"]
    else:
        cmd += ["--workers", engine[7:] if engine.startswith("workers") else "1"]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(proc.pid)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = _tree_memory(watched)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        if time.monotonic() - started > timeout:
            proc.kill()
            raise SystemExit(f"{' '.join(cmd)} ran past {timeout} s")
        time.sleep(0.2)
    seconds = time.monotonic() - started
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    return {"command": " ".join(cmd), "seconds": seconds, "peak_rss_mb": peak_rss / 2**20,
            "peak_pss_mb": peak_pss / 2**20, "stdout": stdout.strip(), "stderr": stderr.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model written by fastclf train")
    parser.add_argument("--variant", default=None, help="body variant (default: the model's default)")
    parser.add_argument("--sizes", default="5000,20000", help="two corpus sizes, comma-separated")
    parser.add_argument("--engines", default="local,workers2,ray2",
                        help="local (one process), workersN (N worker processes), rayN (N Ray actors), comma-separated")
    parser.add_argument("--cpus", default=None,
                        help="taskset CPU list every run is pinned to, e.g. 0-3 (default: this process's CPUs)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/score-corpus"), help="corpora and outputs")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="fastclf predict --chunk-size for every engine (rows scored at a time by the local "
                             "engine, rows per actor call by Ray); the same value makes their model batches equal")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one run may take")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")]
    cpus = args.cpus or ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    corpora = {n: make_corpus(n, args.workdir / f"corpus_{n}.parquet") for n in sizes}
    runs: list[dict] = []
    for engine in engines:
        for n in sizes:
            out = args.workdir / f"scored_{engine}_{n}.parquet"
            print(f"{engine}, {n} rows ...", file=sys.stderr, flush=True)
            result = run_engine(args.model, corpora[n], out, engine, args.variant, args.timeout, args.chunk_size, cpus)
            result.update(engine=engine, rows=n, texts_per_s=n / result["seconds"], output=str(out))
            runs.append(result)
    load_after = os.getloadavg()

    # labels: every engine against the local engine, row by row
    for r in runs:
        ref = pd.read_parquet(args.workdir / f"scored_{engines[0]}_{r['rows']}.parquet", columns=["id", "predicted"])
        got = pd.read_parquet(r["output"], columns=["id", "predicted"])
        r["same_order"] = bool((ref["id"].to_numpy() == got["id"].to_numpy()).all())
        r["label_mismatches"] = int((ref["predicted"].to_numpy() != got["predicted"].to_numpy()).sum())

    summary = []
    for engine in engines:
        mine = sorted((r for r in runs if r["engine"] == engine), key=lambda r: r["rows"])
        row = {"engine": engine, "runs": mine}
        if len(mine) >= 2:
            a, b = mine[0], mine[-1]
            if b["seconds"] > a["seconds"]:  # else the machine's load swamped the difference
                rate = (b["rows"] - a["rows"]) / (b["seconds"] - a["seconds"])
                row["steady_texts_per_s"] = rate
                row["startup_s"] = max(a["seconds"] - a["rows"] / rate, 0.0)
        summary.append(row)

    from fastclf.machine import cpu as machine_cpu

    cpu = machine_cpu().model
    isa = [f for f in ("avx2", "avx512_vnni", "avx512_bf16", "amx_int8") if machine_cpu().has(f)]
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "pinned_to": cpus, "isa": isa, "load_before": load_before,
            "load_after": load_after, "variant": args.variant, "sizes": sizes, "chunk_size": args.chunk_size,
            "python": platform.python_version()}

    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs (runs pinned to {cpus}), {', '.join(isa)}; load before "
          f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} "
          f"{load_after[1]:.2f} {load_after[2]:.2f}")
    print("\n| engine | rows | wall s | texts/s (whole run) | peak RSS MB (tree) | peak PSS MB (tree) | "
          f"labels = {engines[0]} | order kept |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for r in runs:
        print(f"| {r['engine']} | {r['rows']:,} | {r['seconds']:.1f} | {r['texts_per_s']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {r['peak_pss_mb']:.0f} | "
              f"{'yes' if r['label_mismatches'] == 0 else str(r['label_mismatches']) + ' differ'} | "
              f"{'yes' if r['same_order'] else 'no'} |")
    ray_rate = {s["engine"][3:]: s.get("steady_texts_per_s") for s in summary if s["engine"].startswith("ray")}
    print("\n| engine | steady texts/s (between the sizes) | start-up s | steady vs Ray with as many actors |")
    print("|---|---:|---:|---:|")
    for s in summary:
        if "steady_texts_per_s" in s:
            ref = ray_rate.get(s["engine"][7:]) if s["engine"].startswith("workers") else None
            versus = f"{s['steady_texts_per_s'] / ref:.0%}" if ref else ""
            print(f"| {s['engine']} | {s['steady_texts_per_s']:.0f} | {s['startup_s']:.1f} | {versus} |")
    for r in runs:
        if r["stderr"]:
            print(f"\nstderr of {r['engine']} {r['rows']}: {r['stderr'][:500]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "runs": runs, "summary": [
            {k: v for k, v in s.items() if k != "runs"} for s in summary]}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
