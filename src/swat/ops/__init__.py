"""Kernels: the SWAT attention op and its backends."""

from swat.ops.alibi import ALIBI_MODES, alibi_slopes
from swat.ops.attention import BACKENDS, swat_attention

BACKEND_NAMES = ("auto", "reference", "chunked", "decode", "sdpa", "triton")

__all__ = ["ALIBI_MODES", "BACKENDS", "BACKEND_NAMES", "alibi_slopes", "swat_attention"]
