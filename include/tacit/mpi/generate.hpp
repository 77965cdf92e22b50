#pragma once
/// \file generate.hpp
/// Large truly implicit models for scaling runs (component tacit::mpi):
/// random_implicit_model (include/tacit/nn/generate.hpp) generated across the
/// ranks, each rank generating only its own rows, and the halo (the states a
/// rank reads from other ranks) of a partition, measured on a distributed
/// model or counted for ranks that do not exist (a cost model of a machine
/// larger than this one).
///
/// Thread safety: the distributed calls are collective over the communicator
/// (every rank makes the same calls in the same order, from one thread);
/// random_implicit_halo is reentrant and uses TBB.

#include <cstdint>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/mpi/mpi.hpp>

namespace tacit::inline v1::mpi {

/// The arguments of random_implicit_model.
struct TACIT_EXPORT ImplicitModelShape {
  index_t states = 100000; ///< n
  index_t inputs = 1024;   ///< p
  index_t outputs = 10;    ///< q
  index_t row_nnz = 16;    ///< nonzeros per row of A (distinct columns)
  double norm_inf = 0.9;   ///< ||A||_inf (< 1 certifies well-posedness)
  std::uint64_t seed = 1;
};

/// random_implicit_model<double>(shape...) distributed as load_distributed_model
/// would read it from its native file (the same partition, the same bits on
/// every rank), each rank generating only its rows of A, B and b and its rows
/// of C: no rank holds or generates the whole model. The largest row sum of
/// |A| (for the scaling to norm_inf) is one MPI_Allreduce. Collective.
/// `memory_budget` > 0: a rank whose share would need more bytes (counted
/// before anything is generated) refuses, on every rank, naming its bytes.
/// \throws InvalidArgument for bad shapes, a partition that leaves a rank
/// without states, or a share over the budget (on every rank).
TACIT_EXPORT DistributedModel generate_distributed_model(const ImplicitModelShape &shape,
                                                         MPI_Comm comm = MPI_COMM_WORLD,
                                                         std::size_t memory_budget = 0);

/// What one rank of a state partition exchanges per Picard iteration and
/// input column: it receives `ghosts` states (the distinct states of other
/// ranks that its rows of A read) from `neighbours` ranks, and sends
/// `sent` states (its own states that other ranks read; counted once per
/// reading rank) to `readers` ranks.
struct TACIT_EXPORT RankHalo {
  int rank = 0;
  index_t rows = 0;       ///< own states
  std::int64_t nnz = 0;   ///< nonzeros of its rows of A
  index_t ghosts = 0;     ///< states received
  int neighbours = 0;     ///< ranks received from
  std::int64_t sent = -1; ///< states sent (-1: not counted)
  int readers = -1;       ///< ranks sent to (-1: not counted)
};

/// The halo of every rank of a distributed model, on rank 0 (other ranks: their
/// own entry only). Collective.
TACIT_EXPORT std::vector<RankHalo> distributed_halo(const DistributedModel &model);

/// The halo of the ranks of random_implicit_model(shape...)'s A split over
/// `ranks` ranks by balanced_partition (the partition generate_distributed_model
/// and load_distributed_model use), counted without MPI and without holding
/// the model: each rank's rows are generated in turn (TBB over ranks), its
/// ghosts counted in a bitmap of the states. `sample` > 0 counts only that many
/// ranks, evenly spaced (first and last included): for a uniform random
/// pattern every rank's halo has the same distribution. `sent`/`readers` are
/// not counted (-1); for this pattern they equal the ghosts and neighbours in
/// expectation.
/// \throws InvalidArgument for ranks < 1 or more ranks than states.
TACIT_EXPORT std::vector<RankHalo> random_implicit_halo(const ImplicitModelShape &shape,
                                                        int ranks, int sample = 0);

} // namespace tacit::inline v1::mpi
