// State-driven compression: the exact model at lambda = 0, the optimality
// (KKT) conditions of every refitted row against a Gram matrix formed here
// with dense Eigen, the kappa bound on a model with cycles, bad input.
#include <catch2/catch.hpp>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/train/compress.hpp>
#include <tacit/train/init.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <random>
#include <vector>

using namespace tacit;

namespace {

Batch<double> random_inputs(index_t p, index_t m, unsigned seed) {
  Batch<double> U(p, m);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (index_t j = 0; j < m; ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = dist(rng);
  return U;
}

Eigen::MatrixXd dense(const LinearOperator<double> &op) {
  const CsrMatrix<double> c = op.to_csr();
  Eigen::MatrixXd M = Eigen::MatrixXd::Zero(op.rows(), op.cols());
  for (index_t i = 0; i < op.rows(); ++i)
    for (std::int64_t k = c.row_ptr()[i]; k < c.row_ptr()[i + 1]; ++k)
      M(i, c.column(k)) = c.values()[k];
  return M;
}

Eigen::MatrixXd outputs(const Model<double> &m, const Batch<double> &U) {
  EquilibriumSolver<double> s(m);
  Batch<double> Y;
  REQUIRE(s.predict(U, Y).ok());
  Eigen::MatrixXd out(Y.rows(), Y.cols());
  for (index_t i = 0; i < Y.rows(); ++i)
    for (index_t j = 0; j < Y.cols(); ++j)
      out(i, j) = Y(i, j);
  return out;
}

} // namespace

TEST_CASE("compress_states at lambda 0 keeps the model", "[compress]") {
  const std::vector<index_t> sizes{6, 5, 4, 3};
  const Model<double> model = init_mlp<double>(sizes, 3);
  const Batch<double> U = random_inputs(6, 300, 1);
  StateCompressionOptions o;
  o.lambda = 0;
  StateCompressionReport rep;
  const Model<double> c = compress_states(model, U, o, &rep);
  CHECK(rep.feed_forward);
  CHECK(rep.passes == 2); // two hidden layers: longest path of A
  CHECK(rep.nonzeros_after == rep.nonzeros_before);
  // The error is formed from the Gram matrix (w G w - 2 h w + |z|^2): its
  // rounding is about sqrt(eps) relative.
  CHECK(rep.relative_fit_error < 1e-7);
  const Eigen::MatrixXd y0 = outputs(model, U), y1 = outputs(c, U);
  // C, D and c are refitted by (ridge 1e-10) least squares on the normal
  // equations.
  CHECK((y0 - y1).norm() <= 1e-7 * y0.norm());
}

TEST_CASE("compress_states rows satisfy the lasso's optimality conditions", "[compress]") {
  const std::vector<index_t> sizes{8, 6, 5, 3};
  const Model<double> model = init_mlp<double>(sizes, 5);
  const index_t n = model.states(), p = model.inputs(), m = 400;
  const Batch<double> U = random_inputs(p, m, 2);
  // Features and targets of the recorded states, formed independently.
  EquilibriumSolver<double> solver(model);
  Batch<double> X;
  REQUIRE(solver.solve(U, X).ok());
  Eigen::MatrixXd F(n + p + 1, m);
  for (index_t j = 0; j < m; ++j) {
    for (index_t i = 0; i < n; ++i)
      F(i, j) = X(i, j);
    for (index_t i = 0; i < p; ++i)
      F(n + i, j) = U(i, j);
    F(n + p, j) = 1;
  }
  const Eigen::MatrixXd A0 = dense(model.A()), B0 = dense(model.B());
  Eigen::MatrixXd W0(n, n + p + 1);
  W0 << A0, B0, Eigen::Map<const Eigen::VectorXd>(model.bias_x().data(), n);
  const Eigen::MatrixXd Z = W0 * F; // pre-activations
  const Eigen::MatrixXd G = F * F.transpose() / double(m), H = Z * F.transpose() / double(m);

  for (const double lambda : {0.01, 0.05}) {
    StateCompressionOptions o;
    o.lambda = lambda;
    o.passes = 1; // the features are the recorded states
    o.debias = false;
    o.tolerance = 1e-10;
    o.max_iterations = 100000;
    o.refit_outputs = false;
    StateCompressionReport rep;
    const Model<double> c = compress_states(model, U, o, &rep);
    REQUIRE(rep.groups_not_converged == 0);
    CHECK(rep.nonzeros_after < rep.nonzeros_before);
    Eigen::MatrixXd W(n, n + p + 1);
    W << dense(c.A()), dense(c.B()), Eigen::Map<const Eigen::VectorXd>(c.bias_x().data(), n);
    const Eigen::MatrixXd grad = W * G - H;
    int violations = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n + p + 1; ++j) {
        if (W0(i, j) == 0 && j != n + p) {
          CHECK(W(i, j) == 0); // the pattern is kept
          continue;
        }
        const double s = j == n + p ? 0.0 : std::sqrt(G(j, j));
        const double g = grad(i, j), slack = 1e-6 * (1 + lambda * s);
        if (W(i, j) != 0)
          violations += std::abs(g + lambda * s * (W(i, j) > 0 ? 1 : -1)) > slack;
        else
          violations += std::abs(g) > lambda * s + slack;
      }
    CHECK(violations == 0);
  }
}

TEST_CASE("compress_states keeps ||A||_inf <= kappa on a model with cycles", "[compress]") {
  const Model<double> model = init_implicit<double>(30, 6, 3, 0.2, 0.9, 7);
  const Batch<double> U = random_inputs(6, 200, 3);
  for (const double lambda : {0.0, 0.02}) {
    StateCompressionOptions o;
    o.lambda = lambda;
    o.kappa = 0.5;
    StateCompressionReport rep;
    const Model<double> c = compress_states(model, U, o, &rep);
    CHECK_FALSE(rep.feed_forward);
    CHECK(rep.passes == 1);
    CHECK(norm_inf(c.A()) <= 0.5 * (1 + 1e-12));
    const Eigen::MatrixXd a0 = dense(model.A()), a1 = dense(c.A());
    for (index_t i = 0; i < 30; ++i)
      for (index_t j = 0; j < 30; ++j)
        if (a0(i, j) == 0)
          CHECK(a1(i, j) == 0);
  }
  // The default bound is the model's own.
  StateCompressionReport rep;
  (void)compress_states(model, U, {}, &rep);
  CHECK(rep.kappa == Approx(norm_inf(model.A())));
}

TEST_CASE("compress_states rejects bad input", "[compress]") {
  const std::vector<index_t> sizes{4, 3, 2};
  const Model<double> model = init_mlp<double>(sizes, 1);
  StateCompressionOptions o;
  o.lambda = -1;
  CHECK_THROWS_AS(compress_states(model, random_inputs(4, 10, 1), o), InvalidArgument);
  CHECK_THROWS_AS(compress_states(model, random_inputs(5, 10, 1)), InvalidArgument);
  StateCompressionOptions small;
  small.max_features = 5;
  CHECK_THROWS_AS(compress_states(model, random_inputs(4, 10, 1), small), Unsupported);
}
