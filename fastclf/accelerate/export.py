"""Export faster body variants into a model directory, each built in a staging folder, judged by
:mod:`fastclf.accelerate.parity` and published in one step only when it passes (or is kept on purpose)."""

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

from fastclf import backends
from fastclf._util import remove_stale
from fastclf.accelerate import parity
from fastclf.accelerate.parity import GateDecision, Parity
from fastclf.config import BODY_DIR, ModelConfig, VariantRecord, now
from fastclf.errors import FastclfError, ModelFormatError, first_line
from fastclf.head import LogisticHead
from fastclf.model import Classifier
from fastclf.modeldir import ModelDir, link_copy, staging_prefix, writer_lock
from fastclf.modeldir import staged as staged_dir
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


@dataclass
class Step:
    """A progress report: ``stage`` "export", "check" or "time" (a variant is being worked on),
    "done" (``result`` is set), "baseline" (torch-fp32's ``timing``), "note" (a line worth showing)."""

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


def accelerate(model_dir: str | Path, variants: Sequence[str], *, calibration_texts: Sequence[str],
               extra_check_texts: Sequence[str] = (), num_calibration: int = 200,
               max_accuracy_loss: float = parity.DEFAULT_MAX_ACCURACY_LOSS,
               min_cosine: float = parity.DEFAULT_MIN_COSINE,
               keep: bool = False, calibration_source: str = "", timing: bool = False, verbose: bool = False,
               progress: Callable[[Step], None] | None = None, config: ModelConfig | None = None,
               labeled_check: tuple[Sequence[str], Sequence[str]] | None = None) -> Acceleration:
    """Export ``variants``, each judged within ``max_accuracy_loss`` points (a new model on ``labeled_check``) and
    discarded unless it passes or ``keep``; ``timing``: also time torch-fp32 and each variant that passes."""
    model_dir = Path(model_dir).resolve()
    todo = [v for v in variants if backends.get_spec(v).name != backends.REFERENCE]
    body_id = (ModelConfig.read(model_dir) if config is None else config).body_id
    remove_stale(model_dir)
    calibration, check = parity.split_texts(calibration_texts, num_calibration, extra_check=extra_check_texts,
                                     calibrate=any(backends.get_spec(v).calibrated for v in todo))
    reference = Classifier.load(model_dir, variant=backends.REFERENCE)
    labeled = None
    if labeled_check is not None:
        texts, labels = list(labeled_check[0]), [str(label) for label in labeled_check[1]]
        labeled = (texts, labels, [a == b for a, b in zip(reference.predict(texts), labels)])
    report = progress or (lambda step: None)
    for line in _check_notes(todo, len(check), len(calibration), calibration_source, labeled, max_accuracy_loss,
                             min_cosine):
        report(Step("", "note", 0, 0, message=line))
    reference_timing = None
    if timing:
        report(Step(backends.REFERENCE, "time", 0, len(todo)))
        with quiet_third_party(verbose):
            reference_timing = time_classifier(reference, check)
        report(Step(backends.REFERENCE, "baseline", 0, len(todo), timing=reference_timing))
    run = _Run(model_dir, body_id, reference, reference.embed(check), check, calibration, max_accuracy_loss / 100,
               min_cosine, keep, calibration_source, timing, verbose, report,
               head_fitter(reference.config), labeled)
    results = []
    for index, variant in enumerate(todo, 1):
        results.append(_export_one(run, variant, index, len(todo)))
        report(Step(variant, "done", index, len(todo), results[-1]))
    return Acceleration(results, reference_timing)


def _check_notes(variants: list[str], n_check: int, n_cal: int, source: str, labeled: tuple | None,
                 points: float, min_cosine: float) -> list[str]:
    """What is worth saying before the exports: what judges them, and whether the check texts can pass an export."""
    exports = [v for v in variants if not backends.get_spec(v).new_model]
    new = [v for v in variants if backends.get_spec(v).new_model]
    how = ([f"exports of the model by the labels they change on {n_check} texts not used for calibration "
            f"(and mean cosine >= {min_cosine})"] if exports else [])
    if new:
        how.append(f"new models ({', '.join(new)}) by their accuracy loss on {len(labeled[0]) if labeled else 0} "
                   "labeled texts of --check")
    if n_cal:
        how.append(f"{n_cal} texts of {source} calibrate")
    lines = [f"checking {len(variants)} variant{'s' if len(variants) != 1 else ''} {parity.within(points)} of "
             f"{backends.REFERENCE} at {parity.CONFIDENCE:.0%} confidence: " + "; ".join(how)]
    bound = parity.pass_bound(n_check)
    if exports and bound > points / 100:
        lines.append(f"with {n_check} texts no export can pass: even one that changes none of their labels may "
                     f"change up to {bound:.1%} of others, not {parity.within(points)}; add texts with --check FILE "
                     "(a few hundred)")
    return lines


def head_fitter(cfg: ModelConfig) -> Callable[[backends.Body], LogisticHead] | None:
    """How a new model gets its own head, on its embeddings of the training file that fastclf.json records (None
    when that file is gone): the model's class weights, and C as fixed by the user or else cross-validated anew."""
    t = cfg.training
    if t is None or not t.source_path or not Path(t.source_path).is_file():
        return None
    from fastclf.data import read_labeled

    cols = list(t.label_columns or [])
    several = cfg.multi_label and len(cols) > 1
    data = read_labeled(t.source_path, text_column=t.text_column, label_column=None if several or not cols else cols[0],
                        label_columns=cols if several else None)
    if cfg.multi_label:
        y = np.array([[int(c in row) for c in cfg.labels] for row in data.labels], dtype=np.int64)
    else:
        y = np.array([cfg.labels.index(str(c)) if str(c) in cfg.labels else -1 for c in data.labels])
    keep = np.asarray(y.any(axis=1) if cfg.multi_label else y >= 0)  # rows whose labels the model knows
    settings = dict(t.settings or {})
    weight = "balanced" if settings.get("class_weight") == "balanced" else None
    texts = [text for text, k in zip(data.texts, keep.tolist()) if k]

    def fit(body: backends.Body) -> LogisticHead:
        from fastclf.training.selection import choose_c

        x = body.encode(texts)
        c = settings.get("head_c") or choose_c(x, y[keep], multi_label=cfg.multi_label, class_weight=weight,
                                               seed=int(settings.get("seed") or 42), n_classes=len(cfg.labels))
        return LogisticHead.fit(x, y[keep], multi_label=cfg.multi_label, C=float(c), class_weight=weight)
    return fit


@dataclass(frozen=True)
class _Run:
    """What every variant's export in one :func:`accelerate` call shares."""

    model_dir: Path
    body_id: str | None
    reference: Classifier
    ref_emb: np.ndarray  # the reference's embeddings of ``check``
    check: list[str]
    calibration: list[str]
    tolerance: float  # a share: --max-accuracy-loss / 100
    min_cosine: float
    keep: bool
    calibration_source: str
    timing: bool
    verbose: bool
    progress: Callable[[Step], None]
    fit_head: Callable[[backends.Body], LogisticHead] | None  # the head of a variant that is a new model
    labeled: tuple[list[str], list[str], list[bool]] | None  # labeled check texts, labels, torch-fp32 right


def _export_one(run: _Run, variant: str, index: int, total: int) -> ExportResult:
    """Export ``variant`` in a staging folder, check it, and publish it when it passes (or ``keep``)."""
    start = time.perf_counter()
    result = ExportResult(variant, ok=False)
    run.progress(Step(variant, "export", index, total, message=backends.export_note(variant, len(run.calibration))))
    # beside the model, not in it: a concurrent save swaps the model folder, not this one
    with tempfile.TemporaryDirectory(prefix=staging_prefix(run.model_dir, f"staging-{variant}"),
                                     dir=run.model_dir.parent) as tmp:
        staged = Path(tmp) / BODY_DIR
        try:
            gate = _export_and_check(run, variant, staged, result, index, total)
            result.seconds = time.perf_counter() - start
            if gate.passed or run.keep:
                result.kept_below_tolerance = not gate.passed
                _commit(run.model_dir, run.body_id, staged, variant, variant_record(variant, result, run))
                result.ok = True
            else:
                result.error = (f"{gate.reason} (--max-accuracy-loss {run.tolerance * 100:g}): export discarded "
                                "(use --keep to keep it anyway)")
        except FastclfError as exc:
            result.error = str(exc)
        except Exception as exc:  # an exporter's own failure: report it, go on with the others
            result.error = f"export failed: {type(exc).__name__}: {first_line(exc)}"
        finally:
            backends.reset_runtime_state()
            if not result.ok:  # published: its record holds the time until the check
                result.seconds = time.perf_counter() - start
    return result


def _export_and_check(run: _Run, variant: str, staged: Path, result: ExportResult, index: int,
                      total: int) -> GateDecision:
    """Export ``variant`` into ``staged`` (a copy of the body), load it back, fill ``result`` and return its gate."""
    spec, ref = backends.get_spec(variant), run.reference
    body_dir, skip = run.model_dir / BODY_DIR, {d for d in backends.RUNTIME_DIRS if d != spec.runtime}
    with quiet_third_party(run.verbose):  # the body without the other runtimes' exports: the exporter writes in it
        shutil.copytree(body_dir, staged,
                        ignore=lambda d, names: [n for n in names if Path(d) == body_dir and n in skip])
        backends.export_variant(staged, variant, run.calibration, run.fit_head)
        body = backends.load_body(staged, variant)
        head = LogisticHead.load(ModelDir(staged.parent, ref.config).head_path(variant)) if spec.head else ref.head
        # the candidate as Classifier.load would give it: its head, the model's windows
        candidate = Classifier(body, head, list(ref.classes_), multi_label=ref.multi_label, config=ref.config,
                               threshold=ref.threshold)
    run.progress(Step(variant, "check", index, total))
    with quiet_third_party(run.verbose):
        p = result.parity = parity.parity(ref, body, run.check, ref_emb=run.ref_emb, head=head)
        if spec.new_model:
            texts, labels, ref_right = run.labeled or ([], [], [])
            found = candidate.predict(texts) if texts else []
            gate = parity.accuracy_decision(ref_right, [a == b for a, b in zip(found, labels)], tolerance=run.tolerance)
        else:
            gate = parity.gate_decision(p.n, p.flips, p.mean_cosine, tolerance=run.tolerance, min_cosine=run.min_cosine)
        result.gate = gate
    if run.timing and gate.passed:
        run.progress(Step(variant, "time", index, total))
        with quiet_third_party(run.verbose):
            result.timing = time_classifier(candidate, run.check)
    result.runtime = backends.runtime_settings(body)  # after the timing: what it ran with (compiled shapes included)
    return gate


def _commit(model_dir: Path, body_id: str | None, staged: Path, variant: str, record: VariantRecord) -> None:
    """Swap in a new version of the model with the variant's files and record, fastclf.json read again under the
    writer lock; ModelFormatError when the body was replaced (``fastclf train -o``) during the export."""
    with writer_lock(model_dir):
        live = ModelConfig.read(model_dir)
        if live.body_id != body_id:
            raise ModelFormatError(f"the model in {model_dir} was replaced while {variant} was exported; "
                                   "export discarded: run fastclf accelerate again")
        with staged_dir(model_dir) as tmp:
            link_copy(model_dir, tmp, skip=lambda p: p.parent == model_dir and p.name.startswith(".staging-"))
            # the new or changed files of the variant's runtime folder move from staging into the new version
            for src in sorted(p for p in (staged / backends.get_spec(variant).runtime).rglob("*") if p.is_file()):
                dst = tmp / BODY_DIR / src.relative_to(staged)
                if not (dst.is_file() and filecmp.cmp(dst, src, shallow=False)):  # sizes first, then the bytes
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    src.replace(dst)
            live.model_copy(update={"variants": {**live.variants, variant: record}}).write(tmp)


def variant_record(variant: str, result: ExportResult, run: _Run) -> VariantRecord:
    """What fastclf.json records of a published export: parity, gate verdict, files, runtime, calibration."""
    spec, g = backends.get_spec(variant), result.gate
    assert result.parity is not None and g is not None
    runtime = {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
               for k, v in result.runtime.items()}
    figures: dict[str, Any] = {k: None if isinstance(v, float) and np.isnan(v) else v  # no cosine: a new model
                               for k, v in asdict(result.parity).items()}
    gate = {"passed": g.passed, "n": g.n, "flips": g.flips, "disagreement": round(g.disagreement, 5),
            "interval": [round(g.lower, 5), round(g.upper, 5)], "confidence": g.confidence,
            "max_disagreement": g.tolerance, "min_cosine": None if np.isnan(g.min_cosine) else g.min_cosine,
            "rule": g.rule, **({"accuracy": list(g.accuracy), "labeled_texts_needed": g.needed} if g.accuracy else {})}
    return VariantRecord(**figures, gate=gate, min_agreement=round(1 - g.tolerance, 6), exported=now(),
                         seconds=round(result.seconds, 1), files=tuple(spec.files), runtime=runtime or None,
                         calibration={"source": run.calibration_source, "texts": len(run.calibration)}
                         if spec.calibrated else None,
                         kept_below_tolerance=result.kept_below_tolerance,
                         gate_failure=g.reason if result.kept_below_tolerance else None)
