"""What this machine's processor is and can do, for the benchmarks and the Training page.

bf16 matrix products are fast where the CPU has units for them: AVX-512 BF16 (dot products
of bf16 pairs in vector registers) and, faster still, Intel's AMX (tile units, `amx_bf16`).
"""

from __future__ import annotations

import functools
import platform

import torch

from .train import resolve_device

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", *BF16_FLAGS)


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's entry of /proc/cpuinfo (Linux), else nothing."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}


def cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def bf16_units() -> list[str]:
    """Which of the bf16 units the CPU has ([] when it has none, or the platform does not say)."""
    flags = cpu_flags()
    return [flag for flag in BF16_FLAGS if flag in flags]


def precisions_here() -> list[str]:
    """The precisions a run can train in here: fp16 only on a CUDA GPU."""
    return ["fp32", "bf16", "fp16"] if torch.cuda.is_available() else ["fp32", "bf16"]


def where_it_trains(device: str, precision: str) -> str:
    """The device and precision a run will use, and what this processor has for bf16, in a sentence."""
    if resolve_device(device).type == "cuda":
        return f"Trains on {torch.cuda.get_device_name(0)} in {precision}."
    units = bf16_units()
    return f"Trains on the CPU ({cpu_name()}) in {precision}; bf16 units: {', '.join(units) if units else 'none'}."
