"""SWATConfig: the model as data (docs/spec.md section 6 fixes the SWAT field names)."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable

from huggingface_hub.dataclasses import strict
from transformers import GenerationConfig, PreTrainedConfig
from transformers.activations import ACT2FN

from swat.models.compat import CACHE_FIELD
from swat.ops import ACTIVATIONS, BACKEND_NAMES
from swat.ops.alibi import alibi_slopes, bounded_retain_scale

MAX_EMBEDDING_PARAMETERS = 2**31
"""The largest ``vocab_size * hidden_size`` a config accepts: 8 GiB of float32 in the embedding
(an untied LM head is a second matrix of the same size). Real models stay below it (Llama 3 70B:
128256 x 8192 = 1.05e9); a larger product is almost always a mistyped size, refused here with
the memory it would need rather than in a failed allocation."""

TRANSFORMERS_KEYS = frozenset({
    "model_type", "auto_map", "quantization_config",  # written into config.json by transformers
    "torch_dtype", "num_labels", "name_or_path", "output_attentions", "attn_implementation",
    "experts_implementation",  # read by PreTrainedConfig.__post_init__ and from_pretrained
})
"""Keys a config accepts besides its dataclass fields: transformers' own, the generation
parameters old configs carried (transformers moves them to the generation config) and private
bookkeeping (keys starting with ``_``, such as ``_name_or_path``). Any other key is refused, so a
misspelt field is an error instead of a silently ignored attribute."""


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

    Every field is checked when the config is made, from keywords or from a ``config.json``, and
    again when a model is built from it (:meth:`check`): a ``ValueError`` names each field to
    change. Sizes are ints >= 1, ``vocab_size * hidden_size`` at most
    :data:`MAX_EMBEDDING_PARAMETERS`, special token ids inside the vocabulary, and a key that is
    no field (nor one of :data:`TRANSFORMERS_KEYS`) is refused with the closest field's name.
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
        unknown_keys_problem = _unknown_keys_problem(kwargs)
        if unknown_keys_problem:
            raise ValueError("invalid SWATConfig: " + unknown_keys_problem)
        size_problems = self._size_problems()
        if size_problems:  # the defaults below are derived from the sizes
            raise ValueError("invalid SWATConfig: " + "; ".join(size_problems))
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
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
        self.check()

    def check(self) -> None:
        """Raise a ``ValueError`` that says which fields to change if any is out of range. Runs when
        the config is made and again when a model is built from it (fields may have been
        assigned since)."""
        problems = self._size_problems()
        if not problems:
            problems = self._field_problems()
        if problems:
            raise ValueError("invalid SWATConfig: " + "; ".join(problems))

    def _size_problems(self) -> list[str]:
        problems = [
            f"{name} must be an int >= 1, got {value!r}"
            for name, value, optional in (
                ("vocab_size", self.vocab_size, False),
                ("hidden_size", self.hidden_size, False),
                ("intermediate_size", self.intermediate_size, False),
                ("num_hidden_layers", self.num_hidden_layers, False),
                ("num_attention_heads", self.num_attention_heads, False),
                ("num_key_value_heads", self.num_key_value_heads, True),
                ("head_dim", self.head_dim, True),
                ("max_position_embeddings", self.max_position_embeddings, False),
            )
            if not (optional and value is None) and not _is_positive_int(value)
        ]
        if self.sliding_window is not None and not _is_positive_int(self.sliding_window):
            problems.append(f"sliding_window must be an int >= 1 or None (full attention), got {self.sliding_window!r}")
        if not problems and self.vocab_size * self.hidden_size > MAX_EMBEDDING_PARAMETERS:
            parameters = self.vocab_size * self.hidden_size
            problems.append(
                f"vocab_size x hidden_size = {self.vocab_size} x {self.hidden_size} = {parameters:,} embedding "
                f"parameters ({parameters * 4 / 2**30:.1f} GiB in float32, as much again for an untied lm_head), "
                f"above the {MAX_EMBEDDING_PARAMETERS:,} this config allows: set vocab_size to the tokenizer's "
                "vocabulary size, or a smaller hidden_size"
            )
        return problems

    def _field_problems(self) -> list[str]:
        problems = []
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        for name in ("rope_theta", "rms_norm_eps"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be a finite number > 0, got {value!r}")
        if not _is_real(self.sigmoid_bias) or not math.isfinite(self.sigmoid_bias):
            problems.append(f"sigmoid_bias must be a finite number (None: -log(sliding_window)), got {self.sigmoid_bias!r}")
        if not _is_real(self.initializer_range) or not math.isfinite(self.initializer_range) \
                or self.initializer_range < 0:
            problems.append(f"initializer_range is a standard deviation: a finite number >= 0, "
                            f"got {self.initializer_range!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            ids = [] if value is None else value if isinstance(value, list) else [value]
            if not all(_is_int(i) and 0 <= i < self.vocab_size for i in ids):
                problems.append(f"{name} must be None or token ids in 0 .. vocab_size - 1 = {self.vocab_size - 1}, "
                                f"got {value!r}: take it from the tokenizer the model is trained with")
        if self.hidden_act not in ACT2FN:
            close = difflib.get_close_matches(str(self.hidden_act), list(ACT2FN), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"hidden_act must name one of transformers' activations, got {self.hidden_act!r}{hint}")
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
        if not _is_real(self.alibi_retain_scale) or not math.isfinite(self.alibi_retain_scale):
            problems.append(f"alibi_retain_scale must be a finite number, got {self.alibi_retain_scale!r}")
        elif self.alibi_retain_scale < 0:
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
        return problems

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


def _unknown_keys_problem(keys: Iterable[str]) -> str | None:
    """What to change about keys that are neither SWATConfig fields nor :data:`TRANSFORMERS_KEYS`
    (None if there are none), naming the closest field of each."""
    fields = [field.name for field in dataclasses.fields(SWATConfig)]
    known = {*fields, *TRANSFORMERS_KEYS, *GenerationConfig._get_default_generation_params()}
    unknown = sorted(key for key in keys if key not in known and not key.startswith("_"))
    if not unknown:
        return None
    described, unmatched = [], False
    for key in unknown:
        close = difflib.get_close_matches(key, fields, n=1)
        described.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        unmatched = unmatched or not close
    problem = f"unknown field(s) {', '.join(described)}: fix the spelling or remove them"
    if unmatched:
        own = [name for name in fields if name not in {field.name for field in dataclasses.fields(PreTrainedConfig)}]
        problem += f" (SWATConfig's fields: {', '.join(own)})"
    return problem


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value) -> bool:
    return _is_int(value) and value >= 1


def _is_real(value) -> bool:
    """An int or float, not a bool (``True`` would pass as 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
