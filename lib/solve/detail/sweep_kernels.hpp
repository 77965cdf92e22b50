#pragma once
// The sweep's row kernels for one instruction-set level (see
// solve/detail/sweep.hpp for the plan and core/detail/isa_begin.hpp for the
// levels): 1x1 rows of a level (one at a time, or twins together with their
// x loads shared) and the rows that start a cyclic block.

#include <algorithm>
#include <cmath>
#include <limits>

#include "solve/detail/activations.hpp"
#include "solve/detail/scalar_solvers.hpp"
#include "solve/detail/solve_kernels.hpp"
#include "solve/detail/sweep.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

template <class T> struct SweepRows {
  const SweepPlan<T> &plan;
  SlabView<const T> Z;
  SlabView<T> X;
  index_t W;

  SweepRows(const SweepPlan<T> &p, SlabView<const T> z, SlabView<T> x)
      : plan(p), Z(z), X(x), W(x.width) {}

  template <class F> decltype(auto) with_cols(F &&f) const {
    if (plan.wide)
      return f(plan.cols64.data());
    return f(plan.cols32.data());
  }

  static void ill(SweepPartial &part, index_t p, index_t col, T c) {
    sweep_mark_ill_posed(part, p, col, static_cast<double>(c));
  }

  /// 1x1 rows at positions [p0, p1) for slab s.
  void singles(index_t p0, index_t p1, index_t s, SweepPartial &part) {
    with_cols([&](const auto *cols) {
      if (W == 1)
        row_by_row(p0, p1, s, part, cols, std::true_type{});
      else
        grouped_rows(p0, p1, s, part, cols);
    });
  }

  /// One row at a time (any kind). A single-column batch has unit stride: a
  /// literal 1 saves a multiply per nonzero in the gather loop.
  template <class I, class Unit>
  void row_by_row(index_t p0, index_t p1, index_t s, SweepPartial &part, const I *cols,
                  Unit) {
    constexpr bool unit_stride = Unit::value;
    T *x = X.slab(s);
    const T *z = Z.slab(s);
    const index_t ncols = X.slab_cols(s);
    // Local copies of the plan's arrays: the stores below must not make the
    // compiler reload them for every row.
    const T *__restrict vals = plan.vals.data();
    const std::int64_t *__restrict ptr = plan.ptr.data();
    const index_t *__restrict row_of = plan.row_of.data();
    const unsigned char *__restrict kinds = plan.kind.data();
    const Activation *__restrict acts = plan.act.data();
    // c * 0 summed per column: NaN iff a non-finite c appeared.
    double *__restrict nonfinite = part.nonfinite.data();
    const index_t ld = unit_stride ? 1 : W;
    for (index_t p = p0; p < p1; ++p) {
      const index_t i = row_of[p];
      T *xi = x + i * ld;
      const T *zi = z + i * ld;
      const Activation &a = acts[p];
      const unsigned char kind = kinds[p];
      for_column_chunks<T>(unit_stride ? 1 : ncols, [&](auto cw, index_t c0) {
        constexpr int CW = decltype(cw)::value;
        T c[CW];
        row_sum4<CW>(vals, cols, ptr[p], ptr[p + 1], x + c0, ld, c);
#pragma GCC unroll 32
        for (int w = 0; w < CW; ++w)
          c[w] += zi[c0 + w];
        if (kind == row_plain) {
          T out[CW];
          activate_chunk<CW>(a, c, out);
#pragma GCC unroll 32
          for (int w = 0; w < CW; ++w) {
            xi[c0 + w] = out[w];
            nonfinite[c0 + w] += static_cast<double>(c[w]) * 0.0;
          }
        } else if (kind == row_diagonal) {
          const T d = plan.diag[p];
          const T slope = static_cast<T>(a.slope);
          for (int w = 0; w < CW; ++w) {
            bool unique = true;
            const T v = solve_singleton<fused_multiply_add>(a, d, c[w], unique);
            xi[c0 + w] = v;
            if (!unique)
              ill(part, p, c0 + w, c[w]);
            if (not_finite(c[w]) || not_finite(v)) {
              part.flags[c0 + w] |= sweep_flag_non_finite;
            } else {
              const T r = std::abs(v - activate(a.kind, slope, d * v + c[w]));
              part.residual[c0 + w] =
                  std::max(part.residual[c0 + w], static_cast<double>(r));
            }
          }
        } else { // row_ill_posed
          for (int w = 0; w < CW; ++w) {
            xi[c0 + w] = std::numeric_limits<T>::quiet_NaN();
            ill(part, p, c0 + w, c[w]);
          }
        }
      });
    }
  }

  /// Batched plain 1x1 rows, twins together (rows_sum4: x loads shared,
  /// bits as row by row), with z added and phi applied in registers.
  template <class I>
  void grouped_rows(index_t p0, index_t p1, index_t s, SweepPartial &part,
                    const I *cols) {
    T *x = X.slab(s);
    const T *z = Z.slab(s);
    const index_t ncols = X.slab_cols(s);
    const T *vals = plan.vals.data();
    const std::int64_t *ptr = plan.ptr.data();
    const index_t *row_of = plan.row_of.data();
    double *__restrict nonfinite = part.nonfinite.data();
    auto group_of = [&](auto R, index_t p) {
      constexpr int rows = decltype(R)::value;
      const T *v[rows];
      const I *c[rows];
      for (int r = 0; r < rows; ++r) {
        v[r] = vals + ptr[p + r];
        c[r] = cols + ptr[p + r];
      }
      const std::int64_t len = ptr[p + 1] - ptr[p];
      const std::int64_t head = rows > 1 ? plan.twin_heads[p] : 0;
      // Twins: two vectors per row, so that three rows' partial sums fit the
      // registers; a lone row takes the widest chunks.
      constexpr int max_chunk = rows > 1 ? wide_chunk<T> / 2 : wide_chunk<T>;
      for_column_chunks<T, max_chunk>(ncols, [&](auto cw, index_t c0) {
        constexpr int CW = decltype(cw)::value;
        T sum[rows][CW];
        if constexpr (CW >= 4) {
          rows_sum4<rows, CW>(v, c, len, head, x + c0, W, sum);
        } else {
          for (int r = 0; r < rows; ++r)
            row_sum4<1>(vals, cols, ptr[p + r], ptr[p + r + 1], x + c0, W, sum[r]);
        }
        for (int r = 0; r < rows; ++r) {
          const index_t i = row_of[p + r];
          T pre[CW], out[CW];
#pragma GCC unroll 32
          for (int w = 0; w < CW; ++w)
            pre[w] = sum[r][w] + z[i * W + c0 + w];
          activate_chunk<CW>(plan.act[p + r], pre, out);
#pragma GCC unroll 32
          for (int w = 0; w < CW; ++w) {
            x[i * W + c0 + w] = out[w];
            nonfinite[c0 + w] += static_cast<double>(pre[w]) * 0.0;
          }
        }
      });
    };
    for (index_t p = p0; p < p1;) {
      if (plan.kind[p] != row_plain) {
        row_by_row(p, p + 1, s, part, cols, std::false_type{});
        ++p;
        continue;
      }
      // Three rows of two vectors x four partial sums fill the registers:
      // a run of twins goes in threes, ending with a pair or two.
      index_t run = std::min<index_t>(plan.twins[p], p1 - p);
      while (run > 0) {
        if (run == 1) {
          group_of(std::integral_constant<int, 1>{}, p);
          p += 1;
          run -= 1;
        } else if (run == 2 || run == 4) {
          group_of(std::integral_constant<int, 2>{}, p);
          p += 2;
          run -= 2;
        } else {
          group_of(std::integral_constant<int, 3>{}, p);
          p += 3;
          run -= 3;
        }
      }
    }
  }

  /// c_B = z_B + A_{B,rest} x_rest and the starting iterate, for rows
  /// [r0, r1) of block b, slab s, into the engine's buffers (ld W).
  void prepare_block(const SweepBlock<T> &blk, index_t r0, index_t r1, index_t s, T *c,
                     T *x0, bool warm) {
    const T *x = X.slab(s);
    const T *z = Z.slab(s);
    const index_t ncols = X.slab_cols(s);
    with_cols([&](const auto *cols) {
      for (index_t r = r0; r < r1; ++r) {
        const index_t p = blk.p0 + r;
        const index_t i = plan.row_of[p];
        for_column_chunks<T>(ncols, [&](auto cw, index_t c0) {
          constexpr int CW = decltype(cw)::value;
          T v[CW];
          row_sum4<CW>(plan.vals.data(), cols, plan.ptr[p], plan.ptr[p + 1], x + c0, W,
                       v);
#pragma GCC unroll 32
          for (int w = 0; w < CW; ++w)
            c[r * W + c0 + w] = v[w] + z[i * W + c0 + w];
        });
        for (index_t w = 0; w < ncols; ++w)
          x0[r * W + w] = warm ? x[i * W + w] : T(0);
      }
    });
  }
};

template <class T>
void sweep_singles(const SweepPlan<T> &plan, SlabView<const T> Z, SlabView<T> X,
                   index_t p0, index_t p1, index_t s, SweepPartial &part) {
  SweepRows<T>(plan, Z, X).singles(p0, p1, s, part);
}

template <class T>
void sweep_block_rows(const SweepPlan<T> &plan, SlabView<const T> Z, SlabView<T> X,
                      const SweepBlock<T> &blk, index_t r0, index_t r1, index_t s, T *c,
                      T *x0, bool warm) {
  SweepRows<T>(plan, Z, X).prepare_block(blk, r0, r1, s, c, x0, warm);
}

} // namespace tacit::inline v1::detail::TACIT_ISA_NS
