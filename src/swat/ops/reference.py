"""The oracle: SWAT attention as plain dense math (docs/spec.md section 1).

Materialises the full ``q_len x kv_len`` score matrix, so it is O(q_len * kv_len) in time and
memory. It computes in the input dtype, float64 included, and every other backend is tested
against it.
"""

from __future__ import annotations

import torch


def band_mask(
    q_len: int, kv_len: int, window: int | None, device: torch.device | None = None
) -> torch.Tensor:
    """Boolean ``[q_len, kv_len]``: query ``r`` (at position ``kv_len - q_len + r``) sees key ``j``
    iff ``0 <= delta < window`` with ``delta = i - j`` (``window=None``: ``delta >= 0``)."""
    delta = distances(q_len, kv_len, device)
    allowed = delta >= 0
    if window is not None:
        allowed &= delta < window
    return allowed


def distances(q_len: int, kv_len: int, device: torch.device | None = None) -> torch.Tensor:
    """``delta[r, j] = i - j`` where the ``q_len`` queries are the last positions of ``kv_len``."""
    positions_q = torch.arange(kv_len - q_len, kv_len, device=device)
    positions_k = torch.arange(kv_len, device=device)
    return positions_q[:, None] - positions_k[None, :]


def reference_attention(
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
    """Dense SWAT attention. Shapes as in :func:`swat.ops.swat_attention`."""
    q_len, num_heads = q.shape[1], q.shape[2]
    kv_len, num_kv_heads = k.shape[1], k.shape[2]
    group = num_heads // num_kv_heads
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)

    scores = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    delta = distances(q_len, kv_len, q.device)
    if slopes is not None:
        scores = scores - slopes.to(scores.dtype)[:, None, None] * delta.to(scores.dtype)
    scores = scores + sigmoid_bias

    allowed = band_mask(q_len, kv_len, window, q.device)[None, None]
    if segment_ids is not None:
        same = segment_ids[:, kv_len - q_len:, None] == segment_ids[:, None, :]
        allowed = allowed & same[:, None]

    if activation == "sigmoid":
        weights = torch.sigmoid(scores) * allowed
    else:
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.einsum("bhij,bjhd->bihd", weights, v)
