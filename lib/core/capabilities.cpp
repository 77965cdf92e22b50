// Generic forms of the operator capabilities (see core/capabilities.hpp).
#include <tacit/core/capabilities.hpp>

#include <cmath>
#include <string>

namespace tacit::inline v1 {

template <class T>
bool apply_activated_unfused(const LinearOperator<T> &op, T alpha, ConstMatrixView<T> x,
                             T beta, MatrixView<T> y, std::span<const T> bias,
                             const Activation &phi, Execution exec,
                             ConstMatrixView<T> residual, T residual_scale) {
  if (!bias.empty() && static_cast<index_t>(bias.size()) != op.rows())
    throw InvalidArgument("apply_activated: bias has " + std::to_string(bias.size()) +
                          " entries, expected " + std::to_string(op.rows()));
  const bool has_residual = residual.data != nullptr;
  if (has_residual &&
      (residual.rows != y.rows || residual.cols != y.cols || residual.ld < residual.cols))
    throw InvalidArgument(
        "apply_activated: the residual is " + std::to_string(residual.rows) + " x " +
        std::to_string(residual.cols) + " (ld " + std::to_string(residual.ld) +
        "), y is " + std::to_string(y.rows) + " x " + std::to_string(y.cols));
  op.apply(Mode::normal, alpha, x, beta, y, exec);
  bool finite = true;
  for (index_t i = 0; i < y.rows; ++i)
    for (index_t j = 0; j < y.cols; ++j) {
      const T v = y(i, j) + (bias.empty() ? T(0) : bias[i]) +
                  (has_residual ? residual_scale * residual(i, j) : T(0));
      finite = finite && std::isfinite(v);
      y(i, j) = phi(v);
    }
  return finite;
}

template <class T>
bool apply_activated(const LinearOperator<T> &op, T alpha, ConstMatrixView<T> x, T beta,
                     MatrixView<T> y, std::span<const T> bias, const Activation &phi,
                     Execution exec, ConstMatrixView<T> residual, T residual_scale) {
  auto run = [&] {
    if (const auto *fused = capability<FusedActivation<T>>(op))
      return fused->apply_activated(alpha, x, beta, y, bias, phi, exec, residual,
                                    residual_scale);
    return apply_activated_unfused(op, alpha, x, beta, y, bias, phi, exec, residual,
                                   residual_scale);
  };
  if (auto *arena = exec.task_arena())
    return arena->execute(run);
  return run();
}

template <class T>
void add_abs_sums(const LinearOperator<T> &op, bool rows, std::span<double> out) {
  const index_t want = rows ? op.rows() : op.cols();
  if (static_cast<index_t>(out.size()) != want)
    throw InvalidArgument("add_abs_sums: out has " + std::to_string(out.size()) +
                          " entries, expected " + std::to_string(want));
  if (const auto *accurate = capability<AccurateAbsSums<T>>(op)) {
    accurate->add_abs_sums(rows, out);
    return;
  }
  const auto s = rows ? op.row_abs_sums() : op.col_abs_sums();
  for (std::size_t i = 0; i < s.size(); ++i)
    out[i] += static_cast<double>(s[i]);
}

#define TACIT_INSTANTIATE(T)                                                             \
  template bool apply_activated_unfused(                                                 \
      const LinearOperator<T> &, T, ConstMatrixView<T>, T, MatrixView<T>,                \
      std::span<const T>, const Activation &, Execution, ConstMatrixView<T>, T);         \
  template bool apply_activated(const LinearOperator<T> &, T, ConstMatrixView<T>, T,     \
                                MatrixView<T>, std::span<const T>, const Activation &,   \
                                Execution, ConstMatrixView<T>, T);                       \
  template void add_abs_sums(const LinearOperator<T> &, bool, std::span<double>);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
