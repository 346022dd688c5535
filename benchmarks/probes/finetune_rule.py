"""Replaying the rule that chooses between the untuned body and fine-tuning, on suite runs.

The recipe picks the untuned body when its cross-validated accuracy is above the best fine-tuning's
(a tie goes to fine-tuning). This probe asks whether a rule that needs a margin before it keeps the
untuned body would do better on the test texts. For each (data set, shots, seed) it needs two suite
runs with the same examples: one with ``--set finetune=never`` (the untuned body, its C chosen by the
folds) and one with ``--set finetune=always`` (the best fine-tuning by the folds). Both record the folds'
accuracies (``extra.cv``), and the default recipe's run is the one of the two its rule picks, so every
rule below is replayed exactly (the runs are seeded and deterministic on one machine).

    HF_HUB_OFFLINE=1 python benchmarks/training_suite.py --methods fastclf --set finetune=never \\
        --only ROW ... --results never.jsonl
    HF_HUB_OFFLINE=1 python benchmarks/training_suite.py --methods fastclf --set finetune=always \\
        --only ROW ... --results always.jsonl
    python benchmarks/probes/finetune_rule.py never.jsonl always.jsonl [--margins 0 0.5 1 1.5 2]

A rule with margin m keeps the untuned body when its folds' accuracy is above the best fine-tuning's by
more than m standard errors of a difference of two proportions on the held-out texts (all the training
examples: each is held out once); m = 0 is the recipe's rule.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path


def load(path: Path) -> dict[tuple[str, int, int], dict]:
    return {(r["data"], r["shots"], r["seed"]): r for r in map(json.loads, path.read_text().splitlines())
            if r["method"] == "fastclf"}


def keeps_untuned(cv_untuned: float, cv_tuned: float, n: int, margin: float) -> bool:
    p = (cv_untuned + cv_tuned) / 2
    se = math.sqrt(max(2 * p * (1 - p), 1e-9) / n)
    return cv_untuned - cv_tuned > margin * se if margin > 0 else cv_untuned > cv_tuned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("never", type=Path)
    ap.add_argument("always", type=Path)
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 99.0])
    args = ap.parse_args()
    never, always = load(args.never), load(args.always)
    keys = sorted(set(never) & set(always))
    by_row: dict[tuple[str, int], list[tuple[float, float, float, float, int]]] = defaultdict(list)
    print("| data set | shots | seed | folds: untuned / best tuned | test: untuned / tuned | tuned - untuned |")
    print("|---|---:|---:|---|---|---:|")
    for key in keys:
        u, t = never[key], always[key]
        cv_u = u["extra"]["cv"]["0"]
        cv_t = max(v for k, v in t["extra"]["cv"].items() if k != "0")
        by_row[key[:2]].append((cv_u, cv_t, u["accuracy"], t["accuracy"], u["n_train"]))
        print(f"| {key[0]} | {key[1]} | {key[2]} | {cv_u:.3f} / {cv_t:.3f} | {u['accuracy']:.3f} / {t['accuracy']:.3f} "
              f"| {100 * (t['accuracy'] - u['accuracy']):+.1f} |")
    print()
    head = " | ".join("never" if m == 0 and False else ("tuned always" if m >= 99 else f"m={m:g}") for m in args.margins)
    print(f"| data set | shots | untuned always | {head} | best in hindsight |")
    print("|---|---:|---:|" + "---:|" * (len(args.margins) + 1))
    totals = defaultdict(list)
    for (data, shots), runs in sorted(by_row.items()):
        cells = [sum(r[2] for r in runs) / len(runs)]
        totals["untuned"].append(cells[0])
        for m in args.margins:
            acc = sum(r[2] if keeps_untuned(r[0], r[1], r[4], m) else r[3] for r in runs) / len(runs)
            cells.append(acc)
            totals[m].append(acc)
        best = sum(max(r[2], r[3]) for r in runs) / len(runs)
        totals["best"].append(best)
        cells.append(best)
        print(f"| {data} | {shots} | " + " | ".join(f"{c:.3f}" for c in cells) + f" |  <!-- {len(runs)} seeds -->")
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print("| mean of rows | | " + " | ".join(f"{mean(totals[k]):.3f}" for k in ["untuned", *args.margins, "best"]) + " |")


if __name__ == "__main__":
    main()
