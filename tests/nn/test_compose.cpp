// Composition of implicit models: the composed model's outputs equal running
// the parts (cascade: y_1 feeds the second model; parallel: stacked outputs;
// feedback: the loop equations hold at the fixed point, which matches a
// dense Eigen Picard iteration of the seed's block matrices), structured
// blocks stay structured, the cascade's certificate is the parts', and the
// gradient of a composed model matches central finite differences.
#include <catch2/catch.hpp>

#include <Eigen/Dense>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/error.hpp>
#include <tacit/nn/compose.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

Mat dense(const LinearOperator<double> *op, index_t rows, index_t cols) {
  Mat M = Mat::Zero(rows, cols);
  if (!op)
    return M;
  const auto csr = op->to_csr();
  const auto d = csr.to_dense();
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j)
      M(i, j) = d[static_cast<std::size_t>(i * cols + j)];
  return M;
}

Vec vec(std::span<const double> v) {
  Vec r(static_cast<Eigen::Index>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i)
    r[static_cast<Eigen::Index>(i)] = v[i];
  return r;
}

/// phi of a model's blocks applied to z.
Vec phi(const Model<double> &m, const Vec &z) {
  Vec x(z.size());
  const auto acts = m.activations();
  for (Eigen::Index i = 0; i < z.size(); ++i)
    x[i] = acts[static_cast<std::size_t>(i)](z[i]);
  return x;
}

/// Outputs and states of a model for one input (tacit's solver).
struct Solved {
  Vec x, y;
};
Solved solve(const Model<double> &m, const Vec &u) {
  SolveOptions o;
  o.picard.abs_tol = 0;
  o.picard.rel_tol = 1e-15;
  o.picard.max_iterations = 100000;
  EquilibriumSolver<double> solver(m, o);
  Batch<double> U(m.inputs(), 1), X, Y;
  for (index_t i = 0; i < m.inputs(); ++i)
    U(i, 0) = u[i];
  const auto r = solver.predict(U, X, Y);
  REQUIRE(r.ok());
  Solved s{Vec(m.states()), Vec(m.outputs())};
  for (index_t i = 0; i < m.states(); ++i)
    s.x[i] = X(i, 0);
  for (index_t i = 0; i < m.outputs(); ++i)
    s.y[i] = Y(i, 0);
  return s;
}

Vec random_vec(std::mt19937_64 &rng, index_t n) {
  std::uniform_real_distribution<double> d(-1, 1);
  Vec v(n);
  for (index_t i = 0; i < n; ++i)
    v[i] = d(rng);
  return v;
}

double rel(const Vec &a, const Vec &b) {
  return (a - b).lpNorm<Eigen::Infinity>() /
         std::max(1e-300, b.lpNorm<Eigen::Infinity>());
}

/// A small structured network 2 x 6 x 6 -> 3 (train_test_util).
Model<double> net() {
  return structured_model<double>(4);
}

/// A model p -> q with cycles, ||A||_inf = norm, with or without D.
Model<double> small_cyclic(index_t n, index_t p, index_t q, double norm, bool with_d,
                           std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto A = random_csr<double>(rng, n, n, 0.5, 1.0, norm);
  auto B = random_csr<double>(rng, n, p, 0.7, 0.5);
  auto C = random_csr<double>(rng, q, n, 0.7, 0.5);
  OperatorPtr<double> D;
  if (with_d)
    D = random_csr<double>(rng, q, p, 0.6, 0.3);
  std::vector<StateBlock> blocks = {{"r", 0, n / 2, {ActivationKind::relu}},
                                    {"t", n / 2, n - n / 2, {ActivationKind::tanh}}};
  return Model<double>(A, B, C, D, uniform(rng, static_cast<std::size_t>(n), 0.2),
                       uniform(rng, static_cast<std::size_t>(q), 0.2), blocks);
}

} // namespace

TEST_CASE("cascade: the second model reads the first one's outputs", "[compose]") {
  const Model<double> m1 = net();                               // 72 -> 3
  const Model<double> m2 = small_cyclic(9, 3, 4, 0.7, true, 5); // 3 -> 4
  const Model<double> c = cascade(m1, m2);
  REQUIRE(c.states() == m1.states() + m2.states());
  REQUIRE(c.inputs() == m1.inputs());
  REQUIRE(c.outputs() == m2.outputs());
  CHECK(c.blocks().front().name == "1." + m1.blocks().front().name);
  CHECK(c.blocks().back().name == "2." + m2.blocks().back().name);
  // Structured blocks stay structured: m1's convolutions are entries of A.
  const auto *A = capability<BlockOperator<double>>(c.A());
  REQUIRE(A != nullptr);
  const auto *A1 = capability<BlockOperator<double>>(m1.A());
  CHECK(A->row_blocks() == A1->row_blocks() + 1);
  bool conv_kept = false;
  for (const auto &e : A->entries())
    conv_kept = conv_kept || capability<Conv2dOperator<double>>(*e.op) != nullptr;
  CHECK(conv_kept);
  std::mt19937_64 rng(1);
  for (int trial = 0; trial < 3; ++trial) {
    const Vec u = random_vec(rng, m1.inputs());
    const Solved s1 = solve(m1, u);
    const Solved s2 = solve(m2, s1.y);
    const Solved sc = solve(c, u);
    CHECK(rel(sc.y, s2.y) < 1e-12);
    CHECK(rel(sc.x.head(m1.states()), s1.x) < 1e-12);
    CHECK(rel(sc.x.tail(m2.states()), s2.x) < 1e-12);
  }
  CHECK_THROWS_AS(cascade(m2, m1), InvalidArgument);
}

TEST_CASE("cascade of two networks is feed-forward, its certificate is the parts'",
          "[compose]") {
  const Model<double> m1 = net();
  NetworkBuilder<double> b;
  auto x = b.input({3, 1, 1});
  x = b.dense(x, 4, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {0.1, 0.2, 0.3, 0.4});
  x = b.activation(x, {ActivationKind::relu}, "h");
  x = b.dense(x, 2, {1, -1, 1, -1, 0.5, 0.5, 0.5, 0.5});
  const Model<double> m2 = b.build(x);
  const Model<double> c = cascade(m1, m2);
  const auto *A = capability<BlockOperator<double>>(c.A());
  REQUIRE(A != nullptr);
  CHECK(A->strictly_block_lower_triangular());
  const auto report = analyse_well_posedness(c.A());
  CHECK(report.pf.upper == 0);
  // With cycles: the cascade's certified bound is the maximum of the parts'.
  const Model<double> k1 = small_cyclic(10, 72, 3, 0.6, false, 7);
  const Model<double> k2 = small_cyclic(8, 3, 4, 0.8, true, 8);
  const auto r1 = analyse_well_posedness(k1.A()), r2 = analyse_well_posedness(k2.A());
  const auto combined = cascade_perron_bound(r1.pf, r2.pf);
  const auto direct = analyse_well_posedness(cascade(k1, k2).A());
  CHECK(combined.upper == std::max(r1.pf.upper, r2.pf.upper));
  CHECK(combined.certified());
  // The enclosures of the parts and of the composed A overlap (both hold
  // lambda_PF(|A|) = max of the parts').
  CHECK(combined.lower <= direct.pf.upper);
  CHECK(direct.pf.lower <= combined.upper);
  // Dense reference: the spectral radius of the composed |A|.
  const Mat Ad =
      dense(&cascade(k1, k2).A(), k1.states() + k2.states(), k1.states() + k2.states())
          .cwiseAbs();
  const double rho = Ad.eigenvalues().cwiseAbs().maxCoeff();
  CHECK(combined.lower <= rho * (1 + 1e-9));
  CHECK(rho <= combined.upper * (1 + 1e-9));
}

TEST_CASE("parallel: shared input, stacked outputs", "[compose]") {
  const Model<double> m1 = small_cyclic(7, 5, 3, 0.7, true, 11);
  const Model<double> m2 = small_cyclic(6, 5, 2, 0.5, false, 12);
  const Model<double> c = parallel(m1, m2, {"a/", "b/"});
  REQUIRE(c.outputs() == 5);
  CHECK(c.blocks()[2].name == "b/r");
  std::mt19937_64 rng(2);
  const Vec u = random_vec(rng, 5);
  const Solved s1 = solve(m1, u), s2 = solve(m2, u), sc = solve(c, u);
  CHECK(rel(sc.y.head(3), s1.y) < 1e-12);
  CHECK(rel(sc.y.tail(2), s2.y) < 1e-12);
  CHECK_THROWS_AS(parallel(m1, small_cyclic(6, 4, 2, 0.5, false, 12)), InvalidArgument);
}

TEST_CASE("feedback: the fixed point satisfies the loop and matches a dense reference",
          "[compose]") {
  for (const bool d_in_forward : {true, false}) {
    INFO("D in the " << (d_in_forward ? "forward" : "loop") << " model");
    // forward: 4 -> 3, loop: 3 -> 4; small norms so that the loop contracts.
    const Model<double> f = small_cyclic(6, 4, 3, 0.4, d_in_forward, 21);
    const Model<double> g = small_cyclic(5, 3, 4, 0.3, !d_in_forward, 22);
    const Model<double> c = feedback(f, g);
    const index_t n1 = f.states(), n2 = g.states(), n = n1 + n2;
    std::mt19937_64 rng(3);
    const Vec u = random_vec(rng, 4);
    const Solved s = solve(c, u);
    const Vec x1 = s.x.head(n1), x2 = s.x.tail(n2);
    // The loop equations with the parts' own matrices.
    const Mat A1 = dense(&f.A(), n1, n1), B1 = dense(&f.B(), n1, 4),
              C1 = dense(&f.C(), 3, n1), D1 = dense(f.D(), 3, 4);
    const Mat A2 = dense(&g.A(), n2, n2), B2 = dense(&g.B(), n2, 3),
              C2 = dense(&g.C(), 4, n2), D2 = dense(g.D(), 4, 3);
    const Vec b1 = vec(f.bias_x()), c1 = vec(f.bias_y()), b2 = vec(g.bias_x()),
              c2 = vec(g.bias_y());
    // y_1 = C_1 x_1 + D_1 u_1 + c_1 with u_1 = u + y_2 and
    // y_2 = C_2 x_2 + D_2 y_1 + c_2: solve the 7 x 7 linear system.
    Mat L = Mat::Identity(7, 7);
    L.block(0, 3, 3, 4) = -D1;
    L.block(3, 0, 4, 3) = -D2;
    Vec rhs(7);
    rhs.head(3) = C1 * x1 + D1 * u + c1;
    rhs.tail(4) = C2 * x2 + c2;
    const Vec yy = L.lu().solve(rhs);
    const Vec y1 = yy.head(3), y2 = yy.tail(4);
    CHECK(rel(phi(f, A1 * x1 + B1 * (u + y2) + b1), x1) < 1e-12);
    CHECK(rel(phi(g, A2 * x2 + B2 * y1 + b2), x2) < 1e-12);
    CHECK(rel(s.y, y1) < 1e-12);
    // Dense Picard iteration of the seed's block matrices.
    Mat A = Mat::Zero(n, n), B = Mat::Zero(n, 4), C = Mat::Zero(3, n);
    A.block(0, 0, n1, n1) = A1 + B1 * D2 * C1;
    A.block(0, n1, n1, n2) = B1 * C2;
    A.block(n1, 0, n2, n1) = B2 * C1;
    A.block(n1, n1, n2, n2) = A2 + B2 * D1 * C2;
    B.topRows(n1) = B1;
    B.bottomRows(n2) = B2 * D1;
    C.leftCols(n1) = C1;
    C.rightCols(n2) = D1 * C2;
    Vec b(n);
    b.head(n1) = b1 + B1 * (c2 + D2 * c1);
    b.tail(n2) = b2 + B2 * (c1 + D1 * c2);
    const Vec cc = c1 + D1 * c2;
    CHECK((dense(&c.A(), n, n) - A).lpNorm<Eigen::Infinity>() < 1e-14);
    Vec x = Vec::Zero(n);
    for (int it = 0; it < 2000; ++it)
      x = phi(c, A * x + B * u + b);
    CHECK(rel(s.x, x) < 1e-12);
    CHECK(rel(s.y, C * x + D1 * u + cc) < 1e-12);
  }
  const Model<double> f = small_cyclic(6, 4, 3, 0.4, true, 21);
  CHECK_THROWS_AS(feedback(f, small_cyclic(5, 3, 4, 0.3, true, 22)), InvalidArgument);
  CHECK_THROWS_AS(feedback(f, small_cyclic(5, 3, 3, 0.3, false, 22)), InvalidArgument);
}

TEST_CASE("gradient of a composed model against finite differences", "[compose][train]") {
  const Model<double> m1 = net();
  const Model<double> m2 = small_cyclic(6, 3, 4, 0.5, true, 31);
  for (const bool fb : {false, true}) {
    INFO((fb ? "feedback" : "cascade"));
    const Model<double> c = fb ? feedback(small_cyclic(6, 4, 3, 0.4, true, 32),
                                          small_cyclic(5, 3, 4, 0.3, false, 33))
                               : cascade(m1, m2);
    TrainableModel<double> tm(c);
    const auto U = inputs<double>(c.inputs(), 5, 9);
    const std::vector<int> labels = {0, 2, 1, 2, 0};
    Targets<double> t;
    t.labels = labels;
    const auto o = tight();
    std::vector<double> grad(static_cast<std::size_t>(tm.size()));
    {
      GradientEngine<double> e(tm, o);
      const auto r = e.compute(U, t, grad);
      REQUIRE(r.ok());
    }
    std::mt19937_64 rng(5);
    double worst = 0;
    for (int k = 0; k < 40; ++k) {
      const index_t i =
          static_cast<index_t>(rng() % static_cast<std::uint64_t>(tm.size()));
      const double fd = central_difference(tm, i, 1e-6, U, t, o);
      worst = std::max(worst, std::abs(fd - grad[i]) / std::max(1e-3, std::abs(grad[i])));
    }
    INFO("worst relative difference " << worst);
    CHECK(worst < 1e-6);
  }
}
