// Conv2dOperator as a Trainable operator: the kernel's gradient, the
// correlation of the input maps with the adjoint maps over the batch, as a
// GEMM of the level's dense kernel (operators/kernels/gemm.cpp) over the
// forward product's padded phase-split input.

#include <tacit/operators/structured.hpp>

#include <algorithm>
#include <vector>

#include "core/detail/gradient_dot.hpp"
#include "core/detail/trainable_checks.hpp"
#include "operators/detail/conv_plan.hpp"
#include "operators/detail/gemm_plan.hpp"
#include "operators/detail/operator_kernels.hpp"

namespace tacit::inline v1 {

template <class T>
std::vector<ParameterShape> Conv2dOperator<T>::parameter_shapes() const {
  const auto &g = geometry_;
  return {
      {"weight", {g.out_channels, g.input.channels / g.groups, g.kernel_h, g.kernel_w}}};
}

template <class T> std::vector<std::span<T>> Conv2dOperator<T>::parameter_values() {
  return {std::span<T>(weights_)};
}

template <class T>
std::optional<std::vector<index_t>> Conv2dOperator<T>::row_feature_map() const {
  const TensorShape o = geometry_.output();
  return std::vector<index_t>{o.channels, o.height, o.width};
}

namespace {

/// Buffers of the weight gradients of every convolution (padded input, the
/// adjoint maps in the same layout), reused across calls.
template <class T> detail::ScratchPool<T> &gradient_buffers() {
  static detail::ScratchPool<T> pool;
  return pool;
}

/// dW += the correlation of x and v, straight from the definition (each
/// weight one sum over the output pixels in order): the reference kernel.
template <class T>
void reference_gradient(const Conv2dGeometry &g, ConstMatrixView<T> v, ConstMatrixView<T> x,
                        T *gw) {
  const index_t k = v.cols;
  const TensorShape o = g.output();
  const index_t H = g.input.height, W = g.input.width, OH = o.height, OW = o.width;
  const index_t KH = g.kernel_h, KW = g.kernel_w, cin_g = g.input.channels / g.groups,
                cout_g = g.out_channels / g.groups;
  for (index_t co = 0; co < g.out_channels; ++co) {
    const index_t grp = co / cout_g;
    for (index_t c = 0; c < cin_g; ++c) {
      const index_t ci = grp * cin_g + c;
      for (index_t kh = 0; kh < KH; ++kh)
        for (index_t kw = 0; kw < KW; ++kw) {
          T acc = T(0);
          for (index_t oh = 0; oh < OH; ++oh) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
            if (ih < 0 || ih >= H)
              continue;
            for (index_t ow = 0; ow < OW; ++ow) {
              const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
              if (iw < 0 || iw >= W)
                continue;
              acc += detail::column_dot(v.row((co * OH + oh) * OW + ow),
                                        x.row((ci * H + ih) * W + iw), k);
            }
          }
          gw[((co * cin_g + c) * KH + kh) * KW + kw] += acc;
        }
    }
  }
}

} // namespace

template <class T>
void Conv2dOperator<T>::accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                                            std::span<const std::span<T>> grad,
                                            Execution exec) const {
  detail::check_gradient_arguments(*this, v, x, grad, parameter_shapes());
  const index_t N = v.cols;
  if (N == 0)
    return;
  T *gw = grad[0].data();
  if (exec == Execution::reference)
    return reference_gradient(geometry_, v, x, gw);
  // dW[co][k] = sum over j of V'[co][j] Xp[tap k][j]: the forward's implicit
  // GEMM description (operators/detail/conv_plan.hpp) read the other way.
  // Xp is the padded, stride-phase-split input. Either each output row oh is
  // one piece of the inner index (v's row, OW * N values, read in place, and
  // the tap's segment of Xp of row oh), or V' holds v with the output rows
  // widened to the phase plane width Wq (zeros past OW), so that one row of
  // V' and the tap's segment of Xp (OH * Wq * N values) line up.
  const detail::ConvPlan p(geometry_);
  const index_t cs = p.channel_stride(), L = p.OH * p.Wq * N;
  // The reads of the last taps pass Xp's channels by less than its slack.
  const index_t reach = detail::xp_size<T>(p, N);
  // With v compact and output rows long enough, each output row oh is its
  // own piece of the inner index (v's row and the tap's segment of Xp, OW * N
  // values each) and v is read in place; otherwise V' is made.
  const bool rows_in_place = v.ld == N && p.OW * N >= 256;
  const std::size_t xp_len = static_cast<std::size_t>(reach),
                    vq_len = rows_in_place ? 0 : static_cast<std::size_t>(p.Co * L);
  typename detail::ScratchPool<T>::Lease buf(gradient_buffers<T>(), xp_len + vq_len);
  T *xp = buf.data(), *vq = buf.data() + xp_len;
  // Xp[c][ph][pw][h'][w'][n] = x[c][h' sh + ph - pt][w' sw + pw - pl][n] or 0,
  // as the forward product makes it.
  detail::conv_kernels().of<T>().fill(p, x, xp, exec);
  const auto &kernel = detail::gemm_kernels().of<T>();
  // Tasks own columns (taps) of dW: each weight is summed by one task.
  const index_t chunk = 12;
  if (rows_in_place) {
    const index_t seg = p.OW * N;
    std::vector<const T *> rows(static_cast<std::size_t>(p.OH * p.K));
    for (index_t grp = 0; grp < p.groups; ++grp) {
      for (index_t oh = 0; oh < p.OH; ++oh)
        for (index_t t = 0; t < p.K; ++t)
          rows[oh * p.K + t] = xp + (grp * p.cin_g * cs + p.tap_offset[t] + oh * p.Wq) * N;
      const T *a = v.data + grp * p.cout_g * p.OH * seg;
      T *c = gw + grp * p.cout_g * p.K;
      detail::for_range(exec, (p.K + chunk - 1) / chunk, 1, [&](index_t t0, index_t t1) {
        for (index_t oh = 0; oh < p.OH; ++oh)
          kernel.nt_accumulate(0, p.cout_g, t0 * chunk, std::min(p.K, t1 * chunk), seg,
                               a + oh * seg, p.OH * seg, rows.data() + oh * p.K, c, p.K);
      });
    }
    return;
  }
  detail::for_range(exec, p.Co, 1, [&](index_t c0, index_t c1) {
    for (index_t co = c0; co < c1; ++co)
      for (index_t oh = 0; oh < p.OH; ++oh)
        for (index_t wq = 0; wq < p.Wq; ++wq) {
          T *cell = vq + ((co * p.OH + oh) * p.Wq + wq) * N;
          if (wq < p.OW)
            std::copy_n(v.row((co * p.OH + oh) * p.OW + wq), N, cell);
          else
            std::fill(cell, cell + N, T(0));
        }
  });
  std::vector<const T *> rows(static_cast<std::size_t>(p.K));
  for (index_t grp = 0; grp < p.groups; ++grp) {
    for (index_t t = 0; t < p.K; ++t)
      rows[t] = xp + (grp * p.cin_g * cs + p.tap_offset[t]) * N;
    const T *a = vq + grp * p.cout_g * L;
    T *c = gw + grp * p.cout_g * p.K;
    detail::for_range(exec, (p.K + chunk - 1) / chunk, 1, [&](index_t t0, index_t t1) {
      kernel.nt_accumulate(0, p.cout_g, t0 * chunk, std::min(p.K, t1 * chunk), L, a, L,
                           rows.data(), c, p.K);
    });
  }
}

template <class T> std::shared_ptr<LinearOperator<T>> Conv2dOperator<T>::clone() const {
  return std::make_shared<Conv2dOperator<T>>(geometry_, weights_);
}

#define TACIT_INSTANTIATE(T)                                                             \
  template std::vector<ParameterShape> Conv2dOperator<T>::parameter_shapes() const;      \
  template std::vector<std::span<T>> Conv2dOperator<T>::parameter_values();              \
  template std::optional<std::vector<index_t>> Conv2dOperator<T>::row_feature_map()      \
      const;                                                                             \
  template void Conv2dOperator<T>::accumulate_gradient(                                  \
      ConstMatrixView<T>, ConstMatrixView<T>, std::span<const std::span<T>>, Execution)  \
      const;                                                                             \
  template std::shared_ptr<LinearOperator<T>> Conv2dOperator<T>::clone() const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
