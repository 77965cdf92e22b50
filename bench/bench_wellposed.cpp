// Well-posedness kernels, as ratios to a sparse product of the same matrix
// measured in the same run and the same task arena:
//  - PerronImplicit: perron_frobenius_bound on a truly implicit A
//    (random_implicit_model: 100k states, 16 nonzeros per row, one SCC);
//    `spmv_equivalents` = time / time of one |A| x, `per_iteration` = that
//    divided by the power iterations (the overhead of extraction, the
//    certified ratio pass and the vector update per product); the Decide
//    variant stops once the interval lies on one side of 1;
//  - AnalyseFeedForward: analyse_well_posedness (norms, SCC, PF) on strictly
//    lower triangular patterns (random 100k x 16, and a ResNet-like stack),
//    which should cost a few products (no iteration: lambda_PF = 0);
//  - ProjectInfNorm: project_inf_norm onto ||A||_inf <= kappa with kappa
//    half the current norm (every row changes), values restored between
//    iterations outside the timing.
// Every benchmark runs with 1 and 2 threads (tbb::task_arena).

#include <benchmark/benchmark.h>

#include <tacit/core/csr.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/analysis/wellposed.hpp>

#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

using namespace tacit;

namespace {

using Clock = std::chrono::steady_clock;

constexpr index_t implicit_states = 100000;
constexpr index_t row_nnz = 16;

const CsrMatrix<double> &implicit_matrix() {
  static const CsrMatrix<double> A = [] {
    const auto m = random_implicit_model<double>(implicit_states, 8, 4, row_nnz, 0.9, 7);
    return m.A().to_csr();
  }();
  return A;
}

/// Strictly lower triangular, ~16 entries per row (a feed-forward pattern
/// without layers).
const CsrMatrix<double> &feed_forward_matrix() {
  static const CsrMatrix<double> A = [] {
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<Triplet<double>> t;
    t.reserve(static_cast<std::size_t>(implicit_states * row_nnz));
    for (index_t i = 1; i < implicit_states; ++i)
      for (index_t k = 0; k < std::min<index_t>(row_nnz, i); ++k)
        t.push_back(
            {i, static_cast<index_t>(rng() % static_cast<std::uint64_t>(i)), u(rng)});
    return CsrMatrix<double>::from_triplets(implicit_states, implicit_states, t);
  }();
  return A;
}

/// A ResNet-like stack on 16x16 images (about 47k states, 9M nonzeros).
const CsrMatrix<double> &resnet_matrix() {
  static const CsrMatrix<double> A = [] {
    ResNetLikeShape shape;
    shape.image = 16;
    return resnet_like_matrix<double>(shape, 1);
  }();
  return A;
}

/// Best time of one |A| x over a few repetitions, in the current arena.
double spmv_seconds(const CsrMatrix<double> &A) {
  std::vector<double> x(static_cast<std::size_t>(A.cols()), 1.0),
      y(static_cast<std::size_t>(A.rows()));
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    for (int k = 0; k < 10; ++k)
      A.apply(Mode::abs, 1.0, std::span<const double>(x), 0.0, std::span<double>(y));
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count() / 10);
  }
  benchmark::DoNotOptimize(y.data());
  return best;
}

template <class F>
void run_in_arena(benchmark::State &state, const CsrMatrix<double> &A, F &&body) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  double spmv = 0, total = 0;
  arena.execute([&] {
    spmv = spmv_seconds(A);
    for (auto _ : state) {
      const auto t0 = Clock::now();
      body(state);
      total += std::chrono::duration<double>(Clock::now() - t0).count();
    }
  });
  const double per_call = total / static_cast<double>(state.iterations());
  state.counters["spmv_ms"] = spmv * 1e3;
  state.counters["spmv_equivalents"] = per_call / spmv;
  state.counters["nnz"] = static_cast<double>(A.nnz());
}

void BM_PerronImplicit(benchmark::State &state) {
  const auto &A = implicit_matrix();
  PerronBound pf;
  run_in_arena(state, A, [&](benchmark::State &) {
    pf = perron_frobenius_bound(A);
    benchmark::DoNotOptimize(pf.upper);
  });
  state.counters["iterations"] = pf.iterations;
  state.counters["per_iteration"] =
      state.counters["spmv_equivalents"] / std::max(1, pf.iterations);
  state.counters["rel_width"] = (pf.upper - pf.lower) / pf.upper;
  state.counters["upper"] = pf.upper;
}

/// The same, stopping once the interval is on one side of 1.
void BM_PerronImplicitDecide(benchmark::State &state) {
  const auto &A = implicit_matrix();
  PerronOptions options;
  options.stop_when_decided = true;
  PerronBound pf;
  run_in_arena(state, A, [&](benchmark::State &) {
    pf = perron_frobenius_bound(A, options);
    benchmark::DoNotOptimize(pf.upper);
  });
  state.counters["iterations"] = pf.iterations;
  state.counters["upper"] = pf.upper;
}

void BM_AnalyseFeedForward(benchmark::State &state) {
  const auto &A = feed_forward_matrix();
  run_in_arena(state, A, [&](benchmark::State &) {
    const auto r = analyse_well_posedness(static_cast<const LinearOperator<double> &>(A));
    benchmark::DoNotOptimize(r.pf.upper);
  });
}

void BM_AnalyseResNetLike(benchmark::State &state) {
  const auto &A = resnet_matrix();
  run_in_arena(state, A, [&](benchmark::State &) {
    const auto r = analyse_well_posedness(static_cast<const LinearOperator<double> &>(A));
    benchmark::DoNotOptimize(r.pf.upper);
  });
}

void BM_SccFeedForward(benchmark::State &state) {
  const auto &A = feed_forward_matrix();
  run_in_arena(state, A, [&](benchmark::State &) {
    const auto s = strongly_connected_components(A);
    benchmark::DoNotOptimize(s.block_ptr.data());
  });
}

void BM_ProjectInfNorm(benchmark::State &state) {
  const auto &A0 = implicit_matrix();
  auto A = A0;
  const double kappa = 0.5 * norm_inf(A0);
  index_t changed = 0;
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  double spmv = 0, total = 0;
  arena.execute([&] {
    spmv = spmv_seconds(A0);
    for (auto _ : state) {
      state.PauseTiming();
      {
        auto v = A.mutable_values();
        std::copy(A0.values().begin(), A0.values().end(), v.begin());
      }
      state.ResumeTiming();
      const auto t0 = Clock::now();
      changed = project_inf_norm(A, kappa);
      total += std::chrono::duration<double>(Clock::now() - t0).count();
    }
  });
  state.counters["rows_changed"] = static_cast<double>(changed);
  state.counters["spmv_ms"] = spmv * 1e3;
  state.counters["spmv_equivalents"] =
      total / static_cast<double>(state.iterations()) / spmv;
}

} // namespace

BENCHMARK(BM_PerronImplicit)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_PerronImplicitDecide)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_AnalyseFeedForward)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_AnalyseResNetLike)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_SccFeedForward)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ProjectInfNorm)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
