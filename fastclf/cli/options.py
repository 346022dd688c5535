"""Arguments and options shared by the commands of :mod:`fastclf.cli.main` and :mod:`fastclf.cli.deploy`."""

from __future__ import annotations

import functools
from pathlib import Path

import click

model_dir_argument = click.argument("model_dir", type=click.Path(path_type=Path))
data_argument = click.argument("data", type=click.Path(path_type=Path))
variant_option = click.option("--variant", default=None,
                              help="Body variant (see: fastclf variants); default: the model's default variant.")
batch_size_option = click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                                 help="Texts per model call.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")


def data_options(f):
    """The columns of a labeled file; the command gets ``read(path)``, which reads one with them."""

    @click.option("--text-column", default=None, help="Column holding the texts (default: found by name).")
    @click.option("--label-column", default=None, help="Column holding the labels (default: found by name).")
    @click.option("--label-columns", default=None, help="Comma-separated 0/1 columns, one a label (multi-label data).")
    @click.option("--label-separator", default="|", show_default=True,
                  help="Separator of several labels in one cell (multi-label data).")
    @functools.wraps(f)
    def command(*args, text_column, label_column, label_columns, label_separator, **kwargs):
        from fastclf.data import read_labeled

        columns = [c.strip() for c in label_columns.split(",")] if label_columns else None
        return f(*args, read=functools.partial(read_labeled, text_column=text_column, label_column=label_column,
                                               label_columns=columns, label_separator=label_separator), **kwargs)

    return command
