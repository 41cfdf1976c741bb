"""Kernels: the SWAT attention op and its backends."""

from swat.ops.alibi import ALIBI_MODES, alibi_slopes
from swat.ops.attention import BACKENDS, swat_attention

__all__ = ["ALIBI_MODES", "BACKENDS", "alibi_slopes", "swat_attention"]
