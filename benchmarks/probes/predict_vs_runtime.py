"""``Classifier.predict`` against the bare runtime on the same texts, tokenized beforehand for the runtime.

For each variant and batch size: the runtime's own call on pre-tokenized inputs (ONNX Runtime
``session.run``, OpenVINO ``infer`` on the LATENCY compilation), fastclf's tokenizer alone, and
``predict`` (tokenize, run, pool, head). The runtime row makes the calls that give the variant's
answers: one text a call for onnx-int8 (dynamic ranges come from the whole input), one padded call of
the batch otherwise. ``share`` is the runtime's time over predict's: 1.0 means predict adds nothing.
``--own-work``: at one text, the runtime call timed inside predict and bare (interleaved), and predict with the
runtime call replaced by a lookup of its output, warm and after reading 48 MB (as the runtime's weights evict
the caches between calls).

    python benchmarks/probes/predict_vs_runtime.py MODEL CSV --variants onnx-int8,openvino-int8 \
        --batch-sizes 1,8,32,128 [--texts 512] [--own-work]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from fastclf import Classifier


def median_s(run: Callable[[], object], rounds: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def runtime_call(body) -> Callable[[dict[str, np.ndarray]], object]:
    """The bare runtime call on one feature dict."""
    if hasattr(body, "session"):
        session = body.session
        names = {i.name: (np.int32 if "int32" in i.type else np.int64) for i in session.get_inputs()}
        feeds = lambda f: {n: f[n].astype(t, copy=False) for n, t in names.items()}  # noqa: E731
        return lambda f: session.run(None, feeds(f))
    request = body.compiled.create_infer_request()
    names = [p.get_any_name() for p in body.compiled.inputs]
    return lambda f: request.infer({n: f[n] for n in names})


def measure(clf: Classifier, texts: list[str], batch_size: int, rounds: int) -> dict[str, object]:
    body = clf.body
    one_text = getattr(body, "_one_text", False)
    batches = [texts[i:i + batch_size] for i in range(0, len(texts) - batch_size + 1, batch_size)]
    run = runtime_call(body)
    tokenize = body.pipeline.tokenize
    if one_text:
        features = [[tokenize([t]) for t in batch] for batch in batches]
    else:
        features = [[tokenize(batch)] for batch in batches]
    per_batch = {"runtime": [], "tokenize": [], "predict": []}
    for batch, feats in zip(batches, features):
        per_batch["runtime"].append(median_s(lambda feats=feats: [run(f) for f in feats], rounds))
        per_batch["tokenize"].append(median_s(lambda batch=batch: tokenize(batch), rounds))
        per_batch["predict"].append(median_s(lambda batch=batch: clf.predict(batch, batch_size=batch_size), rounds))
    ms = {k: 1000 * statistics.mean(v) for k, v in per_batch.items()}
    tokens = float(np.mean([f["attention_mask"].sum() for fs in features for f in fs]))
    return {"batch_size": batch_size, "batches": len(batches), "one_text_calls": one_text,
            "tokens_per_batch": round(tokens * (batch_size if one_text else 1), 1),
            **{f"{k}_ms": round(v, 3) for k, v in ms.items()},
            "runtime_texts_per_s": round(1000 * batch_size / ms["runtime"], 1),
            "predict_texts_per_s": round(1000 * batch_size / ms["predict"], 1),
            "share": round(ms["runtime"] / ms["predict"], 3)}


def own_work(clf: Classifier, texts: list[str], rounds: int) -> dict[str, float]:
    """Median ms at one text: bare runtime, runtime inside predict, predict, and predict without the runtime."""
    body = clf.body
    run, tokenize = body._run, body.pipeline.tokenize
    features = {t: tokenize([t]) for t in texts}
    times: dict[str, list[float]] = {k: [] for k in ("bare", "inside", "predict", "lookup", "lookup_cold")}

    def timed(f: dict[str, np.ndarray]) -> np.ndarray:
        start = time.perf_counter()
        out = run(f)
        times["inside"].append(time.perf_counter() - start)
        return out

    def clock(key: str, call: Callable[[], object]) -> None:
        start = time.perf_counter()
        call()
        times[key].append(time.perf_counter() - start)

    for t in texts[:30]:  # warm-up
        run(features[t])
        clf.predict([t])
    body._run = timed
    for _ in range(rounds):
        for t in texts:
            clock("bare", lambda t=t: run(features[t]))
            clock("predict", lambda t=t: clf.predict([t]))
    outputs = {features[t]["input_ids"].tobytes(): run(features[t]) for t in texts}
    body._run = lambda f: outputs[f["input_ids"].tobytes()]
    flush = np.ones(6_000_000)  # 48 MB, more than the L3 cache
    for _ in range(rounds):
        for t in texts:
            clock("lookup", lambda t=t: clf.predict([t]))
            flush.sum()
            clock("lookup_cold", lambda t=t: clf.predict([t]))
    body._run = run
    return {f"{k}_ms": round(1000 * statistics.median(v), 3) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("csv")
    parser.add_argument("--variants", default="onnx-int8,openvino-int8")
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--texts", type=int, default=512, help="texts used (consecutive batches of each size)")
    parser.add_argument("--one-text-texts", type=int, default=200, help="texts timed one at a time")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--own-work", action="store_true", help="only the one-text breakdown (see above)")
    args = parser.parse_args()
    with open(args.csv, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    for variant in args.variants.split(","):
        clf = Classifier.load(args.model, variant=variant)
        if args.own_work:
            row = own_work(clf, texts[:args.one_text_texts], args.rounds)
            print(json.dumps({"variant": variant, "batch_size": 1, **row}), flush=True)
            continue
        for b in (int(x) for x in args.batch_sizes.split(",")):
            subset = texts[:args.one_text_texts] if b == 1 else texts[:args.texts]
            row = measure(clf, subset, b, args.rounds)
            print(json.dumps({"variant": variant, **row}), flush=True)


if __name__ == "__main__":
    main()
