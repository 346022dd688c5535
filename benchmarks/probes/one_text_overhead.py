"""What ``predict`` adds to the runtime at one text (onnx-int8): tokenizing, ``session.run`` alone,
``predict``, then a cProfile of 300 ``predict`` calls.

    HF_HUB_OFFLINE=1 python benchmarks/probes/one_text_overhead.py
"""

from __future__ import annotations

import cProfile
import pstats

from _common import MODEL, median_ms, one_text_features, test_snippets

from fastclf import Classifier


def main() -> None:
    texts, _ = test_snippets(300)
    clf = Classifier.load(MODEL, variant="onnx-int8")
    body = clf.body
    feats = one_text_features(texts)
    print("tokenize ms", median_ms(lambda t: body.pipeline.tokenize([t]), texts))
    print("predict ms", median_ms(lambda t: clf.predict([t]), texts))
    inputs = [i.name for i in body.session.get_inputs()]
    print("session.run ms", median_ms(lambda f: body.session.run(None, {n: f[n] for n in inputs}), feats))
    profile = cProfile.Profile()
    profile.enable()
    for text in texts:
        clf.predict([text])
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
