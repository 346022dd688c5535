"""Everything a non-torch runtime needs around the transformer graph, in numpy.

A sentence-transformers body folder is ``Transformer -> Pooling [-> Normalize]``. The ONNX
and OpenVINO runtimes only run the transformer graph (ids -> token embeddings); this module
does the rest exactly as sentence-transformers does it, without importing torch,
transformers or sentence_transformers:

* tokenization with the ``tokenizers`` library from the folder's ``tokenizer.json``, with the
  padding and truncation sentence-transformers applies at call time (pad to the longest text
  of the batch, truncate at the model's max_seq_length), not the ones stored in the file;
* pooling as configured in the Pooling module's ``config.json`` (cls, max, mean,
  mean_sqrt_len_tokens, weightedmean, lasttoken, or several concatenated);
* L2 normalization when ``modules.json`` lists a Normalize module.

A folder with any other module (Dense, LayerNorm, a custom module, ...) raises
:class:`~fastclf.errors.ModelFormatError`: such a body only runs with a torch variant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fastclf.backends import export_command
from fastclf.backends._pipeline_config import (
    POOLING_MODES,
    PipelineConfig,
    declared_pooling_modes,
    read_pipeline_config,
)
from fastclf.backends._pooling import pool_tokens
from fastclf.backends._tokenize import MIN_FILL, length_chunks, load_tokenizer
from fastclf.errors import ModelFormatError

TokenEmbedder = Callable[[dict[str, np.ndarray]], np.ndarray]
"""Runs the transformer graph: int64 ``input_ids``/``attention_mask``/``token_type_ids`` of
shape ``(batch, seq)`` -> float ``(batch, seq, hidden)`` token embeddings."""



class TextPipeline:
    """Tokenization, pooling and normalization of a sentence-transformers folder, in numpy."""

    def __init__(self, body_dir: str | Path):
        self.body_dir = Path(body_dir)
        self.config = read_pipeline_config(self.body_dir)
        self.tokenizer, info = load_tokenizer(self.config.transformer_dir)
        self.pad_id: int = info["pad_id"]
        self.pad_type_id: int = info["pad_type_id"]
        self.padding_side: str = info["padding_side"]
        self._special_ids: set[int] = info["special_ids"]
        if self.config.max_seq_length is not None:
            self.tokenizer.enable_truncation(
                self.config.max_seq_length, strategy="longest_first", direction=info["truncation_side"]
            )
        self._prompt_length: int | None = None
        if self.config.prompt and not self.config.include_prompt:
            ids = self.tokenizer.encode(self.config.prompt).ids
            self._prompt_length = len(ids) - (1 if ids and ids[-1] in self._special_ids else 0)

    @property
    def max_seq_length(self) -> int | None:
        return self.config.max_seq_length

    # -- tokenization -------------------------------------------------------------------

    def _encode(self, texts: Sequence[str]):
        if self.config.prompt:
            texts = [self.config.prompt + t for t in texts]
        return self.tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def _pad(self, encodings) -> dict[str, np.ndarray]:
        n = len(encodings)
        length = max((len(e.ids) for e in encodings), default=0)
        input_ids = np.full((n, length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((n, length), dtype=np.int64)
        token_type_ids = np.full((n, length), self.pad_type_id, dtype=np.int64)
        left = self.padding_side == "left"
        for i, enc in enumerate(encodings):
            k = len(enc.ids)
            sl = slice(length - k, length) if left else slice(0, k)
            input_ids[i, sl] = enc.ids
            attention_mask[i, sl] = 1
            token_type_ids[i, sl] = enc.type_ids
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids as sentence-transformers' ``model.tokenize(texts)`` gives them (int64 numpy)."""
        return self._pad(self._encode(texts))

    # -- pooling ------------------------------------------------------------------------

    def pool(self, token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Sentence embeddings from token embeddings, as the Pooling (+ Normalize) modules compute them."""
        return pool_tokens(token_embeddings, attention_mask, self.config.pooling_modes,
                           prompt_length=self._prompt_length, normalize=self.config.normalize,
                           dim=self.config.embedding_dimension)

    # -- the whole thing ----------------------------------------------------------------

    def encode(self, texts: Sequence[str], run: TokenEmbedder, *, batch_size: int = 32) -> np.ndarray:
        """Embed ``texts`` with ``run`` (the transformer graph), float32 ``(n, dim)``.

        Texts are tokenized once and sorted by token length, then cut into chunks of at most
        ``batch_size`` texts whose lengths are close (see :func:`length_chunks`), so little
        compute goes to padding; the result is in the order of ``texts``.
        """
        from fastclf.texts import check_batch_size

        texts = list(texts)  # checked by the caller (Classifier, the readers): fastclf.texts
        batch_size = check_batch_size(batch_size)
        if not texts:
            return np.zeros((0, self.config.dim or 0), dtype=np.float32)
        encodings = self._encode(texts)
        result: np.ndarray | None = None
        for idx in length_chunks([len(e.ids) for e in encodings], batch_size):
            features = self._pad([encodings[i] for i in idx])
            pooled = self.pool(run(features), features["attention_mask"])
            if result is None:
                result = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            result[idx] = pooled
        assert result is not None
        return result



GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the last one optional


def check_graph_inputs(names: Sequence[str], path: Path, variant: str) -> None:
    """Raise unless an exported graph takes input_ids and attention_mask (and maybe
    token_type_ids), as every transformer fastclf exports does."""
    missing = set(GRAPH_INPUTS[:2]) - set(names)
    unknown = set(names) - set(GRAPH_INPUTS)
    if missing or unknown:
        raise ModelFormatError(
            f"{path} has inputs {sorted(names)}; expected input_ids, attention_mask [, token_type_ids]: "
            f"it is not a transformer exported by fastclf; re-export it with: {export_command(variant)}"
        )


class PipelineBody:
    """What an ONNX Runtime or OpenVINO body shares: a :class:`TextPipeline` around a
    runtime-specific ``_run(features) -> token embeddings``."""

    pipeline: TextPipeline

    def _run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    @property
    def dim(self) -> int | None:
        return self.pipeline.config.dim

    @property
    def max_seq_length(self) -> int | None:
        return self.pipeline.max_seq_length

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        return self.pipeline.encode(texts, self._run, batch_size=batch_size)


__all__ = ["MIN_FILL", "POOLING_MODES", "PipelineBody", "PipelineConfig", "TextPipeline", "check_graph_inputs", "declared_pooling_modes", "length_chunks", "load_tokenizer", "read_pipeline_config"]
