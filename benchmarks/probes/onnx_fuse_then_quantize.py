"""ONNX int8 at one text: onnxruntime's transformer fusions before dynamic quantization, against the
onnx-int8 variant fastclf exports (unfused); node counts, one-text ``session.run`` under thread and
spinning settings, and labels and cosines against torch-fp32 on the test snippets.

    HF_HUB_OFFLINE=1 python benchmarks/probes/onnx_fuse_then_quantize.py [WORK_DIR]
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import BODY, MODEL, median_ms, one_text_features, test_snippets


def fuse_and_quantize(work: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    fused = optimizer.optimize_model(str(BODY / "onnx/model.onnx"), model_type="bert", num_heads=12, hidden_size=384,
                                     optimization_options=FusionOptions("bert"), opt_level=0, use_gpu=False)
    fused.save_model_to_file(str(work / "fused.onnx"))
    quantize_dynamic(work / "fused.onnx", work / "fused_q.onnx", per_channel=True, reduce_range=False,
                     weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return work / "fused_q.onnx"


def session(path: Path, threads: int, spinning: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(work: Path) -> None:
    import onnx

    from fastclf import Classifier

    candidates = {"onnx-int8 (fastclf)": next((BODY / "onnx").glob("model_qint8*.onnx")),
                  "fused, then int8": fuse_and_quantize(work)}
    texts, gold = test_snippets()
    feats = one_text_features(texts[:300])
    reference = Classifier.load(MODEL, variant="torch-fp32")
    ref_emb, ref_labels = reference.body.encode(texts), reference.predict(texts)
    clf = Classifier.load(MODEL, variant="onnx-int8")
    for name, path in candidates.items():
        ops = collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
        print(f"{name}: {sum(ops.values())} nodes, {ops.most_common(8)}")
        for threads in (1, 2):
            for spinning in (True, False):
                s = session(path, threads, spinning)
                inputs = [i.name for i in s.get_inputs()]
                ms = median_ms(lambda f, s=s, inputs=inputs: s.run(None, {n: f[n] for n in inputs}), feats)
                print(f"  session.run one text, {threads} threads, spinning {spinning}: {ms} ms")
        clf.body.session = session(path, 2, True)
        emb, labels = clf.body.encode(texts), clf.predict(texts)
        cos = (emb * ref_emb).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref_emb, axis=1)
        print(f"  against torch-fp32 on {len(texts)} texts: {sum(a != b for a, b in zip(labels, ref_labels))} labels "
              f"differ, cosine mean {cos.mean():.4f} min {cos.min():.4f}, accuracy {np.mean(np.array(labels) == gold):.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
