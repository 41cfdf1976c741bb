"""The ``triton`` backend: fused banded SWAT attention on the GPU (kernels in
:mod:`swat.ops.triton_kernels`, their layout and math in its docstring).

- training and prefill: one fused forward kernel (``O(q_len * window)``) and a fused backward
  (one kernel for ``dK, dV``, one for ``dQ``), wrapped in an ``autograd.Function``;
- decoding (a few query rows, no gradient, a long band): the same forward kernel with the band
  split over several programs per row block (each sums its share of the keys; the shares are
  combined here: summed for sigmoid, rescaled by their maxima for softmax), so a decoding step
  keeps the GPU busy even with one query per sequence.

Triton is imported on first use, never by ``import swat.ops``. On a machine without a GPU the
kernels run under Triton's CPU interpreter when ``TRITON_INTERPRET=1`` is set before Triton is
imported (the tests do this); they then take CPU tensors.
"""

from __future__ import annotations

import functools
import os

import torch
from torch.autograd.function import once_differentiable

from swat.ops.spec import AttentionSpec

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256
# A decoding call splits its band into shares of this many keys when it has at most one block of
# rows per (batch, kv head): unmeasured, the usual flash-decoding order of magnitude.
DECODE_KEYS_PER_SPLIT = 256


def interpreted() -> bool:
    """True when Triton runs its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@functools.cache
def triton_available() -> bool:
    """True when Triton can be imported (imports it on the first call)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def supports(q: torch.Tensor) -> bool:
    """True when the kernels take queries like ``q`` (fp16, bf16 or fp32, head_dim <= 256) and
    Triton is installed; the device is the caller's business (CUDA, or anything under the
    interpreter)."""
    return q.dtype in DTYPES and q.shape[-1] <= MAX_HEAD_DIM and triton_available()


def _check(q: torch.Tensor) -> None:
    if not triton_available():
        raise ValueError("backend='triton' needs the triton package, which cannot be imported here: install it "
                         "(pip install triton, Linux; swat's dev extra includes it), or use backend='auto', which "
                         "runs the other backends without it")
    if q.device.type != "cuda" and not interpreted():
        raise ValueError(f"backend='triton' runs on CUDA tensors (got {q.device.type}); use backend='chunked' "
                         "here, or set TRITON_INTERPRET=1 before importing triton to run its CPU interpreter")
    if q.dtype not in DTYPES:
        raise ValueError(f"backend='triton' computes in float16, bfloat16 or float32, got {q.dtype}; "
                         "use backend='chunked' or 'reference' for float64")
    if q.shape[-1] > MAX_HEAD_DIM:
        raise ValueError(f"backend='triton' supports head_dim <= {MAX_HEAD_DIM}, got {q.shape[-1]}; "
                         "use backend='chunked'")


def _block_d(head_dim: int) -> int:
    return max(16, 1 << (head_dim - 1).bit_length())


def _blocks(head_dim: int, dtype: torch.dtype, backward: bool) -> tuple[int, int]:
    """``(BLOCK_M, BLOCK_N)``: 64 x 64 tiles for narrow rows, smaller ones as a row of q, k, v (and,
    backward, of the gradients) grows. A rule of thumb, not tuned; compiled for sm_90 every choice
    needs under 85 KB of shared memory (bf16 head_dim 128: forward 64 x 64, backward 64 x 32)."""
    row_bytes = _block_d(head_dim) * (4 if dtype == torch.float32 else 2) * (2 if backward else 1)
    if row_bytes <= 256:
        return 64, 64
    if row_bytes <= 512:
        return 64, 32
    if row_bytes < 1024:
        return 32, 32
    return 16, 16


def _launch_options() -> dict[str, int]:
    return {} if interpreted() else {"num_warps": 4, "num_stages": 2}


def _segments(spec: AttentionSpec, q: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The segment ids (or a 1-element placeholder the kernel never reads) and their strides."""
    if spec.segment_ids is None:
        return q.new_zeros(1, dtype=torch.int32), (0, 0)
    ids = spec.segment_ids.to(device=q.device)
    return ids, (ids.stride(0), ids.stride(1))


def _slopes(spec: AttentionSpec, q: torch.Tensor) -> torch.Tensor:
    if spec.slopes is None:
        return q.new_zeros(1, dtype=torch.float32)
    return spec.slopes.detach().to(device=q.device, dtype=torch.float32).contiguous()


def _flags(spec: AttentionSpec, dtype: torch.dtype) -> dict[str, object]:
    """The kernels' compile-time switches. float32 matmuls are exact (``ieee``, no TF32). The
    interpreter (numpy) has no bf16 matmul and truncates float32 -> bf16 where GPUs round to
    nearest, so under it 16-bit inputs are upcast as they are loaded and the tiles stay float32;
    only the stored results are 16-bit."""
    return dict(SOFTMAX=spec.softmax, HAS_SLOPES=spec.slopes is not None,
                HAS_SEGMENTS=spec.segment_ids is not None,
                UPCAST=interpreted() and dtype != torch.float32,
                INPUT_PRECISION="ieee" if dtype == torch.float32 else "tf32")


def _forward(q, k, v, spec: AttentionSpec, block_m: int, block_n: int, keys_per_split: int | None):
    """Runs the forward kernel. Returns ``(out, lse)``; ``lse`` is ``[batch, heads, q_len]``
    (float32, softmax only, else ``None``). With ``keys_per_split`` the band is split and the
    shares are combined here (no ``lse``)."""
    from swat.ops.triton_kernels import attention_forward_kernel

    batch, q_len, heads, head_dim = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    window = spec.band(kv_len)
    rows = q_len * group
    segments, seg_strides = _segments(spec, q)
    # a block of rows covers at most block_m // group + 2 positions, whose bands span this many keys
    span = min(kv_len, window + min(q_len, block_m // group + 2) - 1)
    splits = 1 if keys_per_split is None else -(-span // keys_per_split)
    if keys_per_split is None:
        out = torch.empty_like(q)
        out_strides = (0, *out.stride())
        lse = torch.empty(batch, heads, q_len, dtype=torch.float32, device=q.device)
        lse_strides = (0, *lse.stride())
    else:
        out = torch.empty(splits, batch, q_len, heads, head_dim, dtype=torch.float32, device=q.device)
        out_strides = out.stride()
        lse = torch.empty(splits, batch, heads, q_len, 2, dtype=torch.float32, device=q.device)
        lse_strides = lse.stride()[:4]
    grid = (-(-rows // block_m), batch * kv_heads, splits)
    attention_forward_kernel[grid](
        q, k, v, out, lse, _slopes(spec, q), segments,
        *q.stride(), *k.stride(), *v.stride(), *out_strides, *lse_strides, *seg_strides,
        q_len, kv_len, heads, group, head_dim, window, keys_per_split or kv_len,
        float(spec.scale), float(spec.sigmoid_bias),
        PARTIAL=keys_per_split is not None,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=_block_d(head_dim), **_flags(spec, q.dtype), **_launch_options(),
    )
    if keys_per_split is None:
        return out, (lse if spec.softmax else None)
    if not spec.softmax:
        return out.sum(0).to(q.dtype), None
    share_max, share_sum = lse[..., 0].transpose(2, 3), lse[..., 1].transpose(2, 3)  # [splits, b, n, h]
    weight = torch.exp(share_max - share_max.amax(0, keepdim=True))  # a share without keys: exp(-inf) = 0
    total = (out * weight[..., None]).sum(0) / (share_sum * weight).sum(0)[..., None]
    return total.to(q.dtype), None


def _backward(q, k, v, out, lse, grad_out, spec: AttentionSpec, block_m: int, block_n: int):
    from swat.ops.triton_kernels import attention_backward_dkdv_kernel, attention_backward_dq_kernel

    batch, q_len, heads, head_dim = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    window = spec.band(kv_len)
    segments, seg_strides = _segments(spec, q)
    slopes = _slopes(spec, q)
    if spec.softmax:  # rowsum(dO * O), [batch, heads, q_len] like lse
        row_dot = (grad_out.float() * out.float()).sum(-1).transpose(1, 2).contiguous()
    else:
        lse = row_dot = q.new_zeros(1, 1, 1, dtype=torch.float32)
    dq = torch.empty_like(q)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)  # contiguous: one set of strides for both
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    shared = dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=_block_d(head_dim), **_flags(spec, q.dtype),
                  **_launch_options())
    sizes = (q_len, kv_len, heads, group, head_dim, window, float(spec.scale), float(spec.sigmoid_bias))
    strides = (*q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *lse.stride())
    attention_backward_dkdv_kernel[(-(-kv_len // block_n), batch * kv_heads)](
        q, k, v, grad_out, lse, row_dot, dk, dv, slopes, segments,
        *strides, *dk.stride(), *seg_strides, *sizes, **shared,
    )
    attention_backward_dq_kernel[(-(-q_len * group // block_m), batch * kv_heads)](
        q, k, v, grad_out, lse, row_dot, dq, slopes, segments,
        *strides, *dq.stride(), *seg_strides, *sizes, **shared,
    )
    return dq, dk, dv


class _TritonAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, spec, blocks):
        out, lse = _forward(q, k, v, spec, *blocks[0], keys_per_split=None)
        ctx.save_for_backward(q, k, v, out if spec.softmax else None, lse)
        ctx.spec, ctx.blocks = spec, blocks
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        grads = _backward(q, k, v, out, lse, grad_out.contiguous(), ctx.spec, *ctx.blocks[1])
        return (*grads, None, None)


def triton_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    *,
    blocks: tuple[int, int] | None = None,
    keys_per_split: int | None = None,
) -> torch.Tensor:
    """Fused SWAT attention. Shapes as in :func:`swat.ops.swat_attention`.

    ``blocks`` (``BLOCK_M`` rows, ``BLOCK_N`` keys; powers of two >= 16) overrides the tile sizes
    of forward and backward; ``keys_per_split`` forces the split-band decoding path with shares of
    that many keys (only without gradients). By default decoding calls (a single block of rows per
    kv head, no gradient, a band longer than :data:`DECODE_KEYS_PER_SPLIT`) take it.
    """
    _check(q)
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    head_dim = q.shape[-1]
    forward_blocks = blocks or _blocks(head_dim, q.dtype, backward=False)
    backward_blocks = blocks or _blocks(head_dim, q.dtype, backward=True)
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
    rows = q.shape[1] * (q.shape[2] // k.shape[2])
    if keys_per_split is None and rows <= forward_blocks[0] and spec.band(k.shape[1]) > DECODE_KEYS_PER_SPLIT:
        keys_per_split = DECODE_KEYS_PER_SPLIT
    if keys_per_split is not None and not needs_grad:
        return _forward(q, k, v, spec, *forward_blocks, keys_per_split=keys_per_split)[0]
    return _TritonAttention.apply(q, k, v, spec, (forward_blocks, backward_blocks))
