"""The decode backend (one query per sequence) against the dense float64 reference."""

from __future__ import annotations

import math

import pytest
import torch

import swat.ops.attention as attention_module
import swat.ops.decode as decode_module
import swat.ops.device as device_module
from swat.ops import alibi_slopes, swat_attention
from tests.ops.helpers import assert_matches_reference, left_padding, make_qkv, packed_segments, run
from tests.ops.test_attention import slopes_for


@pytest.mark.parametrize("kv_len", [1, 2, 7, 50])
@pytest.mark.parametrize("window", [1, 2, 5, "kv_len", "beyond", None])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_windows_and_cache_lengths(kv_len, window, activation):
    """A query at the last of ``kv_len`` positions: windows 1, small, == kv_len, > kv_len, None."""
    window = {"kv_len": kv_len, "beyond": kv_len + 3}.get(window, window)
    q, k, v = make_qkv(batch=2, q_len=1, kv_len=kv_len, heads=4, kv_heads=2)
    assert_matches_reference(q, k, v, window=window, slopes=alibi_slopes(4), sigmoid_bias=-0.7,
                             activation=activation, backend="decode")


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1), (8, 2), (2, 1)])
@pytest.mark.parametrize("mode", ["balanced", "standard", "explicit", None])
def test_gqa_and_slopes(heads, kv_heads, mode):
    q, k, v = make_qkv(batch=3, q_len=1, kv_len=23, heads=heads, kv_heads=kv_heads)
    assert_matches_reference(q, k, v, window=9, slopes=slopes_for(mode, heads), sigmoid_bias=-math.log(9),
                             backend="decode")


@pytest.mark.parametrize("segments", ["packed", "left_padding"])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_segments(segments, activation):
    q, k, v = make_qkv(batch=4, q_len=1, kv_len=30, heads=4, kv_heads=2)
    ids = packed_segments(4, 30, seed=3) if segments == "packed" else left_padding(4, 30)
    assert_matches_reference(q, k, v, window=12, slopes=alibi_slopes(4), segment_ids=ids,
                             activation=activation, backend="decode")


def test_gradcheck():
    q, k, v = make_qkv(batch=1, q_len=1, kv_len=6, heads=4, kv_heads=2, head_dim=4)
    assert torch.autograd.gradcheck(
        lambda q, k, v: swat_attention(q, k, v, window=4, slopes=alibi_slopes(4), sigmoid_bias=-1.0,
                                       backend="decode"), (q, k, v))


@pytest.mark.parametrize("low_precision_matmul", [False, True])
def test_bf16_error_is_that_of_a_bf16_reference(monkeypatch, low_precision_matmul):
    """As for the banded kernel: at most twice the error of the dense reference computed in bf16."""
    monkeypatch.setattr(device_module, "fast_low_precision_matmul", lambda device: low_precision_matmul)
    q64, k64, v64 = make_qkv(batch=2, q_len=1, kv_len=90, heads=4, kv_heads=2, head_dim=32, seed=5)
    kwargs = dict(window=40, slopes=alibi_slopes(4), sigmoid_bias=-1.0)
    errors = {}
    for backend in ("decode", "reference"):
        inputs = [x.detach().bfloat16().requires_grad_() for x in (q64, k64, v64)]
        got, got_grads = run(*inputs, backend=backend, **kwargs)
        want, want_grads = run(*[x.detach().double().requires_grad_() for x in inputs], backend="reference",
                               **kwargs)
        assert got.dtype == torch.bfloat16
        errors[backend] = [(g.double() - w).abs().max().item()
                           for g, w in zip((got, *got_grads), (want, *want_grads), strict=True)]
    for ours, theirs in zip(errors["decode"], errors["reference"], strict=True):
        assert ours <= 2 * theirs


def test_auto_decodes_single_queries(monkeypatch):
    calls = []
    backends = dict(attention_module.BACKENDS)
    backends["decode"] = lambda *args, **kwargs: calls.append(1) or decode_module.decode_attention(*args, **kwargs)
    monkeypatch.setattr(attention_module, "BACKENDS", backends)
    q, k, v = make_qkv(batch=1, q_len=1, kv_len=10)
    swat_attention(q, k, v, window=4, backend="auto")
    swat_attention(*make_qkv(batch=1, q_len=2, kv_len=10), window=4, backend="auto")
    assert calls == [1]


def test_more_than_one_query_is_refused_with_a_fix():
    q, k, v = make_qkv(q_len=3, kv_len=10)
    with pytest.raises(ValueError, match="backend='chunked'"):
        swat_attention(q, k, v, window=4, backend="decode")
