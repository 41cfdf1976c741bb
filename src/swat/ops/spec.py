"""The contract of the fast backends: one spec object, and the score term built one way.

Every backend but the dense reference is called as ``backend(q, k, v, spec)`` with the
:class:`AttentionSpec` below, and builds the additive term of its scores (docs/spec.md section 1)::

    s_ij = scale * (q_i . k_j) + (b - m_h * delta),   delta = i - j,
    kept iff 0 <= delta < w and segment(i) == segment(j)

from the helpers of this module. ``swat.ops.reference`` does not use them: the oracle stays
self-contained, so it checks these helpers rather than sharing them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ACTIVATIONS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class AttentionSpec:
    """What a backend computes besides ``q``, ``k``, ``v`` (the arguments of
    :func:`swat.ops.swat_attention`, ``scale`` resolved)."""

    window: int | None
    slopes: torch.Tensor | None
    sigmoid_bias: float
    activation: str
    scale: float
    segment_ids: torch.Tensor | None = None

    def band(self, kv_len: int) -> int:
        """Keys a query sees at most: ``min(w, kv_len)`` (``kv_len`` without a window)."""
        return kv_len if self.window is None else min(self.window, kv_len)

    @property
    def softmax(self) -> bool:
        return self.activation == "softmax"


def distances(q_len: int, kv_len: int, device: torch.device | None = None) -> torch.Tensor:
    """``delta[r, j] = i - j`` (integers) where the ``q_len`` queries are the last positions of
    ``kv_len`` keys (query ``r`` sits at ``i = kv_len - q_len + r``)."""
    positions_q = torch.arange(kv_len - q_len, kv_len, device=device)
    return positions_q[:, None] - torch.arange(kv_len, device=device)[None, :]


def position_term(spec: AttentionSpec, delta: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``b - m_h * delta`` as ``[heads, *delta.shape]``, or ``[1, *delta.shape]`` without slopes."""
    delta = delta.to(dtype)
    if spec.slopes is None:
        return torch.full_like(delta, spec.sigmoid_bias)[None]
    slopes = spec.slopes.to(device=delta.device, dtype=dtype).view(-1, *([1] * delta.dim()))
    return spec.sigmoid_bias - slopes * delta[None]


def outside_band(spec: AttentionSpec, delta: torch.Tensor) -> torch.Tensor:
    """True where ``delta`` is not in the band ``0 <= delta < w``."""
    outside = delta < 0
    if spec.window is not None:
        outside |= delta >= spec.window
    return outside


def other_segment(segment_ids: torch.Tensor, queries: slice, keys: slice) -> torch.Tensor:
    """``[batch, len(queries), len(keys)]``: True where key position ``j`` lies in another segment
    than query position ``i`` (positions are key positions)."""
    return segment_ids[:, queries, None] != segment_ids[:, None, keys]


def additive_mask(spec: AttentionSpec, q_len: int, kv_len: int, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """The whole term as a dense float mask ``[batch or 1, heads or 1, q_len, kv_len]``:
    ``b - m_h * delta`` in the band, ``-inf`` outside it and across segments."""
    delta = distances(q_len, kv_len, device)
    term = position_term(spec, delta, dtype).masked_fill(outside_band(spec, delta), float("-inf"))[None]
    if spec.segment_ids is not None:
        other = other_segment(spec.segment_ids, slice(kv_len - q_len, kv_len), slice(0, kv_len))
        term = term.masked_fill(other[:, None], float("-inf"))
    return term
