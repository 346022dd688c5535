"""What a measuring process times: a fastclf variant (``Classifier.predict``) or the setfit
baseline (``setfit.SetFitModel.predict`` on the same body, with an equivalent head)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from fastclf.chunking import window_of

BASELINE_SETFIT = "setfit"
SETFIT_DESCRIPTION = ("setfit.SetFitModel.predict in fp32 (torch eager) on the same body, with an equivalent "
                      "scikit-learn LogisticRegression head: what setfit users run today")

#: predict(texts, batch_size=B) -> labels (a list of labels a text for multi-label models)
Predict = Callable[..., list]


def sklearn_head(head, n_classes: int, multi_label: bool):
    """A fitted scikit-learn estimator whose weights are fastclf's head, as setfit's ``model_head``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    rng = np.random.default_rng(0)
    if multi_label:
        k = head.coef.shape[0]
        y = np.vstack([np.eye(k, dtype=int), 1 - np.eye(k, dtype=int)])
        ovr = OneVsRestClassifier(LogisticRegression()).fit(rng.normal(size=(len(y), head.dim)), y)
        for j, est in enumerate(ovr.estimators_):
            est.coef_, est.intercept_ = head.coef[j:j + 1].copy(), head.intercept[j:j + 1].copy()
        return ovr
    y = np.repeat(np.arange(n_classes), 2)
    lr = LogisticRegression().fit(rng.normal(size=(len(y), head.dim)), y)
    lr.coef_, lr.intercept_ = head.coef.copy(), head.intercept.copy()
    return lr


def load_setfit(model_dir: Path) -> tuple[Predict, None, int | None]:
    """setfit's ``SetFitModel`` on the model's body and head: (predict, no fastclf body, its window in
    tokens). Its body loads as fastclf's torch body does, so it cuts a long text at the same window."""
    from setfit import SetFitModel

    from fastclf.backends._torch_graph import _load_sentence_transformer
    from fastclf.config import BODY_DIR, ModelConfig
    from fastclf.head import LogisticHead
    from fastclf.safety import check_body

    cfg = ModelConfig.read(model_dir)
    labels, multi = list(cfg.labels), cfg.multi_label
    head = LogisticHead.load(cfg.head_path(model_dir))
    check_body(model_dir / BODY_DIR)  # the same check as every other load: no code from the model folder
    body = _load_sentence_transformer(model_dir / BODY_DIR)
    model = SetFitModel(model_body=body, model_head=sklearn_head(head, len(labels), multi), labels=labels,
                        multi_target_strategy="one-vs-rest" if multi else None)

    def predict(texts: list[str], batch_size: int) -> list:
        out = model.predict(texts, batch_size=batch_size, as_numpy=True, show_progress_bar=False)
        if multi:
            return [[labels[j] for j in np.flatnonzero(np.asarray(row))] for row in out]
        return [str(x) for x in out]

    window = window_of(SimpleNamespace(model=body))
    return predict, None, window and window[1]


def load_fastclf(model_dir: Path, variant: str) -> tuple[Predict, Any, int | None]:
    """``Classifier.load(model_dir, variant)``: (its predict, its body, its window in tokens)."""
    from fastclf.model import Classifier

    clf = Classifier.load(model_dir, variant=variant)
    window = window_of(clf.body)
    return clf.predict, clf.body, window and window[1]
