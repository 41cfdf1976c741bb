"""Banded SWAT attention for CPU (and any device): O(q_len * window) time and memory.

Queries are cut into blocks of ``block`` rows. A block whose queries sit at positions
``[p0, p1)`` only needs keys ``[max(0, p0 - w + 1), p1)``, so every score tile is at most
``block x (block + w - 1)`` and no ``q_len x kv_len`` matrix ever exists. Within a tile the
additive term ``-m_h * delta + b`` (and ``-inf`` outside the band) depends only on the tile's
geometry, which is the same for every interior block, so it is built once and reused.

The backward pass is written by hand and recomputes each tile's weights from ``q`` and ``k``
(nothing of size ``q_len x window`` is kept between forward and backward). With the weights
``p = act(s)`` and ``dO`` the output gradient:

    dV = p^T dO        dP = dO V^T
    sigmoid: dS = dP * p * (1 - p)          softmax: dS = p * (dP - rowsum(dO * O))
    dQ = scale * dS K  dK = scale * dS^T Q

GQA is handled by folding the ``H / H_kv`` query heads of a kv head into the rows of the tile,
so K and V are never repeated. Scores, weights and gradient accumulators are kept in float32
(float64 for float64 inputs); matmuls run in the input dtype (bf16 uses the CPU's AMX units).
"""

from __future__ import annotations

import torch

from swat.ops.device import fast_low_precision_matmul

DEFAULT_BLOCK = 128


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class _TileBias:
    """Builds ``-m_h * delta + b`` with ``-inf`` outside the band for one tile, caching the last
    geometry (all interior tiles of a windowed call share it)."""

    def __init__(self, slopes: torch.Tensor | None, sigmoid_bias: float, window: int,
                 num_kv_heads: int, dtype: torch.dtype, device: torch.device):
        self.slopes = None if slopes is None else slopes.to(device=device, dtype=dtype).view(num_kv_heads, -1)
        self.group = self.slopes.shape[1] if self.slopes is not None else None
        self.sigmoid_bias = sigmoid_bias
        self.window = window
        self.dtype = dtype
        self.device = device
        self._key: tuple[int, int, int] | None = None
        self._value: torch.Tensor | None = None

    def __call__(self, rows: int, cols: int, first_delta: int) -> torch.Tensor:
        """Tile where query row ``r`` and key column ``c`` are ``first_delta + r - c`` apart.
        Returns ``[H_kv, G, rows, cols]`` (or ``[1, 1, rows, cols]`` without slopes)."""
        key = (rows, cols, first_delta)
        if key != self._key:
            r = torch.arange(rows, device=self.device)
            c = torch.arange(cols, device=self.device)
            delta = (first_delta + r[:, None] - c[None, :]).to(self.dtype)
            inside = (delta >= 0) & (delta < self.window)
            bias = torch.full_like(delta, self.sigmoid_bias)
            if self.slopes is not None:
                bias = bias - self.slopes[:, :, None, None] * delta
            else:
                bias = bias[None, None]
            self._value = bias.masked_fill(~inside, float("-inf"))
            self._key = key
        return self._value


def _tiles(q_len: int, kv_len: int, window: int, block: int):
    """Yield ``(r0, r1, k0, k1)``: query rows ``[r0, r1)`` need keys ``[k0, k1)``."""
    offset = kv_len - q_len
    for r0 in range(0, q_len, block):
        r1 = min(r0 + block, q_len)
        k0 = max(0, offset + r0 - window + 1)
        yield r0, r1, k0, offset + r1


def _tile_weights(q_tile, k_tile, bias, scale, activation, seg_mask, acc_dtype):
    """``q_tile [b, Hkv, G, R, d]``, ``k_tile [b, Hkv, C, d]`` -> weights ``[b, Hkv, G, R, C]``."""
    b, hkv, g, r, d = q_tile.shape
    scores = torch.matmul(q_tile.reshape(b, hkv, g * r, d), k_tile.transpose(-1, -2))
    scores = scores.view(b, hkv, g, r, -1).to(acc_dtype).mul_(scale).add_(bias)
    if seg_mask is not None:
        scores.masked_fill_(~seg_mask, float("-inf"))
    if activation == "sigmoid":
        return scores.sigmoid_()
    return torch.softmax(scores, dim=-1)


def _segment_mask(segment_ids, offset, r0, r1, k0, k1):
    if segment_ids is None:
        return None
    same = segment_ids[:, offset + r0:offset + r1, None] == segment_ids[:, None, k0:k1]
    return same[:, None, None]


class _ChunkedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, slopes, segment_ids, window, sigmoid_bias, activation, scale, block):
        # q: [b, Hkv, G, n, d]; k, v: [b, Hkv, m, d]
        b, hkv, g, n, d = q.shape
        m = k.shape[2]
        acc = _accumulator_dtype(q.dtype)
        bias = _TileBias(slopes, sigmoid_bias, window, hkv, acc, q.device)
        out = torch.empty_like(q)
        offset = m - n
        for r0, r1, k0, k1 in _tiles(n, m, window, block):
            tile_bias = bias(r1 - r0, k1 - k0, offset + r0 - k0)
            seg = _segment_mask(segment_ids, offset, r0, r1, k0, k1)
            p = _tile_weights(q[:, :, :, r0:r1], k[:, :, k0:k1], tile_bias, scale, activation, seg, acc)
            out[:, :, :, r0:r1] = torch.matmul(p.to(v.dtype).view(b, hkv, -1, k1 - k0), v[:, :, k0:k1]).view(
                b, hkv, g, r1 - r0, d)
        ctx.save_for_backward(q, k, v, slopes, segment_ids, out if activation == "softmax" else None)
        ctx.config = (window, sigmoid_bias, activation, scale, block)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, slopes, segment_ids, out = ctx.saved_tensors
        window, sigmoid_bias, activation, scale, block = ctx.config
        b, hkv, g, n, d = q.shape
        m = k.shape[2]
        acc = _accumulator_dtype(q.dtype)
        bias = _TileBias(slopes, sigmoid_bias, window, hkv, acc, q.device)
        grad_out = grad_out.contiguous()
        if activation == "softmax":
            row_dot = (grad_out.to(acc) * out.to(acc)).sum(-1, keepdim=True)
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=acc, device=k.device)
        dv = torch.zeros(v.shape, dtype=acc, device=v.device)
        offset = m - n
        for r0, r1, k0, k1 in _tiles(n, m, window, block):
            rows, cols = r1 - r0, k1 - k0
            tile_bias = bias(rows, cols, offset + r0 - k0)
            seg = _segment_mask(segment_ids, offset, r0, r1, k0, k1)
            q_tile = q[:, :, :, r0:r1].reshape(b, hkv, g * rows, d)
            k_tile, v_tile = k[:, :, k0:k1], v[:, :, k0:k1]
            p = _tile_weights(q[:, :, :, r0:r1], k_tile, tile_bias, scale, activation, seg, acc)
            go_tile = grad_out[:, :, :, r0:r1].reshape(b, hkv, g * rows, d)
            dp = torch.matmul(go_tile, v_tile.transpose(-1, -2)).view(b, hkv, g, rows, cols).to(acc)
            dv[:, :, k0:k1] += torch.matmul(p.to(v.dtype).view(b, hkv, g * rows, cols).transpose(-1, -2),
                                            go_tile).to(acc)
            if activation == "sigmoid":
                ds = dp.mul_(p).mul_(1.0 - p)
            else:
                ds = dp.sub_(row_dot[:, :, :, r0:r1]).mul_(p)
            ds = ds.mul_(scale).to(q.dtype).view(b, hkv, g * rows, cols)
            dq[:, :, :, r0:r1] = torch.matmul(ds, k_tile).view(b, hkv, g, rows, d)
            dk[:, :, k0:k1] += torch.matmul(ds.transpose(-1, -2), q_tile).to(acc)
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None, None, None


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    window: int | None,
    slopes: torch.Tensor | None,
    sigmoid_bias: float,
    activation: str,
    scale: float,
    segment_ids: torch.Tensor | None = None,
    block: int = DEFAULT_BLOCK,
) -> torch.Tensor:
    """Banded SWAT attention. Shapes as in :func:`swat.ops.swat_attention`.

    bf16/fp16 inputs on hardware without fast low-precision matmuls are computed in fp32 and the
    result is cast back (same values a low-precision reference gets, up to rounding).
    """
    if q.dtype in (torch.bfloat16, torch.float16) and not fast_low_precision_matmul(q.device):
        out = chunked_attention(q.float(), k.float(), v.float(), window=window, slopes=slopes,
                                sigmoid_bias=sigmoid_bias, activation=activation, scale=scale,
                                segment_ids=segment_ids, block=block)
        return out.to(q.dtype)
    b, n, h, d = q.shape
    m, hkv = k.shape[1], k.shape[2]
    q_heads = q.permute(0, 2, 1, 3).reshape(b, hkv, h // hkv, n, d)
    k_heads = k.permute(0, 2, 1, 3).contiguous()
    v_heads = v.permute(0, 2, 1, 3).contiguous()
    effective_window = m if window is None else min(window, m)
    out = _ChunkedAttention.apply(q_heads, k_heads, v_heads, slopes, segment_ids, effective_window,
                                  float(sigmoid_bias), activation, float(scale), block)
    return out.reshape(b, h, n, d).permute(0, 2, 1, 3)
