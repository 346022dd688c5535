"""The variant registry: every body variant fastclf can export and load, as a :class:`VariantSpec`."""

from __future__ import annotations

from dataclasses import dataclass

from fastclf.errors import UnknownVariant

#: the variant every other one is checked against
REFERENCE = "torch-fp32"


@dataclass(frozen=True)
class VariantSpec:
    """What fastclf knows about one body variant."""

    name: str
    runtime: str  # "torch", "onnx", "openvino" or "static": the module backends/<runtime>_backend.py
    description: str
    files: tuple[str, ...]  # paths below body/ that the export writes; () = computed at load
    calibrated: bool = False  # static quantization: the export needs calibration texts
    # how its runtime module builds and runs it: torch: compile, precision, quantize, engine (pt2e, inc); onnx:
    # level (O1-O3), quantize (dynamic); openvino: precision, quantize (static), distill; static: pca_dims
    options: tuple[tuple[str, str], ...] = ()
    auto: bool = True  # a candidate of ``fastclf accelerate --auto`` (the torch ones only with --include-torch)
    # a new model's own head (other embeddings), fit on the training examples at export: its path below body/
    head: str | None = None

    @property
    def option(self) -> dict[str, str]:
        return dict(self.options)

    @property
    def new_model(self) -> bool:
        """Whether the body is a new model (distilled, static): judged by its accuracy, not by the labels it changes."""
        return self.head is not None or "distill" in self.option

    @property
    def extra(self) -> str:
        """The pip extra that installs this variant's runtime."""
        return _RUNTIMES[self.runtime][1]

    @property
    def package(self) -> str:
        """The Python package this variant's runtime needs."""
        return _RUNTIMES[self.runtime][0]

    @property
    def loads_weights(self) -> bool:
        """Whether loading reads the sentence-transformers weights of ``body/``, not only :attr:`files`."""
        return self.runtime == "torch" or not self.files


# runtime -> (python module that must import, pip extra)
_RUNTIMES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "torch"),
    "onnx": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "openvino"),
    "static": ("numpy", "static"),  # runs on numpy alone; the export needs model2vec (the extra)
}

#: folders of ``body/`` that hold the runtimes' exports (``body/<runtime>/...``); the rest of
#: ``body/`` is the sentence-transformers model itself
RUNTIME_DIRS = tuple(_RUNTIMES)

_SPECS = [
    VariantSpec(REFERENCE, "torch", "PyTorch fp32 eager: the reference every other variant is checked against", (),
                auto=False),
    VariantSpec("torch-bf16", "torch",
                "PyTorch bf16 autocast with torch.compile and frozen weights (native replacement for IPEX bf16)", (),
                options=(("compile", "inductor"), ("precision", "bf16"))),
    VariantSpec("torch-int8", "torch", "PyTorch static int8: PT2E, x86 inductor quantizer, compiled with freezing",
                ("torch/int8/observers.safetensors", "torch/int8/calibration.json"), calibrated=True,
                options=(("compile", "inductor"), ("quantize", "static"), ("engine", "pt2e"))),
    VariantSpec("inc-int8", "torch", "Intel Neural Compressor 3.x static int8 (StaticQuantConfig, prepare, convert)",
                ("torch/inc-int8/observers.safetensors", "torch/inc-int8/calibration.json"), calibrated=True,
                options=(("compile", "inductor"), ("quantize", "static"), ("engine", "inc"))),
    VariantSpec("onnx-fp32", "onnx", "ONNX Runtime fp32, exported with optimum", ("onnx/model.onnx",)),
    VariantSpec("onnx-o1", "onnx", "ONNX Runtime with basic graph optimizations (O1)", ("onnx/model_O1.onnx",),
                options=(("level", "O1"),), auto=False),
    VariantSpec("onnx-o2", "onnx", "ONNX Runtime with extended graph optimizations and fusions (O2)",
                ("onnx/model_O2.onnx",), options=(("level", "O2"),), auto=False),
    VariantSpec("onnx-o3", "onnx", "ONNX Runtime with O2 plus fast GELU approximation (O3)", ("onnx/model_O3.onnx",),
                options=(("level", "O3"),), auto=False),
    # calibrated: accuracy in the loop, the texts choose what stays fp32 (not activation ranges)
    VariantSpec("onnx-int8", "onnx", "ONNX Runtime dynamic int8 (feed-forward layers kept fp32 where int8 drifts on "
                "the calibration texts), one text a call so a batch cannot change an answer; fastest with AVX-512 VNNI",
                ("onnx/model_qint8_avx512_vnni.onnx",), calibrated=True, options=(("quantize", "dynamic"),)),
    VariantSpec("openvino-fp32", "openvino", "OpenVINO with INFERENCE_PRECISION_HINT=f32 (true fp32)",
                ("openvino/openvino_model.xml", "openvino/openvino_model.bin"), options=(("precision", "f32"),)),
    VariantSpec("openvino-bf16", "openvino", "OpenVINO with its CPU default precision (bf16 on CPUs that have it)",
                ("openvino/openvino_model.xml", "openvino/openvino_model.bin"), options=(("precision", "bf16"),)),
    VariantSpec("openvino-int8", "openvino", "OpenVINO static int8 (NNCF, optimum-intel), the other layers in f32",
                ("openvino/openvino_model_qint8_quantized.xml", "openvino/openvino_model_qint8_quantized.bin"),
                calibrated=True, options=(("precision", "f32"), ("quantize", "static"))),
    VariantSpec("openvino-int8-distilled", "openvino", "a smaller body: two thirds of the body's layers distilled "
                "on the calibration texts to give its token states, then OpenVINO static int8 like openvino-int8",
                ("openvino/openvino_model_distilled_qint8_quantized.xml",
                 "openvino/openvino_model_distilled_qint8_quantized.bin", "openvino/openvino_model_distilled.json"),
                calibrated=True, options=(("precision", "f32"), ("quantize", "static"), ("distill", "two-thirds"))),
    VariantSpec("static", "static", "model2vec's distillation of the body into one vector a token (256 dimensions), "
                "a text the mean of its tokens' vectors, in numpy alone; its own head, fit on the training examples",
                ("static/model.safetensors", "static/tokenizer.json", "static/config.json"),
                options=(("pca_dims", "256"),), head="static/head.safetensors"),
]

VARIANTS: dict[str, VariantSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(variant: str) -> VariantSpec:
    """The spec of a variant name; UnknownVariant when it is not one of :data:`VARIANTS`."""
    try:
        return VARIANTS[variant]
    except KeyError:
        raise UnknownVariant(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}") from None


def auto_candidates(*, torch: bool) -> tuple[str, ...]:
    """``accelerate --auto``'s candidates in registry order: the torch ones (``--include-torch``) or the others."""
    return tuple(s.name for s in _SPECS if s.auto and (s.runtime == "torch") == torch)


def export_command(variant: str) -> str:
    """The command that exports ``variant``, for error messages."""
    return f"fastclf accelerate MODEL_DIR --variant {variant}"
