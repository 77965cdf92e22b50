#pragma once
// Helpers shared by the attacks (lib/analysis/attack.cpp) and the LP attack
// (lib/analysis/lp_attack.cpp): single-input evaluation and margin gradients,
// dataset checks, predictions, deterministic random streams.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <tacit/analysis/attack.hpp>
#include <tacit/core/error.hpp>
#include <tacit/solve/adjoint.hpp>
#include <tacit/solve/solve.hpp>

#include "analysis/detail/activation_bounds.hpp"

namespace tacit::inline v1::detail {

/// splitmix64: deterministic per-input random streams.
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline double uniform01(std::uint64_t &state) {
  state = mix(state);
  return double(state >> 11) * 0x1.0p-53;
}

template <class T> int argmax(std::span<const T> y) {
  int best = 0;
  for (std::size_t k = 1; k < y.size(); ++k)
    if (y[k] > y[best])
      best = static_cast<int>(k);
  return best;
}

/// Runner-up class: argmax over k != label.
template <class T> int runner_up(std::span<const T> y, int label) {
  int best = -1;
  for (std::size_t k = 0; k < y.size(); ++k)
    if (static_cast<int>(k) != label && (best < 0 || y[k] > y[best]))
      best = static_cast<int>(k);
  return best;
}

template <class T> T clip(T v, double lo, double hi) {
  if (lo > hi)
    return v;
  return std::min(std::max(v, static_cast<T>(lo)), static_cast<T>(hi));
}

/// Evaluates a model on single inputs and differentiates margins (the
/// adjoint of the equilibrium, tacit/solve/adjoint.hpp).
template <class T> class Evaluator {
public:
  explicit Evaluator(const Model<T> &m)
      : model_(m), solver_(m), adjoint_(m), U_(m.inputs(), 1), G_(m.outputs(), 1) {}

  /// y(u); x receives the states.
  void eval(std::span<const T> u, std::vector<T> &x, std::vector<T> &y) {
    U_.set_column(0, u);
    solver_.predict(U_, X_, Y_);
    x.resize(model_.states());
    y.resize(model_.outputs());
    X_.get_column(0, x);
    Y_.get_column(0, y);
  }

  /// Gradient of g^T y at u, g = e_label - e_other.
  /// \throws NumericalError when the adjoint solve does not converge.
  std::vector<T> gradient(std::span<const T> u, int label, int other, std::vector<T> &y) {
    std::vector<T> x;
    eval(u, x, y);
    G_.set_zero();
    G_(label, 0) += T(1);
    G_(other, 0) -= T(1);
    const AdjointReport r = adjoint_.solve_outputs(X_, U_, G_, V_);
    if (!r.ok())
      throw NumericalError("margin gradient: the adjoint solve did not converge (" +
                            to_string(r.status) + "): " + r.message);
    input_gradient(model_, V_, G_, dU_);
    std::vector<T> grad(static_cast<std::size_t>(model_.inputs()));
    dU_.get_column(0, grad);
    return grad;
  }

  const Model<T> &model() const { return model_; }

private:
  const Model<T> &model_;
  EquilibriumSolver<T> solver_;
  AdjointSolver<T> adjoint_;
  Batch<T> U_, X_, Y_, G_, V_, dU_;
};

template <class T>
void check_dataset(const Model<T> &model, const Batch<T> &U, std::span<const int> labels,
                   const char *what) {
  if (U.rows() != model.inputs())
    throw InvalidArgument(std::string(what) + ": inputs have " +
                          std::to_string(U.rows()) +
                          " rows, the model has p = " + std::to_string(model.inputs()));
  if (static_cast<index_t>(labels.size()) != U.cols())
    throw InvalidArgument(std::string(what) + ": " + std::to_string(labels.size()) +
                          " labels for " + std::to_string(U.cols()) + " inputs");
  for (std::size_t j = 0; j < labels.size(); ++j)
    if (labels[j] < 0 || labels[j] >= model.outputs())
      throw InvalidArgument(std::string(what) + ": label " + std::to_string(labels[j]) +
                            " of input " + std::to_string(j + 1) + " is not in [0, " +
                            std::to_string(model.outputs()) + ")");
}

template <class T>
std::vector<int> predictions(const Model<T> &model, const Batch<T> &U) {
  EquilibriumSolver<T> solver(model);
  Batch<T> X, Y;
  solver.predict(U, X, Y);
  std::vector<int> out(U.cols());
  std::vector<T> y(model.outputs());
  for (index_t j = 0; j < U.cols(); ++j) {
    Y.get_column(j, y);
    out[j] = argmax<T>(y);
  }
  return out;
}

inline double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace tacit::inline v1::detail
