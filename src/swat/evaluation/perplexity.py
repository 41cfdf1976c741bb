"""Perplexity of a token stream of any length, fed to the model piece by piece through its cache.

The stream arrives as consecutive pieces (e.g. :func:`swat.evaluation.heldout.token_pieces`) and
goes through the model ``chunk_size`` tokens at a time, all through one cache
(:func:`swat.inference.streaming.next_token_nll`), so every token after the first is scored given
everything before it, as in one forward over the whole stream.
With a window the rolling cache keeps memory independent of the length and time linear in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from swat.errors import UserError
from swat.inference.streaming import next_token_nll
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


def stream_loss(
    model: PreTrainedModel,
    pieces: Iterable[torch.Tensor],
    *,
    chunk_size: int = 1024,
    max_tokens: int | None = None,
    progress: bool = False,
) -> StreamLoss:
    """Next-token loss of the stream made of ``pieces`` (1-D token ids), at most its first
    ``max_tokens`` tokens, reading no piece past them (:func:`swat.inference.streaming.next_token_nll`).
    Raises a ``UserError`` for fewer than 2 tokens."""
    check_count("chunk_size", chunk_size, what="tokens per forward")
    if max_tokens is not None:
        check_count("max_tokens", max_tokens, 2, what="one token is scored given the one before")
    tokens = 0

    def rows() -> Iterator[torch.Tensor]:
        nonlocal tokens
        for piece in pieces:
            piece = piece if max_tokens is None else piece[: max_tokens - tokens]
            tokens += piece.numel()
            yield piece[None]
            if max_tokens is not None and tokens >= max_tokens:
                return

    nll_sum = torch.zeros((), dtype=torch.float64)
    for nll in next_token_nll(model, rows(), chunk_size=chunk_size, progress=progress):
        nll_sum = nll_sum.to(nll.device) + nll.double().sum()  # summed on the device: no sync per chunk
    if tokens < 2:
        raise UserError(f"the text has {tokens} token(s): perplexity needs at least 2, pass a longer text")
    return StreamLoss(tokens=tokens, scored=tokens - 1, nll_sum=nll_sum.item())
