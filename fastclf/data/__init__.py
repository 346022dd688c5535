"""Reading labeled data and texts (CSV, TSV, JSON Lines, Parquet) with errors that name the rows."""

from __future__ import annotations

from fastclf.data.columns import LABEL_COLUMNS, TEXT_COLUMNS
from fastclf.data.formats import COMPRESSIONS, FORMATS
from fastclf.data.labeled import DEFAULT_LABEL_SEPARATOR, LabeledData, read_labeled, read_texts
from fastclf.data.reading import read_table
from fastclf.data.splits import sample_shots, split_holdout, validate_for_training

__all__ = ["COMPRESSIONS", "DEFAULT_LABEL_SEPARATOR", "FORMATS", "LABEL_COLUMNS", "TEXT_COLUMNS", "LabeledData",
           "read_labeled", "read_table", "read_texts", "sample_shots", "split_holdout", "validate_for_training"]
