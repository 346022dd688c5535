"""Streaming batch prediction of big files: read a chunk of rows, score it, write it, repeat.

Memory stays flat whatever the size of the input: only one chunk of rows (plus the model) is
held at a time. An input is a file, a folder (every supported file in it, sorted by name) or a
glob pattern (``corpus/*.parquet``); CSV, TSV, JSON Lines (also gzip/bz2/xz/zstd/zip
compressed) and Parquet are read. Each output is written to a temporary file beside it and
renamed into place when complete, so a failure or Ctrl-C leaves no partial output behind.

The output has the input's columns, then ``predicted`` (multi-label: the labels joined by
``|``; the unsure label below a ``min_confidence``) and one ``proba_<label>`` column per class,
in ``clf.classes_`` order; with a ``coverage``, a ``prediction_set`` column last.

The Ray engine (:mod:`fastclf.scoring.ray`) reuses the planning and the writers of this module, so
both engines write the same files.

The package, one job a module:

- :mod:`.inputs`: resolving inputs, reading a file's header and its rows in chunks.
- :mod:`.outputs`: output formats, :class:`TableWriter`, writing scored chunks atomically.
- :mod:`.plan`: :func:`plan`, which file goes where.
- :mod:`.pipeline`: the texts of a chunk, scoring, the progress bar, :func:`predict_files`.
"""

from __future__ import annotations

from fastclf.scoring.stream.inputs import DEFAULT_CHUNK_SIZE, FileJob, inspect_file, iter_chunks, resolve_inputs
from fastclf.scoring.stream.outputs import ScoredChunks, ScoreResult, TableWriter, write_jobs
from fastclf.scoring.stream.pipeline import (
    add_predictions,
    local_engine,
    predict_files,
    progress_bar,
    score_chunk,
    texts_of,
)
from fastclf.scoring.stream.plan import plan

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FileJob",
    "ScoreResult",
    "ScoredChunks",
    "TableWriter",
    "add_predictions",
    "inspect_file",
    "iter_chunks",
    "local_engine",
    "plan",
    "predict_files",
    "progress_bar",
    "resolve_inputs",
    "score_chunk",
    "texts_of",
    "write_jobs",
]
