// Equilibrium solver benchmarks.
//
// Models:
//  - feed-forward: the ResNet20-like model (n = 188,416 states, ~37M nonzeros,
//    nilpotent A) for the sweep; a quarter-size one (16 x 16 images) for
//    Picard, which needs depth + 2 products;
//  - truly implicit: random_implicit_model (n = 50,000, 16 nonzeros per row,
//    ||A||_inf = 0.9, one large strongly connected block).
// Every solve time is reported as a ratio to one product A X with the same A,
// batch width and thread count, measured in the same run (best of 5):
//  - `sweep_over_spmv`: the sweep on the feed-forward A (target <= 1.2);
//  - `over_spmv` for the other solves (Picard: about iterations + 1);
//  - `z_over_spmv`: the share of that spent forming Z = B U + b;
//  - `inplace_over_spmv`: a sweep that reads the rows of A in place (through
//    the SCC order) instead of the solver's permuted copy, for comparison.
// Arguments: threads (task_arena size), batch width k, instruction-set level
// (isa: every level the CPU supports, solve and baseline at that level; see
// bench_isa.hpp).

#include <benchmark/benchmark.h>

#include <tacit/core/structure.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/solve/solve.hpp>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>

#include "solve/detail/fixed_point.hpp"
#include "solve/detail/solve_kernels.hpp"

#include "bench_isa.hpp"

using namespace tacit;

namespace {

using Clock = std::chrono::steady_clock;

template <class F> double seconds(F &&f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

template <class F> double best_seconds(int repeats, F &&f) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r)
    best = std::min(best, seconds(f));
  return best;
}

enum ModelId { resnet_full = 0, resnet_quarter = 1, implicit = 2 };

template <class T> const Model<T> &model(ModelId id) {
  static std::map<ModelId, std::unique_ptr<Model<T>>> cache;
  auto &m = cache[id];
  if (!m) {
    if (id == resnet_full) {
      m = std::make_unique<Model<T>>(resnet_like_model<T>());
    } else if (id == resnet_quarter) {
      ResNetLikeShape shape;
      shape.image = 16;
      m = std::make_unique<Model<T>>(resnet_like_model<T>(shape));
    } else {
      m = std::make_unique<Model<T>>(random_implicit_model<T>(50000, 64, 10, 16, 0.9));
    }
  }
  return *m;
}

/// One product Y = A X with the model's A, k columns: the baseline. Slab
/// width min(32, k), so that k = 1 is a true SpMV on contiguous vectors.
template <class T> struct Product {
  const LinearOperator<T> &A;
  Batch<T> X, Y;
  Product(const Model<T> &m, index_t k)
      : A(m.A()), X(random_batch<T>(m.states(), k, 3, std::min<index_t>(32, k))),
        Y(m.states(), k, std::min<index_t>(32, k)) {}
  void operator()() { A.apply(Mode::normal, T(1), X, T(0), Y); }
};

/// Times `work` and the baseline product alternately (so that both see the
/// same machine load) and reports best(work) / best(product) as `ratio_name`.
template <class T, class F>
void timed_against_product(benchmark::State &state, tbb::task_arena &arena,
                           Product<T> &product, F &&work, const char *ratio_name) {
  arena.execute([&] {
    work();
    product();
  }); // warm-up (first-touch allocations)
  double best = 1e30, best_product = 1e30;
  for (auto _ : state) {
    const double t = seconds([&] { arena.execute(work); });
    best = std::min(best, t);
    best_product = std::min(best_product, seconds([&] { arena.execute(product); }));
    state.SetIterationTime(t);
  }
  state.counters[ratio_name] = best / best_product;
  state.counters["spmv_ms"] = 1e3 * best_product;
}

/// Time per solve (manual timing) and the ratio to one product.
template <class T>
void run_solve(benchmark::State &state, ModelId id, SolveMethod method, int anderson,
               const char *ratio_name) {
  const int threads = static_cast<int>(state.range(0));
  const index_t k = state.range(1);
  tacit::bench::IsaScope isa(state.range(2));
  const Model<T> &m = model<T>(id);
  tbb::task_arena arena(threads);
  SolveOptions opt;
  opt.method = method;
  opt.picard.anderson_depth = anderson;
  std::unique_ptr<EquilibriumSolver<T>> solver;
  arena.execute([&] { solver = std::make_unique<EquilibriumSolver<T>>(m, opt); });
  const auto U = random_batch<T>(m.inputs(), k, 7);
  Batch<T> X;
  SolveReport report;
  Product<T> product(m, k);
  timed_against_product(
      state, arena, product, [&] { report = solver->solve(U, X); }, ratio_name);
  state.counters["iterations"] = report.iterations;
  state.counters["ok"] = report.ok() ? 1 : 0;
  // Z = B U + b alone (part of every solve).
  detail::SlabBuffer<T> Z;
  double z = 0, p = 0;
  arena.execute([&] {
    z = best_seconds(3, [&] { detail::affine_batch(m.B(), m.bias_x(), U, Z); });
    p = best_seconds(3, product);
  });
  state.counters["z_over_spmv"] = z / p;
  state.SetLabel(to_string(solver->method()) + (anderson ? "+anderson " : " ") +
                 to_string(active_isa()));
}

// ---------------------------------------------------------------------------
// Sweep on the ResNet20-like (feed-forward) model.

template <class T> void BM_SweepFeedForward(benchmark::State &state) {
  run_solve<T>(state, resnet_full, SolveMethod::automatic, 0, "sweep_over_spmv");
}
void sweep_args(benchmark::internal::Benchmark *b) {
  b->ArgNames({"threads", "k", "isa"});
  for (int threads : {1, 2})
    for (int k : {1, 8, 32, 128})
      for (auto isa : tacit::bench::isa_levels())
        b->Args({threads, k, isa});
}
BENCHMARK_TEMPLATE(BM_SweepFeedForward, double)
    ->Apply(sweep_args)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);
BENCHMARK_TEMPLATE(BM_SweepFeedForward, float)
    ->ArgNames({"threads", "k", "isa"})
    ->ArgsProduct({{2}, {1}, tacit::bench::isa_levels()})
    ->ArgsProduct({{2}, {32}, tacit::bench::isa_levels()})
    ->ArgsProduct({{2}, {128}, tacit::bench::isa_levels()})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

/// The alternative layout: rows of A read in place through the SCC order,
/// level by level (same kernel, same parallel split over slabs x rows).
template <class T> void BM_SweepInPlace(benchmark::State &state) {
  const int threads = static_cast<int>(state.range(0));
  const index_t k = state.range(1);
  tacit::bench::IsaScope isa(state.range(2));
  const Model<T> &m = model<T>(resnet_full);
  const auto &A = dynamic_cast<const CsrMatrix<T> &>(m.A());
  const auto scc = strongly_connected_components(A);
  const auto U = random_batch<T>(m.inputs(), k, 7);
  detail::SlabBuffer<T> Z, X; // aligned, as in the solver
  X.reshape(m.states(), k, std::min<index_t>(default_slab_width, k));
  X.zero();
  tbb::task_arena arena(threads);
  arena.execute([&] { detail::affine_batch(m.B(), m.bias_x(), U, Z); });
  const index_t S = X.slabs, W = X.width;
  auto sweep = [&] {
    A.visit_columns([&](auto cols) {
      const auto *ptr = A.row_ptr().data();
      const T *vals = A.values().data();
      for (index_t l = 0; l < scc.level_count(); ++l) {
        const index_t p0 = scc.block_ptr[scc.level_ptr[l]];
        const index_t p1 = scc.block_ptr[scc.level_ptr[l + 1]];
        const index_t chunk = 1024, chunks = (p1 - p0 + chunk - 1) / chunk;
        tbb::parallel_for(tbb::blocked_range<index_t>(0, S * chunks, 1), [&](auto r) {
          for (index_t t = r.begin(); t < r.end(); ++t) {
            const index_t s = t / chunks, q0 = p0 + (t % chunks) * chunk;
            T *x = X.slab(s);
            const T *z = Z.slab(s);
            for (index_t q = q0; q < std::min(p1, q0 + chunk); ++q) {
              const index_t i = scc.order[q];
              detail::generic::for_column_chunks<T>(
                  X.slab_cols(s), [&](auto cw, index_t c0) {
                    constexpr int CW = decltype(cw)::value;
                    T c[CW];
                    detail::generic::row_sum4<CW>(vals, cols.data(), ptr[i], ptr[i + 1],
                                                  x + c0, W, c);
                    for (int w = 0; w < CW; ++w) {
                      const T v = c[w] + z[i * W + c0 + w];
                      x[i * W + c0 + w] = v > T(0) ? v : T(0);
                    }
                  });
            }
          }
        });
      }
    });
  };
  Product<T> product(m, k);
  timed_against_product(state, arena, product, sweep, "inplace_over_spmv");
  state.SetLabel("in place (generic row sums), product " + to_string(active_isa()));
}
BENCHMARK_TEMPLATE(BM_SweepInPlace, double)
    ->ArgNames({"threads", "k", "isa"})
    ->ArgsProduct({{2}, {1}, tacit::bench::isa_levels()})
    ->ArgsProduct({{2}, {32}, tacit::bench::isa_levels()})
    ->ArgsProduct({{1}, {1}, tacit::bench::isa_levels()})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

// ---------------------------------------------------------------------------
// Picard vs sweep on a quarter-size feed-forward model.

template <class T> void BM_PicardFeedForward(benchmark::State &state) {
  run_solve<T>(state, resnet_quarter, SolveMethod::picard, 0, "over_spmv");
}
template <class T> void BM_SweepFeedForwardQuarter(benchmark::State &state) {
  run_solve<T>(state, resnet_quarter, SolveMethod::sweep, 0, "sweep_over_spmv");
}
void quarter_args(benchmark::internal::Benchmark *b) {
  b->ArgNames({"threads", "k", "isa"});
  for (int threads : {1, 2})
    for (int k : {1, 8, 32})
      for (auto isa : tacit::bench::isa_levels())
        b->Args({threads, k, isa});
  for (auto isa : tacit::bench::isa_levels())
    b->Args({2, 128, isa});
}
BENCHMARK_TEMPLATE(BM_PicardFeedForward, double)
    ->Apply(quarter_args)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);
BENCHMARK_TEMPLATE(BM_SweepFeedForwardQuarter, double)
    ->Apply(quarter_args)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

// ---------------------------------------------------------------------------
// Truly implicit model: Picard, Anderson, and the sweep (automatic).

template <class T> void BM_ImplicitPicard(benchmark::State &state) {
  run_solve<T>(state, implicit, SolveMethod::picard, 0, "over_spmv");
}
template <class T> void BM_ImplicitAnderson(benchmark::State &state) {
  run_solve<T>(state, implicit, SolveMethod::picard, 5, "over_spmv");
}
template <class T> void BM_ImplicitAuto(benchmark::State &state) {
  run_solve<T>(state, implicit, SolveMethod::automatic, 0, "over_spmv");
}
void implicit_args(benchmark::internal::Benchmark *b) {
  b->ArgNames({"threads", "k", "isa"});
  for (int threads : {1, 2})
    for (int k : {1, 8, 32, 128})
      for (auto isa : tacit::bench::isa_levels())
        b->Args({threads, k, isa});
}
BENCHMARK_TEMPLATE(BM_ImplicitPicard, double)
    ->Apply(implicit_args)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.3);
BENCHMARK_TEMPLATE(BM_ImplicitAnderson, double)
    ->Apply(implicit_args)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.3);
BENCHMARK_TEMPLATE(BM_ImplicitAuto, double)
    ->ArgNames({"threads", "k", "isa"})
    ->ArgsProduct({{2}, {1}, tacit::bench::isa_levels()})
    ->ArgsProduct({{2}, {32}, tacit::bench::isa_levels()})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.3);
BENCHMARK_TEMPLATE(BM_ImplicitPicard, float)
    ->ArgNames({"threads", "k", "isa"})
    ->ArgsProduct({{2}, {1}, tacit::bench::isa_levels()})
    ->ArgsProduct({{2}, {32}, tacit::bench::isa_levels()})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.3);

[[maybe_unused]] const bool context = tacit::bench::add_isa_context();

} // namespace

BENCHMARK_MAIN();
