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


def _skewed_clusters(n_common: int, n_rare: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clusters projected on the unit sphere (like sentence embeddings)."""
    centre = np.random.default_rng(0).normal(size=(2, 32))
    rng = np.random.default_rng(seed)
    X = np.concatenate([centre[0] + rng.normal(size=(n_common, 32)),
                        centre[1] + rng.normal(size=(n_rare, 32))])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, np.array([0] * n_common + [1] * n_rare)


def test_balanced_class_weight_lets_a_rare_class_be_predicted():
    X, y = _skewed_clusters(40, 4, seed=3)
    X_test, y_test = _skewed_clusters(200, 200, seed=4)
    plain = LogisticHead.fit(X, y, C=1.0)
    weighted = LogisticHead.fit(X, y, C=1.0, class_weight="balanced")
    rare_recall = {name: float(np.mean(h.predict_proba(X_test)[y_test == 1].argmax(axis=1) == 1))
                   for name, h in (("plain", plain), ("weighted", weighted))}
    # unweighted, the regularised head leans on the 10:1 prior and misses most of the rare class
    assert rare_recall["plain"] < 0.5 < rare_recall["weighted"], rare_recall
    ref = LogisticRegression(C=1.0, max_iter=1000, random_state=42, class_weight="balanced").fit(X, y)
    np.testing.assert_allclose(weighted.predict_proba(X_test), ref.predict_proba(X_test), atol=1e-10)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_balanced_class_weight_changes_nothing_on_balanced_data(n_classes):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20 * n_classes, 16))
    y = np.repeat(np.arange(n_classes), 20)
    np.testing.assert_allclose(LogisticHead.fit(X, y, class_weight="balanced").predict_proba(X),
                               LogisticHead.fit(X, y).predict_proba(X), atol=1e-9)
