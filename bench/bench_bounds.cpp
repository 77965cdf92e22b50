// Bound benchmarks: time per input of each bound (global, interval, linear
// without and with refinement of the intermediate bounds) at eps = 0.01, on
//  - an MLP 784-64-32-16-10 (random weights, ReLU), and
//  - a small CNN on 28 x 28 images: conv 3x3 stride 2 to 8 x 13 x 13, conv
//    3x3 stride 2 to 16 x 6 x 6, dense 64, 10 outputs (random weights, ReLU).
// Each time is reported as a ratio to the nominal equilibrium solve of the
// same input measured in the same run (`over_solve`), and in microseconds.
// Arguments: model (0 = MLP, 1 = CNN), threads.

#include <benchmark/benchmark.h>

#include <tacit/analysis/bounds.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/solve/solve.hpp>

#include <tbb/task_arena.h>

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <random>

using namespace tacit;

namespace {

using Clock = std::chrono::steady_clock;

template <class F> double best_seconds(int repeats, F &&f) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

struct Builder {
  index_t n = 0, p = 0, q = 0;
  std::vector<Triplet<double>> a, b, c;
  std::vector<double> bias;
  std::mt19937 rng{1};
  double w(double scale) {
    return std::uniform_real_distribution<double>(-scale, scale)(rng);
  }
};

Model<double> finish(Builder &m) {
  auto A = std::make_shared<CsrMatrix<double>>(
      CsrMatrix<double>::from_triplets(m.n, m.n, m.a));
  auto B = std::make_shared<CsrMatrix<double>>(
      CsrMatrix<double>::from_triplets(m.n, m.p, m.b));
  auto C = std::make_shared<CsrMatrix<double>>(
      CsrMatrix<double>::from_triplets(m.q, m.n, m.c));
  return Model<double>(A, B, C, nullptr, m.bias, {});
}

Model<double> mlp() {
  Builder m;
  m.p = 784;
  m.q = 10;
  const std::vector<index_t> h = {64, 32, 16};
  m.n = 112;
  index_t off = 0, prev_off = -1, prev = m.p;
  for (const index_t size : h) {
    const double s = 2.0 / std::sqrt(double(prev));
    for (index_t i = 0; i < size; ++i)
      for (index_t j = 0; j < prev; ++j) {
        if (prev_off < 0)
          m.b.push_back({off + i, j, m.w(s)});
        else
          m.a.push_back({off + i, prev_off + j, m.w(s)});
      }
    prev_off = off;
    off += size;
    prev = size;
  }
  for (index_t i = 0; i < m.q; ++i)
    for (index_t j = 0; j < prev; ++j)
      m.c.push_back({i, prev_off + j, m.w(0.5)});
  for (index_t i = 0; i < m.n; ++i)
    m.bias.push_back(m.w(0.1));
  return finish(m);
}

Model<double> cnn() {
  Builder m;
  m.p = 784;
  m.q = 10;
  const index_t c1 = 8, s1 = 13, c2 = 16, s2 = 6, d = 64;
  const index_t o1 = 0, o2 = c1 * s1 * s1, o3 = o2 + c2 * s2 * s2;
  m.n = o3 + d;
  // conv1: 1 -> 8 channels, 28 -> 13 (3x3, stride 2)
  for (index_t c = 0; c < c1; ++c) {
    double k[9];
    for (auto &v : k)
      v = m.w(2.0 / 3);
    for (index_t y = 0; y < s1; ++y)
      for (index_t x = 0; x < s1; ++x)
        for (index_t t = 0; t < 9; ++t)
          m.b.push_back(
              {o1 + (c * s1 + y) * s1 + x, (2 * y + t / 3) * 28 + 2 * x + t % 3, k[t]});
  }
  // conv2: 8 -> 16 channels, 13 -> 6 (3x3, stride 2)
  for (index_t c = 0; c < c2; ++c) {
    std::vector<double> k(c1 * 9);
    for (auto &v : k)
      v = m.w(2.0 / std::sqrt(9.0 * c1));
    for (index_t y = 0; y < s2; ++y)
      for (index_t x = 0; x < s2; ++x)
        for (index_t ci = 0; ci < c1; ++ci)
          for (index_t t = 0; t < 9; ++t)
            m.a.push_back({o2 + (c * s2 + y) * s2 + x,
                           o1 + (ci * s1 + 2 * y + t / 3) * s1 + 2 * x + t % 3,
                           k[ci * 9 + t]});
  }
  for (index_t i = 0; i < d; ++i)
    for (index_t j = o2; j < o3; ++j)
      m.a.push_back({o3 + i, j, m.w(2.0 / std::sqrt(double(o3 - o2)))});
  for (index_t i = 0; i < m.q; ++i)
    for (index_t j = 0; j < d; ++j)
      m.c.push_back({i, o3 + j, m.w(0.5)});
  for (index_t i = 0; i < m.n; ++i)
    m.bias.push_back(m.w(0.05));
  return finish(m);
}

const Model<double> &model(int id) {
  static std::map<int, std::unique_ptr<Model<double>>> cache;
  auto &m = cache[id];
  if (!m)
    m = std::make_unique<Model<double>>(id == 0 ? mlp() : cnn());
  return *m;
}

void BM_bounds(benchmark::State &state) {
  const Model<double> &m = model(static_cast<int>(state.range(0)));
  tbb::task_arena arena(static_cast<int>(state.range(1)));
  arena.execute([&] {
    BoundOptions opt;
    BoundAnalyzer<double> an(m, opt);
    BoundOptions flat = opt;
    flat.refine = false;
    BoundAnalyzer<double> an_flat(m, flat);
    std::mt19937 rng(3);
    std::vector<double> u(m.inputs());
    for (auto &v : u)
      v = std::uniform_real_distribution<double>(0, 1)(rng);
    Batch<double> U(m.inputs(), 1), X;
    U.set_column(0, u);
    EquilibriumSolver<double> solver(m);
    solver.solve(U, X);
    std::vector<double> x(m.states());
    X.get_column(0, x);
    const auto nom = an.nominal(std::span<const double>(u), std::span<const double>(x));
    const int label = nom.predicted();
    const auto box = linf_box<double>(u, 0.01, 0.0, 1.0);
    double solve = 0, global = 0, interval = 0, linear = 0, refined = 0;
    for (auto _ : state) {
      solve = best_seconds(5, [&] { solver.solve(U, X); });
      global = best_seconds(5, [&] { an.margins(nom, box, label, BoundMethod::global); });
      interval =
          best_seconds(5, [&] { an.margins(nom, box, label, BoundMethod::interval); });
      linear =
          best_seconds(3, [&] { an_flat.margins(nom, box, label, BoundMethod::linear); });
      refined =
          best_seconds(3, [&] { an.margins(nom, box, label, BoundMethod::linear); });
    }
    LinearBoundStats st;
    an.margins(nom, box, label, BoundMethod::linear, &st);
    state.counters["global_over_solve"] = global / solve;
    state.counters["interval_over_solve"] = interval / solve;
    state.counters["linear_over_solve"] = linear / solve;
    state.counters["refined_over_solve"] = refined / solve;
    state.counters["solve_us"] = solve * 1e6;
    state.counters["refined_us"] = refined * 1e6;
    state.counters["unstable_before"] = double(st.unstable_before);
    state.counters["unstable_after"] = double(st.unstable_after);
  });
}

} // namespace

BENCHMARK(BM_bounds)
    ->ArgNames({"model", "threads"})
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
