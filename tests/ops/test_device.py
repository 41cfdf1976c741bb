"""``upcast_without_fast_low_precision``: what dtype a wrapped backend computes in."""

from __future__ import annotations

import pytest
import torch

import swat.ops.device as device_module
from swat.ops.device import upcast_without_fast_low_precision


@pytest.mark.parametrize(("dtype", "fast", "computed_in"), [
    (torch.bfloat16, False, torch.float32),  # AVX2 CPUs: bf16 matmuls are slow, compute in fp32
    (torch.float16, False, torch.float32),
    (torch.bfloat16, True, torch.bfloat16),  # GPUs, AMX CPUs: as given
    (torch.float32, False, torch.float32),
    (torch.float64, False, torch.float64),
])
def test_backend_computes_in_fp32_only_where_low_precision_is_slow(monkeypatch, dtype, fast, computed_in):
    monkeypatch.setattr(device_module, "fast_low_precision_matmul", lambda device: fast)
    seen = []

    @upcast_without_fast_low_precision
    def backend(q, k, v, *, scale):
        seen.append((q.dtype, k.dtype, v.dtype))
        return q * scale

    x = torch.ones(1, 2, 1, 4, dtype=dtype)
    out = backend(x, x, x, scale=3.0)
    assert seen == [(computed_in,) * 3]
    assert out.dtype == dtype and torch.equal(out, torch.full_like(x, 3.0))
