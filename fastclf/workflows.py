"""The work behind the CLI commands, kept in the library so it can be tested and reused.

Each function takes an ``echo`` callable for its human-readable output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._util import atomic_write
from .backends import VARIANTS
from .data import LabeledData, sample_shots, split_holdout, validate_for_training
from .errors import DataError
from .model import CONFIG_FILE, Classifier, exported_variants

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


def train_command(data_path: Path, output: Path, *, base_model: str | None, read: Callable[[Path], LabeledData],
                  shots: int | None, eval_file: Path | None, holdout: float | None, eval_max: int, loss: str,
                  epochs: int, batch_size: int, learning_rate: float, num_iterations: int, bf16: bool | None,
                  seed: int, quiet: bool, echo: Echo) -> Classifier:
    """``fastclf train``: read, validate, train, evaluate, save atomically. Nothing is written on error."""
    _check_output(output)
    data = read(data_path)
    eval_data = read(eval_file) if eval_file else None
    train_data, eval_data, eval_desc = prepare_data(data, shots=shots, eval_data=eval_data, holdout=holdout,
                                                    eval_max=eval_max, seed=seed)
    from .metrics import evaluate, format_report
    from .trainer import TrainConfig, resolve_model, train

    config = TrainConfig(model=base_model, loss=loss, num_epochs=epochs, batch_size=batch_size,
                         body_learning_rate=learning_rate, num_iterations=num_iterations, bf16=bf16, seed=seed,
                         show_progress=not quiet)
    counts = ", ".join(f"{c}: {n}" for c, n in train_data.counts().items())
    echo(f"training on {len(train_data)} examples ({counts})")
    echo(f"base model: {resolve_model(base_model)[1]}")
    result = train(train_data, config)
    clf = result.classifier
    echo(f"trained in {result.seconds:.1f} s (loss: {result.info['loss']}, bf16: {result.info['bf16']})")
    if eval_data is not None:
        echo(f"evaluating on {eval_desc}")
        metrics = evaluate(clf, eval_data)
        clf.config["training"]["eval"] = {"data": eval_desc, **{k: metrics[k] for k in ("n", "accuracy", "macro_f1")}}
        echo(format_report(metrics, [str(c) for c in clf.classes_]))
    path = clf.save(output)
    echo(f"saved to {path}")
    echo(f'next: fastclf predict {output} "some text"   |   fastclf accelerate {output} --all')
    return clf


def predict_command(model_dir: Path, texts: list[str], *, input_file: Path | None, output: Path | None,
                    text_column: str | None, variant: str | None, batch_size: int, as_json: bool, echo: Echo) -> None:
    """``fastclf predict``: label command-line texts, or score a file into a new file."""
    if not texts and input_file is None:
        raise DataError("give texts to label, or --input FILE")
    if texts and input_file is not None:
        raise DataError("give either texts or --input FILE, not both")
    if output is not None:
        if input_file is None:
            raise DataError("--output writes the scored --input file; give --input FILE")
        output_format(output)  # fail before any work on an output that cannot be written
    df = None
    if input_file is not None:
        from .data import read_texts

        df, column = read_texts(input_file, text_column=text_column)
        texts = [str(t) for t in df[column].tolist()]
    clf = Classifier.load(model_dir, variant=variant)
    proba = clf.predict_proba(texts, batch_size=batch_size)
    labels = clf.labels_from_proba(proba)
    classes = [str(c) for c in clf.classes_]
    if df is None:
        for text, label, row in zip(texts, labels, proba):
            if as_json:
                echo(json.dumps({"text": text, "label": label, "proba": dict(zip(classes, map(float, row)))}))
            elif clf.multi_label:
                shown = ", ".join(f"{c} {p:.3f}" for c, p in zip(classes, row) if c in label) or "(none)"
                echo(f"{shown}\t{text}")
            else:
                echo(f"{label}\t{row.max():.3f}\t{text}")
        return
    out = df.copy()
    out["predicted"] = ["|".join(l) for l in labels] if clf.multi_label else labels
    for c, col in zip(classes, proba.T):
        out[f"proba_{c}"] = col
    if output is None:
        out.to_csv(sys.stdout, index=False)
        return
    _write_table(out, output)
    echo(f"wrote {len(out)} rows to {output}")


OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
OUTPUT_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}


def output_format(output: Path) -> tuple[str, str | None]:
    """(format, compression) of an output file named ``output``, from its suffixes.

    Raises:
        DataError: an unsupported extension (the supported ones are listed), a compressed
            Parquet file, or ``output`` is an existing directory.
    """
    output = Path(output)
    if output.is_dir():
        raise DataError(f"--output {output} is a directory; name a file such as {output / 'predictions.csv'}")
    suffixes = [x.lower() for x in output.suffixes]
    compression = None
    if suffixes and suffixes[-1] in OUTPUT_COMPRESSIONS:
        compression = OUTPUT_COMPRESSIONS[suffixes.pop()]
    fmt = OUTPUT_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataError(
            f"--output {output}: unsupported file type; use one of {', '.join(OUTPUT_FORMATS)} "
            f"(text formats may end in {', '.join(OUTPUT_COMPRESSIONS)})"
        )
    if fmt == "parquet" and compression:
        raise DataError(f"--output {output}: Parquet is compressed inside the file; name it .parquet")
    if compression == "zstd":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise DataError(f"--output {output}: writing .zst needs the zstandard package: pip install zstandard") from None
    return fmt, compression


def _write_table(df, output: Path) -> None:
    """Write a table by the output's extension (compressed when it ends in .gz, .bz2, .xz, .zst
    or .zip), atomically.

    Raises:
        DataError: see :func:`output_format`.
    """
    fmt, compression = output_format(output)
    archive_name = Path(output).with_suffix("").name  # the member's name inside a .zip

    def write(tmp: Path) -> None:
        comp = {"method": compression, "archive_name": archive_name} if compression == "zip" else compression
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        elif fmt == "jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False, compression=comp)
        else:
            df.to_csv(tmp, sep="\t" if fmt == "tsv" else ",", index=False, compression=comp)

    atomic_write(output, write)


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
        ev = _obj(training.get("eval"))
        if ev:
            lines.append(f"evaluation: accuracy {_num(ev.get('accuracy'), '.4f')}, "
                         f"macro-F1 {_num(ev.get('macro_f1'), '.4f')} on {ev.get('data', '?')}")
    lines.append("variants:")
    recorded = _obj(cfg.get("variants"))
    for name in exported_variants(model_dir, cfg):
        lines.append(f"  {name:<14} {_parity_text(recorded.get(name))}")
    versions = _obj(cfg.get("versions"))
    if versions:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "\n".join(lines)


def _parity_text(p: Any) -> str:
    if not p or not isinstance(p, dict):
        return "reference"
    agreement = p.get("agreement")
    shown = f"{agreement:.2%}" if isinstance(agreement, (int, float)) and not isinstance(agreement, bool) else "?"
    return (f"agreement {shown}, max prob diff {_num(p.get('max_proba_diff'), '.4f')}, "
            f"cosine {_num(p.get('mean_cosine'), '.4f')} on {p.get('n', '?')} texts")


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
