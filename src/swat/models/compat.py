"""The one place that knows which transformers release is installed (5.17 and newer).

Transformers renamed the KV cache during 5.x: the ``forward`` argument and the output field were
``past_key_values`` up to 5.17 and are ``cache`` in later releases, which still accept the old
name with a deprecation warning. The rest of the package never spells either name for
transformers' sake; it asks this module:

- :data:`CACHE_FIELD`: the name this release's ``generate`` passes to ``forward`` and reads from
  model outputs (feature-detected from the output class, not from a version number);
- :func:`cache_argument`: a ``forward`` takes both names and resolves them here;
- :func:`model_output`: builds an output object with the cache under the installed field name;
- :func:`output_cache`: reads the cache of any transformers model's output.

Activation (gradient) checkpointing was renamed too: :func:`enable_activation_checkpointing`.
"""

from __future__ import annotations

import dataclasses

from transformers import PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.utils import ModelOutput

from swat.errors import UserError

CACHE_FIELD = (
    "cache" if "cache" in {field.name for field in dataclasses.fields(BaseModelOutputWithPast)} else "past_key_values"
)


def cache_argument(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The cache a caller passed to ``forward``, under either name."""
    if cache is not None and past_key_values is not None:
        raise UserError("pass the KV cache once, as cache= or as past_key_values=, not both")
    return cache if cache is not None else past_key_values


def model_output(output_class: type[ModelOutput], cache: Cache | None, **fields) -> ModelOutput:
    """``output_class(**fields)`` with ``cache`` stored under this release's field name."""
    return output_class(**fields, **{CACHE_FIELD: cache})


def output_cache(outputs: ModelOutput) -> Cache | None:
    """The cache of a transformers model's output (``outputs.cache`` or ``outputs.past_key_values``)."""
    return getattr(outputs, CACHE_FIELD)


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute each decoder layer during backward (non-reentrant autograd checkpointing):
    ``activation_checkpointing_enable`` where transformers has it, else the older
    ``gradient_checkpointing_enable`` (a deprecated alias in later releases)."""
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
