"""Export faster body variants into a model directory, each checked against torch-fp32.

An export is built in a staging folder beside the model directory, loaded back and
compared with the reference on texts that were not used to calibrate it. Only an export
that passes (or that the user keeps on purpose) is published: a new version of the model
(hard links to the unchanged files, the variant in ``body/``, the record in ``fastclf.json``)
is swapped with the live one in one step. A failure or Ctrl-C leaves the model as it was.


The parity gate (:func:`gate_decision`) fails a variant only when the check texts show, with
95% confidence, that it disagrees with torch-fp32 on more labels than the tolerance (the lower
Wilson bound of its disagreement rate is above it), or when its embeddings drift (mean cosine
below a floor). ``--auto`` (:func:`choose_default`) also times each passing variant on this
machine and records the fastest as the model's ``default_variant``.

The library reports progress through a callback (:class:`Step`) and returns
:class:`ExportResult` objects; only the CLI prints.
"""

from __future__ import annotations

import contextlib
import filecmp
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from .backends import (
    REFERENCE,
    RUNTIME_DIRS,
    VARIANTS,
    cpu_info,
    export_variant,
    get_spec,
    load_body,
    reset_runtime_state,
    runtime_module,
    runtime_settings,
)
from .config import BODY_DIR, ModelConfig, VariantRecord, now
from .errors import DataError, FastclfError, MissingDependency, ModelFormatError, ParityError, first_line
from .model import Classifier
from .modeldir import (
    commit_dir,
    fix_permissions,
    link_copy,
    make_staging,
    remove_stale,
    staging_prefix,
    writer_lock,
)

DEFAULT_MIN_AGREEMENT = 0.98
DEFAULT_MAX_DISAGREEMENT = 0.02  # the gate's tolerance: share of texts whose label may differ
DEFAULT_MIN_COSINE = 0.95  # mean embedding cosine with torch-fp32 below which a variant fails
CONFIDENCE = 0.95  # one-sided
MAX_CHECK_TEXTS = 1000
MIN_CHECK_TEXTS = 200  # calibration gives up texts to the check set until it has this many
AUTO_CANDIDATES = ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16", "openvino-int8")
TORCH_CANDIDATES = ("torch-bf16", "torch-int8", "inc-int8")
GATE_RULE = ("fail when the lower one-sided {conf:.0%} Wilson bound of the label disagreement rate exceeds "
             "{tol:.1%}, or when the mean embedding cosine is below {cos}")

logger = logging.getLogger(__name__)


def wilson_bounds(flips: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided ``confidence`` Wilson score bounds (lower, upper) of a rate seen as ``flips`` in ``n``."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(confidence)
    p = flips / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - margin), min(1.0, center + margin)


@dataclass
class GateDecision:
    """The parity gate's verdict on one variant."""

    passed: bool
    n: int
    flips: int
    disagreement: float  # flips / n
    lower: float  # one-sided confidence bounds of the disagreement rate
    upper: float
    confidence: float
    max_disagreement: float
    mean_cosine: float
    min_cosine: float
    reason: str  # why it failed; "" when it passed
    rule: str


def gate_decision(n: int, flips: int, mean_cosine: float, *, max_disagreement: float = DEFAULT_MAX_DISAGREEMENT,
                  min_cosine: float = DEFAULT_MIN_COSINE, confidence: float = CONFIDENCE) -> GateDecision:
    """Judge a variant from its label flips against torch-fp32 on ``n`` check texts.

    A variant fails only when the data show, with ``confidence``, that it disagrees more often
    than ``max_disagreement`` (the lower bound of the rate is above it), or when its embeddings
    drift (mean cosine below ``min_cosine``). One flip in 32 texts is weak evidence and passes;
    30 flips in 1,000 texts (a 3-point drop) fails.
    """
    lower, upper = wilson_bounds(flips, n, confidence)
    rule = GATE_RULE.format(conf=confidence, tol=max_disagreement, cos=min_cosine)
    reason = ""
    if n and lower > max_disagreement + 1e-12:
        reason = (f"{flips} of {n} labels differ from {REFERENCE}: with {confidence:.0%} confidence the "
                  f"disagreement is at least {lower:.1%}, above the {max_disagreement:.1%} tolerance")
    elif not math.isnan(mean_cosine) and mean_cosine < min_cosine:
        reason = f"mean embedding cosine {mean_cosine:.4f} is below {min_cosine}"
    elif n == 0:
        reason = "no check texts"
    return GateDecision(not reason, n, flips, flips / n if n else 0.0, lower, upper, confidence, max_disagreement,
                        mean_cosine, min_cosine, reason, rule)


@dataclass
class Parity:
    """How closely a variant follows torch-fp32 on held texts."""

    n: int
    agreement: float  # share of texts with the same predicted label (label set, if multi-label)
    max_proba_diff: float  # largest absolute difference of any class probability
    mean_cosine: float  # embeddings
    min_cosine: float
    flips: int = 0  # texts whose label differs


@dataclass
class Timing:
    """Speed of a loaded variant on this machine (head included)."""

    one_text_p50_ms: float
    one_text_calls: int
    batch_size: int
    texts_per_s: float
    batch_calls: int


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


def parity(reference: Classifier, candidate_body, texts: Sequence[str], *, batch_size: int = 32,
           ref_emb: np.ndarray | None = None) -> Parity:
    """Compare ``candidate_body`` (with ``reference``'s head) against ``reference`` on ``texts``;
    ``ref_emb``: the reference's embeddings of ``texts``, when already computed.

    Raises:
        ParityError: the candidate's embeddings have another shape.
    """
    if ref_emb is None:
        ref_emb = reference.embed(texts, batch_size=batch_size)
    emb = np.asarray(candidate_body.encode(list(texts), batch_size=batch_size), dtype=np.float32)
    if emb.shape != ref_emb.shape:
        raise ParityError(f"{candidate_body.variant} returns embeddings of shape {emb.shape}, "
                          f"expected {ref_emb.shape}")
    ref_p = reference.head.predict_proba(ref_emb)
    p = reference.head.predict_proba(emb)
    ref_labels, labels = reference.labels_from_proba(ref_p), reference.labels_from_proba(p)
    same = [a == b for a, b in zip(ref_labels, labels)]
    cos = np.sum(ref_emb * emb, axis=1) / (np.linalg.norm(ref_emb, axis=1) * np.linalg.norm(emb, axis=1) + 1e-12)
    return Parity(
        n=len(texts),
        agreement=float(np.mean(same)),
        max_proba_diff=float(np.max(np.abs(ref_p - p))),
        mean_cosine=float(np.mean(cos)),
        min_cosine=float(np.min(cos)),
        flips=int(len(same) - sum(same)),
    )


def time_body(body, head, texts: Sequence[str], *, one_text_seconds: float = 1.5, batch_seconds: float = 2.0,
              batch_size: int = 32) -> Timing:
    """Brief timing on this machine: p50 of one-text calls over ``one_text_seconds`` (texts taken in
    turn), then texts/s at ``batch_size`` over ``batch_seconds``, after one warm-up call each."""
    texts = [t for t in texts if t.strip()] or ["a short example text"]

    def call(batch: list[str]) -> None:
        head.predict_proba(np.asarray(body.encode(batch, batch_size=batch_size), dtype=np.float32))

    call(texts[:1])
    samples: list[float] = []
    end = time.perf_counter() + one_text_seconds
    i = 0
    while time.perf_counter() < end or len(samples) < 5:
        t0 = time.perf_counter()
        call([texts[i % len(texts)]])
        samples.append(time.perf_counter() - t0)
        i += 1
    batches = [(texts * (batch_size // len(texts) + 1))[k:k + batch_size] for k in range(0, len(texts), batch_size)]
    call(batches[0])
    done = calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < batch_seconds or calls < 2:
        batch = batches[calls % len(batches)]
        call(batch)
        done += len(batch)
        calls += 1
    elapsed = time.perf_counter() - start
    return Timing(round(float(np.median(samples)) * 1000, 3), len(samples), batch_size,
                  round(done / elapsed, 1), calls)


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False):
    """Hide what exporters and runtimes print (NNCF progress, transformers and hub warnings,
    inductor UserWarnings): stdout, stderr (also at the file-descriptor level, where C++
    libraries write) and Python warnings are captured and logged at DEBUG. ``verbose``: let
    everything through."""
    if verbose:
        yield
        return
    import io
    import os
    import sys
    import warnings

    buffer = io.StringIO()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in (1, 2):
            try:
                sys.stdout.flush() if fd == 1 else sys.stderr.flush()
            except Exception:
                pass
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
        caught: list = []
        try:
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buffer), \
                    contextlib.redirect_stderr(buffer):
                warnings.simplefilter("always")
                yield
        finally:
            for fd, dup in saved:
                os.dup2(dup, fd)
                os.close(dup)
            sink.seek(0)
            text = buffer.getvalue() + sink.read().decode("utf-8", "replace")
            for w in caught or []:
                logger.debug("%s: %s", w.category.__name__, w.message)
            if text.strip():
                logger.debug("third-party output:\n%s", text.strip()[-20000:])


def split_texts(texts: Sequence[str], num_calibration: int, *, max_check: int = MAX_CHECK_TEXTS,
                seed: int = 0, extra_check: Sequence[str] = (), calibrate: bool = True,
                min_check: int = MIN_CHECK_TEXTS) -> tuple[list[str], list[str]]:
    """Shuffle ``texts`` and split them into (calibration, check) sets that do not overlap.

    The check set is every text not used to calibrate: the rest of ``texts`` plus
    ``extra_check`` (a --check file, the training texts), at most ``max_check``. The
    calibration set takes up to ``num_calibration`` of ``texts`` (none when no variant is
    ``calibrate``d), leaving ``texts`` enough rows that the check set reaches ``min_check``
    texts where it can (and at least half of ``texts`` when there is nothing else).

    Raises:
        DataError: fewer than 4 distinct texts in all.
    """
    unique = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))
    extra = [t for t in dict.fromkeys(t for t in extra_check if isinstance(t, str) and t.strip())
             if t not in set(unique)]
    if len(unique) + len(extra) < 4:
        raise DataError(f"need at least 4 distinct texts to calibrate and check variants, "
                        f"got {len(unique) + len(extra)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    if not calibrate:
        n_cal = 0
    else:
        reserve = min(len(shuffled) // 2, max(0, min_check - len(extra)))
        n_cal = max(0, min(num_calibration, len(shuffled) - reserve))
    calibration = shuffled[:n_cal]
    check = (shuffled[n_cal:] + extra)[:max_check]
    return calibration, check


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


def format_result(r: ExportResult) -> str:
    """One line about a variant: its gate figures, timing and verdict."""
    if r.gate is None or r.parity is None:
        return f"{r.variant:<14} FAILED  {r.error}"
    g, p = r.gate, r.parity
    verdict = "KEPT" if r.kept_below_tolerance else ("OK" if r.ok else "FAILED")
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


def accelerate(model_dir: str | Path, variants: Sequence[str], *, calibration_texts: Sequence[str],
               check_texts: Sequence[str] | None = None, extra_check_texts: Sequence[str] = (),
               num_calibration: int = 200, min_agreement: float | None = None,
               max_disagreement: float | None = None, min_cosine: float = DEFAULT_MIN_COSINE,
               keep: bool = False, calibration_source: str = "", timing: bool = False, verbose: bool = False,
               progress: Callable[[Step], None] | None = None, config: ModelConfig | None = None) -> Acceleration:
    """Export ``variants`` of the model in ``model_dir``, each checked by the parity gate.

    Check texts: ``check_texts``, ``extra_check_texts`` and the calibration texts not used to
    calibrate (see :func:`split_texts`). Each export is compared with torch-fp32 on them and
    judged by :func:`gate_decision` (tolerance ``max_disagreement``, or ``1 - min_agreement``;
    default 2%); one that fails is discarded unless ``keep``. ``timing``: also time each
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
    ref_emb = reference.embed(check)  # once: every variant is checked against the same embeddings
    reference_timing = None
    if timing:
        if progress:
            progress(Step(REFERENCE, "time", 0, len(variants)))
        with quiet_third_party(verbose):
            reference_timing = time_body(reference.body, reference.head, check)
        if progress:
            progress(Step(REFERENCE, "baseline", 0, len(variants), timing=reference_timing))
    body_dir = model_dir / BODY_DIR
    todo = [v for v in variants if v != REFERENCE]
    results = []
    for index, variant in enumerate(todo, 1):
        spec = get_spec(variant)
        start = time.perf_counter()
        result = ExportResult(variant, ok=False)
        if progress:
            progress(Step(variant, "export", index, len(todo)))
        # beside the model, not in it: a concurrent save swaps the model folder, not this one
        with tempfile.TemporaryDirectory(prefix=staging_prefix(model_dir, f"staging-{variant}"),
                                         dir=model_dir.parent) as tmp:
            try:
                with quiet_third_party(verbose):
                    staged = _staging_copy(body_dir, spec.runtime, Path(tmp))
                    export_variant(staged, variant, calibration)
                    body = load_body(staged, variant)
                if progress:
                    progress(Step(variant, "check", index, len(todo)))
                with quiet_third_party(verbose):
                    result.parity = parity(reference, body, check, ref_emb=ref_emb)
                p = result.parity
                result.gate = gate_decision(p.n, p.flips, p.mean_cosine, max_disagreement=max_disagreement,
                                            min_cosine=min_cosine)
                result.runtime = runtime_settings(body)
                if timing and result.gate.passed:
                    if progress:
                        progress(Step(variant, "time", index, len(todo)))
                    with quiet_third_party(verbose):
                        result.timing = time_body(body, reference.head, check)
                del body
            except FastclfError as exc:
                result.error = str(exc)
            except Exception as exc:  # an exporter's own failure: report it, go on with the others
                result.error = f"export failed: {type(exc).__name__}: {first_line(exc)}"
            finally:
                reset_runtime_state()
            result.seconds = time.perf_counter() - start
            if result.gate is not None and not result.error:
                if not result.gate.passed:
                    if keep:
                        result.kept_below_tolerance = True
                    else:
                        result.error = (f"{result.gate.reason} (--min-agreement {1 - max_disagreement:.0%}): "
                                        "export discarded (use --keep to keep it anyway)")
                if not result.error:
                    try:
                        moved = _commit(model_dir, body_id, staged, variant, result, calibration_source,
                                        len(calibration))
                    except FastclfError as exc:
                        result.error = str(exc)
                    else:
                        result.ok = True
                        result.details["files"] = moved
        if progress:
            progress(Step(variant, "done", index, len(todo), result))
        results.append(result)
    return Acceleration(results, reference_timing)


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
    return VariantRecord(
        **asdict(result.parity),
        gate={"passed": g.passed, "n": g.n, "flips": g.flips, "disagreement": round(g.disagreement, 5),
              "interval": [round(g.lower, 5), round(g.upper, 5)], "confidence": g.confidence,
              "max_disagreement": g.max_disagreement, "min_cosine": g.min_cosine, "rule": g.rule},
        min_agreement=round(1 - g.max_disagreement, 6),
        exported=now(),
        seconds=round(result.seconds, 1),
        files=tuple(spec.files),
        runtime=runtime or None,
        calibration={"source": source, "texts": n_cal} if spec.calibrated else None,
        kept_below_tolerance=result.kept_below_tolerance,
        gate_failure=g.reason if result.kept_below_tolerance else None,
    )


@dataclass
class AutoChoice:
    """What ``accelerate --auto`` chose and why."""

    variant: str
    results: list[ExportResult]
    reference_timing: Timing
    record: dict[str, Any]  # fastclf.json's default_variant_choice


def choose_default(model_dir: str | Path, results: Sequence[ExportResult], reference_timing: Timing, *,
                   budget_points: float) -> AutoChoice:
    """Record as the model's ``default_variant`` the passing variant with the lowest one-text
    latency (torch-fp32 when none beats it), with the machine and every candidate's figures.

    Raises:
        ModelNotFound, ModelFormatError: the model directory cannot be read.
    """
    model_dir = Path(model_dir)
    figures: dict[str, Any] = {REFERENCE: {"passed": True, **asdict(reference_timing)}}
    best, best_ms = REFERENCE, reference_timing.one_text_p50_ms
    for r in results:
        row: dict[str, Any] = {"passed": bool(r.ok and not r.kept_below_tolerance)}
        if r.gate is not None:
            row.update(flips=r.gate.flips, n=r.gate.n, interval=[round(r.gate.lower, 5), round(r.gate.upper, 5)])
        if r.error:
            row["error"] = r.error[:300]
        if r.timing is not None:
            row.update(asdict(r.timing))
        figures[r.variant] = row
        if row["passed"] and r.timing is not None and r.timing.one_text_p50_ms < best_ms:
            best, best_ms = r.variant, r.timing.one_text_p50_ms
    record = {
        "variant": best,
        "machine": cpu_info(),
        "date": now(),
        "criterion": "lowest one-text p50 latency among the variants that pass the parity gate",
        "budget_points": budget_points,
        "load_average": _loadavg(),
        "candidates": figures,
    }
    with writer_lock(model_dir):  # read under the lock: the exports changed fastclf.json since the run began
        ModelConfig.read(model_dir).with_default_variant(best, record).write(model_dir)
    return AutoChoice(best, list(results), reference_timing, record)


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def auto_candidates(include_torch: bool = False) -> tuple[list[str], list[str]]:
    """(candidates whose runtime is installed, those skipped for a missing runtime)."""
    names = list(AUTO_CANDIDATES) + (list(TORCH_CANDIDATES) if include_torch else [])
    installed = set(available_variants())
    return [v for v in names if v in installed], [v for v in names if v not in installed]


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
    from .data import read_texts

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
    for v in variants:
        get_spec(v)
    missing: list[str] = []
    if auto:
        chosen, missing = auto_candidates(include_torch)
        variants = list(dict.fromkeys(list(variants) + chosen))
        if max_disagreement is None and min_agreement is None:
            max_disagreement = budget_points / 100.0
    elif all_variants:
        chosen = available_variants()
        missing = [v for v in VARIANTS if v != REFERENCE and v not in chosen]
        variants = list(dict.fromkeys(list(variants) + chosen))
    else:
        for v in variants:
            runtime_module(get_spec(v))  # a missing runtime fails before any work
    if missing:
        note(f"skipping {', '.join(missing)}: runtime not installed (pip install 'fastclf[all]')")
    training = cfg.training
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
    if max_disagreement is None:
        max_disagreement = DEFAULT_MAX_DISAGREEMENT if min_agreement is None else 1.0 - min_agreement
    calibrate = any(get_spec(v).calibrated for v in variants)
    cal, chk = split_texts(texts, num_calibration, calibrate=calibrate, extra_check=extra)
    n_var = len([v for v in variants if v != REFERENCE])
    note(f"checking {n_var} variant{'s' if n_var != 1 else ''} against {REFERENCE} on {len(chk)} texts "
         f"not used for calibration (tolerance {max_disagreement:.1%} label disagreement at "
         f"{CONFIDENCE:.0%} confidence, mean cosine >= {min_cosine})"
         + (f"; static int8 calibrated on {len(cal)} texts of {calibration}" if calibrate else ""))
    run = accelerate(model_dir, variants, calibration_texts=texts, extra_check_texts=extra,
                     num_calibration=num_calibration, max_disagreement=max_disagreement, min_cosine=min_cosine,
                     keep=keep, calibration_source=str(calibration), timing=auto, verbose=verbose,
                     progress=progress, config=cfg)
    outcome = AccelerateOutcome(model_dir, run.results, missing, auto, run.reference_timing)
    if auto and run.reference_timing is not None:
        outcome.choice = choose_default(model_dir, run.results, run.reference_timing, budget_points=budget_points)
    return outcome


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
