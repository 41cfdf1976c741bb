"""The memory a model needs, estimated from its config before anything is built, against the
memory the machine has: a config whose sizes cannot fit is refused with the figure and what to
change, instead of building layers until the allocation fails (or the machine swaps)."""

from __future__ import annotations

import os

from transformers import PretrainedConfig

from swat.errors import UserError
from swat.models.configuration_swat import SWATConfig, parameter_count

GiB = 2**30


def machine_memory() -> int | None:
    """Bytes of physical memory (``os.sysconf``), or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def cache_values(config: SWATConfig) -> int:
    """Values in the rolling cache of one sequence: the keys and values of the last ``w - 1``
    positions in every layer (0 for full attention, whose cache grows with the sequence)."""
    if config.sliding_window is None:
        return 0
    return 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * (config.sliding_window - 1)


def refuse_beyond_memory(config: PretrainedConfig, bytes_per_parameter: int, *, what: str, change: str,
                         with_cache: bool = False, bytes_per_value: int = 4) -> None:
    """``UserError`` when ``config``'s parameters times ``bytes_per_parameter`` (plus, with
    ``with_cache``, its rolling cache) exceed the machine's memory, saying ``what`` needs it and
    ``change``. Only SWAT configs are estimated (other model types are left to transformers)."""
    memory = machine_memory()
    if not isinstance(config, SWATConfig) or memory is None:
        return
    parameters = parameter_count(config)
    needed = parameters * bytes_per_parameter
    figure = f"{parameters:,} parameters x {bytes_per_parameter} bytes"
    if with_cache and cache_values(config):
        needed += cache_values(config) * bytes_per_value
        figure += f" + a rolling cache of {config.sliding_window - 1:,} positions per layer"
    if needed > memory:
        raise UserError(f"{what} needs about {needed / GiB:,.1f} GiB ({figure}), more than this machine's "
                        f"{memory / GiB:,.1f} GiB of memory: {change}")


def size_fields(config: PretrainedConfig) -> str:
    """The sizes that set a SWAT model's memory, as ``name=value`` (for the messages)."""
    names = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "sliding_window")
    return ", ".join(f"{name}={getattr(config, name, None)}" for name in names)
