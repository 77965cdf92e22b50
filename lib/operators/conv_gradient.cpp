// Conv2dOperator as a Trainable operator: the kernel's gradient, the
// correlation of the input maps with the adjoint maps over the batch.

#include <tacit/operators/structured.hpp>

#include <algorithm>

#include "core/detail/gradient_dot.hpp"
#include "core/detail/trainable_checks.hpp"
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

template <class T>
void Conv2dOperator<T>::accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                                            std::span<const std::span<T>> grad,
                                            Execution exec) const {
  detail::check_gradient_arguments(*this, v, x, grad, parameter_shapes());
  const index_t k = v.cols;
  if (k == 0)
    return;
  const auto &g = geometry_;
  const TensorShape o = g.output();
  const index_t H = g.input.height, W = g.input.width, OH = o.height, OW = o.width;
  const index_t KH = g.kernel_h, KW = g.kernel_w, cin_g = g.input.channels / g.groups,
                cout_g = g.out_channels / g.groups;
  T *gw = grad[0].data();
  // dW[co][c][kh][kw] += sum over (oh, ow) of v[co, oh, ow] . x[ci, ih, iw]
  // (taps inside the image), in a fixed order per weight.
  detail::for_range(exec, g.out_channels, 1, [&](index_t c0, index_t c1) {
    for (index_t co = c0; co < c1; ++co) {
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
  });
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
