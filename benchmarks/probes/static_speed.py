"""The static tier against setfit and torch-fp32 on the same texts, interleaved round by round so that
all three see the same load on a shared machine (benchmarks/studies/static-tier.md). Throughput: one
predict call of batch 128 on 128 test snippets a round; one text: the p50 of single-text calls.
Usage: python static_speed.py MODEL_DIR [ROUNDS] (the model with its static variant exported)."""
import csv
import statistics
import sys
import time
from pathlib import Path

from fastclf.benchmark.baseline import load_setfit
from fastclf.model import Classifier

model = Path(sys.argv[1])
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
texts = [r["text"] for r in csv.DictReader(open("examples/test.csv"))][:128]
setfit_predict, _ = load_setfit(model)
runs = {"setfit": setfit_predict}
for variant in ("torch-fp32", "static"):
    clf = Classifier.load(model, variant)
    runs[variant] = lambda t, b, clf=clf: clf.predict(t, batch_size=b)
for predict in runs.values():
    predict(texts[:8], 8)  # warm up
speed = {k: [] for k in runs}
one = {k: [] for k in runs}
for _ in range(rounds):
    for name, predict in runs.items():
        start = time.perf_counter()
        predict(texts, 128)
        speed[name].append(len(texts) / (time.perf_counter() - start))
        for text in texts[:16]:
            start = time.perf_counter()
            predict([text], 1)
            one[name].append((time.perf_counter() - start) * 1000)
best = max(speed["setfit"])
for name in runs:
    print(f"{name}: {max(speed[name]):.0f} texts/s at batch 128 (best of {rounds}; {max(speed[name]) / best:.1f}x "
          f"setfit's best), one text p50 {statistics.median(one[name]):.2f} ms", flush=True)
