"""The CPU block cache (``swat.utils.block_cache``): a freed large block goes to the next request of
its size, a miss frees the oldest cached blocks first, and the memory held (in use plus cached)
never exceeds the most in use at once; ``swat train`` runs under it."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from swat.utils import block_cache as block_cache_module
from swat.utils.block_cache import (
    DISABLE_ENV,
    block_cache,
    block_cache_stats,
    stop_block_cache,
    use_block_cache,
)

MIB = 1 << 20


def block(mib: float) -> torch.Tensor:
    return torch.empty(int(mib * MIB), dtype=torch.uint8)


@pytest.fixture
def cache(monkeypatch):
    """The cache on for blocks from 4 MiB, emptied first; PyTorch's allocator given back after."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    assert use_block_cache(4 * MIB)
    torch.ops.swat_block_cache.empty()
    yield
    stop_block_cache()


def test_a_freed_block_goes_to_the_next_request_of_its_rounded_size(cache):
    first = block(8)
    address, before = first.data_ptr(), block_cache_stats()
    first.fill_(7)
    del first
    assert block_cache_stats().cached_bytes == 8 * MIB
    again = block(7.5)  # rounded up to whole 2 MiB pages: the same 8 MiB
    after = block_cache_stats()
    assert again.data_ptr() == address and after.hits == before.hits + 1 and after.cached_bytes == 0
    other = block(10)  # another size: a fresh block
    assert other.data_ptr() != address and block_cache_stats().misses == after.misses + 1


def test_small_requests_go_straight_to_the_allocator_underneath(cache):
    before = block_cache_stats()
    small = block(3.9)
    del small
    after = block_cache_stats()
    assert (after.hits, after.misses, after.cached_bytes) == (before.hits, before.misses, 0)


def test_a_miss_frees_the_oldest_cached_blocks_until_it_has_freed_what_it_asks_for(cache):
    blocks = [block(4) for _ in range(3)]
    newest = blocks[2].data_ptr()
    while blocks:  # freed in order, the third last
        del blocks[0]
    assert block_cache_stats().cached_bytes == 12 * MIB
    six = block(6)  # no 6 MiB block: frees the two oldest (8 MiB >= 6), keeps the newest
    stats = block_cache_stats()
    assert (stats.cached_bytes, stats.cached_blocks) == (4 * MIB, 1)
    assert block(4).data_ptr() == newest
    del six


def test_memory_held_never_exceeds_the_most_in_use(cache):
    """Random allocations and frees of a few sizes: in use plus cached stays within the peak in use
    (both in rounded bytes), while the cache serves many of the requests."""
    rng = random.Random(0)
    sizes = [4, 6, 8, 14, 20]  # MiB, whole pages
    live: list[torch.Tensor] = []
    in_use = peak = 0
    before = block_cache_stats()
    for _ in range(400):
        if live and (len(live) > 12 or rng.random() < 0.5):
            tensor = live.pop(rng.randrange(len(live)))
            in_use -= tensor.numel()
            del tensor
        else:
            live.append(block(rng.choice(sizes)))
            in_use += live[-1].numel()
            peak = max(peak, in_use)
        assert in_use + block_cache_stats().cached_bytes <= peak
    after = block_cache_stats()
    assert after.hits - before.hits > 50


def test_stopping_gives_torch_its_allocator_back():
    assert use_block_cache(4 * MIB)
    kept = block(8)
    stop_block_cache()
    before = block_cache_stats()
    assert not before.installed and before.cached_bytes == 0
    del kept  # allocated by the cache, freed after it stopped: freed, not cached
    fresh = block(8)
    after = block_cache_stats()
    assert after.cached_bytes == 0 and (after.hits, after.misses) == (before.hits, before.misses)
    del fresh


def test_the_context_manager_stops_the_cache_on_exit():
    with block_cache(4 * MIB) as on:
        assert on and block_cache_stats().installed
    assert not block_cache_stats().installed


def test_the_environment_keeps_it_off():
    env = {**os.environ, DISABLE_ENV: "1", "PYTHONPATH": str(Path(block_cache_module.__file__).parents[2])}
    code = "from swat.utils.block_cache import use_block_cache, block_cache_stats as s; print(use_block_cache(), s())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.startswith("False BlockCacheStats(hits=0, misses=0"), done.stdout


def test_without_a_compiler_training_goes_on_without_the_cache(monkeypatch, capsys):
    class Unbuildable:
        def load(self):
            raise RuntimeError("Error building extension 'block_cache'\nc++: not found")

    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.setattr(block_cache_module, "EXTENSION", Unbuildable())
    assert use_block_cache() is False
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "c++: not found" in notice and "block cache is unavailable" in notice
