"""The Classifier: a body that turns texts into embeddings plus a head that turns
embeddings into labels. Accelerated variants swap the body and keep everything else.

This module never imports the training code, nor torch unless a torch variant is used.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastclf._util import remove_stale
from fastclf._version import __version__
from fastclf.backends import Body, get_spec, load_body
from fastclf.backends._pipeline_config import declared_pooling_modes
from fastclf.config import BODY_DIR, CONFIG_FILE, HEAD_FILE, BodyConfig, HeadConfig, ModelConfig, now, read_config
from fastclf.errors import DataError, FastclfError, ModelFormatError, write_error
from fastclf.head import LogisticHead
from fastclf.modeldir import (
    ModelDir,
    check_output_dir,
    commit_dir,
    fix_permissions,
    identity,
    make_staging,
    writer_lock,
)
from fastclf.texts import check_batch_size, check_texts

__all__ = ["BODY_DIR", "CONFIG_FILE", "HEAD_FILE", "Classifier", "ModelConfig", "check_output_dir", "read_config"]


#: the answer of a text below ``min_confidence`` (:meth:`Classifier.predict`) unless another is named
UNSURE = "unsure"


def check_answer(cfg: ModelConfig, *, min_confidence: float | None = None, unsure_label: str = UNSURE,
                 coverage: float | None = None) -> None:
    """Refuse, before any text is scored, what :meth:`Classifier.predict` (``min_confidence``,
    ``unsure_label``) or :meth:`Classifier.predict_set` (``coverage``) would refuse for the model
    described by ``cfg``.

    Raises:
        DataError: ``min_confidence`` not from 0 to 1, ``unsure_label`` one of the labels,
            ``coverage`` not strictly between 0 and 1, or sets asked of a multi-label model or
            of a model without conformal scores.
    """
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
    body_dir = Path(body_dir)
    info: dict[str, Any] = {}
    try:
        modules = json.loads((body_dir / "modules.json").read_text())
    except (OSError, json.JSONDecodeError):
        return info
    if not isinstance(modules, list):
        return info
    modules = [m for m in modules if isinstance(m, dict) and isinstance(m.get("type", ""), str)]
    info["modules"] = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    info["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    for m in modules:
        if m.get("type", "").endswith("Pooling") and isinstance(m.get("path", ""), str):
            pool_path = body_dir / m.get("path", "") / "config.json"
            try:
                pcfg = json.loads(pool_path.read_text())
                modes = declared_pooling_modes(pcfg, pool_path)
            except (OSError, json.JSONDecodeError, ModelFormatError):
                continue
            info["pooling"] = "+".join(modes) or "none"
            info["dim"] = pcfg.get("embedding_dimension", pcfg.get("word_embedding_dimension"))
    # sentence-transformers before 5 wrote the window into sentence_bert_config.json; 5 leaves it
    # to the tokenizer's model_max_length
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
    """A few-shot text classifier: ``body`` (texts -> embeddings) + ``head`` (embeddings -> labels).

    Use :meth:`load` to open a saved model directory, optionally as an accelerated variant::

        clf = Classifier.load("model", variant="onnx-int8")
        clf.predict(["great film", "dull"])        # ['fresh', 'rotten']
        clf.predict_proba("great film")            # shape (1, n_classes), columns in clf.classes_ order
    """

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
            raise ModelFormatError(
                f"head has {head.n_outputs} outputs but there are {len(self.classes_)} labels"
            )

    @property
    def config(self) -> ModelConfig:
        """The model's ``fastclf.json`` (completed with the head and body when saved)."""
        return self._config

    @config.setter
    def config(self, value: ModelConfig) -> None:
        self._config = value
        self.__dict__.pop("_chunker_cache", None)  # the long-text policy may have changed

    @property
    def variant(self) -> str:
        return self.body.variant

    def embed(self, texts: str | Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings from the body, float32 ``(n, dim)``."""
        texts = check_texts(texts)
        batch_size = check_batch_size(batch_size)
        if not texts:
            return np.zeros((0, self.head.dim), dtype=np.float32)
        chunker = self._chunker()
        if chunker is None:
            return self.body.encode(texts, batch_size=batch_size)
        return chunker.embed(texts, lambda pieces: self.body.encode(pieces, batch_size=batch_size))

    def _chunker(self):
        """The long-text splitter of this model (fastclf.json ``long_texts``), or None when the
        body has no fast tokenizer. A model saved before long texts were split, or ``mode:
        truncate``, embeds the first window only: its chunker only cuts the texts."""
        if not hasattr(self, "_chunker_cache"):
            from fastclf.chunking import Chunker, window_of

            policy = self.config.long_texts
            window = window_of(self.body)
            chunker = None
            if window is not None:
                split = policy is not None and policy.mode == "chunk"
                chunker = Chunker(window[0], window[1], max_chunks=policy.max_chunks if split else 1, split=split)
            self._chunker_cache = chunker
        return self._chunker_cache

    def predict_proba(self, texts: str | Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, columns in :attr:`classes_` order, calibrated
        when the model holds a calibration (fastclf.json ``calibration``).

        For a multi-label model each column is that label's independent probability.
        """
        return self.proba_of(self.embed(texts, batch_size=batch_size))

    def proba_of(self, embeddings: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """The head's probabilities of ``embeddings``, through the model's calibration map unless
        ``calibrated`` is False: the one place the map is applied."""
        cal = self.config.calibration
        temperature = np.asarray(cal.temperature) if calibrated and cal is not None else 1.0
        return self.head.predict_proba(embeddings, temperature=temperature)

    def predict(self, texts: str | Sequence[str], *, batch_size: int = 32, min_confidence: float | None = None,
                unsure_label: str = UNSURE) -> list:
        """Predicted label for each text; a list of labels for each text if multi-label. With
        ``min_confidence``, a text whose :meth:`confidence` is below it gets ``unsure_label``
        instead (for a multi-label model, in place of its list).

        Raises:
            DataError: ``min_confidence`` not from 0 to 1, or ``unsure_label`` is one of the labels.
        """
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

    def confidence(self, proba: np.ndarray) -> np.ndarray:
        """How sure each answer is: the top label's probability; for a multi-label model, the
        least sure of its per-label decisions (``max(p, 1 - p)`` over the labels)."""
        proba = np.asarray(proba)
        return np.maximum(proba, 1 - proba).min(axis=1) if self.multi_label else proba.max(axis=1)

    def predict_set(self, texts: str | Sequence[str], *, coverage: float = 0.9, batch_size: int = 32) -> list[list[str]]:
        """For each text, the labels of its split-conformal prediction set at ``coverage``: the
        set holds the true label with probability at least ``coverage``, on average over texts
        drawn like the held-out examples of the cross-validation (exchangeable data); not for
        each text. Labels in decreasing probability; the top label is always in it.

        Raises:
            DataError: ``coverage`` not strictly between 0 and 1, a multi-label model, or a
                model without calibration (trained before it, or on too few examples).
        """
        check_answer(self.config, coverage=coverage)
        return self.sets_from_proba(self.predict_proba(texts, batch_size=batch_size), coverage)

    def sets_from_proba(self, proba: np.ndarray, coverage: float) -> list[list[str]]:
        """:meth:`predict_set`'s answer for (calibrated) probabilities ``proba``."""
        check_answer(self.config, coverage=coverage)
        assert self.config.calibration is not None  # checked
        floor = 1.0 - self.config.calibration.conformal_threshold(coverage)
        sets = []
        for row in np.asarray(proba):
            order = np.argsort(-row, kind="stable")
            sets.append([str(self.classes_[i]) for n, i in enumerate(order) if n == 0 or row[i] >= floor])
        return sets

    # ------------------------------------------------------------------ persistence

    @classmethod
    def load(cls, path: str | Path, variant: str | None = None) -> Classifier:
        """Load a model directory written by ``fastclf train`` (or :meth:`save`).

        ``variant=None`` loads the model's default variant: the one ``fastclf accelerate``
        recorded as ``default_variant`` in fastclf.json when its files are there, else torch-fp32.
        A variant with files loads only when ``fastclf.json`` records it (as ``fastclf info`` lists).

        Config, head and body come from one version of the model: when a concurrent
        ``fastclf train -o``/``accelerate`` replaces the directory while it is being read, the
        read starts again.

        Raises:
            ModelNotFound: the directory does not exist.
            ModelFormatError: it is corrupted, incomplete or of an unknown format version.
            UnknownVariant: ``variant`` is not a known variant name.
            VariantNotExported: the variant has not been exported into this directory.
            MissingDependency: the variant's runtime is not installed.
        """
        path = Path(path)
        if variant is not None:
            get_spec(variant)  # fail on an unknown name before any work
        for _attempt in range(_LOAD_ATTEMPTS):
            before = identity(path)
            try:
                clf = cls._load_once(path, variant)
            except (FastclfError, OSError):
                if identity(path) != before:
                    continue  # replaced while reading: read the new version
                raise
            if identity(path) == before:
                return clf
        raise ModelFormatError(f"{path} kept changing while it was loaded ({_LOAD_ATTEMPTS} tries); try again")

    @classmethod
    def _load_once(cls, path: Path, variant: str | None) -> Classifier:
        folder = ModelDir(path)
        cfg, variant = folder.config, folder.resolve(variant)
        head = LogisticHead.load(folder.head_path(variant))
        kind = cfg.head.kind
        if kind is not None and kind != head.kind:
            raise ModelFormatError(f"{path / CONFIG_FILE} says the head is {kind!r} but the head file holds {head.kind!r}")
        multi_label = cfg.multi_label
        if multi_label != (head.kind == "multilabel"):
            raise ModelFormatError(f"{path / CONFIG_FILE} says multi_label is {str(multi_label).lower()} "
                                   f"but the head is {head.kind}")
        body = load_body(folder.body_dir, variant)
        dim = _body_dim(body)
        if dim is not None and dim != head.dim:
            raise ModelFormatError(f"{path}: the body makes {dim}-dimensional embeddings but the head expects {head.dim}")
        return cls(body, head, cfg.labels, multi_label=multi_label, config=cfg, path=path, threshold=cfg.threshold)

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the model directory atomically: it appears whole or not at all, and an existing
        model is swapped for the new one in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so
        there is no moment without a model at ``path``. Files get the usual permissions (0666
        and 0777 less the umask). Leftovers of a killed earlier run are removed.

        An existing fastclf model at ``path`` is replaced; any other existing, non-empty
        directory or file is left alone and an error raised.

        Raises:
            FileExistsError: ``path`` exists and is not a fastclf model (or ``overwrite`` is False).
            WriteError: the file system refused a write (full, read-only); ``path`` is unchanged.
        """
        path = Path(path).resolve()
        check_output_dir(path, overwrite=overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        with writer_lock(path):
            remove_stale(path)
            check_output_dir(path, overwrite=overwrite)
            staging = make_staging(path)
            try:
                config = self._write(staging)
                fix_permissions(staging)
                commit_dir(staging, path)
            except BaseException as exc:
                shutil.rmtree(staging, ignore_errors=True)
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
        old = self.config
        config = old.model_copy(update=dict(
            fastclf_version=__version__,
            created=old.created or now(),
            labels=tuple(str(c) for c in self.classes_),
            multi_label=self.multi_label,
            threshold=float(self.threshold),
            head=HeadConfig(file=HEAD_FILE, kind=self.head.kind, dim=self.head.dim),
            body=BodyConfig.from_dict({"path": BODY_DIR, **body_info(body_out)}, out / CONFIG_FILE),
            body_id=uuid.uuid4().hex,  # a new body: accelerate checks it before it commits
        ))
        config.write(out)
        return config


_LOAD_ATTEMPTS = 5


def _write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the file system refusing a write (full, read-only): an OSError, or
    safetensors' error, which wraps the OS error."""
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
