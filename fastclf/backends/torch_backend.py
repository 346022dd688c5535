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

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastclf.backends import VariantSpec
from fastclf.backends._torch_graph import (
    _WARMUP_TEXTS,
    SEQ_MULTIPLE,
    _Core,
    _export_graph,
    _input_names,
    _load_sentence_transformer,
    _max_len,
    _pad_id,
    _pad_to_multiple,
    _prepare_core,
    _tokenize,
    _transformer_module,
)
from fastclf.backends._torch_int8 import (
    CALIBRATION_BATCH,
    CALIBRATION_FORMAT,
    OBSERVERS_FORMAT,
    _calibrate,
    _convert,
    _export_int8,
    _insert_observers,
    _is_static_int8,
    _load_observers,
    _observed_nodes,
    _observer_state,
    _read_calibration,
    _require_engine,
    _variant_dir,
)
from fastclf.errors import MissingDependency

__all__ = [  # the graph and int8 helpers live in _torch_graph and _torch_int8; re-exported for their users
    "CALIBRATION_BATCH", "CALIBRATION_FORMAT", "OBSERVERS_FORMAT", "SEQ_MULTIPLE", "CompiledTorchBody", "TorchBody",
    "_Core", "_calibrate", "_convert", "_export_graph", "_input_names", "_insert_observers", "_load_observers",
    "_load_sentence_transformer", "_max_len", "_observed_nodes", "_observer_state", "_pad_id", "_prepare_core",
    "_read_calibration", "_tokenize", "_transformer_module", "cpu_features", "export", "load", "torch_threads",
]

log = logging.getLogger(__name__)


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
            dim = (getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension)()
            return np.zeros((0, dim or 0), dtype=np.float32)
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
