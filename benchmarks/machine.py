"""The machine a figure was measured on: CPU model, the vector and matrix flags speed depends on,
cores, memory, Python. Every results file (results.json, timings.json) records it beside its figures.
Standard library only: benchmarks/timings.py runs before the environment is installed."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The /proc/cpuinfo flags that change this project's speed: AVX2 and AVX-512 for float32 kernels;
# native bfloat16 (avx512_bf16, amx_bf16) for the transfer model's base in bfloat16, emulated without.
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_info(cpuinfo: str | None = None) -> tuple[str, list[str]]:
    """The CPU's model name and which FLAGS_OF_INTEREST it has, from /proc/cpuinfo's text."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    model = fields.get("model name") or platform.processor() or "unknown CPU"
    flags = set(fields.get("flags", "").split())
    return model, [flag for flag in FLAGS_OF_INTEREST if flag in flags]


def machine() -> dict:
    """This machine, as the results files record it."""
    model, flags = cpu_info()
    return {"cpu": model, "flags": flags, "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "python": platform.python_version()}
