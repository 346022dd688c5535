"""The parity gate, one tolerance in accuracy points at 95% confidence: for an export of the model the
labels it changes (each costs at most one text's accuracy), for a new model its paired accuracy loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from fastclf.backends import REFERENCE
from fastclf.backends._pooling import row_cosines
from fastclf.errors import DataError, ParityError

if TYPE_CHECKING:
    from fastclf.head import LogisticHead
    from fastclf.model import Classifier

DEFAULT_MAX_ACCURACY_LOSS = 1.0  # points: the one tolerance of accelerate, --auto and the benchmark
DEFAULT_MIN_COSINE = 0.95  # mean embedding cosine with torch-fp32 below which an export fails
CONFIDENCE = 0.95  # one-sided
MAX_CHECK_TEXTS = 1000
MIN_CHECK_TEXTS = 200  # calibration gives up texts to the check set until it has this many
GATE_RULE = ("an export of the model fails unless the upper one-sided {conf:.0%} Wilson bound of the share of labels "
             "it changes against " + REFERENCE + " is within {tol:.1%} and its mean embedding cosine is at least {cos}")
ACCURACY_RULE = ("a new model (its own embeddings) fails unless the upper one-sided {conf:.0%} bound of its paired "
                 "accuracy loss against " + REFERENCE + " on labeled check texts is within {tol:.1%}")


def within(points: float) -> str:
    """The tolerance as every command says it: "within 1 accuracy point"."""
    return f"within {points:g} accuracy point{'' if points == 1 else 's'}"


def wilson_bounds(flips: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided ``confidence`` Wilson score bounds (lower, upper) of a rate seen as ``flips`` in ``n``."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(confidence)
    p = flips / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - margin), min(1.0, center + margin)


def pass_bound(n: int) -> float:
    """The upper bound of a variant that changed none of ``n`` labels: the least tolerance ``n`` texts can show."""
    return wilson_bounds(0, n)[1]


@dataclass
class GateDecision:
    """The gate's verdict on one variant: ``disagreement`` is the share of labels changed (an
    export) or the accuracy loss (a new model), ``lower``-``upper`` its confidence bounds."""

    passed: bool
    n: int
    flips: int
    disagreement: float
    lower: float
    upper: float
    confidence: float
    tolerance: float  # a share: --max-accuracy-loss / 100
    mean_cosine: float
    min_cosine: float
    reason: str  # why it failed; "" when it passed
    rule: str
    accuracy: tuple[float, float] | None = None  # (torch-fp32, candidate) on labeled texts: the accuracy gate
    needed: int | None = None  # labeled texts a pass takes at the observed rates (the accuracy gate)


def gate_decision(n: int, flips: int, mean_cosine: float, *, tolerance: float = DEFAULT_MAX_ACCURACY_LOSS / 100,
                  min_cosine: float = DEFAULT_MIN_COSINE, confidence: float = CONFIDENCE) -> GateDecision:
    """Judge an export of the model from the labels it changes (``flips`` of ``n``) and its mean cosine."""
    lower, upper = wilson_bounds(flips, n, confidence)
    reason = ""
    if n == 0:
        reason = "no check texts"
    elif upper > tolerance + 1e-12:
        reason = (f"{flips} of {n} labels differ from {REFERENCE}: with {confidence:.0%} confidence up to {upper:.1%} "
                  f"may, above the {tolerance:.1%} allowed")
    elif not math.isnan(mean_cosine) and mean_cosine < min_cosine:
        reason = f"mean embedding cosine {mean_cosine:.4f} is below {min_cosine}"
    rule = GATE_RULE.format(conf=confidence, tol=tolerance, cos=min_cosine)
    return GateDecision(not reason, n, flips, flips / n if n else 0.0, lower, upper, confidence, tolerance,
                        mean_cosine, min_cosine, reason, rule)


def accuracy_decision(reference_right: Sequence[bool], candidate_right: Sequence[bool], *,
                      tolerance: float = DEFAULT_MAX_ACCURACY_LOSS / 100,
                      confidence: float = CONFIDENCE) -> GateDecision:
    """Judge a new model by its paired accuracy loss (b - c) / n (b: only torch-fp32 right, c: only it):
    the upper bound (normal approximation, 1/n continuity correction) must be within ``tolerance``."""
    ref, cand = np.asarray(reference_right, bool), np.asarray(candidate_right, bool)
    n = len(ref)
    b, c = int(np.sum(ref & ~cand)), int(np.sum(~ref & cand))
    loss = (b - c) / n if n else 0.0
    spread = (b + c) / n - loss * loss if n else 0.0  # variance of one text's paired difference
    z = NormalDist().inv_cdf(confidence)
    margin = z * math.sqrt(max(spread, 0.0) / n) + 1 / n if n else 1.0
    gap = tolerance - loss
    needed = 0 if gap <= 0 else math.ceil((z * math.sqrt(max(spread, 1e-12)) + 1) ** 2 / gap ** 2)
    reason = ""
    if n == 0:
        reason = "no labeled check texts: a new model is judged by its accuracy (give --check FILE with labels)"
    elif loss + margin > tolerance + 1e-12:
        reason = (f"accuracy {np.mean(cand):.1%} against {np.mean(ref):.1%} for {REFERENCE} on {n} labeled texts: "
                  f"with {confidence:.0%} confidence the loss may reach {loss + margin:.1%}, above the {tolerance:.1%} "
                  "allowed; " + (f"at these rates a pass takes {needed} labeled texts" if needed
                                 else "no number of texts passes it (the loss itself is at or above the tolerance)"))
    accuracy = (float(np.mean(ref)), float(np.mean(cand))) if n else (math.nan, math.nan)
    return GateDecision(not reason, n, b, loss, loss - margin, loss + margin, confidence, tolerance, math.nan,
                        math.nan, reason, ACCURACY_RULE.format(conf=confidence, tol=tolerance), accuracy, needed)


@dataclass
class Parity:
    """How closely a variant follows torch-fp32 on the check texts."""

    n: int
    agreement: float  # share of texts with the same predicted label (label set, if multi-label)
    max_proba_diff: float  # largest absolute difference of any class probability
    mean_cosine: float  # embeddings; NaN for a new model (other embeddings)
    min_cosine: float
    flips: int = 0  # texts whose label differs


def parity(reference: Classifier, candidate_body, texts: Sequence[str], *, ref_emb: np.ndarray,
           head: LogisticHead) -> Parity:
    """Compare ``candidate_body`` with ``head`` against ``reference`` (its embeddings ``ref_emb``) on ``texts``;
    ParityError when the candidate's embeddings have another shape than its head expects."""
    emb = np.asarray(candidate_body.encode(list(texts), batch_size=32), dtype=np.float32)
    if emb.shape != (len(ref_emb), head.dim):
        raise ParityError(f"{candidate_body.variant} returns embeddings of shape {emb.shape}, "
                          f"expected {(len(ref_emb), head.dim)}")
    ref_p, p = reference.head.predict_proba(ref_emb), head.predict_proba(emb)
    same = [a == b for a, b in zip(reference.labels_from_proba(ref_p), reference.labels_from_proba(p))]
    cos = row_cosines(ref_emb, emb) if emb.shape == ref_emb.shape else np.full(len(emb), np.nan)
    return Parity(len(texts), float(np.mean(same)), float(np.max(np.abs(ref_p - p))), float(np.mean(cos)),
                  float(np.min(cos)), len(same) - sum(same))


def split_texts(texts: Sequence[str], num_calibration: int, *, extra_check: Sequence[str] = (),
                calibrate: bool = True) -> tuple[list[str], list[str]]:
    """Shuffle ``texts`` into disjoint (calibration, check) sets, the check set with ``extra_check`` and at least
    MIN_CHECK_TEXTS where it can; DataError for fewer than 4 distinct texts in all."""
    unique = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))
    seen = set(unique)
    extra = [t for t in dict.fromkeys(t for t in extra_check if isinstance(t, str) and t.strip()) if t not in seen]
    if len(unique) + len(extra) < 4:
        raise DataError(f"need at least 4 distinct texts to calibrate and check variants, "
                        f"got {len(unique) + len(extra)}")
    order = np.random.default_rng(0).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    reserve = min(len(shuffled) // 2, max(0, MIN_CHECK_TEXTS - len(extra)))
    n_cal = max(0, min(num_calibration, len(shuffled) - reserve)) if calibrate else 0
    return shuffled[:n_cal], (shuffled[n_cal:] + extra)[:MAX_CHECK_TEXTS]
