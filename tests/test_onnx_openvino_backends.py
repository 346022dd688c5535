"""ONNX Runtime and OpenVINO bodies: the numpy pipeline, exports, loading, parity with
torch-fp32, deployment without torch, and clear errors for broken or unsupported folders.

Exports are shared through module-scoped fixtures: every variant is exported once into a
copy of the tiny random body, and the int8 (plus fp32) variants into a copy of the real
all-MiniLM-L6-v2 body.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from samples import CALIBRATION

from fastclf.backends import REFERENCE, VARIANTS, Body, export_variant, get_spec, is_exported, load_body
from fastclf.backends._numpy_pipeline import MIN_FILL, TextPipeline, length_chunks
from fastclf.backends._pipeline_config import POOLING_MODES
from fastclf.errors import DataError, ModelFormatError

ONNX_VARIANTS = ["onnx-fp32", "onnx-o1", "onnx-o2", "onnx-o3", "onnx-int8"]
OPENVINO_VARIANTS = ["openvino-fp32", "openvino-bf16", "openvino-int8"]
OUR_VARIANTS = ONNX_VARIANTS + OPENVINO_VARIANTS


TRICKY = [
    "",
    " ",
    "  \t\n ",
    "a",
    "Hello, World!",
    "naïve café résumé Ångström ÉCOLE",
    "日本語のテキストと中文字符",
    "emoji 😀🎬👍 and \u200b zero width \u00a0 nbsp",
    "[CLS] [SEP] [PAD] [MASK] literal special tokens",
    "straße ﬁ ligature Ⅻ tab\tnew\nline\r\n",
    "word " * 400,  # beyond any max length
    "x" * 3000,
    "Ünïcödé " * 300,
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def tiny_exported(tiny_body_dir, tmp_path_factory) -> Path:
    """A copy of the tiny body with every ONNX/OpenVINO variant exported into it."""
    body = _copy(tiny_body_dir, tmp_path_factory.mktemp("tiny_exported") / "body")
    for variant in OUR_VARIANTS:
        export_variant(body, variant, CALIBRATION)
    return body


@pytest.fixture(scope="module")
def tiny_reference(tiny_exported):
    body = load_body(tiny_exported, REFERENCE)
    return body.encode


@pytest.fixture(scope="module")
def minilm_exported(minilm_dir, tmp_path_factory) -> Path:
    """A copy of all-MiniLM-L6-v2 with the fp32 and int8 ONNX/OpenVINO variants."""
    body = _copy(minilm_dir, tmp_path_factory.mktemp("minilm_exported") / "body")
    for variant in ("onnx-int8", "openvino-fp32", "openvino-int8"):
        export_variant(body, variant, CALIBRATION)
    return body


@pytest.fixture(scope="module")
def minilm_st(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)


# -- the numpy pipeline --------------------------------------------------------------------


def _st_features(model, texts):
    out = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
    return {k: out[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.mark.parametrize("which", ["minilm", "tiny"])
def test_tokenization_matches_sentence_transformers(which, minilm_dir, tiny_body_dir, minilm_st, texts):
    if which == "minilm":
        path, model = minilm_dir, minilm_st
    else:
        from sentence_transformers import SentenceTransformer

        path = tiny_body_dir
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    pipeline = TextPipeline(path)
    assert pipeline.max_seq_length == model.max_seq_length
    for batch in (TRICKY, texts + TRICKY[::-1], TRICKY[:1], [TRICKY[-3]], ["short one", "a much longer second text here"]):
        ours, theirs = pipeline.tokenize(batch), _st_features(model, batch)
        for key in theirs:
            assert ours[key].dtype == np.int64
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{which} {key}")


def test_minilm_uses_max_seq_length_not_the_stored_tokenizer_padding(minilm_dir):
    # MiniLM's tokenizer.json stores Fixed(128) padding and truncation at 128; the body's
    # max_seq_length is 256 and sentence-transformers pads to the longest text of the batch.
    stored = json.loads((minilm_dir / "tokenizer.json").read_text())
    assert stored["padding"]["strategy"] == {"Fixed": 128} and stored["truncation"]["max_length"] == 128
    pipeline = TextPipeline(minilm_dir)
    assert pipeline.max_seq_length == 256
    assert pipeline.tokenize(["short"])["input_ids"].shape == (1, 3)
    assert pipeline.tokenize(["word " * 400])["input_ids"].shape == (1, 256)


def _with_pooling(tiny_body_dir: Path, dst: Path, pooling: dict) -> Path:
    body = _copy(tiny_body_dir, dst)
    (body / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return body


@pytest.mark.parametrize(
    "mode", [*POOLING_MODES, ("cls", "mean", "max"), "legacy-mean-sqrt"], ids=lambda m: "+".join(m) if isinstance(m, tuple) else m
)
def test_pooling_matches_sentence_transformers(mode, tiny_body_dir, tmp_path):
    import torch
    from sentence_transformers import models

    if mode == "legacy-mean-sqrt":
        config = {"word_embedding_dimension": 32, "pooling_mode_mean_sqrt_len_tokens": True,
                  "pooling_mode_mean_tokens": False}
        st_mode = "mean_sqrt_len_tokens"
    else:
        config = {"embedding_dimension": 32, "pooling_mode": list(mode) if isinstance(mode, tuple) else mode}
        st_mode = mode
    pipeline = TextPipeline(_with_pooling(tiny_body_dir, tmp_path / "body", config))
    features = pipeline.tokenize(["a b c d e f g", "short", "", "a somewhat longer text with more tokens in it"])
    rng = np.random.default_rng(0)
    token_embeddings = rng.standard_normal((*features["input_ids"].shape, 32)).astype(np.float32)

    st_pool = models.Pooling(32, pooling_mode=st_mode)
    with torch.no_grad():
        out = st_pool({"token_embeddings": torch.from_numpy(token_embeddings),
                       "attention_mask": torch.from_numpy(features["attention_mask"])})["sentence_embedding"]
        expected = torch.nn.functional.normalize(out, p=2, dim=1).numpy()  # the tiny body has Normalize
    got = pipeline.pool(token_embeddings, features["attention_mask"])
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("include_prompt", [True, False])
def test_default_prompt_is_applied_like_sentence_transformers(include_prompt, tiny_exported, tmp_path, texts):
    body = _copy_without_exports(tiny_exported, tmp_path / "body", ("onnx/model.onnx",))
    cfg_path = body / "config_sentence_transformers.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(prompts={"query": "query: ", "document": ""}, default_prompt_name="query")
    cfg_path.write_text(json.dumps(cfg))
    pooling = json.loads((body / "1_Pooling" / "config.json").read_text())
    (body / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "include_prompt": include_prompt}))
    ref = load_body(body, REFERENCE).encode(texts)
    assert _cos(load_body(body, "onnx-fp32").encode(texts), ref).min() > 0.9999
    # and the prompt did matter
    assert _cos(load_body(tiny_exported, "onnx-fp32").encode(texts), ref).min() < 0.999


# -- every variant on the tiny body --------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 8, 128])
def test_length_chunks_cover_every_text_once_with_little_padding(batch_size):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=300).tolist()
    chunks = length_chunks(lengths, batch_size)
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(300))  # each text exactly once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for chunk in chunks:
        assert 1 <= len(chunk) <= batch_size
        longest = lengths[chunk[0]]
        assert all(lengths[i] >= MIN_FILL * longest for i in chunk)  # padding bounded
    # chunks are as large as the two rules allow: a chunk ends full or at a length cut
    for a, b in zip(chunks, chunks[1:]):
        assert len(a) == batch_size or lengths[b[0]] < MIN_FILL * lengths[a[0]]
    assert length_chunks([], batch_size) == []


def test_length_chunks_keep_equal_lengths_in_input_order():
    chunks = length_chunks([5, 9, 5, 9, 5], 2)
    assert [c.tolist() for c in chunks] == [[1, 3], [0, 2], [4]]
    with pytest.raises(ValueError):
        length_chunks([1], 0)


def test_exports_write_only_the_variant_files(tiny_exported):
    expected = {f for v in OUR_VARIANTS for f in get_spec(v).files} | {"onnx/model.onnx"}
    written = {
        p.relative_to(tiny_exported).as_posix()
        for sub in ("onnx", "openvino")
        for p in (tiny_exported / sub).rglob("*")
        if p.is_file()
    }
    assert written == expected
    assert not [p for p in tiny_exported.rglob("*") if p.name.endswith(".tmp")]
    assert all(is_exported(tiny_exported, v) for v in OUR_VARIANTS)


@pytest.mark.parametrize("variant", OUR_VARIANTS)
def test_variant_loads_and_matches_torch(variant, tiny_exported, tiny_reference, texts):
    body = load_body(tiny_exported, variant)
    assert isinstance(body, Body)
    assert body.variant == variant
    inputs = texts + ["", "word " * 400, "naïve café 😀"]
    ref = tiny_reference(inputs)
    emb = body.encode(inputs)
    assert emb.dtype == np.float32 and emb.shape == ref.shape == (len(inputs), 32)
    cos = _cos(emb, ref)
    spec = get_spec(variant)
    if "quantize" in spec.option:
        assert cos.min() > 0.98, cos
    elif spec.option.get("precision") == "bf16" and body.inference_precision != "f32":
        assert cos.min() > 0.99, cos  # real bf16 on a CPU that has it
    else:
        assert cos.min() > 0.9999, cos
    # Dynamic shapes: batch size and sequence length vary; results do not depend on them,
    # except that dynamic int8 quantizes activations with one range per batch.
    def same(a, b):
        if spec.name == "onnx-int8":
            assert _cos(a, b).min() > 0.995
        else:
            np.testing.assert_allclose(a, b, atol=2e-4)

    for batch_size in (1, 3):
        same(body.encode(inputs, batch_size=batch_size), emb)
    same(body.encode([inputs[2]]), emb[2:3])
    assert body.encode([]).shape == (0, 32)


def test_reexport_replaces_files(tiny_exported, tiny_reference, texts):
    target = tiny_exported / "onnx" / "model_O1.onnx"
    before = target.stat().st_mtime_ns
    export_variant(tiny_exported, "onnx-o1", [])
    assert target.stat().st_mtime_ns >= before
    assert _cos(load_body(tiny_exported, "onnx-o1").encode(texts), tiny_reference(texts)).min() > 0.9999


def test_calibrated_export_needs_texts(tiny_body_dir, tmp_path):
    body = _copy(tiny_body_dir, tmp_path / "body")
    with pytest.raises(DataError):
        export_variant(body, "openvino-int8", [])
    assert not (body / "openvino").exists()


def test_failed_export_leaves_no_partial_file(tiny_body_dir, tmp_path, monkeypatch):
    from optimum.onnxruntime import ORTOptimizer

    def broken(self, optimization_config, save_dir, file_suffix="optimized", **kwargs):
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        (Path(save_dir) / f"model_{file_suffix}.onnx").write_bytes(b"partial")
        raise RuntimeError("optimizer crashed")

    monkeypatch.setattr(ORTOptimizer, "optimize", broken)
    body = _copy(tiny_body_dir, tmp_path / "body")
    with pytest.raises(RuntimeError, match="optimizer crashed"):
        export_variant(body, "onnx-o2", [])
    assert not (body / "onnx" / "model_O2.onnx").exists()
    assert not [p for p in body.rglob("*") if p.name.endswith(".tmp")]


# -- the real model ------------------------------------------------------------------------


# A long, natural text (about 300 tokens: beyond MiniLM's max_seq_length of 256).
LONG_REVIEW = (
    "The film opens on a quiet morning in a coastal village, where a retired schoolteacher spends her days "
    "repairing fishing nets and writing letters she never sends. When a stranger arrives with news of her "
    "estranged son, the story slowly widens into a portrait of a community that has learned to live with loss. "
    "The director takes his time, perhaps too much of it in the middle hour, but the patience pays off in a "
    "final act of remarkable tenderness. The lead performance is extraordinary: every glance carries years of "
    "regret, and the few moments of humour land with real warmth. The supporting cast is uneven, and a subplot "
    "about a property developer feels borrowed from a lesser movie, yet the photography of the grey sea and the "
    "low winter light is so beautiful that it carries the film through its weaker stretches. The score, mostly "
    "solo cello, is used sparingly and well. Some viewers will find the pace exasperating and the ending too "
    "neat; others will be moved to tears. It is not a perfect film, but it is an honest one, made with care "
    "and with a deep respect for ordinary people and the small decisions that shape a life. "
) * 2

MINILM_INPUTS = [*TRICKY[4:10], LONG_REVIEW]  # realistic; the degenerate ones are checked below


@pytest.fixture(scope="module")
def minilm_reference(minilm_st, texts_module):
    inputs = texts_module + MINILM_INPUTS
    return inputs, minilm_st.encode(inputs, convert_to_numpy=True, show_progress_bar=False)


@pytest.fixture(scope="module")
def texts_module() -> list[str]:
    return [
        "A gripping, beautifully acted drama that stays with you.",
        "Dull, plodding and far too long; I checked my watch twice.",
        "The best animated film of the year, funny and warm.",
        "A lazy sequel that recycles every joke from the first one.",
        "Two detectives chase a killer across 1970s Marseille.",
    ]


@pytest.mark.parametrize(
    ("variant", "mean_min", "min_min"),
    [("onnx-fp32", 0.9999, 0.9999), ("openvino-fp32", 0.9999, 0.9999), ("onnx-int8", 0.98, 0.95), ("openvino-int8", 0.98, 0.95)],
)
def test_minilm_parity(variant, mean_min, min_min, minilm_exported, minilm_reference):
    inputs, ref = minilm_reference
    cos = _cos(load_body(minilm_exported, variant).encode(inputs), ref)
    assert cos.mean() > mean_min and cos.min() > min_min, (variant, cos)


def test_minilm_int8_on_degenerate_inputs(minilm_exported, minilm_st):
    # Empty texts ([CLS] [SEP] only) and 256 copies of one token are far from anything the
    # int8 variants were calibrated on; static int8 drifts most there. Checked loosely so
    # that regressions show, and so the drift stays documented.
    inputs = ["", " ", "a", "word " * 400]
    ref = minilm_st.encode(inputs, convert_to_numpy=True, show_progress_bar=False)
    assert _cos(load_body(minilm_exported, "onnx-fp32").encode(inputs), ref).min() > 0.9999
    assert _cos(load_body(minilm_exported, "onnx-int8").encode(inputs), ref).min() > 0.9
    assert _cos(load_body(minilm_exported, "openvino-int8").encode(inputs), ref).min() > 0.7


# -- deployment without torch --------------------------------------------------------------

_NO_TORCH = textwrap.dedent(
    """
    import json, sys
    from fastclf.backends import load_body
    body = load_body(sys.argv[1], sys.argv[2])
    emb = body.encode(json.loads(sys.argv[3]))
    heavy = [m for m in ("torch", "transformers", "sentence_transformers", "optimum") if m in sys.modules]
    print(json.dumps({"heavy": heavy, "emb": emb.tolist()}))
    """
)


@pytest.mark.parametrize("variant", ["onnx-int8", "openvino-fp32"])
def test_loads_and_encodes_without_torch(variant, tiny_exported, texts):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, str(tiny_exported), variant, json.dumps(texts)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    np.testing.assert_allclose(np.array(out["emb"]), load_body(tiny_exported, variant).encode(texts), atol=1e-5)


# -- broken and unsupported folders --------------------------------------------------------


def _copy_without_exports(src: Path, dst: Path, keep: tuple[str, ...]) -> Path:
    body = _copy(src, dst)
    for sub in ("onnx", "openvino"):
        for p in (body / sub).glob("*"):
            if p.relative_to(body).as_posix() not in keep:
                p.unlink()
    return body


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_onnx_file_raises_model_format_error(damage, tiny_exported, tmp_path):
    body = _copy_without_exports(tiny_exported, tmp_path / "body", ("onnx/model.onnx",))
    path = body / "onnx" / "model.onnx"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"this is not an onnx model\n" * 10)
    with pytest.raises(ModelFormatError, match=r"model\.onnx.*(corrupted|truncated).*fastclf accelerate"):
        load_body(body, "onnx-fp32")


@pytest.mark.parametrize("damage", ["truncate-bin", "garbage-xml"])
def test_corrupted_openvino_files_raise_model_format_error(damage, tiny_exported, tmp_path):
    body = _copy_without_exports(tiny_exported, tmp_path / "body", get_spec("openvino-fp32").files)
    if damage == "truncate-bin":
        path = body / "openvino" / "openvino_model.bin"
        path.write_bytes(path.read_bytes()[:1000])
    else:
        (body / "openvino" / "openvino_model.xml").write_text("<net><broken")
    with pytest.raises(ModelFormatError, match=r"openvino_model\.xml.*(corrupted|truncated)"):
        load_body(body, "openvino-fp32")


def test_dense_module_is_unsupported(tiny_exported, tmp_path):
    body = _copy_without_exports(tiny_exported, tmp_path / "body", ("onnx/model.onnx",))
    modules = json.loads((body / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense",
                       "type": "sentence_transformers.sentence_transformer.modules.dense.Dense"})
    for i, m in enumerate(modules):
        m["idx"] = i
    (body / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFormatError, match=r"Dense.*torch"):
        load_body(body, "onnx-fp32")
    with pytest.raises(ModelFormatError, match=r"Dense.*torch"):
        export_variant(body, "onnx-o1", [])
    assert not (body / "onnx" / "model_O1.onnx").exists()


def test_unknown_pooling_mode_is_unsupported(tiny_exported, tmp_path):
    body = _copy_without_exports(tiny_exported, tmp_path / "body", get_spec("openvino-fp32").files)
    (body / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "attention"}))
    with pytest.raises(ModelFormatError, match=r"pooling mode 'attention'.*torch"):
        load_body(body, "openvino-fp32")


def test_missing_tokenizer_json_is_a_format_error(tiny_exported, tmp_path):
    body = _copy_without_exports(tiny_exported, tmp_path / "body", ("onnx/model.onnx",))
    (body / "tokenizer.json").unlink()
    with pytest.raises(ModelFormatError, match="tokenizer.json"):
        load_body(body, "onnx-fp32")


def test_all_owned_variants_are_registered():
    assert set(OUR_VARIANTS) <= set(VARIANTS)
    assert {VARIANTS[v].runtime for v in ONNX_VARIANTS} == {"onnx"}
    assert {VARIANTS[v].runtime for v in OPENVINO_VARIANTS} == {"openvino"}


def test_onnx_int8_keeps_the_feed_forward_layers_in_fp32_while_int8_drifts(tiny_exported, tmp_path, monkeypatch):
    import onnx

    from fastclf.backends import onnx_backend

    src = tiny_exported / "onnx" / "model.onnx"
    shapes = onnx_backend._weight_shapes(src)
    down = [n for n, (k, m) in shapes.items() if k > m]
    up = [n for n, (k, m) in shapes.items() if k < m]
    assert len(down) == len(up) == 2  # the tiny body: 2 layers, 32 -> 64 -> 32 feed-forward
    pipeline = TextPipeline(tiny_exported)

    def int8_matmuls(path: Path) -> int:
        return sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in onnx.load(str(path)).graph.node)

    monkeypatch.setattr(onnx_backend, "INT8_TARGET_COSINE", 0.0)  # any int8 graph is close enough
    met = onnx_backend._quantize_dynamic_checked(src, tmp_path / "a.onnx", pipeline, CALIBRATION)
    assert met["kept_fp32"] == 0 and len(met["cosines"]) == 1
    monkeypatch.setattr(onnx_backend, "INT8_TARGET_COSINE", 1.01)  # never met: every step is tried
    unmet = onnx_backend._quantize_dynamic_checked(src, tmp_path / "b.onnx", pipeline, CALIBRATION)
    assert unmet["kept_fp32"] == len(down) + len(up) and len(unmet["cosines"]) == 3
    assert int8_matmuls(tmp_path / "b.onnx") == int8_matmuls(tmp_path / "a.onnx") - len(down) - len(up) > 0
    without_texts = onnx_backend._quantize_dynamic_checked(src, tmp_path / "c.onnx", pipeline, [])
    assert without_texts == {"kept_fp32": 0, "cosines": []}


def test_threads_argument_reaches_the_runtime_and_wins_over_the_environment(tiny_exported, monkeypatch):
    monkeypatch.setenv("FASTCLF_THREADS", "2")
    assert load_body(tiny_exported, "onnx-fp32").runtime_settings()["intra_op_threads"] == 2
    assert load_body(tiny_exported, "onnx-fp32", threads=1).runtime_settings()["intra_op_threads"] == 1
    settings = load_body(tiny_exported, "openvino-fp32", threads=1).runtime_settings()
    assert settings["threads_requested"] == 1
