"""Export faster body variants into a model directory, each checked against torch-fp32.

An export is built in a staging folder beside the model directory, loaded back and
compared with the reference on texts that were not used to calibrate it. Only an export
that passes (or that the user keeps on purpose) is published: a new version of the model
(hard links to the unchanged files, the variant in ``body/``, the record in ``fastclf.json``)
is swapped with the live one in one step. A failure or Ctrl-C leaves the model as it was.
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

from .backends import REFERENCE, RUNTIME_DIRS, VARIANTS, export_variant, get_spec, load_body, reset_runtime_state, runtime_module
from .errors import DataError, FastclfError, MissingDependency, ParityError, first_line
from .model import (BODY_DIR, Classifier, commit_dir, fix_permissions, link_copy, make_staging, read_config,
                    remove_stale, staging_prefix, write_config, writer_lock)

DEFAULT_MIN_AGREEMENT = 0.98


@dataclass
class Parity:
    """How closely a variant follows torch-fp32 on held texts."""

    n: int
    agreement: float  # share of texts with the same predicted label (label set, if multi-label)
    max_proba_diff: float  # largest absolute difference of any class probability
    mean_cosine: float  # embeddings
    min_cosine: float


@dataclass
class ExportResult:
    variant: str
    ok: bool
    seconds: float = 0.0
    parity: Parity | None = None
    error: str = ""
    kept_below_tolerance: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def parity(reference: Classifier, candidate_body, texts: Sequence[str], *, batch_size: int = 32,
           ref_emb: np.ndarray | None = None) -> Parity:
    """Compare ``candidate_body`` (with ``reference``'s head) against ``reference`` on ``texts``;
    ``ref_emb``: the reference's embeddings of ``texts``, when already computed."""
    if ref_emb is None:
        ref_emb = reference.embed(texts, batch_size=batch_size)
    emb = np.asarray(candidate_body.encode(list(texts), batch_size=batch_size), dtype=np.float32)
    if emb.shape != ref_emb.shape:
        raise ParityError(f"{candidate_body.variant} returns embeddings of shape {emb.shape}, "
                          f"expected {ref_emb.shape}")
    ref_p = reference.head.predict_proba(ref_emb)
    p = reference.head.predict_proba(emb)
    ref_labels, labels = reference.labels_from_proba(ref_p), reference.labels_from_proba(p)
    cos = np.sum(ref_emb * emb, axis=1) / (np.linalg.norm(ref_emb, axis=1) * np.linalg.norm(emb, axis=1) + 1e-12)
    return Parity(
        n=len(texts),
        agreement=float(np.mean([a == b for a, b in zip(ref_labels, labels)])),
        max_proba_diff=float(np.max(np.abs(ref_p - p))),
        mean_cosine=float(np.mean(cos)),
        min_cosine=float(np.min(cos)),
    )


def split_texts(texts: Sequence[str], num_calibration: int, *, max_check: int = 200,
                seed: int = 0) -> tuple[list[str], list[str]]:
    """Shuffle ``texts`` and split them into (calibration, held-out check) sets that do not overlap.

    Raises:
        DataError: fewer than 4 distinct texts.
    """
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    if len(unique) < 4:
        raise DataError(f"need at least 4 distinct texts to calibrate and check variants, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    n_check = min(max_check, len(shuffled) // 2)
    return shuffled[n_check:][:num_calibration], shuffled[:n_check]


def _staging_copy(body_dir: Path, runtime: str, into: Path) -> Path:
    """Copy the body without the other runtimes' exports: the exporter may write freely in it."""
    skip = {d for d in RUNTIME_DIRS if d != runtime}
    staged = into / BODY_DIR
    shutil.copytree(body_dir, staged, ignore=lambda d, names: [n for n in names if Path(d) == body_dir and n in skip])
    return staged


def _promote(staged: Path, body_dir: Path, runtime: str) -> list[str]:
    """Move the new or changed files of ``runtime``'s folder from staging into the body."""
    moved = []
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
               check_texts: Sequence[str] | None = None, num_calibration: int = 200,
               min_agreement: float = DEFAULT_MIN_AGREEMENT, keep: bool = False,
               calibration_source: str = "", echo: Callable[[str], None] = print) -> list[ExportResult]:
    """Export ``variants`` of the model in ``model_dir``.

    Without ``check_texts``, the calibration texts are split into a calibration set and a
    held-out check set. Each export is compared with torch-fp32 on the check set; one whose
    label agreement is below ``min_agreement`` is discarded unless ``keep``.

    Raises:
        ModelNotFound, ModelFormatError: the model directory cannot be read.
        UnknownVariant: a variant name is not known.
        DataError: too few texts.
    """
    model_dir = Path(model_dir).resolve()
    for v in variants:
        get_spec(v)
    body_id = read_config(model_dir).get("body_id")
    remove_stale(model_dir)
    if check_texts is None:
        calibration, check = split_texts(calibration_texts, num_calibration)
    else:
        calibration = list(dict.fromkeys(calibration_texts))[:num_calibration]
        check = list(check_texts)
    reference = Classifier.load(model_dir, variant=REFERENCE)
    ref_emb = reference.embed(check)  # once: every variant is checked against the same embeddings
    body_dir = model_dir / BODY_DIR
    echo(f"checking each variant against {REFERENCE} on {len(check)} held texts; "
         f"calibrating static variants on {len(calibration)} texts")
    results = []
    for variant in variants:
        if variant == REFERENCE:
            continue
        spec = get_spec(variant)
        echo(f"[{variant}] exporting: {spec.description}")
        start = time.perf_counter()
        result = ExportResult(variant, ok=False)
        # beside the model, not in it: a concurrent save swaps the model folder, not this one
        with tempfile.TemporaryDirectory(prefix=staging_prefix(model_dir, f"staging-{variant}"),
                                         dir=model_dir.parent) as tmp:
            try:
                staged = _staging_copy(body_dir, spec.runtime, Path(tmp))
                export_variant(staged, variant, calibration)
                body = load_body(staged, variant)
                result.parity = parity(reference, body, check, ref_emb=ref_emb)
                del body
            except FastclfError as exc:
                result.error = str(exc)
            except Exception as exc:  # an exporter's own failure: report it, go on with the others
                result.error = f"export failed: {type(exc).__name__}: {first_line(exc)}"
            finally:
                reset_runtime_state()
            result.seconds = time.perf_counter() - start
            p = result.parity
            if p is not None:
                line = (f"[{variant}] agreement {p.agreement:.1%} on {p.n} texts, max prob diff "
                        f"{p.max_proba_diff:.4f}, cosine mean {p.mean_cosine:.4f} min {p.min_cosine:.4f} "
                        f"({result.seconds:.1f} s)")
                if p.agreement + 1e-12 < min_agreement:
                    if keep:
                        result.kept_below_tolerance = True
                        echo(f"{line}\n[{variant}] WARNING: below the {min_agreement:.0%} agreement tolerance; "
                             "kept because --keep was given")
                    else:
                        result.error = (f"agreement {p.agreement:.1%} is below the {min_agreement:.0%} tolerance: "
                                        "export discarded (use --keep to keep it anyway)")
                        echo(line)
                if not result.error:
                    try:
                        moved = _commit(model_dir, body_id, staged, variant, result, calibration_source,
                                        len(calibration), min_agreement)
                    except FastclfError as exc:
                        result.error = str(exc)
                    else:
                        result.ok = True
                        result.details["files"] = moved
                        if not result.kept_below_tolerance:
                            echo(f"{line}  OK")
            if result.error:
                echo(f"[{variant}] FAILED: {result.error}")
        results.append(result)
    return results


def _commit(model_dir: Path, body_id: str | None, staged: Path, variant: str, result: ExportResult, source: str,
            n_cal: int, min_agreement: float) -> list[str]:
    """Publish an export: a new version of the model (hard links to the unchanged files, the
    variant's files and the updated fastclf.json) swapped with the live one in one step, so
    a reader never sees variant files that fastclf.json does not record, or the reverse.

    Raises:
        ModelFormatError: the model's body was replaced (``fastclf train -o``) during the export.
    """
    from .errors import ModelFormatError

    with writer_lock(model_dir):
        if read_config(model_dir).get("body_id") != body_id:
            raise ModelFormatError(f"the model in {model_dir} was replaced while {variant} was exported; "
                                   "export discarded: run fastclf accelerate again")
        tmp = make_staging(model_dir)
        try:
            link_copy(model_dir, tmp,
                      skip=lambda p: p.parent == model_dir and p.name.startswith(".staging-"))
            moved = _promote(staged, tmp / BODY_DIR, get_spec(variant).runtime)
            _record(tmp, variant, result, source, n_cal, min_agreement)
            fix_permissions(tmp)
            commit_dir(tmp, model_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return moved


def _record(model_dir: Path, variant: str, result: ExportResult, source: str, n_cal: int,
            min_agreement: float) -> None:
    cfg = read_config(model_dir)
    spec = get_spec(variant)
    entry: dict[str, Any] = {**asdict(result.parity), "min_agreement": min_agreement,
                             "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "seconds": round(result.seconds, 1), "files": list(spec.files)}
    if spec.calibrated:
        entry["calibration"] = {"source": source, "texts": n_cal}
    if result.kept_below_tolerance:
        entry["kept_below_tolerance"] = True
    cfg.setdefault("variants", {})[variant] = entry
    write_config(model_dir, cfg)


def available_variants() -> list[str]:
    """Every non-reference variant whose runtime is installed."""
    out = []
    for name, spec in VARIANTS.items():
        if name == REFERENCE:
            continue
        try:
            runtime_module(spec)
        except MissingDependency:
            continue
        out.append(name)
    return out


def accelerate_command(model_dir: Path, variants: list[str], *, all_variants: bool, calibration: Path | None,
                       text_column: str | None, num_calibration: int, min_agreement: float, keep: bool,
                       check: Path | None = None, echo: Callable[[str], None] = print) -> bool:
    """``fastclf accelerate``: returns False when any export failed or was discarded."""
    from .data import read_texts

    cfg = read_config(model_dir)
    if not variants and not all_variants:
        raise DataError("name variants with --variant NAME (repeatable) or use --all; list them with: fastclf variants")
    for v in variants:
        get_spec(v)
    if all_variants:
        chosen = available_variants()
        missing = [v for v in VARIANTS if v != REFERENCE and v not in chosen]
        if missing:
            echo(f"skipping {', '.join(missing)}: runtime not installed (pip install 'fastclf[all]')")
        variants = list(dict.fromkeys(list(variants) + chosen))
    else:
        for v in variants:
            runtime_module(get_spec(v))  # a missing runtime fails before any work
    training = cfg.get("training", {})
    if calibration is None:
        source = training.get("source_path")
        if not source or not Path(source).is_file():
            raise DataError("give texts to calibrate and check the variants with --calibration FILE "
                            "(the training file was not found)")
        calibration = Path(source)
        echo(f"calibration texts: the training file {calibration}")

    def texts_of(path: Path) -> list[str]:
        df, column = read_texts(path, text_column=text_column or training.get("text_column"))
        return [str(t) for t in df[column].tolist()]

    texts = texts_of(calibration)
    check_texts = texts_of(check)[:500] if check is not None else None
    results = accelerate(model_dir, variants, calibration_texts=texts, check_texts=check_texts,
                         num_calibration=num_calibration, min_agreement=min_agreement, keep=keep,
                         calibration_source=str(calibration), echo=echo)
    failed = [r.variant for r in results if not r.ok]
    ok = [r.variant for r in results if r.ok]
    if ok:
        echo(f"exported: {', '.join(ok)}; use one with Classifier.load({str(model_dir)!r}, variant={ok[0]!r}) "
             f"or compare them with: fastclf benchmark {model_dir} TEST_FILE")
    if failed:
        echo(f"FAILED: {', '.join(failed)} (see the messages above); the model directory keeps its other variants")
    return not failed
