// CsrMatrix as a Trainable operator: the values on the fixed pattern.

#include <tacit/core/csr.hpp>

#include <algorithm>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "core/detail/gradient_dot.hpp"
#include "core/detail/trainable_checks.hpp"

namespace tacit::inline v1 {

template <class T> std::vector<ParameterShape> CsrMatrix<T>::parameter_shapes() const {
  return {{"values", {this->nnz()}}};
}

template <class T> std::vector<std::span<T>> CsrMatrix<T>::parameter_values() {
  return {mutable_values()};
}

template <class T> void CsrMatrix<T>::parameters_changed() {
  transpose_cache_.reset();
}

template <class T>
void CsrMatrix<T>::accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                                       std::span<const std::span<T>> grad,
                                       Execution exec) const {
  detail::check_gradient_arguments(*this, v, x, grad, parameter_shapes());
  const index_t m = this->rows(), k = v.cols;
  if (k == 0 || values_.empty())
    return;
  T *g = grad[0].data();
  const std::int64_t *rp = row_ptr_.data();
  visit_columns([&](auto cols) {
    // Each stored entry is written by one task: g_e += v_i . x_j over the
    // columns, in column_dot's fixed order.
    auto rows = [&](index_t r0, index_t r1) {
      for (index_t i = r0; i < r1; ++i) {
        const T *vi = v.row(i);
        for (auto e = rp[i]; e < rp[i + 1]; ++e)
          g[e] += detail::column_dot(vi, x.row(cols[e]), k);
      }
    };
    if (exec == Execution::reference || m < 64) {
      rows(0, m);
      return;
    }
    // About 16k products per task.
    const index_t per_row = std::max<index_t>(1, this->nnz() / std::max<index_t>(1, m));
    const index_t grain =
        std::max<index_t>(1, 16384 / (per_row * std::max<index_t>(1, k)));
    tbb::parallel_for(
        tbb::blocked_range<index_t>(0, m, grain),
        [&](const tbb::blocked_range<index_t> &r) { rows(r.begin(), r.end()); });
  });
}

template <class T> std::shared_ptr<LinearOperator<T>> CsrMatrix<T>::clone() const {
  auto copy = std::make_shared<CsrMatrix<T>>(*this);
  copy->transpose_cache_.reset();
  return copy;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template std::vector<ParameterShape> CsrMatrix<T>::parameter_shapes() const;           \
  template std::vector<std::span<T>> CsrMatrix<T>::parameter_values();                   \
  template void CsrMatrix<T>::parameters_changed();                                      \
  template void CsrMatrix<T>::accumulate_gradient(                                       \
      ConstMatrixView<T>, ConstMatrixView<T>, std::span<const std::span<T>>, Execution)  \
      const;                                                                             \
  template std::shared_ptr<LinearOperator<T>> CsrMatrix<T>::clone() const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
