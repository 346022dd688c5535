"""The Classifier: a body that turns texts into embeddings plus a head that turns
embeddings into labels. Accelerated variants swap the body and keep everything else.

This module never imports the training code, nor torch unless a torch variant is used.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._util import atomic_write_text, current_umask
from .backends import REFERENCE, VARIANTS, Body, get_spec, is_exported, load_body
from .backends._numpy_pipeline import declared_pooling_modes
from .errors import ModelFormatError, ModelNotFound
from .head import LogisticHead

FORMAT = "fastclf"
FORMAT_VERSION = 1
CONFIG_FILE = "fastclf.json"
HEAD_FILE = "head.safetensors"
BODY_DIR = "body"


def _as_list(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings; item {i} is {type(t).__name__}")
    return texts


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a model directory's ``fastclf.json``.

    Raises:
        ModelNotFound: the directory does not exist.
        ModelFormatError: it is not a fastclf model, is corrupted, or has an unknown format version.
    """
    path = Path(path)
    if not path.exists():
        raise ModelNotFound(f"model directory not found: {path}")
    if not path.is_dir():
        raise ModelFormatError(f"{path} is not a model directory")
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelFormatError(f"{path} is not a fastclf model ({CONFIG_FILE} is missing); train one with: fastclf train DATA")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{cfg_path} is corrupted: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ModelFormatError(f"{cfg_path} is not a fastclf model config")
    version = cfg.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} has model format version {version!r}; this fastclf ({__version__}) reads "
            f"version {FORMAT_VERSION}: use the fastclf version that wrote it, or retrain"
        )
    labels = cfg.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise ModelFormatError(f"{cfg_path} is corrupted: 'labels' must be a list of at least two strings")
    if not (path / BODY_DIR).is_dir():
        raise ModelFormatError(f"model directory is incomplete: {BODY_DIR}/ is missing in {path}")
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> None:
    """Replace ``fastclf.json`` atomically."""
    atomic_write_text(Path(path) / CONFIG_FILE, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def exported_variants(model_dir: str | Path, cfg: dict[str, Any] | None = None) -> list[str]:
    """torch-fp32 plus every variant recorded in the model's ``fastclf.json`` (``cfg``, read if
    not given) whose files exist, in the registry's order."""
    recorded = (read_config(model_dir) if cfg is None else cfg).get("variants") or {}
    body_dir = Path(model_dir) / BODY_DIR
    return [REFERENCE] + [v for v in VARIANTS if v != REFERENCE and v in recorded and is_exported(body_dir, v)]


def default_variant(model_dir: str | Path, cfg: dict[str, Any] | None = None) -> str:
    """The variant :meth:`Classifier.load` uses when none is named: the recorded
    ``default_variant`` if it is exported here, else torch-fp32."""
    cfg = read_config(model_dir) if cfg is None else cfg
    chosen = cfg.get("default_variant")
    exported = exported_variants(model_dir, cfg)
    if isinstance(chosen, str) and chosen in exported:
        # accelerate --auto: a variant that needs an ISA this CPU lacks falls back (warning logged once)
        from .backends import variant_for_this_cpu

        fallback = variant_for_this_cpu(chosen, cfg.get("default_variant_choice"))
        if fallback == chosen or fallback == REFERENCE or is_exported(Path(model_dir) / BODY_DIR, fallback):
            return fallback  # openvino-bf16 -> openvino-fp32: the same files
        return REFERENCE
    return REFERENCE


def body_info(body_dir: Path) -> dict[str, Any]:
    """Pooling, normalization, max length and module list read from a sentence-transformers folder."""
    body_dir = Path(body_dir)
    info: dict[str, Any] = {}
    try:
        modules = json.loads((body_dir / "modules.json").read_text())
    except (OSError, json.JSONDecodeError):
        return info
    info["modules"] = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    info["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    for m in modules:
        if m.get("type", "").endswith("Pooling"):
            pool_path = body_dir / m.get("path", "") / "config.json"
            try:
                pcfg = json.loads(pool_path.read_text())
                modes = declared_pooling_modes(pcfg, pool_path)
            except (OSError, json.JSONDecodeError, ModelFormatError):
                continue
            info["pooling"] = "+".join(modes) or "none"
            info["dim"] = pcfg.get("embedding_dimension", pcfg.get("word_embedding_dimension"))
    try:
        info["max_seq_length"] = json.loads((body_dir / "sentence_bert_config.json").read_text()).get(
            "max_seq_length"
        )
    except (OSError, json.JSONDecodeError):
        pass
    return info


class Classifier:
    """A few-shot text classifier: ``body`` (texts -> embeddings) + ``head`` (embeddings -> labels).

    Use :meth:`load` to open a saved model directory, optionally as an accelerated variant::

        clf = Classifier.load("model", variant="onnx-int8")
        clf.predict(["great film", "dull"])        # ['fresh', 'rotten']
        clf.predict_proba("great film")            # shape (1, n_classes), columns in clf.classes_ order
    """

    def __init__(self, body: Body, head: LogisticHead, labels: Sequence[str], *, multi_label: bool = False,
                 config: dict[str, Any] | None = None, path: Path | None = None, threshold: float = 0.5):
        self.body = body
        self.head = head
        self.classes_ = np.array(list(labels), dtype=object)
        self.multi_label = multi_label
        self.config = config or {}
        self.path = path
        self.threshold = threshold
        if head.n_outputs != len(self.classes_):
            raise ModelFormatError(
                f"head has {head.n_outputs} outputs but there are {len(self.classes_)} labels"
            )

    @property
    def variant(self) -> str:
        return self.body.variant

    def embed(self, texts: str | Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings from the body, float32 ``(n, dim)``."""
        texts = _as_list(texts)
        if not texts:
            return np.zeros((0, self.head.dim), dtype=np.float32)
        chunker = self._chunker()
        if chunker is None:
            return self.body.encode(texts, batch_size=batch_size)
        return chunker.embed(texts, lambda pieces: self.body.encode(pieces, batch_size=batch_size))

    def _chunker(self):
        """The long-text splitter of this model (fastclf.json ``long_texts``), or None: a model
        saved before long texts were split, or ``mode: truncate``, embeds the first window only."""
        if not hasattr(self, "_chunker_cache"):
            from .chunking import DEFAULT_MAX_CHUNKS, Chunker, window_of

            policy = self.config.get("long_texts") or {}
            chunker = None
            if isinstance(policy, dict) and policy.get("mode") == "chunk":
                window = window_of(self.body)
                if window is not None:
                    max_chunks = policy.get("max_chunks", DEFAULT_MAX_CHUNKS)
                    if not isinstance(max_chunks, int) or isinstance(max_chunks, bool) or max_chunks < 1:
                        raise ModelFormatError(f"long_texts.max_chunks must be a positive integer, got {max_chunks!r}")
                    chunker = Chunker(window[0], window[1], max_chunks=max_chunks)
            self._chunker_cache = chunker
        return self._chunker_cache

    def predict_proba(self, texts: str | Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, columns in :attr:`classes_` order.

        For a multi-label model each column is that label's independent probability.
        """
        emb = self.embed(texts, batch_size=batch_size)
        if len(emb) == 0:
            return np.zeros((0, len(self.classes_)))
        return self.head.predict_proba(emb)

    def predict(self, texts: str | Sequence[str], *, batch_size: int = 32) -> list:
        """Predicted label for each text; a list of labels for each text if multi-label."""
        return self.labels_from_proba(self.predict_proba(texts, batch_size=batch_size))

    def labels_from_proba(self, proba: np.ndarray) -> list:
        if self.multi_label:
            return [[str(c) for c in self.classes_[row >= self.threshold]] for row in proba]
        return [str(self.classes_[i]) for i in np.argmax(proba, axis=1)]

    # ------------------------------------------------------------------ persistence

    @classmethod
    def load(cls, path: str | Path, variant: str | None = None) -> Classifier:
        """Load a model directory written by ``fastclf train`` (or :meth:`save`).

        ``variant=None`` loads the model's default variant: the one ``fastclf accelerate``
        recorded as ``default_variant`` in fastclf.json when its files are there, else torch-fp32.

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
        cfg = read_config(path)
        if variant is None:
            variant = default_variant(path, cfg)
        head = LogisticHead.load(path / cfg.get("head", {}).get("file", HEAD_FILE))
        body = load_body(path / BODY_DIR, variant)
        return cls(body, head, cfg["labels"], multi_label=bool(cfg.get("multi_label")), config=cfg, path=path,
                   threshold=float(cfg.get("threshold", 0.5)))

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the model directory atomically: it appears whole or not at all.

        An existing fastclf model at ``path`` is replaced; any other existing, non-empty
        directory or file is left alone and an error raised.

        Raises:
            FileExistsError: ``path`` exists and is not a fastclf model (or ``overwrite`` is False).
        """
        path = Path(path).resolve()
        if path.exists():
            empty_dir = path.is_dir() and not any(path.iterdir())
            if not empty_dir and (not overwrite or not (path / CONFIG_FILE).is_file()):
                raise FileExistsError(f"{path} exists and is not a fastclf model; choose another output directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        os.chmod(staging, 0o777 & ~current_umask())
        try:
            self._write(staging)
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                os.replace(path, old / "model")
                os.replace(staging, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.path = path
        return path

    def _write(self, out: Path) -> None:
        body_out = out / BODY_DIR
        if self.path is not None and (Path(self.path) / BODY_DIR).is_dir():
            shutil.copytree(Path(self.path) / BODY_DIR, body_out)
        elif hasattr(self.body, "save"):
            self.body.save(body_out)
        else:
            raise ValueError("this classifier's body cannot be saved: it was not loaded from a directory")
        self.head.save(out / HEAD_FILE)
        cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.config}
        cfg.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            fastclf_version=__version__,
            labels=[str(c) for c in self.classes_],
            multi_label=self.multi_label,
            threshold=self.threshold,
            head={"file": HEAD_FILE, "kind": self.head.kind, "dim": self.head.dim},
            body={"path": BODY_DIR, **body_info(body_out)},
        )
        cfg.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        cfg.setdefault("variants", {})
        write_config(out, cfg)
