"""Contrastive fine-tuning of a sentence-transformers body with the ``setfit`` library.

setfit's trainer runs the loop (sentence-transformers' trainer, with its label-grouped batch
sampler); fastclf brings its own loss, :class:`BalancedSupConLoss`, because setfit's
``SupConLoss`` divides each anchor's log-likelihood by its number of in-batch positives: an
anchor alone with its class in a batch divides 0 by 0, and the NaN spreads to every weight
(seen with 8 and more classes). This module imports torch and setfit: only training uses it.
"""

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
#: texts a forward pass of the training loss runs at once: a batch is sorted by length and run in
#: groups of this many, each padded to its own longest text, so short texts are not padded to the
#: batch's longest one (the embeddings, and so the loss, are those of the whole batch)
LENGTH_GROUP = 4


class BalancedSupConLoss(torch.nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020) over one batch of labeled texts.

    Each anchor's loss is the mean log-probability of its in-batch positives among all other
    texts of the batch; anchors with no positive in the batch are left out of the mean
    instead of dividing by zero, and a batch with no positive pair contributes zero. The
    similarities are computed in float32 even under bf16 autocast. A non-finite loss stops
    training with :class:`~fastclf.errors.TrainingError` at the step where it appears. The body
    embeds the batch in groups of ``group`` texts of similar length (:func:`embed_by_length`).
    """

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
            raise TrainingError(
                f"the body produced non-finite embeddings at training step {self.step}; "
                "lower the learning rate (--set body_learning_rate=...), or train without bf16 if it was set"
            )
        features = torch.nn.functional.normalize(features, p=2, dim=1)
        n = features.shape[0]
        logits = features @ features.T / self.temperature
        self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
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
            raise TrainingError(
                f"the training loss became non-finite at step {self.step}; lower the learning rate (--set body_learning_rate=...), or train without bf16 if it was set"
            )
        return loss


def embed_by_length(model: Any, features: dict[str, Any], group: int) -> torch.Tensor:
    """``model(features)["sentence_embedding"]`` for a right-padded batch, computed in groups of
    ``group`` texts of similar length, each cut to its own longest text: a batch of short texts
    padded to its longest one spends much of its work on padding, which attention masks out anyway. Rows come back in the batch's order.
    A batch that is not right-padded, or ``group`` < 1, runs as one."""
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


def _mute_metric_printing(hf_trainer: Any) -> None:
    """transformers prints the final ``{'train_runtime': ...}`` dict through its progress or
    printer callback; fastclf reports the training time itself, so only the bar stays."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in hf_trainer.callback_handler.callbacks:
        if isinstance(callback, (PrinterCallback, ProgressCallback)):
            callback.on_log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # only the final metrics line, not the bar


def finetune(
    st_model: Any,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    loss: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    bf16: bool,
    num_iterations: int = 5,
    multi_label: bool = False,
    show_progress: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    freeze_layers: int | None = 0,
) -> None:
    """Fine-tune ``st_model`` (a SentenceTransformer, changed in place) on ``texts``.

    ``loss="supcon"``: :class:`BalancedSupConLoss` on label-grouped batches (``labels`` are class
    indices). ``loss="pairs"``: setfit's classic recipe, cosine-similarity loss on sampled pairs
    (``num_iterations`` pairs an example; ``labels`` may be multi-hot rows for multi-label data).
    ``on_epoch_end(epoch)`` is called after each epoch (1-based), with the model in eval mode.
    ``freeze_layers``: ``None`` trains every weight; 0 keeps the token embeddings fixed (a few
    dozen texts touch few of their rows); k > 0 also keeps the k lowest transformer layers fixed (see :func:`frozen`).

    Raises:
        TrainingError: the loss or the embeddings became non-finite.
    """
    from transformers import TrainerCallback

    class _EpochHook(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if on_epoch_end is not None:
                st_model.eval()
                with torch.inference_mode():
                    on_epoch_end(round(state.epoch))
                st_model.train()

    supcon = loss == "supcon" and not multi_label
    if supcon and not can_contrast(labels):
        # nothing to learn from: the body stays as it is
        for epoch in range(1, epochs + 1):
            if on_epoch_end is not None:
                with torch.inference_mode():
                    on_epoch_end(epoch)
        return
    with frozen(st_model, freeze_layers):
        _train(st_model, texts, labels, loss=loss, epochs=epochs, batch_size=batch_size,
               learning_rate=learning_rate, seed=seed, bf16=bf16, num_iterations=num_iterations,
               multi_label=multi_label, show_progress=show_progress, hook=_EpochHook(), supcon=supcon)
    st_model.eval()


@contextlib.contextmanager
def frozen(st_model: Any, layers: int | None) -> Iterator[int]:
    """Keep the token embeddings (``layers`` >= 0) and the ``layers`` lowest transformer layers
    of a sentence-transformers body fixed while training; yields how many layers are fixed
    (fewer where the architecture has no ``encoder.layer`` list). Restored on exit."""
    if layers is None:
        yield 0
        return
    transformer = getattr(st_model[0], "auto_model", None) if len(st_model) else None
    params: list[torch.nn.Parameter] = []
    done = 0
    if transformer is not None:
        params += list(transformer.get_input_embeddings().parameters())
        blocks = getattr(getattr(transformer, "encoder", None), "layer", None)
        if layers > 0 and blocks is not None:
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


def _train(st_model: Any, texts: Sequence[str], labels: Sequence[Any], *, loss: str, epochs: int, batch_size: int,
           learning_rate: float, seed: int, bf16: bool, num_iterations: int, multi_label: bool,
           show_progress: bool, hook: Any, supcon: bool) -> None:
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from sentence_transformers.training_args import BatchSamplers
    from setfit import SetFitModel, Trainer, TrainingArguments

    class _Trainer(Trainer):
        """setfit's Trainer, taught fastclf's loss (setfit recognises its own losses by identity)."""

        def get_dataset(self, x, y, args, max_pairs=-1):
            from datasets import Dataset

            if args.loss is BalancedSupConLoss:
                return Dataset.from_dict({"sentence": list(x), "label": list(y)}), BalancedSupConLoss(
                    self.model.model_body
                )
            return super().get_dataset(x, y, args, max_pairs=max_pairs)

    setfit_model = SetFitModel(model_body=st_model, multi_target_strategy="one-vs-rest" if multi_label else None)
    with tempfile.TemporaryDirectory(prefix="fastclf-train-") as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            batch_size=batch_size,
            num_epochs=epochs,
            body_learning_rate=learning_rate,
            num_iterations=num_iterations,
            loss=BalancedSupConLoss if supcon else CosineSimilarityLoss,
            seed=seed,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            logging_first_step=False,
            show_progress_bar=show_progress,
        )
        trainer = _Trainer(model=setfit_model, args=args, metric=lambda p, r: {}, callbacks=[hook])
        trainer.st_trainer.args.disable_tqdm = not show_progress
        if supcon:
            trainer.st_trainer.args.batch_sampler = BatchSamplers.GROUP_BY_LABEL
        _mute_metric_printing(trainer.st_trainer)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            trainer.train_embeddings(list(texts), [list(map(int, y)) if multi_label else int(y) for y in labels],
                                     args=args)
