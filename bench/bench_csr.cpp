// CSR product benchmarks on the ResNet20-like matrix (n = 188,416, ~37M
// nonzeros, 32-bit column indices).
//
// The machine is shared and its memory bandwidth drifts, so baselines are
// measured interleaved with the measured kernel, iteration by iteration
// (outside the reported time):
//  - read bandwidth: a STREAM-style TBB sum over a 512 MB array on 2 threads,
//    backed by transparent huge pages like the matrix arrays (the 4 KiB-page
//    figure is reported by BM_StreamRead/t/0 for comparison); SpMV reports
//    `bandwidth_fraction` = (bytes of A, x and y per product / mean time) / (mean read
//    bandwidth over the same iterations);
//  - Eigen: SparseMatrix<T, RowMajor> * vector with the same compiler flags,
//    mapped onto the same value and index arrays as tacit's matrix (serial: Eigen
//    parallelises sparse products only with OpenMP); SpMV reports `vs_eigen` = Eigen's
//    mean time / tacit's mean time;
//  - SpMM reports GFLOP/s (2 nnz k flops per product) and `rhs_vs_spmv` =
//    time per right-hand side / time of one SpMV on as many threads.
// The kernels run at every instruction-set level the CPU supports (last
// argument `isa`: 0 generic, 1 avx2, 2 avx512; see bench_isa.hpp); the
// baselines (STREAM read, Eigen) do not depend on it.
// Run with --benchmark_repetitions=N when the machine is quiet.

#include <benchmark/benchmark.h>

#include <tacit/core/csr.hpp>
#include <tacit/nn/generate.hpp>

#include "core/detail/huge_pages.hpp"

#include "bench_isa.hpp"

#include <Eigen/SparseCore>
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <vector>

using namespace tacit;

namespace {

using Clock = std::chrono::steady_clock;

/// Mean seconds per timed region (counters are plain ratios, not rates).
class IterationTimer {
public:
  void start() { t0_ = Clock::now(); }
  void stop() {
    total_ += std::chrono::duration<double>(Clock::now() - t0_).count();
    ++count_;
  }
  double mean() const { return count_ ? total_ / static_cast<double>(count_) : 0.0; }

private:
  Clock::time_point t0_{};
  double total_ = 0;
  long count_ = 0;
};

// ---------------------------------------------------------------------------
// Read bandwidth: sum of a large array, 16 independent lanes so that the
// compiler vectorises without reassociating.

constexpr std::size_t stream_doubles = std::size_t(64) << 20; // 512 MB

/// The array read by the bandwidth baseline, backed by huge pages like the
/// matrix arrays (core/detail/huge_pages.hpp) or by plain 4 KiB pages.
const std::vector<double> &stream_array(bool huge_pages = true) {
  auto make = [](bool huge) {
    std::vector<double> v;
    if (huge)
      tacit::detail::reserve_huge_pages(v, stream_doubles);
    v.resize(stream_doubles);
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = double(i & 1023);
    return v;
  };
  static const std::vector<double> huge = make(true), small = make(false);
  return huge_pages ? huge : small;
}

double stream_sum(const std::vector<double> &a) {
  return tbb::parallel_reduce(
      tbb::blocked_range<std::size_t>(0, a.size(), std::size_t(1) << 18), 0.0,
      [&](const tbb::blocked_range<std::size_t> &r, double init) {
        double acc[16] = {};
        std::size_t i = r.begin();
        for (; i + 16 <= r.end(); i += 16)
          for (int j = 0; j < 16; ++j)
            acc[j] += a[i + j];
        for (; i < r.end(); ++i)
          acc[0] += a[i];
        double s = init;
        for (double v : acc)
          s += v;
        return s;
      },
      std::plus<double>());
}

/// One read of the stream array on 2 threads.
void read_stream_once() {
  static tbb::task_arena arena(2);
  const auto &a = stream_array();
  double sink = 0;
  arena.execute([&] { sink = stream_sum(a); });
  benchmark::DoNotOptimize(sink);
}

double stream_bytes() {
  return static_cast<double>(stream_doubles * sizeof(double));
}

/// Baseline runs interleaved with the timed loop (timing paused).
class Interleaved {
public:
  /// Runs f outside the reported time and records its duration.
  template <class F> void run(benchmark::State &state, F &&f) {
    state.PauseTiming();
    const auto t0 = Clock::now();
    f();
    total_ += std::chrono::duration<double>(Clock::now() - t0).count();
    ++count_;
    state.ResumeTiming();
  }
  double mean() const { return count_ ? total_ / static_cast<double>(count_) : 0.0; }

private:
  double total_ = 0;
  long count_ = 0;
};

void BM_StreamRead(benchmark::State &state) {
  const auto &a = stream_array(state.range(1) != 0);
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    double s = 0;
    arena.execute([&] { s = stream_sum(a); });
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(state.iterations() *
                          static_cast<std::int64_t>(a.size() * sizeof(double)));
}
/// Args: threads, huge pages (1) or 4 KiB pages (0).
BENCHMARK(BM_StreamRead)
    ->ArgsProduct({{1, 2}, {1, 0}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// The matrix, in both precisions, and Eigen copies.

template <class T> const CsrMatrix<T> &matrix() {
  static const CsrMatrix<T> A = [] {
    if constexpr (std::is_same_v<T, double>)
      return resnet_like_matrix<double>();
    else
      return matrix<double>().template cast<float>();
  }();
  return A;
}

template <class T> using EigenCsr = Eigen::SparseMatrix<T, Eigen::RowMajor, std::int32_t>;

/// Eigen's view of the very arrays tacit reads (same memory, same pages);
/// only the row pointers are copied, to Eigen's 32-bit index type.
template <class T> struct EigenView {
  std::vector<std::int32_t> outer;
  Eigen::Map<const EigenCsr<T>> map;
  explicit EigenView(const CsrMatrix<T> &A)
      : outer(A.row_ptr().begin(), A.row_ptr().end()),
        map(A.rows(), A.cols(), A.nnz(), outer.data(), A.col_idx32().data(),
            A.values().data()) {}
};

template <class T> const Eigen::Map<const EigenCsr<T>> &eigen_matrix() {
  static const EigenView<T> view(matrix<T>());
  return view.map;
}

template <class T> std::vector<T> random_vector(index_t n, std::uint64_t seed) {
  auto b = random_batch<T>(n, 1, seed, 1);
  return std::vector<T>(b.storage().begin(), b.storage().end());
}

template <class T> std::size_t spmv_bytes(const CsrMatrix<T> &A) {
  return A.bytes() + 2 * static_cast<std::size_t>(A.rows()) * sizeof(T);
}

template <class T> struct EigenSpmv {
  const Eigen::Map<const EigenCsr<T>> &E = eigen_matrix<T>();
  Eigen::Matrix<T, Eigen::Dynamic, 1> x, y;
  EigenSpmv() : x(E.cols()), y(E.rows()) {
    const auto xv = random_vector<T>(E.cols(), 1);
    std::copy(xv.begin(), xv.end(), x.data());
  }
  void operator()() {
    y.noalias() = E * x;
    benchmark::DoNotOptimize(y.data());
  }
};

// ---------------------------------------------------------------------------
// SpMV.

template <class T> void BM_Spmv(benchmark::State &state) {
  const auto &A = matrix<T>();
  const int threads = static_cast<int>(state.range(0));
  tacit::bench::IsaScope isa(state.range(1));
  const auto x = random_vector<T>(A.cols(), 1);
  std::vector<T> y(A.rows());
  tbb::task_arena arena(threads);
  auto run = [&] {
    arena.execute([&] {
      A.apply(Mode::normal, T(1), std::span<const T>(x), T(0), std::span<T>(y));
    });
  };
  run(); // builds the matrix's row schedule where the level uses it
  EigenSpmv<T> eigen;
  Interleaved stream, eigen_time;
  IterationTimer timer;
  for (auto _ : state) {
    timer.start();
    run();
    timer.stop();
    benchmark::DoNotOptimize(y.data());
    eigen_time.run(state, eigen);
    stream.run(state, read_stream_once);
  }
  const double bytes = static_cast<double>(spmv_bytes(A));
  const double bandwidth = stream_bytes() / stream.mean();
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
  state.counters["read_GB/s"] = bandwidth * 1e-9;
  state.counters["bandwidth_fraction"] = bytes / timer.mean() / bandwidth;
  state.counters["vs_eigen"] = eigen_time.mean() / timer.mean();
  state.counters["nnz"] = static_cast<double>(A.nnz());
  state.SetLabel(to_string(active_isa()));
}
BENCHMARK_TEMPLATE(BM_Spmv, double)
    ->ArgNames({"threads", "isa"})
    ->ArgsProduct({{1, 2}, tacit::bench::isa_levels()})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_Spmv, float)
    ->ArgNames({"threads", "isa"})
    ->ArgsProduct({{1, 2}, tacit::bench::isa_levels()})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

template <class T> void BM_SpmvEigen(benchmark::State &state) {
  EigenSpmv<T> eigen;
  Interleaved stream;
  IterationTimer timer;
  for (auto _ : state) {
    timer.start();
    eigen();
    timer.stop();
    stream.run(state, read_stream_once);
  }
  const double bytes = static_cast<double>(spmv_bytes(matrix<T>()));
  const double bandwidth = stream_bytes() / stream.mean();
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
  state.counters["bandwidth_fraction"] = bytes / timer.mean() / bandwidth;
}
BENCHMARK_TEMPLATE(BM_SpmvEigen, double)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_SpmvEigen, float)->UseRealTime()->Unit(benchmark::kMillisecond);

/// Reference (serial textbook) kernel, for scale.
void BM_SpmvReference(benchmark::State &state) {
  const auto &A = matrix<double>();
  const auto x = random_vector<double>(A.cols(), 1);
  std::vector<double> y(A.rows());
  for (auto _ : state) {
    A.apply(Mode::normal, 1.0, std::span<const double>(x), 0.0, std::span<double>(y),
            Execution::reference);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(spmv_bytes(A)));
}
BENCHMARK(BM_SpmvReference)->UseRealTime()->Unit(benchmark::kMillisecond);

/// |A| x and A^T x (the transpose is built on first use, outside the timing).
template <class T> void BM_SpmvMode(benchmark::State &state) {
  const auto &A = matrix<T>();
  const Mode mode = static_cast<Mode>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  tacit::bench::IsaScope isa(state.range(2));
  const auto x = random_vector<T>(A.cols(), 1);
  std::vector<T> y(A.rows());
  tbb::task_arena arena(threads);
  auto run = [&] {
    arena.execute(
        [&] { A.apply(mode, T(1), std::span<const T>(x), T(0), std::span<T>(y)); });
  };
  run();
  Interleaved stream;
  IterationTimer timer;
  for (auto _ : state) {
    timer.start();
    run();
    timer.stop();
    benchmark::DoNotOptimize(y.data());
    stream.run(state, read_stream_once);
  }
  state.SetLabel(std::string(is_transposed(mode)
                                 ? (is_absolute(mode) ? "abs_transpose " : "transpose ")
                                 : (is_absolute(mode) ? "abs " : "normal ")) +
                 to_string(active_isa()));
  const double bytes = static_cast<double>(spmv_bytes(A));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
  state.counters["bandwidth_fraction"] =
      bytes / timer.mean() / (stream_bytes() / stream.mean());
}
BENCHMARK_TEMPLATE(BM_SpmvMode, double)
    ->ArgsProduct({{int(Mode::abs), int(Mode::transpose), int(Mode::abs_transpose)},
                   {2},
                   tacit::bench::isa_levels()})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_SpmvMode, float)
    ->ArgsProduct({{int(Mode::transpose)}, {2}, tacit::bench::isa_levels()})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// SpMM: k right-hand sides in a slab-major batch (slab width w), or, with
// w = 0, one row-major n x k block.

template <class T> void BM_Spmm(benchmark::State &state) {
  const auto &A = matrix<T>();
  const index_t k = state.range(0);
  const index_t w = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const Mode mode = static_cast<Mode>(state.range(3));
  tacit::bench::IsaScope isa(state.range(4));
  const index_t width = w > 0 ? w : k;
  const auto X = random_batch<T>(A.cols(), k, 2, width);
  Batch<T> Y(A.rows(), k, width);
  tbb::task_arena arena(threads);
  auto run = [&] { arena.execute([&] { A.apply(mode, T(1), X, T(0), Y); }); };
  run();
  const auto x1 = random_vector<T>(A.cols(), 1);
  std::vector<T> y1(A.rows());
  Interleaved spmv;
  IterationTimer timer;
  for (auto _ : state) {
    timer.start();
    run();
    timer.stop();
    benchmark::DoNotOptimize(Y.storage().data());
    spmv.run(state, [&] {
      arena.execute([&] {
        A.apply(Mode::normal, T(1), std::span<const T>(x1), T(0), std::span<T>(y1));
      });
    });
  }
  const double flops = 2.0 * static_cast<double>(A.nnz()) * static_cast<double>(k);
  state.counters["GFLOP/s"] = flops * 1e-9 / timer.mean();
  // Seconds per right-hand side over seconds per SpMV on as many threads.
  state.counters["rhs_vs_spmv"] = timer.mean() / static_cast<double>(k) / spmv.mean();
  state.SetLabel(std::string(is_transposed(mode) ? "transpose " : "") +
                 (w > 0 ? "slab " + std::to_string(w) : "row-major") + " " +
                 to_string(active_isa()));
}

void spmm_args(benchmark::internal::Benchmark *b) {
  const int normal = int(Mode::normal), transpose = int(Mode::transpose);
  b->ArgNames({"k", "w", "threads", "mode", "isa"});
  for (auto isa : tacit::bench::isa_levels()) {
    for (int threads : {1, 2})
      for (int k : {1, 8, 32, 128})
        b->Args({k, 32, threads, normal, isa});
    for (int w : {8, 16, 64, 0})
      b->Args({128, w, 2, normal, isa});
    b->Args({32, 32, 2, transpose, isa});
    b->Args({128, 32, 2, transpose, isa});
  }
}
BENCHMARK_TEMPLATE(BM_Spmm, double)
    ->Apply(spmm_args)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);
BENCHMARK_TEMPLATE(BM_Spmm, float)
    ->Apply(spmm_args)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

[[maybe_unused]] const bool context = tacit::bench::add_isa_context();

} // namespace

BENCHMARK_MAIN();
