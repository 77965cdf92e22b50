// Rows of S = |C| (I - |A|)^-1 |B| + |D| on a distributed model: the
// certificate (lambda_PF(|A|) < 1 and a vector v with |A| v <= theta v),
// then per row a solve with (I - |A|)^T by PETSc's GMRES or the certified
// Richardson iteration, |B|^T w gathered on rank 0 and |D|_i added there.

#include <tacit/mpi/sensitivity.hpp>
#include <tacit/mpi/product.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <petscksp.h>

#include <tacit/core/format.hpp>

#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace {

constexpr double eps = std::numeric_limits<double>::epsilon();

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void gather_timing(const DistributedModel &m, double mine, std::vector<double> &out) {
  out.assign(m.rank == 0 ? static_cast<std::size_t>(m.ranks) : 1, mine);
  MPI_Gather(&mine, 1, MPI_DOUBLE, m.rank == 0 ? out.data() : nullptr, 1, MPI_DOUBLE, 0,
             m.comm);
}

/// y = x - |A|^T x: the operator (I - |A|)^T of the row solves.
PetscErrorCode transposed_resolvent_mult(Mat M, Vec x, Vec y) {
  Mat *absA = nullptr;
  PetscErrorCode code = MatShellGetContext(M, &absA);
  if (code == 0)
    code = MatMultTranspose(*absA, x, y);
  if (code == 0)
    code = VecAYPX(y, -1.0, x);
  return code;
}

/// Reads the own entries of a PETSc vector.
class Local {
public:
  explicit Local(Vec v) : v_(v) { TACIT_PETSC(VecGetArrayRead(v_, &a_)); }
  ~Local() { VecRestoreArrayRead(v_, &a_); }
  Local(const Local &) = delete;
  Local &operator=(const Local &) = delete;
  const double *data() const { return a_; }

private:
  Vec v_;
  const PetscScalar *a_ = nullptr;
};

class LocalWrite {
public:
  explicit LocalWrite(Vec v) : v_(v) { TACIT_PETSC(VecGetArray(v_, &a_)); }
  ~LocalWrite() { VecRestoreArray(v_, &a_); }
  LocalWrite(const LocalWrite &) = delete;
  LocalWrite &operator=(const LocalWrite &) = delete;
  double *data() { return a_; }

private:
  Vec v_;
  PetscScalar *a_ = nullptr;
};

/// sum_i v_i |x_i| over all ranks, for two vectors at once.
std::pair<double, double> weighted_norms(MPI_Comm comm, const std::vector<double> &v,
                                         Vec x, Vec y) {
  double s[2] = {0, 0};
  {
    const Local xa(x), ya(y);
    for (std::size_t i = 0; i < v.size(); ++i) {
      s[0] += v[i] * std::abs(xa.data()[i]);
      s[1] += v[i] * std::abs(ya.data()[i]);
    }
  }
  MPI_Allreduce(MPI_IN_PLACE, s, 2, MPI_DOUBLE, MPI_SUM, comm);
  return {s[0], s[1]};
}

struct Certificate {
  std::vector<double> v; // own entries, > 0
  double theta = 1;
  int products = 0;
};

/// v ~ (I - |A| / rho)^-1 1 by v <- |A| v / rho + 1 from v = 1 (every
/// iterate >= 1), theta = max_i (|A| v)_i / v_i over all ranks widened by
/// the single-process allowance for the rounding of the row sums; the
/// smallest theta of the iterates is kept.
Certificate make_certificate(const DistributedModel &model, Mat absA, double upper) {
  const MPI_Comm comm = model.comm;
  const index_t own = model.own_end() - model.own_begin();
  std::int64_t longest = 0;
  const auto rp = model.A.local.row_ptr();
  for (index_t i = 0; i < own; ++i)
    longest = std::max<std::int64_t>(longest, rp[i + 1] - rp[i]);
  MPI_Allreduce(MPI_IN_PLACE, &longest, 1, MPI_INT64_T, MPI_MAX, comm);
  const double allowance = 1 + 2 * double(longest + 2) * eps;
  const double rho = upper + 0.2 * (1 - upper);
  detail::VecHandle v, y;
  TACIT_PETSC(MatCreateVecs(absA, v.out(), y.out()));
  TACIT_PETSC(VecSet(v, 1.0));
  Certificate best;
  best.theta = std::numeric_limits<double>::infinity();
  double previous = std::numeric_limits<double>::infinity();
  for (int t = 0; t < 1000; ++t) {
    TACIT_PETSC(MatMult(absA, v, y));
    ++best.products;
    double theta = 0;
    {
      const Local ya(y), va(v);
      for (index_t i = 0; i < own; ++i)
        theta = std::max(theta, ya.data()[i] / va.data()[i]);
    }
    MPI_Allreduce(MPI_IN_PLACE, &theta, 1, MPI_DOUBLE, MPI_MAX, comm);
    theta *= allowance;
    if (theta < best.theta) {
      best.theta = theta;
      const Local va(v);
      best.v.assign(va.data(), va.data() + own);
    }
    if (best.theta < 1 && !(previous - theta > 1e-3 * theta))
      break;
    previous = theta;
    {
      LocalWrite va(v);
      const Local ya(y);
      for (index_t i = 0; i < own; ++i)
        va.data()[i] = ya.data()[i] / rho + 1;
    }
  }
  return best;
}

} // namespace

SensitivitySolver parse_sensitivity_solver(const std::string &name) {
  if (name == "gmres")
    return SensitivitySolver::gmres;
  if (name == "richardson")
    return SensitivitySolver::richardson;
  throw InvalidArgument("unknown sensitivity solver '" + name +
                        "' (expected gmres or richardson)");
}

std::string to_string(SensitivitySolver s) {
  return s == SensitivitySolver::gmres ? "gmres" : "richardson";
}

DistributedSensitivityRows
distributed_sensitivity_rows(const DistributedModel &model, std::span<const index_t> rows,
                             const DistributedSensitivityOptions &options,
                             RankTimings *timings) {
  const MPI_Comm comm = model.comm;
  for (const index_t r : rows)
    if (r < 0 || r >= model.q)
      throw InvalidArgument("distributed_sensitivity_rows: row " + std::to_string(r) +
                            " outside [0, " + std::to_string(model.q) +
                            ") (q = " + std::to_string(model.q) + " outputs)");
  if (!(options.rel_tol >= 0) || options.max_iterations < 1)
    throw InvalidArgument("distributed_sensitivity_rows: rel_tol must be >= 0 and "
                          "max_iterations >= 1");
  double t0 = now();
  DistributedSensitivityRows out;
  const PerronBound pf = distributed_perron_bound(model, options.perron);
  out.lambda_lower = pf.lower;
  out.lambda_upper = pf.upper;
  if (!pf.certified())
    detail::collective(comm, [&] {
      throw NumericalError("sensitivity: lambda_PF(|A|) < 1 is not certified (lambda_PF "
                           "in [" +
                               format_number(pf.lower, 6) + ", " +
                               format_number(pf.upper, 6) +
                               "]): S is not defined or not bounded",
                           pf.upper, 1.0, pf.iterations);
    });
  const index_t own = model.own_end() - model.own_begin();
  const index_t p = model.p;
  const RowPartition inputs = even_partition(p, model.ranks);
  double setup = 0, solve = 0, output = 0;
  detail::collective(comm, [&] {
    // |A| as a shell on tacit's CSR kernel (MatMult and MatMultTranspose).
    DistributedProduct product(model);
    Mat absA = product.petsc(Mode::abs);
    detail::MatHandle absB = detail::petsc_matrix(comm, model.B.local, model.n, p,
                                                  inputs.size(model.rank), true);
    detail::MatHandle absC =
        detail::petsc_matrix(comm, model.C.local, model.q, model.n, own, true);
    const Certificate cert = make_certificate(model, absA, pf.upper);
    out.theta = cert.theta;
    if (!(cert.theta < 1))
      throw NumericalError(
          "sensitivity: no certified contraction: |A| v <= theta v "
          "with theta " +
              format_number(cert.theta, 6) + " >= 1 after " +
              std::to_string(cert.products) +
              " products (lambda_PF(|A|) <= " + format_number(pf.upper, 6) + ")",
          cert.theta, 1.0, cert.products);
    const double tol = std::max(options.rel_tol, 16 * eps / (1 - cert.theta));
    Mat absA_context = absA; // the shell's context: outlives the shell
    Mat M_raw = nullptr;
    TACIT_PETSC(MatCreateShell(comm, static_cast<PetscInt>(own),
                               static_cast<PetscInt>(own), static_cast<PetscInt>(model.n),
                               static_cast<PetscInt>(model.n), &absA_context, &M_raw));
    detail::MatHandle M(M_raw);
    TACIT_PETSC(MatShellSetOperation(
        M, MATOP_MULT, reinterpret_cast<void (*)(void)>(transposed_resolvent_mult)));
    KSP ksp_raw = nullptr;
    struct KspGuard {
      KSP *k;
      ~KspGuard() {
        if (*k)
          KSPDestroy(k);
      }
    } ksp_guard{&ksp_raw};
    if (options.solver == SensitivitySolver::gmres) {
      TACIT_PETSC(KSPCreate(comm, &ksp_raw));
      TACIT_PETSC(KSPSetOperators(ksp_raw, M, M));
      TACIT_PETSC(KSPSetType(ksp_raw, KSPGMRES));
      PC pc = nullptr;
      TACIT_PETSC(KSPGetPC(ksp_raw, &pc));
      TACIT_PETSC(PCSetType(pc, PCNONE));
      TACIT_PETSC(KSPSetTolerances(ksp_raw, options.rel_tol, 0.0, PETSC_DEFAULT,
                                   static_cast<PetscInt>(options.max_iterations)));
      TACIT_PETSC(KSPGMRESSetRestart(ksp_raw, 60));
    }
    detail::VecHandle e, c, w, r, step, s;
    TACIT_PETSC(MatCreateVecs(absC, c.out(), e.out())); // c: states, e: outputs
    TACIT_PETSC(VecDuplicate(c, w.out()));
    TACIT_PETSC(VecDuplicate(c, r.out()));
    TACIT_PETSC(VecDuplicate(c, step.out()));
    detail::VecHandle s_in;
    TACIT_PETSC(MatCreateVecs(absB, s.out(), s_in.out())); // s: inputs
    detail::ScatterHandle to_zero;
    detail::VecHandle s0;
    TACIT_PETSC(VecScatterCreateToZero(s, to_zero.out(), s0.out()));
    PetscInt e_begin = 0, e_end = 0;
    TACIT_PETSC(VecGetOwnershipRange(e, &e_begin, &e_end));
    setup = now() - t0;
    if (model.rank == 0)
      out.values.assign(rows.size() * static_cast<std::size_t>(p), 0.0);
    const double factor = cert.theta / (1 - cert.theta);
    for (std::size_t k = 0; k < rows.size(); ++k) {
      t0 = now();
      const index_t row = rows[k];
      // c = |C|^T e_row = |C|_row^T.
      TACIT_PETSC(VecSet(e, 0.0));
      if (row >= e_begin && row < e_end)
        TACIT_PETSC(VecSetValue(e, static_cast<PetscInt>(row), 1.0, INSERT_VALUES));
      TACIT_PETSC(VecAssemblyBegin(e));
      TACIT_PETSC(VecAssemblyEnd(e));
      TACIT_PETSC(MatMultTranspose(absC, e, c));
      double bound = 0;
      int iterations = 0;
      bool converged = true;
      if (options.solver == SensitivitySolver::gmres) {
        TACIT_PETSC(KSPSolve(ksp_raw, c, w));
        PetscInt its = 0;
        TACIT_PETSC(KSPGetIterationNumber(ksp_raw, &its));
        KSPConvergedReason reason;
        TACIT_PETSC(KSPGetConvergedReason(ksp_raw, &reason));
        iterations = static_cast<int>(its);
        // r = c - (I - |A|^T) w, bounded in the v-norm.
        TACIT_PETSC(MatMult(M, w, r));
        TACIT_PETSC(VecAYPX(r, -1.0, c));
        const auto [nr, nw] = weighted_norms(comm, cert.v, r, w);
        bound = nr == 0 ? 0 : nr / (1 - cert.theta) / nw;
        converged = bound <= tol || (reason > 0 && bound <= 1e3 * tol);
      } else {
        // w_0 = c; w_t+1 = |A|^T w_t + c; stop on theta/(1-theta) ||step|| / ||w||.
        TACIT_PETSC(VecCopy(c, w));
        double best = std::numeric_limits<double>::infinity();
        int since_best = 0;
        for (int it = 1;; ++it) {
          TACIT_PETSC(MatMultTranspose(absA, w, r)); // r = |A|^T w
          TACIT_PETSC(VecAXPY(r, 1.0, c));           // next
          TACIT_PETSC(VecWAXPY(step, -1.0, w, r));   // next - w
          TACIT_PETSC(VecCopy(r, w));
          const auto [nd, nx] = weighted_norms(comm, cert.v, step, w);
          bound = nd == 0 ? 0 : factor * nd / nx;
          iterations = it;
          if (!(bound > tol)) {
            converged = true;
            break;
          }
          if (bound < best) {
            best = bound;
            since_best = 0;
          } else if (++since_best >= 20 || it >= options.max_iterations) {
            converged = bound <= 1e3 * tol && it < options.max_iterations;
            break;
          }
          if (it >= options.max_iterations) {
            converged = false;
            break;
          }
        }
      }
      out.iterations = std::max(out.iterations, iterations);
      out.error_bound = std::max(out.error_bound, bound);
      out.converged = out.converged && converged;
      solve += now() - t0;
      t0 = now();
      // S_row = |B|^T w (+ |D|_row on rank 0).
      TACIT_PETSC(MatMultTranspose(absB, w, s));
      TACIT_PETSC(VecScatterBegin(to_zero, s, s0, INSERT_VALUES, SCATTER_FORWARD));
      TACIT_PETSC(VecScatterEnd(to_zero, s, s0, INSERT_VALUES, SCATTER_FORWARD));
      if (model.rank == 0) {
        double *dst = out.values.data() + k * static_cast<std::size_t>(p);
        {
          const Local sa(s0);
          std::copy(sa.data(), sa.data() + p, dst);
        }
        if (model.D) {
          const auto &D = *model.D;
          const auto drp = D.row_ptr();
          const auto dv = D.values();
          for (auto q = drp[row]; q < drp[row + 1]; ++q)
            dst[D.column(q)] += std::abs(dv[q]);
        }
      }
      output += now() - t0;
    }
  });
  out.reason = to_string(options.solver) + " on (I - |A|)^T over " +
               std::to_string(model.ranks) + " ranks, contraction ratio " +
               format_number(out.theta, 6) + " of |A| on a certificate vector";
  if (timings) {
    gather_timing(model, setup, timings->setup);
    gather_timing(model, solve, timings->solve);
    gather_timing(model, output, timings->output);
  }
  return out;
}

} // namespace tacit::inline v1::mpi
