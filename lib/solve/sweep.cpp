// Block-triangular sweep (see solve/detail/sweep.hpp).

#include "solve/detail/sweep.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <tuple>

#include <tbb/blocked_range.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>

#include <tacit/core/format.hpp>

#include "core/detail/parallel.hpp"
#include "solve/detail/scalar_solvers.hpp"
#include "solve/detail/solve_dispatch.hpp"

namespace tacit::inline v1::detail {

namespace {

/// Below this much work (nonzeros + rows, per slab) a level is not worth a
/// parallel launch; consecutive small levels run serially in one task.
constexpr std::int64_t kParallelLevelWork = 32768;
/// Work per parallel task of 1x1 rows.
constexpr std::int64_t kTaskWork = 8192;
/// A cyclic block with at least this much work (nonzeros + rows of A_BB) is
/// solved with parallel passes; smaller ones run serially, one per task.
constexpr std::int64_t kBigBlockWork = 32768;
/// Rows per task when preparing / writing back a big block.
constexpr index_t kCopyChunk = 2048;

} // namespace

void SweepPartial::reset(index_t width) {
  const auto w = static_cast<std::size_t>(width);
  if (residual.size() < w) {
    residual.resize(w);
    nonfinite.resize(w);
    flags.resize(w);
    iterations.resize(w);
    status.resize(w);
  }
  std::fill(residual.begin(), residual.end(), 0.0);
  std::fill(nonfinite.begin(), nonfinite.end(), 0.0);
  std::fill(flags.begin(), flags.end(), 0);
  std::fill(iterations.begin(), iterations.end(), 0);
  std::fill(status.begin(), status.end(), 0);
  ill_position = -1;
  fail_block = -1;
}

// ---------------------------------------------------------------------------
// Plan

template <class T>
SweepPlan<T>::SweepPlan(const CsrMatrix<T> &A, std::span<const Activation> activations,
                        const SccDecomposition &scc,
                        const std::function<std::string(index_t)> &describe_fn)
    : n(A.rows()), describe(describe_fn) {
  if (static_cast<index_t>(activations.size()) != n ||
      static_cast<index_t>(scc.order.size()) != n)
    throw InvalidArgument("sweep: " + std::to_string(activations.size()) +
                          " activations and an SCC order of " +
                          std::to_string(scc.order.size()) +
                          " states for n = " + std::to_string(n));
  // Sweep order: level by level, 1x1 blocks first, then the cyclic blocks.
  row_of.reserve(static_cast<std::size_t>(n));
  std::vector<index_t> block_at; // per position: cyclic block id or -1
  block_at.reserve(static_cast<std::size_t>(n));
  // The 1x1 rows of a level are independent: order them by their last column
  // so that rows reading the same window (the output channels of one pixel of
  // a convolution) are neighbours, share their x loads and become twins.
  const auto rp = A.row_ptr();
  const auto av = A.values();
  // Ties (the clipped windows at an image's edge share their last column)
  // are broken by the length and the second column, which twins share too
  // (their first may differ: a skip line).
  struct RowKey {
    index_t last = -1, first = -1, second = -1, length = 0;
  };
  std::vector<RowKey> keys(static_cast<std::size_t>(n));
  A.visit_columns([&](auto cols) {
    for (index_t i = 0; i < n; ++i) {
      RowKey &key = keys[i];
      for (auto e = rp[i]; e < rp[i + 1]; ++e) {
        const auto j = static_cast<index_t>(cols[e]);
        if (av[e] == T(0) || j == i)
          continue;
        ++key.length;
        key.last = std::max(key.last, j);
        if (key.first < 0 || j < key.first) {
          key.second = key.first;
          key.first = j;
        } else if (key.second < 0 || j < key.second) {
          key.second = j;
        }
      }
    }
  });
  auto sort_key = [&](index_t i) {
    const RowKey &k = keys[i];
    return std::tuple(k.last, k.length, k.second);
  };
  for (index_t l = 0; l < scc.level_count(); ++l) {
    SweepLevel lev;
    lev.p0 = static_cast<index_t>(row_of.size());
    for (index_t b = scc.level_ptr[l]; b < scc.level_ptr[l + 1]; ++b)
      if (scc.block_size(b) == 1) {
        row_of.push_back(scc.order[scc.block_ptr[b]]);
        block_at.push_back(-1);
      }
    lev.singles_end = static_cast<index_t>(row_of.size());
    std::stable_sort(row_of.begin() + lev.p0, row_of.end(),
                     [&](index_t a, index_t b) { return sort_key(a) < sort_key(b); });
    lev.block0 = static_cast<index_t>(blocks.size());
    for (index_t b = scc.level_ptr[l]; b < scc.level_ptr[l + 1]; ++b)
      if (scc.block_size(b) > 1) {
        SweepBlock<T> blk;
        blk.p0 = static_cast<index_t>(row_of.size());
        blk.level = l;
        for (index_t k = scc.block_ptr[b]; k < scc.block_ptr[b + 1]; ++k) {
          row_of.push_back(scc.order[k]);
          block_at.push_back(static_cast<index_t>(blocks.size()));
        }
        blk.p1 = static_cast<index_t>(row_of.size());
        blocks.push_back(std::move(blk));
      }
    lev.p1 = static_cast<index_t>(row_of.size());
    lev.block1 = static_cast<index_t>(blocks.size());
    levels.push_back(lev);
  }
  std::vector<index_t> pos(static_cast<std::size_t>(n));
  for (index_t p = 0; p < n; ++p)
    pos[row_of[p]] = p;

  // Rows in sweep order.
  wide = n > std::numeric_limits<std::int32_t>::max();
  ptr.assign(static_cast<std::size_t>(n) + 1, 0);
  diag.assign(static_cast<std::size_t>(n), T(0));
  kind.assign(static_cast<std::size_t>(n), row_plain);
  act.resize(static_cast<std::size_t>(n));
  std::int64_t kept = 0;
  for (T v : av)
    kept += v != T(0);
  (wide ? static_cast<void>(cols64.reserve(static_cast<std::size_t>(kept)))
        : static_cast<void>(cols32.reserve(static_cast<std::size_t>(kept))));
  vals.reserve(static_cast<std::size_t>(kept));
  std::vector<Triplet<T>> local;
  A.visit_columns([&](auto cols) {
    for (index_t p = 0; p < n; ++p) {
      const index_t i = row_of[p];
      const index_t bid = block_at[p];
      act[p] = activations[i];
      for (auto e = rp[i]; e < rp[i + 1]; ++e) {
        const T v = av[e];
        if (v == T(0))
          continue;
        const index_t j = cols[e];
        if (bid < 0 && j == i) {
          diag[p] = v;
        } else if (bid >= 0 && block_at[pos[j]] == bid) {
          local.push_back({p - blocks[bid].p0, pos[j] - blocks[bid].p0, v});
        } else {
          if (wide)
            cols64.push_back(j);
          else
            cols32.push_back(static_cast<std::int32_t>(j));
          vals.push_back(v);
        }
      }
      ptr[p + 1] = static_cast<std::int64_t>(vals.size());
      if (bid >= 0) {
        kind[p] = row_cyclic;
        auto &blk = blocks[bid];
        if (p + 1 == blk.p1) { // last row of the block
          const index_t nb = blk.p1 - blk.p0;
          blk.local = CsrMatrix<T>::from_triplets(nb, nb, local);
          local.clear();
        }
      } else if (diag[p] != T(0)) {
        if (singleton_well_posed(act[p], static_cast<double>(diag[p]))) {
          kind[p] = row_diagonal;
        } else {
          kind[p] = row_ill_posed;
          if (ill_posed.size() < 5)
            ill_posed.push_back(describe(i) + " (" + act[p].name() +
                                ") has self-weight a_ii = " +
                                format_number(static_cast<double>(diag[p]), 17) +
                                ": x = phi(a_ii x + c) has no unique solution");
          ++ill_posed_count;
        }
      }
    }
  });

  // Twins: neighbouring plain 1x1 rows of a level with the same columns (or
  // the same columns after a differing first one, the head), in runs of <= 255.
  twins.assign(static_cast<std::size_t>(n), 1);
  twin_heads.assign(static_cast<std::size_t>(n), 0);
  with_columns([&](const auto *cols) {
    for (const auto &lev : levels)
      for (index_t p = lev.singles_end - 2; p >= lev.p0; --p) {
        const std::int64_t len = ptr[p + 1] - ptr[p];
        if (kind[p] != row_plain || kind[p + 1] != row_plain || len < 2 ||
            len != ptr[p + 2] - ptr[p + 1] ||
            !std::equal(cols + ptr[p] + 1, cols + ptr[p + 1], cols + ptr[p + 1] + 1))
          continue;
        const unsigned char head = cols[ptr[p]] == cols[ptr[p + 1]] ? 0 : 1;
        if (twins[p + 1] > 1 && twin_heads[p + 1] != head)
          continue;
        twins[p] = static_cast<unsigned char>(std::min(255, twins[p + 1] + 1));
        twin_heads[p] = head;
      }
  });

  // Cyclic blocks: fixed-point systems (created now that `blocks` is final).
  for (auto &blk : blocks) {
    const index_t nb = blk.p1 - blk.p0;
    blk.system = std::make_unique<FixedPointSystem<T>>(
        blk.local, std::span<const Activation>(act.data() + blk.p0, nb));
    blk.big = blk.local.nnz() + nb >= kBigBlockWork;
    cyclic_states += nb;
    largest_block = std::max(largest_block, nb);
  }
  if (n > 0 && largest_block == 0)
    largest_block = 1;

  // Stages.
  const auto threads = static_cast<std::int64_t>(tbb::info::default_concurrency());
  SweepStage serial;
  bool open = false;
  auto close = [&] {
    if (open)
      stages.push_back(std::move(serial));
    serial = SweepStage{};
    open = false;
  };
  for (index_t l = 0; l < static_cast<index_t>(levels.size()); ++l) {
    const auto &lev = levels[l];
    const std::int64_t singles =
        (ptr[lev.singles_end] - ptr[lev.p0]) + (lev.singles_end - lev.p0);
    std::int64_t block_work = 0;
    bool has_big = false;
    for (index_t b = lev.block0; b < lev.block1; ++b) {
      has_big = has_big || blocks[b].big;
      block_work += (ptr[blocks[b].p1] - ptr[blocks[b].p0]) +
                    8 * (blocks[b].local.nnz() + blocks[b].p1 - blocks[b].p0);
    }
    if (!has_big && singles + block_work < kParallelLevelWork) {
      if (!open) {
        serial.serial = true;
        serial.level0 = l;
        open = true;
      }
      serial.level1 = l + 1;
      continue;
    }
    close();
    SweepStage st;
    st.serial = false;
    st.level0 = l;
    st.level1 = l + 1;
    if (lev.singles_end > lev.p0) {
      // Ranges of about equal work (nonzeros + rows).
      const std::int64_t parts =
          std::clamp<std::int64_t>(singles / kTaskWork, 1, 32 * threads);
      index_t p = lev.p0;
      for (std::int64_t q = 1; q <= parts; ++q) {
        const std::int64_t target = singles * q / parts;
        index_t end = p;
        while (end < lev.singles_end &&
               (ptr[end] - ptr[lev.p0]) + (end - lev.p0) < target)
          ++end;
        if (q == parts)
          end = lev.singles_end;
        if (end > p)
          st.tasks.push_back({p, end, -1});
        p = end;
      }
    }
    for (index_t b = lev.block0; b < lev.block1; ++b) {
      if (blocks[b].big)
        st.big_blocks.push_back(b);
      else
        st.tasks.push_back({blocks[b].p0, blocks[b].p1, b});
    }
    max_tasks = std::max<index_t>(max_tasks, static_cast<index_t>(st.tasks.size()));
    stages.push_back(std::move(st));
  }
  close();
  max_tasks = std::max<index_t>(max_tasks, 1);
}

// ---------------------------------------------------------------------------
// Execution

template <class T> struct SweepRunner {
  const SweepPlan<T> &plan;
  SweepWork<T> &work;
  SlabView<const T> Z;
  SlabView<T> X;
  const PicardOptions &opt;
  bool warm;
  index_t S, W, k;
  // Per column (k), in the reused workspace.
  std::vector<double> &residual;
  std::vector<unsigned char> &flags;
  std::vector<int> &iterations;
  std::vector<unsigned char> &status;
  index_t ill_position = -1, ill_column = 0;
  double ill_c = 0;
  index_t fail_block = -1, fail_column = 0;
  SolveStatus fail_status = SolveStatus::converged;
  double fail_residual = 0;
  // The active level's row kernels, chosen once per solve.
  const SolveKernelsOf<T> &kernels = solve_kernels().template of<T>();

  SweepRunner(const SweepPlan<T> &p, SweepWork<T> &w, SlabView<const T> z, SlabView<T> x,
              const PicardOptions &o, bool warm_start)
      : plan(p), work(w), Z(z), X(x), opt(o), warm(warm_start), S(x.slabs), W(x.width),
        k(x.cols), residual(w.residual), flags(w.flags), iterations(w.iterations),
        status(w.status) {
    const auto cols = static_cast<std::size_t>(k);
    residual.assign(cols, 0.0);
    flags.assign(cols, 0);
    iterations.assign(cols, 0);
    status.assign(cols, 0);
  }

  /// 1x1 rows at positions [p0, p1) for slab s.
  void singles(index_t p0, index_t p1, index_t s, SweepPartial &part) {
    kernels.singles(plan, Z, X, p0, p1, s, part);
  }

  /// c_B = z_B + A_{B,rest} x_rest and the starting iterate, for rows
  /// [r0, r1) of block b, slab s, into the engine's buffers (ld W).
  void prepare_block(const SweepBlock<T> &blk, index_t r0, index_t r1, index_t s, T *c,
                     T *x0) {
    kernels.block_rows(plan, Z, X, blk, r0, r1, s, c, x0, warm);
  }

  void write_back(const SweepBlock<T> &blk, index_t r0, index_t r1, index_t s,
                  const T *xb) {
    T *x = X.slab(s);
    const index_t ncols = X.slab_cols(s);
    for (index_t r = r0; r < r1; ++r) {
      const index_t i = plan.row_of[blk.p0 + r];
      for (index_t w = 0; w < ncols; ++w)
        x[i * W + w] = xb[r * W + w];
    }
  }

  void block_result(index_t b, index_t column, const ColumnState &cs, int &iters,
                    unsigned char &st, double &res, index_t &fb, index_t &fc,
                    SolveStatus &fs, double &fr) {
    iters = std::max(iters, cs.iterations);
    st = std::max(st, static_cast<unsigned char>(cs.status));
    res = std::max(res, cs.residual);
    if (cs.status != SolveStatus::converged && fb < 0) {
      fb = b;
      fc = column;
      fs = cs.status;
      fr = cs.residual;
    }
  }

  /// A small cyclic block for slab s, serially, in this thread's workspace.
  void small_block(index_t b, index_t s, SweepPartial &part) {
    const auto &blk = plan.blocks[b];
    const index_t nb = blk.p1 - blk.p0;
    auto &fw = work.small.local();
    fw.reserve(nb, 1, W, opt.anderson_depth,
               static_cast<index_t>(blk.system->parts().size()) - 1, false, true);
    prepare_block(blk, 0, nb, s, fw.c_buffer(0), fw.initial(0));
    FixedPointRun<T> run;
    run.c = fw.c_buffer(0);
    run.columns = X.slab_cols(s);
    run.zero_start = !warm;
    run.parallel = false;
    run_fixed_point(*blk.system, fw, run, opt);
    write_back(blk, 0, nb, s, fw.current(0));
    for (index_t w = 0; w < run.columns; ++w)
      block_result(b, w, fw.column(w), part.iterations[w], part.status[w],
                   part.residual[w], part.fail_block, part.fail_column, part.fail_status,
                   part.fail_residual);
  }

  /// A big cyclic block for all slabs with parallel passes.
  void big_block(index_t b) {
    const auto &blk = plan.blocks[b];
    const index_t nb = blk.p1 - blk.p0;
    auto &fw = work.big;
    fw.reserve(nb, S, W, opt.anderson_depth,
               static_cast<index_t>(blk.system->parts().size()) - 1, false, true);
    const index_t chunks = (nb + kCopyChunk - 1) / kCopyChunk;
    for_tasks(S * chunks, true, [&](index_t t) {
      const index_t s = t / chunks, r0 = (t % chunks) * kCopyChunk;
      prepare_block(blk, r0, std::min(nb, r0 + kCopyChunk), s, fw.c_buffer(s),
                    fw.initial(s));
    });
    FixedPointRun<T> run;
    run.c = fw.c_buffer(0);
    run.columns = k;
    run.zero_start = !warm;
    run.parallel = true;
    run_fixed_point(*blk.system, fw, run, opt);
    for_tasks(S * chunks, true, [&](index_t t) {
      const index_t s = t / chunks, r0 = (t % chunks) * kCopyChunk;
      write_back(blk, r0, std::min(nb, r0 + kCopyChunk), s, fw.current(s));
    });
    for (index_t j = 0; j < k; ++j)
      block_result(b, j, fw.column(j), iterations[j], status[j], residual[j], fail_block,
                   fail_column, fail_status, fail_residual);
  }

  void merge(const SweepPartial &part, index_t s) {
    const index_t ncols = X.slab_cols(s);
    for (index_t w = 0; w < ncols; ++w) {
      const index_t j = s * W + w;
      residual[j] = std::max(residual[j], part.residual[w]);
      flags[j] |= part.flags[w] | (part.nonfinite[w] != 0 ? sweep_flag_non_finite : 0);
      iterations[j] = std::max(iterations[j], part.iterations[w]);
      status[j] = std::max(status[j], part.status[w]);
    }
    if (part.ill_position >= 0 &&
        (ill_position < 0 || part.ill_position < ill_position ||
         (part.ill_position == ill_position && s * W + part.ill_column < ill_column))) {
      ill_position = part.ill_position;
      ill_column = s * W + part.ill_column;
      ill_c = part.ill_c;
    }
    if (part.fail_block >= 0 &&
        (fail_block < 0 || part.fail_block < fail_block ||
         (part.fail_block == fail_block && s * W + part.fail_column < fail_column))) {
      fail_block = part.fail_block;
      fail_column = s * W + part.fail_column;
      fail_status = part.fail_status;
      fail_residual = part.fail_residual;
    }
  }

  void go(const std::function<void(int, double)> &progress) {
    auto &partials = work.partials;
    const auto need = static_cast<std::size_t>(S * plan.max_tasks);
    if (partials.size() < need)
      partials.resize(need);
    for (const auto &stage : plan.stages) {
      if (stage.serial) {
        for_tasks(S, true, [&](index_t s) {
          auto &part = partials[s];
          part.reset(W);
          for (index_t l = stage.level0; l < stage.level1; ++l) {
            const auto &lev = plan.levels[l];
            singles(lev.p0, lev.singles_end, s, part);
            for (index_t b = lev.block0; b < lev.block1; ++b)
              small_block(b, s, part);
          }
        });
        for (index_t s = 0; s < S; ++s)
          merge(partials[s], s);
      } else {
        const auto T_ = static_cast<index_t>(stage.tasks.size());
        // Task-major: a thread's consecutive tasks are one row range for
        // successive slabs, which then reads its part of A from cache.
        for_tasks(S * T_, true, [&](index_t t) {
          const index_t s = t % S;
          const auto &task = stage.tasks[t / S];
          auto &part = partials[t];
          part.reset(W);
          if (task.block < 0)
            singles(task.p0, task.p1, s, part);
          else
            small_block(task.block, s, part);
        });
        for (index_t t = 0; t < S * T_; ++t)
          merge(partials[t], t % S);
        for (index_t b : stage.big_blocks)
          big_block(b);
      }
      if (progress)
        progress(static_cast<int>(stage.level1 - 1), 0.0);
    }
  }

  void finish(SolveReport &report) {
    report.column_residuals.assign(static_cast<std::size_t>(k), 0.0);
    report.column_status.assign(static_cast<std::size_t>(k), SolveStatus::converged);
    report.column_iterations.assign(iterations.begin(), iterations.end());
    report.status = SolveStatus::converged;
    report.residual = 0;
    report.iterations = 0;
    for (index_t j = 0; j < k; ++j) {
      auto st = static_cast<SolveStatus>(status[j]);
      if (flags[j] & sweep_flag_non_finite)
        st = std::max(st, SolveStatus::non_finite);
      if (flags[j] & sweep_flag_ill_posed)
        st = SolveStatus::ill_posed;
      const bool bad = (flags[j] & (sweep_flag_non_finite | sweep_flag_ill_posed)) != 0;
      report.column_residuals[j] =
          bad ? std::numeric_limits<double>::infinity() : residual[j];
      report.column_status[j] = st;
      report.status = std::max(report.status, st);
      report.residual = std::max(report.residual, report.column_residuals[j]);
      report.iterations = std::max(report.iterations, iterations[j]);
    }
    std::string msg;
    if (plan.ill_posed_count > 0) {
      msg += "ill-posed: " + std::to_string(plan.ill_posed_count) +
             " 1x1 block(s) without a unique solution, e.g. ";
      for (std::size_t q = 0; q < plan.ill_posed.size(); ++q)
        msg += (q ? "; " : "") + plan.ill_posed[q];
    } else if (ill_position >= 0) {
      const index_t i = plan.row_of[ill_position];
      msg += "ill-posed: " + plan.describe(i) + " (" + plan.act[ill_position].name() +
             ") with self-weight a_ii = " +
             format_number(static_cast<double>(plan.diag[ill_position]), 17) +
             ": x = phi(a_ii x + c) has several solutions for column " +
             std::to_string(ill_column + 1) + " (c = " + format_number(ill_c, 17) + ")";
    }
    if (fail_block >= 0) {
      const auto &blk = plan.blocks[fail_block];
      if (!msg.empty())
        msg += "; ";
      msg += "cyclic block of " + std::to_string(blk.p1 - blk.p0) + " states (level " +
             std::to_string(blk.level) + ", containing " +
             plan.describe(plan.row_of[blk.p0]) + "): " + to_string(fail_status) +
             " in column " + std::to_string(fail_column + 1) + ", residual " +
             format_number(fail_residual, 17);
    }
    if (msg.empty() && report.status == SolveStatus::non_finite)
      msg = "a NaN or Inf appeared (non-finite input or overflow)";
    report.message = msg;
  }
};

template <class T>
void run_sweep(const SweepPlan<T> &plan, SweepWork<T> &work, SlabView<const T> Z,
               SlabView<T> X, const PicardOptions &options, bool warm_start,
               const std::function<void(int, double)> &progress, SolveReport &report) {
  if (Z.rows != plan.n || X.rows != plan.n || Z.cols != X.cols || Z.width != X.width)
    throw InvalidArgument("sweep: Z and X must both be n x k with the same slab width");
  SweepRunner<T> runner(plan, work, Z, X, options, warm_start);
  runner.go(progress);
  runner.finish(report);
}

template class SweepPlan<float>;
template class SweepPlan<double>;
template void run_sweep(const SweepPlan<float> &, SweepWork<float> &,
                        SlabView<const float>, SlabView<float>, const PicardOptions &,
                        bool, const std::function<void(int, double)> &, SolveReport &);
template void run_sweep(const SweepPlan<double> &, SweepWork<double> &,
                        SlabView<const double>, SlabView<double>, const PicardOptions &,
                        bool, const std::function<void(int, double)> &, SolveReport &);

} // namespace tacit::inline v1::detail
