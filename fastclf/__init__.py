"""fastclf: few-shot text classification (SetFit) that runs fast on CPUs."""

from __future__ import annotations

from fastclf._version import __version__
from fastclf.errors import (  # noqa: E402
    DataError,
    FastclfError,
    MissingDependency,
    ModelFormatError,
    ModelNotFound,
    ParityError,
    UnknownVariant,
    VariantNotExported,
)
from fastclf.model import Classifier  # noqa: E402


def __getattr__(name: str):
    # Training and benchmarking pull in torch and setfit: import them only when asked for,
    # so that `from fastclf import Classifier` stays light for ONNX/OpenVINO deployments.
    if name in ("train", "TrainConfig"):
        from fastclf.training import trainer

        return getattr(trainer, name)
    if name == "Benchmark":
        from fastclf.benchmark import Benchmark

        return Benchmark
    raise AttributeError(f"module 'fastclf' has no attribute {name!r}")


__all__ = [
    "Benchmark",
    "Classifier",
    "DataError",
    "FastclfError",
    "MissingDependency",
    "ModelFormatError",
    "ModelNotFound",
    "ParityError",
    "TrainConfig",
    "UnknownVariant",
    "VariantNotExported",
    "__version__",
    "train",
]
