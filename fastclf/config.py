"""``fastclf.json``: frozen pydantic models that read, check (strictly what loading relies on; an informational
value of an unexpected type reads as None) and write it, unknown keys kept."""

from __future__ import annotations

import json
import math
import reprlib
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WrapValidator, model_serializer, model_validator
from pydantic_core import ValidationError
from pydantic_core.core_schema import SerializerFunctionWrapHandler, ValidationInfo, ValidatorFunctionWrapHandler

from fastclf._util import atomic_write_text
from fastclf._version import __version__
from fastclf.errors import ModelFormatError, ModelNotFound, first_line
from fastclf.safety import check_file, inside

FORMAT = "fastclf"
FORMAT_VERSION = 1
CONFIG_FILE = "fastclf.json"
HEAD_FILE = "head.safetensors"
BODY_DIR = "body"


def now() -> str:
    """The current UTC time as fastclf.json writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """An informational value of an unexpected type reads as None from a file (built in code, it is a bug)."""
    try:
        return handler(value)
    except ValidationError:
        if info.context is None:
            raise
        return None


T = TypeVar("T")
S = TypeVar("S", bound="Section")
Info = Annotated[T | None, WrapValidator(_or_none)]  # read leniently
Strs = Annotated[tuple[str, ...], Field(strict=False)]  # a JSON list


class Section(BaseModel):
    """A JSON object of fastclf.json: strict types, unknown keys kept, None left out when written."""

    model_config = ConfigDict(strict=True, frozen=True, extra="allow")
    KEEP_NONE: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None or k in self.KEEP_NONE}

    @classmethod
    def from_dict(cls: type[S], data: Any, source: Path | str = CONFIG_FILE) -> S:
        """The section of ``data`` (parsed JSON), or a one-line ModelFormatError naming ``source`` and the field."""
        try:
            return cls.model_validate(data, context={"source": str(source)})
        except ValidationError as exc:
            e = exc.errors()[0]
            where = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ").replace("Tuple", "List").replace("tuple", "list")
            msg = f"{where}: {msg[0].lower()}{msg[1:]}" if where else msg
            if where and e["type"] != "missing":
                msg += f", got {reprlib.repr(e['input'])}"
            raise ModelFormatError(f"{source} is corrupted: {msg}") from None

    def to_dict(self) -> dict[str, Any]:
        """The section as JSON data: the keys fastclf has always written, then the unknown ones."""
        return self.model_dump(mode="json")


class HeadConfig(Section):
    """``head``: the head's file (inside the model folder), its kind and input size."""

    file: str = HEAD_FILE
    kind: str | None = None
    dim: Info[int] = None


class BodyConfig(Section):
    """``body``: the sentence-transformers folder and what it declares (as read when saved)."""

    path: Annotated[str, Field(pattern=f"^{BODY_DIR}/?$")] = BODY_DIR
    modules: Info[Strs] = None
    normalize: Info[bool] = None
    pooling: Info[str] = None
    dim: Info[int] = None
    max_seq_length: Info[int] = None


class LongTexts(Section):
    """``long_texts``: "chunk" pools the embeddings of a text's windows (at most ``max_chunks``), else the first."""

    mode: str = "chunk"
    max_chunks: Annotated[int, Field(ge=1)] = 16  # chunking.DEFAULT_MAX_CHUNKS (not imported: it needs numpy)


class TrainingRecord(Section):
    """``training``: how the model was trained (informational)."""

    KEEP_NONE = ("settings", "selection", "examples", "examples_per_class", "long_texts", "seconds",
                 "seconds_by_step", "source", "source_path", "text_column", "label_columns")
    settings: Info[dict[str, Any]] = None  # TrainConfig, as trained (loss, bf16 and model resolved)
    selection: Info[dict[str, Any]] = None  # the recipe chosen and why
    examples: Info[int] = None
    examples_per_class: Info[dict[str, int]] = None
    long_texts: Info[int] = None  # training texts longer than the body's window
    seconds: Info[float] = None
    seconds_by_step: Info[dict[str, float]] = None
    source: Info[str] = None
    source_path: Info[str] = None  # the training file's absolute path, when it was a file
    text_column: Info[str] = None
    label_columns: Info[Strs] = None
    eval: Info[dict[str, Any]] = None  # data, n, accuracy, macro_f1 of the evaluation after training


class VariantRecord(Section):
    """``variants.NAME``: an exported variant, its files (inside ``body/``) and its parity with torch-fp32."""

    n: Info[int] = None  # check texts
    agreement: Info[float] = None  # share of texts with torch-fp32's label
    max_proba_diff: Info[float] = None
    mean_cosine: Info[float] = None
    min_cosine: Info[float] = None
    flips: Info[int] = None
    gate: Info[dict[str, Any]] = None  # the parity gate's verdict and figures
    min_agreement: Info[float] = None
    exported: Info[str] = None  # when
    seconds: Info[float] = None
    files: Strs = ()
    runtime: Info[dict[str, Any]] = None
    calibration: Info[dict[str, Any]] = None  # source and number of texts (static int8)
    kept_below_tolerance: Info[bool] = None
    gate_failure: Info[str] = None

    @model_validator(mode="before")
    @classmethod
    def _object(cls, data: Any) -> Any:
        return data if isinstance(data, dict) else {}  # an entry that is not an object records no figures

    @property
    def has_figures(self) -> bool:
        return self.agreement is not None and self.mean_cosine is not None


class Calibration(Section):
    """``calibration``: the head's scores are divided by ``temperature`` (one, or one a label) before the link;
    ``conformal``: the sorted nonconformity scores of ``n`` held-out texts, for prediction sets (single-label)."""

    temperature: Annotated[tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...],
                           Field(strict=False, min_length=1)] = (1.0,)
    n: Annotated[int, Field(ge=0)] = 0
    conformal: Annotated[tuple[Annotated[float, Field(ge=0, le=1)], ...], Field(strict=False),
                         AfterValidator(lambda s: tuple(sorted(s)))] = ()

    def conformal_threshold(self, coverage: float) -> float:
        """The split-conformal threshold for ``coverage``: the ``ceil((n + 1) * coverage)``-th smallest held-out
        score (a label whose score is at most this is in the set); 1.0 (every label) when too few."""
        k = math.ceil((len(self.conformal) + 1) * coverage - 1e-9)
        return 1.0 if k > len(self.conformal) else self.conformal[k - 1]


class ModelConfig(Section):
    """The contents of ``fastclf.json``: build changed copies with the ``with_*`` helpers or ``model_copy``."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    fastclf_version: Info[str] = None
    created: Info[str] = None
    labels: Annotated[Strs, Field(min_length=2)]
    multi_label: bool = False
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    base_model: Info[str] = None
    head: HeadConfig = Field(default_factory=HeadConfig)
    body: BodyConfig = Field(default_factory=BodyConfig)
    long_texts: LongTexts | None = None  # None: saved before long texts were split (first window only)
    calibration: Calibration | None = None  # None: the head's scores are used as they are
    training: Info[TrainingRecord] = None
    versions: Info[dict[str, Any]] = None  # of the packages that trained it
    variants: dict[str, VariantRecord] = Field(default_factory=dict)
    default_variant: str | None = None  # chosen by ``fastclf accelerate --auto``
    default_variant_choice: Info[dict[str, Any]] = None  # where and why it was chosen
    body_id: Info[str] = None  # a new id for every new body: an export checks it before it commits

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels has duplicates")
        if self.calibration is not None and len(self.calibration.temperature) not in (1, len(self.labels)):
            raise ValueError(f"calibration.temperature has {len(self.calibration.temperature)} values for "
                             f"{len(self.labels)} labels")
        return self

    @classmethod
    def from_dict(cls, data: Any, source: Path | str = CONFIG_FILE) -> ModelConfig:
        """Check ``data`` (fastclf.json's parsed JSON) and build the config (ModelFormatError naming ``source``)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelFormatError(f"{source} is not a fastclf model config")
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(
                f"{Path(source).parent} has model format version {data.get('format_version')!r}; this fastclf "
                f"({__version__}) reads version {FORMAT_VERSION}: use the fastclf version that wrote it, or retrain")
        return super().from_dict(data, source)

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelConfig:
        """Read and check a model folder's ``fastclf.json`` and that the paths it names stay inside the folder
        (ModelNotFound: no folder; ModelFormatError: not a fastclf model, damaged or incomplete)."""
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
            raise ModelFormatError(f"{cfg_path} is corrupted: {first_line(exc)}") from None
        cfg = cls.from_dict(data, cfg_path)
        if not inside(path, cfg.head.file, "head.file", cfg_path).is_file():
            raise ModelFormatError(f"model directory is incomplete: {cfg.head.file} is missing in {path}")
        for name, record in cfg.variants.items():
            for f in record.files:
                inside(path / BODY_DIR, f, f"variants.{name}.files entry", cfg_path)
        if not (path / BODY_DIR).is_dir():
            raise ModelFormatError(f"model directory is incomplete: {BODY_DIR}/ is missing in {path}")
        return cfg

    def head_path(self, model_dir: str | Path) -> Path:
        """The head file of the model in ``model_dir`` (checked to stay inside it)."""
        return inside(Path(model_dir), self.head.file, "head.file", Path(model_dir) / CONFIG_FILE)

    def write(self, model_dir: str | Path) -> None:
        """Create or replace ``model_dir/fastclf.json`` atomically: the one place that writes the file."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        atomic_write_text(Path(model_dir) / CONFIG_FILE, text)

    def with_eval(self, record: dict[str, Any]) -> ModelConfig:
        """A copy whose training record holds ``record`` (the evaluation after training)."""
        training = (self.training or TrainingRecord()).model_copy(update={"eval": dict(record)})
        return self.model_copy(update={"training": training})
