#pragma once
// Dense matrix kernels of the dense layers and of parameter gradients, one
// table per instruction-set level (operators/kernels/gemm.cpp):
//
// - product: Y = alpha * W X + beta * Y for a dense W read with row and
//   column strides (W or W^T), X and Y row-major with leading dimensions
//   (slabs of a batch). Register tiles of 4 rows x up to 4 vectors of
//   columns; each element is one multiply-add chain over the inner index in
//   order.
// - nt_accumulate: C += A B^T where row j of B is B[j] (any pointer per row:
//   the rows of x for a dense layer's gradient, the taps of a convolution's
//   padded input for its kernel's gradient), a long inner dimension L.
//   Register tiles of 4 x 3 lane accumulators over fixed pieces of the inner
//   index (1024 values); each element is a fixed lane order, a fixed lane
//   reduction per piece and the pieces added in order.
// The split into tiles never changes an element's arithmetic, so results do
// not depend on the thread count (they differ between levels: vector widths
// and fused multiply-adds).

#include <tacit/core/dense.hpp>

#include "core/detail/isa_dispatch.hpp"

namespace tacit::inline v1::detail {

template <class T> struct GemmKernelsOf {
  /// Rows [i0, i1) and columns [n0, n1) of Y = alpha * W X + beta * Y, W(i, j)
  /// = w[i * rs + j * cs] (K inner), X(j, n) = x[j * ldx + n], Y(i, n) =
  /// y[i * ldy + n] (beta == 0 overwrites).
  void (*product)(index_t i0, index_t i1, index_t n0, index_t n1, index_t K, const T *w,
                  index_t rs, index_t cs, const T *x, index_t ldx, T *y, index_t ldy,
                  T alpha, T beta);
  /// Rows [i0, i1) and columns [j0, j1) of C += A B^T: C(i, j) = c[i * ldc +
  /// j] += sum over l < L of a[i * lda + l] * b[j][l].
  void (*nt_accumulate)(index_t i0, index_t i1, index_t j0, index_t j1, index_t L,
                        const T *a, index_t lda, const T *const *b, T *c, index_t ldc);
};

struct GemmKernels {
  GemmKernelsOf<float> f;
  GemmKernelsOf<double> d;
  template <class T> const GemmKernelsOf<T> &of() const {
    if constexpr (sizeof(T) == 4)
      return f;
    else
      return d;
  }
};

TACIT_DECLARE_KERNEL_TABLE(GemmKernels, gemm)

} // namespace tacit::inline v1::detail
