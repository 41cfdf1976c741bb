"""These tests run many tiny forwards: one thread avoids the synchronisation cost that dominates
tiny matmuls (and is polite on a shared machine)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
