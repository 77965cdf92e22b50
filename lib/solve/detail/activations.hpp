#pragma once
// Activations for the kernels of one instruction-set level (see
// core/detail/simd.hpp): phi(z) with Activation's formulas, row chunks with
// one switch per row, and a branch-free non-finite test.

#include <cmath>
#include <limits>

#include <tacit/core/model.hpp>

#include "core/detail/isa_ns.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

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

} // namespace tacit::inline v1::detail::TACIT_ISA_NS
