"""What the hardware computes fast."""

from __future__ import annotations

import functools
from collections.abc import Callable

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


def upcast_without_fast_low_precision(backend: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Wraps an attention backend ``backend(q, k, v, *args, **options)``: bf16/fp16 inputs on
    hardware without fast low-precision matmuls are computed in fp32 and the result is cast back,
    which is both faster and more accurate there."""

    @functools.wraps(backend)
    def wrapper(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args, **options) -> torch.Tensor:
        if q.dtype in (torch.bfloat16, torch.float16) and not fast_low_precision_matmul(q.device):
            return backend(q.float(), k.float(), v.float(), *args, **options).to(q.dtype)
        return backend(q, k, v, *args, **options)

    return wrapper
