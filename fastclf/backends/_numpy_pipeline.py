"""What the ONNX and OpenVINO bodies do around the transformer graph, in numpy: tokenization, padding and
truncation as sentence-transformers applies them at call time, then the folder's pooling and normalization."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastclf.backends import VariantSpec, export_command
from fastclf.backends._pipeline_config import _TORCH_HINT, _read_optional_json, read_pipeline_config
from fastclf.backends._pooling import pool_tokens
from fastclf.errors import ModelFormatError
from fastclf.texts import check_batch_size

#: the transformer graph: int64 input_ids/attention_mask/token_type_ids (batch, seq) -> (batch, seq, hidden)
TokenEmbedder = Callable[[dict[str, np.ndarray]], np.ndarray]
#: a chunk of length-sorted texts ends before a text shorter than this share of its longest (bounds the padding)
MIN_FILL = 0.8
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the last one optional
GRAPH_OUTPUT = "last_hidden_state"


def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def length_chunks(lengths: Sequence[int], batch_size: int, *, min_fill: float = MIN_FILL,
                  min_size: int = 1) -> list[np.ndarray]:
    """Indices of ``lengths`` in chunks to run together: longest first, at most ``batch_size`` a chunk, and a
    new chunk where a text is shorter than ``min_fill`` times the chunk's longest once it has ``min_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    chunks: list[np.ndarray] = []
    start = 0
    for pos in range(1, len(order) + 1):
        if (pos == len(order) or pos - start >= batch_size
                or (pos - start >= min_size and lengths[order[pos]] < min_fill * lengths[order[start]])):
            chunks.append(order[start:pos])
            start = pos
    return chunks


class TextPipeline:
    """Tokenization, pooling and normalization of a sentence-transformers folder, in numpy."""

    def __init__(self, body_dir: str | Path):
        from tokenizers import Tokenizer, normalizers

        self.config = read_pipeline_config(body_dir)
        self.max_seq_length = self.config.max_seq_length
        folder = self.config.transformer_dir
        if not (folder / "tokenizer.json").is_file():
            raise ModelFormatError(f"{folder / 'tokenizer.json'} is missing: the ONNX/OpenVINO variants need a fast "
                                   f"tokenizer (tokenizer.json); {_TORCH_HINT}")
        try:
            self.tokenizer = tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:
            raise ModelFormatError(f"{folder / 'tokenizer.json'} cannot be read as a tokenizers file: {exc}") from exc
        tokenizer.no_padding()  # sentence-transformers pads and truncates at call time, not as stored
        tokenizer.no_truncation()
        tok_cfg = _read_optional_json(folder / "tokenizer_config.json", "tokenizer_config.json")
        special_map = _read_optional_json(folder / "special_tokens_map.json", "special_tokens_map.json")
        # BertTokenizerFast rebuilds the normalizer when tokenizer_config.json's settings disagree with the file
        bert = tok_cfg.get("tokenizer_class") in ("BertTokenizer", "BertTokenizerFast")
        if bert and tokenizer.normalizer is not None:
            state = json.loads(tokenizer.normalizer.__getstate__())
            wanted = {"lowercase": tok_cfg.get("do_lower_case", True), "strip_accents": tok_cfg.get("strip_accents"),
                      "handle_chinese_chars": tok_cfg.get("tokenize_chinese_chars", True)}
            if state.get("type") == "BertNormalizer" and any(state.get(k, v) != v for k, v in wanted.items()):
                tokenizer.normalizer = normalizers.BertNormalizer(clean_text=state.get("clean_text", True), **wanted)
        pad_token = _token_content(tok_cfg.get("pad_token")) or _token_content(special_map.get("pad_token"))
        self.pad_id = int((tokenizer.token_to_id(pad_token) if pad_token else None) or 0)
        self.pad_type_id = int(tok_cfg.get("pad_token_type_id", 0) or 0)
        self.padding_side: str = tok_cfg.get("padding_side", "right")
        if self.max_seq_length is not None:
            tokenizer.enable_truncation(self.max_seq_length, strategy="longest_first",
                                        direction=tok_cfg.get("truncation_side", "right"))
        self._prompt_length: int | None = None
        if self.config.prompt and not self.config.include_prompt:
            added = json.loads(tokenizer.to_str()).get("added_tokens", [])
            special_ids = {int(t["id"]) for t in added if t.get("special")}
            ids = tokenizer.encode(self.config.prompt).ids
            self._prompt_length = len(ids) - (1 if ids and ids[-1] in special_ids else 0)

    def _encode(self, texts: Sequence[str]):
        if self.config.prompt:
            texts = [self.config.prompt + t for t in texts]
        return self.tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def _pad(self, encodings) -> dict[str, np.ndarray]:
        n, length = len(encodings), max((len(e.ids) for e in encodings), default=0)
        out = {"input_ids": np.full((n, length), self.pad_id, dtype=np.int64),
               "attention_mask": np.zeros((n, length), dtype=np.int64),
               "token_type_ids": np.full((n, length), self.pad_type_id, dtype=np.int64)}
        for i, enc in enumerate(encodings):
            k = len(enc.ids)
            sl = slice(length - k, length) if self.padding_side == "left" else slice(0, k)
            for key, value in (("input_ids", enc.ids), ("attention_mask", 1), ("token_type_ids", enc.type_ids)):
                out[key][i, sl] = value
        return out

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids as sentence-transformers' ``model.tokenize(texts)`` gives them (int64 numpy)."""
        return self._pad(self._encode(texts))

    def pool(self, token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Sentence embeddings from token embeddings, as the Pooling (+ Normalize) modules compute them."""
        return pool_tokens(token_embeddings, attention_mask, self.config.pooling_modes,
                           prompt_length=self._prompt_length, normalize=self.config.normalize,
                           dim=self.config.embedding_dimension)

    def encode(self, texts: Sequence[str], run: TokenEmbedder, *, batch_size: int = 32, min_size: int = 1,
               run_many: Callable[[list[dict[str, np.ndarray]]], list[np.ndarray]] | None = None) -> np.ndarray:
        """Float32 ``(n, dim)`` embeddings of ``texts`` with ``run`` (the transformer graph), in chunks of
        texts close in length (:func:`length_chunks`); ``run_many`` runs several chunks at once."""
        texts, batch_size = list(texts), check_batch_size(batch_size)  # texts checked by the caller
        if not texts:
            return np.zeros((0, self.config.dim or 0), dtype=np.float32)
        encodings = self._encode(texts)
        chunks = length_chunks([len(e.ids) for e in encodings], batch_size, min_size=min_size)
        features = [self._pad([encodings[i] for i in idx]) for idx in chunks]
        outputs = run_many(features) if run_many is not None and len(chunks) > 1 else map(run, features)
        pooled = [self.pool(out, feats["attention_mask"]) for feats, out in zip(features, outputs)]
        result = np.empty((len(texts), pooled[0].shape[1]), dtype=np.float32)
        for idx, rows in zip(chunks, pooled):
            result[idx] = rows
        return result


class PipelineBody:
    """What an ONNX Runtime or OpenVINO body shares: a :class:`TextPipeline` around ``_run(features)``."""

    _run: TokenEmbedder  # the transformer graph, each runtime's own

    def __init__(self, body_dir: Path, spec: VariantSpec):
        self.variant = spec.name
        self.path = Path(body_dir)
        self.pipeline = TextPipeline(self.path)
        self.graph_file = self.path / spec.files[0]

    def _check_graph(self, inputs: Sequence[str], outputs: Sequence[set[str]]) -> int:
        """Raise unless the graph takes input_ids and attention_mask [and token_type_ids]; its output's index."""
        if not set(GRAPH_INPUTS[:2]) <= set(inputs) <= set(GRAPH_INPUTS):
            raise ModelFormatError(
                f"{self.graph_file} has inputs {sorted(inputs)}; expected input_ids, attention_mask "
                f"[, token_type_ids]: it is not a transformer exported by fastclf; re-export it with: "
                f"{export_command(self.variant)}")
        self._input_names = list(inputs)
        return next((i for i, names in enumerate(outputs) if GRAPH_OUTPUT in names), 0)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        return self.pipeline.encode(texts, self._run, batch_size=batch_size)
