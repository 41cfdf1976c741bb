"""Named model sizes: the architecture half of the presets tiny, small, 340m and 760m (the
training recipe of each is ``swat/training/presets/NAME.yaml``, which names its model preset and
repeats none of these fields). ``340m`` and ``760m`` follow the paper's scales (24 layers, hidden
1024/1536); ``tiny`` trains in minutes on two CPU cores, ``small`` in hours (a GPU makes it
minutes)."""

from __future__ import annotations

from typing import Any

from swat.errors import UserError
from swat.models.configuration_swat import SWATConfig

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=4096, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                 num_attention_heads=4, sliding_window=64, max_position_embeddings=512),
    "small": dict(vocab_size=8192, hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                  num_attention_heads=6, sliding_window=128, max_position_embeddings=1024),
    "340m": dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                 num_attention_heads=16, sliding_window=512, max_position_embeddings=4096),
    "760m": dict(vocab_size=32000, hidden_size=1536, intermediate_size=4096, num_hidden_layers=24,
                 num_attention_heads=16, sliding_window=512, max_position_embeddings=4096),
}


def preset_config(name: str, **overrides: Any) -> SWATConfig:
    """A ``SWATConfig`` of a named size, with any field overridden."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}: choose one of {sorted(PRESETS)}")
    return SWATConfig(**{**PRESETS[name], **overrides})
