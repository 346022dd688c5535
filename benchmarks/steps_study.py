"""Study: does fine-tuning gain more with more optimizer steps on the smallest training sets?

The recipe offers 2 or 4 epochs of fine-tuning. With 24 examples and batches of 16 that is 4 or 8
optimizer steps, where setfit's default pair sampling runs about 60. For each (data set, shots,
seed) this fine-tunes the body on all the training examples (the recipe's loss, batch size,
learning rate and 64 tokens a text) and records the test accuracy (up to 400 test texts, each head
C of the recipe's grid) after the epochs that reach each number of steps of ``--steps``, next to the
untuned body. It also records the recipe's 2-fold cross-validation estimate for the same step
counts, to see whether the folds would find the better choice.

    HF_HUB_OFFLINE=1 python benchmarks/steps_study.py --seeds 0 1 2
    python benchmarks/steps_study.py --analyse
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import suite_data  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "steps_study.jsonl"
GRID = (("rt-sentiment", 8), ("rt-3way", 8), ("convention-party", 8), ("rt-sentiment", 32), ("debates-speaker", 8))
CS = (0.1, 1.0, 10.0, 100.0)
MAX_TEST = 400
BATCH = 16


def _heads(train_x, train_y, test_x, test_y) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    out = {}
    for c in CS:
        lr = LogisticRegression(C=c, max_iter=1000, random_state=0).fit(train_x, train_y)
        out[f"{c:g}"] = float((lr.predict(test_x) == test_y).mean())
    return out


def study(data: str, shots: int, seed: int, steps: list[int], lr: float, with_cv: bool = True) -> dict:
    from sklearn.model_selection import StratifiedKFold
    from transformers import set_seed

    from fastclf.quiet import quiet_logs as quiet
    from fastclf.training.finetune import finetune
    from fastclf.training.selection import steps_per_epoch
    from fastclf.training.trainer import FINETUNE_MAX_LENGTH, TrainConfig, _Embedder, _load_body, default_model_path

    train, test = suite_data.split(data, shots, seed)
    test = test.sample(frac=1, random_state=seed).iloc[:MAX_TEST]
    classes = sorted(train.label.unique())
    y = np.array([classes.index(v) for v in train.label])
    yt = np.array([classes.index(v) if v in classes else -1 for v in test.label])
    texts, test_texts = train.text.tolist(), test.text.tolist()
    bf16 = TrainConfig().bf16  # as fastclf train: fp32 unless --bf16
    start = time.perf_counter()

    def epochs_for(n_texts: int) -> dict[int, int]:
        per_epoch = steps_per_epoch(n_texts, BATCH)
        return {max(1, round(s / per_epoch)): s for s in steps}

    with quiet():
        set_seed(seed)
        base = _load_body(str(default_model_path()))
        embed = _Embedder(TrainConfig(seed=seed), base)

        def tune(model, idx, epochs, hook):
            window = model.max_seq_length

            def at_end(epoch):
                model.max_seq_length = window
                hook(epoch)
                model.max_seq_length = min(window, FINETUNE_MAX_LENGTH)

            set_seed(seed)
            model.max_seq_length = min(window, FINETUNE_MAX_LENGTH)
            finetune(model, [texts[i] for i in idx], [int(y[i]) for i in idx], loss="supcon", epochs=epochs,
                     batch_size=BATCH, learning_rate=lr, seed=seed, bf16=bf16, on_epoch_end=at_end)
            model.max_seq_length = window

        test_scores = {"0": _heads(embed(base, texts), y, embed(base, test_texts), yt)}
        at = epochs_for(len(texts))
        model = copy.deepcopy(base)

        def on_test(epoch):
            if epoch in at:
                test_scores[str(at[epoch])] = _heads(embed(model, texts), y, embed(model, test_texts), yt)

        tune(model, np.arange(len(texts)), max(at), on_test)
        cv = []
        quick = embed(base, texts, quick=True)
        splits = StratifiedKFold(2, shuffle=True, random_state=seed).split(np.zeros(len(y)), y) if with_cv else []
        for tr, te in splits:
            fold = {"0": _heads(quick[tr], y[tr], quick[te], y[te])}
            # a fold runs the same optimizer steps as the full-data training, as the recipe's folds do
            fat = epochs_for(len(tr))
            model = copy.deepcopy(base)

            def on_fold(epoch, tr=tr, te=te, model=model, fat=fat, fold=fold):
                if epoch in fat:
                    emb = embed(model, [texts[i] for i in np.concatenate([tr, te])], quick=True)
                    fold[str(fat[epoch])] = _heads(emb[: len(tr)], y[tr], emb[len(tr):], y[te])

            tune(model, tr, max(fat), on_fold)
            cv.append(fold)
    return {"data": data, "shots": shots, "seed": seed, "lr": lr, "test": test_scores, "cv": cv,
            "n_train": len(texts), "n_test": len(test_texts), "seconds": round(time.perf_counter() - start, 1),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def analyse(rows: list[dict]) -> str:
    """Test accuracy (best C in hindsight, and C chosen by the folds) a step count, mean over seeds."""
    latest = {(r["data"], r["shots"], r["seed"], r["lr"]): r for r in rows}  # a run repeated: its last row
    groups: dict[tuple, list[dict]] = {}
    for r in latest.values():
        groups.setdefault((r["data"], r["shots"], r["lr"]), []).append(r)
    lines = []
    for (data, shots, lr), sub in sorted(groups.items()):
        keys = sorted({k for r in sub for k in r["test"]}, key=int)
        lines.append(f"{data} {shots} lr={lr:g} (n={len(sub)} seeds, {sub[0]['n_train']} examples)")
        for k in keys:
            have = [r for r in sub if k in r["test"]]
            best = np.mean([max(r["test"][k].values()) for r in have])
            c1 = np.mean([r["test"][k]["1"] for r in have])
            folds = [np.mean([max(f[k].values()) for f in r["cv"] if k in f]) for r in have if r["cv"]]
            cv = f"{np.mean(folds):.3f}" if folds else "-"
            lines.append(f"  steps {k:>3}: test best-C {best:.3f}  C=1 {c1:.3f}  folds {cv}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--only", nargs="+", default=None, help="data:shots pairs")
    parser.add_argument("--no-cv", action="store_true", help="test accuracy only, no cross-validation estimates")
    parser.add_argument("--analyse", action="store_true")
    args = parser.parse_args()
    if args.analyse:
        print(analyse([json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]))
        return
    grid = [(d, int(s)) for d, s in (p.split(":") for p in args.only)] if args.only else GRID
    for data, shots in grid:
        for seed in args.seeds:
            row = study(data, shots, seed, sorted(args.steps), args.lr, with_cv=not args.no_cv)
            with RESULTS.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(data, shots, seed, {k: round(max(v.values()), 3) for k, v in row["test"].items()},
                  f"{row['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
