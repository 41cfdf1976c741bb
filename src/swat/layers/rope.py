"""Rotary position embedding (RoPE), Llama's rotate-half convention (docs/spec.md section 2).

Angles ``position * theta^(-2k/d)`` are computed in float64 and only the resulting cos/sin are
cast to the activations' dtype, so position 10^6 is as precise as position 10^3.
"""

from __future__ import annotations

import torch


def rope_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape ``[batch, seq, 1, head_dim]`` for ``position_ids [batch, seq]``."""
    angle_dtype = torch.float64 if position_ids.device.type != "mps" else torch.float32
    exponents = torch.arange(0, head_dim, 2, dtype=angle_dtype, device=position_ids.device) / head_dim
    inv_freq = 1.0 / (theta ** exponents)
    angles = position_ids.to(angle_dtype)[..., None] * inv_freq
    angles = torch.cat((angles, angles), dim=-1)[:, :, None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [batch, seq, heads, head_dim]`` by the angles behind ``cos``/``sin``; the result
    keeps ``x``'s dtype (under autocast, bf16 projections times fp32 cos/sin would become fp32)."""
    return (x * cos + rotate_half(x) * sin).to(x.dtype)
