// Training (float32, absolute times; tools/bench_train_pytorch.py times
// PyTorch on the same work in the same run and prints the ratios):
//  - mlp_epoch: one epoch of the Fashion-MNIST MLP 784-64-32-16-10 (60,000
//    images, batch 128, SGD momentum 0.9, lr 0.05): forward sweep, adjoint
//    sweep, gradients, optimiser step;
//  - mlp_prox_epoch: the same epoch with the group lasso prox on the hidden
//    states (rows of (A, B) with their biases, lambda 0.001) after every
//    step, and the plain epoch again in the same run: counter prox_ratio =
//    median prox epoch / median plain epoch (Iterations pairs, alternated);
//  - cnn_epoch: one epoch of the small CNN of tools/make_train_fixtures.py
//    (conv 1->8 + ReLU, conv 8->16 stride 2 + ReLU, conv 16->16 stride 2 +
//    ReLU, dense 784->10; the same recipe);
//  - cnn_step: one training step of that CNN on 128 training images (the
//    epoch's step without the data handling; best of 50);
//  - resnet20_step: one training step of the structured ResNet20 (batch 128:
//    forward, backward, SGD step);
//  - projection: the exact projection of the ResNet-like CSR (double) onto
//    ||A||_inf <= kappa against a read of the same values (the stream
//    baseline) in the same run: counter bandwidth_ratio = projection bytes/s
//    over stream bytes/s.
// Argument: threads (task_arena size).

#include <benchmark/benchmark.h>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/io/idx.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/train/init.hpp>
#include <tacit/train/prox.hpp>
#include <tacit/train/trainer.hpp>

#include <tbb/blocked_range.h>
#include <tbb/parallel_reduce.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>

using namespace tacit;

namespace {

using Clock = std::chrono::steady_clock;

const std::optional<Dataset<float>> &fashion_train() {
  static const std::optional<Dataset<float>> d = []() -> std::optional<Dataset<float>> {
    const auto dir = fashion_mnist_directory();
    if (!dir)
      return std::nullopt;
    auto set = read_idx_dataset<float>(*dir / "train-images-idx3-ubyte.gz",
                                       *dir / "train-labels-idx1-ubyte.gz");
    Dataset<float> out;
    out.inputs = std::move(set.images);
    out.labels = std::move(set.labels);
    out.name = "fashion-mnist train";
    return sample_major(out); // the layout train() gathers from (made once)
  }();
  return d;
}

TrainOptions recipe() {
  TrainOptions o;
  o.optimizer.kind = OptimizerKind::sgd;
  o.optimizer.lr = 0.05;
  o.optimizer.momentum = 0.9;
  o.batch_size = 128;
  o.epochs = 1;
  o.gradient.forward.picard.rel_tol = 1e-5;
  o.gradient.adjoint.picard.rel_tol = 1e-5;
  return o;
}

/// The small CNN of tools/make_train_fixtures.py (fashion_cnn), seeded.
Model<float> small_cnn(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](index_t n, double a) {
    std::uniform_real_distribution<double> d(-a, a);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto &x : v)
      x = static_cast<float>(d(rng));
    return v;
  };
  NetworkBuilder<float> net;
  net.fold_dense_products(false);
  auto x = net.input({1, 28, 28});
  Conv2dGeometry g1{{1, 28, 28}, 8, 3, 3, 1, 1, 1, 1, 1, 1};
  x = net.conv2d(x, g1, uniform(8 * 9, 1 / 3.0), uniform(8, 1 / 3.0));
  x = net.activation(x, {ActivationKind::relu}, "c1");
  Conv2dGeometry g2{{8, 28, 28}, 16, 3, 3, 2, 2, 1, 1, 1, 1};
  x = net.conv2d(x, g2, uniform(16 * 8 * 9, 1 / std::sqrt(72.0)),
                 uniform(16, 1 / std::sqrt(72.0)));
  x = net.activation(x, {ActivationKind::relu}, "c2");
  Conv2dGeometry g3{{16, 14, 14}, 16, 3, 3, 2, 2, 1, 1, 1, 1};
  auto y = net.conv2d(x, g3, uniform(16 * 16 * 9, 1 / 12.0), uniform(16, 1 / 12.0));
  y = net.activation(y, {ActivationKind::relu}, "c3");
  auto f = net.flatten(y);
  auto out = net.dense(f, 10, uniform(10 * 16 * 49, 1 / 28.0), uniform(10, 1 / 28.0));
  return net.build(out);
}

void mlp_epoch(benchmark::State &state) {
  const auto &data = fashion_train();
  if (!data) {
    state.SkipWithError("Fashion-MNIST not found (package dataset-fashion-mnist)");
    return;
  }
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  const index_t sizes[] = {784, 64, 32, 16, 10};
  double seconds = 0;
  for (auto _ : state) {
    TrainableModel<float> tm(init_mlp<float>(sizes, 1));
    const auto t0 = Clock::now();
    arena.execute([&] { train(tm, *data, nullptr, recipe()); });
    seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(seconds);
  }
  state.counters["seconds_per_epoch"] = seconds;
  state.counters["images_per_second"] = double(data->size()) / seconds;
}

void mlp_prox_epoch(benchmark::State &state) {
  const auto &data = fashion_train();
  if (!data) {
    state.SkipWithError("Fashion-MNIST not found (package dataset-fashion-mnist)");
    return;
  }
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  const index_t sizes[] = {784, 64, 32, 16, 10};
  std::vector<double> plain, prox, in_prox;
  for (auto _ : state) {
    // The plain epoch (not reported as the iteration time).
    {
      TrainableModel<float> tm(init_mlp<float>(sizes, 1));
      const auto t0 = Clock::now();
      arena.execute([&] { train(tm, *data, nullptr, recipe()); });
      plain.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    TrainableModel<float> tm(init_mlp<float>(sizes, 1));
    PenaltyOptions po;
    po.lambda = 1e-3;
    ProximalPenalty<float> penalty(tm, make_groups(tm, GroupKind::state_row), po);
    double prox_seconds = 0;
    TrainOptions o = recipe();
    o.after_step = [&](int e, std::int64_t s, double lr) {
      const auto p0 = Clock::now();
      penalty.step(e, s, lr);
      prox_seconds += std::chrono::duration<double>(Clock::now() - p0).count();
    };
    const auto t0 = Clock::now();
    arena.execute([&] { train(tm, *data, nullptr, o); });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    prox.push_back(s);
    in_prox.push_back(prox_seconds);
    state.SetIterationTime(s);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  const double p = median(plain), x = median(prox);
  state.counters["plain_seconds"] = p;
  state.counters["prox_seconds"] = x;
  state.counters["prox_ratio"] = p > 0 ? x / p : 0;
  state.counters["prox_share"] = x > 0 ? median(in_prox) / x : 0;
}

void cnn_epoch(benchmark::State &state) {
  const auto &data = fashion_train();
  if (!data) {
    state.SkipWithError("Fashion-MNIST not found (package dataset-fashion-mnist)");
    return;
  }
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  double seconds = 0;
  for (auto _ : state) {
    TrainableModel<float> tm(small_cnn(1));
    const auto t0 = Clock::now();
    arena.execute([&] { train(tm, *data, nullptr, recipe()); });
    seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(seconds);
  }
  state.counters["seconds_per_epoch"] = seconds;
  state.counters["images_per_second"] = double(data->size()) / seconds;
}

/// Training steps of `model` on the batch U (labels): refresh, gradient,
/// optimiser step, commit; the best step's time in ms_per_step.
void training_steps(benchmark::State &state, Model<float> model, const Batch<float> &U,
                    std::vector<int> labels, double lr) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  TrainableModel<float> tm(std::move(model));
  Targets<float> t;
  t.labels = std::move(labels);
  GradientOptions go;
  go.forward.picard.rel_tol = 1e-5;
  std::vector<float> grad(static_cast<std::size_t>(tm.size()));
  OptimizerOptions oo;
  oo.lr = lr;
  oo.momentum = 0.9;
  Optimizer<float> opt(oo, tm.size());
  double best = 1e30;
  arena.execute([&] {
    GradientEngine<float> engine(tm, go);
    for (auto _ : state) {
      const auto t0 = Clock::now();
      engine.refresh();
      const auto r = engine.compute(U, t, grad);
      opt.step(tm.values(), grad, oo.lr);
      tm.commit();
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      best = std::min(best, s);
      state.SetIterationTime(s);
      if (!r.ok())
        state.SkipWithError("solve failed");
    }
  });
  state.counters["ms_per_step"] = best * 1e3;
}

void resnet20_step(benchmark::State &state) {
  const index_t k = 128;
  std::vector<int> labels(static_cast<std::size_t>(k));
  for (index_t j = 0; j < k; ++j)
    labels[j] = static_cast<int>(j % 10);
  // lr small: the model stays what it is.
  training_steps(state, resnet20<float>(), resnet20_inputs<float>(k, 1), labels, 1e-4);
}

void cnn_step(benchmark::State &state) {
  const auto &data = fashion_train();
  if (!data) {
    state.SkipWithError("Fashion-MNIST not found (package dataset-fashion-mnist)");
    return;
  }
  // The first 128 training images (the set is sample-major: one row each).
  const index_t k = 128, p = data->inputs.rows();
  Batch<float> U(p, k, TrainOptions{}.slab_width);
  std::vector<int> labels(static_cast<std::size_t>(k));
  for (index_t j = 0; j < k; ++j) {
    for (index_t i = 0; i < p; ++i)
      U(i, j) = data->inputs(i, j);
    labels[static_cast<std::size_t>(j)] = data->labels[static_cast<std::size_t>(j)];
  }
  training_steps(state, small_cnn(1), U, labels, 0.01);
}

void projection(benchmark::State &state) {
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  static const CsrMatrix<double> A = resnet_like_matrix<double>();
  const auto rows = A.row_abs_sums();
  std::vector<double> sorted(rows.begin(), rows.end());
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  const double kappa = sorted[sorted.size() / 2]; // half of the rows are projected
  CsrMatrix<double> B = A;
  const double bytes =
      double(A.nnz()) * (sizeof(double) + 4) + double(A.rows() + 1) * 8.0;
  double proj = 1e30, stream = 1e30;
  arena.execute([&] {
    for (auto _ : state) {
      // Fresh values (not timed), then the projection.
      auto v = B.mutable_values();
      std::copy(A.values().begin(), A.values().end(), v.begin());
      auto t0 = Clock::now();
      project_inf_norm(B, kappa);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      proj = std::min(proj, s);
      state.SetIterationTime(s);
      // The stream baseline: read the values and column indices once.
      t0 = Clock::now();
      const auto vals = A.values();
      const double sum = tbb::parallel_reduce(
          tbb::blocked_range<std::size_t>(0, vals.size(), 1 << 16), 0.0,
          [&](const tbb::blocked_range<std::size_t> &r, double acc) {
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            std::size_t i = r.begin();
            for (; i + 4 <= r.end(); i += 4) {
              a0 += vals[i];
              a1 += vals[i + 1];
              a2 += vals[i + 2];
              a3 += vals[i + 3];
            }
            for (; i < r.end(); ++i)
              a0 += vals[i];
            return acc + ((a0 + a1) + (a2 + a3));
          },
          std::plus<double>());
      A.visit_columns([&](auto cols) {
        const auto c = tbb::parallel_reduce(
            tbb::blocked_range<std::size_t>(0, cols.size(), 1 << 16), std::int64_t(0),
            [&](const tbb::blocked_range<std::size_t> &r, std::int64_t acc) {
              for (std::size_t i = r.begin(); i < r.end(); ++i)
                acc += cols[i];
              return acc;
            },
            std::plus<std::int64_t>());
        benchmark::DoNotOptimize(c);
      });
      benchmark::DoNotOptimize(sum);
      stream = std::min(stream, std::chrono::duration<double>(Clock::now() - t0).count());
    }
  });
  state.counters["nnz"] = double(A.nnz());
  state.counters["projection_GBps"] = bytes / proj * 1e-9;
  state.counters["stream_GBps"] = bytes / stream * 1e-9;
  state.counters["bandwidth_ratio"] = stream / proj;
  state.counters["ns_per_nonzero"] = proj / double(A.nnz()) * 1e9;
}

} // namespace

BENCHMARK(mlp_epoch)->ArgName("threads")->Arg(2)->UseManualTime()->Iterations(2)->Unit(
    benchmark::kMillisecond);
BENCHMARK(mlp_prox_epoch)
    ->ArgName("threads")
    ->Arg(2)
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(cnn_epoch)->ArgName("threads")->Arg(2)->UseManualTime()->Iterations(1)->Unit(
    benchmark::kMillisecond);
BENCHMARK(resnet20_step)
    ->ArgName("threads")
    ->Arg(2)
    ->UseManualTime()
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(cnn_step)
    ->ArgName("threads")
    ->Arg(2)
    ->UseManualTime()
    ->Iterations(300)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(projection)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseManualTime()
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
