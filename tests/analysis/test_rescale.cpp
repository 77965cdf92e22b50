#include <catch2/catch.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/analysis/wellposed.hpp>

#include <Eigen/Dense>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>

using namespace tacit;

namespace {

/// A model as dense double arrays, for an independent reference solve.
struct DenseModel {
  index_t n = 0, p = 0, q = 0;
  std::vector<double> A, B, C, D, bx, by;
  std::vector<Activation> act;
};

template <class T> std::vector<double> dense_of(const LinearOperator<T> &op) {
  const auto d = op.to_csr().to_dense();
  return {d.begin(), d.end()};
}

template <class T> DenseModel dense_model(const Model<T> &m) {
  DenseModel d;
  d.n = m.states();
  d.p = m.inputs();
  d.q = m.outputs();
  d.A = dense_of(m.A());
  d.B = dense_of(m.B());
  d.C = dense_of(m.C());
  d.D = m.D() ? dense_of(*m.D()) : std::vector<double>(d.q * d.p, 0.0);
  d.bx.assign(m.bias_x().begin(), m.bias_x().end());
  d.by.assign(m.bias_y().begin(), m.bias_y().end());
  d.act = m.activations();
  return d;
}

/// Plain Picard x <- phi(A x + B u + b) in double until the step stops
/// shrinking; returns x.
std::vector<double> picard_state(const DenseModel &m, const std::vector<double> &u) {
  std::vector<double> x(m.n, 0.0), next(m.n);
  double step = 0;
  for (int it = 0; it < 200000; ++it) {
    step = 0;
    double size = 0;
    for (index_t i = 0; i < m.n; ++i) {
      double z = m.bx[i];
      for (index_t j = 0; j < m.n; ++j)
        z += m.A[i * m.n + j] * x[j];
      for (index_t j = 0; j < m.p; ++j)
        z += m.B[i * m.p + j] * u[j];
      next[i] = m.act[i](z);
      step = std::max(step, std::abs(next[i] - x[i]));
      size = std::max(size, std::abs(next[i]));
    }
    x.swap(next);
    if (step <= 1e-16 * (1 + size))
      break;
  }
  REQUIRE(step <= 1e-13);
  return x;
}

std::vector<double> predict(const DenseModel &m, const std::vector<double> &x,
                            const std::vector<double> &u) {
  std::vector<double> y(m.q);
  for (index_t i = 0; i < m.q; ++i) {
    double s = m.by[i];
    for (index_t j = 0; j < m.n; ++j)
      s += m.C[i * m.n + j] * x[j];
    for (index_t j = 0; j < m.p; ++j)
      s += m.D[i * m.p + j] * u[j];
    y[i] = s;
  }
  return y;
}

double spectral_radius_abs(const std::vector<Triplet<double>> &t, index_t n) {
  Eigen::MatrixXd M = Eigen::MatrixXd::Zero(n, n);
  for (const auto &e : t)
    M(e.row, e.col) += std::abs(e.value);
  return Eigen::EigenSolver<Eigen::MatrixXd>(M, false)
      .eigenvalues()
      .cwiseAbs()
      .maxCoeff();
}

/// A reducible A with two cyclic SCCs (badly row-scaled, so ||A||_inf >> 1),
/// self-loops and feed-forward states with large weights, states shuffled,
/// scaled to lambda_PF(|A|) = rho.
std::vector<Triplet<double>> implicit_pattern(index_t n, double rho, std::mt19937 &rng) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<index_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<Triplet<double>> t;
  auto cyclic = [&](index_t off, index_t size) {
    std::vector<double> s(size);
    for (auto &x : s)
      x = std::pow(10.0, 2 * u(rng) - 1); // diagonal similarity
    for (index_t i = 0; i < size; ++i)
      for (index_t j = 0; j < size; ++j)
        if (u(rng) < 0.3 || j == (i + 1) % size)
          t.push_back({perm[off + i], perm[off + j],
                       (u(rng) < 0.5 ? -1 : 1) * (0.1 + u(rng)) * s[i] / s[j]});
  };
  cyclic(0, 15);
  cyclic(15, 10);
  for (index_t i = 25; i < n; ++i) {
    for (int k = 0; k < 3; ++k)
      t.push_back(
          {perm[i], perm[static_cast<index_t>(u(rng) * double(i))], 4 * (u(rng) - 0.5)});
    if (i % 4 == 0)
      t.push_back({perm[i], perm[i], 0.3});
  }
  const double r = spectral_radius_abs(t, n);
  for (auto &e : t)
    e.value *= rho / r;
  return t;
}

template <class T>
Model<T> make_model(const std::vector<Triplet<double>> &ta, index_t n, std::mt19937 &rng,
                    std::vector<StateBlock> blocks) {
  std::uniform_real_distribution<double> u(-1, 1);
  const index_t p = 4, q = 3;
  std::vector<T> b(n * p), c(q * n), d(q * p), bx(n), by(q);
  for (auto &x : b)
    x = static_cast<T>(u(rng));
  for (auto &x : c)
    x = static_cast<T>(u(rng));
  for (auto &x : d)
    x = static_cast<T>(u(rng));
  for (auto &x : bx)
    x = static_cast<T>(u(rng));
  for (auto &x : by)
    x = static_cast<T>(u(rng));
  std::vector<Triplet<T>> tt;
  for (const auto &e : ta)
    tt.push_back({e.row, e.col, static_cast<T>(e.value)});
  return Model<T>(std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_triplets(n, n, tt)),
                  std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_dense(n, p, b)),
                  std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_dense(q, n, c)),
                  std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_dense(q, p, d)), bx,
                  by, std::move(blocks));
}

std::vector<StateBlock> mixed_blocks(index_t n) {
  return {{"in", 0, 10, {ActivationKind::relu}},
          {"mid", 10, n - 20, {ActivationKind::leaky_relu, 0.1}},
          {"out", n - 10, 10, {ActivationKind::identity}}};
}

/// Predictions and states of both models agree for a few inputs, and the new
/// states are the old ones times the reported scaling.
void check_equivalent(const DenseModel &a, const DenseModel &b,
                      const std::vector<double> &scaling, double tol, std::mt19937 &rng) {
  std::uniform_real_distribution<double> u(-2, 2);
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<double> in(a.p);
    for (auto &x : in)
      x = u(rng);
    const auto xa = picard_state(a, in), xb = picard_state(b, in);
    const auto ya = predict(a, xa, in), yb = predict(b, xb, in);
    for (index_t i = 0; i < a.q; ++i)
      CHECK(yb[i] == Approx(ya[i]).margin(tol).epsilon(tol));
    for (index_t i = 0; i < a.n; ++i)
      CHECK(xb[i] == Approx(scaling[i] * xa[i]).margin(tol).epsilon(tol));
  }
}

} // namespace

TEST_CASE("Rescaling a reducible ReLU/leaky/identity model keeps its predictions",
          "[wellposed]") {
  std::mt19937 rng(31);
  const index_t n = 45;
  const auto ta = implicit_pattern(n, 0.7, rng);
  const auto model = make_model<double>(ta, n, rng, mixed_blocks(n));
  RescaleReport rep;
  const auto scaled = rescale_model(model, 0, &rep);
  INFO(rep.pf.message);
  CHECK(rep.norm_before > 1);
  CHECK(rep.pf.lower <= 0.7 * (1 + 1e-12));
  CHECK(rep.pf.upper >= 0.7 * (1 - 1e-12));
  CHECK(rep.target == Approx((rep.pf.upper + 1) / 2));
  CHECK(rep.norm_after <= rep.target);
  CHECK(rep.norm_after < 1);
  CHECK(norm_inf(scaled.A()) == rep.norm_after);
  REQUIRE(rep.scaling.size() == static_cast<std::size_t>(n));
  CHECK(scaled.D_ptr() == model.D_ptr()); // D shared, unchanged
  CHECK(scaled.blocks() == model.blocks());
  check_equivalent(dense_model(model), dense_model(scaled), rep.scaling, 1e-12, rng);

  SECTION("a user target in (upper, 1)") {
    RescaleReport r2;
    const auto s2 = rescale_model(model, 0.75, &r2);
    CHECK(r2.target == 0.75);
    CHECK(r2.norm_after <= 0.75);
    check_equivalent(dense_model(model), dense_model(s2), r2.scaling, 1e-12, rng);
  }
  SECTION("targets outside (upper, 1) are rejected") {
    try {
      (void)rescale_model(model, 0.6); // below the certified bound: not reachable
      FAIL("expected NumericalError");
    } catch (const NumericalError &e) {
      CHECK(e.value() == 0.6);
      CHECK(e.limit() == rep.pf.upper);
    }
    CHECK_THROWS_AS(rescale_model(model, 1.0), InvalidArgument);
    CHECK_THROWS_AS(rescale_model(model, std::nan("")), InvalidArgument);
  }
}

TEST_CASE("Rescaling works when lambda_PF is close to 1 and for feed-forward models",
          "[wellposed]") {
  std::mt19937 rng(5);
  SECTION("lambda_PF = 0.999") {
    const index_t n = 40;
    const auto ta = implicit_pattern(n, 0.999, rng);
    const auto model = make_model<double>(ta, n, rng, mixed_blocks(n));
    RescaleReport rep;
    const auto scaled = rescale_model(model, 0, &rep);
    CHECK(rep.pf.upper < 0.9995);
    CHECK(rep.norm_after <= rep.target);
    CHECK(rep.norm_after < 1);
    check_equivalent(dense_model(model), dense_model(scaled), rep.scaling, 1e-10, rng);
  }
  SECTION("deep feed-forward chain with large weights") {
    const index_t width = 5, layers = 12, n = width * layers;
    std::uniform_real_distribution<double> u(-3, 3);
    std::vector<Triplet<double>> ta;
    for (index_t l = 1; l < layers; ++l)
      for (index_t i = 0; i < width; ++i)
        for (index_t j = 0; j < width; ++j)
          ta.push_back({l * width + i, (l - 1) * width + j, u(rng)});
    const auto model = make_model<double>(ta, n, rng, {});
    RescaleReport rep;
    const auto scaled = rescale_model(model, 0, &rep);
    CHECK(rep.pf.upper == 0);
    CHECK(rep.target == 0.5);
    CHECK(rep.norm_before > 5);
    CHECK(rep.norm_after <= 0.5);
    check_equivalent(dense_model(model), dense_model(scaled), rep.scaling, 1e-12, rng);
  }
}

TEST_CASE("Rescaling a float model", "[wellposed]") {
  std::mt19937 rng(77);
  const index_t n = 40;
  const auto ta = implicit_pattern(n, 0.8, rng);
  const auto model = make_model<float>(ta, n, rng, mixed_blocks(n));
  RescaleReport rep;
  const auto scaled = rescale_model(model, 0, &rep);
  CHECK(rep.norm_after <= rep.target);
  check_equivalent(dense_model(model), dense_model(scaled), rep.scaling, 2e-5, rng);
}

TEST_CASE("Rescaling refuses non-homogeneous activations and uncertified models",
          "[wellposed]") {
  std::mt19937 rng(8);
  const index_t n = 40;
  SECTION("tanh block") {
    const auto ta = implicit_pattern(n, 0.5, rng);
    auto blocks = mixed_blocks(n);
    blocks[1].activation = {ActivationKind::tanh};
    const auto model = make_model<double>(ta, n, rng, blocks);
    try {
      (void)rescale_model(model);
      FAIL("expected Unsupported");
    } catch (const Unsupported &e) {
      const std::string msg = e.what();
      CHECK(msg.find("'mid'") != std::string::npos);
      CHECK(msg.find("tanh") != std::string::npos);
    }
    blocks[1].activation = {ActivationKind::sigmoid};
    CHECK_THROWS_AS(rescale_model(make_model<double>(ta, n, rng, blocks)), Unsupported);
  }
  SECTION("lambda_PF(|A|) = 1.2") {
    const auto ta = implicit_pattern(n, 1.2, rng);
    const auto model = make_model<double>(ta, n, rng, mixed_blocks(n));
    try {
      (void)rescale_model(model);
      FAIL("expected NumericalError");
    } catch (const NumericalError &e) {
      const std::string msg = e.what();
      CHECK(msg.find("not certified") != std::string::npos);
      CHECK(msg.find("1.2") != std::string::npos);
      CHECK(e.value() >= 1.2 * (1 - 1e-9)); // the certified upper bound
      CHECK(e.limit() == 1);
    }
  }
}

TEST_CASE("Rescaling a generated implicit model is deterministic across thread counts",
          "[wellposed]") {
  // One large SCC (random pattern with cycles), ||A||_inf = 1.5 (the largest
  // row sum) but lambda_PF(|A|) near the mean row sum, below 1.
  const auto model = random_implicit_model<double>(1500, 6, 3, 8, 1.5, 3);
  RescaleReport r1, r2;
  std::optional<Model<double>> s1, s2;
  tbb::task_arena(1).execute([&] { s1.emplace(rescale_model(model, 0, &r1)); });
  tbb::task_arena(2).execute([&] { s2.emplace(rescale_model(model, 0, &r2)); });
  CHECK(r1.pf.upper == r2.pf.upper);
  CHECK(r1.scaling == r2.scaling);
  const auto a1 = s1->A().to_csr(), a2 = s2->A().to_csr();
  REQUIRE(a1.nnz() == a2.nnz());
  CHECK(std::equal(a1.values().begin(), a1.values().end(), a2.values().begin()));
  CHECK(r1.norm_before == Approx(1.5));
  CHECK(r1.norm_after <= r1.target);
  std::mt19937 rng(1);
  check_equivalent(dense_model(model), dense_model(*s1), r1.scaling, 1e-12, rng);
}
