"""The Triton kernels of the ``triton`` backend (docs/spec.md section 1), launched by
:mod:`swat.ops.triton_attention`.

Rows
    A program works on one batch element ``b`` and one kv head. The ``G = H / H_kv`` query heads
    that read that kv head are interleaved into the rows of one matrix ordered (position, head):
    row ``t`` is query position ``r = t // G`` (0-based among the ``q_len`` queries, at key
    position ``i = kv_len - q_len + r``) of query head ``h = kv_head * G + t % G``. So a key tile
    is loaded once for all ``G`` heads (GQA without repeated K/V), and a decoding step
    (``q_len = 1``) fills a tile with its ``G`` heads.

Band
    Rows ``[t0, t1)`` span positions ``i0 .. i1`` and need keys ``max(0, i0 - w + 1) .. i1``
    only, so every loop visits ``O(window)`` keys. Inside a tile the score is::

        s = scale * q . k - m_h * (i - j) + b,   kept iff 0 <= i - j < w (and same segment)

    with ``m_h`` the slope of the row's head. Weights are ``sigmoid(s)`` (no running max, no
    normaliser) or, for the softmax baselines, ``exp(s - max)`` with the online normaliser; the
    softmax forward stores the log-sum-exp of each row for the backward.

Backward
    With ``P`` the weights and ``dO`` the output gradient (``dS`` is the score gradient)::

        dV = P^T dO,   dP = dO V^T,   dQ = scale * dS K,   dK = scale * dS^T Q
        sigmoid: dS = dP * P * (1 - P)      softmax: dS = P * (dP - rowsum(dO * O))

    Two kernels recompute ``P`` tile by tile (nothing ``q_len x window`` is stored): one program
    per key block accumulates its ``dK``, ``dV`` over all the rows (all ``G`` heads) that see it,
    one program per row block its ``dQ``; no output is written by two programs, so no atomics.

Matmuls run in the input dtype with float32 accumulation (``input_precision="ieee"``: no TF32 for
float32 inputs); scores, weights and accumulators are float32, and the weights (score gradients)
are cast to the input dtype only as matmul operands. ``UPCAST`` (set under the interpreter for
16-bit inputs) turns the loaded tiles into float32 instead. Only long-stable ``tl`` APIs are
used (loads and stores with masks, ``dot``, ``exp``, ``where``), so the kernels run on Triton 3.6
and later, and under Triton's CPU interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _row_geometry(row0, q_len, group, offset, BLOCK_M: tl.constexpr):
    """Rows ``row0 .. row0 + BLOCK_M`` as (row mask, query position r, head in group, key position i)."""
    rows = row0 + tl.arange(0, BLOCK_M)
    row_ok = rows < q_len * group
    r = rows // group
    return row_ok, r, rows % group, offset + r


@triton.jit
def _load_rows(Ptr, b, r, head, d, io_mask, s_b, s_n, s_h, s_d, UPCAST: tl.constexpr):
    """A ``[BLOCK_M, BLOCK_D]`` tile of a query-shaped tensor (``q``, ``dO``) at rows ``(r, head)``."""
    tile = tl.load(Ptr + b * s_b + r[:, None] * s_n + head[:, None] * s_h + d[None, :] * s_d,
                   mask=io_mask, other=0.0)
    if UPCAST:
        tile = tile.to(tl.float32)
    return tile


@triton.jit
def _row_terms(Slopes, Segments, b, r, head, pos_i, row_ok, sseg_b, sseg_n,
               HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr, BLOCK_M: tl.constexpr):
    """Each row's slope ``m_h`` (0 without slopes) and segment id (its position without segments)."""
    slope = tl.zeros([BLOCK_M], dtype=tl.float32)
    if HAS_SLOPES:
        slope = tl.load(Slopes + head, mask=row_ok, other=0.0)
    seg_i = r
    if HAS_SEGMENTS:
        seg_i = tl.load(Segments + b * sseg_b + pos_i * sseg_n, mask=row_ok, other=-1)
    return slope, seg_i


@triton.jit
def _softmax_rows(Lse, RowDot, b, r, head, row_ok, sl_b, sl_h, sl_n,
                  SOFTMAX: tl.constexpr, BLOCK_M: tl.constexpr):
    """Each row's saved log-sum-exp and ``rowsum(dO * O)`` for the softmax backward (zeros for sigmoid)."""
    lse = tl.zeros([BLOCK_M], dtype=tl.float32)
    row_dot = tl.zeros([BLOCK_M], dtype=tl.float32)
    if SOFTMAX:
        lse = tl.load(Lse + b * sl_b + head * sl_h + r * sl_n, mask=row_ok, other=0.0)
        row_dot = tl.load(RowDot + b * sl_b + head * sl_h + r * sl_n, mask=row_ok, other=0.0)
    return lse, row_dot


@triton.jit
def _key_side(K, V, Segments, b, pos_j, col_ok, kv_head, d, d_ok,
              sk_b, sk_n, sk_h, sk_d, sv_b, sv_n, sv_h, sv_d, sseg_b, sseg_n,
              HAS_SEGMENTS: tl.constexpr, UPCAST: tl.constexpr):
    """A block of keys at positions ``pos_j``: its ``K`` and ``V`` tiles ``[BLOCK_N, BLOCK_D]`` and
    its segment ids (its positions without segments)."""
    mask = col_ok[:, None] & d_ok[None, :]
    k_tile = tl.load(K + b * sk_b + pos_j[:, None] * sk_n + kv_head * sk_h + d[None, :] * sk_d,
                     mask=mask, other=0.0)
    v_tile = tl.load(V + b * sv_b + pos_j[:, None] * sv_n + kv_head * sv_h + d[None, :] * sv_d,
                     mask=mask, other=0.0)
    if UPCAST:
        k_tile = k_tile.to(tl.float32)
        v_tile = v_tile.to(tl.float32)
    seg_j = pos_j
    if HAS_SEGMENTS:
        seg_j = tl.load(Segments + b * sseg_b + pos_j * sseg_n, mask=col_ok, other=-2)
    return k_tile, v_tile, seg_j


@triton.jit
def _scores(q, k_tile, pos_i, pos_j, row_ok, col_ok, slope, seg_i, seg_j, scale, sigmoid_bias, window,
            HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """One tile's scores ``[BLOCK_M, BLOCK_N]`` (float32) and the mask of the pairs in the band."""
    s = tl.dot(q, tl.trans(k_tile), input_precision=INPUT_PRECISION) * scale + sigmoid_bias
    delta = pos_i[:, None] - pos_j[None, :]
    if HAS_SLOPES:
        s = s - slope[:, None] * delta.to(tl.float32)
    keep = (delta >= 0) & (delta < window) & row_ok[:, None] & col_ok[None, :]
    if HAS_SEGMENTS:
        keep = keep & (seg_i[:, None] == seg_j[None, :])
    return s, keep


# Lengths and the window change from call to call (a decoding cache grows by one key per step): they
# are not specialised on (Triton would compile a variant per divisibility class of each).
@triton.jit(do_not_specialize=["q_len", "kv_len", "window", "keys_per_split"])
def attention_forward_kernel(
    Q, K, V, Out, Lse, Slopes, Segments,
    sq_b, sq_n, sq_h, sq_d,
    sk_b, sk_n, sk_h, sk_d,
    sv_b, sv_n, sv_h, sv_d,
    so_s, so_b, so_n, so_h, so_d,
    sl_s, sl_b, sl_h, sl_n,
    sseg_b, sseg_n,
    q_len, kv_len, num_heads, group, head_dim, window, keys_per_split,
    scale, sigmoid_bias,
    SOFTMAX: tl.constexpr, HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr,
    PARTIAL: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid ``(row blocks, batch * kv_heads, splits)``. Without ``PARTIAL``: the output (and,
    for softmax, the log-sum-exp). With ``PARTIAL`` (decoding, the band split over programs):
    split ``s`` covers keys ``[lo + s * keys_per_split, lo + (s + 1) * keys_per_split)`` of the
    block's band ``[lo, hi)`` and writes its float32 partial sum at ``s`` (softmax: unnormalised,
    with its running max and normaliser as the (max, sum) pairs of ``Lse``)."""
    row0 = tl.program_id(0) * BLOCK_M
    b = (tl.program_id(1) // (num_heads // group)).to(tl.int64)  # int64 offsets: no overflow on big tensors
    kv_head = tl.program_id(1) % (num_heads // group)
    split = tl.program_id(2)
    offset = kv_len - q_len
    row_ok, r, g, pos_i = _row_geometry(row0, q_len, group, offset, BLOCK_M)
    head = kv_head * group + g
    d = tl.arange(0, BLOCK_D)
    d_ok = d < head_dim

    q = _load_rows(Q, b, r, head, d, row_ok[:, None] & d_ok[None, :], sq_b, sq_n, sq_h, sq_d, UPCAST)
    slope, seg_i = _row_terms(Slopes, Segments, b, r, head, pos_i, row_ok, sseg_b, sseg_n,
                              HAS_SLOPES, HAS_SEGMENTS, BLOCK_M)

    first_i = offset + row0 // group
    last_i = offset + (tl.minimum(row0 + BLOCK_M, q_len * group) - 1) // group
    lo = tl.maximum(first_i - window + 1, 0)
    hi = last_i + 1
    if PARTIAL:
        lo = lo + split * keys_per_split
        hi = tl.minimum(hi, lo + keys_per_split)

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    run_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    for start in range(lo, hi, BLOCK_N):
        pos_j = start + tl.arange(0, BLOCK_N)
        col_ok = pos_j < hi
        k_tile, v_tile, seg_j = _key_side(K, V, Segments, b, pos_j, col_ok, kv_head, d, d_ok,
                                          sk_b, sk_n, sk_h, sk_d, sv_b, sv_n, sv_h, sv_d, sseg_b, sseg_n,
                                          HAS_SEGMENTS, UPCAST)
        s, keep = _scores(q, k_tile, pos_i, pos_j, row_ok, col_ok, slope, seg_i, seg_j, scale,
                          sigmoid_bias, window, HAS_SLOPES, HAS_SEGMENTS, INPUT_PRECISION)
        if SOFTMAX:
            s = tl.where(keep, s, float("-inf"))
            new_max = tl.maximum(run_max, tl.max(s, 1))
            safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)
            rescale = tl.exp(run_max - safe_max)
            p = tl.exp(s - safe_max[:, None])
            run_sum = run_sum * rescale + tl.sum(p, 1)
            acc = acc * rescale[:, None]
            run_max = new_max
        else:
            p = tl.where(keep, 1.0 / (1.0 + tl.exp(-s)), 0.0)
        acc += tl.dot(p.to(v_tile.dtype), v_tile, input_precision=INPUT_PRECISION)

    out_rows = Out + split * so_s + b * so_b + r[:, None] * so_n + head[:, None] * so_h + d[None, :] * so_d
    lse_rows = Lse + split * sl_s + b * sl_b + head * sl_h + r * sl_n
    if PARTIAL:
        tl.store(out_rows, acc, mask=row_ok[:, None] & d_ok[None, :])
        if SOFTMAX:
            tl.store(lse_rows, run_max, mask=row_ok)
            tl.store(lse_rows + 1, run_sum, mask=row_ok)
    else:
        if SOFTMAX:
            safe_sum = tl.where(run_sum > 0, run_sum, 1.0)
            acc = acc / safe_sum[:, None]
            tl.store(lse_rows, run_max + tl.log(safe_sum), mask=row_ok)
        tl.store(out_rows, acc.to(Out.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


@triton.jit
def _weights_and_score_grads(q, k_tile, v_tile, do, pos_i, pos_j, row_ok, col_ok, slope, seg_i, seg_j,
                             lse, row_dot, scale, sigmoid_bias, window,
                             SOFTMAX: tl.constexpr, HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr,
                             INPUT_PRECISION: tl.constexpr):
    """Recomputed weights ``P`` and score gradients ``dS`` of one tile (float32)."""
    s, keep = _scores(q, k_tile, pos_i, pos_j, row_ok, col_ok, slope, seg_i, seg_j, scale, sigmoid_bias,
                      window, HAS_SLOPES, HAS_SEGMENTS, INPUT_PRECISION)
    dp = tl.dot(do, tl.trans(v_tile), input_precision=INPUT_PRECISION)
    if SOFTMAX:
        p = tl.where(keep, tl.exp(s - lse[:, None]), 0.0)
        ds = p * (dp - row_dot[:, None])
    else:
        p = tl.where(keep, 1.0 / (1.0 + tl.exp(-s)), 0.0)
        ds = dp * p * (1.0 - p)
    return p, ds


@triton.jit(do_not_specialize=["q_len", "kv_len", "window"])
def attention_backward_dkdv_kernel(
    Q, K, V, dO, Lse, RowDot, dK, dV, Slopes, Segments,
    sq_b, sq_n, sq_h, sq_d,
    sk_b, sk_n, sk_h, sk_d,
    sv_b, sv_n, sv_h, sv_d,
    sdo_b, sdo_n, sdo_h, sdo_d,
    sl_b, sl_h, sl_n,
    sdk_b, sdk_n, sdk_h, sdk_d,
    sseg_b, sseg_n,
    q_len, kv_len, num_heads, group, head_dim, window,
    scale, sigmoid_bias,
    SOFTMAX: tl.constexpr, HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr,
    UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid ``(key blocks, batch * kv_heads)``: ``dK``, ``dV`` of one key block, summed over the
    rows of all ``G`` query heads whose band contains it. ``dK``, ``dV`` share strides."""
    j0 = tl.program_id(0) * BLOCK_N
    b = (tl.program_id(1) // (num_heads // group)).to(tl.int64)  # int64 offsets: no overflow on big tensors
    kv_head = tl.program_id(1) % (num_heads // group)
    offset = kv_len - q_len
    d = tl.arange(0, BLOCK_D)
    d_ok = d < head_dim
    pos_j = j0 + tl.arange(0, BLOCK_N)
    col_ok = pos_j < kv_len
    k_tile, v_tile, seg_j = _key_side(K, V, Segments, b, pos_j, col_ok, kv_head, d, d_ok,
                                      sk_b, sk_n, sk_h, sk_d, sv_b, sv_n, sv_h, sv_d, sseg_b, sseg_n,
                                      HAS_SEGMENTS, UPCAST)

    # queries at positions j0 .. j0 + BLOCK_N - 1 + window - 1 see these keys
    first_r = tl.maximum(j0 - offset, 0)
    last_r = tl.minimum(j0 + BLOCK_N - 1 + window - 1 - offset, q_len - 1)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for row0 in range(first_r * group, (last_r + 1) * group, BLOCK_M):
        row_ok, r, g, pos_i = _row_geometry(row0, q_len, group, offset, BLOCK_M)
        head = kv_head * group + g
        io_mask = row_ok[:, None] & d_ok[None, :]
        q = _load_rows(Q, b, r, head, d, io_mask, sq_b, sq_n, sq_h, sq_d, UPCAST)
        do = _load_rows(dO, b, r, head, d, io_mask, sdo_b, sdo_n, sdo_h, sdo_d, UPCAST)
        slope, seg_i = _row_terms(Slopes, Segments, b, r, head, pos_i, row_ok, sseg_b, sseg_n,
                                  HAS_SLOPES, HAS_SEGMENTS, BLOCK_M)
        lse, row_dot = _softmax_rows(Lse, RowDot, b, r, head, row_ok, sl_b, sl_h, sl_n, SOFTMAX, BLOCK_M)
        p, ds = _weights_and_score_grads(q, k_tile, v_tile, do, pos_i, pos_j, row_ok, col_ok, slope, seg_i,
                                         seg_j, lse, row_dot, scale, sigmoid_bias, window,
                                         SOFTMAX, HAS_SLOPES, HAS_SEGMENTS, INPUT_PRECISION)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=INPUT_PRECISION)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=INPUT_PRECISION)

    out_mask = col_ok[:, None] & d_ok[None, :]
    out_offsets = b * sdk_b + pos_j[:, None] * sdk_n + kv_head * sdk_h + d[None, :] * sdk_d
    tl.store(dK + out_offsets, (dk * scale).to(dK.dtype.element_ty), mask=out_mask)
    tl.store(dV + out_offsets, dv.to(dV.dtype.element_ty), mask=out_mask)


@triton.jit(do_not_specialize=["q_len", "kv_len", "window"])
def attention_backward_dq_kernel(
    Q, K, V, dO, Lse, RowDot, dQ, Slopes, Segments,
    sq_b, sq_n, sq_h, sq_d,
    sk_b, sk_n, sk_h, sk_d,
    sv_b, sv_n, sv_h, sv_d,
    sdo_b, sdo_n, sdo_h, sdo_d,
    sl_b, sl_h, sl_n,
    sdq_b, sdq_n, sdq_h, sdq_d,
    sseg_b, sseg_n,
    q_len, kv_len, num_heads, group, head_dim, window,
    scale, sigmoid_bias,
    SOFTMAX: tl.constexpr, HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr,
    UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid ``(row blocks, batch * kv_heads)``: ``dQ`` of one block of rows, over its band."""
    row0 = tl.program_id(0) * BLOCK_M
    b = (tl.program_id(1) // (num_heads // group)).to(tl.int64)  # int64 offsets: no overflow on big tensors
    kv_head = tl.program_id(1) % (num_heads // group)
    offset = kv_len - q_len
    row_ok, r, g, pos_i = _row_geometry(row0, q_len, group, offset, BLOCK_M)
    head = kv_head * group + g
    d = tl.arange(0, BLOCK_D)
    d_ok = d < head_dim
    io_mask = row_ok[:, None] & d_ok[None, :]
    q = _load_rows(Q, b, r, head, d, io_mask, sq_b, sq_n, sq_h, sq_d, UPCAST)
    do = _load_rows(dO, b, r, head, d, io_mask, sdo_b, sdo_n, sdo_h, sdo_d, UPCAST)
    slope, seg_i = _row_terms(Slopes, Segments, b, r, head, pos_i, row_ok, sseg_b, sseg_n,
                              HAS_SLOPES, HAS_SEGMENTS, BLOCK_M)
    lse, row_dot = _softmax_rows(Lse, RowDot, b, r, head, row_ok, sl_b, sl_h, sl_n, SOFTMAX, BLOCK_M)

    first_i = offset + row0 // group
    last_i = offset + (tl.minimum(row0 + BLOCK_M, q_len * group) - 1) // group
    lo = tl.maximum(first_i - window + 1, 0)
    hi = last_i + 1
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start in range(lo, hi, BLOCK_N):
        pos_j = start + tl.arange(0, BLOCK_N)
        col_ok = pos_j < hi
        k_tile, v_tile, seg_j = _key_side(K, V, Segments, b, pos_j, col_ok, kv_head, d, d_ok,
                                          sk_b, sk_n, sk_h, sk_d, sv_b, sv_n, sv_h, sv_d, sseg_b, sseg_n,
                                          HAS_SEGMENTS, UPCAST)
        p, ds = _weights_and_score_grads(q, k_tile, v_tile, do, pos_i, pos_j, row_ok, col_ok, slope, seg_i,
                                         seg_j, lse, row_dot, scale, sigmoid_bias, window,
                                         SOFTMAX, HAS_SLOPES, HAS_SEGMENTS, INPUT_PRECISION)
        dq += tl.dot(ds.to(k_tile.dtype), k_tile, input_precision=INPUT_PRECISION)

    tl.store(dQ + b * sdq_b + r[:, None] * sdq_n + head[:, None] * sdq_h + d[None, :] * sdq_d,
             (dq * scale).to(dQ.dtype.element_ty), mask=io_mask)
