"""OpenVINO bodies: fp32, the CPU's default precision (bf16 where the CPU has it) and static int8.

Loading uses ``openvino.Core().compile_model`` and the numpy pipeline only: no torch, no
transformers. Exporting uses optimum-intel (which imports torch): ``OVModelForFeatureExtraction``
converts the transformer to ``openvino/openvino_model.xml``/``.bin``; the int8 variant is
quantized from it with ``OVQuantizer`` and ``OVQuantizationConfig`` (NNCF post-training static
quantization), calibrated only on the texts given to :func:`export`.

OpenVINO computes in bf16 by default on a CPU with bf16 support, so the fp32 variants set
``INFERENCE_PRECISION_HINT="f32"``; ``openvino-bf16`` keeps the default. ``inference_precision``
on the loaded body says what the plugin actually chose.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastclf.backends import VariantSpec, export_command, newer_than_weights
from fastclf.backends._numpy_pipeline import PipelineBody, TextPipeline, check_graph_inputs, read_pipeline_config
from fastclf.errors import DataError, ModelFormatError, SettingError, first_line

logger = logging.getLogger(__name__)

FP32_FILES = ("openvino/openvino_model.xml", "openvino/openvino_model.bin")
MAX_CALIBRATION_SAMPLES = 300
LONG_CALIBRATION_SAMPLES = 8  # at most, joined from the calibration texts (see _calibration_dataset)
_OUTPUT = "last_hidden_state"


def disable_telemetry() -> None:
    """Turn off OpenVINO's usage telemetry for this process, before ``openvino`` is imported.

    ``import openvino`` (through ``openvino.tools.ovc``), NNCF and optimum-intel send events to
    Google Analytics through the ``openvino_telemetry`` package unless its consent file
    (``~/intel/openvino_telemetry``, written by ``opt_in_out --opt_out``) says ``0``. fastclf
    never sends anything over the network: it answers that package's consent check with
    "declined" in this process, which is what the opt-out file does, without writing to the
    user's home. Idempotent; a missing ``openvino_telemetry`` package is fine.
    """
    try:
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:
        return
    checker = opt_in_checker.OptInChecker
    if getattr(checker.check, "_fastclf_declined", False):
        return

    def declined(self, enable_opt_in_dialog=True, disable_in_ci=False):
        return opt_in_checker.ConsentCheckResult.DECLINED

    declined._fastclf_declined = True  # type: ignore[attr-defined]
    checker.check = declined
    try:  # a Telemetry object made earlier in this process (the class is a singleton)
        from openvino_telemetry import main as telemetry_main

        instance = getattr(telemetry_main.Telemetry, "_SingletonMetaClass__single_instance", None)
        if instance is not None:
            instance.consent = False
    except Exception:  # an older or newer telemetry package: the consent check above still holds
        pass


#: padded sequence lengths are rounded up to a multiple of this (with masked padding)
LENGTH_BUCKET = 16
#: texts a chunk at least when a batch's chunks run side by side (see OpenVINOBody.encode)
MIN_CHUNK = 8
#: one-text inputs of at most this many padded lengths get a compilation of their own, static
#: shape [1, length] (see OpenVINOBody); ``$FASTCLF_OPENVINO_STATIC_SHAPES`` overrides it, 0 turns it off
STATIC_SHAPES = 4
STATIC_SHAPES_ENV = "FASTCLF_OPENVINO_STATIC_SHAPES"
#: one-text calls at a padded length before that length is compiled on its own
STATIC_AFTER = 3


def static_shapes_setting() -> int:
    """:data:`STATIC_SHAPES`, or ``$FASTCLF_OPENVINO_STATIC_SHAPES`` when set.

    Raises:
        SettingError: the environment variable is not a whole number.
    """
    value = os.environ.get(STATIC_SHAPES_ENV, "").strip()
    if not value:
        return STATIC_SHAPES
    if not value.isdigit():
        raise SettingError(f"{STATIC_SHAPES_ENV} must be 0 or a positive integer, got {value!r}")
    return int(value)


class OpenVINOBody(PipelineBody):
    """A sentence-transformers body compiled by OpenVINO for the CPU.

    Two compilations of the same model:

    * one with ``PERFORMANCE_HINT=LATENCY`` (one stream on all cores) runs a single chunk of
      texts: one text, or a batch whose texts are close in length;
    * one with ``PERFORMANCE_HINT=THROUGHPUT`` (several streams, a few cores each), compiled
      the first time a batch splits into several length-matched chunks, runs those chunks in
      parallel through an ``AsyncInferQueue``.

    Shapes: the CPU plugin keeps kernels and buffers for every input shape it meets, so the padded
    length is rounded up to a multiple of :data:`LENGTH_BUCKET` (masked padding: outputs do not
    change) and a body meets a few shapes, not a new one nearly every call.

    Static shapes for one text: a compilation for exactly [1, L] runs one text faster than the
    dynamic one. Once one text has come :data:`STATIC_AFTER` times at a padded length, that shape
    is compiled in a background thread while the dynamic compilation keeps answering; at most
    :data:`STATIC_SHAPES` lengths (``$FASTCLF_OPENVINO_STATIC_SHAPES``), each costing memory.
    :meth:`settle` waits for the compilations under way. (Figures:
    benchmarks/studies/openvino-padded-length.md, openvino-static-shapes.md.)

    Precision: ``f32`` sets ``INFERENCE_PRECISION_HINT=f32``; ``bf16`` keeps the plugin's
    default (bf16 on CPUs that have it). openvino-int8 runs its unquantized layers in f32: in
    bf16 its embeddings drifted at no gain in speed. ``inference_precision`` says what the
    plugin chose.
    """

    def __init__(self, body_dir: Path, spec: VariantSpec):
        disable_telemetry()
        import openvino as ov

        from fastclf.backends import requested_threads

        self.variant = spec.name
        self.path = Path(body_dir)
        self.pipeline = TextPipeline(self.path)
        xml = self.path / spec.files[0]
        weights = xml.with_suffix(".bin")

        precision = spec.option.get("precision", "f32")
        if precision == "f32":
            self._config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32"}
        elif precision == "bf16":
            self._config = {}
        else:
            raise ValueError(f"unknown OpenVINO precision {precision!r} for variant {spec.name!r}")
        self._threads = requested_threads()
        if self._threads:
            self._config["INFERENCE_NUM_THREADS"] = self._threads
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(xml), str(weights))
            self.compiled = self._compile("LATENCY")
        except Exception as exc:  # OpenVINO raises RuntimeError with a long C++ trace
            raise ModelFormatError(
                f"cannot load {xml} for variant {spec.name!r}: the OpenVINO IR (.xml/.bin) is corrupted, "
                f"truncated or does not match ({first_line(exc)[:300]});"
                f" re-export it with: {export_command(spec.name)}"
            ) from exc

        self._input_names = [port.get_any_name() for port in self.compiled.inputs]
        check_graph_inputs(self._input_names, xml, spec.name)
        outputs = self.compiled.outputs
        self._output_index = next((i for i, o in enumerate(outputs) if _OUTPUT in o.get_names()), 0)
        self._output = outputs[self._output_index]
        self.inference_precision = self._property(self.compiled, "INFERENCE_PRECISION_HINT")
        self._local = threading.local()
        self._throughput: Any = None  # compiled at the first batch of several chunks
        self._queue: Any = None
        self._queue_lock = threading.Lock()
        #: padded lengths are rounded up to a multiple of this (0: no rounding)
        self.length_bucket = 0 if self.pipeline.padding_side == "left" else LENGTH_BUCKET
        #: at most this many one-text lengths get a static compilation (0: none)
        self.static_shapes = static_shapes_setting()
        self._static_seen: dict[int, int] = {}  # padded length -> one-text calls, until compiled
        self._static: dict[int, Any] = {}  # padded length -> compiled model of shape [1, length]
        self._static_futures: dict[int, Any] = {}  # compilations under way or failed
        self._static_lock = threading.Lock()
        self._model_lock = threading.Lock()  # ov.Model is not for two threads at once
        self._executor: Any = None
        self._executor_pid = 0

    def _compile(self, hint: str, model: Any = None):
        return self._core.compile_model(self._model if model is None else model, "CPU",
                                        {"PERFORMANCE_HINT": hint, **self._config})

    def _compile_static(self, length: int) -> None:
        with self._model_lock:
            model = self._model.clone()
        model.reshape({name: [1, length] for name in self._input_names})
        compiled = self._compile("LATENCY", model)
        with self._static_lock:
            self._static[length] = compiled
            self._static_futures.pop(length, None)

    def _static_request(self, length: int):
        """This thread's infer request on the [1, ``length``] compilation; None while there is
        none (its compilation is then started in the background, within :attr:`static_shapes`)."""
        compiled = self._static.get(length)
        if compiled is None:
            with self._static_lock:
                if self._executor is not None and self._executor_pid != os.getpid():
                    # a forked process: the parent's compiling thread is not here
                    self._executor, self._static_futures = None, {}
                if (length in self._static_futures or length in self._static
                        or len(self._static) + len(self._static_futures) >= self.static_shapes):
                    return None
                seen = self._static_seen[length] = self._static_seen.get(length, 0) + 1
                if seen < STATIC_AFTER:
                    return None
                if self._executor is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastclf-openvino-static")
                    self._executor_pid = os.getpid()
                future = self._executor.submit(self._compile_static, length)
                self._static_futures[length] = future
                future.add_done_callback(self._static_failed)
            return None
        requests = getattr(self._local, "static", None)
        if requests is None:
            requests = self._local.static = {}
        request = requests.get(length)
        if request is None:
            request = requests[length] = compiled.create_infer_request()
        return request

    @staticmethod
    def _static_failed(future) -> None:
        exc = future.exception()
        if exc is not None:  # the shape stays dynamic (its future stays, so it is not tried again)
            logger.debug("static OpenVINO compilation failed: %s", first_line(exc))

    def settle(self, timeout: float = 60.0) -> None:
        """Wait (at most ``timeout`` seconds) for the static compilations under way."""
        from concurrent.futures import wait

        with self._static_lock:
            if self._executor is not None and self._executor_pid != os.getpid():
                return  # a forked process: the parent's compilations do not finish here
            pending = list(self._static_futures.values())
        if pending:
            wait(pending, timeout=timeout)

    @staticmethod
    def _property(compiled, name: str) -> str:
        try:
            value = compiled.get_property(name)
        except Exception:
            return "unknown"
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def runtime_settings(self) -> dict[str, object]:
        """Hints, precision, threads and streams of the compiled model(s)."""
        out: dict[str, object] = {
            "runtime": "openvino",
            "performance_hint": "LATENCY (one chunk); THROUGHPUT (several chunks of a batch, in parallel)",
            "inference_precision": self.inference_precision,
            "threads": self._property(self.compiled, "INFERENCE_NUM_THREADS"),
            "threads_requested": self._threads,
            "length_bucket": self.length_bucket,
            "static_one_text_lengths": sorted(self._static),
            "static_shapes_max": self.static_shapes,
        }
        if self._throughput is not None:
            out["throughput_streams"] = self._property(self._throughput, "NUM_STREAMS")
            out["throughput_requests"] = len(self._queue) if self._queue is not None else None
        return out

    def threads(self) -> dict[str, object]:
        """The compiled model's threads and streams (see :func:`fastclf.backends.thread_settings`)."""
        return {f"openvino_{name.lower()}": self._property(self.compiled, name)
                for name in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "INFERENCE_PRECISION_HINT")}

    def _bucketed(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``features`` right-padded (masked) to the next multiple of :attr:`length_bucket`,
        never past max_seq_length."""
        length = features["input_ids"].shape[1]
        if not self.length_bucket or length == 0:
            return features
        target = -(-length // self.length_bucket) * self.length_bucket
        cap = self.pipeline.max_seq_length
        if cap:
            target = min(target, max(length, cap))
        extra = target - length
        if extra <= 0:
            return features
        fill = {"input_ids": self.pipeline.pad_id, "attention_mask": 0, "token_type_ids": self.pipeline.pad_type_id}
        return {k: np.pad(v, ((0, 0), (0, extra)), constant_values=fill.get(k, 0)) for k, v in features.items()}

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:  # an infer request is not thread-safe: one per thread
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        length = features["input_ids"].shape[1]
        padded = self._bucketed(features)
        feed = {name: padded[name] for name in self._input_names}
        request = None
        if self.static_shapes and padded["input_ids"].shape[0] == 1:
            request = self._static_request(padded["input_ids"].shape[1])
        if request is None:
            result = self._request().infer(feed)
            return np.asarray(result[self._output])[:, :length]
        result = request.infer(feed)
        return np.asarray(result[self._output_index])[:, :length]

    def _run_parallel(self, chunks: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Run ``chunks`` on the THROUGHPUT compilation, as many at once as it has streams."""
        from openvino import AsyncInferQueue

        with self._queue_lock:  # one batch at a time uses the queue
            if self._queue is None:
                with self._model_lock:
                    self._throughput = self._compile("THROUGHPUT")
                try:
                    jobs = int(self._throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                except Exception:
                    jobs = 2
                self._queue = AsyncInferQueue(self._throughput, max(1, jobs))
            results: list[np.ndarray | None] = [None] * len(chunks)
            index = self._output_index

            def done(request, i: int) -> None:
                results[i] = np.array(request.get_output_tensor(index).data)[:, : chunks[i]["input_ids"].shape[1]]

            self._queue.set_callback(done)
            for i, features in enumerate(chunks):
                padded = self._bucketed(features)
                self._queue.start_async({name: padded[name] for name in self._input_names}, userdata=i)
            self._queue.wait_all()
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"OpenVINO returned no result for {len(missing)} of {len(chunks)} chunks")
        return results  # type: ignore[return-value]

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Embed ``texts``: like :meth:`TextPipeline.encode`, with the length-matched chunks of a
        batch run in parallel when there are several."""
        from fastclf.backends._numpy_pipeline import length_chunks

        pipeline = self.pipeline
        from fastclf.texts import check_batch_size

        texts, batch_size = list(texts), check_batch_size(batch_size)
        if len(texts) <= 1:
            return pipeline.encode(texts, self._run, batch_size=batch_size)
        encodings = pipeline._encode(texts)
        # chunks run side by side on the THROUGHPUT compilation: a few texts a chunk at least,
        # or a call costs more than its padding saves
        chunks = length_chunks([len(e.ids) for e in encodings], batch_size,
                               min_size=min(batch_size, max(MIN_CHUNK, len(texts) // 8)))
        features = [pipeline._pad([encodings[i] for i in idx]) for idx in chunks]
        if len(chunks) == 1:
            outputs = [self._run(features[0])]
        else:
            outputs = self._run_parallel(features)
        result: np.ndarray | None = None
        for idx, feats, out in zip(chunks, features, outputs):
            pooled = pipeline.pool(out, feats["attention_mask"])
            if result is None:
                result = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            result[idx] = pooled
        assert result is not None
        return result

    def __repr__(self) -> str:
        return f"OpenVINOBody(variant={self.variant!r}, precision={self.inference_precision!r}, path={str(self.path)!r})"


def load(body_dir: Path, spec: VariantSpec) -> OpenVINOBody:
    return OpenVINOBody(Path(body_dir), spec)  # threads: $FASTCLF_THREADS (see requested_threads)


# -- export ------------------------------------------------------------------------------


def _install(pairs: list[tuple[Path, Path]]) -> None:
    """Copy each ``src`` to its ``dst``; each destination is replaced atomically, the .bin
    before the .xml, so a reader never finds a new .xml beside a missing or partial .bin."""
    staged: list[tuple[Path, Path]] = []
    try:
        for src, dst in pairs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
            staged.append((tmp, dst))
            shutil.copyfile(src, tmp)
        for tmp, dst in sorted(staged, key=lambda p: p[1].suffix != ".bin"):
            os.replace(tmp, dst)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()


def _fp32_model(body_dir: Path, transformer_dir: Path, work: Path, *, fresh: bool):
    """An ``OVModelForFeatureExtraction`` of the fp32 IR, not compiled. Reuses the body's
    ``openvino/openvino_model.xml`` when it is there and up to date (unless ``fresh``)."""
    disable_telemetry()
    from optimum.intel import OVModelForFeatureExtraction

    xml, bin_ = (body_dir / f for f in FP32_FILES)
    reusable = not fresh and xml.is_file() and bin_.is_file() and newer_than_weights(xml, transformer_dir)
    if reusable:
        src = work / "src"
        src.mkdir()
        shutil.copyfile(xml, src / "openvino_model.xml")
        shutil.copyfile(bin_, src / "openvino_model.bin")
        shutil.copyfile(transformer_dir / "config.json", src / "config.json")
        try:
            return OVModelForFeatureExtraction.from_pretrained(str(src), compile=False, local_files_only=True)
        except Exception as exc:
            logger.warning("cannot reuse %s (%s); exporting again", xml, first_line(exc)[:300])
    return OVModelForFeatureExtraction.from_pretrained(
        str(transformer_dir), export=True, compile=False, load_in_8bit=False, local_files_only=True
    )


def _calibration_dataset(pipeline: TextPipeline, texts: list[str]):
    """The calibration texts, tokenized like at inference (one unpadded sample each).

    Static quantization fixes every activation range from these samples, so positions that
    no sample reaches would be clipped at inference: when the texts are short, a few extra
    samples join consecutive calibration texts up to the body's max_seq_length, so long
    inputs are covered too (still only the calibration texts' content).
    """
    from datasets import Dataset

    if len(texts) > MAX_CALIBRATION_SAMPLES:  # evenly spaced, deterministic
        step = len(texts) / MAX_CALIBRATION_SAMPLES
        texts = [texts[int(i * step)] for i in range(MAX_CALIBRATION_SAMPLES)]
    samples = [pipeline.tokenize([text]) for text in texts]
    max_len = pipeline.max_seq_length or 512
    if all(s["input_ids"].shape[1] < max_len for s in samples):
        wanted = min(LONG_CALIBRATION_SAMPLES, max(2, len(texts) // 8))
        joined, current = [], ""
        # bounded: each text adds at least one token, so max_len texts fill a sample
        for text in itertools.islice(itertools.cycle(texts), wanted * max_len):
            current = f"{current} {text}".strip()
            if pipeline.tokenize([current])["input_ids"].shape[1] >= max_len:
                joined.append(current)
                current = ""
                if len(joined) >= wanted:
                    break
        samples += [pipeline.tokenize([text]) for text in joined]
    rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
    for features in samples:
        for key in rows:
            rows[key].append(features[key][0].tolist())
    return Dataset.from_dict(rows)


def export(body_dir: Path, spec: VariantSpec, calibration_texts: list[str]) -> None:
    """Write ``spec.files``: the fp32 IR, or the static int8 IR calibrated on ``calibration_texts``."""
    body_dir = Path(body_dir)
    config = read_pipeline_config(body_dir)  # fail early on bodies the numpy pipeline cannot run
    quantize = spec.option.get("quantize")
    if quantize not in (None, "static"):
        raise ValueError(f"variant {spec.name!r}: unknown OpenVINO quantization {quantize!r}")
    texts = [t for t in calibration_texts if isinstance(t, str) and t.strip()]
    if quantize and not texts:
        raise DataError(f"variant {spec.name!r} is calibrated: export it with some example texts")
    targets = [body_dir / f for f in spec.files]

    with tempfile.TemporaryDirectory(prefix="fastclf-openvino-") as tmp:
        work = Path(tmp)
        if spec.option.get("distill"):
            from optimum.intel import OVModelForFeatureExtraction

            from fastclf.backends._distill import distill_body

            student = distill_body(body_dir, texts, work / "student", info_file=body_dir / spec.files[2],
                                   layers=spec.option["distill"])
            model = OVModelForFeatureExtraction.from_pretrained(
                str(student), export=True, compile=False, load_in_8bit=False, local_files_only=True)
        else:
            model = _fp32_model(body_dir, config.transformer_dir, work, fresh=not quantize)
        out = work / "out"
        if quantize:
            from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer

            dataset = _calibration_dataset(TextPipeline(body_dir), texts)
            qconfig = OVQuantizationConfig(num_samples=len(dataset))
            quantizer = OVQuantizer.from_pretrained(model)
            quantizer.quantize(
                calibration_dataset=dataset, save_directory=str(out), ov_config=OVConfig(quantization_config=qconfig)
            )
        else:
            model.save_pretrained(str(out))
        produced = [out / "openvino_model.xml", out / "openvino_model.bin"]
        for path in produced:
            if not path.is_file():
                raise ModelFormatError(f"the OpenVINO export of {spec.name!r} did not produce {path.name}")
        by_suffix = {p.suffix: p for p in produced}
        _install([(by_suffix[t.suffix], t) for t in targets if t.suffix in by_suffix])
