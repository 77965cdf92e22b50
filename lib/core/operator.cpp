#include <tacit/core/csr.hpp>
#include <tacit/core/operator.hpp>

#include <algorithm>
#include <cmath>
#include <string>

namespace tacit::inline v1 {

namespace {
std::string dims(index_t r, index_t c) {
  return std::to_string(r) + " x " + std::to_string(c);
}
} // namespace

template <class T>
LinearOperator<T>::LinearOperator(index_t rows, index_t cols) : rows_(rows), cols_(cols) {
  if (rows < 0 || cols < 0)
    throw InvalidArgument("operator with negative size " + dims(rows, cols));
}

template <class T>
void LinearOperator<T>::apply(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                              MatrixView<T> y, Execution exec) const {
  if (!check_views(mode, x, y))
    return;
  // In the policy's arena (the reference kernels are serial: no arena).
  if (auto *arena = exec.task_arena())
    arena->execute([&] { apply_impl(mode, alpha, x, beta, y, exec); });
  else
    apply_impl(mode, alpha, x, beta, y, exec);
}

template <class T>
bool LinearOperator<T>::check_views(Mode mode, ConstMatrixView<T> x,
                                    MatrixView<T> y) const {
  const index_t in = is_transposed(mode) ? rows_ : cols_;
  const index_t out = is_transposed(mode) ? cols_ : rows_;
  if (x.rows != in || y.rows != out || x.cols != y.cols)
    throw InvalidArgument(kind() + " operator " + dims(rows_, cols_) +
                          (is_transposed(mode) ? " (transposed)" : "") + ": x is " +
                          dims(x.rows, x.cols) + ", y is " + dims(y.rows, y.cols));
  if (x.ld < x.cols || y.ld < y.cols)
    throw InvalidArgument("apply: leading dimension smaller than column count");
  if (x.cols == 0 || out == 0)
    return false;
  // Overlap check: the kernels read x while writing y.
  // Pointers are formed only for non-empty views (x.rows may be 0: an
  // operator with no columns still scales y by beta).
  if (x.rows > 0) {
    const T *xb = x.data, *xe = x.data + (x.rows - 1) * x.ld + x.cols;
    const T *yb = y.data, *ye = y.data + (y.rows - 1) * y.ld + y.cols;
    if (xb < ye && yb < xe)
      throw InvalidArgument("apply: x and y overlap");
  }
  return true;
}

template <class T>
void LinearOperator<T>::apply(Mode mode, T alpha, const Batch<T> &x, T beta, Batch<T> &y,
                              Execution exec) const {
  if (x.cols() != y.cols() || x.slab_width() != y.slab_width())
    throw InvalidArgument("apply: batches differ in columns (" +
                          std::to_string(x.cols()) + " vs " + std::to_string(y.cols()) +
                          ") or slab width");
  auto slabs = [&] {
    for (index_t s = 0; s < x.slab_count(); ++s)
      apply(mode, alpha, x.slab(s), beta, y.slab(s), exec);
  };
  if (auto *arena = exec.task_arena())
    arena->execute(slabs);
  else
    slabs();
}

template <class T>
void LinearOperator<T>::apply(Mode mode, T alpha, std::span<const T> x, T beta,
                              std::span<T> y, Execution exec) const {
  apply(mode, alpha, vector_view(x), beta, vector_view(y), exec);
}

template <class T> std::vector<T> LinearOperator<T>::row_abs_sums() const {
  std::vector<T> out(static_cast<std::size_t>(rows_), T(0));
  row_abs_sums_impl(out);
  return out;
}

template <class T> std::vector<T> LinearOperator<T>::col_abs_sums() const {
  std::vector<T> out(static_cast<std::size_t>(cols_), T(0));
  col_abs_sums_impl(out);
  return out;
}

template <class T> CsrMatrix<T> LinearOperator<T>::to_csr() const {
  return to_csr_impl();
}

template <class T> double norm_inf(const LinearOperator<T> &op) {
  double best = 0;
  for (T v : op.row_abs_sums())
    best = std::max(best, static_cast<double>(v));
  return best;
}

template <class T> double norm_1(const LinearOperator<T> &op) {
  double best = 0;
  for (T v : op.col_abs_sums())
    best = std::max(best, static_cast<double>(v));
  return best;
}

template class LinearOperator<float>;
template class LinearOperator<double>;
template double norm_inf(const LinearOperator<float> &);
template double norm_inf(const LinearOperator<double> &);
template double norm_1(const LinearOperator<float> &);
template double norm_1(const LinearOperator<double> &);

} // namespace tacit::inline v1
