#pragma once
// Block sweep for x = phi(A x + B u + b) when A has a block structure
// (the BlockStructured capability) with a square partition that is block
// lower triangular (a network built by NetworkBuilder): state block i is
//   x_i = phi(sum_{j<i} A_ij x_j + sum_m B_im u_m + b_i (+ A_ii x_i)),
// computed in block order with the blocks' own (structured) kernels, one
// pass for a strictly block lower triangular A; a block with diagonal
// entries is solved by Picard on that block. Nothing is materialised: the
// plan only holds pointers to the operators.
//
// Work: slabs of the batch run in parallel (TBB), the blocks of a slab in
// order, each product with the operator's own parallel kernel (nested), so
// the result does not depend on the thread count. Z = B U + b is never
// formed as a whole: each block row starts from its bias and adds the
// products of B's nonzero blocks in that row.

#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>

#include "solve/detail/fixed_point.hpp"

namespace tacit::inline v1::detail {

template <class T> struct BlockSweepRow {
  index_t offset = 0, size = 0;
  Activation activation;
  /// Products added into the row: (operator, source state block) for A;
  /// (operator, first input row) for B.
  std::vector<std::pair<const LinearOperator<T> *, index_t>> from_states, from_inputs;
  /// An operator among the products (of A or B) with a fused activation
  /// (a convolution), run last with the bias and the activation fused into
  /// its store (feed-forward rows only), or null.
  const LinearOperator<T> *fused = nullptr;
  const FusedActivation<T> *fused_hook = nullptr;
  /// The fused product's source: its first input row (from_inputs) or its
  /// state block.
  index_t fused_first = 0;
  bool fused_from_inputs = false;
  /// With `fused`: a skip connection (an operator stored as a scaled identity,
  /// from state block residual_first) added in the same store instead of
  /// in a pass of its own.
  const LinearOperator<T> *residual = nullptr;
  T residual_scale = T(1);
  index_t residual_first = 0;
  /// Diagonal block (sum of A's entries at (i, i)) or null.
  OperatorPtr<T> diagonal;
  std::unique_ptr<FixedPointSystem<T>> system;
  std::vector<Activation> activations; // for the system (one per state)
};

/// Where the state blocks of one slab live: block i at rows
/// [address[i], address[i] + size_i) of a slab of `rows` rows. The full
/// layout is the model's own (address = state offset, rows = n); a compact
/// layout lets blocks whose readers are done share rows.
struct BlockLayout {
  std::vector<index_t> address;
  index_t rows = 0;
};

template <class T> class BlockSweepPlan {
public:
  /// A's block structure must be square-partitioned and block lower
  /// triangular (checked by `applicable`). When B has a block structure whose
  /// row partition is A's, its blocks are applied row by row; otherwise
  /// `uses_z` is true and the caller passes Z = B U + b.
  BlockSweepPlan(const Model<T> &model);
  /// Whether the model's A has the structure this plan needs.
  static bool applicable(const Model<T> &model);

  index_t n = 0;
  bool uses_z = false;
  bool feed_forward = true; // no diagonal blocks
  std::vector<BlockSweepRow<T>> rows;
  std::vector<T> bias;
  std::string summary; // "block sweep over 19 state blocks ..."

  /// The model's own layout: every state at its index.
  BlockLayout full_layout() const;
  /// A layout in which a block's rows are reused once every block that reads
  /// it (through A, or through C: those live to the end) has been computed;
  /// addresses are multiples of 16 states. Null when C has no block structure
  /// over A's partition (then every state may be read by the outputs).
  std::optional<BlockLayout> compact_layout(const Model<T> &model) const;
};

template <class T> struct BlockSweepWork {
  std::vector<FixedPointWork<T>> per_slab; // diagonal blocks
  std::vector<double> nonfinite;           // per column: sum of c * 0
  std::vector<int> iterations;             // per column
  std::vector<unsigned char> status;       // per column
  std::vector<double> residual;            // per column
};

/// Slab buffers that the slabs of an outputs-only sweep take in turn: a
/// slab's states live in one buffer (layout.rows x width) for its sweep and
/// the buffer goes back when the slab's outputs are formed. Each slab's
/// sweep then runs isolated (a thread waiting inside it starts no other
/// slab), so a batch of many slabs touches one buffer per thread, not one
/// per slab: fewer pages first touched (page faults), warmer caches. New
/// buffers are zeroed; a buffer keeps its last slab's values (a slab writes
/// every state it reads).
template <class T> class SlabRowsPool {
  // On huge pages (from 4 MB): a pooled buffer lives as long as its solver,
  // and mapping it in 2 MB pages makes the first solve cheaper (ResNet20
  // float32 at 128: first solve 57 -> 46 ms, 1.45 -> 1.18x the warm one, on
  // the AVX-512 host whose page faults trap to the hypervisor).
  using Buffer = std::vector<T, UninitAllocator<T, 64, true>>;

public:
  class Lease {
  public:
    Lease(SlabRowsPool &pool, std::size_t size);
    Lease(const Lease &) = delete;
    Lease &operator=(const Lease &) = delete;
    ~Lease();
    T *data() const noexcept { return buf_->data(); }

  private:
    SlabRowsPool *pool_;
    std::unique_ptr<Buffer> buf_;
  };
  /// Buffers allocated so far (at most the number of threads that ran slabs).
  std::size_t buffers() const noexcept { return allocated_; }
  /// Takes `other`'s buffers (a solver rebuilt for a same-shaped model keeps
  /// its pages). Neither pool may be in use.
  void adopt(SlabRowsPool &other) {
    free_ = std::move(other.free_);
    allocated_ = other.allocated_;
    other.free_.clear();
    other.allocated_ = 0;
  }

private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<Buffer>> free_;
  std::size_t allocated_ = 0;
};

/// Columns [first, first + cols) of slab `slab`: what one task sweeps.
struct SlabPiece {
  index_t slab = 0, first = 0, cols = 0;
};

/// Columns per piece: the slab width, or, when a feed-forward batch has
/// fewer slabs than threads, slabs cut in pieces of a multiple of 16 columns
/// (whole 64-byte lines of float) so that each thread sweeps columns of its
/// own. One thread sweeping its own columns through every layer keeps them
/// in its cache and waits on no other (ResNet20 float32, one slab of 32 on 2
/// threads: 11.5 -> 9 ms); every kernel's result for a column is
/// independent of the columns beside it, so the outputs keep their bits.
/// Narrower pieces lose more to the kernels' vector tails than they gain.
template <class T>
index_t sweep_piece_width(const BlockSweepPlan<T> &plan, index_t width, index_t slabs,
                          index_t threads) {
  constexpr index_t step = 16;
  if (!plan.feed_forward || slabs >= threads || width < 2 * step)
    return width;
  const index_t pieces = std::min((threads + slabs - 1) / slabs, width / step);
  return (width / pieces + step - 1) / step * step;
}

/// Runs the sweep on X (slab-major at `x`, `slabs` slabs of n x width, `cols`
/// real columns) for inputs U (its slab boundaries must be X's) or Z (when
/// plan.uses_z; same layout as X), one task per piece of a slab
/// (sweep_piece_width). Fills the report's per-column fields. With
/// `shared`, x is not used: each piece's states are in a buffer of `shared`
/// (layout.rows x ld, ld the piece width), and piece_done(piece, xs, ld) is
/// called with them at the end of the piece's sweep (in its task).
template <class T>
void run_block_sweep(
    const BlockSweepPlan<T> &plan, const BlockLayout &layout, BlockSweepWork<T> &work,
    T *x, index_t width, index_t slabs, index_t cols, const Batch<T> &U, const T *z,
    const PicardOptions &options, bool warm_start, SolveReport &report,
    SlabRowsPool<T> *shared = nullptr,
    const std::type_identity_t<std::function<void(const SlabPiece &, const T *, index_t)>>
        &piece_done = {});

/// Y = C X + D U + c from states held in `layout` (slab s of X at
/// x + s * layout.rows * width), in the order of Model::output (the same
/// bits). C must have a block structure over A's partition.
template <class T>
void block_sweep_outputs(const Model<T> &model, const BlockLayout &layout, const T *x,
                         const Batch<T> &U, Batch<T> &Y);

/// A piece of block_sweep_outputs (the same bits) from that piece's states
/// at xs (leading dimension ld); Y must already have U's columns and slab
/// width.
template <class T>
void block_sweep_outputs_piece(const Model<T> &model, const BlockLayout &layout,
                               const T *xs, index_t ld, const Batch<T> &U, Batch<T> &Y,
                               const SlabPiece &piece);

/// Slab s of block_sweep_outputs: the piece of all its columns.
template <class T>
void block_sweep_outputs_slab(const Model<T> &model, const BlockLayout &layout,
                              const T *xs, const Batch<T> &U, Batch<T> &Y, index_t s) {
  block_sweep_outputs_piece(model, layout, xs, U.slab_width(), U, Y,
                            SlabPiece{s, 0, U.slab_cols(s)});
}

} // namespace tacit::inline v1::detail
