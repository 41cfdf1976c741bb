"""One query per sequence (a decoding step): SWAT attention as two small grouped matmuls.

A decoding step has ``q_len = 1``: the query at position ``i`` sees the last ``min(w, kv_len)``
keys, and its scores are one row per head. The ``G = H / H_kv`` query heads that share a kv head
are the rows of one ``[G, d]`` matrix, so GQA needs no repeated keys, and::

    S = scale * Q K^T + (b - m_h * delta),   delta_j = i - j,   O = act(S) V

costs two batched matmuls over ``[batch, H_kv]`` and reads the cache in the layout it is stored
in (``[batch, H_kv, keys, d]``, keys as rows), without copying it. The banded kernel would build
its tile geometry for a single row; this path is what ``auto`` picks for ``q_len = 1``.
Plain differentiable torch ops, so autograd gives the backward.
"""

from __future__ import annotations

import torch

from swat.errors import UserError
from swat.ops.device import upcast_without_fast_low_precision
from swat.ops.spec import AttentionSpec, distances, other_segment, position_term


@upcast_without_fast_low_precision
def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec) -> torch.Tensor:
    """SWAT attention of a single query per sequence. Shapes as in :func:`swat.ops.swat_attention`
    with ``q_len = 1``."""
    batch, q_len, heads, head_dim = q.shape
    if q_len != 1:
        raise UserError(f"the decode backend takes one query per sequence (q_len = 1), got q_len = {q_len}; "
                        "use backend='chunked' for longer queries")
    kv_len, kv_heads = k.shape[1], k.shape[2]
    seen = spec.band(kv_len)
    keys = k[:, kv_len - seen:].permute(0, 2, 3, 1)  # [batch, H_kv, d, seen]
    values = v[:, kv_len - seen:].transpose(1, 2)  # [batch, H_kv, seen, d]
    queries = q.reshape(batch, kv_heads, heads // kv_heads, head_dim)  # rows: the G heads of a kv head

    # b - m_h * delta_j as [H_kv, G, seen] (keys oldest first, so delta = seen-1 .. 0)
    term = position_term(spec, distances(1, seen, q.device)[0], q.dtype)
    term = term.view(kv_heads, -1, seen) if spec.slopes is not None else term
    scores = torch.matmul(queries, keys).mul_(spec.scale).add_(term)
    if spec.segment_ids is not None:
        other = other_segment(spec.segment_ids, slice(kv_len - 1, kv_len), slice(kv_len - seen, kv_len))
        scores = scores.masked_fill(other[:, None], float("-inf"))  # [batch, 1, 1, seen]
    weights = torch.softmax(scores, dim=-1) if spec.softmax else torch.sigmoid_(scores)
    return torch.matmul(weights, values).view(batch, 1, heads, head_dim)

