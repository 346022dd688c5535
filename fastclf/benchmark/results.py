"""What a benchmark run measured: a :class:`Row` a variant (and the setfit baseline) inside
:class:`BenchmarkResults`; ``to_dict()`` is report.json, ``model_validate()`` reads it back (unknown keys dropped,
missing ones take their defaults)."""

from __future__ import annotations

from typing import Any

import pydantic

SCHEMA_VERSION = 1


class Estimate(pydantic.BaseModel):
    """A statistic with its confidence interval ``ci`` = [low, high]."""

    value: float
    ci: list[float]


class Latency(pydantic.BaseModel):
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


class Throughput(pydantic.BaseModel):
    """Texts a second at one batch size, with a bootstrap CI over the timed batches."""

    texts_per_s: float
    ci: list[float]
    batches: int | None = None
    texts: int | None = None
    seconds: float | None = None
    ms_per_batch: float | None = None
    batch_size: int | None = None
    warmup_batches: int | None = None


class Size(pydantic.BaseModel):
    """The files a variant loads, and their total size."""

    bytes: int = 0
    mb: float = 0.0
    files: list[str] = []


class Memory(pydantic.BaseModel):
    """Resident memory of the measuring process, in MB."""

    rss_after_load_mb: float | None = None
    peak_rss_mb: float | None = None


class Load(pydantic.BaseModel):
    """Seconds from spawning the measuring process to its first prediction, and their parts."""

    cold_start_s: float | None = None
    startup_s: float | None = None  # interpreter start and fastclf's imports
    load_s: float | None = None
    first_predict_s: float | None = None


class Speedup(pydantic.BaseModel):
    """A row's speed against the speed-up reference (``vs``): ratios above 1 are faster."""

    vs: str | None = None
    latency_p50: float | None = None
    throughput: dict[str, float] = {}  # batch size -> ratio


class Row(pydantic.BaseModel):
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
    throughput: dict[str, Throughput] = {}  # batch size (a string) -> figures
    size: Size | None = None
    memory: Memory | None = None
    load: Load | None = None
    threads: dict[str, Any] | None = None  # the runtimes' thread pools, as fastclf.backends reports them
    runtime_settings: dict[str, Any] | None = None  # what the body says it runs with
    eval_seconds: float | None = None
    max_tokens: int | None = None  # the body's window in tokens, where a longer text is cut or split
    other_load_cores: float | None = None  # CPU other processes used while the row was measured
    speedup: Speedup | None = None

    @property
    def is_baseline(self) -> bool:
        return self.kind == "baseline"

    @property
    def label(self) -> str:
        return f"{self.name} (baseline)" if self.is_baseline else self.name

    def best_throughput(self) -> tuple[int, Throughput] | None:
        """The batch size with the most texts a second, and its figures."""
        best = max(self.throughput.items(), key=lambda kv: kv[1].texts_per_s, default=None)
        return None if best is None else (int(best[0]), best[1])


class DataSummary(pydantic.BaseModel):
    """The labeled data the run used."""

    source: str = ""
    texts: int | None = None
    eval_texts: int | None = None  # scored for accuracy
    timing_texts: int | None = None  # cycled through for the timings
    classes: list[str] = []
    multi_label: bool = False
    mean_chars: float = 0.0  # of the timing texts


class Settings(pydantic.BaseModel):
    """How the run measured (what ``Benchmark`` was given, and fastclf's fixed choices)."""

    variants: list[str] = []  # the rows, in order
    batch_sizes: list[int] = []
    baseline: str | None = None
    duration_s: float = 5.0
    warmup_s: float = 0.0
    max_eval: int = 1000
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


class BenchmarkResults(pydantic.BaseModel):
    """Everything a benchmark run measured; :meth:`to_dict` is what ``report.json`` holds."""

    model: str = ""
    data: DataSummary = DataSummary()
    settings: Settings = Settings()
    machine: dict[str, Any] = {}  # fastclf.machine.platform_info()
    versions: dict[str, str | None] = {}
    rows: list[Row] = []
    recommendation: dict[str, Any] | None = None  # see fastclf.benchmark.recommend.recommend
    notes: list[str] = []
    started: str = ""
    finished: str | None = None
    partial: bool = True

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    @property
    def rows_complete(self) -> int:
        return sum(1 for r in self.rows if r.status == "ok")

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **self.model_dump()}
