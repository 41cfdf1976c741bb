"""Next-token cross-entropy: the one loss of the library (training, evaluation, the model's
``labels``), from logits (:func:`next_token_loss`) or from the hidden states and the LM head
together (:func:`linear_cross_entropy`), which never holds the logits of more than a chunk of tokens."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from swat.errors import UserError

IGNORE_INDEX = -100
# Logits of at most this many values exist at a time in linear_cross_entropy (64 MiB in float32):
# 512 tokens of a 32k vocabulary, enough rows for the LM head's GEMMs to run at full speed.
CHUNK_LOGITS = 2 ** 24


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


def linear_cross_entropy(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = IGNORE_INDEX,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """``next_token_loss(hidden_states @ weight.T, targets)`` computed ``chunk_tokens`` tokens at a
    time (default: ``CHUNK_LOGITS // vocab``), forward and backward, so that the ``[tokens, vocab]``
    logits never exist: ``hidden_states [..., hidden]``, ``weight [vocab, hidden]`` (the LM head's,
    tied or not), ``targets [...]``.

    The matmuls run in the autocast dtype where autocast is on (as ``nn.Linear`` would), else in
    the inputs' dtype; log-sum-exp and losses in float32 (float64 for float64 inputs). With
    gradients, each chunk's ``softmax - onehot`` is turned into the gradients of the hidden states
    and of ``weight`` while the chunk's logits exist (three GEMMs per chunk, as the plain loss
    and its backward), and the backward only scales them. ``reduction="none"`` (per-token losses,
    0 where ignored) is for evaluation: it has no gradient.
    """
    if hidden_states.shape[:-1] != targets.shape or weight.shape[-1] != hidden_states.shape[-1]:
        raise UserError(f"hidden states {tuple(hidden_states.shape)}, LM head weight {tuple(weight.shape)} and "
                        f"targets {tuple(targets.shape)} must be [..., hidden], [vocab, hidden] and [...]")
    if reduction not in ("mean", "sum", "none"):
        raise UserError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    chunk = chunk_tokens or max(1, CHUNK_LOGITS // weight.shape[0])
    hidden, flat_targets = hidden_states.flatten(0, -2), targets.flatten().to(hidden_states.device)
    if reduction == "none":
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            raise UserError("reduction='none' has no gradient in linear_cross_entropy; use 'sum' or 'mean'")
        return _chunked_losses(hidden, weight, flat_targets, ignore_index, chunk, False)[0].view(targets.shape)
    total = _LinearCrossEntropy.apply(hidden, weight, flat_targets, ignore_index, chunk)
    return total if reduction == "sum" else total / (flat_targets != ignore_index).sum()


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


def _chunked_losses(hidden, weight, targets, ignore_index: int, chunk: int, want_grads: bool):
    """Per-token losses ``[tokens]`` (0 where ignored) and, with ``want_grads``, the gradients of
    their sum with respect to ``hidden`` (in the compute dtype) and ``weight`` (float32/64)."""
    dtype = _compute_dtype(hidden)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    with torch.autocast(hidden.device.type, enabled=False):
        h, w = hidden.to(dtype), weight.to(dtype)
        losses = torch.empty(h.shape[0], dtype=acc, device=h.device)
        grad_hidden = torch.empty_like(h) if want_grads else None
        grad_weight = torch.zeros(w.shape, dtype=acc, device=w.device) if want_grads else None
        for start in range(0, h.shape[0], chunk):
            rows = slice(start, start + chunk)
            logits = (h[rows] @ w.T).to(acc)
            keep = targets[rows] != ignore_index
            picked = targets[rows].where(keep, 0)[:, None]
            lse = torch.logsumexp(logits, dim=-1)
            losses[rows] = (lse - logits.gather(1, picked)[:, 0]) * keep
            if want_grads:  # d(sum of losses)/d(logits) = (softmax - onehot) on kept rows, over the logits
                grad = logits.sub_(lse[:, None]).exp_().scatter_add_(1, picked, torch.full_like(lse, -1.0)[:, None])
                grad = grad.mul_(keep[:, None]).to(dtype)
                torch.mm(grad, w, out=grad_hidden[rows])
                grad_weight += grad.T @ h[rows]
    return losses, grad_hidden, grad_weight


class _LinearCrossEntropy(torch.autograd.Function):
    """The summed loss of :func:`linear_cross_entropy`; its gradients are computed in the forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index: int, chunk: int):
        want_grads = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        losses, grad_hidden, grad_weight = _chunked_losses(hidden, weight, targets, ignore_index, chunk, want_grads)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = hidden.dtype, weight.dtype
        return losses.sum()

    @staticmethod
    def backward(ctx, grad_total):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        return ((grad_hidden * grad_total).to(hidden_dtype), (grad_weight * grad_total).to(weight_dtype),
                None, None, None)


def _shifted_labels(labels, shift_labels, ignore_index: int) -> torch.Tensor:
    if shift_labels is None:
        if labels is None:
            raise ValueError("pass labels (the input ids; shifted here) or shift_labels (already shifted)")
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    return shift_labels


def _per_item(total: torch.Tensor, num_items_in_batch: torch.Tensor | int) -> torch.Tensor:
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


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
    shift_labels = _shifted_labels(labels, shift_labels, ignore_index).to(logits.device)
    if num_items_in_batch is None:
        return next_token_loss(logits, shift_labels, ignore_index=ignore_index)
    return _per_item(next_token_loss(logits, shift_labels, reduction="sum", ignore_index=ignore_index),
                     num_items_in_batch)


def causal_lm_head_loss(
    hidden_states: torch.Tensor,
    head_weight: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = IGNORE_INDEX,
    shift_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`causal_lm_loss` of the logits ``hidden_states @ head_weight.T``, computed by
    :func:`linear_cross_entropy` without the logits (float32, as transformers' loss, whatever the
    dtype it was computed in)."""
    shift_labels = _shifted_labels(labels, shift_labels, ignore_index)
    if num_items_in_batch is None:
        return linear_cross_entropy(hidden_states, head_weight, shift_labels, ignore_index=ignore_index).float()
    total = linear_cross_entropy(hidden_states, head_weight, shift_labels, reduction="sum", ignore_index=ignore_index)
    return _per_item(total.float(), num_items_in_batch)
