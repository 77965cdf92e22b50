#pragma once
// The dense kernels of operators/detail/gemm_plan.hpp for one instruction-set
// level (see core/detail/isa_begin.hpp).

#include <algorithm>
#include <cstring>

#include "core/detail/simd.hpp"
#include "operators/detail/gemm_plan.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

/// Sum of the lanes of a B-byte vector of T, halves added first (the tree
/// l[i] += l[i + w], w = lanes/2, ..., 1).
template <class T, int B, class V> inline T halving_sum(V v) {
  if constexpr (B == int(sizeof(T))) {
    T t;
    std::memcpy(&t, &v, sizeof t);
    return t;
  } else {
    typedef T half __attribute__((vector_size(B / 2)));
    half lo, hi;
    std::memcpy(&lo, &v, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char *>(&v) + B / 2, sizeof hi);
    return halving_sum<T, B / 2>(lo + hi);
  }
}

template <class T> struct GemmVec {
  static constexpr int lanes = vector_bytes / sizeof(T);
  typedef T type __attribute__((vector_size(vector_bytes)));
  static type load(const T *p) {
    type v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T *p, type v) { std::memcpy(p, &v, sizeof v); }
  /// The first n values at p (zeros after them); nothing past p + n is read.
  static type load_n(const T *p, index_t n) {
    type v{};
    std::memcpy(&v, p, static_cast<std::size_t>(n) * sizeof(T));
    return v;
  }
  static void store_n(T *p, type v, index_t n) {
    std::memcpy(p, &v, static_cast<std::size_t>(n) * sizeof(T));
  }
  static type set1(T s) { return s - type{}; }
  /// Sum of the lanes in a fixed tree order.
  /// (l[i] += l[i + w] for w = lanes/2, ..., 1: each level one vector add
  /// of the two halves, not a chain of scalar adds through memory.)
  static T sum(type v) { return halving_sum<T, vector_bytes>(v); }
};

// ------------------------------------------------------------ product

/// MR rows x NV vectors of columns starting at column n (cols columns valid
/// in the last vector when Tail).
template <class T, int MR, int NV, bool Tail>
inline void product_tile(index_t K, const T *__restrict w, index_t rs, index_t cs,
                         const T *__restrict x, index_t ldx, T *__restrict y, index_t ldy,
                         index_t tail, T alpha, T beta) {
  using V = GemmVec<T>;
  using VT = typename V::type;
  VT acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      acc[r][v] = VT{};
  for (index_t j = 0; j < K; ++j) {
    const T *xj = x + j * ldx;
    VT b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      b[v] = Tail && v == NV - 1 ? V::load_n(xj + v * V::lanes, tail)
                                 : V::load(xj + v * V::lanes);
    const T *wj = w + j * cs;
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const VT a = V::set1(wj[r * rs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[r][v] = madd_lanes<VT, T>(a, b[v], acc[r][v]);
    }
  }
  const VT va = V::set1(alpha), vb = V::set1(beta);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      T *yp = y + r * ldy + v * V::lanes;
      const bool part = Tail && v == NV - 1;
      VT t = va * acc[r][v];
      if (beta != T(0))
        t = madd_lanes<VT, T>(vb, part ? V::load_n(yp, tail) : V::load(yp), t);
      if (part)
        V::store_n(yp, t, tail);
      else
        V::store(yp, t);
    }
}

template <class T, int MR>
inline void product_rows(index_t n0, index_t n1, index_t K, const T *w, index_t rs,
                         index_t cs, const T *x, index_t ldx, T *y, index_t ldy, T alpha,
                         T beta) {
  using V = GemmVec<T>;
  constexpr index_t L = V::lanes;
  index_t n = n0;
  for (; n + 4 * L <= n1; n += 4 * L)
    product_tile<T, MR, 4, false>(K, w, rs, cs, x + n, ldx, y + n, ldy, 0, alpha, beta);
  const index_t rest = n1 - n;
  if (rest == 0)
    return;
  const index_t full = rest / L, tail = rest % L;
  const T *xn = x + n;
  T *yn = y + n;
  auto call = [&](auto nv, auto has_tail) {
    product_tile<T, MR, decltype(nv)::value, decltype(has_tail)::value>(
        K, w, rs, cs, xn, ldx, yn, ldy, tail, alpha, beta);
  };
  using std::integral_constant;
  const index_t vecs = full + (tail ? 1 : 0);
  if (tail) {
    switch (vecs) {
    case 1:
      call(integral_constant<int, 1>{}, std::true_type{});
      break;
    case 2:
      call(integral_constant<int, 2>{}, std::true_type{});
      break;
    case 3:
      call(integral_constant<int, 3>{}, std::true_type{});
      break;
    default:
      call(integral_constant<int, 4>{}, std::true_type{});
      break;
    }
  } else {
    switch (vecs) {
    case 1:
      call(integral_constant<int, 1>{}, std::false_type{});
      break;
    case 2:
      call(integral_constant<int, 2>{}, std::false_type{});
      break;
    default:
      call(integral_constant<int, 3>{}, std::false_type{});
      break;
    }
  }
}

/// One column of x (a matrix-vector product): MR rows in scalar registers,
/// each with the vector tile's lane order and rounding (one fused
/// multiply-add per j, then alpha, then beta y), so that a column's result
/// does not depend on the width of the batch it is in. The tile would spend
/// a whole vector and a partial load per j on one lane.
template <class T, int MR>
inline void product_column(index_t K, const T *__restrict w, index_t rs, index_t cs,
                           const T *__restrict x, index_t ldx, T *__restrict y,
                           index_t ldy, T alpha, T beta) {
  auto madd = [](T a, T b, T c) {
#if TACIT_TARGET_FMA
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
  };
  T acc[MR] = {};
  for (index_t j = 0; j < K; ++j) {
    const T xj = x[j * ldx];
    const T *wj = w + j * cs;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
      acc[r] = madd(wj[r * rs], xj, acc[r]);
  }
  for (int r = 0; r < MR; ++r) {
    T t = alpha * acc[r];
    if (beta != T(0))
      t = madd(beta, y[r * ldy], t);
    y[r * ldy] = t;
  }
}

template <class T>
void gemm_product(index_t i0, index_t i1, index_t n0, index_t n1, index_t K, const T *w,
                  index_t rs, index_t cs, const T *x, index_t ldx, T *y, index_t ldy,
                  T alpha, T beta) {
  if (n1 - n0 == 1) {
    index_t i = i0;
    for (; i + 8 <= i1; i += 8)
      product_column<T, 8>(K, w + i * rs, rs, cs, x + n0, ldx, y + i * ldy + n0, ldy,
                           alpha, beta);
    for (; i < i1; ++i)
      product_column<T, 1>(K, w + i * rs, rs, cs, x + n0, ldx, y + i * ldy + n0, ldy,
                           alpha, beta);
    return;
  }
  index_t i = i0;
  for (; i + 4 <= i1; i += 4)
    product_rows<T, 4>(n0, n1, K, w + i * rs, rs, cs, x, ldx, y + i * ldy, ldy, alpha,
                       beta);
  for (; i < i1; ++i)
    product_rows<T, 1>(n0, n1, K, w + i * rs, rs, cs, x, ldx, y + i * ldy, ldy, alpha,
                       beta);
}

// ------------------------------------------------------------ nt_accumulate

template <class T, int MR, int NR>
inline void nt_tile(index_t l0, index_t L, const T *__restrict a, index_t lda,
                    const T *const *b, T *__restrict c, index_t ldc) {
  using V = GemmVec<T>;
  using VT = typename V::type;
  constexpr index_t W = V::lanes;
  VT acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q)
      acc[r][q] = VT{};
  const T *br[NR];
  for (int q = 0; q < NR; ++q)
    br[q] = b[q] + l0;
  a += l0;
  index_t l = 0;
  for (; l + W <= L; l += W) {
    VT bv[NR];
#pragma GCC unroll 8
    for (int q = 0; q < NR; ++q)
      bv[q] = V::load(br[q] + l);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const VT av = V::load(a + r * lda + l);
#pragma GCC unroll 8
      for (int q = 0; q < NR; ++q)
        acc[r][q] = madd_lanes<VT, T>(av, bv[q], acc[r][q]);
    }
  }
  if (l < L) {
    const index_t n = L - l;
    VT bv[NR];
    for (int q = 0; q < NR; ++q)
      bv[q] = V::load_n(br[q] + l, n);
    for (int r = 0; r < MR; ++r) {
      const VT av = V::load_n(a + r * lda + l, n);
      for (int q = 0; q < NR; ++q)
        acc[r][q] = madd_lanes<VT, T>(av, bv[q], acc[r][q]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q)
      c[r * ldc + q] += V::sum(acc[r][q]);
}

/// Register tile of the NT kernel: MR x NR accumulators plus NR + 1 operand
/// vectors (4 x 4 uses 21 of AVX-512's 32 registers, 4 x 3 all 16 of
/// AVX2's). Wider tiles (6 x 4, 8 x 3, 5 x 5) measured no faster on ResNet20's
/// shapes: more concurrent streams, the same cache traffic.
inline constexpr int nt_mr = 4;
inline constexpr int nt_nr = TACIT_TARGET_AVX512 ? 4 : 3;

template <class T, int MR>
inline void nt_rows(index_t j0, index_t j1, index_t l0, index_t L, const T *a, index_t lda,
                    const T *const *b, T *c, index_t ldc) {
  constexpr int NR = nt_nr;
  index_t j = j0;
  for (; j + NR <= j1; j += NR)
    nt_tile<T, MR, NR>(l0, L, a, lda, b + j, c + j, ldc);
  switch (j1 - j) {
  case 5:
    nt_tile<T, MR, 5>(l0, L, a, lda, b + j, c + j, ldc);
    break;
  case 4:
    nt_tile<T, MR, 4>(l0, L, a, lda, b + j, c + j, ldc);
    break;
  case 3:
    nt_tile<T, MR, 3>(l0, L, a, lda, b + j, c + j, ldc);
    break;
  case 2:
    nt_tile<T, MR, 2>(l0, L, a, lda, b + j, c + j, ldc);
    break;
  case 1:
    nt_tile<T, MR, 1>(l0, L, a, lda, b + j, c + j, ldc);
    break;
  default:
    break;
  }
}

/// Inner index cut into fixed pieces (the same for every split into tiles):
/// the rows of a piece stay in L2 while every tile reads them; long enough
/// that a tile's final lane sums cost little against its multiply-adds.
inline constexpr index_t nt_piece = 2048;

template <class T>
void gemm_nt_accumulate(index_t i0, index_t i1, index_t j0, index_t j1, index_t L,
                        const T *a, index_t lda, const T *const *b, T *c, index_t ldc) {
  constexpr int MR = nt_mr;
  for (index_t l0 = 0; l0 < L; l0 += nt_piece) {
    const index_t lc = std::min(nt_piece, L - l0);
    index_t i = i0;
    for (; i + MR <= i1; i += MR)
      nt_rows<T, MR>(j0, j1, l0, lc, a + i * lda, lda, b, c + i * ldc, ldc);
    for (; i + 2 <= i1; i += 2)
      nt_rows<T, 2>(j0, j1, l0, lc, a + i * lda, lda, b, c + i * ldc, ldc);
    for (; i < i1; ++i)
      nt_rows<T, 1>(j0, j1, l0, lc, a + i * lda, lda, b, c + i * ldc, ldc);
  }
}

} // namespace tacit::inline v1::detail::TACIT_ISA_NS
