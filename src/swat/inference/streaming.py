"""Chunked prefill and streaming evaluation through the model's cache (docs/spec.md section 4).

A stream of ``n`` tokens goes through the model ``chunk_size`` tokens at a time
(:func:`swat.models.cache.forward_in_chunks`, the same loop ``generate`` prefills prompts with).
Each chunk's queries see the ``w - 1`` cached keys before it plus the chunk itself, through the
same banded kernel as training, so the time is ``O(n * w)`` and the memory depends on
``chunk_size`` and ``w``, never on ``n``. The logits equal those of one full forward over the
whole stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.cache_utils import Cache

from swat.errors import UserError
from swat.models.cache import PREFILL_CHUNK_SIZE, forward_in_chunks
from swat.models.compat import output_cache
from swat.models.loss import next_token_loss
from swat.utils.checks import check_count


@torch.no_grad()  # not inference_mode: the caller goes on decoding with the cache, in any mode
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

    ``attention_mask [batch, past + n]`` (zeros = left padding) works as in ``generate``:
    padding is never attended.
    """
    check_count("chunk_size", chunk_size, what="tokens per forward")
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise UserError(f"input_ids must be [batch, n] with n >= 1, got shape {tuple(input_ids.shape)}")
    chunks = forward_in_chunks(model, input_ids, chunk_size=chunk_size, cache=cache, attention_mask=attention_mask,
                               logits_to_keep=1)
    _, outputs = deque(chunks, maxlen=1).pop()  # run every chunk, keep the last one's outputs
    return outputs.logits[:, -1], output_cache(outputs)


@torch.inference_mode()
def next_token_nll(
    model: PreTrainedModel,
    pieces: Iterable[torch.Tensor],
    *,
    chunk_size: int,
    progress: bool = False,
    total: int | None = None,
) -> Iterator[torch.Tensor]:
    """The per-token negative log-likelihood of the stream made of consecutive ``pieces``
    (``[batch, m]`` token ids each), chunk by chunk: the one streaming loop of the package.

    Every piece goes through the model ``chunk_size`` tokens at a time, all through one cache, so
    each token is scored given everything before it, as in one forward over the whole stream. A
    chunk's last logit predicts the next chunk's first token (in the same piece or the next).
    Yields float32 ``[batch, k]`` per chunk, ``k`` its number of tokens (one fewer for the
    stream's first chunk: the first token has no prediction). ``progress``: a tqdm bar in tokens
    (of ``total`` if given).
    """
    cache, last_logits = None, None
    with tqdm(total=total, unit="tok", unit_scale=True, disable=not progress, desc="streaming") as bar:
        for piece in pieces:
            ids = piece.to(model.device)
            for start, outputs in forward_in_chunks(model, ids, chunk_size=chunk_size, cache=cache):
                cache = output_cache(outputs)
                chunk = ids[:, start:start + chunk_size]
                nll = next_token_loss(outputs.logits[:, :-1], chunk[:, 1:], reduction="none")
                if last_logits is not None:
                    first = next_token_loss(last_logits, chunk[:, :1], reduction="none")
                    nll = torch.cat([first, nll], dim=1)
                last_logits = outputs.logits[:, -1:]
                bar.update(chunk.shape[1])
                yield nll


def streaming_nll(
    model: PreTrainedModel, token_ids: torch.Tensor, chunk_size: int = 1024, *, progress: bool = False
) -> torch.Tensor:
    """Per-token negative log-likelihood of a stream, computed chunk by chunk with the model's cache
    (:func:`next_token_nll`).

    Args:
        model: a causal LM (SWAT models use the rolling cache; any transformers causal LM works).
        token_ids: ``[n]`` or ``[batch, n]`` token ids, ``n >= 2``.
        chunk_size: tokens per forward; memory grows with it (logits are ``chunk_size x vocab``).
        progress: show a tqdm progress bar in tokens.

    Returns:
        float32 ``[n - 1]`` (or ``[batch, n - 1]``): entry ``t`` is ``-log p(x_{t+1} | x_0..x_t)``.
        The perplexity is ``exp(mean)``.
    """
    check_count("chunk_size", chunk_size, what="tokens per forward")
    ids = token_ids[None] if token_ids.dim() == 1 else token_ids
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise UserError(f"token_ids must be [n] or [batch, n] with n >= 2, got shape {tuple(token_ids.shape)}")
    chunks = next_token_nll(model, [ids], chunk_size=chunk_size, progress=progress, total=ids.shape[1])
    nll = torch.cat(list(chunks), dim=1)
    return nll[0] if token_ids.dim() == 1 else nll
