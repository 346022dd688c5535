"""OpenVINO at one text: the dynamic compilation fastclf uses against one static [1, L] compilation for
each padded length L (multiples of 16), LATENCY hint; then compile time and memory of one static shape.

    HF_HUB_OFFLINE=1 python benchmarks/probes/openvino_static_shapes.py runs/rt/body/openvino/openvino_model_qint8_quantized.xml f32
    HF_HUB_OFFLINE=1 python benchmarks/probes/openvino_static_shapes.py runs/rt/body/openvino/openvino_model.xml bf16

``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` (and the like) in the environment caps oneDNN's ISA.
"""

from __future__ import annotations

import resource
import sys
import time

from _common import median_ms, one_text_features, test_snippets

from fastclf.backends.openvino_backend import disable_telemetry


def main(xml: str, precision: str) -> None:
    disable_telemetry()
    import openvino as ov

    texts, _ = test_snippets(400)
    feats = one_text_features(texts, bucket=16)
    lengths = sorted({f["input_ids"].shape[1] for f in feats})
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    dynamic = core.compile_model(core.read_model(xml), "CPU", config)
    names = [port.get_any_name() for port in dynamic.inputs]
    request = dynamic.create_infer_request()

    def run_dynamic(f):
        return request.infer({n: f[n] for n in names})

    static = {}
    for length in lengths:
        start = time.perf_counter()
        model = core.read_model(xml)
        model.reshape({n: [1, length] for n in names})
        static[length] = core.compile_model(model, "CPU", config).create_infer_request()
        print(f"static [1, {length}]: compiled in {time.perf_counter() - start:.2f} s, "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")

    def run_static(f):
        return static[f["input_ids"].shape[1]].infer({n: f[n] for n in names})

    print("padded lengths", lengths)
    print("dynamic ms", median_ms(run_dynamic, feats))
    print("static ms", median_ms(run_static, feats))
    print("dynamic ms", median_ms(run_dynamic, feats))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
