"""The contract of the fast backends: one spec object, and the score term built one way.

Every backend but the dense reference is called as ``backend(q, k, v, spec)`` with the
:class:`AttentionSpec` below, and builds the additive term of its scores (docs/spec.md section 1)::

    s_ij = scale * (q_i . k_j) + (b - m_h * delta),   delta = i - j,
    kept iff 0 <= delta < w and segment(i) == segment(j)

from the helpers of this module. ``swat.ops.reference`` does not use them: the oracle stays
self-contained, so it checks these helpers rather than sharing them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from swat.errors import UserError

ACTIVATIONS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class AttentionSpec:
    """What a backend computes besides ``q``, ``k``, ``v`` (the arguments of
    :func:`swat.ops.swat_attention`, ``scale`` resolved). :meth:`checked` makes one from a
    user's arguments; backends and tests that already hold valid values call the plain
    constructor."""

    window: int | None
    slopes: torch.Tensor | None
    sigmoid_bias: float
    activation: str
    scale: float
    segment_ids: torch.Tensor | None = None

    def band(self, kv_len: int) -> int:
        """Keys a query sees at most: ``min(w, kv_len)`` (``kv_len`` without a window)."""
        return kv_len if self.window is None else min(self.window, kv_len)

    @property
    def softmax(self) -> bool:
        return self.activation == "softmax"

    def op_arguments(self) -> tuple[torch.Tensor | None, torch.Tensor | None, int | None, float, bool, float]:
        """The spec as arguments of a custom op (tensors, numbers and flags, which ``torch.library``
        and ``torch.compile`` take): ``(slopes, segment_ids, window, sigmoid_bias, softmax, scale)``;
        :meth:`from_op_arguments` inverts it."""
        return self.slopes, self.segment_ids, self.window, self.sigmoid_bias, self.softmax, self.scale

    @classmethod
    def from_op_arguments(cls, slopes: torch.Tensor | None, segment_ids: torch.Tensor | None, window: int | None,
                          sigmoid_bias: float, softmax: bool, scale: float) -> AttentionSpec:
        return cls(window=window, slopes=slopes, sigmoid_bias=sigmoid_bias,
                   activation="softmax" if softmax else "sigmoid", scale=scale, segment_ids=segment_ids)

    @classmethod
    def checked(
        cls,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        window: int | None,
        slopes: torch.Tensor | None,
        sigmoid_bias: float,
        activation: str,
        scale: float | None,
        segment_ids: torch.Tensor | None,
    ) -> AttentionSpec:
        """The spec of ``swat_attention(q, k, v, ...)`` (``scale`` defaults to ``head_dim ** -0.5``),
        after checking every argument against the op's contract; a :class:`swat.errors.UserError`
        says what to change. The checks read metadata only (types, shapes, dtypes, devices,
        Python numbers), never a tensor's values: a decoding step pays no host sync for them."""
        _check_qkv(q, k, v)
        _check_slopes(slopes, q)
        _check_segment_ids(segment_ids, q, k)
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise UserError(f"window must be an int >= 1 (keys seen, the query itself included) or None, got {window!r}")
        _check_finite("sigmoid_bias", sigmoid_bias)
        if scale is not None:
            _check_finite("scale", scale)
        if activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        return cls(window=window, slopes=slopes, sigmoid_bias=float(sigmoid_bias), activation=activation,
                   scale=q.shape[-1] ** -0.5 if scale is None else float(scale), segment_ids=segment_ids)


def _check_qkv(q, k, v) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise UserError(f"{name} must be a torch.Tensor [batch, seq, heads, head_dim], got {type(x).__name__}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise UserError(f"q, k, v must be 4-D [batch, seq, heads, head_dim]; got shapes {tuple(q.shape)}, "
                        f"{tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape:
        raise UserError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    _check_shapes(q.shape, k.shape)
    dtype = q.dtype
    if dtype != k.dtype or dtype != v.dtype:
        raise UserError(f"q, k, v must share a dtype, got {dtype}, {k.dtype}, {v.dtype}")
    if not dtype.is_floating_point:
        raise UserError(f"q, k, v must be floating point (float16, bfloat16, float32 or float64), got {dtype}; "
                        "convert them first, e.g. q.float()")
    if k.device != q.device or v.device != q.device:
        _refuse_other_devices(q.device, k=k.device, v=v.device)


def _check_shapes(q_shape: torch.Size, k_shape: torch.Size) -> None:
    """``q [batch, q_len, heads, head_dim]`` against ``k [batch, kv_len, kv_heads, head_dim]``."""
    batch, q_len, heads, head_dim = q_shape
    if batch != k_shape[0] or head_dim != k_shape[3]:
        raise UserError(f"q and k must agree on batch and head_dim: q {tuple(q_shape)}, k {tuple(k_shape)}")
    if min(heads, k_shape[2], head_dim) < 1:
        raise UserError(f"heads, kv_heads and head_dim must be >= 1, got q {tuple(q_shape)}, k {tuple(k_shape)}; "
                        "check the reshape into [batch, seq, heads, head_dim]")
    if q_len > k_shape[1]:
        raise UserError(f"q_len ({q_len}) must be <= kv_len ({k_shape[1]}): the queries are the last q_len "
                        "positions of the keys; pass the cached keys together with the new ones")
    if heads % k_shape[2]:
        raise UserError(f"heads ({heads}) must be a multiple of kv_heads ({k_shape[2]}) for GQA")


def _refuse_other_devices(device: torch.device, **devices: torch.device) -> None:
    elsewhere = [f"{name} on {other}" for name, other in devices.items() if other != device]
    if elsewhere:
        raise UserError(f"every tensor argument must be on q's device ({device}), got {', '.join(elsewhere)}; "
                        "move it there with .to(q.device)")


def _check_slopes(slopes, q: torch.Tensor) -> None:
    if slopes is None:
        return
    if not isinstance(slopes, torch.Tensor):
        raise UserError(f"slopes must be a float tensor [heads] (e.g. swat.ops.alibi_slopes(heads)) or None, "
                        f"got {type(slopes).__name__}")
    if tuple(slopes.shape) != (q.shape[2],):
        raise UserError(f"slopes must have shape [heads] = [{q.shape[2]}], got {tuple(slopes.shape)}")
    if not slopes.dtype.is_floating_point:
        raise UserError(f"slopes must be floating point (ALiBi slopes are fractions), got {slopes.dtype}; "
                        "pass swat.ops.alibi_slopes(heads) or convert with .float()")
    if slopes.device != q.device:
        _refuse_other_devices(q.device, slopes=slopes.device)


def _check_segment_ids(segment_ids, q: torch.Tensor, k: torch.Tensor) -> None:
    if segment_ids is None:
        return
    if not isinstance(segment_ids, torch.Tensor):
        raise UserError(f"segment_ids must be an integer tensor [batch, kv_len] or None, "
                        f"got {type(segment_ids).__name__}")
    if tuple(segment_ids.shape) != (k.shape[0], k.shape[1]):
        raise UserError(f"segment_ids must have shape [batch, kv_len] = [{k.shape[0]}, {k.shape[1]}], "
                        f"got {tuple(segment_ids.shape)}")
    dtype = segment_ids.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise UserError(f"segment_ids must be integers (one id per document), got {dtype}; convert them with "
                        ".long() (a padding mask becomes segment ids as mask.long())")
    if segment_ids.device != q.device:
        _refuse_other_devices(q.device, segment_ids=segment_ids.device)


def _check_finite(name: str, value) -> None:
    # ``type`` first: a float is the common case, and the ABC check costs more than the rest
    is_number = type(value) is float or (isinstance(value, numbers.Real) and not isinstance(value, bool))
    if not (is_number and math.isfinite(value)):
        raise UserError(f"{name} must be a finite Python number, got {value!r}; pass a float such as -1.0 "
                        "(a tensor would need a host sync to read)")


def distances(q_len: int, kv_len: int, device: torch.device | None = None) -> torch.Tensor:
    """``delta[r, j] = i - j`` (integers) where the ``q_len`` queries are the last positions of
    ``kv_len`` keys (query ``r`` sits at ``i = kv_len - q_len + r``)."""
    positions_q = torch.arange(kv_len - q_len, kv_len, device=device)
    return positions_q[:, None] - torch.arange(kv_len, device=device)[None, :]


def position_term(spec: AttentionSpec, delta: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``b - m_h * delta`` as ``[heads, *delta.shape]``, or ``[1, *delta.shape]`` without slopes."""
    delta = delta.to(dtype)
    if spec.slopes is None:
        return torch.full_like(delta, spec.sigmoid_bias)[None]
    slopes = spec.slopes.to(device=delta.device, dtype=dtype).view(-1, *([1] * delta.dim()))
    return spec.sigmoid_bias - slopes * delta[None]


def outside_band(spec: AttentionSpec, delta: torch.Tensor) -> torch.Tensor:
    """True where ``delta`` is not in the band ``0 <= delta < w``."""
    outside = delta < 0
    if spec.window is not None:
        outside |= delta >= spec.window
    return outside


def other_segment(segment_ids: torch.Tensor, queries: slice, keys: slice) -> torch.Tensor:
    """``[batch, len(queries), len(keys)]``: True where key position ``j`` lies in another segment
    than query position ``i`` (positions are key positions)."""
    return segment_ids[:, queries, None] != segment_ids[:, None, keys]


def additive_mask(spec: AttentionSpec, q_len: int, kv_len: int, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """The whole term as a dense float mask ``[batch or 1, heads or 1, q_len, kv_len]``:
    ``b - m_h * delta`` in the band, ``-inf`` outside it and across segments."""
    delta = distances(q_len, kv_len, device)
    term = position_term(spec, delta, dtype).masked_fill(outside_band(spec, delta), float("-inf"))[None]
    if spec.segment_ids is not None:
        other = other_segment(spec.segment_ids, slice(kv_len - q_len, kv_len), slice(0, kv_len))
        term = term.masked_fill(other[:, None], float("-inf"))
    return term
