// The sensitivity operator S = |C| (I - |A|)^-1 |B| + |D| and its uses:
// global box bounds, gradients through the equilibrium, Lipschitz bounds.
//
// Solves with I - |A| go through a "resolvent" back-end
// (lib/analysis/detail/sensitivity_backends.hpp): a forward/backward
// substitution over the SCC order of a CSR A or over the blocks of a block lower
// triangular BlockOperator, a KLU factorisation, or a certified fixed-point iteration.

#include <tacit/analysis/sensitivity.hpp>
#include <tacit/core/format.hpp>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/solve/adjoint.hpp>
#include <tacit/solve/solve.hpp>

#include "analysis/detail/sensitivity_backends.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <numeric>

namespace tacit::inline v1 {

std::string to_string(SensitivityMethod m) {
  switch (m) {
  case SensitivityMethod::automatic:
    return "auto";
  case SensitivityMethod::sweep:
    return "sweep";
  case SensitivityMethod::klu:
    return "klu";
  case SensitivityMethod::iterative:
    return "iterative";
  }
  return "?";
}

SensitivityMethod parse_sensitivity_method(std::string_view name) {
  if (name == "auto" || name == "automatic")
    return SensitivityMethod::automatic;
  if (name == "sweep")
    return SensitivityMethod::sweep;
  if (name == "klu")
    return SensitivityMethod::klu;
  if (name == "iterative")
    return SensitivityMethod::iterative;
  throw InvalidArgument("unknown sensitivity method '" + std::string(name) +
                        "' (expected auto, sweep, klu or iterative)");
}

namespace {

/// Row-major n x k buffer.
template <class T> struct Dense {
  std::vector<T> data;
  index_t rows = 0, cols = 0;
  Dense() = default;
  Dense(index_t r, index_t c)
      : data(static_cast<std::size_t>(r * c), T(0)), rows(r), cols(c) {}
  MatrixView<T> view() { return {data.data(), rows, cols, cols}; }
  ConstMatrixView<T> view() const { return {data.data(), rows, cols, cols}; }
};

template <class T> void check_non_expansive(const Model<T> &model, const char *what) {
  for (const auto &b : model.blocks())
    if (b.activation.lipschitz() > 1)
      throw Unsupported(std::string(what) + ": state block '" + b.name + "' uses " +
                        b.activation.name() + " with Lipschitz constant " +
                        format_number(b.activation.lipschitz(), 10) +
                        " > 1; the bound needs componentwise non-expansive activations");
}

} // namespace

template <class T> TopEntries top_entries(std::span<const T> values, index_t count) {
  const auto p = static_cast<index_t>(values.size());
  count = std::clamp<index_t>(count, 0, p);
  std::vector<index_t> idx(static_cast<std::size_t>(p));
  std::iota(idx.begin(), idx.end(), index_t(0));
  std::partial_sort(idx.begin(), idx.begin() + count, idx.end(), [&](index_t a, index_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  TopEntries top;
  for (index_t i = 0; i < count; ++i) {
    top.indices.push_back(idx[i]);
    top.values.push_back(static_cast<double>(values[idx[i]]));
  }
  return top;
}

template TopEntries top_entries(std::span<const float>, index_t);
template TopEntries top_entries(std::span<const double>, index_t);

// ------------------------------------------------------------------ operator

template <class T> struct SensitivityOperator<T>::Impl {
  OperatorPtr<T> A, B, C, D;
  std::unique_ptr<detail::Resolvent<T>> resolvent;
  SensitivityInfo info;
  SensitivityOptions options;
  mutable std::mutex stats_mutex;
  mutable SensitivitySolveStats stats;

  void record(const SensitivitySolveStats &s) const {
    std::lock_guard lock(stats_mutex);
    stats = s;
  }
};

template <class T>
SensitivityOperator<T>::SensitivityOperator(const Model<T> &model,
                                            SensitivityOptions options)
    : LinearOperator<T>(model.outputs(), model.inputs()),
      impl_(std::make_unique<Impl>()) {
  options.exec.run([&]() {
    impl_->A = model.A_ptr();
    impl_->B = model.B_ptr();
    impl_->C = model.C_ptr();
    impl_->D = model.D_ptr();
    impl_->options = options;
    detail::ResolventChoice choice;
    impl_->resolvent = detail::make_resolvent<T>(impl_->A, options, choice);
    impl_->info = choice.info;
  });
}

template <class T> SensitivityOperator<T>::~SensitivityOperator() = default;
template <class T>
SensitivityOperator<T>::SensitivityOperator(SensitivityOperator &&) noexcept = default;

template <class T> const SensitivityInfo &SensitivityOperator<T>::info() const noexcept {
  return impl_->info;
}

template <class T>
const SensitivityOptions &SensitivityOperator<T>::options() const noexcept {
  return impl_->options;
}

template <class T> SensitivitySolveStats SensitivityOperator<T>::last_solve() const {
  std::lock_guard lock(impl_->stats_mutex);
  return impl_->stats;
}

template <class T>
void SensitivityOperator<T>::solve_states(ConstMatrixView<T> r, MatrixView<T> w,
                                          bool transposed, Execution exec) const {
  exec.run([&]() {
    const index_t n = impl_->A->rows();
    if (r.rows != n || w.rows != n || r.cols != w.cols || r.ld < r.cols || w.ld < w.cols)
      throw InvalidArgument("solve_states: r is " + std::to_string(r.rows) + " x " +
                            std::to_string(r.cols) + ", w is " + std::to_string(w.rows) +
                            " x " + std::to_string(w.cols) + ", expected " +
                            std::to_string(n) + " rows each and equal column counts");
    if (r.cols == 0 || n == 0)
      return;
    const bool same = r.data == w.data && r.ld == w.ld;
    if (!same) {
      const T *rb = r.data, *re = r.data + (r.rows - 1) * r.ld + r.cols;
      const T *wb = w.data, *we = w.data + (w.rows - 1) * w.ld + w.cols;
      if (rb < we && wb < re)
        throw InvalidArgument(
            "solve_states: r and w overlap without being the same view");
      for (index_t i = 0; i < n; ++i)
        std::copy(r.row(i), r.row(i) + r.cols, w.row(i));
    }
    SensitivitySolveStats stats;
    impl_->resolvent->solve(w, transposed, exec, stats);
    impl_->record(stats);
  });
}

template <class T>
void SensitivityOperator<T>::apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                                        MatrixView<T> y, Execution exec) const {
  const index_t n = impl_->A->rows();
  const index_t k = x.cols;
  Dense<T> w(n, k);
  SensitivitySolveStats stats;
  if (!is_transposed(mode)) {
    impl_->B->apply(Mode::abs, T(1), x, T(0), w.view(), exec);
    impl_->resolvent->solve(w.view(), false, exec, stats);
    impl_->C->apply(Mode::abs, alpha, w.view(), beta, y, exec);
    if (impl_->D)
      impl_->D->apply(Mode::abs, alpha, x, T(1), y, exec);
  } else {
    impl_->C->apply(Mode::abs_transpose, T(1), x, T(0), w.view(), exec);
    impl_->resolvent->solve(w.view(), true, exec, stats);
    impl_->B->apply(Mode::abs_transpose, alpha, w.view(), beta, y, exec);
    if (impl_->D)
      impl_->D->apply(Mode::abs_transpose, alpha, x, T(1), y, exec);
  }
  impl_->record(stats);
}

template <class T> std::vector<T> SensitivityOperator<T>::row(index_t k) const {
  const index_t rows[1] = {k};
  return rows_dense(rows);
}

template <class T>
std::vector<T> SensitivityOperator<T>::rows_dense(std::span<const index_t> rows) const {
  const index_t q = this->rows(), p = this->cols();
  std::vector<index_t> all;
  if (rows.empty()) {
    all.resize(static_cast<std::size_t>(q));
    std::iota(all.begin(), all.end(), index_t(0));
    rows = all;
  }
  const index_t m = static_cast<index_t>(rows.size());
  for (index_t r : rows)
    if (r < 0 || r >= q)
      throw InvalidArgument("sensitivity row " + std::to_string(r) +
                            " out of range (the model has " + std::to_string(q) +
                            " outputs, rows are numbered from 0)");
  Dense<T> E(q, m), Y(p, m);
  for (index_t j = 0; j < m; ++j)
    E.data[static_cast<std::size_t>(rows[j] * m + j)] = T(1);
  this->apply(Mode::transpose, T(1), E.view(), T(0), Y.view(), impl_->options.exec);
  std::vector<T> out(static_cast<std::size_t>(m * p));
  for (index_t i = 0; i < p; ++i)
    for (index_t j = 0; j < m; ++j)
      out[static_cast<std::size_t>(j * p + i)] =
          Y.data[static_cast<std::size_t>(i * m + j)];
  return out;
}

template <class T>
TopEntries SensitivityOperator<T>::top_entries(index_t k, index_t count) const {
  const std::vector<T> r = row(k);
  return tacit::top_entries(std::span<const T>(r), count);
}

template <class T> void SensitivityOperator<T>::update_values(const Model<T> &model) {
  impl_->options.exec.run([&]() {
    if (model.states() != impl_->A->rows() || model.inputs() != this->cols() ||
        model.outputs() != this->rows())
      throw InvalidArgument("update_values: the model's dimensions differ from the "
                            "operator's");
    impl_->resolvent->update(model.A_ptr(), impl_->options, impl_->info);
    impl_->A = model.A_ptr();
    impl_->B = model.B_ptr();
    impl_->C = model.C_ptr();
    impl_->D = model.D_ptr();
  });
}

template <class T>
void SensitivityOperator<T>::row_abs_sums_impl(std::span<T> out) const {
  std::vector<T> ones(static_cast<std::size_t>(this->cols()), T(1));
  this->apply(Mode::normal, T(1), std::span<const T>(ones), T(0), out);
}

template <class T>
void SensitivityOperator<T>::col_abs_sums_impl(std::span<T> out) const {
  std::vector<T> ones(static_cast<std::size_t>(this->rows()), T(1));
  this->apply(Mode::transpose, T(1), std::span<const T>(ones), T(0), out);
}

template <class T> std::int64_t SensitivityOperator<T>::nnz_impl() const {
  return static_cast<std::int64_t>(this->rows()) * this->cols();
}

template <class T> std::size_t SensitivityOperator<T>::bytes_impl() const {
  return impl_->resolvent->bytes();
}

template <class T> CsrMatrix<T> SensitivityOperator<T>::to_csr_impl() const {
  const std::vector<T> all = rows_dense();
  return CsrMatrix<T>::from_dense(this->rows(), this->cols(), all);
}

template class SensitivityOperator<float>;
template class SensitivityOperator<double>;

// ------------------------------------------------------------------ box bounds

template <class T>
BoxBounds<T> box_bounds(const Model<T> &model, const SensitivityOperator<T> &S,
                        std::span<const T> sigma) {
  return S.options().exec.run([&]() -> BoxBounds<T> {
    check_non_expansive(model, "box_bounds");
    const index_t n = model.states(), p = model.inputs();
    if (static_cast<index_t>(sigma.size()) != p)
      throw InvalidArgument("box_bounds: sigma has " + std::to_string(sigma.size()) +
                            " entries, the model has " + std::to_string(p) + " inputs");
    for (std::size_t j = 0; j < sigma.size(); ++j)
      if (!(sigma[j] >= T(0)) || !std::isfinite(sigma[j]))
        throw InvalidArgument("box_bounds: sigma[" + std::to_string(j) +
                              "] = " + format_number(static_cast<double>(sigma[j]), 10) +
                              " is not a finite nonnegative radius");
    if (S.rows() != model.outputs() || S.cols() != p)
      throw InvalidArgument("box_bounds: the sensitivity operator is not the model's");
    BoxBounds<T> out;
    out.state.assign(static_cast<std::size_t>(n), T(0));
    out.output.assign(static_cast<std::size_t>(model.outputs()), T(0));
    model.B().apply(Mode::abs, T(1), sigma, T(0), std::span<T>(out.state));
    const MatrixView<T> w = vector_view(std::span<T>(out.state));
    S.solve_states(w, w, false);
    model.C().apply(Mode::abs, T(1), std::span<const T>(out.state), T(0),
                    std::span<T>(out.output));
    if (model.D())
      model.D()->apply(Mode::abs, T(1), sigma, T(1), std::span<T>(out.output));
    return out;
  });
}

template <class T>
BoxBounds<T> box_bounds(const Model<T> &model, const SensitivityOperator<T> &S, T eps) {
  const std::vector<T> sigma(static_cast<std::size_t>(model.inputs()), eps);
  return box_bounds(model, S, std::span<const T>(sigma));
}

template BoxBounds<float> box_bounds(const Model<float> &,
                                     const SensitivityOperator<float> &,
                                     std::span<const float>);
template BoxBounds<double> box_bounds(const Model<double> &,
                                      const SensitivityOperator<double> &,
                                      std::span<const double>);
template BoxBounds<float> box_bounds(const Model<float> &,
                                     const SensitivityOperator<float> &, float);
template BoxBounds<double> box_bounds(const Model<double> &,
                                      const SensitivityOperator<double> &, double);

// ------------------------------------------------------------------ gradients

template <class T>
void output_gradients(const Model<T> &model, const Batch<T> &U,
                      std::span<const index_t> outputs, Batch<T> &G, Execution exec) {
  const index_t n = model.states(), p = model.inputs(), q = model.outputs();
  if (U.rows() != p)
    throw InvalidArgument("output_gradients: U has " + std::to_string(U.rows()) +
                          " rows, the model has " + std::to_string(p) + " inputs");
  for (index_t k : outputs)
    if (k < 0 || k >= q)
      throw InvalidArgument("output_gradients: output " + std::to_string(k) +
                            " out of range (q = " + std::to_string(q) + ")");
  const index_t m = U.cols(), nq = static_cast<index_t>(outputs.size());
  const index_t K = m * nq;
  if (G.rows() != p || G.cols() != K || G.slab_width() != U.slab_width())
    G = Batch<T>(p, K, U.slab_width());
  if (K == 0)
    return;

  // Equilibria.
  SolveOptions solve_options;
  solve_options.exec = exec;
  EquilibriumSolver<T> solver(model, solve_options);
  Batch<T> X;
  const SolveReport report = solver.solve(U, X);
  if (!report.ok())
    throw NumericalError("output_gradients: the equilibrium solve did not converge (" +
                             to_string(report.status) + ", residual " +
                             format_number(report.residual, 10) + "): " + report.message,
                         report.residual, std::numeric_limits<double>::quiet_NaN(),
                         report.iterations);
  // Column s * |outputs| + j: sample s, output gradient e_{outputs[j]}; the
  // adjoint through the equilibrium (tacit/solve/adjoint.hpp), then
  // grad = B^T v + D^T e_k.
  const index_t W = U.slab_width();
  Batch<T> Xr(n, K, W), Ur(p, K, W), E(q, K, W), V;
  std::vector<T> xs(static_cast<std::size_t>(n)), us(static_cast<std::size_t>(p));
  for (index_t s = 0; s < m; ++s) {
    X.get_column(s, xs);
    U.get_column(s, us);
    for (index_t j = 0; j < nq; ++j) {
      Xr.set_column(s * nq + j, xs);
      Ur.set_column(s * nq + j, us);
      E(outputs[j], s * nq + j) = T(1);
    }
  }
  AdjointSolver<T> adjoint(model);
  const AdjointReport ar = adjoint.solve_outputs(Xr, Ur, E, V);
  if (!ar.ok())
    throw NumericalError("output_gradients: the gradient iteration did not converge (" +
                         to_string(ar.status) + "): " + ar.message);
  input_gradient(model, V, E, G);
}

template void output_gradients(const Model<float> &, const Batch<float> &,
                               std::span<const index_t>, Batch<float> &, Execution);
template void output_gradients(const Model<double> &, const Batch<double> &,
                               std::span<const index_t>, Batch<double> &, Execution);

// ------------------------------------------------------------------ Lipschitz

template <class T>
std::vector<double> local_lipschitz_lower(const Model<T> &model, std::span<const T> centre,
                                          std::span<const T> lower,
                                          std::span<const T> upper, index_t samples,
                                          std::mt19937_64 &rng, Execution exec) {
  const index_t p = model.inputs(), q = model.outputs();
  if (static_cast<index_t>(centre.size()) != p ||
      static_cast<index_t>(lower.size()) != p || static_cast<index_t>(upper.size()) != p)
    throw InvalidArgument("local_lipschitz_lower: the centre and the box have " +
                          std::to_string(centre.size()) + ", " +
                          std::to_string(lower.size()) + " and " +
                          std::to_string(upper.size()) +
                          " entries, the model has p = " + std::to_string(p) + " inputs");
  if (samples < 0)
    throw InvalidArgument("local_lipschitz_lower: negative sample count " +
                          std::to_string(samples));
  // The centre and `samples` points of the box, one batch.
  std::uniform_real_distribution<double> unit(0, 1);
  Batch<T> U(p, samples + 1), G;
  U.set_column(0, centre);
  for (index_t s = 1; s <= samples; ++s)
    for (index_t j = 0; j < p; ++j)
      U(j, s) = static_cast<T>(lower[j] + unit(rng) * (upper[j] - lower[j]));
  std::vector<index_t> outputs(static_cast<std::size_t>(q));
  std::iota(outputs.begin(), outputs.end(), index_t(0));
  output_gradients(model, U, std::span<const index_t>(outputs), G, exec);
  std::vector<double> bound(static_cast<std::size_t>(q), 0.0);
  for (index_t s = 0; s <= samples; ++s)
    for (index_t k = 0; k < q; ++k) {
      double norm = 0;
      for (index_t j = 0; j < p; ++j)
        norm += std::abs(static_cast<double>(G(j, s * q + k)));
      bound[k] = std::max(bound[k], norm);
    }
  return bound;
}

template std::vector<double> local_lipschitz_lower(const Model<float> &,
                                                   std::span<const float>,
                                                   std::span<const float>,
                                                   std::span<const float>, index_t,
                                                   std::mt19937_64 &, Execution);
template std::vector<double> local_lipschitz_lower(const Model<double> &,
                                                   std::span<const double>,
                                                   std::span<const double>,
                                                   std::span<const double>, index_t,
                                                   std::mt19937_64 &, Execution);

template <class T>
LipschitzReport lipschitz_bounds(const Model<T> &model, const SensitivityOperator<T> &S,
                                 const Batch<T> &U) {
  return S.options().exec.run([&]() -> LipschitzReport {
    check_non_expansive(model, "lipschitz_bounds");
    const index_t q = model.outputs(), p = model.inputs();
    LipschitzReport report;
    report.samples = U.cols();
    const std::vector<T> sums = S.row_abs_sums();
    report.upper.assign(sums.begin(), sums.end());
    report.lower.assign(static_cast<std::size_t>(q), 0.0);
    report.argmax.assign(static_cast<std::size_t>(q), -1);
    if (U.cols() == 0 || q == 0)
      return report;
    std::vector<index_t> outs(static_cast<std::size_t>(q));
    std::iota(outs.begin(), outs.end(), index_t(0));
    // Samples in chunks so that the n x (chunk * q) buffers stay moderate.
    const index_t n = model.states();
    const index_t budget =
        std::max<index_t>(1, (index_t(1) << 22) / std::max<index_t>(1, n * q));
    const index_t chunk = std::clamp<index_t>(budget, 1, 64);
    for (index_t s0 = 0; s0 < U.cols(); s0 += chunk) {
      const index_t s1 = std::min(U.cols(), s0 + chunk);
      Batch<T> Uc(p, s1 - s0, U.slab_width());
      std::vector<T> col(static_cast<std::size_t>(p));
      for (index_t s = s0; s < s1; ++s) {
        U.get_column(s, col);
        Uc.set_column(s - s0, col);
      }
      Batch<T> G;
      output_gradients(model, Uc, outs, G, S.options().exec);
      for (index_t s = s0; s < s1; ++s)
        for (index_t k = 0; k < q; ++k) {
          double norm = 0;
          const index_t c = (s - s0) * q + k;
          for (index_t i = 0; i < p; ++i)
            norm += std::abs(static_cast<double>(G(i, c)));
          if (norm > report.lower[k] || report.argmax[k] < 0) {
            report.lower[k] = norm;
            report.argmax[k] = s;
          }
        }
    }
    return report;
  });
}

template LipschitzReport lipschitz_bounds(const Model<float> &,
                                          const SensitivityOperator<float> &,
                                          const Batch<float> &);
template LipschitzReport lipschitz_bounds(const Model<double> &,
                                          const SensitivityOperator<double> &,
                                          const Batch<double> &);

} // namespace tacit::inline v1
