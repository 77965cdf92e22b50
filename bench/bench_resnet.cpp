// ResNet20 (structured operators, float32) forward = equilibrium solve.
//
// The structured block sweep (EquilibriumSolver on resnet20<float>()) against
// two baselines measured in the same run, same batch and thread count:
//  - its own CSR sweep: the same A, B, C materialised as CSR (to_csr()) and
//    solved by the same solver (the CSR SCC sweep);
//  - a naive forward: the same block order with every product run by the
//    operators' serial reference kernels (direct loops, no blocking).
// Counters: samples_per_second, ratio_to_csr_sweep (CSR time / structured
// time), ratio_to_naive (naive time / structured time).
// Arguments: threads (task_arena size), batch width k, instruction-set level
// (isa: 0 generic, 1 avx2, 2 avx512; every level the CPU supports, both
// solves at that level; see bench_isa.hpp).

#include <benchmark/benchmark.h>

#include <tacit/nn/network.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>

#include <tbb/task_arena.h>

#include "bench_isa.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <tuple>

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

const Model<float> &structured() {
  static const Model<float> m = resnet20<float>();
  return m;
}

const Model<float> &csr() {
  static const Model<float> m = [] {
    const auto &s = structured();
    auto conv = [](const LinearOperator<float> &op) {
      return std::make_shared<CsrMatrix<float>>(op.to_csr());
    };
    return Model<float>(conv(s.A()), conv(s.B()), conv(s.C()), nullptr,
                        std::vector<float>(s.bias_x().begin(), s.bias_x().end()),
                        std::vector<float>(s.bias_y().begin(), s.bias_y().end()),
                        s.blocks());
  }();
  return m;
}

/// x_i = relu(sum_j A_ij x_j + B_i u + b_i) block by block with the reference
/// (serial, direct) kernels of the operators.
void naive_forward(const Model<float> &m, const Batch<float> &U, Batch<float> &X) {
  const auto &A = dynamic_cast<const BlockOperator<float> &>(m.A());
  const auto &B = dynamic_cast<const BlockOperator<float> &>(m.B());
  const auto bias = m.bias_x();
  for (index_t s = 0; s < X.slab_count(); ++s) {
    const auto xs = X.slab(s);
    const auto us = U.slab(s);
    for (index_t i = 0; i < A.row_blocks(); ++i) {
      const index_t off = A.row_offset(i), size = A.row_block_size(i);
      const MatrixView<float> y{xs.row(off), size, xs.cols, xs.ld};
      for (index_t r = 0; r < size; ++r)
        std::fill(y.row(r), y.row(r) + y.cols, bias[off + r]);
      for (const index_t e : B.entries_in_row(i)) {
        const auto &en = B.entries()[e];
        en.op->apply(Mode::normal, 1.0f,
                     ConstMatrixView<float>(us.row(B.col_offset(en.block_col)),
                                            en.op->cols(), us.cols, us.ld),
                     1.0f, y, Execution::reference);
      }
      for (const index_t e : A.entries_in_row(i)) {
        const auto &en = A.entries()[e];
        en.op->apply(Mode::normal, 1.0f,
                     ConstMatrixView<float>(xs.row(A.col_offset(en.block_col)),
                                            en.op->cols(), xs.cols, xs.ld),
                     1.0f, y, Execution::reference);
      }
      for (index_t r = 0; r < size; ++r)
        for (index_t c = 0; c < y.cols; ++c)
          y(r, c) = std::max(y(r, c), 0.0f);
    }
  }
}

Batch<float> inputs(index_t k) {
  return resnet20_inputs<float>(k, 1, std::min<index_t>(32, k));
}

double csr_seconds(int threads, index_t k) {
  static std::map<std::tuple<int, index_t, Isa>, double> cache;
  auto &t = cache[{threads, k, active_isa()}];
  if (t == 0) {
    tbb::task_arena arena(threads);
    arena.execute([&] {
      EquilibriumSolver<float> solver(csr());
      const Batch<float> U = inputs(k);
      Batch<float> X;
      solver.solve(U, X);
      t = best_seconds(2, [&] { solver.solve(U, X); });
    });
  }
  return t;
}

double naive_seconds(index_t k) {
  static std::map<index_t, double> cache;
  auto &t = cache[k];
  if (t == 0) {
    const Batch<float> U = inputs(k);
    Batch<float> X(structured().states(), k, U.slab_width());
    t = best_seconds(1, [&] { naive_forward(structured(), U, X); });
  }
  return t;
}

void BM_resnet20_structured(benchmark::State &state) {
  const int threads = static_cast<int>(state.range(0));
  const index_t k = state.range(1);
  tacit::bench::IsaScope isa(state.range(2));
  tbb::task_arena arena(threads);
  const double csr_t = csr_seconds(threads, k);
  const double naive_t = naive_seconds(k);
  arena.execute([&] {
    EquilibriumSolver<float> solver(structured());
    const Batch<float> U = inputs(k);
    Batch<float> X;
    solver.solve(U, X); // sizes the workspace
    double best = 1e30;
    for (auto _ : state) {
      const auto t0 = Clock::now();
      solver.solve(U, X);
      const double t = std::chrono::duration<double>(Clock::now() - t0).count();
      best = std::min(best, t);
      state.SetIterationTime(t);
    }
    // Outputs only (what a forward pass returns): the states are not kept,
    // so the sweep reuses a block's memory once its readers are done.
    Batch<float> Y;
    solver.predict(U, Y);
    const double outputs = best_seconds(3, [&] { solver.predict(U, Y); });
    state.counters["samples_per_second"] = double(k) / best;
    state.counters["ms_per_batch"] = best * 1e3;
    state.counters["outputs_ms"] = outputs * 1e3;
    state.counters["ratio_to_csr_sweep"] = csr_t / best;
    state.counters["ratio_to_naive"] = naive_t / best;
  });
  state.SetLabel(to_string(active_isa()));
}

[[maybe_unused]] const bool context = tacit::bench::add_isa_context();

} // namespace

BENCHMARK(BM_resnet20_structured)
    ->ArgNames({"threads", "k", "isa"})
    ->ArgsProduct({{1, 2}, {1, 32, 128}, tacit::bench::isa_levels()})
    ->UseManualTime()
    ->MinTime(1.0)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
