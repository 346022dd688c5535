"""One cross-validation embedding pass in fp32 and under bf16 autocast (``TrainConfig.cv_bf16``), and
the cosine between the two, on a labeled file's texts.

    python benchmarks/training_time.py --write-csv /tmp/tt
    HF_HUB_OFFLINE=1 python benchmarks/probes/cv_embed_bf16.py /tmp/tt/chatbot-topics_long_8_x_16.csv 1

The second argument is the torch thread count (1: as in a fold). Each mode runs twice; on a CPU
without native bf16 the bf16 pass is emulated and slow.
"""

from __future__ import annotations

import sys
import time

import torch

from fastclf.backends._pooling import row_cosines
from fastclf.data import read_labeled
from fastclf.training.trainer import TrainConfig, _Embedder, _load_body, resolve_model


def main() -> None:
    torch.set_num_threads(int(sys.argv[2]))
    texts = list(read_labeled(sys.argv[1]).texts)
    base = _load_body(resolve_model(None)[0])
    out = {}
    for bf16 in (False, True, False, True):
        embed = _Embedder(TrainConfig(), base, bf16=bf16)
        start = time.perf_counter()
        out[bf16] = embed(base, texts, quick=True)
        print("bf16" if bf16 else "fp32", round(time.perf_counter() - start, 2), "s")
    cos = row_cosines(out[False], out[True])
    print("cosine min", cos.min(), "mean", cos.mean())


if __name__ == "__main__":
    main()
