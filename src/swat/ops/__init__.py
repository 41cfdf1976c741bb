"""Kernels: the SWAT attention op and its backends."""

from swat.ops.alibi import ALIBI_MODES, alibi_slopes
from swat.ops.attention import BACKEND_NAMES, BACKENDS, swat_attention
from swat.ops.spec import ACTIVATIONS, AttentionSpec

__all__ = ["ACTIVATIONS", "ALIBI_MODES", "BACKENDS", "BACKEND_NAMES", "AttentionSpec", "alibi_slopes",
           "swat_attention"]
