#pragma once
// The hooks that let picard_solve_part form Anderson's inner products in the
// single-process order across the ranks (see tacit/solve/partitioned.hpp).

#include <tacit/mpi/mpi.hpp>
#include <tacit/solve/partitioned.hpp>

namespace tacit::inline v1::mpi::detail {

/// Sets part.global_begin, part.global_rows and the hooks receive_previous,
/// send_next and broadcast_last of `part` for the model's state partition:
/// point-to-point messages from rank r to rank r + 1, then a broadcast from
/// the last rank. The model must outlive the hooks.
void set_rank_chain(StatePart<double> &part, const DistributedModel &model);

} // namespace tacit::inline v1::mpi::detail
