"""The parity gate: how closely an exported variant follows torch-fp32, and whether it passes.

:func:`split_texts` picks the check texts (none used to calibrate), :func:`parity` compares a
variant's embeddings and labels with the reference's on them, and :func:`gate_decision` fails
a variant only when the check texts show, with 95% confidence, that it disagrees with
torch-fp32 on more labels than the tolerance (the lower Wilson bound of its disagreement rate
is above it), or when its embeddings drift (mean cosine below a floor). A body that is a new
model is judged by :func:`accuracy_decision` instead: its accuracy loss on labeled texts, within
the same tolerance.
"""

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

DEFAULT_MIN_AGREEMENT = 0.98
DEFAULT_MAX_DISAGREEMENT = 0.02  # the gate's tolerance: share of texts whose label may differ
DEFAULT_MIN_COSINE = 0.95  # mean embedding cosine with torch-fp32 below which a variant fails
CONFIDENCE = 0.95  # one-sided
MAX_CHECK_TEXTS = 1000
MIN_CHECK_TEXTS = 200  # calibration gives up texts to the check set until it has this many
GATE_RULE = ("fail when the lower one-sided {conf:.0%} Wilson bound of the label disagreement rate exceeds "
             "{tol:.1%}, or when the mean embedding cosine is below {cos}")


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


#: a check whose pass (no label changed) still allows this many times the tolerance is called coarse
COARSE_CHECK_RATIO = 2


def pass_bound(n: int, confidence: float = CONFIDENCE) -> float:
    """The most a variant that changed no label of ``n`` checked texts may change (the upper bound
    of its disagreement rate): what a pass on ``n`` texts shows at best."""
    return wilson_bounds(0, n, confidence)[1]


@dataclass
class GateDecision:
    """The parity gate's verdict on one variant."""

    passed: bool
    n: int
    flips: int
    disagreement: float  # flips / n
    lower: float  # one-sided confidence bounds of the disagreement rate
    upper: float
    confidence: float
    max_disagreement: float
    mean_cosine: float
    min_cosine: float
    reason: str  # why it failed; "" when it passed
    rule: str
    accuracy: tuple[float, float] | None = None  # (torch-fp32, candidate) on labeled texts: the accuracy gate
    needed: int | None = None  # labeled texts a pass takes at the observed rates (the accuracy gate)


def gate_decision(n: int, flips: int, mean_cosine: float, *, max_disagreement: float = DEFAULT_MAX_DISAGREEMENT,
                  min_cosine: float = DEFAULT_MIN_COSINE, confidence: float = CONFIDENCE) -> GateDecision:
    """Judge a variant from its label flips against torch-fp32 on ``n`` check texts.

    A variant fails only when the data show, with ``confidence``, that it disagrees more often
    than ``max_disagreement`` (the lower bound of the rate is above it), or when its embeddings
    drift (mean cosine below ``min_cosine``). One flip in 32 texts is weak evidence and passes;
    30 flips in 1,000 texts (a 3-point drop) fails.
    """
    lower, upper = wilson_bounds(flips, n, confidence)
    rule = GATE_RULE.format(conf=confidence, tol=max_disagreement, cos=min_cosine)
    reason = ""
    if n and lower > max_disagreement + 1e-12:
        reason = (f"{flips} of {n} labels differ from {REFERENCE}: with {confidence:.0%} confidence the "
                  f"disagreement is at least {lower:.1%}, above the {max_disagreement:.1%} tolerance")
    elif not math.isnan(mean_cosine) and mean_cosine < min_cosine:
        reason = f"mean embedding cosine {mean_cosine:.4f} is below {min_cosine}"
    elif n == 0:
        reason = "no check texts"
    return GateDecision(not reason, n, flips, flips / n if n else 0.0, lower, upper, confidence, max_disagreement,
                        mean_cosine, min_cosine, reason, rule)


ACCURACY_RULE = ("a new model (its own embeddings) fails unless the upper one-sided {conf:.0%} bound of its paired "
                 "accuracy loss against " + REFERENCE + " on labeled check texts is within {tol:.1%}")


def accuracy_decision(reference_right: Sequence[bool], candidate_right: Sequence[bool], *,
                      max_loss: float = DEFAULT_MAX_DISAGREEMENT, confidence: float = CONFIDENCE) -> GateDecision:
    """Judge a body that is a new model (a distilled or static body) by accuracy, not by changed
    labels: on the same labeled texts, the loss is (b - c) / n, b the texts only torch-fp32 gets
    right, c those only the candidate gets right; it passes when the upper one-sided bound of the
    loss (normal approximation of the paired difference, with a 1/n continuity correction) is
    within ``max_loss``, the one tolerance of the gate. ``needed`` is how many labeled texts, at
    the same rates, a pass takes (0 when the observed loss is not below the tolerance: none does)."""
    ref, cand = np.asarray(reference_right, bool), np.asarray(candidate_right, bool)
    n = len(ref)
    b, c = int(np.sum(ref & ~cand)), int(np.sum(~ref & cand))
    loss = (b - c) / n if n else 0.0
    spread = (b + c) / n - loss * loss if n else 0.0  # variance of one text's paired difference
    z = NormalDist().inv_cdf(confidence)
    margin = z * math.sqrt(max(spread, 0.0) / n) + 1 / n if n else 1.0
    lower, upper = loss - margin, loss + margin
    gap = max_loss - loss
    needed = 0 if gap <= 0 else math.ceil((z * math.sqrt(max(spread, 1e-12)) + 1) ** 2 / gap ** 2)
    reason = ""
    if n == 0:
        reason = "no labeled check texts: a new model is judged by its accuracy (give --check FILE with labels)"
    elif upper > max_loss + 1e-12:
        reason = (f"accuracy {np.mean(cand):.1%} against {np.mean(ref):.1%} for {REFERENCE} on {n} labeled texts: "
                  f"with {confidence:.0%} confidence the loss may reach {upper:.1%}, above the {max_loss:.1%} "
                  "tolerance; " + (f"at these rates a pass takes {needed} labeled texts" if needed
                                   else "no number of texts passes it (the loss itself is at or above the tolerance)"))
    return GateDecision(not reason, n, b, loss, lower, upper, confidence, max_loss, math.nan, math.nan, reason,
                        ACCURACY_RULE.format(conf=confidence, tol=max_loss), accuracy=(float(np.mean(ref)) if n else
                        math.nan, float(np.mean(cand)) if n else math.nan), needed=needed)


@dataclass
class Parity:
    """How closely a variant follows torch-fp32 on held texts."""

    n: int
    agreement: float  # share of texts with the same predicted label (label set, if multi-label)
    max_proba_diff: float  # largest absolute difference of any class probability
    mean_cosine: float  # embeddings
    min_cosine: float
    flips: int = 0  # texts whose label differs



def parity(reference: Classifier, candidate_body, texts: Sequence[str], *, batch_size: int = 32,
           ref_emb: np.ndarray | None = None, head: LogisticHead | None = None) -> Parity:
    """Compare ``candidate_body`` (with ``head``, by default ``reference``'s) against ``reference``
    on ``texts``; ``ref_emb``: the reference's embeddings of ``texts``, when already computed. A
    body with its own head makes other embeddings: their cosines are NaN.

    Raises:
        ParityError: the candidate's embeddings have another shape than its head expects.
    """
    if ref_emb is None:
        ref_emb = reference.embed(texts, batch_size=batch_size)
    emb = np.asarray(candidate_body.encode(list(texts), batch_size=batch_size), dtype=np.float32)
    head = reference.head if head is None else head
    if emb.shape != (len(ref_emb), head.dim):
        raise ParityError(f"{candidate_body.variant} returns embeddings of shape {emb.shape}, "
                          f"expected {(len(ref_emb), head.dim)}")
    ref_p = reference.head.predict_proba(ref_emb)
    p = head.predict_proba(emb)
    ref_labels, labels = reference.labels_from_proba(ref_p), reference.labels_from_proba(p)
    same = [a == b for a, b in zip(ref_labels, labels)]
    cos = row_cosines(ref_emb, emb) if emb.shape == ref_emb.shape else np.full(len(emb), np.nan)
    return Parity(
        n=len(texts),
        agreement=float(np.mean(same)),
        max_proba_diff=float(np.max(np.abs(ref_p - p))),
        mean_cosine=float(np.mean(cos)),
        min_cosine=float(np.min(cos)),
        flips=int(len(same) - sum(same)),
    )



def split_texts(texts: Sequence[str], num_calibration: int, *, max_check: int = MAX_CHECK_TEXTS,
                seed: int = 0, extra_check: Sequence[str] = (), calibrate: bool = True,
                min_check: int = MIN_CHECK_TEXTS) -> tuple[list[str], list[str]]:
    """Shuffle ``texts`` and split them into (calibration, check) sets that do not overlap.

    The check set is every text not used to calibrate: the rest of ``texts`` plus
    ``extra_check`` (a --check file, the training texts), at most ``max_check``. The
    calibration set takes up to ``num_calibration`` of ``texts`` (none when no variant is
    ``calibrate``d), leaving ``texts`` enough rows that the check set reaches ``min_check``
    texts where it can (and at least half of ``texts`` when there is nothing else).

    Raises:
        DataError: fewer than 4 distinct texts in all.
    """
    unique = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))
    extra = [t for t in dict.fromkeys(t for t in extra_check if isinstance(t, str) and t.strip())
             if t not in set(unique)]
    if len(unique) + len(extra) < 4:
        raise DataError(f"need at least 4 distinct texts to calibrate and check variants, "
                        f"got {len(unique) + len(extra)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    if not calibrate:
        n_cal = 0
    else:
        reserve = min(len(shuffled) // 2, max(0, min_check - len(extra)))
        n_cal = max(0, min(num_calibration, len(shuffled) - reserve))
    calibration = shuffled[:n_cal]
    check = (shuffled[n_cal:] + extra)[:max_check]
    return calibration, check

