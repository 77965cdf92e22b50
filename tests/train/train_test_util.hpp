#pragma once
// Small models for the training tests: a CSR model with cycles and every
// activation, a structured network (convolutions with stride, padding and
// groups, a kept batch norm, a residual, pooling, dense layers), and central
// finite differences of the mean loss.

#include <tacit/core/csr.hpp>
#include <tacit/core/model.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/train/gradient.hpp>
#include <tacit/train/trainable.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

namespace tacit_test::train {

using namespace tacit;

/// Uniform values in [-scale, scale].
inline std::vector<double> uniform(std::mt19937_64 &rng, std::size_t n, double scale) {
  std::uniform_real_distribution<double> d(-scale, scale);
  std::vector<double> v(n);
  for (auto &x : v)
    x = d(rng);
  return v;
}

template <class T> std::vector<T> cast(const std::vector<double> &v) {
  return std::vector<T>(v.begin(), v.end());
}

/// Random sparse m x n CSR with about `density` of the entries, values in
/// [-scale, scale]; rows rescaled so that the largest row l1 norm is `norm`
/// when norm > 0.
template <class T>
std::shared_ptr<CsrMatrix<T>> random_csr(std::mt19937_64 &rng, index_t m, index_t n,
                                         double density, double scale, double norm = 0) {
  std::uniform_real_distribution<double> u(0, 1), v(-scale, scale);
  std::vector<Triplet<T>> t;
  std::vector<double> rows(static_cast<std::size_t>(m), 0.0);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j)
      if (u(rng) < density) {
        const double x = v(rng);
        t.push_back({i, j, static_cast<T>(x)});
        rows[i] += std::abs(x);
      }
  if (norm > 0) {
    double mx = 0;
    for (double r : rows)
      mx = std::max(mx, r);
    for (auto &e : t)
      e.value = static_cast<T>(double(e.value) * norm / mx);
  }
  return std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_triplets(m, n, t));
}

/// A CSR model with cycles: n = 15 states in five blocks (relu, leaky_relu,
/// tanh, sigmoid, identity), ||A||_inf = 0.6, D and both biases present.
template <class T> Model<T> cyclic_model(std::uint64_t seed = 3) {
  std::mt19937_64 rng(seed);
  const index_t n = 15, p = 6, q = 4;
  auto A = random_csr<T>(rng, n, n, 0.35, 1.0, 0.6);
  auto B = random_csr<T>(rng, n, p, 0.6, 1.0);
  auto C = random_csr<T>(rng, q, n, 0.6, 1.0);
  auto D = random_csr<T>(rng, q, p, 0.5, 0.5);
  std::vector<StateBlock> blocks = {{"r", 0, 3, {ActivationKind::relu}},
                                    {"l", 3, 3, {ActivationKind::leaky_relu, 0.1}},
                                    {"t", 6, 3, {ActivationKind::tanh}},
                                    {"s", 9, 3, {ActivationKind::sigmoid}},
                                    {"i", 12, 3, {ActivationKind::identity}}};
  return Model<T>(A, B, C, D, cast<T>(uniform(rng, n, 0.3)),
                  cast<T>(uniform(rng, q, 0.3)), blocks);
}

/// A structured network on 2 x 6 x 6 inputs: conv 3x3 pad 1 (+ folded batch
/// norm) -> relu; conv 3x3 stride 2 pad 1 -> tanh; grouped 1x1 conv ->
/// leaky relu; residual add of the two and a batch norm kept as a diagonal
/// -> sigmoid; average pooling, dense -> identity; dense output.
template <class T> Model<T> structured_model(std::uint64_t seed = 4) {
  std::mt19937_64 rng(seed);
  NetworkBuilder<T> net;
  auto x = net.input({2, 6, 6});
  Conv2dGeometry g1{{2, 6, 6}, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  x = net.conv2d(x, g1, cast<T>(uniform(rng, 4 * 2 * 9, 0.4)),
                 cast<T>(uniform(rng, 4, 0.1)));
  x = net.batch_norm(x, cast<T>({1.1, 0.9, 1.2, 0.8}), cast<T>({0.1, -0.1, 0.05, 0.0}),
                     cast<T>({0.05, -0.02, 0.01, 0.03}), cast<T>({0.9, 1.1, 1.3, 0.7}));
  x = net.activation(x, {ActivationKind::relu}, "a1");
  Conv2dGeometry g2{{4, 6, 6}, 4, 3, 3, 2, 2, 1, 1, 1, 1};
  auto y = net.conv2d(x, g2, cast<T>(uniform(rng, 4 * 4 * 9, 0.3)),
                      cast<T>(uniform(rng, 4, 0.1)));
  y = net.activation(y, {ActivationKind::tanh}, "a2");
  Conv2dGeometry g3{{4, 3, 3}, 4, 1, 1, 1, 1, 0, 0, 0, 0};
  g3.groups = 2;
  auto z =
      net.conv2d(y, g3, cast<T>(uniform(rng, 4 * 2, 0.5)), cast<T>(uniform(rng, 4, 0.1)));
  z = net.activation(z, {ActivationKind::leaky_relu, 0.2}, "a3");
  auto s = net.add(y, z);
  s = net.batch_norm(s, cast<T>({1.0, 0.8, 1.1, 0.9}), cast<T>({0.0, 0.1, -0.1, 0.05}),
                     cast<T>({0.1, 0.0, -0.1, 0.2}), cast<T>({1.0, 0.5, 2.0, 1.5}));
  s = net.activation(s, {ActivationKind::sigmoid}, "a4");
  s = net.avg_pool(s, 2, 2, 1, 1);
  s = net.flatten(s);
  auto d =
      net.dense(s, 5, cast<T>(uniform(rng, 5 * 16, 0.4)), cast<T>(uniform(rng, 5, 0.1)));
  d = net.activation(d, {ActivationKind::identity}, "a5");
  auto out =
      net.dense(d, 3, cast<T>(uniform(rng, 3 * 5, 0.5)), cast<T>(uniform(rng, 3, 0.1)));
  return net.build(out);
}

/// Deterministic inputs (p x k, slab width w).
template <class T>
Batch<T> inputs(index_t p, index_t k, std::uint64_t seed,
                index_t w = default_slab_width) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(-1, 1);
  Batch<T> U(p, k, w);
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = static_cast<T>(d(rng));
  return U;
}

/// Tight solver tolerances (finite differences need converged solves).
inline GradientOptions tight(LossKind loss = LossKind::cross_entropy) {
  GradientOptions o;
  o.loss = loss;
  o.forward.picard.abs_tol = 0;
  o.forward.picard.rel_tol = 1e-15;
  o.adjoint.picard.abs_tol = 0;
  o.adjoint.picard.rel_tol = 1e-15;
  return o;
}

/// Mean loss at the model's current parameters.
template <class T>
double mean_loss(TrainableModel<T> &tm, const Batch<T> &U, const Targets<T> &targets,
                 const GradientOptions &o) {
  GradientEngine<T> e(tm, o);
  const auto r = e.evaluate(U, targets);
  REQUIRE(r.forward.ok());
  return r.loss;
}

/// Central difference of the mean loss in parameter `index` (flat).
template <class T>
double central_difference(TrainableModel<T> &tm, index_t index, double h,
                          const Batch<T> &U, const Targets<T> &targets,
                          const GradientOptions &o) {
  std::vector<T> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  const T saved = flat[index];
  flat[index] = static_cast<T>(double(saved) + h);
  tm.write(flat);
  const double up = mean_loss(tm, U, targets, o);
  flat[index] = static_cast<T>(double(saved) - h);
  tm.write(flat);
  const double down = mean_loss(tm, U, targets, o);
  flat[index] = saved;
  tm.write(flat);
  return (up - down) / (2 * h);
}

} // namespace tacit_test::train
