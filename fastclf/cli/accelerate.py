"""``fastclf accelerate``: read the texts, pick the variants (``--variant``, ``--all``,
``--auto``), run :func:`fastclf.accelerate.export.accelerate` and, with ``--auto``, record the default
variant; and the lines the CLI shows of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastclf.accelerate.auto import AutoChoice, auto_candidates, available_variants, choose_default
from fastclf.accelerate.export import ExportResult, Step, accelerate
from fastclf.accelerate.parity import (
    COARSE_CHECK_RATIO,
    CONFIDENCE,
    DEFAULT_MAX_DISAGREEMENT,
    DEFAULT_MIN_COSINE,
    pass_bound,
    split_texts,
)
from fastclf.backends import REFERENCE, VARIANTS, get_spec, runtime_module
from fastclf.config import ModelConfig, TrainingRecord
from fastclf.errors import DataError, FastclfError
from fastclf.timing import Timing


@dataclass
class AccelerateOutcome:
    """What ``fastclf accelerate`` did: each export's result, the variants skipped for a missing
    runtime, and (``--auto``) torch-fp32's timing and the default variant chosen."""

    model_dir: Path
    results: list[ExportResult]
    skipped: list[str] = field(default_factory=list)
    auto: bool = False
    reference_timing: Timing | None = None
    choice: AutoChoice | None = None

    @property
    def ok(self) -> bool:
        """False when an export failed or was discarded (with ``auto``: only when nothing could be measured)."""
        if self.auto:
            return self.choice is not None
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), "ok": self.ok, "skipped": self.skipped,
                "results": [r.to_dict() for r in self.results],
                "reference_timing": None if self.reference_timing is None else asdict(self.reference_timing),
                "default_variant": None if self.choice is None else self.choice.variant,
                "default_variant_choice": None if self.choice is None else self.choice.record}



def _pick_variants(variants: list[str], *, all_variants: bool, auto: bool,
                   include_torch: bool) -> tuple[list[str], list[str]]:
    """(the variants to export, those skipped for a missing runtime).

    Raises:
        UnknownVariant, MissingDependency: a named variant is unknown, or its runtime is missing.
    """
    for v in variants:
        get_spec(v)
    missing: list[str] = []
    if auto:
        chosen, missing = auto_candidates(include_torch)
        variants = list(dict.fromkeys(list(variants) + chosen))
    elif all_variants:
        chosen = available_variants()
        missing = [v for v in VARIANTS if v != REFERENCE and v not in chosen]
        variants = list(dict.fromkeys(list(variants) + chosen))
    else:
        for v in variants:
            runtime_module(get_spec(v))  # a missing runtime fails before any work
    return variants, missing


def _read_texts(calibration: Path | None, check: Path | None, text_column: str | None,
                training: TrainingRecord | None) -> tuple[Path, list[str], list[str]]:
    """(the calibration file, its texts, the extra check texts: ``check``'s and the training file's).

    Raises:
        DataError: no calibration file given and the training file is not found.
    """
    from fastclf.data import read_texts

    source = training.source_path if training is not None else None
    training_file = Path(source) if source and Path(source).is_file() else None
    if calibration is None:
        if training_file is None:
            raise DataError("give texts to calibrate and check the variants with --calibration FILE "
                            "(the training file was not found)")
        calibration = training_file

    def texts_of(path: Path) -> list[str]:
        df, column = read_texts(path, text_column=text_column or (training.text_column if training else None))
        return [str(t) for t in df[column].tolist()]

    texts = texts_of(calibration)
    extra: list[str] = texts_of(check) if check is not None else []
    if training_file is not None and training_file.resolve() != Path(calibration).resolve():
        try:
            extra += texts_of(training_file)
        except FastclfError:
            pass  # the training file's columns differ: the other texts suffice
    return calibration, texts, extra


def accelerate_command(model_dir: Path, variants: list[str], *, all_variants: bool, calibration: Path | None,
                       text_column: str | None, num_calibration: int, min_agreement: float | None, keep: bool,
                       check: Path | None = None, max_disagreement: float | None = None,
                       min_cosine: float = DEFAULT_MIN_COSINE, auto: bool = False, budget_points: float = 1.0,
                       include_torch: bool = False, verbose: bool = False,
                       progress: Callable[[Step], None] | None = None) -> AccelerateOutcome:
    """``fastclf accelerate``: read the texts, export and check the variants, and with ``auto``
    record the fastest that passes as the default. ``progress`` receives a :class:`Step` at
    each stage (and "note" steps with the lines worth showing).

    Raises:
        DataError: no variant named, no texts, bad tolerance.
        UnknownVariant, MissingDependency, ModelNotFound, ModelFormatError
    """

    def note(message: str) -> None:
        if progress:
            progress(Step("", "note", 0, 0, message=message))

    model_dir = Path(model_dir)
    cfg = ModelConfig.read(model_dir)
    if not variants and not all_variants and not auto:
        raise DataError("name variants with --variant NAME (repeatable), or use --all or --auto; "
                        "list them with: fastclf variants")
    if max_disagreement is not None and not 0 <= max_disagreement < 1:
        raise DataError(f"--max-disagreement must be between 0 and 1, got {max_disagreement}")
    if auto and budget_points is not None and not 0 <= budget_points < 100:
        raise DataError(f"--budget-points must be between 0 and 100, got {budget_points}")
    named = set(variants)
    variants, missing = _pick_variants(variants, all_variants=all_variants, auto=auto, include_torch=include_torch)
    if auto and max_disagreement is None and min_agreement is None:
        max_disagreement = budget_points / 100.0
    if missing:
        note(f"skipping {', '.join(missing)}: runtime not installed (pip install 'fastclf[all]')")
    calibration, texts, extra = _read_texts(calibration, check, text_column, cfg.training)
    if max_disagreement is None:
        max_disagreement = DEFAULT_MAX_DISAGREEMENT if min_agreement is None else 1.0 - min_agreement
    calibrate = any(get_spec(v).calibrated for v in variants)
    cal, chk = split_texts(texts, num_calibration, calibrate=calibrate, extra_check=extra)
    labeled = None
    if check is not None and not cfg.multi_label and any(get_spec(v).new_model for v in variants):
        from fastclf.data import read_labeled

        try:  # new models are judged by accuracy: --check's labels, when it has them
            data = read_labeled(check, text_column=text_column)
            labeled = (data.texts, data.labels) if set(data.classes) <= set(cfg.labels) else None
        except FastclfError:
            pass
    unjudged = [v for v in variants if get_spec(v).new_model and v not in named and labeled is None]
    if unjudged:  # --all / --auto: a new model without labeled texts to judge it would only fail
        variants = [v for v in variants if v not in unjudged]
        note(f"skipping {', '.join(unjudged)}: a new model is judged by its accuracy; give --check a labeled file")
    n_var = len([v for v in variants if v != REFERENCE])
    note(f"checking {n_var} variant{'s' if n_var != 1 else ''} against {REFERENCE} on {len(chk)} texts "
         f"not used for calibration (tolerance {max_disagreement:.1%} label disagreement at "
         f"{CONFIDENCE:.0%} confidence, mean cosine >= {min_cosine})"
         + (f"; static int8 calibrated on {len(cal)} texts of {calibration}" if calibrate else "")
         + (f"; new models judged by their accuracy loss on {len(labeled[0]) if labeled else 0} labeled texts "
            f"of --check, within the same {max_disagreement:.1%}" if any(get_spec(v).new_model for v in variants)
            else ""))
    bound = pass_bound(len(chk))
    if bound > COARSE_CHECK_RATIO * max(max_disagreement, 0.0):
        note(f"with {len(chk)} texts the check is coarse: even a variant that changes none of their labels may change "
             f"up to {bound:.0%} of others; add texts with --check FILE (a few hundred) for a finer check")
    run = accelerate(model_dir, variants, calibration_texts=texts, extra_check_texts=extra,
                     num_calibration=num_calibration, max_disagreement=max_disagreement, min_cosine=min_cosine,
                     keep=keep, calibration_source=str(calibration), timing=auto, verbose=verbose,
                     progress=progress, config=cfg, labeled_check=labeled)
    outcome = AccelerateOutcome(model_dir, run.results, missing, auto, run.reference_timing)
    if auto and run.reference_timing is not None:
        outcome.choice = choose_default(model_dir, run.results, run.reference_timing, budget_points=budget_points)
    return outcome


def format_result(r: ExportResult) -> str:
    """One line about a variant: its gate figures, timing and verdict."""
    if r.gate is None or r.parity is None:
        return f"{r.variant:<14} FAILED  {r.error}"
    g, p = r.gate, r.parity
    verdict = "KEPT" if r.kept_below_tolerance else ("OK" if r.ok else "FAILED")
    if g.accuracy is not None:  # a new model: judged by accuracy
        line = (f"{r.variant:<14} {verdict:<6}  accuracy {g.accuracy[1]:.1%} against {g.accuracy[0]:.1%} on {g.n} "
                f"labeled texts, loss {g.disagreement:.1%} ({g.confidence:.0%} bound {g.upper:.1%}); "
                f"a pass at these rates takes {g.needed or 'no number of'} labeled texts")
    else:
        line = (f"{r.variant:<14} {verdict:<6}  {p.flips}/{p.n} labels differ "
                f"({g.confidence:.0%} bounds {g.lower:.1%}-{g.upper:.1%}), cosine {p.mean_cosine:.4f}")
    if r.timing is not None:
        line += f", 1 text {r.timing.one_text_p50_ms:.1f} ms, {r.timing.texts_per_s:.0f} texts/s @{r.timing.batch_size}"
    line += f"  [{r.seconds:.0f} s]"
    if r.error:
        line += f"\n{'':<14} {r.error}"
    elif r.kept_below_tolerance:
        line += f"\n{'':<14} WARNING: {g.reason}; kept because --keep was given"
    return line



def format_baseline(t: Timing) -> str:
    """The line about torch-fp32's own timing (``--auto``)."""
    return (f"{REFERENCE:<14} ref     1 text {t.one_text_p50_ms:.1f} ms, {t.texts_per_s:.0f} texts/s "
            f"@{t.batch_size}  (the baseline)")


def format_summary(outcome: AccelerateOutcome) -> list[str]:
    """The closing lines of ``fastclf accelerate``: what was exported or chosen, what failed."""
    model_dir = outcome.model_dir
    if outcome.auto:
        if outcome.choice is None:
            return ["FAILED: torch-fp32 could not be timed; no default variant recorded"]
        m = outcome.choice.record["machine"]
        return [f"default variant: {outcome.choice.variant} (fastest for one text of those that pass, on {m['cpu']}, "
                f"{', '.join(m['isa'])}); Classifier.load({str(model_dir)!r}) and fastclf predict/eval/serve use it"]
    lines = []
    failed = [r.variant for r in outcome.results if not r.ok]
    ok = [r.variant for r in outcome.results if r.ok]
    if ok:
        lines.append(f"exported: {', '.join(ok)}; use one with Classifier.load({str(model_dir)!r}, variant={ok[0]!r}) "
                     f"or compare them with: fastclf benchmark {model_dir} TEST_FILE")
    if failed:
        lines.append(f"FAILED: {', '.join(failed)} (see the messages above); the model directory keeps its other "
                     "variants")
    return lines
