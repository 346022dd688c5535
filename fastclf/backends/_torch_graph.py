"""A body folder's sentence-transformers pipeline, and its transformer as a ``torch.export`` graph with a
dynamic batch and sequence length, shared by the compiled bf16 body and the int8 quantization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fastclf.errors import ModelFormatError, first_line

SEQ_MULTIPLE = 8
_WARMUP_TEXTS = ("A short warm-up text.", "A second, somewhat longer text to warm up the compiled graph.")


def _load_sentence_transformer(body_dir: Path):
    """Load a body folder (checked by :func:`fastclf.safety.check_body` first: it runs no code from the folder)."""
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(body_dir), device="cpu", local_files_only=True, trust_remote_code=False)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # safetensors, json, tokenizers, transformers and OS errors of a damaged folder
        raise ModelFormatError(f"cannot load the model body in {body_dir}: it is damaged or incomplete "
                               f"({type(exc).__name__}: {first_line(exc)[:300]})") from None
    return model.eval()


class _Core(torch.nn.Module):
    """The Hugging Face model as a function of positional tensors -> last hidden state."""

    def __init__(self, hf_model: torch.nn.Module, input_names: tuple[str, ...]):
        super().__init__()
        self.hf_model, self.input_names = hf_model, input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.hf_model(**dict(zip(self.input_names, tensors)), return_dict=True).last_hidden_state


def _pad_to_multiple(tensors: list[torch.Tensor], names: tuple[str, ...], pad_id: int,
                     limit: int) -> list[torch.Tensor]:
    """Pad the sequence dim to a multiple of SEQ_MULTIPLE (not beyond ``limit``), masked out."""
    seq = tensors[0].shape[1]
    extra = -seq % SEQ_MULTIPLE
    if not extra or seq + extra > limit:
        return tensors
    return [torch.nn.functional.pad(t, (0, extra), value=pad_id if name == "input_ids" else 0)
            for name, t in zip(names, tensors)]


def _prepare_core(st_model) -> tuple[Any, _Core, tuple[str, ...], tuple[torch.Tensor, ...]]:
    """The transformer module, a traceable core, its input names and example inputs."""
    from sentence_transformers.models import Transformer

    transformer = st_model[0]
    if not isinstance(transformer, Transformer):
        raise ModelFormatError(f"the torch bf16/int8 variants need a body whose first module is a "
                               f"sentence-transformers Transformer, got {type(transformer).__name__}")
    text = getattr(transformer, "modality_config", {}).get("text", {})
    if text and (text.get("method") != "forward" or text.get("method_output_name") != "last_hidden_state"):
        raise ModelFormatError(f"unsupported transformer output for the compiled torch variants: {text}")
    if getattr(transformer.model.config, "output_hidden_states", False):
        raise ModelFormatError("the compiled torch variants do not support output_hidden_states bodies")
    # the pooler is unused (sentence-transformers reads last_hidden_state) and breaks the int8 quantizer
    transformer.model.pooler = None
    sample = st_model.preprocess(list(_WARMUP_TEXTS))
    names = tuple(k for k, v in sample.items() if isinstance(v, torch.Tensor) and k in transformer.model_forward_params)
    if "input_ids" not in names or "attention_mask" not in names:
        raise ModelFormatError(f"the tokenizer gives {sorted(sample)}; input_ids and attention_mask are needed")
    example = tuple(_pad_to_multiple([sample[n] for n in names], names, _pad_id(transformer), _max_len(transformer)))
    if example[0].shape[1] < 3:  # a dynamic dim must not be traced at size 0 or 1
        raise ModelFormatError("the tokenizer produces too short sequences to trace the model")
    return transformer, _Core(transformer.model, names).eval(), names, example


def _pad_id(transformer) -> int:
    return int(getattr(transformer.tokenizer, "pad_token_id", None) or 0)


def _max_len(transformer) -> int:
    return int(getattr(transformer.model.config, "max_position_embeddings", None) or 512)


def _export_graph(core: _Core, example: tuple[torch.Tensor, ...], *, max_len: int):
    """torch.export the core with a dynamic batch and sequence length; returns (GraphModule, dynamic_shapes)."""
    from torch.export import Dim

    batch, seq = Dim("batch", min=1, max=65536), Dim("seq", min=1, max=max_len)
    dynamic_shapes = tuple({0: batch, 1: seq} for _ in example)
    with torch.no_grad():
        ep = torch.export.export(core, example, dynamic_shapes=(dynamic_shapes,), strict=False)
    return ep.module(), dynamic_shapes
