"""Modules: the SWAT attention layer and the blocks around it."""

from swat.layers.attention import SWATAttention, attention_weights
from swat.layers.mlp import GatedMLP
from swat.layers.norm import RMSNorm
from swat.layers.rope import apply_rope, rope_cos_sin

__all__ = ["GatedMLP", "RMSNorm", "SWATAttention", "apply_rope", "attention_weights", "rope_cos_sin"]
