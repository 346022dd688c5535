"""What a measuring process times: a fastclf variant (``Classifier.predict``) or the setfit
baseline (``setfit.SetFitModel.predict`` on the same body, with an equivalent head)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BASELINE_SETFIT = "setfit"
SETFIT_DESCRIPTION = ("setfit.SetFitModel.predict in fp32 (torch eager) on the same body, with an equivalent "
                      "scikit-learn LogisticRegression head: what setfit users run today")

#: predict(texts, batch_size) -> labels (a list of labels a text for multi-label models)
Predict = Callable[[list[str], int], list]


def sklearn_head(head, n_classes: int, multi_label: bool):
    """A fitted scikit-learn estimator whose weights are fastclf's head: what setfit's
    ``SetFitModel`` expects as ``model_head`` (LogisticRegression, or one-vs-rest for multi-label)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    if multi_label:
        from sklearn.multiclass import OneVsRestClassifier

        k = head.coef.shape[0]
        y = np.vstack([np.eye(k, dtype=int), 1 - np.eye(k, dtype=int)])
        ovr = OneVsRestClassifier(LogisticRegression()).fit(rng.normal(size=(len(y), head.dim)), y)
        for j, est in enumerate(ovr.estimators_):
            est.coef_ = head.coef[j:j + 1].copy()
            est.intercept_ = head.intercept[j:j + 1].copy()
        return ovr
    y = np.repeat(np.arange(n_classes), 2)
    lr = LogisticRegression().fit(rng.normal(size=(len(y), head.dim)), y)
    lr.coef_ = head.coef.copy()
    lr.intercept_ = head.intercept.copy()
    return lr


def load_setfit(model_dir: Path) -> tuple[Predict, None]:
    """setfit's ``SetFitModel`` on the model's body and head; returns (predict, no fastclf body).

    Raises:
        ModelFormatError: the body folder is refused (see :func:`fastclf.safety.check_body`).
    """
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel

    from fastclf.config import BODY_DIR, read_config
    from fastclf.head import LogisticHead
    from fastclf.safety import check_body

    cfg = read_config(model_dir)
    labels = list(cfg.labels)
    multi = cfg.multi_label
    head = LogisticHead.load(cfg.head_path(model_dir))
    check_body(model_dir / BODY_DIR)  # the same check as every other load: no code from the model folder
    body = SentenceTransformer(str(model_dir / BODY_DIR), device="cpu", local_files_only=True)
    model = SetFitModel(model_body=body, model_head=sklearn_head(head, len(labels), multi), labels=labels,
                        multi_target_strategy="one-vs-rest" if multi else None)

    def predict(texts: list[str], batch_size: int) -> list:
        out = model.predict(texts, batch_size=batch_size, as_numpy=True, show_progress_bar=False)
        if multi:
            return [[labels[j] for j in np.flatnonzero(np.asarray(row))] for row in out]
        return [str(x) for x in out]

    return predict, None


def load_fastclf(model_dir: Path, variant: str) -> tuple[Predict, Any]:
    """``Classifier.load(model_dir, variant)``; returns (its predict, its body)."""
    from fastclf.model import Classifier

    clf = Classifier.load(model_dir, variant=variant)

    def predict(texts: list[str], batch_size: int) -> list:
        return clf.predict(texts, batch_size=batch_size)

    return predict, clf.body
