"""``swat_attention``: the public op and backend dispatch (its inputs are checked by
:meth:`swat.ops.spec.AttentionSpec.checked`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from swat.errors import UserError
from swat.ops import device
from swat.ops import triton_attention as triton_backend
from swat.ops.chunked import DEFAULT_BLOCK, chunked_attention
from swat.ops.cpu_fused import fused_attention
from swat.ops.decode import decode_attention
from swat.ops.reference import reference_attention
from swat.ops.sdpa import sdpa_attention
from swat.ops.spec import AttentionSpec


def _dense_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: AttentionSpec) -> torch.Tensor:
    """The oracle keeps plain keyword arguments (it is also called directly); this adapts it."""
    return reference_attention(q, k, v, window=spec.window, slopes=spec.slopes, sigmoid_bias=spec.sigmoid_bias,
                               activation=spec.activation, scale=spec.scale, segment_ids=spec.segment_ids)


# Every backend is called as ``backend(q, k, v, spec)``.
BACKENDS: dict[str, Callable[..., torch.Tensor]] = {
    "reference": _dense_reference,
    "chunked": chunked_attention,
    "fused": fused_attention,
    "decode": decode_attention,
    "sdpa": sdpa_attention,
    "triton": triton_backend.triton_attention,
}
# Every value ``swat_attention``'s ``backend`` accepts, "auto" first.
BACKEND_NAMES = ("auto", *BACKENDS)

# ``auto``'s CPU rules. The measurements behind each are in docs/benchmarks.md ("What auto picks");
# benchmarks/bench_attention.py prints, per dtype, length and thread count, the faster of the banded
# kernels next to the pick, so a rule that no longer holds shows up there.
# - sigmoid: the dense reference (no per-tile overhead) on tiny square problems only.
_DENSE_PAIRS = 64 * 64
_DENSE_PAIRS_GRAD = 256 * 256
# - one query (a decoding step): the decode path.
# - softmax: PyTorch's fused causal SDPA for plain causal attention; SDPA with a band mask (cost
#   q_len * kv_len) while kv_len <= 1.25 (window + block), the banded kernel (about
#   q_len * (window + block)) beyond; the mask is q_len * kv_len values, hence the cap on its size.
_SDPA_MASK_RATIO = 1.25
_SDPA_MASK_MAX_PAIRS = 2 ** 24
# - otherwise the fused C++ kernel (``swat.ops.cpu_fused``, parallel over torch's threads) for fp32
#   and bf16 (and fp16 where it is upcast to fp32), at every length and thread count measured;
#   fp16 with native low-precision matmuls and float64 stay on ``chunked``.


def swat_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    window: int | None,
    slopes: torch.Tensor | None = None,
    sigmoid_bias: float = 0.0,
    activation: str = "sigmoid",
    scale: float | None = None,
    backend: str = "auto",
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal sliding-window attention with sigmoid (or softmax) weights, docs/spec.md section 1::

        s_ij = scale * (q_i . k_j) - m_h * (i - j) + b,   o_i = sum_{0 <= i-j < w} act(s_ij) v_j

    Args:
        q: ``[batch, q_len, heads, head_dim]``, the queries of the last ``q_len`` key positions.
            q, k, v share one floating dtype and one device (with ``slopes`` and ``segment_ids``).
        k, v: ``[batch, kv_len, kv_heads, head_dim]``, ``q_len <= kv_len``, ``heads % kv_heads == 0``
            (query head ``h`` reads kv head ``h // (heads / kv_heads)``).
        window: keys a query sees, itself included (``w >= 1``); ``None`` = full causal attention.
        slopes: ``[heads]`` floating ALiBi slopes ``m_h`` (``m > 0`` penalises distance), applied to
            the true distance ``i - j``. Treated as constants (no gradient).
        sigmoid_bias: the scalar ``b``, a finite Python number (a no-op under softmax).
        activation: ``"sigmoid"`` (SWAT) or ``"softmax"`` (baselines).
        scale: a finite Python number; defaults to ``head_dim ** -0.5``.
        backend: ``"auto"``, ``"reference"`` (dense oracle), ``"chunked"`` (banded, O(q_len * w)),
            ``"fused"`` (the banded op as one C++ CPU kernel per pass; fp64/fp16 run ``chunked``),
            ``"decode"`` (``q_len = 1`` only, a decoding step), ``"sdpa"`` (softmax only,
            PyTorch's fused attention) or ``"triton"`` (fused GPU kernels, fp16/bf16/fp32).
        segment_ids: optional ``[batch, kv_len]`` integers; a query sees only keys of its own
            segment (packed documents, left padding).

    Returns:
        ``[batch, q_len, heads, head_dim]`` in the dtype of ``q``. Without queries (``q_len = 0``,
        which ``kv_len = 0`` implies, or ``batch = 0``) that is an empty tensor, whatever the
        backend; its gradients are zeros.

    Raises:
        swat.errors.UserError: for inputs outside this contract, with what to change (checked by
            :meth:`AttentionSpec.checked`, which reads only metadata, never tensor values, so the
            checks cost no host sync).
    """
    spec = AttentionSpec.checked(q, k, v, window=window, slopes=slopes, sigmoid_bias=sigmoid_bias,
                                 activation=activation, scale=scale, segment_ids=segment_ids)
    _check_backend(backend, spec.activation)
    if q.shape[0] == 0 or q.shape[1] == 0:
        backend = "reference"  # no queries: the empty output, through the one path every shape takes
    elif backend == "auto":
        backend = pick_backend(q, k, spec)
    return BACKENDS[backend](q, k, v, spec)


def pick_backend(q: torch.Tensor, k: torch.Tensor, spec: AttentionSpec) -> str:
    """The fastest correct backend for these inputs: on a GPU the fused Triton kernels (PyTorch's
    flash attention for plain causal softmax), on the CPU the rules above."""
    q_len, kv_len = q.shape[1], k.shape[1]
    band = spec.band(kv_len)
    plain_causal = band == kv_len and spec.slopes is None and spec.segment_ids is None and q_len == kv_len
    if q.device.type == "cuda" and triton_backend.supports(q):
        return "sdpa" if spec.softmax and plain_causal else "triton"
    if q_len == 1:
        return "decode"
    if spec.softmax:
        if plain_causal:
            return "sdpa"  # fused causal kernel
        dense_is_cheap = kv_len <= _SDPA_MASK_RATIO * (band + DEFAULT_BLOCK)
        return "sdpa" if dense_is_cheap and q_len * kv_len <= _SDPA_MASK_MAX_PAIRS else _banded_backend(q)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
    if q_len * kv_len <= (_DENSE_PAIRS_GRAD if grad else _DENSE_PAIRS):
        return "reference"
    return _banded_backend(q)


def _banded_backend(q: torch.Tensor) -> str:
    """``fused`` for the CPU dtypes its kernel computes (the rules above), else ``chunked``. Where the fused kernel cannot be built, ``fused`` runs ``chunked`` itself."""
    if q.device.type != "cpu":
        return "chunked"
    upcast = q.dtype == torch.float16 and not device.fast_low_precision_matmul(q.device)
    return "fused" if q.dtype in (torch.float32, torch.bfloat16) or upcast else "chunked"


def _check_backend(backend: str, activation: str) -> None:
    if backend != "auto" and backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: use 'auto' or one of {sorted(BACKENDS)}")
    if backend == "sdpa" and activation != "softmax":
        raise UserError("backend='sdpa' computes softmax attention only; use backend='chunked' for sigmoid")
