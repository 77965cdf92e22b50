#pragma once
// The SIMD layer of the kernels, for the level being compiled (see
// isa_begin.hpp): the vector width, explicit vector types, a multiply-add that
// rounds once when the level has FMA, and software prefetches.

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <tacit/core/dense.hpp>

#include "core/detail/isa_ns.hpp"

/// Keeps a scalar partial sum in a register at this point. GCC otherwise
/// "vectorises" the four scalar chains of the one-column kernels with gathers
/// and in-order reductions, which is slower than the scalar code (measured
/// 2x for float); an empty asm statement rules that out at no cost.
#ifndef TACIT_SCALAR_BARRIER
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define TACIT_SCALAR_BARRIER(v) asm("" : "+x"(v))
#else
#define TACIT_SCALAR_BARRIER(v) static_cast<void>(v)
#endif
#endif

namespace tacit::inline v1::detail::TACIT_ISA_NS {

/// Bytes of the widest hardware vector of the level.
inline constexpr int vector_bytes = TACIT_TARGET_AVX512 ? 64
                                    : TACIT_TARGET_AVX2 ? 32
                                                        : 16;

/// Whether a * b + c is rounded once (FMA) at this level.
inline constexpr bool fused_multiply_add = TACIT_TARGET_FMA;

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

/// a * b + c, rounded once at the levels with FMA (scalar and every vector
/// width alike, whatever the compiler's contraction choices), so that all
/// kernels of a level produce the same bits per column; rounded twice at the
/// generic level (the baseline x86-64 has no FMA instruction).
template <class T> inline T madd(T a, T b, T c) {
#if TACIT_TARGET_FMA
  if constexpr (sizeof(T) == 8)
    return _mm_cvtsd_f64(_mm_fmadd_sd(_mm_set_sd(a), _mm_set_sd(b), _mm_set_sd(c)));
  else
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
#else
  const T p = a * b; // a separate statement: never contracted
  return p + c;
#endif
}

template <class V, class T> inline V madd_lanes(V a, V b, V c) {
#if TACIT_TARGET_FMA
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
#if TACIT_TARGET_AVX512
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
      r[l] = madd(a[l], b[l], c[l]);
    return r;
  }
#else
  const V p = a * b;
  return p + c;
#endif
}

/// Software prefetch of streamed arrays (values, indices) 16 KiB of values
/// ahead into L2: the out-of-order window alone covers only a few lines of
/// these streams, and the hardware prefetchers stop at page boundaries.
/// Never faults, so the address may lie past the end (formed with integer
/// arithmetic).
template <class T> inline constexpr std::int64_t prefetch_ahead = 16384 / sizeof(T);
template <class U> inline void prefetch_l2(const U *base, std::int64_t index) {
  const auto address = reinterpret_cast<std::uintptr_t>(base) +
                       static_cast<std::uintptr_t>(index) * sizeof(U);
  __builtin_prefetch(reinterpret_cast<const void *>(address), 0, 2);
}
template <class U> inline void prefetch_l1(const U *p) {
  __builtin_prefetch(static_cast<const void *>(p), 0, 3);
}

} // namespace tacit::inline v1::detail::TACIT_ISA_NS
