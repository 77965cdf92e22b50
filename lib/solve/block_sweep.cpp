// Block sweep over an A with a block structure: see solve/detail/block_sweep.hpp.

#include "solve/detail/block_sweep.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <tbb/task_arena.h>

#include "core/detail/parallel.hpp"
#include "core/detail/populate.hpp"

namespace tacit::inline v1::detail {

namespace {

/// The piece's columns of its slab's view.
template <class View> View piece_columns(View slab, const SlabPiece &piece) {
  slab.data += piece.first;
  slab.cols = piece.cols;
  return slab;
}

/// y = phi(y) in place on rows x ncols (leading dimension ld); nf[w] collects
/// y * 0 per column (NaN iff a non-finite value went through).
template <class T>
void activate_rows(const Activation &a, T *__restrict y, index_t rows, index_t ncols,
                   index_t ld, T *__restrict nf) {
  // Contiguous rows whose width divides 16: one flat loop with 16 independent
  // non-finite accumulators (lane l belongs to column l % ncols), so that a
  // narrow batch (one column) vectorises instead of serialising on nf[0].
  constexpr index_t lanes = 16;
  if (ld == ncols && lanes % ncols == 0 &&
      (a.kind == ActivationKind::relu || a.kind == ActivationKind::identity)) {
    const index_t total = rows * ncols, body = total / lanes * lanes;
    typedef T vec __attribute__((vector_size(lanes * sizeof(T)), aligned(sizeof(T))));
    vec acc = {};
    const vec zero = {};
    if (a.kind == ActivationKind::relu)
      for (index_t f = 0; f < body; f += lanes) {
        vec v;
        std::memcpy(&v, y + f, sizeof v);
        acc += v * zero;
        v = v > zero ? v : zero;
        std::memcpy(y + f, &v, sizeof v);
      }
    else
      for (index_t f = 0; f < body; f += lanes) {
        vec v;
        std::memcpy(&v, y + f, sizeof v);
        acc += v * zero;
      }
    for (index_t f = body; f < total; ++f) {
      const T v = y[f];
      acc[f - body] += v * T(0);
      if (a.kind == ActivationKind::relu)
        y[f] = v > T(0) ? v : T(0);
    }
    for (index_t l = 0; l < lanes; ++l)
      nf[l % ncols] += acc[l];
    return;
  }
  switch (a.kind) {
  case ActivationKind::relu:
    for (index_t i = 0; i < rows; ++i) {
      T *r = y + i * ld;
      for (index_t w = 0; w < ncols; ++w) {
        const T v = r[w];
        nf[w] += v * T(0);
        r[w] = v > T(0) ? v : T(0);
      }
    }
    return;
  case ActivationKind::leaky_relu: {
    const T slope = static_cast<T>(a.slope);
    for (index_t i = 0; i < rows; ++i) {
      T *r = y + i * ld;
      for (index_t w = 0; w < ncols; ++w) {
        const T v = r[w];
        nf[w] += v * T(0);
        r[w] = v >= T(0) ? v : slope * v;
      }
    }
    return;
  }
  case ActivationKind::identity:
    for (index_t i = 0; i < rows; ++i) {
      const T *r = y + i * ld;
      for (index_t w = 0; w < ncols; ++w)
        nf[w] += r[w] * T(0);
    }
    return;
  default:
    for (index_t i = 0; i < rows; ++i) {
      T *r = y + i * ld;
      for (index_t w = 0; w < ncols; ++w) {
        nf[w] += r[w] * T(0);
        r[w] = a(r[w]);
      }
    }
    return;
  }
}

/// The activation of states [offset, offset + size) if it is uniform.
std::optional<Activation> uniform_activation(const std::vector<StateBlock> &blocks,
                                             index_t offset, index_t size) {
  std::optional<Activation> found;
  for (const auto &b : blocks) {
    if (b.offset + b.size <= offset || b.offset >= offset + size || b.size == 0)
      continue;
    if (found && !(*found == b.activation))
      return std::nullopt;
    found = b.activation;
  }
  if (!found && size == 0)
    return Activation{};
  return found;
}

/// A's block structure, if it has one.
template <class T> const BlockStructure<T> *blocks_of(const LinearOperator<T> &op) {
  const auto *s = capability<BlockStructured<T>>(op);
  return s ? &s->block_structure() : nullptr;
}

} // namespace

template <class T> bool BlockSweepPlan<T>::applicable(const Model<T> &model) {
  const auto *A = blocks_of(model.A());
  if (!A || !A->square_partition() || !A->block_lower_triangular() ||
      A->row_blocks() == 0)
    return false;
  for (index_t i = 0; i < A->row_blocks(); ++i)
    if (!uniform_activation(model.blocks(), A->row_offset(i), A->row_block_size(i)))
      return false;
  return true;
}

template <class T> BlockSweepPlan<T>::BlockSweepPlan(const Model<T> &model) {
  if (!applicable(model))
    throw InvalidArgument("block sweep: A has no block lower triangular structure "
                          "whose blocks each have one activation");
  const auto &A = *blocks_of(model.A());
  n = A.rows();
  bias.assign(model.bias_x().begin(), model.bias_x().end());
  const auto *B = blocks_of(model.B());
  uses_z = !B || B->row_blocks() != A.row_blocks();
  if (!uses_z)
    for (index_t i = 0; i < A.row_blocks(); ++i)
      uses_z = uses_z || B->row_block_size(i) != A.row_block_size(i);
  const auto entries = A.entries();
  index_t diagonal_blocks = 0, products = 0;
  rows.resize(static_cast<std::size_t>(A.row_blocks()));
  for (index_t i = 0; i < A.row_blocks(); ++i) {
    auto &row = rows[i];
    row.offset = A.row_offset(i);
    row.size = A.row_block_size(i);
    row.activation = *uniform_activation(model.blocks(), row.offset, row.size);
    std::vector<BlockEntry<T>> diag;
    for (const index_t e : A.entries_in_row(i)) {
      const auto &entry = entries[e];
      if (entry.block_col < i) {
        row.from_states.push_back({entry.op.get(), entry.block_col});
        ++products;
      } else {
        diag.push_back({0, 0, entry.op});
      }
    }
    if (!uses_z) {
      const auto b_entries = B->entries();
      for (const index_t e : B->entries_in_row(i)) {
        row.from_inputs.push_back(
            {b_entries[e].op.get(), B->col_offset(b_entries[e].block_col)});
        ++products;
      }
    }
    if (diag.empty()) {
      // The largest operator of the row with a fused activation (a
      // convolution) takes the bias and the activation.
      auto *best_list = &row.from_states;
      std::ptrdiff_t best = -1;
      for (auto *list : {&row.from_states, &row.from_inputs})
        for (std::size_t k = 0; k < list->size(); ++k) {
          const auto *op = (*list)[k].first;
          if (capability<FusedActivation<T>>(*op) &&
              (best < 0 || op->nnz() > (*best_list)[best].first->nnz())) {
            best_list = list;
            best = static_cast<std::ptrdiff_t>(k);
          }
        }
      if (best >= 0) {
        row.fused = (*best_list)[best].first;
        row.fused_hook = capability<FusedActivation<T>>(*row.fused);
        row.fused_first = (*best_list)[best].second;
        row.fused_from_inputs = best_list == &row.from_inputs;
        best_list->erase(best_list->begin() + best);
        // A lone skip connection rides along in the fused store.
        if (!uses_z && row.from_inputs.empty() && row.from_states.size() == 1)
          if (const auto *diag = capability<DiagonalForm<T>>(*row.from_states[0].first))
            if (const auto scale = diag->identity_scale()) {
              row.residual = row.from_states[0].first;
              row.residual_scale = *scale;
              row.residual_first = row.from_states[0].second;
              row.from_states.clear();
            }
      }
    }
    if (!diag.empty()) {
      ++diagonal_blocks;
      feed_forward = false;
      row.diagonal = diag.size() == 1
                         ? diag[0].op
                         : std::make_shared<BlockOperator<T>>(
                               std::vector<index_t>{row.size},
                               std::vector<index_t>{row.size}, std::move(diag));
      row.activations.assign(static_cast<std::size_t>(row.size), row.activation);
      row.system = std::make_unique<FixedPointSystem<T>>(*row.diagonal, row.activations);
    }
  }
  summary = "block sweep over " + std::to_string(rows.size()) + " state blocks (" +
            std::to_string(products) + " structured products" +
            (uses_z ? ", Z = B U + b formed first" : ", B applied block by block") +
            (feed_forward ? "; strictly block lower triangular: one exact pass"
                          : "; " + std::to_string(diagonal_blocks) +
                                " diagonal block(s) solved by Picard") +
            ")";
}

template <class T>
SlabRowsPool<T>::Lease::Lease(SlabRowsPool &pool, std::size_t size) : pool_(&pool) {
  {
    std::lock_guard lock(pool.mutex_);
    if (!pool.free_.empty()) {
      buf_ = std::move(pool.free_.back());
      pool.free_.pop_back();
    } else {
      ++pool.allocated_;
    }
  }
  if (!buf_)
    buf_ = std::make_unique<Buffer>();
  if (buf_->size() < size) {
    buf_->clear(); // grows without copying the old contents
    buf_->resize(size);
    populate_pages(buf_->data(), size * sizeof(T));
    std::fill(buf_->begin(), buf_->end(), T(0));
  }
}

template <class T> SlabRowsPool<T>::Lease::~Lease() {
  std::lock_guard lock(pool_->mutex_);
  pool_->free_.push_back(std::move(buf_));
}

template <class T>
void run_block_sweep(
    const BlockSweepPlan<T> &plan, const BlockLayout &layout, BlockSweepWork<T> &work,
    T *x, index_t width, index_t slabs, index_t cols, const Batch<T> &U, const T *z,
    const PicardOptions &options, bool warm_start, SolveReport &report,
    SlabRowsPool<T> *shared,
    const std::type_identity_t<std::function<void(const SlabPiece &, const T *, index_t)>>
        &piece_done) {
  const index_t n = plan.n, slab_rows = layout.rows;
  const auto total = static_cast<std::size_t>(slabs * width);
  work.nonfinite.assign(total, 0.0);
  work.iterations.assign(total, 0);
  work.status.assign(total, 0);
  work.residual.assign(total, 0.0);
  if (!plan.feed_forward && static_cast<index_t>(work.per_slab.size()) < slabs)
    work.per_slab.resize(static_cast<std::size_t>(slabs));
  // xs: the piece's first column of its slab's rows, leading dimension ld
  // (the slab's width in X, the piece's in a shared buffer).
  auto sweep_piece = [&](const SlabPiece &piece, T *xs, index_t ld) {
    const index_t s = piece.slab, ncols = piece.cols;
    // First row of state block b in this piece.
    auto block_rows = [&](index_t b) { return xs + layout.address[b] * ld; };
    const ConstMatrixView<T> u = piece_columns(U.slab(s), piece);
    T nf[64] = {};
    T *nfp = nf;
    std::vector<T> nf_big;
    if (ncols > 64) {
      nf_big.assign(static_cast<std::size_t>(ncols), T(0));
      nfp = nf_big.data();
    }
    for (std::size_t b = 0; b < plan.rows.size(); ++b) {
      const auto &row = plan.rows[b];
      if (row.size == 0)
        continue;
      const MatrixView<T> y{block_rows(static_cast<index_t>(b)), row.size, ncols, ld};
      FixedPointWork<T> *fw = nullptr;
      if (row.system) {
        fw = &work.per_slab[s];
        fw->reserve(row.size, 1, width, options.anderson_depth,
                    static_cast<index_t>(row.system->parts().size()) - 1,
                    !row.system->is_csr(), false);
        T *init = fw->initial(0);
        for (index_t i = 0; i < row.size; ++i)
          for (index_t w = 0; w < width; ++w)
            init[i * width + w] = warm_start && w < ncols ? y(i, w) : T(0);
      }
      // y = b (or z) + the products other than the fused one.
      auto start_row = [&] {
        if (plan.uses_z) {
          const T *zs = z + s * n * width + row.offset * width + piece.first;
          for (index_t i = 0; i < row.size; ++i)
            std::copy(zs + i * width, zs + i * width + ncols, y.row(i));
        } else {
          if (ncols == 1 && ld == 1)
            std::copy_n(plan.bias.data() + row.offset, row.size, y.data);
          else
            for (index_t i = 0; i < row.size; ++i)
              std::fill(y.row(i), y.row(i) + ncols, plan.bias[row.offset + i]);
          for (const auto &[op, first] : row.from_inputs)
            op->apply(Mode::normal, T(1),
                      ConstMatrixView<T>(u.data + first * u.ld, op->cols(), ncols, u.ld),
                      T(1), y);
        }
        for (const auto &[op, source] : row.from_states)
          op->apply(Mode::normal, T(1),
                    ConstMatrixView<T>(block_rows(source), op->cols(), ncols, ld), T(1),
                    y);
        if (row.residual)
          row.residual->apply(
              Mode::normal, T(1),
              ConstMatrixView<T>(block_rows(row.residual_first), row.size, ncols, ld),
              T(1), y);
      };
      if (row.fused) {
        const ConstMatrixView<T> src =
            row.fused_from_inputs ? ConstMatrixView<T>(u.data + row.fused_first * u.ld,
                                                       row.fused->cols(), ncols, u.ld)
                                  : ConstMatrixView<T>(block_rows(row.fused_first),
                                                       row.fused->cols(), ncols, ld);
        const bool alone =
            !plan.uses_z && row.from_states.empty() && row.from_inputs.empty();
        auto fused_row = [&] {
          if (!alone)
            start_row();
          return row.fused_hook->apply_activated(
              T(1), src, alone ? T(0) : T(1), y,
              alone ? std::span<const T>(plan.bias.data() + row.offset,
                                         static_cast<std::size_t>(row.size))
                    : std::span<const T>(),
              row.activation, Execution::parallel,
              alone && row.residual ? ConstMatrixView<T>(block_rows(row.residual_first),
                                                         row.size, ncols, ld)
                                    : ConstMatrixView<T>(),
              row.residual ? row.residual_scale : T(1));
        };
        if (fused_row())
          continue;
        // A NaN or Inf went in (rare): the unfused row finds its columns, then
        // the fused row again gives the other columns their usual values.
        start_row();
        row.fused->apply(Mode::normal, T(1), src, T(1), y);
        activate_rows(row.activation, y.data, row.size, ncols, ld, nfp);
        fused_row();
        continue;
      }
      start_row();
      if (!row.system) {
        activate_rows(row.activation, y.data, row.size, ncols, ld, nfp);
        continue;
      }
      // A cyclic diagonal block: Picard on x_i = phi(A_ii x_i + c), c = y.
      for (index_t i = 0; i < row.size; ++i)
        for (index_t w = 0; w < ncols; ++w)
          nfp[w] += y(i, w) * T(0);
      FixedPointRun<T> run;
      run.c = y.data;
      run.columns = ncols;
      run.zero_start = !warm_start;
      run.parallel = slabs == 1;
      run_fixed_point(*row.system, *fw, run, options);
      const T *res = fw->current(0);
      for (index_t i = 0; i < row.size; ++i)
        std::copy(res + i * width, res + i * width + ncols, y.row(i));
      for (index_t w = 0; w < ncols; ++w) {
        const auto &cs = fw->column(w);
        const auto j = static_cast<std::size_t>(s * width + piece.first + w);
        work.iterations[j] = std::max(work.iterations[j], cs.iterations);
        work.status[j] = std::max(work.status[j], static_cast<unsigned char>(cs.status));
        work.residual[j] = std::max(work.residual[j], cs.residual);
      }
    }
    for (index_t w = 0; w < ncols; ++w)
      work.nonfinite[static_cast<std::size_t>(s * width + piece.first + w)] =
          static_cast<double>(nfp[w]);
  };
  const index_t piece_width =
      sweep_piece_width(plan, width, slabs, tbb::this_task_arena::max_concurrency());
  const index_t per_slab = (width + piece_width - 1) / piece_width;
  auto piece_of = [&](index_t t) {
    SlabPiece piece;
    piece.slab = t / per_slab;
    piece.first = t % per_slab * piece_width;
    piece.cols = std::clamp<index_t>(cols - piece.slab * width - piece.first, 0,
                                     std::min(piece_width, width - piece.first));
    return piece;
  };
  const auto size = static_cast<std::size_t>(slab_rows * piece_width);
  for_tasks(slabs * per_slab, true, [&](index_t t) {
    const SlabPiece piece = piece_of(t);
    if (piece.cols == 0)
      return;
    if (!shared) {
      sweep_piece(piece, x + piece.slab * slab_rows * width + piece.first, width);
      return;
    }
    tbb::this_task_arena::isolate([&] {
      typename SlabRowsPool<T>::Lease rows(*shared, size);
      sweep_piece(piece, rows.data(), piece_width);
      if (piece_done)
        piece_done(piece, rows.data(), piece_width);
    });
  });

  report.method = SolveMethod::sweep;
  report.column_residuals.assign(static_cast<std::size_t>(cols), 0.0);
  report.column_status.assign(static_cast<std::size_t>(cols), SolveStatus::converged);
  report.column_iterations.assign(static_cast<std::size_t>(cols), 0);
  report.status = SolveStatus::converged;
  report.residual = 0;
  report.iterations = 0;
  report.step_history.clear();
  index_t bad = -1;
  for (index_t j = 0; j < cols; ++j) {
    const auto k = static_cast<std::size_t>(j);
    auto st = static_cast<SolveStatus>(work.status[k]);
    double r = work.residual[k];
    if (work.nonfinite[k] != 0 || std::isnan(work.nonfinite[k])) {
      st = std::max(st, SolveStatus::non_finite);
      r = std::numeric_limits<double>::infinity();
    }
    report.column_status[k] = st;
    report.column_residuals[k] = r;
    report.column_iterations[k] = work.iterations[k];
    if (st > report.status) {
      report.status = st;
      bad = j;
    }
    report.residual = std::max(report.residual, r);
    report.iterations = std::max(report.iterations, work.iterations[k]);
  }
  report.message.clear();
  if (bad >= 0)
    report.message = "column " + std::to_string(bad + 1) + ": " +
                     to_string(report.column_status[bad]) +
                     (report.column_status[bad] == SolveStatus::non_finite
                          ? " (a NaN or Inf appeared: non-finite input or overflow)"
                          : "");
}

template <class T> BlockLayout BlockSweepPlan<T>::full_layout() const {
  BlockLayout layout;
  layout.rows = n;
  for (const auto &row : rows)
    layout.address.push_back(row.offset);
  return layout;
}

namespace {

/// C's block structure when its column partition is A's row partition.
template <class T>
const BlockStructure<T> *output_blocks(const Model<T> &model,
                                       const std::vector<BlockSweepRow<T>> &rows) {
  const auto *C = blocks_of(model.C());
  if (!C || C->col_blocks() != static_cast<index_t>(rows.size()))
    return nullptr;
  for (index_t j = 0; j < C->col_blocks(); ++j)
    if (C->col_block_size(j) != rows[static_cast<std::size_t>(j)].size)
      return nullptr;
  return C;
}

} // namespace

template <class T>
std::optional<BlockLayout>
BlockSweepPlan<T>::compact_layout(const Model<T> &model) const {
  const auto *C = output_blocks(model, rows);
  if (!C)
    return std::nullopt;
  const auto nb = static_cast<index_t>(rows.size());
  // last_use[k]: the last row block that reads block k (nb: the outputs do).
  std::vector<index_t> last_use(static_cast<std::size_t>(nb));
  for (index_t i = 0; i < nb; ++i)
    last_use[i] = i;
  auto reads = [&](index_t source, index_t reader) {
    last_use[source] = std::max(last_use[source], reader);
  };
  for (index_t i = 0; i < nb; ++i) {
    const auto &row = rows[i];
    for (const auto &[op, source] : row.from_states)
      reads(source, i);
    if (row.residual)
      reads(row.residual_first, i);
    if (row.fused && !row.fused_from_inputs)
      reads(row.fused_first, i);
  }
  for (const auto &entry : C->entries())
    reads(entry.block_col, nb);

  // First-fit allocation of 16-state-aligned ranges (64-byte aligned rows
  // for float at any slab width) in free intervals [start, end), sorted.
  constexpr index_t align = 16;
  auto rounded = [](index_t size) { return (size + align - 1) / align * align; };
  BlockLayout layout;
  layout.address.assign(static_cast<std::size_t>(nb), 0);
  std::vector<std::pair<index_t, index_t>> free_ranges;
  auto release = [&](index_t start, index_t size) {
    std::pair<index_t, index_t> range{start, start + size};
    auto it = std::lower_bound(free_ranges.begin(), free_ranges.end(), range);
    it = free_ranges.insert(it, range);
    // Merge with the neighbours.
    if (it + 1 != free_ranges.end() && it->second == (it + 1)->first) {
      it->second = (it + 1)->second;
      free_ranges.erase(it + 1);
    }
    if (it != free_ranges.begin() && (it - 1)->second == it->first) {
      (it - 1)->second = it->second;
      free_ranges.erase(it);
    }
  };
  std::vector<std::vector<index_t>> freed_after(static_cast<std::size_t>(nb) + 1);
  for (index_t k = 0; k < nb; ++k)
    freed_after[last_use[k]].push_back(k);
  for (index_t i = 0; i < nb; ++i) {
    // Blocks whose last reader was row i - 1 are free for row i.
    if (i > 0)
      for (const index_t k : freed_after[i - 1])
        if (rows[k].size > 0)
          release(layout.address[k], rounded(rows[k].size));
    const index_t size = rounded(rows[i].size);
    if (size == 0)
      continue;
    auto fit = std::find_if(free_ranges.begin(), free_ranges.end(),
                            [&](const auto &r) { return r.second - r.first >= size; });
    if (fit != free_ranges.end()) {
      layout.address[i] = fit->first;
      fit->first += size;
      if (fit->first == fit->second)
        free_ranges.erase(fit);
    } else if (!free_ranges.empty() && free_ranges.back().second == layout.rows) {
      // Grow the last free range at the top.
      layout.address[i] = free_ranges.back().first;
      layout.rows = layout.address[i] + size;
      free_ranges.pop_back();
    } else {
      layout.address[i] = layout.rows;
      layout.rows += size;
    }
  }
  return layout;
}

template <class T>
void block_sweep_outputs(const Model<T> &model, const BlockLayout &layout, const T *x,
                         const Batch<T> &U, Batch<T> &Y) {
  const auto *C = blocks_of(model.C());
  if (!C || C->col_blocks() != static_cast<index_t>(layout.address.size()))
    throw InvalidArgument(
        "block sweep outputs: C has no block structure over A's blocks");
  const index_t width = U.slab_width(), q = model.outputs();
  if (Y.rows() != q || Y.cols() != U.cols() || Y.slab_width() != width)
    Y = Batch<T>(q, U.cols(), width);
  for (index_t s = 0; s < Y.slab_count(); ++s)
    block_sweep_outputs_slab(model, layout, x + s * layout.rows * width, U, Y, s);
}

template <class T>
void block_sweep_outputs_piece(const Model<T> &model, const BlockLayout &layout,
                               const T *xs, index_t ld, const Batch<T> &U, Batch<T> &Y,
                               const SlabPiece &piece) {
  const auto *C = blocks_of(model.C());
  if (!C || C->col_blocks() != static_cast<index_t>(layout.address.size()))
    throw InvalidArgument(
        "block sweep outputs: C has no block structure over A's blocks");
  const index_t width = U.slab_width();
  const auto bias = model.bias_y();
  const auto entries = C->entries();
  // As Model::output: Y = c, then Y += C X (entry by entry in each row
  // block, as BlockOperator applies them), then Y += D U.
  const MatrixView<T> y = piece_columns(Y.slab(piece.slab), piece);
  for (index_t i = 0; i < y.rows; ++i)
    for (index_t c = 0; c < y.cols; ++c)
      y(i, c) = bias[static_cast<std::size_t>(i)];
  for (index_t r = 0; r < C->row_blocks(); ++r) {
    const MatrixView<T> yr{y.data + C->row_offset(r) * width, C->row_block_size(r),
                           y.cols, width};
    for (const index_t e : C->entries_in_row(r)) {
      const auto &entry = entries[e];
      entry.op->apply(Mode::normal, T(1),
                      ConstMatrixView<T>(xs + layout.address[entry.block_col] * ld,
                                         entry.op->cols(), y.cols, ld),
                      T(1), yr);
    }
  }
  if (const auto *D = model.D())
    D->apply(Mode::normal, T(1), piece_columns(U.slab(piece.slab), piece), T(1), y);
}

template class BlockSweepPlan<float>;
template class BlockSweepPlan<double>;
template class SlabRowsPool<float>;
template class SlabRowsPool<double>;
template void
run_block_sweep(const BlockSweepPlan<float> &, const BlockLayout &,
                BlockSweepWork<float> &, float *, index_t, index_t, index_t,
                const Batch<float> &, const float *, const PicardOptions &, bool,
                SolveReport &, SlabRowsPool<float> *,
                const std::function<void(const SlabPiece &, const float *, index_t)> &);
template void
run_block_sweep(const BlockSweepPlan<double> &, const BlockLayout &,
                BlockSweepWork<double> &, double *, index_t, index_t, index_t,
                const Batch<double> &, const double *, const PicardOptions &, bool,
                SolveReport &, SlabRowsPool<double> *,
                const std::function<void(const SlabPiece &, const double *, index_t)> &);
template void block_sweep_outputs_piece(const Model<float> &, const BlockLayout &,
                                        const float *, index_t, const Batch<float> &,
                                        Batch<float> &, const SlabPiece &);
template void block_sweep_outputs_piece(const Model<double> &, const BlockLayout &,
                                        const double *, index_t, const Batch<double> &,
                                        Batch<double> &, const SlabPiece &);
template void block_sweep_outputs(const Model<float> &, const BlockLayout &,
                                  const float *, const Batch<float> &, Batch<float> &);
template void block_sweep_outputs(const Model<double> &, const BlockLayout &,
                                  const double *, const Batch<double> &, Batch<double> &);

} // namespace tacit::inline v1::detail
