"""Sentence embeddings from token embeddings in numpy, as sentence-transformers' Pooling (+ Normalize) computes them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastclf.errors import ModelFormatError


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``a`` with the same row of ``b`` (embeddings of the same texts)."""
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _prompt_mask(attention_mask: np.ndarray, prompt_length: int | None) -> np.ndarray:
    """The attention mask with the prompt's tokens masked out (``include_prompt`` false)."""
    mask = np.asarray(attention_mask).astype(np.int64, copy=True)
    if prompt_length:
        first = mask.argmax(axis=1)
        if (first == 0).all():
            mask[:, :prompt_length] = 0
        else:
            pos = np.arange(mask.shape[1])[None, :]
            mask[pos < (first + prompt_length)[:, None]] = 0
    return mask


def pool_tokens(token_embeddings: np.ndarray, attention_mask: np.ndarray, modes: Sequence[str], *,
                prompt_length: int | None, normalize: bool, dim: int | None) -> np.ndarray:
    """Sentence embeddings from token embeddings, each of ``modes`` in turn, concatenated."""
    emb = np.asarray(token_embeddings, dtype=np.float32)
    if emb.ndim != 3:
        raise ModelFormatError(f"the transformer graph returned an array of shape {emb.shape}, "
                               "expected (batch, seq, hidden)")
    if dim is not None and emb.shape[-1] != dim:
        raise ModelFormatError(f"the transformer graph returns {emb.shape[-1]}-dim token embeddings but the Pooling "
                               f"module expects {dim}: the exported graph does not belong to this body")
    mask = _prompt_mask(attention_mask, prompt_length)
    maskf = mask.astype(np.float32)[:, :, None]
    out: list[np.ndarray] = []
    for mode in modes:
        if mode == "cls":
            out.append(emb[np.arange(emb.shape[0]), mask.argmax(axis=1)])
        elif mode == "max":
            out.append(np.where(maskf > 0, emb, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = np.maximum(maskf.sum(axis=1), 1e-9)
            out.append((emb * maskf).sum(axis=1) / (count if mode == "mean" else np.sqrt(count)))
        elif mode == "weightedmean":
            weights = np.arange(1, emb.shape[1] + 1, dtype=np.float32)[None, :, None] * maskf
            out.append((emb * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))
        elif mode == "lasttoken":  # the last unmasked token (the last position of an all-masked row)
            flipped = mask[:, ::-1]
            last = emb.shape[1] - 1 - np.where(flipped.max(axis=1) == 0, emb.shape[1] - 1, flipped.argmax(axis=1))
            out.append((emb * maskf)[np.arange(emb.shape[0]), last])
    pooled = np.concatenate(out, axis=-1).astype(np.float32, copy=False)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12) if normalize else pooled
