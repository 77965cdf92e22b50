#pragma once
/// \file mpi.hpp
/// Distributed implicit models on MPI with PETSc and SLEPc (component
/// tacit::mpi: `find_package(tacit COMPONENTS mpi)`, link `tacit::mpi`).
///
/// A CSR model's states are split across the ranks of a communicator into
/// contiguous ranges that balance nonzeros plus rows of A (the cost model of
/// tacit's thread partition); each rank holds its rows of A, B, the biases and
/// the activations, and its share of the rows of C (outputs split evenly).
/// D and c, which act on inputs and outputs only, are held by rank 0, which
/// also receives the outputs. The Picard iteration and the products with A
/// and |A| (the lambda_PF enclosure, the sensitivity rows, the bounds; a
/// PETSc shell matrix, tacit/mpi/product.hpp) run tacit's own CSR kernel on
/// each rank's rows, PETSc moving the neighbours' states, so that the states
/// and the products are the same bits as the single-process ones. PETSc
/// MatMPIAIJ matrices built from the CSR arrays (no text round trip) serve
/// where PETSc computes itself: C x, B^T and C^T in the sensitivity rows,
/// the norms, and SLEPc's estimate.
///
/// Values are float64 (PETSc's scalar); a float32 native file is widened on
/// reading, as `load_model<double>` does.
///
/// Errors are collective: a call that fails on one rank (a rank that cannot
/// read its part of a file, say) throws on every rank, the same exception
/// type and message naming the rank that failed, so that no rank waits for
/// the others forever. error_on_every_rank() tells such an error from one
/// that only the calling rank saw (a program should MPI_Abort on those).
///
/// Thread safety: the calls are collective over the model's communicator:
/// every rank makes the same calls in the same order, from one thread.

#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <mpi.h>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>
#include <tacit/solve/solve.hpp>

namespace tacit::inline v1::mpi {

/// PETSc and SLEPc (and MPI, when the program has not initialised it) for
/// the lifetime of the object; finalised in reverse. One per program, made
/// before any other call of this header.
class TACIT_EXPORT Environment {
public:
  /// \throws Error when PETSc or SLEPc cannot be initialised.
  Environment(int &argc, char **&argv);
  ~Environment();
  Environment(const Environment &) = delete;
  Environment &operator=(const Environment &) = delete;
};

/// Contiguous ranges: rank r owns [starts[r], starts[r + 1]).
struct TACIT_EXPORT RowPartition {
  std::vector<index_t> starts; ///< size ranks + 1, starts[0] = 0
  int ranks() const noexcept { return static_cast<int>(starts.size()) - 1; }
  index_t begin(int r) const noexcept { return starts[r]; }
  index_t end(int r) const noexcept { return starts[r + 1]; }
  index_t size(int r) const noexcept { return starts[r + 1] - starts[r]; }
  index_t total() const noexcept { return starts.back(); }
};

/// The split of `rows` rows into `ranks` ranges of about equal nonzeros plus
/// rows: boundary r is the smallest row i with row_ptr(i) + i >= r (nnz +
/// rows) / ranks. row_ptr(i) is the global row pointer at i (a reader answers
/// it from the file without holding the row pointers).
/// \throws InvalidArgument for ranks < 1 or non-monotone row pointers.
TACIT_EXPORT RowPartition balanced_partition(
    index_t rows, int ranks, const std::function<std::int64_t(index_t)> &row_ptr);
/// `rows` split into `ranks` ranges of equal size (within one).
TACIT_EXPORT RowPartition even_partition(index_t rows, int ranks);

/// One rank's rows of a distributed sparse matrix.
struct TACIT_EXPORT DistributedCsr {
  index_t rows = 0, cols = 0; ///< global size
  index_t row_begin = 0;      ///< global index of local row 0
  std::int64_t global_nnz = 0;
  /// The own rows, (row_end - row_begin) x cols, global column indices.
  CsrMatrix<double> local;
  index_t row_end() const noexcept { return row_begin + local.rows(); }
};

/// A CSR model distributed by states (see the file comment). Every rank holds
/// the dimensions, the partitions and the block table; `A`, `B`, `bias_x`
/// and `activations` hold the own states; `C` the own outputs; `D` (null
/// when D = 0) and `bias_y` are held by rank 0 only.
struct TACIT_EXPORT DistributedModel {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, ranks = 1;
  index_t n = 0, p = 0, q = 0;
  RowPartition states;  ///< rows of A, B, b
  RowPartition outputs; ///< rows of C
  DistributedCsr A, B, C;
  std::vector<double> bias_x;                 ///< own states
  std::vector<Activation> activations;        ///< own states
  std::vector<StateBlock> blocks;             ///< the whole table
  std::shared_ptr<const CsrMatrix<double>> D; ///< rank 0 (null: D = 0)
  std::vector<double> bias_y;                 ///< rank 0

  index_t own_begin() const noexcept { return states.begin(rank); }
  index_t own_end() const noexcept { return states.end(rank); }
  /// Bytes this rank holds for the model (CSR arrays and vectors).
  std::size_t local_bytes() const;
};

/// Reads a native model file (`.tacit`, version 1 or 2 with CSR sections)
/// in parallel: each rank reads the header, the section table, the row
/// pointers at the partition boundaries (a binary search in the file) and
/// then only its own rows of A, B and C and its slice of b; rank 0 reads D
/// and c. No rank reads or holds the whole matrices. Collective.
/// Section checksums are not verified (a rank reads only a slice of a
/// section); everything read is checked (monotone row pointers, columns in
/// range and increasing, finite values, dimensions across sections).
/// \throws FileError (file, offset or row, problem; on every rank);
/// InvalidArgument when the partition would leave a rank without states or
/// the model exceeds PETSc's 32-bit indices; Unsupported for structured
/// operators.
/// `memory_budget` > 0: the bytes one rank may hold for its share of the
/// model; a rank whose rows would need more (counted from the row pointers
/// before anything else is read) refuses, on every rank, naming its bytes.
/// A directory is read as a model directory, each rank reading its share of
/// the Matrix Market files (load_distributed_model_directory, matrix_market.hpp).
TACIT_EXPORT DistributedModel load_distributed_model(const std::filesystem::path &path,
                                                     MPI_Comm comm = MPI_COMM_WORLD,
                                                     std::size_t memory_budget = 0);

/// The same from a model that every rank holds (operators as CSR): each rank
/// keeps its own rows. For programs that build their model in memory, and for
/// tests. \throws InvalidArgument as above.
TACIT_EXPORT DistributedModel distribute_model(const Model<double> &model,
                                               MPI_Comm comm = MPI_COMM_WORLD);

/// Seconds of the phases of a distributed call on each rank (gathered on
/// rank 0; other ranks hold their own only).
struct TACIT_EXPORT RankTimings {
  std::vector<double> setup;  ///< local matrix, communication plan, PETSc objects
  std::vector<double> solve;  ///< the iteration (Picard, power iteration)
  std::vector<double> output; ///< y = C x + D u + c and the gather to rank 0
};

/// Picard x <- phi(A x + B u + b) for the inputs U (p x k, the same on every
/// rank) with the stopping rule, per-column status, residuals and step
/// history of the single-process Picard solver (SolveMethod::picard), plain
/// or with Anderson acceleration (options.anderson_depth > 0: its inner
/// products summed in the single-process order, their running sums passed
/// from rank to rank in the order of the states and broadcast from the last
/// rank once per iteration); then Y = C X + D U + c (q x k)
/// on rank 0 (left empty elsewhere), in input order. The states (own rows,
/// returned in `X_own` when given: (own_end - own_begin) x k) are the same
/// bits as the single-process solver's; Y agrees to rounding (C x is summed by
/// PETSc). The report is the same on every rank. Collective.
/// \throws InvalidArgument when U does not have p rows or options are bad.
TACIT_EXPORT SolveReport distributed_predict(const DistributedModel &model,
                                             const Batch<double> &U, Batch<double> &Y,
                                             const PicardOptions &options = {},
                                             RankTimings *timings = nullptr,
                                             Batch<double> *X_own = nullptr);

/// A certified interval for lambda_PF(|A|) from a distributed power iteration
/// on |A| (tacit's CSR kernel on each rank's rows, DistributedProduct: each
/// product the same bits as the single-process one) with Collatz-Wielandt
/// bounds: min and max over
/// all rows of (|A| v)_i / v_i (MPI_Allreduce), widened by the rounding
/// allowance of the single-process enclosure (perron_frobenius_bound) and
/// rounded outward, so they hold for the exact matrix whatever v is. The
/// iteration is shifted as there (v <- (|A| + s I) v, s half the estimate);
/// it runs on the whole |A| (no strongly connected components across ranks,
/// no shift-invert steps): the bounds are as valid, but for a reducible A the
/// lower bound may stay below the single-process one. options.shift_invert
/// is ignored. The result is the same on every rank. Collective.
TACIT_EXPORT PerronBound distributed_perron_bound(const DistributedModel &model,
                                                  const PerronOptions &options = {},
                                                  RankTimings *timings = nullptr);

/// SLEPc's estimate of lambda_PF(|A|) (Krylov-Schur, largest magnitude, on
/// |A| as a PETSc MatMPIAIJ), for comparison: not certified. NaN when SLEPc did not
/// converge. Collective.
TACIT_EXPORT double slepc_spectral_radius_estimate(const DistributedModel &model,
                                                   double tolerance = 1e-10);

/// The norms ||A||_inf and ||A||_1 of the distributed A (PETSc MatNorm on
/// the rows of every rank). Collective.
TACIT_EXPORT std::pair<double, double> distributed_norms(const DistributedModel &model);

/// Makes a failure on some ranks a failure on every rank: when `error` is
/// set on any rank, throws on every rank the error of the lowest failing
/// rank (same kind, its message naming the rank); returns on every rank
/// otherwise. For a program's own steps (reading its inputs on every rank,
/// writing the outputs on rank 0). Collective.
TACIT_EXPORT void collective_check(MPI_Comm comm, std::exception_ptr error);

/// True when `e` was thrown by a collective call of this header on every
/// rank of its communicator (then the ranks may exit normally); false for
/// an error only the calling rank knows of (then MPI_Abort).
TACIT_EXPORT bool error_on_every_rank(const std::exception &e) noexcept;

} // namespace tacit::inline v1::mpi
