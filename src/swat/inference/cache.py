"""The rolling KV cache (SPEC.md section 4): at most ``w`` keys per layer, stored after RoPE.

A query at position ``i`` sees keys ``i-w+1 .. i``: the ``w-1`` previous ones, which the cache
keeps, and its own, which arrives with it. So each layer stores the last ``w-1`` keys and values,
and an update returns them concatenated with the new ones, oldest first, which is the layout
:func:`swat.ops.swat_attention` expects (queries are the last ``q_len`` key positions).

Transformers' ``DynamicSlidingWindowLayer`` already does this. :class:`RollingWindowLayer` fixes
two details of it:

- ``w = 1`` keeps nothing (transformers slices ``[-0:]``, which keeps everything, so the cache
  would grow with the stream);
- after a multi-token update (a prefill chunk) the kept entries are copied out, so the chunk's
  buffers are freed at once instead of being pinned by a view until the next step. In steady
  decoding the kept view shares the ``w``-entry buffer of the last step: memory is exactly ``w``
  entries per layer, whatever the length of the stream.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, DynamicSlidingWindowLayer


class RollingWindowLayer(DynamicSlidingWindowLayer):
    """One layer's rolling cache for window ``w`` (keys a query sees, itself included)."""

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
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        self.keys, self.values = self._last_window(keys), self._last_window(values)
        return keys, values

    def _last_window(self, states: torch.Tensor) -> torch.Tensor:
        length = states.shape[-2]
        kept = states[:, :, length - min(length, self.sliding_window - 1):, :]
        return kept.clone() if length > self.sliding_window else kept


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

    def stored_lengths(self) -> list[int]:
        """Key entries held by each layer (at most ``w - 1`` between steps with a window)."""
        return [layer.keys.shape[-2] if layer.is_initialized else 0 for layer in self.layers]
