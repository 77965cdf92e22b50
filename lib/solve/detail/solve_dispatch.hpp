#pragma once
// The solvers' kernel table (one per instruction-set level, see
// core/detail/isa_dispatch.hpp): the sweep's 1x1 rows and block starts, the
// Picard engine's fused pass and the rows of Z = B U + b.

#include <cstdint>

#include <tacit/core/dense.hpp>
#include <tacit/core/model.hpp>

#include "core/detail/isa_dispatch.hpp"
#include "core/detail/slab_buffer.hpp"
#include "solve/detail/sweep.hpp"

namespace tacit::inline v1::detail {

/// What a fused Picard pass writes: nothing (residuals), g where the column
/// is active and x elsewhere, or g everywhere (Anderson).
enum FusedWrite { write_none = 0, write_select = 1, write_always = 2 };

/// Rows [r0, r1) of g = phi(pre + c) with pre = M x (fused CSR sum, when
/// `product`), = y (an operator product done before) or = 0; per-column
/// maxima of |g - x| (step) and |g| (norm), and `bad` accumulating pre * 0 +
/// g * 0 (NaN iff a non-finite value appeared); g written as FusedWrite says.
template <class T, class I>
using FusedRowsFn = void (*)(const std::int64_t *ptr, const I *cols, const T *vals,
                             const Activation *act, index_t r0, index_t r1, bool product,
                             const T *y, const T *x, const T *c, T *out, index_t ld,
                             index_t ncols, const T *on, T *step, T *norm, T *bad);

/// Rows [r0, r1) of z = B u + bias (CSR B) into z (ld W), u's real columns.
template <class T, class I>
using AffineRowsFn = void (*)(const std::int64_t *ptr, const I *cols, const T *vals,
                              const T *bias, index_t r0, index_t r1, ConstMatrixView<T> u,
                              T *z, index_t W);

template <class T> struct SolveKernelsOf {
  /// The sweep's 1x1 rows at positions [p0, p1) of slab s.
  void (*singles)(const SweepPlan<T> &, SlabView<const T> Z, SlabView<T> X, index_t p0,
                  index_t p1, index_t s, SweepPartial &);
  /// c = z + A_{B,rest} x_rest and the starting iterate of rows [r0, r1) of a
  /// cyclic block, slab s.
  void (*block_rows)(const SweepPlan<T> &, SlabView<const T> Z, SlabView<T> X,
                     const SweepBlock<T> &, index_t r0, index_t r1, index_t s, T *c,
                     T *x0, bool warm);
  FusedRowsFn<T, std::int32_t> fused32[3];
  FusedRowsFn<T, std::int64_t> fused64[3];
  AffineRowsFn<T, std::int32_t> affine32;
  AffineRowsFn<T, std::int64_t> affine64;

  template <class I> FusedRowsFn<T, I> fused(FusedWrite w) const {
    if constexpr (sizeof(I) == 4)
      return fused32[w];
    else
      return fused64[w];
  }
  template <class I> AffineRowsFn<T, I> affine() const {
    if constexpr (sizeof(I) == 4)
      return affine32;
    else
      return affine64;
  }
};

struct SolveKernels {
  SolveKernelsOf<float> f;
  SolveKernelsOf<double> d;
  template <class T> const SolveKernelsOf<T> &of() const {
    if constexpr (sizeof(T) == 4)
      return f;
    else
      return d;
  }
};

TACIT_DECLARE_KERNEL_TABLE(SolveKernels, solve)

} // namespace tacit::inline v1::detail
