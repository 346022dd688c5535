"""One text through ``Classifier.predict`` with an OpenVINO variant: static one-text shapes off
(``static_shapes = 0``) and on (fastclf's default), alternately, twice each. 64 one-text calls
first, then the background compilations are waited for (``settle``), 50 more calls, then the
median over the 400 first test snippets.

    HF_HUB_OFFLINE=1 python benchmarks/probes/openvino_static_one_text.py runs/rt openvino-int8 openvino-bf16

Output of 2026-12-03 (2-core Zen 4): results/amd_zen4_avx512_2c/openvino_static_one_text.txt
"""

from __future__ import annotations

import sys
import time

from _common import test_snippets

from fastclf import Classifier
from fastclf.backends import openvino_backend


def main(model: str, variants: list[str]) -> None:
    texts, _ = test_snippets(400)
    for variant in variants:
        for _ in range(2):
            for static in (0, openvino_backend.STATIC_SHAPES):
                clf = Classifier.load(model, variant=variant)
                clf.body.static_shapes = static
                for text in texts[:64]:
                    clf.predict([text])
                clf.body.settle()
                for text in texts[:50]:
                    clf.predict([text])
                times = []
                for text in texts:
                    start = time.perf_counter()
                    clf.predict([text])
                    times.append(time.perf_counter() - start)
                times.sort()
                lengths = clf.body.runtime_settings()["static_one_text_lengths"]
                print(f"{variant} static shapes {static}: p50 {times[len(times) // 2] * 1000:.2f} ms, "
                      f"p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms; compiled lengths {lengths}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
