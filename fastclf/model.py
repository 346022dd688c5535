"""The Classifier: a body (texts to embeddings) and a head (embeddings to labels); accelerated variants
swap the body. Imports neither the training code nor, unless a torch variant runs, torch."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from fastclf._util import remove_stale
from fastclf._version import __version__
from fastclf.backends import Body, get_spec, load_body
from fastclf.backends._pipeline_config import declared_pooling_modes
from fastclf.chunking import Chunker, window_of
from fastclf.config import BODY_DIR, CONFIG_FILE, HEAD_FILE, BodyConfig, HeadConfig, ModelConfig, now
from fastclf.errors import DataError, FastclfError, ModelFormatError, write_error
from fastclf.head import LogisticHead
from fastclf.modeldir import ModelDir, check_output_dir, identity, staged, writer_lock
from fastclf.texts import check_batch_size, check_texts

#: the answer of a text below ``min_confidence`` (:meth:`Classifier.predict`) unless another is named
UNSURE = "unsure"
_LOAD_ATTEMPTS = 5


def check_answer(cfg: ModelConfig, *, min_confidence: float | None = None, unsure_label: str = UNSURE,
                 coverage: float | None = None) -> None:
    """Refuse (DataError), before any text is scored, the answer options that :meth:`Classifier.predict`
    and :meth:`Classifier.predict_set` would refuse for the model ``cfg``."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if min_confidence is not None:
        if not number(min_confidence) or not 0 <= min_confidence <= 1:
            raise DataError(f"min_confidence must be a probability from 0 to 1, got {min_confidence!r}")
        if not isinstance(unsure_label, str) or unsure_label in cfg.labels:
            raise DataError(f"the unsure label {unsure_label!r} is one of the model's labels; name another")
    if coverage is None:
        return
    if not number(coverage) or not 0 < coverage < 1:
        raise DataError(f"coverage must be strictly between 0 and 1 (e.g. 0.9), got {coverage!r}")
    if cfg.multi_label:
        raise DataError("prediction sets are for single-label models; for a multi-label model use each label's "
                        f"calibrated probability against the threshold ({cfg.threshold:g})")
    if cfg.calibration is None or not cfg.calibration.conformal:
        raise DataError("this model has no conformal scores (trained without cross-validation, on too few examples, "
                        "or by an older fastclf): retrain it to get prediction sets")


def body_info(body_dir: Path) -> dict[str, Any]:
    """Pooling, normalization, max length and module list read from a sentence-transformers folder."""
    try:
        modules = json.loads((body_dir / "modules.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(modules, list):
        return {}
    types = [m.get("type", "") for m in modules if isinstance(m, dict) and isinstance(m.get("type", ""), str)]
    info: dict[str, Any] = {"modules": [t.rsplit(".", 1)[-1] for t in types],
                            "normalize": any(t.endswith("Normalize") for t in types)}
    for m in modules:
        if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling") and isinstance(m.get("path", ""), str):
            pool_path = body_dir / m.get("path", "") / "config.json"
            try:
                pcfg = json.loads(pool_path.read_text())
                info["pooling"] = "+".join(declared_pooling_modes(pcfg, pool_path)) or "none"
            except (OSError, json.JSONDecodeError, ModelFormatError):
                continue
            info["dim"] = pcfg.get("embedding_dimension", pcfg.get("word_embedding_dimension"))
    # sentence-transformers before 5 wrote the window into sentence_bert_config.json; 5 leaves it to the tokenizer
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((body_dir / name).read_text()).get(key)
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, int) and 0 < value < 1_000_000:  # tokenizers write 1e30 for "no limit"
            info["max_seq_length"] = value
            break
    return info


class Classifier:
    """A few-shot text classifier: ``body`` (texts -> embeddings) + ``head`` (embeddings -> labels), e.g.
    ``Classifier.load("model", variant="onnx-int8").predict(["great film", "dull"])``."""

    def __init__(self, body: Body, head: LogisticHead, labels: Sequence[str], *, multi_label: bool = False,
                 config: ModelConfig | None = None, path: Path | None = None, threshold: float = 0.5):
        self.body = body
        self.head = head
        self.classes_ = np.array(list(labels), dtype=object)
        self.multi_label = multi_label
        self.config = config if config is not None else ModelConfig(labels=tuple(str(c) for c in labels))
        self.path = path
        self.threshold = threshold
        if head.n_outputs != len(self.classes_):
            raise ModelFormatError(f"head has {head.n_outputs} outputs but there are {len(self.classes_)} labels")

    @property
    def config(self) -> ModelConfig:
        """The model's ``fastclf.json`` (completed with the head and body when saved)."""
        return self._config

    @config.setter
    def config(self, value: ModelConfig) -> None:
        self._config = value
        self.__dict__.pop("chunker", None)  # the long-text policy may have changed

    @property
    def variant(self) -> str:
        return self.body.variant

    @cached_property
    def chunker(self) -> Chunker | None:
        """The long-text splitter (fastclf.json ``long_texts``; ``truncate`` or none recorded: cut to the
        first window), or None when the body has no fast tokenizer. The server counts tokens with it."""
        window = window_of(self.body)
        if window is None:
            return None
        policy = self.config.long_texts
        split = policy is not None and policy.mode == "chunk"
        return Chunker(window[0], window[1], max_chunks=policy.max_chunks if policy and split else 1, split=split)

    def embed(self, texts: str | Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings from the body, float32 ``(n, dim)``."""
        texts = check_texts(texts)
        batch_size = check_batch_size(batch_size)
        if not texts:
            return np.zeros((0, self.head.dim), dtype=np.float32)
        if self.chunker is None:
            return self.body.encode(texts, batch_size=batch_size)
        return self.chunker.embed(texts, lambda pieces: self.body.encode(pieces, batch_size=batch_size))

    def predict_proba(self, texts: str | Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` in :attr:`classes_` order, calibrated when the model holds a
        calibration; for a multi-label model each column is that label's own probability."""
        return self.proba_of(self.embed(texts, batch_size=batch_size))

    def proba_of(self, embeddings: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """The head's probabilities of ``embeddings``, through the calibration map (the one place) if ``calibrated``."""
        cal = self.config.calibration
        temperature = np.asarray(cal.temperature) if calibrated and cal is not None else 1.0
        return self.head.predict_proba(embeddings, temperature=temperature)

    def predict(self, texts: str | Sequence[str], *, batch_size: int = 32, min_confidence: float | None = None,
                unsure_label: str = UNSURE) -> list:
        """The label of each text (a list if multi-label); ``unsure_label`` below ``min_confidence``."""
        return self.labels_from_proba(self.predict_proba(texts, batch_size=batch_size), min_confidence=min_confidence,
                                      unsure_label=unsure_label)

    def labels_from_proba(self, proba: np.ndarray, *, min_confidence: float | None = None,
                          unsure_label: str = UNSURE) -> list:
        """:meth:`predict`'s answer for probabilities ``proba``."""
        check_answer(self.config, min_confidence=min_confidence, unsure_label=unsure_label)
        if self.multi_label:
            labels: list = [[str(c) for c in self.classes_[row >= self.threshold]] for row in proba]
        else:
            labels = [str(self.classes_[i]) for i in np.argmax(proba, axis=1)]
        if min_confidence is None:
            return labels
        return [unsure_label if c < min_confidence else label for label, c in zip(labels, self.confidence(proba))]

    def answers(self, proba: np.ndarray, *, min_confidence: float | None = None, unsure_label: str = UNSURE,
                coverage: float | None = None) -> tuple[list, np.ndarray, list[list[str]] | None]:
        """(labels, confidence, prediction sets or None without ``coverage``) for probabilities ``proba``: what
        the CLI, the server and streaming answer."""
        labels = self.labels_from_proba(proba, min_confidence=min_confidence, unsure_label=unsure_label)
        sets = None if coverage is None else self.sets_from_proba(proba, coverage)
        return labels, self.confidence(proba), sets

    def confidence(self, proba: np.ndarray) -> np.ndarray:
        """How sure each answer is: the top probability; multi-label: the least sure label's ``max(p, 1 - p)``."""
        proba = np.asarray(proba)
        return np.maximum(proba, 1 - proba).min(axis=1) if self.multi_label else proba.max(axis=1)

    def predict_set(self, texts: str | Sequence[str], *, coverage: float = 0.9,
                    batch_size: int = 32) -> list[list[str]]:
        """Each text's split-conformal prediction set at ``coverage`` (the true label is in it with that
        probability on average over exchangeable texts), labels by decreasing probability."""
        check_answer(self.config, coverage=coverage)
        return self.sets_from_proba(self.predict_proba(texts, batch_size=batch_size), coverage)

    def sets_from_proba(self, proba: np.ndarray, coverage: float) -> list[list[str]]:
        """:meth:`predict_set`'s answer for (calibrated) probabilities ``proba``; the top label is always in."""
        check_answer(self.config, coverage=coverage)
        assert self.config.calibration is not None  # checked
        floor = 1.0 - self.config.calibration.conformal_threshold(coverage)
        return [[str(self.classes_[i]) for n, i in enumerate(np.argsort(-row, kind="stable"))
                 if n == 0 or row[i] >= floor] for row in np.asarray(proba)]

    @classmethod
    def load(cls, path: str | Path, variant: str | None = None, *, threads: int | None = None) -> Classifier:
        """Load a model folder as ``variant`` (None: :class:`~fastclf.modeldir.ModelDir` picks) with ``threads``
        runtime threads (None: ``$FASTCLF_THREADS`` or the runtime's); a folder replaced while read is read again.

        Raises:
            ModelNotFound, ModelFormatError, UnknownVariant, VariantNotExported, MissingDependency
        """
        path = Path(path)
        if variant is not None:
            get_spec(variant)  # fail on an unknown name before any work
        for _attempt in range(_LOAD_ATTEMPTS):
            before = identity(path)
            try:
                clf = cls._load_once(path, variant, threads)
            except (FastclfError, OSError):
                if identity(path) != before:
                    continue  # replaced while reading: read the new version
                raise
            if identity(path) == before:
                return clf
        raise ModelFormatError(f"{path} kept changing while it was loaded ({_LOAD_ATTEMPTS} tries); try again")

    @classmethod
    def _load_once(cls, path: Path, variant: str | None, threads: int | None) -> Classifier:
        folder = ModelDir(path)
        cfg, variant = folder.config, folder.resolve(variant)
        head = LogisticHead.load(folder.head_path(variant))
        if cfg.head.kind is not None and cfg.head.kind != head.kind:
            raise ModelFormatError(f"{path / CONFIG_FILE} says the head is {cfg.head.kind!r} but the head file "
                                   f"holds {head.kind!r}")
        if cfg.multi_label != (head.kind == "multilabel"):
            raise ModelFormatError(f"{path / CONFIG_FILE} says multi_label is {str(cfg.multi_label).lower()} "
                                   f"but the head is {head.kind}")
        body = load_body(folder.body_dir, variant, threads=threads)
        dim = _body_dim(body)
        if dim is not None and dim != head.dim:
            raise ModelFormatError(f"{path}: the body makes {dim}-dimensional embeddings but the head expects "
                                   f"{head.dim}")
        return cls(body, head, cfg.labels, multi_label=cfg.multi_label, config=cfg, path=path, threshold=cfg.threshold)

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the model folder atomically (whole or not at all), with the umask's permissions; only a fastclf
        model at ``path`` is replaced.

        Raises:
            FileExistsError (``path`` is not a fastclf model, or not ``overwrite``), WriteError (nothing changed)
        """
        path = Path(path).resolve()
        check_output_dir(path, overwrite=overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        with writer_lock(path):
            remove_stale(path)
            check_output_dir(path, overwrite=overwrite)
            try:
                with staged(path) as staging:
                    config = self._write(staging)
            except BaseException as exc:
                if _write_failure(exc):
                    raise write_error(path, exc) from None
                raise
        self.path = path
        self.config = config
        return path

    def _write(self, out: Path) -> ModelConfig:
        """Write body, head and fastclf.json into the empty folder ``out``; the config written."""
        body_out = out / BODY_DIR
        if self.path is not None and (Path(self.path) / BODY_DIR).is_dir():
            shutil.copytree(Path(self.path) / BODY_DIR, body_out)
        elif hasattr(self.body, "save"):
            self.body.save(body_out)
        else:
            raise ValueError("this classifier's body cannot be saved: it was not loaded from a directory")
        self.head.save(out / HEAD_FILE)
        config = self.config.model_copy(update=dict(
            fastclf_version=__version__, created=self.config.created or now(),
            labels=tuple(str(c) for c in self.classes_), multi_label=self.multi_label, threshold=float(self.threshold),
            head=HeadConfig(file=HEAD_FILE, kind=self.head.kind, dim=self.head.dim),
            body=BodyConfig.from_dict({"path": BODY_DIR, **body_info(body_out)}, out / CONFIG_FILE),
            body_id=uuid.uuid4().hex,  # a new body: accelerate checks it before it commits
        ))
        config.write(out)
        return config


def _write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the file system refusing a write: an OSError, or safetensors' error wrapping one."""
    if isinstance(exc, FastclfError):
        return False
    from safetensors import SafetensorError

    return isinstance(exc, OSError) or (isinstance(exc, SafetensorError) and ("I/O error" in str(exc)
                                                                             or "IoError" in str(exc)))


def _body_dim(body: Body) -> int | None:
    """The embedding size a body declares, when it declares one."""
    try:
        dim = getattr(body, "dim", None)
        if dim is None and hasattr(body, "model"):
            model = body.model  # sentence-transformers 5.x renamed the method; both spellings work
            dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
    except Exception:  # a body without the notion: checked at the first predict instead
        return None
    return int(dim) if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) else None
