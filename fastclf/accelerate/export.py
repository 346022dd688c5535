"""Export faster body variants into a model directory, each checked against torch-fp32.

An export is built in a staging folder beside the model directory, loaded back and
compared with the reference on texts that were not used to calibrate it. Only an export
that passes (or that the user keeps on purpose) is published: a new version of the model
(hard links to the unchanged files, the variant in ``body/``, the record in ``fastclf.json``)
is swapped with the live one in one step. A failure or Ctrl-C leaves the model as it was.

The parity gate lives in :mod:`fastclf.accelerate.parity`, the brief timing in :mod:`fastclf.timing`,
``--auto``'s choice of a default variant in :mod:`fastclf.accelerate.auto` and the ``fastclf accelerate``
command in :mod:`fastclf.cli.accelerate`.

The library reports progress through a callback (:class:`Step`) and returns
:class:`ExportResult` objects; only the CLI prints.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastclf._util import remove_stale
from fastclf.accelerate.parity import (
    DEFAULT_MAX_DISAGREEMENT,
    DEFAULT_MIN_COSINE,
    GateDecision,
    Parity,
    accuracy_decision,
    gate_decision,
    parity,
    split_texts,
)
from fastclf.backends import (
    REFERENCE,
    RUNTIME_DIRS,
    Body,
    export_note,
    export_variant,
    get_spec,
    load_body,
    reset_runtime_state,
    runtime_settings,
)
from fastclf.config import BODY_DIR, ModelConfig, VariantRecord, now
from fastclf.errors import FastclfError, ModelFormatError, first_line
from fastclf.head import LogisticHead
from fastclf.model import Classifier
from fastclf.modeldir import (
    commit_dir,
    fix_permissions,
    link_copy,
    make_staging,
    staging_prefix,
    writer_lock,
)
from fastclf.quiet import quiet_third_party
from fastclf.timing import Timing, time_classifier


@dataclass
class ExportResult:
    """One variant's export: whether it was published, its parity, gate verdict and timing."""

    variant: str
    ok: bool
    seconds: float = 0.0
    parity: Parity | None = None
    gate: GateDecision | None = None
    timing: Timing | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    kept_below_tolerance: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Step:
    """A progress report of :func:`accelerate` and :func:`accelerate_command`. ``stage``:
    "export", "check", "time" (a variant is being worked on), "done" (``result`` is set),
    "baseline" (torch-fp32 was timed: ``timing`` is set), "note" (``message`` says something
    worth showing: a skipped runtime, the check set)."""

    variant: str
    stage: str
    index: int  # 1-based position of the variant
    total: int
    result: ExportResult | None = None
    timing: Timing | None = None
    message: str = ""


@dataclass
class Acceleration:
    """What :func:`accelerate` did: one result a variant, and torch-fp32's timing (with ``timing``)."""

    results: list[ExportResult]
    reference_timing: Timing | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results],
                "reference_timing": None if self.reference_timing is None else asdict(self.reference_timing)}


def _staging_copy(body_dir: Path, runtime: str, into: Path) -> Path:
    """Copy the body without the other runtimes' exports: the exporter may write freely in it."""
    skip = {d for d in RUNTIME_DIRS if d != runtime}
    staged = into / BODY_DIR
    shutil.copytree(body_dir, staged, ignore=lambda d, names: [n for n in names if Path(d) == body_dir and n in skip])
    return staged


def _promote(staged: Path, body_dir: Path, runtime: str) -> list[str]:
    """Move the new or changed files of ``runtime``'s folder from staging into the body."""
    moved: list[str] = []
    src_root = staged / runtime
    if not src_root.is_dir():
        return moved
    for src in sorted(p for p in src_root.rglob("*") if p.is_file()):
        rel = src.relative_to(staged)
        dst = body_dir / rel
        if dst.is_file() and filecmp.cmp(dst, src, shallow=False):  # sizes first, then the bytes
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.replace(dst)
        moved.append(str(rel))
    return moved


def accelerate(model_dir: str | Path, variants: Sequence[str], *, calibration_texts: Sequence[str],
               check_texts: Sequence[str] | None = None, extra_check_texts: Sequence[str] = (),
               num_calibration: int = 200, min_agreement: float | None = None,
               max_disagreement: float | None = None, min_cosine: float = DEFAULT_MIN_COSINE,
               keep: bool = False, calibration_source: str = "", timing: bool = False, verbose: bool = False,
               progress: Callable[[Step], None] | None = None, config: ModelConfig | None = None,
               labeled_check: tuple[Sequence[str], Sequence[str]] | None = None) -> Acceleration:
    """Export ``variants`` of the model in ``model_dir``, each checked by the parity gate.

    Check texts: ``check_texts``, ``extra_check_texts`` and the calibration texts not used to
    calibrate (see :func:`split_texts`). Each export is compared with torch-fp32 on them and
    judged by :func:`gate_decision` (tolerance ``max_disagreement``, or ``1 - min_agreement``;
    default 2%); a variant that is a new model is judged instead by :func:`accuracy_decision` on
    ``labeled_check`` (texts, labels), within the same tolerance. One that fails is discarded unless ``keep``. ``timing``: also time each
    passing variant briefly (:func:`time_body`), and torch-fp32 itself. ``progress`` receives a
    :class:`Step` at each stage. ``config``: the model's fastclf.json, when already read.

    Raises:
        ModelNotFound, ModelFormatError: the model directory cannot be read.
        UnknownVariant: a variant name is not known.
        DataError: too few texts.
    """
    model_dir = Path(model_dir).resolve()
    for v in variants:
        get_spec(v)
    body_id = (ModelConfig.read(model_dir) if config is None else config).body_id
    remove_stale(model_dir)
    if max_disagreement is None:
        max_disagreement = DEFAULT_MAX_DISAGREEMENT if min_agreement is None else 1.0 - min_agreement
    calibrate = any(get_spec(v).calibrated for v in variants)
    calibration, check = split_texts(calibration_texts, num_calibration, calibrate=calibrate,
                                     extra_check=[*(check_texts or ()), *extra_check_texts])
    reference = Classifier.load(model_dir, variant=REFERENCE)
    fit_head = head_fitter(model_dir, reference.config)
    labeled = None
    if labeled_check is not None:
        texts, labels = list(labeled_check[0]), [str(label) for label in labeled_check[1]]
        labeled = (texts, labels, [a == b for a, b in zip(reference.predict(texts), labels)])
    ref_emb = reference.embed(check)  # once: every variant is checked against the same embeddings
    report = progress or _no_progress
    reference_timing = None
    if timing:
        report(Step(REFERENCE, "time", 0, len(variants)))
        with quiet_third_party(verbose):
            reference_timing = time_classifier(reference, check)
        report(Step(REFERENCE, "baseline", 0, len(variants), timing=reference_timing))
    run = _Run(model_dir, body_id, reference, ref_emb, check, calibration, max_disagreement, min_cosine, keep,
               calibration_source, timing, verbose, report, fit_head, labeled)
    todo = [v for v in variants if v != REFERENCE]
    results = []
    for index, variant in enumerate(todo, 1):
        result = _export_one(run, variant, index, len(todo))
        report(Step(variant, "done", index, len(todo), result))
        results.append(result)
    return Acceleration(results, reference_timing)


def head_fitter(model_dir: Path, cfg: ModelConfig) -> Callable[[Body], LogisticHead] | None:
    """How a variant that is a new model gets its own head: fit like the model's head (its C,
    its class weights) on its embeddings of the training examples, read again from the training
    file that fastclf.json records; None when that file is gone."""
    t = cfg.training
    if t is None or not t.source_path or not Path(t.source_path).is_file():
        return None
    from fastclf.data import read_labeled

    cols = list(t.label_columns or [])
    several = cfg.multi_label and len(cols) > 1
    data = read_labeled(t.source_path, text_column=t.text_column, label_column=None if several or not cols else cols[0],
                        label_columns=cols if several else None)
    index = {c: i for i, c in enumerate(cfg.labels)}
    if cfg.multi_label:
        y = np.zeros((len(data.texts), len(index)), dtype=np.int64)
        for row, labels in enumerate(data.labels):
            y[row, [index[c] for c in labels if c in index]] = 1
    else:
        y = np.array([index.get(str(c), -1) for c in data.labels])
    settings, selection = dict(t.settings or {}), dict(t.selection or {})
    C = float(selection.get("head_c") or settings.get("head_c") or 1.0)
    weight = "balanced" if settings.get("class_weight") == "balanced" else None
    keep = np.asarray(y.any(axis=1) if cfg.multi_label else y >= 0)  # rows whose labels the model knows
    texts = [text for text, k in zip(data.texts, keep.tolist()) if k]
    return lambda body: LogisticHead.fit(body.encode(texts), y[keep], multi_label=cfg.multi_label, C=C,
                                         class_weight=weight)


def _no_progress(_step: Step) -> None:
    pass


@dataclass(frozen=True)
class _Run:
    """What every variant's export in one :func:`accelerate` call shares."""

    model_dir: Path
    body_id: str | None
    reference: Classifier
    ref_emb: np.ndarray  # the reference's embeddings of ``check``
    check: list[str]
    calibration: list[str]
    max_disagreement: float
    min_cosine: float
    keep: bool
    calibration_source: str
    timing: bool
    verbose: bool
    progress: Callable[[Step], None]
    fit_head: Callable[[Body], LogisticHead] | None  # the head of a variant that is a new model
    labeled: tuple[list[str], list[str], list[bool]] | None  # labeled check texts, labels, torch-fp32 right


def _export_one(run: _Run, variant: str, index: int, total: int) -> ExportResult:
    """Export ``variant`` in a staging folder, check it, and publish it when it passes (or ``keep``)."""
    start = time.perf_counter()
    result = ExportResult(variant, ok=False)
    run.progress(Step(variant, "export", index, total, message=export_note(variant, len(run.calibration))))
    # beside the model, not in it: a concurrent save swaps the model folder, not this one
    with tempfile.TemporaryDirectory(prefix=staging_prefix(run.model_dir, f"staging-{variant}"),
                                     dir=run.model_dir.parent) as tmp:
        staged = Path(tmp) / BODY_DIR
        try:
            _export_and_check(run, variant, staged, result, index, total)
        except FastclfError as exc:
            result.error = str(exc)
        except Exception as exc:  # an exporter's own failure: report it, go on with the others
            result.error = f"export failed: {type(exc).__name__}: {first_line(exc)}"
        finally:
            reset_runtime_state()
        result.seconds = time.perf_counter() - start
        if result.gate is not None and not result.error:
            _judge_and_publish(run, variant, staged, result)
    return result


def _export_and_check(run: _Run, variant: str, staged: Path, result: ExportResult, index: int, total: int) -> None:
    """Export ``variant`` into ``staged`` (a copy of the body), load it back, and fill ``result``'s
    parity, gate verdict, runtime settings and (``run.timing``, when it passes) timing."""
    with quiet_third_party(run.verbose):
        _staging_copy(run.model_dir / BODY_DIR, get_spec(variant).runtime, staged.parent)
        export_variant(staged, variant, run.calibration, run.fit_head)
        body = load_body(staged, variant)
        own = get_spec(variant).head
        head = LogisticHead.load(staged / own) if own else run.reference.head
        ref = run.reference  # the candidate as Classifier.load would give it: its head, the model's windows
        candidate = Classifier(body, head, list(ref.classes_), multi_label=ref.multi_label, config=ref.config,
                               threshold=ref.threshold)
    run.progress(Step(variant, "check", index, total))
    with quiet_third_party(run.verbose):
        result.parity = parity(run.reference, body, run.check, ref_emb=run.ref_emb, head=head)
    p = result.parity
    if get_spec(variant).new_model:
        texts, labels, ref_right = run.labeled or ([], [], [])
        with quiet_third_party(run.verbose):
            found = candidate.predict(texts) if texts else []
        result.gate = accuracy_decision(ref_right, [a == b for a, b in zip(found, labels)],
                                        max_loss=run.max_disagreement)
    else:
        result.gate = gate_decision(p.n, p.flips, p.mean_cosine, max_disagreement=run.max_disagreement,
                                    min_cosine=run.min_cosine)
    if run.timing and result.gate.passed:
        run.progress(Step(variant, "time", index, total))
        with quiet_third_party(run.verbose):
            result.timing = time_classifier(candidate, run.check)
    result.runtime = runtime_settings(body)  # after the timing: what it ran with (compiled shapes included)
    del body


def _judge_and_publish(run: _Run, variant: str, staged: Path, result: ExportResult) -> None:
    """Discard an export the gate failed (unless ``run.keep``), else publish it into the model."""
    assert result.gate is not None
    if not result.gate.passed:
        if run.keep:
            result.kept_below_tolerance = True
        else:
            said = "" if result.gate.accuracy else f" (--min-agreement {1 - run.max_disagreement:.0%})"
            result.error = f"{result.gate.reason}{said}: export discarded (use --keep to keep it anyway)"
            return
    try:
        moved = _commit(run.model_dir, run.body_id, staged, variant, result, run.calibration_source,
                        len(run.calibration))
    except FastclfError as exc:
        result.error = str(exc)
    else:
        result.ok = True
        result.details["files"] = moved


def _commit(model_dir: Path, body_id: str | None, staged: Path, variant: str, result: ExportResult, source: str,
            n_cal: int) -> list[str]:
    """Publish an export: a new version of the model (hard links to the unchanged files, the
    variant's files and the updated fastclf.json) swapped with the live one in one step, so
    a reader never sees variant files that fastclf.json does not record, or the reverse.

    fastclf.json is read again here, under the writer lock: another writer (an export of
    another variant, ``accelerate --auto``) may have changed it since the run began.

    Raises:
        ModelFormatError: the model's body was replaced (``fastclf train -o``) during the export.
    """
    with writer_lock(model_dir):
        live = ModelConfig.read(model_dir)
        if live.body_id != body_id:
            raise ModelFormatError(f"the model in {model_dir} was replaced while {variant} was exported; "
                                   "export discarded: run fastclf accelerate again")
        tmp = make_staging(model_dir)
        try:
            link_copy(model_dir, tmp,
                      skip=lambda p: p.parent == model_dir and p.name.startswith(".staging-"))
            moved = _promote(staged, tmp / BODY_DIR, get_spec(variant).runtime)
            live.with_variant(variant, variant_record(variant, result, source, n_cal)).write(tmp)
            fix_permissions(tmp)
            commit_dir(tmp, model_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return moved


def variant_record(variant: str, result: ExportResult, source: str, n_cal: int) -> VariantRecord:
    """What fastclf.json records of a passing (or kept) export: its parity figures, the gate's
    verdict, its files and runtime settings, and its calibration texts."""
    spec = get_spec(variant)
    assert result.parity is not None and result.gate is not None
    g = result.gate
    runtime = {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
               for k, v in result.runtime.items()}
    figures: dict[str, Any] = {k: None if isinstance(v, float) and np.isnan(v) else v  # no cosine: a new model
                               for k, v in asdict(result.parity).items()}
    return VariantRecord(
        **figures,
        gate={"passed": g.passed, "n": g.n, "flips": g.flips, "disagreement": round(g.disagreement, 5),
              "interval": [round(g.lower, 5), round(g.upper, 5)], "confidence": g.confidence,
              "max_disagreement": g.max_disagreement, "min_cosine": None if np.isnan(g.min_cosine) else g.min_cosine, "rule": g.rule,
              **({"accuracy": list(g.accuracy), "labeled_texts_needed": g.needed} if g.accuracy else {})},
        min_agreement=round(1 - g.max_disagreement, 6),
        exported=now(),
        seconds=round(result.seconds, 1),
        files=tuple(spec.files),
        runtime=runtime or None,
        calibration={"source": source, "texts": n_cal} if spec.calibrated else None,
        kept_below_tolerance=result.kept_below_tolerance,
        gate_failure=g.reason if result.kept_below_tolerance else None,
    )
