// Data parallel over inputs: shares of whole slabs, the single-process
// solver and certifier on each share, results gathered in input order.

#include <tacit/mpi/batch.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace {

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <class T> MPI_Datatype mpi_type() {
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

int rank_of(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}

int ranks_of(MPI_Comm comm) {
  int r = 1;
  MPI_Comm_size(comm, &r);
  return r;
}

void gather_timing(MPI_Comm comm, double mine, std::vector<double> &out) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  out.assign(rank == 0 ? static_cast<std::size_t>(ranks) : 1, mine);
  MPI_Gather(&mine, 1, MPI_DOUBLE, rank == 0 ? out.data() : nullptr, 1, MPI_DOUBLE, 0,
             comm);
}

/// Gathers `per` values per column of every rank's share on `root` (-1: on
/// every rank), in column order.
template <class V>
std::vector<V> gather_per_column(MPI_Comm comm, const std::vector<V> &mine,
                                 const RowPartition &parts, int per, MPI_Datatype type,
                                 int root) {
  const int ranks = parts.ranks(), rank = rank_of(comm);
  std::vector<int> counts(static_cast<std::size_t>(ranks)),
      displs(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    counts[r] = static_cast<int>(parts.size(r));
    displs[r] = static_cast<int>(parts.begin(r));
  }
  MPI_Datatype column;
  MPI_Type_contiguous(per, type, &column);
  MPI_Type_commit(&column);
  std::vector<V> all;
  if (root < 0 || rank == root)
    all.resize(static_cast<std::size_t>(parts.total()) * static_cast<std::size_t>(per));
  if (root < 0)
    MPI_Allgatherv(mine.data(), counts[rank], column, all.data(), counts.data(),
                   displs.data(), column, comm);
  else
    MPI_Gatherv(mine.data(), counts[rank], column, all.data(), counts.data(),
                displs.data(), column, root, comm);
  MPI_Type_free(&column);
  return all;
}

} // namespace

RowPartition batch_partition(index_t columns, int ranks, index_t slab_width) {
  if (ranks < 1 || slab_width < 1 || columns < 0)
    throw InvalidArgument("batch_partition: " + std::to_string(columns) + " columns, " +
                          std::to_string(ranks) + " ranks, slab width " +
                          std::to_string(slab_width));
  const index_t slabs = (columns + slab_width - 1) / slab_width;
  RowPartition p = even_partition(slabs, ranks);
  for (auto &s : p.starts)
    s = std::min(columns, s * slab_width);
  return p;
}

template <class T>
Batch<T> own_columns(const Batch<T> &U, const RowPartition &parts, int rank) {
  const index_t c0 = parts.begin(rank), k = parts.size(rank);
  Batch<T> mine(U.rows(), k, U.slab_width());
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < U.rows(); ++i)
      mine(i, j) = U(i, c0 + j);
  return mine;
}

template <class T>
Batch<T> gather_columns(MPI_Comm comm, const Batch<T> &mine, const RowPartition &parts,
                        index_t rows, index_t slab_width) {
  const int rank = rank_of(comm);
  const index_t k = parts.size(rank);
  std::vector<T> packed(static_cast<std::size_t>(rows * k));
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < rows; ++i)
      packed[j * rows + i] = mine(i, j);
  const auto all =
      gather_per_column(comm, packed, parts, static_cast<int>(rows), mpi_type<T>(), 0);
  if (rank != 0)
    return Batch<T>();
  Batch<T> out(rows, parts.total(), slab_width);
  for (index_t j = 0; j < parts.total(); ++j)
    for (index_t i = 0; i < rows; ++i)
      out(i, j) = all[j * rows + i];
  return out;
}

SolveReport gather_reports(MPI_Comm comm, const SolveReport &mine,
                           const RowPartition &parts) {
  const int rank = rank_of(comm);
  const index_t k = parts.size(rank);
  // Per column: status, iterations, residual.
  std::vector<double> cols(static_cast<std::size_t>(3 * k));
  // (A report without per-column entries reads as its overall values.)
  auto entry = [](const auto &v, index_t j, auto fallback) {
    return static_cast<std::size_t>(j) < v.size() ? v[j] : fallback;
  };
  for (index_t j = 0; j < k; ++j) {
    cols[3 * j] = static_cast<double>(entry(mine.column_status, j, mine.status));
    cols[3 * j + 1] = entry(mine.column_iterations, j, mine.iterations);
    cols[3 * j + 2] = entry(mine.column_residuals, j, mine.residual);
  }
  const auto all = gather_per_column(comm, cols, parts, 3, MPI_DOUBLE, -1);
  SolveReport r;
  const index_t total = parts.total();
  r.column_status.resize(static_cast<std::size_t>(total));
  r.column_iterations.resize(static_cast<std::size_t>(total));
  r.column_residuals.resize(static_cast<std::size_t>(total));
  int status = 0;
  for (index_t j = 0; j < total; ++j) {
    r.column_status[j] = static_cast<SolveStatus>(static_cast<int>(all[3 * j]));
    r.column_iterations[j] = static_cast<int>(all[3 * j + 1]);
    r.column_residuals[j] = all[3 * j + 2];
    status = std::max(status, static_cast<int>(r.column_status[j]));
  }
  // Status, iterations and residual over the ranks with inputs.
  int worst[2] = {k > 0 ? std::max(status, static_cast<int>(mine.status)) : 0,
                  k > 0 ? mine.iterations : 0};
  MPI_Allreduce(MPI_IN_PLACE, worst, 2, MPI_INT, MPI_MAX, comm);
  r.status = static_cast<SolveStatus>(worst[0]);
  r.iterations = worst[1];
  double residual = k > 0 ? mine.residual : 0.0;
  MPI_Allreduce(MPI_IN_PLACE, &residual, 1, MPI_DOUBLE, MPI_MAX, comm);
  r.residual = residual;
  // The step history: the largest at each iteration.
  int length = k > 0 ? static_cast<int>(mine.step_history.size()) : 0;
  MPI_Allreduce(MPI_IN_PLACE, &length, 1, MPI_INT, MPI_MAX, comm);
  r.step_history.assign(static_cast<std::size_t>(length), 0.0);
  if (k > 0)
    std::copy(mine.step_history.begin(), mine.step_history.end(), r.step_history.begin());
  if (length > 0)
    MPI_Allreduce(MPI_IN_PLACE, r.step_history.data(), length, MPI_DOUBLE, MPI_MAX, comm);
  // Method and message of the first rank with inputs.
  int first = 0;
  while (first + 1 < parts.ranks() && parts.size(first) == 0)
    ++first;
  int method = static_cast<int>(mine.method);
  MPI_Bcast(&method, 1, MPI_INT, first, comm);
  r.method = static_cast<SolveMethod>(method);
  int length_message = static_cast<int>(mine.message.size());
  MPI_Bcast(&length_message, 1, MPI_INT, first, comm);
  r.message = mine.message;
  r.message.resize(static_cast<std::size_t>(length_message));
  MPI_Bcast(r.message.data(), length_message, MPI_CHAR, first, comm);
  return r;
}

CertifiedAccuracy gather_certificates(MPI_Comm comm, const CertifiedAccuracy &mine,
                                      const RowPartition &parts) {
  const int rank = rank_of(comm);
  const index_t k = parts.size(rank);
  const auto E = static_cast<int>(mine.eps.size());
  const int per = 4 + E;
  std::vector<double> packed(static_cast<std::size_t>(per * k));
  for (index_t j = 0; j < k && static_cast<std::size_t>(j) < mine.per_input.size(); ++j) {
    const Certificate &c = mine.per_input[j];
    double *v = packed.data() + per * j;
    v[0] = c.label;
    v[1] = c.predicted;
    v[2] = c.radius;
    v[3] = c.region_radius;
    for (int e = 0; e < E; ++e)
      v[4 + e] = e < static_cast<int>(c.certified.size()) && c.certified[e] ? 1.0 : 0.0;
  }
  const auto all = gather_per_column(comm, packed, parts, per, MPI_DOUBLE, 0);
  // Counts summed (every rank has one entry per eps, 0 without inputs).
  std::vector<std::int64_t> counts(static_cast<std::size_t>(2 + E), 0);
  counts[0] = k > 0 ? mine.count : 0;
  counts[1] = k > 0 ? mine.correct : 0;
  for (int e = 0; e < E; ++e)
    counts[2 + e] =
        k > 0 && e < static_cast<int>(mine.certified.size()) ? mine.certified[e] : 0;
  MPI_Reduce(rank == 0 ? MPI_IN_PLACE : counts.data(), counts.data(), 2 + E, MPI_INT64_T,
             MPI_SUM, 0, comm);
  double seconds = mine.seconds;
  MPI_Reduce(rank == 0 ? MPI_IN_PLACE : &seconds, &seconds, 1, MPI_DOUBLE, MPI_MAX, 0,
             comm);
  if (rank != 0)
    return mine;
  CertifiedAccuracy r;
  r.count = counts[0];
  r.correct = counts[1];
  r.eps = mine.eps;
  r.certified.assign(counts.begin() + 2, counts.end());
  r.seconds = seconds;
  r.per_input.resize(static_cast<std::size_t>(parts.total()));
  for (index_t j = 0; j < parts.total(); ++j) {
    const double *v = all.data() + per * j;
    Certificate &c = r.per_input[j];
    c.label = static_cast<int>(v[0]);
    c.predicted = static_cast<int>(v[1]);
    c.radius = v[2];
    c.region_radius = v[3];
    c.certified.resize(static_cast<std::size_t>(E));
    for (int e = 0; e < E; ++e)
      c.certified[e] = v[4 + e] != 0 ? 1 : 0;
  }
  return r;
}

template <class T>
SolveReport batch_predict(MPI_Comm comm, EquilibriumSolver<T> &solver,
                          const Model<T> &model, const Batch<T> &U, Batch<T> &Y,
                          Batch<T> *X, RankTimings *timings) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  detail::collective(comm, [&] {
    if (U.rows() != model.inputs())
      throw InvalidArgument("batch_predict: U has " + std::to_string(U.rows()) +
                            " rows, the model has p = " + std::to_string(model.inputs()) +
                            " inputs");
  });
  double t0 = now();
  const RowPartition parts = batch_partition(U.cols(), ranks, U.slab_width());
  const Batch<T> mine = own_columns(U, parts, rank);
  const double setup = now() - t0;
  t0 = now();
  Batch<T> Ymine, Xmine;
  SolveReport report = detail::collective(comm, [&] {
    if (mine.cols() == 0)
      return SolveReport{};
    return X ? solver.predict(mine, Xmine, Ymine) : solver.predict(mine, Ymine);
  });
  const double solve = now() - t0;
  t0 = now();
  if (mine.cols() == 0) {
    Ymine = Batch<T>(model.outputs(), 0);
    Xmine = Batch<T>(model.states(), 0);
  }
  Y = gather_columns(comm, Ymine, parts, model.outputs(), U.slab_width());
  if (X)
    *X = gather_columns(comm, Xmine, parts, model.states(), U.slab_width());
  report = gather_reports(comm, report, parts);
  const double output = now() - t0;
  if (timings) {
    gather_timing(comm, setup, timings->setup);
    gather_timing(comm, solve, timings->solve);
    gather_timing(comm, output, timings->output);
  }
  return report;
}

template <class T>
CertifiedAccuracy batch_certify(MPI_Comm comm, const BoundAnalyzer<T> &analyzer,
                                const Batch<T> &U, std::span<const int> labels,
                                std::span<const double> eps, bool radius,
                                const CertifyOptions &options, RankTimings *timings) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  detail::collective(comm, [&] {
    if (static_cast<index_t>(labels.size()) != U.cols())
      throw InvalidArgument("batch_certify: " + std::to_string(labels.size()) +
                            " labels for " + std::to_string(U.cols()) + " inputs");
  });
  const RowPartition parts = batch_partition(U.cols(), ranks, U.slab_width());
  const Batch<T> mine = own_columns(U, parts, rank);
  const double t0 = now();
  CertifiedAccuracy result = detail::collective(comm, [&] {
    if (mine.cols() == 0) {
      CertifiedAccuracy none;
      none.eps.assign(eps.begin(), eps.end());
      none.certified.assign(eps.size(), 0);
      return none;
    }
    return certify_dataset<T>(analyzer, mine,
                              labels.subspan(parts.begin(rank), mine.cols()), eps, radius,
                              options);
  });
  const double seconds = now() - t0;
  result = gather_certificates(comm, result, parts);
  if (timings)
    gather_timing(comm, seconds, timings->solve);
  return result;
}

template TACIT_EXPORT Batch<float> own_columns(const Batch<float> &, const RowPartition &,
                                               int);
template TACIT_EXPORT Batch<double> own_columns(const Batch<double> &,
                                                const RowPartition &, int);
template TACIT_EXPORT Batch<float> gather_columns(MPI_Comm, const Batch<float> &,
                                                  const RowPartition &, index_t, index_t);
template TACIT_EXPORT Batch<double>
gather_columns(MPI_Comm, const Batch<double> &, const RowPartition &, index_t, index_t);
template TACIT_EXPORT SolveReport batch_predict(MPI_Comm, EquilibriumSolver<float> &,
                                                const Model<float> &,
                                                const Batch<float> &, Batch<float> &,
                                                Batch<float> *, RankTimings *);
template TACIT_EXPORT SolveReport batch_predict(MPI_Comm, EquilibriumSolver<double> &,
                                                const Model<double> &,
                                                const Batch<double> &, Batch<double> &,
                                                Batch<double> *, RankTimings *);
template TACIT_EXPORT CertifiedAccuracy batch_certify(
    MPI_Comm, const BoundAnalyzer<float> &, const Batch<float> &, std::span<const int>,
    std::span<const double>, bool, const CertifyOptions &, RankTimings *);
template TACIT_EXPORT CertifiedAccuracy batch_certify(
    MPI_Comm, const BoundAnalyzer<double> &, const Batch<double> &, std::span<const int>,
    std::span<const double>, bool, const CertifyOptions &, RankTimings *);

} // namespace tacit::inline v1::mpi
