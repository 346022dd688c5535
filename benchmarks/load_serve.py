"""Load test of `fastclf serve` on 127.0.0.1, against the in-process batch throughput.

    python benchmarks/load_serve.py MODEL_DIR --variant onnx-int8 --texts examples/test.csv \\
        --concurrency 1,8,32,128 --duration 10

1. In-process: ``clf.predict`` on batches of ``--max-batch`` texts for ``--duration`` seconds
   (the same variant and the same texts the clients send): texts/s. Measured again after the
   server has stopped; the comparison uses the mean of the two (the load of a shared machine drifts).
2. Starts ``fastclf serve MODEL_DIR --port 0`` (a free loopback port) in a subprocess.
3. For each concurrency level: a load generator keeps that many clients busy for
   ``--duration`` seconds, each request ``{"inputs": "<one text>"}``. Reported: texts/s
   (answered 200), p50/p99 latency, errors (non-200 answers and failed connections), and the
   mean batch size the server formed (from its /metrics).
4. Stops the server with SIGTERM; it must exit 0 (else this script exits 1).

Load generator: ``hey`` (``apt-get install hey``) when it is on PATH, else (or with
``--client python``) a bounded asyncio + httpx generator in this file. hey sends one body per
process, so the clients are spread over ``min(concurrency, 8)`` hey processes, each with its
own text drawn (seeded) from ``--texts``; the in-process figure uses those same texts. The
python generator cycles through every text of the file. Everything stays on 127.0.0.1 and
every run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_HEY_PROCESSES = 8


def read_texts(path: Path, column: str = "text") -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row[column] for row in csv.DictReader(f) if row.get(column)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = re.search(r"Model name:\s*(.+)", out)
        flags = re.search(r"Flags:\s*(.+)", out)
        have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")
                if flags and f" {f} " in f" {flags.group(1)} "]
        return f"{name.group(1).strip() if name else platform.processor()}, {os.cpu_count()} cores, {' '.join(have)}"
    except OSError:
        return platform.processor()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def in_process(model_dir: Path, variant: str | None, texts: list[str], batch: int, duration: float) -> dict:
    from fastclf import Classifier

    clf = Classifier.load(model_dir, variant=variant)
    batches = [[texts[(i * batch + j) % len(texts)] for j in range(batch)] for i in range(8)]
    clf.predict(batches[0], batch_size=batch)  # warm-up
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration:
        clf.predict(batches[n % len(batches)], batch_size=batch)
        n += 1
    elapsed = time.perf_counter() - started
    return {"variant": clf.variant, "batch": batch, "texts_per_s": n * batch / elapsed}


class Server:
    def __init__(self, model_dir: Path, variant: str | None, extra: list[str]):
        cmd = [sys.executable, "-m", "fastclf", "serve", str(model_dir), "--port", "0", *extra]
        if variant:
            cmd += ["--variant", variant]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        env.setdefault("HF_HUB_OFFLINE", "1")
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.url = ""
        self.lines: list[str] = []
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip())
                m = re.search(r"listening on (http://\S+)", line)
                if m:
                    self.url = m.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(120):
            self.stop()
            sys.exit("the server did not start:\n" + "\n".join(self.lines[-20:]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit("the server exited:\n" + "\n".join(self.lines[-20:]))
                time.sleep(0.2)
        self.stop()
        sys.exit("the server never became healthy")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            page = r.read().decode()
        out = {}
        for name in ("fastclf_batch_size_sum", "fastclf_batch_size_count"):
            m = re.search(rf"^{name} (\S+)$", page, re.M)
            out[name] = float(m.group(1)) if m else 0.0
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def run_hey(url: str, texts: list[str], concurrency: int, duration: float) -> dict:
    """``min(concurrency, 8)`` hey processes, each with one text, splitting the clients."""
    n_proc = min(concurrency, MAX_HEY_PROCESSES)
    shares = [concurrency // n_proc + (1 if i < concurrency % n_proc else 0) for i in range(n_proc)]
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i, c in enumerate(shares):
            body = Path(tmp) / f"body{i}.json"
            body.write_text(json.dumps({"inputs": texts[i % len(texts)]}))
            out = open(Path(tmp) / f"out{i}.csv", "w")
            procs.append((subprocess.Popen(
                ["hey", "-z", f"{duration}s", "-c", str(c), "-t", "30", "-m", "POST",
                 "-T", "application/json", "-D", str(body), "-o", "csv", url + "/predict"],
                stdout=out, stderr=subprocess.STDOUT), out))
        for proc, out in procs:
            proc.wait(duration + 90)
            out.close()
        lat, codes = [], []
        for i in range(n_proc):
            rows = list(csv.reader(open(Path(tmp) / f"out{i}.csv")))
            for row in rows[1:]:
                if len(row) >= 8 and re.fullmatch(r"[\d.]+", row[0]):
                    lat.append(float(row[0]))
                    codes.append(int(row[6]))
    ok = sum(1 for c in codes if c == 200)
    return {"ok": ok, "errors": len(codes) - ok, "latencies": [x for x, c in zip(lat, codes) if c == 200]}


async def _python_load(url: str, texts: list[str], concurrency: int, duration: float) -> dict:
    import httpx

    lat: list[float] = []
    counts = {"ok": 0, "errors": 0}
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    r = await client.post("/predict", json={"inputs": texts[i % len(texts)]})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    counts["ok"] += 1
                    lat.append(time.perf_counter() - started)
                else:
                    counts["errors"] += 1
                i += concurrency

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return {**counts, "latencies": lat}


def run_python(url: str, texts: list[str], concurrency: int, duration: float) -> dict:
    return asyncio.run(_python_load(url, texts, concurrency, duration))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--variant", default=None, help="Variant to serve (default: the model's default).")
    ap.add_argument("--texts", type=Path, default=ROOT / "examples" / "test.csv", help="CSV with a 'text' column.")
    ap.add_argument("--concurrency", default="1,8,32,128", help="Comma-separated numbers of concurrent clients.")
    ap.add_argument("--duration", type=float, default=10.0, help="Seconds of load at each level (and in-process).")
    ap.add_argument("--max-batch", type=int, default=64, help="The server's --max-batch and the in-process batch.")
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="The server's --max-wait-ms.")
    ap.add_argument("--client", choices=["auto", "hey", "python"], default="auto",
                    help="Load generator: hey, or the asyncio+httpx one here (auto: hey if installed).")
    ap.add_argument("--json", type=Path, default=None, help="Also write the results here as JSON.")
    args = ap.parse_args()

    client = args.client if args.client != "auto" else ("hey" if shutil.which("hey") else "python")
    if client == "hey" and not shutil.which("hey"):
        sys.exit("hey is not installed (apt-get install hey), use --client python")
    levels = [int(c) for c in args.concurrency.split(",")]
    all_texts = read_texts(args.texts)
    texts = random.Random(0).sample(all_texts, MAX_HEY_PROCESSES) if client == "hey" else all_texts

    load_before = loadavg()
    base = in_process(args.model_dir, args.variant, texts, args.max_batch, args.duration)
    print(f"machine: {cpu_name()}\nload average before: {load_before}\nclient: {client}")
    print(f"in-process clf.predict, {base['variant']}, batch {base['batch']}: {base['texts_per_s']:.1f} texts/s",
          flush=True)

    server = Server(args.model_dir, args.variant,
                    ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)])
    run = run_hey if client == "hey" else run_python
    rows = []
    try:
        run(server.url, texts, 4, 2.0)  # warm-up
        for c in levels:
            before = server.metrics()
            result = run(server.url, texts, c, args.duration)
            after = server.metrics()
            batches = after["fastclf_batch_size_count"] - before["fastclf_batch_size_count"]
            mean_batch = (after["fastclf_batch_size_sum"] - before["fastclf_batch_size_sum"]) / max(batches, 1)
            lat = result["latencies"]
            row = {"concurrency": c, "texts_per_s": result["ok"] / args.duration,
                   "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
                   "ok": result["ok"], "errors": result["errors"], "mean_batch": mean_batch}
            rows.append(row)
            print(f"{c:>4} clients: {row['texts_per_s']:7.1f} texts/s  p50 {row['p50_ms']:7.1f} ms  "
                  f"p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}  mean batch {mean_batch:5.1f}  "
                  f"{row['texts_per_s'] / base['texts_per_s']:.0%} of in-process (before)", flush=True)
    finally:
        code = server.stop()
    # measured again once the server is gone: on a shared machine the load drifts during the run
    base_after = in_process(args.model_dir, args.variant, texts, args.max_batch, args.duration)
    print(f"in-process again after the server: {base_after['texts_per_s']:.1f} texts/s")
    base["texts_per_s_before"], base["texts_per_s_after"] = base["texts_per_s"], base_after["texts_per_s"]
    base["texts_per_s"] = (base["texts_per_s_before"] + base["texts_per_s_after"]) / 2
    for row in rows:
        row["vs_in_process"] = row["texts_per_s"] / base["texts_per_s"]
    load_after = loadavg()
    print(f"server exit code after SIGTERM: {code}\nload average after: {load_after}\n")
    print(f"in-process, mean of before and after: {base['texts_per_s']:.1f} texts/s")
    print(f"| clients | texts/s | p50 ms | p99 ms | errors | mean batch | vs in-process ({base['texts_per_s']:.0f} texts/s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['texts_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} "
              f"| {r['mean_batch']:.1f} | {r['vs_in_process']:.0%} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu_name(), "client": client, "in_process": base, "levels": rows,
                                         "load_before": load_before, "load_after": load_after,
                                         "server_exit_code": code}, indent=2))
    if code != 0:
        sys.exit(f"the server exited with {code} after SIGTERM")


if __name__ == "__main__":
    main()
