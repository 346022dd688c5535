"""Fitting the calibration map (a temperature, or one a label: no prediction changes) and the split-conformal
scores on the cross-validation's held-out scores, the honest data a calibration needs."""

from __future__ import annotations

import numpy as np

from fastclf.config import Calibration
from fastclf.head import _softmax

#: fewer held-out texts than this (or fewer than :data:`MIN_PER_CLASS` of a class) leave the scores as they are
MIN_HELD_OUT = 20
MIN_PER_CLASS = 2
#: nonconformity scores kept in fastclf.json at most (evenly spaced ranks of the sorted scores beyond that)
MAX_CONFORMAL = 500
_LOG_T = (-5.0, 5.0)  # temperatures searched: e^-5 to e^5


def _fit_temperature(loss) -> float:
    from scipy.optimize import minimize_scalar

    best = minimize_scalar(lambda log_t: loss(float(np.exp(log_t))), bounds=_LOG_T, method="bounded",
                           options={"xatol": 1e-4})
    return float(np.exp(best.x))


def single_label_loss(scores: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean log-loss of held-out ``scores`` (``-inf`` for a class the head could not predict) divided by
    ``temperature``, against class indices ``y``."""
    from scipy.special import logsumexp

    z = scores / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def _label_loss(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    s = z / temperature
    return float(np.mean(np.logaddexp(0, -s) * y + np.logaddexp(0, s) * (1 - y)))


def fit(scores: np.ndarray, y: np.ndarray, *, multi_label: bool, n_classes: int) -> Calibration | str:
    """The calibration of held-out ``scores`` against ``y`` (class indices, or multi-hot), or why there is none."""
    if multi_label:
        return _fit_multi_label(scores, y)
    ok = np.isfinite(scores[np.arange(len(y)), y])  # a class absent from a fold's training part scores -inf
    scores, y = scores[ok], y[ok]
    counts = np.bincount(y, minlength=n_classes)
    if len(y) < MIN_HELD_OUT or counts.min() < MIN_PER_CLASS:
        return (f"{len(y)} held-out texts, {int(counts.min())} of the rarest class: too few to calibrate honestly "
                f"(at least {MIN_HELD_OUT}, and {MIN_PER_CLASS} a class)")
    t = _fit_temperature(lambda t: single_label_loss(scores, y, t))
    nonconformity = np.sort(1.0 - _softmax(scores / t)[np.arange(len(y)), y])
    if len(nonconformity) > MAX_CONFORMAL:
        nonconformity = nonconformity[np.linspace(0, len(nonconformity) - 1, MAX_CONFORMAL).round().astype(int)]
    return Calibration(temperature=(round(t, 4),), n=len(y),
                       conformal=tuple(float(s) for s in np.clip(nonconformity, 0.0, 1.0).round(5)))


def _fit_multi_label(scores: np.ndarray, y: np.ndarray) -> Calibration | str:
    temps = []
    for j in range(y.shape[1]):
        ok = np.isfinite(scores[:, j])
        z, yy = scores[ok, j], y[ok, j]
        rarer = int(min(yy.sum(), len(yy) - yy.sum()))
        if len(z) < MIN_HELD_OUT or rarer < MIN_PER_CLASS:
            return (f"{len(z)} held-out texts, {rarer} on the rarer side of a "
                    f"label: too few to calibrate honestly (at least {MIN_HELD_OUT}, and {MIN_PER_CLASS} each side)")
        temps.append(round(_fit_temperature(lambda t, z=z, yy=yy: _label_loss(z, yy, t)), 4))
    return Calibration(temperature=tuple(temps), n=len(y))
