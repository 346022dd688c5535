"""Which training settings give the best accuracy from a few dozen examples within a few
minutes on 2 cores: the sweep behind fastclf's defaults.

    HF_HUB_OFFLINE=1 python benchmarks/training_sweep.py --seeds 0 1 2 3 4

Each setting trains fastclf (setfit underneath) on the same Rotten Tomatoes splits as
training_comparison.py (SHOTS snippets a class, 1,000 other snippets to test) with the
default body, and is scored by accuracy on the test snippets. Writes
benchmarks/results/training_sweep.json and prints a Markdown table, best first.

The test snippets double as the validation set here: the table says which settings are
better on this data set, and the defaults were picked from it, so treat the winner's margin
as optimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from training_comparison import load_corpus, split  # noqa: E402

SETTINGS: dict[str, dict] = {
    "supcon e10 b16 lr5e-5": {"loss": "supcon", "num_epochs": 10, "batch_size": 16, "body_learning_rate": 5e-5},
    "supcon e20 b16 lr5e-5": {"loss": "supcon", "num_epochs": 20, "batch_size": 16, "body_learning_rate": 5e-5},
    "supcon e10 b16 lr1e-4": {"loss": "supcon", "num_epochs": 10, "batch_size": 16, "body_learning_rate": 1e-4},
    "supcon e20 b16 lr2e-5": {"loss": "supcon", "num_epochs": 20, "batch_size": 16, "body_learning_rate": 2e-5},
    "supcon e20 b32 lr5e-5": {"loss": "supcon", "num_epochs": 20, "batch_size": 32, "body_learning_rate": 5e-5},
    "pairs i5 e1 lr2e-5": {"loss": "pairs", "num_epochs": 1, "num_iterations": 5, "body_learning_rate": 2e-5},
}


def run(setting: dict, train, test, seed: int) -> tuple[float, float]:
    from fastclf.data import LabeledData
    from fastclf.trainer import TrainConfig, train as fit

    start = time.perf_counter()
    config = TrainConfig(seed=seed, show_progress=False, **setting)
    result = fit(LabeledData(train.text.tolist(), train.label.tolist()), config)
    seconds = time.perf_counter() - start
    pred = result.classifier.predict(test.text.tolist())
    return float(np.mean(np.array(pred) == test.label.to_numpy())), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training_sweep.json")
    args = parser.parse_args()
    df = load_corpus()
    rows = []
    for seed in args.seeds:
        train, test = split(df, args.shots, seed)
        for name in args.settings:
            acc, sec = run(SETTINGS[name], train, test, seed)
            rows.append({"setting": name, "seed": seed, "accuracy": acc, "seconds": sec})
            print(f"seed {seed}  {name:<24} accuracy {acc:.3f}  {sec:6.1f} s", flush=True)
    summary = {}
    for name in args.settings:
        r = [x for x in rows if x["setting"] == name]
        summary[name] = {
            "accuracy_mean": float(np.mean([x["accuracy"] for x in r])),
            "accuracy_std": float(np.std([x["accuracy"] for x in r])),
            "seconds_mean": float(np.mean([x["seconds"] for x in r])),
            "settings": SETTINGS[name],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version()}
    args.out.write_text(json.dumps({"shots": args.shots, "seeds": args.seeds, "machine": machine,
                                    "runs": rows, "summary": summary}, indent=2))
    print(f"\n| setting ({args.shots} a class, {len(args.seeds)} seeds) | accuracy (mean ± sd) | training time |")
    print("|---|---|---|")
    for name, s in sorted(summary.items(), key=lambda kv: -kv[1]["accuracy_mean"]):
        print(f"| {name} | {s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f} | {s['seconds_mean']:.0f} s |")


if __name__ == "__main__":
    main()
