#pragma once
// Convolution plans on the CHWN layout, shared by the kernels of every
// instruction-set level (operators/detail/conv_kernels.hpp) and their callers.
// Convolution kernels on the CHWN layout.
//
// Forward product (y = alpha * conv(x) + beta * y), as an implicit GEMM per
// group: Out[co][j] = sum_k W[co][k] * B[k][j], k = (ci, kh, kw). The input
// is first copied into a zero-padded, stride-phase-split buffer
//   Xp[ci][ph][pw][h'][w'][n]   (padded row h = h'*sh + ph, column w = w'*sw + pw),
// so that for a fixed tap k the inputs of all outputs (oh, ow, n) of one
// output row, or of the whole plane when rows are merged, are ONE contiguous
// segment of Xp: tap (kh, kw) reads phase ((kh*dh) % sh, (kw*dw) % sw) at
// offset ((kh*dh) / sh, (kw*dw) / sw). Columns are numbered j = (oh*Wq + w')*N + n
// with w' < Wq (the phase plane width); the columns with w' >= OW are computed
// and discarded ("merged" rows, better when OW*N is small), or each output row
// is a separate segment of OW*N columns ("row" segments).
//
// Two GEMM back ends consume that description:
//  - direct: a register-tiled micro-kernel (MR output channels x NV vectors of
//    columns) reading the B rows straight from Xp;
//  - im2col: the B rows of a column chunk are packed into a per-task buffer and
//    multiplied by Eigen's GEMM.
// Each output element is one full sum over k in a fixed order inside one task,
// so results do not depend on the number of threads or the task split.
//
// Adjoint product: the scatter form of the same description. Per input
// channel (the parallel dimension) the contributions w[co][ci][kh][kw] * x[co]
// are accumulated with contiguous axpys into a padded phase-split buffer in a
// fixed (co, kh, kw, row) order, then copied out with alpha/beta.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <tacit/core/dense.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/operators/structured.hpp>

#include "core/detail/isa_dispatch.hpp"
#include "operators/detail/operator_kernels.hpp"

namespace tacit::inline v1::detail {

/// Which GEMM back end a forward product uses.
enum class ConvAlgorithm {
  automatic,
  direct, ///< micro-kernel reading the B rows in place
  packed, ///< micro-kernel on B tiles packed per task (contiguous stream)
  im2col  ///< packed B, Eigen GEMM
};

/// Geometry-derived constants.
struct ConvPlan {
  index_t C = 0, H = 0, W = 0, Co = 0, OH = 0, OW = 0;
  index_t KH = 1, KW = 1, sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0;
  index_t groups = 1, cin_g = 1, cout_g = 1, K = 1; // K = cin_g * KH * KW
  index_t Hq = 0, Wq = 0;                           // phase plane size
  // Offset of tap k = (cig, kh, kw) from the start of its group's channels in
  // Xp, in units of N (multiply by the column count).
  std::vector<index_t> tap_offset;
  // Where output (co, oh, ow) goes: y row y_first + co * y_chan + oh * y_row +
  // ow * y_col (y's natural CHW order unless a caller scatters the output,
  // as the phases of a strided convolution's adjoint do).
  index_t y_first = 0, y_chan = 0, y_row = 0, y_col = 1;
  // The caller filled Xp (x is not read): phases sharing one padded input.
  bool input_prefilled = false;

  explicit ConvPlan(const Conv2dGeometry &g) {
    C = g.input.channels;
    H = g.input.height;
    W = g.input.width;
    const TensorShape o = g.output();
    Co = o.channels;
    OH = o.height;
    OW = o.width;
    KH = g.kernel_h;
    KW = g.kernel_w;
    sh = g.stride_h;
    sw = g.stride_w;
    dh = g.dilation_h;
    dw = g.dilation_w;
    pt = g.pad_top;
    pl = g.pad_left;
    groups = g.groups;
    cin_g = C / groups;
    cout_g = Co / groups;
    K = cin_g * KH * KW;
    const index_t Hp = H + g.pad_top + g.pad_bottom, Wp = W + g.pad_left + g.pad_right;
    Hq = (Hp + sh - 1) / sh;
    Wq = (Wp + sw - 1) / sw;
    tap_offset.resize(static_cast<std::size_t>(K));
    for (index_t c = 0; c < cin_g; ++c)
      for (index_t kh = 0; kh < KH; ++kh)
        for (index_t kw = 0; kw < KW; ++kw) {
          const index_t ph = (kh * dh) % sh, qh = (kh * dh) / sh;
          const index_t pw = (kw * dw) % sw, qw = (kw * dw) / sw;
          tap_offset[(c * KH + kh) * KW + kw] =
              ((c * sh * sw + ph * sw + pw) * Hq + qh) * Wq + qw;
        }
    y_chan = OH * OW;
    y_row = OW;
  }
  /// The row of y that output (co, oh, ow) is stored in.
  index_t y_index(index_t co, index_t oh, index_t ow) const {
    return y_first + co * y_chan + oh * y_row + ow * y_col;
  }
  /// Elements of Xp per channel, in units of N.
  index_t channel_stride() const { return sh * sw * Hq * Wq; }
};

/// Output channels per micro-tile of the direct kernel.
inline constexpr index_t conv_mr = 8;

/// Weights packed for the micro-kernel: per group, per block of conv_mr
/// output channels, [K][conv_mr] (missing channels zero).
template <class T>
std::vector<T, AlignedAllocator<T>> pack_weights(const ConvPlan &p, std::span<const T> w,
                                                 bool absolute) {
  const index_t blocks = (p.cout_g + conv_mr - 1) / conv_mr;
  std::vector<T, AlignedAllocator<T>> out(
      static_cast<std::size_t>(p.groups * blocks * p.K * conv_mr), T(0));
  for (index_t g = 0; g < p.groups; ++g)
    for (index_t co = 0; co < p.cout_g; ++co)
      for (index_t k = 0; k < p.K; ++k) {
        const T v = w[(g * p.cout_g + co) * p.K + k];
        out[((g * blocks + co / conv_mr) * p.K + k) * conv_mr + co % conv_mr] =
            absolute ? std::abs(v) : v;
      }
  return out;
}

/// The widest micro-tile of any level (3 AVX-512 vectors): the slack the
/// phase-split buffer keeps past its end for a tile's loads.
template <class T> inline constexpr index_t conv_max_tile_cols = 3 * 64 / sizeof(T);

/// Forward convolution through the implicit GEMM (see the file comment).
/// `wpacked` from pack_weights; `w` the plain weights [Co][K] (im2col);
/// `xp` a buffer of xp_size(p, N) elements.
template <class T> index_t xp_size(const ConvPlan &p, index_t N) {
  return p.C * p.channel_stride() * N + (p.Wq + 1) * N + 2 * conv_max_tile_cols<T> + 64;
}

/// How a forward product writes its sums: y = alpha * acc + beta * y, or with
/// `activated`, y = phi(alpha * acc + beta * y + bias[row] + residual_scale *
/// residual) (bias may be null, the residual absent: data null).
template <class T> struct ConvEpilogue {
  T alpha = T(1), beta = T(0);
  bool activated = false;
  const T *bias = nullptr;
  Activation phi;
  const T *residual = nullptr;
  index_t residual_ld = 0;
  T residual_scale = T(1);
};

template <class T> struct ConvKernelsOf {
  /// y = epilogue(conv(x)) through the implicit GEMM; `wpacked` from
  /// pack_weights, `wplain` the weights [Co][K] (im2col), `xp` a buffer of
  /// xp_size(p, N) elements. Returns false when an activated store saw a NaN
  /// or an infinity before the activation.
  bool (*forward)(const ConvPlan &p, ConvAlgorithm algo, const T *wpacked,
                  const T *wplain, const ConvEpilogue<T> &epilogue, ConstMatrixView<T> x,
                  MatrixView<T> y, T *xp, ScratchPool<T> &pool, Execution exec);
  /// y (C*H*W x N) = alpha * conv^T(x) + beta * y; `xc` is x with ld = N,
  /// `acc` a buffer of C * channel_stride * N elements.
  void (*adjoint)(const ConvPlan &p, std::span<const T> w, bool absolute, T alpha,
                  const T *xc, T beta, MatrixView<T> y, T *acc, Execution exec);
  /// Xp of x as `forward` makes it (xp_size(p, N) elements, the slack zero),
  /// for forward calls with p.input_prefilled that share it.
  void (*fill)(const ConvPlan &p, ConstMatrixView<T> x, T *xp, Execution exec);
};

struct ConvKernels {
  ConvKernelsOf<float> f;
  ConvKernelsOf<double> d;
  template <class T> const ConvKernelsOf<T> &of() const {
    if constexpr (sizeof(T) == 4)
      return f;
    else
      return d;
  }
};

TACIT_DECLARE_KERNEL_TABLE(ConvKernels, conv)

} // namespace tacit::inline v1::detail
