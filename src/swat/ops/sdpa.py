"""Softmax baselines through PyTorch's ``scaled_dot_product_attention``.

Only for ``activation="softmax"``: the band (and ALiBi, segments) become an additive float mask,
so it is O(q_len * kv_len) memory, but for full causal softmax without extras it is PyTorch's
fused kernel, the fastest way to run the Transformer++ baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from swat.ops.reference import band_mask, distances


def sdpa_attention(
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
) -> torch.Tensor:
    """Softmax attention via SDPA. Shapes as in :func:`swat.ops.swat_attention`. ``sigmoid_bias``
    is a per-row constant and cancels under softmax."""
    if activation != "softmax":
        raise ValueError("backend='sdpa' computes softmax attention only; use backend='chunked' for sigmoid")
    q_len, kv_len = q.shape[1], k.shape[1]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    enable_gqa = q.shape[2] != k.shape[2]
    plain_causal = window is None or window >= kv_len
    if plain_causal and slopes is None and segment_ids is None and q_len == kv_len:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale, enable_gqa=enable_gqa)
        return out.transpose(1, 2)
    allowed = band_mask(q_len, kv_len, window, q.device)[None, None]
    if segment_ids is not None:
        allowed = allowed & (segment_ids[:, -q_len:, None] == segment_ids[:, None, :])[:, None]
    mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill(~allowed, float("-inf"))
    if slopes is not None:
        delta = distances(q_len, kv_len, q.device).to(q.dtype)
        mask = mask - slopes.to(q.dtype)[None, :, None, None] * delta
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=enable_gqa)
    return out.transpose(1, 2)
