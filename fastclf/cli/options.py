"""Options and readers shared by the commands of :mod:`fastclf.cli.main` and :mod:`fastclf.cli.deploy`."""

from __future__ import annotations

import click


def data_options(f):
    """The options that say which columns of a labeled file hold the texts and labels."""
    f = click.option("--label-separator", default="|", show_default=True,
                     help="Separator of several labels in one cell (multi-label data).")(f)
    f = click.option("--label-columns", default=None,
                     help="Comma-separated 0/1 columns, one a label (multi-label data).")(f)
    f = click.option("--label-column", default=None, help="Column holding the labels (default: found by name).")(f)
    f = click.option("--text-column", default=None, help="Column holding the texts (default: found by name).")(f)
    return f


def read_data(path, text_column, label_column, label_columns, label_separator):
    """The labeled file at ``path``, read with the columns of :func:`data_options`."""
    from fastclf.data import read_labeled

    return read_labeled(
        path,
        text_column=text_column,
        label_column=label_column,
        label_columns=[c.strip() for c in label_columns.split(",")] if label_columns else None,
        label_separator=label_separator,
    )
