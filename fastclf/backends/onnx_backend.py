"""ONNX Runtime bodies: fp32, graph-optimized (O1-O3) and dynamic int8. Loading needs onnxruntime and
numpy only; exporting uses optimum (and torch) once into ``onnx/model.onnx``, the source of the others."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fastclf.backends import VariantSpec, newer_than_weights, publish
from fastclf.backends._numpy_pipeline import PipelineBody, TextPipeline, read_pipeline_config
from fastclf.backends._pooling import row_cosines
from fastclf.errors import ModelFormatError
from fastclf.machine import physical_cores
from fastclf.quiet import quiet_logs

logger = logging.getLogger(__name__)

BASE_FILE = "onnx/model.onnx"
#: onnx-int8 keeps more MatMuls in fp32 while its embeddings of the calibration texts are further than
#: this (mean cosine) from the fp32 graph's (see _quantize_dynamic_checked)
INT8_TARGET_COSINE = 0.99
INT8_CHECK_TEXTS = 64


def _session(path: Path, threads: int):
    """A CPU session with every graph optimization, ``threads`` intra-op threads, one inter-op thread and
    sequential execution (a transformer is a chain), and no memory arena (a server's memory would ratchet up)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBody(PipelineBody):
    """A sentence-transformers body run by ONNX Runtime on the CPU, with the physical cores as threads unless
    told otherwise: a second thread on a core only contends for its vector units."""

    def __init__(self, body_dir: Path, spec: VariantSpec, threads: int | None = None):
        super().__init__(body_dir, spec)
        self._threads = threads or physical_cores()
        self.session = _session(self.graph_file, self._threads)
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = outputs[self._check_graph([i.name for i in self.session.get_inputs()], [{o} for o in outputs])]
        # dynamic int8 takes its activation ranges from a whole call: one text a call keeps answers batch-independent
        self._one_text = spec.option.get("quantize") == "dynamic"

    def encode(self, texts, *, batch_size: int = 32) -> np.ndarray:
        from fastclf.texts import check_batch_size

        return super().encode(texts, batch_size=1 if self._one_text and check_batch_size(batch_size) else batch_size)

    def _run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self._output], {n: features[n] for n in self._input_names})[0]

    def runtime_settings(self) -> dict[str, object]:
        return {"runtime": "onnxruntime", "intra_op_threads": self._threads, "inter_op_threads": 1,
                "execution_mode": "sequential", "graph_optimization": "all",
                "providers": list(self.session.get_providers())}

    def threads(self) -> dict[str, object]:
        return {"onnxruntime_intra_op": self._threads, "onnxruntime_inter_op": 1}


load = OnnxBody


def _base_model(body_dir: Path, transformer_dir: Path, work: Path, *, fresh: bool) -> Path:
    """The fp32 ONNX export, in ``work/src`` with its config.json; exported into ``body_dir/onnx/model.onnx``
    first when ``fresh`` or when the one there is not a current export of ours."""
    import onnx

    base = body_dir / BASE_FILE
    try:
        inputs = {i.name for i in onnx.load(str(base), load_external_data=False).graph.input}
        usable = not fresh and newer_than_weights(base, transformer_dir) and {"input_ids", "attention_mask"} <= inputs
    except Exception:  # missing or damaged
        usable = False
    if not usable:
        from optimum.onnxruntime import ORTModelForFeatureExtraction

        export_dir = work / "export"
        ORTModelForFeatureExtraction.from_pretrained(str(transformer_dir), export=True, local_files_only=True,
                                                     provider="CPUExecutionProvider").save_pretrained(str(export_dir))
        if any(export_dir.glob("*.onnx_data")):  # weights beside the graph: not the single file the variants copy
            raise ModelFormatError(f"the ONNX export of {transformer_dir} did not produce a single model.onnx")
        publish({base: export_dir / "model.onnx"}, f"the ONNX export of {transformer_dir}")
    (work / "src").mkdir()
    shutil.copyfile(base, work / "src" / "model.onnx")
    shutil.copyfile(transformer_dir / "config.json", work / "src" / "config.json")
    return work / "src"


def export(body_dir: Path, spec: VariantSpec, texts: list[str]) -> None:
    """Write ``spec.files`` (and ``onnx/model.onnx``, the source of every ONNX variant)."""
    config = read_pipeline_config(body_dir)  # fail early on bodies the numpy pipeline cannot run
    target = body_dir / spec.files[0]
    with tempfile.TemporaryDirectory(prefix="fastclf-onnx-") as tmp:
        work = Path(tmp)
        src = _base_model(body_dir, config.transformer_dir, work, fresh=not spec.options)
        if not spec.options:
            return  # onnx-fp32: the base export is the variant
        produced = work / "out" / target.name
        if "level" in spec.option:
            from optimum.onnxruntime import ORTOptimizer
            from optimum.onnxruntime.configuration import AutoOptimizationConfig

            level = spec.option["level"]
            optimizer = ORTOptimizer.from_pretrained(str(src), file_names=["model.onnx"])
            optimizer.optimize(getattr(AutoOptimizationConfig, level)(), str(work / "out"), file_suffix=level)
        else:  # quantize: dynamic
            produced.parent.mkdir()
            _quantize_dynamic_checked(src / "model.onnx", produced, TextPipeline(body_dir), texts)
        publish({target: produced}, f"the export of {spec.name!r}")


def _weight_shapes(model_path: Path) -> dict[str, tuple[int, int]]:
    """MatMul node name -> (in, out) of its constant 2-D weight."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    dims = {t.name: tuple(t.dims) for t in model.graph.initializer if len(t.dims) == 2}
    return {n.name: dims[n.input[1]] for n in model.graph.node  # type: ignore[misc]
            if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in dims}


def _quantize_dynamic(src: Path, dst: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_logs(("",)):  # its root-logger advice ("consider pre-processing") is for CNNs
        quantize_dynamic(src, dst, per_channel=True, reduce_range=False,  # VNNI CPUs do not need 7-bit weights
                         weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1})  # 1 = float


def _quantize_dynamic_checked(src: Path, dst: Path, pipeline: TextPipeline, texts: list[str]) -> dict[str, object]:
    """Per-channel int8 weights of the constant MatMuls; while the texts' mean cosine with fp32 is under
    :data:`INT8_TARGET_COSINE`, the feed-forward down-, then also up-projections stay fp32 (outlier activations)."""
    shapes = _weight_shapes(src)
    down = [n for n, (k, m) in shapes.items() if k > m]
    up = [n for n, (k, m) in shapes.items() if k < m]
    sample = texts[:INT8_CHECK_TEXTS]  # export_variant dropped the empty ones
    if not sample:
        _quantize_dynamic(src, dst, [])
        return {"kept_fp32": 0, "cosines": []}

    def embed(path: Path) -> np.ndarray:
        session = _session(path, physical_cores())
        names = [i.name for i in session.get_inputs()]
        return pipeline.encode(sample, lambda f: session.run(None, {n: f[n] for n in names})[0])

    reference = embed(src)
    cosines: list[float] = []
    for exclude in ([], down, down + up):  # dst holds the last one tried
        _quantize_dynamic(src, dst, exclude)
        cosines.append(round(float(np.mean(row_cosines(embed(dst), reference))), 5))
        if cosines[-1] >= INT8_TARGET_COSINE:
            break
    logger.info("onnx-int8: %d MatMuls kept in fp32, mean cosine with fp32 %s", len(exclude), cosines)
    return {"kept_fp32": len(exclude), "cosines": cosines}
