#pragma once
// Block-triangular sweep for x = phi(A x + z).
//
// At prepare time the rows of A are copied in sweep order (levels of the SCC
// DAG; within a level the 1x1 blocks first, then the cyclic blocks), with the
// diagonal of 1x1 blocks split out and, for rows of cyclic blocks, only the
// entries outside the block kept (the block itself, A_BB, becomes a local CSR
// matrix solved by the fixed-point engine). The sweep then streams these
// arrays once, in order. Explicit zeros are dropped: they are not edges of
// the SCC graph and would read states that are not computed yet.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <tbb/enumerable_thread_specific.h>

#include <tacit/solve/solve.hpp>

#include "solve/detail/fixed_point.hpp"

namespace tacit::inline v1::detail {

template <class T> struct SweepBlock {
  index_t p0 = 0, p1 = 0; // sweep positions
  index_t level = 0;
  bool big = false;   // solved with parallel passes over all slabs
  CsrMatrix<T> local; // A_BB with local indices
  std::unique_ptr<FixedPointSystem<T>> system;
};

struct SweepLevel {
  index_t p0 = 0, singles_end = 0, p1 = 0; // singletons in [p0, singles_end)
  index_t block0 = 0, block1 = 0;          // cyclic blocks of the level
};

/// A unit of parallel work in a stage: a range of 1x1 rows, or a small block.
struct SweepTask {
  index_t p0 = 0, p1 = 0;
  index_t block = -1;
};

/// A run of small levels done level by level by one task per slab (serial),
/// or one level split into tasks (parallel) followed by its big blocks.
struct SweepStage {
  bool serial = true;
  index_t level0 = 0, level1 = 0;
  std::vector<SweepTask> tasks;
  std::vector<index_t> big_blocks;
};

/// Row kinds in sweep order.
enum SweepRowKind : unsigned char {
  row_plain = 0,     // 1x1 block without diagonal: x = phi(c)
  row_diagonal = 1,  // 1x1 block with a_ii != 0: scalar solve
  row_ill_posed = 2, // 1x1 block whose scalar equation is not uniquely solvable
  row_cyclic = 3     // row of a cyclic block
};

template <class T> class SweepPlan {
public:
  /// `describe(i)` names state i in messages.
  SweepPlan(const CsrMatrix<T> &A, std::span<const Activation> activations,
            const SccDecomposition &scc,
            const std::function<std::string(index_t)> &describe);

  index_t n = 0;
  aligned_vector<index_t> row_of; // position -> state
  aligned_vector<std::int64_t> ptr;
  aligned_vector<std::int32_t> cols32; // used when !wide
  aligned_vector<std::int64_t> cols64;
  bool wide = false;
  aligned_vector<T> vals, diag;
  std::vector<unsigned char> kind;
  std::vector<Activation> act; // per position
  /// Per position: the number of rows from here (<= 255) that share their
  /// columns after `twin_heads` leading entries (1: alone); see the SpMM's
  /// RowSchedule. Batched sweeps compute such rows together.
  std::vector<unsigned char> twins, twin_heads;
  std::vector<SweepLevel> levels;
  std::vector<SweepBlock<T>> blocks;
  std::vector<SweepStage> stages;
  std::function<std::string(index_t)> describe;
  /// Structurally ill-posed 1x1 blocks (count and the first messages).
  index_t ill_posed_count = 0;
  std::vector<std::string> ill_posed;
  index_t cyclic_states = 0, largest_block = 0;
  index_t max_tasks = 0; // largest task count of a stage (per slab)

  template <class F> decltype(auto) with_columns(F &&f) const {
    if (wide)
      return f(cols64.data());
    return f(cols32.data());
  }
};

/// Per-task results of a stage (W columns).
struct SweepPartial {
  std::vector<double> residual;
  std::vector<double> nonfinite;    // sum of c * 0: NaN iff some c was not finite
  std::vector<unsigned char> flags; // 1 = non-finite, 2 = ill-posed
  std::vector<int> iterations;
  std::vector<unsigned char> status;
  // First ill-posed row (smallest position) and first failing block.
  index_t ill_position = -1, ill_column = 0;
  double ill_c = 0;
  index_t fail_block = -1, fail_column = 0;
  SolveStatus fail_status = SolveStatus::converged;
  double fail_residual = 0;
  void reset(index_t width);
};

/// SweepPartial::flags bits.
inline constexpr unsigned char sweep_flag_non_finite = 1, sweep_flag_ill_posed = 2;

/// Records that column `col` met an ill-posed scalar equation at position p
/// (the first such position is kept, with its c).
inline void sweep_mark_ill_posed(SweepPartial &part, index_t p, index_t col, double c) {
  part.flags[col] |= sweep_flag_ill_posed;
  if (part.ill_position < 0) {
    part.ill_position = p;
    part.ill_column = col;
    part.ill_c = c;
  }
}

template <class T> struct SweepWork {
  tbb::enumerable_thread_specific<FixedPointWork<T>> small;
  FixedPointWork<T> big;
  std::vector<SweepPartial> partials;
  // Per column of the batch.
  std::vector<double> residual;
  std::vector<unsigned char> flags, status;
  std::vector<int> iterations;
};

/// Sweeps the batch: X (n x k) from Z = B U + b (same shape; X holds the
/// starting iterate of cyclic blocks when warm_start). Fills the per-column
/// parts of `report` (status, residual, iterations) and a message.
template <class T>
void run_sweep(const SweepPlan<T> &plan, SweepWork<T> &work, SlabView<const T> Z,
               SlabView<T> X, const PicardOptions &options, bool warm_start,
               const std::function<void(int, double)> &progress, SolveReport &report);

} // namespace tacit::inline v1::detail
