#pragma once
// Sums of products over the columns of a batch, for parameter gradients: a
// fixed accumulation order (lanes, then a fixed tree), so that the result
// does not depend on how rows or parameters are split among threads.

#include <cstring>

#include <tacit/core/dense.hpp>

namespace tacit::inline v1::detail {

/// sum over c < k of term(c), in 16 interleaved partial sums reduced by a
/// fixed tree.
template <class T, class Term> inline T lane_sum(index_t k, Term term) {
  constexpr index_t L = 16;
  T acc[L] = {};
  index_t c = 0;
  for (; c + L <= k; c += L)
#pragma GCC unroll 16
    for (index_t l = 0; l < L; ++l)
      acc[l] += term(c + l);
  for (index_t l = 0; c + l < k; ++l)
    acc[l] += term(c + l);
#pragma GCC unroll 8
  for (index_t l = 0; l < L / 2; ++l)
    acc[l] += acc[l + L / 2];
#pragma GCC unroll 4
  for (index_t l = 0; l < L / 4; ++l)
    acc[l] += acc[l + L / 4];
  return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

/// sum over c < k of a[c] * b[c].
template <class T>
inline T column_dot(const T *__restrict a, const T *__restrict b, index_t k) {
  return lane_sum<T>(k, [a, b](index_t c) { return a[c] * b[c]; });
}

/// sum over c < k of a[c], in the same order as column_dot.
template <class T> inline T column_sum(const T *__restrict a, index_t k) {
  return lane_sum<T>(k, [a](index_t c) { return a[c]; });
}

} // namespace tacit::inline v1::detail
