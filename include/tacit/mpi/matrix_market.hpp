#pragma once
/// \file matrix_market.hpp
/// Model directories (Matrix Market) read in parallel (component tacit::mpi):
/// each rank reads an equal byte range of a matrix file's entries and sends
/// every entry to the rank that owns its row, so that no rank reads or holds
/// the whole matrix.
///
/// Thread safety: the calls are collective over the communicator (every rank
/// makes the same calls in the same order, from one thread). Errors are
/// collective as in mpi.hpp.

#include <cstdint>
#include <filesystem>
#include <functional>

#include <tacit/core/export.hpp>
#include <tacit/mpi/mpi.hpp>

namespace tacit::inline v1::mpi {

/// Reads a Matrix Market coordinate file (real, integer or pattern; general,
/// symmetric or skew-symmetric: the mirror entries are expanded) in
/// parallel: every rank reads the banner and the size line, then the lines
/// that start in its equal share of the file's bytes, checks them (indices in
/// range, finite values, the lower triangle of a symmetric file, the entry
/// count of the size line) and sends each entry to the owner of its row;
/// the owners sort their rows by column and refuse duplicates (naming both
/// lines). `partition` empty (no starts): the rows are split as
/// balanced_partition splits them (nonzeros plus rows; every rank then holds
/// a count per row, 8 bytes a row, while reading; a rank left without rows is
/// refused); else the given split of the rows (ranks may be empty). `admit(own_nnz)` (may
/// be empty), called on every rank before its rows are gathered, may refuse by throwing.
/// Array files are refused (convert the model to a native file: `tacit convert DIR
/// model.tacit`). \throws FileError naming the file, the line and the problem (on every
/// rank); InvalidArgument when the partition leaves a rank without rows.
TACIT_EXPORT DistributedCsr read_distributed_matrix_market(
    const std::filesystem::path &path, RowPartition &partition,
    MPI_Comm comm = MPI_COMM_WORLD, const std::function<void(std::int64_t)> &admit = {});

/// A model directory (A.mtx, B.mtx, C.mtx, optional D.mtx, bx.txt, by.txt,
/// model.json; see io.hpp) distributed as load_distributed_model distributes
/// a native file: A's rows balanced, B's with them, C's split evenly; D and
/// c on rank 0 (read there whole). Each rank keeps only its slice of b.
/// `memory_budget` as for load_distributed_model (counted from A's and B's
/// rows before they are gathered). load_distributed_model calls this for a
/// directory.
/// \throws FileError (every rank): unreadable or malformed files, dimension
/// mismatches between the files (naming both); InvalidArgument as
/// load_distributed_model.
TACIT_EXPORT DistributedModel load_distributed_model_directory(
    const std::filesystem::path &dir, MPI_Comm comm = MPI_COMM_WORLD,
    std::size_t memory_budget = 0);

} // namespace tacit::inline v1::mpi
