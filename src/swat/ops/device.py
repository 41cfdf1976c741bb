"""What the hardware computes fast."""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable

import torch

_NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def _cpu_info(key: str) -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.cache
def _cpu_flags() -> frozenset[str]:
    return frozenset(_cpu_info("flags").split())


def cpu_isa() -> str:
    """The widest matrix/vector instructions of this CPU that matter for the kernels:
    ``AMX``, ``AVX-512`` (with ``+BF16`` where it has bf16 dot products), ``AVX2`` or ``other``."""
    flags = _cpu_flags()
    if "amx_bf16" in flags:
        return "AMX + AVX-512"
    if "avx512f" in flags:
        return "AVX-512+BF16" if "avx512_bf16" in flags else "AVX-512"
    return "AVX2" if "avx2" in flags else "other"


def _core_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe_machine() -> str:
    """One line naming the machine a measurement ran on: CPU model, cores, instruction set,
    whether bf16 matmuls are fast, GPU if any, and the torch version."""
    cpu = _cpu_info("model name") or platform.processor() or platform.machine()
    fast = "fast" if fast_low_precision_matmul(torch.device("cpu")) else "slow"
    text = f"{cpu}, {_core_count()} cores, {cpu_isa()} (bf16 matmuls {fast})"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text + f", torch {torch.__version__}, Python {platform.python_version()}"


@torch.compiler.assume_constant_result  # torch.compile reads it while tracing, as a constant
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
