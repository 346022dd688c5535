"""Batch-independent answers: every variant gives a text the same label, and probabilities within
1e-3, whether it is scored alone or inside shuffled batches of other texts (a served answer must
not depend on other clients' traffic). Every variant is exported into a copy of the tiny model, the
int8 ones also into a copy of the real all-MiniLM-L6-v2 body (a random tiny body hides their drift)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from samples import CALIBRATION, FOOD, SPORT, fit_tiny_head

from fastclf.backends import REFERENCE, VARIANTS, export_variant, get_spec, load_body
from fastclf.head import LogisticHead
from fastclf.model import BODY_DIR, Classifier

TEXTS = [*SPORT, *FOOD, *CALIBRATION[:20], "a", "goal", "word " * 200, "naïve café 日本語 😀"]


@pytest.fixture(scope="module")
def tiny_copy(tiny_model, tmp_path_factory):
    return shutil.copytree(tiny_model, tmp_path_factory.mktemp("batch") / "model") / BODY_DIR, \
        Classifier.load(tiny_model, REFERENCE).head


@pytest.fixture(scope="module")
def minilm_copy(minilm_dir, tmp_path_factory):
    """The real body with a 3-class, imbalanced head fit on its embeddings (sharp probabilities)."""
    body = shutil.copytree(minilm_dir, tmp_path_factory.mktemp("batch-minilm") / "body")
    texts, y = [*SPORT, *FOOD[:3], *CALIBRATION[:10]], [0] * 6 + [1] * 3 + [2] * 10
    return body, LogisticHead.fit(load_body(body).encode(texts), np.array(y), C=100.0)


def _same_alone_and_in_batches(body_dir, head, variant):
    if variant != REFERENCE:
        export_variant(body_dir, variant, CALIBRATION, fit_head=fit_tiny_head)
    own = get_spec(variant).head  # a new model's own head
    head = LogisticHead.load(body_dir / own) if own else head
    clf = Classifier(load_body(body_dir, variant), head, [str(i) for i in range(head.n_outputs)])
    alone = np.vstack([clf.predict_proba(t) for t in TEXTS])
    rng = np.random.default_rng(0)
    for batch_size in (1, 7, 32):
        for _ in range(3):
            order = rng.permutation(len(TEXTS))
            proba = np.empty_like(alone)
            proba[order] = clf.predict_proba([TEXTS[i] for i in order], batch_size=batch_size)
            np.testing.assert_allclose(proba, alone, atol=1e-3, err_msg=f"batch size {batch_size}")
            assert clf.labels_from_proba(proba) == clf.labels_from_proba(alone)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_text_gets_the_same_answer_alone_and_in_any_batch(variant, tiny_copy):
    _same_alone_and_in_batches(*tiny_copy, variant)


@pytest.mark.parametrize("variant", ["onnx-int8", "openvino-int8"])
def test_int8_of_a_real_body_answers_the_same_alone_and_in_any_batch(variant, minilm_copy):
    _same_alone_and_in_batches(*minilm_copy, variant)
