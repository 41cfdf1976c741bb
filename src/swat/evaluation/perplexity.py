"""Perplexity of a token stream of any length, fed to the model piece by piece through its cache.

The stream arrives as consecutive pieces (e.g. :func:`swat.evaluation.loading.token_pieces`) and
goes through the model ``chunk_size`` tokens at a time, all through one cache, so every token
after the first is scored given everything before it, as in one forward over the whole stream.
With a window the rolling cache keeps memory independent of the length and time linear in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from swat.errors import UserError
from swat.models.cache import forward_in_chunks
from swat.models.compat import output_cache
from swat.models.loss import next_token_loss
from swat.utils.checks import check_count


@dataclass
class StreamLoss:
    """Summed next-token loss of a stream: ``nll_sum`` over ``scored`` predictions of ``tokens`` tokens."""

    tokens: int
    scored: int
    nll_sum: float

    @property
    def loss(self) -> float:
        """Mean next-token loss in nats; the perplexity is ``exp(loss)``."""
        return self.nll_sum / self.scored


@torch.inference_mode()
def stream_loss(
    model: PreTrainedModel,
    pieces: Iterable[torch.Tensor],
    *,
    chunk_size: int = 1024,
    max_tokens: int | None = None,
    progress: bool = False,
) -> StreamLoss:
    """Next-token loss of the stream made of ``pieces`` (1-D token ids), at most its first
    ``max_tokens`` tokens, reading no piece past them. Raises ``ValueError`` for fewer than 2 tokens."""
    check_count("chunk_size", chunk_size, what="tokens per forward")
    if max_tokens is not None:
        check_count("max_tokens", max_tokens, 2, what="one token is scored given the one before")
    cache, last_logits, tokens, nll_sum = None, None, 0, torch.zeros((), dtype=torch.float64)
    with tqdm(unit="tok", unit_scale=True, disable=not progress, desc="streaming") as bar:
        for piece in pieces:
            if max_tokens is not None:
                piece = piece[: max_tokens - tokens]
            ids = piece.to(model.device)[None]
            for start, outputs in forward_in_chunks(model, ids, chunk_size=chunk_size, cache=cache):
                cache = output_cache(outputs)
                chunk = ids[:, start:start + chunk_size]
                predicted, targets = outputs.logits[:, :-1], chunk[:, 1:]
                if last_logits is not None:  # the previous chunk's last position predicts this chunk's first token
                    predicted, targets = torch.cat([last_logits[:, None], predicted], dim=1), chunk
                nll_sum += next_token_loss(predicted, targets, reduction="sum").double().cpu()
                last_logits = outputs.logits[:, -1]
                bar.update(chunk.shape[1])
            tokens += piece.numel()
            if max_tokens is not None and tokens >= max_tokens:
                break
    if tokens < 2:
        raise UserError(f"the text has {tokens} token(s): perplexity needs at least 2, pass a longer text")
    return StreamLoss(tokens=tokens, scored=tokens - 1, nll_sum=nll_sum.item())
