"""What the probes share: the README model's folder, test snippets, token features and a median timer.

Run every probe from the repository root after the README's training command with ``-o runs/rt`` and
``fastclf accelerate runs/rt --variant onnx-int8 --variant openvino-int8 --calibration examples/unlabeled.csv
--num-calibration 300 --keep``. Timings depend on what else runs on the machine.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

MODEL = Path("runs/rt")
BODY = MODEL / "body"


def test_snippets(n: int | None = None) -> tuple[list[str], list[str]]:
    """(texts, labels) of examples/test.csv, the first ``n``."""
    with open("examples/test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def one_text_features(texts: Sequence[str], bucket: int = 0) -> list[dict[str, np.ndarray]]:
    """Token features of each text alone, by fastclf's numpy pipeline; right-padded to a multiple
    of ``bucket`` tokens (masked) when ``bucket`` > 0."""
    from fastclf.backends._numpy_pipeline import TextPipeline

    pipeline = TextPipeline(BODY)
    out = []
    for text in texts:
        feats = pipeline.tokenize([text])
        n = feats["input_ids"].shape[1]
        extra = -(-n // bucket) * bucket - n if bucket else 0
        fill = {"input_ids": pipeline.pad_id, "token_type_ids": pipeline.pad_type_id}
        out.append({k: np.pad(v, ((0, 0), (0, extra)), constant_values=fill.get(k, 0)) for k, v in feats.items()})
    return out


def median_ms(run: Callable[[object], object], items: Sequence[object], warmup: int = 30) -> float:
    """Median milliseconds of ``run(item)`` over ``items``, after ``warmup`` untimed calls."""
    for item in items[:warmup]:
        run(item)
    times = []
    for item in items:
        start = time.perf_counter()
        run(item)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)
