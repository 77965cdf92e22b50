// All q rows of the sensitivity matrix S = |C| (I - |A|)^-1 |B| + |D| (one
// batched transposed solve), per back-end, as ratios to one product
// |A|^T X with the same q columns measured in the same run and task arena
// (`products` = time / time of that product):
//  - Implicit*: a truly implicit model (random_implicit_model, 16 nonzeros
//    per row, ||A||_inf = 0.9, one big SCC): KLU (1k states: the LU factors
//    of such a random pattern fill in) and the certified iteration (1k and
//    50k states; `iterations`, `error_bound` reported);
//  - ResNetLike*: the feed-forward ResNet-like CSR (generate.hpp, 32x32
//    images: 188k states, ~40M nonzeros): the SCC sweep (KLU as a reference);
//  - ResNet20: the structured ResNet20 (network.hpp, BlockOperator A): the
//    block sweep with the structured |op|^T kernels.
// Setup (analysis, factorisation) is timed separately (`setup_ms`).
// Every benchmark runs with 1 and 2 threads (tbb::task_arena).

#include <benchmark/benchmark.h>

#include <tacit/core/csr.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/analysis/sensitivity.hpp>

#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

using namespace tacit;

namespace {

using Clock = std::chrono::steady_clock;

const Model<double> &implicit_model() {
  static const Model<double> m =
      random_implicit_model<double>(50000, 3072, 10, 16, 0.9, 7);
  return m;
}

/// Smaller: the LU factors of a random sparse (expander-like) pattern fill in
/// almost completely, so KLU is measured at 1k states.
const Model<double> &small_implicit_model() {
  static const Model<double> m =
      random_implicit_model<double>(1000, 3072, 10, 16, 0.9, 7);
  return m;
}

const Model<double> &resnet_like() {
  static const Model<double> m = resnet_like_model<double>({}, 1);
  return m;
}

const Model<double> &resnet20_model() {
  static const Model<double> m = resnet20<double>();
  return m;
}

/// Best time of one |A|^T X with q columns.
double product_seconds(const LinearOperator<double> &A, index_t q) {
  std::vector<double> x(static_cast<std::size_t>(A.rows() * q), 1.0),
      y(static_cast<std::size_t>(A.cols() * q));
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    A.apply(Mode::abs_transpose, 1.0, ConstMatrixView<double>(x.data(), A.rows(), q, q),
            0.0, MatrixView<double>{y.data(), A.cols(), q, q});
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  benchmark::DoNotOptimize(y.data());
  return best;
}

void all_rows(benchmark::State &state, const Model<double> &model,
              SensitivityMethod method) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  double product = 0, total = 0, setup = 0, first = 0;
  SensitivitySolveStats stats;
  std::string reason;
  arena.execute([&] {
    const index_t q = model.outputs();
    product = product_seconds(model.A(), q);
    SensitivityOptions options;
    options.method = method;
    const auto t0 = Clock::now();
    std::optional<SensitivityOperator<double>> holder;
    try {
      holder.emplace(model, options);
    } catch (const std::exception &e) {
      state.SkipWithError(e.what());
      for (auto _ : state) {
      }
      return;
    }
    const SensitivityOperator<double> &S = *holder;
    setup = std::chrono::duration<double>(Clock::now() - t0).count();
    // The first solve builds lazy caches (the transpose of a CSR A).
    const auto t2 = Clock::now();
    benchmark::DoNotOptimize(S.rows_dense().data());
    first = std::chrono::duration<double>(Clock::now() - t2).count();
    for (auto _ : state) {
      const auto t1 = Clock::now();
      const std::vector<double> rows = S.rows_dense();
      benchmark::DoNotOptimize(rows.data());
      total += std::chrono::duration<double>(Clock::now() - t1).count();
    }
    stats = S.last_solve();
  });
  const double per_call = total / static_cast<double>(state.iterations());
  state.counters["setup_ms"] = setup * 1e3;
  state.counters["first_ms"] = first * 1e3;
  state.counters["product_ms"] = product * 1e3;
  state.counters["products"] = per_call / product;
  state.counters["n"] = static_cast<double>(model.states());
  if (method == SensitivityMethod::iterative) {
    state.counters["iterations"] = stats.iterations;
    state.counters["error_bound"] = stats.error_bound;
  }
}

void BM_ImplicitKlu(benchmark::State &s) {
  all_rows(s, small_implicit_model(), SensitivityMethod::klu);
}
void BM_SmallImplicitIterative(benchmark::State &s) {
  all_rows(s, small_implicit_model(), SensitivityMethod::iterative);
}
void BM_ImplicitIterative(benchmark::State &s) {
  all_rows(s, implicit_model(), SensitivityMethod::iterative);
}
void BM_ResNetLikeSweep(benchmark::State &s) {
  all_rows(s, resnet_like(), SensitivityMethod::sweep);
}
void BM_ResNetLikeKlu(benchmark::State &s) {
  all_rows(s, resnet_like(), SensitivityMethod::klu);
}
void BM_ResNet20(benchmark::State &s) {
  all_rows(s, resnet20_model(), SensitivityMethod::automatic);
}

} // namespace

BENCHMARK(BM_ImplicitKlu)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SmallImplicitIterative)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ImplicitIterative)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ResNetLikeSweep)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ResNetLikeKlu)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK(BM_ResNet20)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
