"""Property test: random shapes, windows, GQA, slopes, segments and backends agree with the
float64 reference (output and gradients)."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import swat.ops.attention as attention_module
from swat.ops import alibi_slopes
from swat.ops.chunked import chunked_attention
from tests.ops.helpers import assert_matches_reference, make_qkv


@st.composite
def problems(draw):
    kv_len = draw(st.integers(1, 40))
    q_len = draw(st.integers(1, kv_len))
    kv_heads = draw(st.sampled_from([1, 2, 3]))
    heads = kv_heads * draw(st.sampled_from([1, 2, 4]))
    activation = draw(st.sampled_from(["sigmoid", "softmax"]))
    backends = ["chunked", "auto", "block"] + (["sdpa"] if activation == "softmax" else [])
    mode = draw(st.sampled_from(["balanced", "standard", "none", "random", None]))
    if mode == "balanced" and heads % 2:
        mode = "standard"
    return dict(
        batch=draw(st.integers(1, 3)), q_len=q_len, kv_len=kv_len, heads=heads, kv_heads=kv_heads,
        head_dim=draw(st.sampled_from([1, 4, 8])),
        window=draw(st.one_of(st.none(), st.integers(1, kv_len + 5))),
        activation=activation, mode=mode, sigmoid_bias=draw(st.sampled_from([0.0, -2.0, 0.7])),
        backend=draw(st.sampled_from(backends)), block=draw(st.integers(1, 50)),
        segments=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)),
    )


def problem_inputs(p: dict):
    """``((q, k, v), slopes, segment_ids)`` of a drawn problem."""
    qkv = make_qkv(p["batch"], p["q_len"], p["kv_len"], p["heads"], p["kv_heads"], p["head_dim"], seed=p["seed"])
    gen = torch.Generator().manual_seed(p["seed"])
    if p["mode"] == "random":
        slopes = torch.randn(p["heads"], generator=gen) * 0.5
    else:
        slopes = None if p["mode"] is None else alibi_slopes(p["heads"], p["mode"])
    segment_ids = None
    if p["segments"]:
        segment_ids = (torch.rand(p["batch"], p["kv_len"], generator=gen) < 0.25).long().cumsum(1)
    return qkv, slopes, segment_ids


@settings(max_examples=80, deadline=None, database=None)
@given(problem=problems())
def test_random_problems_match_reference(problem):
    p = problem
    (q, k, v), slopes, segment_ids = problem_inputs(p)
    backends = dict(attention_module.BACKENDS)  # "block": the chunked kernel with a drawn tile size
    backends["block"] = lambda q, k, v, spec: chunked_attention(q, k, v, spec, block=p["block"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(attention_module, "BACKENDS", backends)
        assert_matches_reference(q, k, v, window=p["window"], slopes=slopes, sigmoid_bias=p["sigmoid_bias"],
                                 activation=p["activation"], segment_ids=segment_ids, backend=p["backend"])

