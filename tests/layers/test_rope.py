import math

import torch

from swat.layers import apply_rope, rope_cos_sin


def _exact_angle(position: int, k: int, head_dim: int, theta: float) -> float:
    return position / theta ** (2 * k / head_dim)


def test_angles_are_exact_far_into_a_stream():
    """cos/sin at position 10^6 are as accurate as at 10^3 (SPEC section 2): float32 rounding only."""
    head_dim, theta = 64, 10000.0
    for position in (1_000, 1_000_000):
        cos, sin = rope_cos_sin(torch.tensor([[position]]), head_dim, theta, torch.float32)
        expected = torch.tensor([math.cos(_exact_angle(position, k % (head_dim // 2), head_dim, theta))
                                 for k in range(head_dim)])
        assert (cos[0, 0, 0] - expected).abs().max() < 1e-6


def test_rotation_is_relative():
    """q(i) . k(j) after RoPE depends only on i - j, also at huge offsets."""
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)

    def score(i: int, j: int) -> float:
        cos_i, sin_i = rope_cos_sin(torch.tensor([[i]]), 16, 10000.0, torch.float64)
        cos_j, sin_j = rope_cos_sin(torch.tensor([[j]]), 16, 10000.0, torch.float64)
        return float((apply_rope(q, cos_i, sin_i) * apply_rope(k, cos_j, sin_j)).sum())

    assert abs(score(10, 3) - score(1_000_007, 1_000_000)) < 1e-9
    assert abs(score(10, 3) - score(10, 4)) > 1e-6


def test_position_zero_is_identity():
    x = torch.randn(2, 1, 3, 8)
    cos, sin = rope_cos_sin(torch.zeros(2, 1, dtype=torch.long), 8, 10000.0, torch.float32)
    assert torch.equal(apply_rope(x, cos, sin), x)
