"""Reading labeled data: CSV, TSV, JSON Lines and Parquet, with column detection and
validation that names the offending rows.

The package, one job a module:

- :mod:`.formats`: file formats by suffix, decompression, the read-error line.
- :mod:`.tables`: :func:`read_table`, a whole file into a DataFrame.
- :mod:`.columns`: finding the text and label columns, checking cells row by row.
- :mod:`.labeled`: :class:`LabeledData`, :func:`read_labeled`, :func:`read_texts`.
- :mod:`.splits`: :func:`validate_for_training`, :func:`sample_shots`, :func:`split_holdout`.
"""

from __future__ import annotations

from fastclf.data.columns import LABEL_COLUMNS, TEXT_COLUMNS
from fastclf.data.formats import COMPRESSIONS, FORMATS
from fastclf.data.labeled import DEFAULT_LABEL_SEPARATOR, LabeledData, read_labeled, read_texts
from fastclf.data.reading import read_table
from fastclf.data.splits import sample_shots, split_holdout, validate_for_training

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_LABEL_SEPARATOR",
    "FORMATS",
    "LABEL_COLUMNS",
    "TEXT_COLUMNS",
    "LabeledData",
    "read_labeled",
    "read_table",
    "read_texts",
    "sample_shots",
    "split_holdout",
    "validate_for_training",
]
