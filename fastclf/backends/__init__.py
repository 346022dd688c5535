"""The one place that knows the runtimes.

A *body* turns texts into embeddings. Every variant of a body (torch fp32, ONNX int8,
OpenVINO, ...) is described by a :class:`VariantSpec` in :data:`VARIANTS`, and
:func:`load_body` returns an object that follows the :class:`Body` protocol whatever the
runtime. Nothing outside this package imports torch, onnxruntime or openvino to run a
body, and nothing outside it branches on the runtime.

Each runtime lives in its own module (``torch_backend``, ``onnx_backend``,
``openvino_backend``), imported only when a variant of that runtime is used, so a
deployment that predicts with ONNX Runtime never imports torch. A runtime module has two
functions::

    load(body_dir: Path, spec: VariantSpec) -> Body
    export(body_dir: Path, spec: VariantSpec, calibration_texts: list[str]) -> None

``export`` writes the variant's files (``spec.files``) below ``body_dir``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from fastclf._util import atomic_write
from fastclf.backends.specs import (
    _RUNTIMES,
    REFERENCE,
    RUNTIME_DIRS,
    VARIANTS,
    VariantSpec,
    auto_candidates,
    export_command,
    get_spec,
)
from fastclf.errors import (
    DataError,
    FastclfError,
    MissingDependency,
    ModelFormatError,
    SettingError,
    VariantNotExported,
    first_line,
    missing_dependency,
)
from fastclf.machine import ISA_FLAGS, cpu_has_bf16
from fastclf.machine import isa_summary as cpu_info
from fastclf.quiet import quiet_logs

if TYPE_CHECKING:
    from fastclf.head import LogisticHead


@runtime_checkable
class Body(Protocol):
    """Turns texts into float32 sentence embeddings of shape ``(n, dim)``."""

    variant: str

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray: ...


def runtime_settings(body: object) -> dict[str, object]:
    """What a loaded body runs with (threads, hints, precision), as the body reports it."""
    get = getattr(body, "runtime_settings", None)
    return dict(get()) if callable(get) else {}


#: one-text calls made before timing a body that compiles shapes in the background
SETTLE_TEXTS = 64


def settle_one_text(body: object, call_one: Callable[[str], object], texts: Sequence[str]) -> float | None:
    """Bring ``body`` to its steady state for one-text calls before they are timed: a body that
    compiles shapes in the background (OpenVINO's static one-text shapes, its ``settle()``) gets
    ``call_one(text)`` for the first :data:`SETTLE_TEXTS` texts, then waits for its compilations.
    Returns the seconds it took, or None for a body without background compilation."""
    settle = getattr(body, "settle", None)
    if not callable(settle):
        return None
    start = time.monotonic()
    for text in list(texts)[:SETTLE_TEXTS]:
        call_one(text)
    settle()
    return time.monotonic() - start


def thread_settings(body: object | None = None) -> dict[str, object]:
    """The thread pools of the runtimes loaded in this process: torch's (when torch is
    imported, as by the torch variants and setfit) and the body's own (its ``threads()``),
    keyed ``torch_intra_op``, ``onnxruntime_intra_op``, ``openvino_inference_num_threads``, ..."""
    import sys

    out: dict[str, object] = {}
    if "torch" in sys.modules:
        from fastclf.backends.torch_backend import torch_threads

        out.update(torch_threads())
    get = getattr(body, "threads", None)
    if callable(get):
        out.update(get())
    return out


#: the keys of :func:`thread_settings` that give a runtime's thread count, and the runtime's name
_THREAD_KEYS = (("onnxruntime_intra_op", "onnxruntime"), ("openvino_inference_num_threads", "openvino"),
                ("torch_intra_op", "torch"))


def thread_counts(threads: Mapping[str, object] | None) -> list[tuple[str, object]]:
    """(runtime, threads) for each runtime in a :func:`thread_settings` dict, for reports."""
    return [(name, threads[key]) for key, name in _THREAD_KEYS if threads and key in threads]


def newer_than_weights(path: Path, transformer_dir: Path) -> bool:
    """Whether the export ``path`` was written after the transformer's weights (so it can be
    reused as the source of another export)."""
    weights = [*transformer_dir.glob("*.safetensors"), *transformer_dir.glob("*.bin")]
    return not weights or max(p.stat().st_mtime for p in weights) <= path.stat().st_mtime


def runtime_module(spec: VariantSpec):
    """Import the module that runs ``spec``'s runtime.

    Raises:
        MissingDependency: the runtime's Python package is not installed.
    """
    package, extra = _RUNTIMES[spec.runtime]
    if spec.runtime == "openvino":  # before anything imports openvino: no telemetry (see its docstring)
        from fastclf.backends.openvino_backend import disable_telemetry

        disable_telemetry()
    with quiet_logs():  # torch and torchao warn about optional kernels (CUDA, mxfp8) on import
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise missing_dependency(package, extra) from exc
        return importlib.import_module(f"{__name__}.{spec.runtime}_backend")


def export_note(variant: str, n_texts: int) -> str:
    """What is worth saying before a long export of ``variant`` starts ("" for most)."""
    spec = get_spec(variant)
    if spec.option.get("distill"):
        from fastclf.backends._distill import DISTILL_STEPS

        return (f"distilling a smaller body on {n_texts} texts, {DISTILL_STEPS} steps: several minutes on a "
                "small CPU")
    return ""


def runtime_installed(variant: str) -> bool:
    """Whether the Python package of ``variant``'s runtime is installed (checked without importing it).

    Raises:
        UnknownVariant: the variant name is not known.
    """
    import importlib.util

    return importlib.util.find_spec(get_spec(variant).package) is not None


#: file suffixes of weights in a body folder (none of them is a tokenizer or config file)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pt2", ".pth", ".onnx", ".onnx_data", ".h5", ".msgpack",
                   ".ckpt", ".xml")


def _support_files(body_dir: Path) -> list[Path]:
    """Config and tokenizer files of the sentence-transformers folder (no weights, no exports)."""
    out = []
    for p in sorted(body_dir.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(body_dir)
        if rel.parts[0] in RUNTIME_DIRS or p.suffix.lower() in WEIGHT_SUFFIXES or p.suffix.lower() == ".md":
            continue
        out.append(p)
    return out


def body_files(body_dir: str | Path, variant: str) -> list[Path]:
    """The files below ``body_dir`` that loading ``variant`` reads: the sentence-transformers
    weights if the variant :attr:`~VariantSpec.loads_weights`, its own :attr:`~VariantSpec.files`
    (with an ONNX external-data file next to them, if any), and the tokenizer and config files.

    Raises:
        UnknownVariant: the variant name is not known.
    """
    body_dir = Path(body_dir)
    spec = get_spec(variant)
    files: list[Path] = []
    if spec.loads_weights:
        weights = [body_dir / n for n in ("model.safetensors", "pytorch_model.bin") if (body_dir / n).is_file()]
        files.extend(weights[:1])
    for f in (*spec.files, *filter(None, [spec.head])):
        p = body_dir / f
        files.append(p)
        files.extend(x for x in (p.with_name(p.name + "_data"), p.with_name(p.name + ".data"),
                                 p.with_suffix(".onnx_data")) if x.is_file())
    files.extend(_support_files(body_dir))
    return [p for p in dict.fromkeys(files) if p.is_file()]


def is_exported(body_dir: Path, variant: str) -> bool:
    """Whether the files of ``variant`` exist below ``body_dir``."""
    spec = get_spec(variant)
    return all((Path(body_dir) / f).is_file() for f in spec.files)


def load_body(body_dir: str | Path, variant: str = REFERENCE) -> Body:
    """Load the body in ``body_dir`` (a sentence-transformers folder) as ``variant``.

    Raises:
        UnknownVariant: the variant name is not known.
        VariantNotExported: the variant's files are not in ``body_dir``.
        MissingDependency: the variant's runtime is not installed.
        ModelFormatError: the body folder is refused (see :func:`fastclf.safety.check_body`), or
            its runtime cannot load it (a damaged config or tokenizer).
    """
    from fastclf.safety import check_body

    spec = get_spec(variant)
    body_dir = Path(body_dir)
    check_body(body_dir)  # the one check every variant passes before its runtime sees the folder
    missing = [f for f in spec.files if not (body_dir / f).is_file()]
    if missing:
        raise VariantNotExported(
            f"variant {variant!r} is not exported in this model (missing {missing[0]}); "
            f"create it with: {export_command(variant)}"
        )
    module = runtime_module(spec)
    try:
        with quiet_logs():  # the runtimes' own warnings while they load say nothing about the user's model
            return module.load(body_dir, spec)
    except (FastclfError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a damaged config or tokenizer fails deep in transformers, tokenizers or a runtime
        raise ModelFormatError(f"cannot load the model body in {body_dir} as {variant}: it is damaged or "
                               f"incomplete ({type(exc).__name__}: {first_line(exc)[:300]})") from None


def reset_runtime_state() -> None:
    """Drop per-process compiler state between models (torch.compile's dynamo caches hit a
    recompile limit and silently fall back to eager when many models compile in one process)."""
    import sys

    if "torch" in sys.modules:
        import torch

        torch._dynamo.reset()


#: environment variable that sets the runtimes' thread count (``fastclf benchmark --threads``)
THREADS_ENV = "FASTCLF_THREADS"

#: variants that rely on a CPU feature: variant -> (features, any of which it needs, variant to use without them)
ISA_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "openvino-bf16": (("avx512_bf16", "amx_bf16"), "openvino-fp32"),
    "torch-bf16": (("avx512_bf16", "amx_bf16"), REFERENCE),
}


def requested_threads(threads: int | None = None) -> int | None:
    """The thread count a body should use: ``threads`` if given, else ``$FASTCLF_THREADS``, else
    None (the runtime's default: the physical cores).

    Raises:
        SettingError: the environment variable is not a positive integer.
    """
    import os

    if threads is not None:
        return int(threads)
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise SettingError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    return int(value)


_warned: set[tuple[str, str]] = set()


def variant_for_this_cpu(variant: str, choice: dict | None = None,
                         flags: Sequence[str] | None = None) -> str:
    """The variant to run instead of ``variant`` on this CPU: ``variant`` itself unless it relies
    on an ISA this CPU lacks (openvino-bf16 -> openvino-fp32, torch-bf16 -> torch-fp32; int8 runs
    everywhere). ``choice`` is fastclf.json's ``default_variant_choice``, named in the warning,
    logged once a process.
    """
    needs = ISA_NEEDS.get(variant)
    if needs is None:
        return variant
    isa = cpu_info()["isa"] if flags is None else flags
    have = set(isa) if isinstance(isa, (list, tuple, set, frozenset)) else set()
    wanted, fallback = needs
    if have & set(wanted):
        return variant
    key = (variant, fallback)
    if key not in _warned:
        import logging

        _warned.add(key)
        chosen_on = ""
        if isinstance(choice, dict) and isinstance(choice.get("machine"), dict):
            m = choice["machine"]
            chosen_on = f" (chosen on {m.get('cpu', '?')} with {', '.join(m.get('isa', [])) or 'no listed ISA'})"
        logging.getLogger("fastclf").warning(
            "default variant %s%s needs %s, which this CPU lacks: using %s instead",
            variant, chosen_on, " or ".join(wanted), fallback)
    return fallback


def export_variant(body_dir: str | Path, variant: str, calibration_texts: Sequence[str],
                   fit_head: Callable[[Body], LogisticHead] | None = None) -> None:
    """Write the files of ``variant`` below ``body_dir``; for a variant with its own
    :attr:`~VariantSpec.head`, also that head, ``fit_head(body)`` (fit on the training examples).

    Raises:
        UnknownVariant, MissingDependency
        DataError: the variant needs its own head and ``fit_head`` is None.
        ModelFormatError: the body folder is refused (see :func:`fastclf.safety.check_body`).
    """
    from fastclf.safety import check_body

    spec = get_spec(variant)
    check_body(body_dir)
    module = runtime_module(spec)
    if spec.head and fit_head is None:
        raise DataError(f"variant {variant!r} is a new model with its own head, fit on the labeled training "
                        "examples: the training file was not found")
    module.export(Path(body_dir), spec, list(calibration_texts))
    if spec.head and fit_head is not None:
        head = fit_head(module.load(Path(body_dir), spec))
        atomic_write(Path(body_dir) / spec.head, head.save)


__all__ = [
    "ISA_FLAGS",
    "REFERENCE",
    "RUNTIME_DIRS",
    "VARIANTS",
    "Body",
    "MissingDependency",
    "VariantSpec",
    "auto_candidates",
    "export_command",
    "export_note",
    "export_variant",
    "get_spec",
    "is_exported",
    "load_body",
    "newer_than_weights",
    "reset_runtime_state",
    "requested_threads",
    "body_files",
    "cpu_has_bf16",
    "cpu_info",
    "runtime_installed",
    "runtime_settings",
    "SETTLE_TEXTS",
    "settle_one_text",
    "thread_counts",
    "thread_settings",
    "variant_for_this_cpu",
    "runtime_module",
]
