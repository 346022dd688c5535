"""fastclf benchmark: every row measured in a fresh process, the report files (Markdown,
JSON, HTML with two SVG plots), the setfit baseline, the recommendation, early errors
for bad variant names, Ctrl-C leaving a partial report, and the statistics helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from samples import run, train_tiny

from fastclf.benchmark import (
    Benchmark,
    Row,
    latency_summary,
    percentile_ci,
    recommend,
    resolve_variants,
    throughput_summary,
    variant_size,
)
from fastclf.benchmark.baseline import sklearn_head
from fastclf.benchmark.report import render_html, render_markdown
from fastclf.errors import UnknownVariant, VariantNotExported
from fastclf.head import LogisticHead

# held-out texts to benchmark on (the model never saw them)
TEST = pd.DataFrame({
    "text": ["a penalty in the last minute", "the goalkeeper was injured", "two goals in the second half",
             "the referee showed a yellow card", "roast chicken with potatoes", "a bowl of tomato soup",
             "chocolate cake for dessert", "rice with beans and lime"],
    "label": ["sport"] * 4 + ["food"] * 4,
})


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_body_dir) -> Path:
    return train_tiny(tiny_body_dir).save(tmp_path_factory.mktemp("bench") / "m")


@pytest.fixture(scope="module")
def test_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "test.csv"
    TEST.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report(model, test_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    code, output = run("benchmark", model, test_csv, "--baseline", "setfit", "--batch-sizes", "1,4",
                       "--duration", "0.2", "--max-eval", "6", "--output", out)
    assert code == 0, output
    assert "Recommendation:" in output and "report.html" in output
    return out


def test_report_files_exist_and_parse(report):
    for name in ("report.md", "report.json", "report.html"):
        assert (report / name).is_file()
    data = json.loads((report / "report.json").read_text())
    assert data["partial"] is False and data["finished"]
    assert data["data"]["texts"] == len(TEST) and data["data"]["eval_texts"] == 6
    assert [r["name"] for r in data["rows"]] == ["torch-fp32", "setfit"]
    md = (report / "report.md").read_text()
    assert "| torch-fp32 |" in md and "| setfit (baseline) |" in md and "## Machine" in md


def test_json_rows_hold_sane_measurements(report):
    data = json.loads((report / "report.json").read_text())
    for row in data["rows"]:
        assert row["status"] == "ok", row
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["macro_f1"] <= 1.0 and row["n_eval"] == 6
        lat = row["latency_ms"]
        assert 0 < lat["p50"]["value"] <= lat["p95"]["value"] <= lat["p99"]["value"]
        for q in ("p50", "p95", "p99"):
            lo, hi = lat[q]["ci"]
            assert lo <= lat[q]["value"] <= hi
        assert lat["n"] >= 20 and lat["warmup_calls"] >= 5
        assert set(row["throughput"]) == {"1", "4"}
        for b, t in row["throughput"].items():
            assert t["texts_per_s"] > 0 and t["ci"][0] <= t["texts_per_s"] <= t["ci"][1]
            assert t["batches"] >= 3 and t["texts"] == t["batches"] * int(b)
        assert row["size"]["bytes"] > 0 and "head.safetensors" in row["size"]["files"]
        assert "body/model.safetensors" in row["size"]["files"]
        assert row["memory"]["peak_rss_mb"] > 10
        load = row["load"]
        assert 0 < load["startup_s"] < load["cold_start_s"] and load["load_s"] > 0 and load["first_predict_s"] > 0
        assert row["threads"]["torch_intra_op"] >= 1
    ref, base = data["rows"]
    assert ref["agreement"] == 1.0
    # setfit's own predict on the same body and an equivalent head gives the same labels
    assert base["kind"] == "baseline" and base["agreement"] == 1.0 and base["accuracy"] == ref["accuracy"]
    assert base["max_tokens"] == ref["max_tokens"] > 0  # setfit cuts a long text at the same window
    assert data["settings"]["speedup_reference"] == "setfit"
    assert base["speedup"]["latency_p50"] == pytest.approx(1.0)
    assert ref["speedup"]["vs"] == "setfit" and ref["speedup"]["latency_p50"] > 0


def test_machine_and_versions_are_recorded(report):
    data = json.loads((report / "report.json").read_text())
    cpu = data["machine"]["cpu"]
    assert cpu["model"] and cpu["logical_cpus"] >= 1
    if Path("/proc/cpuinfo").is_file():
        flags = Path("/proc/cpuinfo").read_text()
        for flag in ("avx512_vnni", "avx512_bf16", "amx_tile", "avx2"):
            assert cpu["flags"][flag] == (f" {flag}" in flags)
    versions = data["versions"]
    for lib in ("fastclf", "torch", "setfit", "sentence-transformers", "transformers", "onnxruntime", "openvino"):
        assert lib in versions
    assert versions["fastclf"] and versions["setfit"]


def test_html_is_self_contained_with_two_plots(report):
    page = (report / "report.html").read_text()
    assert page.count("<svg") == 2 and page.count("</svg>") == 2
    assert "Accuracy against latency" in page and "Throughput against batch size" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_recommendation_names_a_variant(report):
    data = json.loads((report / "report.json").read_text())
    rec = data["recommendation"]
    assert rec["variant"] == "torch-fp32"  # the only candidate: the setfit baseline is not one
    assert rec["text"].startswith("Deploy torch-fp32")
    assert "Deploy torch-fp32" in (report / "report.md").read_text()


def test_variant_list_always_starts_with_the_reference(model):
    assert resolve_variants(model, None) == (["torch-fp32"], [])
    names, notes = resolve_variants(model, [])
    assert names == ["torch-fp32"] and "reference" in notes[0]


def test_unknown_variant_fails_before_measuring(model, test_csv, tmp_path):
    with pytest.raises(UnknownVariant, match="valid variants: torch-fp32"):
        Benchmark(model, data=test_csv, variants=["onnx-int9"]).run()
    code, output = run("benchmark", model, test_csv, "--variants", "torch-fp32,onnx-int9", "--output", tmp_path / "r")
    assert code == 1 and "unknown variant 'onnx-int9'" in output and "onnx-int8" in output
    assert len(output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_variant_not_exported_fails_before_measuring(model, test_csv, tmp_path):
    with pytest.raises(VariantNotExported, match="fastclf accelerate"):
        Benchmark(model, data=test_csv, variants=["onnx-int8"]).run()
    code, output = run("benchmark", model, test_csv, "--variants", "onnx-int8", "--output", tmp_path / "r")
    assert code == 1 and "not exported" in output and len(output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_ctrl_c_leaves_a_partial_report(model, test_csv, tmp_path):
    out = tmp_path / "report"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "fastclf", "benchmark", str(model), str(test_csv),
                             "--duration", "30", "--output", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # wait until the first row has loaded and is being measured
        seen.append(line)
        if "cold start" in line or time.monotonic() > deadline:
            break
    assert any("cold start" in line for line in seen), "".join(seen)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "PARTIAL" in err and "report.html" in err
    data = json.loads((out / "report.json").read_text())
    assert data["partial"] is True
    row = data["rows"][0]
    assert row["name"] == "torch-fp32" and row["status"] == "interrupted" and row["load"]["cold_start_s"] > 0
    assert any("interrupted" in n for n in data["notes"])
    assert "PARTIAL REPORT" in (out / "report.md").read_text()
    assert "PARTIAL REPORT" in (out / "report.html").read_text()


# ---------------------------------------------------------------------------- helpers, no processes


def test_percentile_ci_on_known_data():
    x = np.arange(1, 101)
    value, lo, hi = percentile_ci(x, 50)
    assert value == pytest.approx(50.5)
    assert lo < value < hi and 40 < lo and hi < 61
    value, lo, hi = percentile_ci(x, 99)
    assert value == pytest.approx(99.01) and lo <= value <= hi <= 100
    assert percentile_ci([7.0] * 50, 95) == (7.0, 7.0, 7.0)
    assert percentile_ci(x, 50, seed=3) == percentile_ci(x, 50, seed=3)
    with pytest.raises(ValueError):
        percentile_ci([], 50)


def test_latency_and_throughput_summaries():
    lat = latency_summary([1_000_000, 2_000_000, 3_000_000, 4_000_000] * 10)  # 1..4 ms
    assert lat.n == 40 and lat.min == 1.0 and lat.max == 4.0 and lat.mean == 2.5
    assert lat.p50.value == pytest.approx(2.5) and lat.p99.value == 4.0
    assert lat.model_dump()["p50"] == {"value": lat.p50.value, "ci": lat.p50.ci}
    thr = throughput_summary([500_000_000] * 6, [10] * 6)  # 10 texts in 0.5 s a batch
    assert thr.texts_per_s == pytest.approx(20.0) and thr.ci == pytest.approx((20.0, 20.0))
    assert thr.batches == 6 and thr.texts == 60 and thr.model_dump()["ci"] == list(thr.ci)


def _row(name, acc, p50, kind="variant", thr=100.0):
    """A row as report.json holds it."""
    return {"name": name, "kind": kind, "accuracy": acc, "agreement": 1.0, "latency_ms": {"p50": {"value": p50,
            "ci": [p50 * 0.9, p50 * 1.1]}, "p95": {"value": p50 * 1.2, "ci": [p50, p50 * 1.3]},
            "p99": {"value": p50 * 1.5, "ci": [p50, p50 * 2]}},
            "throughput": {"1": {"texts_per_s": thr, "ci": [thr * 0.9, thr * 1.1]},
                           "32": {"texts_per_s": thr * 4, "ci": [thr * 3.6, thr * 4.4]}}}


def test_recommendation_respects_the_tolerance_and_skips_the_baseline():
    rows = [Row.model_validate(r) for r in (
        _row("torch-fp32", 0.850, 10.0), _row("setfit", 0.850, 2.0, kind="baseline", thr=900),
        _row("onnx-int8", 0.835, 3.0, thr=500), _row("onnx-fp32", 0.845, 6.0, thr=200),
        _row("openvino-int8", 0.842, 5.0, thr=300))]
    rec = recommend(rows, tolerance=1.0, speedup_reference="setfit")
    assert rec["variant"] == "openvino-int8"  # onnx-int8 is faster but 1.5 points below
    assert set(rec["candidates"]) == {"torch-fp32", "onnx-fp32", "openvino-int8"}
    assert rec["best_throughput"] == {"variant": "openvino-int8", "batch_size": 32, "texts_per_s": 1200.0}
    assert "openvino-int8" in rec["text"] and "within 1 accuracy point" in rec["text"]
    assert recommend(rows, tolerance=2.0)["variant"] == "onnx-int8"
    assert recommend(rows[1:], tolerance=1.0)["variant"] is None  # no reference, no recommendation


def test_report_renders_from_json_alone():
    rows = [_row("torch-fp32", 0.85, 10.0), _row("onnx-int8", 0.84, 3.0, thr=500),
            _row("openvino-int8-distilled", 0.846, 2.0, thr=900), _row("static", 0.80, 0.2, thr=9000)]
    for r in rows:
        r.update(status="ok", macro_f1=0.8, size={"mb": 90.0, "files": ["a"]}, memory={"peak_rss_mb": 400.0},
                 load={"cold_start_s": 3.0}, threads={"torch_intra_op": 2}, speedup={"vs": "torch-fp32",
                 "latency_p50": 1.0, "throughput": {}})
    variants = ["torch-fp32", "onnx-int8", "openvino-int8-distilled", "static", "openvino-int8"]
    results = {"model": "m", "partial": True, "rows": rows,
               "settings": {"batch_sizes": [1, 32], "variants": variants, "tolerance_points": 1.0},
               "recommendation": recommend([Row.model_validate(r) for r in rows]),
               "machine": {"cpu": {"model": "X", "flags": {"avx2": True}}},
               "versions": {"torch": "2"}, "data": {}}
    page = render_html(results)
    assert page.count("<svg") == 2 and "PARTIAL REPORT: 4 of 5" in page and "onnx-int8" in page
    plots = page[page.index("<svg"):page.rindex("</svg>")]
    for name in ("openvino-int8-distilled", "static"):  # the new models: a point and a line each, in both plots
        assert plots.count(f"{name}: accuracy") == 1 and plots.count(f"{name}: batch 1:") == 1
    md = render_markdown(results)
    assert "| onnx-int8 | 84.0% |" in md and "| static | 80.0% |" in md and "| openvino-int8-distilled | 84.6% |" in md
    assert "AVX-512 VNNI no" in md


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_setfit_head_is_fastclf_head(kind):
    rng = np.random.default_rng(0)
    k = 1 if kind == "binary" else 3
    head = LogisticHead(rng.normal(size=(k, 8)), rng.normal(size=k), kind)
    X = rng.normal(size=(200, 8))
    sk = sklearn_head(head, head.n_outputs, kind == "multilabel")
    proba = head.predict_proba(X)
    if kind == "multilabel":
        assert np.array_equal(sk.predict(X), (proba >= 0.5).astype(int))
    else:
        assert np.array_equal(sk.predict(X), proba.argmax(axis=1))
        np.testing.assert_allclose(sk.predict_proba(X), proba, atol=1e-9)


def test_variant_size_of_a_relative_model_dir(model, monkeypatch):
    """A model given as a relative path (``fastclf benchmark ./model ...``) is sized like an
    absolute one: every file named relative to the model folder."""
    absolute = variant_size(model, "torch-fp32")
    monkeypatch.chdir(model.parent)
    relative = variant_size(Path(model.name), "torch-fp32")
    assert relative == absolute
    assert "fastclf.json" in relative.files and relative.bytes > 0


def test_recommendation_warns_when_its_variant_changes_many_labels():
    drifting = _row("openvino-int8-distilled", 0.851, 2.0, thr=900)
    drifting["agreement"] = 0.897
    rows = [Row.model_validate(r)
            for r in (_row("torch-fp32", 0.850, 10.0), _row("openvino-int8", 0.848, 3.0), drifting)]
    rec = recommend(rows, tolerance=1.0)
    assert rec["variant"] == "openvino-int8-distilled"  # its accuracy is within the budget
    assert "changes 10.3% of torch-fp32's labels" in rec["text"] and "check it" in rec["text"]
    calm = recommend(rows[:2], tolerance=1.0)
    assert calm["variant"] == "openvino-int8" and "Note:" not in calm["text"]
