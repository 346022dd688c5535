"""The machine fastclf runs on: CPU model, instruction-set flags, cores, memory and load.

The one module that reads ``/proc/cpuinfo`` and ``/proc/meminfo``; they are parsed once a
process (:func:`cpu`). The distillation asks it for native bf16 (:func:`cpu_has_bf16`), the numpy
pipeline for the threads to use (:func:`physical_cores`), the variant registry for the ISA
a variant needs (:func:`isa_summary`) and the benchmark for the report (:func:`cpu_info`).
On a system without ``/proc`` the flags are empty and the counts come from ``os``.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the instruction sets that decide which variant is fastest (int8: VNNI, AMX-INT8; bf16: AVX512-BF16, AMX-BF16)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
#: the flags the benchmark report lists (``machine.cpu.flags`` in report.json)
REPORT_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CPU:
    """What ``/proc/cpuinfo`` and ``/proc/meminfo`` say about this machine (None: not known)."""

    model: str
    vendor: str
    family: str | None = None
    model_number: str | None = None
    flags: frozenset[str] = field(default=frozenset(), repr=False)
    logical_cpus: int | None = None
    physical_cores: int | None = None
    sockets: int | None = None
    memory_gb: float | None = None

    def has(self, *flags: str) -> bool:
        """Whether the CPU has any of ``flags``."""
        return any(f in self.flags for f in flags)

    @property
    def hypervisor(self) -> bool | None:
        """Whether the CPU says it runs under a hypervisor (None: no flags to tell)."""
        return "hypervisor" in self.flags if self.flags else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The fields of ``/proc/cpuinfo`` text that :class:`CPU` holds (first processor's model and
    flags; physical cores and sockets counted over all processors)."""
    out: dict[str, Any] = {}
    cores: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    phys = "0"
    first = {"model name": "model", "vendor_id": "vendor", "cpu family": "family", "model": "model_number"}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in first and first[key] not in out:
            out[first[key]] = value
        elif key in ("flags", "Features") and "flags" not in out:  # Features: ARM
            out["flags"] = frozenset(value.split())
        elif key == "physical id":
            phys = value
            sockets.add(value)
        elif key == "core id":
            cores.add((phys, value))
    out["physical_cores"] = len(cores) or None
    out["sockets"] = len(sockets) or None
    return out


def _memory_gb(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            try:
                return round(int(line.split()[1]) / 1024**2, 1)
            except (ValueError, IndexError):
                return None
    return None


@functools.cache
def cpu() -> CPU:
    """This machine's CPU, read once a process."""
    fields = parse_cpuinfo(_read("/proc/cpuinfo"))
    return CPU(model=fields.get("model") or platform.processor() or platform.machine(),
               vendor=fields.get("vendor") or platform.machine(), family=fields.get("family"),
               model_number=fields.get("model_number"), flags=fields.get("flags", frozenset()),
               logical_cpus=os.cpu_count(), physical_cores=fields["physical_cores"], sockets=fields["sockets"],
               memory_gb=_memory_gb(_read("/proc/meminfo")))


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity; read at each call, it can change)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores this process may use (at least 1): the usable CPUs, no more than the
    machine's physical cores (a second thread on a core only contends for its vector units)."""
    return max(1, min(usable_cpus(), cpu().physical_cores or usable_cpus()))


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); elsewhere it is emulated and slow."""
    return cpu().has(*BF16_FLAGS)


def isa_summary() -> dict[str, object]:
    """CPU model, logical CPUs and the :data:`ISA_FLAGS` it has: what fastclf.json records
    next to a default variant chosen on this machine."""
    c = cpu()
    return {"cpu": c.model, "cores": c.logical_cpus, "isa": [f for f in ISA_FLAGS if f in c.flags]}


def cpu_info() -> dict[str, Any]:
    """CPU model, cores, memory, load and the :data:`REPORT_FLAGS` (the benchmark report's
    ``machine.cpu``)."""
    c = cpu()
    return {"model": c.model, "vendor": c.vendor, "logical_cpus": c.logical_cpus, "usable_cpus": usable_cpus(),
            "family": c.family, "model_number": c.model_number, "physical_cores": c.physical_cores,
            "sockets": c.sockets, "flags": {f: f in c.flags for f in REPORT_FLAGS} if c.flags else {},
            "hypervisor": c.hypervisor, "memory_gb": c.memory_gb, "load_average": load_average()}


def platform_info() -> dict[str, Any]:
    """The CPU (:func:`cpu_info`), OS and Python version."""
    return {"cpu": cpu_info(), "os": platform.platform(), "python": platform.python_version(),
            "python_implementation": platform.python_implementation()}
