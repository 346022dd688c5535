"""Exceptions raised by fastclf: each a :class:`FastclfError` and the builtin that fits it (catch either); the CLI
turns any FastclfError into one line on stderr and exit code 1."""

from __future__ import annotations


class FastclfError(Exception):
    """Base class of every error fastclf raises on purpose."""


class DataError(FastclfError, ValueError):
    """The training, evaluation or prediction data cannot be used as given."""


class DataFileNotFound(FastclfError, FileNotFoundError):
    """A data file does not exist."""


class ModelNotFound(FastclfError, FileNotFoundError):
    """A model directory, base model or exported variant does not exist."""


class ModelFormatError(FastclfError, ValueError):
    """A model directory is corrupted, incomplete, or from an unknown format version."""


class UnknownVariant(FastclfError, KeyError):
    """A variant name that fastclf does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class VariantNotExported(ModelNotFound):
    """The variant is known but has not been exported into this model directory."""


class MissingDependency(FastclfError, ImportError):
    """An optional runtime is not installed."""


class ParityError(FastclfError, RuntimeError):
    """An exported variant disagrees with torch-fp32 more than the tolerance allows."""


class SettingError(FastclfError, ValueError):
    """An environment setting (``FASTCLF_THREADS``...) has a value fastclf cannot use."""


class WriteError(FastclfError, OSError):
    """A file or folder cannot be written (the disk is full, no permission); nothing half-written is left."""


class TrainingError(FastclfError, RuntimeError):
    """Training failed in a way the data or the settings can fix (e.g. a non-finite loss)."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when it has none): what a one-line error shows."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def missing_dependency(package: str, extra: str) -> MissingDependency:
    return MissingDependency(f"{package} is not installed; install it with: pip install 'fastclf[{extra}]'")


def write_error(target: object, exc: BaseException) -> WriteError:
    """The error for ``target`` not written because of ``exc`` (an OSError, or safetensors' error holding one)."""
    full = getattr(exc, "errno", None) == 28 or "os error 28" in str(exc)  # ENOSPC
    return WriteError(f"cannot write {target}: {'no space left on device' if full else first_line(exc)}; "
                      "nothing was written")
