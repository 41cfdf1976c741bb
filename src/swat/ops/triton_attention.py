"""The ``triton`` backend: fused banded SWAT attention on the GPU (kernels in
:mod:`swat.ops.triton_kernels`, their layout and math in its docstring).

- training and prefill: one fused forward kernel (``O(q_len * window)``) and a fused backward
  (one kernel for ``dK, dV``, one for ``dQ``), as the custom ops ``swat::triton_forward`` and
  ``swat::triton_backward`` (fake implementations for ``torch.compile``, the backward registered
  as the forward's autograd);
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
import math
import os
from dataclasses import dataclass, replace

import torch

from swat.ops.spec import AttentionSpec

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256
# A decoding call splits its band into shares of this many keys when it has at most one block of
# rows per (batch, kv head): unmeasured, the usual flash-decoding order of magnitude.
DECODE_KEYS_PER_SPLIT = 256


def interpreted() -> bool:
    """True when Triton runs its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@torch.compiler.assume_constant_result  # torch.compile reads it while tracing, as a constant
def triton_available() -> bool:
    """True when Triton can be imported (imports it on the first call)."""
    return _import_triton()


@functools.cache
def _import_triton() -> bool:
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


LOG2E = math.log2(math.e)


@dataclass(frozen=True)
class Tiles:
    """One kernel's launch shape: ``block_m`` rows (query position x head) by ``block_n`` keys,
    ``num_warps`` warps, ``num_stages`` pipeline stages."""

    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2

    def as_list(self) -> list[int]:
        """The op's argument (field by field: ``dataclasses.astuple`` deep-copies, which Dynamo
        cannot trace in torch 2.11)."""
        return [self.block_m, self.block_n, self.num_warps, self.num_stages]


# Per (kernel, padded head_dim) for 16-bit inputs, chosen from the sm_90 machine code of each
# (scripts/inspect_kernels.py, Triton 3.6 and 3.9): registers <= 255 with no spill, every matrix
# product on warpgroup MMA (blocks of >= 64 rows per 4 warps: dkdv's block_n keys are its rows),
# the fewest SASS instructions per score element; not yet timed on a GPU (scripts/gpu_check.sh
# sweeps a few). At head_dim 256 two float32 [block_n, 256] accumulators leave no room: dkdv falls
# back to 16 x 16 tiles on mma.sync, the forward spills a little.
TILES_16BIT = {
    ("forward", 16): Tiles(128, 64, 8), ("forward", 32): Tiles(128, 64, 8), ("forward", 64): Tiles(128, 64, 8),
    ("forward", 128): Tiles(128, 64, 8), ("forward", 256): Tiles(64, 32),
    ("dkdv", 16): Tiles(64, 64), ("dkdv", 32): Tiles(64, 64), ("dkdv", 64): Tiles(32, 64),
    ("dkdv", 128): Tiles(32, 128, 8), ("dkdv", 256): Tiles(16, 16),
    ("dq", 16): Tiles(64, 64), ("dq", 32): Tiles(64, 64), ("dq", 64): Tiles(64, 64),
    ("dq", 128): Tiles(128, 64, 8), ("dq", 256): Tiles(64, 16),
}


def _tiles(kernel: str, head_dim: int, dtype: torch.dtype, blocks: tuple[int, int] | None = None,
           num_warps: int | None = None, num_stages: int | None = None) -> Tiles:
    """``kernel``'s (``forward``, ``dkdv`` or ``dq``) tiles, warps and stages for this head size and
    dtype, each overridable (``blocks`` = ``(block_m, block_n)``). float32 (exact FMA matmuls, no
    tensor cores) keeps 4 warps and shrinks its tiles as its rows widen."""
    if dtype == torch.float32:
        row_bytes = _block_d(head_dim) * 4 * (1 if kernel == "forward" else 2)
        size = 64 if row_bytes <= 256 else 32 if row_bytes < 1024 else 16
        chosen = Tiles(size, size)
    else:
        chosen = TILES_16BIT[kernel, _block_d(head_dim)]
    return replace(chosen, **{name: value for name, value in zip(
        ("block_m", "block_n", "num_warps", "num_stages"), (*(blocks or (None, None)), num_warps, num_stages),
        strict=True) if value is not None})


def _launch(tiles: Tiles) -> dict[str, int]:
    """The kernels' launch keywords (the interpreter takes no warps or stages)."""
    options = dict(BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n)
    if not interpreted():
        options.update(num_warps=tiles.num_warps, num_stages=tiles.num_stages)
    return options


def _segments(spec: AttentionSpec, q: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The segment ids (or a 1-element placeholder the kernel never reads) and their strides."""
    if spec.segment_ids is None:
        return q.new_zeros(1, dtype=torch.int32), (0, 0)
    ids = spec.segment_ids.to(device=q.device)
    return ids, (ids.stride(0), ids.stride(1))


def _sign(spec: AttentionSpec) -> float:
    """The kernels compute ``x = sign * log2(e) * s``: ``-1`` for sigmoid (``p = 1 / (1 + 2^x)``),
    ``+1`` for softmax."""
    return 1.0 if spec.softmax else -1.0


def _slopes(spec: AttentionSpec, q: torch.Tensor) -> torch.Tensor:
    """The slopes folded as the kernels take them, ``sign * log2(e) * m_h`` (a placeholder without)."""
    if spec.slopes is None:
        return q.new_zeros(1, dtype=torch.float32)
    slopes = spec.slopes.detach().to(device=q.device, dtype=torch.float64) * (_sign(spec) * LOG2E)
    return slopes.float().contiguous()


def _scalars(spec: AttentionSpec) -> tuple[float, float]:
    """``(qk_coef, bias2)``: ``scale`` and ``b`` folded (``sign * log2(e) *``)."""
    fold = _sign(spec) * LOG2E
    return float(spec.scale) * fold, float(spec.sigmoid_bias) * fold


def _flags(spec: AttentionSpec, dtype: torch.dtype, head_dim: int, group: int) -> dict[str, object]:
    """The kernels' compile-time switches. float32 matmuls are exact (``ieee``, no TF32). The
    interpreter (numpy) has no bf16 matmul and truncates float32 -> bf16 where GPUs round to
    nearest, so under it 16-bit inputs are upcast as they are loaded and the tiles stay float32;
    only the stored results are 16-bit. It runs no inline PTX either: no ``FAST_MATH`` there."""
    return dict(GROUP=group, SOFTMAX=spec.softmax, HAS_SLOPES=spec.slopes is not None,
                HAS_SEGMENTS=spec.segment_ids is not None,
                UPCAST=interpreted() and dtype != torch.float32,
                INPUT_PRECISION="ieee" if dtype == torch.float32 else "tf32",
                FAST_MATH=not interpreted(), EVEN_D=head_dim == _block_d(head_dim), BLOCK_D=_block_d(head_dim))


def _strides(*tensors: torch.Tensor) -> tuple[int, ...]:
    """The strides of ``tensors`` but the last one of each, which is 1 (the kernels assume it)."""
    assert all(x.stride(-1) == 1 for x in tensors)
    return tuple(stride for x in tensors for stride in x.stride()[:-1])


def _forward(q, k, v, spec: AttentionSpec, tiles: Tiles, keys_per_split: int | None):
    """Runs the forward kernel. Returns ``(out, lse)``; ``lse`` is ``[batch, heads, q_len]``
    (float32, base 2, softmax only, else ``None``). With ``keys_per_split`` the band is split and
    the shares are combined here (no ``lse``)."""
    from swat.ops.triton_kernels import attention_forward_kernel

    batch, q_len, heads, head_dim = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    window = spec.band(kv_len)
    rows = q_len * group
    segments, seg_strides = _segments(spec, q)
    # a block of rows covers at most block_m // group + 2 positions, whose bands span this many keys
    span = min(kv_len, window + min(q_len, tiles.block_m // group + 2) - 1)
    splits = 1 if keys_per_split is None else -(-span // keys_per_split)
    if keys_per_split is None:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
        out_strides = (0, *out.stride()[:-1])
        lse = torch.empty(batch, heads, q_len, dtype=torch.float32, device=q.device)
        lse_strides = (0, *lse.stride())
    else:
        out = torch.empty(splits, batch, q_len, heads, head_dim, dtype=torch.float32, device=q.device)
        out_strides = out.stride()[:-1]
        lse = torch.empty(splits, batch, heads, q_len, 2, dtype=torch.float32, device=q.device)
        lse_strides = lse.stride()[:4]
    grid = (-(-rows // tiles.block_m), batch * kv_heads, splits)
    attention_forward_kernel[grid](
        q, k, v, out, lse, _slopes(spec, q), segments,
        *_strides(q, k, v), *out_strides, *lse_strides, *seg_strides,
        q_len, kv_len, heads, head_dim, window, keys_per_split or kv_len, *_scalars(spec),
        PARTIAL=keys_per_split is not None, **_flags(spec, q.dtype, head_dim, group), **_launch(tiles),
    )
    if keys_per_split is None:
        return out, (lse if spec.softmax else None)
    if not spec.softmax:
        return out.sum(0).to(q.dtype), None
    share_max, share_sum = lse[..., 0].transpose(2, 3), lse[..., 1].transpose(2, 3)  # [splits, b, n, h], base 2
    weight = torch.exp2(share_max - share_max.amax(0, keepdim=True))  # a share without keys: 2^-inf = 0
    total = (out * weight[..., None]).sum(0) / (share_sum * weight).sum(0)[..., None]
    return total.to(q.dtype), None


def _backward(q, k, v, out, lse, grad_out, spec: AttentionSpec, dkdv_tiles: Tiles, dq_tiles: Tiles):
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
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)  # contiguous: one set of strides for both
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    flags = _flags(spec, q.dtype, head_dim, group)
    sizes = (q_len, kv_len, heads, head_dim, window, *_scalars(spec), float(spec.scale))
    strides = (*_strides(q, k, v, grad_out), *lse.stride())
    attention_backward_dkdv_kernel[(-(-kv_len // dkdv_tiles.block_n), batch * kv_heads)](
        q, k, v, grad_out, lse, row_dot, dk, dv, slopes, segments,
        *strides, *_strides(dk), *seg_strides, *sizes, **flags, **_launch(dkdv_tiles),
    )
    attention_backward_dq_kernel[(-(-q_len * group // dq_tiles.block_m), batch * kv_heads)](
        q, k, v, grad_out, lse, row_dot, dq, slopes, segments,
        *strides, *_strides(dq), *seg_strides, *sizes, **flags, **_launch(dq_tiles),
    )
    return dq, dk, dv


# The kernels as custom ops, so ``torch.compile`` traces a call (through the fake implementations
# below) instead of the launches. The spec comes as ``AttentionSpec.op_arguments()``, each kernel's
# tiles as ``[block_m, block_n, num_warps, num_stages]``.
@torch.library.custom_op("swat::triton_forward", mutates_args=())
def _forward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor | None,
                segment_ids: torch.Tensor | None, window: int | None, sigmoid_bias: float, softmax: bool,
                scale: float, forward_tiles: list[int], dkdv_tiles: list[int], dq_tiles: list[int],
                keys_per_split: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, lse)``: ``lse`` as :func:`_forward` gives it, empty where that gives ``None``.
    ``dkdv_tiles`` and ``dq_tiles`` are the backward's (kept for it)."""
    spec = AttentionSpec.from_op_arguments(slopes, segment_ids, window, sigmoid_bias, softmax, scale)
    out, lse = _forward(q, k, v, spec, Tiles(*forward_tiles), keys_per_split=keys_per_split)
    return out, (q.new_empty(0, dtype=torch.float32) if lse is None else lse)


@_forward_op.register_fake
def _forward_fake(q, k, v, slopes, segment_ids, window, sigmoid_bias, softmax, scale, forward_tiles, dkdv_tiles,
                  dq_tiles, keys_per_split):
    batch, q_len, heads, _ = q.shape
    lse_shape = (batch, heads, q_len) if softmax and keys_per_split is None else (0,)
    return q.new_empty(q.shape), q.new_empty(lse_shape, dtype=torch.float32)


@torch.library.custom_op("swat::triton_backward", mutates_args=())
def _backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor | None, lse: torch.Tensor,
                 grad_out: torch.Tensor, slopes: torch.Tensor | None, segment_ids: torch.Tensor | None,
                 window: int | None, sigmoid_bias: float, softmax: bool, scale: float, dkdv_tiles: list[int],
                 dq_tiles: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    spec = AttentionSpec.from_op_arguments(slopes, segment_ids, window, sigmoid_bias, softmax, scale)
    return _backward(q, k, v, out, lse, grad_out.contiguous(), spec, Tiles(*dkdv_tiles), Tiles(*dq_tiles))


@_backward_op.register_fake
def _backward_fake(q, k, v, out, lse, grad_out, *spec_and_tiles):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, slopes, segment_ids, window, sigmoid_bias, softmax, scale, _, dkdv_tiles, dq_tiles, _ = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, out if softmax else None, lse, slopes, segment_ids)
    ctx.options = window, sigmoid_bias, softmax, scale, dkdv_tiles, dq_tiles


def _differentiate(ctx, grad_out, _grad_lse):
    q, k, v, out, lse, slopes, segment_ids = ctx.saved_tensors
    grads = _backward_op(q, k, v, out, lse, grad_out, slopes, segment_ids, *ctx.options)
    return (*grads, *([None] * 10))


_forward_op.register_autograd(_differentiate, setup_context=_setup_context)


def triton_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    spec: AttentionSpec,
    *,
    blocks: tuple[int, int] | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    keys_per_split: int | None = None,
) -> torch.Tensor:
    """Fused SWAT attention. Shapes as in :func:`swat.ops.swat_attention`.

    ``blocks`` (``BLOCK_M`` rows, ``BLOCK_N`` keys; powers of two >= 16), ``num_warps`` and
    ``num_stages`` override the per-head_dim choice (:data:`TILES_16BIT`) of every kernel this call
    launches, so a tile sweep needs no code change; ``keys_per_split`` forces the split-band
    decoding path with shares of that many keys (only without gradients). By default decoding calls
    (a single block of rows per kv head, no gradient, a band longer than
    :data:`DECODE_KEYS_PER_SPLIT`) take it.
    """
    _check(q)
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    tiles = {kernel: _tiles(kernel, q.shape[-1], q.dtype, blocks, num_warps, num_stages)
             for kernel in ("forward", "dkdv", "dq")}
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
    rows = q.shape[1] * (q.shape[2] // k.shape[2])
    if keys_per_split is None and rows <= tiles["forward"].block_m and spec.band(k.shape[1]) > DECODE_KEYS_PER_SPLIT:
        keys_per_split = DECODE_KEYS_PER_SPLIT
    if needs_grad:
        keys_per_split = None
    tile_lists = [tiles[kernel].as_list() for kernel in ("forward", "dkdv", "dq")]
    return _forward_op(q, k, v, *spec.op_arguments(), *tile_lists, keys_per_split)[0]
