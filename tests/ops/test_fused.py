"""The fused C++ CPU backend (``swat.ops.cpu_fused``) against the dense float64 reference, and its
fallback to the chunked kernel. The extension is built (or loaded from its cache) once per session."""

from __future__ import annotations

import math

import pytest
import torch

import swat.ops.attention as attention_module
import swat.ops.device as device_module
from swat.ops import AttentionSpec, alibi_slopes, cpu_fused, swat_attention
from swat.ops.chunked import chunked_attention
from tests.ops.helpers import (
    assert_matches_reference,
    errors_against_fp64,
    left_padding,
    make_qkv,
    packed_segments,
    run,
)

FP32_TOLERANCE = 2e-5  # max abs error of fp32 output and gradients against float64 (O(1) values)


@pytest.fixture(scope="session", autouse=True)
def built_extension():
    """Compiles the extension once (later sessions load it from the cache); a build failure fails
    the tests, it is not skipped."""
    cpu_fused.build()


@pytest.fixture
def with_blocks(monkeypatch):
    """Registers ``fused_b{N}`` backends (the fused kernel with ``block=N``) for the test."""
    backends = dict(attention_module.BACKENDS)
    for block in (1, 5, 16, 64):
        backends[f"fused_b{block}"] = lambda q, k, v, spec, block=block: cpu_fused.fused_attention(
            q, k, v, spec, block=block)
    monkeypatch.setattr(attention_module, "BACKENDS", backends)


def assert_fp32_close(q, k, v, backend="fused", tolerance=FP32_TOLERANCE, **kwargs):
    """fp32 output and gradients of ``backend`` within ``tolerance`` of float64 on the same inputs."""
    errors = errors_against_fp64(torch.float32, backend, q, k, v, **kwargs)
    assert max(errors) < tolerance, dict(zip(["out", "dq", "dk", "dv"], errors, strict=True))


# --- the band: windows x lengths x tile sizes ---------------------------------------------------

@pytest.mark.parametrize("window", [1, 3, "kv_len", "beyond", None])
@pytest.mark.parametrize("length", [1, 7, 65, 200])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_windows_and_lengths(window, length, activation):
    """Windows 1, odd, == kv_len, > kv_len and None over lengths that are no multiple of the tile."""
    window = {"kv_len": length, "beyond": length + 9}.get(window, window)
    q, k, v = make_qkv(batch=2, q_len=length, heads=4, kv_heads=2, head_dim=16)
    assert_fp32_close(q, k, v, window=window, slopes=alibi_slopes(4), sigmoid_bias=-0.5, activation=activation)


@pytest.mark.parametrize("block", [1, 5, 16, 64])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_tile_sizes(with_blocks, block, activation):
    q, k, v = make_qkv(batch=1, q_len=37, kv_len=45, heads=2, kv_heads=1, head_dim=8)
    assert_fp32_close(q, k, v, backend=f"fused_b{block}", window=9, slopes=alibi_slopes(2), activation=activation)


@pytest.mark.parametrize("q_len,kv_len", [(1, 1), (1, 50), (7, 30), (13, 14), (16, 64)])
@pytest.mark.parametrize("window", [1, 4, None])
def test_queries_are_the_last_positions(q_len, kv_len, window):
    q, k, v = make_qkv(batch=2, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2)
    assert_fp32_close(q, k, v, window=window, slopes=alibi_slopes(4))


# --- heads, slopes, bias, scale ------------------------------------------------------------------

@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_gqa(heads, kv_heads, activation):
    q, k, v = make_qkv(batch=3, q_len=19, kv_len=23, heads=heads, kv_heads=kv_heads)
    assert_fp32_close(q, k, v, window=6, slopes=alibi_slopes(heads, "standard"), activation=activation)


@pytest.mark.parametrize("slopes", [None, [0.5, -0.25, 0.9, -1.2]])
@pytest.mark.parametrize("sigmoid_bias", [0.0, -math.log(7)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_slopes_bias_and_scale(slopes, sigmoid_bias, activation):
    q, k, v = make_qkv(batch=2, q_len=21, heads=4, kv_heads=2)
    slopes = None if slopes is None else torch.tensor(slopes, dtype=torch.float64)
    assert_fp32_close(q, k, v, window=7, slopes=slopes, sigmoid_bias=sigmoid_bias, activation=activation,
                      scale=0.6)


# --- segments --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["packed", "left_padding"])
@pytest.mark.parametrize("q_len,kv_len", [(29, 29), (9, 29), (1, 29)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_segments(kind, q_len, kv_len, activation):
    segment_ids = packed_segments(3, kv_len, seed=2) if kind == "packed" else left_padding(3, kv_len)
    q, k, v = make_qkv(batch=3, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2)
    assert_fp32_close(q, k, v, window=6, slopes=alibi_slopes(4), activation=activation, segment_ids=segment_ids)


# --- threads, layout, dtypes -----------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_more_threads_than_lanes(activation):
    """One (batch, kv head) lane on two threads: the backward splits the lane's query blocks over
    tasks with their own dK, dV accumulators, summed at the end."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        q, k, v = make_qkv(batch=1, q_len=200, heads=2, kv_heads=1, head_dim=16)
        assert_fp32_close(q, k, v, window=30, slopes=alibi_slopes(2), activation=activation)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tiles_run_on_every_thread(threads):
    """Forward and backward run their tiles on as many threads as torch has (not a timing: the kernel
    reports the distinct threads that ran its task loop). Built without OpenMP, ``at::parallel_for``
    runs everything on the calling thread and this fails."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        q, k, v = make_qkv(batch=1, q_len=300, heads=4, kv_heads=4, head_dim=16, dtype=torch.float32)
        out = swat_attention(q, k, v, window=40, slopes=alibi_slopes(4), backend="fused")
        assert cpu_fused.threads_used() == threads
        out.sum().backward()
        assert cpu_fused.threads_used() == threads
    finally:
        torch.set_num_threads(before)


def test_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 13, 3, 4, 8, generator=gen).unbind(2)
    want = swat_attention(q.double(), k.double(), v.double(), window=5, slopes=alibi_slopes(4), backend="reference")
    got = swat_attention(q, k, v, window=5, slopes=alibi_slopes(4), backend="fused")
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


def test_float64_is_delegated_to_chunked():
    """float64 is not in the kernel; the backend gives chunked's result (exact to the reference)."""
    q, k, v = make_qkv(batch=2, q_len=15, heads=4, kv_heads=2)
    assert_matches_reference(q, k, v, window=4, slopes=alibi_slopes(4), backend="fused")


@pytest.mark.parametrize("batch,q_len", [(0, 5), (2, 0)])
def test_empty(batch, q_len):
    """No queries: an empty output and zero gradients, also when the backend is called directly."""
    q, k, v = make_qkv(batch=batch, q_len=q_len, kv_len=5, heads=4, kv_heads=2, dtype=torch.float32)
    spec = AttentionSpec(window=3, slopes=None, sigmoid_bias=0.0, activation="sigmoid", scale=0.3)
    out = cpu_fused.fused_attention(q, k, v, spec)
    assert out.shape == q.shape
    grads = torch.autograd.grad(out.sum(), (q, k, v), allow_unused=True)
    assert all(g is None or not g.any() for g in grads)


@pytest.mark.parametrize("low_precision_matmul", [False, True])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("q_len,kv_len,head_dim", [(150, 150, 32), (77, 151, 32), (150, 150, 31)])
def test_bf16_error_is_that_of_a_bf16_reference(monkeypatch, low_precision_matmul, activation, q_len, kv_len,
                                                 head_dim):
    """bf16 output and gradients have at most twice the error of the dense reference computed in
    bf16, on both paths: bf16 matmuls with fp32 scores (``low_precision_matmul``) and fp32 throughout.
    An odd number of keys pads the key axis of the VNNI-packed operands; an odd head_dim takes the
    bf16 GEMMs without VNNI packing (what CPUs without oneDNN's bf16 kernels run)."""
    monkeypatch.setattr(device_module, "fast_low_precision_matmul", lambda device: low_precision_matmul)
    q, k, v = make_qkv(batch=2, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2, head_dim=head_dim, seed=5)
    kwargs = dict(window=40, slopes=alibi_slopes(4), activation=activation, sigmoid_bias=-1.0)
    ours = errors_against_fp64(torch.bfloat16, "fused", q, k, v, **kwargs)
    theirs = errors_against_fp64(torch.bfloat16, "reference", q, k, v, **kwargs)
    for name, e_ours, e_ref in zip(["out", "dq", "dk", "dv"], ours, theirs, strict=True):
        assert e_ours <= 2 * e_ref, f"{name}: bf16 kernel error {e_ours:.3g} > 2 x bf16 reference's {e_ref:.3g}"


def test_bf16_output_dtype():
    q, k, v = make_qkv(dtype=torch.bfloat16)
    out, grads = run(q, k, v, window=3, backend="fused")
    assert out.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in grads)


# --- the fallback to chunked -----------------------------------------------------------------------

def _chunked_and_fused(q, k, v, spec):
    return chunked_attention(q, k, v, spec), cpu_fused.fused_attention(q, k, v, spec)


@pytest.mark.parametrize("cause", ["env", "build_error"])
def test_fallback_gives_chunked_and_one_notice(monkeypatch, capsys, cause):
    monkeypatch.setattr(cpu_fused, "_announced", set())
    if cause == "env":
        monkeypatch.setenv(cpu_fused.DISABLE_ENV, "1")
    else:
        def fail():
            raise RuntimeError("Error building extension 'swat_cpu'\nc++: not found")
        monkeypatch.setattr(cpu_fused, "build", fail)
    q, k, v = make_qkv(batch=2, q_len=20, heads=4, kv_heads=2, dtype=torch.float32)
    spec = AttentionSpec(window=5, slopes=alibi_slopes(4), sigmoid_bias=-1.0, activation="sigmoid", scale=0.35)
    for _ in range(2):
        want, got = _chunked_and_fused(q, k, v, spec)
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "using the chunked kernel" in notice, notice
    assert (cpu_fused.DISABLE_ENV if cause == "env" else "c++: not found") in notice
    assert not cpu_fused.available()
