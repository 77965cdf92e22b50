#pragma once
// Kernels shared by the Picard engine and the block-triangular sweep.
//
// Summation order. Every (row, column) sum over a CSR row is formed with four
// interleaved partial sums (entry q of the row goes to partial q mod 4),
// combined as (p0 + p1) + (p2 + p3). Four chains hide the add latency of a
// single column (SpMV); the same order is used whatever number of columns is
// processed together, so a column's result does not depend on the batch it
// belongs to, nor on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <tacit/core/model.hpp>

namespace tacit::inline v1::detail {

/// Bytes of the widest hardware vector the kernels are compiled for.
#if defined(__AVX512F__)
inline constexpr int vector_bytes = 64;
#elif defined(__AVX__)
inline constexpr int vector_bytes = 32;
#else
inline constexpr int vector_bytes = 16;
#endif

/// Widest column chunk: four hardware vectors (32 doubles / 64 floats with
/// AVX-512), i.e. 4 partial sums x 4 vectors = 16 accumulator registers; a
/// whole 32-column slab row of x is loaded per nonzero, which keeps more
/// cache misses in flight when the rows of x are scattered. Only speed
/// depends on it: every chunk width gives the same bits.
template <class T>
inline constexpr int wide_chunk = static_cast<int>(4 * vector_bytes / sizeof(T));

/// A vector of L values of T (GCC vector extension, at most one hardware
/// vector). The kernels use explicit vector types because the compiler's own
/// vectorisation of per-column accumulator arrays is fragile once inlined
/// into a caller (it scalarises them).
template <class T, int L> struct Lanes {
  typedef T type __attribute__((vector_size(sizeof(T) * L)));
};

template <class V, class T> inline V load_lanes(const T *p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

/// Keeps a scalar partial sum in a register at this point. GCC otherwise
/// "vectorises" the four scalar chains of the one-column kernel with gathers
/// and in-order reductions, which is slower than the scalar code (measured
/// 2x for float); an empty asm statement rules that out at no cost.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define TACIT_SCALAR_BARRIER(v) asm("" : "+x"(v))
#else
#define TACIT_SCALAR_BARRIER(v) static_cast<void>(v)
#endif

#if defined(__FMA__) && (defined(__x86_64__) || defined(__i386__))
#define TACIT_EXPLICIT_FMA 1
#else
#define TACIT_EXPLICIT_FMA 0
#endif

/// a * b + c, rounded once when the target has FMA instructions (scalar and
/// every vector width alike, whatever the compiler's contraction choices),
/// so that all kernels produce the same bits per column.
template <class T> inline T madd(T a, T b, T c) {
#if TACIT_EXPLICIT_FMA
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

template <class V, class T> inline V madd_lanes(V a, V b, V c) {
#if TACIT_EXPLICIT_FMA
  constexpr bool dbl = sizeof(T) == 8;
  if constexpr (sizeof(V) == 16) {
    if constexpr (dbl)
      return (V)_mm_fmadd_pd((__m128d)a, (__m128d)b, (__m128d)c);
    else
      return (V)_mm_fmadd_ps((__m128)a, (__m128)b, (__m128)c);
  } else if constexpr (sizeof(V) == 32) {
    if constexpr (dbl)
      return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
    else
      return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  }
#if defined(__AVX512F__)
  else if constexpr (sizeof(V) == 64) {
    if constexpr (dbl)
      return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
    else
      return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
  }
#endif
  else {
    V r;
    for (std::size_t l = 0; l < sizeof(V) / sizeof(T); ++l)
      r[l] = std::fma(a[l], b[l], c[l]);
    return r;
  }
#else
  return a * b + c;
#endif
}

/// Software prefetch of the streamed row arrays (values, indices) 16 KiB of
/// values ahead into L2: the out-of-order window alone covers only a few
/// lines of these streams, and the hardware prefetchers stop at page
/// boundaries (the same finding as the CSR SpMV kernel). Never faults, so the
/// address may lie past the end (formed with integer arithmetic).
template <class T> inline constexpr std::int64_t prefetch_ahead = 16384 / sizeof(T);
template <class U> inline void prefetch_l2(const U *base, std::int64_t index) {
  const auto address = reinterpret_cast<std::uintptr_t>(base) +
                       static_cast<std::uintptr_t>(index) * sizeof(U);
  __builtin_prefetch(reinterpret_cast<const void *>(address), 0, 2);
}

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
#if TACIT_EXPLICIT_FMA && defined(__AVX2__)
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

/// phi(z) with the formulas of Activation::operator().
template <class T> inline T activate(ActivationKind kind, T slope, T z) {
  switch (kind) {
  case ActivationKind::relu:
    return z > T(0) ? z : T(0);
  case ActivationKind::leaky_relu:
    return z >= T(0) ? z : slope * z;
  case ActivationKind::tanh:
    return std::tanh(z);
  case ActivationKind::sigmoid:
    return T(1) / (T(1) + std::exp(-z));
  case ActivationKind::identity:
    return z;
  }
  return z;
}

/// out[w] = phi(pre[w]) for CW values (one switch per row, vectorisable loops).
template <int CW, class T>
inline void activate_chunk(const Activation &a, const T *__restrict pre,
                           T *__restrict out) {
  switch (a.kind) {
  case ActivationKind::relu:
#pragma GCC unroll 32
    for (int w = 0; w < CW; ++w)
      out[w] = pre[w] > T(0) ? pre[w] : T(0);
    return;
  case ActivationKind::leaky_relu: {
    const T s = static_cast<T>(a.slope);
#pragma GCC unroll 32
    for (int w = 0; w < CW; ++w)
      out[w] = pre[w] >= T(0) ? pre[w] : s * pre[w];
    return;
  }
  case ActivationKind::tanh:
    for (int w = 0; w < CW; ++w)
      out[w] = std::tanh(pre[w]);
    return;
  case ActivationKind::sigmoid:
    for (int w = 0; w < CW; ++w)
      out[w] = T(1) / (T(1) + std::exp(-pre[w]));
    return;
  case ActivationKind::identity:
    break;
  }
#pragma GCC unroll 32
  for (int w = 0; w < CW; ++w)
    out[w] = pre[w];
}

/// True for NaN and +-Inf (branch-free, vectorisable).
template <class T> inline bool not_finite(T v) {
  return !(std::abs(v) <= std::numeric_limits<T>::max());
}

/// Whether a 1x1 block x = phi(a x + c) has a unique solution for every c.
/// tanh and sigmoid with a * Lipschitz > 1 are decided per c (see
/// solve_singleton), so they count as well-posed here.
inline bool singleton_well_posed(const Activation &act, double a) {
  switch (act.kind) {
  case ActivationKind::relu:
    return a < 1;
  case ActivationKind::leaky_relu:
    return a < 1 && act.slope * a < 1;
  case ActivationKind::identity:
    return a != 1;
  case ActivationKind::tanh:
  case ActivationKind::sigmoid:
    return true;
  }
  return false;
}

/// Solution of the scalar equation x = phi(a x + c) for a structurally
/// well-posed singleton (closed forms in T for the piecewise-linear
/// activations). `unique` is false when tanh/sigmoid with a large self-weight
/// have several solutions for this c (x is then NaN).
struct ScalarSolution {
  double x = 0;
  bool unique = true;
};

namespace scalar {
// h(x) = x - sigma(a x + c) and its derivative for tanh / sigmoid.
inline double sigma(bool is_tanh, double t) {
  return is_tanh ? std::tanh(t) : 1.0 / (1.0 + std::exp(-t));
}
inline double sigma_prime(bool is_tanh, double t) {
  const double s = sigma(is_tanh, t);
  return is_tanh ? 1.0 - s * s : s * (1.0 - s);
}
// Safeguarded Newton on [lo, hi] with h(lo) <= 0 <= h(hi), h increasing on it.
inline double bracketed_root(bool is_tanh, double a, double c, double lo, double hi) {
  auto h = [&](double x) { return x - sigma(is_tanh, a * x + c); };
  double hlo = h(lo), hhi = h(hi);
  if (hlo >= 0)
    return lo;
  if (hhi <= 0)
    return hi;
  double x = std::clamp(sigma(is_tanh, c), lo, hi); // root when a == 0
  for (int it = 0; it < 200; ++it) {
    const double hx = h(x);
    if (hx == 0)
      return x;
    if (hx < 0)
      lo = x;
    else
      hi = x;
    const double dh = 1.0 - a * sigma_prime(is_tanh, a * x + c);
    double next = x - hx / dh;
    if (!(next > lo && next < hi))
      next = 0.5 * (lo + hi);
    if (next == x || hi - lo <= 2 * std::numeric_limits<double>::epsilon() *
                                    std::max(1.0, std::abs(x)))
      return std::abs(h(next)) < std::abs(hx) ? next : x;
    x = next;
  }
  return x;
}
} // namespace scalar

/// x = sigma(a x + c) for sigma = tanh (range [-1, 1], Lipschitz 1) or
/// sigmoid (range [0, 1], Lipschitz 1/4). With a * L <= 1, h(x) = x -
/// sigma(a x + c) is increasing: one root. Otherwise h increases, decreases
/// on [x1, x2] (where a sigma' = 1) and increases again: the root is unique
/// iff h(x1) < 0 or h(x2) > 0.
inline ScalarSolution solve_saturating(bool is_tanh, double a, double c) {
  const double lo = is_tanh ? -1.0 : 0.0, hi = 1.0;
  const double inv_lip = is_tanh ? 1.0 : 4.0; // a * L <= 1 <=> a <= inv_lip
  if (!(std::isfinite(a) && std::isfinite(c)))
    return {std::numeric_limits<double>::quiet_NaN(), true};
  if (a <= inv_lip)
    return {scalar::bracketed_root(is_tanh, a, c, lo, hi), true};
  // Stationary points of h: sigma'(t) = 1 / a at t = +-t_star.
  double t_star;
  if (is_tanh) {
    t_star = std::acosh(std::sqrt(a));
  } else {
    const double r = std::sqrt(1.0 - 4.0 / a);
    t_star = std::log((1.0 + r) / (1.0 - r));
  }
  const double x1 = (-t_star - c) / a, x2 = (t_star - c) / a;
  auto h = [&](double x) { return x - scalar::sigma(is_tanh, a * x + c); };
  const double margin = 64 * std::numeric_limits<double>::epsilon();
  if (h(x1) < -margin) // the local maximum is below zero: root right of x2
    return {scalar::bracketed_root(is_tanh, a, c, std::clamp(x2, lo, hi), hi), true};
  if (h(x2) > margin) // the local minimum is above zero: root left of x1
    return {scalar::bracketed_root(is_tanh, a, c, lo, std::clamp(x1, lo, hi)), true};
  return {std::numeric_limits<double>::quiet_NaN(), false};
}

/// Solution of x = phi(a x + c) for a structurally well-posed singleton.
template <class T>
inline T solve_singleton(const Activation &act, T a, T c, bool &unique) {
  switch (act.kind) {
  case ActivationKind::relu:
    return c > T(0) ? c / (T(1) - a) : T(0);
  case ActivationKind::leaky_relu: {
    const T s = static_cast<T>(act.slope);
    // madd: one rounding whatever the compiler contracts, so that every
    // batch width gives the same bits.
    return c >= T(0) ? c / (T(1) - a) : (s * c) / madd(-s, a, T(1));
  }
  case ActivationKind::identity:
    return c / (T(1) - a);
  case ActivationKind::tanh:
  case ActivationKind::sigmoid: {
    const auto r = solve_saturating(act.kind == ActivationKind::tanh,
                                    static_cast<double>(a), static_cast<double>(c));
    unique = r.unique;
    return static_cast<T>(r.x);
  }
  }
  return c;
}

} // namespace tacit::inline v1::detail
