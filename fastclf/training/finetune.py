"""Contrastive fine-tuning of a sentence-transformers body with setfit's trainer and fastclf's own loss
(setfit's ``SupConLoss`` divides 0 by 0 for an anchor alone with its class in a batch). Training only: imports torch."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from fastclf.errors import TrainingError
from fastclf.training.selection import can_contrast

#: setfit's default temperature
TEMPERATURE = 0.07
#: texts a forward pass of the loss embeds at once, grouped by length (benchmarks/studies/length-groups.md)
LENGTH_GROUP = 4
_ADVICE = "lower the learning rate (--set body_learning_rate=...), or train without bf16 if it was set"


class BalancedSupConLoss(torch.nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020) leaving out anchors without an in-batch positive,
    in float32 under autocast too; a non-finite embedding or loss raises TrainingError at its step."""

    def __init__(self, model: Any, temperature: float = TEMPERATURE, group: int = LENGTH_GROUP):
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.group = group
        self.step = 0

    def forward(self, sentence_features: Sequence[dict[str, torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        self.step += 1
        features = embed_by_length(self.model, sentence_features[0], self.group).float()
        if not torch.isfinite(features).all():
            raise TrainingError(f"the body produced non-finite embeddings at training step {self.step}; {_ADVICE}")
        features = torch.nn.functional.normalize(features, p=2, dim=1)
        self_mask = torch.eye(features.shape[0], dtype=torch.bool, device=features.device)
        logits = (features @ features.T / self.temperature).masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        labels = labels.view(-1)
        positives = (labels[:, None] == labels[None, :]) & ~self_mask
        counts = positives.sum(dim=1)
        has_positive = counts > 0
        if not has_positive.any():
            return features.sum() * 0.0
        pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        loss = -(pos_log_prob[has_positive] / counts[has_positive]).mean()
        if not torch.isfinite(loss):
            raise TrainingError(f"the training loss became non-finite at step {self.step}; {_ADVICE}")
        return loss


def embed_by_length(model: Any, features: dict[str, Any], group: int) -> torch.Tensor:
    """``model(features)["sentence_embedding"]`` of a right-padded batch, run in groups of ``group`` texts
    of similar length, each cut to its longest (less padding); anything else runs as one batch."""
    mask = features.get("attention_mask")
    n = 0 if mask is None else mask.shape[0]
    if (mask is None or mask.dim() != 2 or group < 1 or n <= group
            or not bool((mask[:, 1:] <= mask[:, :-1]).all())):
        return model(features)["sentence_embedding"]
    width = mask.shape[1]
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for idx in torch.split(order, group):
        cut = max(1, int(lengths[idx].max()))
        sub: dict[str, Any] = {}
        for key, value in features.items():
            if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == n:
                value = value[idx]
                if value.dim() == 2 and value.shape[1] == width:
                    value = value[:, :cut]
            sub[key] = value
        parts.append(model(sub)["sentence_embedding"])
    out = torch.empty((n,) + parts[0].shape[1:], dtype=parts[0].dtype, device=parts[0].device)
    return out.index_copy(0, order, torch.cat(parts))


@contextlib.contextmanager
def frozen(st_model: Any, layers: int | None) -> Iterator[int]:
    """Keep the token embeddings (``layers`` >= 0) and the ``layers`` lowest transformer layers fixed
    inside the block (``None``: nothing); yields how many layers are fixed."""
    transformer = getattr(st_model[0], "auto_model", None) if layers is not None and len(st_model) else None
    params: list[torch.nn.Parameter] = []
    done = 0
    if transformer is not None:
        params += list(transformer.get_input_embeddings().parameters())
        blocks = getattr(getattr(transformer, "encoder", None), "layer", None)
        if layers and blocks is not None:
            done = min(layers, len(blocks) - 1)  # the top layer always trains
            for block in blocks[:done]:
                params += list(block.parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield done
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def finetune(st_model: Any, texts: Sequence[str], labels: Sequence[Any], *, loss: str, epochs: int, batch_size: int,
             learning_rate: float, seed: int, bf16: bool, num_iterations: int = 5, multi_label: bool = False,
             show_progress: bool = False, on_epoch_end: Callable[[int], None] | None = None,
             freeze_layers: int | None = 0) -> None:
    """Fine-tune ``st_model`` in place with :class:`BalancedSupConLoss` on label-grouped batches, or ``"pairs"``:
    setfit's cosine loss (multi-hot too); ``on_epoch_end(epoch)`` runs after each epoch in eval mode."""
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from sentence_transformers.training_args import BatchSamplers
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class EpochHook(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if on_epoch_end is not None:
                st_model.eval()
                with torch.inference_mode():
                    on_epoch_end(round(state.epoch))
                st_model.train()

    class FastclfTrainer(Trainer):
        def get_dataset(self, x, y, args, max_pairs=-1):  # setfit recognises its own losses by identity
            from datasets import Dataset

            if args.loss is BalancedSupConLoss:
                return Dataset.from_dict({"sentence": list(x), "label": list(y)}), BalancedSupConLoss(
                    self.model.model_body)
            return super().get_dataset(x, y, args, max_pairs=max_pairs)

    supcon = loss == "supcon" and not multi_label
    if supcon and not can_contrast(labels):  # nothing to learn from: the body stays as it is
        for epoch in range(1, epochs + 1):
            if on_epoch_end is not None:
                with torch.inference_mode():
                    on_epoch_end(epoch)
        return
    with frozen(st_model, freeze_layers), tempfile.TemporaryDirectory(prefix="fastclf-train-") as tmp:
        setfit_model = SetFitModel(model_body=st_model, multi_target_strategy="one-vs-rest" if multi_label else None)
        args = TrainingArguments(output_dir=tmp, batch_size=batch_size, num_epochs=epochs,
                                 body_learning_rate=learning_rate, num_iterations=num_iterations,
                                 loss=BalancedSupConLoss if supcon else CosineSimilarityLoss, seed=seed,
                                 report_to="none", save_strategy="no", logging_strategy="no", logging_first_step=False,
                                 show_progress_bar=show_progress)
        trainer = FastclfTrainer(model=setfit_model, args=args, metric=lambda p, r: {}, callbacks=[EpochHook()])
        trainer.st_trainer.args.disable_tqdm = not show_progress
        if supcon:
            trainer.st_trainer.args.batch_sampler = BatchSamplers.GROUP_BY_LABEL
        for callback in trainer.st_trainer.callback_handler.callbacks:  # fastclf reports the training time itself
            if isinstance(callback, (PrinterCallback, ProgressCallback)):
                callback.on_log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # the line, not the bar
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            trainer.train_embeddings(list(texts), [list(map(int, y)) if multi_label else int(y) for y in labels],
                                     args=trainer.args)
    st_model.eval()
