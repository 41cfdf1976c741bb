"""Fused SWAT attention for the CPU: the op of docs/spec.md section 1 as one C++ kernel per pass.

The kernel (``csrc/swat_cpu.cpp``) computes what :mod:`swat.ops.chunked` computes, tile by tile,
but each tile is two GEMMs (scores, output) around one fused pass that adds the position term
``b - m_h * (i - j)``, masks the band and the segments and applies the activation, in per-thread
scratch buffers; ``at::parallel_for`` runs the tiles of all (batch, head) lanes, each thread
taking the next tile from a shared counter. The GEMMs go through ``at::native::cpublas::brgemm``:
oneDNN's small-matrix kernels for fp32, and for bf16 on VNNI-packed operands where oneDNN's bf16
kernels run (AVX512-BF16, AMX); elsewhere PyTorch's own GEMM. The backward
recomputes each tile's weights (softmax from the saved row log-sum-exp) and parallelises over
(batch, kv head) lanes, each task owning its lane's ``dK``, ``dV`` accumulators, so no atomics are
needed; with fewer lanes than threads a lane's query blocks are split over tasks whose
accumulators are summed at the end.

Precision as in :mod:`swat.ops.chunked`: fp32 throughout for fp32; bf16 matmul inputs with fp32
scores, weights and accumulators for bf16 (on CPUs without fast bf16 matmuls bf16 is computed in
fp32). float64 and float16 inputs, and tensors on other devices, are delegated to
:func:`swat.ops.chunked.chunked_attention`.

The extension is compiled on first use and cached (:mod:`swat.utils.extensions`; :func:`build`
compiles it ahead of time). Where it cannot be built (no compiler, a build error),
or with ``SWAT_NO_FUSED=1`` in the environment, the backend falls back to ``chunked`` and says so
once, in one line.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import torch

from swat.ops.chunked import chunked_attention
from swat.ops.device import upcast_without_fast_low_precision
from swat.ops.spec import AttentionSpec
from swat.utils.extensions import CompiledExtension, build_failure

SOURCE = Path(__file__).with_name("csrc") / "swat_cpu.cpp"
DISABLE_ENV = "SWAT_NO_FUSED"
# Query positions per tile (the measurement that chose 64: docs/benchmarks.md).
DEFAULT_BLOCK = 64
_FUSED_DTYPES = (torch.float32, torch.bfloat16)
# Portable flags only: the cache may be shared between machines. The GEMMs (oneDNN, PyTorch's BLAS)
# pick the instruction set at run time and the elementwise loops are compiled per instruction set
# (target_clones in the source). -fopenmp makes ``at::parallel_for`` (inline in ATen's headers) an
# OpenMP region: without it every tile runs on the calling thread. The extension links the libgomp
# torch has already loaded (same soname), so both share one thread pool and torch.set_num_threads
# applies. Without -fno-trapping-math GCC 12 keeps the clamp of exp's argument as a branch in the
# AVX2 clone, which leaves the sigmoid and softmax loops scalar there (the kernel signals no
# floating-point exceptions, so nothing depends on trapping).
_CFLAGS = ("-O3", "-fno-trapping-math", "-fopenmp")
_LDFLAGS = ("-fopenmp",)
EXTENSION = CompiledExtension(SOURCE, "the fused CPU attention kernel", _CFLAGS, _LDFLAGS)


@functools.cache
def build() -> None:
    """Compiles the extension (or finds it in the cache) and loads it into this process, which
    registers ``torch.ops.swat_cpu.forward`` (differentiable), ``backward`` and ``threads_used``,
    then adds the fake implementations of the first two (so ``torch.compile`` traces them). Raises
    if it cannot be built."""
    EXTENSION.load()
    _register_fakes()


def threads_used() -> int:
    """How many distinct threads ran the tiles of the last fused kernel call in this process."""
    return int(torch.ops.swat_cpu.threads_used())


_announced: set[str] = set()


def _announce_fallback(reason: str) -> None:
    if reason not in _announced:
        _announced.add(reason)
        print(f"swat: fused CPU attention unavailable ({reason}); using the chunked kernel", file=sys.stderr)


@torch.compiler.assume_constant_result  # torch.compile reads it once, while tracing, as a constant
def available() -> bool:
    """True when the fused kernel can run here (built and not disabled); else says why, once."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        _announce_fallback(f"{DISABLE_ENV} is set")
        return False
    try:
        build()
    except Exception as error:  # noqa: BLE001 (any build failure means: fall back)
        _announce_fallback(f"build failed: {build_failure(error)}")
        return False
    return True


# ``torch.ops.swat_cpu.forward(q, k, v, slopes, segment_ids, band, scale, bias, softmax, block)``
# returns ``(out, lse)``; ``lse`` is ``[batch, q_len, heads]`` fp32 for softmax, ``[0, q_len, heads]``
# for sigmoid. ``backward`` takes the same arguments with ``grad_out``, ``lse`` and ``row_dot`` after
# ``v``; the C++ registers it as the autograd of ``forward``. The shapes below (fake tensors) let
# ``torch.compile`` trace both without running them.
def _forward_fake(q, k, v, slopes, segment_ids, band, scale, bias, softmax, block):
    lse = q.new_empty((q.shape[0] if softmax else 0, q.shape[1], q.shape[2]), dtype=torch.float32)
    return torch.empty_like(q), lse


def _backward_fake(q, k, v, grad_out, lse, row_dot, slopes, segment_ids, band, scale, bias, softmax, block):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _register_fakes() -> None:
    torch.library.register_fake("swat_cpu::forward", _forward_fake)
    torch.library.register_fake("swat_cpu::backward", _backward_fake)


@upcast_without_fast_low_precision
def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec,
                    block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """SWAT attention by the fused C++ CPU kernel. Shapes as in :func:`swat.ops.swat_attention`;
    ``block`` is the number of query positions per tile.

    fp32 and bf16 CPU tensors run the kernel; float64, float16, other devices, and machines where
    the kernel cannot be built (or ``SWAT_NO_FUSED=1``) get :func:`swat.ops.chunked.chunked_attention`.
    """
    if q.device.type != "cpu" or q.dtype not in _FUSED_DTYPES or not available():
        return chunked_attention(q, k, v, spec)
    segment_ids = None if spec.segment_ids is None else spec.segment_ids.to(torch.int64).contiguous()
    slopes = None if spec.slopes is None else spec.slopes.to(torch.float32).contiguous()
    out, _ = torch.ops.swat_cpu.forward(q.contiguous(), k.contiguous(), v.contiguous(), slopes, segment_ids,
                                        spec.band(k.shape[1]), spec.scale, spec.sigmoid_bias, spec.softmax, int(block))
    return out
