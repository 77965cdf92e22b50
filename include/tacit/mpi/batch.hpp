#pragma once
/// \file batch.hpp
/// Data parallel over inputs (component tacit::mpi): a model that every rank
/// holds (a structured feed-forward network such as ResNet20, or any model
/// small enough for one rank) solved or certified on a data set split across
/// the ranks. Each rank takes a contiguous share of the inputs in whole slabs
/// (Batch::slab_width() columns), so that it runs the single-process kernels
/// on the very slabs a single-process run forms; the results are gathered on
/// rank 0 in input order and are the same bits as the single-process run's
/// (outputs, states, per-column status, certificates and radii).
///
/// Thread safety: the calls are collective over the communicator (every rank
/// makes the same calls in the same order, from one thread); each rank's own
/// work runs in parallel (TBB) as in a single process. Errors are collective
/// as in mpi.hpp: a failure on one rank is thrown on every rank.

#include <span>
#include <vector>

#include <tacit/analysis/bounds.hpp>
#include <tacit/core/export.hpp>
#include <tacit/mpi/mpi.hpp>
#include <tacit/solve/solve.hpp>

namespace tacit::inline v1::mpi {

/// The split of `columns` inputs over `ranks` ranks: contiguous ranges of
/// whole slabs of `slab_width` columns, the slabs spread evenly (within one);
/// the last slab may be partial. Ranks beyond the number of slabs get no
/// inputs. \throws InvalidArgument for ranks < 1, slab_width < 1 or
/// columns < 0.
TACIT_EXPORT RowPartition batch_partition(index_t columns, int ranks,
                                          index_t slab_width = default_slab_width);

/// Columns [parts.begin(rank), parts.end(rank)) of U, with U's slab width
/// (Batch narrows the width of a batch of fewer columns).
template <class T>
TACIT_EXPORT Batch<T> own_columns(const Batch<T> &U, const RowPartition &parts, int rank);

/// Every rank's columns (`mine`: rows x parts.size(rank)) gathered on rank 0
/// as one rows x parts.total() batch in order, with slab width `slab_width`;
/// an empty batch on the other ranks. Collective.
template <class T>
TACIT_EXPORT Batch<T> gather_columns(MPI_Comm comm, const Batch<T> &mine,
                                     const RowPartition &parts, index_t rows,
                                     index_t slab_width = default_slab_width);

/// The reports of the ranks' shares merged into the report of the whole
/// batch, on every rank: per-column status, iterations and residuals in
/// input order; status the worst, iterations and residual the largest; the
/// step history the largest over ranks at each iteration; method and message
/// those of the lowest rank with inputs. Collective.
TACIT_EXPORT SolveReport gather_reports(MPI_Comm comm, const SolveReport &mine,
                                        const RowPartition &parts);

/// The outcome of the ranks' shares merged on rank 0: counts summed,
/// per-input certificates in input order, seconds the largest over ranks
/// (other ranks: their own share's result). Collective.
TACIT_EXPORT CertifiedAccuracy gather_certificates(MPI_Comm comm,
                                                   const CertifiedAccuracy &mine,
                                                   const RowPartition &parts);

/// solver.predict on each rank's share of U (the whole U, the same on every
/// rank); Y (q x k) and, when X is given, the states (n x k) gathered on rank
/// 0 in input order (empty elsewhere); the report merged as gather_reports.
/// The same bits as solver.predict(U, ...) in one process. Collective.
/// \throws InvalidArgument when U does not have the model's p rows (on
/// every rank).
template <class T>
TACIT_EXPORT SolveReport batch_predict(MPI_Comm comm, EquilibriumSolver<T> &solver,
                                       const Model<T> &model, const Batch<T> &U,
                                       Batch<T> &Y, Batch<T> *X = nullptr,
                                       RankTimings *timings = nullptr);

/// certify_dataset on each rank's share of U (labels per column, the whole
/// data set on every rank), merged on rank 0 as gather_certificates: the same
/// counts, certificates and radii as certify_dataset in one process.
/// `timings->solve` gets each rank's certification time. Collective.
template <class T>
TACIT_EXPORT CertifiedAccuracy
batch_certify(MPI_Comm comm, const BoundAnalyzer<T> &analyzer, const Batch<T> &U,
              std::span<const int> labels, std::span<const double> eps, bool radius,
              const CertifyOptions &options, RankTimings *timings = nullptr);

} // namespace tacit::inline v1::mpi
