"""Inference: chunked prefill and streaming evaluation through the rolling KV cache
(docs/spec.md section 4). The cache itself lives beside the model, in :mod:`swat.models.cache`;
it is re-exported here."""

from swat.inference.streaming import next_token_nll, prefill, streaming_nll
from swat.models.cache import PREFILL_CHUNK_SIZE, RollingCache, RollingWindowLayer

__all__ = ["PREFILL_CHUNK_SIZE", "RollingCache", "RollingWindowLayer", "next_token_nll", "prefill", "streaming_nll"]
