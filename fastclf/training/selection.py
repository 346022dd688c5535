"""Choosing the recipe by cross-validation on the user's own examples (see :mod:`fastclf.training.trainer`).

The examples are split into stratified folds. On each fold the head is fit on the untuned
body's embeddings of the other folds, and a copy of the body is fine-tuned on the other folds
and scored on the held-out fold after several numbers of epochs, with every head C of
:data:`C_GRID` (an epoch of a choice runs at least :data:`MIN_STEPS_PER_EPOCH` optimizer steps, so
a small set runs more epochs). The best fine-tuning (epochs, C) by held-out accuracy over the folds
wins unless the untuned body (0 epochs, its best C) is ahead of it by more than
:data:`UNTUNED_MARGIN_Z` standard errors; other ties go to fewer epochs. When the first fold already separates the untuned
body from fine-tuning by more than :data:`DECISIVE_Z` standard errors, the other folds are
skipped.
"""

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
#: epochs when fine-tuning is forced (``finetune="always"``) without a number of epochs
DEFAULT_EPOCHS = 4
#: from this many classes a logistic head takes long enough to fit that training says when it starts
MANY_CLASSES = 100


def head_note(n_classes: int, what: str) -> str:
    """A progress line for a long head fit (``MANY_CLASSES`` classes or more), else ""."""
    return f"{what} ({n_classes} classes): this takes a while" if n_classes >= MANY_CLASSES else ""


#: optimizer steps an epoch of a recipe's choice runs at least: on a few dozen examples an epoch is
#: one to four batches, and a few steps barely move the body (benchmarks/studies/steps-study.md). A
#: small set runs more epochs instead; an epoch count the user fixes (``--epochs``) is run as given.
MIN_STEPS_PER_EPOCH = 8
#: the untuned body is chosen over the best fine-tuning only when the folds put it ahead by more than
#: this many standard errors (of a difference of two proportions, :func:`settles`): the folds are small,
#: and fine-tuning usually wins on the test texts (benchmarks/studies/untuned-or-finetuned.md).
UNTUNED_MARGIN_Z = 1.5
#: the first fold settles the choice when the untuned body and the best fine-tuning differ there
#: by more than this many standard errors (of a difference of two proportions)
DECISIVE_Z = 2.0


@dataclass
class Selection:
    """What the recipe chose and the cross-validated accuracy behind it."""

    epochs: int  # 0: the untuned body
    head_c: float
    reason: str
    folds: int = 0
    scores: dict[str, float] = field(default_factory=dict)  # "<epochs>" -> best held-out accuracy over C
    steps: int = 0  # optimizer steps of the fine-tuning on all the examples
    # "all examples": the final body is fine-tuned on all the examples after the choice;
    # "average of N folds": it is the average of the N fold bodies' weights at the chosen steps
    final_body: str = "all examples"
    note: str = ""  # why a choice was left out (said after the description)
    # the chosen (epochs, C)'s held-out scores and true labels over the folds that ran (Scores.out_of_fold):
    # what calibration is fitted on; not part of the training record
    held_out: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def finetuned(self) -> bool:
        return self.epochs > 0

    @property
    def averaged(self) -> bool:
        """Whether the body is already the average of the fold bodies (no final fine-tuning)."""
        return self.finetuned and self.final_body != "all examples"


def head_class_weight(config: Any) -> str | None:
    """sklearn's ``class_weight`` for the head from ``config.class_weight`` ("balanced" or "none")."""
    return None if getattr(config, "class_weight", "none") == "none" else "balanced"


def can_contrast(labels: Sequence[Any]) -> bool:
    """Whether the contrastive loss can learn from single-label ``labels`` (class indices): the
    label-grouped batches leave out classes with one example, and batches of a single class have
    nothing to contrast, so with fewer than two classes of two examples the body does not move."""
    return int((np.bincount(np.asarray(labels, dtype=int)) >= 2).sum()) >= 2


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps of one epoch over ``n`` examples (label-grouped batches of ``batch_size``)."""
    return max(1, math.ceil(n / batch_size))


def planned_epochs(epochs: int, per_epoch: int) -> int:
    """Epochs to run for a choice of ``epochs`` where an epoch is ``per_epoch`` optimizer steps: at
    least :data:`MIN_STEPS_PER_EPOCH` steps an epoch of the choice."""
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
    """``k`` shuffled folds (stratified for single-label data). With ``groups``, the copies of a text
    stay in one fold: a copy on each side would let the held-out part be scored on texts the head
    and the fold body were trained on, and push the choice toward the weakest regularisation."""
    from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

    if groups is not None:
        if multi_label:
            uniq = np.unique(groups)
            parts = KFold(n_splits=k, shuffle=True, random_state=seed).split(uniq)
            return [(np.flatnonzero(np.isin(groups, uniq[a])), np.flatnonzero(np.isin(groups, uniq[b])))
                    for a, b in parts]
        return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))
    if multi_label:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y))))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def fit_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, c: float, multi_label: bool,
               seed: int, class_weight: str | None = None, n_classes: int = 2) -> np.ndarray:
    """Held-out scores of a logistic head fit with ``c`` (and ``class_weight``, single-label only:
    see :meth:`fastclf.head.LogisticHead.fit`), in the head's terms: single-label, one column a
    class whose argmax is the prediction (a binary head's score ``z`` as ``[0, z]``, a class absent
    from the training part ``-inf``); multi-label, one score a label, positive for the label (a label
    constant in the training part scores ``+inf`` or ``-inf``)."""
    from sklearn.linear_model import LogisticRegression

    def fit(yy: np.ndarray, weight: str | None) -> tuple[np.ndarray, np.ndarray]:
        lr = LogisticRegression(C=c, max_iter=1000, random_state=seed, class_weight=weight).fit(train_x, yy)
        return lr.classes_, lr.decision_function(test_x)

    if multi_label:
        cols = []
        for j in range(train_y.shape[1]):
            yy = train_y[:, j]
            cols.append(np.full(len(test_x), np.inf if yy[0] else -np.inf) if len(np.unique(yy)) < 2
                        else fit(yy, None)[1])
        return np.stack(cols, axis=1)
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


def predicted(scores: np.ndarray, multi_label: bool) -> np.ndarray:
    """Class indices (or a multi-hot matrix) of :func:`fit_scores`' scores, as the head predicts."""
    return (scores > 0).astype(int) if multi_label else np.argmax(scores, axis=1)


def _correct(pred: np.ndarray, truth: np.ndarray, multi_label: bool) -> np.ndarray:
    return (pred == truth).all(axis=1) if multi_label else pred == truth


def settles(untuned: float, tuned: float, held_out: int, z: float = DECISIVE_Z) -> bool:
    """Whether held-out accuracies ``untuned`` and ``tuned`` on ``held_out`` texts differ by more
    than ``z`` standard errors of a difference of two proportions: then one fold is enough to
    choose between the untuned body and fine-tuning, and the other folds are skipped."""
    p = (untuned + tuned) / 2
    return abs(tuned - untuned) > z * float(np.sqrt(max(2 * p * (1 - p), 1e-9) / held_out))


class Scores:
    """Correct held-out predictions, summed over folds, for each (epochs, C), and the held-out
    scores themselves with their true labels (``held_out``): the data calibration is fitted on."""

    def __init__(self, cs: Sequence[float], class_weight: str | None = None, n_classes: int = 2):
        self.cs = tuple(cs)
        self.class_weight = class_weight
        self.n_classes = n_classes
        self.correct: dict[tuple[int, float], int] = {}
        self.total: dict[tuple[int, float], int] = {}
        self.held_out: dict[tuple[int, float], list[tuple[np.ndarray, np.ndarray]]] = {}

    def add(self, epochs: int, emb_train: np.ndarray, y_train: np.ndarray, emb_test: np.ndarray,
            y_test: np.ndarray, multi_label: bool, seed: int) -> None:
        for c in self.cs:
            z = fit_scores(emb_train, y_train, emb_test, c, multi_label, seed, self.class_weight, self.n_classes)
            key = (epochs, c)
            self.correct[key] = self.correct.get(key, 0) + int(_correct(predicted(z, multi_label), y_test,
                                                                        multi_label).sum())
            self.total[key] = self.total.get(key, 0) + len(y_test)
            self.held_out.setdefault(key, []).append((z, y_test))

    def merge(self, other: Scores) -> None:
        """Add another fold's counts and scores."""
        for key, n in other.correct.items():
            self.correct[key] = self.correct.get(key, 0) + n
            self.total[key] = self.total.get(key, 0) + other.total[key]
            self.held_out.setdefault(key, []).extend(other.held_out.get(key, []))

    def out_of_fold(self, key: tuple[int, float]) -> tuple[np.ndarray, np.ndarray] | None:
        """(held-out scores, their true labels) of ``key`` over the folds that ran, or None."""
        parts = self.held_out.get(key)
        if not parts:
            return None
        return np.concatenate([z for z, _ in parts]), np.concatenate([y for _, y in parts])

    def accuracy(self, key: tuple[int, float]) -> float:
        return self.correct[key] / self.total[key]

    def best(self, margin: float = UNTUNED_MARGIN_Z) -> tuple[int, float]:
        """The best (epochs, C). Among the fine-tunings and among the untuned body's Cs: highest
        accuracy, then fewer epochs, then the C nearest 1 (sklearn's default). Between the two, the
        untuned body only when the folds put it ahead by more than ``margin`` standard errors
        (:func:`settles`; 0: ahead at all), else the fine-tuning: see :data:`UNTUNED_MARGIN_Z`."""
        def rank(k: tuple[int, float]) -> tuple[float, int, float]:
            return self.accuracy(k), -k[0], -abs(float(np.log10(k[1])))

        tuned = [k for k in self.correct if k[0] > 0]
        untuned = [k for k in self.correct if k[0] == 0]
        if not tuned or not untuned:
            return max(self.correct, key=rank)
        t, u = max(tuned, key=rank), max(untuned, key=rank)
        ahead = self.accuracy(u) > self.accuracy(t) and settles(self.accuracy(u), self.accuracy(t), self.total[u],
                                                                 z=margin)
        return u if ahead else t

    def decisive(self, held_out: int) -> bool:
        """Whether the scores so far settle untuned against fine-tuned (:func:`settles`)."""
        untuned = max((self.accuracy(k) for k in self.correct if k[0] == 0), default=None)
        tuned = max((self.accuracy(k) for k in self.correct if k[0] > 0), default=None)
        return untuned is not None and tuned is not None and settles(untuned, tuned, held_out)

    def by_epochs(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (e, _c) in self.correct:
            out[str(e)] = max(out.get(str(e), 0.0), self.accuracy((e, _c)))
        return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


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
            parts.append(f"whose lead is within {UNTUNED_MARGIN_Z:g} standard errors, too little to give up fine-tuning")
    elif not sel.finetuned:
        tuned = {e: s for e, s in sel.scores.items() if e != "0"}
        if tuned:
            e, s = max(tuned.items(), key=lambda kv: kv[1])
            parts.append(f"against {s:.3f} for the best fine-tuning ({e} epochs)")
    return ", ".join(parts) + f" ({held})" + (f"; {sel.note}" if sel.note else "")


def select(data: LabeledData, y: np.ndarray, texts: list[str], config: Any, base: Any,
            embed: Callable[..., np.ndarray], tune: Callable[..., None], say: Callable[[str], None]) -> Selection:
    """Choose the number of fine-tuning epochs and the head's C (see the module docstring).

    With ``config.average_folds``, when every fold ran and fine-tuning wins, ``base`` is changed in
    place to the average of the fold bodies' weights after the chosen number of steps (each fold
    fine-tuned a copy of ``base``), and the selection says so: no fine-tuning on all the examples
    follows (see :func:`average_into`).
    """
    if not getattr(config, "average_folds", False):
        return _select(data, y, texts, config, base, embed, tune, say, None)
    with tempfile.TemporaryDirectory(prefix="fastclf-folds-") as tmp:
        return _select(data, y, texts, config, base, embed, tune, say, Path(tmp))


def _select(data: LabeledData, y: np.ndarray, texts: list[str], config: Any, base: Any,
            embed: Callable[..., np.ndarray], tune: Callable[..., None], say: Callable[[str], None],
            weights_dir: Path | None) -> Selection:
    cs = C_GRID if config.head_c is None else (config.head_c,)
    weight = head_class_weight(config)
    # an epoch of the contrastive loss is one pass over the examples; the pairs loss (multi-label,
    # --loss pairs) draws 2 * num_iterations pairs an example
    per_example = 2 * config.num_iterations if data.multi_label or config.loss != "supcon" else 1

    def per_epoch(n: int) -> int:
        return steps_per_epoch(n * per_example, config.batch_size)

    full = per_epoch(len(texts))
    if config.num_epochs is not None:
        epoch_choices: tuple[int, ...] = (config.num_epochs,)
    else:
        if config.finetune == "never":
            nominal: tuple[int, ...] = (0,)
        elif config.finetune == "always":
            nominal = tuple(e for e in EPOCH_CHOICES if e > 0)
        else:
            nominal = EPOCH_CHOICES
        epoch_choices = tuple(planned_epochs(e, full) for e in nominal)
    if len(epoch_choices) == 1 and len(cs) == 1:
        return Selection(epoch_choices[0], cs[0], "fixed by the settings",
                         steps=epoch_choices[0] * full)
    smallest = min(data.counts().values())
    k = min(config.cv_folds, smallest) if not data.multi_label else min(config.cv_folds, len(texts) // 2)
    groups = duplicate_groups(texts)
    if groups is not None:
        k = min(k, int(groups.max()) + 1)
    if k < 2:
        # the epochs asked for; else, forced fine-tuning's default; else ("auto", "never") the untuned body
        epochs = config.num_epochs if config.num_epochs is not None else (
            planned_epochs(DEFAULT_EPOCHS, full) if config.finetune == "always" else 0)
        return Selection(epochs, 1.0 if config.head_c is None else config.head_c,
                         "too few examples a class to cross-validate: defaults used",
                         steps=epochs * full)
    tuned_epochs = sorted(e for e in epoch_choices if e > 0)
    quick_emb = embed(base, texts, quick=True)
    splits = folds(y, k, config.seed, data.multi_label, groups)
    unscored = 0  # epochs of a fine-tuning the folds cannot score, run on all the examples
    note = ""
    supcon = config.loss == "supcon" and not data.multi_label
    if tuned_epochs and supcon and not all(can_contrast(y[tr]) for tr, _ in splits):
        # a fold body would not move: its scores would be the untuned body's, and a tie would
        # "choose" a fine-tuning that never happened
        note = ("fine-tuning was not scored: a fold's examples hold fewer than two classes with two "
                "examples each, too few for the contrastive loss")
        if 0 not in epoch_choices:  # --finetune always, or --epochs N: fine-tune all the examples, unscored
            unscored = max(tuned_epochs)
        tuned_epochs, epoch_choices = [], (0,)  # the recipe line says why (Selection.note)
    workers = min(k, usable_cpus()) if tuned_epochs and config.cv_parallel and can_fork() else 1
    n_classes = len(data.classes)
    scores = Scores(cs, weight, n_classes)
    if 0 in epoch_choices and (line := head_note(n_classes, f"cross-validation: fitting the head for "
                                                 f"{len(cs)} values of C on {k} folds")):
        say(line)
    used = 0
    for start in range(0, k, workers):
        group = list(range(start, min(start + workers, k)))
        for f in group:
            tr, te = splits[f]
            if 0 in epoch_choices:
                scores.add(0, quick_emb[tr], y[tr], quick_emb[te], y[te], data.multi_label, config.seed)
        used += len(group)
        if not tuned_epochs:
            continue
        n_train = ", ".join(str(len(splits[f][0])) for f in group)
        which = f"fold {group[0] + 1}/{k}" if len(group) == 1 else f"folds {group[0] + 1}-{group[-1] + 1}/{k} side by side"
        steps = ", ".join(str(e * full) for e in tuned_epochs)
        say(f"cross-validation {which}: fine-tuning on {n_train} examples, scoring the rest after the {steps} "
            f"optimizer steps of {', '.join(map(str, tuned_epochs))} epochs")
        jobs = [functools.partial(_tuned_fold, splits[f], texts, y, tuned_epochs, Scores(cs, weight, n_classes), data.multi_label,
                                  config.seed,
                                  base, embed, tune, full, per_epoch(len(splits[f][0])),
                                  None if weights_dir is None else weights_dir / f"fold{f}") for f in group]
        if len(jobs) > 1:
            parts = run_forked(jobs, threads_each=max(1, usable_cpus() // len(jobs)))
        else:
            parts = [jobs[0]()]
        for part in parts:
            scores.merge(part)
        if start == 0 and used < k and 0 in epoch_choices and scores.decisive(sum(len(splits[f][1]) for f in group)):
            say(f"the first {'fold settles' if used == 1 else 'folds settle'} it: skipping the other {k - used}")
            break
    epochs, c = scores.best()
    if unscored:
        return Selection(unscored, c, "fine-tuning asked for; " + note, folds=used, scores=scores.by_epochs(),
                         steps=unscored * full, note=note)
    selection = Selection(epochs, c, "cross-validation", folds=used, scores=scores.by_epochs(), steps=epochs * full,
                          note=note, held_out=scores.out_of_fold((epochs, c)))
    if weights_dir is not None and epochs > 0 and used == k:
        average_into(base, [weights_dir / f"fold{f}" / f"{epochs}.npz" for f in range(k)])
        selection.final_body = f"average of {k} folds"
    return selection


def _trainable(model: Any) -> dict[str, Any]:
    """The parameters fine-tuning changes, as numpy arrays by name (a snapshot for :func:`average_into`)."""
    return {name: p.detach().cpu().numpy().copy() for name, p in model.named_parameters() if p.requires_grad}


def average_into(model: Any, paths: Sequence[Path]) -> None:
    """Set ``model``'s parameters to the mean of the snapshots in ``paths`` (``.npz`` files of
    parameter name -> array, as the folds write them); a parameter no snapshot holds (kept fixed
    while fine-tuning) stays as it is. The folds fine-tuned copies of one body for a few dozen
    steps at a small learning rate, so their weights stay close (the averaged-weights
    "model soup" of Wortsman et al. 2022): to first order in the steps, the average moves the body as
    fine-tuning on the union of the folds' examples does."""
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
            p = params[name]
            p.copy_(torch.from_numpy(arr / len(paths)).to(p.dtype))


def _tuned_fold(split: tuple[np.ndarray, np.ndarray], texts: list[str], y: np.ndarray, tuned_epochs: list[int],
                scores: Scores, multi_label: bool, seed: int, base: Any, embed: Callable[..., np.ndarray],
                tune: Callable[..., None], full: int, part: int, weights_dir: Path | None = None) -> Scores:
    """Fine-tune a copy of ``base`` on one fold's training part and score its held-out part
    after the optimizer steps of each of ``tuned_epochs`` full-data epochs (``full`` steps an epoch
    on all the examples, ``part`` on the fold's training part). With ``weights_dir``, the trained
    parameters at each of those points are saved there as ``<epochs>.npz``. The held-out
    predictions are counted into ``scores`` (empty), which is returned."""
    tr, te = split
    # a fold trains on fewer examples, so it runs more epochs: the same number of optimizer
    # steps as the final training of each choice, which is what the choice is about
    fold_epochs = {max(1, round(e * full / part)): e for e in tuned_epochs}
    model = copy.deepcopy(base)

    def hook(epoch: int) -> None:
        if epoch in fold_epochs:
            emb = embed(model, [texts[i] for i in np.concatenate([tr, te])], quick=True)
            scores.add(fold_epochs[epoch], emb[: len(tr)], y[tr], emb[len(tr):], y[te], multi_label, seed)
            if weights_dir is not None:
                weights_dir.mkdir(parents=True, exist_ok=True)
                np.savez(weights_dir / f"{fold_epochs[epoch]}.npz", **_trainable(model))

    tune(model, tr, max(fold_epochs), hook)
    return scores
