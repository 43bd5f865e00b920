"""The machine a figure was measured on: CPU model, the flags speed depends on (stages/common/machine.py),
cores, memory, Python. Every results file (results.json, timings.json) records it beside its figures.
Standard library only: benchmarks/timings.py runs before the environment is installed."""

from __future__ import annotations

import os
import platform

from stages.common.machine import cpu_info


def machine() -> dict:
    """This machine, as the results files record it."""
    model, flags = cpu_info()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    found = {"cpu": model, "flags": flags, "cores": os.cpu_count(), "memory_gib": round(memory / 2**30, 1),
             "python": platform.python_version()}
    # Set to emulate an older CPU (oneDNN's kernels only): the figures are then not this CPU's own.
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return found | ({"onednn_max_cpu_isa": cap} if cap else {})
