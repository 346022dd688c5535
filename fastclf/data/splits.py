"""Checking that labeled data can train a classifier, and drawing shots and hold-out sets from it."""

from __future__ import annotations

from collections import Counter

import numpy as np

from fastclf.data.labeled import LabeledData
from fastclf.errors import DataError


def validate_for_training(data: LabeledData) -> None:
    """DataError unless the data can train a classifier: two classes (labels) or more, two examples each."""
    counts = data.counts()
    if data.multi_label:
        if len(counts) < 2:
            raise DataError(f"{data.source}: multi-label data needs at least two labels, found {list(counts)}")
        rare = [c for c, k in counts.items() if k < 2]
        if rare:
            raise DataError(f"{data.source}: label(s) {', '.join(map(repr, rare))} appear on fewer than 2 texts; "
                            "every label needs at least 2 examples")
        always = [c for c, k in counts.items() if k == len(data)]
        if always:
            raise DataError(f"{data.source}: label(s) {', '.join(map(repr, always))} are on every text; "
                            "a label needs negative examples too")
        return
    if len(counts) < 2:
        raise DataError(f"{data.source}: only one class ({next(iter(counts), '')!r}); a classifier needs at least two")
    single = [c for c, k in counts.items() if k < 2]
    if single:
        raise DataError(f"{data.source}: class(es) {', '.join(map(repr, single))} have a single example; "
                        "every class needs at least 2")


def sample_shots(data: LabeledData, shots: int, seed: int = 42) -> tuple[LabeledData, LabeledData]:
    """(sampled, rest): ``shots`` examples of each class drawn (seeded), all of a smaller class; multi-label:
    texts drawn until every label has ``shots``. DataError for ``shots`` below 2."""
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
    return data.subset(sorted(chosen)), data.subset(i for i in range(len(data)) if i not in chosen_set)


def split_holdout(data: LabeledData, fraction: float, seed: int = 42) -> tuple[LabeledData, LabeledData]:
    """(train, held_out): a stratified ``fraction`` of the rows held out (a group of 4 rows or more keeps 2).
    DataError for a fraction not between 0 and 1, or nothing to hold out."""
    if not 0 < fraction < 1:
        raise DataError(f"--holdout must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    keys = [("|".join(labels) if data.multi_label else labels) for labels in data.labels]
    held: list[int] = []
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        rng.shuffle(idx)
        n_held = min(max(int(round(len(idx) * fraction)), 1), len(idx) - 2) if len(idx) >= 4 else 0
        held.extend(idx[:n_held])
    if not held:
        raise DataError(f"{data.source}: too few rows to hold out {fraction:.0%} for evaluation; use --eval FILE")
    held_set = set(held)
    return data.subset(i for i in range(len(data)) if i not in held_set), data.subset(sorted(held))
