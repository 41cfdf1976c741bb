"""Helpers for the op tests: random inputs and "run a backend, return output and gradients"."""

from __future__ import annotations

import torch

from swat.ops import swat_attention


def make_qkv(batch=2, q_len=11, kv_len=None, heads=4, kv_heads=2, head_dim=8, dtype=torch.float64, seed=0):
    """Random ``q [batch, q_len, heads, d]``, ``k, v [batch, kv_len, kv_heads, d]`` (leaves with
    ``requires_grad``). Scores are O(1), so sigmoid and softmax weights are far from saturation."""
    kv_len = q_len if kv_len is None else kv_len
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, q_len, heads, head_dim, generator=gen, dtype=torch.float64)
    k = torch.randn(batch, kv_len, kv_heads, head_dim, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, kv_len, kv_heads, head_dim, generator=gen, dtype=torch.float64)
    return tuple(x.to(dtype).requires_grad_() for x in (q, k, v))


def run(q, k, v, grad_out=None, **kwargs):
    """``swat_attention(q, k, v, **kwargs)`` and its gradients ``(dq, dk, dv)`` for ``grad_out``
    (a fixed random cotangent by default)."""
    out = swat_attention(q, k, v, **kwargs)
    if grad_out is None:
        gen = torch.Generator().manual_seed(1)
        grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.device, out.dtype)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    return out, grads


def assert_matches_reference(q, k, v, atol=1e-10, rtol=1e-9, **kwargs):
    """The backend in ``kwargs`` gives the reference's output and gradients (float64)."""
    backend = kwargs.pop("backend")
    want, want_grads = run(q, k, v, backend="reference", **kwargs)
    got, got_grads = run(q, k, v, backend=backend, **kwargs)
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol, msg=lambda m: f"output ({backend}): {m}")
    for name, g, w in zip("qkv", got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m, n=name: f"d{n} ({backend}): {m}")


def errors_against_fp64(dtype, backend, q64, k64, v64, **kwargs):
    """Max abs error of output and gradients of ``backend`` in ``dtype`` against float64 on the
    same (``dtype``-rounded) inputs."""
    inputs = [x.detach().to(dtype).requires_grad_() for x in (q64, k64, v64)]
    exact_inputs = [x.detach().double().requires_grad_() for x in inputs]
    want, want_grads = run(*exact_inputs, backend="reference", **kwargs)
    got, got_grads = run(*inputs, backend=backend, **kwargs)
    return [(g.double() - w).abs().max().item() for g, w in zip((got, *got_grads), (want, *want_grads), strict=True)]


def packed_segments(batch: int, kv_len: int, seed: int = 0) -> torch.Tensor:
    """``[batch, kv_len]`` ids of packed documents: non-decreasing, new document at random places."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.rand(batch, kv_len, generator=gen) < 0.2
    return starts.long().cumsum(1)


def left_padding(batch: int, kv_len: int) -> torch.Tensor:
    """``[batch, kv_len]`` ids for left padding: row ``b`` starts with ``b * 3`` pad positions
    (id 0), the rest is one document (id 1)."""
    ids = torch.ones(batch, kv_len, dtype=torch.long)
    for b in range(batch):
        ids[b, : min(3 * b, kv_len - 1)] = 0
    return ids
