"""What runs the transfer model's frozen VGG16 base, and in what precision: `auto` is a rule of the CPU.

    choose_base("auto", "auto")          # BaseChoice("bfloat16", "keras", why=...) on an AMX CPU
    keras_precision("auto")              # the precision the base trains in when it is in the graph

The rule follows the timings in benchmarks/engines.json and measured.yaml (docs/models.md#precision):
Keras bfloat16 ran the base 3.6x faster than float32 on an Intel Xeon with amx_bf16 and 2x faster on
an AMD EPYC with avx512_bf16, but 1.5x slower on an Intel Xeon with avx512_bf16 and no AMX; on an
AVX2-only AMD EPYC LiteRT float32 ran it 2.3x faster than Keras float32. So `auto` is bfloat16 where
the CPU has amx_bf16, or is an AMD with avx512_bf16; LiteRT float32 where it has no AVX-512 (or
ONEDNN_MAX_CPU_ISA caps oneDNN below it, as when emulating such a CPU) and ai-edge-litert is
installed; float16 on a GPU; Keras float32 everywhere else.

One CPU kind always gets the same path, so a rerun gives the same bytes; nothing is timed and nothing
is kept outside the project. The features manifest records what ran; train, evaluate and predict
follow it. The features stage prints one line saying what runs the base and why.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from stages.common import machine
from stages.common.errors import UserError

Candidate = tuple[str, str]                 # (precision, engine)
REFERENCE: Candidate = ("float32", "keras")


def bfloat16_pays(cpu: str, flags: list[str], capped: bool = False) -> bool:
    """Whether this CPU runs the base faster in bfloat16 than in float32 (the module's rule): amx_bf16,
    or an AMD with avx512_bf16; never with oneDNN capped below its bfloat16 kernels."""
    return not capped and ("amx_bf16" in flags or ("avx512_bf16" in flags and "AMD" in cpu.upper()))


def avx2_only(flags: list[str], cap: str = "") -> bool:
    """No AVX-512 for oneDNN: the CPU lacks avx512f, or the cap (ONEDNN_MAX_CPU_ISA) keeps oneDNN below it."""
    return "avx512f" not in flags or machine.onednn_capped_below("AVX512_CORE", cap)


def rule(cpu: str, flags: list[str], cap: str = "", gpus: int = 0, litert: bool = True) -> tuple[Candidate, str]:
    """`auto`'s (precision, engine), and why in words, on a CPU of this model name and flags, with
    ONEDNN_MAX_CPU_ISA at `cap`, `gpus` GPUs and ai-edge-litert installed or not."""
    if gpus:
        return ("float16", "keras"), "auto on a GPU"
    if bfloat16_pays(cpu, flags, capped=machine.onednn_capped_below(machine.ONEDNN_LEVEL_OF["bfloat16"], cap)):
        return ("bfloat16", "keras"), "auto on this CPU (amx_bf16, or an AMD with avx512_bf16)"
    if avx2_only(flags, cap) and litert:
        return ("float32", "litert"), "auto on this CPU (AVX2, no AVX-512 for oneDNN)"
    return REFERENCE, "auto on this CPU (bfloat16 pays only with amx_bf16 or on an AMD with avx512_bf16)"


def auto_base(gpus: int) -> tuple[Candidate, str]:
    """The rule on this machine."""
    return rule(*machine.cpu_info(), machine.onednn_cap(), gpus, machine.litert_installed())


class BaseChoice(NamedTuple):
    """The frozen base's precision and engine, and why they run here, in words (`why`)."""
    precision: str
    engine: str
    why: str

    def line(self) -> str:
        """The features stage's one line saying what runs the base and why."""
        return f"features: the frozen base runs in {label((self.precision, self.engine))}: {self.why}"


def label(candidate: Candidate) -> str:
    return f"{candidate[0]} on {candidate[1]}"


def gpu_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def choose_base(precision: str, engine: str, gpus: int | None = None) -> BaseChoice:
    """train.transfer.precision and .engine resolved on this machine: `auto` by auto_base (an engine of
    litert makes an auto precision float32), an explicit choice kept; one this machine cannot run is
    refused in one line."""
    gpus = gpu_count() if gpus is None else gpus
    (auto_precision, auto_engine), why = auto_base(gpus)
    if engine == "litert" and precision == "auto":
        auto_precision = "float32"
    pinned = [key for key, value in (("precision", precision), ("engine", engine)) if value != "auto"]
    if pinned:
        why = f"{' and '.join(pinned)} set in params.yaml (train.transfer)" + (
            f"; the rest {why}" if len(pinned) == 1 else "")
    precision = auto_precision if precision == "auto" else precision
    if engine == "auto":                     # LiteRT runs float32 only: an explicit 16-bit precision is Keras's
        engine = auto_engine if precision == "float32" else "keras"
    chosen = refuse_unrunnable(precision, engine, gpus)
    return BaseChoice(*chosen, why=why)


def resolve_base(precision: str, engine: str, gpus: int | None = None) -> Candidate:
    """choose_base's (precision, engine), without the why."""
    choice = choose_base(precision, engine, gpus)
    return choice.precision, choice.engine


def refuse_unrunnable(precision: str, engine: str, gpus: int) -> Candidate:
    """(precision, engine) as given, unless this machine cannot run it: then a one-line UserError."""
    if engine == "litert" and precision != "float32":
        raise UserError(f"train.transfer.engine: litert runs the base in float32 only, not {precision}; "
                        "set train.transfer.precision: float32 (or auto), or engine: keras")
    if engine == "keras" and not machine.onednn_allows(precision) and not gpus:
        raise UserError(f"train.transfer.precision: {precision} cannot run with {machine.ONEDNN_CAP_VARIABLE}="
                        f"{os.environ.get(machine.ONEDNN_CAP_VARIABLE)} (oneDNN has no {precision} kernels below "
                        f"{machine.ONEDNN_LEVEL_OF[precision]}); set precision: auto or float32, or unset the variable")
    return precision, engine


def keras_precision(precision: str, gpus: int | None = None) -> str:
    """The precision the base trains in when the head learns through it in Keras (augmentation or
    fine-tuning): an explicit one, else auto_base's."""
    gpus = gpu_count() if gpus is None else gpus
    if precision == "auto":
        precision = auto_base(gpus)[0][0]
    return refuse_unrunnable(precision, "keras", gpus)[0]
