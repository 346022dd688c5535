"""OpenVINO bodies: fp32, the CPU's default precision (bf16 where it has it) and static int8. Loading needs
openvino and numpy only; exporting uses optimum-intel (and torch), and NNCF for int8."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastclf.backends import VariantSpec, newer_than_weights, publish
from fastclf.backends._numpy_pipeline import PipelineBody, TextPipeline, read_pipeline_config
from fastclf.errors import SettingError, first_line
from fastclf.texts import check_batch_size

logger = logging.getLogger(__name__)

MAX_CALIBRATION_SAMPLES = 300
LONG_CALIBRATION_SAMPLES = 8  # at most, joined from the calibration texts (see _calibration_dataset)
#: padded sequence lengths are rounded up to a multiple of this (with masked padding)
LENGTH_BUCKET = 16
#: texts a chunk at least when a batch's chunks run side by side (see OpenVINOBody.encode)
MIN_CHUNK = 8
#: one-text inputs of at most this many padded lengths get a compilation of their own, static shape [1, length];
#: ``$FASTCLF_OPENVINO_STATIC_SHAPES`` overrides it, 0 turns it off
STATIC_SHAPES = 4
STATIC_SHAPES_ENV = "FASTCLF_OPENVINO_STATIC_SHAPES"
#: one-text calls at a padded length before that length is compiled on its own
STATIC_AFTER = 3


def disable_telemetry() -> None:
    """Decline OpenVINO's usage telemetry in this process (before ``openvino`` is imported), as its opt-out
    file would, without writing to the user's home: fastclf sends nothing over the network."""
    try:
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:
        return

    opt_in_checker.OptInChecker.check = lambda self, *args, **kwargs: opt_in_checker.ConsentCheckResult.DECLINED
    try:  # a Telemetry object made earlier in this process (the class is a singleton)
        from openvino_telemetry import main as telemetry_main

        instance = getattr(telemetry_main.Telemetry, "_SingletonMetaClass__single_instance", None)
        if instance is not None:
            instance.consent = False
    except Exception:  # another telemetry version: the consent check above still holds
        pass


def static_shapes_setting() -> int:
    """:data:`STATIC_SHAPES`, or ``$FASTCLF_OPENVINO_STATIC_SHAPES`` when set (SettingError unless a whole number)."""
    value = os.environ.get(STATIC_SHAPES_ENV, "").strip()
    if value and not value.isdigit():
        raise SettingError(f"{STATIC_SHAPES_ENV} must be 0 or a positive integer, got {value!r}")
    return int(value) if value else STATIC_SHAPES


class OpenVINOBody(PipelineBody):
    """LATENCY for one chunk, THROUGHPUT for a batch's chunks side by side, lengths padded to :data:`LENGTH_BUCKET`;
    a one-text length seen :data:`STATIC_AFTER` times is compiled as a static [1, length] in the background."""

    def __init__(self, body_dir: Path, spec: VariantSpec, threads: int | None = None):
        import openvino as ov  # after runtime_module's disable_telemetry

        super().__init__(body_dir, spec)
        precision = spec.option.get("precision", "f32")
        self._config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32"} if precision == "f32" else {}
        self._threads = threads
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = threads
        self._core = ov.Core()
        self._model = self._core.read_model(str(self.graph_file), str(self.graph_file.with_suffix(".bin")))
        self.compiled = self._compile("LATENCY")
        self._output_index = self._check_graph([p.get_any_name() for p in self.compiled.inputs],
                                               [o.get_names() for o in self.compiled.outputs])
        self.inference_precision = self._property(self.compiled, "INFERENCE_PRECISION_HINT")
        self._local = threading.local()  # an infer request is not thread-safe: one per thread
        self._throughput: Any = None
        self._queue: Any = None
        self._queue_lock = threading.Lock()
        self.length_bucket = 0 if self.pipeline.padding_side == "left" else LENGTH_BUCKET
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

    def _forked(self) -> bool:
        """Whether this is a forked child of the process that started the compiling thread (not here)."""
        return self._executor is not None and self._executor_pid != os.getpid()

    def _static_model(self, length: int):
        """The [1, ``length``] compilation; None while there is none (its compilation then starts in the
        background, within :attr:`static_shapes`)."""
        if length in self._static:
            return self._static[length]
        with self._static_lock:
            if self._forked():
                self._executor, self._static_futures = None, {}
            busy = len(self._static) + len(self._static_futures)
            if length in self._static_futures or length in self._static or busy >= self.static_shapes:
                return None
            self._static_seen[length] = self._static_seen.get(length, 0) + 1
            if self._static_seen[length] < STATIC_AFTER:
                return None
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastclf-openvino-static")
                self._executor_pid = os.getpid()
            future = self._static_futures[length] = self._executor.submit(self._compile_static, length)
            future.add_done_callback(_static_failed)
        return None

    def settle(self, timeout: float = 60.0) -> None:
        """Wait (at most ``timeout`` seconds) for the static compilations under way."""
        from concurrent.futures import wait

        with self._static_lock:
            pending = [] if self._forked() else list(self._static_futures.values())
        wait(pending, timeout=timeout)

    @staticmethod
    def _property(compiled, name: str) -> str:
        try:
            value = compiled.get_property(name)
        except Exception:
            return "unknown"
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def runtime_settings(self) -> dict[str, object]:
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
        return {f"openvino_{name.lower()}": self._property(self.compiled, name)
                for name in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "INFERENCE_PRECISION_HINT")}

    def _feed(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's inputs, right-padded (masked) to a multiple of :attr:`length_bucket`, within max_seq_length."""
        length = features["input_ids"].shape[1]
        target = -(-length // self.length_bucket) * self.length_bucket if self.length_bucket else length
        if self.pipeline.max_seq_length:
            target = min(target, max(length, self.pipeline.max_seq_length))
        fill = {"input_ids": self.pipeline.pad_id, "token_type_ids": self.pipeline.pad_type_id}
        return {k: np.pad(features[k], ((0, 0), (0, target - length)), constant_values=fill.get(k, 0))
                for k in self._input_names}

    def _run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        feed = self._feed(features)
        one_text = self.static_shapes and feed["input_ids"].shape[0] == 1
        compiled = (self._static_model(feed["input_ids"].shape[1]) if one_text else None) or self.compiled
        requests = self._local.__dict__.setdefault("requests", {})  # compiled model's id -> this thread's request
        if id(compiled) not in requests:
            requests[id(compiled)] = compiled.create_infer_request()
        return np.asarray(requests[id(compiled)].infer(feed)[self._output_index])[:, :features["input_ids"].shape[1]]

    def _run_parallel(self, chunks: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Run ``chunks`` on the THROUGHPUT compilation, as many at once as it has streams."""
        from openvino import AsyncInferQueue

        with self._queue_lock:  # one batch at a time uses the queue
            if self._queue is None:
                with self._model_lock:
                    self._throughput = self._compile("THROUGHPUT")
                jobs = int(self._throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                self._queue = AsyncInferQueue(self._throughput, max(1, jobs))
            results: list[np.ndarray | None] = [None] * len(chunks)

            def done(request, i: int) -> None:
                out = request.get_output_tensor(self._output_index).data
                results[i] = np.array(out)[:, : chunks[i]["input_ids"].shape[1]]

            self._queue.set_callback(done)
            for i, features in enumerate(chunks):
                self._queue.start_async(self._feed(features), userdata=i)
            self._queue.wait_all()
        if any(r is None for r in results):
            raise RuntimeError(f"OpenVINO returned no result for some of {len(chunks)} chunks")
        return results  # type: ignore[return-value]

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Embeddings, a batch's length-matched chunks (a few texts each at least) run side by side."""
        texts, batch_size = list(texts), check_batch_size(batch_size)
        return self.pipeline.encode(texts, self._run, batch_size=batch_size, run_many=self._run_parallel,
                                    min_size=min(batch_size, max(MIN_CHUNK, len(texts) // 8)))


def _static_failed(future) -> None:
    exc = future.exception()
    if exc is not None:  # the shape stays dynamic (its future stays, so it is not tried again)
        logger.debug("static OpenVINO compilation failed: %s", first_line(exc))


load = OpenVINOBody


def _calibration_dataset(pipeline: TextPipeline, texts: list[str]):
    """The calibration texts tokenized as at inference, one sample each; when they are all short, a few
    samples join consecutive texts up to max_seq_length, so static ranges cover long inputs too."""
    from datasets import Dataset

    if len(texts) > MAX_CALIBRATION_SAMPLES:  # evenly spaced, deterministic
        texts = [texts[int(i * len(texts) / MAX_CALIBRATION_SAMPLES)] for i in range(MAX_CALIBRATION_SAMPLES)]
    samples = [pipeline.tokenize([text]) for text in texts]
    max_len = pipeline.max_seq_length or 512
    if all(s["input_ids"].shape[1] < max_len for s in samples):
        wanted, current = min(LONG_CALIBRATION_SAMPLES, max(2, len(texts) // 8)), ""
        # bounded: each text adds at least one token, so max_len texts fill a sample
        for text in itertools.islice(itertools.cycle(texts), wanted * max_len):
            current = f"{current} {text}".strip()
            if pipeline.tokenize([current])["input_ids"].shape[1] >= max_len:
                samples.append(pipeline.tokenize([current]))
                current = ""
                if len(samples) - len(texts) >= wanted:
                    break
    return Dataset.from_dict({key: [s[key][0].tolist() for s in samples]
                              for key in ("input_ids", "attention_mask", "token_type_ids")})


def _source_model(body_dir: Path, spec: VariantSpec, texts: list[str], work: Path):
    """The fp32 model to save or quantize, not compiled: the body's transformer (or the fp32 IR already
    exported from it, for int8), or a distilled student of it."""
    from optimum.intel import OVModelForFeatureExtraction

    transformer_dir = read_pipeline_config(body_dir).transformer_dir  # fails early on folders we cannot run
    xml = body_dir / "openvino/openvino_model.xml"
    if spec.option.get("distill"):
        from fastclf.backends._distill import distill_body

        transformer_dir = distill_body(body_dir, texts, work / "student", info_file=body_dir / spec.files[2],
                                       layers=spec.option["distill"])
    elif "quantize" in spec.option and xml.is_file() and xml.with_suffix(".bin").is_file() \
            and newer_than_weights(xml, transformer_dir):
        src = work / "src"
        src.mkdir()
        for source in (xml, xml.with_suffix(".bin"), transformer_dir / "config.json"):
            shutil.copyfile(source, src / source.name)
        try:
            return OVModelForFeatureExtraction.from_pretrained(str(src), compile=False, local_files_only=True)
        except Exception as exc:
            logger.warning("cannot reuse %s (%s); exporting again", xml, first_line(exc)[:300])
    return OVModelForFeatureExtraction.from_pretrained(str(transformer_dir), export=True, compile=False,
                                                       load_in_8bit=False, local_files_only=True)


def export(body_dir: Path, spec: VariantSpec, texts: list[str]) -> None:
    """Write ``spec.files``: the fp32 IR, or the static int8 IR calibrated on ``texts``."""
    with tempfile.TemporaryDirectory(prefix="fastclf-openvino-") as tmp:
        work = Path(tmp)
        model, out = _source_model(body_dir, spec, texts, work), work / "out"
        if "quantize" in spec.option:
            from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer

            dataset = _calibration_dataset(TextPipeline(body_dir), texts)
            config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(dataset)))
            OVQuantizer.from_pretrained(model).quantize(calibration_dataset=dataset, save_directory=str(out),
                                                        ov_config=config)
        else:
            model.save_pretrained(str(out))
        publish({body_dir / f: out / f"openvino_model{Path(f).suffix}" for f in spec.files[:2]},
                f"the OpenVINO export of {spec.name!r}")
