"""fastclf: few-shot text classification (SetFit) that runs fast on CPUs."""

from __future__ import annotations

from fastclf._version import __version__
from fastclf.errors import (
    DataError,
    FastclfError,
    MissingDependency,
    ModelFormatError,
    ModelNotFound,
    ParityError,
    UnknownVariant,
    VariantNotExported,
)
from fastclf.model import Classifier


def __getattr__(name: str):
    # training and benchmarking pull in torch and setfit: imported when asked for, so Classifier stays light
    if name in ("train", "TrainConfig"):
        from fastclf.training import trainer

        return getattr(trainer, name)
    if name == "Benchmark":
        from fastclf.benchmark import Benchmark

        return Benchmark
    raise AttributeError(f"module 'fastclf' has no attribute {name!r}")


__all__ = ["Benchmark", "Classifier", "DataError", "FastclfError", "MissingDependency", "ModelFormatError",
           "ModelNotFound", "ParityError", "TrainConfig", "UnknownVariant", "VariantNotExported", "__version__",
           "train"]
