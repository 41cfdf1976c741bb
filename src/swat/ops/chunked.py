"""Banded SWAT attention for CPU (and any device): O(q_len * window) time and memory.

Layout
    A kv head and the ``G = H / H_kv`` query heads that read it form one "row group": the
    queries of batch element ``b`` and kv head ``j`` are stored as the rows of one matrix
    ``[q_len * G, d]`` ordered (position, query head). So GQA costs nothing (K and V are never
    repeated) and a block of consecutive positions is a contiguous slice of rows. All
    ``batch * H_kv`` matrices are batched in every ``bmm``.

Tiles
    Queries are cut into blocks of ``block`` positions. A block at positions ``[p0, p1)`` only
    needs keys ``[max(0, p0 - w + 1), p1)``, so every score tile is at most
    ``(block + w - 1) x block * G`` and no ``q_len x kv_len`` matrix ever exists. Tiles are stored
    transposed, keys as rows (``S^T = K Q^T``), the GEMM shapes (``[keys, d] x [d, queries]`` and
    friends) MKL ran fastest (docs/benchmarks.md). The blocks are
    visited in order; per block the forward is two batched matmuls and two elementwise passes, the
    backward five matmuls and three passes (below), on cache-sized tiles. ``block`` trades the
    masked columns a tile computes for nothing (``(block + w - 1) / w``) against matmul size and
    per-tile overhead (see ``DEFAULT_BLOCK``).

Additive term
    ``-m_h * (i - j) + b``, with ``-inf`` outside the band, depends only on where a tile sits
    relative to the diagonal. It is built once per call for the widest geometry, and every tile's
    term is a view (a column slice) of it: interior tiles share it whole, the first tiles of the
    sequence (cut at key 0) and the last, shorter block take slices. It enters the scores through
    the matmul itself (``baddbmm``: ``S = bias + scale * Q K^T``), so a tile's scores cost one
    write, and the activation is applied in place. ``sigmoid(-inf) = 0`` masks exactly.

Backward
    Written by hand; it recomputes each tile's weights from ``q`` and ``k`` (nothing of size
    ``q_len x window`` is kept between forward and backward, like flash attention). With the
    weights ``P = act(S)`` and ``dO`` the output gradient::

        dV += P^T dO        dP = dO V^T       (all computed on the transposed tiles)
        sigmoid: dS = dP * P * (1 - P)          softmax: dS = P * (dP - rowsum(dO * O))
        dQ  = scale * dS K  dK += scale * dS^T Q

    The sigmoid derivative is PyTorch's fused ``sigmoid_backward`` written over ``dP``; ``scale``
    is applied to ``dQ`` and ``dK`` once at the end.

Memory traffic
    Every matmul writes a contiguous tile buffer that is allocated once per call and reused by
    every tile; the results are then added into the rows of ``dK``, ``dV`` (or copied into ``out``,
    ``dQ``). Writing straight into those strided row slices looks leaner but makes PyTorch's CPU
    ``bmm`` fall back from MKL's batched GEMM (parallel over the batch) to one GEMM per batch
    entry (slower, docs/benchmarks.md). Fresh per-tile tensors cost allocation and page faults;
    the reused buffers avoid both.

Precision
    float32 and float64 inputs compute everything in their own dtype. For bf16/fp16 the matmuls
    run in the input dtype (fast on GPUs and AMX/AVX512-BF16 CPUs) while scores, weights and the
    ``dK``/``dV`` accumulators are float32; on CPUs without fast low-precision matmuls (AVX2) the
    whole op runs in float32 and the result is cast back, which is both faster and more accurate.

Only ``torch`` ops are used, so the same code runs on any device; on CUDA the fused kernels of the
``triton`` backend (``swat.ops.triton_attention``) compute the same and are what ``auto`` picks.
"""

from __future__ import annotations

import torch

from swat.ops.device import upcast_without_fast_low_precision
from swat.ops.spec import AttentionSpec, other_segment, outside_band, position_term

# Query positions per tile: smaller blocks waste fewer masked columns ((block + w - 1) / w) but run
# smaller, less efficient matmuls (the measurement that chose 64: docs/benchmarks.md).
DEFAULT_BLOCK = 64


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tiles(q_len: int, kv_len: int, window: int, block: int):
    """Yield ``(r0, r1, k0, k1)``: query positions ``[r0, r1)`` (0-based among the queries) need
    keys ``[k0, k1)``."""
    offset = kv_len - q_len
    for r0 in range(0, q_len, block):
        r1 = min(r0 + block, q_len)
        yield r0, r1, max(0, offset + r0 - window + 1), offset + r1


class _BandBias:
    """The additive term of every tile, as views of one tensor built per call.

    Stored transposed like the tiles, ``[lanes or 1, cols, rows * G]``: key column ``c`` and query
    row ``(r, g)`` hold the term for distance ``i - j = top + r - c``, where ``top`` is the largest
    distance any tile has between its first query and its first key. A tile whose first query is
    ``first_delta`` after its first key takes the key columns from ``top - first_delta``.

    With ``exact_mask`` the ``-inf`` outside the band is kept apart, as a boolean ``mask`` of the
    same layout (the term there is 0), for scores that may overflow: ``+inf + -inf`` would be NaN
    where the reference masks to exactly 0.
    """

    def __init__(self, tiles, offset, spec: AttentionSpec, batch, group, dtype, device, exact_mask: bool):
        rows = tiles[0][1] - tiles[0][0]
        self.top = max(offset + r0 - k0 for r0, _, k0, _ in tiles)
        cols = max(self.top - (offset + r0 - k0) + k1 - k0 for r0, _, k0, k1 in tiles)
        r = torch.arange(rows, device=device)
        c = torch.arange(cols, device=device)
        delta = self.top + r[:, None] - c[None, :]  # [rows, cols]
        term = position_term(spec, delta, dtype).masked_fill_(outside_band(spec, delta), float("-inf"))
        if spec.slopes is None:  # [1, rows, cols] -> [1, rows, G, cols]
            term = term[:, :, None].expand(1, rows, group, cols)
        else:  # [H, rows, cols] -> [H_kv, rows, G, cols]
            term = term.view(-1, group, rows, cols).transpose(1, 2)
            if batch > 1:  # one [rows * G, cols] matrix per (batch, kv head) pair, as bmm wants
                term = term.repeat(batch, 1, 1, 1)
        self.value = term.reshape(term.shape[0], rows * group, cols).transpose(1, 2).contiguous()
        self.mask = None
        if exact_mask:
            self.mask = self.value == float("-inf")
            self.value.masked_fill_(self.mask, 0.0)
        self.group = group
        self.offset = offset

    def tile(self, r0: int, r1: int, k0: int, k1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tile's term and (with ``exact_mask``) its outside-the-band mask."""
        start = self.top - (self.offset + r0 - k0)
        where = (slice(None), slice(start, start + k1 - k0), slice(0, (r1 - r0) * self.group))
        return self.value[where], None if self.mask is None else self.mask[where]


def _scores_may_overflow(q: torch.Tensor, k: torch.Tensor, spec: AttentionSpec) -> bool:
    """Whether some ``q . k`` (or ``scale`` times it) may reach the largest finite value of the
    matmul's dtype: ``|q . k| <= d * max|q| * max|k|``, with room for the position term. Costs one
    pass over q and k (a tile costs ``block + w`` of them; on a GPU also one host sync); true for
    inf/NaN inputs."""
    if q.numel() == 0 or k.numel() == 0:
        return False
    bound = q.shape[-1] * q.abs().amax().double() * k.abs().amax().double() * max(1.0, abs(spec.scale))
    return not bool(bound < torch.finfo(q.dtype).max / 4)


class _Problem:
    """What forward and backward share: sizes, the additive term, the tiles, reusable tile buffers
    and the per-tile weights."""

    def __init__(self, q, k, spec: AttentionSpec, block: int, group: int, num_kv_heads: int):
        self.n, self.m = q.shape[1] // group, k.shape[1]
        self.group, self.segment_ids = group, spec.segment_ids
        self.activation, self.scale = spec.activation, spec.scale
        self.acc = _accumulator_dtype(q.dtype)
        self.fused = q.dtype == self.acc  # scores in the matmul's own dtype: bias fused into baddbmm
        self.tiles = list(_tiles(self.n, self.m, spec.band(self.m), block))
        self.bias = _BandBias(self.tiles, self.m - self.n, spec, k.shape[0] // num_kv_heads, group, self.acc,
                              q.device, exact_mask=_scores_may_overflow(q, k, spec))
        lanes, d = k.shape[0], k.shape[2]
        rows = max(r1 - r0 for r0, r1, _, _ in self.tiles) * group
        cols = max(k1 - k0 for _, _, k0, k1 in self.tiles)
        self._sizes = {"scores": lanes * rows * cols, "rows": lanes * rows * d, "keys": lanes * cols * d}
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._device = q.device

    def buffer(self, kind: str, shape: tuple[int, int, int], dtype: torch.dtype | None = None,
               slot: int = 0) -> torch.Tensor:
        """A contiguous tensor of ``shape`` for one tile, reused from tile to tile (no allocation,
        no fresh page-faulting memory per tile). ``kind``: ``"scores"`` (transposed tiles,
        ``[lanes, cols, rows]``), ``"rows"`` (``[lanes, rows, d]``) or ``"keys"``
        (``[lanes, cols, d]``); ``slot`` tells apart two buffers of the same kind."""
        dtype = dtype or self.acc
        key = (kind, dtype, slot)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(self._sizes[kind], dtype=dtype, device=self._device)
        return self._buffers[key][: shape[0] * shape[1] * shape[2]].view(shape)

    def weights(self, q_tile, k_tile, r0, r1, k0, k1):
        """The weights of one tile, transposed: ``act(bias + scale * k_tile q_tile^T)`` as
        ``[lanes, cols, rows * G]`` in ``acc`` (sigmoid: in the first scores buffer; softmax, over
        the keys: a new tensor)."""
        bias, outside = self.bias.tile(r0, r1, k0, k1)
        s = self.buffer("scores", (q_tile.shape[0], k_tile.shape[1], q_tile.shape[1]))
        if self.fused:
            torch.baddbmm(bias, k_tile, q_tile.transpose(1, 2), alpha=self.scale, out=s)
        else:
            s.copy_(torch.bmm(k_tile, q_tile.transpose(1, 2))).mul_(self.scale).add_(bias)
        if outside is not None:
            s.masked_fill_(outside, float("-inf"))
        if self.segment_ids is not None:
            seg = self.segment_ids
            offset = self.m - self.n
            other = other_segment(seg, slice(offset + r0, offset + r1), slice(k0, k1)).transpose(1, 2)
            view = s.view(seg.shape[0], -1, k1 - k0, r1 - r0, self.group)  # [b, Hkv, cols, rows, G]
            view.masked_fill_(other[:, None, :, :, None], float("-inf"))
        if self.activation == "sigmoid":
            return s.sigmoid_()
        return torch.softmax(s, dim=1)


# The op works on the row layout of ``chunked_attention``: q ``[b * Hkv, n * G, d]`` with rows
# ordered (position, head), k and v ``[b * Hkv, m, d]``; the spec comes as
# ``AttentionSpec.op_arguments()``, the tiling as ``block``, ``G`` and ``Hkv``. A custom op is opaque
# to ``torch.compile``: the tile loop runs as written, the graph holds one call.
@torch.library.custom_op("swat::chunked_forward", mutates_args=())
def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor | None,
             segment_ids: torch.Tensor | None, window: int | None, sigmoid_bias: float, softmax: bool,
             scale: float, block: int, group: int, num_kv_heads: int) -> torch.Tensor:
    spec = AttentionSpec.from_op_arguments(slopes, segment_ids, window, sigmoid_bias, softmax, scale)
    prob = _Problem(q, k, spec, block, group, num_kv_heads)
    out = torch.empty_like(q)
    g = prob.group
    for r0, r1, k0, k1 in prob.tiles:
        p = prob.weights(q[:, r0 * g:r1 * g], k[:, k0:k1], r0, r1, k0, k1)
        rows = prob.buffer("rows", (q.shape[0], p.shape[2], q.shape[2]), v.dtype)
        out[:, r0 * g:r1 * g] = torch.bmm(p.to(v.dtype).transpose(1, 2), v[:, k0:k1], out=rows)
    return out


@_forward.register_fake
def _forward_fake(q, k, v, slopes, segment_ids, window, sigmoid_bias, softmax, scale, block, group, num_kv_heads):
    return torch.empty_like(q)


@torch.library.custom_op("swat::chunked_backward", mutates_args=())
def _backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor | None, grad_out: torch.Tensor,
              slopes: torch.Tensor | None, segment_ids: torch.Tensor | None, window: int | None,
              sigmoid_bias: float, softmax: bool, scale: float, block: int, group: int,
              num_kv_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv)``; ``out`` is the forward's output (read for softmax only)."""
    spec = AttentionSpec.from_op_arguments(slopes, segment_ids, window, sigmoid_bias, softmax, scale)
    prob = _Problem(q, k, spec, block, group, num_kv_heads)
    acc, g = prob.acc, prob.group
    grad_out = grad_out.contiguous()
    if prob.activation == "softmax":
        row_dot = (grad_out.to(acc) * out.to(acc)).sum(-1, keepdim=True)
    # dQ and dK are accumulated without the factor ``scale``, applied once at the end
    dq = torch.empty(q.shape, dtype=acc, device=q.device)
    dk = torch.zeros(k.shape, dtype=acc, device=k.device)
    dv = torch.zeros(v.shape, dtype=acc, device=v.device)
    lanes, d = q.shape[0], q.shape[2]
    for r0, r1, k0, k1 in prob.tiles:
        q_tile, go_tile = q[:, r0 * g:r1 * g], grad_out[:, r0 * g:r1 * g]
        k_tile, v_tile = k[:, k0:k1], v[:, k0:k1]
        p = prob.weights(q_tile, k_tile, r0, r1, k0, k1)
        dp = prob.buffer("scores", p.shape, slot=1)
        if prob.fused:
            torch.bmm(v_tile, go_tile.transpose(1, 2), out=dp)
        else:
            dp.copy_(torch.bmm(v_tile, go_tile.transpose(1, 2)))
        key_rows = prob.buffer("keys", (lanes, k1 - k0, d), v.dtype)
        dv[:, k0:k1] += torch.bmm(p.to(v.dtype), go_tile, out=key_rows)
        if prob.activation == "sigmoid":  # dS = dP * P * (1 - P), written over dP
            ds = torch.ops.aten.sigmoid_backward.grad_input(dp, p, grad_input=dp)
        else:
            ds = dp.sub_(row_dot[:, r0 * g:r1 * g].transpose(1, 2)).mul_(p)
        ds = ds.to(q.dtype)
        query_rows = prob.buffer("rows", q_tile.shape, q.dtype)
        dq[:, r0 * g:r1 * g] = torch.bmm(ds.transpose(1, 2), k_tile, out=query_rows)
        key_rows = prob.buffer("keys", (lanes, k1 - k0, d), q.dtype)
        dk[:, k0:k1] += torch.bmm(ds, q_tile, out=key_rows)
    dq = dq.mul_(prob.scale).to(q.dtype)
    dk = dk.mul_(prob.scale).to(k.dtype)
    return dq, dk, dv.to(v.dtype)


@_backward.register_fake
def _backward_fake(q, k, v, out, grad_out, *spec_and_tiling):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, slopes, segment_ids, *options = inputs  # options: window, sigmoid_bias, softmax, scale, tiling
    ctx.save_for_backward(q, k, v, output if options[2] else None, slopes, segment_ids)
    ctx.options = options


def _differentiate(ctx, grad_out):
    q, k, v, out, slopes, segment_ids = ctx.saved_tensors
    grads = _backward(q, k, v, out, grad_out, slopes, segment_ids, *ctx.options)
    return (*grads, None, None, *([None] * len(ctx.options)))


_forward.register_autograd(_differentiate, setup_context=_setup_context)


@upcast_without_fast_low_precision
def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec,
                      block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Banded SWAT attention. Shapes as in :func:`swat.ops.swat_attention`; ``block`` is the
    number of query positions per tile.

    bf16/fp16 inputs on hardware without fast low-precision matmuls are computed in fp32 and the
    result is cast back (same values a low-precision reference gets, up to rounding).
    """
    b, n, h, d = q.shape
    m, hkv = k.shape[1], k.shape[2]
    g = h // hkv
    # [b, n, Hkv, G, d] -> [b, Hkv, n, G, d] -> rows (position, head) of one matrix per (b, kv head)
    q_rows = q.reshape(b, n, hkv, g, d).transpose(1, 2).reshape(b * hkv, n * g, d)
    k_rows = k.transpose(1, 2).reshape(b * hkv, m, d)
    v_rows = v.transpose(1, 2).reshape(b * hkv, m, d)
    out = _forward(q_rows, k_rows, v_rows, *spec.op_arguments(), int(block), g, hkv)
    return out.view(b, hkv, n, g, d).transpose(1, 2).reshape(b, n, h, d)
