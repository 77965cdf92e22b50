#pragma once
// Row sums of the Picard engine and the block-triangular sweep, for the
// instruction-set level being compiled (see core/detail/isa_begin.hpp).
//
// Summation order. Every (row, column) sum over a CSR row is formed with four
// interleaved partial sums (entry q of the row goes to partial q mod 4),
// combined as (p0 + p1) + (p2 + p3). Four chains hide the add latency of a
// single column (SpMV); the same order is used whatever number of columns is
// processed together and whatever the vector width, so a column's result
// does not depend on the batch it belongs to, on the thread count, nor on
// the level (avx2 and avx512 give the same bits; generic rounds products
// separately).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/detail/simd.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

/// Widest column chunk: four hardware vectors (32 doubles / 64 floats with
/// AVX-512, 16 / 32 with AVX2), i.e. 4 partial sums x 4 vectors = 16
/// accumulator registers; a whole slab row of x is loaded per nonzero, which
/// keeps more cache misses in flight when the rows of x are scattered. Only
/// speed depends on it: every chunk width gives the same bits.
template <class T>
inline constexpr int wide_chunk = static_cast<int>(4 * vector_bytes / sizeof(T));

/// The one-column sum with unit stride through 4-lane gathers (AVX2): lane
/// r accumulates entries r, r + 4, ... exactly like partial r of the scalar
/// code, so the bits are the same; fewer instructions keep more loads in
/// flight. Returns false when not available for T / I.
template <class T, class I>
inline bool row_sum4_gather([[maybe_unused]] const T *__restrict vals,
                            [[maybe_unused]] const I *__restrict cols,
                            [[maybe_unused]] std::int64_t b,
                            [[maybe_unused]] std::int64_t e,
                            [[maybe_unused]] const T *__restrict x,
                            [[maybe_unused]] T *__restrict out) {
#if TACIT_TARGET_AVX2
  T p[4];
  std::int64_t k = b;
  if constexpr (std::is_same_v<T, double>) {
    __m256d acc = _mm256_setzero_pd();
    // Masked forms: GCC 12's unmasked gathers trip -Wmaybe-uninitialized.
    const __m256d all = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
    auto gather = [&](std::int64_t q) {
      if constexpr (sizeof(I) == 4)
        return _mm256_mask_i32gather_pd(
            _mm256_setzero_pd(), x,
            _mm_loadu_si128(reinterpret_cast<const __m128i *>(cols + q)), all, 8);
      else
        return _mm256_mask_i64gather_pd(
            _mm256_setzero_pd(), x,
            _mm256_loadu_si256(reinterpret_cast<const __m256i *>(cols + q)), all, 8);
    };
    for (; k + 8 <= e; k += 8) {
      prefetch_l2(vals, k + prefetch_ahead<T>);
      prefetch_l2(cols, k + prefetch_ahead<T>);
      const __m256d x0 = gather(k), x1 = gather(k + 4);
      acc = _mm256_fmadd_pd(_mm256_loadu_pd(vals + k), x0, acc);
      acc = _mm256_fmadd_pd(_mm256_loadu_pd(vals + k + 4), x1, acc);
    }
    if (k + 4 <= e) {
      acc = _mm256_fmadd_pd(_mm256_loadu_pd(vals + k), gather(k), acc);
      k += 4;
    }
    _mm256_storeu_pd(p, acc);
  } else {
    __m128 acc = _mm_setzero_ps();
    const __m128 all = _mm_castsi128_ps(_mm_set1_epi32(-1));
    auto gather = [&](std::int64_t q) {
      if constexpr (sizeof(I) == 4)
        return _mm_mask_i32gather_ps(
            _mm_setzero_ps(), x,
            _mm_loadu_si128(reinterpret_cast<const __m128i *>(cols + q)), all, 4);
      else
        return _mm256_mask_i64gather_ps(
            _mm_setzero_ps(), x,
            _mm256_loadu_si256(reinterpret_cast<const __m256i *>(cols + q)), all, 4);
    };
    for (; k + 8 <= e; k += 8) {
      prefetch_l2(vals, k + prefetch_ahead<T>);
      prefetch_l2(cols, k + prefetch_ahead<T>);
      const __m128 x0 = gather(k), x1 = gather(k + 4);
      acc = _mm_fmadd_ps(_mm_loadu_ps(vals + k), x0, acc);
      acc = _mm_fmadd_ps(_mm_loadu_ps(vals + k + 4), x1, acc);
    }
    if (k + 4 <= e) {
      acc = _mm_fmadd_ps(_mm_loadu_ps(vals + k), gather(k), acc);
      k += 4;
    }
    _mm_storeu_ps(p, acc);
  }
  if (k < e) {
    p[0] = madd(vals[k], x[cols[k]], p[0]);
    if (k + 1 < e) {
      p[1] = madd(vals[k + 1], x[cols[k + 1]], p[1]);
      if (k + 2 < e)
        p[2] = madd(vals[k + 2], x[cols[k + 2]], p[2]);
    }
  }
  out[0] = (p[0] + p[1]) + (p[2] + p[3]);
  return true;
#else
  return false;
#endif
}

/// out[w] = sum_k vals[k] * x[cols[k] * ldx + w] over k in [b, e), for CW
/// consecutive columns, in the four-partial order described above.
template <int CW, class T, class I>
inline void row_sum4(const T *__restrict vals, const I *__restrict cols, std::int64_t b,
                     std::int64_t e, const T *__restrict x, index_t ldx,
                     T *__restrict out) {
  if constexpr (CW == 1) {
    if (ldx == 1 && row_sum4_gather(vals, cols, b, e, x, out))
      return;
    T p0 = 0, p1 = 0, p2 = 0, p3 = 0;
    std::int64_t k = b;
    for (; k + 4 <= e; k += 4) {
      p0 = madd(vals[k], x[static_cast<index_t>(cols[k]) * ldx], p0);
      p1 = madd(vals[k + 1], x[static_cast<index_t>(cols[k + 1]) * ldx], p1);
      p2 = madd(vals[k + 2], x[static_cast<index_t>(cols[k + 2]) * ldx], p2);
      p3 = madd(vals[k + 3], x[static_cast<index_t>(cols[k + 3]) * ldx], p3);
      TACIT_SCALAR_BARRIER(p0);
      TACIT_SCALAR_BARRIER(p1);
      TACIT_SCALAR_BARRIER(p2);
      TACIT_SCALAR_BARRIER(p3);
    }
    if (k < e) {
      p0 = madd(vals[k], x[static_cast<index_t>(cols[k]) * ldx], p0);
      if (k + 1 < e) {
        p1 = madd(vals[k + 1], x[static_cast<index_t>(cols[k + 1]) * ldx], p1);
        if (k + 2 < e)
          p2 = madd(vals[k + 2], x[static_cast<index_t>(cols[k + 2]) * ldx], p2);
      }
    }
    out[0] = (p0 + p1) + (p2 + p3);
  } else {
    constexpr int L = std::min<int>(CW, vector_bytes / static_cast<int>(sizeof(T)));
    constexpr int NV = CW / L;
    static_assert(NV * L == CW, "chunk widths are powers of two");
    using V = typename Lanes<T, L>::type;
    V p0[NV], p1[NV], p2[NV], p3[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      p0[v] = p1[v] = p2[v] = p3[v] = V{};
    auto add = [&](V *p, std::int64_t q) {
      const V a = V{} + vals[q];
      const T *xr = x + static_cast<index_t>(cols[q]) * ldx;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        p[v] = madd_lanes<V, T>(a, load_lanes<V>(xr + v * L), p[v]);
    };
    std::int64_t k = b;
    for (; k + 4 <= e; k += 4) {
      prefetch_l2(vals, k + prefetch_ahead<T>);
      prefetch_l2(cols, k + prefetch_ahead<T>);
      add(p0, k);
      add(p1, k + 1);
      add(p2, k + 2);
      add(p3, k + 3);
    }
    if (k < e) {
      add(p0, k);
      if (k + 1 < e) {
        add(p1, k + 1);
        if (k + 2 < e)
          add(p2, k + 2);
      }
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const V r = (p0[v] + p1[v]) + (p2[v] + p3[v]);
      std::memcpy(out + v * L, &r, sizeof(V));
    }
  }
}

/// row_sum4 for R rows that share their columns after `head` (0 or 1)
/// leading entries of their own (twin rows: the output channels of one pixel
/// of a convolution). Each x row is loaded once for the R rows, and every
/// (row, column) sum has row_sum4's order, so the same bits. vals[r], cols[r]
/// point at row r's first entry; every row has `len` entries; CW >= 4.
template <int R, int CW, class T, class I>
inline void rows_sum4(const T *const *vals, const I *const *cols, std::int64_t len,
                      std::int64_t head, const T *__restrict x, index_t ldx,
                      T (*out)[CW]) {
  static_assert(CW >= 4, "one column: row_sum4<1>");
  constexpr int L = std::min<int>(CW, vector_bytes / static_cast<int>(sizeof(T)));
  constexpr int NV = CW / L;
  static_assert(NV * L == CW, "chunk widths are powers of two");
  using V = typename Lanes<T, L>::type;
  V p[R][4][NV];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        p[r][j][v] = V{};
  const T *v0 = vals[0];
  const I *c0 = cols[0];
  // Entry q of every row into partial J, reading the x row of column c.
  auto add = [&](auto J, std::int64_t q, const T *xr, int r0, int r1) {
    constexpr int j = decltype(J)::value;
    V xv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      xv[v] = load_lanes<V>(xr + v * L);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      if (r < r0 || r >= r1)
        continue;
      const V a = V{} + vals[r][q];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        p[r][j][v] = madd_lanes<V, T>(a, xv[v], p[r][j][v]);
    }
  };
  auto shared = [&](auto J, std::int64_t q) {
    add(J, q, x + static_cast<index_t>(c0[q]) * ldx, 0, R);
  };
  using J0 = std::integral_constant<int, 0>;
  using J1 = std::integral_constant<int, 1>;
  using J2 = std::integral_constant<int, 2>;
  using J3 = std::integral_constant<int, 3>;
  std::int64_t q = 0;
  if (head > 0 && len > 0) { // entry 0: each row its own column
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
      add(J0{}, 0, x + static_cast<index_t>(cols[r][0]) * ldx, r, r + 1);
    q = 1;
    if (q < len)
      shared(J1{}, q++);
    if (q < len)
      shared(J2{}, q++);
    if (q < len)
      shared(J3{}, q++);
  }
  for (; q + 4 <= len; q += 4) {
    prefetch_l2(v0, q + prefetch_ahead<T>);
    prefetch_l2(c0, q + prefetch_ahead<T>);
    shared(J0{}, q);
    shared(J1{}, q + 1);
    shared(J2{}, q + 2);
    shared(J3{}, q + 3);
  }
  if (q < len) {
    shared(J0{}, q);
    if (q + 1 < len) {
      shared(J1{}, q + 1);
      if (q + 2 < len)
        shared(J2{}, q + 2);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const V s = (p[r][0][v] + p[r][1][v]) + (p[r][2][v] + p[r][3][v]);
      std::memcpy(out[r] + v * L, &s, sizeof(V));
    }
}

/// Calls f(std::integral_constant<int, CW>{}, c0) for chunks covering
/// columns [0, cols): as many chunks of W as fit, then 32/16/8/4/1.
template <class T, int W = wide_chunk<T>, class F>
inline void for_column_chunks(index_t cols, F &&f) {
  index_t c = 0;
  for (; c + W <= cols; c += W)
    f(std::integral_constant<int, W>{}, c);
  if constexpr (W > 32) {
    if (c + 32 <= cols) {
      f(std::integral_constant<int, 32>{}, c);
      c += 32;
    }
  }
  if constexpr (W > 16) {
    if (c + 16 <= cols) {
      f(std::integral_constant<int, 16>{}, c);
      c += 16;
    }
  }
  if constexpr (W > 8) {
    if (c + 8 <= cols) {
      f(std::integral_constant<int, 8>{}, c);
      c += 8;
    }
  }
  if (c + 4 <= cols) {
    f(std::integral_constant<int, 4>{}, c);
    c += 4;
  }
  for (; c < cols; ++c)
    f(std::integral_constant<int, 1>{}, c);
}

} // namespace tacit::inline v1::detail::TACIT_ISA_NS
