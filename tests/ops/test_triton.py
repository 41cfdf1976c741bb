"""The ``triton`` backend against the dense float64 reference: output and the three gradients.

On a machine without CUDA the kernels run under Triton's CPU interpreter (tests/ops/conftest.py
sets ``TRITON_INTERPRET=1``) on CPU tensors; on a CUDA machine the same tests run the compiled
kernels on the GPU. The kernels compute in fp32 (or bf16/fp16 with fp32 accumulation), so they
are held to fp32-level tolerances (bf16: at most about twice the error of a bf16 reference).
Shapes are small, and tiles of 16 make them span several blocks of rows and keys.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings

import swat.ops.attention as attention_module
import swat.ops.triton_attention as triton_backend
from swat.ops import alibi_slopes, swat_attention
from swat.ops.spec import AttentionSpec
from swat.ops.triton_attention import triton_attention
from tests.ops.helpers import left_padding, make_qkv, packed_segments, run
from tests.ops.test_property import problem_inputs, problems

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
FP32_TOLERANCE = dict(atol=2e-5, rtol=1e-4)


def test_triton_is_importable():
    """Triton is in the dev extra: a test install without it must fail here, not skip."""
    import triton  # noqa: F401

    assert triton_backend.triton_available()
    assert DEVICE.type == "cuda" or triton_backend.interpreted(), "no CUDA: set TRITON_INTERPRET=1"


@pytest.fixture
def tiles(monkeypatch):
    """Registers ``triton_b16`` (16 x 16 tiles, so small problems span several blocks) and
    ``triton_split4``, ``triton_split40`` (the split-band decoding path with shares of 4, 40 keys)."""
    backends = dict(attention_module.BACKENDS)
    backends["triton_b16"] = lambda q, k, v, spec: triton_attention(q, k, v, spec, blocks=(16, 16))
    backends["triton_split4"] = lambda q, k, v, spec: triton_attention(q, k, v, spec, blocks=(16, 16),
                                                                       keys_per_split=4)
    backends["triton_split40"] = lambda q, k, v, spec: triton_attention(q, k, v, spec, blocks=(16, 16),
                                                                        keys_per_split=40)
    monkeypatch.setattr(attention_module, "BACKENDS", backends)


def _on_device(inputs, dtype):
    return [x.detach().to(device=DEVICE, dtype=dtype).requires_grad_() for x in inputs]


def _exact(inputs):
    """float64 CPU copies of ``inputs`` (leaves)."""
    return [x.detach().cpu().double().requires_grad_() for x in inputs]


def _errors(got, got_grads, want, want_grads):
    pairs = zip((got, *got_grads), (want, *want_grads), strict=True)
    return [(g.detach().cpu().double() - w).abs().max().item() for g, w in pairs]


def check(qkv, backend="triton_b16", dtype=torch.float32, grads=True, **kwargs):
    """``backend`` in ``dtype`` on DEVICE against the float64 reference on the same (rounded)
    inputs: fp32 within FP32_TOLERANCE; bf16/fp16 at most twice (plus a hair) the error of the
    reference computed in that dtype. ``kwargs`` are swat_attention's (``segment_ids`` on CPU)."""
    inputs = _on_device(qkv, dtype)
    device_kwargs = {name: value.to(DEVICE) if isinstance(value, torch.Tensor) else value
                     for name, value in kwargs.items()}
    if grads:
        got, got_grads = run(*inputs, backend=backend, **device_kwargs)
        want, want_grads = run(*_exact(inputs), backend="reference", **kwargs)
    else:
        with torch.no_grad():
            got, got_grads = swat_attention(*inputs, backend=backend, **device_kwargs), ()
            want, want_grads = swat_attention(*_exact(inputs), backend="reference", **kwargs), ()
    assert got.dtype == dtype and got.shape == want.shape and got.device.type == DEVICE.type
    errors = _errors(got, got_grads, want, want_grads)
    names = ["output", "dq", "dk", "dv"][:len(errors)]
    if dtype == torch.float32:
        for name, g, w in zip(names, (got, *got_grads), (want, *want_grads), strict=False):
            torch.testing.assert_close(g.detach().cpu().double(), w, **FP32_TOLERANCE,
                                       msg=lambda m, n=name: f"{n} ({backend}): {m}")
        return
    low = [x.detach().cpu().to(dtype).requires_grad_() for x in qkv]
    if grads:
        ref_low, ref_low_grads = run(*low, backend="reference", **kwargs)
        ref_exact, ref_exact_grads = run(*_exact(low), backend="reference", **kwargs)
    else:
        with torch.no_grad():
            ref_low, ref_low_grads = swat_attention(*low, backend="reference", **kwargs), ()
            ref_exact, ref_exact_grads = swat_attention(*_exact(low), backend="reference", **kwargs), ()
    bounds = _errors(ref_low, ref_low_grads, ref_exact, ref_exact_grads)
    for name, ours, theirs in zip(names, errors, bounds, strict=True):
        assert ours <= 2 * theirs + 1e-3, f"{name} ({backend}, {dtype}): {ours:.3g} vs reference {theirs:.3g}"


# --- the band: windows x lengths ----------------------------------------------------------------

@pytest.mark.parametrize("window", [1, 2, 5, "kv_len", "beyond", None])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_windows(tiles, window, activation):
    """Windows 1, 2, odd, == kv_len, > kv_len and None; 37 positions (no multiple of 16), so the
    last block of rows and of keys is partial; head_dim 24 is no power of two."""
    window = {"kv_len": 37, "beyond": 50}.get(window, window)
    qkv = make_qkv(batch=2, q_len=37, heads=4, kv_heads=2, head_dim=24)
    check(qkv, window=window, slopes=alibi_slopes(4), sigmoid_bias=-0.5, activation=activation)


@pytest.mark.parametrize("q_len,kv_len", [(1, 1), (1, 50), (7, 30), (13, 14), (20, 53)])
@pytest.mark.parametrize("window", [4, None])
def test_queries_are_the_last_positions(tiles, q_len, kv_len, window):
    """q_len < kv_len (chunked prefill; q_len = 1 is a decoding step): the slopes use the true
    distance from the queries' positions ``kv_len - q_len ..``."""
    qkv = make_qkv(batch=2, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2, head_dim=16)
    check(qkv, window=window, slopes=alibi_slopes(4), sigmoid_bias=-1.0)


@pytest.mark.parametrize("q_len,kv_len", [(1, 50), (9, 30)])
def test_queries_are_the_last_positions_softmax(tiles, q_len, kv_len):
    qkv = make_qkv(batch=2, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2, head_dim=16)
    check(qkv, window=11, slopes=alibi_slopes(4), activation="softmax")


# --- interior and boundary blocks ------------------------------------------------------------------

@pytest.mark.parametrize("q_len,kv_len,window", [
    (100, 100, 40),  # the band starts and ends inside blocks; interior blocks in every loop
    (100, 100, 32),  # the band is two blocks wide
    (100, 100, 7),   # smaller than a block: no interior block
    (100, 100, 1),   # the diagonal only
    (70, 70, 200),   # larger than the sequence
    (45, 131, 50),   # chunked prefill: the queries' band starts mid-sequence
])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_interior_and_boundary_blocks(tiles, q_len, kv_len, window, activation):
    """16 x 16 tiles over 100 positions: every loop of the three kernels visits unmasked interior
    blocks (wholly inside the band) and masked boundary blocks (the band's edges, the partial last
    block); with G = 2 a block of rows spans 8 positions."""
    qkv = make_qkv(batch=1, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2, head_dim=16, seed=3)
    check(qkv, window=window, slopes=alibi_slopes(4), sigmoid_bias=-math.log(min(window, kv_len)),
          activation=activation)


def test_interior_blocks_with_segments_and_split_decoding(tiles):
    """Segment ids are compared in interior blocks too; a decoding split's share ends mid-block."""
    qkv = make_qkv(batch=2, q_len=90, heads=4, kv_heads=2, head_dim=16, seed=4)
    check(qkv, window=50, slopes=alibi_slopes(4), segment_ids=packed_segments(2, 90, seed=5))
    qkv = make_qkv(batch=2, q_len=3, kv_len=90, heads=4, kv_heads=2, head_dim=16, seed=6)
    check(qkv, backend="triton_split40", grads=False, window=70, slopes=alibi_slopes(4), activation="softmax")


# --- the fast-math switch ---------------------------------------------------------------------------

def test_fast_math_is_on_exactly_when_compiled():
    """The approximate reciprocal is inline PTX, which the interpreter cannot run: the switch
    follows it."""
    spec = AttentionSpec(window=4, slopes=None, sigmoid_bias=0.0, activation="sigmoid", scale=1.0)
    assert triton_backend._flags(spec, torch.float32, 64, 1)["FAST_MATH"] == (not triton_backend.interpreted())


# ex2.approx.ftz.f32 and rcp.approx.ftz.f32 (PTX ISA: at most 2 and 1 ulp), and the rounding of 1 + 2^x
FAST_MATH_ULPS = 2 + 1 + 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_math_error_bound(dtype):
    """Each sigmoid weight of the fast path is off by at most 3.5 float32 ulps, relative. Put on
    every weight with the worst sign (that of the value it multiplies), at window 512 with the
    model's bias and slopes, the output moves by less than the kernels' tolerances against float64
    (fp32: under a quarter of FP32_TOLERANCE's atol, 3.5e-6 here; bf16: under 1% of the error a
    bf16 reference has), so the fast path needs no exact fallback for float32. On a GPU the same
    inputs also run through the kernel itself."""
    window, n = 512, 700
    q, k, v = make_qkv(batch=1, q_len=n, heads=2, kv_heads=1, head_dim=64, seed=7)
    kwargs = dict(window=window, slopes=alibi_slopes(2), sigmoid_bias=-math.log(window))
    exact = swat_attention(q, k, v, backend="reference", **kwargs)
    with torch.no_grad():
        scores = q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2) / math.sqrt(64)
        delta = torch.arange(n)[:, None] - torch.arange(n)[None, :]
        slopes = alibi_slopes(2).double().view(1, 2, 1, 1)
        weights = torch.sigmoid(scores - slopes * delta + kwargs["sigmoid_bias"])
        weights = weights * ((delta >= 0) & (delta < window))
        torch.testing.assert_close((weights @ v.transpose(1, 2)).transpose(1, 2), exact)  # the same math
        shift = FAST_MATH_ULPS * 2.0 ** -23 * (weights @ v.transpose(1, 2).abs())
    fast_error = shift.abs().max().item()
    if dtype == torch.float32:
        assert fast_error < FP32_TOLERANCE["atol"] / 4, fast_error
    else:
        low = [x.to(dtype) for x in (q, k, v)]
        bf16_error = (swat_attention(*low, backend="reference", **kwargs).double()
                      - swat_attention(*(x.double() for x in low), backend="reference", **kwargs)).abs().max().item()
        assert fast_error < bf16_error / 100, (fast_error, bf16_error)
    print(f"fast-math worst-case output shift {fast_error:.3g} ({dtype})")
    if DEVICE.type == "cuda":  # the kernel itself, fast path on
        check((q, k, v), backend="triton", dtype=dtype, grads=False, **kwargs)


# --- heads, slopes, bias, segments ----------------------------------------------------------------

@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 1), (8, 2), (6, 3)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_gqa(tiles, heads, kv_heads, activation):
    """G = 1, 4, 4, 2 query heads per kv head (rows interleave the heads; dK, dV sum over them);
    with 6 heads and 16-row tiles a tile ends inside a position's group of heads."""
    qkv = make_qkv(batch=2, q_len=19, kv_len=23, heads=heads, kv_heads=kv_heads, head_dim=16)
    check(qkv, window=6, slopes=alibi_slopes(heads, "standard"), activation=activation)


@pytest.mark.parametrize("slopes", ["mixed", "balanced", None])
@pytest.mark.parametrize("sigmoid_bias", [0.0, -math.log(7), 1.5])
def test_slopes_of_both_signs_and_bias(tiles, slopes, sigmoid_bias):
    """Penalising (m > 0) and rewarding (m < 0) slopes, one steep rewarding one, and the bias b."""
    heads = 4
    values = {"mixed": alibi_slopes(heads, [0.3, -0.6, 0.05, -1.2]), "balanced": alibi_slopes(heads),
              None: None}[slopes]
    qkv = make_qkv(batch=2, q_len=21, heads=heads, kv_heads=2, head_dim=16)
    check(qkv, window=7, slopes=values, sigmoid_bias=sigmoid_bias)


@pytest.mark.parametrize("kind", ["packed", "left_padding"])
@pytest.mark.parametrize("q_len,kv_len", [(29, 29), (9, 29)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_segments(tiles, kind, q_len, kv_len, activation):
    segment_ids = packed_segments(3, kv_len, seed=2) if kind == "packed" else left_padding(3, kv_len)
    qkv = make_qkv(batch=3, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2, head_dim=16)
    check(qkv, window=12, slopes=alibi_slopes(4), activation=activation, segment_ids=segment_ids)


def test_explicit_scale(tiles):
    qkv = make_qkv(batch=1, q_len=20, heads=2, kv_heads=1, head_dim=16)
    check(qkv, window=9, scale=0.7, slopes=alibi_slopes(2))


# --- head sizes, dtypes, default tiles, layouts ----------------------------------------------------

@pytest.mark.parametrize("head_dim", [16, 40, 64, 100, 256])
def test_head_dims(head_dim):
    """head_dim 16 to 256, powers of two and not (the padding lanes are masked), default tiles."""
    qkv = make_qkv(batch=1, q_len=24, heads=2, kv_heads=1, head_dim=head_dim)
    check(qkv, backend="triton", window=10, slopes=alibi_slopes(2), sigmoid_bias=-1.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_low_precision(tiles, dtype, activation):
    """bf16/fp16 inputs, fp32 accumulation: output and gradients in the input dtype, with at most
    about twice the error a dense reference computed in that dtype has."""
    qkv = make_qkv(batch=2, q_len=40, heads=4, kv_heads=2, head_dim=32, seed=5)
    check(qkv, dtype=dtype, window=17, slopes=alibi_slopes(4), sigmoid_bias=-1.0, activation=activation)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_default_tiles_several_blocks(activation):
    """The tile sizes the GPU runs (64 x 64), over more than two blocks of rows and keys."""
    qkv = make_qkv(batch=1, q_len=150, heads=2, kv_heads=1, head_dim=32)
    check(qkv, backend="triton", window=70, slopes=alibi_slopes(2), activation=activation)


def test_strided_inputs():
    """q, k, v as views of one packed qkv tensor (the strides are passed to the kernels)."""
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 18, 3, 4, 16, generator=gen, dtype=torch.float64).to(DEVICE, torch.float32)
    q, k, v = qkv.unbind(2)
    got = swat_attention(q, k, v, window=5, slopes=alibi_slopes(4).to(DEVICE), backend="triton")
    want = swat_attention(*(x.cpu().double() for x in (q, k, v)), window=5, slopes=alibi_slopes(4),
                          backend="reference")
    torch.testing.assert_close(got.cpu().double(), want, **FP32_TOLERANCE)


def test_keys_and_values_in_different_layouts():
    """k contiguous, v a transposed view of a ``[batch, kv_heads, n, d]`` tensor (a cache's layout):
    each input's strides are its own, and so are the gradients'."""
    q, k, v = make_qkv(batch=2, q_len=7, kv_len=20, heads=4, kv_heads=2, head_dim=16)
    v_heads_first = v.detach().transpose(1, 2).contiguous().to(DEVICE, torch.float32).requires_grad_()
    inputs = [*_on_device((q, k), torch.float32), v_heads_first.transpose(1, 2)]
    got, got_grads = run(*inputs, window=6, slopes=alibi_slopes(4).to(DEVICE), backend="triton")
    want, want_grads = run(*_exact(inputs), window=6, slopes=alibi_slopes(4), backend="reference")
    for g, w in zip((got, *got_grads), (want, *want_grads), strict=True):
        torch.testing.assert_close(g.detach().cpu().double(), w, **FP32_TOLERANCE)


# --- decoding: the split band -----------------------------------------------------------------------

@pytest.mark.parametrize("q_len,kv_len,window", [(1, 1, 4), (1, 30, 13), (1, 30, None), (3, 30, 9)])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_split_band_decoding(tiles, q_len, kv_len, window, activation):
    """The band split in shares of 4 keys, combined (sigmoid: summed; softmax: rescaled by each
    share's maximum), as a decoding step or a few queries of chunked prefill; with segments, some
    shares have no visible key."""
    qkv = make_qkv(batch=3, q_len=q_len, kv_len=kv_len, heads=4, kv_heads=2, head_dim=16)
    check(qkv, backend="triton_split4", grads=False, window=window, slopes=alibi_slopes(4),
          sigmoid_bias=-0.5, activation=activation, segment_ids=packed_segments(3, kv_len, seed=4))


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_decoding_step_takes_the_split_path_by_default(monkeypatch, activation):
    """A decoding step against a long rolling cache (no gradient) splits its band by default, and
    matches the reference; with gradients it runs the fused autograd path."""
    calls = []
    forward = triton_backend._forward
    monkeypatch.setattr(triton_backend, "_forward",
                        lambda *args, **kwargs: calls.append(kwargs["keys_per_split"]) or forward(*args, **kwargs))
    kv_len = triton_backend.DECODE_KEYS_PER_SPLIT + 40
    qkv = make_qkv(batch=1, q_len=1, kv_len=kv_len, heads=4, kv_heads=2, head_dim=16)
    check(qkv, backend="triton", grads=False, window=kv_len - 3, slopes=alibi_slopes(4), activation=activation)
    assert calls == [triton_backend.DECODE_KEYS_PER_SPLIT]
    check(qkv, backend="triton", window=kv_len - 3, slopes=alibi_slopes(4), activation=activation)
    assert calls[1:] == [None]


# --- refusals -------------------------------------------------------------------------------------

def test_float64_is_refused_with_a_fix():
    q, k, v = (x.to(DEVICE) for x in make_qkv(batch=1, q_len=4, heads=2, kv_heads=1))
    with pytest.raises(ValueError, match="float64.*backend='chunked'"):
        swat_attention(q, k, v, window=3, backend="triton")


def test_wide_heads_are_refused_with_a_fix():
    q, k, v = (x.to(DEVICE) for x in make_qkv(batch=1, q_len=4, heads=2, kv_heads=1, head_dim=320,
                                                dtype=torch.float32))
    with pytest.raises(ValueError, match="head_dim <= 256"):
        swat_attention(q, k, v, window=3, backend="triton")


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = make_qkv(batch=1, q_len=4, heads=2, kv_heads=1, dtype=torch.float32)
    with pytest.raises(ValueError, match="CUDA tensors.*TRITON_INTERPRET=1"):
        swat_attention(q, k, v, window=3, backend="triton")


# --- through auto and the model --------------------------------------------------------------------

def test_auto_takes_triton_exactly_for_cuda_tensors(monkeypatch):
    """On CUDA ``auto`` runs the Triton kernels; CPU tensors never go there, interpreter or not."""
    calls = []
    backends = dict(attention_module.BACKENDS)
    backends["triton"] = lambda *args: calls.append(1) or triton_attention(*args)
    monkeypatch.setattr(attention_module, "BACKENDS", backends)
    q, k, v = _on_device(make_qkv(batch=1, q_len=9, kv_len=30, heads=2, kv_heads=1, head_dim=16), torch.float32)
    swat_attention(q, k, v, window=8, slopes=alibi_slopes(2).to(DEVICE), backend="auto")
    assert calls == ([1] if DEVICE.type == "cuda" else [])


def test_model_on_the_triton_backend():
    """A tiny SWAT model with ``attention_backend="triton"``: the loss, its gradients and greedy
    generation with the rolling cache (chunked prefill, then one query per step) agree with the
    reference backend."""
    from swat import SWATForCausalLM
    from tests.conftest import tiny_config

    models = {}
    for backend in ("triton", "reference"):
        torch.manual_seed(0)
        config = tiny_config(attention_backend=backend, pad_token_id=0, eos_token_id=None, bos_token_id=None)
        models[backend] = SWATForCausalLM(config).to(DEVICE)
    tokens = torch.randint(1, 97, (2, 21), generator=torch.Generator().manual_seed(0)).to(DEVICE)
    losses, grads = {}, {}
    for backend, model in models.items():
        losses[backend] = model(tokens, labels=tokens, use_cache=False).loss
        losses[backend].backward()
        grads[backend] = model.model.layers[0].self_attn.q_proj.weight.grad
    torch.testing.assert_close(losses["triton"], losses["reference"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads["triton"], grads["reference"], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        generated = {backend: model.eval().generate(tokens[:1, :13], max_new_tokens=6, do_sample=False,
                                                    pad_token_id=0)
                     for backend, model in models.items()}
    assert torch.equal(generated["triton"], generated["reference"])


def test_kernels_compile_for_a_gpu():
    """Without a GPU: Triton's compiler (to PTX and cubin, sm_90) accepts every kernel as the public
    op launches it, which the interpreter does not check, and the bf16/fp16 kernels at head_dim 64
    and 128 use no ``mma.sync`` and do not spill (tests/ops/compile_kernels.py; about 10 s of CPU
    per variant)."""
    if DEVICE.type == "cuda":
        pytest.skip("on a GPU every other test in this file compiles and runs the kernels")
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    result = subprocess.run([sys.executable, "-m", "tests.ops.compile_kernels", "--quick"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_swat_ops_works_without_triton():
    """Where Triton cannot be imported, ``import swat.ops`` and ``auto`` still work, and asking for
    the triton backend says what to install."""
    code = """
import sys
sys.modules["triton"] = None  # import triton raises ImportError
import pytest, torch
from swat.ops import BACKEND_NAMES, swat_attention
from swat.ops.triton_attention import triton_available
q = torch.randn(1, 6, 2, 8)
assert swat_attention(q, q, q, window=3, backend="auto").shape == q.shape
assert not triton_available() and "triton" in BACKEND_NAMES
with pytest.raises(ValueError, match="needs the triton package.*install it"):
    swat_attention(q, q, q, window=3, backend="triton")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


# Each example may compile new kernel variants on a GPU (mostly float32, the slowest to compile):
# scripts/gpu_check.sh caps them to fit its time.
RANDOM_EXAMPLES = int(os.environ.get("SWAT_RANDOM_EXAMPLES", "20"))


@settings(max_examples=RANDOM_EXAMPLES, deadline=None, database=None)
@given(problem=problems())
def test_random_problems_match_reference(problem):
    """Random shapes (head_dim 1 to 8, padded to 16 lanes), windows, GQA, slopes, bias and segments
    (the property test's problems), on the default and on 16 x 16 tiles; ``SWAT_RANDOM_EXAMPLES``
    of them (20)."""
    p = problem
    qkv, slopes, segment_ids = problem_inputs(p)
    with pytest.MonkeyPatch.context() as patch:
        backends = dict(attention_module.BACKENDS)
        backends["triton_b16"] = lambda q, k, v, spec: triton_attention(q, k, v, spec, blocks=(16, 16))
        patch.setattr(attention_module, "BACKENDS", backends)
        check(qkv, backend="triton_b16" if p["block"] % 2 else "triton", window=p["window"], slopes=slopes,
              sigmoid_bias=p["sigmoid_bias"], activation=p["activation"], segment_ids=segment_ids)
