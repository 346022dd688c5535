"""The machine fastclf runs on, the one module that reads ``/proc/cpuinfo`` and ``/proc/meminfo`` (once a
process): CPU model, instruction-set flags, cores, memory and load; without ``/proc``, counts come from ``os``."""

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
REPORT_FLAGS = ("fma", *ISA_FLAGS)


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


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _memory_gb(text: str) -> float | None:
    line = next((x for x in text.splitlines() if x.startswith("MemTotal:")), "")
    try:
        return round(int(line.split()[1]) / 1024**2, 1)
    except (ValueError, IndexError):
        return None


@functools.cache
def cpu() -> CPU:
    """This machine's CPU, read once a process: the first processor's fields, cores and sockets over all."""
    lines = _read("/proc/cpuinfo").splitlines()
    rows = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    first: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    phys = "0"
    for key, value in rows:
        first.setdefault(key, value)
        if key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    flags = frozenset((first.get("flags") or first.get("Features", "")).split())  # Features: ARM
    return CPU(model=first.get("model name") or platform.processor() or platform.machine(),
               vendor=first.get("vendor_id") or platform.machine(), family=first.get("cpu family"),
               model_number=first.get("model"), flags=flags, logical_cpus=os.cpu_count(),
               physical_cores=len(cores) or None, sockets=len({v for k, v in rows if k == "physical id"}) or None,
               memory_gb=_memory_gb(_read("/proc/meminfo")))


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity; read at each call, it can change)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Usable CPUs, no more than the physical cores (a second thread on a core only contends for its units)."""
    return max(1, min(usable_cpus(), cpu().physical_cores or usable_cpus()))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); elsewhere it is emulated and slow."""
    return cpu().has("avx512_bf16", "amx_bf16")


def isa_summary() -> dict[str, object]:
    """CPU model, logical CPUs and its :data:`ISA_FLAGS`: recorded next to a default variant chosen here."""
    c = cpu()
    return {"cpu": c.model, "cores": c.logical_cpus, "isa": [f for f in ISA_FLAGS if f in c.flags]}


def platform_info() -> dict[str, Any]:
    """The CPU (with cores, memory, load and :data:`REPORT_FLAGS`), OS and Python: the benchmark's ``machine``."""
    c = cpu()
    try:
        load: tuple[float, float, float] | None = os.getloadavg()
    except (AttributeError, OSError):
        load = None
    cpu_info = {"model": c.model, "vendor": c.vendor, "logical_cpus": c.logical_cpus, "usable_cpus": usable_cpus(),
                "family": c.family, "model_number": c.model_number, "physical_cores": c.physical_cores,
                "sockets": c.sockets, "flags": {f: f in c.flags for f in REPORT_FLAGS} if c.flags else {},
                "hypervisor": "hypervisor" in c.flags if c.flags else None, "memory_gb": c.memory_gb,
                "load_average": load}
    return {"cpu": cpu_info, "os": platform.platform(), "python": platform.python_version(),
            "python_implementation": platform.python_implementation()}
