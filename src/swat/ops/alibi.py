"""ALiBi slopes m_h (docs/spec.md section 2).

Sign convention: ``m_h > 0`` penalises distance (the head prefers recent tokens),
``m_h < 0`` rewards distance inside the window (the head keeps older tokens alive).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from swat.errors import UserError

ALIBI_MODES = ("balanced", "standard", "none")


def _geometric(count: int, num_heads_for_rate: int) -> list[float]:
    """``2^(-8k/n)`` for ``k = 1..count``: Press et al.'s geometric sequence."""
    return [2.0 ** (-8.0 * k / num_heads_for_rate) for k in range(1, count + 1)]


def alibi_slopes(
    num_heads: int,
    mode: str | Sequence[float] = "balanced",
    *,
    retain_scale: float = 1.0,
) -> torch.Tensor:
    """Per-head ALiBi slopes ``m_h`` as a float32 tensor of shape ``[num_heads]``.

    Modes:
      - ``"balanced"`` (SWAT): ``H`` even, ``G = H/2``, ``a_k = 2^(-8k/G)``; heads ``0..G-1`` get
        ``+a_k`` (recency), heads ``G..H-1`` get ``-retain_scale * a_k`` (retention).
      - ``"standard"``: Press et al.'s one-sided ALiBi, ``+2^(-8k/H)`` on all heads.
      - ``"none"``: all zeros.
      - a sequence of ``H`` floats: used as given.

    ``retain_scale`` shrinks the negative (retaining) half of balanced slopes: a rewarding slope
    times a wide window can saturate the sigmoid (``0.25 * 511 = 128``).
    """
    if num_heads < 1:
        raise UserError(f"num_heads must be >= 1, got {num_heads}")
    if not isinstance(mode, str):
        values = [float(x) for x in mode]
        if len(values) != num_heads:
            raise UserError(
                f"an explicit alibi list needs one slope per attention head: got {len(values)} "
                f"values for {num_heads} heads"
            )
        return torch.tensor(values, dtype=torch.float32)
    if mode == "none":
        return torch.zeros(num_heads, dtype=torch.float32)
    if mode == "standard":
        return torch.tensor(_geometric(num_heads, num_heads), dtype=torch.float32)
    if mode == "balanced":
        if num_heads % 2:
            raise UserError(
                f"balanced ALiBi splits heads into a recency half and a retention half, so it needs an "
                f"even number of heads (got {num_heads}); use alibi='standard' or an explicit list"
            )
        half = _geometric(num_heads // 2, num_heads // 2)
        return torch.tensor(half + [-retain_scale * a for a in half], dtype=torch.float32)
    raise UserError(f"unknown alibi mode {mode!r}: use one of {ALIBI_MODES} or a list of {num_heads} floats")


def bounded_retain_scale(num_heads: int, window: int | None) -> float:
    """The ``retain_scale`` at which the steepest retaining slope adds at most 1 to a score across
    the window: ``min(1, 1 / (a_1 * (w - 1)))`` with ``a_1 = 2^(-8/G)``, the largest balanced slope.

    A retaining slope ``-m`` rewards the oldest key of the window by ``m * (w - 1)``; sigmoid, unlike
    softmax, does not cancel that, and with ``a_1 = 1/2`` (16 heads) and ``w = 512`` the reward is 255,
    which saturates the sigmoid. Capping it at 1 is what ``swat reproduce``'s ablation supported at
    4 and 8 heads (docs/results/defaults/README.md). Without a window (or with ``w = 1``, or an odd number
    of heads, which balanced slopes refuse) the scale is 1, the paper's.
    """
    if window is None or window < 2 or num_heads < 2 or num_heads % 2:
        return 1.0
    steepest = _geometric(1, num_heads // 2)[0]
    return min(1.0, 1.0 / (steepest * (window - 1)))
