#pragma once
/// \file attack.hpp
/// Adversarial attacks on implicit models:
///
/// - sparse top-k attack (lecture 000): pick one row of the sensitivity matrix
///   S = |C| (I - |A|)^-1 |B| + |D| (the true class's row, or the row with the
///   most mass), take its k largest entries and change those inputs by
///   +-magnitude (clipped to the domain), with random signs or with the signs
///   that decrease the margin to the runner-up class to first order (the
///   gradient through the equilibrium, by a transposed solve);
/// - LP attack (lecture 000): maximise the output gap of a target class over
///   a linear relaxation of the equilibrium (x >= lower envelope, x <= upper
///   envelope of phi on the interval pre-activation bounds, which for ReLU
///   contains x >= A x + B u + b, x >= 0), with |u - u0| <= sigma and the
///   budget ||(u - u0) / sigma||_1 <= k, solved by COIN-OR CLP; the LP's
///   input is then run through the true model;
/// - l_inf PGD: projected signed-gradient descent on the margin
///   min_k (y_label - y_k), with random restarts.
///
/// An attack succeeds on an input when the model's prediction differs from
/// the label; inputs misclassified already count as broken (accuracy under
/// attack <= clean accuracy).
///
/// Thread safety: the attacks are reentrant; each runs its work in the arena of
/// its options' Execution and gives the same results for any thread count.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/analysis/bounds.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

/// Gradient of the margin y_label - y_other at u (size p), through the
/// equilibrium: v = C^T g + A^T P v, P = diag(phi'(z)), grad = B^T P v + D^T g.
/// Also returns the outputs y(u) in `y` when non-null.
/// \throws NumericalError when the adjoint iteration does not converge.
template <class T>
TACIT_EXPORT std::vector<T> margin_gradient(const Model<T> &model, std::span<const T> u, int label,
                               int other, std::vector<T> *y = nullptr,
                               Execution exec = Execution::parallel);

enum class SignMethod { random, gradient };
/// "random", "gradient". \throws InvalidArgument otherwise.
TACIT_EXPORT SignMethod parse_sign_method(std::string_view s);
TACIT_EXPORT std::string to_string(SignMethod m);

struct TACIT_EXPORT TopKOptions {
  std::vector<index_t> k = {1, 2, 5, 10};
  SignMethod signs = SignMethod::random;
  /// Use the row of S with the largest sum for every input instead of the
  /// row of the true class.
  bool max_mass_row = false;
  double magnitude = 1.0;
  double domain_lo = 0, domain_hi = 1; ///< clipping (none when lo > hi)
  std::uint64_t seed = 1;
  /// Where the work runs (the results do not depend on it).
  Execution exec = Execution::parallel;
};

struct TACIT_EXPORT AttackSummary {
  index_t count = 0;
  index_t clean_correct = 0;
  std::vector<double> budgets;      ///< k (top-k, LP) or eps (PGD)
  std::vector<index_t> correct;     ///< accuracy numerator under attack, per budget
  std::vector<double> mean_changed; ///< mean number of inputs changed (attacked inputs)
  double seconds = 0;
};

/// The top-k attack on every column of U.
template <class T>
TACIT_EXPORT AttackSummary topk_attack(const Model<T> &model, const Batch<T> &U,
                          std::span<const int> labels, const TopKOptions &options,
                          const std::function<void(index_t, index_t)> &progress = {});

struct TACIT_EXPORT LpAttackOptions {
  std::vector<double> k = {1, 2, 5, 10}; ///< l1 budgets in units of sigma
  double sigma = 0.1;                    ///< per-input bound |u - u0| <= sigma
  int targets = 1;                       ///< classes tried, by nominal output order
  double domain_lo = 0, domain_hi = 1;   ///< clipping (none when lo > hi)
  /// Where the work runs (the results do not depend on it).
  Execution exec = Execution::parallel;
};

/// The LP attack on every column of U (CLP, inputs in parallel).
template <class T>
TACIT_EXPORT AttackSummary lp_attack(const BoundAnalyzer<T> &analyzer, const Batch<T> &U,
                        std::span<const int> labels, const LpAttackOptions &options,
                        const std::function<void(index_t, index_t)> &progress = {});

struct TACIT_EXPORT PgdOptions {
  double eps = 0.01;
  int steps = 40;
  int restarts = 2;     ///< random starts after the one from u0
  double step_size = 0; ///< <= 0: 2.5 eps / steps
  double domain_lo = 0, domain_hi = 1;
  std::uint64_t seed = 1;
  /// Where the work runs (the results do not depend on it).
  Execution exec = Execution::parallel;
};

/// Result of PGD on one input.
template <class T> struct TACIT_EXPORT PgdResult {
  bool success = false; ///< prediction differs from the label
  double margin = 0;    ///< smallest margin min_k (y_label - y_k) found
  std::vector<T> u;     ///< the input attaining it
};

/// l_inf PGD on one input.
template <class T>
TACIT_EXPORT PgdResult<T> pgd_attack(const Model<T> &model, std::span<const T> u0, int label,
                        const PgdOptions &options);

} // namespace tacit::inline v1
