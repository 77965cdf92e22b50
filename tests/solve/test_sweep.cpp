// The block-triangular sweep's plan and its batched kernel for twin rows
// (rows of a level with the same columns: the output channels of one pixel of
// a convolution), against a naive forward pass written here and against the
// same solve one column at a time (bit for bit).
#include <catch2/catch.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/core/structure.hpp>

#include <tbb/task_arena.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "dense_model_util.hpp"
#include "solve/detail/sweep.hpp"

using namespace tacit;

namespace {

/// A 1-D convolutional feed-forward network, with the states of each layer
/// stored channel-major (state = layer offset + channel * positions + q):
///   layer 0: fed by the input (B), no A entries;
///   layer 1: 3-wide convolution of layer 0 over all channels;
///   layer 2: convolution of layer 1 plus a skip line from layer 0's own
///            (channel, position) state, so its twins differ in their first
///            column (a head);
///   layer 3: convolution of layer 2 with a wider window (5).
/// Each layer has its own activation.
struct ConvNet {
  index_t channels = 0, positions = 0, p = 0, n = 0;
  std::vector<double> A, B, bias; // dense, row-major
  std::vector<StateBlock> blocks;
};

ConvNet conv_net(std::mt19937 &rng, index_t channels, index_t positions,
                 const std::vector<Activation> &acts) {
  ConvNet net;
  net.channels = channels;
  net.positions = positions;
  const index_t layer = channels * positions;
  net.n = 4 * layer;
  net.p = positions + 3;
  net.A.assign(static_cast<std::size_t>(net.n * net.n), 0.0);
  net.B.assign(static_cast<std::size_t>(net.n * net.p), 0.0);
  net.bias.assign(static_cast<std::size_t>(net.n), 0.0);
  std::uniform_real_distribution<double> u(-1, 1);
  auto state = [&](index_t l, index_t c, index_t q) {
    return l * layer + c * positions + q;
  };
  for (index_t c = 0; c < channels; ++c)
    for (index_t q = 0; q < positions; ++q) {
      for (index_t j = q; j < q + 4; ++j)
        net.B[state(0, c, q) * net.p + j] = u(rng);
      for (index_t l = 0; l < 4; ++l)
        net.bias[state(l, c, q)] = 0.2 * u(rng);
      for (index_t l = 1; l < 4; ++l) {
        const index_t half = l == 3 ? 2 : 1;
        const index_t i = state(l, c, q);
        for (index_t c2 = 0; c2 < channels; ++c2)
          for (index_t q2 = std::max<index_t>(0, q - half);
               q2 <= std::min(positions - 1, q + half); ++q2)
            net.A[i * net.n + state(l - 1, c2, q2)] = 0.6 * u(rng) / channels;
        if (l == 2)
          net.A[i * net.n + state(0, c, q)] = 1.0; // skip line
      }
    }
  for (index_t l = 0; l < 4; ++l)
    net.blocks.push_back({"layer" + std::to_string(l), l * layer, layer,
                          acts[static_cast<std::size_t>(l)]});
  return net;
}

template <class T> Model<T> to_model(const ConvNet &net) {
  return testutil::dense_model<T>(net.n, net.p, net.A, net.B, net.blocks, net.bias);
}

/// Naive forward pass: states in index order (each reads only earlier ones).
std::vector<double> forward(const ConvNet &net, const std::vector<double> &u) {
  std::vector<double> x(static_cast<std::size_t>(net.n), 0.0);
  for (index_t i = 0; i < net.n; ++i) {
    double c = net.bias[i];
    for (index_t j = 0; j < net.p; ++j)
      c += net.B[i * net.p + j] * u[j];
    for (index_t j = 0; j < i; ++j)
      c += net.A[i * net.n + j] * x[j];
    for (const auto &b : net.blocks)
      if (i >= b.offset && i < b.offset + b.size)
        x[i] = b.activation(c);
  }
  return x;
}

Batch<double> random_inputs(std::mt19937 &rng, index_t p, index_t k, index_t width) {
  std::uniform_real_distribution<double> u(-1, 1);
  Batch<double> U(p, k, width);
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = u(rng);
  return U;
}

const std::vector<Activation> mixed = {{ActivationKind::relu, 0.0},
                                       {ActivationKind::leaky_relu, 0.1},
                                       {ActivationKind::tanh, 0.0},
                                       {ActivationKind::sigmoid, 0.0}};

} // namespace

TEST_CASE("Sweep plan: the rows of a level are grouped into twins with equal columns",
          "[sweep]") {
  std::mt19937 rng(1);
  const auto net = conv_net(rng, 6, 10, mixed);
  const auto model = to_model<double>(net);
  const auto &A = dynamic_cast<const CsrMatrix<double> &>(model.A());
  const auto scc = strongly_connected_components(A);
  const auto acts = model.activations();
  detail::SweepPlan<double> plan(A, acts, scc,
                                 [](index_t i) { return "state " + std::to_string(i); });
  REQUIRE(plan.levels.size() == 4);
  std::vector<int> seen(static_cast<std::size_t>(net.n), 0);
  index_t full_runs = 0, headed = 0;
  plan.with_columns([&](const auto *cols) {
    for (const auto &lev : plan.levels) {
      for (index_t p = lev.p0; p < lev.p1; ++p)
        ++seen[plan.row_of[p]];
      // Walk the groups as the kernel does.
      for (index_t p = lev.p0; p < lev.singles_end;) {
        const int t = plan.twins[p];
        REQUIRE(t >= 1);
        REQUIRE(t <= 255);
        REQUIRE(p + t <= lev.singles_end); // never across levels
        full_runs += t == 6;
        const std::int64_t len = plan.ptr[p + 1] - plan.ptr[p];
        const std::int64_t head = plan.twin_heads[p];
        headed += t > 1 && head == 1;
        for (index_t r = 1; r < t; ++r) {
          REQUIRE(plan.ptr[p + r + 1] - plan.ptr[p + r] == len);
          for (std::int64_t e = head; e < len; ++e)
            REQUIRE(cols[plan.ptr[p] + e] == cols[plan.ptr[p + r] + e]);
          if (head == 1)
            CHECK(cols[plan.ptr[p]] != cols[plan.ptr[p + r]]);
        }
        p += t;
      }
    }
  });
  for (int s : seen)
    REQUIRE(s == 1); // the sweep order is a permutation
  // Six channels per position: one run of six twins per position of every
  // convolution layer; the skip layer's runs have a head.
  CHECK(full_runs >= 3 * 10);
  CHECK(headed > 0);
}

TEST_CASE("Batched sweep of twin rows: every column equals the naive forward pass and "
          "its own one-column solve bit for bit",
          "[sweep]") {
  std::mt19937 rng(2);
  const auto net = conv_net(rng, 7, 12, mixed);
  const auto model = to_model<double>(net);
  EquilibriumSolver<double> solver(model);
  REQUIRE(solver.method() == SolveMethod::sweep);
  const index_t kmax = 70;
  const auto Uall = random_inputs(rng, net.p, kmax, 32);
  std::vector<Batch<double>> single(static_cast<std::size_t>(kmax));
  for (index_t j = 0; j < kmax; ++j) {
    Batch<double> U1(net.p, 1);
    std::vector<double> u(static_cast<std::size_t>(net.p));
    for (index_t i = 0; i < net.p; ++i)
      u[i] = U1(i, 0) = Uall(i, j);
    REQUIRE(solver.solve(U1, single[j]).ok());
    const auto ref = forward(net, u);
    for (index_t i = 0; i < net.n; ++i)
      REQUIRE(single[j](i, 0) == Approx(ref[i]).margin(1e-13));
  }
  for (index_t width : {5, 16, 21, 32, 70}) {
    for (index_t slab : {index_t(32), index_t(16), index_t(8), index_t(3)}) {
      INFO("width " << width << ", slab " << slab);
      Batch<double> U(net.p, width, slab), X;
      for (index_t j = 0; j < width; ++j)
        for (index_t i = 0; i < net.p; ++i)
          U(i, j) = Uall(i, j);
      const auto report = solver.solve(U, X);
      REQUIRE(report.ok());
      CHECK(report.residual == 0);
      bool same = true;
      for (index_t j = 0; j < width; ++j)
        for (index_t i = 0; i < net.n; ++i)
          same = same && std::memcmp(&X(i, j), &single[j](i, 0), sizeof(double)) == 0;
      CHECK(same);
    }
  }
}

TEST_CASE("Batched sweep of twin rows: same bits on 1 and 2 threads, in float too, "
          "and a non-finite input spoils its own column only",
          "[sweep]") {
  std::mt19937 rng(3);
  const auto net = conv_net(rng, 8, 16, mixed);
  const index_t k = 37;
  auto U = random_inputs(rng, net.p, k, 32);
  for (const bool single_precision : {false, true}) {
    INFO((single_precision ? "float" : "double"));
    auto run = [&](int threads, auto zero) {
      using T = decltype(zero);
      const auto model = to_model<T>(net);
      Batch<T> Ut(net.p, k, 32), X;
      for (index_t j = 0; j < k; ++j)
        for (index_t i = 0; i < net.p; ++i)
          Ut(i, j) = static_cast<T>(U(i, j));
      tbb::task_arena arena(threads);
      SolveReport report;
      arena.execute([&] {
        EquilibriumSolver<T> solver(model);
        report = solver.solve(Ut, X);
      });
      REQUIRE(report.ok());
      std::vector<double> out;
      for (index_t j = 0; j < k; ++j)
        for (index_t i = 0; i < net.n; ++i)
          out.push_back(static_cast<double>(X(i, j)));
      return out;
    };
    const auto a = single_precision ? run(1, 0.0f) : run(1, 0.0);
    const auto b = single_precision ? run(2, 0.0f) : run(2, 0.0);
    REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
    if (single_precision) { // float against the naive double forward pass
      for (index_t j = 0; j < k; j += 9) {
        std::vector<double> u(static_cast<std::size_t>(net.p));
        for (index_t i = 0; i < net.p; ++i)
          u[i] = static_cast<double>(static_cast<float>(U(i, j)));
        const auto ref = forward(net, u);
        for (index_t i = 0; i < net.n; ++i)
          REQUIRE(a[j * net.n + i] == Approx(ref[i]).margin(1e-5));
      }
    }
  }
  const auto model = to_model<double>(net);
  EquilibriumSolver<double> solver(model);
  U(3, 10) = std::numeric_limits<double>::quiet_NaN();
  Batch<double> X;
  const auto report = solver.solve(U, X);
  REQUIRE(report.column_status.size() == static_cast<std::size_t>(k));
  for (index_t j = 0; j < k; ++j) {
    CAPTURE(j);
    CHECK((report.column_status[j] == SolveStatus::non_finite) == (j == 10));
  }
  CHECK(report.status == SolveStatus::non_finite);
}
