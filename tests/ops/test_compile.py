"""The kernels as PyTorch custom ops: ``torch.library.opcheck`` (schema, fake implementation against
the real op, registered autograd, AOT dispatch with dynamic shapes) on each, and
``torch.compile(fullgraph=True)`` of ``swat_attention`` on each backend.

Without CUDA the Triton ops run under Triton's CPU interpreter (tests/ops/conftest.py); their fake
implementations are checked there against the interpreted kernels. The model-level compile test
(inductor, forward and backward, one compile) is tests/models/test_compile.py.
"""

from __future__ import annotations

from dataclasses import astuple

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import swat.ops.chunked as chunked_module
import swat.ops.triton_attention as triton_backend
from swat.ops import alibi_slopes, cpu_fused, swat_attention
from swat.ops.spec import AttentionSpec
from tests.ops.helpers import make_qkv, packed_segments, run

# opcheck's tests but test_autograd_registration, which wants every input to require a gradient
# (slopes and segment ids are constants of the op); registered autograd is what the others check.
OPCHECK_TESTS = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
FP32_TOLERANCE = dict(atol=2e-5, rtol=1e-4)


def _inputs(activation: str, dtype=torch.float32, q_len=12, kv_len=20, batch=2):
    """q, k, v, and a spec with slopes of both signs, a bias, a window and packed segments."""
    q, k, v = make_qkv(batch=batch, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2, head_dim=8, dtype=dtype)
    spec = AttentionSpec(window=5, slopes=alibi_slopes(4), sigmoid_bias=-0.5, activation=activation,
                         scale=0.4, segment_ids=packed_segments(batch, kv_len))
    return q, k, v, spec


@pytest.fixture(scope="module")
def built_extension():
    if not cpu_fused.available():
        pytest.skip("the fused CPU kernel cannot be built here")


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_fused_ops(built_extension, activation):
    q, k, v, spec = _inputs(activation)
    slopes, segment_ids = spec.slopes, spec.segment_ids
    options = (spec.band(k.shape[1]), spec.scale, spec.sigmoid_bias, spec.softmax, 4)
    forward = (q, k, v, slopes, segment_ids, *options)
    torch.library.opcheck(torch.ops.swat_cpu.forward.default, forward, test_utils=OPCHECK_TESTS)
    with torch.no_grad():
        out, lse = torch.ops.swat_cpu.forward(*forward)
    grad_out = torch.randn_like(out)
    row_dot = (grad_out * out).sum(-1) if spec.softmax else lse
    backward = (q.detach(), k.detach(), v.detach(), grad_out, lse, row_dot, slopes, segment_ids, *options)
    torch.library.opcheck(torch.ops.swat_cpu.backward.default, backward, test_utils=OPCHECK_TESTS)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_chunked_ops(activation):
    q, k, v, spec = _inputs(activation, dtype=torch.float64)
    rows = [x.detach().transpose(1, 2).reshape(2 * 2, -1, 8) for x in (k, v)]
    q_rows = q.detach().reshape(2, 12, 2, 2, 8).transpose(1, 2).reshape(4, 24, 8).requires_grad_()
    forward = (q_rows, *(x.requires_grad_() for x in rows), *spec.op_arguments(), 4, 2, 2)
    torch.library.opcheck(chunked_module._forward, forward, test_utils=OPCHECK_TESTS)
    out = chunked_module._forward(*forward)
    backward = (*(x.detach() for x in forward[:3]), out.detach(), torch.randn_like(out), *forward[3:])
    torch.library.opcheck(chunked_module._backward, backward, test_utils=OPCHECK_TESTS)


def _triton_arguments(q, k, v, spec, keys_per_split=None):
    tiles = [list(astuple(triton_backend._tiles(kernel, q.shape[-1], q.dtype, (16, 16))))
             for kernel in ("forward", "dkdv", "dq")]
    return (q, k, v, *spec.op_arguments(), *tiles, keys_per_split)


def _triton_inputs(activation: str):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    q, k, v, spec = _inputs(activation, q_len=12, kv_len=12, batch=1)  # 2 x 2 programs per kernel
    spec = AttentionSpec(**{**spec.__dict__, "slopes": spec.slopes.to(device),
                            "segment_ids": spec.segment_ids.to(device)})
    return *(x.detach().to(device).requires_grad_() for x in (q, k, v)), spec


def test_triton_ops():
    """The fake implementations give the interpreted (or compiled, on CUDA) kernels' shapes,
    strides and dtypes; the backward registered for the forward is the backward op. Softmax: the
    forward's second output is the log-sum-exp the backward reads."""
    q, k, v, spec = _triton_inputs("softmax")
    forward = _triton_arguments(q, k, v, spec)
    torch.library.opcheck(triton_backend._forward_op, forward, test_utils=OPCHECK_TESTS)
    with torch.no_grad():
        out, lse = triton_backend._forward_op(*forward)
    backward = (q.detach(), k.detach(), v.detach(), out, lse, torch.randn_like(out), *spec.op_arguments(),
                *forward[-3:-1])
    # the forward's test_aot_dispatch_dynamic has traced the backward op already (the interpreter is slow)
    torch.library.opcheck(triton_backend._backward_op, backward, test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_triton_fake_shapes_without_lse(activation):
    """Sigmoid (no log-sum-exp) and the split-band decoding path (its shares combined, no lse)."""
    q, k, v, spec = _triton_inputs(activation)
    q, k, v = (x.detach() for x in (q, k, v))
    for keys_per_split in (None, 4) if activation == "sigmoid" else (4,):
        arguments = _triton_arguments(q, k, v, spec, keys_per_split=keys_per_split)
        torch.library.opcheck(triton_backend._forward_op, arguments, test_utils=("test_faketensor",))


@pytest.mark.parametrize("backend", ["fused", "chunked", "triton", "reference"])
def test_swat_attention_compiles_to_one_graph(backend):
    """Dynamo traces ``swat_attention`` through to the op, without a break (``fullgraph``); AOT
    autograd runs the registered backward; output and gradients are the dense reference's.
    ``aot_eager``: inductor is the model test's."""
    if backend == "fused" and not cpu_fused.available():
        pytest.skip("the fused CPU kernel cannot be built here")
    device = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    q, k, v, spec = _inputs("sigmoid", q_len=20, kv_len=20)
    q, k, v = (x.detach().to(device).requires_grad_() for x in (q, k, v))
    options = dict(window=spec.window, slopes=spec.slopes.to(device), sigmoid_bias=spec.sigmoid_bias,
                   segment_ids=spec.segment_ids.to(device), backend=backend)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(lambda *qkv: swat_attention(*qkv, **options), backend=counter, fullgraph=True)
    got = compiled(q, k, v)
    got_grads = torch.autograd.grad(got, (q, k, v), torch.ones_like(got))
    want, want_grads = run(q, k, v, grad_out=torch.ones_like(got), **{**options, "backend": "reference"})
    torch.testing.assert_close(got, want, **FP32_TOLERANCE)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, **FP32_TOLERANCE)
    assert counter.frame_count == 1
