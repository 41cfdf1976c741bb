// Fused SWAT attention for the CPU, forward and backward (docs/spec.md section 1):
//
//     s_ij = scale * (q_i . k_j) - m_h * (i - j) + b,   o_i = sum_{0 <= i-j < w} act(s_ij) v_j
//
// Layout: q, out, dq are [batch, q_len, heads, dim]; k, v, dk, dv are [batch, kv_len, kv_heads, dim]
// (contiguous). A "lane" is one (batch, head) pair in the forward and one (batch, kv head) pair in
// the backward; a tile is one lane's block of `block` query positions against every key those
// queries see. Per tile: one GEMM for the scores, one pass that adds the position term, masks the
// band and segments and applies the activation, one GEMM for the output. Scores, weights and
// accumulators are fp32; GEMM inputs are the input dtype (fp32 or bf16). Nothing is allocated per
// tile: every thread owns its scratch buffers for the whole loop.
//
// GEMMs: at::native::cpublas::brgemm, row-major C (+)= A B without transposes: oneDNN's
// small-matrix kernels for fp32; for bf16 (not VNNI-packed here) and where oneDNN's kernels cannot
// run, PyTorch's own GEMM (oneDNN's bf16 GEMM, MKL or OpenBLAS). So every
// product is written without transposes: K and V are transposed once per call ([batch, kv_heads,
// dim, kv_ld], see Shape::kv_ld), the backward accumulates dK^T and dV^T, and the few [rows, dim]
// transposes it needs (Q^T, dO^T of a tile) cost 1/cols of the tile's GEMM work.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

// The elementwise loops are compiled for several instruction sets and picked at load time, so
// one cached build is fast on any x86 machine; elsewhere they are compiled once, portably. (GCC 12
// vectorises the exp loops in the AVX2 clone only with -fno-trapping-math, which cpu_fused.py passes.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SWAT_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SWAT_VECTOR_CLONES
#endif
#if defined(__GNUC__)
#define SWAT_ALWAYS_INLINE inline __attribute__((always_inline))  // into every clone, to vectorise
#else
#define SWAT_ALWAYS_INLINE inline
#endif

namespace {

using bf16 = at::BFloat16;

// Row-major C[M, N] (+)= A[M, K] B[K, N] (fp32 C; A, B fp32 or bf16), one thread. With vnni, B is
// bf16 in VNNI layout ([K / 2, ldb, 2]: pairs of rows interleaved) and K is even.
template <typename T>
void gemm(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, bool accumulate,
          float* c, int64_t ldc, bool vnni) {
  at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, accumulate, a, b, c, vnni);
}

// Whether oneDNN's bf16 kernels for VNNI-packed B run here (where not, brgemm refuses them).
bool vnni_bf16_available() {
  static const bool available = [] {
    const bf16 a[4] = {1.0f, 2.0f, 3.0f, 4.0f}, b[4] = {1.0f, 0.0f, 0.0f, 1.0f};
    float c[4];
    try {
      at::native::cpublas::brgemm(2, 2, 2, 2, 2, 2, false, a, b, c, true);
      at::native::cpublas::brgemm_release();
    } catch (const std::exception&) {
      return false;
    }
    return c[0] == 1.0f && c[1] == 2.0f && c[2] == 3.0f && c[3] == 4.0f;
  }();
  return available;
}

// --- elementwise loops (written so that the compiler vectorises them) ----------------------------

// exp(x) for x in [-87, 88] (clamped), Cephes' polynomial: a few ulp, branch free.
SWAT_ALWAYS_INLINE float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float round = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + round) - round;
  x = x - n * 0.693359375f + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return y * two_n;
}

// scale * x + base + slope * c: the score of the c-th of consecutive keys j, with the position term
// b - m_h * (i - j).
SWAT_ALWAYS_INLINE float position_score(float x, int64_t c, float scale, float base, float slope) {
  return scale * x + base + slope * static_cast<float>(c);
}

SWAT_ALWAYS_INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

SWAT_VECTOR_CLONES void add_position_term(float* x, int64_t len, float scale, float base, float slope) {
  for (int64_t c = 0; c < len; ++c) x[c] = position_score(x[c], c, scale, base, slope);
}

SWAT_VECTOR_CLONES void mask_other_segments(float* x, const int64_t* key_segments, int64_t segment, int64_t len) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (int64_t c = 0; c < len; ++c) x[c] = key_segments[c] == segment ? x[c] : minus_inf;
}

SWAT_VECTOR_CLONES void zero_other_segments(float* x, const int64_t* key_segments, int64_t segment, int64_t len) {
  for (int64_t c = 0; c < len; ++c) x[c] = key_segments[c] == segment ? x[c] : 0.0f;
}

SWAT_VECTOR_CLONES void sigmoid_inplace(float* x, int64_t len) {
  for (int64_t c = 0; c < len; ++c) x[c] = sigmoid(x[c]);
}

// add_position_term and sigmoid_inplace in one pass (sigmoid without segments).
SWAT_VECTOR_CLONES void sigmoid_of_scores(float* x, int64_t len, float scale, float base, float slope) {
  for (int64_t c = 0; c < len; ++c) x[c] = sigmoid(position_score(x[c], c, scale, base, slope));
}

constexpr int64_t kLanes = 16;  // independent partial results, so that reductions vectorise

SWAT_VECTOR_CLONES float max_of(const float* x, int64_t len) {
  float part[kLanes];
  std::fill(part, part + kLanes, -std::numeric_limits<float>::infinity());
  int64_t c = 0;
  for (; c + kLanes <= len; c += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) part[l] = std::max(part[l], x[c + l]);
  for (; c < len; ++c) part[0] = std::max(part[0], x[c]);
  return *std::max_element(part, part + kLanes);
}

// x[c] = exp(x[c] - shift); returns the sum.
SWAT_VECTOR_CLONES float exp_shifted(float* x, int64_t len, float shift) {
  float part[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= len; c += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) part[l] += (x[c + l] = exp_approx(x[c + l] - shift));
  for (; c < len; ++c) part[0] += (x[c] = exp_approx(x[c] - shift));
  float sum = 0.0f;
  for (float p : part) sum += p;
  return sum;
}

SWAT_VECTOR_CLONES void scale_inplace(float* x, int64_t len, float factor) {
  for (int64_t c = 0; c < len; ++c) x[c] *= factor;
}

// sigmoid: dS = dP * P * (1 - P), written over dP.
SWAT_VECTOR_CLONES void sigmoid_grad(float* dp, const float* p, int64_t len) {
  for (int64_t c = 0; c < len; ++c) dp[c] *= p[c] * (1.0f - p[c]);
}

// softmax: dS = P * (dP - rowsum(dO * O)), written over dP.
SWAT_VECTOR_CLONES void softmax_grad(float* dp, const float* p, int64_t len, float row_dot) {
  for (int64_t c = 0; c < len; ++c) dp[c] = p[c] * (dp[c] - row_dot);
}

// fp32 -> bf16, round to nearest even (the inputs are finite).
SWAT_VECTOR_CLONES void round_to_bf16(const float* x, bf16* y, int64_t len) {
  uint16_t* out = reinterpret_cast<uint16_t*>(y);
  for (int64_t c = 0; c < len; ++c) {
    uint32_t u;
    std::memcpy(&u, &x[c], sizeof(u));
    out[c] = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

// dst[2c] = bf16(first[c]), dst[2c + 1] = bf16(second[c]) (0 without second): two rows of a GEMM B
// operand in VNNI layout.
SWAT_VECTOR_CLONES void interleave_to_bf16(const float* first, const float* second, bf16* dst, int64_t len) {
  uint16_t* out = reinterpret_cast<uint16_t*>(dst);
  for (int64_t c = 0; c < len; ++c) {
    uint32_t u, w = 0;
    std::memcpy(&u, &first[c], sizeof(u));
    if (second) std::memcpy(&w, &second[c], sizeof(w));
    out[2 * c] = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    out[2 * c + 1] = static_cast<uint16_t>((w + 0x7fffu + ((w >> 16) & 1u)) >> 16);
  }
}

// dst[2c] = first[c], dst[2c + 1] = second[c] (0 without second): two rows of bf16 values as one row
// of a GEMM B operand in VNNI layout.
SWAT_VECTOR_CLONES void interleave_rows(const uint16_t* first, const uint16_t* second, uint16_t* dst, int64_t len) {
  for (int64_t c = 0; c < len; ++c) {
    dst[2 * c] = first[c];
    dst[2 * c + 1] = second ? second[c] : 0;
  }
}

// `rows` rows of bf16 values (cols each, ld apart) as a GEMM B operand in VNNI layout in dst
// ([even(rows) / 2, cols, 2]): pairs of rows interleaved, the last one with zeros when rows is odd.
void interleave_row_pairs(const uint16_t* src, int64_t rows, int64_t ld, int64_t cols, uint16_t* dst) {
  for (int64_t r = 0; r < rows; r += 2) {
    interleave_rows(src + r * ld, r + 1 < rows ? src + (r + 1) * ld : nullptr, dst + r * cols, cols);
  }
}

// --- problem geometry ------------------------------------------------------------------------------

struct Shape {
  int64_t batch, q_len, kv_len, heads, kv_heads, dim, band, block;
  // bf16 with VNNI-packed B operands: every GEMM's inner dimension is even, so tiles start at an
  // even key and span an even number of keys, and the key axis is padded to kv_pad (even).
  bool vnni;
  int64_t kv_pad;
  // Rows of the [dim, keys] layouts (K^T, V^T and the dK^T, dV^T accumulators) are kv_ld keys
  // apart: 16 keys (64 bytes) more than kv_pad, so that a GEMM walking down a column of rows does
  // not find them all in the same L1 cache sets, as it would with kv_pad a multiple of 1024.
  int64_t kv_ld() const { return kv_pad + 16; }

  int64_t group() const { return heads / kv_heads; }
  int64_t offset() const { return kv_len - q_len; }  // position of query 0 among the keys
  int64_t blocks() const { return (q_len + block - 1) / block; }
  int64_t q_stride() const { return heads * dim; }  // between consecutive positions
  int64_t kv_stride() const { return kv_heads * dim; }
  int64_t max_cols() const { return std::min(kv_pad, block + band - 1 + (vnni ? 2 : 0)); }
  int64_t even(int64_t n) const { return vnni ? n + (n & 1) : n; }  // an inner GEMM dimension
  int64_t pair() const { return vnni ? 2 : 1; }  // elements per column in a K^T or V^T lane
  int64_t key_rows_ld() const { return vnni ? dim : kv_stride(); }  // see key_rows
};

struct Options {
  float scale, bias;
  bool softmax;
  const float* slopes;      // [heads] or nullptr
  const int64_t* segments;  // [batch, kv_len] or nullptr
};

// Query positions [r0, r1) (among the queries) and the keys [k0, k1) they see.
struct Tile {
  int64_t r0, r1, k0, k1;
  int64_t rows() const { return r1 - r0; }
  int64_t cols() const { return k1 - k0; }
};

Tile tile_at(const Shape& s, int64_t block_index) {
  const int64_t r0 = block_index * s.block, r1 = std::min(r0 + s.block, s.q_len);
  int64_t k0 = std::max<int64_t>(0, s.offset() + r0 - s.band + 1);
  if (s.vnni) k0 -= k0 & 1;  // the extra key is outside every row's band: its weights are 0
  return {r0, r1, k0, k0 + s.even(s.offset() + r1 - k0)};
}

// Per-thread buffers of one tile, allocated once per thread.
template <typename T>
struct Scratch {
  std::vector<float> p, dp, rows;
  std::vector<T> low, low_b;  // bf16 copies of p or dS as GEMM A and B operands (unused for fp32)
  std::vector<T> q_t, grad_out_t;  // the tile's Q^T and dO^T, [dim, even(rows)] (backward)

  Scratch(const Shape& s, bool backward)
      : p(s.block * s.max_cols()), dp(backward ? s.block * s.max_cols() : 0), rows(s.block * s.dim),
        low(std::is_same_v<T, float> ? 0 : s.block * s.max_cols()),
        low_b(std::is_same_v<T, float> || !backward ? 0 : s.even(s.block) * s.max_cols()),
        q_t(backward ? s.dim * s.even(s.block) : 0), grad_out_t(backward ? s.dim * s.even(s.block) : 0) {}
};

// dst[c, r] = src[r, c] for a [rows, cols] matrix with row stride ld; dst has ld_dst >= rows
// columns, the extra ones zero.
template <typename T>
void transpose(const T* src, int64_t rows, int64_t cols, int64_t ld, T* dst, int64_t ld_dst) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) dst[c * ld_dst + r] = src[r * ld + c];
    for (int64_t r = rows; r < ld_dst; ++r) dst[c * ld_dst + r] = T(0.0f);
  }
}

// A [rows, cols] fp32 matrix as a GEMM B operand (inner dimension rows): x itself for fp32, bf16
// rows for plain bf16, or bf16 in VNNI layout (rows padded to even with zeros).
template <typename T>
const T* gemm_b_input(const float* x, int64_t rows, int64_t cols, std::vector<T>& low, bool vnni) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    if (!vnni) {
      round_to_bf16(x, low.data(), rows * cols);
      return low.data();
    }
    for (int64_t r = 0; r < rows; r += 2) {
      interleave_to_bf16(x + r * cols, r + 1 < rows ? x + (r + 1) * cols : nullptr, low.data() + r * cols, cols);
    }
    return low.data();
  }
}

// Rows x of GEMM inputs ([rows, cols], already of type T) as a GEMM B operand with inner dimension
// rows: x itself, or bf16 in VNNI layout (rows padded to even with zeros) in `low`.
template <typename T>
const T* rows_as_b_input(const T* x, int64_t rows, int64_t cols, std::vector<T>& low, bool vnni) {
  if (!vnni) return x;
  interleave_row_pairs(reinterpret_cast<const uint16_t*>(x), rows, cols, cols,
                       reinterpret_cast<uint16_t*>(low.data()));
  return low.data();
}

// x as a GEMM input of type T: x itself for fp32, else rounded into `low`.
template <typename T>
const T* gemm_input(const float* x, std::vector<T>& low, int64_t len) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    round_to_bf16(x, low.data(), len);
    return low.data();
  }
}

// Copies factor * x (rows x cols fp32 values, in place) into a strided T matrix.
template <typename T>
void store_rows(float* x, int64_t rows, int64_t cols, float factor, T* dst, int64_t ld) {
  if (factor != 1.0f) scale_inplace(x, rows * cols, factor);
  for (int64_t r = 0; r < rows; ++r) {
    if constexpr (std::is_same_v<T, float>) {
      std::copy(x + r * cols, x + (r + 1) * cols, dst + r * ld);
    } else {
      round_to_bf16(x + r * cols, dst + r * ld, cols);
    }
  }
}

// One row of weights over its valid keys x[0, len) (the keys j0 .. j0 + len - 1 of query i).
// Softmax: normalised in the forward (the row's log-sum-exp goes to *lse), or from the saved
// log-sum-exp in the backward (saved_lse).
void row_weights(float* x, int64_t len, const Options& o, float base, float slope, const int64_t* key_segments,
                 int64_t segment, float* lse, const float* saved_lse) {
  if (!o.softmax && !key_segments) {
    sigmoid_of_scores(x, len, o.scale, base, slope);
    return;
  }
  add_position_term(x, len, o.scale, base, slope);
  if (key_segments) mask_other_segments(x, key_segments, segment, len);
  if (!o.softmax) {
    sigmoid_inplace(x, len);
  } else if (saved_lse) {
    exp_shifted(x, len, *saved_lse);
  } else {  // the diagonal key is always seen, so the row is never empty and the max is finite
    const float row_max = max_of(x, len);
    const float sum = exp_shifted(x, len, row_max);
    scale_inplace(x, len, 1.0f / sum);
    if (lse) *lse = row_max + std::log(sum);
  }
  if (key_segments) zero_other_segments(x, key_segments, segment, len);
}

// The tile's weights act(s) as a [rows, cols] fp32 matrix in p, zero outside the band and across
// segments (docs/spec.md section 1). k_t: the tile's first key column of K^T ([dim, kv_ld]).
// lse / saved_lse: per row, with stride lse_stride.
template <typename T>
void tile_weights(const Shape& s, const Options& o, const T* q_tile, const T* k_t, int64_t b, int64_t h,
                  const Tile& t, float* p, float* lse, const float* saved_lse, int64_t lse_stride) {
  const int64_t cols = t.cols();
  gemm(t.rows(), cols, s.dim, q_tile, s.q_stride(), k_t, s.kv_ld(), false, p, cols, s.vnni);
  const float slope = o.slopes ? o.slopes[h] : 0.0f;
  const int64_t* segments = o.segments ? o.segments + b * s.kv_len : nullptr;
  for (int64_t r = 0; r < t.rows(); ++r) {
    float* x = p + r * cols;
    const int64_t i = s.offset() + t.r0 + r;
    const int64_t lo = std::max(t.k0, i - s.band + 1) - t.k0, hi = i + 1 - t.k0;  // valid columns
    std::fill(x, x + lo, 0.0f);
    std::fill(x + hi, x + cols, 0.0f);
    const float base = o.bias - slope * static_cast<float>(i - t.k0 - lo);
    row_weights(x + lo, hi - lo, o, base, slope, segments ? segments + t.k0 + lo : nullptr,
                segments ? segments[i] : 0, lse ? lse + r * lse_stride : nullptr,
                saved_lse ? saved_lse + r * lse_stride : nullptr);
  }
}

// How many distinct threads ran the task loop in the last kernel call (forward or backward), for the
// test that the kernel is parallel (at::parallel_for runs serially when the extension is built without
// OpenMP while torch's ATen is built with it).
std::atomic<int64_t> last_thread_count{0};

// Runs body(task, scratch) for tasks 0 .. count-1 on torch's intra-op threads. Each thread takes
// the next task from a shared counter (tiles differ in cost, and on a busy machine a thread may be
// descheduled), and owns one Scratch for all its tasks.
template <typename T, typename Body>
void run_tasks(int64_t count, const Shape& s, bool backward, const Body& body) {
  std::atomic<int64_t> next{0};
  const int64_t threads = std::min<int64_t>(count, at::get_num_threads());
  std::mutex mutex;
  std::vector<std::thread::id> workers;
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    {
      const std::lock_guard<std::mutex> guard(mutex);
      workers.push_back(std::this_thread::get_id());
    }
    Scratch<T> scratch(s, backward);
    for (int64_t task = next++; task < count; task = next++) body(task, scratch);
    at::native::cpublas::brgemm_release();
  });
  std::sort(workers.begin(), workers.end());
  last_thread_count = std::unique(workers.begin(), workers.end()) - workers.begin();
}

// Where a tile's data starts: q-shaped tensors, K/V as GEMM B operands (k, v themselves, or
// VNNI-packed [batch, kv_heads, kv_pad / 2, dim, 2]),
// transposed K/V lanes ([batch, kv_heads, dim, kv_ld]; VNNI-packed: [.., dim / 2, kv_ld, 2]),
// the fp32 dK^T/dV^T accumulators and per-row statistics ([batch, q_len, heads]).
struct TileOffsets {
  int64_t q, kv, kv_t, acc_t, stats;

  TileOffsets(const Shape& s, int64_t b, int64_t h, const Tile& t)
      : q(((b * s.q_len + t.r0) * s.heads + h) * s.dim),
        kv(s.vnni ? ((b * s.kv_heads + h / s.group()) * s.kv_pad + t.k0) * s.dim
                  : ((b * s.kv_len + t.k0) * s.kv_heads + h / s.group()) * s.dim),
        kv_t((b * s.kv_heads + h / s.group()) * s.dim * s.kv_ld() + t.k0 * s.pair()),
        acc_t((b * s.kv_heads + h / s.group()) * s.dim * s.kv_ld() + t.k0),
        stats((b * s.q_len + t.r0) * s.heads + h) {}
};

// --- forward -----------------------------------------------------------------------------------

template <typename T>
void forward_kernel(const Shape& s, const Options& o, const T* q, const T* k_t, const T* v_lanes, T* out,
                    float* lse) {
  const int64_t blocks = s.blocks();
  run_tasks<T>(s.batch * s.heads * blocks, s, false, [&](int64_t task, Scratch<T>& scratch) {
    const int64_t lane = task / blocks, b = lane / s.heads, h = lane % s.heads;
    const Tile t = tile_at(s, task % blocks);
    const TileOffsets at(s, b, h, t);
    float *p = scratch.p.data(), *rows = scratch.rows.data();
    tile_weights(s, o, q + at.q, k_t + at.kv_t, b, h, t, p, lse ? lse + at.stats : nullptr, nullptr, s.heads);
    const T* weights = gemm_input(p, scratch.low, t.rows() * t.cols());
    gemm(t.rows(), s.dim, t.cols(), weights, t.cols(), v_lanes + at.kv, s.key_rows_ld(), false, rows, s.dim,
         s.vnni);
    store_rows(rows, t.rows(), s.dim, 1.0f, out + at.q, s.q_stride());
  });
}

// --- backward ----------------------------------------------------------------------------------

struct Inputs {
  const void *q, *k_lanes, *v_t, *k_t, *grad_out;  // layouts: see TileOffsets
  const float *lse, *row_dot;                // softmax only, [batch, q_len, heads]
};

struct Gradients {
  void* dq;
  float* dk_t;  // fp32 accumulators of dK^T, dV^T [splits, batch, kv_heads, dim, kv_ld], without `scale`
  float* dv_t;
  int64_t splits;  // query blocks of one kv lane are cut into `splits` ranges, one task each
};

// dV^T += dO^T P, dP = dO V^T, dS = act'(dP), dQ = scale dS K, dK^T += Q^T dS on one tile
// (docs/spec.md section 1; the formulas are those of swat/ops/chunked.py).
template <typename T>
void backward_tile(const Shape& s, const Options& o, const Inputs& in, const Gradients& g, int64_t split, int64_t b,
                   int64_t h, const Tile& t, Scratch<T>& scratch) {
  const T *q = static_cast<const T*>(in.q), *grad_out = static_cast<const T*>(in.grad_out);
  const int64_t rows = t.rows(), cols = t.cols(), inner_rows = s.even(rows);
  const TileOffsets at(s, b, h, t);
  const int64_t acc_at = split * s.batch * s.kv_heads * s.dim * s.kv_ld() + at.acc_t;
  float *p = scratch.p.data(), *dp = scratch.dp.data(), *dq_rows = scratch.rows.data();
  T *q_t = scratch.q_t.data(), *grad_out_t = scratch.grad_out_t.data();
  tile_weights(s, o, q + at.q, static_cast<const T*>(in.k_t) + at.kv_t, b, h, t, p, nullptr,
               o.softmax ? in.lse + at.stats : nullptr, s.heads);
  gemm(rows, cols, s.dim, grad_out + at.q, s.q_stride(), static_cast<const T*>(in.v_t) + at.kv_t, s.kv_ld(), false,
       dp, cols, s.vnni);
  transpose(grad_out + at.q, rows, s.dim, s.q_stride(), grad_out_t, inner_rows);
  const T* weights = gemm_b_input(p, rows, cols, scratch.low_b, s.vnni);
  gemm(s.dim, cols, inner_rows, grad_out_t, inner_rows, weights, cols, true, g.dv_t + acc_at, s.kv_ld(), s.vnni);
  for (int64_t r = 0; r < rows; ++r) {
    if (o.softmax) {
      softmax_grad(dp + r * cols, p + r * cols, cols, in.row_dot[at.stats + r * s.heads]);
    } else {
      sigmoid_grad(dp + r * cols, p + r * cols, cols);
    }
  }
  const T* ds = gemm_input(dp, scratch.low, rows * cols);
  gemm(rows, s.dim, cols, ds, cols, static_cast<const T*>(in.k_lanes) + at.kv, s.key_rows_ld(), false, dq_rows,
       s.dim, s.vnni);
  store_rows(dq_rows, rows, s.dim, o.scale, static_cast<T*>(g.dq) + at.q, s.q_stride());
  transpose(q + at.q, rows, s.dim, s.q_stride(), q_t, inner_rows);
  const T* ds_b = rows_as_b_input(ds, rows, cols, scratch.low_b, s.vnni);
  gemm(s.dim, cols, inner_rows, q_t, inner_rows, ds_b, cols, true, g.dk_t + acc_at, s.kv_ld(), s.vnni);
}

// Parallel over (batch, kv head) lanes x query ranges: each task owns its lane's dK, dV
// accumulators of its split (no atomics); the query heads of a kv head run in the same task.
template <typename T>
void backward_kernel(const Shape& s, const Options& o, const Inputs& in, const Gradients& g) {
  const int64_t blocks = s.blocks(), splits = g.splits;
  run_tasks<T>(s.batch * s.kv_heads * splits, s, true, [&](int64_t task, Scratch<T>& scratch) {
    const int64_t lane = task / splits, split = task % splits, b = lane / s.kv_heads, kv_head = lane % s.kv_heads;
    const int64_t first = blocks * split / splits, last = blocks * (split + 1) / splits;
    for (int64_t h = kv_head * s.group(); h < (kv_head + 1) * s.group(); ++h) {
      for (int64_t block = first; block < last; ++block) {
        backward_tile(s, o, in, g, split, b, h, tile_at(s, block), scratch);
      }
    }
  });
}

// --- entry points ------------------------------------------------------------------------------

Shape shape_of(const at::Tensor& q, const at::Tensor& k, int64_t band, int64_t block) {
  const int64_t kv_len = k.size(1), dim = q.size(3);
  const bool vnni = q.scalar_type() == at::kBFloat16 && dim % 2 == 0 && vnni_bf16_available();
  return {q.size(0), q.size(1), kv_len, q.size(2), k.size(2), dim, band, block, vnni, kv_len + (vnni ? kv_len & 1 : 0)};
}

Options options_of(const std::optional<at::Tensor>& slopes, const std::optional<at::Tensor>& segment_ids,
                   double scale, double bias, bool softmax) {
  return {static_cast<float>(scale), static_cast<float>(bias), softmax,
          slopes ? slopes->data_ptr<float>() : nullptr, segment_ids ? segment_ids->data_ptr<int64_t>() : nullptr};
}

void check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t band, int64_t block) {
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kBFloat16, "swat_cpu: fp32 or bf16 only");
  TORCH_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous(), "swat_cpu: contiguous inputs only");
  TORCH_CHECK(band >= 1 && block >= 1, "swat_cpu: band and block must be >= 1");
}

// --- layouts of the GEMM operands and of the gradients ----------------------------------------------
// Each is one parallel pass over [batch, kv heads, blocks of kKeyBlock keys]. The transposes go
// through a per-thread [kKeyBlock, dim] fp32 tile, so that both the [keys, dim] side and the
// [dim, keys] side (rows kv_ld apart) are read and written in runs.

constexpr int64_t kKeyBlock = 64;

template <typename Body>
void for_each_key_block(const Shape& s, const Body& body) {
  const int64_t blocks = (s.kv_pad + kKeyBlock - 1) / kKeyBlock, lanes = s.batch * s.kv_heads;
  at::parallel_for(0, lanes * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> tile(kKeyBlock * s.dim);  // fp32 or, reinterpreted, bf16 values
    for (int64_t task = begin; task < end; ++task) {
      const int64_t lane = task / blocks, j0 = task % blocks * kKeyBlock;
      body(lane / s.kv_heads, lane % s.kv_heads, j0, std::min(j0 + kKeyBlock, s.kv_pad), tile.data());
    }
  });
}

// The GEMM B operand with dim as inner dimension (of Q K^T and dO V^T), from k or v [batch,
// kv_len, kv_heads, dim]: [batch, kv_heads, dim, kv_ld], VNNI-packed [batch, kv_heads, dim / 2,
// kv_ld, 2]; keys past kv_len are zero.
template <typename T>
at::Tensor key_columns(const at::Tensor& x, const Shape& s) {
  at::Tensor out = at::empty({s.batch, s.kv_heads, s.dim * s.kv_ld()}, x.options());
  const T* src = x.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  const int64_t pair = s.pair();
  for_each_key_block(s, [&](int64_t b, int64_t h, int64_t j0, int64_t j1, float* buffer) {
    T* tile = reinterpret_cast<T*>(buffer);  // [j1 - j0, dim]: the block's keys, zero past kv_len
    const int64_t valid = std::max<int64_t>(0, std::min(j1, s.kv_len) - j0);
    for (int64_t j = 0; j < valid; ++j) {
      const T* key = src + ((b * s.kv_len + j0 + j) * s.kv_heads + h) * s.dim;
      std::copy(key, key + s.dim, tile + j * s.dim);
    }
    std::fill(tile + valid * s.dim, tile + (j1 - j0) * s.dim, T(0.0f));
    T* lane = dst + (b * s.kv_heads + h) * s.dim * s.kv_ld();
    for (int64_t d = 0; d < s.dim; d += pair) {
      T* packed = lane + d * s.kv_ld() + j0 * pair;  // row d / pair of the packed lane
      for (int64_t j = 0; j < j1 - j0; ++j) {
        for (int64_t e = 0; e < pair; ++e) packed[j * pair + e] = tile[j * s.dim + d + e];
      }
    }
  });
  return out;
}

// The GEMM B operand with keys as inner dimension (of P V and dS K): x itself, or VNNI-packed
// [batch, kv_heads, kv_pad / 2, dim, 2] (pairs of consecutive keys interleaved; bf16 only).
template <typename T>
at::Tensor key_rows(const at::Tensor& x, const Shape& s) {
  if (!s.vnni) return x;
  at::Tensor out = at::empty({s.batch, s.kv_heads, s.kv_pad * s.dim}, x.options());
  const uint16_t* src = reinterpret_cast<const uint16_t*>(x.data_ptr<T>());
  uint16_t* dst = reinterpret_cast<uint16_t*>(out.data_ptr<T>());
  for_each_key_block(s, [&](int64_t b, int64_t h, int64_t j0, int64_t j1, float*) {
    // j0 is even (kKeyBlock is); the block's pairs end at j1, or at kv_pad = kv_len + 1 (a zero key)
    interleave_row_pairs(src + ((b * s.kv_len + j0) * s.kv_heads + h) * s.dim, std::min(j1, s.kv_len) - j0,
                         s.kv_stride(), s.dim, dst + ((b * s.kv_heads + h) * s.kv_pad + j0) * s.dim);
  });
  return out;
}

// factor * the sum over splits of a transposed accumulator [splits, batch, kv_heads, dim, kv_ld]
// (fp32), as [batch, kv_len, kv_heads, dim] in the dtype of `like`.
template <typename T>
at::Tensor gradient_of(const at::Tensor& acc_t, float factor, const at::Tensor& like, const Shape& s) {
  at::Tensor grad = at::empty(like.sizes(), like.options());
  const float* acc = acc_t.data_ptr<float>();
  T* dst = grad.data_ptr<T>();
  const int64_t splits = acc_t.size(0), split_stride = s.batch * s.kv_heads * s.dim * s.kv_ld();
  for_each_key_block(s, [&](int64_t b, int64_t h, int64_t j0, int64_t j1, float* tile) {
    j1 = std::min(j1, s.kv_len);
    const float* lane = acc + (b * s.kv_heads + h) * s.dim * s.kv_ld();
    for (int64_t split = 0; split < splits; ++split) {
      for (int64_t d = 0; d < s.dim; ++d) {
        const float* column = lane + split * split_stride + d * s.kv_ld();
        for (int64_t j = j0; j < j1; ++j) {
          float& sum = tile[(j - j0) * s.dim + d];
          sum = split ? sum + column[j] : column[j];
        }
      }
    }
    if (j1 > j0) store_rows(tile, j1 - j0, s.dim, factor, dst + ((b * s.kv_len + j0) * s.kv_heads + h) * s.dim,
                            s.kv_stride());
  });
  return grad;
}

template <typename T>
void forward_typed(const Shape& s, const Options& o, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   at::Tensor& out, float* lse) {
  const at::Tensor k_t = key_columns<T>(k, s), v_lanes = key_rows<T>(v, s);
  forward_kernel(s, o, q.data_ptr<T>(), k_t.data_ptr<T>(), v_lanes.data_ptr<T>(), out.data_ptr<T>(), lse);
}

// Returns the output and, for softmax, each row's log-sum-exp [batch, q_len, heads] (fp32).
std::tuple<at::Tensor, at::Tensor> swat_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const std::optional<at::Tensor>& slopes,
                                                const std::optional<at::Tensor>& segment_ids, int64_t band,
                                                double scale, double bias, bool softmax, int64_t block) {
  check_inputs(q, k, v, band, block);
  const Shape s = shape_of(q, k, band, block);
  const Options o = options_of(slopes, segment_ids, scale, bias, softmax);
  at::Tensor out = at::empty_like(q);
  at::Tensor lse = at::empty({softmax ? s.batch : 0, s.q_len, s.heads}, q.options().dtype(at::kFloat));
  float* lse_ptr = softmax ? lse.data_ptr<float>() : nullptr;
  if (q.scalar_type() == at::kFloat) {
    forward_typed<float>(s, o, q, k, v, out, lse_ptr);
  } else {
    forward_typed<bf16>(s, o, q, k, v, out, lse_ptr);
  }
  return {out, lse};
}

// Splits the query blocks of each kv lane when there are fewer lanes than threads.
int64_t splits_for(const Shape& s) {
  const int64_t lanes = s.batch * s.kv_heads, threads = at::get_num_threads();
  if (lanes == 0 || lanes >= threads) return 1;
  return std::max<int64_t>(1, std::min(s.blocks(), (threads + lanes - 1) / lanes));
}

// Writes dQ into dq; returns dK and dV.
template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_typed(const Shape& s, const Options& o, const at::Tensor& q,
                                                  const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& grad_out, const at::Tensor& lse,
                                                  const at::Tensor& row_dot, at::Tensor& dq) {
  const int64_t splits = splits_for(s);
  const at::Tensor k_t = key_columns<T>(k, s), v_t = key_columns<T>(v, s), k_lanes = key_rows<T>(k, s);
  const auto acc_options = k.options().dtype(at::kFloat);
  at::Tensor dk_t = at::zeros({splits, s.batch, s.kv_heads, s.dim, s.kv_ld()}, acc_options);
  at::Tensor dv_t = at::zeros({splits, s.batch, s.kv_heads, s.dim, s.kv_ld()}, acc_options);
  const Inputs in{q.data_ptr(), k_lanes.data_ptr(), v_t.data_ptr(), k_t.data_ptr(), grad_out.data_ptr(),
                  o.softmax ? lse.data_ptr<float>() : nullptr, o.softmax ? row_dot.data_ptr<float>() : nullptr};
  backward_kernel<T>(s, o, in, {dq.data_ptr(), dk_t.data_ptr<float>(), dv_t.data_ptr<float>(), splits});
  return {gradient_of<T>(dk_t, o.scale, k, s), gradient_of<T>(dv_t, 1.0f, v, s)};
}

// lse, row_dot: [batch, q_len, heads] fp32 (softmax only; row_dot = rowsum(dO * O)).
std::tuple<at::Tensor, at::Tensor, at::Tensor> swat_backward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& grad_out,
    const at::Tensor& lse, const at::Tensor& row_dot, const std::optional<at::Tensor>& slopes,
    const std::optional<at::Tensor>& segment_ids, int64_t band, double scale, double bias, bool softmax,
    int64_t block) {
  check_inputs(q, k, v, band, block);
  TORCH_CHECK(grad_out.is_contiguous() && grad_out.sizes() == q.sizes(), "swat_cpu: bad grad_out");
  const Shape s = shape_of(q, k, band, block);
  const Options o = options_of(slopes, segment_ids, scale, bias, softmax);
  at::Tensor dq = at::empty_like(q), dk, dv;
  if (q.scalar_type() == at::kFloat) {
    std::tie(dk, dv) = backward_typed<float>(s, o, q, k, v, grad_out, lse, row_dot, dq);
  } else {
    std::tie(dk, dv) = backward_typed<bf16>(s, o, q, k, v, grad_out, lse, row_dot, dq);
  }
  return {dq, dk, dv};
}

int64_t threads_used() { return last_thread_count.load(); }

// The autograd of `forward`: `backward` through the dispatcher (so torch.compile traces both ops
// through their fake implementations, registered in swat/ops/cpu_fused.py). The log-sum-exp is
// not differentiable; slopes and segment ids are constants.
class Attention : public torch::autograd::Function<Attention> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v,
                                                const std::optional<at::Tensor>& slopes,
                                                const std::optional<at::Tensor>& segment_ids, int64_t band,
                                                double scale, double bias, bool softmax, int64_t block) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("swat_cpu::forward", "")
                               .typed<decltype(swat_forward)>();
    auto [out, lse] = op.call(q, k, v, slopes, segment_ids, band, scale, bias, softmax, block);
    ctx->mark_non_differentiable({lse});
    ctx->save_for_backward({q, k, v, softmax ? out : at::Tensor(), lse, slopes.value_or(at::Tensor()),
                            segment_ids.value_or(at::Tensor())});
    ctx->saved_data["band"] = band;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["bias"] = bias;
    ctx->saved_data["softmax"] = softmax;
    ctx->saved_data["block"] = block;
    return {out, lse};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("swat_cpu::backward", "")
                                .typed<decltype(swat_backward)>();
    const auto saved = ctx->get_saved_variables();
    const auto optional = [](const at::Tensor& x) { return x.defined() ? std::optional<at::Tensor>(x) : std::nullopt; };
    const bool softmax = ctx->saved_data["softmax"].toBool();
    const at::Tensor grad_out = grads[0].contiguous();
    // softmax: dS = P * (dP - rowsum(dO * O)), the row sums as [batch, q_len, heads]; unused for sigmoid
    const at::Tensor row_dot = softmax ? (grad_out.to(at::kFloat) * saved[3].to(at::kFloat)).sum(-1) : saved[4];
    auto [dq, dk, dv] = op.call(saved[0], saved[1], saved[2], grad_out, saved[4], row_dot, optional(saved[5]),
                                optional(saved[6]), ctx->saved_data["band"].toInt(),
                                ctx->saved_data["scale"].toDouble(), ctx->saved_data["bias"].toDouble(), softmax,
                                ctx->saved_data["block"].toInt());
    return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> swat_forward_autograd(const at::Tensor& q, const at::Tensor& k,
                                                         const at::Tensor& v, const std::optional<at::Tensor>& slopes,
                                                         const std::optional<at::Tensor>& segment_ids, int64_t band,
                                                         double scale, double bias, bool softmax, int64_t block) {
  auto outs = Attention::apply(q, k, v, slopes, segment_ids, band, scale, bias, softmax, block);
  return {outs[0], outs[1]};
}

}  // namespace

// The schemas, the CPU kernels and the autograd of `forward`, each registered apart: an op defined
// with its kernel would be CompositeImplicitAutograd, which takes no fake (meta) implementation.
TORCH_LIBRARY(swat_cpu, m) {
  m.def("threads_used() -> int", &threads_used);
  m.def("forward(Tensor q, Tensor k, Tensor v, Tensor? slopes, Tensor? segment_ids, int band, float scale, "
        "float bias, bool softmax, int block) -> (Tensor, Tensor)");
  m.def("backward(Tensor q, Tensor k, Tensor v, Tensor grad_out, Tensor lse, Tensor row_dot, Tensor? slopes, "
        "Tensor? segment_ids, int band, float scale, float bias, bool softmax, int block) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(swat_cpu, CPU, m) {
  m.impl("forward", &swat_forward);
  m.impl("backward", &swat_backward);
}

TORCH_LIBRARY_IMPL(swat_cpu, Autograd, m) {
  m.impl("forward", &swat_forward_autograd);
}
