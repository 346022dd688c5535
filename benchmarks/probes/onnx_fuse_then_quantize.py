"""Probe (2026-12-02, AMX Xeon): see benchmarks/README.md, "Probes on a second AMX Xeon instance". Run from the repo root after `fastclf train examples/train.csv -o runs/rt` and `fastclf accelerate runs/rt --variant onnx-int8 --variant openvino-int8 --keep`."""
# ruff: noqa: E701, E702, E402
import collections
import time

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers import optimizer
from onnxruntime.transformers.fusion_options import FusionOptions

src='runs/rt/body/onnx/model.onnx'
t=time.time()
opts=FusionOptions('bert')
m=optimizer.optimize_model(src, model_type='bert', num_heads=12, hidden_size=384, optimization_options=opts, opt_level=0, use_gpu=False)
m.save_model_to_file('/tmp/fused.onnx')
c=collections.Counter(n.op_type for n in m.model.graph.node); print('fused', len(m.model.graph.node), c.most_common(12), time.time()-t)
quantize_dynamic('/tmp/fused.onnx','/tmp/fused_q.onnx', per_channel=True, reduce_range=False, weight_type=QuantType.QInt8, extra_options={'DefaultTensorType': onnx.TensorProto.FLOAT})
q=onnx.load('/tmp/fused_q.onnx'); c=collections.Counter(n.op_type for n in q.graph.node); print('fused q', len(q.graph.node), c.most_common(12))
