"""Reading labeled data and texts (CSV, TSV, JSON Lines, Parquet) with errors that name the rows."""

from __future__ import annotations

from fastclf.data.formats import read_table
from fastclf.data.labeled import (
    LabeledData,
    read_labeled,
    read_texts,
    sample_shots,
    split_holdout,
    validate_for_training,
)

__all__ = ["LabeledData", "read_labeled", "read_table", "read_texts", "sample_shots", "split_holdout",
           "validate_for_training"]
