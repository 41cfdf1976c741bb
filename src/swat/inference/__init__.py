"""Inference: the rolling KV cache, chunked prefill and streaming evaluation (SPEC.md section 4)."""

from swat.inference.cache import RollingCache, RollingWindowLayer
from swat.inference.streaming import PREFILL_CHUNK_SIZE, prefill, streaming_nll

__all__ = ["PREFILL_CHUNK_SIZE", "RollingCache", "RollingWindowLayer", "prefill", "streaming_nll"]
