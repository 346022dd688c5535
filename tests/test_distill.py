"""The smaller body of the ``-distilled`` variants: which layers the student keeps, the widened
training texts, that distillation brings the student closer to the body than dropping layers
alone (on the packaged all-MiniLM-L6-v2), and the export of a tiny random 4-layer BERT. Offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from samples import CALIBRATION

from fastclf.backends import load_body
from fastclf.backends._distill import (
    distill,
    distillation_texts,
    make_student,
    student_layers,
)
from fastclf.backends._torch_graph import _load_sentence_transformer
from fastclf.errors import DataError


def test_student_layers_are_spread_and_keep_the_first_and_last():
    assert student_layers(6, 3) == [0, 2, 5]
    assert student_layers(6, 4) == [0, 2, 3, 5]
    assert student_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert student_layers(6, 6) == list(range(6))
    assert student_layers(6, 1) == [5]
    with pytest.raises(ValueError):
        student_layers(6, 7)


def test_distillation_texts_widen_the_users_texts_with_their_own_words():
    texts = CALIBRATION[:12]
    out = distillation_texts(texts, target=300, seed=0)
    assert out[: len(texts)] == [t.strip() for t in texts]
    assert len(out) == len(set(out)) and 250 <= len(out) <= 300
    vocabulary = {w for t in texts for w in t.split()}
    assert all(set(t.split()) <= vocabulary for t in out)  # spans and pairs: no new words
    assert distillation_texts(texts, target=300, seed=0) == out  # seeded
    with pytest.raises(DataError, match="at least 8"):
        distillation_texts(["one", "two", "", "  "])


@pytest.fixture(scope="module")
def four_layer_body(tmp_path_factory, minilm_dir) -> Path:
    """A tiny random BERT sentence-transformers folder with 4 layers (mean pooling, Normalize)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    root = tmp_path_factory.mktemp("four")
    hf_dir = root / "hf"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config, add_pooling_layer=False).save_pretrained(hf_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, hf_dir / name)
    modules = [models.Transformer(str(hf_dir), max_seq_length=128), models.Pooling(32, pooling_mode="mean"),
               models.Normalize()]
    out = root / "body"
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def _relative_error(student_dir: Path, teacher, keep: int, texts: list[str]) -> float:
    """Squared error of the student's embeddings against the teacher's, relative to the spread
    of the teacher's (a random body's embeddings share one direction: cosines say little)."""
    from transformers import AutoModel

    student, _, _ = make_student(teacher, keep=keep)
    student[0].model = AutoModel.from_pretrained(str(student_dir))
    student.eval()
    a = student.encode(texts, convert_to_numpy=True)
    b = teacher.encode(texts, convert_to_numpy=True)
    return float(((a - b) ** 2).sum() / ((b - b.mean(axis=0)) ** 2).sum())


def test_distillation_brings_the_student_closer_than_dropping_layers(minilm_dir, tmp_path):
    # the real all-MiniLM-L6-v2 (a random tiny body's layers are too alike to show it), 4 of its
    # 6 layers, a short distillation; the texts compared are not among those it learnt from
    teacher = _load_sentence_transformer(minilm_dir)
    untrained = distill(teacher, CALIBRATION, tmp_path / "s0", keep=4, steps=0)
    trained = distill(teacher, CALIBRATION, tmp_path / "s1", keep=4, steps=40)
    assert untrained["layers_kept"] == trained["layers_kept"] == [0, 2, 3, 5]
    config = json.loads((tmp_path / "s1" / "config.json").read_text())
    assert config["num_hidden_layers"] == 4
    assert (tmp_path / "s1" / "tokenizer.json").is_file()
    assert np.isfinite(trained["final_loss"])
    unseen = ["A film about nothing much, told slowly.", "Spicy noodles with a crisp salad.",
              "The match went to penalties after extra time.", "An actor's finest hour, and a moving one.",
              "Rain all week, then a bright cold Sunday.", "The recipe needs two eggs and some flour."]
    before = _relative_error(tmp_path / "s0", teacher, 4, unseen)
    after = _relative_error(tmp_path / "s1", teacher, 4, unseen)
    assert after < 0.8 * before, (before, after)


def test_distilled_variant_exports_loads_and_records_what_was_done(four_layer_body, tmp_path):
    from fastclf.backends import export_variant, is_exported

    body = tmp_path / "body"
    shutil.copytree(four_layer_body, body)
    export_variant(body, "openvino-int8-distilled", CALIBRATION)
    assert is_exported(body, "openvino-int8-distilled")
    info = json.loads((body / "openvino" / "openvino_model_distilled.json").read_text())
    assert info["format"] == "fastclf-distilled-student/1"
    assert info["teacher_layers"] == 4 and info["layers_kept"] == [0, 2, 3]  # two thirds, rounded up
    loaded = load_body(body, "openvino-int8-distilled")
    emb = loaded.encode(["a short text", "another, longer text about food and sport", ""])
    assert emb.shape == (3, 32) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)  # the body's Normalize kept


def test_distillation_refuses_a_model_without_encoder_layers():
    from fastclf.backends._distill import _encoder_layers
    from fastclf.errors import ModelFormatError

    class NotAnEncoder:
        config = object()

    with pytest.raises(ModelFormatError, match="BERT-like"):
        _encoder_layers(NotAnEncoder())
