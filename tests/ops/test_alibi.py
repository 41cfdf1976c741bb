"""``alibi_slopes``: the slope modes of docs/spec.md section 2."""

from __future__ import annotations

import pytest
import torch

from swat.ops import ALIBI_MODES, alibi_slopes
from swat.ops.alibi import bounded_retain_scale


def test_balanced_values_spec_example():
    """H = 8, G = 4, a_k = 2^(-8k/4) = 2^(-2k): recency heads first, then retention heads."""
    want = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, -(2 ** -2), -(2 ** -4), -(2 ** -6), -(2 ** -8)]
    assert alibi_slopes(8, "balanced").tolist() == want
    assert alibi_slopes(8).tolist() == want  # the default mode


@pytest.mark.parametrize("heads", [2, 4, 6, 12, 16, 32])
def test_balanced_signs_and_magnitudes(heads):
    slopes = alibi_slopes(heads, "balanced")
    g = heads // 2
    assert slopes.shape == (heads,) and slopes.dtype == torch.float32
    assert (slopes[:g] > 0).all() and (slopes[g:] < 0).all()
    torch.testing.assert_close(slopes[g:], -slopes[:g], atol=0, rtol=0)
    want = torch.tensor([2.0 ** (-8 * k / g) for k in range(1, g + 1)])
    torch.testing.assert_close(slopes[:g], want, atol=0, rtol=1e-7)
    assert (slopes[:g].diff() < 0).all()  # steepest recency first, geometric
    assert slopes.sum().item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("retain_scale", [0.0, 0.25, 0.5, 2.0])
def test_balanced_retain_scale_scales_only_the_negative_half(retain_scale):
    base = alibi_slopes(8, "balanced")
    scaled = alibi_slopes(8, "balanced", retain_scale=retain_scale)
    torch.testing.assert_close(scaled[:4], base[:4], atol=0, rtol=0)
    torch.testing.assert_close(scaled[4:], retain_scale * base[4:], atol=0, rtol=1e-7)


@pytest.mark.parametrize("heads", [1, 3, 8, 12])
def test_standard_is_press_et_al(heads):
    """One-sided ALiBi: +2^(-8k/H) for k = 1..H on every head (H = 8: 1/2, 1/4, ..., 1/256)."""
    slopes = alibi_slopes(heads, "standard")
    want = torch.tensor([2.0 ** (-8 * k / heads) for k in range(1, heads + 1)])
    torch.testing.assert_close(slopes, want, atol=0, rtol=1e-7)
    assert (slopes > 0).all()
    if heads == 8:
        assert slopes.tolist() == [2.0 ** -k for k in range(1, 9)]


def test_none_is_zero():
    slopes = alibi_slopes(6, "none")
    assert slopes.shape == (6,) and slopes.dtype == torch.float32 and not slopes.any()


def test_explicit_list():
    values = [0.5, -0.125, 0.0, 3.0]
    slopes = alibi_slopes(4, values)
    assert slopes.dtype == torch.float32 and slopes.tolist() == values
    assert alibi_slopes(2, (1, 2)).tolist() == [1.0, 2.0]  # any sequence of numbers
    assert alibi_slopes(3, torch.tensor([0.25, 0.5, 1.0])).tolist() == [0.25, 0.5, 1.0]


def test_modes_listed():
    assert set(ALIBI_MODES) == {"balanced", "standard", "none"}
    for mode in ALIBI_MODES:
        assert alibi_slopes(4, mode).shape == (4,)


def test_errors():
    with pytest.raises(ValueError, match="even number of heads"):
        alibi_slopes(5, "balanced")
    with pytest.raises(ValueError, match="one slope per attention head: got 3 values for 4 heads"):
        alibi_slopes(4, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="unknown alibi mode 'rope'"):
        alibi_slopes(4, "rope")
    with pytest.raises(ValueError, match="num_heads must be >= 1"):
        alibi_slopes(0, "none")


@pytest.mark.parametrize(("heads", "window", "scale"), [
    (4, 64, 16 / 63),  # a_1 = 1/16: the tiny preset
    (8, 64, 4 / 63),  # a_1 = 1/4
    (16, 512, 2 / 511),  # a_1 = 1/2: the 340m preset
    (4, 8, 1.0),  # 1/16 * 7 < 1: the paper's slopes already add less than 1
    (4, 1, 1.0), (4, None, 1.0), (3, 64, 1.0),
])
def test_bounded_retain_scale(heads, window, scale):
    assert bounded_retain_scale(heads, window) == pytest.approx(scale, rel=1e-12)
    if scale < 1:
        steepest = alibi_slopes(heads, "balanced", retain_scale=bounded_retain_scale(heads, window)).min()
        assert -steepest.item() * (window - 1) == pytest.approx(1.0, rel=1e-6)
