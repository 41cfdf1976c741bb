"""Per-token scores of a batch of sequences, streamed through the model's KV cache in chunks.

With a window the cache is the rolling one (``w - 1`` past keys per layer, SPEC.md section 4), so
memory does not grow with the sequence; a full-attention model gets an ordinary growing cache.
Either way the scores equal one full forward over the whole sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel


@dataclass
class TokenScores:
    """For ``[batch, seq]`` inputs, scores of the ``seq - 1`` predicted tokens (position ``t``
    scores token ``t + 1`` given tokens ``0..t``)."""

    nll: torch.Tensor  # [batch, seq - 1] float64, -log p(token)
    correct: torch.Tensor  # [batch, seq - 1] bool, the token is the argmax (greedy) prediction


DEFAULT_CHUNK_SIZE = 1024
"""Tokens per forward: the cost per chunk is O(chunk * w), and larger chunks amortise the
per-call overhead; memory is dominated by the ``chunk x vocab`` logits."""


@torch.no_grad()
def token_scores(model: PreTrainedModel, input_ids: torch.Tensor, chunk_size: int | None = None) -> TokenScores:
    """Stream ``input_ids [batch, seq]`` through the cache ``chunk_size`` tokens at a time."""
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must be [batch, seq] with seq >= 2, got shape {tuple(input_ids.shape)}")
    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    cache = DynamicCache(config=model.config)
    nll, correct = [], []
    seq = input_ids.shape[1]
    for start in range(0, seq - 1, chunk_size):
        chunk = input_ids[:, start:min(start + chunk_size, seq - 1)]
        targets = input_ids[:, start + 1:start + 1 + chunk.shape[1]]
        logits = model(chunk, cache=cache, use_cache=True).logits
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        log_probs = F.log_softmax(logits, dim=-1)
        nll.append(-log_probs.gather(-1, targets[..., None])[..., 0].double())
        correct.append(logits.argmax(-1) == targets)
    return TokenScores(nll=torch.cat(nll, dim=1).cpu(), correct=torch.cat(correct, dim=1).cpu())
