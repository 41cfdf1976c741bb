"""SWATConfig: the model as data (docs/spec.md section 6 fixes the SWAT field names)."""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from swat.models.compat import CACHE_FIELD
from swat.ops import BACKEND_NAMES
from swat.ops.alibi import alibi_slopes, bounded_retain_scale
from swat.ops.attention import ACTIVATIONS


@strict(accept_kwargs=True)
class SWATConfig(PreTrainedConfig):
    """Configuration of a SWAT language model: Llama-style blocks whose attention is SWAT.

    SWAT fields (docs/spec.md):
        sliding_window: window ``w`` (keys a query sees, itself included); ``None`` = full attention.
        attention_activation: ``"sigmoid"`` (SWAT) or ``"softmax"`` (baselines).
        alibi: slopes ``m_h``: ``"balanced"``, ``"standard"``, ``"none"`` or a list of ``H`` floats.
        alibi_retain_scale: magnitude of the retaining (negative) half of balanced slopes,
            ``-alibi_retain_scale * a_k``; 1 is the paper's. ``None`` (the default) resolves to
            :func:`swat.ops.alibi.bounded_retain_scale`: the steepest retaining slope adds at most
            1 to a score across the window (0.254 for 4 heads and ``w = 64``, 0.0039 for 16 heads
            and ``w = 512``), as the ablation in docs/results/defaults/README.md supports; the resolved
            value is saved.
        use_rope: rotary embedding on queries and keys.
        sigmoid_bias: the scalar ``b`` added to every score (sigmoid only). ``None`` (the default)
            resolves to ``-log(w)`` for sigmoid attention with a window and to 0 otherwise, as
            the ablation in docs/results/defaults/README.md supports; the resolved value is saved.
        qk_norm: RMSNorm on each head's queries and keys before RoPE.
        attention_backend: kernel of :func:`swat.ops.swat_attention` (``"auto"`` picks).

    The paper's baselines are switches of the same config, e.g. Transformer++ is
    ``attention_activation="softmax", alibi="none", sliding_window=None``.
    """

    model_type = "swat"
    keys_to_ignore_at_inference = [CACHE_FIELD]  # the cache is not a prediction
    base_model_tp_plan = {
        "layers.*.self_attn.q_proj": "colwise",
        "layers.*.self_attn.k_proj": "colwise",
        "layers.*.self_attn.v_proj": "colwise",
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.gate_proj": "colwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }

    vocab_size: int = 32000
    hidden_size: int = 1024
    intermediate_size: int = 2816
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    tie_word_embeddings: bool = False

    sliding_window: int | None = 512
    attention_activation: str = "sigmoid"
    alibi: str | list[float] = "balanced"
    alibi_retain_scale: float | None = None
    use_rope: bool = True
    sigmoid_bias: float | None = None
    qk_norm: bool = False
    attention_backend: str = "auto"

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"invalid SWATConfig: hidden_size ({self.hidden_size}) must be divisible by "
                    f"num_attention_heads ({self.num_attention_heads}), or set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.sigmoid_bias is None:
            self.sigmoid_bias = default_sigmoid_bias(self.attention_activation, self.sliding_window)
        if self.alibi_retain_scale is None:
            self.alibi_retain_scale = bounded_retain_scale(self.num_attention_heads, self.sliding_window)
        super().__post_init__(**kwargs)
        self._check_swat_fields()

    def _check_swat_fields(self) -> None:
        problems = []
        if self.num_attention_heads < 1 or self.num_key_value_heads < 1:
            problems.append("num_attention_heads and num_key_value_heads must be >= 1")
        elif self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.sliding_window is not None and (isinstance(self.sliding_window, bool) or self.sliding_window < 1):
            problems.append(f"sliding_window must be an int >= 1 or None (full attention), got {self.sliding_window!r}")
        if self.attention_activation not in ACTIVATIONS:
            problems.append(f"attention_activation must be one of {ACTIVATIONS}, got {self.attention_activation!r}")
        if self.attention_activation == "softmax" and self.sigmoid_bias != 0.0:
            problems.append(
                "sigmoid_bias is a per-row constant that softmax cancels: set sigmoid_bias=0.0 or "
                "attention_activation='sigmoid'"
            )
        if self.use_rope and self.head_dim % 2:
            problems.append(f"RoPE rotates pairs of channels, so head_dim must be even (got {self.head_dim}); "
                            "change hidden_size/num_attention_heads or set use_rope=False")
        if self.alibi_retain_scale < 0:
            problems.append(f"alibi_retain_scale is a magnitude and must be >= 0, got {self.alibi_retain_scale}")
        if self.attention_backend not in BACKEND_NAMES:
            problems.append(f"attention_backend must be one of {BACKEND_NAMES}, got {self.attention_backend!r}")
        if self.attention_backend == "sdpa" and self.attention_activation != "softmax":
            problems.append("attention_backend='sdpa' computes softmax only; use 'auto' or 'chunked' for sigmoid")
        if not problems:
            try:
                self.slopes()
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError("invalid SWATConfig: " + "; ".join(problems))

    def slopes(self):
        """ALiBi slopes ``m_h`` as a float32 ``[num_attention_heads]`` tensor, or None without ALiBi."""
        if self.alibi == "none":
            return None
        return alibi_slopes(self.num_attention_heads, self.alibi, retain_scale=self.alibi_retain_scale)


def default_sigmoid_bias(activation: str, window: int | None) -> float:
    """``b = -log(w)`` for sigmoid attention with a window: each of the ``w`` keys starts with a
    weight near ``1/w``, so a query's weights sum to about 1 as softmax's do. 0 for softmax (which
    cancels any ``b``) and for full attention (no fixed number of keys)."""
    if activation == "sigmoid" and isinstance(window, int) and window >= 1:
        return -math.log(window)
    return 0.0
