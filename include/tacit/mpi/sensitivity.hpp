#pragma once
/// \file sensitivity.hpp
/// Rows of the sensitivity matrix S = |C| (I - |A|)^-1 |B| + |D| of a
/// distributed model (component tacit::mpi; see tacit/analysis/sensitivity.hpp
/// for what S bounds). Row i is S_i = |B|^T w + |D|_i where w solves
/// (I - |A|)^T w = |C|_i^T, on PETSc matrices built from the distributed CSR
/// rows (|A| a shell on tacit's CSR kernel, DistributedProduct): a KSP (GMRES, no preconditioner) on the shell operator
/// x -> x - |A|^T x, or the iteration w <- |A|^T w + |C|_i^T (Richardson)
/// stopped by a certified bound.
///
/// Both need lambda_PF(|A|) < 1, certified by distributed_perron_bound, and a
/// vector v > 0 with |A| v <= theta v, theta < 1: v = (I - |A| / rho)^-1 1
/// approximated by a few products (rho between the certified upper bound and
/// 1, as in the single-process iterative back-end), theta measured on it
/// with the rounding allowance of the single-process certificate. |A|^T then
/// contracts with ratio theta in the norm ||x||_v = sum_i v_i |x_i|, which
/// gives the error bounds: ||w - w*||_v <= ||r||_v / (1 - theta) for the
/// residual r = |C|_i^T - (I - |A|^T) w (GMRES; r as computed), and
/// theta / (1 - theta) ||w_t+1 - w_t||_v (Richardson), each relative to
/// ||w||_v.
///
/// Thread safety: collective over the model's communicator.

#include <span>
#include <string>
#include <vector>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/mpi/mpi.hpp>

namespace tacit::inline v1::mpi {

enum class SensitivitySolver {
  gmres,     ///< PETSc KSP GMRES on (I - |A|)^T (KSPSolve on a shell operator)
  richardson ///< w <- |A|^T w + r, the single-process iterative back-end
};

/// "gmres", "richardson". \throws InvalidArgument for another name.
TACIT_EXPORT SensitivitySolver parse_sensitivity_solver(const std::string &name);
TACIT_EXPORT std::string to_string(SensitivitySolver s);

struct TACIT_EXPORT DistributedSensitivityOptions {
  SensitivitySolver solver = SensitivitySolver::gmres;
  /// Stop once the certified bound on ||w - w*||_v / ||w||_v is at most
  /// rel_tol (raised to 16 eps / (1 - theta), the rounding floor, as in the
  /// single-process iterative back-end). GMRES stops on its own residual
  /// (relative 2-norm rel_tol) and the bound is then evaluated.
  double rel_tol = 1e-14;
  /// Iterations per row (products with |A|^T).
  int max_iterations = 100000;
  /// The certification of lambda_PF(|A|) < 1 (rel_width 1e-3 as the
  /// single-process sensitivity).
  PerronOptions perron = [] {
    PerronOptions o;
    o.rel_width = 1e-3;
    return o;
  }();
};

/// Rows of S and how they were obtained (the same on every rank, except
/// `values`).
struct TACIT_EXPORT DistributedSensitivityRows {
  /// Rank 0: rows.size() x p, row-major (row j is S_{rows[j]}); empty elsewhere.
  std::vector<double> values;
  /// The certified enclosure of lambda_PF(|A|).
  double lambda_lower = 0, lambda_upper = 0;
  /// The contraction ratio of |A| measured on the certificate vector.
  double theta = 0;
  /// Products with |A|^T: the largest count over the rows.
  int iterations = 0;
  /// The largest relative error bound of the rows' state solves.
  double error_bound = 0;
  /// Every row's bound within the tolerance (within 1000 times it for a
  /// solve stopped at the rounding floor, as the single-process back-end).
  bool converged = true;
  std::string reason; ///< the solver and the certificate, for reports
};

/// Rows `rows` (output indices, the same on every rank) of S. Collective.
/// \throws InvalidArgument for a row outside [0, q) or bad options;
/// NumericalError when lambda_PF(|A|) < 1 is not certified or no certified
/// contraction is found (every rank).
TACIT_EXPORT DistributedSensitivityRows distributed_sensitivity_rows(
    const DistributedModel &model, std::span<const index_t> rows,
    const DistributedSensitivityOptions &options = {}, RankTimings *timings = nullptr);

} // namespace tacit::inline v1::mpi
