// Anderson acceleration across the ranks: the running sums of its inner
// products passed from each rank to the next in the order of the states,
// then broadcast from the last, so that the sums (and the states) are the
// same bits as the single-process solver's.

#include <climits>
#include <string>

#include "mpi/detail/chain.hpp"

namespace tacit::inline v1::mpi::detail {

namespace {

constexpr int kChainTag = 7417;

int count_of(std::span<double> v) {
  if (v.size() > static_cast<std::size_t>(INT_MAX))
    throw InvalidArgument("Anderson acceleration: " + std::to_string(v.size()) +
                          " inner-product sums exceed one MPI message (fewer inputs "
                          "or a smaller depth)");
  return static_cast<int>(v.size());
}

} // namespace

void set_rank_chain(StatePart<double> &part, const DistributedModel &model) {
  part.global_begin = model.own_begin();
  part.global_rows = model.n;
  const MPI_Comm comm = model.comm;
  const int rank = model.rank, ranks = model.ranks;
  part.receive_previous = [comm, rank](std::span<double> v) {
    const int count = count_of(v); // the same on every rank
    if (rank > 0)
      MPI_Recv(v.data(), count, MPI_DOUBLE, rank - 1, kChainTag, comm, MPI_STATUS_IGNORE);
  };
  part.send_next = [comm, rank, ranks](std::span<double> v) {
    const int count = count_of(v);
    if (rank + 1 < ranks)
      MPI_Send(v.data(), count, MPI_DOUBLE, rank + 1, kChainTag, comm);
  };
  part.broadcast_last = [comm, ranks](std::span<double> v) {
    MPI_Bcast(v.data(), count_of(v), MPI_DOUBLE, ranks - 1, comm);
  };
}

} // namespace tacit::inline v1::mpi::detail
