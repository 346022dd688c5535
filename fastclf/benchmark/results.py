"""What a benchmark run measured, as dataclasses: a :class:`Row` for each variant (and the
setfit baseline) inside :class:`BenchmarkResults`.

``to_dict()`` gives what ``report.json`` holds (its keys are a stable format, see
:data:`SCHEMA_VERSION`); ``from_dict()`` reads it back, leniently, so that a report can be
re-rendered from its JSON and older or partial files still load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

SCHEMA_VERSION = 1

_T = TypeVar("_T")


def _flat(cls: type[_T], data: Mapping[str, Any] | None) -> _T | None:
    """A dataclass of plain fields from the keys of ``data`` it knows (None: no data)."""
    if not data:
        return None
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Estimate:
    """A statistic with its confidence interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci": [self.low, self.high]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        low, high = data.get("ci") or (data["value"], data["value"])
        return cls(data["value"], low, high)


@dataclass
class Latency:
    """Milliseconds a call for one text: percentiles with bootstrap CIs, mean, min, max."""

    p50: Estimate
    p95: Estimate
    p99: Estimate
    n: int | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    warmup_calls: int | None = None
    seconds: float | None = None  # of timed calls

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "min": self.min, "max": self.max, "p50": self.p50.to_dict(),
                "p95": self.p95.to_dict(), "p99": self.p99.to_dict(), "warmup_calls": self.warmup_calls,
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Latency | None:
        if not data:
            return None
        return cls(p50=Estimate.from_dict(data["p50"]), p95=Estimate.from_dict(data["p95"]),
                   p99=Estimate.from_dict(data["p99"]), n=data.get("n"), mean=data.get("mean"), min=data.get("min"),
                   max=data.get("max"), warmup_calls=data.get("warmup_calls"), seconds=data.get("seconds"))


@dataclass
class Throughput:
    """Texts a second at one batch size, with a bootstrap CI over the timed batches."""

    texts_per_s: float
    ci: tuple[float, float]
    batches: int | None = None
    texts: int | None = None
    seconds: float | None = None
    ms_per_batch: float | None = None
    batch_size: int | None = None
    warmup_batches: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ci": list(self.ci)}


@dataclass
class Size:
    """The files a variant loads, and their total size."""

    bytes: int = 0
    mb: float = 0.0
    files: list[str] = field(default_factory=list)


@dataclass
class Memory:
    """Resident memory of the measuring process, in MB."""

    rss_after_load_mb: float | None = None
    peak_rss_mb: float | None = None


@dataclass
class Load:
    """Seconds from spawning the measuring process to its first prediction, and their parts."""

    cold_start_s: float | None = None
    startup_s: float | None = None  # interpreter start and fastclf's imports
    load_s: float | None = None
    first_predict_s: float | None = None


@dataclass
class Speedup:
    """A row's speed against the speed-up reference (``vs``): ratios above 1 are faster."""

    vs: str | None = None
    latency_p50: float | None = None
    throughput: dict[str, float] = field(default_factory=dict)  # batch size -> ratio


@dataclass
class Row:
    """One measured variant (``kind="variant"``) or the setfit baseline (``kind="baseline"``)."""

    name: str
    kind: str = "variant"
    description: str = ""
    status: str = "error"  # ok, error, interrupted
    error: str | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    agreement: float | None = None  # share of texts labeled as the reference labels them
    n_eval: int | None = None
    latency_ms: Latency | None = None
    throughput: dict[str, Throughput] = field(default_factory=dict)  # batch size (a string) -> figures
    size: Size | None = None
    memory: Memory | None = None
    load: Load | None = None
    threads: dict[str, Any] | None = None  # the runtimes' thread pools, as fastclf.backends reports them
    runtime_settings: dict[str, Any] | None = None  # what the body says it runs with
    eval_seconds: float | None = None
    other_load_cores: float | None = None  # CPU other processes used while the row was measured
    speedup: Speedup | None = None

    @property
    def is_baseline(self) -> bool:
        return self.kind == "baseline"

    @property
    def label(self) -> str:
        """The name, marked when it is the baseline."""
        return f"{self.name} (baseline)" if self.is_baseline else self.name

    def best_throughput(self) -> tuple[int, Throughput] | None:
        """The batch size with the most texts a second, and its figures."""
        if not self.throughput:
            return None
        batch, figures = max(self.throughput.items(), key=lambda kv: kv[1].texts_per_s)
        return int(batch), figures

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("size", "memory", "load", "speedup"):
            out[key] = dataclasses.asdict(out[key]) if out[key] is not None else None
        out["latency_ms"] = self.latency_ms.to_dict() if self.latency_ms is not None else None
        out["throughput"] = {b: t.to_dict() for b, t in self.throughput.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        plain = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        plain.update(latency_ms=Latency.from_dict(data.get("latency_ms")), size=_flat(Size, data.get("size")),
                     memory=_flat(Memory, data.get("memory")), load=_flat(Load, data.get("load")),
                     speedup=_flat(Speedup, data.get("speedup")),
                     throughput={str(b): _flat(Throughput, {**t, "ci": tuple(t["ci"])})
                                 for b, t in (data.get("throughput") or {}).items()})
        return cls(**plain)


@dataclass
class DataSummary:
    """The labeled data the run used."""

    source: str = ""
    texts: int | None = None
    eval_texts: int | None = None  # scored for accuracy
    timing_texts: int | None = None  # cycled through for the timings
    classes: list[str] = field(default_factory=list)
    multi_label: bool = False
    mean_chars: float = 0.0  # of the timing texts


@dataclass
class Settings:
    """How the run measured (what ``Benchmark`` was given, and fastclf's fixed choices)."""

    variants: list[str] = field(default_factory=list)  # the rows, in order
    batch_sizes: list[int] = field(default_factory=list)
    baseline: str | None = None
    duration_s: float | None = None
    warmup_s: float = 0.0
    max_eval: int | None = None
    tolerance_points: float = 1.0
    threads_requested: int | None = None
    reference: str = "torch-fp32"
    speedup_reference: str = "torch-fp32"
    eval_batch_size: int | None = None
    bootstrap_resamples: int | None = None
    confidence: float = 0.95
    latency_min_calls: int | None = None
    throughput_min_batches: int | None = None
    isolation: str = ""


@dataclass
class BenchmarkResults:
    """Everything a benchmark run measured; :meth:`to_dict` is what ``report.json`` holds."""

    model: str
    data: DataSummary
    settings: Settings
    machine: dict[str, Any]  # fastclf.machine.platform_info()
    versions: dict[str, str | None]
    rows: list[Row] = field(default_factory=list)
    recommendation: dict[str, Any] | None = None  # see fastclf.benchmark.recommend.recommend
    notes: list[str] = field(default_factory=list)
    started: str = ""
    finished: str | None = None
    partial: bool = True

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    @property
    def rows_complete(self) -> int:
        return sum(1 for r in self.rows if r.status == "ok")

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "partial": self.partial, "model": self.model,
                "data": dataclasses.asdict(self.data), "settings": dataclasses.asdict(self.settings),
                "machine": self.machine, "versions": self.versions, "started": self.started,
                "finished": self.finished, "rows": [r.to_dict() for r in self.rows],
                "recommendation": self.recommendation, "notes": self.notes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkResults:
        """Read :meth:`to_dict`'s output (``report.json``); missing keys take their defaults."""
        return cls(model=str(data.get("model", "")), data=_flat(DataSummary, data.get("data")) or DataSummary(),
                   settings=_flat(Settings, data.get("settings")) or Settings(),
                   machine=dict(data.get("machine") or {}), versions=dict(data.get("versions") or {}),
                   rows=[Row.from_dict(r) for r in data.get("rows") or []],
                   recommendation=data.get("recommendation"), notes=list(data.get("notes") or []),
                   started=str(data.get("started") or ""), finished=data.get("finished"),
                   partial=bool(data.get("partial", False)))
