#pragma once
// CSR product kernels: y = alpha * op(A) x + beta * y for row-major views.
//
// Determinism. The parallel kernels split rows into chunks of about equal
// nonzero count; the partition only decides which thread computes a row,
// never how: every row's sum is formed in an order that depends on the row's
// length and the number of columns of x only, so results are bitwise
// identical for any number of threads.
//
// Kernels (the matrix is read once per call; x and y are row-major views):
//  - SpMV (x has one column, 32-bit indices): AVX-512 gathers, 8 (double) or
//    16 (float) lanes, two accumulators per row, indices scaled in registers
//    when the column is strided (one column of a slab). The product is
//    bandwidth bound: the value and index streams are prefetched 16 KiB ahead
//    into L2 (see gather_prefetch_distance), which is what lets two cores
//    read them at close to the machine's read bandwidth. AVX2: the same sums,
//    x assembled from scalar loads (AVX2 gathers are slow on many cores).
//  - SpMM (several columns): each row is cut into panels of up to 4 vectors
//    (32 doubles / 64 floats) of consecutive columns; per nonzero the panel's
//    part of row x_j is multiplied by a broadcast a_ij and accumulated in
//    registers (the last vector masked). Narrow panels interleave several
//    nonzeros into separate accumulators to hide the FMA latency. The row of
//    A is reused from L1 by the panels after the first. Up to 4 neighbouring
//    rows with the same columns (a convolution's output channels at one
//    position) run as one group that loads each vector of x once, with the
//    bits of one row at a time. Rows are visited in a
//    locality schedule (RowSchedule, built once per matrix): rows ending at
//    the same column run back to back, so the rows of x they read stay in
//    L1/L2 (all output channels of one convolution position share a window).
//  - Portable fallbacks without AVX-512 (and for 64-bit indices in SpMV):
//    scalar code with several accumulators.
//
// Large matrix arrays are placed on transparent huge pages
// (core/detail/huge_pages.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include <tacit/core/dense.hpp>

#include "core/detail/simd.hpp"

#define TACIT_CSR_AVX512 TACIT_TARGET_AVX512
/// The panel and gather kernels: AVX-512, or AVX2 on pairs of ymm registers.
#define TACIT_CSR_WIDE TACIT_TARGET_AVX2

namespace tacit::inline v1::detail::TACIT_ISA_NS {

/// y = alpha acc + beta y. With FMA the rounding is spelt out (the panels'
/// order: alpha acc rounded, then one fused beta y + that): left to the
/// compiler, C++'s default contraction may fuse either product, and it did
/// so differently in the avx2 and avx512 copies of the kernels.
template <class T> inline void store(T *y, T acc, T alpha, T beta) {
  const T scaled = alpha * acc;
#if TACIT_TARGET_FMA
  *y = beta == T(0) ? scaled : std::fma(beta, *y, scaled);
#else
  *y = beta == T(0) ? scaled : scaled + beta * *y;
#endif
}

/// One row, one column of x (SpMV), portable: four accumulators break the add
/// chain. With FMA every update is one explicit fused multiply-add, so that
/// the avx2 and avx512 copies round alike whatever the compiler vectorises.
template <bool Abs, class T, class I>
inline T row_dot(const T *__restrict vals, const I *__restrict cols, std::int64_t begin,
                 std::int64_t end, const T *__restrict x, index_t ldx) {
  auto madd = [](T a, T b, T c) {
#if TACIT_TARGET_FMA
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
  };
  T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  std::int64_t k = begin;
  for (; k + 4 <= end; k += 4) {
    const T v0 = Abs ? std::abs(vals[k]) : vals[k];
    const T v1 = Abs ? std::abs(vals[k + 1]) : vals[k + 1];
    const T v2 = Abs ? std::abs(vals[k + 2]) : vals[k + 2];
    const T v3 = Abs ? std::abs(vals[k + 3]) : vals[k + 3];
    a0 = madd(v0, x[cols[k] * ldx], a0);
    a1 = madd(v1, x[cols[k + 1] * ldx], a1);
    a2 = madd(v2, x[cols[k + 2] * ldx], a2);
    a3 = madd(v3, x[cols[k + 3] * ldx], a3);
  }
  for (; k < end; ++k)
    a0 = madd(Abs ? std::abs(vals[k]) : vals[k], x[cols[k] * ldx], a0);
  return (a0 + a1) + (a2 + a3);
}

/// One row, W consecutive columns of x starting at c0, portable: W
/// independent accumulators updated by a vectorisable axpy per nonzero.
template <int W, bool Abs, class T, class I>
inline void row_block(const T *__restrict vals, const I *__restrict cols,
                      std::int64_t begin, std::int64_t end, const T *__restrict x,
                      index_t ldx, T *__restrict y, T alpha, T beta) {
  T acc[W] = {};
  for (std::int64_t k = begin; k < end; ++k) {
    const T v = Abs ? std::abs(vals[k]) : vals[k];
    const T *__restrict xr = x + static_cast<index_t>(cols[k]) * ldx;
#pragma GCC unroll 64
    for (int w = 0; w < W; ++w)
      acc[w] += v * xr[w];
  }
  if (beta == T(0)) {
#pragma GCC unroll 64
    for (int w = 0; w < W; ++w)
      y[w] = alpha * acc[w];
  } else {
#pragma GCC unroll 64
    for (int w = 0; w < W; ++w)
      y[w] = alpha * acc[w] + beta * y[w];
  }
}

#if TACIT_TARGET_AVX2 && !TACIT_TARGET_AVX512
// AVX2: the AVX-512 kernels below on "logical" 64-byte vectors made of two
// ymm registers, with lane masks as bit sets. Every sum has the AVX-512
// kernels' order (the same lanes, the same tree at the end), so the two
// levels give the same bits; only the instruction count differs.

template <class T> struct Simd;

/// Lanes i of a 256-bit mask vector set where bit i of `bits` is set.
inline __m256i lane_mask8(unsigned bits) {
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(
      _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits & 0xffu)), sel), sel);
}
inline __m256i lane_mask4(unsigned bits) {
  const __m256i sel = _mm256_setr_epi64x(1, 2, 4, 8);
  return _mm256_cmpeq_epi64(
      _mm256_and_si256(_mm256_set1_epi64x(static_cast<long long>(bits & 0xfu)), sel),
      sel);
}

template <> struct Simd<double> {
  struct V {
    __m256d lo, hi;
  };
  using M = unsigned;
  static constexpr int lanes = 8;
  static V zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static V set1(double v) {
    const __m256d s = _mm256_set1_pd(v);
    return {s, s};
  }
  static V load(const double *p) { return {_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)}; }
  static V load(M m, const double *p) {
    if (m == full)
      return load(p);
    return {_mm256_maskload_pd(p, lane_mask4(m)),
            _mm256_maskload_pd(p + 4, lane_mask4(m >> 4))};
  }
  static void store(double *p, V v) {
    _mm256_storeu_pd(p, v.lo);
    _mm256_storeu_pd(p + 4, v.hi);
  }
  static void store(M m, double *p, V v) {
    if (m == full)
      return store(p, v);
    _mm256_maskstore_pd(p, lane_mask4(m), v.lo);
    _mm256_maskstore_pd(p + 4, lane_mask4(m >> 4), v.hi);
  }
  static V fma(V a, V b, V c) {
    return {_mm256_fmadd_pd(a.lo, b.lo, c.lo), _mm256_fmadd_pd(a.hi, b.hi, c.hi)};
  }
  static V add(V a, V b) {
    return {_mm256_add_pd(a.lo, b.lo), _mm256_add_pd(a.hi, b.hi)};
  }
  static V mul(V a, V b) {
    return {_mm256_mul_pd(a.lo, b.lo), _mm256_mul_pd(a.hi, b.hi)};
  }
  static M mask(int n) { return (1u << n) - 1u; }
  static constexpr M full = 0xffu;
};

template <> struct Simd<float> {
  struct V {
    __m256 lo, hi;
  };
  using M = unsigned;
  static constexpr int lanes = 16;
  static V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static V set1(float v) {
    const __m256 s = _mm256_set1_ps(v);
    return {s, s};
  }
  static V load(const float *p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static V load(M m, const float *p) {
    if (m == full)
      return load(p);
    return {_mm256_maskload_ps(p, lane_mask8(m)),
            _mm256_maskload_ps(p + 8, lane_mask8(m >> 8))};
  }
  static void store(float *p, V v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
  }
  static void store(M m, float *p, V v) {
    if (m == full)
      return store(p, v);
    _mm256_maskstore_ps(p, lane_mask8(m), v.lo);
    _mm256_maskstore_ps(p + 8, lane_mask8(m >> 8), v.hi);
  }
  static V fma(V a, V b, V c) {
    return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
  }
  static V add(V a, V b) {
    return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)};
  }
  static V mul(V a, V b) {
    return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)};
  }
  static M mask(int n) { return (1u << n) - 1u; }
  static constexpr M full = 0xffffu;
};

/// The AVX-512 kernels' lane sum: lanes 0-7 as ((t0 + t1) + (t2 + t3)) +
/// ((t4 + t5) + (t6 + t7)).
inline double horizontal_sum(__m256d lo, __m256d hi) {
  alignas(32) double t[8];
  _mm256_store_pd(t, lo);
  _mm256_store_pd(t + 4, hi);
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}
inline float horizontal_sum(__m256 lo, __m256 hi) {
  alignas(32) float t[16];
  _mm256_store_ps(t, lo);
  _mm256_store_ps(t + 8, hi);
  float h[8];
  for (int j = 0; j < 8; ++j)
    h[j] = t[2 * j] + t[2 * j + 1];
  return ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]));
}

/// One ymm register of T for the SpMV rows below.
template <class T> struct Ymm;
template <> struct Ymm<double> {
  using V = __m256d;
  static constexpr int W = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const double *p) { return _mm256_loadu_pd(p); }
  static V load(__m256i m, const double *p) { return _mm256_maskload_pd(p, m); }
  static V keep(V v, __m256i m) { return _mm256_and_pd(v, _mm256_castsi256_pd(m)); }
  static V abs(V v) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static __m256i mask(unsigned bits) { return lane_mask4(bits); }
  template <class F> static V build(F at) {
    return _mm256_setr_pd(at(0), at(1), at(2), at(3));
  }
};
template <> struct Ymm<float> {
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float *p) { return _mm256_loadu_ps(p); }
  static V load(__m256i m, const float *p) { return _mm256_maskload_ps(p, m); }
  static V keep(V v, __m256i m) { return _mm256_and_ps(v, _mm256_castsi256_ps(m)); }
  static V abs(V v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static __m256i mask(unsigned bits) { return lane_mask8(bits); }
  template <class F> static V build(F at) {
    return _mm256_setr_ps(at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7));
  }
};

/// SpMV row in the AVX-512 gather kernel's order: blocks of 4W entries (W
/// lanes per ymm), the first half into accumulator 0 and the second into
/// accumulator 1 (each two ymm registers here), the rest in masked chunks of
/// 2W into accumulator 0, and the same tree at the end: the AVX-512 bits.
/// The vectors of x are assembled from scalar loads instead of gathers
/// (AVX2 gathers are microcoded on several cores, e.g. one ymm gather per 4+
/// cycles on Zen 2/3, while scalar loads issue 2-3 per cycle). No software
/// prefetch: the value and index streams are sequential and the hardware
/// prefetchers keep up (the AVX-512 kernel's L2 prefetch measured slower
/// here).
template <bool Abs, bool Strided = false, class T>
inline T row_dot_gather(const T *__restrict vals, const std::int32_t *__restrict cols,
                        std::int64_t begin, std::int64_t end, const T *__restrict x,
                        std::int32_t ld = 1) {
  using Y = Ymm<T>;
  using V = typename Y::V;
  constexpr int W = Y::W;
  auto value = [&](V v) { return Abs ? Y::abs(v) : v; };
  auto gather = [&](const std::int32_t *c) {
    return Y::build([&](int j) {
      return x[Strided ? static_cast<std::int64_t>(c[j]) * ld
                       : static_cast<std::int64_t>(c[j])];
    });
  };
  V a0l = Y::zero(), a0h = a0l, a1l = a0l, a1h = a0l;
  std::int64_t k = begin;
  for (; k + 4 * W <= end; k += 4 * W) {
    a0l = Y::fma(value(Y::load(vals + k)), gather(cols + k), a0l);
    a0h = Y::fma(value(Y::load(vals + k + W)), gather(cols + k + W), a0h);
    a1l = Y::fma(value(Y::load(vals + k + 2 * W)), gather(cols + k + 2 * W), a1l);
    a1h = Y::fma(value(Y::load(vals + k + 3 * W)), gather(cols + k + 3 * W), a1h);
  }
  for (; k < end; k += 2 * W) {
    const auto n = static_cast<unsigned>(std::min<std::int64_t>(2 * W, end - k));
    const unsigned bits = (1u << n) - 1u;
    const __m256i ml = Y::mask(bits), mh = Y::mask(bits >> W);
    // Masked lanes read x[0] and are cleared (as the masked gather's zeros).
    alignas(32) std::int32_t c[2 * W];
    for (int h = 0; h < 2 * W; h += 8)
      _mm256_store_si256(reinterpret_cast<__m256i *>(c + h),
                         _mm256_maskload_epi32(cols + k + h, lane_mask8(bits >> h)));
    a0l = Y::fma(value(Y::load(ml, vals + k)), Y::keep(gather(c), ml), a0l);
    a0h = Y::fma(value(Y::load(mh, vals + k + W)), Y::keep(gather(c + W), mh), a0h);
  }
  return horizontal_sum(Y::add(a0l, a1l), Y::add(a0h, a1h));
}

#endif // AVX2

#if TACIT_CSR_AVX512

template <class T> struct Simd;

template <> struct Simd<double> {
  using V = __m512d;
  using M = __mmask8;
  static constexpr int lanes = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(double v) { return _mm512_set1_pd(v); }
  static V load(const double *p) { return _mm512_loadu_pd(p); }
  static V load(M m, const double *p) { return _mm512_maskz_loadu_pd(m, p); }
  static void store(double *p, V v) { _mm512_storeu_pd(p, v); }
  static void store(M m, double *p, V v) { _mm512_mask_storeu_pd(p, m, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V abs(V a) { return _mm512_abs_pd(a); }
  static M mask(int n) { return static_cast<M>((1u << n) - 1u); }
  static constexpr M full = 0xff;
};

template <> struct Simd<float> {
  using V = __m512;
  using M = __mmask16;
  static constexpr int lanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V load(const float *p) { return _mm512_loadu_ps(p); }
  static V load(M m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float *p, V v) { _mm512_storeu_ps(p, v); }
  static void store(M m, float *p, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V abs(V a) { return _mm512_abs_ps(a); }
  static M mask(int n) { return static_cast<M>((1u << n) - 1u); }
  static constexpr M full = 0xffff;
};

/// Software prefetch of the SpMV streams (values and indices) into L2,
/// 16 KiB of values ahead. With one core per thread and ~2 nonzeros per cycle
/// of work, the out-of-order window covers only a few cache lines of the
/// streams and the hardware prefetchers stall at page boundaries; prefetching
/// this far ahead keeps enough misses in flight (on the ResNet-like matrix,
/// 2 threads: about 25% faster than without, while 4 KiB ahead into L1 gains
/// only ~10%). Prefetches past the end of an array are harmless (they never
/// fault).
template <class T>
inline constexpr std::int64_t gather_prefetch_distance = 16384 / sizeof(T);

template <class U> inline void prefetch_stream(const U *base, std::int64_t offset) {
  // Integer arithmetic: the address may lie past the end of the array.
  const auto address = reinterpret_cast<std::uintptr_t>(base) +
                       static_cast<std::uintptr_t>(offset) * sizeof(U);
  _mm_prefetch(reinterpret_cast<const char *>(address), _MM_HINT_T1);
}

/// Sum of the lanes as a fixed pairwise tree. (GCC 12's _mm512_reduce_add_*
/// and unmasked gathers trip -Wmaybe-uninitialized on their internal
/// undefined vectors, hence the explicit forms.)
inline double horizontal_sum(__m512d v) {
  alignas(64) double t[8];
  _mm512_store_pd(t, v);
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}
inline float horizontal_sum(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float h[8];
  for (int j = 0; j < 8; ++j)
    h[j] = t[2 * j] + t[2 * j + 1];
  return ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]));
}

/// SpMV row with gathers (contiguous x, 32-bit indices).
/// With Strided, x is a column of a row-major block with leading dimension
/// `ld` (indices are scaled in registers; the caller checks that rows * ld
/// fits 32 bits).
template <bool Abs, bool Strided = false>
inline double row_dot_gather(const double *__restrict vals,
                             const std::int32_t *__restrict cols, std::int64_t begin,
                             std::int64_t end, const double *__restrict x,
                             std::int32_t ld = 1) {
  const __m256i vld = _mm256_set1_epi32(ld);
  auto scale = [&](__m256i i) { return Strided ? _mm256_mullo_epi32(i, vld) : i; };
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  std::int64_t k = begin;
  for (; k + 16 <= end; k += 16) {
    prefetch_stream(vals, k + gather_prefetch_distance<double>);
    prefetch_stream(vals, k + gather_prefetch_distance<double> + 8);
    prefetch_stream(cols, k + gather_prefetch_distance<double>);
    const __m256i i0 =
        scale(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(cols + k)));
    const __m256i i1 =
        scale(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(cols + k + 8)));
    __m512d v0 = _mm512_loadu_pd(vals + k), v1 = _mm512_loadu_pd(vals + k + 8);
    if constexpr (Abs) {
      v0 = _mm512_abs_pd(v0);
      v1 = _mm512_abs_pd(v1);
    }
    a0 = _mm512_fmadd_pd(
        v0, _mm512_mask_i32gather_pd(_mm512_setzero_pd(), 0xff, i0, x, 8), a0);
    a1 = _mm512_fmadd_pd(
        v1, _mm512_mask_i32gather_pd(_mm512_setzero_pd(), 0xff, i1, x, 8), a1);
  }
  for (; k < end; k += 8) {
    const auto m = static_cast<__mmask8>(end - k >= 8 ? 0xff : (1u << (end - k)) - 1u);
    const __m256i i0 = scale(_mm256_maskz_loadu_epi32(m, cols + k));
    __m512d v0 = _mm512_maskz_loadu_pd(m, vals + k);
    if constexpr (Abs)
      v0 = _mm512_abs_pd(v0);
    a0 = _mm512_fmadd_pd(v0, _mm512_mask_i32gather_pd(_mm512_setzero_pd(), m, i0, x, 8),
                         a0);
  }
  return horizontal_sum(_mm512_add_pd(a0, a1));
}

template <bool Abs, bool Strided = false>
inline float row_dot_gather(const float *__restrict vals,
                            const std::int32_t *__restrict cols, std::int64_t begin,
                            std::int64_t end, const float *__restrict x,
                            std::int32_t ld = 1) {
  const __m512i vld = _mm512_set1_epi32(ld);
  auto scale = [&](__m512i i) { return Strided ? _mm512_mullo_epi32(i, vld) : i; };
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  std::int64_t k = begin;
  for (; k + 32 <= end; k += 32) {
    prefetch_stream(vals, k + gather_prefetch_distance<float>);
    prefetch_stream(vals, k + gather_prefetch_distance<float> + 16);
    prefetch_stream(cols, k + gather_prefetch_distance<float>);
    prefetch_stream(cols, k + gather_prefetch_distance<float> + 16);
    const __m512i i0 = scale(_mm512_loadu_si512(cols + k));
    const __m512i i1 = scale(_mm512_loadu_si512(cols + k + 16));
    __m512 v0 = _mm512_loadu_ps(vals + k), v1 = _mm512_loadu_ps(vals + k + 16);
    if constexpr (Abs) {
      v0 = _mm512_abs_ps(v0);
      v1 = _mm512_abs_ps(v1);
    }
    a0 = _mm512_fmadd_ps(
        v0, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xffff, i0, x, 4), a0);
    a1 = _mm512_fmadd_ps(
        v1, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xffff, i1, x, 4), a1);
  }
  for (; k < end; k += 16) {
    const auto m =
        static_cast<__mmask16>(end - k >= 16 ? 0xffff : (1u << (end - k)) - 1u);
    const __m512i i0 = scale(_mm512_maskz_loadu_epi32(m, cols + k));
    __m512 v0 = _mm512_maskz_loadu_ps(m, vals + k);
    if constexpr (Abs)
      v0 = _mm512_abs_ps(v0);
    a0 = _mm512_fmadd_ps(v0, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, i0, x, 4),
                         a0);
  }
  return horizontal_sum(_mm512_add_ps(a0, a1));
}

#endif // TACIT_CSR_AVX512

#if TACIT_CSR_WIDE

/// The rows of x read by the panels come from L2 or L3 in the order of the
/// row's columns, which the hardware prefetchers cannot follow; asking for
/// the row `x_prefetch_distance` nonzeros ahead hides that latency.
inline constexpr std::int64_t x_prefetch_distance = 6;
template <int NV, class T> inline void prefetch_x_row(const T *p) {
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j)
    _mm_prefetch(reinterpret_cast<const char *>(p) + 64 * j, _MM_HINT_T0);
}

/// A panel of NV vectors of consecutive columns of x (the last one restricted
/// to the lanes of `last`) for R rows of equal length `len` whose columns
/// agree from position `head` on (cols[r] are the rows' column arrays,
/// vals[r] their values; R = 1 is a single row). Every row is summed in the
/// same order whatever R: entry m goes to accumulator set m % U below the
/// last multiple of U (U sets hide the FMA latency of narrow panels), to set
/// 0 after it, and the sets are added in a fixed order at the end, so a row
/// gets the same bits alone or in a group. The entries after the head load
/// each vector of x once for all R rows: in a convolution all output
/// channels at one position share their columns (the head holds a residual
/// line's own column), so this divides the traffic from x by R.
template <int R, int NV, int U, bool Abs, class T, class I>
inline void rows_panel(const T *const *vals, const I *const *cols, std::int64_t len,
                       std::int64_t head, const T *__restrict x, index_t ldx, T *const *y,
                       T alpha, T beta, typename Simd<T>::M last) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::lanes;
  V acc[R][U][NV];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u)
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j)
        acc[r][u][j] = S::zero();
  const std::int64_t full = len / U * U;
  auto set_of = [full](std::int64_t m) { return m < full ? int(m % U) : 0; };
  // Head: each row its own columns.
  for (std::int64_t m = 0; m < head; ++m) {
    const int u = set_of(m);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const T *__restrict xr = x + static_cast<index_t>(cols[r][m]) * ldx;
      const V a = S::set1(Abs ? std::abs(vals[r][m]) : vals[r][m]);
      for (int uu = 0; uu < U; ++uu) {
        if (uu != u)
          continue;
#pragma GCC unroll 8
        for (int j = 0; j + 1 < NV; ++j)
          acc[r][uu][j] = S::fma(a, S::load(xr + j * L), acc[r][uu][j]);
        acc[r][uu][NV - 1] =
            S::fma(a, S::load(last, xr + (NV - 1) * L), acc[r][uu][NV - 1]);
      }
    }
  }
  const I *__restrict shared = cols[0];
  // One shared entry into set u, x loaded once.
  auto one = [&](std::int64_t m, auto set) {
    constexpr int u = decltype(set)::value;
    const T *__restrict xr = x + static_cast<index_t>(shared[m]) * ldx;
    if (m + x_prefetch_distance < len)
      prefetch_x_row<NV>(x + static_cast<index_t>(shared[m + x_prefetch_distance]) * ldx);
    V xv[NV];
#pragma GCC unroll 8
    for (int j = 0; j + 1 < NV; ++j)
      xv[j] = S::load(xr + j * L);
    xv[NV - 1] = S::load(last, xr + (NV - 1) * L);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const V a = S::set1(Abs ? std::abs(vals[r][m]) : vals[r][m]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j)
        acc[r][u][j] = S::fma(a, xv[j], acc[r][u][j]);
    }
  };
  auto dispatch = [&](std::int64_t m, int u) {
    if constexpr (U == 1)
      one(m, std::integral_constant<int, 0>{});
    else if constexpr (U == 2)
      u == 0 ? one(m, std::integral_constant<int, 0>{})
             : one(m, std::integral_constant<int, 1>{});
    else
      switch (u) {
      case 0:
        one(m, std::integral_constant<int, 0>{});
        break;
      case 1:
        one(m, std::integral_constant<int, 1>{});
        break;
      case 2:
        one(m, std::integral_constant<int, 2>{});
        break;
      default:
        one(m, std::integral_constant<int, 3>{});
        break;
      }
  };
  std::int64_t m = head;
  for (; m < full && m % U != 0; ++m)
    dispatch(m, int(m % U));
  for (; m + U <= full; m += U) {
    one(m, std::integral_constant<int, 0>{});
    if constexpr (U >= 2)
      one(m + 1, std::integral_constant<int, 1>{});
    if constexpr (U >= 4) {
      one(m + 2, std::integral_constant<int, 2>{});
      one(m + 3, std::integral_constant<int, 3>{});
    }
  }
  for (; m < len; ++m)
    one(m, std::integral_constant<int, 0>{});
  const V va = S::set1(alpha), vb = S::set1(beta);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    if constexpr (U == 4)
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j)
        acc[r][0][j] = S::add(S::add(acc[r][0][j], acc[r][1][j]),
                              S::add(acc[r][2][j], acc[r][3][j]));
    else if constexpr (U == 2)
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j)
        acc[r][0][j] = S::add(acc[r][0][j], acc[r][1][j]);
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const auto mk = j + 1 < NV ? S::full : last;
      V res = S::mul(va, acc[r][0][j]);
      if (beta != T(0))
        res = S::fma(vb, S::load(mk, y[r] + j * L), res);
      S::store(mk, y[r] + j * L, res);
    }
  }
}

/// R rows sharing their columns after `head` entries, all k columns: full
/// panels of 4 vectors, then one narrower panel for the rest.
template <int R, bool Abs, class T, class I>
inline void rows_all_columns(const T *const *vals, const I *const *cols, std::int64_t len,
                             std::int64_t head, const T *x, index_t ldx, T *const *y,
                             index_t k, T alpha, T beta) {
  using S = Simd<T>;
  constexpr int L = S::lanes;
  T *yc[R];
  index_t c = 0;
  auto shift = [&](index_t off) {
    for (int r = 0; r < R; ++r)
      yc[r] = y[r] + off;
  };
  for (; c + 4 * L <= k; c += 4 * L) {
    shift(c);
    rows_panel<R, 4, 1, Abs>(vals, cols, len, head, x + c, ldx, yc, alpha, beta, S::full);
  }
  const index_t rest = k - c;
  if (rest == 0)
    return;
  shift(c);
  const int nv = static_cast<int>((rest + L - 1) / L);
  const auto last = S::mask(static_cast<int>(rest - (nv - 1) * L));
  switch (nv) {
  case 1:
    rows_panel<R, 1, 4, Abs>(vals, cols, len, head, x + c, ldx, yc, alpha, beta, last);
    break;
  case 2:
    rows_panel<R, 2, 2, Abs>(vals, cols, len, head, x + c, ldx, yc, alpha, beta, last);
    break;
  case 3:
    rows_panel<R, 3, 2, Abs>(vals, cols, len, head, x + c, ldx, yc, alpha, beta, last);
    break;
  default:
    rows_panel<R, 4, 1, Abs>(vals, cols, len, head, x + c, ldx, yc, alpha, beta, last);
    break;
  }
}

/// rows_all_columns with the panels cut into pieces of at most 2 logical
/// vectors (4 ymm registers per row with AVX2). A piece keeps its panel's
/// accumulator sets (U), so every sum has the same order as whole panels.
template <int R, bool Abs, class T, class I>
inline void rows_all_columns_split(const T *const *vals, const I *const *cols,
                                   std::int64_t len, std::int64_t head, const T *x,
                                   index_t ldx, T *const *y, index_t k, T alpha, T beta) {
  using S = Simd<T>;
  constexpr int L = S::lanes;
  T *yc[R];
  auto at = [&](index_t off) {
    for (int r = 0; r < R; ++r)
      yc[r] = y[r] + off;
    return x + off;
  };
  index_t c = 0;
  for (; c + 4 * L <= k; c += 4 * L) {
    rows_panel<R, 2, 1, Abs>(vals, cols, len, head, at(c), ldx, yc, alpha, beta, S::full);
    rows_panel<R, 2, 1, Abs>(vals, cols, len, head, at(c + 2 * L), ldx, yc, alpha, beta,
                             S::full);
  }
  const index_t rest = k - c;
  if (rest == 0)
    return;
  const int nv = static_cast<int>((rest + L - 1) / L);
  const auto last = S::mask(static_cast<int>(rest - (nv - 1) * L));
  switch (nv) {
  case 1:
    rows_panel<R, 1, 4, Abs>(vals, cols, len, head, at(c), ldx, yc, alpha, beta, last);
    break;
  case 2:
    rows_panel<R, 1, 2, Abs>(vals, cols, len, head, at(c), ldx, yc, alpha, beta, S::full);
    rows_panel<R, 1, 2, Abs>(vals, cols, len, head, at(c + L), ldx, yc, alpha, beta,
                             last);
    break;
  case 3:
    rows_panel<R, 2, 2, Abs>(vals, cols, len, head, at(c), ldx, yc, alpha, beta, S::full);
    rows_panel<R, 1, 2, Abs>(vals, cols, len, head, at(c + 2 * L), ldx, yc, alpha, beta,
                             last);
    break;
  default:
    rows_panel<R, 2, 1, Abs>(vals, cols, len, head, at(c), ldx, yc, alpha, beta, S::full);
    rows_panel<R, 2, 1, Abs>(vals, cols, len, head, at(c + 2 * L), ldx, yc, alpha, beta,
                             last);
    break;
  }
}

#endif // TACIT_CSR_WIDE

/// Rows of y = alpha * op(A) x + beta * y (A given by its CSR arrays, op =
/// identity or |.|): positions [q0, q1) of `order` (a permutation of the
/// rows), or rows [q0, q1) when `order` is null.
template <bool Abs, class T, class I>
void csr_rows(const std::int64_t *row_ptr, const I *cols, const T *vals,
              const index_t *order, index_t q0, index_t q1, T alpha, ConstMatrixView<T> x,
              T beta, MatrixView<T> y,
              [[maybe_unused]] const unsigned char *twins = nullptr,
              [[maybe_unused]] const unsigned char *twin_heads = nullptr) {
  const index_t k = x.cols;
  auto row = [order](index_t q) { return order ? order[q] : q; };
  if (k == 1) {
#if TACIT_CSR_WIDE
    if constexpr (sizeof(I) == 4) {
      if (x.ld == 1) {
        for (index_t q = q0; q < q1; ++q) {
          const index_t i = row(q);
          store(y.data + i * y.ld,
                row_dot_gather<Abs>(vals, cols, row_ptr[i], row_ptr[i + 1], x.data),
                alpha, beta);
        }
        return;
      } else if (x.rows * x.ld <= std::numeric_limits<std::int32_t>::max()) {
        // One column of a slab: the same gathers on scaled indices.
        const auto ld = static_cast<std::int32_t>(x.ld);
        for (index_t q = q0; q < q1; ++q) {
          const index_t i = row(q);
          store(y.data + i * y.ld,
                row_dot_gather<Abs, true>(vals, cols, row_ptr[i], row_ptr[i + 1], x.data,
                                          ld),
                alpha, beta);
        }
        return;
      }
    }
#endif
    for (index_t q = q0; q < q1; ++q) {
      const index_t i = row(q);
      store(y.data + i * y.ld,
            row_dot<Abs>(vals, cols, row_ptr[i], row_ptr[i + 1], x.data, x.ld), alpha,
            beta);
    }
    return;
  }
#if TACIT_CSR_WIDE
  // With AVX2 (16 registers), twins go in pairs over half panels.
  constexpr index_t max_group = TACIT_CSR_AVX512 ? 4 : 2;
  for (index_t q = q0; q < q1;) {
    const index_t i = row(q);
    // Rows q.. share their columns (RowSchedule::twins), or q is alone.
    const index_t group =
        twins ? std::min<index_t>(std::min<index_t>(twins[q], max_group), q1 - q) : 1;
    const T *v[4];
    const I *c[4];
    T *yr[4];
    for (index_t r = 0; r < group; ++r) {
      v[r] = vals + row_ptr[row(q + r)];
      c[r] = cols + row_ptr[row(q + r)];
      yr[r] = y.data + row(q + r) * y.ld;
    }
    const std::int64_t len = row_ptr[i + 1] - row_ptr[i];
    const std::int64_t head = group > 1 ? twin_heads[q] : 0;
#if !TACIT_CSR_AVX512
    if (group == 1)
      rows_all_columns_split<1, Abs>(v, c, len, head, x.data, x.ld, yr, k, alpha, beta);
    else
      rows_all_columns_split<2, Abs>(v, c, len, head, x.data, x.ld, yr, k, alpha, beta);
    q += group;
    continue;
#endif
    switch (group) {
    case 1:
      rows_all_columns<1, Abs>(v, c, len, head, x.data, x.ld, yr, k, alpha, beta);
      break;
    case 2:
      rows_all_columns<2, Abs>(v, c, len, head, x.data, x.ld, yr, k, alpha, beta);
      break;
    case 3:
      rows_all_columns<3, Abs>(v, c, len, head, x.data, x.ld, yr, k, alpha, beta);
      break;
    default:
      rows_all_columns<4, Abs>(v, c, len, head, x.data, x.ld, yr, k, alpha, beta);
      break;
    }
    q += group;
  }
#else
  for (index_t q = q0; q < q1; ++q) {
    const index_t i = row(q);
    const std::int64_t b = row_ptr[i], e = row_ptr[i + 1];
    T *yr = y.data + i * y.ld;
    index_t c = 0;
    for (; c + 32 <= k; c += 32)
      row_block<32, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
    if (c + 16 <= k) {
      row_block<16, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
      c += 16;
    }
    if (c + 8 <= k) {
      row_block<8, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
      c += 8;
    }
    if (c + 4 <= k) {
      row_block<4, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
      c += 4;
    }
    for (; c < k; ++c)
      row_block<1, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
  }
#endif
}

} // namespace tacit::inline v1::detail::TACIT_ISA_NS
