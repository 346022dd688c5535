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

With ``--mix`` it runs the mixed load instead (issue 31): 30 clients send one-text requests, alone
for ``--duration`` seconds, then while one client sends ``--large`` requests of 256 texts of about
3.9 KB each, one after the other, and one client sends a bad request every 0.25 s (an empty text,
a lone surrogate, deeply nested JSON, a text/plain body). Reported: valid requests that failed
(must be 0), bad requests not answered 422, the p99 of one-text requests alone and while a large
request runs, and the server's RSS idle (after a warm-up), at its peak, and after 10 s of quiet.

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


def large_texts(texts: list[str], n: int = 256, size: int = 3850) -> list[str]:
    """``n`` texts of ``size`` characters, each made of consecutive texts of the file (256 of them fit a 1 MB body)."""
    out, i = [], 0
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < size:
            parts.append(texts[i % len(texts)])
            i += 1
        out.append(" ".join(parts)[:size])
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


BAD = [(json.dumps({"inputs": ["fine", ""]}), "application/json"), (json.dumps({"inputs": "x\udc80"}), "application/json"),
       ("[" * 5000, "application/json"), ('{"inputs": "x"}', "text/plain")]


async def _mixed(url: str, small: list[str], large: list[str], n_large: int, alone_s: float) -> dict:
    import httpx

    lat_alone: list[float] = []
    small_calls: list[tuple[float, float]] = []  # (start, end) of each one-text request in phase 2
    large_calls: list[tuple[float, float]] = []
    counts = {"valid_failed": 0, "bad_not_422": 0, "bad": 0, "small": 0}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=900) as client:
        async def send(body) -> tuple[int, float, float]:
            started = time.perf_counter()
            try:
                status = (await client.post("/predict", json=body)).status_code
            except httpx.HTTPError:
                status = 0
            return status, started, time.perf_counter()

        async def small_client(w: int, done, out) -> None:
            i = w
            while not done():
                status, a, b = await send({"inputs": small[i % len(small)]})
                counts["small"] += 1
                counts["valid_failed"] += status != 200
                out(a, b)
                i += 30

        deadline = time.perf_counter() + alone_s
        await asyncio.gather(*(small_client(w, lambda: time.perf_counter() > deadline,
                                            lambda a, b: lat_alone.append(b - a)) for w in range(30)))
        finished = asyncio.Event()

        async def large_client() -> None:
            for _ in range(n_large):
                status, a, b = await send({"inputs": large})
                counts["valid_failed"] += status != 200
                large_calls.append((a, b))
            finished.set()

        async def bad_client() -> None:
            i = 0
            while not finished.is_set():
                content, kind = BAD[i % len(BAD)]
                try:
                    status = (await client.post("/predict", content=content, headers={"Content-Type": kind})).status_code
                except httpx.HTTPError:
                    status = 0
                counts["bad"] += 1
                counts["bad_not_422"] += status != 422
                i += 1
                await asyncio.sleep(0.25)

        await asyncio.gather(large_client(), bad_client(),
                             *(small_client(w, finished.is_set, lambda a, b: small_calls.append((a, b)))
                               for w in range(30)))
    during = [b - a for a, b in small_calls if any(la <= a and b <= lb for la, lb in large_calls)]
    return {**counts, "p99_alone_ms": percentile(lat_alone, 99) * 1000, "n_alone": len(lat_alone),
            "p99_during_ms": percentile(during, 99) * 1000, "n_during": len(during),
            "large_s": [round(b - a, 1) for a, b in large_calls]}


def run_mixed(args, texts: list[str]) -> None:
    big = large_texts(texts)
    body_bytes = len(json.dumps({"inputs": big}))
    server = Server(args.model_dir, args.variant, args.server_args.split())
    peak = [0.0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], rss_mb(server.proc.pid))
            time.sleep(0.05)

    try:
        asyncio.run(_python_load(server.url, texts, 4, 2.0))  # warm-up
        time.sleep(2)
        idle = rss_mb(server.proc.pid)
        threading.Thread(target=sample, daemon=True).start()
        result = asyncio.run(asyncio.wait_for(_mixed(server.url, texts, big, args.large, args.duration), 1200))
        sampling.set()
        time.sleep(10)
        after = rss_mb(server.proc.pid)
    finally:
        code = server.stop()
    print(f"machine: {cpu_name()}, load average {loadavg()}\nserver: fastclf serve {args.server_args}")
    print(f"large request: 256 texts of 3,850 characters, a {body_bytes:,}-byte body; took {result['large_s']} s")
    print(f"valid requests failed: {result['valid_failed']} (one-text: {result['small']}, large: {args.large})")
    print(f"bad requests not answered 422: {result['bad_not_422']} of {result['bad']}")
    print(f"one-text p99: alone {result['p99_alone_ms']:.0f} ms ({result['n_alone']} requests), while a large "
          f"request runs {result['p99_during_ms']:.0f} ms ({result['n_during']}): "
          f"{result['p99_during_ms'] / result['p99_alone_ms']:.1f}x")
    print(f"server RSS: idle {idle:.0f} MB, peak {peak[0]:.0f} MB, after {after:.0f} MB "
          f"({after / idle - 1:+.0%} of idle)\nserver exit code after SIGTERM: {code}")
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu_name(), **result, "rss_mb": [idle, peak[0], after]}, indent=2))
    if code != 0 or result["valid_failed"]:
        sys.exit(1)


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
    ap.add_argument("--mix", action="store_true", help="Run the mixed load of small, large and bad requests.")
    ap.add_argument("--large", type=int, default=1, help="With --mix: large requests sent, one after the other.")
    ap.add_argument("--server-args", default="", help="With --mix: options for fastclf serve, as one string.")
    args = ap.parse_args()
    if args.mix:
        return run_mixed(args, read_texts(args.texts))

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
