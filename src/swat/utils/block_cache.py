"""A cache of large CPU blocks in front of PyTorch's CPU allocator, turned on by ``swat train``.

A training step allocates and frees the same large tensors every step (each layer's activations,
the loss's chunk of logits). PyTorch's CPU allocator takes them from ``malloc``, and glibc returns
every block over 32 MiB to the kernel on ``free``, so the next step faults the same amount of
memory in again and the kernel zeroes every page of it: at 32k tokens a step of the benchmark
model spent 10-13 of its 24-27 s in the kernel doing that, huge pages on (docs/benchmarks.md).

The cache (``csrc/block_cache.cpp``) keeps each freed block of at least ``min_bytes`` (rounded up
to whole 2 MiB pages) and gives it to the next request of the same rounded size. A request that
finds none first frees cached blocks, oldest first, until it has freed as many bytes as it asks
for or the cache is empty; so the memory the process holds, in use plus cached, grows only when
the cache is empty, and never past the most it would have had in use at once without the cache.
Smaller requests go straight to the allocator underneath.

The cache replaces the allocator for the whole process, so it is for programs (``swat train``
turns it on; ``SWAT_NO_BLOCK_CACHE=1`` keeps it off), not something a library call does behind
its caller's back: in your own script call :func:`use_block_cache` once, before the large tensors.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from swat.utils.extensions import CompiledExtension, build_failure

DISABLE_ENV = "SWAT_NO_BLOCK_CACHE"
DEFAULT_MIN_BYTES = 4 << 20  # of 1, 4 and 32 MiB: the fastest at 8k and 32k, the lowest peak (docs/benchmarks.md)
EXTENSION = CompiledExtension(Path(__file__).with_name("csrc") / "block_cache.cpp", "the CPU block cache", ("-O2",))


@dataclass(frozen=True)
class BlockCacheStats:
    """Counters since the cache was first installed in this process."""

    hits: int
    misses: int
    cached_bytes: int
    cached_blocks: int
    installed: bool


def use_block_cache(min_bytes: int | None = None) -> bool:
    """Put the block cache in front of PyTorch's CPU allocator for blocks of ``min_bytes`` (default
    :data:`DEFAULT_MIN_BYTES`) and more; True when it is on. Off when ``SWAT_NO_BLOCK_CACHE=1``, or,
    saying why in one line, when the extension cannot be built here. Tensors that exist already keep
    their allocator."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    min_bytes = DEFAULT_MIN_BYTES if min_bytes is None else min_bytes
    if min_bytes < 1:
        raise ValueError(f"min_bytes must be positive, got {min_bytes}")
    try:
        EXTENSION.load()
    except Exception as error:  # noqa: BLE001 (any build failure means: run without the cache)
        print(f"swat: the CPU block cache is unavailable ({build_failure(error)}); "
              "large tensors go straight to PyTorch's allocator", file=sys.stderr)
        return False
    torch.ops.swat_block_cache.install(int(min_bytes))
    return True


@contextlib.contextmanager
def block_cache(min_bytes: int | None = None) -> Iterator[bool]:
    """:func:`use_block_cache` for the duration of a ``with`` block (it yields whether the cache is
    on), then :func:`stop_block_cache`."""
    on = use_block_cache(min_bytes)
    try:
        yield on
    finally:
        if on:
            stop_block_cache()


def stop_block_cache() -> None:
    """Give PyTorch its allocator back and free the cached blocks (blocks still in use are freed when
    their tensors die). Does nothing when the cache is off."""
    if _loaded():
        torch.ops.swat_block_cache.uninstall()


def empty_block_cache() -> None:
    """Free every cached block (the cache stays on)."""
    if _loaded():
        torch.ops.swat_block_cache.empty()


def block_cache_stats() -> BlockCacheStats:
    """Hits, misses and what the cache holds now (all zero before it was first turned on)."""
    if not _loaded():
        return BlockCacheStats(0, 0, 0, 0, False)
    hits, misses, cached_bytes, cached_blocks, installed = torch.ops.swat_block_cache.stats()
    return BlockCacheStats(hits, misses, cached_bytes, cached_blocks, bool(installed))


def _loaded() -> bool:
    return hasattr(torch.ops.swat_block_cache, "stats")  # registered once the extension is loaded
