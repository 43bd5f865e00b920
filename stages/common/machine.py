"""The machine this runs on, in words: the CPU model and the flags this project's speed and numbers
depend on. Standard library only (benchmarks/timings.py uses it before anything is installed)."""

from __future__ import annotations

import importlib.util
import os
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
    """'Intel(R) Xeon(R) Processor (avx2, avx512f, avx512_bf16, amx_bf16)', and the oneDNN cap if set."""
    model, flags = cpu_info()
    return f"{model} ({', '.join(flags) or 'none of ' + ', '.join(FLAGS_OF_INTEREST)}){describe_isa_cap()}"


# oneDNN's ISA levels (ONEDNN_MAX_CPU_ISA), lowest first, up to those with native 16-bit kernels.
# A cap below a precision's level (ONEDNN_MAX_CPU_ISA=AVX2 emulates an older CPU) leaves oneDNN no
# convolution in it at all: TensorFlow still sends bfloat16 (float16) to oneDNN on a CPU that has the
# flags, and the first convolution fails ("could not create a primitive descriptor").
ONEDNN_ISA_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                    "AVX512_CORE_BF16", "AVX512_CORE_FP16")
ONEDNN_LEVEL_OF = {"bfloat16": "AVX512_CORE_BF16", "float16": "AVX512_CORE_FP16"}
ONEDNN_CAP_VARIABLE = "ONEDNN_MAX_CPU_ISA"


def onednn_cap(environ: dict[str, str] | None = None) -> str:
    """ONEDNN_MAX_CPU_ISA as set ("" when unset)."""
    return (environ if environ is not None else os.environ).get(ONEDNN_CAP_VARIABLE, "").strip()


def onednn_capped_below(level: str, cap: str) -> bool:
    """Whether the cap (ONEDNN_MAX_CPU_ISA's value) keeps oneDNN below ISA `level`: never when unset,
    ALL, DEFAULT, or a level above those listed (the AMX ones)."""
    cap = cap.strip().upper()
    return cap in ONEDNN_ISA_ORDER and ONEDNN_ISA_ORDER.index(cap) < ONEDNN_ISA_ORDER.index(level)


def onednn_allows(precision: str, environ: dict[str, str] | None = None) -> bool:
    """False when ONEDNN_MAX_CPU_ISA caps oneDNN below its kernels for a 16-bit precision (bfloat16:
    AVX512_CORE_BF16, float16: AVX512_CORE_FP16); float32 always runs."""
    return precision not in ONEDNN_LEVEL_OF or not onednn_capped_below(ONEDNN_LEVEL_OF[precision],
                                                                        onednn_cap(environ))


def litert_installed() -> bool:
    """Whether LiteRT (the ai-edge-litert package) can run here: the transfer model's float32 engine."""
    return importlib.util.find_spec("ai_edge_litert") is not None


def describe_isa_cap(environ: dict[str, str] | None = None) -> str:
    """'; oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA)' when the variable is set, else ''."""
    cap = (environ if environ is not None else os.environ).get(ONEDNN_CAP_VARIABLE, "").strip()
    return f"; oneDNN capped at {cap} ({ONEDNN_CAP_VARIABLE})" if cap else ""
