"""Choosing the recipe by cross-validation: on each fold, the head (every C of :data:`C_GRID`) on the untuned
body and on a fold-tuned copy after each number of epochs (benchmarks/studies/recipe-rules.md)."""

from __future__ import annotations

import copy
import functools
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastclf.data import LabeledData
from fastclf.machine import usable_cpus
from fastclf.training.forked import can_fork, run_forked

#: head regularisation strengths tried by cross-validation (sklearn's C: higher = weaker)
C_GRID = (0.1, 1.0, 10.0, 100.0)
#: numbers of fine-tuning epochs scored by cross-validation (0: the untuned body)
EPOCH_CHOICES = (0, 2, 4)
#: from this many classes a head fit takes long enough that training says when it starts
MANY_CLASSES = 100
#: optimizer steps an epoch of a chosen number runs at least (benchmarks/studies/steps-study.md)
MIN_STEPS_PER_EPOCH = 8
#: standard errors by which the folds must put the untuned body ahead of fine-tuning to choose it
#: (benchmarks/studies/untuned-or-finetuned.md)
UNTUNED_MARGIN_Z = 1.5
#: standard errors of difference between untuned and fine-tuned on the first fold that skip the others
DECISIVE_Z = 2.0


def head_note(n_classes: int, what: str) -> str:
    """A progress line for a long head fit (``MANY_CLASSES`` classes or more), else ""."""
    return f"{what} ({n_classes} classes): this takes a while" if n_classes >= MANY_CLASSES else ""


@dataclass
class Selection:
    """What the recipe chose and the cross-validated accuracy behind it."""

    epochs: int  # 0: the untuned body
    head_c: float
    reason: str
    folds: int = 0
    scores: dict[str, float] = field(default_factory=dict)  # "<epochs>" -> best held-out accuracy over C
    steps: int = 0  # optimizer steps of the fine-tuning on all the examples
    final_body: str = "all examples"  # or "average of N folds": the mean of the fold bodies' weights
    note: str = ""  # why a choice was left out (said after the description)
    # the chosen (epochs, C)'s held-out scores and labels: what calibration is fitted on; not recorded
    held_out: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def finetuned(self) -> bool:
        return self.epochs > 0

    @property
    def averaged(self) -> bool:
        """Whether the body is already the average of the fold bodies (no final fine-tuning)."""
        return self.finetuned and self.final_body != "all examples"


def can_contrast(labels: Sequence[Any]) -> bool:
    """Whether the contrastive loss can learn from class indices ``labels``: it needs two classes of
    two examples (label-grouped batches leave out single examples, and one class has nothing to contrast)."""
    return int((np.bincount(np.asarray(labels, dtype=int)) >= 2).sum()) >= 2


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps of one epoch over ``n`` examples."""
    return max(1, math.ceil(n / batch_size))


def planned_epochs(epochs: int, per_epoch: int) -> int:
    """Epochs to run for a choice of ``epochs``: at least :data:`MIN_STEPS_PER_EPOCH` steps an epoch of the choice."""
    if epochs <= 0:
        return 0
    return max(epochs, math.ceil(epochs * MIN_STEPS_PER_EPOCH / per_epoch))


def duplicate_groups(texts: Sequence[str]) -> np.ndarray | None:
    """A group id a text (equal after stripping whitespace: same id), or None when every text is unique."""
    ids: dict[str, int] = {}
    groups = np.array([ids.setdefault(t.strip(), len(ids)) for t in texts])
    return None if len(ids) == len(texts) else groups


def folds(y: np.ndarray, k: int, seed: int, multi_label: bool,
          groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` shuffled folds (stratified for single-label data); the copies of a text (``groups``) stay
    in one fold, else the held-out part would be scored on texts the fold was trained on."""
    from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

    options = {"n_splits": k, "shuffle": True, "random_state": seed}
    if not multi_label:
        splitter = StratifiedKFold(**options) if groups is None else StratifiedGroupKFold(**options)
        return list(splitter.split(np.zeros(len(y)), y, groups))
    if groups is None:
        return list(KFold(**options).split(y))
    uniq = np.unique(groups)
    return [(np.flatnonzero(np.isin(groups, uniq[a])), np.flatnonzero(np.isin(groups, uniq[b])))
            for a, b in KFold(**options).split(uniq)]


def fit_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, c: float, multi_label: bool,
               seed: int, class_weight: str | None = None, n_classes: int = 2) -> np.ndarray:
    """Held-out scores of a head fit with ``c``: single-label, a column a class (argmax predicts; binary ``z`` as
    ``[0, z]``; a class absent in training: ``-inf``); multi-label, a score a label (``+-inf``: constant)."""
    from sklearn.linear_model import LogisticRegression

    def fit(yy: np.ndarray, weight: str | None) -> tuple[np.ndarray, np.ndarray]:
        lr = LogisticRegression(C=c, max_iter=1000, random_state=seed, class_weight=weight).fit(train_x, yy)
        return lr.classes_, lr.decision_function(test_x)

    if multi_label:
        return np.stack([fit(yy, None)[1] if len(np.unique(yy)) > 1
                         else np.full(len(test_x), np.inf if yy[0] else -np.inf) for yy in train_y.T], axis=1)
    out = np.full((len(test_x), n_classes), -np.inf)
    if len(np.unique(train_y)) < 2:
        out[:, train_y[0]] = 0.0
        return out
    classes, z = fit(train_y, class_weight)
    if z.ndim == 1:
        out[:, classes[0]], out[:, classes[1]] = 0.0, z
    else:
        out[:, classes] = z
    return out


def settles(untuned: float, tuned: float, held_out: int, z: float = DECISIVE_Z) -> bool:
    """Whether accuracies on ``held_out`` texts differ by more than ``z`` standard errors of their difference."""
    p = (untuned + tuned) / 2
    return abs(tuned - untuned) > z * float(np.sqrt(max(2 * p * (1 - p), 1e-9) / held_out))


class Scores:
    """The held-out scores and labels of each (epochs, C) over the folds run: for the choice and the calibration."""

    def __init__(self, cs: Sequence[float], class_weight: str | None = None, n_classes: int = 2,
                 multi_label: bool = False):
        self.cs, self.class_weight, self.n_classes, self.multi_label = tuple(cs), class_weight, n_classes, multi_label
        self.held_out: dict[tuple[int, float], list[tuple[np.ndarray, np.ndarray]]] = {}

    def add(self, epochs: int, emb_train: np.ndarray, y_train: np.ndarray, emb_test: np.ndarray,
            y_test: np.ndarray, seed: int) -> None:
        for c in self.cs:
            z = fit_scores(emb_train, y_train, emb_test, c, self.multi_label, seed, self.class_weight, self.n_classes)
            self.held_out.setdefault((epochs, c), []).append((z, y_test))

    def merge(self, other: Scores) -> None:
        for key, parts in other.held_out.items():
            self.held_out.setdefault(key, []).extend(parts)

    def out_of_fold(self, key: tuple[int, float]) -> tuple[np.ndarray, np.ndarray]:
        parts = self.held_out[key]
        return np.concatenate([z for z, _ in parts]), np.concatenate([y for _, y in parts])

    def accuracy(self, key: tuple[int, float]) -> float:
        z, y = self.out_of_fold(key)  # predicted as the head does; multi-label: every label right
        right = ((z > 0) == y).all(axis=1) if self.multi_label else np.argmax(z, axis=1) == y
        return float(right.mean())

    def _rank(self, key: tuple[int, float]) -> tuple[float, int, float]:
        return self.accuracy(key), -key[0], -abs(float(np.log10(key[1])))  # accuracy, fewer epochs, C nearest 1

    def _best(self, tuned: bool) -> tuple[int, float] | None:
        return max((k for k in self.held_out if (k[0] > 0) == tuned), key=self._rank, default=None)

    def best(self, margin: float = UNTUNED_MARGIN_Z) -> tuple[int, float]:
        """The best (epochs, C) by :meth:`_rank`; the untuned body only when ahead of the best fine-tuning by
        more than ``margin`` standard errors (:func:`settles`)."""
        t, u = self._best(True), self._best(False)
        if t is None or u is None:
            return max(self.held_out, key=self._rank)
        untuned, tuned = self.accuracy(u), self.accuracy(t)
        return u if untuned > tuned and settles(untuned, tuned, len(self.out_of_fold(u)[1]), margin) else t

    def decisive(self, held_out: int) -> bool:
        """Whether the scores so far settle untuned against fine-tuned (:func:`settles`)."""
        t, u = self._best(True), self._best(False)
        return t is not None and u is not None and settles(self.accuracy(u), self.accuracy(t), held_out)

    def by_epochs(self) -> dict[str, float]:
        """The best accuracy over C of each number of epochs."""
        epochs = sorted({e for e, _ in self.held_out})
        return {str(e): max(self.accuracy(k) for k in self.held_out if k[0] == e) for e in epochs}


def choose_c(x: np.ndarray, y: np.ndarray, *, multi_label: bool, seed: int, class_weight: str | None = None,
             n_classes: int = 2, k: int = 2) -> float:
    """The C of :data:`C_GRID` a head on the fixed embeddings ``x`` cross-validates best with (a new model's own
    head: static embeddings want other C than the body's); 1.0 when a class has fewer than ``k`` examples."""
    if not multi_label and np.bincount(y, minlength=n_classes).min() < k:
        return 1.0
    scores = Scores(C_GRID, class_weight, n_classes, multi_label)
    for train, test in folds(y, k, seed, multi_label):
        scores.add(0, x[train], y[train], x[test], y[test], seed)
    return scores.best()[1]


def describe(sel: Selection, n: int) -> str:
    if not sel.scores:
        return sel.reason
    frozen = sel.scores.get("0")
    chosen = sel.scores.get(str(sel.epochs))
    steps = f" ({sel.steps} optimizer steps)" if sel.steps else ""
    what = f"fine-tuned {sel.epochs} epochs{steps}" if sel.finetuned else "the untuned body"
    held = (f"{sel.folds} folds over {n} examples" if sel.folds > 1
            else f"first fold of {n} examples, decisive: the other folds were skipped")
    if chosen is None:  # a fine-tuning the folds could not score
        return (f"{what} on all the examples, head C={sel.head_c:g} (cross-validated on the untuned body: "
                f"{frozen:.3f}, {held}); {sel.note}")
    if sel.averaged:
        what += f" on each of {sel.folds} folds, their weights averaged"
    parts = [f"{what}, head C={sel.head_c:g}: cross-validated accuracy {chosen:.3f}"]
    if sel.finetuned and frozen is not None:
        parts.append(f"against {frozen:.3f} for the untuned body")
        if frozen > chosen:
            parts.append(f"whose lead is within {UNTUNED_MARGIN_Z:g} standard errors, "
                         "too little to give up fine-tuning")
    elif not sel.finetuned and (tuned := {e: s for e, s in sel.scores.items() if e != "0"}):
        e, s = max(tuned.items(), key=lambda kv: kv[1])
        parts.append(f"against {s:.3f} for the best fine-tuning ({e} epochs)")
    return ", ".join(parts) + f" ({held})" + (f"; {sel.note}" if sel.note else "")


@dataclass
class Recipe:
    """Chooses the recipe (:meth:`select`) from the examples, the settings, the base body, how to embed and tune it."""

    data: LabeledData
    y: np.ndarray
    texts: list[str]
    config: Any
    base: Any
    embed: Callable[..., np.ndarray]
    tune: Callable[..., None]
    say: Callable[[str], None]

    def __post_init__(self) -> None:
        config = self.config
        self.cs = C_GRID if config.head_c is None else (config.head_c,)
        # an epoch of the contrastive loss is one pass over the examples; the pairs loss draws 2 * num_iterations
        self.per_example = 2 * config.num_iterations if self.data.multi_label or config.loss != "supcon" else 1
        self.full = self.per_epoch(len(self.texts))

    def per_epoch(self, n: int) -> int:
        return steps_per_epoch(n * self.per_example, self.config.batch_size)

    def scores(self) -> Scores:
        return Scores(self.cs, self.config.head_class_weight, len(self.data.classes), self.data.multi_label)

    def epoch_choices(self) -> tuple[int, ...]:
        config = self.config
        if config.num_epochs is not None:
            return (config.num_epochs,)
        nominal = {"never": (0,), "always": tuple(e for e in EPOCH_CHOICES if e)}.get(config.finetune, EPOCH_CHOICES)
        return tuple(planned_epochs(e, self.full) for e in nominal)

    def tuned_fold(self, split: tuple[np.ndarray, np.ndarray], tuned_epochs: list[int],
                   weights_dir: Path | None) -> Scores:
        """Fine-tune a copy of the base body on a fold's training part; score its held-out part after the
        optimizer steps of each of ``tuned_epochs`` (saving the trained weights as ``<epochs>.npz``)."""
        tr, te = split
        scores, model = self.scores(), copy.deepcopy(self.base)
        # a fold runs the optimizer steps of the final training of each choice: more epochs on fewer examples
        fold_epochs = {max(1, round(e * self.full / self.per_epoch(len(tr)))): e for e in tuned_epochs}

        def hook(epoch: int) -> None:
            if epoch in fold_epochs:
                emb = self.embed(model, [self.texts[i] for i in np.concatenate([tr, te])], quick=True)
                scores.add(fold_epochs[epoch], emb[: len(tr)], self.y[tr], emb[len(tr):], self.y[te], self.config.seed)
                if weights_dir is not None:
                    weights_dir.mkdir(parents=True, exist_ok=True)
                    trainable = {n: p.detach().cpu().numpy() for n, p in model.named_parameters() if p.requires_grad}
                    np.savez(weights_dir / f"{fold_epochs[epoch]}.npz", **trainable)

        self.tune(model, tr, max(fold_epochs), hook)
        return scores


    def select(self) -> Selection:
        """Choose the number of fine-tuning epochs and the head's C. With ``config.average_folds``, when every
        fold ran and fine-tuning wins, ``base`` becomes the average of the fold bodies (:func:`average_into`)."""
        data, texts, config, choices, full = self.data, self.texts, self.config, self.epoch_choices(), self.full
        if len(choices) == 1 and len(self.cs) == 1:
            return Selection(choices[0], self.cs[0], "fixed by the settings", steps=choices[0] * full)
        k = min(config.cv_folds, len(texts) // 2 if data.multi_label else min(data.counts().values()))
        groups = duplicate_groups(texts)
        if groups is not None:
            k = min(k, int(groups.max()) + 1)
        if k < 2:  # the untuned body, unless the settings force fine-tuning (then its most epochs)
            epochs = 0 if 0 in choices else max(choices)
            return Selection(epochs, 1.0 if config.head_c is None else config.head_c,
                             "too few examples a class to cross-validate: defaults used", steps=epochs * full)
        with tempfile.TemporaryDirectory(prefix="fastclf-folds-") as tmp:
            return _cross_validate(self, choices, folds(self.y, k, config.seed, data.multi_label, groups),
                                   Path(tmp) if config.average_folds else None)


def _cross_validate(recipe: Recipe, choices: tuple[int, ...], splits: list[tuple[np.ndarray, np.ndarray]],
                    weights_dir: Path | None) -> Selection:
    data, y, config, say, full, k = recipe.data, recipe.y, recipe.config, recipe.say, recipe.full, len(splits)
    tuned_epochs = sorted(e for e in choices if e > 0)
    quick_emb = recipe.embed(recipe.base, recipe.texts, quick=True)
    unscored, note = 0, ""  # unscored: epochs of a fine-tuning the folds cannot score, run on all the examples
    if tuned_epochs and config.loss == "supcon" and not data.multi_label and not all(
            can_contrast(y[tr]) for tr, _ in splits):  # a fold body would not move, and a tie would "choose" it
        note = ("fine-tuning was not scored: a fold's examples hold fewer than two classes with two "
                "examples each, too few for the contrastive loss")
        unscored = 0 if 0 in choices else max(choices)  # as when too few examples to cross-validate
        tuned_epochs, choices = [], (0,)
    workers = min(k, usable_cpus()) if tuned_epochs and config.cv_parallel and can_fork() else 1
    scores = recipe.scores()
    if 0 in choices and (line := head_note(len(data.classes), f"cross-validation: fitting the head for "
                                           f"{len(recipe.cs)} values of C on {k} folds")):
        say(line)
    for start in range(0, k, workers):
        used = min(start + workers, k)  # folds run so far
        group = list(range(start, used))
        if 0 in choices:
            for tr, te in (splits[f] for f in group):
                scores.add(0, quick_emb[tr], y[tr], quick_emb[te], y[te], config.seed)
        if not tuned_epochs:
            continue
        n_train = ", ".join(str(len(splits[f][0])) for f in group)
        which = (f"fold {group[0] + 1}/{k}" if len(group) == 1
                 else f"folds {group[0] + 1}-{group[-1] + 1}/{k} side by side")
        say(f"cross-validation {which}: fine-tuning on {n_train} examples, scoring the rest after the "
            f"{', '.join(str(e * full) for e in tuned_epochs)} optimizer steps of "
            f"{', '.join(map(str, tuned_epochs))} epochs")
        jobs = [functools.partial(recipe.tuned_fold, splits[f], tuned_epochs,
                                  None if weights_dir is None else weights_dir / f"fold{f}") for f in group]
        parts = run_forked(jobs, threads_each=max(1, usable_cpus() // len(jobs))) if len(jobs) > 1 else [jobs[0]()]
        for part in parts:
            scores.merge(part)
        if start == 0 and used < k and 0 in choices and scores.decisive(sum(len(splits[f][1]) for f in group)):
            say(f"the first {'fold settles' if used == 1 else 'folds settle'} it: skipping the other {k - used}")
            break
    epochs, c = scores.best()
    if unscored:
        return Selection(unscored, c, "fine-tuning asked for; " + note, folds=used, scores=scores.by_epochs(),
                         steps=unscored * full, note=note)
    selection = Selection(epochs, c, "cross-validation", folds=used, scores=scores.by_epochs(), steps=epochs * full,
                          note=note, held_out=scores.out_of_fold((epochs, c)))
    if weights_dir is not None and epochs > 0 and used == k:
        average_into(recipe.base, [weights_dir / f"fold{f}" / f"{epochs}.npz" for f in range(k)])
        selection.final_body = f"average of {k} folds"
    return selection


def average_into(model: Any, paths: Sequence[Path]) -> None:
    """Set ``model``'s parameters to the mean of the ``.npz`` snapshots in ``paths`` (those no snapshot holds
    stay): fold bodies tuned briefly from one body stay close, so their mean acts as tuning on all the folds."""
    import torch

    total: dict[str, np.ndarray] = {}
    for path in paths:
        with np.load(path) as snap:
            for name in snap.files:
                arr = snap[name].astype(np.float64)
                total[name] = total[name] + arr if name in total else arr
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, arr in total.items():
            params[name].copy_(torch.from_numpy(arr / len(paths)).to(params[name].dtype))
