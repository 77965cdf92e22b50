#pragma once
/// \file wellposed.hpp
/// Well-posedness: norms, a certified interval for lambda_PF(|A|), diagonal
/// rescaling to ||D A D^-1||_inf < 1, and the exact Euclidean projection onto
/// {||A||_inf <= kappa}.

#include <span>
#include <string>

#include <tacit/model.hpp>
#include <tacit/structure.hpp>

namespace tacit {

struct PerronOptions {
  /// Stop a block when (upper - lower) <= rel_width * upper (or upper == lower).
  double rel_width = 1e-9;
  /// Power-iteration budget per nontrivial block.
  int max_iterations = 200000;
  /// Stop early once the whole interval is known to lie below or above 1
  /// (enough to decide well-posedness) instead of tightening further.
  bool stop_when_decided = false;
};

enum class PerronStatus {
  tight,           ///< every block met rel_width
  budget_exhausted,///< some block spent max_iterations; interval still valid
  decided          ///< stopped early, interval is on one side of 1
};

/// Certified enclosure lower <= lambda_PF(|A|) <= upper. The bounds are
/// Collatz-Wielandt bounds from positive vectors, computed with outward
/// rounding-error allowance, maximised over the diagonal blocks of the SCC
/// decomposition (a 1x1 block contributes |a_ii| exactly).
struct PerronBound {
  double lower = 0;
  double upper = 0;
  PerronStatus status = PerronStatus::tight;
  int iterations = 0;       ///< power iterations, summed over blocks
  index_t blocks = 0;       ///< SCC count
  index_t largest_block = 0;
  index_t cyclic_blocks = 0;///< blocks of size > 1 (iterated)
  std::string message;
  /// upper < 1: the model is certified well-posed for any componentwise
  /// non-expansive activation.
  bool certified() const noexcept { return upper < 1.0; }
};

template <class T>
PerronBound perron_frobenius_bound(const CsrMatrix<T> &A,
                                   const PerronOptions &options = {});
/// The same reusing an SCC decomposition already computed.
template <class T>
PerronBound perron_frobenius_bound(const CsrMatrix<T> &A,
                                   const SccDecomposition &scc,
                                   const PerronOptions &options = {});

/// Summary used by `tacit wellposed`.
struct WellPosednessReport {
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
WellPosednessReport analyse_well_posedness(const LinearOperator<T> &A,
                                           const PerronOptions &options = {});

/// Result of a rescaling: the scaling d (x' = d .* x) and the new norm.
struct RescaleReport {
  double target = 0;      ///< requested bound on ||D A D^-1||_inf
  double norm_before = 0; ///< ||A||_inf
  double norm_after = 0;  ///< ||D A D^-1||_inf (measured)
  int iterations = 0;
};

/// An equivalent model x' = D x with ||D A D^-1||_inf <= target < 1, where D
/// comes from a positive vector v with |A| v <= target * v (a Perron-like
/// vector). `target` <= 0 picks the midpoint between the certified
/// lambda_PF upper bound and 1.
/// \throws Unsupported when an activation is not positively homogeneous, or
/// when lambda_PF(|A|) < 1 is not certified (message has the numbers).
template <class T>
Model<T> rescale_model(const Model<T> &model, double target = 0,
                       RescaleReport *report = nullptr);

/// Euclidean projection of v onto {w : ||w||_1 <= radius} (in place).
template <class T> void project_l1_ball(std::span<T> v, T radius);

/// Exact Euclidean (Frobenius) projection of A onto {||A||_inf <= kappa}:
/// each row projected onto the l1 ball of radius kappa, sparsity pattern
/// kept, parallel over rows. Returns the number of rows changed.
template <class T>
index_t project_inf_norm(CsrMatrix<T> &A, T kappa,
                         Execution exec = Execution::parallel);

} // namespace tacit
