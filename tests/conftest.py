"""Shared test fixtures: tiny model configs."""

from __future__ import annotations

import pytest
import torch

from swat import SWATConfig


def tiny_config(**overrides) -> SWATConfig:
    """A model small enough for float64 tests in milliseconds."""
    fields = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, sliding_window=8)
    fields.update(overrides)
    return SWATConfig(**fields)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test runs tiny problems: one thread avoids the synchronisation cost that dominates
    small matmuls (and does not fight other work for the cores on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
