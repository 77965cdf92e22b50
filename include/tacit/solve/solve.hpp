#pragma once
/// \file solve.hpp
/// Equilibrium solvers for x = phi(A x + B u + b), batched.
///
/// Outcomes are reported in a `SolveReport`, never hidden: a solve that did
/// not converge returns status max_iterations / diverged / non_finite with
/// the residual it reached. Results are deterministic: the same bits for 1 or
/// N threads. For a CSR A the value computed for one input column does not
/// depend on the other columns of the batch either (every row sum is formed
/// in the same order whatever the batch width).
///
/// Methods:
/// - Picard: x <- phi(A x + z), z = B u + b, with an optional safeguarded
///   Anderson acceleration. Each column stops on its own rule; a stopped
///   column is no longer updated.
/// - Sweep: the strongly connected components of A taken in dependency order
///   (block lower triangular form). A 1x1 block is solved in closed form
///   (ReLU, leaky ReLU, identity) or by a safeguarded scalar Newton method
///   (tanh, sigmoid); a larger block by Picard on that block only. A
///   feed-forward (nilpotent) A is solved in one pass over its nonzeros.
///   A 1x1 block whose scalar equation has no unique solution (ReLU with
///   a_ii >= 1, ...) makes the solve report ill_posed (its states are NaN).
/// - Automatic: the sweep unless the strongly connected blocks of size > 1
///   hold more than 90% of the states (then A is essentially one cyclic
///   block and plain Picard avoids the sweep's copy of A). The choice and its
///   reason are in method_reason() and at the start of SolveReport::message.
///
/// Residuals are evaluated at the returned x (for the sweep: each row from
/// the same sums that produced it; a row of a feed-forward A has residual 0
/// by construction).

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <tacit/core/model.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

enum class SolveStatus {
  converged,      ///< stopping rule met for every column
  max_iterations, ///< iteration budget spent before the rule was met
  diverged,       ///< the step grew beyond the divergence threshold
  non_finite,     ///< a NaN or Inf appeared in the iterate
  ill_posed       ///< a block has no unique solution (e.g. ReLU a_ii >= 1)
};
enum class SolveMethod { automatic, picard, sweep };

TACIT_EXPORT std::string to_string(SolveStatus s);
TACIT_EXPORT std::string to_string(SolveMethod m);
/// "auto", "picard", "sweep". \throws InvalidArgument otherwise.
TACIT_EXPORT SolveMethod parse_solve_method(std::string_view s);

struct TACIT_EXPORT PicardOptions {
  /// Stop a column when ||x_{t+1} - x_t||_inf <= abs_tol + rel_tol * ||x_{t+1}||_inf
  /// (with Anderson: ||g(x_t) - x_t||_inf, the same quantity for a Picard
  /// step). rel_tol is raised to at least 16 machine epsilons of the value
  /// type (float: 1.9e-6, double: 3.6e-15): a smaller step is rounding noise
  /// of one evaluation and could never be required.
  double abs_tol = 1e-12;
  double rel_tol = 1e-10;
  int max_iterations = 10000;
  /// Declare divergence when a column's step exceeds this multiple of its
  /// smallest step so far (and of abs_tol).
  double divergence_factor = 1e12;
  /// Anderson acceleration depth (0 = plain Picard, at most 64). A mixed step
  /// is kept only if it does not increase the residual ||g(x) - x||_inf;
  /// otherwise the solver falls back to the Picard step from the previous
  /// iterate and restarts its history.
  int anderson_depth = 0;
  /// Start from X as given instead of from zero (ignored when X does not
  /// have the shape of the result). For a sweep it seeds the cyclic blocks.
  bool warm_start = false;
};

struct TACIT_EXPORT SolveOptions {
  SolveMethod method = SolveMethod::automatic;
  PicardOptions picard;
  /// Called after each Picard iteration with (iteration, max step) or, for a
  /// sweep, after each group of levels with (last level done, 0); may be
  /// empty. Called from the thread that called solve().
  std::function<void(int, double)> progress;
  /// Where the solver's work runs: the construction (the analysis of A) and
  /// every solve run in this policy's arena (Execution::threads(4): at most
  /// 4 threads). The results do not depend on it.
  Execution exec = Execution::parallel;
};

/// Options whose stopping tolerances are reachable in T: double keeps the
/// defaults above (rel_tol 1e-10, abs_tol 1e-12); float, which cannot
/// resolve steps of 1e-10 relative, stops at rel_tol 1e-5 and abs_tol 1e-7
/// (about 100 ulp) instead of iterating to the budget.
template <class T> SolveOptions default_solve_options() {
  SolveOptions options;
  if constexpr (std::is_same_v<T, float>) {
    options.picard.rel_tol = 1e-5;
    options.picard.abs_tol = 1e-7;
  }
  return options;
}

struct TACIT_EXPORT SolveReport {
  SolveMethod method = SolveMethod::picard;
  SolveStatus status = SolveStatus::converged;
  /// Picard iterations (for a sweep: the largest count over cyclic blocks,
  /// 0 when A is feed-forward).
  int iterations = 0;
  /// max over columns of ||x - phi(A x + B u + b)||_inf at the returned x,
  /// evaluated there (+inf for a column holding NaN or Inf).
  double residual = 0;
  /// The same per column.
  std::vector<double> column_residuals;
  /// Status of each column (`status` is the worst of them, in enum order).
  std::vector<SolveStatus> column_status;
  /// Iterations spent on each column (Picard; sweep: largest over blocks).
  std::vector<int> column_iterations;
  /// max over columns of the step inf-norm, per iteration (Picard).
  std::vector<double> step_history;
  /// Human-readable detail (why auto chose a method, which block failed...).
  std::string message;
  bool ok() const noexcept { return status == SolveStatus::converged; }
};

/// A solver prepared for one model: analyses the structure of A once (SCC
/// decomposition, extraction of cyclic blocks) and keeps workspace between
/// calls, so that repeated solves allocate nothing inside iterations.
///
/// Memory: the sweep keeps a copy of A in sweep order (about the size of A);
/// a solve holds Z = B U + b and the iterates (a few n x k buffers), plus
/// 2 * anderson_depth + 3 of them with Anderson acceleration. A network's
/// outputs-only predict(U, Y) holds only the blocks still to be read (for
/// ResNet20, 3 of its 19 blocks per column: 49 k of 188 k states), for one
/// slab of columns per thread (a slab's rows are reused by a later slab
/// once its outputs are formed), not for the whole batch.
///
/// Thread safety: one solver must not be used from several threads at once
/// (solve() and predict() use its workspace); method() and method_reason()
/// may be called concurrently. Distinct solvers, also of one model, are
/// independent. A solver parallelises each solve itself, in the arena of
/// its options' Execution.
template <class T> class TACIT_EXPORT EquilibriumSolver {
public:
  explicit EquilibriumSolver(const Model<T> &model, SolveOptions options = {});
  ~EquilibriumSolver();
  EquilibriumSolver(EquilibriumSolver &&) noexcept;
  EquilibriumSolver &operator=(EquilibriumSolver &&) noexcept;

  /// Prepares the solver again for `model`, typically the same model after
  /// its parameters changed in place (a training step), with the same
  /// options. The analysis is redone; the workspace (n x k buffers, slab
  /// pools) is kept, so that a step touches no new memory.
  /// \throws InvalidArgument when `model` has other numbers of states,
  /// inputs or outputs than the solver's.
  void rebuild(const Model<T> &model);

  /// The method that will be used (resolved when options.method == automatic).
  SolveMethod method() const noexcept;
  /// Why `method()` was chosen.
  const std::string &method_reason() const noexcept;

  /// States X (n x k) for inputs U (p x k). X is resized if needed (to U's
  /// slab width). \throws InvalidArgument when U does not have p rows.
  SolveReport solve(const Batch<T> &U, Batch<T> &X);
  /// Outputs Y (q x k) for inputs U; X receives the states.
  SolveReport predict(const Batch<T> &U, Batch<T> &X, Batch<T> &Y);
  /// Outputs Y (q x k) for inputs U, the states not kept: the same bits as
  /// the overload above. A network (block lower triangular A, C over A's
  /// blocks) is swept with a block's memory reused once the blocks that read
  /// it are computed (a few blocks' worth instead of n states per column,
  /// for one slab per thread); other models keep their states in the
  /// solver's workspace.
  SolveReport predict(const Batch<T> &U, Batch<T> &Y);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Plain (or Anderson-accelerated) Picard on x = phi(A x + z) with z given per
/// column (z already holds B u + b). `activations` has one entry per state.
/// X is resized to z's shape if needed. Allocates its workspace per call;
/// use EquilibriumSolver for repeated solves.
template <class T>
TACIT_EXPORT SolveReport picard_solve(const LinearOperator<T> &A,
                         std::span<const Activation> activations, const Batch<T> &z,
                         Batch<T> &X, const PicardOptions &options,
                         const std::function<void(int, double)> &progress = {},
                         Execution exec = Execution::parallel);

/// Residual ||x - phi(A x + z)||_inf per column (+inf where non-finite).
template <class T>
TACIT_EXPORT std::vector<double> equilibrium_residuals(const LinearOperator<T> &A,
                                          std::span<const Activation> activations,
                                          const Batch<T> &z, const Batch<T> &X,
                                          Execution exec = Execution::parallel);

} // namespace tacit::inline v1
