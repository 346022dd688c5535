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

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from . import export_command

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# Legacy Pooling config keys, in the order sentence-transformers concatenates them.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_TRANSFORMER_CONFIG_FILES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
_VERY_LARGE_INTEGER = int(1e30)  # transformers' "no limit" model_max_length
_TORCH_HINT = "use a torch variant (torch-fp32) for this model"

TokenEmbedder = Callable[[dict[str, np.ndarray]], np.ndarray]
"""Runs the transformer graph: int64 ``input_ids``/``attention_mask``/``token_type_ids`` of
shape ``(batch, seq)`` -> float ``(batch, seq, hidden)`` token embeddings."""


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ModelFormatError(f"{what} is missing: {path}") from None
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{what} cannot be read ({path}): {exc}") from exc


def _read_optional_json(path: Path, what: str) -> dict[str, Any]:
    return _read_json(path, what) if path.is_file() else {}


def _module_kind(module_type: str) -> str | None:
    """'Transformer', 'Pooling' or 'Normalize' for sentence-transformers' own classes, else None."""
    if not module_type.startswith("sentence_transformers."):
        return None
    name = module_type.rsplit(".", 1)[-1]
    return name if name in ("Transformer", "Pooling", "Normalize") else None


@dataclass(frozen=True)
class PipelineConfig:
    """What the numpy pipeline read from a sentence-transformers folder."""

    transformer_dir: Path
    max_seq_length: int | None
    pooling_modes: tuple[str, ...]
    embedding_dimension: int | None
    include_prompt: bool
    normalize: bool
    prompt: str | None  # the default prompt prepended to every text, if the model has one

    @property
    def dim(self) -> int | None:
        return None if self.embedding_dimension is None else self.embedding_dimension * len(self.pooling_modes)


def declared_pooling_modes(cfg: dict[str, Any], path: Path) -> tuple[str, ...]:
    """The pooling modes a Pooling module's ``config.json`` (read into ``cfg``) declares, in
    sentence-transformers' order: ``pooling_mode`` (sentence-transformers 5), or one boolean
    ``pooling_mode_*`` key a mode (older folders). Empty when an older folder sets none.

    Raises:
        ModelFormatError: ``pooling_mode`` is neither a name nor a list of names.
    """
    mode = cfg.get("pooling_mode")
    if mode is None:
        return tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if cfg.get(key, False))
    if isinstance(mode, str):
        return (mode,)
    if isinstance(mode, (list, tuple)) and mode and all(isinstance(m, str) for m in mode):
        return tuple(mode)
    raise ModelFormatError(f"invalid pooling_mode {mode!r} in {path}")


def _pooling_modes(cfg: dict[str, Any], path: Path) -> tuple[str, ...]:
    modes = declared_pooling_modes(cfg, path) or ("mean",)
    for m in modes:
        if m not in POOLING_MODES:
            raise ModelFormatError(
                f"pooling mode {m!r} in {path} is not supported by the ONNX/OpenVINO pipeline "
                f"(supported: {', '.join(POOLING_MODES)}); {_TORCH_HINT}"
            )
    return modes


def read_pipeline_config(body_dir: str | Path) -> PipelineConfig:
    """Read and check ``modules.json`` and the module configs of a sentence-transformers folder.

    Raises:
        ModelFormatError: the folder is not a sentence-transformers model, or has a module
            or setting the numpy pipeline cannot reproduce.
    """
    body_dir = Path(body_dir)
    modules = _read_json(body_dir / "modules.json", "modules.json (the sentence-transformers module list)")
    if not isinstance(modules, list) or not modules:
        raise ModelFormatError(f"{body_dir / 'modules.json'} does not list any module")
    modules = sorted(modules, key=lambda m: int(m.get("idx", 0)) if isinstance(m, dict) else 0)

    kinds = []
    for module in modules:
        if not isinstance(module, dict) or "type" not in module:
            raise ModelFormatError(f"invalid entry {module!r} in {body_dir / 'modules.json'}")
        kind = _module_kind(str(module["type"]))
        if kind is None:
            raise ModelFormatError(
                f"module {module.get('name', '?')!r} of type {module['type']!r} cannot run outside torch: "
                f"the ONNX/OpenVINO variants support only Transformer -> Pooling [-> Normalize]; {_TORCH_HINT}"
            )
        kinds.append(kind)
    if kinds[0] != "Transformer" or kinds[1:2] != ["Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise ModelFormatError(
            f"unsupported module sequence {' -> '.join(kinds)} in {body_dir / 'modules.json'}: the ONNX/OpenVINO "
            f"variants support only Transformer -> Pooling [-> Normalize]; {_TORCH_HINT}"
        )

    transformer_dir = body_dir / str(modules[0].get("path", ""))
    sbert: dict[str, Any] = {}
    for name in _TRANSFORMER_CONFIG_FILES:
        if (transformer_dir / name).is_file():
            sbert = _read_json(transformer_dir / name, "the Transformer module config")
            break
    task = sbert.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise ModelFormatError(f"transformer_task {task!r} is not supported by the ONNX/OpenVINO pipeline; {_TORCH_HINT}")
    modality = sbert.get("modality_config")
    if modality is not None and (
        set(modality) != {"text"}
        or modality["text"].get("method", "forward") != "forward"
        or modality["text"].get("method_output_name") != "last_hidden_state"
        or sbert.get("module_output_name", "token_embeddings") != "token_embeddings"
    ):
        raise ModelFormatError(
            f"the Transformer module's modality_config {modality!r} is not plain text -> token embeddings; {_TORCH_HINT}"
        )
    processing = sbert.get("processing_kwargs") or {}
    max_length_override = None
    for key, values in processing.items():
        extra = set(values or {}) - {"max_length"}
        if key not in ("text", "common") or extra:
            raise ModelFormatError(
                f"processing_kwargs {processing!r} in the Transformer config are not supported by the "
                f"ONNX/OpenVINO pipeline; {_TORCH_HINT}"
            )
        if values and values.get("max_length") is not None:
            max_length_override = int(values["max_length"])

    # The max length, as sentence-transformers' Transformer module computes it.
    processor_kwargs = sbert.get("processor_kwargs") or sbert.get("tokenizer_args") or {}
    if max_length_override is not None:
        max_len: int | None = max_length_override
    elif sbert.get("max_seq_length") is not None and "model_max_length" not in processor_kwargs:
        max_len = int(sbert["max_seq_length"])
    elif processor_kwargs.get("model_max_length") is not None:
        max_len = int(processor_kwargs["model_max_length"])
    else:
        tok_cfg = _read_optional_json(transformer_dir / "tokenizer_config.json", "tokenizer_config.json")
        max_len = int(tok_cfg.get("model_max_length") or _VERY_LARGE_INTEGER)
        hf_cfg = _read_optional_json(transformer_dir / "config.json", "config.json")
        max_pos = hf_cfg.get("max_position_embeddings")
        if isinstance(max_pos, int) and max_pos != -1:
            max_len = min(max_len, max_pos)
    if max_len is not None and max_len >= _VERY_LARGE_INTEGER:
        max_len = None

    pool_path = body_dir / str(modules[1].get("path", "")) / "config.json"
    pool_cfg = _read_json(pool_path, "the Pooling module config")
    modes = _pooling_modes(pool_cfg, pool_path)
    dim = pool_cfg.get("embedding_dimension", pool_cfg.get("word_embedding_dimension"))

    st_cfg = _read_optional_json(body_dir / "config_sentence_transformers.json", "config_sentence_transformers.json")
    prompt = None
    default_prompt = st_cfg.get("default_prompt_name")
    if default_prompt is not None:
        prompt = (st_cfg.get("prompts") or {}).get(default_prompt) or None

    return PipelineConfig(
        transformer_dir=transformer_dir,
        max_seq_length=max_len,
        pooling_modes=modes,
        embedding_dimension=int(dim) if dim is not None else None,
        include_prompt=bool(pool_cfg.get("include_prompt", True)),
        normalize="Normalize" in kinds,
        prompt=prompt,
    )


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
        emb = np.asarray(token_embeddings, dtype=np.float32)
        if emb.ndim != 3:
            raise ModelFormatError(f"the transformer graph returned an array of shape {emb.shape}, expected (batch, seq, hidden)")
        if self.config.embedding_dimension is not None and emb.shape[-1] != self.config.embedding_dimension:
            raise ModelFormatError(
                f"the transformer graph returns {emb.shape[-1]}-dim token embeddings but the Pooling module "
                f"expects {self.config.embedding_dimension}: the exported graph does not belong to this body"
            )
        mask = np.asarray(attention_mask).astype(np.int64, copy=True)
        if self._prompt_length:
            first = mask.argmax(axis=1)
            if (first == 0).all():
                mask[:, : self._prompt_length] = 0
            else:
                pos = np.arange(mask.shape[1])[None, :]
                mask[pos < (first + self._prompt_length)[:, None]] = 0
        maskf = mask.astype(np.float32)[:, :, None]
        out: list[np.ndarray] = []
        mean_sum: np.ndarray | None = None
        mean_count = np.ones(1, dtype=np.float32)
        for mode in self.config.pooling_modes:
            if mode == "cls":
                first = mask.argmax(axis=1)
                out.append(emb[np.arange(emb.shape[0]), first])
            elif mode == "max":
                out.append(np.where(maskf > 0, emb, -np.inf).max(axis=1).astype(np.float32))
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                if mean_sum is None:
                    mean_sum = (emb * maskf).sum(axis=1)
                    mean_count = np.maximum(maskf.sum(axis=1), 1e-9)
                out.append(mean_sum / (mean_count if mode == "mean" else np.sqrt(mean_count)))
            elif mode == "weightedmean":
                weights = np.arange(1, emb.shape[1] + 1, dtype=np.float32)[None, :, None] * maskf
                out.append((emb * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))
            elif mode == "lasttoken":
                seq_len = mask.shape[1]
                flipped = mask[:, ::-1]
                values, indices = flipped.max(axis=1), flipped.argmax(axis=1)
                indices = np.where(values == 0, seq_len - 1, indices)
                last = seq_len - indices - 1
                out.append((emb * maskf)[np.arange(emb.shape[0]), last])
        pooled = out[0] if len(out) == 1 else np.concatenate(out, axis=-1)
        pooled = pooled.astype(np.float32, copy=False)
        if self.config.normalize:
            norm = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norm, 1e-12)
        return pooled

    # -- the whole thing ----------------------------------------------------------------

    def encode(self, texts: Sequence[str], run: TokenEmbedder, *, batch_size: int = 32) -> np.ndarray:
        """Embed ``texts`` with ``run`` (the transformer graph), float32 ``(n, dim)``.

        Texts are tokenized once and sorted by token length, then cut into chunks of at most
        ``batch_size`` texts whose lengths are close (see :func:`length_chunks`), so little
        compute goes to padding; the result is in the order of ``texts``.
        """
        from ..texts import check_batch_size, check_texts

        texts = check_texts(texts, single_ok=False, allow_empty=True)
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


#: A chunk of length-sorted texts is cut where the next text is shorter than this share of
#: the chunk's longest, so at most 1 - MIN_FILL of the compute goes to padding tokens.
MIN_FILL = 0.8


def length_chunks(lengths: Sequence[int], batch_size: int, *, min_fill: float = MIN_FILL) -> list[np.ndarray]:
    """Indices of ``lengths`` in chunks to run together: sorted longest first, at most
    ``batch_size`` a chunk, and a new chunk wherever a text is shorter than ``min_fill`` times
    the chunk's first (longest) text.

    A batch padded to its longest text wastes the difference on every shorter one; with the
    short texts of typical requests (10 to 100 tokens) one padded batch of 128 ran at less than
    half the texts a second of the same texts in length-matched chunks (benchmarks/README.md).
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
            or lengths[order[pos]] < min_fill * lengths[order[start]]
        ):
            chunks.append(order[start:pos])
            start = pos
    return chunks


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
