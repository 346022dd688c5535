"""The Ray engine (fastclf.scoring.ray): a local Ray on a tiny corpus gives the local engine's labels,
in bounded time, quietly, and is shut down afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray  # a dev dependency (fastclf[ray]): these tests run, never skip
from samples import CALIBRATION, FOOD, SPORT, run, train_tiny

from fastclf.errors import DataError, MissingDependency
from fastclf.model import Classifier
from fastclf.scoring.ray import cpus_per_actor, predict_dataset, predict_files, ray_session

ROOT = Path(__file__).resolve().parents[1]
TEXTS = SPORT + FOOD + CALIBRATION


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_body_dir):
    path = tmp_path_factory.mktemp("ray") / "model"
    train_tiny(tiny_body_dir).save(path)
    return path


def _corpus(folder: Path) -> dict[str, pd.DataFrame]:
    folder.mkdir()
    parts = {
        "a.parquet": pd.DataFrame({"id": [str(i) for i in range(600)],
                                   "text": [f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(600)]}),
        "b.csv": pd.DataFrame({"text": TEXTS, "note": ["x", ""] * (len(TEXTS) // 2)}),
    }
    parts["a.parquet"].to_parquet(folder / "a.parquet", index=False)
    parts["b.csv"].to_csv(folder / "b.csv", index=False)
    return parts


def test_cli_ray_engine_writes_what_the_local_engine_writes(tmp_path, model_dir):
    corpus = tmp_path / "corpus"
    parts = _corpus(corpus)
    code, text = run("predict", model_dir, "--input", corpus, "--output", str(tmp_path / "local") + "/", "-q")
    assert code == 0, text

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                         os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fastclf", "predict", str(model_dir), "--input", str(corpus / "*"), "--output",
         str(tmp_path / "ray") + "/", "--engine", "ray", "--concurrency", "2", "--chunk-size", "64"],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert seconds < 600  # 27 s on a quiet 2-core machine; over 300 s once when a training job shared the CPU
    assert proc.stdout.strip() == f"wrote {600 + len(TEXTS)} rows to 2 files in {tmp_path / 'ray'}/"
    # quiet: no Ray log lines, warnings or progress bars (stderr is not a terminal)
    assert proc.stderr.strip() == "", proc.stderr

    clf = Classifier.load(model_dir)
    for name, source in parts.items():
        local_path, ray_path = tmp_path / "local" / name, tmp_path / "ray" / name
        if name.endswith(".parquet"):
            local, scored = pd.read_parquet(local_path), pd.read_parquet(ray_path)
        else:
            local, scored = pd.read_csv(local_path), pd.read_csv(ray_path)
        assert scored.columns.tolist() == local.columns.tolist()
        assert scored.columns.tolist()[-3:] == ["predicted", "proba_food", "proba_sport"]
        assert scored["predicted"].tolist() == local["predicted"].tolist() == clf.predict(source["text"].tolist())
        assert scored["text"].tolist() == source["text"].tolist()  # input order kept
        np.testing.assert_allclose(scored[["proba_food", "proba_sport"]].to_numpy(),
                                   local[["proba_food", "proba_sport"]].to_numpy(), atol=1e-5)
        pd.testing.assert_frame_equal(scored.drop(columns=["proba_food", "proba_sport"]),
                                      local.drop(columns=["proba_food", "proba_sport"]))
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.endswith(".tmp")]


def test_predict_dataset_actor_pool(model_dir, tmp_path):
    clf = Classifier.load(model_dir)
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(300)]
    started = time.monotonic()
    with ray_session(num_cpus=2):
        assert ray.is_initialized()
        ds = ray.data.from_pandas(pd.DataFrame({"body": texts, "n": range(300)}))  # one block
        scored = predict_dataset(ds, model_dir, batch_size=32, concurrency=2, text_column="body")
        materialized = scored.materialize()
        assert materialized.num_blocks() >= 2  # the single block was re-cut, so both actors get work
        out = materialized.to_pandas().sort_values("n")
        with pytest.raises(DataError, match="concurrency must be at least 1"):
            predict_dataset(ds, model_dir, concurrency=0)
        # an error inside an actor comes back as the fastclf error, and nothing is written
        bad = tmp_path / "bad.csv"
        pd.DataFrame({"text": ["a goal", None, "soup"], "n": [1, 2, 3]}).to_csv(bad, index=False)
        with pytest.raises(DataError, match="empty or missing text"):
            predict_files(model_dir, bad, tmp_path / "out.csv")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
        assert ray.is_initialized()  # a Ray that was running is left running
    assert not ray.is_initialized()  # shut down on leaving
    assert time.monotonic() - started < 240
    assert out.columns.tolist() == ["body", "n", "predicted", "proba_food", "proba_sport"]
    assert out["predicted"].tolist() == clf.predict(texts)
    np.testing.assert_allclose(out[["proba_food", "proba_sport"]].to_numpy(dtype=float), clf.predict_proba(texts),
                               atol=1e-5)


def test_cpus_per_actor_leaves_a_cpu_for_reading():
    assert cpus_per_actor(2, 1) == 1
    assert cpus_per_actor(2, 2) == 0.5
    assert cpus_per_actor(16, 4, 2) == 2
    assert cpus_per_actor(4, 4) == 0.75
    with pytest.raises(DataError, match="too few"):
        cpus_per_actor(1, 1)


def test_bad_model_fails_before_ray_starts(tmp_path):
    pd.DataFrame({"text": ["a"]}).to_csv(tmp_path / "in.csv", index=False)
    code, text = run("predict", tmp_path / "no-model", "--input", tmp_path / "in.csv", "--engine", "ray")
    assert code == 1 and "model directory not found" in text
    assert not ray.is_initialized()


def test_missing_extra_is_one_line(tmp_path, model_dir, monkeypatch):
    pd.DataFrame({"text": ["a goal"]}).to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependency, match=r"pip install 'fastclf\[ray\]'"):
        predict_files(model_dir, tmp_path / "in.csv", tmp_path / "out.csv")
    code, text = run("predict", model_dir, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
                     "--engine", "ray")
    assert code == 1 and text.strip() == "error: ray[data] is not installed; install it with: pip install 'fastclf[ray]'"
    assert not (tmp_path / "out.csv").exists()


def test_each_actor_runs_its_share_of_the_threads(model_dir, monkeypatch):
    """Several actors on one machine each get cores / actors runtime threads (not a thread per
    core each), and a FASTCLF_THREADS set by the user wins."""
    from fastclf.model import Classifier
    from fastclf.scoring.stream import ChunkScorer

    asked = []
    load = Classifier.load
    monkeypatch.setattr(Classifier, "load", lambda *a, threads=None, **k: asked.append(threads) or load(*a, **k))
    monkeypatch.delenv("FASTCLF_THREADS", raising=False)
    ChunkScorer(str(model_dir), None, 32, threads=1)
    monkeypatch.setenv("FASTCLF_THREADS", "3")
    ChunkScorer(str(model_dir), None, 32, threads=1)
    assert asked == [1, 3]
