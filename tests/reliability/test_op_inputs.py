"""Bad input to the op ``swat.ops.swat_attention``: each row is an input, the exception it must raise
and a message that says what to change, never an error from deep inside torch (a matmul's "expected
scalar type Float", a ``ZeroDivisionError``). Also: inputs without queries have a defined empty
result, and the checks read no tensor values (no host sync on a decoding step)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from swat.errors import UserError
from swat.ops import BACKENDS, alibi_slopes, swat_attention
from swat.ops import triton_attention as triton_backend

HEADS, KV_HEADS, HEAD_DIM, LENGTH = 4, 2, 8, 6


def qkv(batch=2, q_len=LENGTH, kv_len=None, heads=HEADS, kv_heads=KV_HEADS, head_dim=HEAD_DIM,
        dtype=torch.float32, device="cpu"):
    kv_len = q_len if kv_len is None else kv_len
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch, q_len, heads, head_dim, generator=gen)
    k, v = (torch.randn(batch, kv_len, kv_heads, head_dim, generator=gen) for _ in range(2))
    return tuple(x.to(device=device, dtype=dtype) for x in (q, k, v))


@dataclass
class Row:
    id: str
    call: Callable[[pytest.MonkeyPatch], object]
    error: type[Exception]
    message: str  # a regular expression the message must match


def _op(q=None, k=None, v=None, **options) -> Callable[[pytest.MonkeyPatch], object]:
    """``swat_attention`` on valid inputs with some replaced: ``q``, ``k``, ``v`` and any option."""
    def call(monkeypatch: pytest.MonkeyPatch) -> object:
        good = qkv()
        tensors = [good[i] if x is None else x for i, x in enumerate((q, k, v))]
        return swat_attention(*tensors, **{"window": 3, **options})
    return call


def _without_triton(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(triton_backend, "triton_available", lambda: False)
    return swat_attention(*qkv(), window=3, backend="triton")


def _triton_on_cpu_without_interpreter(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    return swat_attention(*qkv(), window=3, backend="triton")


META = torch.device("meta")  # a second device on any machine
ON_META = r"must be on q's device \(cpu\), got {} on meta; move it there with \.to\(q\.device\)"
FLOATING = r"must be floating point \(float16, bfloat16, float32 or float64\), got {}; convert them first"
SEGMENTS_DTYPE = r"segment_ids must be integers .*got {}; convert them with \.long\(\)"
SLOPES_DTYPE = r"slopes must be floating point .*got {}; pass swat\.ops\.alibi_slopes\(heads\) or convert"
FINITE = r"{} must be a finite Python number, got {}; pass a float"

ROWS = [
    # dtypes of q, k, v
    Row("qkv-int64", _op(*qkv(dtype=torch.int64)), UserError, FLOATING.format("torch.int64")),
    Row("qkv-int8", _op(*qkv(dtype=torch.int8)), UserError, FLOATING.format("torch.int8")),
    Row("qkv-bool", _op(*qkv(dtype=torch.bool)), UserError, FLOATING.format("torch.bool")),
    Row("qkv-complex", _op(*qkv(dtype=torch.complex64)), UserError, FLOATING.format("torch.complex64")),
    Row("qkv-int-chunked", _op(*qkv(dtype=torch.int32), backend="chunked"), UserError,
        FLOATING.format("torch.int32")),
    Row("q-not-a-tensor", _op(q=[[1.0]]), UserError, r"q must be a torch\.Tensor \[batch, seq, heads, head_dim\]"),
    # devices
    Row("k-other-device", _op(k=qkv(device=META)[1]), UserError, ON_META.format("k")),
    Row("v-other-device", _op(v=qkv(device=META)[2]), UserError, ON_META.format("v")),
    Row("slopes-other-device", _op(slopes=alibi_slopes(HEADS).to(META)), UserError, ON_META.format("slopes")),
    Row("segment-ids-other-device", _op(segment_ids=torch.zeros(2, LENGTH, dtype=torch.long, device=META)),
        UserError, ON_META.format("segment_ids")),
    # empty head dimensions (zero lengths are not errors: see test_no_queries_give_an_empty_output)
    Row("kv-heads-0", _op(*qkv(heads=0, kv_heads=0)), UserError,
        r"heads, kv_heads and head_dim must be >= 1, .*check the reshape"),
    Row("head-dim-0", _op(*qkv(head_dim=0)), UserError, r"heads, kv_heads and head_dim must be >= 1"),
    # segment ids
    Row("segment-ids-float", _op(segment_ids=torch.zeros(2, LENGTH)), UserError,
        SEGMENTS_DTYPE.format("torch.float32")),
    Row("segment-ids-bool", _op(segment_ids=torch.ones(2, LENGTH, dtype=torch.bool)), UserError,
        SEGMENTS_DTYPE.format("torch.bool") + r" \(a padding mask becomes segment ids as mask\.long\(\)\)"),
    Row("segment-ids-list", _op(segment_ids=[[0] * LENGTH] * 2), UserError,
        r"segment_ids must be an integer tensor \[batch, kv_len\] or None, got list"),
    # the scalars
    Row("sigmoid-bias-nan", _op(sigmoid_bias=float("nan")), UserError, FINITE.format("sigmoid_bias", "nan")),
    Row("sigmoid-bias-inf", _op(sigmoid_bias=float("-inf")), UserError, FINITE.format("sigmoid_bias", "-inf")),
    Row("sigmoid-bias-none", _op(sigmoid_bias=None), UserError, FINITE.format("sigmoid_bias", "None")),
    Row("sigmoid-bias-string", _op(sigmoid_bias="-1"), UserError, FINITE.format("sigmoid_bias", "'-1'")),
    Row("sigmoid-bias-tensor", _op(sigmoid_bias=torch.tensor(-1.0)), UserError,
        FINITE.format("sigmoid_bias", r"tensor\(-1\.\)") + r".*host sync"),
    Row("scale-nan", _op(scale=float("nan")), UserError, FINITE.format("scale", "nan")),
    Row("scale-inf", _op(scale=float("inf")), UserError, FINITE.format("scale", "inf")),
    # slopes
    Row("slopes-int", _op(slopes=torch.ones(HEADS, dtype=torch.long)), UserError, SLOPES_DTYPE.format("torch.int64")),
    Row("slopes-bool", _op(slopes=torch.ones(HEADS, dtype=torch.bool)), UserError, SLOPES_DTYPE.format("torch.bool")),
    Row("slopes-list", _op(slopes=[0.5, 0.25, 0.125, 0.0625]), UserError,
        r"slopes must be a float tensor \[heads\] \(e\.g\. swat\.ops\.alibi_slopes\(heads\)\) or None, got list"),
    # the triton backend where it cannot run
    Row("triton-not-installed", _without_triton, ValueError,
        r"backend='triton' needs the triton package.*install it \(pip install triton.*or use backend='auto'"),
    Row("triton-cpu-tensors-without-interpreter", _triton_on_cpu_without_interpreter, ValueError,
        r"backend='triton' runs on CUDA tensors \(got cpu\); use backend='chunked' here, or set TRITON_INTERPRET=1"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_says_what_to_change(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(row.error, match=row.message):
        row.call(monkeypatch)


def test_rows_have_unique_ids() -> None:
    ids = [row.id for row in ROWS]
    assert len(ids) == len(set(ids)) and len(ids) >= 10


# --- zero lengths: a defined empty result ----------------------------------------------------------

@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("batch,q_len,kv_len", [(2, 0, 5), (2, 0, 0), (0, 3, 3)],
                         ids=["no-queries", "no-keys", "empty-batch"])
def test_no_queries_give_an_empty_output(backend: str, batch: int, q_len: int, kv_len: int) -> None:
    """Without queries every backend returns the empty ``[batch, q_len, heads, head_dim]`` (in q's
    dtype and device) with slopes and segment ids too, and gradients that are zeros of each input's
    shape (a training step on an empty batch adds nothing)."""
    q, k, v = (x.requires_grad_() for x in qkv(batch=batch, q_len=q_len, kv_len=kv_len))
    out = swat_attention(q, k, v, window=3, slopes=alibi_slopes(HEADS), sigmoid_bias=-1.0, backend=backend,
                         activation="softmax" if backend == "sdpa" else "sigmoid",
                         segment_ids=torch.zeros(batch, kv_len, dtype=torch.long))
    assert out.shape == q.shape and out.dtype == q.dtype and out.device == q.device
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    for grad, x in zip(grads, (q, k, v), strict=True):
        assert grad.shape == x.shape and not grad.any()


# --- the checks cost no host sync ---------------------------------------------------------------

def test_checks_read_only_metadata() -> None:
    """Meta tensors have shapes, dtypes and a device but no values: a check that read a value (a
    ``.item()``, a ``bool()`` of a comparison) would raise here. A decoding step with every optional
    tensor runs on them through ``auto``, and a bad one is still refused."""
    q, k, v = qkv(q_len=1, kv_len=9, device=META)
    options = dict(window=4, slopes=alibi_slopes(HEADS).to(META), sigmoid_bias=-1.0,
                   segment_ids=torch.zeros(2, 9, dtype=torch.long, device=META))
    assert swat_attention(q, k, v, **options).shape == q.shape
    with pytest.raises(ValueError, match="segment_ids must be integers"):
        swat_attention(q, k, v, **{**options, "segment_ids": torch.zeros(2, 9, device=META)})
