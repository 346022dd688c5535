"""The logistic-regression head: fit with scikit-learn, run with numpy, stored as safetensors arrays
(nothing is unpickled on load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastclf.errors import ModelFormatError, first_line

KINDS = ("binary", "multiclass", "multilabel")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class LogisticHead:
    """Linear head ``scores = X @ coef.T + intercept`` with the link of ``kind``: binary (one row, ``[1 - p, p]``
    as scikit-learn), multiclass (softmax) or multilabel (a sigmoid a label)."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, kind: str):
        if kind not in KINDS:
            raise ModelFormatError(f"unknown head kind {kind!r}; expected one of {', '.join(KINDS)}")
        coef = np.asarray(coef, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64)
        if coef.ndim != 2 or intercept.shape != (coef.shape[0],) or coef.shape[0] < 1 or coef.shape[1] < 1:
            raise ModelFormatError(f"head weights have inconsistent shapes: coef {coef.shape}, "
                                   f"intercept {intercept.shape}")
        if kind == "binary" and coef.shape[0] != 1:
            raise ModelFormatError(f"a binary head has one row of weights, this one has {coef.shape[0]}")
        if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
            raise ModelFormatError("head weights hold NaN or infinite values")
        self.coef = coef
        self.intercept = intercept
        self.kind = kind

    @property
    def dim(self) -> int:
        return int(self.coef.shape[1])

    @property
    def n_outputs(self) -> int:
        return 2 if self.kind == "binary" else int(self.coef.shape[0])

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, *, multi_label: bool = False, C: float = 1.0,
            seed: int = 42, class_weight: str | None = None) -> LogisticHead:
        """Fit on embeddings ``X`` and class indices ``y`` (a multi-hot matrix when ``multi_label``);
        ``class_weight="balanced"`` applies to single-label heads only."""
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        if multi_label:
            fits = [LogisticRegression(C=C, max_iter=1000, random_state=seed).fit(X, column) for column in y.T]
            return cls(np.stack([f.coef_[0] for f in fits]), np.array([f.intercept_[0] for f in fits]), "multilabel")
        lr = LogisticRegression(C=C, max_iter=1000, random_state=seed, class_weight=class_weight).fit(X, y)
        if len(lr.classes_) != int(np.max(y)) + 1:
            raise ValueError("every class must appear in the training labels")
        return cls(lr.coef_, lr.intercept_, "binary" if lr.coef_.shape[0] == 1 else "multiclass")

    def predict_proba(self, X: np.ndarray, temperature: float | np.ndarray = 1.0) -> np.ndarray:
        """Probabilities of embeddings ``X``, scores divided by ``temperature`` (one, or one a label) first."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (n, {self.dim}), got {X.shape}")
        scores = (X @ self.coef.T + self.intercept) / temperature
        if self.kind == "binary":
            p = _sigmoid(scores[:, 0])
            return np.stack([1.0 - p, p], axis=1)
        if self.kind == "multiclass":
            return _softmax(scores)
        return _sigmoid(scores)

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"coef": np.ascontiguousarray(self.coef), "intercept": np.ascontiguousarray(self.intercept)},
                  str(path), metadata={"kind": self.kind})

    @classmethod
    def load(cls, path: Path) -> LogisticHead:
        """Load a head written by :meth:`save` (ModelFormatError if missing, corrupted or incomplete)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ModelFormatError(f"model directory is incomplete: {path.name} is missing")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                if not {"coef", "intercept"} <= set(f.keys()):
                    raise ModelFormatError(f"{path} is corrupted: it lacks the 'coef' and 'intercept' tensors")
                coef = f.get_tensor("coef")
                intercept = f.get_tensor("intercept")
        except (ModelFormatError, MemoryError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # safetensors raises several types (a Rust panic too) for a damaged file
            raise ModelFormatError(f"{path} is corrupted: {first_line(exc)}") from None
        if not (np.issubdtype(coef.dtype, np.floating) and np.issubdtype(intercept.dtype, np.floating)):
            raise ModelFormatError(f"{path} is corrupted: head weights must be floating point")
        return cls(coef, intercept, meta.get("kind", ""))  # which refuses an unknown kind
