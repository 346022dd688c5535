#!/usr/bin/env bash
# Reproduce the headline variant benchmark on Rotten Tomatoes snippets (the short-text workload;
# benchmarks/run_long_texts.sh is the long-text one).
#
#   benchmarks/run_rotten_tomatoes.sh [MODEL_DIR]
#
# 1. Train the default model (all-MiniLM-L6-v2, packaged offline) on examples/train.csv
#    (32 fresh + 32 rotten snippets), unless MODEL_DIR already holds a fastclf model.
# 2. Export every variant whose runtime is installed (fastclf accelerate --all), calibrated
#    on the training snippets and checked against torch-fp32.
# 3. Benchmark torch-fp32, every exported variant and setfit's own SetFitModel.predict on
#    examples/test.csv (1,000 held-out snippets): benchmarks/results/report.{md,json,html}.
#
# Environment: ACCELERATE=0 skips step 2 for a model whose variants are already exported;
# DURATION (seconds a timing, default 5), BATCH_SIZES (default 1,8,32,128),
# THREADS is not set on purpose: each runtime uses its default, and the report records it.
# Run it on a quiet machine: the report flags rows during which other processes used the CPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
FASTCLF="${FASTCLF:-fastclf}"
if ! command -v "$FASTCLF" >/dev/null 2>&1 && [ -x "$ROOT/.venv/bin/fastclf" ]; then
    FASTCLF="$ROOT/.venv/bin/fastclf"
fi
MODEL="${1:-runs/rotten_tomatoes_model}"  # runs/ is git-ignored
OUT="benchmarks/results"
DURATION="${DURATION:-5}"
BATCH_SIZES="${BATCH_SIZES:-1,8,32,128}"

if [ -f "$MODEL/fastclf.json" ]; then
    echo "== using the existing model in $MODEL"
else
    echo "== training $MODEL on examples/train.csv"
    "$FASTCLF" train examples/train.csv --eval examples/test.csv -o "$MODEL"
fi

if [ "${ACCELERATE:-1}" = "1" ]; then
    echo "== exporting the variants (fastclf accelerate --all --keep: every variant is benchmarked, its agreement shown)"
    if ! "$FASTCLF" accelerate "$MODEL" --all --keep --calibration examples/train.csv --check examples/test.csv; then
        echo "== some exports failed (see above); benchmarking the variants that exist" >&2
    fi
else
    echo "== ACCELERATE=0: benchmarking the variants already exported in $MODEL"
fi
"$FASTCLF" variants "$MODEL"

echo "== benchmarking (report in $OUT/)"
"$FASTCLF" benchmark "$MODEL" examples/test.csv --baseline setfit --batch-sizes "$BATCH_SIZES" \
    --duration "$DURATION" --output "$OUT"
