"""Streaming batch prediction of big files: read a chunk of rows, score it, write it, repeat.

Memory stays flat whatever the input's size: a bounded number of chunks is held at once. An input is a
file, a folder or a glob of CSV, TSV, JSON Lines (also compressed) or Parquet files. Each output is
written to a temporary file renamed into place when complete: a failure or Ctrl-C leaves no partial output.
The output has the input's columns, then ``predicted`` and one ``proba_<label>`` column per class
(``clf.classes_`` order); with a ``coverage``, a ``prediction_set`` column last. The Ray engine
(:mod:`fastclf.scoring.ray`) plans and writes with this package, so both engines write the same files.
"""

from __future__ import annotations

from fastclf.scoring.stream.inputs import DEFAULT_CHUNK_SIZE, FileJob, inspect_file, iter_chunks, resolve_inputs
from fastclf.scoring.stream.outputs import ScoreResult, plan, write_jobs
from fastclf.scoring.stream.pipeline import add_predictions, predict_files, progress_bar, score_chunk, use_threads

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FileJob",
    "ScoreResult",
    "add_predictions",
    "inspect_file",
    "iter_chunks",
    "plan",
    "predict_files",
    "progress_bar",
    "resolve_inputs",
    "score_chunk",
    "use_threads",
    "write_jobs",
]
