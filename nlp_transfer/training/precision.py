"""Which precision a run trains in: ``train.mixed_precision: auto`` resolved against the hardware.

``auto`` (the default) picks ``bf16`` where the hardware computes in bfloat16 natively: a CUDA
GPU that supports it, or a CPU whose instruction set has bfloat16 arithmetic (x86
``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``). Everywhere else it picks ``no`` (fp32): on a CPU
without native bf16, bfloat16 is emulated and slower than fp32, and ``fp16`` (GPUs without
bf16) needs loss scaling and can overflow, so it stays a choice the recipe makes explicitly.
"""

from __future__ import annotations

import functools
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# /proc/cpuinfo flags that mean bfloat16 arithmetic in hardware (x86: AVX512-BF16, AMX; Arm: FEAT_BF16)
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@dataclass(frozen=True)
class Precision:
    """A resolved ``train.mixed_precision``: what was asked, what runs, and why."""

    requested: str
    used: str
    reason: str

    def as_dict(self) -> dict:
        return {"requested": self.requested, "used": self.used, "reason": self.reason}


def resolve_mixed_precision(requested: str) -> Precision:
    """Turn a recipe's ``train.mixed_precision`` into the value Accelerate gets.

    Args:
        requested: ``auto``, ``no``, ``fp16`` or ``bf16``.

    Returns:
        The precision to use; an explicit value is kept as it is.
    """
    if requested != "auto":
        return Precision(requested, requested, "set in the recipe")
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return Precision("auto", "bf16", f"GPU with bf16 ({torch.cuda.get_device_name()})")
        return Precision("auto", "no", f"GPU without bf16 ({torch.cuda.get_device_name()}); fp16 is opt-in: "
                                       "train.mixed_precision=fp16")
    flags = cpu_bf16_flags()
    if flags:
        return Precision("auto", "bf16", f"CPU with native bf16 ({', '.join(flags)})")
    return Precision("auto", "no", f"CPU without native bf16 ({platform.machine() or 'unknown'}): fp32 is faster "
                                   "than emulated bf16")


def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU's native-bf16 instruction flags (empty when it has none or they cannot be read)."""
    return tuple(flag for flag in NATIVE_BF16_CPU_FLAGS if flag in _cpu_flags())


def has_native_bf16() -> bool:
    """Whether bfloat16 arithmetic runs natively here (a bf16 GPU, or a CPU with bf16 instructions)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(cpu_bf16_flags())


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` says."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no portable way to ask, so no native bf16 is assumed (fp32 is the safe side)
        return ""


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (x86 ``flags``, Arm ``Features``)."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()
