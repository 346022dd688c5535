"""Checking that labeled data can train a classifier, and drawing shots and hold-out sets from it."""

from __future__ import annotations

from collections import Counter

import numpy as np

from fastclf.data.labeled import LabeledData
from fastclf.errors import DataError


def validate_for_training(data: LabeledData) -> None:
    """Check that a data set can train a classifier.

    Raises:
        DataError: fewer than two classes, or a class with a single example.
    """
    counts = data.counts()
    if data.multi_label:
        if len(counts) < 2:
            raise DataError(f"{data.source}: multi-label data needs at least two labels, found {list(counts)}")
        n = len(data)
        rare = [c for c, k in counts.items() if k < 2]
        if rare:
            raise DataError(
                f"{data.source}: label(s) {', '.join(map(repr, rare))} appear on fewer than 2 texts; "
                "every label needs at least 2 examples"
            )
        always = [c for c, k in counts.items() if k == n]
        if always:
            raise DataError(
                f"{data.source}: label(s) {', '.join(map(repr, always))} are on every text; "
                "a label needs negative examples too"
            )
        return
    if len(counts) < 2:
        only = next(iter(counts), "")
        raise DataError(f"{data.source}: only one class ({only!r}); a classifier needs at least two")
    single = [c for c, k in counts.items() if k < 2]
    if single:
        raise DataError(
            f"{data.source}: class(es) {', '.join(map(repr, single))} have a single example; "
            "every class needs at least 2"
        )


def sample_shots(data: LabeledData, shots: int, seed: int = 42) -> tuple[LabeledData, LabeledData]:
    """Draw ``shots`` examples of each class (seeded); return (sampled, rest).

    A class with fewer examples than ``shots`` contributes all it has. For multi-label
    data, texts are drawn until every label has ``shots`` texts or no more are left.

    Raises:
        DataError: ``shots`` is smaller than 2.
    """
    if shots < 2:
        raise DataError(f"--shots must be at least 2, got {shots}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    chosen: list[int] = []
    have: Counter = Counter()
    for i in order:
        labels = data.labels[i] if data.multi_label else [data.labels[i]]
        if any(have[c] < shots for c in labels):
            chosen.append(int(i))
            have.update(labels)
    chosen_set = set(chosen)
    rest = [i for i in range(len(data)) if i not in chosen_set]
    return data.subset(sorted(chosen)), data.subset(rest)


def split_holdout(data: LabeledData, fraction: float, seed: int = 42) -> tuple[LabeledData, LabeledData]:
    """Hold out a stratified ``fraction`` of the rows: return (train, held_out).

    Raises:
        DataError: the fraction is not between 0 and 1, or leaves a class without rows.
    """
    if not 0 < fraction < 1:
        raise DataError(f"--holdout must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    keys = [("|".join(labels) if data.multi_label else labels) for labels in data.labels]
    held: list[int] = []
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        if len(idx) >= 4:
            n_held = min(max(n_held, 1), len(idx) - 2)
        else:
            n_held = 0
        held.extend(idx[:n_held])
    held_set = set(held)
    train = [i for i in range(len(data)) if i not in held_set]
    if not held:
        raise DataError(f"{data.source}: too few rows to hold out {fraction:.0%} for evaluation; use --eval FILE")
    return data.subset(train), data.subset(sorted(held))
