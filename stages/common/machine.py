"""The machine this runs on, in words: the CPU model and the flags this project's speed and numbers
depend on. Standard library only (benchmarks/timings.py uses it before anything is installed)."""

from __future__ import annotations

import platform
from pathlib import Path

# The /proc/cpuinfo flags that change this project's speed and its float rounding: AVX2 and AVX-512
# for float32 kernels; native bfloat16 (avx512_bf16, amx_bf16) for the transfer model's base in
# bfloat16, emulated without.
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


def describe_cpu() -> str:
    """'Intel(R) Xeon(R) Processor (avx2, avx512f, avx512_bf16, amx_bf16)'."""
    model, flags = cpu_info()
    return f"{model} ({', '.join(flags) or 'none of ' + ', '.join(FLAGS_OF_INTEREST)})"
