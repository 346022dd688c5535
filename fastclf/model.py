"""The Classifier: a body that turns texts into embeddings plus a head that turns
embeddings into labels. Accelerated variants swap the body and keep everything else.

This module never imports the training code, nor torch unless a torch variant is used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._util import atomic_write_text, current_umask
from .backends import REFERENCE, VARIANTS, Body, declared_pooling_modes, get_spec, is_exported, load_body
from .errors import FastclfError, ModelFormatError, ModelNotFound, VariantNotExported, first_line
from .head import LogisticHead
from .safety import inside
from .texts import check_batch_size, check_texts

FORMAT = "fastclf"
FORMAT_VERSION = 1
CONFIG_FILE = "fastclf.json"
HEAD_FILE = "head.safetensors"
BODY_DIR = "body"


def _as_list(texts: str | Sequence[str]) -> list[str]:
    """The texts as a list, checked by :func:`fastclf.texts.check_texts` (the one place that does)."""
    return check_texts(texts)


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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{cfg_path} is corrupted: {first_line(exc)}") from None
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
    if len(set(labels)) != len(labels):
        raise ModelFormatError(f"{cfg_path} is corrupted: 'labels' has duplicates")
    _check_config_fields(path, cfg_path, cfg)
    if not (path / BODY_DIR).is_dir():
        raise ModelFormatError(f"model directory is incomplete: {BODY_DIR}/ is missing in {path}")
    return cfg


def _check_config_fields(path: Path, cfg_path: Path, cfg: dict[str, Any]) -> None:
    """The fields that loading reads: their types, ranges, and paths that stay inside ``path``."""
    head = cfg.get("head", {})
    if not isinstance(head, dict):
        raise ModelFormatError(f"{cfg_path} is corrupted: 'head' must be an object")
    inside(path, head.get("file", HEAD_FILE), "head.file", cfg_path)
    body = cfg.get("body", {})
    if not isinstance(body, dict):
        raise ModelFormatError(f"{cfg_path} is corrupted: 'body' must be an object")
    body_path = body.get("path", BODY_DIR)
    inside(path, body_path, "body.path", cfg_path)
    if body_path != BODY_DIR and Path(body_path) != Path(BODY_DIR):
        raise ModelFormatError(f"{cfg_path}: body.path must be {BODY_DIR!r}, got {body_path!r}")
    threshold = cfg.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= float(threshold) <= 1.0:
        raise ModelFormatError(f"{cfg_path} is corrupted: 'threshold' must be a number from 0 to 1, got {threshold!r}")
    if not isinstance(cfg.get("multi_label", False), bool):
        raise ModelFormatError(f"{cfg_path} is corrupted: 'multi_label' must be true or false")
    variants = cfg.get("variants", {})
    if variants is None:
        variants = {}
    if not isinstance(variants, dict):
        raise ModelFormatError(f"{cfg_path} is corrupted: 'variants' must be an object")
    for name, entry in variants.items():
        if isinstance(entry, dict) and "files" in entry:
            files = entry["files"]
            if not isinstance(files, list):
                raise ModelFormatError(f"{cfg_path} is corrupted: variants.{name}.files must be a list")
            for f in files:
                inside(path / BODY_DIR, f, f"variants.{name}.files entry", cfg_path)
    default = cfg.get("default_variant")
    if default is not None and not isinstance(default, str):
        raise ModelFormatError(f"{cfg_path} is corrupted: 'default_variant' must be a variant name")


def write_config(path: Path, cfg: dict[str, Any]) -> None:
    """Replace ``fastclf.json`` atomically."""
    atomic_write_text(Path(path) / CONFIG_FILE, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def exported_variants(model_dir: str | Path, cfg: dict[str, Any] | None = None) -> list[str]:
    """torch-fp32 plus every variant recorded in the model's ``fastclf.json`` (``cfg``, read if
    not given) whose files exist, in the registry's order."""
    recorded = (read_config(model_dir) if cfg is None else cfg).get("variants") or {}
    if not isinstance(recorded, dict):
        recorded = {}
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
        batch_size = check_batch_size(batch_size)
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
            before = _identity(path)
            try:
                clf = cls._load_once(path, variant)
            except (FastclfError, OSError):
                if _identity(path) != before:
                    continue  # replaced while reading: read the new version
                raise
            if _identity(path) == before:
                return clf
        raise ModelFormatError(f"{path} kept changing while it was loaded ({_LOAD_ATTEMPTS} tries); try again")

    @classmethod
    def _load_once(cls, path: Path, variant: str | None) -> Classifier:
        cfg = read_config(path)
        if variant is None:
            variant = default_variant(path, cfg)
        elif get_spec(variant).files and variant not in exported_variants(path, cfg):
            recorded = variant in (cfg.get("variants") or {})
            raise VariantNotExported(
                f"variant {variant!r} is not exported in this model"
                + (" (its files are missing)" if recorded else " (not recorded in fastclf.json)")
                + f"; create it with: fastclf accelerate {path} --variant {variant}"
            )
        head_info = cfg.get("head", {})
        head = LogisticHead.load(inside(path, head_info.get("file", HEAD_FILE), "head.file", path / CONFIG_FILE))
        kind = head_info.get("kind")
        if kind is not None and kind != head.kind:
            raise ModelFormatError(f"{path / CONFIG_FILE} says the head is {kind!r} but the head file holds {head.kind!r}")
        multi_label = bool(cfg.get("multi_label"))
        if multi_label != (head.kind == "multilabel"):
            raise ModelFormatError(f"{path / CONFIG_FILE} says multi_label is {str(multi_label).lower()} "
                                   f"but the head is {head.kind}")
        body = load_body(path / BODY_DIR, variant)
        dim = _body_dim(body)
        if dim is not None and dim != head.dim:
            raise ModelFormatError(f"{path}: the body makes {dim}-dimensional embeddings but the head expects {head.dim}")
        return cls(body, head, cfg["labels"], multi_label=multi_label, config=cfg, path=path,
                   threshold=float(cfg.get("threshold", 0.5)))

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the model directory atomically: it appears whole or not at all, and an existing
        model is swapped for the new one in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so
        there is no moment without a model at ``path``. Files get the usual permissions (0666
        and 0777 less the umask). Leftovers of a killed earlier run are removed.

        An existing fastclf model at ``path`` is replaced; any other existing, non-empty
        directory or file is left alone and an error raised.

        Raises:
            FileExistsError: ``path`` exists and is not a fastclf model (or ``overwrite`` is False).
        """
        path = Path(path).resolve()
        check_output_dir(path, overwrite=overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        with writer_lock(path):
            remove_stale(path)
            check_output_dir(path, overwrite=overwrite)
            staging = make_staging(path)
            try:
                self._write(staging)
                cfg = json.loads((staging / CONFIG_FILE).read_text(encoding="utf-8"))
                cfg["body_id"] = uuid.uuid4().hex  # a new body: accelerate checks it before it commits
                write_config(staging, cfg)
                fix_permissions(staging)
                commit_dir(staging, path)
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


# ---------------------------------------------------------------------- atomic model directories
#
# A model directory is never changed in place. A writer (save, accelerate) builds the new
# version in a staging folder beside it (``.NAME.tmp-<pid>-*``) and swaps it with the live one
# in one rename. A reader notes the directory's identity (device, inode) before and after
# reading: a change means it read across a swap, and it reads again.

_LOAD_ATTEMPTS = 5
STALE_SECONDS = 600  # leftovers without a recorded owner are removed after this long
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _body_dim(body: Body) -> int | None:
    """The embedding size a body declares, when it declares one."""
    try:
        dim = getattr(body, "dim", None)
        if dim is None and hasattr(body, "model"):
            dim = body.model.get_sentence_embedding_dimension()
    except Exception:  # a body without the notion: checked at the first predict instead
        return None
    return int(dim) if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) else None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_output_dir(path: Path, *, overwrite: bool = True) -> None:
    """Refuse to write a model over something that is not a fastclf model.

    Raises:
        FileExistsError: ``path`` is a file, or a non-empty directory without ``fastclf.json``
            (or any existing model when ``overwrite`` is False).
    """
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    if not path.is_dir() or not overwrite or not (path / CONFIG_FILE).is_file():
        raise FileExistsError(f"{path} exists and is not a fastclf model; choose another output directory")


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Serialize the writers of models in ``path``'s parent folder (an advisory ``flock`` on
    the folder itself: no lock file is left behind). Readers never wait."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(Path(path).parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def make_staging(path: Path) -> Path:
    """A new, empty staging folder beside ``path``, named with this process's id."""
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(path, "tmp"), dir=path.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    return staging


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False when the system
    cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def commit_dir(staging: Path, path: Path) -> None:
    """Put the complete folder ``staging`` at ``path``: a rename when ``path`` is absent or an
    empty folder, else an atomic swap; the old version is then deleted. ``staging`` is gone
    afterwards."""
    if not path.exists():
        os.replace(staging, path)
        return
    if _exchange(staging, path):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old version
        return
    try:  # a folder that is empty can be renamed over
        os.replace(staging, path)
        return
    except OSError:
        pass
    # no atomic swap on this system: a short moment without a folder at ``path``
    old = Path(tempfile.mkdtemp(prefix=staging_prefix(path, "old"), dir=path.parent))
    os.replace(path, old / "model")
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def fix_permissions(root: Path) -> None:
    """Give the files below ``root`` 0666 and its folders 0777, less the umask (temporary
    files are created 0600, which would hide a model from the other users of a server)."""
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o777 & ~mask)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


#: the owner's pid in a leftover's name: ``...-<pid>-<random>`` (mkdtemp's random part has no dash)
_OWNER_RE = re.compile(r"(?:^|-)(\d+)-[a-z0-9_]*$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _stale(entry: Path, rest: str, now: float) -> bool:
    """Whether a leftover is abandoned: its owner (the pid in its name) is dead, or, for a
    name without an owner (older fastclf), it is older than :data:`STALE_SECONDS`."""
    m = _OWNER_RE.search(rest)
    if m:
        return not _pid_alive(int(m.group(1)))
    try:
        age = now - entry.lstat().st_mtime
    except OSError:
        return False
    return age > STALE_SECONDS


def staging_prefix(path: Path, what: str) -> str:
    """The name prefix of a staging folder beside the model ``path`` (``tmp``, or
    ``staging-<variant>`` for an export), with this process's id as its owner."""
    return f".{Path(path).name}.{what}-{os.getpid()}-"


def remove_stale(path: Path) -> list[Path]:
    """Remove what killed runs left: ``.NAME.tmp-*``, ``.NAME.old-*`` and ``.NAME.staging-*``
    beside the model, and older fastclf's ``.staging-*`` inside it. A concurrent run's folders
    (owner alive, or recent when the name has no owner) are kept. Returns what was removed."""
    path = Path(path)
    now = time.time()
    removed: list[Path] = []
    candidates: list[tuple[Path, str]] = []
    prefixes = (f".{path.name}.tmp-", f".{path.name}.old-", f".{path.name}.staging-")
    try:
        for entry in path.parent.iterdir():
            for prefix in prefixes:
                if entry.name.startswith(prefix):
                    candidates.append((entry, entry.name[len(prefix):]))
    except OSError:
        return removed
    if path.is_dir():
        try:
            candidates += [(e, e.name[len(".staging-"):]) for e in path.iterdir() if e.name.startswith(".staging-")]
        except OSError:
            pass
    for entry, rest in candidates:
        if _stale(entry, rest, now):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
            removed.append(entry)
    return removed


def link_copy(src: Path, dst: Path, *, skip: Callable[[Path], bool] = lambda p: False) -> None:
    """Copy the folder ``src`` to ``dst`` with hard links where possible (cheap, same bytes);
    the copy must then only be changed by replacing files (rename), never by writing in place."""

    def copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    def ignore(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if skip(Path(directory) / n)]

    shutil.copytree(src, dst, copy_function=copy, ignore=ignore, symlinks=True, dirs_exist_ok=True)
