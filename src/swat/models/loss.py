"""Next-token cross-entropy: the one loss of the library (training, evaluation, the model's
``labels``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean next-token loss, clamped at ``exp(50)`` so that a diverged loss
    reads as a huge number instead of overflowing."""
    return math.exp(min(loss, 50.0))


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


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = IGNORE_INDEX,
    shift_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of a Hugging Face causal LM's ``labels``, as transformers' ``ForCausalLMLoss``
    defines it: ``labels [batch, seq]`` are the input ids (``ignore_index`` where no loss is
    wanted) and are shifted here, so ``logits[:, t]`` is scored against ``labels[:, t + 1]``
    (``shift_labels`` passes them already shifted). Without ``num_items_in_batch`` the mean over
    the scored tokens; with it, their sum divided by it (gradient accumulation: the micro-batches
    of one step share one denominator)."""
    if shift_labels is None:
        if labels is None:
            raise ValueError("pass labels (the input ids; shifted here) or shift_labels (already shifted)")
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    shift_labels = shift_labels.to(logits.device)
    if num_items_in_batch is None:
        return next_token_loss(logits, shift_labels, ignore_index=ignore_index)
    total = next_token_loss(logits, shift_labels, reduction="sum", ignore_index=ignore_index)
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
