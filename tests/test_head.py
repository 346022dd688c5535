from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fastclf.errors import ModelFormatError
from fastclf.head import LogisticHead


@pytest.mark.parametrize("n_classes", [2, 4])
def test_matches_sklearn_and_round_trips(tmp_path, n_classes):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 16))
    y = rng.integers(0, n_classes, size=80)
    head = LogisticHead.fit(X, y)
    ref = LogisticRegression(max_iter=1000, random_state=42).fit(X, y)
    np.testing.assert_allclose(head.predict_proba(X), ref.predict_proba(X), atol=1e-10)
    head.save(tmp_path / "h.safetensors")
    back = LogisticHead.load(tmp_path / "h.safetensors")
    assert back.kind == ("binary" if n_classes == 2 else "multiclass")
    # the same weights; the last bit can differ between AVX2 and AVX-512 code paths
    np.testing.assert_allclose(back.predict_proba(X), head.predict_proba(X), rtol=0, atol=1e-12)


def test_multilabel_head_is_one_sigmoid_a_label():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 8))
    Y = (X[:, :3] > 0).astype(int)
    head = LogisticHead.fit(X, Y, multi_label=True)
    p = head.predict_proba(X)
    assert p.shape == (60, 3)
    assert ((p > 0.5) == Y.astype(bool)).mean() > 0.9


def test_corrupted_file(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFormatError, match="corrupted"):
        LogisticHead.load(path)
    with pytest.raises(ModelFormatError, match="missing"):
        LogisticHead.load(tmp_path / "nope.safetensors")
