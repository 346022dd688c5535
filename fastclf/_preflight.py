"""Checks run before a long-running job starts (the HTTP server, a Ray actor pool), so that a
bad model or variant fails at once, in this process, instead of after a port is bound or
actors are started."""

from __future__ import annotations

from pathlib import Path


def checked_variant(model_dir: str | Path, variant: str | None) -> str:
    """The variant that loading ``model_dir`` with ``variant`` (None: the model's default) will use,
    after checking that the model reads and the variant is exported.

    Raises:
        ModelNotFound, ModelFormatError: the model directory is missing or unreadable.
        UnknownVariant: ``variant`` is not a variant name.
        VariantNotExported: the variant's files are not in the model directory.
    """
    from .backends import get_spec, is_exported
    from .errors import VariantNotExported
    from .model import BODY_DIR, default_variant, read_config

    model_dir = Path(model_dir)
    cfg = read_config(model_dir)
    name = variant or default_variant(model_dir, cfg)
    get_spec(name)
    if not is_exported(model_dir / BODY_DIR, name):
        raise VariantNotExported(f"variant {name!r} is not exported in {model_dir}; "
                                 f"export it with: fastclf accelerate {model_dir} --variant {name}")
    return name
