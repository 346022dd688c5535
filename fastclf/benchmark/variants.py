"""Which variants a benchmark runs (checked before anything is measured), and the files and
size on disk of each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..backends import REFERENCE, body_files, get_spec, is_exported, runtime_installed
from ..errors import VariantNotExported, missing_dependency
from .results import Size


def resolve_variants(model_dir: str | Path, variants: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Check the variant names before any measuring: return (variants to run, notes).

    ``None`` runs every exported variant whose runtime is installed. torch-fp32 is always
    run, first: it is the reference for agreement and for the recommendation.

    Raises:
        UnknownVariant: a name fastclf does not know.
        VariantNotExported: a variant that is not exported in the model directory.
        MissingDependency: a variant whose runtime is not installed.
    """
    from ..model import BODY_DIR, Classifier, exported_variants

    model_dir = Path(model_dir)
    notes: list[str] = []
    if variants is None:
        chosen = exported_variants(model_dir)
        runnable = [v for v in chosen if runtime_installed(v)]
        skipped = [v for v in chosen if v not in runnable]
        if skipped:
            notes.append(f"skipped {', '.join(skipped)}: runtime not installed")
        return runnable, notes
    names = list(dict.fromkeys(v.strip() for v in variants if v.strip()))
    specs = [get_spec(v) for v in names]
    for spec in specs:
        if not is_exported(model_dir / BODY_DIR, spec.name):
            Classifier.load(model_dir, variant=spec.name)  # raises VariantNotExported with the command that fixes it
            raise VariantNotExported(f"variant {spec.name!r} is not exported in {model_dir}")
        if not runtime_installed(spec.name):
            raise missing_dependency(spec.package, spec.extra)
    if REFERENCE not in names:
        notes.append(f"{REFERENCE} added: it is the reference for agreement and for the recommendation")
    return [REFERENCE] + [n for n in names if n != REFERENCE], notes


def variant_files(model_dir: str | Path, variant: str) -> list[Path]:
    """The files a variant needs to run: the body files it loads (see
    :func:`fastclf.backends.body_files`), the head and ``fastclf.json``.

    Raises:
        UnknownVariant, ModelNotFound, ModelFormatError
    """
    from ..config import BODY_DIR, CONFIG_FILE, read_config

    model_dir = Path(model_dir).resolve()
    head = read_config(model_dir).head_path(model_dir)
    files = [*body_files(model_dir / BODY_DIR, variant), head, model_dir / CONFIG_FILE]
    return [p for p in dict.fromkeys(files) if p.is_file()]


def variant_size(model_dir: str | Path, variant: str) -> Size:
    """The size on disk of :func:`variant_files`."""
    root = Path(model_dir).resolve()
    files = variant_files(root, variant)
    total = sum(p.stat().st_size for p in files)
    return Size(bytes=total, mb=total / 1e6, files=[str(p.relative_to(root)) for p in files])
