"""Benchmark the variants of a model before deploying it: accuracy, latency, throughput, size,
memory and cold start, each row measured in its own fresh process (``python -m fastclf.benchmark``).

    results = Benchmark("model", data="test.csv", baseline="setfit", output="report").run()
"""

from __future__ import annotations

from fastclf.benchmark.recommend import recommend
from fastclf.benchmark.results import BenchmarkResults, Row
from fastclf.benchmark.rows import latency_summary, percentile_ci, resolve_variants, throughput_summary, variant_size
from fastclf.benchmark.runner import Benchmark, BenchmarkInterrupted

__all__ = ["Benchmark", "BenchmarkInterrupted", "BenchmarkResults", "Row", "latency_summary", "percentile_ci",
           "recommend", "resolve_variants", "throughput_summary", "variant_size"]
