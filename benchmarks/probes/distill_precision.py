"""The distilled students (``-distilled`` variants) of the README model, in torch fp32: how closely each follows
the body and how accurate it is, by the number of layers kept and whether the distillation ran under bf16.

    fastclf train examples/train.csv -o runs/rt -q        (the README model)
    HF_HUB_OFFLINE=1 python benchmarks/probes/distill_precision.py runs/rt 4:bf16 4:fp32 3:fp32 [--steps 400]

Each student is distilled on examples/unlabeled.csv (as ``fastclf accelerate --calibration`` does) and judged
on examples/test.csv's 1,000 labeled snippets with the model's own head: mean and minimum embedding cosine
with the body, share of labels kept, and accuracy against the body's. The int8 variants add their own
rounding on top of this.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from transformers import AutoModel

    from fastclf import Classifier
    from fastclf.backends._distill import distill, make_student
    from fastclf.backends._pooling import row_cosines
    from fastclf.backends._torch_graph import _load_sentence_transformer

    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("runs", nargs="+", help="LAYERS:bf16 or LAYERS:fp32")
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    clf = Classifier.load(args.model)
    with open("examples/unlabeled.csv", newline="", encoding="utf-8") as f:
        unlabeled = [r["text"] for r in csv.DictReader(f)]
    with open("examples/test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts, truth = [r["text"] for r in rows], np.array([r["label"] for r in rows])
    teacher = _load_sentence_transformer(Path(args.model) / "body")
    t_emb = teacher.encode(texts, batch_size=64, convert_to_numpy=True)
    t_labels = np.array(clf.labels_from_proba(clf.head.predict_proba(t_emb)))
    print(json.dumps({"student": "body (torch-fp32)", "accuracy": round(float(np.mean(t_labels == truth)), 4)}))
    for run in args.runs:
        layers, precision = run.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            info = distill(teacher, unlabeled, Path(tmp), keep=int(layers), steps=args.steps, bf16=precision == "bf16")
            seconds = time.perf_counter() - start
            student, _kept, _n = make_student(teacher, keep=int(layers))
            student[0].auto_model.load_state_dict(AutoModel.from_pretrained(tmp).state_dict())
        s_emb = student.encode(texts, batch_size=64, convert_to_numpy=True)
        s_labels = np.array(clf.labels_from_proba(clf.head.predict_proba(s_emb)))
        cos = row_cosines(t_emb, s_emb)
        print(json.dumps({"student": run, "steps": args.steps, "seconds": round(seconds, 1),
                          "mean_cosine": round(float(cos.mean()), 4), "min_cosine": round(float(cos.min()), 4),
                          "labels_kept": round(float(np.mean(s_labels == t_labels)), 4),
                          "accuracy": round(float(np.mean(s_labels == truth)), 4),
                          "held_out_cosine": info["held_out_cosine"]}), flush=True)


if __name__ == "__main__":
    main()
