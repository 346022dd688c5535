"""16 fine-tuning steps (batches of 16, 64 tokens a text) with the body's dropout as it is
(``default``), with the attention dropout off (``noattn``) and with every dropout off (``none``):
the step-time side of the no-dropout trial in benchmarks/studies/cv-embeddings-bf16.md.

    python benchmarks/training_time.py --write-csv /tmp/tt
    HF_HUB_OFFLINE=1 python benchmarks/probes/train_dropout.py /tmp/tt/chatbot-topics_long_8_x_16.csv default noattn none default
"""

from __future__ import annotations

import sys
import time

import torch

from fastclf.data import read_labeled
from fastclf.quiet import quiet_logs as quiet
from fastclf.training.finetune import finetune
from fastclf.training.trainer import _load_body, resolve_model

MODES = {"default": (0.1, 0.1), "noattn": (0.0, 0.1), "none": (0.0, 0.0)}


def set_dropout(body, attention: float, hidden: float) -> None:
    for name, module in body.named_modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = attention if "attention.self" in name else hidden
        if hasattr(module, "dropout_prob"):  # scaled-dot-product attention's own dropout
            module.dropout_prob = attention


def main() -> None:
    data = read_labeled(sys.argv[1])
    classes = sorted(set(data.labels))
    labels = [classes.index(label) for label in data.labels]
    texts = list(data.texts)
    ref = resolve_model(None)[0]
    settings = dict(loss="supcon", batch_size=16, learning_rate=1e-4, seed=0, bf16=False)
    with quiet():
        for mode in sys.argv[2:]:
            body = _load_body(ref)
            body.max_seq_length = 64
            set_dropout(body, *MODES[mode])
            finetune(body, texts[:32], labels[:32], epochs=1, **settings)  # warm-up
            start = time.perf_counter()
            finetune(body, texts, labels, epochs=2, **settings)
            print(mode, "16 steps", round(time.perf_counter() - start, 2), "s", flush=True)


if __name__ == "__main__":
    main()
