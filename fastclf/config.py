"""``fastclf.json``, the description of a model directory, owned by one class: :class:`ModelConfig`.

The file is read and checked once (:meth:`ModelConfig.read`), passed around as frozen
dataclasses, changed by building new ones (``with_variant``, ``with_eval``, :func:`dataclasses.replace`)
and written in one place (:meth:`ModelConfig.write`, a temporary file renamed over the old one).

Format version 1 is the format fastclf has always written: every field it holds keeps its
key. The fields that loading relies on (labels, threshold, head, body, variant files...) are
checked strictly and a bad one raises :class:`~fastclf.errors.ModelFormatError` naming the file
and the field. The records that only describe the model (training, versions, the parity
figures) are read leniently: a value of an unexpected type is not exposed as a typed field but
kept, like every unknown key, in ``extra`` and written back unchanged.

Only the standard library and fastclf's own light modules are imported here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._util import atomic_write_text
from .errors import ModelFormatError, ModelNotFound, first_line
from .safety import inside

FORMAT = "fastclf"
FORMAT_VERSION = 1
CONFIG_FILE = "fastclf.json"
HEAD_FILE = "head.safetensors"
BODY_DIR = "body"
DEFAULT_MAX_CHUNKS = 16  # the same as fastclf.chunking.DEFAULT_MAX_CHUNKS (not imported: it needs numpy)

Check = Callable[[Any], bool]
Extra = Mapping[str, Any]


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _lenient(data: Mapping[str, Any], checks: Mapping[str, Check]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``data`` into (the known keys whose value passes its check, everything else)."""
    known = {k: v for k, v in data.items() if k in checks and checks[k](v)}
    return known, {k: v for k, v in data.items() if k not in known}


def _dump(typed: Mapping[str, Any], extra: Extra, *, keep_none: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record as JSON data: the typed fields (None left out unless in ``keep_none``), then ``extra``."""
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in typed.items() if v is not None or k in keep_none}
    out.update(extra)
    return out


def _fail(source: Path | str, message: str) -> ModelFormatError:
    return ModelFormatError(f"{source} is corrupted: {message}")


def now() -> str:
    """The current UTC time as fastclf.json writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class HeadConfig:
    """``head``: the head's file (inside the model folder), its kind and input size."""

    file: str = HEAD_FILE
    kind: str | None = None
    dim: int | None = None
    extra: Extra = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, source: Path | str) -> HeadConfig:
        if not isinstance(data, dict):
            raise _fail(source, "'head' must be an object")
        if not isinstance(data.get("file", HEAD_FILE), str):
            raise ModelFormatError(f"{source}: head.file must be a relative path string, got {data['file']!r}")
        if data.get("kind") is not None and not isinstance(data["kind"], str):
            raise _fail(source, f"head.kind must be a string, got {data['kind']!r}")
        known, extra = _lenient(data, {"file": _is_str, "kind": _is_str, "dim": _is_int})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return _dump({"file": self.file, "kind": self.kind, "dim": self.dim}, self.extra)


@dataclass(frozen=True)
class BodyConfig:
    """``body``: the sentence-transformers folder and what it declares (as read when saved)."""

    path: str = BODY_DIR
    modules: tuple[str, ...] | None = None
    normalize: bool | None = None
    pooling: str | None = None
    dim: int | None = None
    max_seq_length: int | None = None
    extra: Extra = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, source: Path | str) -> BodyConfig:
        if not isinstance(data, dict):
            raise _fail(source, "'body' must be an object")
        path = data.get("path", BODY_DIR)
        if not isinstance(path, str):
            raise ModelFormatError(f"{source}: body.path must be a relative path string, got {path!r}")
        if path != BODY_DIR and Path(path) != Path(BODY_DIR):
            raise ModelFormatError(f"{source}: body.path must be {BODY_DIR!r}, got {path!r}")
        known, extra = _lenient(data, {"path": _is_str, "modules": _is_strs, "normalize": _is_bool,
                                       "pooling": _is_str, "dim": _is_int, "max_seq_length": _is_int})
        if "modules" in known:
            known["modules"] = tuple(known["modules"])
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return _dump({k: getattr(self, k) for k in ("path", "modules", "normalize", "pooling", "dim",
                                                    "max_seq_length")}, self.extra)


@dataclass(frozen=True)
class LongTexts:
    """``long_texts``: ``mode`` "chunk" embeds every window of a long text (at most
    ``max_chunks``) and pools them; any other mode embeds the first window only."""

    mode: str = "chunk"
    max_chunks: int = DEFAULT_MAX_CHUNKS
    extra: Extra = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, source: Path | str) -> LongTexts | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise _fail(source, "'long_texts' must be an object")
        if not isinstance(data.get("mode", "chunk"), str):
            raise _fail(source, f"long_texts.mode must be a string, got {data['mode']!r}")
        max_chunks = data.get("max_chunks", DEFAULT_MAX_CHUNKS)
        if not _is_int(max_chunks) or max_chunks < 1:
            raise _fail(source, f"long_texts.max_chunks must be a positive integer, got {max_chunks!r}")
        known, extra = _lenient(data, {"mode": _is_str, "max_chunks": _is_int})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return _dump({"mode": self.mode, "max_chunks": self.max_chunks}, self.extra)


_TRAINING_CHECKS: dict[str, Check] = {
    "settings": _is_dict, "selection": _is_dict, "examples": _is_int, "examples_per_class": _is_dict,
    "long_texts": _is_int, "seconds": _is_num, "seconds_by_step": _is_dict, "source": _is_str,
    "source_path": _is_str, "text_column": _is_str, "label_columns": _is_strs, "eval": _is_dict,
}


@dataclass(frozen=True)
class TrainingRecord:
    """``training``: how the model was trained (informational; read leniently)."""

    settings: Mapping[str, Any] | None = None  # TrainConfig, as trained (loss, bf16 and model resolved)
    selection: Mapping[str, Any] | None = None  # the recipe chosen and why
    examples: int | None = None
    examples_per_class: Mapping[str, int] | None = None
    long_texts: int | None = None  # training texts longer than the body's window
    seconds: float | None = None
    seconds_by_step: Mapping[str, float] | None = None
    source: str | None = None
    source_path: str | None = None  # the training file's absolute path, when it was a file
    text_column: str | None = None
    label_columns: tuple[str, ...] | None = None
    eval: Mapping[str, Any] | None = None  # data, n, accuracy, macro_f1 of the evaluation after training
    extra: Extra = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingRecord:
        known, extra = _lenient(data, _TRAINING_CHECKS)
        if "label_columns" in known:
            known["label_columns"] = tuple(known["label_columns"])
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        typed = {k: getattr(self, k) for k in _TRAINING_CHECKS}
        return _dump(typed, self.extra, keep_none=tuple(k for k in _TRAINING_CHECKS if k != "eval"))


_VARIANT_CHECKS: dict[str, Check] = {
    "n": _is_int, "agreement": _is_num, "max_proba_diff": _is_num, "mean_cosine": _is_num, "min_cosine": _is_num,
    "flips": _is_int, "gate": _is_dict, "min_agreement": _is_num, "exported": _is_str, "seconds": _is_num,
    "files": _is_strs, "runtime": _is_dict, "calibration": _is_dict, "kept_below_tolerance": _is_bool,
    "gate_failure": _is_str,
}


@dataclass(frozen=True)
class VariantRecord:
    """``variants.NAME``: an exported variant, its files (inside ``body/``) and its parity with
    torch-fp32 on the check texts (see :mod:`fastclf.accelerate`)."""

    files: tuple[str, ...] = ()
    n: int | None = None  # check texts
    agreement: float | None = None  # share of texts with torch-fp32's label
    max_proba_diff: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None
    flips: int | None = None
    gate: Mapping[str, Any] | None = None  # the parity gate's verdict and figures
    min_agreement: float | None = None
    exported: str | None = None  # when
    seconds: float | None = None
    runtime: Mapping[str, Any] | None = None
    calibration: Mapping[str, Any] | None = None  # source and number of texts (static int8)
    kept_below_tolerance: bool = False
    gate_failure: str | None = None
    extra: Extra = field(default_factory=dict)
    unparsed: Any = None  # an entry that is not an object (kept as it was; it records no figures)

    @classmethod
    def from_value(cls, name: str, data: Any, source: Path | str) -> VariantRecord:
        if not isinstance(data, dict):
            return cls(unparsed=data)
        if "files" in data and not isinstance(data["files"], list):
            raise _fail(source, f"variants.{name}.files must be a list")
        for f in data.get("files", []):
            if not isinstance(f, str) or "\x00" in f:
                raise ModelFormatError(f"{source}: variants.{name}.files entry must be a relative path string, "
                                       f"got {f!r}")
        known, extra = _lenient(data, _VARIANT_CHECKS)
        if "files" in known:
            known["files"] = tuple(known["files"])
        return cls(**known, extra=extra)

    @property
    def has_figures(self) -> bool:
        return self.agreement is not None and self.mean_cosine is not None

    def to_dict(self) -> Any:
        if self.unparsed is not None:
            return self.unparsed
        typed = {k: getattr(self, k) for k in _VARIANT_CHECKS}
        if not typed["kept_below_tolerance"]:
            typed["kept_below_tolerance"] = None
        return _dump(typed, self.extra)


#: ModelConfig's own fields read leniently (informational): key -> check
_INFO_CHECKS: dict[str, Check] = {"fastclf_version": _is_str, "created": _is_str, "base_model": _is_str,
                                  "body_id": _is_str, "versions": _is_dict, "training": _is_dict,
                                  "default_variant_choice": _is_dict}
_STRICT_KEYS = ("format", "format_version", "labels", "multi_label", "threshold", "head", "body", "long_texts",
                "variants", "default_variant")


@dataclass(frozen=True)
class ModelConfig:
    """The contents of ``fastclf.json``. Build a changed copy with the ``with_*`` helpers or
    :func:`dataclasses.replace`; write it with :meth:`write`."""

    labels: tuple[str, ...]
    multi_label: bool = False
    threshold: float = 0.5
    format_version: int = FORMAT_VERSION
    fastclf_version: str | None = None
    created: str | None = None
    base_model: str | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    body: BodyConfig = field(default_factory=BodyConfig)
    long_texts: LongTexts | None = None  # None: a model saved before long texts were split (first window only)
    training: TrainingRecord | None = None
    versions: Mapping[str, Any] | None = None  # of the packages that trained it
    variants: Mapping[str, VariantRecord] = field(default_factory=dict)
    default_variant: str | None = None  # chosen by ``fastclf accelerate --auto``
    default_variant_choice: Mapping[str, Any] | None = None  # where and why it was chosen
    body_id: str | None = None  # a new id for every new body: an export checks it before it commits
    extra: Extra = field(default_factory=dict)  # keys this fastclf does not know, kept as they are

    # ---------------------------------------------------------------- reading

    @classmethod
    def from_dict(cls, data: Any, source: Path | str = CONFIG_FILE) -> ModelConfig:
        """Check ``data`` (fastclf.json's parsed JSON) and build the config; ``source`` names the
        file in error messages.

        Raises:
            ModelFormatError: not a fastclf config, an unknown format version, or a bad field.
        """
        from . import __version__

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelFormatError(f"{source} is not a fastclf model config")
        version = data.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise ModelFormatError(
                f"{Path(source).parent} has model format version {version!r}; this fastclf ({__version__}) reads "
                f"version {FORMAT_VERSION}: use the fastclf version that wrote it, or retrain"
            )
        labels = data.get("labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise _fail(source, "'labels' must be a list of at least two strings")
        if len(set(labels)) != len(labels):
            raise _fail(source, "'labels' has duplicates")
        threshold = data.get("threshold", 0.5)
        if not _is_num(threshold) or not 0.0 <= float(threshold) <= 1.0:
            raise _fail(source, f"'threshold' must be a number from 0 to 1, got {threshold!r}")
        if not isinstance(data.get("multi_label", False), bool):
            raise _fail(source, "'multi_label' must be true or false")
        variants = data.get("variants") or {}
        if not isinstance(variants, dict):
            raise _fail(source, "'variants' must be an object")
        default = data.get("default_variant")
        if default is not None and not isinstance(default, str):
            raise _fail(source, "'default_variant' must be a variant name")
        info, extra = _lenient({k: v for k, v in data.items() if k not in _STRICT_KEYS}, _INFO_CHECKS)
        training = info.pop("training", None)
        return cls(
            labels=tuple(labels), multi_label=data.get("multi_label", False), threshold=float(threshold),
            head=HeadConfig.from_dict(data.get("head", {}), source),
            body=BodyConfig.from_dict(data.get("body", {}), source),
            long_texts=LongTexts.from_dict(data.get("long_texts"), source),
            training=None if training is None else TrainingRecord.from_dict(training),
            variants={str(k): VariantRecord.from_value(str(k), v, source) for k, v in variants.items()},
            default_variant=default, extra=extra, **info,
        )

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelConfig:
        """Read and check a model directory's ``fastclf.json``, and that the paths it names stay
        inside the directory.

        Raises:
            ModelNotFound: the directory does not exist.
            ModelFormatError: it is not a fastclf model, is corrupted, incomplete, or has an
                unknown format version.
        """
        path = Path(model_dir)
        if not path.exists():
            raise ModelNotFound(f"model directory not found: {path}")
        if not path.is_dir():
            raise ModelFormatError(f"{path} is not a model directory")
        cfg_path = path / CONFIG_FILE
        if not cfg_path.is_file():
            raise ModelFormatError(f"{path} is not a fastclf model ({CONFIG_FILE} is missing); "
                                   "train one with: fastclf train DATA")
        try:
            data = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise _fail(cfg_path, first_line(exc)) from None
        cfg = cls.from_dict(data, cfg_path)
        inside(path, cfg.head.file, "head.file", cfg_path)
        inside(path, cfg.body.path, "body.path", cfg_path)
        for name, record in cfg.variants.items():
            for f in record.files:
                inside(path / BODY_DIR, f, f"variants.{name}.files entry", cfg_path)
        if not (path / BODY_DIR).is_dir():
            raise ModelFormatError(f"model directory is incomplete: {BODY_DIR}/ is missing in {path}")
        return cfg

    def head_path(self, model_dir: str | Path) -> Path:
        """The head file of the model in ``model_dir`` (checked to stay inside it)."""
        return inside(Path(model_dir), self.head.file, "head.file", Path(model_dir) / CONFIG_FILE)

    # ---------------------------------------------------------------- writing

    def to_dict(self) -> dict[str, Any]:
        """The JSON data of ``fastclf.json`` (the keys fastclf has always written, then ``extra``)."""
        out: dict[str, Any] = {"format": FORMAT, "format_version": self.format_version}
        out.update(_dump({"fastclf_version": self.fastclf_version, "created": self.created}, {}))
        out.update(labels=list(self.labels), multi_label=self.multi_label, threshold=self.threshold)
        if self.base_model is not None:
            out["base_model"] = self.base_model
        out.update(head=self.head.to_dict(), body=self.body.to_dict())
        if self.long_texts is not None:
            out["long_texts"] = self.long_texts.to_dict()
        if self.training is not None:
            out["training"] = self.training.to_dict()
        out.update(_dump({"versions": self.versions}, {}))
        out["variants"] = {k: v.to_dict() for k, v in self.variants.items()}
        out.update(_dump({"default_variant": self.default_variant,
                          "default_variant_choice": self.default_variant_choice, "body_id": self.body_id}, {}))
        out.update(self.extra)
        return out

    def write(self, model_dir: str | Path) -> None:
        """Create or replace ``model_dir/fastclf.json`` atomically (a temporary file renamed over
        it). The one place that writes the file."""
        atomic_write_text(Path(model_dir) / CONFIG_FILE, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    # ---------------------------------------------------------------- changed copies

    def with_variant(self, name: str, record: VariantRecord) -> ModelConfig:
        """A copy that records ``name`` as exported, with ``record``."""
        return dataclasses.replace(self, variants={**self.variants, name: record})

    def with_default_variant(self, name: str, choice: Mapping[str, Any]) -> ModelConfig:
        """A copy whose default variant is ``name``, chosen as ``choice`` says."""
        return dataclasses.replace(self, default_variant=name, default_variant_choice=dict(choice))

    def with_eval(self, record: Mapping[str, Any]) -> ModelConfig:
        """A copy whose training record holds ``record`` (the evaluation after training)."""
        training = self.training or TrainingRecord()
        return dataclasses.replace(self, training=dataclasses.replace(training, eval=dict(record)))


def read_config(model_dir: str | Path) -> ModelConfig:
    """:meth:`ModelConfig.read`."""
    return ModelConfig.read(model_dir)
