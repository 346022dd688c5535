"""The parity gate: how closely an exported variant follows torch-fp32, and whether it passes.

:func:`split_texts` picks the check texts (none used to calibrate), :func:`parity` compares a
variant's embeddings and labels with the reference's on them, and :func:`gate_decision` fails
a variant only when the check texts show, with 95% confidence, that it disagrees with
torch-fp32 on more labels than the tolerance (the lower Wilson bound of its disagreement rate
is above it), or when its embeddings drift (mean cosine below a floor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from .backends import REFERENCE
from .backends._pooling import row_cosines
from .errors import DataError, ParityError

if TYPE_CHECKING:
    from .model import Classifier

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
           ref_emb: np.ndarray | None = None) -> Parity:
    """Compare ``candidate_body`` (with ``reference``'s head) against ``reference`` on ``texts``;
    ``ref_emb``: the reference's embeddings of ``texts``, when already computed.

    Raises:
        ParityError: the candidate's embeddings have another shape.
    """
    if ref_emb is None:
        ref_emb = reference.embed(texts, batch_size=batch_size)
    emb = np.asarray(candidate_body.encode(list(texts), batch_size=batch_size), dtype=np.float32)
    if emb.shape != ref_emb.shape:
        raise ParityError(f"{candidate_body.variant} returns embeddings of shape {emb.shape}, "
                          f"expected {ref_emb.shape}")
    ref_p = reference.head.predict_proba(ref_emb)
    p = reference.head.predict_proba(emb)
    ref_labels, labels = reference.labels_from_proba(ref_p), reference.labels_from_proba(p)
    same = [a == b for a, b in zip(ref_labels, labels)]
    cos = row_cosines(ref_emb, emb)
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

