"""The parity gate's statistics, ``fastclf accelerate --auto`` (choice recorded and used by
default), the CPU fallback of a recorded choice, and the runtime settings of the bodies."""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import samples
from samples import run, tiny_data, train_tiny

import fastclf.accelerate.auto as auto
import fastclf.accelerate.export as acc
import fastclf.backends as backends
from fastclf import Classifier
from fastclf.accelerate.parity import gate_decision, split_texts, wilson_bounds
from fastclf.backends import openvino_backend

SPORT = samples.SPORT + samples.SPORT_EXTRA
FOOD = samples.FOOD + samples.FOOD_EXTRA


# -- the gate's decision ---------------------------------------------------------------------


def test_an_export_passes_only_when_the_upper_bound_of_its_changed_labels_is_within_the_points():
    few = gate_decision(32, 0, 0.99)  # no label changed, but 32 texts cannot show 1 point
    assert not few.passed and few.upper > 0.01 and "0 of 32" in few.reason and "1.0%" in few.reason
    assert gate_decision(32, 1, 0.99, tolerance=0.2).passed
    d = gate_decision(1000, 3, 0.999)  # 0.3% changed: the bound stays under 1 point
    assert d.passed and d.reason == "" and d.upper < 0.01 and abs(d.disagreement - 0.003) < 1e-12
    drop = gate_decision(1000, 30, 0.99)
    assert not drop.passed and drop.lower > 0.02 and "30 of 1000" in drop.reason


def test_gate_edges():
    assert not gate_decision(1000, 0, 0.90).passed  # embeddings drifted although no label flipped
    assert "cosine" in gate_decision(1000, 0, 0.90).reason
    assert not gate_decision(8, 8, 0.99, tolerance=0.5).passed  # every label differs
    assert not gate_decision(1000, 0, 1.0, tolerance=0.0).passed  # --max-accuracy-loss 0: nothing can show it
    assert gate_decision(8, 8, 1.0, tolerance=1.0).passed  # --max-accuracy-loss 100: anything goes
    lo, hi = wilson_bounds(0, 50)
    assert lo == 0.0 and 0 < hi < 0.1
    lo, hi = wilson_bounds(30, 1000)
    assert 0.02 < lo < 0.03 < hi < 0.045


def _paired(n: int, only_reference: int, only_candidate: int, both: int):
    """(reference right, candidate right) for ``n`` texts with the given discordant counts."""
    ref = [True] * only_reference + [False] * only_candidate + [True] * both
    cand = [False] * only_reference + [True] * only_candidate + [True] * both
    rest = n - len(ref)
    return ref + [False] * rest, cand + [False] * rest


def test_accuracy_gate_judges_the_paired_loss_and_says_how_many_texts_a_pass_takes():
    from fastclf.accelerate.parity import accuracy_decision

    same = accuracy_decision(*_paired(1000, 10, 10, 700))  # as accurate, a few texts differ
    assert same.passed and same.accuracy == (0.71, 0.71) and same.upper < 0.01
    assert not accuracy_decision(*_paired(1000, 30, 30, 700)).passed  # as accurate, but too many differ to show it
    drop = accuracy_decision(*_paired(1000, 80, 20, 600))  # a 6-point loss: no sample size passes it
    assert not drop.passed and drop.needed == 0 and "no number" in drop.reason and "1.0%" in drop.reason
    small = accuracy_decision(*_paired(100, 3, 2, 60), tolerance=0.02)  # a 1-point loss on 100 texts: too few
    assert not small.passed and small.needed is not None and small.needed > 100 and str(small.needed) in small.reason
    n = small.needed
    assert accuracy_decision(*_paired(n, round(0.03 * n), round(0.02 * n), round(0.6 * n)), tolerance=0.02).passed
    assert not accuracy_decision([], []).passed


def test_pass_bound_is_what_a_clean_pass_shows():
    from fastclf.accelerate.parity import pass_bound, within

    assert pass_bound(8) > 0.2 and 0.05 < pass_bound(32) < 0.1 and pass_bound(1000) < 0.003
    assert pass_bound(260) > 0.01 > pass_bound(280)  # a clean pass within 1 point takes about 270 texts
    for n in (8, 32, 200):
        assert gate_decision(n, 0, 0.99).upper == pass_bound(n)
    assert within(1) == "within 1 accuracy point" and within(2.5) == "within 2.5 accuracy points"


def test_check_texts_are_kept_apart_from_calibration():
    cal_file = [f"calibration text {i}" for i in range(300)]
    training = [f"training text {i}" for i in range(100)] + cal_file[:10]
    cal, check = split_texts(cal_file, 200, extra_check=training)
    assert not set(cal) & set(check)
    assert len(cal) == 200 and len(check) == 100 + 100  # the unused calibration rows + the training texts
    cal, check = split_texts(cal_file, 200, extra_check=training, calibrate=False)
    assert cal == [] and len(check) == 400
    cal, check = split_texts([f"t{i}" for i in range(3000)], 200, calibrate=False)
    assert len(check) == 1000  # capped
    cal, check = split_texts([f"t{i}" for i in range(40)], 200)
    assert len(cal) == 20 and len(check) == 20  # nothing else to check on: half each


# -- end to end on the tiny body -------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_body_dir) -> Path:
    clf = train_tiny(tiny_body_dir, tiny_data(SPORT, FOOD))
    return clf.save(tmp_path_factory.mktemp("auto") / "model")


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cal") / "calib.csv"
    pd.DataFrame({"text": SPORT + FOOD + samples.CALIBRATION}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def auto_model(trained, calib, tmp_path_factory):
    model = tmp_path_factory.mktemp("auto2") / "model"
    shutil.copytree(trained, model)
    mp = pytest.MonkeyPatch()
    # brief timings and three candidates keep the test short; the choice logic is the same
    mp.setattr(auto, "AUTO_CANDIDATES", ("onnx-fp32", "onnx-int8", "openvino-fp32"))
    mp.setattr(acc, "time_classifier", functools.partial(acc.time_classifier, one_text_seconds=0.2, batch_seconds=0.2))
    try:
        code, out = run("accelerate", model, "--auto", "--calibration", calib, "--max-accuracy-loss", "20")
    finally:
        mp.undo()
    assert code == 0, out
    return model, out


def test_auto_records_the_fastest_passing_variant(auto_model):
    model, out = auto_model
    cfg = json.loads((model / "fastclf.json").read_text())
    choice = cfg["default_variant_choice"]
    chosen = cfg["default_variant"]
    assert chosen == choice["variant"]
    cands = choice["candidates"]
    assert set(cands) == {"torch-fp32", "onnx-fp32", "onnx-int8", "openvino-fp32"}
    timed = {k: v for k, v in cands.items() if v["passed"] and "one_text_p50_ms" in v}
    assert chosen == min(timed, key=lambda k: timed[k]["one_text_p50_ms"])
    for fig in timed.values():
        assert fig["one_text_p50_ms"] > 0 and fig["texts_per_s"] > 0 and fig["batch_size"] == 32
    assert choice["machine"]["cpu"] and isinstance(choice["machine"]["isa"], list)
    assert f"default variant: {chosen}" in out
    # one line per variant, with its figures and the interval
    for name in ("onnx-fp32", "onnx-int8", "openvino-fp32"):
        line = next(row for row in out.splitlines() if row.startswith(name))
        assert "labels differ" in line and "bounds" in line and "ms" in line
    assert "texts not used for calibration" in out
    assert "Errno" not in out and "UserWarning" not in out and "loss_type" not in out


def test_auto_default_is_used_without_a_variant_name(auto_model):
    model, _ = auto_model
    chosen = json.loads((model / "fastclf.json").read_text())["default_variant"]
    clf = Classifier.load(model)
    assert clf.variant == chosen
    assert Classifier.load(model, variant="torch-fp32").variant == "torch-fp32"  # a named variant wins
    code, out = run("predict", model, "a late goal")
    assert code == 0 and out.split("\t")[0] in ("sport", "food")
    code, out = run("info", model)
    assert code == 0 and f"default variant: {chosen}" in out and "chosen" in out and "ms" in out


def test_gate_is_recorded(auto_model):
    model, _ = auto_model
    entry = json.loads((model / "fastclf.json").read_text())["variants"]["onnx-int8"]
    gate = entry["gate"]
    # onnx-int8 is calibrated (its texts choose what stays fp32) and nothing else is there to
    # check on: half of the file's distinct texts calibrate, the other half are check texts
    distinct = len(set(SPORT + FOOD + samples.CALIBRATION))
    assert gate["n"] == distinct - distinct // 2 == entry["n"]
    assert 0 <= gate["interval"][0] <= gate["disagreement"] <= gate["interval"][1] <= 1
    assert "Wilson" in gate["rule"] and gate["max_disagreement"] == pytest.approx(0.2)  # --max-accuracy-loss 20
    assert entry["runtime"]["runtime"] == "onnxruntime" and entry["runtime"]["intra_op_threads"] >= 1


def test_a_choice_that_needs_bf16_falls_back_on_a_cpu_without_it(auto_model, tmp_path, monkeypatch, caplog):
    model, _ = auto_model
    m = tmp_path / "m"
    shutil.copytree(model, m)
    cfg = json.loads((m / "fastclf.json").read_text())
    cfg["variants"]["openvino-bf16"] = dict(cfg["variants"]["openvino-fp32"])  # same files
    cfg["default_variant"] = "openvino-bf16"
    (m / "fastclf.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(backends, "cpu_info", lambda: {"cpu": "old", "cores": 2, "isa": ["avx2"]})
    monkeypatch.setattr(backends, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="fastclf"):
        assert Classifier.load(m).variant == "openvino-fp32"
        assert Classifier.load(m).variant == "openvino-fp32"
    warnings = [r for r in caplog.records if "lacks" in r.getMessage()]
    assert len(warnings) == 1 and "openvino-bf16" in warnings[0].getMessage()
    assert backends.variant_for_this_cpu("onnx-int8", flags=[]) == "onnx-int8"  # int8 runs everywhere
    monkeypatch.setattr(backends, "cpu_info", lambda: {"cpu": "new", "cores": 2, "isa": ["amx_bf16"]})
    assert Classifier.load(m).variant == "openvino-bf16"


# -- runtime settings ------------------------------------------------------------------------


def test_openvino_length_bucketing_and_parallel_chunks_do_not_change_embeddings(auto_model):
    model, _ = auto_model
    body = backends.load_body(model / "body", "openvino-fp32")
    texts = SPORT + FOOD + samples.CALIBRATION + ["word " * 60, "x"]
    assert body.length_bucket == 16
    bucketed = body.encode(texts, batch_size=8)  # several length-matched chunks: run in parallel
    settings = body.runtime_settings()
    assert settings["runtime"] == "openvino" and settings["inference_precision"] == "f32"
    assert "THROUGHPUT" in settings["performance_hint"] and settings["throughput_requests"] >= 1
    body.length_bucket = 0
    plain = np.vstack([body.encode([t]) for t in texts])  # one at a time, unpadded
    np.testing.assert_allclose(bucketed, plain, atol=1e-5)


def test_openvino_one_text_static_shapes_match_the_dynamic_compilation(auto_model):
    model, _ = auto_model
    body = backends.load_body(model / "body", "openvino-fp32")
    texts = SPORT + FOOD + ["word " * 60, "x"]
    body.static_shapes = 0
    dynamic = np.vstack([body.encode([t]) for t in texts])
    assert body.runtime_settings()["static_one_text_lengths"] == []
    body.static_shapes = 2
    for _ in range(openvino_backend.STATIC_AFTER):  # lengths seen that often: compiled in the background
        first = np.vstack([body.encode([t]) for t in texts])
    body.settle()
    lengths = body.runtime_settings()["static_one_text_lengths"]
    assert len(lengths) == 2 and all(n % body.length_bucket == 0 for n in lengths)
    static = np.vstack([body.encode([t]) for t in texts])
    # this thread ran those lengths on their own compilations
    assert {id(body._static[n]) for n in lengths} <= set(body._local.requests)
    np.testing.assert_allclose(first, dynamic, atol=1e-5)
    np.testing.assert_allclose(static, dynamic, atol=1e-5)
    assert body.encode(texts[:3], batch_size=8).shape == (3, dynamic.shape[1])  # batches stay dynamic


def test_openvino_static_shapes_after_a_fork(auto_model, monkeypatch):
    """A forked child inherits the parent's executor and futures but not its compiling thread:
    settle() does not wait on them, and the child starts compilations of its own."""
    from concurrent.futures import Future

    model, _ = auto_model
    body = backends.load_body(model / "body", "openvino-fp32")
    body.static_shapes = 2
    for _ in range(openvino_backend.STATIC_AFTER):
        body.encode([SPORT[0]])
    body.settle()
    assert len(body.runtime_settings()["static_one_text_lengths"]) == 1
    body._static_futures[4096] = Future()  # a compilation the parent's thread would have finished
    child = body._executor_pid + 1
    monkeypatch.setattr(openvino_backend.os, "getpid", lambda: child)  # now "in the child"
    body.settle(timeout=600)  # returns at once: nothing here would finish that future
    for _ in range(openvino_backend.STATIC_AFTER):
        body.encode(["word " * 60])
    assert 4096 not in body._static_futures and body._executor_pid == child
    body.settle()
    assert len(body.runtime_settings()["static_one_text_lengths"]) == 2


def test_settle_one_text_brings_background_shapes_in_before_timing():
    calls: list[str] = []

    class Settling:
        settled = 0

        def settle(self):
            self.settled += 1

    body = Settling()
    texts = [f"text {i}" for i in range(backends.SETTLE_TEXTS + 10)]
    seconds = backends.settle_one_text(body, calls.append, texts)
    assert seconds is not None and seconds >= 0
    assert calls == texts[:backends.SETTLE_TEXTS] and body.settled == 1
    assert backends.settle_one_text(object(), calls.append, texts) is None  # nothing compiles in the background
    assert len(calls) == backends.SETTLE_TEXTS


def test_openvino_static_shapes_setting(monkeypatch):
    monkeypatch.delenv(openvino_backend.STATIC_SHAPES_ENV, raising=False)
    assert openvino_backend.static_shapes_setting() == openvino_backend.STATIC_SHAPES
    monkeypatch.setenv(openvino_backend.STATIC_SHAPES_ENV, "0")
    assert openvino_backend.static_shapes_setting() == 0
    monkeypatch.setenv(openvino_backend.STATIC_SHAPES_ENV, "many")
    with pytest.raises(ValueError, match="FASTCLF_OPENVINO_STATIC_SHAPES"):
        openvino_backend.static_shapes_setting()


def test_threads_setting_reaches_the_session(auto_model, monkeypatch):
    model, _ = auto_model
    monkeypatch.setenv(backends.THREADS_ENV, "1")
    body = backends.load_body(model / "body", "onnx-int8")
    assert body.runtime_settings()["intra_op_threads"] == 1
    ov = backends.load_body(model / "body", "openvino-fp32")
    assert ov.runtime_settings()["threads_requested"] == 1 and ov.runtime_settings()["threads"] == "1"
    monkeypatch.setenv(backends.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="FASTCLF_THREADS"):
        backends.load_body(model / "body", "onnx-int8")


def test_benchmark_threads_reach_each_row(auto_model, tmp_path):
    model, _ = auto_model
    test_csv = tmp_path / "test.csv"
    pd.DataFrame({"text": SPORT + FOOD, "label": ["sport"] * len(SPORT) + ["food"] * len(FOOD)}).to_csv(
        test_csv, index=False)
    out = tmp_path / "report"
    code, output = run("benchmark", model, test_csv, "--variants", "onnx-int8,openvino-fp32", "--threads", "1",
                       "--batch-sizes", "1,4", "--duration", "0.2", "--max-eval", "6", "--output", out)
    assert code == 0, output
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["onnx-int8"]["runtime_settings"]["intra_op_threads"] == 1
    assert rows["openvino-fp32"]["runtime_settings"]["threads"] == "1"
    code, output = run("benchmark", model, test_csv, "--threads", "0", "--output", out)
    assert code == 1 and "--threads" in output  # one line, like every bad value


def test_auto_never_picks_a_variant_that_fails_the_gate(tmp_path, trained):
    from fastclf.accelerate.auto import choose_default
    from fastclf.accelerate.export import ExportResult
    from fastclf.timing import Timing

    model = tmp_path / "m"
    shutil.copytree(trained, model)
    fast_but_wrong = ExportResult("onnx-int8", ok=False, gate=gate_decision(1000, 30, 0.99),
                                  timing=Timing(1.0, 100, 32, 1000.0, 10), error="discarded")
    good = ExportResult("onnx-fp32", ok=True, gate=gate_decision(1000, 2, 0.999),
                        timing=Timing(5.0, 100, 32, 300.0, 10))
    choice = choose_default(model, [fast_but_wrong, good], Timing(20.0, 50, 32, 50.0, 5), max_accuracy_loss=1.0)
    assert choice.variant == "onnx-fp32" and choice.passed == ["torch-fp32", "onnx-fp32"]
    cfg = json.loads((model / "fastclf.json").read_text())
    assert cfg["default_variant"] == "onnx-fp32"
    assert cfg["default_variant_choice"]["candidates"]["onnx-int8"]["passed"] is False
    assert cfg["default_variant_choice"]["max_accuracy_loss"] == 1.0
    assert "within 1 accuracy point" in cfg["default_variant_choice"]["criterion"]
    slow = ExportResult("onnx-fp32", ok=True, gate=gate_decision(1000, 0, 1.0), timing=Timing(50.0, 10, 32, 30.0, 2))
    assert choose_default(model, [slow], Timing(20.0, 50, 32, 50.0, 5), max_accuracy_loss=1.0).variant == "torch-fp32"


def test_tolerance_out_of_range_is_one_error(trained, calib):
    code, out = run("accelerate", trained, "--auto", "--max-accuracy-loss", "101", "--calibration", calib)
    assert code == 1 and "--max-accuracy-loss must be between 0 and 100" in out
    code, out = run("accelerate", trained, "--auto", "--max-disagreement", "0.02", "--calibration", calib)
    assert code == 2 and "No such option" in out


def test_auto_considers_the_new_models_on_labeled_check_texts(trained, calib, tmp_path, monkeypatch):
    from samples import fit_tiny_head

    from fastclf.backends import auto_candidates

    assert {"static", "openvino-int8-distilled"} <= set(auto_candidates(torch=False))
    model = shutil.copytree(trained, tmp_path / "m")
    monkeypatch.setattr(auto, "AUTO_CANDIDATES", ("onnx-fp32", "static", "openvino-int8-distilled"))
    monkeypatch.setattr(acc, "time_classifier", functools.partial(acc.time_classifier, one_text_seconds=0.1,
                                                                  batch_seconds=0.1))
    monkeypatch.setattr(acc, "head_fitter", lambda cfg: fit_tiny_head)  # the tiny training set
    code, out = run("accelerate", model, "--auto", "--calibration", calib, "--max-accuracy-loss", "50")
    assert code == 0, out  # no labels: the new models are skipped with one note, before any export
    assert "skipping static, openvino-int8-distilled: a new model is judged by its accuracy" in out
    labeled = tmp_path / "labeled.csv"
    pd.DataFrame({"text": SPORT + FOOD, "label": ["sport"] * len(SPORT) + ["food"] * len(FOOD)}).to_csv(
        labeled, index=False)
    monkeypatch.setattr(auto, "AUTO_CANDIDATES", ("onnx-fp32", "static"))  # the distilled export takes minutes
    code, out = run("accelerate", model, "--auto", "--calibration", calib, "--check", labeled,
                    "--max-accuracy-loss", "50")
    assert code == 0, out
    assert "new models (static) by their accuracy loss on 16 labeled texts of --check" in out
    line = next(row for row in out.splitlines() if row.startswith("static"))
    assert "accuracy loss" in line and "allowed 50.0%" in line and "ms" in line and "texts/s" in line
    choice = json.loads((model / "fastclf.json").read_text())["default_variant_choice"]
    assert set(choice["candidates"]) == {"torch-fp32", "onnx-fp32", "static"}
    assert choice["candidates"]["static"]["passed"] and choice["max_accuracy_loss"] == 50
    timed = {k: v["one_text_p50_ms"] for k, v in choice["candidates"].items() if v["passed"]}
    assert choice["variant"] == min(timed, key=timed.__getitem__)
    assert f"default variant: {choice['variant']}, the lowest one-text p50 latency" in out
