#pragma once
// Fixed-point engine for x = phi(M x + c) on slab-major batches: plain or
// Anderson-accelerated Picard with per-column stopping, used for the whole
// model (SolveMethod::picard) and for each cyclic block of a sweep.

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include <tacit/solve/solve.hpp>

#include "core/detail/slab_buffer.hpp"

namespace tacit::inline v1::detail {

/// The map x -> phi(M x + c): M as CSR arrays (fused product + activation) or
/// as a general operator (product into a buffer, then activation).
template <class T> class FixedPointSystem {
public:
  /// M must outlive the system. `activations` has one entry per row.
  FixedPointSystem(const CsrMatrix<T> &M, std::span<const Activation> activations);
  FixedPointSystem(const LinearOperator<T> &M, std::span<const Activation> activations);
  /// Only rows [row_begin, row_end) of the square CSR M are iterated (a
  /// process's own states in a distributed solve); the other rows of every
  /// iterate are the neighbours' states, brought in by FixedPointRun::exchange.
  FixedPointSystem(const CsrMatrix<T> &M, std::span<const Activation> activations,
                   index_t row_begin, index_t row_end);

  index_t rows() const noexcept { return rows_; }
  bool is_csr() const noexcept { return csr_ != nullptr; }
  const CsrMatrix<T> *csr() const noexcept { return csr_; }
  const LinearOperator<T> &op() const noexcept { return *op_; }
  const Activation *activations() const noexcept { return act_.data(); }
  /// Row ranges of about equal work for parallel passes (bounds, size parts + 1),
  /// covering the iterated rows.
  std::span<const index_t> parts() const noexcept { return parts_; }

private:
  const CsrMatrix<T> *csr_ = nullptr;
  const LinearOperator<T> *op_ = nullptr;
  index_t rows_ = 0;
  std::vector<Activation> act_;
  std::vector<index_t> parts_;
};

/// Per-column bookkeeping of one fixed-point run.
struct ColumnState {
  SolveStatus status = SolveStatus::converged;
  bool active = false;
  int iterations = 0;
  double step = 0;     // last ||x_{t+1} - x_t||_inf (= ||g(x_t) - x_t||_inf)
  double norm = 0;     // last ||g(x_t)||_inf
  double min_step = 0; // smallest step so far
  double residual = 0; // ||x - g(x)||_inf at the returned x
  // Anderson state.
  int history = 0; // valid difference pairs in the ring
  bool have_previous = false;
  bool mixed_last = false; // the current iterate came from a mixed step
  double previous_residual = 0;
  unsigned char mode = 0; // what the update pass does with this column
};

/// Workspace of the engine: grown on demand, never shrunk, so that repeated
/// runs of the same shape allocate nothing.
template <class T> class FixedPointWork {
public:
  /// Makes room for `slabs` slabs of rows x width, Anderson depth `depth`,
  /// `parts` row parts per slab, the operator product buffer and the c
  /// buffer if asked. Allocates only when a size grows.
  void reserve(index_t rows, index_t slabs, index_t width, int depth, index_t parts,
               bool operator_buffer, bool c_buffer);

  index_t rows() const noexcept { return rows_; }
  index_t width() const noexcept { return width_; }
  int depth() const noexcept { return depth_; }
  index_t parts() const noexcept { return parts_; }
  index_t slab_size() const noexcept { return rows_ * width_; }

  /// The iterate of slab s after run() (rows x width, ld = width), and the
  /// buffer the caller fills before run() (zero or warm start).
  T *current(index_t s) noexcept;
  T *initial(index_t s) noexcept { return x_[0].data() + s * slab_size(); }
  /// A rows x width buffer per slab for the caller's c (sweep blocks).
  T *c_buffer(index_t s) noexcept { return c_.data() + s * slab_size(); }
  ColumnState &column(index_t j) noexcept { return columns_[j]; }
  const ColumnState &column(index_t j) const noexcept { return columns_[j]; }

private:
  template <class U> friend struct FixedPointRunner;
  index_t rows_ = 0, slabs_ = 0, width_ = 0, parts_ = 0;
  int depth_ = 0;
  aligned_vector<T> x_[2], c_, y_;
  // Anderson: current and previous g, previous f, rings of differences.
  aligned_vector<T> g_, g_prev_, f_prev_, dF_, dG_;
  std::vector<double> gram_, rhs_, gamma_, inner_;
  std::vector<ColumnState> columns_;
  std::vector<unsigned char> parity_, slab_active_, on_;
  // Per column after a pass: max step, max norm, non-finite flag (reduced
  // over the processes of a distributed run).
  std::vector<double> column_max_;
  aligned_vector<T> mask_; // 1 where a column is still updated
  aligned_vector<T> part_step_, part_norm_, part_bad_;
  std::vector<std::size_t> capacity_;
};

/// Run options beyond PicardOptions.
template <class T> struct FixedPointRun {
  const T *c = nullptr;   // slab-major, slab stride rows * width, ld width
  index_t columns = 0;    // real columns (the rest of the last slab is padding)
  bool zero_start = true; // initial buffers hold zeros (skip the first product)
  bool parallel = true;   // use TBB inside the passes
  const std::function<void(int, double)> *progress = nullptr;
  std::vector<double> *step_history = nullptr;
  /// A distributed run: before a product reads slab s of the iterate (rows
  /// x width, ld width), exchange(slab, s) brings its rows that this process
  /// does not iterate up to date; after each pass, reduce(values) replaces
  /// the per-column maxima (3 per column: step, norm, non-finite flag) by
  /// their maxima over all processes. Both are collective: every process
  /// makes the same calls in the same order (the column states it decides
  /// from are the reduced ones).
  const std::function<void(T *, index_t)> *exchange = nullptr;
  const std::function<void(std::span<double>)> *reduce = nullptr;
  /// A distributed Anderson run (global_rows > 0): the iterated rows are the
  /// global rows [global_begin, global_begin + iterated) of global_rows, and
  /// Anderson's inner products are summed in the single-process order (over
  /// chunks of kAndersonChunk global rows, each in row order, the chunks in
  /// order) by passing the running sums along the processes in the order of
  /// their rows: receive_previous(values) overwrites them with the previous
  /// process's (nothing on the first), send_next(values) hands them on
  /// (nothing on the last), broadcast_last(values) overwrites them with the
  /// last process's. All three collective; the functions may be empty.
  index_t global_begin = 0, global_rows = 0;
  const std::function<void(std::span<double>)> *receive_previous = nullptr;
  const std::function<void(std::span<double>)> *send_next = nullptr;
  const std::function<void(std::span<double>)> *broadcast_last = nullptr;
};

/// Solves x = phi(M x + c) for every column from the iterate in
/// work.initial(s); afterwards work.current(s) holds the result and
/// work.column(j) the status, iterations and residual (evaluated at the
/// returned x) of column j. `work` must have been reserved for the shape.
template <class T>
void run_fixed_point(const FixedPointSystem<T> &system, FixedPointWork<T> &work,
                     const FixedPointRun<T> &run, const PicardOptions &options);

/// ||x - phi(M x + c)||_inf per column (size slabs * width; padding 0) for
/// slab-major x and c of the system's row count.
template <class T>
void fixed_point_residuals(const FixedPointSystem<T> &system, const T *x, const T *c,
                           index_t slabs, index_t width, index_t columns,
                           std::span<double> out);

/// Z = B U + bias (real columns), Z reshaped to B.rows() x U.cols() with
/// U's slab width. For a CSR B every
/// entry is summed in the fixed order of the solver kernels, so a column of
/// Z does not depend on the batch width.
template <class T>
void affine_batch(const LinearOperator<T> &B, std::span<const T> bias, const Batch<T> &U,
                  SlabBuffer<T> &Z);

/// Checks PicardOptions; \throws InvalidArgument naming the bad field.
void validate(const PicardOptions &options);

} // namespace tacit::inline v1::detail
