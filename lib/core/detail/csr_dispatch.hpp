#pragma once
// The CSR products' kernel table (one per instruction-set level, see
// core/detail/isa_dispatch.hpp).

#include <cstdint>

#include <tacit/core/dense.hpp>

#include "core/detail/isa_dispatch.hpp"

namespace tacit::inline v1::detail {

/// Rows of y = alpha * op(A) x + beta * y (op = identity or |.|): positions
/// [q0, q1) of `order` (a permutation of the rows), or rows [q0, q1) when
/// `order` is null; `twins`/`twin_heads` from RowSchedule (or null).
template <class T, class I>
using CsrRowsFn = void (*)(const std::int64_t *row_ptr, const I *cols, const T *vals,
                           const index_t *order, index_t q0, index_t q1, T alpha,
                           ConstMatrixView<T> x, T beta, MatrixView<T> y,
                           const unsigned char *twins, const unsigned char *twin_heads);

template <class T> struct CsrKernelsOf {
  CsrRowsFn<T, std::int32_t> rows32[2]; // [absolute]
  CsrRowsFn<T, std::int64_t> rows64[2];
  template <class I> CsrRowsFn<T, I> rows(bool absolute) const {
    if constexpr (sizeof(I) == 4)
      return rows32[absolute];
    else
      return rows64[absolute];
  }
};

struct CsrKernels {
  CsrKernelsOf<float> f;
  CsrKernelsOf<double> d;
  template <class T> const CsrKernelsOf<T> &of() const {
    if constexpr (sizeof(T) == 4)
      return f;
    else
      return d;
  }
};

TACIT_DECLARE_KERNEL_TABLE(CsrKernels, csr)

} // namespace tacit::inline v1::detail
