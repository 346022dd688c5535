"""The deployment commands of :mod:`fastclf.cli.main`'s group: ``accelerate``, ``benchmark`` and ``serve``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fastclf.accelerate.parity import DEFAULT_MAX_ACCURACY_LOSS, DEFAULT_MIN_COSINE
from fastclf.cli import options
from fastclf.scoring.serve.settings import ServeSettings, parse_size

SERVE_DEFAULTS = ServeSettings()


def _show_logs(verbose: bool) -> None:
    """Warnings of fastclf (and, with -v, DEBUG messages of every library) on stderr."""
    import logging

    for name in ("", "fastclf"):
        for old in [h for h in logging.getLogger(name).handlers if getattr(h, "_fastclf_cli", False)]:
            logging.getLogger(name).removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler._fastclf_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose
                                           else "warning: %(message)s"))
    logger = logging.getLogger() if verbose else logging.getLogger("fastclf")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


_STAGES = {"export": "exporting", "check": "checking against torch-fp32", "time": "timing"}


def _show_step(step) -> None:
    """``fastclf accelerate``'s progress: variant n/total and stage on stderr; notes and verdicts on stdout."""
    from fastclf.cli.accelerate import format_result

    if step.stage in _STAGES:
        where = f"[{step.index}/{step.total}] " if step.index else ""
        detail = f" ({step.message})" if step.message else ""
        click.echo(f"  {where}{step.variant}: {_STAGES[step.stage]}{detail}...", err=True)
    elif step.stage == "note":
        click.echo(step.message)
    elif step.stage == "baseline" and step.timing is not None:
        t = step.timing
        click.echo(f"{step.variant:<14} ref     1 text {t.one_text_p50_ms:.1f} ms, {t.texts_per_s:.0f} texts/s "
                   f"@{t.batch_size}  (the baseline)")
    elif step.stage == "done" and step.result is not None:
        click.echo(format_result(step.result))


@click.command()
@options.model_dir_argument
@click.option("--variant", "variant_names", multiple=True, help="Variant to export (repeat for several).")
@click.option("--all", "all_variants", is_flag=True, help="Export every variant whose runtime is installed.")
@click.option("--auto", is_flag=True,
              help="Export, check and time every candidate variant whose runtime is installed (ONNX, OpenVINO, "
                   "static and distilled with a labeled --check; torch ones with --include-torch) and record the "
                   "fastest for one text that passes as the model's default variant.")
@click.option("--include-torch", is_flag=True,
              help="With --auto: also try torch-bf16/torch-int8/inc-int8 (they compile for 15+ s at every load).")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Texts to calibrate static int8 variants on (default: the training file).")
@click.option("--check", type=click.Path(path_type=Path), default=None,
              help="More texts to check each export against torch-fp32 on (added to the calibration file's "
                   "unused rows and the training texts; up to 1,000 in all). With labels, they also judge the "
                   "variants that are new models (static, distilled): see --max-accuracy-loss.")
@click.option("--text-column", default=None, help="Text column of the calibration file.")
@click.option("--num-calibration", type=int, default=200, show_default=True, help="Calibration texts to use at most.")
@click.option("--max-accuracy-loss", type=float, default=DEFAULT_MAX_ACCURACY_LOSS, show_default=True, metavar="POINTS",
              help="The tolerance, in accuracy points, shown at 95% confidence: an export of the model may change "
                   "at most POINTS labels in 100 (a changed label costs at most that text's accuracy); a new model "
                   "(static, distilled) may lose at most POINTS of accuracy on --check's labels.")
@click.option("--min-cosine", type=float, default=DEFAULT_MIN_COSINE, show_default=True,
              help="Mean embedding cosine with torch-fp32 below which a variant fails.")
@click.option("--keep", is_flag=True, help="Keep an export even when it fails the parity gate.")
@click.option("-v", "--verbose", is_flag=True, help="Show the exporters' own output and warnings.")
def accelerate(model_dir, variant_names, verbose, **settings):
    """Export faster body variants into MODEL_DIR (--variant NAME, --all or --auto), each checked against torch-fp32."""
    from fastclf.cli.accelerate import accelerate_command, format_summary

    _show_logs(verbose)
    results, choice = accelerate_command(model_dir, list(variant_names), verbose=verbose, progress=_show_step,
                                         **settings)
    for line in format_summary(model_dir, results, choice):
        click.echo(line)
    if not settings["auto"] and not all(r.ok for r in results):  # --auto chooses among the variants that pass
        sys.exit(1)


@click.command()
@options.model_dir_argument
@options.data_argument
@options.data_options
@click.option("--variants", "variant_list", default=None, help="Comma-separated variants (default: all exported).")
@click.option("--batch-sizes", default="1,8,32,128", show_default=True, help="Comma-separated batch sizes.")
@click.option("--baseline", type=click.Choice(["setfit", "none"]), default="none", show_default=True,
              help="Add a row for the setfit library's own SetFitModel.predict on the same model.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("report"), show_default=True,
              help="Folder for report.md, report.json and report.html.")
@click.option("--duration", type=float, default=5.0, show_default=True, help="Seconds of timing a measurement.")
@click.option("--max-eval", type=int, default=1000, show_default=True, help="Texts scored for accuracy at most.")
@click.option("--max-accuracy-loss", "tolerance", type=click.FloatRange(0, 100), default=DEFAULT_MAX_ACCURACY_LOSS,
              show_default=True, help="Accuracy points below torch-fp32 a recommended variant may lose (as in "
              "fastclf accelerate).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads each runtime uses (default: the physical cores); recorded in each row.")
def benchmark(model_dir, data, read, variant_list, batch_sizes, output, **settings):
    """Compare the variants of MODEL_DIR on the labeled file DATA: accuracy, latency, throughput, size."""
    from fastclf.benchmark import Benchmark
    from fastclf.benchmark.report import render_markdown, report_paths

    results = Benchmark(model_dir, read(data), variants=variant_list.split(",") if variant_list else None,
                        batch_sizes=[int(b) for b in batch_sizes.split(",")], output=output,
                        progress=lambda line: click.echo(line, err=True), **settings).run()
    paths = report_paths(output)
    click.echo(render_markdown(results, brief=True))
    click.echo(f"report: {paths['md']}, {paths['json']}, {paths['html']}")


def _setting(name: str, help: str, **kwargs):
    """The ``fastclf serve`` option of the ServeSettings field ``name``, with its default."""
    return click.option(f"--{name.replace('_', '-')}", default=getattr(SERVE_DEFAULTS, name), show_default=True,
                        help=help, **kwargs)


@click.command()
@options.model_dir_argument
@options.variant_option
@_setting("host", "Address to listen on. The default answers this machine only; 0.0.0.0 exposes the server.")
@_setting("port", "Port to listen on (0: any free port).")
@click.option("--api-key", envvar="FASTCLF_API_KEY", default=None, show_envvar=True,
              help="Require the header 'Authorization: Bearer KEY' (except on /health). Prefer the "
                   "environment variable: a command-line key is visible to other users in ps.")
@_setting("max_batch", "Most texts in one inference call (texts of concurrent requests are batched together).")
@_setting("max_batch_tokens", "Most tokens in one inference call; a large request is split over several calls, "
                              "taking turns with the others.")
@_setting("max_wait_ms", "Longest wait for more texts before a batch is run.")
@_setting("max_queue", "Most tokens waiting for a batch; a request past it is answered 429 (a larger request is "
                       "taken when nothing waits).")
@_setting("max_inputs", "Most texts in one request; more are answered 413.")
@_setting("max_body_bytes", "Largest request body (e.g. 1MB, 512KiB, 20000); larger are answered 413.", type=str)
@click.option("--read-timeout", "read_timeout_s", default=SERVE_DEFAULTS.read_timeout_s, show_default=True,
              help="Seconds a client has to send a request's headers, and again its body; then the connection "
                   "is closed (headers) or answered 408 (body).")
@_setting("max_connections", "Most open connections; a request past it is answered 503.")
@click.option("--allowed-hosts", default=None,
              help="Comma-separated Host header values to answer (default: 127.0.0.1, localhost, [::1] and --host); "
                   "others get 400, which stops DNS rebinding. '*' answers any.")
@click.option("--access-log", is_flag=True, help="Log every request (uvicorn's access log) to standard output.")
def serve(model_dir, max_body_bytes, allowed_hosts, **settings):
    """Serve the model in MODEL_DIR over HTTP: POST /predict, GET /health, /info, /metrics.

    \b
    curl -s localhost:8080/predict -H 'Content-Type: application/json' \\
         -d '{"inputs": ["a sharp, funny film", "dull"], "top_k": 2}'

    Stops on SIGTERM or Ctrl-C after answering the requests it has received.
    """
    from fastclf.scoring.serve.app import serve as run_server

    hosts = None if allowed_hosts is None else tuple(h.strip() for h in allowed_hosts.split(",") if h.strip())
    run_server(model_dir, ServeSettings(max_body_bytes=parse_size(max_body_bytes), allowed_hosts=hosts, **settings),
               echo=lambda line: click.echo(f"fastclf serve: {line}", err=True))
