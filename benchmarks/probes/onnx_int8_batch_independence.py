"""onnx-int8 batch independence (benchmarks/studies/batch-independence.md): ONNX Runtime dynamic int8
run in batches of 128 or one text a call, against static QDQ int8 (ranges fixed at export, calibrated
on examples/unlabeled.csv), each with 0, the down- or the down- and up-projection MatMuls kept in fp32.
Prints agreement with the fp32 graph on 300 test snippets, the largest probability change between a
text alone and in a shuffled batch, and a rough speed. Usage: python onnx_int8_batch_independence.py MODEL_DIR
"""
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from fastclf.backends._numpy_pipeline import TextPipeline
from fastclf.backends._pooling import row_cosines
from fastclf.backends.onnx_backend import _quantize_dynamic, _weight_shapes
from fastclf.head import LogisticHead

model = Path(sys.argv[1])
body = model / "body"
src = body / "onnx/model.onnx"
if not src.exists():
    from fastclf.backends import export_variant

    export_variant(body, "onnx-fp32", [])
work = Path(tempfile.mkdtemp())
pipe = TextPipeline(body)
texts = [r["text"] for r in csv.DictReader(open("examples/test.csv"))][:300]
cal = [r["text"] for r in csv.DictReader(open("examples/unlabeled.csv"))][:100]
head = LogisticHead.load(model / "head.safetensors")


def sess(p):
    o = ort.SessionOptions()
    o.log_severity_level = 3
    o.intra_op_num_threads = 2
    s = ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    return lambda f: s.run(None, {n: f[n] for n in names})[0]


class Reader(CalibrationDataReader):
    def __init__(self):
        self.it = iter([pipe.tokenize([t]) for t in cal])

    def get_next(self):
        f = next(self.it, None)
        return None if f is None else {k: f[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


shapes = _weight_shapes(src)
down = [n for n, (k, m) in shapes.items() if k > m]
up = [n for n, (k, m) in shapes.items() if k < m]
ref = pipe.encode(texts, sess(src), batch_size=32)
ref_lab = head.predict_proba(ref).argmax(1)


def report(name, run, batch):
    alone = pipe.encode(texts, run, batch_size=1)
    perm = np.random.default_rng(0).permutation(len(texts))
    batched = np.empty_like(alone)
    batched[perm] = pipe.encode([texts[i] for i in perm], run, batch_size=batch)
    pa, pb = head.predict_proba(alone), head.predict_proba(batched)
    t0 = time.perf_counter()
    pipe.encode(texts, run, batch_size=batch)
    speed = len(texts) / (time.perf_counter() - t0)
    print(f"{name}: cosine {row_cosines(alone, ref).mean():.4f} agreement {(pa.argmax(1) == ref_lab).mean():.4f} "
          f"alone-vs-batch max change {np.abs(pa - pb).max():.4f} labels changed {(pa.argmax(1) != pb.argmax(1)).sum()} "
          f"{speed:.0f} texts/s", flush=True)


report("fp32", sess(src), 128)
for name, exclude in (("none", []), ("down", down), ("down+up", down + up)):
    dynamic = work / f"dynamic_{name}.onnx"
    _quantize_dynamic(src, dynamic, exclude)
    report(f"dynamic, fp32 kept: {name}, batch 128", sess(dynamic), 128)
    report(f"dynamic, fp32 kept: {name}, one text a call", sess(dynamic), 1)
    static = work / f"static_{name}.onnx"
    quantize_static(src, static, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"MatMulConstBOnly": True, "ActivationSymmetric": False})
    report(f"static QDQ, fp32 kept: {name}, batch 128", sess(static), 128)
