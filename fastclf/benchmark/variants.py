"""Which variants a benchmark runs (checked before anything is measured), and the files and
size on disk of each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastclf.backends import REFERENCE, get_spec, runtime_installed
from fastclf.benchmark.results import Size
from fastclf.errors import missing_dependency
from fastclf.modeldir import ModelDir


def resolve_variants(model_dir: str | Path, variants: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Check the variant names before any measuring: return (variants to run, notes).

    ``None`` runs every exported variant whose runtime is installed. torch-fp32 is always
    run, first: it is the reference for agreement and for the recommendation.

    Raises:
        UnknownVariant: a name fastclf does not know.
        VariantNotExported: a variant that is not exported in the model directory.
        MissingDependency: a variant whose runtime is not installed.
    """
    folder = ModelDir(model_dir)
    notes: list[str] = []
    if variants is None:
        chosen = folder.exported()
        runnable = [v for v in chosen if runtime_installed(v)]
        skipped = [v for v in chosen if v not in runnable]
        if skipped:
            notes.append(f"skipped {', '.join(skipped)}: runtime not installed")
        return runnable, notes
    names = list(dict.fromkeys(v.strip() for v in variants if v.strip()))
    specs = [get_spec(v) for v in names]
    for spec in specs:
        folder.resolve(spec.name)
        if not runtime_installed(spec.name):
            raise missing_dependency(spec.package, spec.extra)
    if REFERENCE not in names:
        notes.append(f"{REFERENCE} added: it is the reference for agreement and for the recommendation")
    return [REFERENCE] + [n for n in names if n != REFERENCE], notes


def variant_size(model_dir: str | Path, variant: str) -> Size:
    """The size on disk of the files that running ``variant`` reads."""
    root = Path(model_dir).resolve()
    files = ModelDir(root).files(variant)
    total = sum(p.stat().st_size for p in files)
    return Size(bytes=total, mb=total / 1e6, files=[str(p.relative_to(root)) for p in files])
