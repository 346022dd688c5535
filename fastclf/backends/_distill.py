"""A smaller body for the ``-distilled`` variants: some of the body's encoder layers, evenly spaced, taught on
the user's texts to give the body's token states (token embeddings frozen); a Hugging Face folder for the exporter."""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fastclf.backends._pooling import row_cosines
from fastclf.errors import DataError, ModelFormatError

log = logging.getLogger(__name__)

#: texts in the widened training set (at least: every original text is in it)
DISTILL_INPUTS = 2048
#: optimizer steps of the distillation, batches of :data:`DISTILL_BATCH`
DISTILL_STEPS = 400
DISTILL_BATCH = 32
DISTILL_LR = 2e-4
#: tokens a distillation input is cut to (the student still runs the body's full window)
DISTILL_MAX_TOKENS = 128
MIN_DISTILL_TEXTS = 8


def student_layers(n_layers: int, keep: int) -> list[int]:
    """``keep`` indices out of ``range(n_layers)``, evenly spaced, the first and last included."""
    if not 1 <= keep <= n_layers:
        raise ValueError(f"cannot keep {keep} of {n_layers} layers")
    if keep == 1:
        return [n_layers - 1]
    return sorted({int(round(i * (n_layers - 1) / (keep - 1))) for i in range(keep)})


def distillation_texts(texts: Sequence[str], *, target: int = DISTILL_INPUTS, seed: int = 0) -> list[str]:
    """The user's texts widened to about ``target`` inputs: every text, then random spans of a
    text's words (a third to all of them) and two texts joined, in turn, deduplicated."""
    base = list(dict.fromkeys(t.strip() for t in texts if isinstance(t, str) and t.strip()))
    if len(base) < MIN_DISTILL_TEXTS:
        raise DataError(f"distilling a smaller body needs at least {MIN_DISTILL_TEXTS} distinct texts, "
                        f"got {len(base)}: give more with --calibration FILE")
    rng = random.Random(seed)
    out = list(base)
    seen = set(out)
    words = [t.split() for t in base]
    attempts = 0
    while len(out) < target and attempts < 4 * target:
        attempts += 1
        if attempts % 3:
            w = words[rng.randrange(len(words))]
            if len(w) < 3:
                continue
            n = rng.randint(max(2, len(w) // 3), len(w))
            start = rng.randint(0, len(w) - n)
            text = " ".join(w[start:start + n])
        else:
            text = f"{base[rng.randrange(len(base))]} {base[rng.randrange(len(base))]}"
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _encoder_layers(hf_model):
    """(the ModuleList of transformer layers, the config attribute that counts them)."""
    import torch

    for owner_name, attr in (("encoder", "layer"), ("transformer", "layer"), ("encoder", "layers")):
        owner = getattr(hf_model, owner_name, None)
        layers = getattr(owner, attr, None) if owner is not None else None
        if isinstance(layers, torch.nn.ModuleList):
            for count in ("num_hidden_layers", "n_layers", "num_layers"):
                if hasattr(hf_model.config, count):
                    return owner, attr, count
    raise ModelFormatError(f"cannot make a smaller body of a {type(hf_model).__name__}: distillation takes BERT-like "
                           "encoders (BERT, MiniLM, MPNet, RoBERTa, DistilBERT); use a variant without -distilled")


def make_student(teacher, *, keep: int):
    """(a copy of the sentence-transformers ``teacher`` with ``keep`` of its layers, their indices, its layer count)."""
    import torch

    student = copy.deepcopy(teacher)
    hf = student[0].auto_model
    owner, attr, count = _encoder_layers(hf)
    layers = getattr(owner, attr)
    n = len(layers)
    kept = student_layers(n, keep)
    setattr(owner, attr, torch.nn.ModuleList([layers[i] for i in kept]))
    setattr(hf.config, count, len(kept))
    for i, layer in enumerate(getattr(owner, attr)):  # some attention modules know their index
        attention = getattr(getattr(layer, "attention", None), "self", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = i
    return student, kept, n


def _token_mse(a, b, mask):
    """Squared error of token states ``a`` against ``b`` in ``mask``, relative to ``b``'s size (layers weigh alike)."""
    a, b = a.float(), b.float()
    return ((a - b) ** 2 * mask).sum() / (((b ** 2) * mask).sum() + 1e-6 * mask.sum() * a.shape[-1])


def _train(teacher, student, kept: list[int], n_layers: int, batches, steps: int, use_bf16: bool) -> float:
    """Teach each kept layer of ``student`` the teacher's state just before the next kept layer (the skipped
    layers' work included), the last one its output (counted twice); returns the last loss."""
    import torch

    from fastclf.errors import TrainingError

    t_hf, s_hf = teacher[0].auto_model, student[0].auto_model
    for p in s_hf.get_input_embeddings().parameters():
        p.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=DISTILL_LR, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / max(1, steps)))
    target_index = [*kept[1:], n_layers]  # hidden_states[i] is the input of layer i
    student.train()
    loss_value = float("nan")
    for step, feats in zip(range(steps), batches):
        mask = feats["attention_mask"].unsqueeze(-1).float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            with torch.no_grad():
                t_states = t_hf(**feats, output_hidden_states=True).hidden_states
            s_states = s_hf(**feats, output_hidden_states=True).hidden_states
        loss = sum(_token_mse(s_states[j + 1], t_states[target_index[j]], mask) for j in range(len(kept)))
        loss = loss / len(kept) + _token_mse(s_states[-1], t_states[-1], mask)
        if not torch.isfinite(loss):
            raise TrainingError(f"distilling the smaller body: the loss became non-finite at step {step}; "
                                "use a variant without -distilled")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        loss_value = float(loss.detach())
    student.eval()
    return loss_value


def distill(teacher, texts: Sequence[str], out_dir: Path, *, keep: int, steps: int = DISTILL_STEPS,
            seed: int = 0, bf16: bool | None = None) -> dict[str, object]:
    """Distil a student of ``teacher`` (a loaded SentenceTransformer) with ``keep`` layers on ``texts`` and save
    its transformer to ``out_dir``; returns what was done (layers, steps, final loss, held-out cosine)."""
    import torch

    from fastclf.machine import cpu_has_bf16

    start = time.perf_counter()
    torch.manual_seed(seed)
    inputs = distillation_texts(texts, seed=seed)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(len(inputs), size=min(64, len(inputs) // 8), replace=False).tolist())
    train_idx = [i for i in range(len(inputs)) if i not in held]
    teacher.eval()
    max_tokens = min(teacher.max_seq_length or DISTILL_MAX_TOKENS, DISTILL_MAX_TOKENS)

    def batches():
        order: list[int] = []
        while True:
            if len(order) < DISTILL_BATCH:
                order += rng.permutation(train_idx).tolist()
            batch, order = order[:DISTILL_BATCH], order[DISTILL_BATCH:]
            enc = teacher[0].tokenizer([inputs[i] for i in batch], padding=True, truncation=True,
                                       max_length=max_tokens, return_tensors="pt")
            yield {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    student, kept, n_layers = make_student(teacher, keep=keep)
    use_bf16 = cpu_has_bf16() if bf16 is None else bf16
    loss = _train(teacher, student, kept, n_layers, batches(), steps, use_bf16)
    held_texts = [inputs[i] for i in sorted(held)]
    with torch.inference_mode():
        a, b = (m.encode(held_texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
                for m in (student, teacher))
    student[0].auto_model.save_pretrained(str(out_dir), safe_serialization=True)
    student[0].tokenizer.save_pretrained(str(out_dir))
    info: dict[str, object] = {
        "layers_kept": kept, "teacher_layers": n_layers, "inputs": len(inputs), "texts": len(set(texts)),
        "steps": steps, "batch": DISTILL_BATCH, "final_loss": round(loss, 6),
        "held_out_cosine": round(float(np.mean(row_cosines(a, b))), 5), "bf16": use_bf16,
        "seconds": round(time.perf_counter() - start, 1),
    }
    log.info("distilled a %d-layer student of %d layers: %s", len(kept), n_layers, info)
    return info


def distill_body(body_dir: Path, texts: Sequence[str], out_dir: Path, *, info_file: Path, layers: str) -> Path:
    """Distil a student of the body in ``body_dir`` with ``layers`` ("half", "two-thirds" rounded up, or a number)
    of its layers into ``out_dir``, and write what was done to ``info_file`` (a file of the variant)."""
    from fastclf._util import atomic_write_text
    from fastclf.backends._torch_graph import _load_sentence_transformer

    teacher = _load_sentence_transformer(Path(body_dir))
    n = len(getattr(*_encoder_layers(teacher[0].auto_model)[:2]))
    keep = {"half": -(-n // 2), "two-thirds": -(-2 * n // 3)}.get(layers) or int(layers)
    info = distill(teacher, texts, out_dir, keep=keep)
    atomic_write_text(info_file, json.dumps({"format": "fastclf-distilled-student/1", **info}, indent=2) + "\n")
    return Path(out_dir)
