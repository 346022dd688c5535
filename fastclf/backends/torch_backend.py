"""PyTorch bodies: fp32 eager (the reference), bf16 and static int8, compiled with inductor.

Every variant runs the model folder's own sentence-transformers pipeline
(``SentenceTransformer.encode``: tokenization, the Pooling and Normalize modules read from
the folder). The accelerated variants only swap the Hugging Face model inside the first
(``Transformer``) module for a compiled graph:

``torch-bf16``
    The fp32 weights, exported with ``torch.export`` and compiled with frozen weights,
    run under bf16 autocast. Nothing is written at export: it is built at load.
``torch-int8``
    PT2E static quantization with torchao's ``X86InductorQuantizer`` (histogram observers
    on activations, per-channel weights), compiled with frozen weights.
``inc-int8``
    Intel Neural Compressor 3.x ``StaticQuantConfig`` + ``prepare`` + ``convert`` (INC's
    PT2E path: the same x86 inductor backend, with min-max observers), compiled the same way.

**Persistence of the int8 variants.** ``torch.export.save``/``torch.export.load`` are not used:
in torch 2.13 ``torch.export.load`` unpickles with ``weights_only=False`` (sample inputs fall
back to it, tensor-subclass weights and opaque constants always use it) and resolves graph
targets to any attribute reachable from the ``torch`` module, so loading a ``.pt2`` file can
run arbitrary code. Instead the export calibrates once and writes

* ``observers.safetensors``: the calibrated observer statistics (min/max, histograms), tensors
  only, plus a header that names the graph node each observer watches;
* ``calibration.json``: the calibration texts.

Loading rebuilds the quantized graph deterministically from the fp32 weights: export the
transformer, insert the observers, load their statistics (no calibration run), convert,
compile. If the observers do not match the graph (another torch/torchao version traces the
model differently), the load recalibrates on ``calibration.json`` instead, with a warning.

**Shapes.** One graph with a dynamic batch and sequence length serves every input:
``torch.export`` with dynamic dims and ``torch.compile(dynamic=True)`` under
``backed_size_oblivious``, so batch 1 does not get a graph of its own. The input is padded
to a multiple of :data:`SEQ_MULTIPLE` tokens (masked, so the output does not change) to keep
the number of distinct shapes, and of oneDNN kernels built for them, small.

**Load time.** The compile happens at load (the warm-up), so the first ``encode`` call is
fast, but a load takes tens of seconds on a small CPU. Inductor's FX graph and AOT autograd
caches refuse frozen graphs (torch 2.13: "mkldnn tensors unpickleable", "cannot cache a graph
with freezing enabled"), so every load traces and lowers again; only the C++ kernels are reused
from the on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, default under /tmp), which shortens later
loads. A C++ compiler must be installed where the model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._util import atomic_write, package_versions
from ..errors import DataError, MissingDependency, ModelFormatError, first_line, missing_dependency
from . import VariantSpec

log = logging.getLogger(__name__)

OBSERVERS_FORMAT = "fastclf-torch-observers/1"
CALIBRATION_FORMAT = "fastclf-calibration/1"
CALIBRATION_BATCH = 32
SEQ_MULTIPLE = 8
_WARMUP_TEXTS = ("A short warm-up text.", "A second, somewhat longer text to warm up the compiled graph.")


def _load_sentence_transformer(body_dir: Path):
    """Load a body folder with sentence-transformers, after :func:`fastclf.safety.check_body`
    has made sure that loading it runs no code from the folder.

    Raises:
        ModelFormatError: the folder is refused, or damaged (weights, configs, tokenizer).
    """
    from ..safety import check_body

    check_body(body_dir)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(body_dir), device="cpu", local_files_only=True, trust_remote_code=False)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # safetensors, json, tokenizers, transformers and OS errors of a damaged folder
        raise ModelFormatError(
            f"cannot load the model body in {body_dir}: it is damaged or incomplete "
            f"({type(exc).__name__}: {first_line(exc)[:300]})"
        ) from None
    model.eval()
    return model


def torch_threads() -> dict[str, object]:
    """torch's intra-op and inter-op thread pools in this process."""
    return {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads()}


class TorchBody:
    """A sentence-transformers model run in PyTorch fp32 eager mode."""

    def __init__(self, body_dir: Path, spec: VariantSpec):
        start = time.perf_counter()
        self.variant = spec.name
        self.model = _load_sentence_transformer(body_dir)
        self.load_seconds = time.perf_counter() - start

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        with torch.inference_mode():
            out = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def threads(self) -> dict[str, object]:
        """torch's thread pools (see :func:`fastclf.backends.thread_settings`)."""
        return torch_threads()

    def runtime_settings(self) -> dict[str, object]:
        """Threads and execution mode."""
        return {"runtime": "torch", "execution": "eager", "intra_op_threads": torch.get_num_threads(),
                "inter_op_threads": torch.get_num_interop_threads()}


# --------------------------------------------------------------------------------------
# the transformer as a graph


class _Core(torch.nn.Module):
    """The Hugging Face model as a function of positional tensors -> last hidden state."""

    def __init__(self, hf_model: torch.nn.Module, input_names: tuple[str, ...]):
        super().__init__()
        self.hf_model = hf_model
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.hf_model(**dict(zip(self.input_names, tensors)), return_dict=True)
        return out.last_hidden_state


def _transformer_module(st_model):
    from sentence_transformers.models import Transformer

    first = st_model[0]
    if not isinstance(first, Transformer):
        raise ModelFormatError(
            f"the torch bf16/int8 variants need a body whose first module is a sentence-transformers "
            f"Transformer, got {type(first).__name__}"
        )
    text = getattr(first, "modality_config", {}).get("text", {})
    if text and (text.get("method") != "forward" or text.get("method_output_name") != "last_hidden_state"):
        raise ModelFormatError(f"unsupported transformer output for the compiled torch variants: {text}")
    if getattr(first.model.config, "output_hidden_states", False):
        raise ModelFormatError("the compiled torch variants do not support output_hidden_states bodies")
    return first


def _tokenize(st_model, texts: Sequence[str]) -> dict[str, Any]:
    return st_model.preprocess(list(texts))


def _input_names(st_model, transformer) -> tuple[str, ...]:
    sample = _tokenize(st_model, list(_WARMUP_TEXTS))
    names = tuple(k for k, v in sample.items()
                  if isinstance(v, torch.Tensor) and k in transformer.model_forward_params)
    if "input_ids" not in names or "attention_mask" not in names:
        raise ModelFormatError(f"the tokenizer gives {sorted(sample)}; input_ids and attention_mask are needed")
    return names


def _pad_to_multiple(tensors: list[torch.Tensor], names: tuple[str, ...], pad_id: int,
                     limit: int) -> list[torch.Tensor]:
    """Pad the sequence dim to a multiple of SEQ_MULTIPLE (not beyond ``limit``), masked out."""
    seq = tensors[0].shape[1]
    extra = -seq % SEQ_MULTIPLE
    if not extra or seq + extra > limit:
        return tensors
    out = []
    for name, t in zip(names, tensors):
        value = pad_id if name == "input_ids" else 0  # attention_mask 0: the padding is masked out
        out.append(torch.nn.functional.pad(t, (0, extra), value=value))
    return out


def _prepare_core(st_model) -> tuple[Any, _Core, tuple[str, ...], tuple[torch.Tensor, ...]]:
    """The transformer module, a traceable core, its input names and example inputs."""
    transformer = _transformer_module(st_model)
    hf_model = transformer.model
    if getattr(hf_model, "pooler", None) is not None:
        # unused by sentence-transformers (it reads last_hidden_state) and it breaks the int8
        # quantizer: the equivalent of from_pretrained(..., add_pooling_layer=False)
        hf_model.pooler = None
    names = _input_names(st_model, transformer)
    core = _Core(hf_model, names).eval()
    sample = _tokenize(st_model, list(_WARMUP_TEXTS))
    example = tuple(_pad_to_multiple([sample[n] for n in names], names, _pad_id(transformer), _max_len(transformer)))
    if example[0].shape[1] < 3:  # a dynamic dim must not be traced at size 0 or 1
        raise ModelFormatError("the tokenizer produces too short sequences to trace the model")
    return transformer, core, names, example


def _pad_id(transformer) -> int:
    tok = transformer.tokenizer
    pad = getattr(tok, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _export_graph(core: _Core, example: tuple[torch.Tensor, ...], *, max_len: int):
    """torch.export the core with a dynamic batch and sequence length; returns (GraphModule, dynamic_shapes)."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=65536)
    seq = Dim("seq", min=1, max=max_len)
    dynamic_shapes = tuple({0: batch, 1: seq} for _ in example)
    with torch.no_grad():
        ep = torch.export.export(core, example, dynamic_shapes=(dynamic_shapes,), strict=False)
    return ep.module(), dynamic_shapes


def _max_len(transformer) -> int:
    config = transformer.model.config
    limit = getattr(config, "max_position_embeddings", None) or 512
    return int(limit)


# --------------------------------------------------------------------------------------
# quantization


class _QuietINC:
    """Neural Compressor logs every step (INFO, and WARNINGs such as "converted the model in qdq
    mode, please compile it" that fastclf acts on) on its own logger: keep errors only."""

    def __enter__(self):
        try:  # INC creates its logger lazily, at its first message, and resets the level then
            from neural_compressor.common.utils.logger import Logger

            self.logger = Logger().get_logger()
        except ImportError:
            self.logger = logging.getLogger("neural_compressor")
        self.level = self.logger.level
        self.logger.setLevel(max(self.level, logging.ERROR))

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def _quant_modules():
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    except ImportError as exc:
        raise missing_dependency("torchao", "torch") from exc
    return prepare_pt2e, convert_pt2e, xiq


def _inc_modules():
    try:
        with _QuietINC():  # its import logs warnings about accelerator detection
            from neural_compressor.torch.quantization import StaticQuantConfig, convert, prepare
    except ImportError as exc:
        raise missing_dependency("neural_compressor", "inc") from exc
    return StaticQuantConfig, prepare, convert


def _engine(spec: VariantSpec) -> str:
    return spec.option.get("engine", "pt2e")


def _is_static_int8(spec: VariantSpec) -> bool:
    return spec.option.get("quantize") == "static"


def _require_engine(spec: VariantSpec) -> None:
    """Import the quantization engine now: a missing optional dependency fails before any work."""
    _inc_modules() if _engine(spec) == "inc" else _quant_modules()


def _insert_observers(spec: VariantSpec, graph, example, dynamic_shapes):
    """The exported graph with observers inserted (not calibrated)."""
    if _engine(spec) == "inc":
        StaticQuantConfig, prepare, _ = _inc_modules()
        # what neural_compressor.torch.export.export returns: an exported GraphModule, marked
        graph._exported = True
        graph.dynamic_shapes = (dynamic_shapes,)
        with _QuietINC():
            return prepare(graph, StaticQuantConfig(), example_inputs=example)
    prepare_pt2e, _, xiq = _quant_modules()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    return prepare_pt2e(graph, quantizer)


def _convert(spec: VariantSpec, prepared):
    if _engine(spec) == "inc":
        _, _, convert = _inc_modules()
        with _QuietINC():
            return convert(prepared)
    _, convert_pt2e, _ = _quant_modules()
    return convert_pt2e(prepared)


def _observed_nodes(prepared) -> dict[str, str]:
    """observer module name -> the name of the graph node it observes."""
    out = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and str(node.target).startswith("activation_post_process"):
            src = node.args[0] if node.args else None
            out[str(node.target)] = getattr(src, "name", str(src))
    return out


def _observer_state(prepared) -> dict[str, torch.Tensor]:
    names = set(_observed_nodes(prepared))
    return {k: v.detach().clone().contiguous() for k, v in prepared.state_dict().items()
            if k.split(".", 1)[0] in names}


def _calibrate(st_model, transformer, prepared, names, texts: Sequence[str]) -> None:
    pad_id, limit = _pad_id(transformer), _max_len(transformer)
    with torch.no_grad():
        for i in range(0, len(texts), CALIBRATION_BATCH):
            features = _tokenize(st_model, texts[i : i + CALIBRATION_BATCH])
            prepared(*_pad_to_multiple([features[n] for n in names], names, pad_id, limit))


def _variant_dir(body_dir: Path, spec: VariantSpec) -> tuple[Path, Path]:
    observers = next(f for f in spec.files if f.endswith(".safetensors"))
    calibration = next(f for f in spec.files if f.endswith(".json"))
    return body_dir / observers, body_dir / calibration


def _export_int8(body_dir: Path, spec: VariantSpec, calibration_texts: list[str]) -> None:
    from safetensors.torch import save_file

    texts = [t for t in calibration_texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataError(f"{spec.name} needs calibration texts (static quantization); none were given")
    _require_engine(spec)
    st_model = _load_sentence_transformer(body_dir)
    transformer, core, names, example = _prepare_core(st_model)
    graph, dynamic_shapes = _export_graph(core, example, max_len=_max_len(transformer))
    prepared = _insert_observers(spec, graph, example, dynamic_shapes)
    _calibrate(st_model, transformer, prepared, names, texts)
    state = _observer_state(prepared)
    if not state:
        raise ModelFormatError(f"{spec.name}: the quantizer inserted no observers into this model")
    observers_path, calibration_path = _variant_dir(body_dir, spec)
    metadata = {
        "format": OBSERVERS_FORMAT,
        "variant": spec.name,
        "engine": _engine(spec),
        "observed": json.dumps(_observed_nodes(prepared), sort_keys=True),
        "inputs": json.dumps(list(names)),
        "versions": json.dumps(package_versions(("torch", "torchao", "neural-compressor")), sort_keys=True),
        "calibration_sha256": _texts_digest(texts),
    }
    atomic_write(observers_path, lambda p: save_file(state, str(p), metadata=metadata))
    payload = {"format": CALIBRATION_FORMAT, "variant": spec.name, "batch_size": CALIBRATION_BATCH,
               "seq_multiple": SEQ_MULTIPLE, "texts": texts}
    atomic_write(calibration_path,
                  lambda p: p.write_text(json.dumps(payload, ensure_ascii=False, indent=0), encoding="utf-8"))


def _texts_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


def _read_calibration(path: Path) -> list[str]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot read {path}: {exc}") from exc
    texts = payload.get("texts") if isinstance(payload, dict) else None
    if payload.get("format") != CALIBRATION_FORMAT or not isinstance(texts, list) \
            or not all(isinstance(t, str) for t in texts):
        raise ModelFormatError(f"{path} is not a {CALIBRATION_FORMAT} file")
    return texts


def _load_observers(prepared, path: Path, spec: VariantSpec) -> str:
    """Load the stored observer statistics into ``prepared``; returns '' or why they do not fit."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # a corrupt file: safetensors raises its own error types
        return f"cannot read {path.name}: {exc}"
    if metadata.get("format") != OBSERVERS_FORMAT or metadata.get("engine") != _engine(spec):
        return f"{path.name} is not a {OBSERVERS_FORMAT} file for engine {_engine(spec)}"
    try:
        stored = json.loads(metadata.get("observed", ""))
    except ValueError:
        return f"{path.name} has no observer map"
    if stored != _observed_nodes(prepared):
        return "the observers of this torch version do not match the stored ones"
    expected = set(_observer_state(prepared))
    if set(state) != expected:
        return "the stored observer statistics do not match the observers"
    try:
        missing, unexpected = prepared.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        return f"cannot load the observer statistics: {first_line(exc)}"
    if unexpected or any(k in expected for k in missing):
        return "the stored observer statistics do not match the observers"
    return ""


# --------------------------------------------------------------------------------------
# compiled bodies


class _CompileSettings:
    """The settings under which the graphs are compiled, active at every call so that a
    recompile, if one happens, sees the same: frozen weights (constant folding and oneDNN weight
    prepacking; freezing passed in torch.compile's options does not reach the int8 lowering),
    and no 0/1 specialization of dynamic sizes, so batch 1 runs the same graph as batch 32.
    Plain attribute swaps: about 20 us a call (``config.patch()``: about 90 us)."""

    def __enter__(self):
        import torch._inductor.config as inductor_config
        import torch.fx.experimental._config as fx_config

        self.saved = (inductor_config.freezing, fx_config.backed_size_oblivious)
        inductor_config.freezing = True
        fx_config.backed_size_oblivious = True

    def __exit__(self, *exc):
        import torch._inductor.config as inductor_config
        import torch.fx.experimental._config as fx_config

        inductor_config.freezing, fx_config.backed_size_oblivious = self.saved


class _CompiledModel(torch.nn.Module):
    """Stands in for the Hugging Face model inside the sentence-transformers Transformer module:
    takes its keyword inputs, runs the compiled graph, returns ``{"last_hidden_state": fp32}``."""

    def __init__(self, config, compiled, names: tuple[str, ...], pad_id: int, max_len: int, autocast_dtype):
        super().__init__()
        self.config = config  # read by the Transformer module (hidden size, output_hidden_states)
        # not a registered submodule: an exported graph refuses .train()/.eval(), which encode() calls
        self._compiled = (compiled,)
        self.input_names = names
        self.pad_id = pad_id
        self.max_len = max_len
        self.autocast_dtype = autocast_dtype

    def forward(self, **kwargs) -> dict[str, torch.Tensor]:
        tensors = [kwargs[n] for n in self.input_names]
        seq = tensors[0].shape[1]
        tensors = _pad_to_multiple(tensors, self.input_names, self.pad_id, self.max_len)
        with _CompileSettings():
            if self.autocast_dtype is not None:
                with torch.autocast("cpu", dtype=self.autocast_dtype):
                    out = self._compiled[0](*tensors)
            else:
                out = self._compiled[0](*tensors)
        return {"last_hidden_state": out[:, :seq].float()}


def _check_compiler(spec: VariantSpec) -> None:
    """torch.compile's CPU backend builds C++ at load: fail early and clearly without a compiler."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # torch._inductor.exc.InvalidCxxCompiler, or a broken toolchain
        raise MissingDependency(
            f"{spec.name} compiles the model with torch.compile at load, which needs a C++ compiler "
            f"(g++, e.g. apt-get install g++) on the machine that loads it ({exc}); "
            f"the onnx and openvino variants do not"
        ) from exc


def cpu_features() -> dict[str, Any]:
    """What this CPU offers the compiled variants (torch's own detection)."""
    cpu = torch.cpu
    probe = {
        "capability": torch.backends.cpu.get_cpu_capability,
        "avx512": getattr(cpu, "_is_avx512_supported", None),
        "avx512_bf16": getattr(cpu, "_is_avx512_bf16_supported", None),
        "vnni": getattr(cpu, "_is_vnni_supported", None),
        "amx": getattr(cpu, "_is_amx_tile_supported", None),
    }
    out: dict[str, Any] = {}
    for name, fn in probe.items():
        try:
            out[name] = fn() if fn is not None else None
        except Exception:  # detection is advisory only
            out[name] = None
    return out


def _warn_about_cpu(spec: VariantSpec) -> None:
    """A variant that this CPU cannot speed up still runs, correctly but slowly: say so."""
    features = cpu_features()
    if _is_static_int8(spec):
        if features["vnni"] is False and features["amx"] is False:
            log.warning("%s: this CPU (%s) has no VNNI or AMX int8 instructions; int8 runs on the "
                        "slower AVX2 path and gains less over torch-fp32", spec.name, features["capability"])
    elif features["avx512_bf16"] is False and features["amx"] is False:
        log.warning("%s: this CPU (%s) has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated "
                    "and is usually slower than torch-fp32 here", spec.name, features["capability"])


class CompiledTorchBody(TorchBody):
    """The body's sentence-transformers pipeline with its transformer compiled by inductor
    (frozen weights, dynamic shapes): bf16 autocast, or static int8 rebuilt from stored observers."""

    def __init__(self, body_dir: Path, spec: VariantSpec):
        start = time.perf_counter()
        _check_compiler(spec)
        _warn_about_cpu(spec)
        self.variant = spec.name
        self.model = st_model = _load_sentence_transformer(body_dir)
        transformer, core, names, example = _prepare_core(st_model)
        pad_id = _pad_id(transformer)
        config = transformer.model.config
        max_len = _max_len(transformer)
        if _is_static_int8(spec):
            _require_engine(spec)
        graph, dynamic_shapes = _export_graph(core, example, max_len=max_len)
        autocast_dtype = None
        self.recalibrated = False
        if _is_static_int8(spec):  # static int8: stored observers -> convert
            observers_path, calibration_path = _variant_dir(body_dir, spec)
            prepared = _insert_observers(spec, graph, example, dynamic_shapes)
            problem = _load_observers(prepared, observers_path, spec)
            if problem:
                texts = _read_calibration(calibration_path)
                log.warning("%s: %s; recalibrating on the %d stored calibration texts",
                            spec.name, problem, len(texts))
                prepared = _insert_observers(spec, _export_graph(core, example, max_len=max_len)[0],
                                             example, dynamic_shapes)
                _calibrate(st_model, transformer, prepared, names, texts)
                self.recalibrated = True
            graph = _convert(spec, prepared)
        elif spec.option.get("precision") == "bf16":
            autocast_dtype = torch.bfloat16
        self.build_seconds = time.perf_counter() - start
        compiled = torch.compile(graph, dynamic=True)
        transformer.model = _CompiledModel(config, compiled, names, pad_id, max_len, autocast_dtype)
        del core  # the fp32 Hugging Face model is no longer referenced by the pipeline
        compile_start = time.perf_counter()
        self.encode(list(_WARMUP_TEXTS), batch_size=2)  # compile + freeze now, not at the first call
        self.encode(list(_WARMUP_TEXTS[:1]), batch_size=1)
        self.compile_seconds = time.perf_counter() - compile_start
        self.load_seconds = time.perf_counter() - start


def load(body_dir: Path, spec: VariantSpec) -> TorchBody:
    """The body of ``spec``: eager, or compiled by inductor when its options say ``compile``."""
    if spec.option.get("compile") == "inductor":
        return CompiledTorchBody(body_dir, spec)
    return TorchBody(body_dir, spec)


def export(body_dir: Path, spec: VariantSpec, calibration_texts: list[str]) -> None:
    """Calibrate a static int8 variant and write its observers; the others are built from the
    fp32 weights at load and write nothing."""
    if _is_static_int8(spec):
        _export_int8(Path(body_dir), spec, list(calibration_texts))
    elif spec.files:
        raise ValueError(f"variant {spec.name!r} has files but no torch export recipe (options {spec.option})")
