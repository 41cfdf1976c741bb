"""Batches of random windows from the packed token stream, stateless and exact under resume and DDP.

Sequence ``g`` (0 <= g < global batch) of optimiser step ``s`` starts at a position drawn from a
generator seeded with ``(seed, s)`` alone. Process ``rank`` of ``world`` takes the contiguous block
``rank * B/world .. (rank+1) * B/world`` of the global batch and cuts it into micro-batches, so
the global batch of a step is the same whatever the number of processes, and resuming at step
``s`` needs no sampler state: the data position *is* the step.
"""

from __future__ import annotations

import numpy as np
import torch

from swat.errors import UserError


class WindowSampler:
    """Windows of ``seq_len + 1`` tokens (inputs and their next-token targets) from ``tokens``,
    any object with ``len()`` and ``window(start, length) -> np.ndarray`` such as
    :class:`swat.data.shards.TokenShards`."""

    def __init__(self, tokens, seq_len: int, batch_size: int, seed: int) -> None:
        if len(tokens) < seq_len + 1:
            raise UserError(f"the token stream has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}: "
                            "use more data or a shorter data.seq_len")
        self.tokens = tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed

    def starts(self, step: int) -> np.ndarray:
        """Start positions of the whole global batch of ``step`` (int64 ``[batch_size]``)."""
        rng = np.random.default_rng([self.seed, step])
        return rng.integers(0, len(self.tokens) - self.seq_len, size=self.batch_size, dtype=np.int64)

    def micro_batch(self, step: int, micro: int, micro_batch_size: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        """Micro-batch ``micro`` of process ``rank`` (``micro_batch_size`` as ``train.micro_batch_size``,
        see :func:`split_batch`): ``[sequences, seq_len + 1]`` int64."""
        size, count = split_batch(self.batch_size, micro_batch_size, world)
        if not 0 <= micro < count:
            raise IndexError(f"micro-batch {micro} out of range: {count} per step")
        first = (rank * count + micro) * size
        return stack_windows(self.tokens, self.starts(step)[first:first + size], self.seq_len + 1)


def split_batch(batch_size: int, micro_batch_size: int, world_size: int) -> tuple[int, int]:
    """How each of ``world_size`` processes runs its equal share of the global batch: ``(sequences
    per forward/backward, micro-batches per step)``. The global batch (``train.batch_size``) is
    what the run computes, the same for any number of processes (as torchtitan's and DeepSpeed's
    global batch); ``train.micro_batch_size`` bounds the sequences of one forward (the memory), so
    a share smaller than it is one micro-batch, and the accumulation steps follow from the rest."""
    if batch_size % world_size:
        raise UserError(f"train.batch_size ({batch_size}) must be a multiple of the number of processes "
                        f"({world_size}), which each take an equal share of it: change train.batch_size or "
                        "the number of processes")
    share = batch_size // world_size
    size = min(micro_batch_size, share)
    if share % size:
        fitting = max(d for d in range(1, size + 1) if share % d == 0)
        sizes = f"train.batch_size ({batch_size})" if world_size == 1 else \
            f"each process's share of train.batch_size ({batch_size} / {world_size} processes = {share})"
        raise UserError(f"{sizes} must be a multiple of train.micro_batch_size ({micro_batch_size}): change one of "
                        f"them, e.g. train.micro_batch_size={fitting}")
    return size, share // size


def stack_windows(tokens, starts: np.ndarray, length: int) -> torch.Tensor:
    """The windows ``tokens.window(start, length)`` at ``starts``, as one int64 ``[len(starts), length]``."""
    return torch.from_numpy(np.stack([np.asarray(tokens.window(int(s), length), dtype=np.int64) for s in starts]))


def eval_starts(num_tokens: int, seq_len: int, windows: int) -> np.ndarray:
    """``windows`` fixed start positions spread evenly over a stream of ``num_tokens`` tokens
    (fewer if the stream is short: no window is repeated)."""
    if num_tokens < seq_len + 1:
        raise UserError(f"the held-out stream has {num_tokens} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    last = num_tokens - seq_len - 1
    return np.unique(np.linspace(0, last, num=windows).round().astype(np.int64))


def document_segments(tokens: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """``segment_ids`` for packed documents: the number of EOS tokens strictly before each
    position, so each EOS still belongs to the document it ends (docs/spec.md section 3's switch)."""
    is_eos = (tokens == eos_token_id).to(torch.long)
    return torch.cumsum(is_eos, dim=-1) - is_eos
