#pragma once
/// \file solve.hpp
/// Equilibrium solvers for x = phi(A x + B u + b), batched.
///
/// Outcomes are reported in a `SolveReport`, never hidden: a solve that did
/// not converge returns status max_iterations / diverged / non_finite with
/// the residual it reached. Results are deterministic: the same bits for 1 or
/// N threads.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <tacit/model.hpp>
#include <tacit/structure.hpp>

namespace tacit {

enum class SolveStatus {
  converged,      ///< stopping rule met for every column
  max_iterations, ///< iteration budget spent before the rule was met
  diverged,       ///< the step grew beyond the divergence threshold
  non_finite,     ///< a NaN or Inf appeared in the iterate
  ill_posed       ///< a block has no unique solution (e.g. ReLU a_ii >= 1)
};
enum class SolveMethod { automatic, picard, sweep };

std::string to_string(SolveStatus s);
std::string to_string(SolveMethod m);
/// "auto", "picard", "sweep". \throws InvalidArgument otherwise.
SolveMethod parse_solve_method(std::string_view s);

struct PicardOptions {
  /// Stop a column when ||x_{t+1} - x_t||_inf <= abs_tol + rel_tol * ||x_{t+1}||_inf.
  double abs_tol = 1e-12;
  double rel_tol = 1e-10;
  int max_iterations = 10000;
  /// Declare divergence when a column's step exceeds this multiple of its
  /// smallest step so far (and the iterate is large).
  double divergence_factor = 1e12;
  /// Anderson acceleration depth (0 = plain Picard).
  int anderson_depth = 0;
  /// Start from X as given instead of from zero.
  bool warm_start = false;
};

struct SolveOptions {
  SolveMethod method = SolveMethod::automatic;
  PicardOptions picard;
  /// Called after each Picard iteration with (iteration, max step) or after
  /// each sweep level with (level, 0); may be empty.
  std::function<void(int, double)> progress;
};

struct SolveReport {
  SolveMethod method = SolveMethod::picard;
  SolveStatus status = SolveStatus::converged;
  /// Picard iterations (for a sweep: the largest count over cyclic blocks,
  /// 0 when A is feed-forward).
  int iterations = 0;
  /// max over columns of ||x - phi(A x + B u + b)||_inf at the returned x.
  double residual = 0;
  /// The same per column.
  std::vector<double> column_residuals;
  /// max over columns of the step inf-norm, per iteration (Picard).
  std::vector<double> step_history;
  /// Human-readable detail (why auto chose a method, which block failed...).
  std::string message;
  bool ok() const noexcept { return status == SolveStatus::converged; }
};

/// A solver prepared for one model: analyses the structure of A once (SCC
/// decomposition, extraction of cyclic blocks) and keeps workspace between
/// calls, so that repeated solves allocate nothing inside iterations.
template <class T> class EquilibriumSolver {
public:
  explicit EquilibriumSolver(const Model<T> &model, SolveOptions options = {});
  ~EquilibriumSolver();
  EquilibriumSolver(EquilibriumSolver &&) noexcept;
  EquilibriumSolver &operator=(EquilibriumSolver &&) noexcept;

  /// The method that will be used (resolved when options.method == automatic).
  SolveMethod method() const noexcept;
  /// Why `method()` was chosen.
  const std::string &method_reason() const noexcept;

  /// States X (n x k) for inputs U (p x k). X is resized if needed.
  SolveReport solve(const Batch<T> &U, Batch<T> &X);
  /// Outputs Y (q x k) for inputs U; X receives the states.
  SolveReport predict(const Batch<T> &U, Batch<T> &X, Batch<T> &Y);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Plain (or Anderson-accelerated) Picard on x = phi(A x + z) with z given per
/// column (z already holds B u + b). `activations` has one entry per state.
template <class T>
SolveReport picard_solve(const LinearOperator<T> &A,
                         std::span<const Activation> activations,
                         const Batch<T> &z, Batch<T> &X,
                         const PicardOptions &options,
                         const std::function<void(int, double)> &progress = {});

/// Residual ||x - phi(A x + z)||_inf per column.
template <class T>
std::vector<double> equilibrium_residuals(const LinearOperator<T> &A,
                                          std::span<const Activation> activations,
                                          const Batch<T> &z, const Batch<T> &X);

} // namespace tacit
