#pragma once
// The Picard engine's fused pass and the rows of Z = B U + b, for one
// instruction-set level (see solve/detail/solve_dispatch.hpp).

#include <cmath>
#include <cstdint>

#include "solve/detail/activations.hpp"
#include "solve/detail/solve_dispatch.hpp"
#include "solve/detail/solve_kernels.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

/// Rows [r0, r1) of g = phi(pre + c) with pre = M x (fused CSR sum), = y
/// (operator product done before) or = 0 (x = 0); per-column max of |g - x|
/// and |g|, and `bad` accumulating pre * 0 + g * 0 (NaN iff a non-finite
/// value appeared: one type throughout keeps the epilogue vectorised); writes
/// g according to Write (write_select: where on[w] != 0, else x).
template <FusedWrite W, class T, class I>
void fused_rows(const std::int64_t *ptr, const I *cols, const T *vals,
                const Activation *act, index_t r0, index_t r1, bool product, const T *y,
                const T *x, const T *c, T *out, index_t ld, index_t ncols,
                const T *__restrict on, T *__restrict step, T *__restrict norm,
                T *__restrict bad) {
  for (index_t r = r0; r < r1; ++r) {
    const Activation &a = act[r];
    const T *xr = x + r * ld;
    const T *cr = c + r * ld;
    for_column_chunks<T>(ncols, [&](auto cw, index_t c0) {
      constexpr int CW = decltype(cw)::value;
      T pre[CW], g[CW];
      if (y) {
        for (int w = 0; w < CW; ++w)
          pre[w] = y[r * ld + c0 + w];
      } else if (product) {
        row_sum4<CW>(vals, cols, ptr[r], ptr[r + 1], x + c0, ld, pre);
      } else {
        for (int w = 0; w < CW; ++w)
          pre[w] = T(0);
      }
#pragma GCC unroll 32
      for (int w = 0; w < CW; ++w)
        pre[w] += cr[c0 + w];
      activate_chunk<CW>(a, pre, g);
      T *__restrict st = step + c0;
      T *__restrict nm = norm + c0;
      T *__restrict bd = bad + c0;
#pragma GCC unroll 32
      for (int w = 0; w < CW; ++w) {
        const T d = std::abs(g[w] - xr[c0 + w]);
        const T m = std::abs(g[w]);
        st[w] = d > st[w] ? d : st[w];
        nm[w] = m > nm[w] ? m : nm[w];
        bd[w] += pre[w] * T(0) + g[w] * T(0);
      }
      if constexpr (W == write_select) {
        T *o = out + r * ld + c0;
#pragma GCC unroll 32
        for (int w = 0; w < CW; ++w)
          o[w] = on[c0 + w] != T(0) ? g[w] : xr[c0 + w];
      } else if constexpr (W == write_always) {
        T *o = out + r * ld + c0;
#pragma GCC unroll 32
        for (int w = 0; w < CW; ++w)
          o[w] = g[w];
      }
    });
  }
}

/// Rows [r0, r1) of z = B u + bias (CSR B), in the solvers' fixed order.
template <class T, class I>
void affine_rows(const std::int64_t *ptr, const I *cols, const T *vals, const T *bias,
                 index_t r0, index_t r1, ConstMatrixView<T> u, T *z, index_t W) {
  for (index_t i = r0; i < r1; ++i) {
    if (ptr[i] == ptr[i + 1]) {   // most states read no input: z = b
      const T b = T(0) + bias[i]; // the bits of the sum below (-0 -> +0)
      for (index_t w = 0; w < u.cols; ++w)
        z[i * W + w] = b;
      continue;
    }
    for_column_chunks<T>(u.cols, [&](auto cw, index_t c0) {
      constexpr int CW = decltype(cw)::value;
      T v[CW];
      row_sum4<CW>(vals, cols, ptr[i], ptr[i + 1], u.data + c0, u.ld, v);
#pragma GCC unroll 32
      for (int w = 0; w < CW; ++w)
        z[i * W + c0 + w] = v[w] + bias[i];
    });
  }
}

} // namespace tacit::inline v1::detail::TACIT_ISA_NS
