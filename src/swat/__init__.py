"""swat: Sliding Window Attention Training (sigmoid attention, balanced ALiBi + RoPE)."""

__version__ = "0.1.0"

from swat.models import (  # noqa: E402
    PRESETS,
    SWATConfig,
    SWATForCausalLM,
    SWATModel,
    preset_config,
)
from swat.ops import alibi_slopes, swat_attention  # noqa: E402

__all__ = [
    "PRESETS",
    "SWATConfig",
    "SWATForCausalLM",
    "SWATModel",
    "__version__",
    "alibi_slopes",
    "preset_config",
    "swat_attention",
]
