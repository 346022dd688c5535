"""The work behind the CLI commands, kept in the library so it can be tested and reused.

Each function takes an ``echo`` callable for its human-readable output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import VARIANTS
from .data import LabeledData, sample_shots, split_holdout, validate_for_training
from .errors import DataError
from .model import CONFIG_FILE, Classifier, exported_variants

if TYPE_CHECKING:
    from .trainer import TrainConfig

Echo = Callable[[str], None]


def _check_output(output: Path) -> None:
    if output.exists() and not (output.is_dir() and (not any(output.iterdir()) or (output / CONFIG_FILE).is_file())):
        raise FileExistsError(f"{output} exists and is not a fastclf model; choose another output directory")


def prepare_data(data: LabeledData, *, shots: int | None, eval_data: LabeledData | None, holdout: float | None,
                 eval_max: int, seed: int) -> tuple[LabeledData, LabeledData | None, str]:
    """Apply --holdout, --shots and --eval: return (train, eval or None, description of the eval set)."""
    described = ""
    if eval_data is not None and holdout:
        raise DataError("give either --eval or --holdout, not both")
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
    if eval_data is not None and not described:
        described = f"{len(eval_data)} rows of {eval_data.source}"
    validate_for_training(data)
    if eval_data is not None:
        if eval_data.multi_label != data.multi_label:
            raise DataError(f"{eval_data.source}: evaluation data and training data differ in kind (multi-label or not)")
        unknown = sorted(set(eval_data.classes) - set(data.classes))
        if unknown:
            raise DataError(
                f"{eval_data.source}: labels {', '.join(map(repr, unknown[:5]))} are not in the training data"
            )
    return data, eval_data, described


def train_command(data_path: Path, output: Path, config: TrainConfig, *, read: Callable[[Path], LabeledData],
                  shots: int | None, eval_file: Path | None, holdout: float | None, eval_max: int,
                  echo: Echo) -> Classifier:
    """``fastclf train``: read, validate, train, evaluate, save atomically. Nothing is written on error."""
    _check_output(output)
    data = read(data_path)
    eval_data = read(eval_file) if eval_file else None
    train_data, eval_data, eval_desc = prepare_data(data, shots=shots, eval_data=eval_data, holdout=holdout,
                                                    eval_max=eval_max, seed=config.seed)
    from .metrics import evaluate, format_report
    from .trainer import resolve_model, train

    counts = ", ".join(f"{c}: {n}" for c, n in train_data.counts().items())
    echo(f"training on {len(train_data)} examples ({counts})")
    echo(f"base model: {resolve_model(config.model)[1]}")
    result = train(train_data, config, progress=echo if config.show_progress else None)
    clf = result.classifier
    info = result.info
    if info["long_texts"]:
        echo(f"{info['long_texts']} of {len(train_data)} texts are longer than the body's window: "
             f"{'split into windows whose embeddings are pooled' if config.long_texts == 'chunk' else 'truncated'}")
    echo(f"recipe: {info['description']}")
    steps = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in info["seconds_by_step"].items())
    echo(f"trained in {result.seconds:.1f} s ({steps}; loss: {info['loss']}, bf16: {info['bf16']})")
    if eval_data is not None:
        echo(f"evaluating on {eval_desc}")
        metrics = evaluate(clf, eval_data)
        clf.config["training"]["eval"] = {"data": eval_desc, **{k: metrics[k] for k in ("n", "accuracy", "macro_f1")}}
        echo(format_report(metrics, [str(c) for c in clf.classes_]))
    path = clf.save(output)
    echo(f"saved to {path}")
    echo(f'next: fastclf predict {output} "some text"   |   fastclf accelerate {output} --all')
    return clf


def predict_command(model_dir: Path, texts: list[str], *, input_file: str | Path | None, output: str | Path | None,
                    text_column: str | None, variant: str | None, batch_size: int, as_json: bool, echo: Echo,
                    engine: str = "local", concurrency: int = 1, chunk_size: int | None = None,
                    quiet: bool = False) -> None:
    """``fastclf predict``: label command-line texts, or score a file, a folder or a glob of
    files in chunks of rows into a new file (or folder), or CSV on stdout without ``output``.

    Raises:
        DataError, DataFileNotFound: bad texts, inputs or outputs.
        MissingDependency: ``engine="ray"`` without the ray extra.
    """
    if not texts and input_file is None:
        raise DataError("give texts to label, or --input FILE")
    if texts and input_file is not None:
        raise DataError("give either texts or --input FILE, not both")
    if output is not None and input_file is None:
        raise DataError("--output writes the scored --input file; give --input FILE")
    if input_file is not None:
        _predict_input(model_dir, input_file, output, text_column=text_column, variant=variant,
                       batch_size=batch_size, echo=echo, engine=engine, concurrency=concurrency,
                       chunk_size=chunk_size, quiet=quiet)
        return
    if engine != "local":
        raise DataError("--engine applies to --input files only")
    clf = Classifier.load(model_dir, variant=variant)
    proba = clf.predict_proba(texts, batch_size=batch_size)
    labels = clf.labels_from_proba(proba)
    classes = [str(c) for c in clf.classes_]
    for text, label, row in zip(texts, labels, proba):
        if as_json:
            echo(json.dumps({"text": text, "label": label, "proba": dict(zip(classes, map(float, row)))}))
        elif clf.multi_label:
            shown = ", ".join(f"{c} {p:.3f}" for c, p in zip(classes, row) if c in label) or "(none)"
            echo(f"{shown}\t{text}")
        else:
            echo(f"{label}\t{row.max():.3f}\t{text}")


def _predict_input(model_dir: Path, input_file: str | Path, output: str | Path | None, *, text_column: str | None,
                   variant: str | None, batch_size: int, echo: Echo, engine: str, concurrency: int,
                   chunk_size: int | None, quiet: bool) -> None:
    from . import stream

    if engine == "ray":
        from .ray import predict_files as ray_predict_files

        result = ray_predict_files(model_dir, input_file, output, variant=variant, text_column=text_column,
                                   batch_size=batch_size, rows_per_call=chunk_size or 256, concurrency=concurrency,
                                   progress=not quiet)
    elif engine == "local":
        clf = Classifier.load(model_dir, variant=variant)
        result = stream.predict_files(clf, input_file, output, text_column=text_column, batch_size=batch_size,
                                      chunk_size=chunk_size or stream.DEFAULT_CHUNK_SIZE, progress=not quiet)
    else:
        raise DataError(f"unknown engine {engine!r}; use local or ray")
    if output is None:
        return
    if len(result.outputs) == 1:
        echo(f"wrote {result.rows} rows to {result.outputs[0]}")
    else:
        echo(f"wrote {result.rows} rows to {len(result.outputs)} files in {output}")


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _num(value: Any, fmt: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "?"
    return format(value, fmt)


def info_text(model_dir: Path, cfg: dict[str, Any]) -> str:
    """``fastclf info``: a readable summary of a model's config; odd or missing fields show as '?'."""
    body = _obj(cfg.get("body"))
    training = _obj(cfg.get("training"))
    labels = [str(x) for x in cfg.get("labels") or []]
    lines = [
        f"model: {model_dir}",
        f"format: fastclf v{cfg.get('format_version')} (written by fastclf {cfg.get('fastclf_version', '?')}, "
        f"{cfg.get('created', '?')})",
        f"labels ({len(labels)}{', multi-label' if cfg.get('multi_label') is True else ''}): {', '.join(labels)}",
        f"base model: {cfg.get('base_model', '?')}",
        f"body: pooling {body.get('pooling', '?')}, normalize {body.get('normalize', '?')}, "
        f"dim {body.get('dim', '?')}, max length {body.get('max_seq_length', '?')}",
    ]
    if training:
        lines.append(f"trained on {training.get('examples', '?')} examples in {training.get('seconds', '?')} s "
                     f"({_obj(training.get('settings')).get('loss', '?')} loss)")
        selection = _obj(training.get("selection"))
        if isinstance(selection.get("description"), str):
            lines.append(f"recipe: {selection['description']}")
        ev = _obj(training.get("eval"))
        if ev:
            lines.append(f"evaluation: accuracy {_num(ev.get('accuracy'), '.4f')}, "
                         f"macro-F1 {_num(ev.get('macro_f1'), '.4f')} on {ev.get('data', '?')}")
    lines.append("variants:")
    recorded = _obj(cfg.get("variants"))
    for name in exported_variants(model_dir, cfg):
        lines.append(f"  {name:<14} {_parity_text(recorded.get(name))}")
    lines += _default_variant_lines(model_dir, cfg)
    versions = _obj(cfg.get("versions"))
    if versions:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "\n".join(lines)


def _parity_text(p: Any) -> str:
    if not p or not isinstance(p, dict):
        return "reference"
    gate = p.get("gate")
    if isinstance(gate, dict) and "interval" in gate:
        lo, hi = gate["interval"]
        text = (f"{gate['flips']}/{gate['n']} labels differ ({gate.get('confidence', 0.95):.0%} bounds "
                f"{lo:.1%}-{hi:.1%}, tolerance {gate['max_disagreement']:.1%}), agreement {p['agreement']:.2%}, "
                f"cosine {p['mean_cosine']:.4f}")
    else:
        text = (f"agreement {p['agreement']:.2%}, max prob diff {p['max_proba_diff']:.4f}, "
                f"cosine {p['mean_cosine']:.4f} on {p['n']} texts")
    if p.get("kept_below_tolerance"):
        text += " [kept below tolerance]"
    return text


def _default_variant_lines(model_dir: Path, cfg: dict[str, Any]) -> list[str]:
    """The default variant, and where and why ``accelerate --auto`` chose it."""
    from .model import default_variant

    try:
        used = default_variant(model_dir, cfg)
    except Exception:  # an unreadable body folder: info still shows the rest
        used = cfg.get("default_variant") or "torch-fp32"
    recorded = cfg.get("default_variant")
    line = f"default variant: {used}"
    if recorded and recorded != used:
        line += f" (recorded {recorded}, not usable here)"
    lines = [line]
    choice = cfg.get("default_variant_choice")
    if isinstance(choice, dict):
        m = choice.get("machine") or {}
        load = choice.get("load_average")
        lines.append(f"  chosen {choice.get('date', '?')} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores; "
                     f"{', '.join(m.get('isa', [])) or 'no listed ISA'})"
                     + (f", load average {load[0]:.2f}" if isinstance(load, list) and load else ""))
        lines.append(f"  by: {choice.get('criterion', '?')}")
        for name, fig in (choice.get("candidates") or {}).items():
            if not isinstance(fig, dict):
                continue
            if "one_text_p50_ms" in fig:
                text = f"1 text p50 {fig['one_text_p50_ms']:.2f} ms, {fig.get('texts_per_s', 0):.0f} texts/s @32"
            else:
                text = "not timed"
            status = "passes" if fig.get("passed") else "fails the gate"
            lines.append(f"  {name:<14} {text}, {status}")
    return lines


def variants_text(model_dir: Path | None) -> str:
    exported = exported_variants(model_dir) if model_dir is not None else []
    width = max(len(n) for n in VARIANTS)
    lines = []
    for name, spec in VARIANTS.items():
        mark = ""
        if model_dir is not None:
            mark = "[exported] " if name in exported else "[-]        "
        cal = " (calibrated)" if spec.calibrated else ""
        lines.append(f"{mark}{name:<{width}}  {spec.description}{cal}")
    if model_dir is not None:
        lines.append(f"\nexport more with: fastclf accelerate {model_dir} --variant NAME  (or --all)")
    return "\n".join(lines)
