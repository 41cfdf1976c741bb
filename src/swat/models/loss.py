"""Next-token cross-entropy: the one loss of the library (training, evaluation, the model's
``labels``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def next_token_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Cross-entropy of ``logits [..., vocab]`` against the tokens that follow, ``targets [...]``
    (already aligned: ``targets[..., t]`` is the token after the one ``logits[..., t]`` predicts
    from). Computed in float32 whatever the logits' dtype.

    ``reduction``: ``"mean"`` over the targets that are not ``ignore_index``, ``"sum"``, or
    ``"none"`` (float32 of ``targets``' shape, 0 where ignored).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must agree "
                         "on every dimension but the last (vocab)")
    losses = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction=reduction,
                             ignore_index=ignore_index)
    return losses.view(targets.shape) if reduction == "none" else losses
