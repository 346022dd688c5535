"""Where a fine-tuning step goes (one thread, 16 training snippets, 64 tokens at most): the body's
forward pass in eval and train mode, with and without gradients and bf16 autocast; then 16 steps of
the contrastive loss through fastclf's ``finetune`` (setfit's Trainer) against a bare loop.

    HF_HUB_OFFLINE=1 python benchmarks/probes/train_step.py
"""

from __future__ import annotations

import contextlib
import csv
import time

import torch


def main() -> None:
    torch.set_num_threads(1)
    import fastclf.training.trainer as trainer
    from fastclf.training.finetune import BalancedSupConLoss, finetune, frozen

    with open("examples/train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:32]
    texts = [r["text"] for r in rows]
    labels = [0 if r["label"] == "fresh" else 1 for r in rows]

    def load():
        model = trainer._load_body(trainer.resolve_model(None)[0])
        model.max_seq_length = 64
        return model

    model = load()
    feats = model.tokenize(texts[:16])
    print("batch", tuple(feats["input_ids"].shape))
    for train_mode, bf16, grad in [(False, False, False), (False, True, False), (True, False, True),
                                   (True, True, True), (False, True, True), (True, True, False)]:
        model.train(train_mode)
        times = []
        for i in range(7):
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            grads = contextlib.nullcontext() if grad else torch.no_grad()
            start = time.perf_counter()
            with autocast, grads:
                model(dict(feats))
            if i >= 2:
                times.append(time.perf_counter() - start)
        print(f"forward, {'train' if train_mode else 'eval'} mode, {'bf16' if bf16 else 'fp32'}, "
              f"{'with' if grad else 'no'} gradients: {sum(times) / len(times) * 1000:.1f} ms")

    model = load()
    start = time.perf_counter()
    finetune(model, texts, labels, loss="supcon", epochs=8, batch_size=16, learning_rate=1e-4, seed=0, bf16=True)
    print(f"finetune(): 16 steps in {time.perf_counter() - start:.2f} s")

    model = load()
    loss = BalancedSupConLoss(model)
    with frozen(model, 0):
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        model.train()
        start = time.perf_counter()
        for step in range(16):
            part = slice((step % 2) * 16, (step % 2) * 16 + 16)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                value = loss([model.tokenize(texts[part])], torch.tensor(labels[part]))
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        print(f"bare loop: 16 steps in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
