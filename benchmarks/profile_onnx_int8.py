"""Where the time goes for one text with a variant of the numpy pipeline (ONNX Runtime or
OpenVINO): tokenization, the transformer graph, pooling, the head.

    HF_HUB_OFFLINE=1 python benchmarks/profile_onnx_int8.py runs/rotten_tomatoes_model [--variant onnx-int8]

Times each stage separately over real test texts (examples/test.csv), one text a call,
after a warm-up; prints the median of each stage in milliseconds and its share.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fastclf import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--variant", default="onnx-int8")
    parser.add_argument("--texts", type=int, default=300)
    args = parser.parse_args()
    texts = pd.read_csv(Path(__file__).parents[1] / "examples" / "test.csv")["text"].tolist()[: args.texts]
    clf = Classifier.load(args.model, variant=args.variant)
    body = clf.body
    pipe = body.pipeline
    stages: dict[str, list[float]] = {"tokenize": [], "graph": [], "pool+normalize": [], "head": []}
    for i, text in enumerate(texts[:20] + texts):
        t0 = time.perf_counter_ns()
        features = pipe.tokenize([text])
        t1 = time.perf_counter_ns()
        tokens = body._run(features)
        t2 = time.perf_counter_ns()
        emb = pipe.pool(tokens, features["attention_mask"])
        t3 = time.perf_counter_ns()
        clf.head.predict_proba(emb)
        t4 = time.perf_counter_ns()
        if i >= 20:
            for name, (a, b) in zip(stages, [(t0, t1), (t1, t2), (t2, t3), (t3, t4)]):
                stages[name].append((b - a) / 1e6)
    total = sum(float(np.median(v)) for v in stages.values())
    print(f"{args.variant}, one text a call, {len(texts)} texts (median ms, share of the sum of medians)")
    for name, values in stages.items():
        med = float(np.median(values))
        print(f"  {name:<15} {med:8.3f} ms  {med / total:6.1%}")
    lengths = [pipe.tokenize([t])["input_ids"].shape[1] for t in texts]
    print(f"  tokens a text: median {int(np.median(lengths))}, max {max(lengths)}")


if __name__ == "__main__":
    main()
