"""Tokenization for the numpy pipeline: the folder's fast tokenizer as transformers would
set it up, and the cutting of length-sorted texts into chunks that waste little on padding."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastclf.backends._pipeline_config import _TORCH_HINT, _read_optional_json
from fastclf.errors import ModelFormatError


def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def load_tokenizer(transformer_dir: Path):
    """The ``tokenizers.Tokenizer`` of the folder, normalized like transformers' fast tokenizer
    would, with the stored padding and truncation removed. Returns ``(tokenizer, info)``."""
    from tokenizers import Tokenizer, normalizers

    path = transformer_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelFormatError(
            f"{path} is missing: the ONNX/OpenVINO variants need a fast tokenizer (tokenizer.json); {_TORCH_HINT}"
        )
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ModelFormatError(f"{path} cannot be read as a tokenizers file: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tok_cfg = _read_optional_json(transformer_dir / "tokenizer_config.json", "tokenizer_config.json")
    special_map = _read_optional_json(transformer_dir / "special_tokens_map.json", "special_tokens_map.json")

    # transformers' BertTokenizerFast rebuilds the normalizer from tokenizer_config.json's
    # do_lower_case / strip_accents / tokenize_chinese_chars when they disagree with the file.
    if tok_cfg.get("tokenizer_class") in ("BertTokenizer", "BertTokenizerFast") and tokenizer.normalizer is not None:
        state = json.loads(tokenizer.normalizer.__getstate__())
        if state.get("type") == "BertNormalizer":
            wanted = {
                "lowercase": tok_cfg.get("do_lower_case", True),
                "strip_accents": tok_cfg.get("strip_accents"),
                "handle_chinese_chars": tok_cfg.get("tokenize_chinese_chars", True),
            }
            if any(state.get(k, v) != v for k, v in wanted.items()):
                tokenizer.normalizer = normalizers.BertNormalizer(
                    clean_text=state.get("clean_text", True), **wanted
                )

    pad_token = _token_content(tok_cfg.get("pad_token")) or _token_content(special_map.get("pad_token"))
    pad_id = tokenizer.token_to_id(pad_token) if pad_token else None
    if pad_id is None:
        pad_id = 0
    special_ids = set()
    for token in json.loads(tokenizer.to_str()).get("added_tokens", []):
        if token.get("special"):
            special_ids.add(int(token["id"]))
    info = {
        "pad_id": int(pad_id),
        "pad_type_id": int(tok_cfg.get("pad_token_type_id", 0) or 0),
        "padding_side": tok_cfg.get("padding_side", "right"),
        "truncation_side": tok_cfg.get("truncation_side", "right"),
        "special_ids": special_ids,
    }
    return tokenizer, info


#: A chunk of length-sorted texts is cut where the next text is shorter than this share of
#: the chunk's longest, so at most 1 - MIN_FILL of the compute goes to padding tokens.
MIN_FILL = 0.8


def length_chunks(lengths: Sequence[int], batch_size: int, *, min_fill: float = MIN_FILL,
                  min_size: int = 1) -> list[np.ndarray]:
    """Indices of ``lengths`` in chunks to run together: sorted longest first, at most
    ``batch_size`` a chunk, and a new chunk wherever a text is shorter than ``min_fill`` times
    the chunk's first (longest) text, once the chunk has ``min_size`` texts.

    A batch padded to its longest text wastes the difference on every shorter one.
    ``min_size`` keeps chunks from getting so small that a call costs more than its padding
    saves (chunks run side by side, each on a core or two: see the OpenVINO body).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    chunks: list[np.ndarray] = []
    start = 0
    for pos in range(1, len(order) + 1):
        if (
            pos == len(order)
            or pos - start >= batch_size
            or (pos - start >= min_size and lengths[order[pos]] < min_fill * lengths[order[start]])
        ):
            chunks.append(order[start:pos])
            start = pos
    return chunks
