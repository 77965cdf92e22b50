#pragma once
// Convolution kernels on the CHWN layout for one instruction-set level (see
// core/detail/isa_begin.hpp); the plan and weight packing are in
// operators/detail/conv_plan.hpp.
// Convolution kernels on the CHWN layout.
//
// Forward product (y = alpha * conv(x) + beta * y), as an implicit GEMM per
// group: Out[co][j] = sum_k W[co][k] * B[k][j], k = (ci, kh, kw). The input
// is first copied into a zero-padded, stride-phase-split buffer
//   Xp[ci][ph][pw][h'][w'][n]   (padded row h = h'*sh + ph, column w = w'*sw + pw),
// so that for a fixed tap k the inputs of all outputs (oh, ow, n) of one
// output row, or of the whole plane when rows are merged, are ONE contiguous
// segment of Xp: tap (kh, kw) reads phase ((kh*dh) % sh, (kw*dw) % sw) at
// offset ((kh*dh) / sh, (kw*dw) / sw). Columns are numbered j = (oh*Wq + w')*N + n
// with w' < Wq (the phase plane width); the columns with w' >= OW are computed
// and discarded ("merged" rows, better when OW*N is small), or each output row
// is a separate segment of OW*N columns ("row" segments).
//
// Two GEMM back ends consume that description:
//  - direct: a register-tiled micro-kernel (MR output channels x NV vectors of
//    columns) reading the B rows straight from Xp;
//  - im2col: the B rows of a column chunk are packed into a per-task buffer and
//    multiplied by Eigen's GEMM.
// Each output element is one full sum over k in a fixed order inside one task,
// so results do not depend on the number of threads or the task split.
//
// Adjoint product: the scatter form of the same description. Per input
// channel (the parallel dimension) the contributions w[co][ci][kh][kw] * x[co]
// are accumulated with contiguous axpys into a padded phase-split buffer in a
// fixed (co, kh, kw, row) order, then copied out with alpha/beta.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include <Eigen/Core>
#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include "core/detail/simd.hpp"
#include "operators/detail/conv_plan.hpp"
#include "solve/detail/activations.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

// ------------------------------------------------------------ SIMD helpers

/// One hardware vector of the level (64 bytes with AVX-512, 32 with AVX2, 16
/// at the generic level).
template <class T> struct Vec {
  static constexpr int lanes = vector_bytes / sizeof(T);
  typedef T type __attribute__((vector_size(vector_bytes)));
  typedef T unaligned __attribute__((vector_size(vector_bytes), aligned(sizeof(T))));
  static type load(const T *p) { return *reinterpret_cast<const unaligned *>(p); }
  static void store(T *p, type v) { *reinterpret_cast<unaligned *>(p) = v; }
  static type set1(T s) {
#if TACIT_TARGET_AVX512
    if constexpr (sizeof(T) == 4)
      return reinterpret_cast<type>(_mm512_set1_ps(s));
    else
      return reinterpret_cast<type>(_mm512_set1_pd(s));
#elif TACIT_TARGET_AVX2
    if constexpr (sizeof(T) == 4)
      return reinterpret_cast<type>(_mm256_set1_ps(s));
    else
      return reinterpret_cast<type>(_mm256_set1_pd(s));
#else
    return s - type{}; // folds to a broadcast (x - 0 == x exactly)
#endif
  }
  /// The first n (0 < n <= lanes) values at p, zeros after them; nothing
  /// past p + n is read.
  static type load_n(const T *p, index_t n) {
#if TACIT_TARGET_AVX512
    const auto m = static_cast<__mmask16>((1u << n) - 1u);
    if constexpr (sizeof(T) == 4)
      return reinterpret_cast<type>(_mm512_maskz_loadu_ps(m, p));
    else
      return reinterpret_cast<type>(_mm512_maskz_loadu_pd(static_cast<__mmask8>(m), p));
#elif TACIT_TARGET_AVX2
    if constexpr (sizeof(T) == 4)
      return reinterpret_cast<type>(_mm256_maskload_ps(p, tail_mask(n)));
    else
      return reinterpret_cast<type>(_mm256_maskload_pd(p, tail_mask(n)));
#else
    type v{};
    std::memcpy(&v, p, static_cast<std::size_t>(n) * sizeof(T));
    return v;
#endif
  }
  /// Stores the first n values of v at p; nothing past p + n is written.
  static void store_n(T *p, type v, index_t n) {
#if TACIT_TARGET_AVX512
    const auto m = static_cast<__mmask16>((1u << n) - 1u);
    if constexpr (sizeof(T) == 4)
      _mm512_mask_storeu_ps(p, m, reinterpret_cast<__m512>(v));
    else
      _mm512_mask_storeu_pd(p, static_cast<__mmask8>(m), reinterpret_cast<__m512d>(v));
#elif TACIT_TARGET_AVX2
    if constexpr (sizeof(T) == 4)
      _mm256_maskstore_ps(p, tail_mask(n), reinterpret_cast<__m256>(v));
    else
      _mm256_maskstore_pd(p, tail_mask(n), reinterpret_cast<__m256d>(v));
#else
    std::memcpy(p, &v, static_cast<std::size_t>(n) * sizeof(T));
#endif
  }
#if TACIT_TARGET_AVX2 && !TACIT_TARGET_AVX512
  /// Lanes below n all ones (32-bit lanes for float, 64-bit for double).
  static __m256i tail_mask(index_t n) {
    if constexpr (sizeof(T) == 4)
      return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    else
      return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
#endif
};

/// Output channels per micro-kernel call: the register tile is kernel_rows x
/// 3 vectors of accumulators (24 of the 32 zmm registers with AVX-512; 12 of
/// the 16 ymm / xmm registers with AVX2 and at the generic level, which leaves
/// 3 for the B vectors and 1 for the broadcast weight). A packed block of
/// conv_mr = 8 channels is one call with AVX-512, two below it.
inline constexpr int kernel_rows = TACIT_TARGET_AVX512 ? 8 : 4;
static_assert(conv_mr % kernel_rows == 0, "a packed block is whole kernel calls");

/// Columns per micro-tile.
template <class T> inline constexpr index_t tile_cols = 3 * Vec<T>::lanes;
static_assert(tile_cols<float> <= conv_max_tile_cols<float>);

/// C tile [MR][NV*lanes] (ld = NV * lanes) = Wp[K][MR]^T B for MR rows of a
/// packed block (wp points at the first row's weight of k = 0; rows of k are
/// conv_mr apart), B row k = b[off[k] * scale ...] (or the packed tile
/// b[k * NV * lanes ...] when off is null). Each element is one FMA chain
/// over k = 0..K-1 in order, so every level with FMA gives the same bits;
/// with Accumulate the chain continues from the sums in ct (a later range of
/// k: the same chain, cut into pieces that fit the L1 cache).
/// With a Sink, the sums of the final piece of k go from the registers to
/// sink(acc) (the fused store) instead of to ct: no round trip through memory.
/// Never inlined: inside the large task body GCC ran out of general
/// registers and kept the loop counter in memory (a load and a
/// read-modify-write per k); on its own the loop keeps everything in
/// registers.
template <class T, int MR, int NV, bool Accumulate = false, class Sink = std::nullptr_t>
[[gnu::noinline]] void micro_kernel(index_t K, const T *__restrict wp,
                                    const T *__restrict b, const index_t *__restrict off,
                                    index_t scale, T *__restrict ct,
                                    Sink &&sink = nullptr) {
  using V = Vec<T>;
  using VT = typename V::type;
  VT acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      acc[r][v] = Accumulate ? V::load(ct + r * (NV * V::lanes) + v * V::lanes) : VT{};
  for (index_t k = 0; k < K; ++k) {
    const T *__restrict bk = off ? b + off[k] * scale : b + k * (NV * V::lanes);
    VT bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = V::load(bk + v * V::lanes);
    const T *__restrict wk = wp + k * conv_mr;
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const VT a = V::set1(wk[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[r][v] = madd_lanes<VT, T>(a, bv[v], acc[r][v]);
    }
  }
  if constexpr (!std::is_same_v<std::remove_cvref_t<Sink>, std::nullptr_t>) {
    sink(acc);
  } else {
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v)
        V::store(ct + r * (NV * V::lanes) + v * V::lanes, acc[r][v]);
  }
}

/// y[0..n) = alpha * acc + beta * y (beta == 0 overwrites y), at this level.
template <class T>
inline void store_scaled(T *__restrict y, const T *__restrict acc, index_t n, T alpha,
                         T beta) {
  if (beta == T(0)) {
    for (index_t j = 0; j < n; ++j)
      y[j] = alpha * acc[j];
  } else {
    for (index_t j = 0; j < n; ++j)
      y[j] = madd(beta, y[j], alpha * acc[j]);
  }
}

/// Copies n values (a pixel's columns): whole vectors inline when n is a
/// multiple of the vector width (a call to memmove costs as much as a
/// 128-column copy), memcpy otherwise.
template <class T>
inline void copy_cell(T *__restrict dst, const T *__restrict src, index_t n) {
  using V = Vec<T>;
  if (n % V::lanes != 0) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
    return;
  }
  for (index_t j = 0; j < n; j += V::lanes)
    V::store(dst + j, V::load(src + j));
}

/// Copies x (C*H*W rows, N columns) into the padded phase-split buffer xp.
/// Tasks own rows of phase planes (a layer with one input channel is still
/// copied by every core).
template <class T>
void fill_phase_split(const ConvPlan &p, ConstMatrixView<T> x, T *xp, Execution exec) {
  const index_t N = x.cols, row_len = p.Wq * N;
  const index_t rows = p.C * p.sh * p.sw * p.Hq;
  // About 32k elements per task: a narrow batch is copied by few tasks.
  const index_t grain = std::max<index_t>(1, 32768 / std::max<index_t>(1, row_len));
  // Phases no tap reads (a 1x1 convolution of stride 2 reads one of four)
  // are zeroed rather than copied: only the junk columns of a tile reach them.
  // (A bit per phase; strides with more than 64 phases copy them all.)
  std::uint64_t phase_read = p.sh * p.sw > 64 ? ~std::uint64_t(0) : 0;
  if (p.sh * p.sw <= 64)
    for (index_t kh = 0; kh < p.KH; ++kh)
      for (index_t kw = 0; kw < p.KW; ++kw)
        phase_read |= std::uint64_t(1)
                      << ((kh * p.dh) % p.sh * p.sw + (kw * p.dw) % p.sw);
  for_range(exec, rows, grain, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      // r = ((c * sh + ph) * sw + pw) * Hq + hq, the plane rows in memory order.
      const index_t hq = r % p.Hq, plane = r / p.Hq;
      const index_t pw = plane % p.sw, ph = (plane / p.sw) % p.sh,
                    c = plane / (p.sw * p.sh);
      const index_t h = hq * p.sh + ph - p.pt;
      T *row = xp + r * row_len;
      const bool read = p.sh * p.sw > 64 || (phase_read >> (ph * p.sw + pw) & 1) != 0;
      if (h < 0 || h >= p.H || !read) {
        std::fill(row, row + row_len, T(0));
        continue;
      }
      if (p.sw == 1 && x.ld == N) {
        // Contiguous image row: zeros, the row, zeros.
        const T *src = x.data + (c * p.H + h) * p.W * N;
        const index_t lead = std::min(p.pl, p.Wq);
        const index_t len = std::clamp<index_t>(p.Wq - p.pl, 0, p.W);
        std::fill(row, row + lead * N, T(0));
        std::memcpy(row + lead * N, src, static_cast<std::size_t>(len * N) * sizeof(T));
        std::fill(row + (lead + len) * N, row + row_len, T(0));
        continue;
      }
      if (N == 1) {
        // One column: the cells wq in [lo, hi) read w = wq * sw + pw - pl
        // inside the image, the others are padding.
        const index_t shift = pw - p.pl;
        const index_t lo = std::clamp<index_t>((-shift + p.sw - 1) / p.sw, 0, p.Wq);
        const index_t hi = std::clamp<index_t>((p.W - shift + p.sw - 1) / p.sw, lo, p.Wq);
        const T *__restrict src = x.data + (c * p.H + h) * p.W * x.ld;
        std::fill(row, row + lo, T(0));
        for (index_t wq = lo; wq < hi; ++wq)
          row[wq] = src[(wq * p.sw + shift) * x.ld];
        std::fill(row + hi, row + p.Wq, T(0));
        continue;
      }
      for (index_t wq = 0; wq < p.Wq; ++wq) {
        const index_t w = wq * p.sw + pw - p.pl;
        T *cell = row + wq * N;
        if (w < 0 || w >= p.W)
          std::fill(cell, cell + N, T(0));
        else
          copy_cell(cell, x.row((c * p.H + h) * p.W + w), N);
      }
    }
  });
}

/// How the output columns are cut into segments.
struct ConvSegments {
  index_t count = 1, length = 0; // segments of `length` columns
  index_t stride = 0;            // columns between segment starts (Wq*N)
  index_t tiles = 0;             // tiles of tile_cols per segment

  template <class T> static ConvSegments choose(const ConvPlan &p, index_t N) {
    const index_t nr = tile_cols<T>;
    ConvSegments merged{1, p.OH * p.Wq * N, p.Wq * N, 0};
    ConvSegments rows{p.OH, p.OW * N, p.Wq * N, 0};
    merged.tiles = (merged.length + nr - 1) / nr;
    rows.tiles = (rows.length + nr - 1) / nr;
    // Useful columns are the same; compare the columns computed.
    return merged.tiles * merged.count <= rows.tiles * rows.count ? merged : rows;
  }
};

/// phi on a vector of the level (the formulas of activate()).
template <ActivationKind K, class VT, class T> inline VT activate_lanes(VT v, T slope) {
  const VT zero{};
  if constexpr (K == ActivationKind::relu) {
    return v > zero ? v : zero;
  } else if constexpr (K == ActivationKind::leaky_relu) {
    return v >= zero ? v : Vec<T>::set1(slope) * v;
  } else if constexpr (K == ActivationKind::identity) {
    return v;
  } else {
    for (int l = 0; l < Vec<T>::lanes; ++l)
      v[l] = activate(K, slope, v[l]);
    return v;
  }
}

/// f(integral_constant<ActivationKind, kind>): the kind becomes a constant.
template <class F> inline void with_activation_kind(ActivationKind kind, F &&f) {
  using K = ActivationKind;
  switch (kind) {
  case K::relu:
    return f(std::integral_constant<K, K::relu>{});
  case K::leaky_relu:
    return f(std::integral_constant<K, K::leaky_relu>{});
  case K::tanh:
    return f(std::integral_constant<K, K::tanh>{});
  case K::sigmoid:
    return f(std::integral_constant<K, K::sigmoid>{});
  case K::identity:
    return f(std::integral_constant<K, K::identity>{});
  }
}

/// How a forward product writes its sums: y = alpha * acc + beta * y (the
/// product rounded, then one multiply-add). `run` writes `len` consecutive
/// columns of y row `yrow`; `strided` writes column 0 of `len` consecutive
/// rows yrow0.. (ld apart); `vectors` writes `len` (a multiple of the
/// vector width) consecutive values with the level's vectors. All three give
/// the same bits for the same element.
template <class T> struct PlainStore {
  T alpha, beta;
  T value(T acc, T old) const {
    const T t = alpha * acc;
    return beta == T(0) ? t : madd(beta, old, t);
  }
  void run(T *__restrict dst, const T *__restrict src, index_t len, index_t) {
    for (index_t j = 0; j < len; ++j)
      dst[j] = value(src[j], beta == T(0) ? T(0) : dst[j]);
  }
  void strided(T *__restrict dst, index_t ld, const T *__restrict src, index_t len,
               index_t) {
    for (index_t j = 0; j < len; ++j)
      dst[j * ld] = value(src[j], beta == T(0) ? T(0) : dst[j * ld]);
  }
  template <class F> void with_kind(F &&f) {
    f(std::integral_constant<ActivationKind, ActivationKind::identity>{});
  }
  /// One vector: dst = alpha * acc (+ beta * dst).
  template <class VT>
  [[gnu::always_inline]] void one(T *__restrict dst, VT acc, VT va, VT vb) const {
    VT t = va * acc;
    if (beta != T(0))
      t = madd_lanes<VT, T>(vb, Vec<T>::load(dst), t);
    Vec<T>::store(dst, t);
  }
  template <ActivationKind>
  void vectors(T *__restrict dst, const T *__restrict src, index_t len, index_t) {
    using V = Vec<T>;
    using VT = typename V::type;
    const VT va = V::set1(alpha), vb = V::set1(beta);
    for (index_t j = 0; j < len; j += V::lanes)
      one(dst + j, V::load(src + j), va, vb);
  }
  /// body(emit, emit_one) with emit(dst, src, len, yrow) = vectors<K>(dst,
  /// src, len, yrow) and emit_one(dst, acc, yrow) the same for one vector of
  /// sums held in a register.
  template <ActivationKind K, class Body> void for_vectors(Body &&body) {
    using V = Vec<T>;
    using VT = typename V::type;
    const VT va = V::set1(alpha), vb = V::set1(beta);
    body([&](T *dst, const T *src, index_t len,
             index_t yrow) { vectors<K>(dst, src, len, yrow); },
         [&](T *__restrict dst, VT acc, index_t)
             __attribute__((always_inline)) { one(dst, acc, va, vb); });
  }
  /// strided() with ld = 1.
  void contiguous(T *__restrict dst, const T *__restrict src, index_t len, index_t) {
    const index_t body = len / Vec<T>::lanes * Vec<T>::lanes;
    vectors<ActivationKind::identity>(dst, src, body, 0);
    run(dst + body, src + body, len - body, 0);
  }
  bool residual_ld_is(index_t) const { return true; }
  bool finite() const { return true; }
};

/// The state update fused into the store: y = phi(alpha * acc + bias[row] (+
/// beta * y) (+ scale * r)), each term added by one multiply-add in this
/// order (bias may be null: 0; r, a residual with y's shape, may be absent),
/// remembering whether a pre-activation value was NaN or infinite (phi may
/// hide it: ReLU maps NaN to 0).
template <class T> struct ActivatedStore {
  T alpha, beta;
  const T *bias;
  Activation phi;
  /// The residual: element (i, j) at res[i * res_ld + j]; y's own origin and
  /// leading dimension locate a store's column.
  const T *res = nullptr;
  index_t res_ld = 0;
  T res_scale = T(1);
  const T *y_data = nullptr;
  index_t y_ld = 0;
  /// v - v summed over the pre-activation values: NaN iff one was not finite.
  typename Vec<T>::type bad{};
  T bad_scalar = T(0);

  template <class F> void with_kind(F &&f) { with_activation_kind(phi.kind, f); }

  T pre(T acc, T b, T old, T r) const {
    T t = madd(alpha, acc, b);
    if (beta != T(0))
      t = madd(beta, old, t);
    if (res)
      t = madd(res_scale, r, t);
    return t;
  }
  // Where the residual of y's element at `dst` (row yrow) is.
  const T *residual_at(const T *dst, index_t yrow) const {
    return res ? res + yrow * res_ld + (dst - (y_data + yrow * y_ld)) : nullptr;
  }
  template <ActivationKind K>
  void run_kind(T *__restrict dst, const T *__restrict src, index_t len, T b,
                const T *__restrict add) {
    const T slope = static_cast<T>(phi.slope);
    T nf = 0;
    for (index_t j = 0; j < len; ++j) {
      const T v = pre(src[j], b, beta == T(0) ? T(0) : dst[j], add ? add[j] : T(0));
      nf += v - v;
      dst[j] = activate(K, slope, v);
    }
    bad_scalar += nf;
  }
  void run(T *dst, const T *src, index_t len, index_t yrow) {
    const T b = bias ? bias[yrow] : T(0);
    const T *add = residual_at(dst, yrow);
    with_kind([&](auto kind) { run_kind<decltype(kind)::value>(dst, src, len, b, add); });
  }
  void strided(T *dst, index_t ld, const T *src, index_t len, index_t yrow0) {
    const T *b = bias ? bias + yrow0 : nullptr;
    const T *add = residual_at(dst, yrow0);
    with_kind([&](auto kind) {
      constexpr ActivationKind K = decltype(kind)::value;
      const T slope = static_cast<T>(phi.slope);
      T nf = 0;
      for (index_t j = 0; j < len; ++j) {
        const T v = pre(src[j], b ? b[j] : T(0), beta == T(0) ? T(0) : dst[j * ld],
                        add ? add[j * res_ld] : T(0));
        nf += v - v;
        dst[j * ld] = activate(K, slope, v);
      }
      bad_scalar += nf;
    });
  }
  /// body(emit, emit_one) where emit(dst, src, len, yrow) stores `len` (a
  /// multiple of the vector width) values of row yrow with vectors and
  /// emit_one(dst, acc, yrow) one vector of sums held in a register; the
  /// flags, the constant vectors and the finiteness sum are set up once for
  /// all the calls (a tile makes one per output channel and cell, of a few
  /// vectors each).
  template <ActivationKind K, class Body> void for_vectors(Body &&body) {
    with_flags(true, res != nullptr, [&](auto, auto has_res, auto has_beta) {
      constexpr bool Res = decltype(has_res)::value, Beta = decltype(has_beta)::value;
      using V = Vec<T>;
      using VT = typename V::type;
      const T slope = static_cast<T>(phi.slope);
      const VT va = V::set1(alpha), vb = V::set1(beta), vr = V::set1(res_scale);
      VT nf{};
      auto one = [&](T *__restrict dst, VT acc, VT vbias, const T *__restrict add)
          __attribute__((always_inline)) {
        VT t = madd_lanes<VT, T>(va, acc, vbias);
        if constexpr (Beta)
          t = madd_lanes<VT, T>(vb, V::load(dst), t);
        if constexpr (Res)
          t = madd_lanes<VT, T>(vr, V::load(add), t);
        nf += t - t;
        V::store(dst, activate_lanes<K>(t, slope));
      };
      body(
          [&](T *__restrict dst, const T *__restrict src, index_t len, index_t yrow) {
            const T *__restrict add = Res ? residual_at(dst, yrow) : nullptr;
            const VT vbias = V::set1(bias ? bias[yrow] : T(0));
            for (index_t j = 0; j < len; j += V::lanes)
              one(dst + j, V::load(src + j), vbias, Res ? add + j : nullptr);
          },
          [&](T *__restrict dst, VT acc, index_t yrow) __attribute__((always_inline)) {
            one(dst, acc, V::set1(bias ? bias[yrow] : T(0)),
                Res ? residual_at(dst, yrow) : nullptr);
          });
      bad += nf;
    });
  }
  /// strided() with ld = 1 (and a residual with ld 1): consecutive rows,
  /// whole vectors and a scalar tail.
  void contiguous(T *__restrict dst, const T *__restrict src, index_t len,
                  index_t yrow0) {
    const T *__restrict b = bias ? bias + yrow0 : nullptr;
    const T *__restrict add = residual_at(dst, yrow0);
    with_kind([&](auto kind) {
      with_flags(b != nullptr, add != nullptr,
                 [&](auto has_bias, auto has_res, auto has_beta) {
                   contiguous_kind<decltype(kind)::value, decltype(has_bias)::value,
                                   decltype(has_res)::value, decltype(has_beta)::value>(
                       dst, src, len, b, add);
                 });
    });
  }
  template <class F> void with_flags(bool has_bias, bool has_res, F &&f) const {
    using Tr = std::true_type;
    using Fa = std::false_type;
    auto beta_flag = [&](auto hb, auto hr) {
      if (beta != T(0))
        f(hb, hr, Tr{});
      else
        f(hb, hr, Fa{});
    };
    if (has_bias)
      has_res ? beta_flag(Tr{}, Tr{}) : beta_flag(Tr{}, Fa{});
    else
      has_res ? beta_flag(Fa{}, Tr{}) : beta_flag(Fa{}, Fa{});
  }
  template <ActivationKind K, bool Bias, bool Res, bool Beta>
  void contiguous_kind(T *__restrict dst, const T *__restrict src, index_t len,
                       const T *__restrict b, const T *__restrict add) {
    using V = Vec<T>;
    using VT = typename V::type;
    const T slope = static_cast<T>(phi.slope);
    const VT va = V::set1(alpha), vb = V::set1(beta), vr = V::set1(res_scale);
    VT nf{};
    auto one = [&](index_t j, auto load, auto store) {
      VT t = madd_lanes<VT, T>(va, load(src + j), Bias ? load(b + j) : VT{});
      if constexpr (Beta)
        t = madd_lanes<VT, T>(vb, load(dst + j), t);
      if constexpr (Res)
        t = madd_lanes<VT, T>(vr, load(add + j), t);
      nf += t - t;
      store(dst + j, activate_lanes<K>(t, slope));
    };
    index_t j = 0;
    for (; j + V::lanes <= len; j += V::lanes)
      one(
          j, [](const T *p) { return V::load(p); }, [](T *p, VT v) { V::store(p, v); });
    // The tail in scalars (the same formulas, so the same bits): AVX2's
    // masked loads and stores are slow on AMD cores, and a batch of one
    // column ends every run of output pixels with a tail.
    T nf_tail = 0;
    for (; j < len; ++j) {
      const T t =
          pre(src[j], Bias ? b[j] : T(0), Beta ? dst[j] : T(0), Res ? add[j] : T(0));
      nf_tail += t - t;
      dst[j] = activate(K, slope, t);
    }
    bad_scalar += nf_tail;
    bad += nf;
  }
  bool residual_ld_is(index_t ld) const { return !res || res_ld == ld; }
  bool finite() const {
    T sum = bad_scalar;
    for (int l = 0; l < Vec<T>::lanes; ++l)
      sum += bad[l];
    return sum == T(0);
  }
};

/// Writes an MR x nc tile of output columns starting at position `pos`
/// (= segment start + column) of channel block rows co0.. into y.
template <class T, class Store>
void store_tile(const ConvPlan &p, index_t N, const T *ct, index_t ct_ld, index_t rows,
                index_t co0, index_t pos, index_t nc, Store &store, MatrixView<T> y) {
  const index_t cell0 = pos / N, n0 = pos % N;
  if (N == 1) {
    // Runs of columns within one output row: the useful ones (wq < OW) are
    // consecutive output pixels, y.ld apart (adjacent when y.ld = 1).
    const index_t ld = y.ld;
    const bool store_contiguous = store.residual_ld_is(1);
    for (index_t r = 0; r < rows; ++r) {
      const T *src = ct + r * ct_ld;
      index_t wq = cell0 % p.Wq, oh = cell0 / p.Wq;
      for (index_t c = 0; c < nc;) {
        const index_t run = std::min(p.Wq - wq, nc - c);
        const index_t useful = std::clamp<index_t>(p.OW - wq, 0, run);
        const index_t yrow = p.y_index(co0 + r, oh, wq);
        if (p.y_col != 1) // scattered output pixels: one store each
          for (index_t j = 0; j < useful; ++j)
            store.run(y.row(yrow + j * p.y_col), src + c + j, 1, yrow + j * p.y_col);
        else if (ld == 1 && store_contiguous)
          store.contiguous(y.data + yrow, src + c, useful, yrow);
        else
          store.strided(y.data + yrow * ld, ld, src + c, useful, yrow);
        c += run;
        wq += run;
        if (wq == p.Wq) {
          wq = 0;
          ++oh;
        }
      }
    }
    return;
  }
  constexpr index_t L = Vec<T>::lanes;
  if (N % L == 0 && nc % L == 0) {
    // Every run of a cell is whole vectors (the tile starts on a vector
    // boundary): the epilogue in the level's vectors, the kind resolved once.
    store.with_kind([&](auto kind) {
      constexpr ActivationKind K = decltype(kind)::value;
      store.template for_vectors<K>([&](auto &&emit, auto &&) {
        for (index_t r = 0; r < rows; ++r) {
          const T *src = ct + r * ct_ld;
          const index_t co = co0 + r;
          index_t n = n0, wq = cell0 % p.Wq, oh = cell0 / p.Wq;
          for (index_t c = 0; c < nc;) {
            const index_t run = std::min(N - n, nc - c);
            if (wq < p.OW) {
              const index_t yrow = p.y_index(co, oh, wq);
              emit(y.row(yrow) + n, src + c, run, yrow);
            }
            c += run;
            n = 0;
            if (++wq == p.Wq) {
              wq = 0;
              ++oh;
            }
          }
        }
      });
    });
    return;
  }
  for (index_t r = 0; r < rows; ++r) {
    const T *src = ct + r * ct_ld;
    const index_t co = co0 + r;
    index_t cell = cell0, n = n0, wq = cell0 % p.Wq, oh = cell0 / p.Wq;
    index_t c = 0;
    while (c < nc) {
      const index_t run = std::min(N - n, nc - c);
      if (wq < p.OW) {
        const index_t yrow = p.y_index(co, oh, wq);
        store.run(y.row(yrow) + n, src + c, run, yrow);
      }
      c += run;
      n = 0;
      ++cell;
      if (++wq == p.Wq) {
        wq = 0;
        ++oh;
      }
    }
  }
}

/// Xp with its slack zeroed: what conv_forward reads.
template <class T>
void fill_padded_input(const ConvPlan &p, ConstMatrixView<T> x, T *xp, Execution exec) {
  const index_t N = x.cols, body = p.C * p.channel_stride() * N;
  fill_phase_split(p, x, xp, exec);
  std::fill(xp + body, xp + xp_size<T>(p, N), T(0));
}

/// Forward convolution through the implicit GEMM (see the file comment).
/// `wpacked` from pack_weights; `w` the plain weights [Co][K] (im2col);
/// `xp` a buffer of xp_size(p, N) elements.
/// Returns store.finite() over all tasks (a copy of `store` per task).
template <class T, class Store>
bool conv_forward(const ConvPlan &p, ConvAlgorithm algo, const T *wpacked,
                  const T *wplain, const Store &store, ConstMatrixView<T> x,
                  MatrixView<T> y, T *xp, ScratchPool<T> &pool, Execution exec) {
  std::atomic<bool> finite{true};
  const index_t N = x.cols;
  if (!p.input_prefilled)
    fill_padded_input(p, x, xp, exec);
  const ConvSegments seg = ConvSegments::choose<T>(p, N);
  constexpr index_t nr = tile_cols<T>;
  constexpr int lanes = Vec<T>::lanes;
  const index_t blocks = (p.cout_g + conv_mr - 1) / conv_mr;
  const index_t total_tiles = seg.count * seg.tiles;
  // Column chunk per task: about 4 tiles, fewer when that leaves few tasks.
  index_t chunk = 4;
  while (chunk > 1 && (total_tiles + chunk - 1) / chunk * p.groups < 8)
    chunk /= 2;
  const index_t chunks = (total_tiles + chunk - 1) / chunk;
  const index_t cs = p.channel_stride() * N;

  // K pieces: about 16 KiB of B rows (half the L1 data cache).
  const index_t kc = std::max<index_t>(16, 16384 / static_cast<index_t>(nr * sizeof(T)));
  constexpr index_t group_blocks = 8;
  auto micro_call = [&](int nv, bool accumulate, index_t kn, const T *w, const T *b,
                        const index_t *off, T *c) {
    auto go = [&](auto NVc, auto Acc) {
      micro_kernel<T, kernel_rows, decltype(NVc)::value, decltype(Acc)::value>(kn, w, b,
                                                                               off, N, c);
    };
    using F = std::false_type;
    using Tr = std::true_type;
    switch (nv) {
    case 1:
      return accumulate ? go(std::integral_constant<int, 1>{}, Tr{})
                        : go(std::integral_constant<int, 1>{}, F{});
    case 2:
      return accumulate ? go(std::integral_constant<int, 2>{}, Tr{})
                        : go(std::integral_constant<int, 2>{}, F{});
    default:
      return accumulate ? go(std::integral_constant<int, 3>{}, Tr{})
                        : go(std::integral_constant<int, 3>{}, F{});
    }
  };
  auto run = [&](index_t g, index_t b0, index_t b1, index_t t0, index_t t1, Store &st) {
    alignas(64) T ct[group_blocks * conv_mr * nr];
    const T *base = xp + g * p.cin_g * cs;
    if (algo == ConvAlgorithm::im2col) {
      // Pack the B rows of the chunk, then one Eigen GEMM per chunk.
      const index_t ncol = (t1 - t0) * nr;
      typename ScratchPool<T>::Lease pk(
          pool, static_cast<std::size_t>(p.K * ncol + (b1 - b0) * conv_mr * ncol));
      T *P = pk.data();
      T *Cm = P + p.K * ncol;
      for (index_t k = 0; k < p.K; ++k) {
        const T *src = base + p.tap_offset[k] * N;
        T *dst = P + k * ncol;
        for (index_t t = t0; t < t1; ++t) {
          const index_t s = t / seg.tiles, j0 = (t % seg.tiles) * nr;
          std::memcpy(dst + (t - t0) * nr, src + s * seg.stride + j0, sizeof(T) * nr);
        }
      }
      const index_t co_lo = b0 * conv_mr, co_hi = std::min(p.cout_g, b1 * conv_mr);
      using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      Eigen::Map<const Mat> Wm(wplain + (g * p.cout_g + co_lo) * p.K, co_hi - co_lo, p.K);
      Eigen::Map<const Mat> Pm(P, p.K, ncol);
      Eigen::Map<Mat> Cmap(Cm, co_hi - co_lo, ncol);
      Cmap.noalias() = Wm * Pm;
      for (index_t t = t0; t < t1; ++t) {
        const index_t s = t / seg.tiles, j0 = (t % seg.tiles) * nr;
        const index_t nc = std::min(nr, seg.length - j0);
        store_tile(p, N, Cm + (t - t0) * nr, ncol, co_hi - co_lo, g * p.cout_g + co_lo,
                   s * seg.stride + j0, nc, st, y);
      }
      return;
    }
    const bool pack = algo == ConvAlgorithm::packed;
    T *P = nullptr;
    std::optional<typename ScratchPool<T>::Lease> pk;
    if (pack) {
      pk.emplace(pool, static_cast<std::size_t>((t1 - t0) * p.K * nr));
      P = pk->data();
      for (index_t t = t0; t < t1; ++t) {
        const index_t s = t / seg.tiles, j0 = (t % seg.tiles) * nr;
        T *dst = P + (t - t0) * p.K * nr;
        const T *src = base + s * seg.stride + j0;
        for (index_t k = 0; k < p.K; ++k)
          std::memcpy(dst + k * nr, src + p.tap_offset[k] * N, sizeof(T) * nr);
      }
    }
    // emit_one(dst, acc, yrow) stores one vector of sums (used when
    // InRegisters: the batch is whole vectors, so a vector of a tile's
    // columns lies in one output pixel).
    auto tiles = [&](auto &&emit_one, auto in_registers) {
      constexpr bool InRegisters = decltype(in_registers)::value;
      for (index_t t = t0; t < t1; ++t) {
        const index_t s = t / seg.tiles, j0 = (t % seg.tiles) * nr;
        const index_t nc = std::min(nr, seg.length - j0);
        const T *b = pack ? P + (t - t0) * p.K * nr : base + s * seg.stride + j0;
        const index_t *off = pack ? nullptr : p.tap_offset.data();
        const int nv = pack ? 3 : static_cast<int>((nc + lanes - 1) / lanes);
        const index_t ld = nv * lanes;
        const index_t pos = s * seg.stride + j0;
        // A whole tile's final piece of k is stored from the registers: the
        // y row (without its channel term) and column of each vector, and
        // whether its pixel is an output (wq < OW) or a discarded column.
        const bool from_registers = InRegisters && nc == nr;
        index_t vrow[3] = {}, vcol[3] = {};
        bool vuseful[3] = {};
        if (from_registers)
          for (int v = 0; v < 3; ++v) {
            const index_t col = pos + v * lanes, cell = col / N;
            const index_t wq = cell % p.Wq, oh = cell / p.Wq;
            vuseful[v] = wq < p.OW;
            vrow[v] = p.y_index(0, oh, wq);
            vcol[v] = col - cell * N;
          }
        // Blocks in groups whose tiles stay in ct; k in pieces of kc whose B
        // rows (kc x nr) stay in L1 across the group's blocks.
        for (index_t bg = b0; bg < b1; bg += group_blocks) {
          const index_t bg1 = std::min(b1, bg + group_blocks);
          for (index_t k0 = 0; k0 < p.K; k0 += kc) {
            const index_t kn = std::min(kc, p.K - k0);
            const T *bk = pack ? b + k0 * nr : b;
            const index_t *ok = off ? off + k0 : nullptr;
            const bool final_piece = k0 + kn == p.K;
            for (index_t blk = bg; blk < bg1; ++blk) {
              const T *wb = wpacked + ((g * blocks + blk) * p.K + k0) * conv_mr;
              const index_t rows = std::min(conv_mr, p.cout_g - blk * conv_mr);
              T *cb = ct + (blk - bg) * conv_mr * ld;
              for (index_t h = 0; h < rows; h += kernel_rows) {
                if constexpr (InRegisters) {
                  if (from_registers && final_piece) {
                    const index_t co = g * p.cout_g + blk * conv_mr + h;
                    const index_t valid = std::min<index_t>(kernel_rows, rows - h);
                    auto sink = [&](auto &acc) __attribute__((always_inline)) {
#pragma GCC unroll 16
                      for (int r = 0; r < kernel_rows; ++r) {
                        if (r >= valid)
                          break;
                        const index_t chan = (co + r) * p.y_chan;
#pragma GCC unroll 4
                        for (int v = 0; v < 3; ++v)
                          if (vuseful[v]) {
                            const index_t yrow = chan + vrow[v];
                            emit_one(y.data + yrow * y.ld + vcol[v], acc[r][v], yrow);
                          }
                      }
                    };
                    if (k0 > 0)
                      micro_kernel<T, kernel_rows, 3, true>(kn, wb + h, bk, ok, N,
                                                            cb + h * ld, sink);
                    else
                      micro_kernel<T, kernel_rows, 3, false>(kn, wb + h, bk, ok, N,
                                                             cb + h * ld, sink);
                    continue;
                  }
                }
                micro_call(nv, k0 > 0, kn, wb + h, bk, ok, cb + h * ld);
              }
            }
          }
          if (from_registers)
            continue;
          for (index_t blk = bg; blk < bg1; ++blk) {
            const index_t co0 = blk * conv_mr;
            store_tile(p, N, ct + (blk - bg) * conv_mr * ld, ld,
                       std::min(conv_mr, p.cout_g - co0), g * p.cout_g + co0, pos, nc, st,
                       y);
          }
        }
      }
    };
    if (N % lanes == 0) {
      st.with_kind([&](auto kind) {
        st.template for_vectors<decltype(kind)::value>(
            [&](auto &&, auto &&emit_one) { tiles(emit_one, std::true_type{}); });
      });
    } else {
      tiles(nullptr, std::false_type{});
    }
  };

  // Tasks: (group, chunk of tiles) x (range of channel blocks).
  const index_t gc = p.groups * chunks;
  const index_t bgrain = gc >= 8 ? blocks : std::max<index_t>(1, blocks / 4);
  auto body = [&](const tbb::blocked_range2d<index_t> &r) {
    Store st = store;
    for (index_t q = r.rows().begin(); q < r.rows().end(); ++q) {
      const index_t g = q / chunks, c = q % chunks;
      run(g, r.cols().begin(), r.cols().end(), c * chunk,
          std::min(total_tiles, (c + 1) * chunk), st);
    }
    if (!st.finite())
      finite.store(false, std::memory_order_relaxed);
  };
  const tbb::blocked_range2d<index_t> all(0, gc, 1, 0, blocks, bgrain);
  if (exec == Execution::reference)
    body(all);
  else
    tbb::parallel_for(all, body);
  return finite.load();
}

/// Adjoint convolution: y (C*H*W x N) = alpha * conv^T(x) + beta * y.
/// `xc` is x compacted to ld = N (or x itself when already compact), `acc`
/// a buffer of C * channel_stride * N elements.
template <class T>
void conv_adjoint(const ConvPlan &p, std::span<const T> w, bool absolute, T alpha,
                  const T *xc, T beta, MatrixView<T> y, T *acc, Execution exec) {
  const index_t N = y.cols, cs = p.channel_stride() * N;
  if (N == 0)
    return;
  const index_t seg = p.OW * N, row_stride = p.Wq * N;
  // Tasks are (input channel, column chunk): a layer with few input channels
  // (the first convolution's adjoint has one) still keeps every core busy
  // when the batch is wide. A chunk only changes which columns a task owns,
  // never the order of any element's sum.
  const index_t want = exec == Execution::reference ? 1 : (16 + p.C - 1) / p.C;
  const index_t chunks = std::clamp<index_t>(std::min(want, N / 16), 1, N);
  const index_t chunk = ((N + chunks - 1) / chunks + 7) / 8 * 8;
  const index_t nchunks = (N + chunk - 1) / chunk;
  for_range(exec, p.C * nchunks, 1, [&](index_t t0, index_t t1) {
    for (index_t t = t0; t < t1; ++t) {
      const index_t ci = t / nchunks, n0 = (t % nchunks) * chunk,
                    n1 = std::min(N, n0 + chunk), width = n1 - n0;
      const bool whole = width == N;
      T *a = acc + ci * cs;
      if (whole)
        std::fill(a, a + cs, T(0));
      else
        for (index_t pos = 0; pos < cs / N; ++pos)
          std::fill(a + pos * N + n0, a + pos * N + n1, T(0));
      const index_t g = ci / p.cin_g, cig = ci % p.cin_g;
      for (index_t co = g * p.cout_g; co < (g + 1) * p.cout_g; ++co)
        for (index_t kh = 0; kh < p.KH; ++kh)
          for (index_t kw = 0; kw < p.KW; ++kw) {
            const index_t k = (cig * p.KH + kh) * p.KW + kw;
            T v = w[co * p.K + k];
            if (absolute)
              v = std::abs(v);
            T *__restrict dst =
                a +
                (p.tap_offset[k] - p.tap_offset[cig * p.KH * p.KW] + p.tap_offset[0]) * N;
            const T *__restrict src = xc + co * p.OH * seg;
            for (index_t oh = 0; oh < p.OH; ++oh) {
              T *__restrict d = dst + oh * row_stride;
              const T *__restrict s = src + oh * seg;
              if (whole) {
                for (index_t j = 0; j < seg; ++j)
                  d[j] += v * s[j];
              } else {
                for (index_t ow = 0; ow < p.OW; ++ow) {
                  T *__restrict dd = d + ow * N + n0;
                  const T *__restrict ss = s + ow * N + n0;
                  for (index_t j = 0; j < width; ++j)
                    dd[j] += v * ss[j];
                }
              }
            }
          }
      // Copy out: y(ci, h, w) = alpha * acc(padded h + pt, w + pl) + beta * y.
      for (index_t h = 0; h < p.H; ++h) {
        const index_t hp = h + p.pt;
        for (index_t wi = 0; wi < p.W; ++wi) {
          const index_t wp = wi + p.pl;
          const T *src = a + (((hp % p.sh) * p.sw + wp % p.sw) * p.Hq * p.Wq +
                              (hp / p.sh) * p.Wq + wp / p.sw) *
                                 N;
          store_scaled(y.row((ci * p.H + h) * p.W + wi) + n0, src + n0, width, alpha,
                       beta);
        }
      }
    }
  });
}

/// conv_forward with the store an epilogue describes (the kernel table's
/// entry).
template <class T>
bool conv_forward_epilogue(const ConvPlan &p, ConvAlgorithm algo, const T *wpacked,
                           const T *wplain, const ConvEpilogue<T> &e,
                           ConstMatrixView<T> x, MatrixView<T> y, T *xp,
                           ScratchPool<T> &pool, Execution exec) {
  if (!e.activated)
    return conv_forward(p, algo, wpacked, wplain, PlainStore<T>{e.alpha, e.beta}, x, y,
                        xp, pool, exec);
  return conv_forward(p, algo, wpacked, wplain,
                      ActivatedStore<T>{e.alpha, e.beta, e.bias, e.phi, e.residual,
                                        e.residual_ld, e.residual_scale, y.data, y.ld},
                      x, y, xp, pool, exec);
}

} // namespace tacit::inline v1::detail::TACIT_ISA_NS
