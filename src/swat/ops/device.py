"""What the hardware computes fast."""

from __future__ import annotations

import functools

import torch

_NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_low_precision_matmul(device: torch.device) -> bool:
    """True where bf16/fp16 matmuls are at least as fast as fp32: any GPU, or a CPU with
    AVX512-BF16 or AMX. Elsewhere (e.g. AVX2-only CPUs) PyTorch's bf16 matmul falls back to a
    scalar path about 100x slower than fp32, so kernels upcast to fp32 instead."""
    if device.type != "cpu":
        return True
    return any(flag in _cpu_flags() for flag in _NATIVE_BF16_CPU_FLAGS)
