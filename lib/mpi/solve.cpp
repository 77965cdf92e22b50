// Distributed Picard: tacit's fixed-point kernel on each rank's rows
// (picard_solve_part), the neighbours' states moved by a PETSc VecScatter,
// per-column maxima by MPI_Allreduce; outputs by PETSc (C x) gathered on
// rank 0.

#include <tacit/mpi/mpi.hpp>
#include <tacit/solve/partitioned.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "mpi/detail/chain.hpp"
#include "mpi/detail/collective.hpp"
#include "mpi/detail/ghosts.hpp"

namespace tacit::inline v1::mpi {

namespace {

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The own rows of A in the local index space: ghosts below the own range,
/// the own states, ghosts above, all in increasing global order.
struct LocalSystem {
  index_t ghosts_below = 0;
  std::vector<index_t> ghosts; // global indices, increasing
  CsrMatrix<double> A;         // m x m, rows outside the own range empty
  std::vector<Activation> activations;
};

LocalSystem local_system(const DistributedModel &model) {
  LocalSystem s;
  const auto &L = model.A.local;
  const index_t r0 = model.own_begin(), r1 = model.own_end(), own = r1 - r0;
  auto gc = detail::ghost_columns(model);
  s.ghosts = std::move(gc.ghosts);
  s.ghosts_below = gc.below;
  const index_t m = own + static_cast<index_t>(s.ghosts.size());
  const index_t g = s.ghosts_below;
  std::vector<std::int64_t> ptr(static_cast<std::size_t>(m) + 1, 0);
  const auto rp = L.row_ptr();
  for (index_t i = 0; i <= own; ++i)
    ptr[g + i] = rp[i];
  for (index_t i = g + own + 1; i <= m; ++i)
    ptr[i] = rp[own];
  std::vector<double> vals(L.values().begin(), L.values().end());
  s.A = CsrMatrix<double>(m, m, std::move(ptr), gc.local, std::move(vals));
  s.activations.assign(static_cast<std::size_t>(m), Activation{});
  std::copy(model.activations.begin(), model.activations.end(),
            s.activations.begin() + g);
  return s;
}

/// Moves the ghost rows of one slab (m x W) from their owners: the own rows
/// [g, g + own) of every rank's slab form a PETSc vector of block size W in
/// the state partition's layout, the ghost rows a sequential one.
class HaloExchange {
public:
  HaloExchange(const DistributedModel &model, const LocalSystem &sys, index_t W)
      : g_(sys.ghosts_below), W_(W) {
    const index_t own = model.own_end() - model.own_begin();
    const index_t m = own + static_cast<index_t>(sys.ghosts.size());
    TACIT_PETSC(VecCreateMPIWithArray(model.comm, static_cast<PetscInt>(W),
                                      static_cast<PetscInt>(own * W), PETSC_DECIDE,
                                      nullptr, global_.out()));
    TACIT_PETSC(VecCreateSeqWithArray(PETSC_COMM_SELF, static_cast<PetscInt>(W),
                                      static_cast<PetscInt>(m * W), nullptr,
                                      local_.out()));
    const auto count = sys.ghosts.size();
    std::vector<PetscInt> from(count), to(count);
    for (std::size_t k = 0; k < count; ++k) {
      from[k] = static_cast<PetscInt>(sys.ghosts[k]);
      const auto kk = static_cast<index_t>(k);
      to[k] = static_cast<PetscInt>(kk < g_ ? kk : kk + own);
    }
    TACIT_PETSC(ISCreateBlock(PETSC_COMM_SELF, static_cast<PetscInt>(W),
                              static_cast<PetscInt>(count), from.data(),
                              PETSC_COPY_VALUES, is_from_.out()));
    TACIT_PETSC(ISCreateBlock(PETSC_COMM_SELF, static_cast<PetscInt>(W),
                              static_cast<PetscInt>(count), to.data(), PETSC_COPY_VALUES,
                              is_to_.out()));
    TACIT_PETSC(VecScatterCreate(global_, is_from_, local_, is_to_, scatter_.out()));
  }

  void operator()(double *slab) {
    TACIT_PETSC(VecPlaceArray(global_, slab + g_ * W_));
    TACIT_PETSC(VecPlaceArray(local_, slab));
    TACIT_PETSC(
        VecScatterBegin(scatter_, global_, local_, INSERT_VALUES, SCATTER_FORWARD));
    TACIT_PETSC(VecScatterEnd(scatter_, global_, local_, INSERT_VALUES, SCATTER_FORWARD));
    TACIT_PETSC(VecResetArray(global_));
    TACIT_PETSC(VecResetArray(local_));
  }

private:
  index_t g_, W_;
  detail::VecHandle global_, local_;
  detail::ISHandle is_from_, is_to_;
  detail::ScatterHandle scatter_;
};

void gather_timing(MPI_Comm comm, int rank, int ranks, double mine,
                   std::vector<double> &out) {
  out.assign(rank == 0 ? static_cast<std::size_t>(ranks) : 1, mine);
  MPI_Gather(&mine, 1, MPI_DOUBLE, rank == 0 ? out.data() : nullptr, 1, MPI_DOUBLE, 0,
             comm);
}

} // namespace

SolveReport distributed_predict(const DistributedModel &model, const Batch<double> &U,
                                Batch<double> &Y, const PicardOptions &options,
                                RankTimings *timings, Batch<double> *X_own) {
  const MPI_Comm comm = model.comm;
  if (U.rows() != model.p)
    throw InvalidArgument("distributed_predict: U has " + std::to_string(U.rows()) +
                          " rows, the model has p = " + std::to_string(model.p) +
                          " inputs");
  const index_t k = U.cols(), W = U.slab_width();
  const index_t r0 = model.own_begin(), own = model.own_end() - r0;
  double t0 = now();
  // Set-up: the local system and the communication plan.
  auto sys = detail::collective(
      comm, [&] { return std::make_shared<LocalSystem>(local_system(model)); });
  auto halo = detail::collective(
      comm, [&] { return std::make_shared<HaloExchange>(model, *sys, W); });
  StatePart<double> part;
  part.begin = sys->ghosts_below;
  part.end = sys->ghosts_below + own;
  part.exchange = [&](double *slab, index_t) { (*halo)(slab); };
  part.max_reduce = [&](std::span<double> v) {
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_MAX,
                  comm);
  };
  if (options.anderson_depth > 0)
    detail::set_rank_chain(part, model);
  const double setup = now() - t0;
  t0 = now();
  Batch<double> X;
  // Argument errors are the same on every rank (same options and shapes);
  // PETSc failures inside the exchange are not expected once the plan exists.
  const SolveReport report = detail::collective(comm, [&] {
    return picard_solve_part<double>(sys->A, sys->activations, model.B.local,
                                     model.bias_x, U, X, options, part);
  });
  const double solve = now() - t0;
  t0 = now();
  // Y = C X (PETSc, column by column) gathered on rank 0, + D U + c there.
  detail::collective(comm, [&] {
    detail::MatHandle C =
        detail::petsc_matrix(comm, model.C.local, model.q, model.n, own, false);
    detail::VecHandle x, y, y0;
    TACIT_PETSC(MatCreateVecs(C, x.out(), y.out()));
    detail::ScatterHandle to_zero;
    TACIT_PETSC(VecScatterCreateToZero(y, to_zero.out(), y0.out()));
    if (model.rank == 0)
      Y = Batch<double>(model.q, k, W);
    else
      Y = Batch<double>();
    std::vector<double> column(static_cast<std::size_t>(model.q));
    for (index_t j = 0; j < k; ++j) {
      PetscScalar *xa = nullptr;
      TACIT_PETSC(VecGetArray(x, &xa));
      for (index_t i = 0; i < own; ++i)
        xa[i] = X(part.begin + i, j);
      TACIT_PETSC(VecRestoreArray(x, &xa));
      TACIT_PETSC(MatMult(C, x, y));
      TACIT_PETSC(VecScatterBegin(to_zero, y, y0, INSERT_VALUES, SCATTER_FORWARD));
      TACIT_PETSC(VecScatterEnd(to_zero, y, y0, INSERT_VALUES, SCATTER_FORWARD));
      if (model.rank == 0) {
        const PetscScalar *ya = nullptr;
        TACIT_PETSC(VecGetArrayRead(y0, &ya));
        std::copy(ya, ya + model.q, column.begin());
        TACIT_PETSC(VecRestoreArrayRead(y0, &ya));
        Y.set_column(j, column);
      }
    }
    if (model.rank == 0) {
      if (model.D)
        model.D->apply(Mode::normal, 1.0, U, 1.0, Y);
      for (index_t j = 0; j < k; ++j)
        for (index_t i = 0; i < model.q; ++i)
          Y(i, j) += model.bias_y[i];
    }
  });
  if (X_own) {
    *X_own = Batch<double>(own, k, W);
    for (index_t j = 0; j < k; ++j)
      for (index_t i = 0; i < own; ++i)
        (*X_own)(i, j) = X(part.begin + i, j);
  }
  const double output = now() - t0;
  if (timings) {
    gather_timing(comm, model.rank, model.ranks, setup, timings->setup);
    gather_timing(comm, model.rank, model.ranks, solve, timings->solve);
    gather_timing(comm, model.rank, model.ranks, output, timings->output);
  }
  return report;
}

} // namespace tacit::inline v1::mpi
