"""The op tests run many tiny float64 problems."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread avoids the synchronisation cost that dominates tiny matmuls (and is polite on a
    shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
