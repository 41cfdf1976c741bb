"""The SWAT attention layer: projections, optional QK-norm, RoPE, KV cache, the SWAT op."""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import Cache

from swat.layers.norm import RMSNorm
from swat.layers.rope import apply_rope
from swat.ops import swat_attention


class SWATAttention(nn.Module):
    """Multi-head (or grouped-query) SWAT attention of one decoder layer.

    Keys enter the cache after RoPE, so a cached key never needs re-rotating; with a window the
    cache holds only the last keys the window can reach (docs/spec.md section 4).
    """

    def __init__(self, config, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)
        if config.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        # Built from the config on first use, not stored as a buffer: a buffer would be created
        # on the meta device by from_pretrained and rounded by model.to(bfloat16).
        self._slopes_on: dict[torch.device, torch.Tensor | None] = {}

    def slopes(self, device: torch.device) -> torch.Tensor | None:
        if torch.compiler.is_compiling():  # a constant of the graph: no cache for torch.compile to guard on
            return self._build_slopes(device)
        if device not in self._slopes_on:
            self._slopes_on[device] = self._build_slopes(device)
        return self._slopes_on[device]

    def _build_slopes(self, device: torch.device) -> torch.Tensor | None:
        slopes = self.config.slopes()
        return None if slopes is None else slopes.to(device)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None,
        cache: Cache | None = None,
        segment_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``hidden_states [batch, q_len, hidden]`` -> (output of the same shape, weights or None).

        ``segment_ids [batch, past + q_len]`` label every position of the history (the model
        checks that); the cache returns the most recent keys, so the keys' segments are its last
        ``kv_len`` entries. With ``output_attentions`` the output is computed from the dense
        weights ``[batch, heads, q_len, kv_len]`` (:func:`attention_weights`), which are returned.
        """
        batch, q_len, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(batch, q_len, self.num_heads, self.head_dim)
        k = self.k_proj(hidden_states).view(batch, q_len, self.num_kv_heads, self.head_dim)
        v = self.v_proj(hidden_states).view(batch, q_len, self.num_kv_heads, self.head_dim)
        if self.config.qk_norm:
            # RMSNorm's fp32 weight would promote bf16 q, k under autocast while v stays bf16
            q, k = self.q_norm(q).to(q.dtype), self.k_norm(k).to(k.dtype)
        if position_embeddings is not None:
            cos, sin = position_embeddings
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k.transpose(1, 2), v.transpose(1, 2), self.layer_idx)
            k, v = k.transpose(1, 2), v.transpose(1, 2)
        if segment_ids is not None:
            segment_ids = segment_ids[:, segment_ids.shape[1] - k.shape[1]:]
        options = dict(window=self.config.sliding_window, slopes=self.slopes(q.device),
                       sigmoid_bias=self.config.sigmoid_bias, activation=self.config.attention_activation,
                       segment_ids=segment_ids)
        weights = None
        if output_attentions:
            weights = attention_weights(q, k, **options)
            out = torch.einsum("bhij,bjhd->bihd", weights, v.repeat_interleave(self.num_heads // self.num_kv_heads, 2))
        else:
            out = swat_attention(q, k, v, backend=self.config.attention_backend, **options)
        return self.o_proj(out.reshape(batch, q_len, -1)), weights


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    window: int | None,
    slopes: torch.Tensor | None = None,
    sigmoid_bias: float = 0.0,
    activation: str = "sigmoid",
    scale: float | None = None,
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The weights ``a_ij`` of :func:`swat.ops.swat_attention` (docs/spec.md section 1) as a dense
    ``[batch, heads, q_len, kv_len]`` tensor, zero outside the band; arguments as the op's.

    They are the op's own weights, not a second derivation of them: ``o_i = sum_j a_ij v_j``, so
    with the unit vectors ``v_j = e_j`` as values the output row is the row of weights. The op's
    dense reference backend is run on ``head_dim`` of those columns at a time.
    """
    batch, kv_len, kv_heads, head_dim = k.shape
    identity = torch.eye(kv_len, dtype=q.dtype, device=q.device)
    identity = nn.functional.pad(identity, (0, -kv_len % head_dim))  # whole blocks of head_dim columns
    rows = [
        swat_attention(q, k, columns[None, :, None, :].expand(batch, kv_len, kv_heads, head_dim), window=window,
                       slopes=slopes, sigmoid_bias=sigmoid_bias, activation=activation, scale=scale,
                       segment_ids=segment_ids, backend="reference")
        for columns in identity.split(head_dim, dim=1)
    ]
    return torch.cat(rows, dim=-1)[..., :kv_len].transpose(1, 2)
