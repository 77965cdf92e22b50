#pragma once
/// \file wellposed.hpp
/// Well-posedness: norms, a certified interval for lambda_PF(|A|), diagonal
/// rescaling to ||D A D^-1||_inf < 1, and the exact Euclidean projection onto
/// {||A||_inf <= kappa}.
///
/// Thread safety: the functions are reentrant and only read their operator or
/// model (project_inf_norm changes its matrix: no other call may use it then);
/// each runs its work in the arena of its options' Execution.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <tacit/core/model.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

struct TACIT_EXPORT PerronOptions {
  /// Stop a block when (upper - lower) <= rel_width * upper (or upper == lower).
  double rel_width = 1e-9;
  /// Budget of products with |A_BB| per cyclic block (power iterations and
  /// shift-invert steps together).
  int max_iterations = 200000;
  /// Stop early once the whole interval is known to lie below or above 1
  /// (enough to decide well-posedness) instead of tightening further.
  bool stop_when_decided = false;
  /// When power iteration on a block converges slowly (poorly mixing or
  /// nearly periodic blocks), try a few steps of shift-invert (Noda)
  /// iteration with a sparse LU factorisation, provided its fill stays
  /// moderate. The candidate vectors only tighten the bounds; certification
  /// never depends on them.
  bool shift_invert = true;
  /// Parallel (TBB) products and reductions, or serial reference kernels.
  /// Either way the bounds are deterministic (same bits for any thread count).
  Execution exec = Execution::parallel;
};

enum class PerronStatus {
  tight,            ///< every block met rel_width
  budget_exhausted, ///< some block spent max_iterations; interval still valid
  decided,          ///< stopped early, interval is on one side of 1
  stalled           ///< some block stopped improving before rel_width (rounding
                    ///< floor, or a Perron vector beyond the range of double);
                    ///< interval still valid
};

/// "tight", "budget_exhausted", "decided", "stalled".
TACIT_EXPORT std::string to_string(PerronStatus s);

/// Certified enclosure lower <= lambda_PF(|A|) <= upper. The bounds are
/// Collatz-Wielandt bounds from positive vectors, computed with outward
/// rounding-error allowance, maximised over the diagonal blocks of the SCC
/// decomposition (a 1x1 block contributes |a_ii| exactly).
struct TACIT_EXPORT PerronBound {
  double lower = 0;
  double upper = 0;
  PerronStatus status = PerronStatus::tight;
  int iterations = 0;         ///< products with |A_BB|, summed over blocks
  int shift_invert_steps = 0; ///< of which shift-invert (Noda) steps
  index_t blocks = 0;         ///< SCC count
  index_t largest_block = 0;
  index_t cyclic_blocks = 0; ///< blocks of size > 1 (iterated)
  /// Some component of an iterate underflowed to 0, so that step's upper
  /// bound was +inf (the best bound of the other steps is kept).
  bool underflow = false;
  std::string message;
  /// upper < 1: the model is certified well-posed for any componentwise
  /// non-expansive activation.
  bool certified() const noexcept { return upper < 1.0; }
};

template <class T>
TACIT_EXPORT PerronBound perron_frobenius_bound(const CsrMatrix<T> &A,
                                   const PerronOptions &options = {});
/// The same reusing an SCC decomposition already computed.
template <class T>
TACIT_EXPORT PerronBound perron_frobenius_bound(const CsrMatrix<T> &A, const SccDecomposition &scc,
                                   const PerronOptions &options = {});

/// Summary used by `tacit wellposed`. A block lower triangular
/// BlockOperator (a network from NetworkBuilder) is analysed from its
/// structure: lambda_PF(|A|) = 0 exactly when it is strictly block lower
/// triangular (nothing is materialised), otherwise the maximum over its
/// diagonal blocks (each converted to CSR and bounded as below); norms from
/// the operator's absolute row and column sums. Any other operator that is
/// not a CSR matrix is materialised once (to_csr()).
struct TACIT_EXPORT WellPosednessReport {
  index_t n = 0;
  std::int64_t nnz = 0;
  double norm_inf = 0;
  double norm_1 = 0;
  PerronBound pf;
  index_t scc_count = 0;
  index_t scc_largest = 0;
  bool nilpotent = false;
};
template <class T>
TACIT_EXPORT WellPosednessReport analyse_well_posedness(const LinearOperator<T> &A,
                                           const PerronOptions &options = {});

/// Result of a rescaling: the scaling (x' = scaling .* x) and the new norm.
struct TACIT_EXPORT RescaleReport {
  double target = 0;           ///< bound aimed at (given or the midpoint)
  double norm_before = 0;      ///< ||A||_inf
  double norm_after = 0;       ///< ||D A D^-1||_inf (measured on the new A)
  int iterations = 0;          ///< products with |A_BB| spent by the PF analysis
  PerronBound pf;              ///< the certificate the scaling is built on
  std::vector<double> scaling; ///< diagonal of D (size n, positive)
};

/// An equivalent model x' = D x with ||D A D^-1||_inf <= target < 1: with
/// v > 0 such that |A| v <= target * v, D = diag(v)^-1 and
/// A' = D A D^-1, B' = D B, C' = C D^-1, b' = D b (D and c unchanged; the
/// new A, B, C are CSR). v is built block by block in the SCC order from the
/// certified Perron vector of each cyclic block, scaled up just enough to
/// absorb what flows in from earlier blocks, so it works however close
/// lambda_PF(|A|) is to 1. Predictions are unchanged because phi is
/// positively homogeneous: d phi(z) = phi(d z) for d > 0.
/// `target` <= 0 picks the midpoint between the certified lambda_PF upper
/// bound and 1; otherwise it must satisfy upper < target < 1.
/// \throws Unsupported when an activation is not positively homogeneous
/// (naming the block).
/// \throws NumericalError when lambda_PF(|A|) < 1 is not certified, when a
/// target in (0, 1) is not above the certified upper bound, or when the
/// scaling leaves the range of the value type (the numbers are in the
/// message and the exception).
/// \throws InvalidArgument for a target >= 1.
template <class T>
TACIT_EXPORT Model<T> rescale_model(const Model<T> &model, double target = 0,
                       RescaleReport *report = nullptr,
                       const PerronOptions &options = {});

/// Euclidean projection of v onto {w : ||w||_1 <= radius} (in place):
/// w_i = sign(v_i) max(|v_i| - theta, 0) with theta >= 0 the smallest level
/// giving ||w||_1 <= radius, computed in double (Michelot's method for up to
/// 64 entries, Condat's expected O(k) algorithm beyond). Should rounding
/// leave the computed ||w||_1 above radius, theta is raised by the excess,
/// so the result is feasible as computed and projecting again is a no-op.
/// Unchanged when ||v||_1 <= radius. Returns whether v changed.
/// \throws InvalidArgument when radius is negative or NaN.
template <class T> TACIT_EXPORT bool project_l1_ball(std::span<T> v, T radius);

/// Exact Euclidean (Frobenius) projection of A onto {||A||_inf <= kappa}:
/// each row projected onto the l1 ball of radius kappa, sparsity pattern
/// kept (zeros stay zero, which is exact: the projection never makes a zero
/// entry nonzero), parallel over rows. Each row is computed the same way
/// whatever the thread count, so the result is bitwise identical to
/// Execution::reference. Returns the number of rows changed.
/// \throws InvalidArgument when kappa is negative or NaN.
template <class T>
TACIT_EXPORT index_t project_inf_norm(CsrMatrix<T> &A, T kappa, Execution exec = Execution::parallel);

/// What a projection did.
struct TACIT_EXPORT ProjectionReport {
  index_t rows_changed = 0;
  double norm_before = 0, norm_after = 0; ///< ||A||_inf
  double distance = 0;                    ///< Frobenius distance moved
};

/// project_inf_norm on a copy of A, with a report.
/// \throws InvalidArgument as project_inf_norm does.
template <class T>
TACIT_EXPORT CsrMatrix<T> project_matrix(const CsrMatrix<T> &A, T kappa,
                                         ProjectionReport *report = nullptr,
                                         Execution exec = Execution::parallel);

/// The model with A projected onto ||A||_inf <= kappa (A as CSR; B, C, D,
/// the biases and the blocks shared or copied unchanged): kappa < 1 makes it
/// well-posed.
template <class T>
TACIT_EXPORT Model<T> project_model(const Model<T> &model, T kappa,
                                    ProjectionReport *report = nullptr,
                                    Execution exec = Execution::parallel);

} // namespace tacit::inline v1
