"""ONNX Runtime bodies: fp32, graph-optimized (O1-O3) and dynamic int8.

Loading uses ``onnxruntime.InferenceSession`` and the numpy pipeline only: no torch, no
transformers. Exporting uses optimum (which imports torch): the transformer is exported
once to ``onnx/model.onnx`` (kept: it is the onnx-fp32 variant and the source of the
others), then optimized with ``ORTOptimizer`` (O1-O3) or quantized with onnxruntime's
``quantize_dynamic`` (per-channel QInt8 weights of the MatMuls with constant weights).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fastclf._util import atomic_write
from fastclf.backends import VariantSpec, export_command, newer_than_weights, requested_threads
from fastclf.backends._numpy_pipeline import PipelineBody, TextPipeline, check_graph_inputs, read_pipeline_config
from fastclf.backends._pooling import row_cosines
from fastclf.errors import ModelFormatError, first_line
from fastclf.machine import physical_cores

logger = logging.getLogger(__name__)

BASE_FILE = "onnx/model.onnx"
_OUTPUT = "last_hidden_state"
#: onnx-int8 keeps more MatMuls in fp32 while its embeddings of the calibration texts are
#: further than this (mean cosine) from the fp32 graph's (see _quantize_dynamic_checked)
INT8_TARGET_COSINE = 0.99
INT8_CHECK_TEXTS = 64


class OnnxBody(PipelineBody):
    """A sentence-transformers body run by ONNX Runtime on the CPU.

    Session settings: intra-op threads = the physical cores (or ``$FASTCLF_THREADS``): a second thread on the same core only contends for its vector
    units; one inter-op thread and sequential execution, since a transformer graph is a chain
    with no parallel branches worth a thread; every graph optimization (ORT_ENABLE_ALL: the
    attention, layer-norm and GELU fusions), applied once when the session is built.
    """

    def __init__(self, body_dir: Path, spec: VariantSpec):
        import onnxruntime as ort

        self.variant = spec.name
        self.path = Path(body_dir)
        self.pipeline = TextPipeline(self.path)
        model_path = self.path / spec.files[0]

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._threads = requested_threads() or physical_cores()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        options.enable_cpu_mem_arena = False  # the arena keeps a large batch's peak: a server's memory would ratchet up
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelFormatError(
                f"cannot load {model_path} for variant {spec.name!r}: the ONNX file is corrupted, "
                f"truncated or not an ONNX model ({first_line(exc)[:300]});"
                f" re-export it with: {export_command(spec.name)}"
            ) from exc

        inputs = {i.name: i for i in self.session.get_inputs()}
        check_graph_inputs(list(inputs), model_path, spec.name)
        self._input_names = list(inputs)
        self._input_types = {
            name: np.int32 if "int32" in i.type else np.int64 for name, i in inputs.items()
        }
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = _OUTPUT if _OUTPUT in outputs else outputs[0]
        self._one_text = spec.option.get("quantize") == "dynamic"

    def encode(self, texts, *, batch_size: int = 32) -> np.ndarray:
        """Embeddings; dynamic int8 runs one text a call: it takes its activation ranges from the
        whole input of a call, so in a batch a text's answer would depend on its neighbours."""
        from fastclf.texts import check_batch_size

        return super().encode(texts, batch_size=1 if self._one_text and check_batch_size(batch_size) else batch_size)

    def _run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        feed = {
            name: features[name].astype(self._input_types[name], copy=False) for name in self._input_names
        }
        return self.session.run([self._output], feed)[0]

    def runtime_settings(self) -> dict[str, object]:
        """Threads, graph optimization and execution mode of the session."""
        return {"runtime": "onnxruntime", "intra_op_threads": self._threads, "inter_op_threads": 1,
                "execution_mode": "sequential", "graph_optimization": "all",
                "providers": list(self.session.get_providers())}

    def threads(self) -> dict[str, object]:
        """The session's thread pools (see :func:`fastclf.backends.thread_settings`)."""
        return {"onnxruntime_intra_op": self._threads, "onnxruntime_inter_op": 1}

    def __repr__(self) -> str:
        return f"OnnxBody(variant={self.variant!r}, path={str(self.path)!r})"


def load(body_dir: Path, spec: VariantSpec) -> OnnxBody:
    return OnnxBody(Path(body_dir), spec)


# -- export ------------------------------------------------------------------------------


def _usable_base(base: Path, transformer_dir: Path) -> bool:
    """Whether an existing ``onnx/model.onnx`` can be reused as the source of a derived
    variant: it parses as ONNX, looks like our export, and is newer than the weights."""
    if not base.is_file() or not newer_than_weights(base, transformer_dir):
        return False
    try:
        import onnx

        model = onnx.load(str(base), load_external_data=False)
        return {"input_ids", "attention_mask"} <= {i.name for i in model.graph.input}
    except Exception:
        return False


def _base_model(body_dir: Path, transformer_dir: Path, work: Path, *, fresh: bool) -> Path:
    """Put the fp32 ONNX export (``model.onnx`` + ``config.json``) into ``work``. Unless an
    up-to-date ``body_dir/onnx/model.onnx`` exists (and ``fresh`` is false), export it there first."""
    base = body_dir / BASE_FILE
    if fresh or not _usable_base(base, transformer_dir):
        from optimum.onnxruntime import ORTModelForFeatureExtraction

        export_dir = work / "export"
        model = ORTModelForFeatureExtraction.from_pretrained(
            str(transformer_dir), export=True, local_files_only=True, provider="CPUExecutionProvider"
        )
        model.save_pretrained(str(export_dir))
        del model
        onnx_file = export_dir / "model.onnx"
        if not onnx_file.is_file() or any(export_dir.glob("*.onnx_data")):
            raise ModelFormatError(f"the ONNX export of {transformer_dir} did not produce a single model.onnx")
        atomic_write(base, lambda tmp: shutil.copyfile(onnx_file, tmp))
    src = work / "src"
    src.mkdir()
    shutil.copyfile(base, src / "model.onnx")
    shutil.copyfile(transformer_dir / "config.json", src / "config.json")
    return src


def export(body_dir: Path, spec: VariantSpec, calibration_texts: list[str]) -> None:
    """Write ``spec.files`` (and ``onnx/model.onnx``, the source of every ONNX variant)."""
    body_dir = Path(body_dir)
    config = read_pipeline_config(body_dir)  # fail early on bodies the numpy pipeline cannot run
    option = spec.option
    target = body_dir / spec.files[0]
    with tempfile.TemporaryDirectory(prefix="fastclf-onnx-") as tmp:
        work = Path(tmp)
        is_base = spec.files[0] == BASE_FILE and not option
        src = _base_model(body_dir, config.transformer_dir, work, fresh=is_base)
        if is_base:
            return  # onnx-fp32: the base export is the variant
        out = work / "out"
        if "level" in option:
            from optimum.onnxruntime import ORTOptimizer
            from optimum.onnxruntime.configuration import AutoOptimizationConfig

            level = option["level"]
            optimization = getattr(AutoOptimizationConfig, level)()
            optimizer = ORTOptimizer.from_pretrained(str(src), file_names=["model.onnx"])
            optimizer.optimize(optimization, str(out), file_suffix=level)
            produced = out / f"model_{level}.onnx"
        elif option.get("quantize") == "dynamic":
            out.mkdir()
            produced = out / target.name
            _quantize_dynamic_checked(src / "model.onnx", produced, TextPipeline(body_dir), calibration_texts)
        else:
            raise ValueError(f"variant {spec.name!r} has no ONNX export recipe (options {option})")
        if not produced.is_file():
            raise ModelFormatError(f"the export of {spec.name!r} did not produce {produced.name}")
        if produced.name != target.name:
            raise ModelFormatError(f"the export of {spec.name!r} produced {produced.name}, expected {target.name}")
        atomic_write(target, lambda tmp: shutil.copyfile(produced, tmp))


def _weight_shapes(model_path: Path) -> dict[str, tuple[int, int]]:
    """MatMul node name -> (in, out) of its constant 2-D weight."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    dims = {t.name: tuple(t.dims) for t in model.graph.initializer if len(t.dims) == 2}
    return {n.name: dims[n.input[1]] for n in model.graph.node  # type: ignore[misc]
            if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in dims}


def _quantize_dynamic(src: Path, dst: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root_level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is for CNNs
    try:
        quantize_dynamic(
            src,
            dst,
            per_channel=True,
            reduce_range=False,  # VNNI CPUs do not need 7-bit weights
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1},  # 1 = float
        )
    finally:
        root.setLevel(root_level)


def _embed_with(path: Path, pipeline: TextPipeline, texts: list[str]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return pipeline.encode(texts, lambda f: session.run(None, {n: f[n] for n in names})[0], batch_size=32)


def _quantize_dynamic_checked(src: Path, dst: Path, pipeline: TextPipeline, texts: list[str]) -> dict[str, object]:
    """onnxruntime's dynamic quantizer, weights only (MatMulConstBOnly), with accuracy in the loop.

    Int8 per-channel weights for the projection and feed-forward MatMuls; the attention
    products Q.K and P.V stay fp32 (optimum's ORTQuantizer avx512_vnni config also quantizes
    them, with one activation range per batch: on MiniLM 0.5 ms slower for one text and no more
    accurate). Activations are quantized per call with one range a tensor, which breaks on
    bodies whose feed-forward output layers read outlier activations: on all-mpnet-base-v2
    tuned on the README's snippets, the mean cosine with fp32 fell to 0.88 (6% of labels
    changed). So the int8 graph's embeddings of (up to 64 of) the calibration texts are compared
    with the fp32 graph's, and while their mean cosine is under :data:`INT8_TARGET_COSINE` the
    MatMuls that hurt are kept in fp32, in two steps: the feed-forward down-projections (weights
    wider in than out), then also the up-projections (mpnet: 0.88, then 0.99). Without texts the
    whole graph is quantized. Returns what was kept in fp32 and the cosines seen.
    """
    shapes = _weight_shapes(src)
    down = [n for n, (k, m) in shapes.items() if k > m]
    up = [n for n, (k, m) in shapes.items() if k < m]
    steps: list[list[str]] = [[], down, down + up]
    sample = [t for t in texts if isinstance(t, str) and t.strip()][:INT8_CHECK_TEXTS]
    if not sample:
        _quantize_dynamic(src, dst, [])
        return {"kept_fp32": 0, "cosines": []}
    reference = _embed_with(src, pipeline, sample)
    cosines: list[float] = []
    for exclude in steps:  # dst holds the last one tried
        _quantize_dynamic(src, dst, exclude)
        cosines.append(round(float(np.mean(row_cosines(_embed_with(dst, pipeline, sample), reference))), 5))
        if cosines[-1] >= INT8_TARGET_COSINE:
            break
    logger.info("onnx-int8: %d MatMuls kept in fp32, mean cosine with fp32 %s", len(exclude), cosines)
    return {"kept_fp32": len(exclude), "cosines": cosines}
