"""The work behind the CLI commands: each returns its result or text and reports progress lines to a callable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastclf.backends import VARIANTS
from fastclf.config import ModelConfig, VariantRecord
from fastclf.data import LabeledData, sample_shots, split_holdout, validate_for_training
from fastclf.errors import DataError
from fastclf.model import Classifier, check_answer
from fastclf.modeldir import ModelDir, check_output_dir

if TYPE_CHECKING:
    from fastclf.scoring.stream import ScoreResult
    from fastclf.training.trainer import TrainConfig


def prepare_data(data: LabeledData, *, shots: int | None, eval_data: LabeledData | None, holdout: float | None,
                 eval_max: int, seed: int) -> tuple[LabeledData, LabeledData | None, str]:
    """Apply --holdout, --shots and --eval: return (train, eval or None, description of the eval set)."""
    if eval_data is not None and holdout:
        raise DataError("give either --eval or --holdout, not both")
    described = "" if eval_data is None else f"{len(eval_data)} rows of {eval_data.source}"
    if holdout:
        data, eval_data = split_holdout(data, holdout, seed)
        described = f"{len(eval_data)} held-out rows ({holdout:.0%} of the data)"
    if shots:
        data, rest = sample_shots(data, shots, seed)
        if eval_data is None and len(rest):
            if len(rest) > eval_max:
                import numpy as np

                rest = rest.subset(sorted(np.random.default_rng(seed).choice(len(rest), eval_max, replace=False)))
            eval_data = rest
            described = f"{len(rest)} rows not sampled for training"
    validate_for_training(data)
    if eval_data is not None:
        if eval_data.multi_label != data.multi_label:
            raise DataError(f"{eval_data.source}: evaluation data and training data differ in kind "
                            "(multi-label or not)")
        unknown = sorted(set(eval_data.classes) - set(data.classes))
        if unknown:
            raise DataError(f"{eval_data.source}: labels {', '.join(map(repr, unknown[:5]))} are not in the training "
                            "data")
    return data, eval_data, described


#: classes above which the training line summarises the counts instead of listing every class
LIST_MAX_CLASSES = 12


def describe_counts(counts: dict[str, int]) -> str:
    """Examples a class, every class when there are few, else a summary naming the smallest."""
    if len(counts) <= LIST_MAX_CLASSES:
        return ", ".join(f"{c}: {n}" for c, n in counts.items())
    fewest = ", ".join(f"{c}: {n}" for c, n in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[:3])
    low, high = min(counts.values()), max(counts.values())
    spread = f"{low} a class" if low == high else f"{low} to {high} a class; fewest: {fewest}"
    return f"{len(counts)} classes, {spread}"


#: a training set whose largest class has this many times the examples of its smallest is called skewed
SKEWED_RATIO = 4


def imbalance_note(data: LabeledData, config: TrainConfig) -> str:
    """A line for a skewed single-label training set: what to expect and what to do; "" otherwise."""
    if data.multi_label:
        return ""
    counts = data.counts()
    (big, n_big), (small, n_small) = (max(counts.items(), key=lambda kv: kv[1]),
                                      min(counts.items(), key=lambda kv: kv[1]))
    if n_big < SKEWED_RATIO * n_small:
        return ""
    if config.class_weight == "balanced":
        return (f"note: the classes are skewed ({big}: {n_big} examples, {small}: {n_small}); the head weighs "
                "each class inversely to its count (--class-weight balanced)")
    return (f"note: the classes are skewed ({big}: {n_big} examples, {small}: {n_small}): the model will favour the "
            "common classes; label more of the rare ones, or try --class-weight balanced")


def chance_note(selection: Any, data: LabeledData) -> str:
    """A line when the recipe's cross-validated accuracy is no better than the most common class's share; "" else."""
    if data.multi_label or not getattr(selection, "scores", None):
        return ""
    score = selection.scores.get(str(selection.epochs))
    if score is None:
        return ""
    counts = data.counts()
    common, n_common = max(counts.items(), key=lambda kv: kv[1])
    share = n_common / len(data)
    if score > share + 0.5 / len(data):  # more than half an example above it
        return ""
    return (f"note: the cross-validated accuracy ({score:.3f}) is no better than always answering '{common}' "
            f"({share:.3f}): the model has learnt little from these examples. More examples a class, or a body "
            "that knows their language and domain (--model), may help")


def duplicates_note(data: LabeledData) -> str:
    """A line when texts repeat: how many, and how many carry different labels; "" otherwise."""
    from fastclf.training.selection import duplicate_groups

    groups = duplicate_groups(data.texts)
    if groups is None:
        return ""
    seen: dict[int, list[Any]] = {}
    for g, label in zip(groups.tolist(), data.labels):
        seen.setdefault(g, []).append(tuple(sorted(label)) if data.multi_label else label)
    repeated = {g: labels for g, labels in seen.items() if len(labels) > 1}
    rows = sum(len(labels) for labels in repeated.values())
    note = (f"note: {len(repeated)} {'texts appear' if len(repeated) > 1 else 'text appears'} more than once "
            f"({rows} rows); the cross-validation keeps the copies of a text in one fold")
    conflicting = sum(1 for labels in repeated.values() if len(set(labels)) > 1)
    if conflicting:
        note += (f"; {conflicting} of them {'carry' if conflicting > 1 else 'carries'} different labels: "
                 "check those rows")
    return note


def train_command(data_path: Path, output: Path, config: TrainConfig, *, read: Callable[[Path], LabeledData],
                  shots: int | None, eval_file: Path | None, holdout: float | None, eval_max: int,
                  say: Callable[[str], None]) -> Path:
    """``fastclf train``: read, validate, train, evaluate, save atomically (nothing on error), telling ``say`` how it
    goes; the saved folder. FileExistsError when ``output`` exists and is not a fastclf model."""
    check_output_dir(output)
    data = read(data_path)
    eval_data = read(eval_file) if eval_file else None
    train_data, eval_data, eval_desc = prepare_data(data, shots=shots, eval_data=eval_data, holdout=holdout,
                                                    eval_max=eval_max, seed=config.seed)
    from fastclf.evaluation import evaluate, format_report
    from fastclf.training.trainer import resolve_model, train

    kind = ", multi-label (a text may carry several labels; texts a label: " if train_data.multi_label else " ("
    say(f"training on {len(train_data)} examples{kind}{describe_counts(train_data.counts())})")
    for note in (imbalance_note(train_data, config), duplicates_note(train_data)):
        if note:
            say(note)
    say(f"base model: {resolve_model(config.model)[1]}")
    result = train(train_data, config, progress=say if config.show_progress else None)
    clf, info = result.classifier, result.info
    if info["long_texts"]:
        say(f"{info['long_texts']} of {len(train_data)} texts are longer than the body's window: "
            f"{'split into windows whose embeddings are pooled' if config.long_texts == 'chunk' else 'truncated'}")
    say(f"recipe: {info['description']}")
    say(f"probabilities: {info['calibration']}")
    if note := chance_note(result.selection, train_data):
        say(note)
    steps = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in info["seconds_by_step"].items())
    say(f"trained in {result.seconds:.1f} s ({steps}; loss: {info['loss']}, bf16: {info['bf16']})")
    if eval_data is not None:
        say(f"evaluating on {eval_desc}")
        metrics = evaluate(clf, eval_data)
        conf = {k: metrics["confidence"][k] for k in ("log_loss", "ece")} if "confidence" in metrics else {}
        clf.config = clf.config.with_eval({"data": eval_desc, **{k: metrics[k] for k in ("n", "accuracy", "macro_f1")},
                                           **conf})
        say(format_report(metrics, [str(c) for c in clf.classes_]))
    path = clf.save(output)
    say(f"saved to {path}")
    say(f'next: fastclf predict {output} "some text"   |   fastclf accelerate {output} --all')
    return path


@dataclass(frozen=True)
class Prediction:
    """One text's label (a multi-label model's: a list, or the unsure label), probabilities, confidence and set."""

    text: str
    label: str | list[str]
    proba: dict[str, float]
    confidence: float = 1.0
    labels: list[str] | None = None  # the prediction set

    def to_dict(self) -> dict[str, Any]:
        out = {"text": self.text, "label": self.label, "proba": self.proba, "confidence": self.confidence}
        return out if self.labels is None else {**out, "prediction_set": self.labels}


def predict_command(model_dir: Path, texts: Sequence[str], *, input_file: str | None, output: str | None,
                    text_column: str | None, variant: str | None, batch_size: int, engine: str, concurrency: int,
                    workers: int | None, chunk_size: int | None, quiet: bool,
                    answer: dict[str, Any]) -> list[Prediction] | ScoreResult:
    """``fastclf predict``: label ``texts``, or score ``input_file`` (files, a folder, a glob) in chunks of rows
    into ``output`` (CSV on stdout without); ``answer`` (abstention, sets) is checked before any text is scored."""
    if not texts and input_file is None:
        raise DataError("give texts to label, or --input FILE")
    if texts and input_file is not None:
        raise DataError("give either texts or --input FILE, not both")
    if output is not None and input_file is None:
        raise DataError("--output writes the scored --input file; give --input FILE")
    answer = {k: v for k, v in answer.items() if v is not None}
    check_answer(ModelConfig.read(model_dir), **answer)
    if input_file is not None and engine == "ray":
        from fastclf.scoring.ray import predict_files as ray_predict_files

        return ray_predict_files(model_dir, input_file, output, variant=variant, text_column=text_column,
                                 batch_size=batch_size, rows_per_call=chunk_size or 256, concurrency=concurrency,
                                 progress=not quiet, answer=answer)
    if input_file is not None:
        from fastclf.scoring import stream

        return stream.predict_files(model_dir, input_file, output, variant=variant, workers=workers,
                                    text_column=text_column, batch_size=batch_size,
                                    chunk_size=chunk_size or stream.DEFAULT_CHUNK_SIZE, progress=not quiet,
                                    answer=answer)
    if engine != "local":
        raise DataError("--engine applies to --input files only")
    clf = Classifier.load(model_dir, variant=variant)
    proba = clf.predict_proba(list(texts), batch_size=batch_size)
    labels, confidence, sets = clf.answers(proba, **answer)
    sets_or_none: list[list[str] | None] = list(sets) if sets is not None else [None] * len(texts)
    classes = [str(c) for c in clf.classes_]
    return [Prediction(text, label, dict(zip(classes, map(float, row))), float(c), s) for text, label, row, c, s in
            zip(texts, labels, proba, confidence, sets_or_none)]


@dataclass
class EvalOutcome:
    """``fastclf eval``: the metrics of a model (as run by ``variant``) on a labeled file."""

    variant: str
    classes: list[str]
    metrics: dict[str, Any]
    report: Path | None = None  # the HTML page, with --report


def eval_command(model_dir: Path, data: Path, *, read: Callable[[Path], LabeledData], variant: str | None,
                 batch_size: int, report: Path | None = None) -> EvalOutcome:
    """``fastclf eval``: a model's metrics on labeled data; with ``report``, the HTML page written in that folder."""
    from fastclf.evaluation import evaluate

    clf = Classifier.load(model_dir, variant=variant)
    if report is not None and clf.multi_label:
        raise DataError("--report plots a single-label model's confidence; this model is multi-label")
    metrics = evaluate(clf, read(data), batch_size=batch_size)
    classes = [str(c) for c in clf.classes_]
    if report is not None:
        from fastclf.benchmark.eval_report import write_eval_report

        report = write_eval_report(metrics, classes, report, title=f"fastclf eval: {model_dir} on {data}")
    return EvalOutcome(clf.variant, classes, metrics, report)


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _shown(value: Any) -> Any:
    return "?" if value is None else value


def info_text(model_dir: Path, cfg: ModelConfig) -> str:
    """``fastclf info``: a readable summary of a model's config; odd or missing fields show as '?'."""
    body, training = cfg.body, cfg.training
    lines = [
        f"model: {model_dir}",
        f"format: fastclf v{cfg.format_version} (written by fastclf {_shown(cfg.fastclf_version)}, "
        f"{_shown(cfg.created)})",
        f"labels ({len(cfg.labels)}{', multi-label' if cfg.multi_label else ''}): {', '.join(cfg.labels)}",
        f"base model: {_shown(cfg.base_model)}",
        f"body: pooling {_shown(body.pooling)}, normalize {_shown(body.normalize)}, "
        f"dim {_shown(body.dim)}, max length {_shown(body.max_seq_length)}",
    ]
    if training is not None:
        settings = training.settings or {}
        lines.append(f"trained on {_shown(training.examples)} examples in {_shown(training.seconds)} s "
                     f"({settings.get('loss', '?')} loss)")
        if isinstance(recipe := (training.selection or {}).get("description"), str):
            lines.append(f"recipe: {recipe}")
        if ev := training.eval:
            lines.append(f"evaluation: accuracy {_num(ev.get('accuracy'), '.4f')}, "
                         f"macro-F1 {_num(ev.get('macro_f1'), '.4f')} on {ev.get('data', '?')}")
    cal = cfg.calibration
    lines.append("calibration: " + ("none (the head's probabilities as they are)" if cal is None else
                                    f"temperature {', '.join(f'{t:g}' for t in cal.temperature)} fitted on {cal.n} "
                                    f"held-out texts" + (", prediction sets available" if cal.conformal else "")))
    names = ModelDir(model_dir, cfg).exported()
    width = max(map(len, names))
    lines += ["variants:"] + [f"  {name:<{width}} {_parity_text(cfg.variants.get(name))}" for name in names]
    lines += _default_variant_lines(model_dir, cfg)
    if cfg.versions:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in cfg.versions.items()))
    return "\n".join(lines)


def _accuracy_text(gate: dict[str, Any]) -> str:
    try:
        (ref, acc), hi = gate["accuracy"], gate["interval"][1]
        return (f"accuracy {acc:.1%} against {ref:.1%} on {gate['n']} labeled texts (loss {gate['disagreement']:.1%}, "
                f"{gate.get('confidence', 0.95):.0%} bound {hi:.1%}, tolerance {gate['max_disagreement']:.1%})")
    except (TypeError, ValueError, KeyError, IndexError):  # none measured (no labeled texts), or edited by hand
        return "accuracy not measured (no labeled check texts)"


def _parity_text(p: VariantRecord | None) -> str:
    gate = (p.gate if p is not None else None) or {}
    if "accuracy" in gate:  # a new model, judged by its accuracy on labeled texts
        text = _accuracy_text(gate)
    elif p is None:
        return "reference"
    elif not p.has_figures:
        return "exported, no parity figures recorded"
    elif "interval" in gate:
        lo, hi = gate["interval"]
        text = (f"{gate['flips']}/{gate['n']} labels differ ({gate.get('confidence', 0.95):.0%} bounds "
                f"{lo:.1%}-{hi:.1%}, tolerance {gate['max_disagreement']:.1%}), agreement {p.agreement:.2%}, "
                f"cosine {p.mean_cosine:.4f}")
    else:
        text = (f"agreement {p.agreement:.2%}, max prob diff {_num(p.max_proba_diff, '.4f')}, "
                f"cosine {p.mean_cosine:.4f} on {_shown(p.n)} texts")
    if p is not None and p.kept_below_tolerance:
        text += " [kept below tolerance]"
    return text


def _default_variant_lines(model_dir: Path, cfg: ModelConfig) -> list[str]:
    """The default variant, and where and why ``accelerate --auto`` chose it."""
    try:
        used = ModelDir(model_dir, cfg).default()
    except Exception:  # an unreadable body folder: info still shows the rest
        used = cfg.default_variant or "torch-fp32"
    recorded, choice = cfg.default_variant, cfg.default_variant_choice
    lines = [f"default variant: {used}" + (f" (recorded {recorded}, not usable here)" if recorded not in (None, used)
                                           else "")]
    if choice is None:
        return lines
    m, load = choice.get("machine") or {}, choice.get("load_average")
    lines += [f"  chosen {choice.get('date', '?')} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores; "
              f"{', '.join(m.get('isa', [])) or 'no listed ISA'})"
              + (f", load average {load[0]:.2f}" if isinstance(load, list) and load else ""),
              f"  by: {choice.get('criterion', '?')}"]
    for name, fig in (choice.get("candidates") or {}).items():
        if isinstance(fig, dict):
            text = (f"1 text p50 {fig['one_text_p50_ms']:.2f} ms, {fig.get('texts_per_s', 0):.0f} texts/s @32"
                    if "one_text_p50_ms" in fig else "not timed")
            lines.append(f"  {name:<14} {text}, {'passes' if fig.get('passed') else 'fails the gate'}")
    return lines


def variants_text(model_dir: Path | None) -> str:
    """``fastclf variants``: every variant and what it is, marked exported or not in ``model_dir``."""
    exported = ModelDir(model_dir).exported() if model_dir is not None else None
    width = max(len(n) for n in VARIANTS)
    lines = [("" if exported is None else "[exported] " if name in exported else "[-]        ")
             + f"{name:<{width}}  {spec.description}" + (" (calibrated)" if spec.calibrated else "")
             for name, spec in VARIANTS.items()]
    if model_dir is not None:
        lines.append(f"\nexport more with: fastclf accelerate {model_dir} --variant NAME  (or --all)")
    return "\n".join(lines)
