// Public equilibrium solvers: EquilibriumSolver, picard_solve,
// equilibrium_residuals (engines in fixed_point.cpp and sweep.cpp).

#include <tacit/core/format.hpp>
#include <tacit/solve/partitioned.hpp>
#include <tacit/solve/solve.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include <utility>

#include "solve/detail/block_sweep.hpp"
#include "solve/detail/fixed_point.hpp"
#include "solve/detail/sweep.hpp"

namespace tacit::inline v1 {

std::string to_string(SolveStatus s) {
  switch (s) {
  case SolveStatus::converged:
    return "converged";
  case SolveStatus::max_iterations:
    return "max_iterations";
  case SolveStatus::diverged:
    return "diverged";
  case SolveStatus::non_finite:
    return "non_finite";
  case SolveStatus::ill_posed:
    return "ill_posed";
  }
  return "?";
}

std::string to_string(SolveMethod m) {
  switch (m) {
  case SolveMethod::automatic:
    return "auto";
  case SolveMethod::picard:
    return "picard";
  case SolveMethod::sweep:
    return "sweep";
  }
  return "?";
}

SolveMethod parse_solve_method(std::string_view s) {
  if (s == "auto")
    return SolveMethod::automatic;
  if (s == "picard")
    return SolveMethod::picard;
  if (s == "sweep")
    return SolveMethod::sweep;
  throw InvalidArgument("unknown solve method '" + std::string(s) +
                        "' (expected auto, picard or sweep)");
}

namespace {

std::string shape(index_t r, index_t c) {
  return std::to_string(r) + " x " + std::to_string(c);
}

/// The per-column results of a fixed-point run into a report.
template <class T>
void fill_picard_report(const detail::FixedPointWork<T> &work, index_t k,
                        SolveReport &report) {
  report.method = SolveMethod::picard;
  report.column_residuals.assign(static_cast<std::size_t>(k), 0.0);
  report.column_status.assign(static_cast<std::size_t>(k), SolveStatus::converged);
  report.column_iterations.assign(static_cast<std::size_t>(k), 0);
  report.status = SolveStatus::converged;
  report.residual = 0;
  report.iterations = 0;
  index_t worst = -1;
  for (index_t j = 0; j < k; ++j) {
    const auto &cs = work.column(j); // slab s, lane w is column s * width + w = j
    report.column_residuals[j] = cs.residual;
    report.column_status[j] = cs.status;
    report.column_iterations[j] = cs.iterations;
    if (cs.status > report.status) {
      report.status = cs.status;
      worst = j;
    }
    report.residual = std::max(report.residual, cs.residual);
    report.iterations = std::max(report.iterations, cs.iterations);
  }
  std::string msg = std::to_string(report.iterations) + " iterations, residual " +
                    format_number(report.residual, 6);
  if (worst >= 0)
    msg += "; column " + std::to_string(worst + 1) + ": " +
           to_string(report.column_status[worst]) + " after " +
           std::to_string(report.column_iterations[worst]) + " iterations, residual " +
           format_number(report.column_residuals[worst], 6);
  report.message = msg;
}

template <class T>
bool same_shape(const Batch<T> &a, index_t rows, index_t cols, index_t w) {
  return a.rows() == rows && a.cols() == cols && a.slab_width() == w;
}

/// Runs the engine for the whole operator on c (slab-major n x k with slab
/// width W, the same slab boundaries as X); X in/out.
template <class T>
void picard_into(const detail::FixedPointSystem<T> &system,
                 detail::FixedPointWork<T> &work, const T *c, index_t W, Batch<T> &X,
                 bool warm, const PicardOptions &options,
                 const std::function<void(int, double)> &progress, SolveReport &report,
                 const std::function<void(T *, index_t)> *exchange = nullptr,
                 const std::function<void(std::span<double>)> *reduce = nullptr,
                 const StatePart<T> *part = nullptr) {
  const index_t n = X.rows(), k = X.cols(), S = X.slab_count();
  work.reserve(n, S, W, options.anderson_depth,
               static_cast<index_t>(system.parts().size()) - 1, !system.is_csr(), false);
  if (warm) {
    for (index_t s = 0; s < S; ++s) {
      const auto src = X.slab(s);
      T *dst = work.initial(s);
      for (index_t i = 0; i < n; ++i)
        std::copy(src.row(i), src.row(i) + src.cols, dst + i * W);
    }
  } else {
    std::fill(work.initial(0), work.initial(0) + n * S * W, T(0));
  }
  detail::FixedPointRun<T> run;
  run.c = c;
  run.columns = k;
  run.zero_start = !warm;
  run.parallel = true;
  run.progress = &progress;
  report.step_history.clear();
  run.step_history = &report.step_history;
  run.exchange = exchange;
  run.reduce = reduce;
  if (part && options.anderson_depth > 0) {
    run.global_begin = part->global_begin;
    run.global_rows = part->global_rows > 0 ? part->global_rows : part->end - part->begin;
    run.receive_previous = &part->receive_previous;
    run.send_next = &part->send_next;
    run.broadcast_last = &part->broadcast_last;
  }
  detail::run_fixed_point(system, work, run, options);
  for (index_t s = 0; s < S; ++s) {
    const T *src = work.current(s);
    auto dst = X.slab(s);
    for (index_t i = 0; i < n; ++i)
      std::copy(src + i * W, src + i * W + dst.cols, dst.row(i));
  }
  fill_picard_report(work, k, report);
}

} // namespace

template <class T> struct EquilibriumSolver<T>::Impl {
  Model<T> model;
  SolveOptions options;
  SolveMethod method = SolveMethod::picard;
  std::string reason;
  std::vector<Activation> activations;
  std::unique_ptr<detail::FixedPointSystem<T>> system; // Picard
  detail::FixedPointWork<T> picard_work;
  std::unique_ptr<detail::SweepPlan<T>> plan; // sweep
  detail::SweepWork<T> sweep_work;
  std::unique_ptr<detail::BlockSweepPlan<T>> block_plan; // structured A
  detail::BlockSweepWork<T> block_work;
  detail::BlockLayout full_layout;                   // the states at their indices
  std::optional<detail::BlockLayout> compact_layout; // outputs only: shared rows
  detail::SlabRowsPool<T> compact_rows;              // slab buffers in compact_layout
  Batch<T> scratch_states; // predict(U, Y) without a compact layout
  detail::SlabBuffer<T> Z; // aligned: Z = B U + b

  Impl(const Model<T> &m, SolveOptions o) : model(m), options(std::move(o)) {}
};

namespace {

/// "state 12 (block 'conv1', index 3)" (1-based).
std::function<std::string(index_t)> state_namer(std::vector<StateBlock> blocks) {
  return [blocks = std::move(blocks)](index_t i) {
    std::string s = "state " + std::to_string(i + 1);
    for (const auto &b : blocks)
      if (i >= b.offset && i < b.offset + b.size)
        return s + " (block '" + b.name + "', index " + std::to_string(i - b.offset + 1) +
               ")";
    return s;
  };
}

std::string structure_summary(const SccDecomposition &scc, index_t n) {
  index_t cyclic = 0, cyclic_states = 0;
  for (index_t b = 0; b < scc.block_count(); ++b)
    if (scc.block_size(b) > 1) {
      ++cyclic;
      cyclic_states += scc.block_size(b);
    }
  return std::to_string(n) + " states in " + std::to_string(scc.block_count()) +
         " strongly connected blocks over " + std::to_string(scc.level_count()) +
         " levels; " + std::to_string(cyclic) + " cyclic block(s) holding " +
         std::to_string(cyclic_states) + " states, largest " +
         std::to_string(scc.largest_block());
}

} // namespace

template <class T>
EquilibriumSolver<T>::EquilibriumSolver(const Model<T> &model, SolveOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(options))) {
  impl_->options.exec.run([&]() {
    auto &im = *impl_;
    detail::validate(im.options.picard);
    im.activations = im.model.activations();
    const index_t n = im.model.states();
    const LinearOperator<T> &A = im.model.A();
    if (im.options.method == SolveMethod::picard) {
      im.method = SolveMethod::picard;
      im.reason = "picard (requested)";
    } else if (detail::BlockSweepPlan<T>::applicable(im.model)) {
      // Structured A (a network): sweep its blocks with their own kernels,
      // never materialising A.
      im.block_plan = std::make_unique<detail::BlockSweepPlan<T>>(im.model);
      im.full_layout = im.block_plan->full_layout();
      im.compact_layout = im.block_plan->compact_layout(im.model);
      im.method = SolveMethod::sweep;
      im.reason = (im.options.method == SolveMethod::sweep ? "sweep (requested): "
                                                           : "auto chose sweep: ") +
                  std::string("A is a block lower triangular block operator; ") +
                  im.block_plan->summary;
    } else {
      const auto csr = csr_view(A);
      const auto scc = strongly_connected_components(*csr);
      const std::string summary = structure_summary(scc, n);
      // 1x1 blocks (with or without a self-loop) are solved exactly; only
      // larger blocks need iterating.
      index_t largest = 0;
      for (index_t b = 0; b < scc.block_count(); ++b)
        if (scc.block_size(b) > 1)
          largest = std::max(largest, scc.block_size(b));
      if (im.options.method == SolveMethod::sweep) {
        im.method = SolveMethod::sweep;
        im.reason = "sweep (requested): " + summary;
      } else if (scc.nilpotent()) {
        im.method = SolveMethod::sweep;
        im.reason = "auto chose sweep: A is nilpotent (feed-forward), one pass over " +
                    std::to_string(scc.level_count()) + " levels; " + summary;
      } else if (10 * largest <= 9 * n) {
        im.method = SolveMethod::sweep;
        im.reason = "auto chose sweep: A is block triangular (largest cyclic block " +
                    std::to_string(largest) + " of " + std::to_string(n) +
                    " states; 1x1 blocks solved exactly, cyclic blocks by Picard); " +
                    summary;
      } else {
        im.method = SolveMethod::picard;
        im.reason = "auto chose picard: A is (almost) one strongly connected block (" +
                    std::to_string(largest) + " of " + std::to_string(n) + " states); " +
                    summary;
      }
      if (im.method == SolveMethod::sweep)
        im.plan = std::make_unique<detail::SweepPlan<T>>(*csr, im.activations, scc,
                                                         state_namer(im.model.blocks()));
    }
    if (im.method == SolveMethod::picard)
      im.system = std::make_unique<detail::FixedPointSystem<T>>(A, im.activations);
  });
}

template <class T> void EquilibriumSolver<T>::rebuild(const Model<T> &model) {
  auto &old = *impl_;
  if (model.states() != old.model.states() || model.inputs() != old.model.inputs() ||
      model.outputs() != old.model.outputs())
    throw InvalidArgument(
        "EquilibriumSolver::rebuild: the model has n = " +
        std::to_string(model.states()) + ", p = " + std::to_string(model.inputs()) +
        ", q = " + std::to_string(model.outputs()) +
        ", the solver was prepared for n = " + std::to_string(old.model.states()) +
        ", p = " + std::to_string(old.model.inputs()) +
        ", q = " + std::to_string(old.model.outputs()));
  EquilibriumSolver fresh(model, old.options);
  // The workspace is sized on demand by every solve, whatever the plan.
  auto &im = *fresh.impl_;
  im.picard_work = std::move(old.picard_work);
  im.sweep_work = std::move(old.sweep_work);
  im.block_work = std::move(old.block_work);
  im.compact_rows.adopt(old.compact_rows);
  im.scratch_states = std::move(old.scratch_states);
  im.Z = std::move(old.Z);
  impl_ = std::move(fresh.impl_);
}

template <class T> EquilibriumSolver<T>::~EquilibriumSolver() = default;
template <class T>
EquilibriumSolver<T>::EquilibriumSolver(EquilibriumSolver &&) noexcept = default;
template <class T>
EquilibriumSolver<T> &
EquilibriumSolver<T>::operator=(EquilibriumSolver &&) noexcept = default;

template <class T> SolveMethod EquilibriumSolver<T>::method() const noexcept {
  return impl_->method;
}

template <class T>
const std::string &EquilibriumSolver<T>::method_reason() const noexcept {
  return impl_->reason;
}

template <class T>
SolveReport EquilibriumSolver<T>::solve(const Batch<T> &U, Batch<T> &X) {
  return impl_->options.exec.run([&]() -> SolveReport {
    auto &im = *impl_;
    const Model<T> &m = im.model;
    const index_t n = m.states(), k = U.cols(), W = U.slab_width();
    if (U.rows() != m.inputs())
      throw InvalidArgument("solve: U is " + shape(U.rows(), U.cols()) +
                            ", the model has p = " + std::to_string(m.inputs()) +
                            " inputs");
    const bool warm = im.options.picard.warm_start && same_shape(X, n, k, W);
    if (!same_shape(X, n, k, W))
      X = Batch<T>(n, k, W);
    SolveReport report;
    if (im.block_plan) {
      // Block sweep, in place in X (a Batch has no padding beyond its last
      // slab, so its layout is the solvers' own).
      const T *z = nullptr;
      if (im.block_plan->uses_z) {
        detail::affine_batch(m.B(), m.bias_x(), U, im.Z);
        z = im.Z.data.data();
      }
      detail::run_block_sweep(*im.block_plan, im.full_layout, im.block_work,
                              X.storage().data(), W, X.slab_count(), k, U, z,
                              im.options.picard, warm, report);
      if (im.options.progress)
        im.options.progress(static_cast<int>(im.block_plan->rows.size()) - 1, 0.0);
      report.message = im.reason + (report.message.empty() ? "" : "; " + report.message);
      return report;
    }
    // Z = B U + b (real columns only: padding stays zero).
    detail::affine_batch(m.B(), m.bias_x(), U, im.Z);

    if (im.method == SolveMethod::sweep) {
      report.method = SolveMethod::sweep;
      detail::run_sweep(*im.plan, im.sweep_work, std::as_const(im.Z).view(),
                        detail::slab_view(X), im.options.picard, warm,
                        im.options.progress,
                        report); // in place
    } else {
      picard_into(*im.system, im.picard_work, im.Z.data.data(), im.Z.width, X, warm,
                  im.options.picard, im.options.progress, report);
    }
    report.message = im.reason + (report.message.empty() ? "" : "; " + report.message);
    return report;
  });
}

template <class T>
SolveReport EquilibriumSolver<T>::predict(const Batch<T> &U, Batch<T> &X, Batch<T> &Y) {
  return impl_->options.exec.run([&]() -> SolveReport {
    SolveReport report = solve(U, X);
    impl_->model.output(X, U, Y, impl_->options.exec);
    return report;
  });
}

template <class T>
SolveReport EquilibriumSolver<T>::predict(const Batch<T> &U, Batch<T> &Y) {
  auto &im = *impl_;
  if (!im.block_plan || !im.compact_layout)
    return predict(U, im.scratch_states, Y);
  return im.options.exec.run([&]() -> SolveReport {
    const Model<T> &m = im.model;
    const index_t k = U.cols(), W = U.slab_width();
    if (U.rows() != m.inputs())
      throw InvalidArgument("predict: U is " + shape(U.rows(), U.cols()) +
                            ", the model has p = " + std::to_string(m.inputs()) +
                            " inputs");
    // The states in the compact layout: a block's rows are reused once its
    // readers are done, so a network's sweep touches a few blocks' worth of
    // memory instead of all n states; and a slab's rows are reused by a later
    // slab once its outputs are formed, so a batch of many slabs touches one
    // slab's rows per thread (fewer first-touch page faults, and the live
    // blocks stay in cache).
    if (Y.rows() != m.outputs() || Y.cols() != k || Y.slab_width() != W)
      Y = Batch<T>(m.outputs(), k, W);
    const T *z = nullptr;
    if (im.block_plan->uses_z) {
      detail::affine_batch(m.B(), m.bias_x(), U, im.Z);
      z = im.Z.data.data();
    }
    SolveReport report;
    // No warm start: the compact rows hold other blocks' states.
    detail::run_block_sweep(
        *im.block_plan, *im.compact_layout, im.block_work, static_cast<T *>(nullptr), W,
        U.slab_count(), k, U, z, im.options.picard, false, report, &im.compact_rows,
        [&](const detail::SlabPiece &piece, const T *xs, index_t ld) {
          detail::block_sweep_outputs_piece(m, *im.compact_layout, xs, ld, U, Y, piece);
        });
    if (im.options.progress)
      im.options.progress(static_cast<int>(im.block_plan->rows.size()) - 1, 0.0);
    report.message = im.reason + (report.message.empty() ? "" : "; " + report.message);
    return report;
  });
}

template <class T>
SolveReport
picard_solve(const LinearOperator<T> &A, std::span<const Activation> activations,
             const Batch<T> &z, Batch<T> &X, const PicardOptions &options,
             const std::function<void(int, double)> &progress, Execution exec) {
  return exec.run([&]() -> SolveReport {
    detail::validate(options);
    if (A.rows() != A.cols() || z.rows() != A.rows() ||
        static_cast<index_t>(activations.size()) != A.rows())
      throw InvalidArgument("picard_solve: A is " + shape(A.rows(), A.cols()) +
                            ", z is " + shape(z.rows(), z.cols()) + ", " +
                            std::to_string(activations.size()) + " activations");
    const bool match = same_shape(X, z.rows(), z.cols(), z.slab_width());
    const bool warm = options.warm_start && match;
    if (!match)
      X = Batch<T>(z.rows(), z.cols(), z.slab_width());
    detail::FixedPointSystem<T> system(A, activations);
    detail::FixedPointWork<T> work;
    SolveReport report;
    picard_into(system, work, z.storage().data(), z.slab_width(), X, warm, options,
                progress, report);
    return report;
  });
}

template <class T>
SolveReport
picard_solve_part(const CsrMatrix<T> &A, std::span<const Activation> activations,
                  const LinearOperator<T> &B, std::span<const T> bias, const Batch<T> &U,
                  Batch<T> &X, const PicardOptions &options, const StatePart<T> &part,
                  Execution exec) {
  return exec.run([&]() -> SolveReport {
    detail::validate(options);
    const index_t m = A.rows();
    if (part.begin < 0 || part.end < part.begin || part.end > m)
      throw InvalidArgument("picard_solve_part: own states [" +
                            std::to_string(part.begin) + ", " + std::to_string(part.end) +
                            ") outside [0, " + std::to_string(m) + ")");
    const index_t own = part.end - part.begin;
    if (options.anderson_depth > 0 && part.global_rows > 0) {
      if (part.global_begin < 0 || part.global_begin + own > part.global_rows)
        throw InvalidArgument("picard_solve_part: own states at global [" +
                              std::to_string(part.global_begin) + ", " +
                              std::to_string(part.global_begin + own) + ") outside the " +
                              std::to_string(part.global_rows) + " states of the model");
      if (own != part.global_rows &&
          (!part.receive_previous || !part.send_next || !part.broadcast_last))
        throw InvalidArgument("picard_solve_part: Anderson acceleration on " +
                              std::to_string(own) + " of " +
                              std::to_string(part.global_rows) +
                              " states needs the hooks receive_previous, send_next and "
                              "broadcast_last");
    }
    if (A.cols() != m || static_cast<index_t>(activations.size()) != m ||
        B.rows() != own || static_cast<index_t>(bias.size()) != own ||
        U.rows() != B.cols())
      throw InvalidArgument(
          "picard_solve_part: A is " + shape(A.rows(), A.cols()) + " with " +
          std::to_string(activations.size()) + " activations, " + std::to_string(own) +
          " own states, B is " + shape(B.rows(), B.cols()) + ", bias has " +
          std::to_string(bias.size()) + " entries, U is " + shape(U.rows(), U.cols()));
    const index_t k = U.cols(), W = U.slab_width(), S = U.slab_count();
    // z = B u + b on the own rows (the solvers' order), placed at [begin, end)
    // of the local index space.
    detail::SlabBuffer<T> own_z;
    detail::affine_batch(B, bias, U, own_z);
    detail::SlabBuffer<T> z;
    z.reshape(m, k, W);
    z.zero();
    for (index_t s = 0; s < S; ++s)
      std::copy(own_z.slab(s), own_z.slab(s) + own * W, z.slab(s) + part.begin * W);
    if (!same_shape(X, m, k, W))
      X = Batch<T>(m, k, W);
    detail::FixedPointSystem<T> system(A, activations, part.begin, part.end);
    detail::FixedPointWork<T> work;
    const std::function<void(T *, index_t)> exchange = [&](T *slab, index_t) {
      if (part.exchange)
        part.exchange(slab, W);
    };
    const std::function<void(std::span<double>)> reduce = [&](std::span<double> v) {
      if (part.max_reduce)
        part.max_reduce(v);
    };
    SolveReport report;
    picard_into(system, work, z.data.data(), W, X, false, options, {}, report, &exchange,
                &reduce, &part);
    return report;
  });
}

template <class T>
std::vector<double>
equilibrium_residuals(const LinearOperator<T> &A, std::span<const Activation> activations,
                      const Batch<T> &z, const Batch<T> &X, Execution exec) {
  return exec.run([&]() -> std::vector<double> {
    if (A.rows() != A.cols() || z.rows() != A.rows() ||
        static_cast<index_t>(activations.size()) != A.rows() ||
        !same_shape(X, z.rows(), z.cols(), z.slab_width()))
      throw InvalidArgument("equilibrium_residuals: A is " + shape(A.rows(), A.cols()) +
                            ", z is " + shape(z.rows(), z.cols()) + ", X is " +
                            shape(X.rows(), X.cols()) + " (slab widths " +
                            std::to_string(z.slab_width()) + ", " +
                            std::to_string(X.slab_width()) + "), " +
                            std::to_string(activations.size()) + " activations");
    detail::FixedPointSystem<T> system(A, activations);
    const index_t S = z.slab_count(), W = z.slab_width();
    std::vector<double> out(static_cast<std::size_t>(S * W));
    detail::fixed_point_residuals(system, X.storage().data(), z.storage().data(), S, W,
                                  z.cols(), out);
    out.resize(static_cast<std::size_t>(z.cols()));
    return out;
  });
}

template class EquilibriumSolver<float>;
template class EquilibriumSolver<double>;
template SolveReport picard_solve(const LinearOperator<float> &,
                                  std::span<const Activation>, const Batch<float> &,
                                  Batch<float> &, const PicardOptions &,
                                  const std::function<void(int, double)> &, Execution);
template SolveReport picard_solve(const LinearOperator<double> &,
                                  std::span<const Activation>, const Batch<double> &,
                                  Batch<double> &, const PicardOptions &,
                                  const std::function<void(int, double)> &, Execution);
template SolveReport picard_solve_part(const CsrMatrix<float> &,
                                       std::span<const Activation>,
                                       const LinearOperator<float> &,
                                       std::span<const float>, const Batch<float> &,
                                       Batch<float> &, const PicardOptions &,
                                       const StatePart<float> &, Execution);
template SolveReport picard_solve_part(const CsrMatrix<double> &,
                                       std::span<const Activation>,
                                       const LinearOperator<double> &,
                                       std::span<const double>, const Batch<double> &,
                                       Batch<double> &, const PicardOptions &,
                                       const StatePart<double> &, Execution);
template std::vector<double> equilibrium_residuals(const LinearOperator<float> &,
                                                   std::span<const Activation>,
                                                   const Batch<float> &,
                                                   const Batch<float> &, Execution);
template std::vector<double> equilibrium_residuals(const LinearOperator<double> &,
                                                   std::span<const Activation>,
                                                   const Batch<double> &,
                                                   const Batch<double> &, Execution);

} // namespace tacit::inline v1
