"""Streaming batch prediction of big files: chunks of rows read, scored and written (memory stays flat), each output
renamed into place when complete; the Ray engine (:mod:`fastclf.scoring.ray`) plans and writes with it too."""

from __future__ import annotations

from fastclf.scoring.stream.inputs import DEFAULT_CHUNK_SIZE, FileJob, inspect_file, iter_chunks, resolve_inputs
from fastclf.scoring.stream.outputs import ScoreResult, plan, write_jobs
from fastclf.scoring.stream.pipeline import ChunkScorer, add_predictions, predict_files, progress_bar

__all__ = ["DEFAULT_CHUNK_SIZE", "ChunkScorer", "FileJob", "ScoreResult", "add_predictions", "inspect_file",
           "iter_chunks", "plan", "predict_files", "progress_bar", "resolve_inputs", "write_jobs"]
