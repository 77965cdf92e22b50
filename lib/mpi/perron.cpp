// Distributed certified enclosure of lambda_PF(|A|): shifted power iteration
// on |A| (tacit's CSR kernel on each rank's rows, DistributedProduct) with
// Collatz-Wielandt bounds reduced over the ranks, the rounding allowance and
// outward rounding of lib/analysis/perron.cpp. And SLEPc's (uncertified)
// estimate for comparison, on a PETSc MatMPIAIJ.

#include <tacit/mpi/mpi.hpp>
#include <tacit/mpi/product.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <slepceps.h>

#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace {

constexpr double unit_roundoff = 0x1p-53;
constexpr double infinity = std::numeric_limits<double>::infinity();
constexpr double denorm_min = std::numeric_limits<double>::denorm_min();

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Collatz-Wielandt ratios of the own rows (as perron.cpp's pass_rows: the
/// computed (|A| v)_i of k nonnegative terms is within 1 +- gamma_k of the
/// exact one, plus 2 k denorm_min for underflowed products; 6u more covers
/// the sum, the ratio and the widening), and the next iterate.
struct Pass {
  double lower = infinity, upper = 0, next_max = 0;
  bool zero = false;
};

Pass pass_rows(const std::int64_t *__restrict row_ptr, index_t rows,
               const double *__restrict y, const double *__restrict v, double shift,
               double scale, double *__restrict next) {
  constexpr double u = unit_roundoff;
  Pass r;
  for (index_t i = 0; i < rows; ++i) {
    const double k = static_cast<double>(row_ptr[i + 1] - row_ptr[i]);
    const double rel = k * u * (1 + 4 * k * u) + 6 * u;
    const double absolute = 2 * k * denorm_min;
    const double vi = v[i], yi = y[i];
    const double up = (yi + absolute) / vi;
    const double num = yi - absolute;
    const double lo = (num > 0 ? num : 0.0) / vi;
    const double up_w = up + up * rel, lo_w = lo - lo * rel;
    r.upper = up_w > r.upper ? up_w : r.upper;
    r.lower = lo_w < r.lower ? lo_w : r.lower;
    r.zero = r.zero || !(vi > 0);
    const double w = (yi + shift * vi) * scale;
    next[i] = w;
    r.next_max = w > r.next_max ? w : r.next_max;
  }
  return r;
}

} // namespace

PerronBound distributed_perron_bound(const DistributedModel &model,
                                     const PerronOptions &options, RankTimings *timings) {
  const MPI_Comm comm = model.comm;
  if (!(options.rel_width >= 0) || options.max_iterations < 0)
    throw InvalidArgument("distributed_perron_bound: rel_width must be >= 0 and "
                          "max_iterations >= 0");
  double t0 = now();
  const index_t own = model.own_end() - model.own_begin();
  PerronBound out;
  out.blocks = 1;
  out.largest_block = model.n;
  out.cyclic_blocks = model.n > 1 ? 1 : 0;
  out.lower = 0;
  out.upper = infinity;
  detail::collective(comm, [&] {
    DistributedProduct absA(model);
    std::vector<double> v(static_cast<std::size_t>(own), 1.0),
        y(static_cast<std::size_t>(own));
    std::vector<double> next(static_cast<std::size_t>(own));
    const double setup = now() - t0;
    t0 = now();
    double shift = 0, scale = 1;
    std::int64_t it = 0, last_progress = 0;
    out.status = PerronStatus::budget_exhausted;
    const auto *rp = model.A.local.row_ptr().data();
    auto estimate = [&] {
      return std::isfinite(out.upper) ? 0.5 * (out.lower + out.upper) : out.lower;
    };
    while (out.iterations < options.max_iterations) {
      absA.apply(Mode::abs, v, y);
      Pass r = pass_rows(rp, own, y.data(), v.data(), shift, scale, next.data());
      // One reduction: minima of lower and of the negated maxima.
      double red[4] = {r.lower, -r.upper, -r.next_max, r.zero ? -1.0 : 0.0};
      MPI_Allreduce(MPI_IN_PLACE, red, 4, MPI_DOUBLE, MPI_MIN, comm);
      r.lower = red[0];
      r.upper = -red[1];
      r.next_max = -red[2];
      r.zero = red[3] < 0;
      ++out.iterations;
      // Certified bounds of this pass: one more outward rounding step.
      double lo = r.lower == infinity ? 0.0 : r.lower;
      lo = lo > 0 ? std::nextafter(lo, 0.0) : 0.0;
      const double up = r.zero ? infinity : std::nextafter(r.upper, infinity);
      if (r.zero)
        out.underflow = true;
      bool progress = false;
      if (lo > out.lower) {
        out.lower = lo;
        progress = true;
      }
      if (up < out.upper) {
        out.upper = up;
        progress = true;
      }
      if (progress)
        last_progress = it;
      if (out.upper - out.lower <= options.rel_width * out.upper) {
        out.status = PerronStatus::tight;
        break;
      }
      if (options.stop_when_decided && (out.upper < 1 || out.lower >= 1)) {
        out.status = PerronStatus::decided;
        break;
      }
      if (it - last_progress > std::max<std::int64_t>(100, it / 2)) {
        out.status = PerronStatus::stalled;
        break;
      }
      double vmax = r.next_max;
      if (!(vmax > 0x1p-300 && vmax < 0x1p300)) {
        if (!(vmax > 0) || !std::isfinite(vmax)) {
          out.status = PerronStatus::stalled;
          break;
        }
        for (double &x : next)
          x /= vmax;
        vmax = 1;
      }
      v.swap(next);
      const double est = estimate();
      shift = 0.5 * est;
      scale = 1.0 / (vmax * (est + shift));
      if (!(std::isfinite(scale) && scale > 0))
        scale = 1.0 / vmax;
      ++it;
    }
    if (out.iterations == 0)
      out.status = PerronStatus::budget_exhausted;
    const double solve = now() - t0;
    if (timings) {
      auto gather = [&](double mine, std::vector<double> &dst) {
        dst.assign(model.rank == 0 ? static_cast<std::size_t>(model.ranks) : 1, mine);
        MPI_Gather(&mine, 1, MPI_DOUBLE, model.rank == 0 ? dst.data() : nullptr, 1,
                   MPI_DOUBLE, 0, comm);
      };
      gather(setup, timings->setup);
      gather(solve, timings->solve);
      timings->output.clear();
    }
  });
  out.message = "distributed power iteration on |A| over " + std::to_string(model.ranks) +
                " ranks: " + std::to_string(out.iterations) + " products, " +
                to_string(out.status);
  return out;
}

std::pair<double, double> distributed_norms(const DistributedModel &model) {
  const index_t own = model.own_end() - model.own_begin();
  return detail::collective(model.comm, [&] {
    detail::MatHandle M =
        detail::petsc_matrix(model.comm, model.A.local, model.n, model.n, own, false);
    PetscReal inf = 0, one = 0;
    TACIT_PETSC(MatNorm(M, NORM_INFINITY, &inf));
    TACIT_PETSC(MatNorm(M, NORM_1, &one));
    return std::pair<double, double>(inf, one);
  });
}

double slepc_spectral_radius_estimate(const DistributedModel &model, double tolerance) {
  const MPI_Comm comm = model.comm;
  const index_t own = model.own_end() - model.own_begin();
  return detail::collective(comm, [&]() -> double {
    detail::MatHandle M =
        detail::petsc_matrix(comm, model.A.local, model.n, model.n, own, true);
    EPS eps = nullptr;
    TACIT_PETSC(EPSCreate(comm, &eps));
    struct Guard {
      EPS *e;
      ~Guard() { EPSDestroy(e); }
    } guard{&eps};
    TACIT_PETSC(EPSSetOperators(eps, M, nullptr));
    TACIT_PETSC(EPSSetProblemType(eps, EPS_NHEP));
    TACIT_PETSC(EPSSetType(eps, EPSKRYLOVSCHUR));
    TACIT_PETSC(EPSSetWhichEigenpairs(eps, EPS_LARGEST_MAGNITUDE));
    TACIT_PETSC(EPSSetDimensions(eps, 1, PETSC_DEFAULT, PETSC_DEFAULT));
    TACIT_PETSC(EPSSetTolerances(eps, tolerance, 1000));
    TACIT_PETSC(EPSSolve(eps));
    PetscInt converged = 0;
    TACIT_PETSC(EPSGetConverged(eps, &converged));
    if (converged < 1)
      return std::numeric_limits<double>::quiet_NaN();
    PetscScalar re = 0, im = 0;
    TACIT_PETSC(EPSGetEigenvalue(eps, 0, &re, &im));
    return std::hypot(re, im);
  });
}

} // namespace tacit::inline v1::mpi
