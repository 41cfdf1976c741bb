"""The rolling KV cache (docs/spec.md section 4): at most ``w`` keys per layer, stored after RoPE.

A query at position ``i`` sees keys ``i-w+1 .. i``: the ``w-1`` previous ones, which the cache
keeps, and its own, which arrives with it. So each layer stores the last ``w-1`` keys and values,
and an update returns them concatenated with the new ones, oldest first, which is the layout
:func:`swat.ops.swat_attention` expects (queries are the last ``q_len`` key positions).

Transformers' ``DynamicSlidingWindowLayer`` does this by concatenating the cache with every new
token, which copies all ``w - 1`` entries per token and layer (28% of a decoding step in one profile
at ``w = 512``, on a busy CPU). :class:`RollingWindowLayer` keeps the entries in a buffer of ``w - 1 + SLACK``
slots instead: a decoding step writes its token into the next free slot and attends to a view of
the last ``w`` slots; only when the buffer is full are the last ``w - 1`` entries moved back to
its front, one copy every ``SLACK`` tokens. It also fixes two details of transformers' layer:

- ``w = 1`` keeps nothing (transformers slices ``[-0:]``, which keeps everything, so the cache
  would grow with the stream);
- a multi-token update (a prefill chunk) is concatenated, and the kept entries are copied into a
  fresh buffer, so the chunk's memory is freed at once instead of being pinned by a view.

Memory per layer is ``w - 1 + SLACK`` entries, whatever the length of the stream.

:func:`forward_in_chunks` is how a long input enters a cache: ``generate``'s prompt,
:func:`swat.inference.prefill` and :func:`swat.inference.streaming_nll` all go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, DynamicSlidingWindowLayer
from transformers.utils import ModelOutput

from swat.models.compat import CACHE_FIELD, output_cache

SLACK = 64  # free slots after the kept window: a decoding step appends there, without copying

PREFILL_CHUNK_SIZE = 2048
"""Tokens per forward when a long input is fed through a cache (``generate``'s prompt, prefill)."""


class RollingWindowLayer(DynamicSlidingWindowLayer):
    """One layer's rolling cache for window ``w`` (keys a query sees, itself included).

    ``keys``/``values`` are the last ``w - 1`` entries: views into ``_key_buffer``/``_value_buffer``
    as long as nobody else replaced them (beam search reorders them, for instance), in which case
    the next update starts a new buffer from them.
    """

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``[batch, kv_heads, new, head_dim]`` states; return cached + new states (oldest
        first) and keep only the last ``w - 1``."""
        if self.record_past:  # assisted decoding keeps everything until `crop`: transformers' logic
            return super().update(key_states, value_states, *args, **kwargs)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        if key_states.shape[-2] > SLACK or not self._owns_entries():
            keys = torch.cat([self.keys, key_states], dim=-2)
            values = torch.cat([self.values, value_states], dim=-2)
            self._start_buffers(keys, values)
            return keys, values
        return self._append(key_states, value_states)

    def _owns_entries(self) -> bool:
        kept = getattr(self, "_kept", None)
        return kept is not None and kept[0] is self.keys and kept[1] is self.values

    def _start_buffers(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """New buffers holding the last ``w - 1`` of ``keys``/``values`` at their front."""
        kept = min(keys.shape[-2], self.sliding_window - 1)
        buffers = []
        for states in (keys, values):
            batch, heads, length, dim = states.shape
            buffer = states.new_empty(batch, heads, self.sliding_window - 1 + SLACK, dim)
            buffer[:, :, :kept] = states[:, :, length - kept:]
            buffers.append(buffer)
        self._key_buffer, self._value_buffer = buffers
        self._keep(0, kept)

    def _append(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes the new states after the kept ones (moving those to the front first when the
        buffer is full) and returns a view of kept + new."""
        start, end, new = self._start, self._start + self.keys.shape[-2], key_states.shape[-2]
        if end + new > self._key_buffer.shape[-2]:
            for buffer in (self._key_buffer, self._value_buffer):
                buffer[:, :, : end - start] = buffer[:, :, start:end].clone()
            start, end = 0, end - start
        self._key_buffer[:, :, end:end + new] = key_states
        self._value_buffer[:, :, end:end + new] = value_states
        keys, values = self._key_buffer[:, :, start:end + new], self._value_buffer[:, :, start:end + new]
        kept = min(end + new - start, self.sliding_window - 1)
        self._keep(end + new - kept, kept)
        return keys, values

    def _keep(self, start: int, length: int) -> None:
        self._start = start
        self.keys = self._key_buffer[:, :, start:start + length]
        self.values = self._value_buffer[:, :, start:start + length]
        self._kept = (self.keys, self.values)


class RollingCache(DynamicCache):
    """The KV cache of a SWAT model: a :class:`RollingWindowLayer` per layer when the config has
    a ``sliding_window``, transformers' growing ``DynamicLayer`` for full attention (``None``).

    ``get_seq_length()`` is the number of tokens seen so far (the next position), not the number
    of entries stored.
    """

    def __init__(self, config) -> None:
        window = config.sliding_window
        layers = [
            RollingWindowLayer(sliding_window=window) if window is not None else DynamicLayer()
            for _ in range(config.num_hidden_layers)
        ]
        Cache.__init__(self, layers=layers)  # DynamicCache.__init__ would pick transformers' layer classes


def forward_in_chunks(
    model: Callable[..., ModelOutput],
    input_ids: torch.Tensor,
    *,
    chunk_size: int,
    cache: Cache | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    **forward_kwargs,
) -> Iterator[tuple[int, ModelOutput]]:
    """Run ``model`` over ``input_ids [batch, n]`` ``chunk_size`` tokens at a time, all through one
    cache (``None``: the model's first forward creates it), and yield ``(start, outputs)`` for each
    chunk ``input_ids[:, start:start + chunk_size]``.

    Each chunk's queries see the keys the cache kept from before it plus the chunk itself, so the
    outputs are those of one forward over the whole input (docs/spec.md section 4), while memory
    depends on ``chunk_size`` and ``w`` only. ``attention_mask [batch, past + n]`` covers the
    tokens already in the cache too, as in ``generate``: each chunk gets it up to its own end.
    ``position_ids [..., n]`` are cut like the input; without them the model numbers positions.
    """
    past = cache.get_seq_length() if cache is not None else 0
    for start in range(0, input_ids.shape[1], chunk_size):
        end = min(start + chunk_size, input_ids.shape[1])
        outputs = model(
            input_ids=input_ids[:, start:end],
            attention_mask=None if attention_mask is None else attention_mask[:, : past + end],
            position_ids=None if position_ids is None else position_ids[..., start:end],
            use_cache=True,
            **{CACHE_FIELD: cache},
            **forward_kwargs,
        )
        cache = output_cache(outputs)
        yield start, outputs
