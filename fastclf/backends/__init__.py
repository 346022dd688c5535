"""The one place that knows the runtimes: :func:`load_body` returns a :class:`Body` for any variant; each
``<runtime>_backend`` module, imported when used, has ``load(body_dir, spec, threads)`` and ``export(...)``."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from fastclf._util import atomic_write
from fastclf.backends.specs import (
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
    ModelFormatError,
    SettingError,
    first_line,
    missing_dependency,
)
from fastclf.machine import isa_summary as cpu_info
from fastclf.quiet import quiet_logs

if TYPE_CHECKING:
    from fastclf.head import LogisticHead

__all__ = ["MATH_THREADS_ENV", "REFERENCE", "RUNTIME_DIRS", "SETTLE_TEXTS", "THREADS_ENV", "VARIANTS", "Body",
           "VariantSpec", "auto_candidates", "cpu_info", "export_command", "export_note", "export_variant", "get_spec",
           "is_exported", "load_body", "newer_than_weights", "publish", "requested_threads", "reset_runtime_state",
           "runtime_installed", "runtime_module", "runtime_settings", "settle_one_text", "thread_counts",
           "thread_settings", "variant_for_this_cpu"]


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
    """Before timing a body that compiles shapes in the background, make :data:`SETTLE_TEXTS` one-text calls and
    wait for its ``settle()``; the seconds it took, None for other bodies."""
    settle = getattr(body, "settle", None)
    if not callable(settle):
        return None
    start = time.monotonic()
    for text in list(texts)[:SETTLE_TEXTS]:
        call_one(text)
    settle()
    return time.monotonic() - start


def thread_settings(body: object | None = None) -> dict[str, object]:
    """The thread pools of the runtimes in this process: torch's (when imported) and the body's ``threads()``."""
    out: dict[str, object] = {}
    if "torch" in sys.modules:
        import torch

        out.update(torch_intra_op=torch.get_num_threads(), torch_inter_op=torch.get_num_interop_threads())
    get = getattr(body, "threads", None)
    if callable(get):
        out.update(get())
    return out


_THREAD_KEYS = (("onnxruntime_intra_op", "onnxruntime"), ("openvino_inference_num_threads", "openvino"),
                ("torch_intra_op", "torch"))


def thread_counts(threads: Mapping[str, object] | None) -> list[tuple[str, object]]:
    """(runtime, threads) for each runtime in a :func:`thread_settings` dict, for reports."""
    return [(name, threads[key]) for key, name in _THREAD_KEYS if threads and key in threads]


def newer_than_weights(path: Path, transformer_dir: Path) -> bool:
    """Whether the export ``path`` is newer than the transformer's weights (reusable as an export's source)."""
    weights = [*transformer_dir.glob("*.safetensors"), *transformer_dir.glob("*.bin")]
    return not weights or max(p.stat().st_mtime for p in weights) <= path.stat().st_mtime


def publish(exported: Mapping[Path, Path], what: str) -> None:
    """Copy each file an exporter wrote onto its path below the body, one atomic write each; ModelFormatError
    naming ``what`` when the exporter did not write one."""
    missing = [p.name for p in exported.values() if not p.is_file()]
    if missing:
        raise ModelFormatError(f"{what} did not produce {', '.join(missing)}")
    for target, source in exported.items():
        atomic_write(target, partial(shutil.copyfile, source))


def runtime_module(spec: VariantSpec):
    """Import the module that runs ``spec``'s runtime; MissingDependency names the extra to install."""
    if spec.runtime == "openvino":  # before anything imports openvino: no telemetry
        from fastclf.backends.openvino_backend import disable_telemetry

        disable_telemetry()
    with quiet_logs():  # torch and torchao warn about optional kernels (CUDA, mxfp8) on import
        try:
            importlib.import_module(spec.package)
        except ImportError as exc:
            raise missing_dependency(spec.package, spec.extra) from exc
        return importlib.import_module(f"{__name__}.{spec.runtime}_backend")


def export_note(variant: str, n_texts: int) -> str:
    """What is worth saying before a long export of ``variant`` starts ("" for most)."""
    if not get_spec(variant).option.get("distill"):
        return ""
    from fastclf.backends._distill import DISTILL_STEPS

    return f"distilling a smaller body on {n_texts} texts, {DISTILL_STEPS} steps: several minutes on a small CPU"


def runtime_installed(variant: str) -> bool:
    """Whether the Python package of ``variant``'s runtime is installed (checked without importing it)."""
    return importlib.util.find_spec(get_spec(variant).package) is not None


def is_exported(body_dir: Path, variant: str) -> bool:
    """Whether the files of ``variant`` exist below ``body_dir``."""
    return all((Path(body_dir) / f).is_file() for f in get_spec(variant).files)


def load_body(body_dir: str | Path, variant: str = REFERENCE, *, threads: int | None = None) -> Body:
    """Load the sentence-transformers folder ``body_dir`` as ``variant`` with :func:`requested_threads` threads;
    ModelFormatError for a folder :func:`fastclf.safety.check_body` refuses, or a damaged or incomplete one."""
    from fastclf.safety import check_body

    spec = get_spec(variant)
    body_dir = Path(body_dir)
    check_body(body_dir)  # the one check every variant passes before its runtime sees the folder
    module = runtime_module(spec)
    try:
        with quiet_logs():  # the runtimes' own warnings while they load say nothing about the user's model
            return module.load(body_dir, spec, requested_threads(threads))
    except (FastclfError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a damaged or missing file fails deep in transformers, tokenizers or a runtime
        where = body_dir / spec.files[0] if spec.files else body_dir
        hint = f"; re-export it with: {export_command(variant)}" if spec.files else ""
        raise ModelFormatError(f"cannot load {variant} from {where}: it is corrupted, truncated or incomplete "
                               f"({type(exc).__name__}: {first_line(exc)[:300]}){hint}") from None


def reset_runtime_state() -> None:
    """Drop torch.compile's dynamo caches between models (past its recompile limit it falls back to eager)."""
    if "torch" in sys.modules:
        import torch

        torch._dynamo.reset()


#: environment variable that sets the runtimes' thread count (``fastclf benchmark --threads``)
THREADS_ENV = "FASTCLF_THREADS"
#: the math libraries' thread counts, set beside it where a process gets its share of the cores
MATH_THREADS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: variants that rely on a CPU feature: variant -> (features, any of which it needs, variant to use without them)
ISA_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "openvino-bf16": (("avx512_bf16", "amx_bf16"), "openvino-fp32"),
    "torch-bf16": (("avx512_bf16", "amx_bf16"), REFERENCE),
}


def requested_threads(threads: int | None = None) -> int | None:
    """``threads``, else ``$FASTCLF_THREADS`` (SettingError unless a positive integer), else None (the runtime's)."""
    if threads is not None:
        return int(threads)
    value = os.environ.get(THREADS_ENV, "").strip()
    if value and (not value.isdigit() or int(value) < 1):
        raise SettingError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    return int(value) if value else None


_warned: set[tuple[str, str]] = set()


def variant_for_this_cpu(variant: str, choice: dict | None = None, flags: Sequence[str] | None = None) -> str:
    """``variant``, or the one to run instead on a CPU without the ISA it relies on (:data:`ISA_NEEDS`),
    with a warning once a process that names fastclf.json's ``default_variant_choice``."""
    if variant not in ISA_NEEDS:
        return variant
    wanted, fallback = ISA_NEEDS[variant]
    isa = cpu_info()["isa"] if flags is None else flags
    if isinstance(isa, (list, tuple)) and set(isa) & set(wanted):
        return variant
    if (variant, fallback) not in _warned:
        _warned.add((variant, fallback))
        m = (choice or {}).get("machine")
        chosen_on = f" (chosen on {m.get('cpu', '?')} with {', '.join(m.get('isa', [])) or 'no listed ISA'})" \
            if isinstance(m, dict) else ""
        logging.getLogger("fastclf").warning("default variant %s%s needs %s, which this CPU lacks: using %s instead",
                                             variant, chosen_on, " or ".join(wanted), fallback)
    return fallback


def export_variant(body_dir: str | Path, variant: str, calibration_texts: Sequence[str],
                   fit_head: Callable[[Body], LogisticHead] | None = None) -> None:
    """Write the files of ``variant`` below ``body_dir``, and for a variant with its own head, ``fit_head(body)``
    (DataError when it needs one and ``fit_head`` is None)."""
    from fastclf.safety import check_body

    spec = get_spec(variant)
    check_body(body_dir)
    module = runtime_module(spec)
    if spec.head and fit_head is None:
        raise DataError(f"variant {variant!r} is a new model with its own head, fit on the labeled training "
                        "examples: the training file was not found")
    texts = [t for t in calibration_texts if isinstance(t, str) and t.strip()]
    if spec.option.get("quantize") == "static" and not texts:
        raise DataError(f"{variant} is static int8: its export needs calibration texts, none were given")
    module.export(Path(body_dir), spec, texts)
    if spec.head and fit_head is not None:
        head = fit_head(module.load(Path(body_dir), spec))
        atomic_write(Path(body_dir) / spec.head, head.save)
