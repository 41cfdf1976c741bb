"""Softmax baselines through PyTorch's ``scaled_dot_product_attention``.

Only for ``activation="softmax"``: the band (and ALiBi, segments) become an additive float mask,
so it is O(q_len * kv_len) memory, but for full causal softmax without extras it is PyTorch's
fused kernel, the fastest way to run the Transformer++ baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from swat.errors import UserError
from swat.ops.spec import AttentionSpec, additive_mask


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec) -> torch.Tensor:
    """Softmax attention via SDPA. Shapes as in :func:`swat.ops.swat_attention`. ``sigmoid_bias``
    is a per-row constant and cancels under softmax."""
    if not spec.softmax:
        raise UserError("backend='sdpa' computes softmax attention only; use backend='chunked' for sigmoid")
    q_len, kv_len = q.shape[1], k.shape[1]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    enable_gqa = q.shape[2] != k.shape[2]
    plain_causal = spec.band(kv_len) == kv_len and spec.slopes is None and spec.segment_ids is None
    if plain_causal and q_len == kv_len:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=spec.scale, enable_gqa=enable_gqa)
        return out.transpose(1, 2)
    mask = additive_mask(spec, q_len, kv_len, q.dtype, q.device)
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=spec.scale, enable_gqa=enable_gqa)
    return out.transpose(1, 2)
