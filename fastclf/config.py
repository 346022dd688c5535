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

The sections below the top level (head, body, long_texts, calibration, training, variants) are in
:mod:`fastclf.config_sections`, re-exported here. Only the standard library and fastclf's own
light modules are imported.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastclf._util import atomic_write_text
from fastclf.config_sections import (  # noqa: F401  (re-exported: the sections are part of the config's API)
    BODY_DIR,
    DEFAULT_MAX_CHUNKS,
    HEAD_FILE,
    BodyConfig,
    Calibration,
    Check,
    Extra,
    HeadConfig,
    LongTexts,
    TrainingRecord,
    VariantRecord,
    corrupted,
    dump_record,
    is_dict,
    is_num,
    is_str,
    now,
    split_known,
)
from fastclf.errors import ModelFormatError, ModelNotFound, first_line
from fastclf.safety import check_file, inside

FORMAT = "fastclf"
FORMAT_VERSION = 1
CONFIG_FILE = "fastclf.json"

#: ModelConfig's own fields read leniently (informational): key -> check
_INFO_CHECKS: dict[str, Check] = {"fastclf_version": is_str, "created": is_str, "base_model": is_str,
                                  "body_id": is_str, "versions": is_dict, "training": is_dict,
                                  "default_variant_choice": is_dict}
_STRICT_KEYS = ("format", "format_version", "labels", "multi_label", "threshold", "head", "body", "long_texts",
                "variants", "default_variant", "calibration")


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
    calibration: Calibration | None = None  # None: the head's scores are used as they are
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
        from fastclf._version import __version__

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
            raise corrupted(source, "'labels' must be a list of at least two strings")
        if len(set(labels)) != len(labels):
            raise corrupted(source, "'labels' has duplicates")
        threshold = data.get("threshold", 0.5)
        if not is_num(threshold) or not 0.0 <= float(threshold) <= 1.0:
            raise corrupted(source, f"'threshold' must be a number from 0 to 1, got {threshold!r}")
        if not isinstance(data.get("multi_label", False), bool):
            raise corrupted(source, "'multi_label' must be true or false")
        variants = data.get("variants") or {}
        if not isinstance(variants, dict):
            raise corrupted(source, "'variants' must be an object")
        default = data.get("default_variant")
        if default is not None and not isinstance(default, str):
            raise corrupted(source, "'default_variant' must be a variant name")
        calibration = Calibration.from_dict(data.get("calibration"), source)
        if calibration is not None and len(calibration.temperature) not in (1, len(labels)):
            raise corrupted(source, f"calibration.temperature has {len(calibration.temperature)} values for "
                                    f"{len(labels)} labels")
        info, extra = split_known({k: v for k, v in data.items() if k not in _STRICT_KEYS}, _INFO_CHECKS)
        training = info.pop("training", None)
        return cls(
            labels=tuple(labels), multi_label=data.get("multi_label", False), threshold=float(threshold),
            head=HeadConfig.from_dict(data.get("head", {}), source),
            body=BodyConfig.from_dict(data.get("body", {}), source),
            long_texts=LongTexts.from_dict(data.get("long_texts"), source),
            calibration=calibration,
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
        check_file(cfg_path, path)
        try:
            data = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise corrupted(cfg_path, first_line(exc)) from None
        cfg = cls.from_dict(data, cfg_path)
        if not inside(path, cfg.head.file, "head.file", cfg_path).is_file():
            raise ModelFormatError(f"model directory is incomplete: {cfg.head.file} is missing in {path}")
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
        out.update(dump_record({"fastclf_version": self.fastclf_version, "created": self.created}, {}))
        out.update(labels=list(self.labels), multi_label=self.multi_label, threshold=self.threshold)
        if self.base_model is not None:
            out["base_model"] = self.base_model
        out.update(head=self.head.to_dict(), body=self.body.to_dict())
        if self.long_texts is not None:
            out["long_texts"] = self.long_texts.to_dict()
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dict()
        if self.training is not None:
            out["training"] = self.training.to_dict()
        out.update(dump_record({"versions": self.versions}, {}))
        out["variants"] = {k: v.to_dict() for k, v in self.variants.items()}
        out.update(dump_record({"default_variant": self.default_variant,
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
