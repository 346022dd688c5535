"""``fastclf accelerate``: pick the variants, export and judge them (``--auto``: record the default); its lines."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from fastclf.accelerate.auto import CRITERION, AutoChoice, available_variants, candidates, choose_default
from fastclf.accelerate.export import ExportResult, Step, accelerate
from fastclf.accelerate.parity import CONFIDENCE, within
from fastclf.backends import REFERENCE, VARIANTS, get_spec, runtime_module
from fastclf.config import ModelConfig, TrainingRecord
from fastclf.errors import DataError, FastclfError


def _pick_variants(variants: list[str], *, all_variants: bool, auto: bool,
                   include_torch: bool) -> tuple[list[str], list[str]]:
    """(the variants to export, those skipped for a missing runtime); a named one must exist and have its runtime."""
    for v in variants:
        get_spec(v)
    if auto:
        chosen, missing = candidates(include_torch)
    elif all_variants:
        chosen = available_variants()
        missing = [v for v in VARIANTS if v != REFERENCE and v not in chosen]
    else:
        for v in variants:
            runtime_module(get_spec(v))  # a missing runtime fails before any work
        return variants, []
    return list(dict.fromkeys(variants + chosen)), missing


def _read_texts(calibration: Path | None, check: Path | None, text_column: str | None,
                training: TrainingRecord | None) -> tuple[Path, list[str], list[str]]:
    """(the calibration file, default the training file; its texts; ``check``'s and the training file's texts)."""
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
        with contextlib.suppress(FastclfError):  # the training file's columns differ: the other texts suffice
            extra += texts_of(training_file)
    return calibration, texts, extra


def _labeled(check: Path, text_column: str | None, cfg: ModelConfig) -> tuple[list[str], list[str]] | None:
    """``check``'s texts and labels, which judge the new models by accuracy; None when it has none of the model's."""
    from fastclf.data import read_labeled

    try:
        data = read_labeled(check, text_column=text_column)
    except FastclfError:
        return None
    return (data.texts, [str(label) for label in data.labels]) if set(data.classes) <= set(cfg.labels) else None


def accelerate_command(model_dir: Path, variants: list[str], *, all_variants: bool, auto: bool, include_torch: bool,
                       calibration: Path | None, check: Path | None, text_column: str | None, num_calibration: int,
                       max_accuracy_loss: float, min_cosine: float, keep: bool, verbose: bool,
                       progress: Callable[[Step], None]) -> tuple[list[ExportResult], AutoChoice | None]:
    """``fastclf accelerate``: each variant's export judged within ``max_accuracy_loss`` points; with ``auto``, the
    fastest that passes recorded as the default (the choice). DataError: no variant, no texts, a bad tolerance."""

    def note(message: str) -> None:
        progress(Step("", "note", 0, 0, message=message))

    cfg = ModelConfig.read(model_dir)
    if not variants and not all_variants and not auto:
        raise DataError("name variants with --variant NAME (repeatable), or use --all or --auto; "
                        "list them with: fastclf variants")
    if not 0 <= max_accuracy_loss <= 100:
        raise DataError(f"--max-accuracy-loss must be between 0 and 100 points, got {max_accuracy_loss:g}")
    named = set(variants)
    variants, missing = _pick_variants(variants, all_variants=all_variants, auto=auto, include_torch=include_torch)
    if missing:
        note(f"skipping {', '.join(missing)}: runtime not installed (pip install 'fastclf[all]')")
    calibration, texts, extra = _read_texts(calibration, check, text_column, cfg.training)
    new = [v for v in variants if get_spec(v).new_model]
    labeled = _labeled(check, text_column, cfg) if new and check is not None and not cfg.multi_label else None
    unjudged = [v for v in new if v not in named and labeled is None]
    if unjudged:  # --all / --auto: a new model without labeled texts to judge it would only fail
        variants = [v for v in variants if v not in unjudged]
        note(f"skipping {', '.join(unjudged)}: a new model is judged by its accuracy; give --check a labeled file")
    run = accelerate(model_dir, variants, calibration_texts=texts, extra_check_texts=extra,
                     num_calibration=num_calibration, max_accuracy_loss=max_accuracy_loss, min_cosine=min_cosine,
                     keep=keep, calibration_source=str(calibration), timing=auto, verbose=verbose,
                     progress=progress, config=cfg, labeled_check=labeled)
    if auto and run.reference_timing is not None:  # always timed with auto
        return run.results, choose_default(model_dir, run.results, run.reference_timing,
                                           max_accuracy_loss=max_accuracy_loss)
    return run.results, None


def format_result(r: ExportResult) -> str:
    """One line about a variant: its gate figure (labels changed, or a new model's accuracy loss), timing, verdict."""
    if r.gate is None or r.parity is None:
        return f"{r.variant:<14} FAILED  {r.error}"
    g, p = r.gate, r.parity
    verdict = "KEPT" if r.kept_below_tolerance else ("OK" if r.ok else "FAILED")
    if g.accuracy is not None:
        line = (f"accuracy loss {g.disagreement:.1%} on {g.n} labeled texts ({g.accuracy[1]:.1%} against "
                f"{g.accuracy[0]:.1%}; {g.confidence:.0%} bound {g.upper:.1%}, allowed {g.tolerance:.1%})")
    else:
        line = (f"{p.flips}/{p.n} labels differ ({g.confidence:.0%} bounds {g.lower:.1%}-{g.upper:.1%}, allowed "
                f"{g.tolerance:.1%}), cosine {p.mean_cosine:.4f}")
    line = f"{r.variant:<14} {verdict:<6}  {line}"
    if r.timing is not None:
        line += f", 1 text {r.timing.one_text_p50_ms:.1f} ms, {r.timing.texts_per_s:.0f} texts/s @{r.timing.batch_size}"
    line += f"  [{r.seconds:.0f} s]"
    if r.error:
        line += f"\n{'':<14} {r.error}"
    elif r.kept_below_tolerance:
        line += f"\n{'':<14} WARNING: {g.reason}; kept because --keep was given"
    return line


def format_summary(model_dir: Path, results: list[ExportResult], c: AutoChoice | None) -> list[str]:
    """The closing lines of ``fastclf accelerate``: what was exported or chosen and why, what failed."""
    where = f"Classifier.load({str(model_dir)!r}"
    failed = [r.variant for r in results if not r.ok]
    if c is not None:
        ms = {v: c.record["candidates"][v]["one_text_p50_ms"] for v in c.passed}
        times = ", ".join(f"{v} {ms[v]:.1f} ms" for v in sorted(ms, key=ms.__getitem__))
        m = c.record["machine"]
        lines = [f"default variant: {c.variant}, {CRITERION} {within(c.record['max_accuracy_loss'])} at "
                 f"{CONFIDENCE:.0%} confidence (one text: {times}; on {m['cpu']}, {', '.join(m['isa'])}); "
                 f"{where}) and fastclf predict/eval/serve use it"]
        failed = [r.variant for r in results if r.variant not in c.passed]
        return lines + ([f"not chosen, failed the gate or the export: {', '.join(failed)}"] if failed else [])
    ok = [r.variant for r in results if r.ok]
    lines = [f"exported: {', '.join(ok)}; use one with {where}, variant={ok[0]!r}) or compare them with: "
             f"fastclf benchmark {model_dir} TEST_FILE"] if ok else []
    if failed:
        lines.append(f"FAILED: {', '.join(failed)} (see the messages above); the model directory keeps its other "
                     "variants")
    return lines
