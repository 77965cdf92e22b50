#pragma once
/// \file sensitivity.hpp
/// Robustness analysis through the sensitivity matrix
///
///     S = |C| (I - |A|)^-1 |B| + |D|      (q x p, entrywise >= 0).
///
/// When lambda_PF(|A|) < 1 and every activation is componentwise
/// non-expansive, |y(u) - y(u0)| <= S |u - u0| and
/// |x(u) - x(u0)| <= (I - |A|)^-1 |B| |u - u0| componentwise, for all inputs.
///
/// S is an operator: its products S v and S^T w are formed by one solve with
/// I - |A| (resp. its transpose) and never by forming the inverse. The solve
/// is done by one of three back-ends, chosen automatically (and reported):
///
/// - sweep: A block triangular with scalar or structured blocks. For a CSR A
///   whose strongly connected components are all single states with
///   |a_ii| < 1 (a feed-forward network, possibly with self-loops), forward
///   substitution in the SCC order (level by level, rows of a level in
///   parallel) and backward substitution with |A|^T for S^T. For a structured
///   BlockOperator A that is block lower triangular, the same block by block
///   with the |op| / |op|^T products of the blocks (diagonal blocks, if any,
///   are solved by a nested back-end). Exact (up to rounding).
/// - klu: a sparse LU factorisation (SuiteSparse KLU) of I - |A|, computed
///   once; S v uses the solve, S^T w the transposed solve, many right-hand
///   sides at a time. Exact (up to rounding). Needs A as CSR.
/// - iterative: w <- |A| w + r, matrix-free (only |A| products), batched.
///   From the certified Perron analysis a vector v > 0 with
///   |A| v <= theta v, theta < 1, is built (and theta measured); then
///   |A| is a contraction of ratio theta in the norm max_i |x_i| / v_i and
///   |A|^T in the norm sum_i v_i |x_i|, which gives the a-posteriori bound
///   ||w* - w_{t+1}|| <= theta / (1 - theta) ||w_{t+1} - w_t|| used to stop;
///   the bound reached is reported (relative to ||w||).
///
/// S is only defined (entrywise nonnegative, finite) when lambda_PF(|A|) < 1:
/// the constructor refuses a model for which that is not certified.
///
/// All solves are deterministic: the same bits for 1 or N threads.

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

enum class SensitivityMethod { automatic, sweep, klu, iterative };

/// "auto", "sweep", "klu", "iterative".
TACIT_EXPORT std::string to_string(SensitivityMethod m);
/// Inverse of to_string. \throws InvalidArgument for another name.
TACIT_EXPORT SensitivityMethod parse_sensitivity_method(std::string_view name);

struct TACIT_EXPORT SensitivityOptions {
  SensitivityMethod method = SensitivityMethod::automatic;
  /// Iterative back-end: stop once the certified a-posteriori bound on the
  /// error of every column is at most rel_tol times that column's norm
  /// (raised to at least 16 eps / (1 - theta), eps the machine epsilon of the
  /// value type: the rounding floor of the step). A solve that stagnates at
  /// the rounding floor stops early and reports the bound reached.
  double rel_tol = 1e-14;
  /// Iterative back-end: iteration budget per solve.
  int max_iterations = 100000;
  /// Automatic choice: KLU is used when its LU factors have at most this many
  /// entries (lnz + unz) per nonzero of A (else the iterative back-end).
  double klu_fill_limit = 20;
  /// Options of the Perron-Frobenius certification (when one is needed).
  /// (The interval is tightened to rel_width 1e-3 by default: the iterative
  /// back-end's stopping bound is only as good as the certificate.)
  PerronOptions perron = [] {
    PerronOptions o;
    o.rel_width = 1e-3;
    return o;
  }();
  /// Where the work runs: the construction (analysis, factorisation) and
  /// every product and solve of the operator run in this policy's arena.
  Execution exec = Execution::parallel;
};

/// What the constructor found and chose.
struct TACIT_EXPORT SensitivityInfo {
  SensitivityMethod method = SensitivityMethod::sweep;
  /// Why the method was chosen (structure, certificate, fill).
  std::string reason;
  /// Certified enclosure of lambda_PF(|A|) (for the sweep: exact, the
  /// largest |a_ii|, or 0 for a strictly block lower triangular A).
  double lambda_lower = 0, lambda_upper = 0;
  /// Iterative back-end: the contraction ratio theta of |A| measured on the
  /// certificate vector (theta < 1).
  double theta = 0;
  /// KLU: entries of the LU factors.
  std::int64_t factor_entries = 0;
  /// Whether the back-end is exact up to rounding (sweep, KLU) rather than
  /// stopped by a tolerance (iterative). (Several operators at one block
  /// position of a structured A are summed before taking |.|, so the block
  /// sweep stays exact.)
  bool exact = true;
};

/// Statistics of the last solve with the iterative back-end.
struct TACIT_EXPORT SensitivitySolveStats {
  int iterations = 0;
  /// Certified bound on ||w - w*|| / ||w|| of the state solve (worst column;
  /// weighted max norm for S, weighted 1-norm for S^T); 0 for exact methods.
  double error_bound = 0;
  bool converged = true;
};

/// The largest entries of one row of S.
struct TACIT_EXPORT TopEntries {
  std::vector<index_t> indices; ///< input indices, by decreasing value
  std::vector<double> values;
};

/// The `count` largest entries of `values` (all when count exceeds the
/// size), by decreasing value, ties by increasing index: the one top-k
/// selection of tacit (the rows of S, the command's reports).
template <class T>
TACIT_EXPORT TopEntries top_entries(std::span<const T> values, index_t count);

/// S = |C| (I - |A|)^-1 |B| + |D| as a q x p operator. Modes abs and
/// abs_transpose are the same as normal and transpose (S >= 0).
/// The operator keeps shared ownership of the model's operators.
/// Thread safety: products, rows, solve_states and the other const members
/// may be called from several threads at once (last_solve() then reports one
/// of them); update_values() must not run concurrently with any other call.
template <class T> class TACIT_EXPORT SensitivityOperator final : public LinearOperator<T> {
public:
  /// Analyses A and prepares the back-end.
  /// \throws NumericalError when lambda_PF(|A|) < 1 is not certified, a
  /// factorisation fails, or the requested sweep does not apply to A (a
  /// cyclic component, or |a_ii| >= 1): the message and the exception give
  /// the numbers.
  explicit SensitivityOperator(const Model<T> &model, SensitivityOptions options = {});
  ~SensitivityOperator() override;
  SensitivityOperator(SensitivityOperator &&) noexcept;

  const SensitivityInfo &info() const noexcept;
  /// The options it was made with.
  const SensitivityOptions &options() const noexcept;
  SensitivityMethod method() const noexcept { return info().method; }
  const std::string &method_reason() const noexcept { return info().reason; }
  /// Statistics of the last product (iterative back-end).
  SensitivitySolveStats last_solve() const;

  /// w = (I - |A|)^-1 r (or (I - |A|)^-T r when `transposed`), n x k views.
  /// r and w may be the same view (in place); otherwise they must not overlap.
  void solve_states(ConstMatrixView<T> r, MatrixView<T> w, bool transposed,
                    Execution exec = Execution::parallel) const;

  /// Row k of S (= S^T e_k, one transposed solve), size p.
  std::vector<T> row(index_t k) const;
  /// The given rows of S as a row-major |rows| x p array (one batched
  /// transposed solve); all q rows when `rows` is empty.
  std::vector<T> rows_dense(std::span<const index_t> rows = {}) const;
  /// The `count` largest entries of row k (ties by lower index).
  TopEntries top_entries(index_t k, index_t count) const;

  /// Replaces A's values (same sparsity pattern) and refreshes the
  /// back-end: KLU refactors numerically (klu_refactor) keeping its
  /// symbolic analysis; the others re-read the values. B, C, D are taken
  /// from `model` too. \throws InvalidArgument when the dimensions or the
  /// pattern of A differ. \throws NumericalError when the new A is not
  /// certified or cannot be factored.
  void update_values(const Model<T> &model);

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  /// S is treated as dense: rows() * cols().
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override;
  std::string kind_impl() const override { return "sensitivity"; }
  /// All q rows (one batched transposed solve); zeros dropped.
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override { return std::nullopt; }

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Componentwise bounds for inputs in the box |u - u0| <= sigma.
template <class T> struct TACIT_EXPORT BoxBounds {
  std::vector<T> output; ///< S sigma >= |y(u) - y(u0)|   (size q)
  std::vector<T> state;  ///< (I - |A|)^-1 |B| sigma >= |x(u) - x(u0)|  (size n)
};

/// Global componentwise bounds for the box of radii `sigma` (size p, >= 0).
/// Valid for every u0 when the model's activations are non-expansive.
/// \throws Unsupported when an activation has a Lipschitz constant > 1
/// (naming the block); InvalidArgument for a negative or NaN radius.
template <class T>
TACIT_EXPORT BoxBounds<T> box_bounds(const Model<T> &model, const SensitivityOperator<T> &S,
                        std::span<const T> sigma);
/// The same for the scalar radius eps (sigma = eps 1).
template <class T>
TACIT_EXPORT BoxBounds<T> box_bounds(const Model<T> &model, const SensitivityOperator<T> &S, T eps);

/// Gradients of outputs at inputs, through the equilibrium: with x = x(u),
/// z = A x + B u + b and P = diag(phi'(z)),
///     grad y_k(u) = D^T e_k + B^T P h,   h = (I - A^T P)^-1 C^T e_k
/// (h solved by a backward sweep when A is block triangular as for the
/// sweep back-end, else by the iteration h <- P (A^T h + C^T e_k), which
/// contracts since |P A^T| <= |A|^T). ReLU uses phi'(0) = 0.
/// G receives p x (m * |outputs|) columns: column s * |outputs| + j is the
/// gradient of output outputs[j] at sample s.
/// \throws NumericalError when the equilibrium solve or the gradient
/// iteration does not converge (with the residual or error bound).
template <class T>
TACIT_EXPORT void output_gradients(const Model<T> &model, const Batch<T> &U,
                      std::span<const index_t> outputs, Batch<T> &G,
                      Execution exec = Execution::parallel);

/// Lower bounds on the local l_inf -> l_inf Lipschitz constants of the
/// outputs over the box [lower, upper] (which holds `centre`): the largest
/// ||grad y_k(u)||_1 over the centre and `samples` points drawn uniformly in
/// the box, coordinate by coordinate, from `rng` (the generator advances,
/// so successive boxes continue its sequence). A lower bound on the
/// constant of the box for any activations, since the gradient is a local
/// slope; the upper bound is BoundAnalyzer::local_lipschitz.
/// \throws InvalidArgument on sizes that do not match the model.
/// \throws NumericalError as output_gradients does.
template <class T>
TACIT_EXPORT std::vector<double>
local_lipschitz_lower(const Model<T> &model, std::span<const T> centre,
                      std::span<const T> lower, std::span<const T> upper, index_t samples,
                      std::mt19937_64 &rng, Execution exec = Execution::parallel);

/// Per-output bounds on the l_inf -> l_inf Lipschitz constant of y_k(u).
struct TACIT_EXPORT LipschitzReport {
  /// (S 1)_k: |y_k(u) - y_k(u')| <= upper_k ||u - u'||_inf for all u, u'.
  std::vector<double> upper;
  /// max over the samples of ||grad y_k(u)||_1 (a lower bound on the
  /// constant, attained near the best sample).
  std::vector<double> lower;
  /// Sample index attaining `lower` (per output).
  std::vector<index_t> argmax;
  index_t samples = 0;
};

/// Upper bounds from S, lower bounds from the gradients at the columns of U.
/// \throws Unsupported when an activation has a Lipschitz constant > 1.
template <class T>
TACIT_EXPORT LipschitzReport lipschitz_bounds(const Model<T> &model, const SensitivityOperator<T> &S,
                                 const Batch<T> &U);

} // namespace tacit::inline v1
