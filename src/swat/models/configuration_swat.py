"""SWATConfig: the model as data (docs/spec.md section 6 fixes the SWAT field names).

The checks are huggingface_hub's strict dataclass validation, as in transformers' own configs:
each field's annotation is checked (types, ``Literal`` enumerations), each field's value by the
validator it is declared with, on construction and on every later assignment, and the rules that
relate several fields by the ``validate_*`` class validators, which run when the config is made,
saved, or a model is built from it. This module keeps its annotations evaluated (no postponed
annotations): the strict validator skips annotations it receives as strings.
"""

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable, Iterable
from typing import Literal, get_args

from huggingface_hub.dataclasses import as_validated_field, strict
from huggingface_hub.errors import StrictDataclassError, StrictDataclassFieldValidationError
from transformers import GenerationConfig, PreTrainedConfig
from transformers.activations import ACT2FN

from swat.errors import UserError
from swat.models.compat import CACHE_FIELD
from swat.ops.alibi import alibi_slopes, bounded_retain_scale

AttentionActivation = Literal["sigmoid", "softmax"]
AlibiMode = Literal["balanced", "standard", "none"]
AttentionBackend = Literal["auto", "reference", "chunked", "fused", "decode", "sdpa", "triton"]
"""The enumerations of :func:`swat.ops.swat_attention` (a test holds them equal to
``swat.ops.ACTIVATIONS``, ``ALIBI_MODES`` and ``BACKEND_NAMES``)."""

MAX_EMBEDDING_PARAMETERS = 2**31
"""The largest ``vocab_size * hidden_size`` a config accepts: 8 GiB of float32 in the embedding
(an untied LM head is a second matrix of the same size). Real models stay below it (Llama 3 70B:
128256 x 8192 = 1.05e9); a larger product is almost always a mistyped size, refused here with
the memory it would need rather than in a failed allocation."""

MAX_SIZE = 2**31 - 1
"""The largest size, count or window a config accepts (int32's largest): no model has a
dimension, a layer count or a window this large, and a value above it is a mistyped size (a digit
too many), refused at once instead of building layers until the memory runs out."""

MAX_HEADS = 2**16
"""The most attention heads a config accepts: models have tens; a head count this large is a
mistyped size, refused before the per-head ALiBi slopes are computed."""

MAX_PARAMETERS = 2**40
"""The most parameters a config may describe (1.1e12, 4 TiB in float32; the largest published
dense models have about 0.4e12): above it a config is refused whatever the machine; below it,
:func:`swat.models.memory.refuse_beyond_memory` compares the estimate to the machine's memory."""

TRANSFORMERS_KEYS = frozenset({
    "model_type", "auto_map", "quantization_config",  # written into config.json by transformers
    "torch_dtype", "num_labels", "name_or_path", "output_attentions", "attn_implementation",
    "experts_implementation",  # read by PreTrainedConfig.__post_init__ and from_pretrained
})
"""Keys a config accepts besides its dataclass fields: transformers' own, the generation
parameters old configs carried (transformers moves them to the generation config) and private
bookkeeping (keys starting with ``_``, such as ``_name_or_path``). Any other key is refused, so a
misspelt field is an error instead of a silently ignored attribute."""


# Field validators: each gets the value and raises a ValueError whose message follows the field's
# name ("hidden_size must be ..."). They accept any input (a str, a bool), since they also phrase
# the refusal of a value of the wrong type (see _field_problem).

def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    """An int a float can hold or a finite float, not a bool (``True`` would pass as 1)."""
    return (isinstance(value, float) and math.isfinite(value)) or (_is_int(value) and value.bit_length() <= 1023)


def _shown(value) -> str:
    """``repr(value)``, a huge int as its magnitude (the repr of an int of more than 4300 digits
    raises, and a 400-digit number says nothing a user can read)."""
    if _is_int(value) and abs(value) > 10**18:
        return f"an int of {value.bit_length()} bits (about 2**{value.bit_length() - 1})"
    return repr(value)


def _refuse_above_max_size(value) -> None:
    if value > MAX_SIZE:
        raise ValueError(f"must be at most {MAX_SIZE:,} (2**31 - 1), got {_shown(value)}: no model has a size "
                         "this large; check the value for a digit too many")


@as_validated_field
def _count(value) -> None:
    if not (_is_int(value) and value >= 1):
        raise ValueError(f"must be an int >= 1, got {_shown(value)}")
    _refuse_above_max_size(value)


@as_validated_field
def _count_or_none(value) -> None:
    if value is not None and not (_is_int(value) and value >= 1):
        raise ValueError(f"must be an int >= 1, got {_shown(value)} (or None: derived from the other sizes)")
    if value is not None:
        _refuse_above_max_size(value)


@as_validated_field
def _heads(value) -> None:
    if value is not None and not (_is_int(value) and value >= 1):
        raise ValueError(f"must be an int >= 1, got {_shown(value)}")
    if value is not None and value > MAX_HEADS:
        raise ValueError(f"must be at most {MAX_HEADS:,}, got {_shown(value)}: no model has this many heads; check "
                         "the value for a digit too many")


@as_validated_field
def _window(value) -> None:
    if value is not None and not (_is_int(value) and value >= 1):
        raise ValueError(f"must be an int >= 1 or None (full attention), got {_shown(value)}")
    if value is not None and value > MAX_SIZE:
        raise ValueError(f"must be at most {MAX_SIZE:,} (2**31 - 1), got {_shown(value)}: for attention over "
                         "the whole sequence set it to None (null in YAML and JSON)")


@as_validated_field
def _positive(value) -> None:
    if not (_is_finite(value) and value > 0):
        raise ValueError(f"must be a finite number > 0, got {_shown(value)}")


@as_validated_field
def _standard_deviation(value) -> None:
    if not (_is_finite(value) and value >= 0):
        raise ValueError(f"is a standard deviation: a finite number >= 0, got {_shown(value)}")


@as_validated_field
def _bias(value) -> None:
    if value is not None and not _is_finite(value):
        raise ValueError(f"must be a finite number (None: -log(sliding_window)), got {_shown(value)}")


@as_validated_field
def _magnitude(value) -> None:
    if value is not None and not (_is_finite(value) and value >= 0):
        raise ValueError(f"must be a finite number >= 0 (a magnitude) or None (bounded by the window), "
                         f"got {_shown(value)}")


@as_validated_field
def _activation_function(value) -> None:
    if value not in ACT2FN:
        close = difflib.get_close_matches(str(value), list(ACT2FN), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"must name one of transformers' activations, got {value!r}{hint}")


@as_validated_field
def _alibi(value) -> None:
    if isinstance(value, str) and value not in get_args(AlibiMode):
        raise ValueError(f"must be one of {get_args(AlibiMode)} or a list of one slope per head, got {value!r}")
    if isinstance(value, list) and any(isinstance(slope, int | float) and not _is_finite(slope) for slope in value):
        raise ValueError(f"slopes must be finite numbers, got {[_shown(slope) for slope in value]!r:.200}")


def _raising_user_errors(method: Callable) -> Callable:
    """``method`` with strict's class-validation errors raised as :class:`UserError`."""
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StrictDataclassError as error:
            raise UserError(f"invalid {type(self).__name__}: {error.__cause__ or error}") from None
    return checked


def _user_errors(cls: type) -> type:
    """Strict validation that raises the one user-error type: a refused field names itself and,
    where it has a validator, says what it must be (rather than only the type it expected)."""
    assign = cls.__setattr__

    def __setattr__(self, name: str, value) -> None:
        try:
            assign(self, name, value)
        except StrictDataclassFieldValidationError as error:
            raise UserError(f"invalid {cls.__name__}: {_field_problem(cls, name, value, error)}") from None

    cls.__setattr__ = __setattr__
    cls.__init__ = _raising_user_errors(cls.__init__)
    cls.validate = _raising_user_errors(cls.validate)
    return cls


def _field_problem(cls: type, name: str, value, error: StrictDataclassFieldValidationError) -> str:
    """The message of the field's own validator if it refuses ``value`` too, else the type
    validator's (``Field 'use_rope' expected bool, got int (value: 3)``)."""
    for check in cls.__dataclass_fields__[name].metadata.get("validator", []):
        try:
            check(value)
        except ValueError as own:
            return f"{name} {own}"
    return str(error.__cause__ or error)


@_user_errors
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

    ``max_position_embeddings`` (Llama's field) is the context that evaluation tools give the model
    by default (lm-eval, :func:`swat.evaluation.harness.harness_max_length`). With full attention
    it is also the longest sequence: ``generate`` warns past it, as transformers does. A windowed
    model takes any length (docs/spec.md section 4), so its ``generate`` neither warns nor caps its
    default length there, whatever the value.

    The paper's baselines are switches of the same config, e.g. Transformer++ is
    ``attention_activation="softmax", alibi="none", sliding_window=None``.

    Checks (a :class:`swat.errors.UserError` that names the field and what to change): every field
    against its type and its validator, when the config is made (from keywords or a
    ``config.json``) and whenever a field is assigned; the rules across fields (``validate_*``)
    when it is made, saved, or a model is built from it. Sizes are ints >= 1, ``vocab_size *
    hidden_size`` at most :data:`MAX_EMBEDDING_PARAMETERS`, special token ids inside the
    vocabulary, and a key that is no field (nor one of :data:`TRANSFORMERS_KEYS`) is refused with
    the closest field's name. Numbers may be given as ints (``rope_theta=10000``).
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

    vocab_size: int = _count(default=32000)
    hidden_size: int = _count(default=1024)
    intermediate_size: int = _count(default=2816)
    num_hidden_layers: int = _count(default=24)
    num_attention_heads: int = _heads(default=16)
    num_key_value_heads: int | None = _heads(default=None)
    head_dim: int | None = _count_or_none(default=None)
    hidden_act: str = _activation_function(default="silu")
    max_position_embeddings: int = _count(default=2048)
    initializer_range: float | int = _standard_deviation(default=0.02)
    rms_norm_eps: float | int = _positive(default=1e-6)
    rope_theta: float | int = _positive(default=10000.0)
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    tie_word_embeddings: bool = False

    sliding_window: int | None = _window(default=512)
    attention_activation: AttentionActivation = "sigmoid"
    alibi: AlibiMode | list[float | int] = _alibi(default="balanced")
    alibi_retain_scale: float | int | None = _magnitude(default=None)
    use_rope: bool = True
    sigmoid_bias: float | int | None = _bias(default=None)
    qk_norm: bool = False
    attention_backend: AttentionBackend = "auto"

    def __post_init__(self, **kwargs):
        unknown_keys_problem = _unknown_keys_problem(kwargs)
        if unknown_keys_problem:
            raise UserError("invalid SWATConfig: " + unknown_keys_problem)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise UserError(
                    f"invalid SWATConfig: hidden_size ({self.hidden_size}) must be divisible by "
                    f"num_attention_heads ({self.num_attention_heads}), or set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.sigmoid_bias is None:
            self.sigmoid_bias = default_sigmoid_bias(self.attention_activation, self.sliding_window)
        if self.alibi_retain_scale is None:
            self.alibi_retain_scale = bounded_retain_scale(self.num_attention_heads, self.sliding_window)
        super().__post_init__(**kwargs)

    def validate_embedding_size(self) -> None:
        parameters = self.vocab_size * self.hidden_size
        if parameters > MAX_EMBEDDING_PARAMETERS:
            raise ValueError(
                f"vocab_size x hidden_size = {self.vocab_size} x {self.hidden_size} = {parameters:,} embedding "
                f"parameters ({parameters * 4 / 2**30:.1f} GiB in float32, as much again for an untied lm_head), "
                f"above the {MAX_EMBEDDING_PARAMETERS:,} this config allows: set vocab_size to the tokenizer's "
                "vocabulary size, or a smaller hidden_size"
            )

    def validate_parameter_count(self) -> None:
        parameters = parameter_count(self)
        if parameters > MAX_PARAMETERS:
            raise ValueError(
                f"the config describes {parameters:.3g} parameters ({parameters * 4 / 2**40:,.0f} TiB in float32), "
                f"above the {MAX_PARAMETERS:.3g} this config allows: num_hidden_layers={self.num_hidden_layers}, "
                f"hidden_size={self.hidden_size}, intermediate_size={self.intermediate_size}; check them for a "
                "digit too many"
            )

    def validate_heads(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                             f"num_key_value_heads ({self.num_key_value_heads})")
        if self.use_rope and self.head_dim % 2:
            raise ValueError(f"RoPE rotates pairs of channels, so head_dim must be even (got {self.head_dim}); "
                             "change hidden_size/num_attention_heads or set use_rope=False")

    def validate_token_ids(self) -> None:
        """Stricter than transformers' (which warns): a special token outside the vocabulary is an
        error, since the embedding would fail on it."""
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            ids = [] if value is None else value if isinstance(value, list) else [value]
            if not all(0 <= i < self.vocab_size for i in ids):
                raise ValueError(f"{name} must be None or token ids in 0 .. vocab_size - 1 = {self.vocab_size - 1}, "
                                 f"got {_shown(value)}: take it from the tokenizer the model is trained with")

    def validate_attention(self) -> None:
        if self.attention_activation == "softmax" and self.sigmoid_bias != 0.0:
            raise ValueError("sigmoid_bias is a per-row constant that softmax cancels: set sigmoid_bias=0.0 or "
                             "attention_activation='sigmoid'")
        if self.attention_backend == "sdpa" and self.attention_activation != "softmax":
            raise ValueError("attention_backend='sdpa' computes softmax only; use 'auto' or 'chunked' for sigmoid")
        self.slopes()  # the slopes' own checks: one per head, an even number of heads for balanced

    def slopes(self):
        """ALiBi slopes ``m_h`` as a float32 ``[num_attention_heads]`` tensor, or None without ALiBi."""
        if self.alibi == "none":
            return None
        return alibi_slopes(self.num_attention_heads, self.alibi, retain_scale=self.alibi_retain_scale)


def parameter_count(config: SWATConfig) -> int:
    """The parameters of the ``SWATForCausalLM`` of ``config``, from its sizes alone (nothing is
    built): the embedding and the LM head (one matrix when tied), and per layer the attention's
    four projections, the gated MLP's three matrices and the RMSNorms."""
    hidden, heads, kv_heads, head_dim = (config.hidden_size, config.num_attention_heads,
                                         config.num_key_value_heads, config.head_dim)
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads) + (2 * head_dim if config.qk_norm else 0)
    layer = attention + 3 * hidden * config.intermediate_size + 2 * hidden
    embeddings = config.vocab_size * hidden * (1 if config.tie_word_embeddings else 2)
    return embeddings + config.num_hidden_layers * layer + hidden


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
