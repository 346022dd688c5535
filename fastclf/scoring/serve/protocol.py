"""The /predict request and answer without a web framework: the body's checks, the ranked labels, the errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastclf.config import ModelConfig
from fastclf.errors import DataError, first_line
from fastclf.model import check_answer
from fastclf.texts import check_texts

#: request fields that turn each text's answer into an object (:func:`with_answers`)
ANSWER_FIELDS = ("min_confidence", "unsure_label", "coverage")


class RequestError(Exception):
    """A request the server answers with an error: HTTP status, ``error_type``, message and headers."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error_type, self.message, self.headers = status, error_type, message, headers


def _invalid(message: str) -> RequestError:
    return RequestError(422, "invalid_request", message)


def parse_predict_body(body: bytes, max_inputs: int,
                       config: ModelConfig | None = None) -> tuple[list[str], bool, int | None, dict[str, Any]]:
    """(texts, whether ``inputs`` was one string, top_k, the answer fields, checked against ``config`` when given) of
    a /predict body: only RequestError, 422 for a bad body (a text named by its position), 413 past ``max_inputs``."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, a 5,000-digit number
        raise _invalid(f"the body is not valid JSON: {first_line(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise _invalid(f'the body must be a JSON object like {{"inputs": ["text"]}}, not {type(payload).__name__}')
    unknown = sorted(set(payload) - {"inputs", "top_k", "truncate", *ANSWER_FIELDS})
    if unknown:
        names = ", ".join(json.dumps(k)[:40] for k in unknown[:5])  # quoted and cut: a name may hold anything
        raise _invalid(f"unknown field(s): {names}; expected 'inputs' and optionally 'top_k'")
    if not isinstance(payload.get("truncate", True), bool):
        raise _invalid("'truncate' must be true or false (texts are always truncated to the model's max length)")
    if "inputs" not in payload:
        raise _invalid("'inputs' is missing: send a string or a list of strings")
    inputs = payload["inputs"]
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list):
        raise _invalid(f"'inputs' must be a string or a list of strings, not {_json_type(inputs)}")
    if not texts:
        raise _invalid("'inputs' is an empty list: send at least one text")
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise _invalid(f"'inputs' must hold strings only; item {i} is {_json_type(item)}")
    if len(texts) > max_inputs:
        raise RequestError(413, "too_many_inputs",
                           f"{len(texts)} inputs in one request; the server takes at most {max_inputs}")
    top_k = payload.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise _invalid(f"'top_k' must be a positive integer, not {json.dumps(top_k)[:20]}")
    answer = {k: payload[k] for k in ANSWER_FIELDS if payload.get(k) is not None}
    try:
        check_texts(texts)
        if config is not None:
            check_answer(config, **answer)
    except DataError as exc:
        raise _invalid(str(exc)) from None
    return texts, isinstance(inputs, str), top_k, answer


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def with_answers(ranked: list[list[dict[str, Any]]], proba: np.ndarray, clf: Any,
                 answer: dict[str, Any]) -> list[Any]:
    """``ranked`` as it is without ``answer``; with it, each text's answer as an object: ``label`` (the unsure
    label below ``min_confidence``), ``confidence``, ``scores`` (the ranked labels), ``prediction_set``."""
    if not answer:
        return ranked
    labels, confidences, sets = clf.answers(proba, **answer)
    out = []
    for i, (scores, confidence) in enumerate(zip(ranked, confidences)):
        item = {"label": labels[i], "confidence": float(confidence), "scores": scores}
        out.append(item if sets is None else {**item, "prediction_set": sets[i]})
    return out


def rank_labels(proba: np.ndarray, classes: Sequence[str] | np.ndarray, *, multi_label: bool, threshold: float,
                top_k: int | None) -> list[list[dict[str, Any]]]:
    """Each row of ``proba`` as ``{"label", "score"}`` items, highest first: the ``top_k`` best, else a
    single-label model's best and a multi-label model's at or over ``threshold`` (possibly none)."""
    out = []
    for row in proba:
        order: Sequence[int] = np.argsort(-row, kind="stable").tolist()
        if top_k is not None:
            order = order[:top_k]
        elif multi_label:
            order = [i for i in order if row[i] >= threshold]
        else:
            order = order[:1]
        out.append([{"label": str(classes[i]), "score": float(row[i])} for i in order])
    return out
