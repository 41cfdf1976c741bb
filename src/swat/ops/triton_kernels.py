"""The Triton kernels of the ``triton`` backend (docs/spec.md section 1), launched by
:mod:`swat.ops.triton_attention`; how they map to Hopper's machine code: docs/gpu-kernels.md.

Rows
    A program works on one batch element ``b`` and one kv head. The ``G = H / H_kv`` query heads
    that read that kv head are interleaved into the rows of one matrix ordered (position, head):
    row ``t`` is query position ``r = t // G`` (0-based among the ``q_len`` queries, at key
    position ``i = kv_len - q_len + r``) of query head ``h = kv_head * G + t % G``. So a key tile
    is loaded once for all ``G`` heads (GQA without repeated K/V), and a decoding step
    (``q_len = 1``) fills a tile with its ``G`` heads.

Scores, in base 2
    The score ``s = scale * q.k - m_h * (i - j) + b`` is kept iff ``0 <= i - j < w`` (and, with
    segments, ``i`` and ``j`` lie in one segment). The kernels compute ``x = sign * log2(e) * s``
    with ``sign = -1`` for sigmoid and ``+1`` for softmax, the constants folded on the host
    (``qk_coef = sign * log2(e) * scale``, ``bias2 = sign * log2(e) * b``, slopes
    ``sign * log2(e) * m_h``). Relative to a tile's origin ``o`` (its first key),
    ``i - j = (i - o) - (j - o)``, so per element ALiBi is one multiply-add of a per-row term
    ``bias2 - m2_h * (i - o)`` and a per-column one ``m2_h * (j - o)``::

        x = qk_coef * q.k + (row_term + m2_h * (j - o))
        sigmoid: p = 1 / (1 + exp2(x))           softmax: p = exp2(x - max) (online normaliser)

    ``exp2`` is one ``MUFU.EX2``; the reciprocal is ``rcp.approx.ftz.f32`` (inline PTX) with
    ``FAST_MATH``, else an exact division (the interpreter runs no PTX). The softmax forward stores
    ``log2`` of each row's normaliser plus its maximum (base 2) for the backward.

Band, interior and boundary blocks
    Rows ``[t0, t1)`` span positions ``i0 .. i1`` and need keys ``max(0, i0 - w + 1) .. i1``
    only, so every loop visits ``O(window)`` keys. A key block every pair of which lies in the
    band (``j >= i1 - w + 1`` and ``j <= i0``) is *interior*: no mask, no bounds on its loads.
    The others (the band's first and last blocks, partial tiles at the sequence ends) are
    *boundary* blocks, masked with one unsigned compare ``(i - j) < w`` (negative ``i - j`` wraps
    to a large number). Each kernel runs three loops: over the boundary blocks below the interior,
    over those above it, and over the interior ones. Segment ids are compared in every block, and only
    when given.

Backward
    With ``P`` the weights and ``dO`` the output gradient (``dS`` is the score gradient)::

        dV = P^T dO,   dP = dO V^T,   dQ = scale * dS K,   dK = scale * dS^T Q
        sigmoid: dS = dP * P * (1 - P)      softmax: dS = P * (dP - rowsum(dO * O))

    Two kernels recompute ``P`` tile by tile (nothing ``q_len x window`` is stored): one program
    per key block accumulates its ``dK``, ``dV`` over all the rows (all ``G`` heads) that see it,
    one program per row block its ``dQ``; no output is written by two programs, so no atomics.
    The ``dK, dV`` kernel works on transposed tiles (``S^T = K Q^T``, keys as rows), so each of its
    four matrix products has ``BLOCK_N >= 64`` rows, the size Hopper's warpgroup MMA needs.

Offsets
    Each program moves its base pointers to its batch element, head and first row with 64-bit
    arithmetic; offsets inside a tile stay 32-bit. So no offset overflows however long a sequence.

Matmuls run in the input dtype with float32 accumulation (``input_precision="ieee"``: no TF32 for
float32 inputs); scores, weights and accumulators are float32, and the weights (score gradients)
are cast to the input dtype only as matmul operands. ``UPCAST`` (set under the interpreter for
16-bit inputs) turns the loaded tiles into float32 instead. ``EVEN_D`` (``head_dim`` is the padded
width) drops the lane mask. Only long-stable ``tl`` APIs are used, so the kernels compile on
Triton 3.6 and later and run under Triton's CPU interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _reciprocal(x, FAST_MATH: tl.constexpr):
    """``1 / x``: one ``MUFU.RCP`` (``rcp.approx.ftz.f32``, <= 1 ulp) with ``FAST_MATH``, else exact."""
    if FAST_MATH:
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return 1.0 / x


@triton.jit
def _interior(lo, hi, first_ok, end_ok, BLOCK: tl.constexpr):
    """Blocks ``lo, lo + BLOCK, ..`` below ``hi``: the range ``[mid_lo, mid_hi)`` of those that
    start at or after ``first_ok`` and end at or before ``end_ok`` (the interior ones)."""
    mid_lo = tl.minimum(lo + tl.cdiv(tl.maximum(first_ok - lo, 0), BLOCK) * BLOCK, hi)
    return mid_lo, mid_lo + tl.maximum(end_ok - mid_lo, 0) // BLOCK * BLOCK


@triton.jit
def _rows(row0, q_len, GROUP: tl.constexpr, offset, kv_head, BLOCK_M: tl.constexpr):
    """Rows ``row0 .. row0 + BLOCK_M`` as (row mask, query position relative to the first row's
    ``r0 = row0 // GROUP``, head, key position ``i``). Blocks of rows start at multiples of
    ``GROUP``; when ``BLOCK_M`` is one too, every block has the same heads and relative positions
    (no division per row)."""
    lanes = tl.arange(0, BLOCK_M)
    rows = row0 + lanes
    if BLOCK_M % GROUP == 0:
        r_rel = lanes // GROUP
        head = kv_head * GROUP + lanes % GROUP
    else:
        r_rel = rows // GROUP - row0 // GROUP
        head = kv_head * GROUP + rows % GROUP
    return rows < q_len * GROUP, r_rel, head, offset + row0 // GROUP + r_rel


@triton.jit
def _tile_mask(ok, d, head_dim, EVEN_D: tl.constexpr):
    """``[rows, BLOCK_D]``: the rows (keys) that ``ok`` keeps, and the lanes below ``head_dim``
    unless every lane is one (``EVEN_D``: the mask stays ``[rows, 1]``, broadcast by the load)."""
    if EVEN_D:
        return ok[:, None]
    else:
        return ok[:, None] & (d[None, :] < head_dim)


@triton.jit
def _load(ptrs, mask, MASKED: tl.constexpr, UPCAST: tl.constexpr):
    """A tile, masked or not, in float32 with ``UPCAST``."""
    tile = tl.load(ptrs, mask=mask, other=0.0) if MASKED else tl.load(ptrs)
    return tile.to(tl.float32) if UPCAST else tile


@triton.jit
def _load_rows(Base, r_rel, head, d, s_n, s_h, mask, MASKED: tl.constexpr, UPCAST: tl.constexpr):
    """A ``[BLOCK_M, BLOCK_D]`` tile of a query-shaped tensor (``q``, ``dO``) whose pointer
    ``Base`` is at its batch element and first row."""
    ptrs = Base + r_rel[:, None] * s_n + head[:, None] * s_h + d[None, :]
    return _load(ptrs, mask, MASKED, UPCAST)


@triton.jit
def _load_keys(Base, j_rel, d, s_n, mask, MASKED: tl.constexpr, UPCAST: tl.constexpr):
    """A ``[BLOCK_N, BLOCK_D]`` tile of ``K`` or ``V`` whose pointer ``Base`` is at the block's
    first key (batch element and kv head included)."""
    ptrs = Base + j_rel[:, None] * s_n + d[None, :]
    return _load(ptrs, mask, MASKED, UPCAST)


@triton.jit
def _row_slopes(Slopes2, head, kv_head, HAS_SLOPES: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr):
    """Each row's folded slope ``sign * log2(e) * m_h`` (``Slopes2`` holds them; 0 without slopes);
    ``head`` is in range for every row (padding rows repeat a real head). With one head per kv
    head, one scalar broadcast (one register)."""
    if HAS_SLOPES:
        if GROUP == 1:
            return tl.zeros([BLOCK_M], dtype=tl.float32) + tl.load(Slopes2 + kv_head)
        else:
            return tl.load(Slopes2 + head)
    else:
        return tl.zeros([BLOCK_M], dtype=tl.float32)


@triton.jit
def _sigmoid2(x, FAST_MATH: tl.constexpr):
    """``sigmoid(s)`` from ``x = -log2(e) * s``."""
    return _reciprocal(1.0 + tl.exp2(x), FAST_MATH)


# Lengths and the window change from call to call (a decoding cache grows by one key per step): they
# are not specialised on (Triton would compile a variant per divisibility class of each).
@triton.jit(do_not_specialize=["q_len", "kv_len", "window", "keys_per_split"])
def attention_forward_kernel(
    Q, K, V, Out, Lse, Slopes2, Segments,
    sq_b, sq_n, sq_h,
    sk_b, sk_n, sk_h,
    sv_b, sv_n, sv_h,
    so_s, so_b, so_n, so_h,
    sl_s, sl_b, sl_h, sl_n,
    sseg_b, sseg_n,
    q_len, kv_len, num_heads, head_dim, window, keys_per_split,
    qk_coef, bias2,
    GROUP: tl.constexpr, SOFTMAX: tl.constexpr, HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr,
    PARTIAL: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, FAST_MATH: tl.constexpr,
    EVEN_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid ``(row blocks, batch * kv_heads, splits)``. Without ``PARTIAL``: the output (and,
    for softmax, the base-2 log-sum-exp). With ``PARTIAL`` (decoding, the band split over
    programs): split ``s`` covers keys ``[lo + s * keys_per_split, lo + (s + 1) * keys_per_split)``
    of the block's band ``[lo, hi)`` and writes its float32 partial sum at ``s`` (softmax:
    unnormalised, with its running maximum and normaliser, base 2, as the pairs of ``Lse``).
    The last dimension of every tensor is contiguous."""
    row0 = tl.program_id(0) * BLOCK_M
    b = (tl.program_id(1) // (num_heads // GROUP)).to(tl.int64)
    kv_head = tl.program_id(1) % (num_heads // GROUP)
    split = tl.program_id(2).to(tl.int64)
    offset = kv_len - q_len
    row_ok, r_rel, head, pos_i = _rows(row0, q_len, GROUP, offset, kv_head, BLOCK_M)
    r0 = tl.cast(row0 // GROUP, tl.int64)
    d = tl.arange(0, BLOCK_D)
    io_mask = _tile_mask(row_ok, d, head_dim, EVEN_D)
    q = _load_rows(Q + b * sq_b + r0 * sq_n, r_rel, head, d, sq_n, sq_h, io_mask, True, UPCAST)
    row_slope = _row_slopes(Slopes2, head, kv_head, HAS_SLOPES, GROUP, BLOCK_M)
    seg_i = pos_i
    if HAS_SEGMENTS:
        seg_i = tl.load(Segments + b * sseg_b + pos_i * sseg_n, mask=row_ok, other=-1)

    first_i = offset + row0 // GROUP
    last_i = offset + (tl.minimum(row0 + BLOCK_M, q_len * GROUP) - 1) // GROUP
    lo = tl.maximum(first_i - window + 1, 0)
    hi = last_i + 1
    if PARTIAL:
        lo = lo + split.to(tl.int32) * keys_per_split
        hi = tl.minimum(hi, lo + keys_per_split)
    mid_lo, mid_hi = _interior(lo, hi, last_i - window + 1, tl.minimum(first_i + 1, hi), BLOCK_N)
    rel_i = pos_i - lo  # positions relative to the program's first key: small, exact in float32
    row_term = bias2 - row_slope * rel_i.to(tl.float32)

    K_kv = K + b * sk_b + kv_head * sk_h
    V_kv = V + b * sv_b + kv_head * sv_h
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    run_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    for start in range(lo, mid_lo, BLOCK_N):
        acc, run_max, run_sum = _forward_block(
            acc, run_max, run_sum, q, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i,
            sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, bias2, True, PARTIAL,
            SOFTMAX, HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D, BLOCK_N, BLOCK_D)
    for start in range(mid_hi, hi, BLOCK_N):
        acc, run_max, run_sum = _forward_block(
            acc, run_max, run_sum, q, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i,
            sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, bias2, True, PARTIAL,
            SOFTMAX, HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D, BLOCK_N, BLOCK_D)
    for start in range(mid_lo, mid_hi, BLOCK_N):
        acc, run_max, run_sum = _forward_block(
            acc, run_max, run_sum, q, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i,
            sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, bias2, False, PARTIAL,
            SOFTMAX, HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D, BLOCK_N, BLOCK_D)

    out_rows = Out + split * so_s + b * so_b + r0 * so_n + r_rel[:, None] * so_n + head[:, None] * so_h + d[None, :]
    lse_rows = Lse + split * sl_s + b * sl_b + head * sl_h + (r0 + r_rel) * sl_n
    if PARTIAL:
        tl.store(out_rows, acc, mask=io_mask)
        if SOFTMAX:
            tl.store(lse_rows, run_max, mask=row_ok)
            tl.store(lse_rows + 1, run_sum, mask=row_ok)
    else:
        if SOFTMAX:
            safe_sum = tl.where(run_sum > 0, run_sum, 1.0)
            acc = acc / safe_sum[:, None]
            tl.store(lse_rows, run_max + tl.log2(safe_sum), mask=row_ok)
        tl.store(out_rows, acc.to(Out.dtype.element_ty), mask=io_mask)


@triton.jit
def _key_block_scores(q, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i, sk_n, sv_n,
                      sseg_b, sseg_n, head_dim, window, qk_coef, MASKED: tl.constexpr, PARTIAL: tl.constexpr,
                      HAS_SEGMENTS: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
                      EVEN_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The keys ``[start, start + BLOCK_N)`` against the rows' ``q``: their K and V tiles, the
    base-2 scores (``q k^T`` scaled, plus the position term ``row_term + row_slope * col``) and
    which of them count (band, sequence ends, segments; ``MASKED``: a boundary block)."""
    j_rel = tl.arange(0, BLOCK_N)
    d = tl.arange(0, BLOCK_D)
    col_ok = start + j_rel < hi
    mask = _tile_mask(col_ok, d, head_dim, EVEN_D)
    start64 = tl.cast(start, tl.int64)
    k_tile = _load_keys(K_kv + start64 * sk_n, j_rel, d, sk_n, mask, MASKED or not EVEN_D, UPCAST)
    v_tile = _load_keys(V_kv + start64 * sv_n, j_rel, d, sv_n, mask, MASKED or not EVEN_D, UPCAST)
    cols = start - lo + j_rel
    x = tl.dot(q, tl.trans(k_tile), input_precision=INPUT_PRECISION) * qk_coef \
        + (row_term[:, None] + row_slope[:, None] * cols.to(tl.float32)[None, :])
    keep = _keep(rel_i, cols, col_ok, seg_i, Segments, b, start + j_rel, sseg_b, sseg_n, window, MASKED, HAS_SEGMENTS,
                 PARTIAL)
    return k_tile, v_tile, x, keep


@triton.jit
def _forward_block(acc, run_max, run_sum, q, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i,
                   sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, bias2, MASKED: tl.constexpr,
                   PARTIAL: tl.constexpr, SOFTMAX: tl.constexpr, HAS_SEGMENTS: tl.constexpr, UPCAST: tl.constexpr,
                   INPUT_PRECISION: tl.constexpr, FAST_MATH: tl.constexpr, EVEN_D: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The forward's work on the keys ``[start, start + BLOCK_N)``; ``MASKED``: a boundary block."""
    k_tile, v_tile, x, keep = _key_block_scores(q, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope,
                                                seg_i, sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, MASKED,
                                                PARTIAL, HAS_SEGMENTS, UPCAST, INPUT_PRECISION, EVEN_D, BLOCK_N,
                                                BLOCK_D)
    if SOFTMAX:
        if MASKED or HAS_SEGMENTS:
            x = tl.where(keep, x, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(x, 1))
        safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)
        rescale = tl.exp2(run_max - safe_max)
        p = tl.exp2(x - safe_max[:, None])
        run_sum = run_sum * rescale + tl.sum(p, 1)
        acc = acc * rescale[:, None]
        run_max = new_max
    else:
        p = _sigmoid2(x, FAST_MATH)
        if MASKED or HAS_SEGMENTS:
            p = tl.where(keep, p, 0.0)
    acc += tl.dot(p.to(v_tile.dtype), v_tile, input_precision=INPUT_PRECISION)
    return acc, run_max, run_sum


@triton.jit
def _keep(rel_i, cols, col_ok, seg_i, Segments, b, pos_j, sseg_b, sseg_n, window,
          MASKED: tl.constexpr, HAS_SEGMENTS: tl.constexpr, CHECK_COLS: tl.constexpr):
    """``[rows, keys]``: the pairs kept in a block of keys at positions ``pos_j`` (``rel_i`` is
    ``i - o`` per row, ``cols`` is ``j - o`` per key, for some origin ``o``). A boundary block (``MASKED``)
    tests the band with one unsigned compare, ``i - j`` wrapping below 0 (so keys past the last
    row's position, past the sequence among them, drop out); ``CHECK_COLS`` (a decoding split)
    also drops the keys of the next split; with segments, same segment. An interior block without
    segments keeps everything (the result is not read)."""
    keep = rel_i[:, None] >= cols[None, :]
    if MASKED:
        keep = (rel_i[:, None] - cols[None, :]).to(tl.uint32) < tl.cast(window, tl.uint32)
        if CHECK_COLS:
            keep = keep & col_ok[None, :]
    if HAS_SEGMENTS:
        seg_j = tl.load(Segments + b * sseg_b + pos_j * sseg_n, mask=col_ok, other=-2)
        keep = keep & (seg_i[:, None] == seg_j[None, :])
    return keep


@triton.jit
def _score_grads(x, dp, lse, row_dot, keep, MASKED: tl.constexpr, SOFTMAX: tl.constexpr,
                 HAS_SEGMENTS: tl.constexpr, FAST_MATH: tl.constexpr):
    """Weights ``P`` and score gradients ``dS`` (float32) from the base-2 scores ``x`` and
    ``dP = dO V^T`` of a tile (any orientation: ``lse``, ``row_dot`` are broadcast already)."""
    if SOFTMAX:
        p = tl.exp2(x - lse)
        if MASKED or HAS_SEGMENTS:
            p = tl.where(keep, p, 0.0)
        ds = p * (dp - row_dot)
    else:
        p = _sigmoid2(x, FAST_MATH)
        if MASKED or HAS_SEGMENTS:
            p = tl.where(keep, p, 0.0)
        ds = dp * (p - p * p)  # p (1 - p): one multiply-add
    return p, ds


@triton.jit(do_not_specialize=["q_len", "kv_len", "window"])
def attention_backward_dkdv_kernel(
    Q, K, V, dO, Lse, RowDot, dK, dV, Slopes2, Segments,
    sq_b, sq_n, sq_h,
    sk_b, sk_n, sk_h,
    sv_b, sv_n, sv_h,
    sdo_b, sdo_n, sdo_h,
    sl_b, sl_h, sl_n,
    sdk_b, sdk_n, sdk_h,
    sseg_b, sseg_n,
    q_len, kv_len, num_heads, head_dim, window,
    qk_coef, bias2, scale,
    GROUP: tl.constexpr, SOFTMAX: tl.constexpr, HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr,
    UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, FAST_MATH: tl.constexpr,
    EVEN_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid ``(key blocks, batch * kv_heads)``: ``dK``, ``dV`` of one block of ``BLOCK_N`` keys,
    summed over the rows of all ``G`` query heads whose band contains it, on transposed tiles
    ``[keys, rows]``. ``dK``, ``dV`` share strides."""
    j0 = tl.program_id(0) * BLOCK_N
    b = (tl.program_id(1) // (num_heads // GROUP)).to(tl.int64)
    kv_head = tl.program_id(1) % (num_heads // GROUP)
    offset = kv_len - q_len
    d = tl.arange(0, BLOCK_D)
    j_rel = tl.arange(0, BLOCK_N)
    col_ok = j0 + j_rel < kv_len
    key_mask = _tile_mask(col_ok, d, head_dim, EVEN_D)
    j064 = tl.cast(j0, tl.int64)
    k_tile = _load_keys(K + b * sk_b + kv_head * sk_h + j064 * sk_n, j_rel, d, sk_n, key_mask, True, UPCAST)
    v_tile = _load_keys(V + b * sv_b + kv_head * sv_h + j064 * sv_n, j_rel, d, sv_n, key_mask, True, UPCAST)
    seg_j = j0 + j_rel
    if HAS_SEGMENTS:
        seg_j = tl.load(Segments + b * sseg_b + (j0 + j_rel) * sseg_n, mask=col_ok, other=-2)

    # queries at positions j0 .. j0 + BLOCK_N - 1 + window - 1 see these keys; a block of rows is
    # interior when its positions lie in [j0 + BLOCK_N - 1, j0 + window - 1] and all its rows exist
    first_r = tl.maximum(j0 - offset, 0)
    last_r = tl.minimum(j0 + BLOCK_N - 1 + window - 1 - offset, q_len - 1)
    lo = first_r * GROUP
    hi = (last_r + 1) * GROUP
    mid_lo, mid_hi = _interior(lo, hi, (j0 + BLOCK_N - 1 - offset) * GROUP,
                               tl.minimum((j0 + window - offset) * GROUP, hi), BLOCK_M)
    # rows start at multiples of GROUP: with BLOCK_M one too, every block of rows has the same heads
    slope_pattern = _row_slopes(Slopes2, kv_head * GROUP + tl.arange(0, BLOCK_M) % GROUP, kv_head, HAS_SLOPES, GROUP,
                                BLOCK_M)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for row0 in range(lo, mid_lo, BLOCK_M):
        dk, dv = _dkdv_block(
            dk, dv, k_tile, v_tile, slope_pattern, Q, dO, Lse, RowDot, Slopes2, Segments, b, row0, j0, seg_j,
            sq_b, sq_n, sq_h, sdo_b, sdo_n, sdo_h, sl_b, sl_h, sl_n, sseg_b, sseg_n,
            q_len, GROUP, offset, kv_head, head_dim, window, qk_coef, bias2, True,
            SOFTMAX, HAS_SLOPES, HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D,
            BLOCK_M, BLOCK_N, BLOCK_D)
    for row0 in range(mid_hi, hi, BLOCK_M):
        dk, dv = _dkdv_block(
            dk, dv, k_tile, v_tile, slope_pattern, Q, dO, Lse, RowDot, Slopes2, Segments, b, row0, j0, seg_j,
            sq_b, sq_n, sq_h, sdo_b, sdo_n, sdo_h, sl_b, sl_h, sl_n, sseg_b, sseg_n,
            q_len, GROUP, offset, kv_head, head_dim, window, qk_coef, bias2, True,
            SOFTMAX, HAS_SLOPES, HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D,
            BLOCK_M, BLOCK_N, BLOCK_D)
    for row0 in range(mid_lo, mid_hi, BLOCK_M):
        dk, dv = _dkdv_block(
            dk, dv, k_tile, v_tile, slope_pattern, Q, dO, Lse, RowDot, Slopes2, Segments, b, row0, j0, seg_j,
            sq_b, sq_n, sq_h, sdo_b, sdo_n, sdo_h, sl_b, sl_h, sl_n, sseg_b, sseg_n,
            q_len, GROUP, offset, kv_head, head_dim, window, qk_coef, bias2, False,
            SOFTMAX, HAS_SLOPES, HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D,
            BLOCK_M, BLOCK_N, BLOCK_D)

    # the mask again rather than a mask held in registers through the loops
    out_mask = _tile_mask(j0 + j_rel < kv_len, d, head_dim, EVEN_D)
    out_offsets = b * sdk_b + kv_head * sdk_h + j064 * sdk_n + j_rel[:, None] * sdk_n + d[None, :]
    tl.store(dK + out_offsets, (dk * scale).to(dK.dtype.element_ty), mask=out_mask)
    tl.store(dV + out_offsets, dv.to(dV.dtype.element_ty), mask=out_mask)


@triton.jit
def _dkdv_block(dk, dv, k_tile, v_tile, slope_pattern, Q, dO, Lse, RowDot, Slopes2, Segments, b, row0, j0, seg_j,
                sq_b, sq_n, sq_h, sdo_b, sdo_n, sdo_h, sl_b, sl_h, sl_n, sseg_b, sseg_n,
                q_len, GROUP: tl.constexpr, offset, kv_head, head_dim, window, qk_coef, bias2,
                MASKED: tl.constexpr,
                SOFTMAX: tl.constexpr, HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr,
                UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, FAST_MATH: tl.constexpr,
                EVEN_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The rows ``[row0, row0 + BLOCK_M)``'s share of ``dK``, ``dV`` (transposed tiles
    ``[BLOCK_N keys, BLOCK_M rows]``); ``MASKED``: a boundary block of rows."""
    row_ok, r_rel, head, pos_i = _rows(row0, q_len, GROUP, offset, kv_head, BLOCK_M)
    r0 = tl.cast(row0 // GROUP, tl.int64)
    d = tl.arange(0, BLOCK_D)
    io_mask = _tile_mask(row_ok, d, head_dim, EVEN_D)
    q = _load_rows(Q + b * sq_b + r0 * sq_n, r_rel, head, d, sq_n, sq_h, io_mask, MASKED or not EVEN_D, UPCAST)
    do = _load_rows(dO + b * sdo_b + r0 * sdo_n, r_rel, head, d, sdo_n, sdo_h, io_mask, MASKED or not EVEN_D,
                    UPCAST)
    row_slope = slope_pattern
    if BLOCK_M % GROUP != 0:
        row_slope = _row_slopes(Slopes2, head, kv_head, HAS_SLOPES, GROUP, BLOCK_M)
    # origin: the block's first position, so that rows' terms repeat from block to block
    cols = j0 + tl.arange(0, BLOCK_N) - (offset + row0 // GROUP)
    row_term = bias2 - row_slope * r_rel.to(tl.float32)
    x = tl.dot(k_tile, tl.trans(q), input_precision=INPUT_PRECISION) * qk_coef \
        + (row_term[None, :] + row_slope[None, :] * cols.to(tl.float32)[:, None])
    # rows past the end load q = dO = 0, so they add nothing, but for softmax their weights may
    # overflow (0 * inf): softmax drops them
    keep = (r_rel[None, :] - cols[:, None]).to(tl.uint32) < tl.cast(window, tl.uint32)
    if SOFTMAX:
        keep = keep & row_ok[None, :]
    if HAS_SEGMENTS:
        seg_i = tl.load(Segments + b * sseg_b + pos_i * sseg_n, mask=row_ok, other=-1)
        keep = keep & (seg_i[None, :] == seg_j[:, None])
    lse = tl.zeros([BLOCK_M], dtype=tl.float32)
    row_dot = tl.zeros([BLOCK_M], dtype=tl.float32)
    if SOFTMAX:
        lse_offsets = b * sl_b + head * sl_h + (r0 + r_rel) * sl_n
        lse = tl.load(Lse + lse_offsets, mask=row_ok, other=0.0)
        row_dot = tl.load(RowDot + lse_offsets, mask=row_ok, other=0.0)
    dp = tl.dot(v_tile, tl.trans(do), input_precision=INPUT_PRECISION)
    p, ds = _score_grads(x, dp, lse[None, :], row_dot[None, :], keep, MASKED, SOFTMAX, HAS_SEGMENTS, FAST_MATH)
    dv += tl.dot(p.to(do.dtype), do, input_precision=INPUT_PRECISION)
    dk += tl.dot(ds.to(q.dtype), q, input_precision=INPUT_PRECISION)
    return dk, dv


@triton.jit(do_not_specialize=["q_len", "kv_len", "window"])
def attention_backward_dq_kernel(
    Q, K, V, dO, Lse, RowDot, dQ, Slopes2, Segments,
    sq_b, sq_n, sq_h,
    sk_b, sk_n, sk_h,
    sv_b, sv_n, sv_h,
    sdo_b, sdo_n, sdo_h,
    sl_b, sl_h, sl_n,
    sdq_b, sdq_n, sdq_h,
    sseg_b, sseg_n,
    q_len, kv_len, num_heads, head_dim, window,
    qk_coef, bias2, scale,
    GROUP: tl.constexpr, SOFTMAX: tl.constexpr, HAS_SLOPES: tl.constexpr, HAS_SEGMENTS: tl.constexpr,
    UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, FAST_MATH: tl.constexpr,
    EVEN_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid ``(row blocks, batch * kv_heads)``: ``dQ`` of one block of rows, over its band."""
    row0 = tl.program_id(0) * BLOCK_M
    b = (tl.program_id(1) // (num_heads // GROUP)).to(tl.int64)
    kv_head = tl.program_id(1) % (num_heads // GROUP)
    offset = kv_len - q_len
    row_ok, r_rel, head, pos_i = _rows(row0, q_len, GROUP, offset, kv_head, BLOCK_M)
    r0 = tl.cast(row0 // GROUP, tl.int64)
    d = tl.arange(0, BLOCK_D)
    io_mask = _tile_mask(row_ok, d, head_dim, EVEN_D)
    q = _load_rows(Q + b * sq_b + r0 * sq_n, r_rel, head, d, sq_n, sq_h, io_mask, True, UPCAST)
    do = _load_rows(dO + b * sdo_b + r0 * sdo_n, r_rel, head, d, sdo_n, sdo_h, io_mask, True, UPCAST)
    row_slope = _row_slopes(Slopes2, head, kv_head, HAS_SLOPES, GROUP, BLOCK_M)
    seg_i = pos_i
    if HAS_SEGMENTS:
        seg_i = tl.load(Segments + b * sseg_b + pos_i * sseg_n, mask=row_ok, other=-1)
    lse = tl.zeros([BLOCK_M], dtype=tl.float32)
    row_dot = tl.zeros([BLOCK_M], dtype=tl.float32)
    if SOFTMAX:
        lse_offsets = b * sl_b + head * sl_h + (r0 + r_rel) * sl_n
        lse = tl.load(Lse + lse_offsets, mask=row_ok, other=0.0)
        row_dot = tl.load(RowDot + lse_offsets, mask=row_ok, other=0.0)

    first_i = offset + row0 // GROUP
    last_i = offset + (tl.minimum(row0 + BLOCK_M, q_len * GROUP) - 1) // GROUP
    lo = tl.maximum(first_i - window + 1, 0)
    hi = last_i + 1
    mid_lo, mid_hi = _interior(lo, hi, last_i - window + 1, tl.minimum(first_i + 1, hi), BLOCK_N)
    rel_i = pos_i - lo  # positions relative to the program's first key: small, exact in float32
    row_term = bias2 - row_slope * rel_i.to(tl.float32)
    K_kv = K + b * sk_b + kv_head * sk_h
    V_kv = V + b * sv_b + kv_head * sv_h
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start in range(lo, mid_lo, BLOCK_N):
        dq = _dq_block(dq, q, do, lse, row_dot, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i,
                       sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, bias2, True, SOFTMAX,
                       HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D, BLOCK_N, BLOCK_D)
    for start in range(mid_hi, hi, BLOCK_N):
        dq = _dq_block(dq, q, do, lse, row_dot, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i,
                       sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, bias2, True, SOFTMAX,
                       HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D, BLOCK_N, BLOCK_D)
    for start in range(mid_lo, mid_hi, BLOCK_N):
        dq = _dq_block(dq, q, do, lse, row_dot, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i,
                       sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, bias2, False, SOFTMAX,
                       HAS_SEGMENTS, UPCAST, INPUT_PRECISION, FAST_MATH, EVEN_D, BLOCK_N, BLOCK_D)

    dq_rows = dQ + b * sdq_b + r0 * sdq_n + r_rel[:, None] * sdq_n + head[:, None] * sdq_h + d[None, :]
    tl.store(dq_rows, (dq * scale).to(dQ.dtype.element_ty), mask=io_mask)


@triton.jit
def _dq_block(dq, q, do, lse, row_dot, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope, seg_i,
              sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, bias2, MASKED: tl.constexpr,
              SOFTMAX: tl.constexpr, HAS_SEGMENTS: tl.constexpr, UPCAST: tl.constexpr,
              INPUT_PRECISION: tl.constexpr, FAST_MATH: tl.constexpr, EVEN_D: tl.constexpr,
              BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The keys ``[start, start + BLOCK_N)``'s share of ``dQ``; ``MASKED``: a boundary block."""
    k_tile, v_tile, x, keep = _key_block_scores(q, K_kv, V_kv, Segments, b, start, hi, lo, rel_i, row_term, row_slope,
                                                seg_i, sk_n, sv_n, sseg_b, sseg_n, head_dim, window, qk_coef, MASKED,
                                                False, HAS_SEGMENTS, UPCAST, INPUT_PRECISION, EVEN_D, BLOCK_N,
                                                BLOCK_D)
    dp = tl.dot(do, tl.trans(v_tile), input_precision=INPUT_PRECISION)
    p, ds = _score_grads(x, dp, lse[:, None], row_dot[:, None], keep, MASKED, SOFTMAX, HAS_SEGMENTS, FAST_MATH)
    return dq + tl.dot(ds.to(k_tile.dtype), k_tile, input_precision=INPUT_PRECISION)
