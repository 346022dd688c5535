"""What a sentence-transformers body folder declares, read and checked for the numpy pipeline: only
``Transformer -> Pooling [-> Normalize]``, with its max length, pooling modes, prompt and normalization."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastclf.errors import ModelFormatError

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# the older boolean Pooling config keys, in the order sentence-transformers concatenates them
_LEGACY_POOLING_KEYS = dict(zip(("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_tokens",
                                 "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                                 "pooling_mode_lasttoken"), POOLING_MODES))
_TRANSFORMER_CONFIG_FILES = tuple(f"sentence_{name}_config.json" for name in (
    "bert", "roberta", "distilbert", "camembert", "albert", "xlm-roberta", "xlnet"))
_VERY_LARGE_INTEGER = int(1e30)  # transformers' "no limit" model_max_length
_TORCH_HINT = "use a torch variant (torch-fp32) for this model"
_ONLY = "the ONNX/OpenVINO variants support only Transformer -> Pooling [-> Normalize]"


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
    """The pooling modes a Pooling ``config.json`` declares, in sentence-transformers' order:
    ``pooling_mode`` (sentence-transformers 5) or the older boolean keys (empty when none is set)."""
    mode = cfg.get("pooling_mode")
    if mode is None:
        return tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if cfg.get(key, False))
    if isinstance(mode, str):
        return (mode,)
    if isinstance(mode, (list, tuple)) and mode and all(isinstance(m, str) for m in mode):
        return tuple(mode)
    raise ModelFormatError(f"invalid pooling_mode {mode!r} in {path}")


def _modules(body_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """``modules.json`` sorted by index, and each module's kind, checked to be Transformer -> Pooling [-> Normalize]."""
    path = body_dir / "modules.json"
    modules = _read_json(path, "modules.json (the sentence-transformers module list)")
    if not isinstance(modules, list) or not modules:
        raise ModelFormatError(f"{path} does not list any module")
    if not all(isinstance(m, dict) and "type" in m for m in modules):
        raise ModelFormatError(f"invalid entry in {path}: {modules!r}"[:300])
    modules = sorted(modules, key=lambda m: int(m.get("idx", 0)))
    kinds = []
    for module in modules:
        type_name = str(module["type"])
        kind = type_name.rpartition(".")[2]
        if not type_name.startswith("sentence_transformers.") or kind not in ("Transformer", "Pooling", "Normalize"):
            raise ModelFormatError(f"module {module.get('name', '?')!r} of type {module['type']!r} cannot run outside "
                                   f"torch: {_ONLY}; {_TORCH_HINT}")
        kinds.append(kind)
    if kinds[0] != "Transformer" or kinds[1:2] != ["Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise ModelFormatError(f"unsupported module sequence {' -> '.join(kinds)} in {path}: {_ONLY}; {_TORCH_HINT}")
    return modules, kinds


def _transformer_config(transformer_dir: Path) -> dict[str, Any]:
    """The Transformer module's config ({} when none), checked to be plain text in and token embeddings out."""
    found = [transformer_dir / n for n in _TRANSFORMER_CONFIG_FILES if (transformer_dir / n).is_file()]
    sbert = _read_json(found[0], "the Transformer module config") if found else {}
    task = sbert.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise ModelFormatError(f"transformer_task {task!r} is not supported by the ONNX/OpenVINO pipeline; "
                               f"{_TORCH_HINT}")
    modality = sbert.get("modality_config")
    text = (modality or {}).get("text") or {}
    if modality is not None and (set(modality) != {"text"} or text.get("method", "forward") != "forward"
                                 or text.get("method_output_name") != "last_hidden_state"
                                 or sbert.get("module_output_name", "token_embeddings") != "token_embeddings"):
        raise ModelFormatError(f"the Transformer module's modality_config {modality!r} is not plain text -> token "
                               f"embeddings; {_TORCH_HINT}")
    return sbert


def _max_length(sbert: Mapping[str, Any], transformer_dir: Path) -> int | None:
    """The max length in tokens, as sentence-transformers' Transformer module computes it (None: unbounded)."""
    processing = sbert.get("processing_kwargs") or {}
    override = None
    for key, values in processing.items():
        if key not in ("text", "common") or set(values or {}) - {"max_length"}:
            raise ModelFormatError(f"processing_kwargs {processing!r} in the Transformer config are not supported "
                                   f"by the ONNX/OpenVINO pipeline; {_TORCH_HINT}")
        if values and values.get("max_length") is not None:
            override = int(values["max_length"])
    processor_kwargs = sbert.get("processor_kwargs") or sbert.get("tokenizer_args") or {}
    if override is not None:
        max_len = override
    elif sbert.get("max_seq_length") is not None and "model_max_length" not in processor_kwargs:
        max_len = int(sbert["max_seq_length"])
    elif processor_kwargs.get("model_max_length") is not None:
        max_len = int(processor_kwargs["model_max_length"])
    else:
        tok_cfg = _read_optional_json(transformer_dir / "tokenizer_config.json", "tokenizer_config.json")
        max_len = int(tok_cfg.get("model_max_length") or _VERY_LARGE_INTEGER)
        max_pos = _read_optional_json(transformer_dir / "config.json", "config.json").get("max_position_embeddings")
        if isinstance(max_pos, int) and max_pos != -1:
            max_len = min(max_len, max_pos)
    return None if max_len >= _VERY_LARGE_INTEGER else max_len


def read_pipeline_config(body_dir: str | Path) -> PipelineConfig:
    """Read and check ``modules.json`` and the module configs of a sentence-transformers folder
    (ModelFormatError for a module or setting the numpy pipeline cannot reproduce)."""
    body_dir = Path(body_dir)
    modules, kinds = _modules(body_dir)
    transformer_dir = body_dir / str(modules[0].get("path", ""))
    pool_path = body_dir / str(modules[1].get("path", "")) / "config.json"
    pool_cfg = _read_json(pool_path, "the Pooling module config")
    modes = declared_pooling_modes(pool_cfg, pool_path) or ("mean",)
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown:
        raise ModelFormatError(f"pooling mode {unknown[0]!r} in {pool_path} is not supported by the ONNX/OpenVINO "
                               f"pipeline (supported: {', '.join(POOLING_MODES)}); {_TORCH_HINT}")
    dim = pool_cfg.get("embedding_dimension", pool_cfg.get("word_embedding_dimension"))
    st_cfg = _read_optional_json(body_dir / "config_sentence_transformers.json", "config_sentence_transformers.json")
    return PipelineConfig(
        transformer_dir=transformer_dir,
        max_seq_length=_max_length(_transformer_config(transformer_dir), transformer_dir),
        pooling_modes=modes,
        embedding_dimension=int(dim) if dim is not None else None,
        include_prompt=bool(pool_cfg.get("include_prompt", True)),
        normalize="Normalize" in kinds,
        prompt=(st_cfg.get("prompts") or {}).get(st_cfg.get("default_prompt_name")) or None,
    )
