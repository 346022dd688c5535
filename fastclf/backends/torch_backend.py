"""PyTorch bodies: fp32 eager (the reference), bf16 autocast and static int8; the accelerated ones run a
``torch.export`` graph of the transformer compiled by inductor with frozen weights at load (a C++ compiler)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fastclf.backends import VariantSpec
from fastclf.backends import _torch_graph as tg
from fastclf.backends import _torch_int8 as q
from fastclf.errors import MissingDependency

log = logging.getLogger(__name__)


class TorchBody:
    """A sentence-transformers model run in PyTorch fp32 eager mode; ``threads`` sets torch's (process-wide) pool."""

    def __init__(self, body_dir: Path, spec: VariantSpec, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.variant = spec.name
        self.model = tg._load_sentence_transformer(body_dir)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.get_embedding_dimension() or 0), dtype=np.float32)
        with torch.inference_mode():
            out = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def runtime_settings(self) -> dict[str, object]:
        return {"runtime": "torch", "execution": "eager" if type(self) is TorchBody else "inductor",
                "intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads()}


@contextlib.contextmanager
def _compile_settings():
    """Frozen weights and no 0/1 specialization of dynamic sizes (batch 1 runs the batch graph), set at every
    call so that a recompile sees the same."""
    import torch._inductor.config as inductor_config
    import torch.fx.experimental._config as fx_config

    saved = (inductor_config.freezing, fx_config.backed_size_oblivious)
    inductor_config.freezing = fx_config.backed_size_oblivious = True
    try:
        yield
    finally:
        inductor_config.freezing, fx_config.backed_size_oblivious = saved


class _CompiledModel(torch.nn.Module):
    """Stands in for the Hugging Face model inside the sentence-transformers Transformer module: runs the
    compiled graph on its keyword inputs and returns ``{"last_hidden_state": fp32}``."""

    def __init__(self, config, compiled, names: tuple[str, ...], pad_id: int, max_len: int, bf16: bool):
        super().__init__()
        self.config = config  # read by the Transformer module (hidden size, output_hidden_states)
        self._compiled = (compiled,)  # not a submodule: an exported graph refuses .train()/.eval()
        self.input_names, self.pad_id, self.max_len, self.bf16 = names, pad_id, max_len, bf16

    def forward(self, **kwargs) -> dict[str, torch.Tensor]:
        tensors = [kwargs[n] for n in self.input_names]
        seq = tensors[0].shape[1]
        tensors = tg._pad_to_multiple(tensors, self.input_names, self.pad_id, self.max_len)
        with _compile_settings(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self._compiled[0](*tensors)
        return {"last_hidden_state": out[:, :seq].float()}


def _check_machine(spec: VariantSpec) -> None:
    """Fail early without the C++ compiler torch.compile needs; warn where the CPU cannot speed the variant up."""
    from fastclf.machine import cpu, cpu_has_bf16

    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # torch._inductor.exc.InvalidCxxCompiler, or a broken toolchain
        raise MissingDependency(f"{spec.name} compiles the model with torch.compile at load, which needs a C++ "
                                f"compiler (g++, e.g. apt-get install g++) on the machine that loads it ({exc}); "
                                "the onnx and openvino variants do not") from exc
    if "quantize" in spec.option and not cpu().has("avx512_vnni", "avx_vnni", "amx_int8"):
        log.warning("%s: this CPU has no VNNI or AMX int8 instructions; int8 runs on the slower AVX2 path and "
                    "gains less over torch-fp32", spec.name)
    elif "quantize" not in spec.option and not cpu_has_bf16():
        log.warning("%s: this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated and is usually "
                    "slower than torch-fp32 here", spec.name)


class CompiledTorchBody(TorchBody):
    """The body's pipeline with its transformer compiled by inductor: bf16 autocast, or static int8 rebuilt
    from the stored observers (recalibrated on the stored texts when they do not fit this torch)."""

    def __init__(self, body_dir: Path, spec: VariantSpec, threads: int | None = None):
        _check_machine(spec)
        super().__init__(body_dir, spec, threads)
        transformer, core, names, example = parts = tg._prepare_core(self.model)
        max_len = tg._max_len(transformer)
        self.recalibrated = False
        if "quantize" in spec.option:
            graph, self.recalibrated = q.quantized(spec, body_dir, self.model, parts)
        else:
            graph = tg._export_graph(core, example, max_len=max_len)[0]
        transformer.model = _CompiledModel(transformer.model.config, torch.compile(graph, dynamic=True), names,
                                           tg._pad_id(transformer), max_len, spec.option.get("precision") == "bf16")
        self.encode(list(tg._WARMUP_TEXTS), batch_size=2)  # compile and freeze now, not at the first call
        self.encode(list(tg._WARMUP_TEXTS[:1]), batch_size=1)


def load(body_dir: Path, spec: VariantSpec, threads: int | None = None) -> TorchBody:
    """The body of ``spec``: eager, or compiled by inductor when its options say ``compile``."""
    return (CompiledTorchBody if spec.option.get("compile") == "inductor" else TorchBody)(body_dir, spec, threads)


def export(body_dir: Path, spec: VariantSpec, texts: list[str]) -> None:
    """Calibrate a static int8 variant and write its observers; the others are built at load."""
    if "quantize" in spec.option:
        q._export_int8(body_dir, spec, texts)
