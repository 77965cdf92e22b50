#pragma once
// `tacit-mpi solve|certify` distributed by batch (data parallel over the
// inputs): for structured models (native files with operator trees, such as
// `tacit export-resnet20`'s ResNet20) and, with --by batch, for any model;
// and `tacit-mpi certify` of a CSR model distributed by states.

#include <optional>

#include <mpi.h>
#include <nlohmann/json.hpp>

#include <tacit/mpi/mpi.hpp>

namespace tacit::mpi_cli {

/// Runs the command of argv when it is distributed by batch (`solve` or
/// `certify` on a structured native model file, or with `--by batch`) and
/// `certify` of a CSR model by states.
/// Returns its exit code (every rank the same, an error reported by every
/// rank); nullopt when the command is not for this path (the caller then runs
/// the state-distributed commands).
std::optional<int> run_batch_command(int argc, char **argv, MPI_Comm comm);

/// The help text of these commands (appended to tacit-mpi --help).
const char *batch_usage_text();

/// The partition of a model distributed by states for the JSON reports:
/// states, outputs, nonzeros of A and bytes of each rank. Collective.
nlohmann::json states_partition_json(const mpi::DistributedModel &model);

} // namespace tacit::mpi_cli
