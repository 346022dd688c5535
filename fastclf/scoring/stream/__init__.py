"""Streaming batch prediction of big files (CSV, TSV, JSON Lines, also compressed, or Parquet): chunks of rows are
read, scored and written, so memory stays flat; each output is renamed into place when complete. The output has
the input's columns, then ``predicted``, a ``proba_<label>`` column per class and, with a ``coverage``,
``prediction_set``. The Ray engine (:mod:`fastclf.scoring.ray`) plans and writes with this package too."""

from __future__ import annotations

from fastclf.scoring.stream.inputs import DEFAULT_CHUNK_SIZE, FileJob, inspect_file, iter_chunks, resolve_inputs
from fastclf.scoring.stream.outputs import ScoreResult, plan, write_jobs
from fastclf.scoring.stream.pipeline import ChunkScorer, add_predictions, predict_files, progress_bar

__all__ = ["DEFAULT_CHUNK_SIZE", "ChunkScorer", "FileJob", "ScoreResult", "add_predictions", "inspect_file",
           "iter_chunks", "plan", "predict_files", "progress_bar", "resolve_inputs", "write_jobs"]
