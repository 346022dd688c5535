"""Benchmark the variants of a model before deploying it: accuracy, latency, throughput,
size, memory and load time, with the machine and library versions next to the figures.

Every variant (and the optional ``setfit`` baseline) is measured in its own fresh Python
process (``python -m fastclf.benchmark --worker JOB``), so that

- the load time is a real cold start: interpreter, imports, ``Classifier.load`` and the
  first prediction, timed from the moment the process is spawned;
- the peak memory is that process's own (``ru_maxrss``);
- variants do not disturb each other (torch.compile caches, runtime thread pools).

Timing follows optimum's ``TimeBenchmark`` and spaCy's ``benchmark speed``: real texts
from the test file, tokenization and head included (``Classifier.predict``), warm-up
calls first, then a fixed duration of calls each timed with ``perf_counter_ns``;
percentiles come with bootstrap confidence intervals.

    from fastclf import Benchmark
    results = Benchmark("model", data="test.csv", baseline="setfit", output="report").run()
    results.recommendation["variant"]

The modules, one job each: ``runner`` (:class:`Benchmark`: the order of things),
``variants`` (which variants, their files and size), ``spawn`` (the parent's side of a
measuring process), ``worker`` (the measuring process), ``baseline`` (what is timed: fastclf
or setfit), ``rows`` (raw measurements to a row), ``stats`` (bootstrap CIs), ``recommend``
(speed-ups and the recommendation), ``results`` (the typed results and their JSON),
``report`` and ``plots`` (report.md/json/html).
"""

from __future__ import annotations

from fastclf.benchmark.recommend import recommend
from fastclf.benchmark.results import BenchmarkResults, Row
from fastclf.benchmark.runner import Benchmark, BenchmarkInterrupted, library_versions
from fastclf.benchmark.stats import latency_summary, percentile_ci, throughput_summary
from fastclf.benchmark.variants import resolve_variants, variant_size

__all__ = [
    "Benchmark",
    "BenchmarkInterrupted",
    "BenchmarkResults",
    "Row",
    "latency_summary",
    "library_versions",
    "percentile_ci",
    "recommend",
    "resolve_variants",
    "throughput_summary",
    "variant_size",
]
