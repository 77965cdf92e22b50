#pragma once
/// \file partitioned.hpp
/// Picard iteration on a part of the states: the building block of a
/// distributed solve (tacit::mpi runs it on every MPI rank, PETSc moving the
/// neighbours' states between iterations).
///
/// A process owns the states [begin, end) of a local index space of m
/// states: its own states and the other processes' states that its rows of A
/// read (ghosts), all in increasing global order. The local A (m x m) holds
/// the process's rows of the global A at [begin, end), with their columns
/// mapped to local indices; the other rows are empty. An increasing map keeps
/// the column order of every row, hence the summation order of the
/// single-process solver: the states are the same bits as a
/// picard_solve / EquilibriumSolver(picard) run on the whole model, and so
/// are the status, iterations, step history and residual of every column
/// (each a maximum over the processes, which is exact). With Anderson
/// acceleration the inner products of the mixing step are sums over all
/// states: they are formed in the single-process order by passing running
/// sums along the processes in the order of their states (the hooks
/// receive_previous, send_next, broadcast_last), so that the states stay the
/// same bits as the single-process solver's.
///
/// Thread safety: reentrant; the hooks are called from the calling thread.

#include <functional>
#include <span>

#include <tacit/core/export.hpp>
#include <tacit/solve/solve.hpp>

namespace tacit::inline v1 {

/// The part of the states one process iterates, and how it talks to the
/// others. Both hooks are collective: every process makes the same calls in
/// the same order.
template <class T> struct StatePart {
  index_t begin = 0; ///< first own state (local index)
  index_t end = 0;   ///< one past the last own state
  /// Brings the ghost rows of one slab of the iterate (m x width row-major,
  /// ld = width) up to date from their owners. May be empty (one process).
  std::function<void(T *slab, index_t width)> exchange;
  /// Replaces every value by its maximum over all processes (the same count
  /// on every process). May be empty (one process).
  std::function<void(std::span<double> values)> max_reduce;
  /// Anderson acceleration only. The global index of the own state `begin`
  /// and the number of states of the whole model (0: the own states are the
  /// whole model, one process).
  index_t global_begin = 0;
  index_t global_rows = 0;
  /// Anderson acceleration only, collective, called in this order, each
  /// with the same count on every process: overwrite `values` with those
  /// the process owning the states just before this one's passed on
  /// (nothing on the first process); pass `values` to the process owning the
  /// states just after (nothing on the last); overwrite `values` with those
  /// of the last process. May be empty for one process.
  std::function<void(std::span<double> values)> receive_previous;
  std::function<void(std::span<double> values)> send_next;
  std::function<void(std::span<double> values)> broadcast_last;
};

/// Picard x <- phi(A x + B u + b) on the own states of `part`, from x = 0,
/// plain or with Anderson acceleration (options.anderson_depth), with the
/// stopping rule of PicardOptions (options.warm_start is ignored). A is the
/// local m x m matrix, `activations` has m entries (those of ghosts are not
/// used), B the own rows of the global B ((end - begin) x p), `bias` the own
/// entries of b, U the p x k inputs (all of them, on every process). X
/// becomes m x k with U's slab width; its rows [begin, end) are the result
/// (the ghost rows hold the neighbours' states of the last exchange). The
/// report's residual, status and iterations are those of the whole model.
/// \throws InvalidArgument on inconsistent sizes, a part outside [0, m), or
/// (Anderson) own states outside [0, global_rows) or, on a part of the
/// states, a missing hook.
template <class T>
TACIT_EXPORT SolveReport picard_solve_part(const CsrMatrix<T> &A,
                                           std::span<const Activation> activations,
                                           const LinearOperator<T> &B,
                                           std::span<const T> bias, const Batch<T> &U,
                                           Batch<T> &X, const PicardOptions &options,
                                           const StatePart<T> &part,
                                           Execution exec = Execution::parallel);

} // namespace tacit::inline v1
