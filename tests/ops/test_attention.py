"""``swat_attention``: every backend against the dense float64 reference, forward and gradients."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import swat.ops.attention as attention_module
import swat.ops.device as device_module
import swat.ops.triton_attention as triton_backend
from swat import SWATConfig
from swat.ops import BACKEND_NAMES, AttentionSpec, alibi_slopes, swat_attention
from swat.ops.chunked import DEFAULT_BLOCK, chunked_attention
from swat.ops.reference import band_mask
from tests.ops.helpers import (
    assert_matches_reference,
    errors_against_fp64,
    left_padding,
    make_qkv,
    packed_segments,
)

SLOPE_MODES = ["balanced", "standard", "none", "explicit", None]


def slopes_for(mode, heads: int):
    if mode is None:
        return None
    if mode == "explicit":  # mixed signs, one large rewarding slope
        return alibi_slopes(heads, [(-1) ** h * 0.3 * (h + 1) for h in range(heads)])
    return alibi_slopes(heads, mode)


def chunked_with_block(block: int):
    """A backend function: the chunked kernel with a given tile size."""
    def backend(q, k, v, spec):
        return chunked_attention(q, k, v, spec, block=block)
    return backend


@pytest.fixture
def with_blocks(monkeypatch):
    """Registers ``chunked_b{N}`` backends (chunked kernel with ``block=N``) for the test."""
    backends = dict(attention_module.BACKENDS)
    for block in (1, 2, 3, 5, 8, 16, 64, 1000):
        backends[f"chunked_b{block}"] = chunked_with_block(block)
    monkeypatch.setattr(attention_module, "BACKENDS", backends)


# --- the band: windows x lengths x tile sizes ---------------------------------------------------

@pytest.mark.parametrize("window", [1, 2, 3, 7, "kv_len", "beyond", None])
@pytest.mark.parametrize("length", [1, 13, 37])
@pytest.mark.parametrize("block", [1, 5, 16, 1000])
def test_windows_lengths_blocks(with_blocks, window, length, block):
    """Windows 1, 2, odd, == kv_len, > kv_len and None, over lengths that are no multiple of the
    tile size, with tiles of one query, of a few, and larger than the whole sequence."""
    window = {"kv_len": length, "beyond": length + 9}.get(window, window)
    q, k, v = make_qkv(batch=2, q_len=length, heads=4, kv_heads=2)
    assert_matches_reference(q, k, v, window=window, slopes=alibi_slopes(4), sigmoid_bias=-0.5,
                             backend=f"chunked_b{block}")


@pytest.mark.parametrize("q_len,kv_len", [(1, 1), (1, 50), (1, 7), (7, 30), (13, 14), (16, 64)])
@pytest.mark.parametrize("window", [1, 4, 9, None])
@pytest.mark.parametrize("backend", ["chunked_b3", "chunked_b16", "chunked", "auto"])
def test_queries_are_the_last_positions(with_blocks, q_len, kv_len, window, backend):
    """q_len < kv_len (chunked prefill, and q_len = 1 decoding against a long cache): the queries
    sit at the last q_len positions, slopes use the true distance."""
    q, k, v = make_qkv(batch=2, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2)
    assert_matches_reference(q, k, v, window=window, slopes=alibi_slopes(4), backend=backend)


def test_decoding_matches_full_forward():
    """One query against the cache gives the last row of the full computation."""
    q, k, v = make_qkv(batch=2, q_len=40, heads=4, kv_heads=2)
    full = swat_attention(q, k, v, window=9, slopes=alibi_slopes(4), backend="chunked")
    for t in (0, 5, 39):
        step = swat_attention(q[:, t:t + 1], k[:, :t + 1], v[:, :t + 1], window=9, slopes=alibi_slopes(4),
                              backend="chunked")
        torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-12, rtol=1e-12)


# --- heads, batch, slopes, bias, activations ------------------------------------------------------

@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1), (8, 2), (2, 2)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("backend", ["chunked_b5", "chunked", "auto"])
def test_gqa(with_blocks, heads, kv_heads, activation, backend):
    """heads / kv_heads = 1, 2, 4: query head h reads kv head h // (heads / kv_heads)."""
    q, k, v = make_qkv(batch=3, q_len=19, kv_len=23, heads=heads, kv_heads=kv_heads)
    assert_matches_reference(q, k, v, window=6, slopes=alibi_slopes(heads, "standard"),
                             activation=activation, backend=backend)


@pytest.mark.parametrize("mode", SLOPE_MODES)
@pytest.mark.parametrize("sigmoid_bias", [0.0, -math.log(7), 1.5])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_slopes_and_bias(with_blocks, mode, sigmoid_bias, activation):
    q, k, v = make_qkv(batch=2, q_len=21, heads=4, kv_heads=2)
    assert_matches_reference(q, k, v, window=7, slopes=slopes_for(mode, 4), sigmoid_bias=sigmoid_bias,
                             activation=activation, backend="chunked_b8")


def test_sigmoid_bias_cancels_under_softmax():
    q, k, v = make_qkv()
    a = swat_attention(q, k, v, window=5, activation="softmax", backend="chunked")
    b = swat_attention(q, k, v, window=5, activation="softmax", sigmoid_bias=3.0, backend="chunked")
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_slope_sign_and_true_distance():
    """With q = k = 0 every score is ``-m * (i - j) + b``: the reference weights are the sigmoid of
    that, so a positive slope decays with distance, a negative one grows, at any q offset."""
    q, k, v = (torch.zeros(1, 3, 2, 1, dtype=torch.float64), torch.zeros(1, 10, 2, 1, dtype=torch.float64),
               torch.arange(10, dtype=torch.float64).view(1, 10, 1, 1).expand(1, 10, 2, 1))
    slopes = torch.tensor([0.5, -0.25])
    for backend in ("reference", "chunked"):
        out = swat_attention(q, k, v, window=4, slopes=slopes, backend=backend)
        for row, i in enumerate(range(7, 10)):
            for h, m in enumerate(slopes.tolist()):
                want = sum(j / (1 + math.exp(m * (i - j))) for j in range(i - 3, i + 1))
                assert out[0, row, h, 0].item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("backend", ["reference", "chunked", "sdpa", "auto"])
@pytest.mark.parametrize("window", [None, 5])
def test_softmax_matches_plain_softmax_attention(backend, window):
    """Softmax without slopes is ordinary (sliding window) causal attention."""
    q, k, v = make_qkv(batch=2, q_len=17, heads=4, kv_heads=4)
    out = swat_attention(q, k, v, window=window, activation="softmax", backend=backend)
    allowed = band_mask(17, 17, window)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(8)
    want = torch.einsum("bhij,bjhd->bihd", scores.masked_fill(~allowed, -math.inf).softmax(-1), v)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("window", [1, 4, None])
@pytest.mark.parametrize("q_len,kv_len", [(15, 15), (6, 15), (1, 15)])
@pytest.mark.parametrize("slopes", [None, "standard"])
@pytest.mark.parametrize("segments", [None, "packed"])
def test_sdpa_softmax(window, q_len, kv_len, slopes, segments):
    """The SDPA backend (softmax only) in all the cases it takes: plain causal, band, ALiBi,
    segments, cache offset, GQA."""
    q, k, v = make_qkv(batch=2, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2)
    segment_ids = packed_segments(2, kv_len) if segments else None
    assert_matches_reference(q, k, v, window=window, slopes=slopes_for(slopes, 4), activation="softmax",
                             segment_ids=segment_ids, backend="sdpa")


def test_explicit_scale():
    q, k, v = make_qkv()
    assert_matches_reference(q, k, v, window=4, scale=0.7, slopes=alibi_slopes(4), backend="chunked")
    a = swat_attention(q, k, v, window=4, scale=8 ** -0.5, backend="chunked")
    b = swat_attention(q, k, v, window=4, backend="chunked")
    torch.testing.assert_close(a, b, atol=0, rtol=0)


# --- segments: packed documents and left padding -------------------------------------------------

@pytest.mark.parametrize("kind", ["packed", "left_padding"])
@pytest.mark.parametrize("q_len,kv_len", [(29, 29), (9, 29), (1, 29)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("backend", ["chunked_b1", "chunked_b8", "chunked", "auto"])
def test_segments(with_blocks, kind, q_len, kv_len, activation, backend):
    segment_ids = packed_segments(3, kv_len, seed=2) if kind == "packed" else left_padding(3, kv_len)
    q, k, v = make_qkv(batch=3, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2)
    assert_matches_reference(q, k, v, window=6, slopes=alibi_slopes(4), activation=activation,
                             segment_ids=segment_ids, backend=backend)


def test_segments_isolate_documents():
    """Changing one document's keys and values does not change another document's outputs."""
    q, k, v = make_qkv(batch=1, q_len=20, heads=2, kv_heads=2)
    segment_ids = torch.tensor([[0] * 8 + [1] * 12])
    out = swat_attention(q, k, v, window=16, segment_ids=segment_ids, backend="chunked")
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, :8] += 1.0
    v2[:, :8] -= 2.0
    out2 = swat_attention(q, k2, v2, window=16, segment_ids=segment_ids, backend="chunked")
    torch.testing.assert_close(out[:, 8:], out2[:, 8:], atol=0, rtol=0)
    assert not torch.allclose(out[:, :8], out2[:, :8])


# --- gradcheck -----------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("case", [
    dict(q_len=6, kv_len=6, window=3, block=2),
    dict(q_len=3, kv_len=9, window=4, block=2),
    dict(q_len=1, kv_len=7, window=None, block=4),
    dict(q_len=7, kv_len=7, window=1, block=3),
    dict(q_len=5, kv_len=8, window=20, block=64, segments=True),
])
def test_gradcheck_chunked(activation, case):
    case = dict(case)
    block, segments = case.pop("block"), case.pop("segments", False)
    q, k, v = make_qkv(batch=2, q_len=case["q_len"], kv_len=case["kv_len"], heads=4, kv_heads=2, head_dim=3)
    segment_ids = packed_segments(2, case["kv_len"], seed=3) if segments else None

    spec = AttentionSpec(window=case["window"], slopes=alibi_slopes(4), sigmoid_bias=-0.3, activation=activation,
                         scale=0.6, segment_ids=segment_ids)

    def f(q, k, v):
        return chunked_attention(q, k, v, spec, block=block)

    assert torch.autograd.gradcheck(f, (q, k, v))


# --- float32 and bf16 ----------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("backend", ["chunked", "chunked_b16"])
def test_float32_close_to_float64(with_blocks, activation, backend):
    q, k, v = make_qkv(batch=2, q_len=150, heads=4, kv_heads=2, head_dim=32)
    errors = errors_against_fp64(torch.float32, backend, q, k, v, window=40, slopes=alibi_slopes(4),
                                  activation=activation)
    assert max(errors) < 1e-4, errors


@pytest.mark.parametrize("low_precision_matmul", [False, True])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("backend", ["chunked", "chunked_b16", "auto"])
def test_bf16_error_is_that_of_a_bf16_reference(with_blocks, monkeypatch, low_precision_matmul, activation,
                                                 backend):
    """bf16 tolerance from a low-precision reference: the dense reference computed in bf16 has some
    error against float64 (bf16 has an 8-bit mantissa); the kernel may have at most twice that
    error, output and each gradient. ``low_precision_matmul`` forces the path taken on GPUs and
    AMX CPUs (bf16 matmuls, fp32 scores); the other one is this CPU's (fp32 throughout)."""
    monkeypatch.setattr(device_module, "fast_low_precision_matmul", lambda device: low_precision_matmul)
    q, k, v = make_qkv(batch=2, q_len=150, heads=4, kv_heads=2, head_dim=32, seed=5)
    kwargs = dict(window=40, slopes=alibi_slopes(4), activation=activation, sigmoid_bias=-1.0)
    ours = errors_against_fp64(torch.bfloat16, backend, q, k, v, **kwargs)
    theirs = errors_against_fp64(torch.bfloat16, "reference", q, k, v, **kwargs)
    for name, e_ours, e_ref in zip(["out", "dq", "dk", "dv"], ours, theirs, strict=True):
        assert e_ours <= 2 * e_ref, f"{name}: bf16 kernel error {e_ours:.3g} > 2 x bf16 reference's {e_ref:.3g}"


def test_bf16_output_dtype():
    q, k, v = make_qkv(dtype=torch.bfloat16)
    for backend in ("chunked", "reference", "auto"):
        assert swat_attention(q, k, v, window=3, backend=backend).dtype == torch.bfloat16


def test_non_contiguous_inputs():
    """Views (e.g. q, k, v sliced from one fused projection) give the same result."""
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 13, 3, 4, 8, generator=gen, dtype=torch.float64)
    q, k, v = qkv.unbind(2)
    want = swat_attention(q.contiguous(), k.contiguous(), v.contiguous(), window=5, slopes=alibi_slopes(4),
                          backend="reference")
    got = swat_attention(q, k, v, window=5, slopes=alibi_slopes(4), backend="chunked")
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_chunked_default_block_on_long_sequence():
    """More than a few default tiles (interior tiles share one additive term)."""
    q, k, v = make_qkv(batch=1, q_len=3 * DEFAULT_BLOCK + 17, heads=2, kv_heads=1, head_dim=4)
    assert_matches_reference(q, k, v, window=DEFAULT_BLOCK + 3, slopes=alibi_slopes(2), backend="chunked")


@pytest.mark.parametrize("backend", ["chunked", "chunked_b5", "fused"])
@pytest.mark.parametrize("dtype,magnitude", [(torch.float16, 100.0), (torch.float32, 1e19), (torch.bfloat16, 1e19)])
@pytest.mark.parametrize("segments", [None, "packed"])
def test_overflowing_scores_are_masked_as_the_reference_masks_them(with_blocks, backend, dtype, magnitude,
                                                                    segments):
    """Scores past the dtype's range (inf) outside the band or across documents weigh exactly 0,
    as in the reference (not ``inf - inf = NaN``); inside the band they saturate the sigmoid."""
    q, k, v = make_qkv(batch=2, q_len=23, heads=4, kv_heads=2, head_dim=16, dtype=dtype)
    # half of every q and k is `magnitude`: each q . k is about 8 * magnitude^2, past the dtype's range
    q, k = (torch.cat([torch.full_like(x[..., :8], magnitude), x[..., 8:]], -1).detach() for x in (q, k))
    segment_ids = None if segments is None else packed_segments(2, 23, seed=1)
    kwargs = dict(window=5, slopes=alibi_slopes(4), sigmoid_bias=-1.0, segment_ids=segment_ids)
    with torch.no_grad():
        want = swat_attention(q, k, v, backend="reference", **kwargs)
        got = swat_attention(q, k, v, backend=backend, **kwargs)
    assert torch.isfinite(want).all()
    torch.testing.assert_close(got.float(), want.float(), rtol=0.02, atol=0.02)


# --- auto ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("q_len,kv_len,window", [(4, 4, 2), (30, 30, None), (1, 200, 64), (300, 300, 16)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_auto_is_correct(grad, q_len, kv_len, window, activation):
    q, k, v = make_qkv(batch=1, q_len=q_len, kv_len=kv_len, heads=2, kv_heads=1, head_dim=4)
    kwargs = dict(window=window, activation=activation)
    if grad:
        assert_matches_reference(q, k, v, backend="auto", **kwargs)
    else:
        with torch.no_grad():
            torch.testing.assert_close(swat_attention(q, k, v, backend="auto", **kwargs),
                                       swat_attention(q, k, v, backend="reference", **kwargs))


def _pick(q_len, kv_len, window, activation, *, segment_ids=None, grad=False, device="cpu",
          dtype=torch.float32, head_dim=64):
    """``auto``'s choice for queries ``[1, q_len, 8, head_dim]`` and keys ``[1, kv_len, 8, head_dim]``.
    Only shapes, dtype, device and ``requires_grad`` matter, so stand-ins describe CUDA tensors on
    any machine."""
    def tensor(length):
        return SimpleNamespace(shape=(1, length, 8, head_dim), dtype=dtype, device=torch.device(device),
                               requires_grad=grad)

    spec = AttentionSpec(window=window, slopes=None, sigmoid_bias=0.0, activation=activation, scale=0.125,
                         segment_ids=segment_ids)
    return attention_module.pick_backend(tensor(q_len), tensor(kv_len), spec)


def test_auto_choices_on_the_cpu():
    """Measured crossovers (see the thresholds in swat/ops/attention.py)."""
    # sigmoid never goes to SDPA (softmax only); long or windowed problems go to the fused banded kernel
    assert _pick(4096, 4096, 512, "sigmoid") == "fused"
    assert _pick(4096, 4096, None, "sigmoid") == "fused"
    assert _pick(1, 512, 512, "sigmoid") == "decode"  # a decoding step
    assert _pick(16, 16, None, "sigmoid") == "reference"  # tiny: dense is cheaper
    assert _pick(128, 128, None, "sigmoid", grad=True) == "reference"
    assert _pick(128, 128, None, "sigmoid") == "fused"
    assert _pick(4096, 4096, 512, "sigmoid", dtype=torch.float64) == "chunked"  # not in the fused kernel
    # softmax: fused causal SDPA; masked SDPA while the band is most of the keys; else banded
    assert _pick(4096, 4096, None, "softmax") == "sdpa"
    assert _pick(1, 512, 512, "softmax") == "decode"
    assert _pick(4096, 4096, 512, "softmax") == "fused"
    assert _pick(8192, 8192, None, "softmax", segment_ids=torch.zeros(1, 8192)) == "fused"  # mask too big


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_auto_low_precision_on_the_cpu(monkeypatch, fast, dtype):
    """bf16: the fused kernel (bf16 matmuls, or fp32 ones where bf16 is upcast); fp16: the fused
    kernel only where it is upcast to fp32 (the kernel has no fp16 path)."""
    monkeypatch.setattr(device_module, "fast_low_precision_matmul", lambda device: fast)
    want = "chunked" if dtype == torch.float16 and fast else "fused"
    for activation in ("sigmoid", "softmax"):
        assert _pick(4096, 4096, 512, activation, dtype=dtype) == want


def test_auto_choices_on_a_gpu():
    """CUDA tensors go to the fused Triton kernels (training, prefill and decoding steps alike),
    except plain causal softmax (PyTorch's flash attention) and what the kernels do not take."""
    assert triton_backend.triton_available(), "triton is in the dev extra; install it"
    for args in [(4096, 4096, 512, "sigmoid"), (1, 512, 512, "sigmoid"), (16, 16, None, "sigmoid"),
                 (4096, 4096, 512, "softmax"), (1, 512, None, "softmax")]:
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            assert _pick(*args, device="cuda", dtype=dtype) == "triton", (args, dtype)
    assert _pick(4096, 4096, None, "softmax", device="cuda") == "sdpa"
    assert _pick(4096, 4096, None, "sigmoid", device="cuda", dtype=torch.float64) == "chunked"
    assert _pick(4096, 4096, 512, "sigmoid", device="cuda", head_dim=320) == "chunked"


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_backend_name_a_config_accepts_computes_the_reference(name):
    """Each name ``SWATConfig.attention_backend`` accepts runs the op and computes the contract."""
    activation = "softmax" if name == "sdpa" else "sigmoid"  # sdpa: softmax only; decode: one query
    SWATConfig(attention_backend=name, attention_activation=activation, alibi="none")
    q, k, v = make_qkv(batch=1, q_len=1 if name == "decode" else 6, kv_len=6, dtype=torch.float32)
    kwargs = dict(window=3, activation=activation, slopes=None if name == "sdpa" else alibi_slopes(4, "balanced"))
    torch.testing.assert_close(swat_attention(q, k, v, backend=name, **kwargs),
                               swat_attention(q, k, v, backend="reference", **kwargs), rtol=1e-5, atol=1e-5)


def test_a_backend_the_op_does_not_have_is_refused_by_the_config_too():
    with pytest.raises(ValueError, match="unknown backend 'flash'"):
        swat_attention(*make_qkv(), window=3, backend="flash")
    with pytest.raises(ValueError, match="attention_backend"):
        SWATConfig(attention_backend="flash")


# --- errors --------------------------------------------------------------------------------------

def _bad(match, **overrides):
    q, k, v = make_qkv(batch=2, q_len=5, heads=4, kv_heads=2)
    kwargs = dict(q=q, k=k, v=v, window=3)
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=match):
        swat_attention(kwargs.pop("q"), kwargs.pop("k"), kwargs.pop("v"), **kwargs)


@pytest.mark.parametrize("window", [0, -1, True, False, 2.5, "3"])
def test_bad_window(window):
    _bad("window must be an int >= 1", window=window)


def test_bad_inputs():
    q, k, v = make_qkv(batch=2, q_len=5, heads=4, kv_heads=2)
    _bad(r"slopes must have shape \[heads\] = \[4\]", slopes=torch.zeros(2))
    _bad(r"slopes must have shape", slopes=torch.zeros(1, 4))
    _bad(r"q_len \(6\) must be <= kv_len \(5\)", q=make_qkv(batch=2, q_len=6, heads=4)[0])
    _bad(r"heads \(4\) must be a multiple of kv_heads \(3\)", k=k[:, :, :1].expand(2, 5, 3, 8),
         v=v[:, :, :1].expand(2, 5, 3, 8))
    _bad("must share a dtype", k=k.float())
    _bad("must share a dtype", v=v.float())
    _bad("unknown backend 'flash'", backend="flash")
    _bad("activation must be one of", activation="relu")
    _bad(r"segment_ids must have shape \[batch, kv_len\] = \[2, 5\]", segment_ids=torch.zeros(2, 4))
    _bad(r"segment_ids must have shape", segment_ids=torch.zeros(5))
    _bad("must be 4-D", q=q[0])
    _bad("k and v must have the same shape", v=v[:, :4])
    _bad("agree on batch and head_dim", q=q[:1])
    _bad("agree on batch and head_dim", q=q[..., :4])
    _bad("computes softmax attention only", backend="sdpa", activation="sigmoid")
