"""Chunked prefill and streaming evaluation through the rolling cache (SPEC.md section 4).

A stream of ``n`` tokens goes through the model ``chunk_size`` tokens at a time. Each chunk's
queries see the ``w - 1`` cached keys before it plus the chunk itself, through the same banded
kernel as training, so the time is ``O(n * w)`` and the memory depends on ``chunk_size`` and
``w``, never on ``n``. The logits equal those of one full forward over the whole stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.cache_utils import Cache

PREFILL_CHUNK_SIZE = 2048
"""Tokens per forward when a prompt is prefilled (``generate`` uses it for long prompts)."""


@torch.inference_mode()
def prefill(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    *,
    cache: Cache | None = None,
    attention_mask: torch.Tensor | None = None,
    chunk_size: int = PREFILL_CHUNK_SIZE,
) -> tuple[torch.Tensor, Cache]:
    """Feed ``input_ids [batch, n]`` through ``model`` in chunks, filling ``cache`` (a new one
    when ``None``). Returns the logits of the last position ``[batch, vocab]`` and the cache.

    ``attention_mask [batch, past + n]`` (zeros = left padding) works as in ``generate``: positions
    count only the real tokens and padding is never attended.
    """
    _check_chunk_size(chunk_size)
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be [batch, n] with n >= 1, got shape {tuple(input_ids.shape)}")
    past = cache.get_seq_length() if cache is not None else 0
    position_ids = None
    if attention_mask is not None:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
    logits = None
    for start in range(0, input_ids.shape[1], chunk_size):
        end = min(start + chunk_size, input_ids.shape[1])
        out = model(
            input_ids=input_ids[:, start:end],
            attention_mask=None if attention_mask is None else attention_mask[:, : past + end],
            position_ids=None if position_ids is None else position_ids[:, start:end],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache, logits = out.cache, out.logits[:, -1]
    return logits, cache


@torch.inference_mode()
def streaming_nll(
    model: PreTrainedModel, token_ids: torch.Tensor, chunk_size: int = 1024, *, progress: bool = False
) -> torch.Tensor:
    """Per-token negative log-likelihood of a stream, computed chunk by chunk with the model's cache.

    Args:
        model: a causal LM (SWAT models use the rolling cache; any transformers causal LM works).
        token_ids: ``[n]`` or ``[batch, n]`` token ids, ``n >= 2``.
        chunk_size: tokens per forward; memory grows with it (logits are ``chunk_size x vocab``).
        progress: show a tqdm progress bar in tokens.

    Returns:
        float32 ``[n - 1]`` (or ``[batch, n - 1]``): entry ``t`` is ``-log p(x_{t+1} | x_0..x_t)``.
        The perplexity is ``exp(mean)``.
    """
    _check_chunk_size(chunk_size)
    ids = token_ids[None] if token_ids.dim() == 1 else token_ids
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise ValueError(f"token_ids must be [n] or [batch, n] with n >= 2, got shape {tuple(token_ids.shape)}")
    ids = ids.to(model.device)
    n = ids.shape[1]
    nll = torch.empty(ids.shape[0], n - 1, dtype=torch.float32, device=ids.device)
    cache = None
    with tqdm(total=n, unit="tok", unit_scale=True, disable=not progress, desc="streaming") as bar:
        for start in range(0, n, chunk_size):
            end = min(start + chunk_size, n)
            out = model(input_ids=ids[:, start:end], cache=cache, use_cache=True)
            cache = out.cache
            logits = out.logits[:, : min(end, n - 1) - start].float()
            targets = ids[:, start + 1 : start + 1 + logits.shape[1]]
            nll[:, start : start + logits.shape[1]] = F.cross_entropy(
                logits.transpose(1, 2), targets, reduction="none"
            )
            bar.update(end - start)
    return nll[0] if token_ids.dim() == 1 else nll


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1 (tokens per forward), got {chunk_size!r}")
