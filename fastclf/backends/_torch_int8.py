"""Static int8 of the torch bodies, one path for both engines (torch-int8: torchao PT2E; inc-int8: Intel Neural
Compressor): the export stores observer statistics and calibration texts, a load rebuilds the graph from them."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from fastclf._util import atomic_write, package_versions
from fastclf.backends import VariantSpec
from fastclf.backends import _torch_graph as tg
from fastclf.errors import ModelFormatError, first_line, missing_dependency
from fastclf.quiet import quiet_logs

log = logging.getLogger(__name__)

OBSERVERS_FORMAT = "fastclf-torch-observers/1"
CALIBRATION_FORMAT = "fastclf-calibration/1"
CALIBRATION_BATCH = 32


def _engine(spec: VariantSpec):
    """(insert observers, convert) of the spec's engine; MissingDependency when it is not installed."""
    if spec.option.get("engine") != "inc":
        try:
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
        except ImportError as exc:
            raise missing_dependency("torchao", "torch") from exc

        def insert_pt2e(graph, example, dynamic_shapes):
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            return prepare_pt2e(graph, quantizer)

        return insert_pt2e, convert_pt2e
    quiet = partial(quiet_logs, ("neural_compressor",))  # it logs every step, and advice fastclf follows
    try:
        from neural_compressor.common.utils.logger import Logger

        Logger()  # INC sets its logger's level when it first makes it: make it before quieting it
        with quiet():  # its import logs warnings about accelerator detection
            from neural_compressor.torch.quantization import StaticQuantConfig, convert, prepare
    except ImportError as exc:
        raise missing_dependency("neural_compressor", "inc") from exc

    def insert_inc(graph, example, dynamic_shapes):
        graph._exported = True  # what neural_compressor.torch.export.export returns: an exported GraphModule, marked
        graph.dynamic_shapes = (dynamic_shapes,)
        with quiet():
            return prepare(graph, StaticQuantConfig(), example_inputs=example)

    def convert_inc(prepared):
        with quiet():
            return convert(prepared)

    return insert_inc, convert_inc


def _observed_nodes(prepared) -> dict[str, str]:
    """observer module name -> the name of the graph node it observes."""
    out = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and str(node.target).startswith("activation_post_process"):
            src = node.args[0] if node.args else None
            out[str(node.target)] = getattr(src, "name", str(src))
    return out


def _observer_state(prepared) -> dict[str, torch.Tensor]:
    """The observers' statistics (min/max, histograms)."""
    names = set(_observed_nodes(prepared))
    return {k: v.detach().clone().contiguous() for k, v in prepared.state_dict().items()
            if k.split(".", 1)[0] in names}


def _observed(spec: VariantSpec, st_model, parts, texts: Sequence[str] = ()):
    """The transformer of :func:`~fastclf.backends._torch_graph._prepare_core`'s ``parts`` exported with
    ``spec``'s engine's observers inserted, calibrated on ``texts``."""
    transformer, core, names, example = parts
    pad_id, limit = tg._pad_id(transformer), tg._max_len(transformer)
    graph, dynamic_shapes = tg._export_graph(core, example, max_len=limit)
    prepared = _engine(spec)[0](graph, example, dynamic_shapes)
    with torch.no_grad():
        for i in range(0, len(texts), CALIBRATION_BATCH):
            features = st_model.preprocess(list(texts[i : i + CALIBRATION_BATCH]))
            prepared(*tg._pad_to_multiple([features[n] for n in names], names, pad_id, limit))
    return prepared


def quantized(spec: VariantSpec, body_dir: Path, st_model, parts) -> tuple[Any, bool]:
    """(the int8 graph rebuilt from the stored observers, or recalibrated on the stored texts when they do not
    fit this torch; whether it was recalibrated). torch.export.load is not used: it unpickles."""
    observers, calibration = (body_dir / f for f in spec.files)
    texts = _read_calibration(calibration)  # first: a missing export fails before the graph is exported
    prepared = _observed(spec, st_model, parts)
    problem = _load_observers(prepared, observers, spec)
    if problem:
        log.warning("%s: %s; recalibrating on the %d stored calibration texts", spec.name, problem, len(texts))
        prepared = _observed(spec, st_model, parts, texts)
    return _engine(spec)[1](prepared), bool(problem)


def _export_int8(body_dir: Path, spec: VariantSpec, texts: list[str]) -> None:
    from safetensors.torch import save_file

    st_model = tg._load_sentence_transformer(body_dir)
    parts = tg._prepare_core(st_model)
    prepared = _observed(spec, st_model, parts, texts)
    state = _observer_state(prepared)
    if not state:
        raise ModelFormatError(f"{spec.name}: the quantizer inserted no observers into this model")
    observers_path, calibration_path = (body_dir / f for f in spec.files)
    metadata = {"format": OBSERVERS_FORMAT, "variant": spec.name, "engine": spec.option.get("engine", "pt2e"),
                "observed": json.dumps(_observed_nodes(prepared), sort_keys=True), "inputs": json.dumps(list(parts[2])),
                "versions": json.dumps(package_versions(("torch", "torchao", "neural-compressor")), sort_keys=True),
                "calibration_sha256": hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()}
    atomic_write(observers_path, lambda p: save_file(state, str(p), metadata=metadata))
    payload = {"format": CALIBRATION_FORMAT, "variant": spec.name, "batch_size": CALIBRATION_BATCH,
               "seq_multiple": tg.SEQ_MULTIPLE, "texts": texts}
    atomic_write(calibration_path,
                 lambda p: p.write_text(json.dumps(payload, ensure_ascii=False, indent=0), encoding="utf-8"))


def _read_calibration(path: Path) -> list[str]:
    payload = json.loads(path.read_text(encoding="utf-8"))  # an OSError or bad JSON: load_body's error
    texts = payload.get("texts") if isinstance(payload, dict) else None
    if not isinstance(texts, list) or payload.get("format") != CALIBRATION_FORMAT \
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
    engine = spec.option.get("engine", "pt2e")
    if metadata.get("format") != OBSERVERS_FORMAT or metadata.get("engine") != engine:
        return f"{path.name} is not a {OBSERVERS_FORMAT} file for engine {engine}"
    try:
        stored = json.loads(metadata.get("observed", ""))
    except ValueError:
        return f"{path.name} has no observer map"
    if stored != _observed_nodes(prepared):
        return "the observers of this torch version do not match the stored ones"
    if set(state) != set(_observer_state(prepared)):
        return "the stored observer statistics do not match the observers"
    try:
        prepared.load_state_dict(state, strict=False)  # the other keys: the graph's own weights
    except RuntimeError as exc:  # shape mismatch
        return f"cannot load the observer statistics: {first_line(exc)}"
    return ""
