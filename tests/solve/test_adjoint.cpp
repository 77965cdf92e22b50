// The adjoint v = J (A^T v + r): every method (reverse block and CSR sweeps,
// Picard, Anderson, per-column KLU) against a dense direct solve of
// (I - J A^T) v = J r per column; derivatives of every activation; status
// reporting of a solve that does not converge; determinism.
#include <catch2/catch.hpp>

#include <tacit/core/csr.hpp>
#include <tacit/solve/adjoint.hpp>
#include <tacit/solve/solve.hpp>

#include <tbb/global_control.h>

#include <cmath>
#include <vector>

#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

/// Dense solve of (I - diag(j) A^T) v = diag(j) r (Gaussian elimination with
/// partial pivoting, double).
std::vector<double> direct(const std::vector<double> &A, index_t n,
                           const std::vector<double> &j, const std::vector<double> &r) {
  std::vector<double> M(static_cast<std::size_t>(n * n)), b(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    for (index_t k = 0; k < n; ++k)
      M[i * n + k] = (i == k ? 1.0 : 0.0) - j[i] * A[k * n + i];
    b[i] = j[i] * r[i];
  }
  for (index_t c = 0; c < n; ++c) {
    index_t p = c;
    for (index_t i = c + 1; i < n; ++i)
      if (std::abs(M[i * n + c]) > std::abs(M[p * n + c]))
        p = i;
    for (index_t k = 0; k < n; ++k)
      std::swap(M[c * n + k], M[p * n + k]);
    std::swap(b[c], b[p]);
    for (index_t i = c + 1; i < n; ++i) {
      const double f = M[i * n + c] / M[c * n + c];
      for (index_t k = c; k < n; ++k)
        M[i * n + k] -= f * M[c * n + k];
      b[i] -= f * b[c];
    }
  }
  for (index_t c = n - 1; c >= 0; --c) {
    double s = b[c];
    for (index_t k = c + 1; k < n; ++k)
      s -= M[c * n + k] * b[k];
    b[c] = s / M[c * n + c];
  }
  return b;
}

/// Solves with `method` at the equilibrium of U and compares with the
/// dense solve per column.
void check_against_direct(const Model<double> &m, AdjointMethod method,
                          int anderson = 0) {
  const index_t n = m.states(), k = 9;
  const Batch<double> U = inputs<double>(m.inputs(), k, 3);
  SolveOptions so;
  so.picard.rel_tol = 1e-15;
  so.picard.abs_tol = 0;
  EquilibriumSolver<double> solver(m, so);
  Batch<double> X;
  REQUIRE(solver.solve(U, X).ok());
  const Batch<double> R = inputs<double>(n, k, 4);
  AdjointOptions o;
  o.method = method;
  o.picard.rel_tol = 1e-15;
  o.picard.abs_tol = 0;
  o.picard.anderson_depth = anderson;
  AdjointSolver<double> adj(m, o);
  Batch<double> V;
  const AdjointReport rep = adj.solve(X, U, R, V);
  INFO(rep.message);
  REQUIRE(rep.ok());
  Batch<double> J;
  activation_derivatives(m, X, U, J);
  const auto dense = m.A().to_csr().to_dense();
  std::vector<double> j(static_cast<std::size_t>(n)), r(j.size()), v(j.size());
  for (index_t c = 0; c < k; ++c) {
    J.get_column(c, j);
    R.get_column(c, r);
    V.get_column(c, v);
    const auto want = direct(dense, n, j, r);
    for (index_t i = 0; i < n; ++i)
      CHECK(v[i] == Approx(want[i]).epsilon(1e-11).margin(1e-12));
  }
}

} // namespace

TEST_CASE("adjoint: every method against a dense solve", "[solve][adjoint]") {
  const Model<double> cyclic = cyclic_model<double>();
  {
    AdjointSolver<double> a(cyclic);
    CHECK(a.method() == AdjointMethod::picard);
  }
  check_against_direct(cyclic, AdjointMethod::automatic);
  check_against_direct(cyclic, AdjointMethod::picard, 5);
  check_against_direct(cyclic, AdjointMethod::klu);
  CHECK_THROWS_AS(AdjointSolver<double>(cyclic, {AdjointMethod::sweep, {}}),
                  InvalidArgument);

  // Feed-forward CSR with self-loops: the reverse row sweep.
  std::vector<Triplet<double>> t = {{1, 0, 0.5}, {2, 1, -0.7}, {2, 0, 0.3}, {3, 2, 1.1},
                                    {1, 1, 0.4}, {3, 3, -0.2}, {0, 0, 0.1}};
  auto A = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(4, 4, t));
  std::vector<Triplet<double>> tb = {{0, 0, 1}, {1, 1, -1}, {2, 0, 0.5}, {3, 1, 2}};
  auto B =
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(4, 2, tb));
  auto C = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(4));
  const Model<double> ff(A, B, C, nullptr, {0.1, -0.1, 0.2, 0.0}, {},
                         {{"a", 0, 2, {ActivationKind::tanh}},
                          {"b", 2, 2, {ActivationKind::leaky_relu, 0.05}}});
  {
    AdjointSolver<double> a(ff);
    CHECK(a.method() == AdjointMethod::sweep);
  }
  check_against_direct(ff, AdjointMethod::automatic);
  check_against_direct(ff, AdjointMethod::picard);

  // A structured network: the reverse block sweep.
  const Model<double> net = structured_model<double>();
  {
    AdjointSolver<double> a(net);
    CHECK(a.method() == AdjointMethod::sweep);
  }
  check_against_direct(net, AdjointMethod::automatic);
}

TEST_CASE("adjoint: activation derivatives from the states", "[solve][adjoint]") {
  // One state per activation, A = 0, B = I: z = u + b.
  const index_t n = 6;
  auto A = std::make_shared<CsrMatrix<double>>(n, n);
  auto I = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(n));
  const std::vector<StateBlock> blocks = {{"r", 0, 1, {ActivationKind::relu}},
                                          {"l", 1, 1, {ActivationKind::leaky_relu, 0.1}},
                                          {"n", 2, 1, {ActivationKind::leaky_relu, -0.5}},
                                          {"t", 3, 1, {ActivationKind::tanh}},
                                          {"s", 4, 1, {ActivationKind::sigmoid}},
                                          {"i", 5, 1, {ActivationKind::identity}}};
  const Model<double> m(A, I, I, nullptr, {}, {}, blocks);
  for (const double z : {-0.7, 0.0, 0.4}) {
    Batch<double> U(n, 1), X(n, 1), J;
    for (index_t i = 0; i < n; ++i) {
      U(i, 0) = z;
      X(i, 0) = blocks[i].activation(z);
    }
    activation_derivatives(m, X, U, J);
    CHECK(J(0, 0) == (z > 0 ? 1.0 : 0.0));
    CHECK(J(1, 0) == (z > 0 ? 1.0 : 0.1));
    CHECK(J(2, 0) == (z > 0 ? 1.0 : -0.5)); // from z: x does not tell the sign
    CHECK(J(3, 0) == Approx(1 - std::tanh(z) * std::tanh(z)));
    const double s = 1 / (1 + std::exp(-z));
    CHECK(J(4, 0) == Approx(s * (1 - s)));
    CHECK(J(5, 0) == 1.0);
  }
}

TEST_CASE("adjoint: a solve that does not converge is reported, not thrown",
          "[solve][adjoint]") {
  // A cycle of gain 1.5 with the identity: the iteration grows without bound.
  const index_t n = 3;
  auto A = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(
      n, n, std::vector<Triplet<double>>{{0, 1, 1.5}, {1, 2, 1.5}, {2, 0, 1.5}}));
  auto I = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(n));
  const Model<double> m(A, I, I, nullptr, {}, {},
                        {{"i", 0, n, {ActivationKind::identity}}});
  Batch<double> U(n, 2), X(n, 2), R(n, 2), V;
  R(0, 0) = 1;
  R(1, 1) = -1;
  AdjointOptions o;
  o.picard.max_iterations = 50;
  AdjointSolver<double> a(m, o);
  const AdjointReport rep = a.solve(X, U, R, V);
  CHECK_FALSE(rep.ok());
  CHECK(
      (rep.status == SolveStatus::diverged || rep.status == SolveStatus::max_iterations));
  CHECK(rep.message.find("column") != std::string::npos);
}

TEST_CASE("adjoint: the same bits for 1 and N threads, any batch split",
          "[solve][adjoint]") {
  const Model<float> m = cyclic_model<float>();
  const Batch<float> U = inputs<float>(m.inputs(), 40, 5),
                     R = inputs<float>(m.states(), 40, 6);
  EquilibriumSolver<float> solver(m);
  Batch<float> X;
  REQUIRE(solver.solve(U, X).ok());
  auto run = [&](int threads) {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, threads);
    AdjointOptions o;
    o.picard.anderson_depth = 3;
    AdjointSolver<float> a(m, o);
    Batch<float> V;
    REQUIRE(a.solve(X, U, R, V).ok());
    return std::vector<float>(V.storage().begin(), V.storage().end());
  };
  CHECK(run(1) == run(4));
}

TEST_CASE("rebuild: after the parameters changed, a fresh solver's bits, another "
          "shape is refused",
          "[solve][adjoint]") {
  for (int which = 0; which < 2; ++which) {
    INFO((which == 0 ? "CSR with cycles" : "structured network"));
    const Model<float> m = which == 0 ? cyclic_model<float>() : structured_model<float>();
    TrainableModel<float> tm(m);
    const Batch<float> U = inputs<float>(m.inputs(), 19, 7),
                       R = inputs<float>(m.states(), 19, 8);
    EquilibriumSolver<float> forward(tm.model());
    AdjointSolver<float> adjoint(tm.model());
    Batch<float> X0, V0;
    REQUIRE(forward.solve(U, X0).ok());
    REQUIRE(adjoint.solve(X0, U, R, V0).ok());

    // A training step's change, in place.
    std::vector<float> flat(static_cast<std::size_t>(tm.size()));
    tm.read(flat);
    for (std::size_t i = 0; i < flat.size(); ++i)
      flat[i] = flat[i] * 0.9f + (i % 7 == 0 ? 0.001f : 0.0f);
    tm.write(flat);
    forward.rebuild(tm.model());
    adjoint.rebuild(tm.model());
    Batch<float> X1, V1;
    REQUIRE(forward.solve(U, X1).ok());
    REQUIRE(adjoint.solve(X1, U, R, V1).ok());

    EquilibriumSolver<float> fresh_forward(tm.model());
    AdjointSolver<float> fresh_adjoint(tm.model());
    Batch<float> X2, V2;
    REQUIRE(fresh_forward.solve(U, X2).ok());
    REQUIRE(fresh_adjoint.solve(X2, U, R, V2).ok());
    CHECK(forward.method() == fresh_forward.method());
    CHECK(adjoint.method() == fresh_adjoint.method());
    const auto bits = [](const Batch<float> &b) {
      return std::vector<float>(b.storage().begin(), b.storage().end());
    };
    CHECK(bits(X1) != bits(X0)); // the rebuilt solver sees the new parameters
    CHECK(bits(X1) == bits(X2));
    CHECK(bits(V1) == bits(V2));

    const Model<float> other = which == 0 ? structured_model<float>() : cyclic_model<float>();
    REQUIRE(other.states() != m.states());
    CHECK_THROWS_AS(forward.rebuild(other), InvalidArgument);
    CHECK_THROWS_AS(adjoint.rebuild(other), InvalidArgument);
    // A refused rebuild leaves the solver as it was.
    Batch<float> X3;
    REQUIRE(forward.solve(U, X3).ok());
    CHECK(bits(X3) == bits(X2));
  }
}

TEST_CASE("adjoint: solve_outputs equals solve with R = C^T G, bit for bit",
          "[solve][adjoint]") {
  // The block sweep from solve_outputs starts the blocks C never reads from
  // their first product instead of from R's zeros.
  for (int which = 0; which < 2; ++which) {
    const Model<double> m = which == 0 ? structured_model<double>() : cyclic_model<double>();
    const Batch<double> U = inputs<double>(m.inputs(), 13, 21),
                        G = inputs<double>(m.outputs(), 13, 22);
    EquilibriumSolver<double> forward(m);
    Batch<double> X;
    REQUIRE(forward.solve(U, X).ok());
    Batch<double> R(m.states(), 13, X.slab_width());
    m.C().apply(Mode::transpose, 1.0, G, 0.0, R);
    AdjointSolver<double> a(m);
    Batch<double> V1, V2;
    REQUIRE(a.solve_outputs(X, U, G, V1).ok());
    REQUIRE(a.solve(X, U, R, V2).ok());
    CHECK(std::vector<double>(V1.storage().begin(), V1.storage().end()) ==
          std::vector<double>(V2.storage().begin(), V2.storage().end()));
    double norm = 0;
    for (const double v : V1.storage())
      norm = std::max(norm, std::abs(v));
    CHECK(norm > 0);
  }
}
