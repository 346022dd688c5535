"""The sections of ``fastclf.json`` below :class:`~fastclf.config.ModelConfig`: the head, the
body, the long-text setting, the training record and the variant records. Each is a frozen
dataclass that reads its JSON object (strictly where loading relies on it, leniently where it
only describes the model) and writes it back, unknown keys kept in ``extra``. Also the small
checks and helpers those readers share. Standard library only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastclf.errors import ModelFormatError

HEAD_FILE = "head.safetensors"
BODY_DIR = "body"
DEFAULT_MAX_CHUNKS = 16  # the same as fastclf.chunking.DEFAULT_MAX_CHUNKS (not imported: it needs numpy)

Check = Callable[[Any], bool]
Extra = Mapping[str, Any]


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def is_strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def split_known(data: Mapping[str, Any], checks: Mapping[str, Check]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``data`` into (the known keys whose value passes its check, everything else)."""
    known = {k: v for k, v in data.items() if k in checks and checks[k](v)}
    return known, {k: v for k, v in data.items() if k not in known}


def dump_record(typed: Mapping[str, Any], extra: Extra, *, keep_none: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record as JSON data: the typed fields (None left out unless in ``keep_none``), then ``extra``."""
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in typed.items() if v is not None or k in keep_none}
    out.update(extra)
    return out


def corrupted(source: Path | str, message: str) -> ModelFormatError:
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
            raise corrupted(source, "'head' must be an object")
        if not isinstance(data.get("file", HEAD_FILE), str):
            raise ModelFormatError(f"{source}: head.file must be a relative path string, got {data['file']!r}")
        if data.get("kind") is not None and not isinstance(data["kind"], str):
            raise corrupted(source, f"head.kind must be a string, got {data['kind']!r}")
        known, extra = split_known(data, {"file": is_str, "kind": is_str, "dim": is_int})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return dump_record({"file": self.file, "kind": self.kind, "dim": self.dim}, self.extra)


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
            raise corrupted(source, "'body' must be an object")
        path = data.get("path", BODY_DIR)
        if not isinstance(path, str):
            raise ModelFormatError(f"{source}: body.path must be a relative path string, got {path!r}")
        if path != BODY_DIR and Path(path) != Path(BODY_DIR):
            raise ModelFormatError(f"{source}: body.path must be {BODY_DIR!r}, got {path!r}")
        known, extra = split_known(data, {"path": is_str, "modules": is_strs, "normalize": is_bool,
                                       "pooling": is_str, "dim": is_int, "max_seq_length": is_int})
        if "modules" in known:
            known["modules"] = tuple(known["modules"])
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return dump_record({k: getattr(self, k) for k in ("path", "modules", "normalize", "pooling", "dim",
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
            raise corrupted(source, "'long_texts' must be an object")
        if not isinstance(data.get("mode", "chunk"), str):
            raise corrupted(source, f"long_texts.mode must be a string, got {data['mode']!r}")
        max_chunks = data.get("max_chunks", DEFAULT_MAX_CHUNKS)
        if not is_int(max_chunks) or max_chunks < 1:
            raise corrupted(source, f"long_texts.max_chunks must be a positive integer, got {max_chunks!r}")
        known, extra = split_known(data, {"mode": is_str, "max_chunks": is_int})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return dump_record({"mode": self.mode, "max_chunks": self.max_chunks}, self.extra)


_TRAINING_CHECKS: dict[str, Check] = {
    "settings": is_dict, "selection": is_dict, "examples": is_int, "examples_per_class": is_dict,
    "long_texts": is_int, "seconds": is_num, "seconds_by_step": is_dict, "source": is_str,
    "source_path": is_str, "text_column": is_str, "label_columns": is_strs, "eval": is_dict,
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
        known, extra = split_known(data, _TRAINING_CHECKS)
        if "label_columns" in known:
            known["label_columns"] = tuple(known["label_columns"])
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        typed = {k: getattr(self, k) for k in _TRAINING_CHECKS}
        return dump_record(typed, self.extra, keep_none=tuple(k for k in _TRAINING_CHECKS if k != "eval"))


_VARIANT_CHECKS: dict[str, Check] = {
    "n": is_int, "agreement": is_num, "max_proba_diff": is_num, "mean_cosine": is_num, "min_cosine": is_num,
    "flips": is_int, "gate": is_dict, "min_agreement": is_num, "exported": is_str, "seconds": is_num,
    "files": is_strs, "runtime": is_dict, "calibration": is_dict, "kept_below_tolerance": is_bool,
    "gate_failure": is_str,
}


@dataclass(frozen=True)
class VariantRecord:
    """``variants.NAME``: an exported variant, its files (inside ``body/``) and its parity with
    torch-fp32 on the check texts (see :mod:`fastclf.accelerate.export`)."""

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
            raise corrupted(source, f"variants.{name}.files must be a list")
        for f in data.get("files", []):
            if not isinstance(f, str) or "\x00" in f:
                raise ModelFormatError(f"{source}: variants.{name}.files entry must be a relative path string, "
                                       f"got {f!r}")
        known, extra = split_known(data, _VARIANT_CHECKS)
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
        return dump_record(typed, self.extra)


@dataclass(frozen=True)
class Calibration:
    """``calibration``: the map from the head's scores to calibrated probabilities, fitted on the
    out-of-fold scores of the recipe's cross-validation (:mod:`fastclf.calibration`), and the
    split-conformal scores of those texts. The head's scores are divided by ``temperature`` (one
    value, or one a label for a multi-label head) before its softmax or sigmoid: a positive
    scale, so the top label and every label at the 0.5 threshold stay as they were.
    ``conformal`` holds the sorted nonconformity scores (1 - calibrated probability of the true
    label) of ``n`` held-out texts, single-label only: a prediction set for any coverage is
    built from them at prediction time."""

    temperature: tuple[float, ...] = (1.0,)
    n: int = 0
    conformal: tuple[float, ...] = ()
    extra: Extra = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, source: Path | str) -> Calibration | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            raise corrupted(source, "'calibration' must be an object")
        temps, scores, n = data.get("temperature"), data.get("conformal", []), data.get("n", 0)
        if (not isinstance(temps, list) or not temps
                or not all(is_num(t) and 0 < t < float("inf") for t in temps)):
            raise corrupted(source, f"calibration.temperature must be a list of positive numbers, got {temps!r}")
        if not isinstance(scores, list) or not all(is_num(s) and 0 <= s <= 1 for s in scores):
            raise corrupted(source, "calibration.conformal must be a list of numbers from 0 to 1")
        if not is_int(n) or n < 0:
            raise corrupted(source, f"calibration.n must be a count, got {n!r}")
        extra = {k: v for k, v in data.items() if k not in ("temperature", "conformal", "n")}
        return cls(tuple(float(t) for t in temps), n, tuple(sorted(float(s) for s in scores)), extra)

    def to_dict(self) -> dict[str, Any]:
        return dump_record({"temperature": self.temperature, "n": self.n, "conformal": self.conformal}, self.extra)

    def conformal_threshold(self, coverage: float) -> float:
        """The split-conformal threshold for ``coverage`` (0 < coverage < 1): a label whose
        nonconformity score (1 - probability) is at most this is in the set. The
        ``ceil((n + 1) * coverage)``-th smallest held-out score; 1.0 (every label) when too few."""
        k = math.ceil((len(self.conformal) + 1) * coverage - 1e-9)
        return 1.0 if k > len(self.conformal) else self.conformal[k - 1]
