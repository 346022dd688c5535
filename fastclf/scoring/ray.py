"""Scoring with Ray Data (the ``ray`` extra): a pool of actors, each holding one Classifier, scores a
``ray.data.Dataset`` (:func:`predict_dataset`) or writes what the local engine writes (:func:`predict_files`)."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from fastclf import errors
from fastclf.errors import DataError, FastclfError, first_line, missing_dependency
from fastclf.modeldir import ModelDir
from fastclf.scoring import stream

MIN_CPUS_PER_ACTOR = 0.05


def _import_ray() -> Any:
    """Raises: MissingDependency: ray[data] is not installed."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise missing_dependency("ray[data]", "ray") from None
    return ray


def cpus_per_actor(total_cpus: float, concurrency: int, requested: float = 1.0) -> float:
    """The CPUs each actor reserves: ``requested``, lowered so that ``concurrency`` actors leave one for reading."""
    if concurrency < 1:
        raise DataError(f"concurrency must be at least 1, got {concurrency}")
    if requested <= 0:
        raise DataError(f"num_cpus_per_actor must be positive, got {requested}")
    spare = total_cpus - 1
    if spare < MIN_CPUS_PER_ACTOR * concurrency:
        raise DataError(f"the Ray cluster has {total_cpus:g} CPUs: too few to read and score at once (2 needed)")
    return round(min(requested, spare / concurrency), 3)


def predict_dataset(ds: Any, model_dir: str | Path, *, variant: str | None = None, batch_size: int = 256,
                    concurrency: int = 1, text_column: str = "text", num_cpus_per_actor: float = 1,
                    model_batch_size: int = 32, answer: dict[str, Any] | None = None) -> Any:
    """``ds`` (lazy; in order only with the DataContext's ``preserve_order``) scored by ``concurrency`` actors, each a
    :class:`~fastclf.scoring.stream.ChunkScorer` of ``model_dir`` (readable on every node), ``batch_size`` rows a
    block and call (a small file is one block, which would feed one actor); starts or joins a Ray if none runs."""
    ray = _import_ray()
    if batch_size < 1 or model_batch_size < 1:
        raise DataError(f"batch sizes must be at least 1, got {batch_size} and {model_batch_size}")
    model_dir = Path(model_dir).resolve()
    name = ModelDir(model_dir).resolve(variant)  # a bad model fails here, in the driver
    if not ray.is_initialized():
        _init(ray)
    total = float(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    cpus = cpus_per_actor(total, concurrency, num_cpus_per_actor)
    threads = max(1, int(total // concurrency))
    ds = ds.repartition(target_num_rows_per_block=batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_restarts goes through ray_remote_args, deprecated in 2.60
        return ds.map_batches(
            stream.ChunkScorer,
            fn_constructor_kwargs={"model": str(model_dir), "variant": name, "batch_size": model_batch_size,
                                   "answer": answer, "threads": threads},
            fn_kwargs={"column": text_column, "path": "a Ray batch"},
            batch_size=batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_cpus=cpus,
            max_restarts=0,  # a failing actor is an error to report, not to retry
        )


class RayUnavailable(FastclfError, ConnectionError):
    """Ray could not be started, or the cluster at ``RAY_ADDRESS`` could not be reached."""


def _init(ray: Any, num_cpus: int | None = None) -> None:
    """Connect to ``RAY_ADDRESS``, or start a quiet local Ray with ``num_cpus`` CPUs (default: this machine's, at
    least 2); RayUnavailable if neither works."""
    address = os.environ.get("RAY_ADDRESS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                # Ray 2.60 listens on 0.0.0.0: no dashboard, Ray's token auth, a Ray living only as long as the command
                ray.init(address="local", num_cpus=num_cpus or max(os.cpu_count() or 1, 2), include_dashboard=False,
                         log_to_driver=False, logging_level=logging.ERROR,
                         object_store_memory=2**30)
        except Exception as exc:
            where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
            raise RayUnavailable(f"cannot start or reach {where}: {first_line(exc)}") from None


@contextmanager
def ray_session(num_cpus: int | None = None) -> Iterator[Any]:
    """A quiet Ray (as :func:`_init`; a running one is used and left running, one started here is shut down on
    leaving): no progress bars, logs or warnings from Ray Data, whose DataContext settings are restored."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        logging.getLogger("ray").setLevel(logging.ERROR)
        _init(ray, num_cpus)
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.execution_options.preserve_order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Ray Data's warnings (from the driver's executor thread too) stay quiet
        try:
            ctx.enable_progress_bars = False
            ctx.print_on_execution_start = False
            logging.getLogger("ray.data").setLevel(logging.ERROR)
            yield ray
        finally:
            ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.execution_options.preserve_order = saved
            if started:
                ray.shutdown()


def _read(ray: Any, job: Any) -> Any:
    """A Ray Dataset of one input file, read as the local engine reads it (CSV cells as strings)."""
    path = str(job.source)
    if job.fmt == "parquet":
        return ray.data.read_parquet(path, columns=job.columns)
    if job.fmt in ("csv", "tsv"):
        import pyarrow as pa
        from pyarrow import csv as pacsv

        return ray.data.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t" if job.fmt == "tsv" else ","),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in job.columns},
                                                 strings_can_be_null=True, null_values=[""]),
        )
    if job.json_array:
        raise DataError(f"{job.source}: a JSON array cannot be read by Ray; use JSON Lines or --engine local")
    return ray.data.read_json(path, lines=True)


def _job_error(source: Path, exc: Exception) -> BaseException:
    """``exc`` of a Ray task as the fastclf error its text names (Ray Data keeps only a failed UDF's traceback: the
    last ``fastclf.errors.Name: message`` line), else as its last line, naming ``source``."""
    named = re.findall(r"^fastclf\.errors\.(\w+): (.+)$", str(exc), flags=re.MULTILINE)
    cls = getattr(errors, named[-1][0], None) if named else None
    if isinstance(cls, type) and issubclass(cls, FastclfError):
        return cls(f"{source}: {named[-1][1]}")
    last = str(exc).strip().splitlines()
    return DataError(f"{source}: scoring with Ray failed: {last[-1] if last else type(exc).__name__}")


def predict_files(model_dir: str | Path, input_spec: str | Path, output: str | Path | None, *,
                  variant: str | None = None, text_column: str | None = None, batch_size: int = 32,
                  rows_per_call: int = 256, concurrency: int = 1, num_cpus: int | None = None,
                  progress: bool = False, answer: dict[str, Any] | None = None) -> Any:
    """Write what :func:`fastclf.scoring.stream.predict_files` writes, scored by a Ray actor pool (a Dataset an
    input, rows in input order); ``rows_per_call`` rows go to an actor at a time, ``batch_size`` to the model."""
    _import_ray()
    jobs = stream.plan(input_spec, output, text_column=text_column)
    ModelDir(model_dir).resolve(variant)  # fail before Ray starts
    with ray_session(num_cpus) as ray:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        datasets: list[Any] = []  # every Dataset stays referenced until Ray shuts down

        def scored(job: stream.FileJob) -> Iterator[tuple[pd.DataFrame, float]]:
            per_call = rows_per_call
            if job.rows is not None:  # a small file: blocks small enough that every actor gets some
                per_call = max(1, min(rows_per_call, -(-job.rows // concurrency)))
            ds = predict_dataset(_read(ray, job), model_dir, variant=variant, batch_size=per_call,
                                 concurrency=concurrency, text_column=job.text_column, model_batch_size=batch_size,
                                 answer=answer)
            datasets.append(ds)
            try:
                for table in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
                    if table.num_rows:  # converted as the local engine converts its chunks (not the actors' dtypes)
                        batch = table.replace_schema_metadata(None).to_pandas()
                        yield batch[[*job.columns, *[c for c in batch.columns if c not in job.columns]]], len(batch)
            except Exception as exc:
                raise _job_error(job.source, exc) from None

        with stream.progress_bar(jobs, by_bytes=False, enabled=progress) as bar:
            return stream.write_jobs(jobs, scored, bar)

