"""Study of the training recipe's choices, on the accuracy suite's data sets (not a benchmark of
the product: it measures what each choice of the recipe would have scored on the test texts).

For each (data set, shots, seed) and each way of fine-tuning (``--freeze``: which weights stay
fixed), it records

* test accuracy of the untuned body and of the body after 1, 2, 3 and 4 epochs on all the
  training examples, with each head C of the recipe's grid;
* the 2-fold cross-validation estimates the recipe sees for the same choices (accuracy and log-loss
  on each fold, a fold running the optimizer steps of the full-data epochs, as the recipe does).

From that file, ``--analyse`` replays selection rules (accuracy or log-loss, one fold or two,
ties to fewer or more epochs) and prints the test accuracy each rule would have reached, against
the untuned body and the best choice in hindsight.

    HF_HUB_OFFLINE=1 python benchmarks/recipe_study.py --seeds 0 1 --freeze none 0 2
    python benchmarks/recipe_study.py --analyse
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

RESULTS = Path(__file__).resolve().parent / "results" / "recipe_study.jsonl"
GRID = (("rt-sentiment", 8), ("rt-3way", 8), ("convention-party", 8), ("rt-sentiment", 32), ("debates-speaker", 8),
        ("chatbot-topics", 8), ("rt-3way", 32), ("convention-party", 32), ("chatbot-topics", 32))
CS = (0.1, 1.0, 10.0, 100.0)
EPOCHS = 4
#: test texts a run (of the suite's 1,000 at most): every choice is scored on the same ones
MAX_TEST = 400


def _heads(train_x, train_y, test_x, test_y) -> dict[str, dict[str, float]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    out = {}
    for c in CS:
        lr = LogisticRegression(C=c, max_iter=1000, random_state=0).fit(train_x, train_y)
        proba = lr.predict_proba(test_x)
        pred = lr.classes_[proba.argmax(1)]
        out[f"{c:g}"] = {"acc": float((pred == test_y).mean()),
                         "loss": float(log_loss(test_y, proba, labels=lr.classes_))}
    return out


def study(data: str, shots: int, seed: int, freeze: int | None, max_length: int) -> dict:
    from sklearn.model_selection import StratifiedKFold
    from transformers import set_seed

    from fastclf.quiet import quiet_logs as quiet
    from fastclf.training.finetune import finetune
    from fastclf.training.trainer import TrainConfig, _Embedder, _load_body, default_model_path

    train, test = suite_data.split(data, shots, seed)
    test = test.sample(frac=1, random_state=seed).iloc[:MAX_TEST]  # the suite's test set is grouped by label
    classes = sorted(train.label.unique())
    y = np.array([classes.index(v) for v in train.label])
    yt = np.array([classes.index(v) if v in classes else -1 for v in test.label])
    texts, test_texts = train.text.tolist(), test.text.tolist()
    bf16 = TrainConfig().bf16  # as fastclf train: fp32 unless --bf16
    start = time.perf_counter()
    with quiet():
        set_seed(seed)
        base = _load_body(str(default_model_path()))
        embed = _Embedder(TrainConfig(seed=seed), base)

        def tune(model, idx, epochs, hook):
            window = model.max_seq_length

            def at_end(epoch):
                model.max_seq_length = window
                hook(epoch)
                model.max_seq_length = min(window, max_length)

            set_seed(seed)
            model.max_seq_length = min(window, max_length)
            finetune(model, [texts[i] for i in idx], [int(y[i]) for i in idx], loss="supcon", epochs=epochs,
                     batch_size=16, learning_rate=5e-5, seed=seed, bf16=bf16, on_epoch_end=at_end,
                     freeze_layers=freeze)
            model.max_seq_length = window

        test_scores = {"0": _heads(embed(base, texts), y, embed(base, test_texts), yt)}
        model = copy.deepcopy(base)

        def on_test(epoch):
            test_scores[str(epoch)] = _heads(embed(model, texts), y, embed(model, test_texts), yt)

        tune(model, np.arange(len(texts)), EPOCHS, on_test)
        cv = []
        quick = embed(base, texts, quick=True)
        for tr, te in StratifiedKFold(2, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
            fold = {"0": _heads(quick[tr], y[tr], quick[te], y[te])}
            scale = len(texts) / len(tr)
            at = {max(1, round(e * scale)): e for e in range(1, EPOCHS + 1)}
            model = copy.deepcopy(base)

            def on_fold(epoch, tr=tr, te=te, model=model, at=at, fold=fold):
                if epoch in at:
                    emb = embed(model, [texts[i] for i in np.concatenate([tr, te])], quick=True)
                    fold[str(at[epoch])] = _heads(emb[: len(tr)], y[tr], emb[len(tr):], y[te])

            tune(model, tr, max(at), on_fold)
            cv.append(fold)
    return {"data": data, "shots": shots, "seed": seed, "freeze": freeze, "max_length": max_length, "test": test_scores, "cv": cv,
            "n_train": len(texts), "n_test": len(test_texts), "seconds": round(time.perf_counter() - start, 1),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# -- replaying selection rules ---------------------------------------------------------------------

def _variant(row: dict) -> str:
    """How a row fine-tuned: frozen layers (None: every weight trains) and tokens a text."""
    return f"freeze {row['freeze']}, {row.get('max_length', 128)} tokens"


def _pick(row: dict, rule: str, epochs: tuple[int, ...]) -> tuple[str, str]:
    """(epochs, C) a rule chooses from the cross-validation estimates of a row."""
    folds = row["cv"][:1] if rule.startswith("1fold") or (rule.startswith("adapt") and _decisive(row, epochs)) \
        else row["cv"]
    keys = [(str(e), c) for e in epochs for c in folds[0][str(e)]]

    def acc(k):
        return float(np.mean([f[k[0]][k[1]]["acc"] for f in folds]))

    def loss(k):
        return float(np.mean([f[k[0]][k[1]]["loss"] for f in folds]))

    if rule.endswith("margin"):  # tried and not kept: fine-tuning unless the untuned body wins by 1 SE
        from fastclf.training.selection import settles

        def top(ks):
            return max(ks, key=lambda k: (acc(k), -int(k[0]), -abs(np.log10(float(k[1])))))

        u, t = top([k for k in keys if k[0] == "0"]), top([k for k in keys if k[0] != "0"])
        held_out = row["n_train"] // 2 * len(folds)
        return u if acc(u) > acc(t) and settles(acc(u), acc(t), held_out, z=1.0) else t
    if rule.endswith("loss"):
        return min(keys, key=lambda k: (loss(k), int(k[0])))
    if rule.endswith("acc+loss"):  # accuracy, ties broken by log-loss
        return max(keys, key=lambda k: (acc(k), -loss(k)))
    if rule.endswith("acc-tune"):  # the recipe's rule: a tie with the untuned body goes to fine-tuning
        return max(keys, key=lambda k: (acc(k), k[0] != "0", -int(k[0]), -abs(np.log10(float(k[1])))))
    if rule.endswith("acc-more"):  # accuracy, ties to more epochs
        return max(keys, key=lambda k: (acc(k), int(k[0]), -abs(np.log10(float(k[1])))))
    return max(keys, key=lambda k: (acc(k), -int(k[0]), -abs(np.log10(float(k[1])))))  # today's rule


def _decisive(row: dict, epochs: tuple[int, ...], z: float = 2.0) -> bool:
    """Whether the first fold alone settles untuned against fine-tuned: their best accuracies
    differ by more than ``z`` standard errors of a difference of two proportions."""
    fold = row["cv"][0]
    untuned = max(v["acc"] for v in fold["0"].values())
    tuned = max(v["acc"] for e in epochs if e > 0 for v in fold[str(e)].values())
    p, n = (untuned + tuned) / 2, row["n_train"] / 2
    return abs(tuned - untuned) > z * np.sqrt(max(2 * p * (1 - p), 1e-9) / n)


RULES = ("2fold-acc-tune", "2fold-margin", "adapt-acc", "adapt-acc+loss", "2fold-acc", "2fold-acc-more", "2fold-acc+loss", "2fold-loss", "1fold-acc", "1fold-acc+loss")


def analyse(rows: list[dict], epochs: tuple[int, ...]) -> str:
    lines = [f"epoch choices {epochs}; test accuracy, mean over seeds (n)", "",
             "| data | shots | fine-tuning | n | untuned C=1 | best in hindsight | " + " | ".join(RULES) + " |",
             "|---|---:|---|---:|---:|---:|" + "---:|" * len(RULES)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["shots"], _variant(r)), []).append(r)
    totals: dict[str, list[float]] = {}
    for (data, shots, freeze), sub in sorted(groups.items()):
        cells = []
        untuned = np.mean([r["test"]["0"]["1"]["acc"] for r in sub])
        oracle = np.mean([max(r["test"][str(e)][c]["acc"] for e in epochs for c in r["test"]["0"]) for r in sub])
        for rule in RULES:
            got = [r["test"][e][c]["acc"] for r in sub for e, c in [_pick(r, rule, epochs)]]
            chosen = ",".join(_pick(r, rule, epochs)[0] for r in sub)
            cells.append(f"{np.mean(got):.3f} ({chosen})")
            totals.setdefault(f"{freeze}:{rule}", []).append(float(np.mean(got)) - oracle)
        lines.append(f"| {data} | {shots} | {freeze} | {len(sub)} | {untuned:.3f} | {oracle:.3f} | "
                     + " | ".join(cells) + " |")
    decided = [_decisive(r, epochs) for r in rows]
    lines += ["", f"first fold decisive (adapt rules stop there): {sum(decided)} of {len(decided)} runs"]
    lines += ["", "mean shortfall from hindsight, by freeze:rule:"]
    lines += [f"  {k}: {np.mean(v):+.4f} over {len(v)} rows" for k, v in sorted(totals.items())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--freeze", nargs="+", default=["none", "0", "2"])
    parser.add_argument("--max-length", type=int, default=128, help="tokens a text while fine-tuning")
    parser.add_argument("--only", nargs="+", default=None, help="data:shots pairs")
    parser.add_argument("--analyse", action="store_true")
    parser.add_argument("--epochs", default="0,2,4", help="epoch choices the rules may pick (--analyse)")
    args = parser.parse_args()
    done = [json.loads(x) for x in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    if args.analyse:
        print(analyse(done, tuple(int(e) for e in args.epochs.split(","))))
        return
    from fastclf.quiet import quiet_logs

    quiet_logs().__enter__()  # for the whole run
    seen = {(r["data"], r["shots"], r["seed"], _variant(r)) for r in done}
    grid = [(d, int(s)) for d, s in (x.split(":") for x in args.only)] if args.only else list(GRID)
    for seed in args.seeds:
        for data, shots in grid:
            for f in args.freeze:
                freeze = None if f == "none" else int(f)
                if (data, shots, seed, _variant({"freeze": freeze, "max_length": args.max_length})) in seen:
                    continue
                row = study(data, shots, seed, freeze, args.max_length)
                row["load_before"] = os.getloadavg()[0]
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                with RESULTS.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{data} {shots} seed {seed} freeze {freeze}: {row['seconds']} s; test untuned "
                      f"{row['test']['0']['1']['acc']:.3f}, 4 epochs {row['test']['4']['1']['acc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
