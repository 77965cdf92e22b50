// Convolution benchmarks on ResNet20's conv shapes (CHWN layout, one column
// per sample) and the small CNN's, float and double, batch width 1, 32 and 128, 1 and 2 threads.
//
// Kernels (argument `algo`):
//   0 naive    the serial reference kernel (gather over the taps)
//   1 direct   implicit GEMM micro-kernel over the padded phase-split input
//   2 im2col   packed patches + Eigen GEMM (per column chunk)
//   3 auto     Conv2dOperator::apply (the per-shape choice)
//   4 adjoint  Conv2dOperator::apply with Mode::transpose
//   5 packed   the micro-kernel on B tiles packed per task
//   6 gradient Conv2dOperator::accumulate_gradient (the kernel's gradient:
//              the correlation of inputs and adjoint maps, the same FLOPs)
// Every benchmark runs at each instruction-set level the CPU supports
// (argument `isa`: 0 generic, 1 avx2, 2 avx512; see bench_isa.hpp).
// Counters: GFLOPS (2 * multiply-adds of the convolution, taps in the padding
// counted as the dense formula does: Co * Cin/g * KH * KW * OH * OW * N);
// vs_naive = naive time / kernel time; vs_gemm_peak = time of an Eigen GEMM
// with the same FLOP count ([Co x K] x [K x OH*OW*N], split over the threads
// in column chunks) / kernel time, both measured in the same run;
// vs_fma_peak = GFLOPS / the level's FMA peak on the same threads (BM_FmaPeak:
// independent FMA chains in registers, measured in the same process).
// BM_ResNet20Convs runs the 19 convolutions of a ResNet20 forward pass.

#include <benchmark/benchmark.h>

#include <tacit/operators/structured.hpp>

#include "operators/detail/conv_plan.hpp"

#include "bench_isa.hpp"

#include <Eigen/Core>
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

using namespace tacit;

namespace {

using Clock = std::chrono::steady_clock;

struct Shape {
  const char *name;
  index_t cin, cout, hw, stride, kernel, pad;
  int count; // occurrences in ResNet20
};

// ResNet20 (He et al. 2016, CIFAR): stem, 3 stages of 3 basic blocks.
const Shape shapes[] = {
    {"stem_3to16_32x32", 3, 16, 32, 1, 3, 1, 1},
    {"s1_16to16_32x32", 16, 16, 32, 1, 3, 1, 6},
    {"s2down_16to32_32to16", 16, 32, 32, 2, 3, 1, 1},
    {"s2_32to32_16x16", 32, 32, 16, 1, 3, 1, 5},
    {"s3down_32to64_16to8", 32, 64, 16, 2, 3, 1, 1},
    {"s3_64to64_8x8", 64, 64, 8, 1, 3, 1, 5},
    {"shortcutB_16to32_1x1s2", 16, 32, 32, 2, 1, 0, 0},
    // The small Fashion-MNIST CNN of bench_train (not in ResNet20).
    {"cnn1_1to8_28x28", 1, 8, 28, 1, 3, 1, 0},
    {"cnn2_8to16_28to14", 8, 16, 28, 2, 3, 1, 0},
    {"cnn3_16to16_14to7", 16, 16, 14, 2, 3, 1, 0},
};

Conv2dGeometry geometry(const Shape &s) {
  Conv2dGeometry g;
  g.input = {s.cin, s.hw, s.hw};
  g.out_channels = s.cout;
  g.kernel_h = g.kernel_w = s.kernel;
  g.stride_h = g.stride_w = s.stride;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = s.pad;
  return g;
}

template <class T> std::vector<T> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<T> v(n);
  for (auto &x : v)
    x = static_cast<T>(u(rng));
  return v;
}

// ------------------------------------------------------------- FMA peak
// 12 independent multiply-add chains per thread in registers (more than FMA
// latency x FMA pipes on current x86 cores), at each level's vector width:
// the roofline the convolution kernels are compared with. The generic level
// has no FMA instruction (SSE2): a multiply and an add count as one FMA.
#if defined(__x86_64__)
#define TACIT_PEAK_CHAINS(V, SET1, FMA)                                              \
  V a[12];                                                                           \
  const V b = SET1(0.999999), c = SET1(1e-7);                                        \
  for (int i = 0; i < 12; ++i)                                                       \
    a[i] = SET1(1.0 + i);                                                            \
  for (long it = 0; it < iters; ++it) {                                              \
    _Pragma("GCC unroll 12") for (int i = 0; i < 12; ++i) a[i] = FMA(a[i], b, c);    \
  }                                                                                  \
  for (int i = 1; i < 12; ++i)                                                       \
    a[0] = FMA(a[0], b, a[i]);                                                       \
  double out = 0;                                                                    \
  std::memcpy(&out, &a[0], sizeof(out));                                             \
  return out;

__attribute__((target("avx512f"))) double peak_chains_avx512(long iters, bool dbl) {
  if (dbl) {
    TACIT_PEAK_CHAINS(__m512d, _mm512_set1_pd, _mm512_fmadd_pd)
  }
#define TACIT_SET1(v) _mm512_set1_ps(static_cast<float>(v))
  TACIT_PEAK_CHAINS(__m512, TACIT_SET1, _mm512_fmadd_ps)
#undef TACIT_SET1
}
__attribute__((target("avx2,fma"))) double peak_chains_avx2(long iters, bool dbl) {
  if (dbl) {
    TACIT_PEAK_CHAINS(__m256d, _mm256_set1_pd, _mm256_fmadd_pd)
  }
#define TACIT_SET1(v) _mm256_set1_ps(static_cast<float>(v))
  TACIT_PEAK_CHAINS(__m256, TACIT_SET1, _mm256_fmadd_ps)
#undef TACIT_SET1
}
double peak_chains_generic(long iters, bool dbl) {
  if (dbl) {
    auto fma = [](__m128d x, __m128d y, __m128d z) { return _mm_add_pd(_mm_mul_pd(x, y), z); };
    TACIT_PEAK_CHAINS(__m128d, _mm_set1_pd, fma)
  }
  auto set1 = [](double v) { return _mm_set1_ps(static_cast<float>(v)); };
  auto fma = [](__m128 x, __m128 y, __m128 z) { return _mm_add_ps(_mm_mul_ps(x, y), z); };
  TACIT_PEAK_CHAINS(__m128, set1, fma)
}
#undef TACIT_PEAK_CHAINS
#endif

/// FMA peak in GFLOP/s (2 flops per lane per FMA) of `isa` on `threads`
/// threads running at once, best of 3; 0 where it cannot be measured.
template <class T> double fma_peak_gflops(std::int64_t isa, int threads) {
  static std::map<std::pair<std::int64_t, int>, double> cache;
  if (auto it = cache.find({isa, threads}); it != cache.end())
    return it->second;
  double gflops = 0;
#if defined(__x86_64__)
  const bool dbl = sizeof(T) == 8;
  const int lanes = (isa == 2 ? 64 : isa == 1 ? 32 : 16) / static_cast<int>(sizeof(T));
  const long iters = 20'000'000;
  auto run = [&] {
    volatile double sink = 0;
    sink = isa == 2 ? peak_chains_avx512(iters, dbl)
           : isa == 1 ? peak_chains_avx2(iters, dbl)
                      : peak_chains_generic(iters, dbl);
  };
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back(run);
    for (auto &t : pool)
      t.join();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    gflops = std::max(gflops, 2.0 * 12 * lanes * double(iters) * threads / s * 1e-9);
  }
#endif
  cache[{isa, threads}] = gflops;
  return gflops;
}

template <class T> void BM_FmaPeak(benchmark::State &state) {
  const int threads = static_cast<int>(state.range(0));
  tacit::bench::IsaScope isa(state.range(1));
  double g = 0;
  for (auto _ : state)
    g = fma_peak_gflops<T>(state.range(1), threads);
  state.counters["GFLOPS"] = g;
  state.SetLabel(to_string(active_isa()));
}

void peak_args(benchmark::internal::Benchmark *b) {
  b->ArgNames({"threads", "isa"});
  for (int t : {1, 2})
    for (auto isa : tacit::bench::isa_levels())
      b->Args({t, isa});
  b->Iterations(1)->Unit(benchmark::kMillisecond);
}

/// One conv layer with its packed weights and buffers for N columns.
template <class T> struct Layer {
  Conv2dGeometry g;
  std::vector<T> w;
  Conv2dOperator<T> op;
  detail::ConvPlan plan;
  std::vector<T, detail::AlignedAllocator<T>> packed;
  detail::ScratchPool<T> pool;
  std::vector<T, detail::AlignedAllocator<T>> x, y, xp, xt;
  std::vector<T> gw;
  index_t N;

  Layer(const Shape &s, index_t n)
      : g(geometry(s)),
        w(random_vector<T>(static_cast<std::size_t>(s.cout * s.cin * s.kernel * s.kernel),
                           1)),
        op(g, w), plan(g), packed(detail::pack_weights<T>(plan, w, false)), N(n) {
    const auto xs = random_vector<T>(static_cast<std::size_t>(op.cols() * N), 2);
    x.assign(xs.begin(), xs.end());
    y.assign(static_cast<std::size_t>(op.rows() * N), T(0));
    xt.assign(static_cast<std::size_t>(op.rows() * N), T(0.5));
    xp.resize(static_cast<std::size_t>(detail::xp_size<T>(plan, N)));
    gw.assign(w.size(), T(0));
  }
  double flops() const {
    const auto o = g.output();
    return 2.0 * o.size() * (g.input.channels / g.groups) * g.kernel_h * g.kernel_w *
           static_cast<double>(N);
  }
  ConstMatrixView<T> xv() const { return {x.data(), op.cols(), N, N}; }
  MatrixView<T> yv() { return {y.data(), op.rows(), N, N}; }

  void run(int algo) {
    switch (algo) {
    case 0:
      op.apply(Mode::normal, T(1), xv(), T(0), yv(), Execution::reference);
      break;
    case 1:
    case 2:
    case 5:
      detail::conv_kernels().of<T>().forward(plan,
                                             algo == 1   ? detail::ConvAlgorithm::direct
                                             : algo == 2 ? detail::ConvAlgorithm::im2col
                                                         : detail::ConvAlgorithm::packed,
                                             packed.data(), w.data(),
                                             detail::ConvEpilogue<T>{}, xv(), yv(),
                                             xp.data(), pool, Execution::parallel);
      break;
    case 3:
      op.apply(Mode::normal, T(1), xv(), T(0), yv());
      break;
    case 6: {
      const std::span<T> g[] = {std::span<T>(gw)};
      op.accumulate_gradient(ConstMatrixView<T>(xt.data(), op.rows(), N, N), xv(), g);
      break;
    }
    default:
      op.apply(Mode::transpose, T(1), ConstMatrixView<T>(xt.data(), op.rows(), N, N),
               T(0), MatrixView<T>{x.data(), op.cols(), N, N});
    }
  }
};

/// Mean seconds of f over at least `min_time` and 2 calls (after one warm-up).
template <class F> double time_it(F &&f, double min_time = 0.05) {
  f();
  int reps = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    f();
    ++reps;
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (el < min_time || reps < 2);
  return el / reps;
}

/// Eigen GEMM with the layer's FLOP count on `threads` threads (column chunks).
template <class T> double gemm_time(const Layer<T> &L) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const index_t Co = L.g.out_channels, K = L.plan.K;
  const index_t M = L.plan.OH * L.plan.OW * L.N * L.g.groups;
  const Mat A = Mat::Random(Co / L.g.groups, K), B = Mat::Random(K, M);
  Mat C(Co / L.g.groups, M);
  const index_t chunk = 1536;
  return time_it([&] {
    tbb::parallel_for(tbb::blocked_range<index_t>(0, (M + chunk - 1) / chunk, 1),
                      [&](const tbb::blocked_range<index_t> &r) {
                        for (index_t c = r.begin(); c < r.end(); ++c) {
                          const index_t j0 = c * chunk, n = std::min(chunk, M - j0);
                          C.middleCols(j0, n).noalias() = A * B.middleCols(j0, n);
                        }
                      });
    benchmark::DoNotOptimize(C.data());
  });
}

template <class T> double naive_time(const Shape &s, index_t N) {
  static std::map<std::pair<const Shape *, index_t>, double> cache;
  auto it = cache.find({&s, N});
  if (it != cache.end())
    return it->second;
  Layer<T> L(s, N);
  const double t = time_it([&] { L.run(0); }, 0.02);
  cache[{&s, N}] = t;
  return t;
}

template <class T> void BM_Conv(benchmark::State &state) {
  const Shape &s = shapes[state.range(0)];
  const index_t N = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const int algo = static_cast<int>(state.range(3));
  tacit::bench::IsaScope isa(state.range(4));
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  Layer<T> L(s, N);
  const double naive = naive_time<T>(s, N);
  const double gemm = gemm_time(L);
  double total = 0;
  long iters = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    L.run(algo);
    total += std::chrono::duration<double>(Clock::now() - t0).count();
    ++iters;
    benchmark::DoNotOptimize(L.y.data());
  }
  const double mean = total / static_cast<double>(iters);
  state.counters["GFLOPS"] = L.flops() / mean * 1e-9;
  state.counters["vs_naive"] = naive / mean;
  state.counters["vs_gemm_peak"] = gemm / mean;
  if (const double peak = fma_peak_gflops<T>(state.range(4), threads); peak > 0)
    state.counters["vs_fma_peak"] = L.flops() / mean * 1e-9 / peak;
  state.SetLabel(std::string(s.name) + " " + to_string(active_isa()));
}

void conv_args(benchmark::internal::Benchmark *b) {
  b->ArgNames({"shape", "N", "threads", "algo", "isa"});
  for (int s = 0; s < int(std::size(shapes)); ++s)
    for (int n : {1, 32, 128})
      for (int t : {1, 2})
        for (int a : {1, 5, 2, 3, 4, 6})
          for (auto isa : tacit::bench::isa_levels())
            b->Args({s, n, t, a, isa});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.1);
}

/// The 19 convolutions of one ResNet20 forward pass (option A shortcuts).
template <class T> void BM_ResNet20Convs(benchmark::State &state) {
  const index_t N = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const int algo = static_cast<int>(state.range(2));
  tacit::bench::IsaScope isa(state.range(3));
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  std::vector<std::unique_ptr<Layer<T>>> layers;
  double flops = 0;
  for (int s = 0; s < 6; ++s) {
    layers.push_back(std::make_unique<Layer<T>>(shapes[s], N));
    flops += layers.back()->flops() * shapes[s].count;
  }
  const auto t_start = Clock::now();
  for (auto _ : state)
    for (int s = 0; s < 6; ++s)
      for (int r = 0; r < shapes[s].count; ++r)
        layers[s]->run(algo);
  state.counters["GFLOPS"] =
      benchmark::Counter(flops * state.iterations() * 1e-9, benchmark::Counter::kIsRate);
  // The same ratio as a plain number (the rate above is divided by the time
  // only when the counters are reported).
  const double seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  if (const double peak = fma_peak_gflops<T>(state.range(3), threads); peak > 0 && seconds > 0)
    state.counters["vs_fma_peak"] = flops * state.iterations() * 1e-9 / seconds / peak;
  state.SetLabel(to_string(active_isa()));
}

void resnet_args(benchmark::internal::Benchmark *b) {
  b->ArgNames({"N", "threads", "algo", "isa"});
  for (int n : {1, 32, 128})
    for (int t : {1, 2})
      for (int a : {1, 5, 2, 3, 4, 6})
        for (auto isa : tacit::bench::isa_levels())
          b->Args({n, t, a, isa});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.2);
}

[[maybe_unused]] const bool context = tacit::bench::add_isa_context();

} // namespace

BENCHMARK_TEMPLATE(BM_FmaPeak, float)->Apply(peak_args);
BENCHMARK_TEMPLATE(BM_FmaPeak, double)->Apply(peak_args);
BENCHMARK_TEMPLATE(BM_ResNet20Convs, float)->Apply(resnet_args);
BENCHMARK_TEMPLATE(BM_ResNet20Convs, double)->Apply(resnet_args);
BENCHMARK_TEMPLATE(BM_Conv, float)->Apply(conv_args);
BENCHMARK_TEMPLATE(BM_Conv, double)->Apply(conv_args);

BENCHMARK_MAIN();
