"""PyTorch bodies: torch-bf16, torch-int8 and inc-int8 export, load and agree with torch-fp32.

torch.compile is slow on 2 cores, so every compiled body is loaded once, in a module-scoped
fixture, and shared: bf16 and inc-int8 on a copy of the tiny random body, torch-int8 on a copy
of the real all-MiniLM-L6-v2 (the real-model parity check). Checks that need no compiled graph
(persistence, errors) run on the uncompiled quantization steps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from samples import CALIBRATION

from fastclf.backends import REFERENCE, Body, export_variant, get_spec, is_exported, load_body
from fastclf.backends import _torch_graph as tg
from fastclf.backends import _torch_int8 as q
from fastclf.errors import DataError, ModelFormatError

# odd inputs: empty, one token, beyond the max length (truncated), non-ASCII
TRICKY = ["", " ", "a", "naïve café 日本語 😀", "word " * 400, "The end."]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_body_dir) -> Path:
    return Path(shutil.copytree(tiny_body_dir, tmp_path_factory.mktemp("torch-tiny") / "body"))


@pytest.fixture(scope="module")
def tiny_ref(tiny_dir):
    return load_body(tiny_dir, REFERENCE)


@pytest.fixture(scope="module")
def tiny_bf16(tiny_dir):
    export_variant(tiny_dir, "torch-bf16", CALIBRATION)
    return load_body(tiny_dir, "torch-bf16")


def _no_torch_load(*args, **kwargs):
    raise AssertionError("a model file was read with torch.load (pickle)")


@pytest.fixture(scope="module")
def tiny_inc(tiny_dir):
    export_variant(tiny_dir, "inc-int8", CALIBRATION)
    with pytest.MonkeyPatch.context() as mp:  # loading never unpickles the model's files
        mp.setattr(torch, "load", _no_torch_load)
        mp.setattr(torch.export, "load", _no_torch_load)
        return load_body(tiny_dir, "inc-int8")


@pytest.fixture(scope="module")
def minilm_copy(tmp_path_factory, minilm_dir) -> Path:
    return Path(shutil.copytree(minilm_dir, tmp_path_factory.mktemp("torch-minilm") / "body"))


@pytest.fixture(scope="module")
def minilm_int8(minilm_copy):
    export_variant(minilm_copy, "torch-int8", CALIBRATION)
    return load_body(minilm_copy, "torch-int8")


def test_bf16_is_built_at_load_and_matches_fp32(tiny_dir, tiny_ref, tiny_bf16, texts):
    assert get_spec("torch-bf16").files == ()
    assert not (tiny_dir / "torch").exists()  # nothing exported
    assert isinstance(tiny_bf16, Body) and tiny_bf16.variant == "torch-bf16"
    emb = tiny_bf16.encode(texts)
    assert emb.dtype == np.float32 and emb.shape == (len(texts), 32)
    assert _cos(emb, tiny_ref.encode(texts)).min() > 0.999


def test_one_graph_for_every_batch_and_length(tiny_ref, tiny_bf16, texts):
    """Compiled at load; batch 1, odd lengths and larger batches do not recompile."""
    before = _graphs()
    many = texts * 5 + TRICKY
    emb = tiny_bf16.encode(many, batch_size=32)
    one = np.concatenate([tiny_bf16.encode([t], batch_size=1) for t in TRICKY + texts[:2]])
    assert _graphs() == before
    assert emb.shape == (len(many), 32) and np.isfinite(emb).all()
    assert _cos(emb, tiny_ref.encode(many)).min() > 0.999
    assert _cos(one, tiny_ref.encode(TRICKY + texts[:2])).min() > 0.999


def test_inc_int8_exports_safe_files_and_matches_fp32(tiny_dir, tiny_ref, tiny_inc, texts):
    spec = get_spec("inc-int8")
    assert is_exported(tiny_dir, "inc-int8")
    assert not any(f.endswith((".pt", ".pt2", ".pkl")) for f in spec.files)
    from safetensors import safe_open

    with safe_open(str(tiny_dir / spec.files[0]), framework="pt") as f:
        meta = f.metadata()
        assert meta["format"] == q.OBSERVERS_FORMAT and meta["engine"] == "inc"
        assert len(list(f.keys())) > 0
    calibration = json.loads((tiny_dir / spec.files[1]).read_text(encoding="utf-8"))
    assert calibration["texts"] == CALIBRATION
    assert tiny_inc.variant == "inc-int8" and not tiny_inc.recalibrated
    emb = tiny_inc.encode(texts + TRICKY)
    assert emb.dtype == np.float32 and emb.shape == (len(texts) + len(TRICKY), 32)
    assert _cos(emb, tiny_ref.encode(texts + TRICKY)).min() > 0.99
    one = tiny_inc.encode(texts[:1], batch_size=1)
    assert _cos(one, emb[:1]).min() > 0.999


def test_minilm_torch_int8_matches_fp32(minilm_copy, minilm_int8, texts):
    assert is_exported(minilm_copy, "torch-int8")
    assert minilm_int8.variant == "torch-int8" and not minilm_int8.recalibrated
    ref = load_body(minilm_copy, REFERENCE).encode(texts + CALIBRATION[:4])
    emb = minilm_int8.encode(texts + CALIBRATION[:4])
    assert emb.dtype == np.float32 and emb.shape == (len(texts) + 4, 384)
    cos = _cos(emb, ref)
    assert cos.mean() > 0.97 and cos.min() > 0.94
    one = np.concatenate([minilm_int8.encode([t], batch_size=1) for t in texts[:3]])
    assert _cos(one, emb[:3]).min() > 0.999


def _quantization_steps(body_dir: Path, variant: str):
    """The uncompiled steps a load runs: export the transformer, insert observers."""
    spec = get_spec(variant)
    st = tg._load_sentence_transformer(body_dir)
    parts = tg._prepare_core(st)
    return spec, st, parts, parts[2], q._observed(spec, st, parts)


def test_stored_observers_rebuild_the_quantized_model(tmp_path, tiny_body_dir, texts):
    """A load rebuilds the int8 graph from the stored statistics, identically every time, and
    it is the graph that calibrating on the same texts gives (no calibration run at load)."""
    body = Path(shutil.copytree(tiny_body_dir, tmp_path / "body"))
    export_variant(body, "torch-int8", CALIBRATION)
    spec = get_spec("torch-int8")
    outputs = []
    for _ in range(2):
        _, st, parts, names, prepared = _quantization_steps(body, "torch-int8")
        assert q._load_observers(prepared, body / spec.files[0], spec) == ""
        inputs = [st.preprocess(texts)[n] for n in names]
        with torch.no_grad():
            outputs.append(q._engine(spec)[1](prepared)(*inputs))
    assert torch.equal(outputs[0], outputs[1])
    calibrated = q._observed(spec, st, parts, CALIBRATION)
    with torch.no_grad():
        fresh = q._engine(spec)[1](calibrated)(*inputs)
    assert torch.allclose(fresh, outputs[0], atol=2e-3)


def test_mismatched_observers_are_detected(tmp_path, tiny_body_dir):
    """Observers from another graph (say another torch version) are refused, not loaded blindly;
    the load then recalibrates on calibration.json."""
    body = Path(shutil.copytree(tiny_body_dir, tmp_path / "body"))
    export_variant(body, "torch-int8", CALIBRATION[:4])
    spec = get_spec("torch-int8")
    # inc-int8 observers (another quantizer) in torch-int8's place
    export_variant(body, "inc-int8", CALIBRATION[:4])
    shutil.copy(body / get_spec("inc-int8").files[0], body / spec.files[0])
    *_, prepared = _quantization_steps(body, "torch-int8")
    assert "not a" in q._load_observers(prepared, body / spec.files[0], spec)
    (body / spec.files[0]).write_bytes(b"not safetensors")
    assert "cannot read" in q._load_observers(prepared, body / spec.files[0], spec)
    assert q._read_calibration(body / spec.files[1]) == CALIBRATION[:4]


def test_int8_needs_calibration_texts_and_an_export(tmp_path, tiny_body_dir):
    body = Path(shutil.copytree(tiny_body_dir, tmp_path / "body"))
    for variant in ("torch-int8", "inc-int8"):
        with pytest.raises(ModelFormatError, match="incomplete.*re-export it with"):
            load_body(body, variant)
        with pytest.raises(DataError):
            export_variant(body, variant, ["", "  "])
    assert not (body / "torch").exists()


def test_compiled_variants_need_a_cpp_compiler(monkeypatch, tiny_body_dir):
    """torch.compile builds C++ at load: without a compiler the error says so, before any work."""
    import torch._inductor.config as inductor_config

    from fastclf.errors import MissingDependency

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("no-such-compiler-fastclf",))
    with pytest.raises(MissingDependency, match="C\\+\\+ compiler"):
        load_body(tiny_body_dir, "torch-bf16")
