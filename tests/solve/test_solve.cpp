// Equilibrium solvers against independent references: dense Eigen solves,
// a naive dense Picard written here, explicit layer-by-layer forward passes
// and hand-computed scalar solutions.
#include <catch2/catch.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/solve/partitioned.hpp>
#include <tacit/solve/solve.hpp>

#include <barrier>
#include <cstring>
#include <map>
#include <optional>
#include <semaphore>
#include <thread>
#include <tuple>

#include <Eigen/Dense>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>

#include "dense_model_util.hpp"

using namespace tacit;
using testutil::csr;
using testutil::dense_model;

namespace {

using Dense = std::vector<double>; // row-major

Activation act(ActivationKind k, double slope = 0.01) {
  return Activation{k, slope};
}

/// Random n x m matrix with the given density, entries in [-1, 1].
Dense random_dense(std::mt19937 &rng, index_t n, index_t m, double density) {
  std::uniform_real_distribution<double> u(-1, 1), d(0, 1);
  Dense a(static_cast<std::size_t>(n * m), 0.0);
  for (auto &v : a)
    if (d(rng) < density)
      v = u(rng);
  return a;
}

/// Scales a so that ||a||_inf = target.
void scale_inf(Dense &a, index_t n, index_t m, double target) {
  double best = 0;
  for (index_t i = 0; i < n; ++i) {
    double s = 0;
    for (index_t j = 0; j < m; ++j)
      s += std::abs(a[i * m + j]);
    best = std::max(best, s);
  }
  if (best > 0)
    for (auto &v : a)
      v *= target / best;
}

std::vector<Activation> expand(const std::vector<StateBlock> &blocks, index_t n) {
  std::vector<Activation> out(static_cast<std::size_t>(n));
  for (const auto &b : blocks)
    for (index_t i = b.offset; i < b.offset + b.size; ++i)
      out[i] = b.activation;
  return out;
}

std::vector<StateBlock> mixed_blocks(index_t n) {
  // Five activations over contiguous ranges.
  const ActivationKind kinds[] = {ActivationKind::relu, ActivationKind::tanh,
                                  ActivationKind::sigmoid, ActivationKind::leaky_relu,
                                  ActivationKind::identity};
  std::vector<StateBlock> b;
  for (int q = 0; q < 5; ++q) {
    const index_t lo = n * q / 5, hi = n * (q + 1) / 5;
    b.push_back({"b" + std::to_string(q), lo, hi - lo, act(kinds[q], 0.1)});
  }
  return b;
}

/// z = B u + b for one input column u.
std::vector<double> affine(const Dense &B, index_t n, index_t p,
                           const std::vector<double> &u, const Dense &bx) {
  std::vector<double> z(static_cast<std::size_t>(n), 0.0);
  for (index_t i = 0; i < n; ++i) {
    double s = bx.empty() ? 0.0 : bx[i];
    for (index_t j = 0; j < p; ++j)
      s += B[i * p + j] * u[j];
    z[i] = s;
  }
  return z;
}

/// Naive dense Picard x <- phi(A x + z) until the step is below 1e-16 |x|.
std::vector<double> naive_picard(const Dense &A, const std::vector<Activation> &acts,
                                 const std::vector<double> &z) {
  const auto n = static_cast<index_t>(z.size());
  std::vector<double> x(z.size(), 0.0), y(z.size());
  for (int it = 0; it < 20000; ++it) {
    double step = 0, norm = 0;
    for (index_t i = 0; i < n; ++i) {
      double s = z[i];
      for (index_t j = 0; j < n; ++j)
        s += A[i * n + j] * x[j];
      y[i] = acts[i](s);
      step = std::max(step, std::abs(y[i] - x[i]));
      norm = std::max(norm, std::abs(y[i]));
    }
    x = y;
    if (step <= 1e-16 * (1 + norm))
      break;
  }
  return x;
}

/// ||x - phi(A x + z)||_inf computed densely.
double dense_residual(const Dense &A, const std::vector<Activation> &acts,
                      const std::vector<double> &z, const std::vector<double> &x) {
  const auto n = static_cast<index_t>(z.size());
  double r = 0;
  for (index_t i = 0; i < n; ++i) {
    double s = z[i];
    for (index_t j = 0; j < n; ++j)
      s += A[i * n + j] * x[j];
    r = std::max(r, std::abs(x[i] - acts[i](s)));
  }
  return r;
}

double max_abs_diff(const std::vector<double> &a, const std::vector<double> &b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}
double max_abs(const std::vector<double> &a) {
  double d = 0;
  for (double v : a)
    d = std::max(d, std::abs(v));
  return d;
}

template <class T> std::vector<double> column(const Batch<T> &X, index_t j) {
  std::vector<T> c(static_cast<std::size_t>(X.rows()));
  X.get_column(j, c);
  return {c.begin(), c.end()};
}

template <class T>
Batch<T> random_inputs(std::mt19937 &rng, index_t p, index_t k,
                       index_t width = default_slab_width) {
  std::uniform_real_distribution<double> u(-1, 1);
  Batch<T> U(p, k, width);
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = static_cast<T>(u(rng));
  return U;
}

template <class T> bool bitwise_equal(const Batch<T> &a, const Batch<T> &b) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    return false;
  for (index_t j = 0; j < a.cols(); ++j)
    for (index_t i = 0; i < a.rows(); ++i)
      if (std::memcmp(&a(i, j), &b(i, j), sizeof(T)) != 0)
        return false;
  return true;
}

SolveOptions with(SolveMethod m, int anderson = 0) {
  SolveOptions o;
  o.method = m;
  o.picard.anderson_depth = anderson;
  o.picard.abs_tol = 1e-15;
  o.picard.rel_tol = 1e-15;
  return o;
}

/// A block lower triangular A hidden by a random permutation: diagonal
/// blocks of the given sizes (cyclic with ||.||_inf = 0.7, or a 1x1 with a
/// self-weight), couplings from earlier blocks. Returns the permuted dense A.
Dense block_triangular(std::mt19937 &rng, const std::vector<index_t> &sizes,
                       std::vector<index_t> &perm) {
  const index_t n = std::accumulate(sizes.begin(), sizes.end(), index_t(0));
  Dense A(static_cast<std::size_t>(n * n), 0.0);
  std::uniform_real_distribution<double> u(-1, 1), d(0, 1);
  index_t off = 0;
  for (index_t s : sizes) {
    for (index_t i = off; i < off + s; ++i) {
      for (index_t j = 0; j < off; ++j)
        if (d(rng) < 0.15)
          A[i * n + j] = 0.3 * u(rng);
      if (s == 1) {
        A[i * n + i] = 0.6 * u(rng); // self-weight < 1
      } else {
        for (index_t j = off; j < off + s; ++j)
          if (d(rng) < 0.6 || j == (i + 1 - off) % s + off)
            A[i * n + j] = u(rng);
      }
    }
    if (s > 1) { // scale the diagonal block to ||.||_inf = 0.7
      double best = 0;
      for (index_t i = off; i < off + s; ++i) {
        double r = 0;
        for (index_t j = off; j < off + s; ++j)
          r += std::abs(A[i * n + j]);
        best = std::max(best, r);
      }
      for (index_t i = off; i < off + s; ++i)
        for (index_t j = off; j < off + s; ++j)
          A[i * n + j] *= 0.7 / best;
    }
    off += s;
  }
  perm.resize(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  Dense P(A.size());
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      P[perm[i] * n + perm[j]] = A[i * n + j];
  return P;
}

} // namespace

// ---------------------------------------------------------------------------

TEST_CASE("Solver names round-trip and bad options are rejected", "[solve]") {
  for (auto m : {SolveMethod::automatic, SolveMethod::picard, SolveMethod::sweep})
    CHECK(parse_solve_method(to_string(m)) == m);
  CHECK_THROWS_AS(parse_solve_method("newton"), InvalidArgument);
  CHECK(to_string(SolveStatus::ill_posed) == "ill_posed");

  std::mt19937 rng(1);
  Dense A = random_dense(rng, 4, 4, 0.5), B = random_dense(rng, 4, 2, 1.0);
  scale_inf(A, 4, 4, 0.5);
  auto model = dense_model<double>(4, 2, A, B, {});
  for (auto bad : {-1.0, std::nan("")}) {
    SolveOptions o;
    o.picard.abs_tol = bad;
    CHECK_THROWS_AS(EquilibriumSolver<double>(model, o), InvalidArgument);
  }
  SolveOptions o;
  o.picard.anderson_depth = 1000;
  CHECK_THROWS_AS(EquilibriumSolver<double>(model, o), InvalidArgument);
  o = {};
  o.picard.max_iterations = -1;
  CHECK_THROWS_AS(EquilibriumSolver<double>(model, o), InvalidArgument);
  EquilibriumSolver<double> solver(model);
  Batch<double> U(3, 2), X;
  CHECK_THROWS_AS(solver.solve(U, X), InvalidArgument);
}

TEST_CASE("Picard with identity activation matches (I - A)^-1 z from Eigen", "[solve]") {
  std::mt19937 rng(2);
  const index_t n = 40, p = 6, k = 7;
  Dense A = random_dense(rng, n, n, 0.3), B = random_dense(rng, n, p, 0.5);
  scale_inf(A, n, n, 0.8);
  Dense bx(n);
  for (auto &v : bx)
    v = std::uniform_real_distribution<double>(-1, 1)(rng);
  std::vector<StateBlock> blocks = {{"lin", 0, n, act(ActivationKind::identity)}};
  auto model = dense_model<double>(n, p, A, B, blocks, bx);
  auto U = random_inputs<double>(rng, p, k);

  Eigen::MatrixXd M =
      Eigen::MatrixXd::Identity(n, n) -
      Eigen::Map<const Eigen::Matrix<double, -1, -1, Eigen::RowMajor>>(A.data(), n, n);
  Eigen::PartialPivLU<Eigen::MatrixXd> lu(M);
  for (int anderson : {0, 4}) {
    EquilibriumSolver<double> solver(model, with(SolveMethod::picard, anderson));
    Batch<double> X;
    const auto rep = solver.solve(U, X);
    REQUIRE(rep.ok());
    CHECK(rep.method == SolveMethod::picard);
    CHECK(rep.residual <= 1e-13);
    CHECK(rep.column_residuals.size() == static_cast<std::size_t>(k));
    for (index_t j = 0; j < k; ++j) {
      std::vector<double> u(p);
      for (index_t i = 0; i < p; ++i)
        u[i] = U(i, j);
      const auto z = affine(B, n, p, u, bx);
      const Eigen::VectorXd ref =
          lu.solve(Eigen::Map<const Eigen::VectorXd>(z.data(), n));
      const auto x = column(X, j);
      for (index_t i = 0; i < n; ++i)
        CHECK(std::abs(x[i] - ref[i]) <= 1e-12);
      CHECK(dense_residual(A, expand(blocks, n), z, x) <= 1e-13);
      CHECK(std::abs(rep.column_residuals[j] -
                     dense_residual(A, expand(blocks, n), z, x)) <= 1e-14);
    }
  }
}

TEST_CASE("Picard and Anderson solve implicit models with every activation", "[solve]") {
  std::mt19937 rng(3);
  const index_t n = 30, p = 4, k = 5;
  for (auto kind : {ActivationKind::relu, ActivationKind::tanh, ActivationKind::sigmoid,
                    ActivationKind::leaky_relu, ActivationKind::identity}) {
    for (bool mixed : {false, true}) {
      if (mixed && kind != ActivationKind::relu)
        continue;
      Dense A = random_dense(rng, n, n, 0.4), B = random_dense(rng, n, p, 0.6);
      scale_inf(A, n, n, 0.9);
      Dense bx(n, 0.1);
      auto blocks =
          mixed ? mixed_blocks(n) : std::vector<StateBlock>{{"s", 0, n, act(kind, 0.2)}};
      const auto acts = expand(blocks, n);
      auto model = dense_model<double>(n, p, A, B, blocks, bx);
      auto U = random_inputs<double>(rng, p, k);
      INFO("activation " << act(kind).name() << (mixed ? " (mixed)" : ""));
      for (int anderson : {0, 3}) {
        INFO("anderson depth " << anderson);
        EquilibriumSolver<double> solver(model, with(SolveMethod::picard, anderson));
        Batch<double> X;
        const auto rep = solver.solve(U, X);
        REQUIRE(rep.ok());
        for (index_t j = 0; j < k; ++j) {
          std::vector<double> u(p);
          for (index_t i = 0; i < p; ++i)
            u[i] = U(i, j);
          const auto z = affine(B, n, p, u, bx);
          const auto x = column(X, j);
          CHECK(dense_residual(A, acts, z, x) <= 1e-12);
          CHECK(max_abs_diff(x, naive_picard(A, acts, z)) <= 1e-13);
        }
      }
    }
  }
}

namespace {
/// |a| with every row scaled to sum `target`: lambda_PF = target.
void constant_row_sums(Dense &a, index_t n, double target) {
  for (index_t i = 0; i < n; ++i) {
    double s = 0;
    for (index_t j = 0; j < n; ++j)
      s += std::abs(a[i * n + j]);
    for (index_t j = 0; j < n; ++j)
      a[i * n + j] = s > 0 ? std::abs(a[i * n + j]) * target / s : 0;
  }
}
} // namespace

TEST_CASE("Anderson acceleration cuts the iterations of a slow contraction", "[solve]") {
  std::mt19937 rng(4);
  const index_t n = 60, p = 3;
  Dense A = random_dense(rng, n, n, 0.5), B = random_dense(rng, n, p, 1.0);
  constant_row_sums(A, n, 0.95); // contraction factor 0.95
  std::vector<StateBlock> blocks = {{"s", 0, n, act(ActivationKind::identity)}};
  auto model = dense_model<double>(n, p, A, B, blocks);
  auto U = random_inputs<double>(rng, p, 3);
  Batch<double> X0, X1;
  const auto plain =
      EquilibriumSolver<double>(model, with(SolveMethod::picard)).solve(U, X0);
  const auto fast =
      EquilibriumSolver<double>(model, with(SolveMethod::picard, 6)).solve(U, X1);
  REQUIRE(plain.ok());
  REQUIRE(fast.ok());
  std::string hist;
  for (double h : fast.step_history)
    hist += std::to_string(h) + " ";
  INFO(hist);
  CHECK(fast.iterations * 4 < plain.iterations);
  // Both against (I - A)^-1 z; the error bound of a stopped contraction is
  // step * rho / (1 - rho) = 19 steps here.
  Eigen::MatrixXd M =
      Eigen::MatrixXd::Identity(n, n) -
      Eigen::Map<const Eigen::Matrix<double, -1, -1, Eigen::RowMajor>>(A.data(), n, n);
  Eigen::PartialPivLU<Eigen::MatrixXd> lu(M);
  for (index_t j = 0; j < 3; ++j) {
    std::vector<double> u(p);
    for (index_t i = 0; i < p; ++i)
      u[i] = U(i, j);
    const auto z = affine(B, n, p, u, {});
    const Eigen::VectorXd ref = lu.solve(Eigen::Map<const Eigen::VectorXd>(z.data(), n));
    const std::vector<double> r(ref.data(), ref.data() + n);
    CHECK(max_abs_diff(column(X0, j), r) <= 1e-11 * max_abs(r));
    CHECK(max_abs_diff(column(X1, j), r) <= 1e-11 * max_abs(r));
  }
  CHECK(plain.step_history.size() == static_cast<std::size_t>(plain.iterations));
}

TEST_CASE("Sweep on block-triangular A matches Picard and the dense reference",
          "[solve]") {
  std::mt19937 rng(5);
  // Singletons with self-weights, small cyclic blocks and one block big
  // enough (200 states, dense) to be solved with parallel passes.
  for (bool big : {false, true}) {
    std::vector<index_t> sizes = {1, 3, 1, 1, 5, 2, 1, 4, 1, 1, 1, 6, 1};
    if (big)
      sizes.insert(sizes.begin() + 5, 200);
    std::vector<index_t> perm;
    Dense A = block_triangular(rng, sizes, perm);
    const index_t n = static_cast<index_t>(std::sqrt(static_cast<double>(A.size())));
    const index_t p = 5, k = 9;
    Dense B = random_dense(rng, n, p, 0.7), bx(n, 0.05);
    auto blocks = mixed_blocks(n);
    const auto acts = expand(blocks, n);
    auto model = dense_model<double>(n, p, A, B, blocks, bx);
    auto U = random_inputs<double>(rng, p, k);
    for (int anderson : {0, 3}) {
      INFO("big " << big << ", anderson " << anderson);
      EquilibriumSolver<double> sweep(model, with(SolveMethod::sweep, anderson));
      EquilibriumSolver<double> picard(model, with(SolveMethod::picard, anderson));
      EquilibriumSolver<double> automatic(model, with(SolveMethod::automatic, anderson));
      CHECK(automatic.method() == SolveMethod::sweep);
      CHECK(automatic.method_reason().find("block triangular") != std::string::npos);
      Batch<double> Xs, Xp, Xa;
      const auto rs = sweep.solve(U, Xs);
      const auto rp = picard.solve(U, Xp);
      const auto ra = automatic.solve(U, Xa);
      REQUIRE(rs.ok());
      REQUIRE(rp.ok());
      REQUIRE(ra.ok());
      CHECK(rs.method == SolveMethod::sweep);
      CHECK(rs.residual <= 1e-13);
      CHECK(rs.iterations > 0);
      CHECK(bitwise_equal(Xs, Xa));
      for (index_t j = 0; j < k; ++j) {
        std::vector<double> u(p);
        for (index_t i = 0; i < p; ++i)
          u[i] = U(i, j);
        const auto z = affine(B, n, p, u, bx);
        const auto xs = column(Xs, j);
        const double r = dense_residual(A, acts, z, xs);
        CHECK(r <= 1e-13);
        // The reported residual is evaluated at the returned x.
        CHECK(rs.column_residuals[j] <= 1e-13);
        CHECK(max_abs_diff(xs, column(Xp, j)) <= 1e-13);
        CHECK(max_abs_diff(xs, naive_picard(A, acts, z)) <= 1e-13);
      }
    }
  }
}

namespace {
/// A dense layered network u -> h1 -> ... -> hL with the given widths, its
/// implicit form (states in a random order), and an Eigen forward pass.
struct Layered {
  index_t p, n;
  std::vector<index_t> widths;
  std::vector<Eigen::MatrixXd> W; // W[0]: h1 x p, W[l]: h_{l+1} x h_l
  std::vector<Eigen::VectorXd> b;
  std::vector<index_t> perm; // layer state s -> model state perm[s]
  Dense A, B, bx;
  std::vector<StateBlock> blocks;
};

Layered layered(std::mt19937 &rng, index_t p, std::vector<index_t> widths,
                ActivationKind kind) {
  Layered L;
  L.p = p;
  L.widths = widths;
  L.n = std::accumulate(widths.begin(), widths.end(), index_t(0));
  std::uniform_real_distribution<double> u(-1, 1);
  index_t prev = p;
  for (index_t w : widths) {
    Eigen::MatrixXd M(w, prev);
    for (index_t i = 0; i < w; ++i)
      for (index_t j = 0; j < prev; ++j)
        M(i, j) = u(rng) * 1.5 / std::sqrt(double(prev));
    Eigen::VectorXd bb(w);
    for (index_t i = 0; i < w; ++i)
      bb[i] = 0.1 * u(rng);
    L.W.push_back(M);
    L.b.push_back(bb);
    prev = w;
  }
  const index_t n = L.n;
  L.perm.resize(n);
  std::iota(L.perm.begin(), L.perm.end(), 0);
  std::shuffle(L.perm.begin(), L.perm.end(), rng);
  L.A.assign(n * n, 0.0);
  L.B.assign(n * p, 0.0);
  L.bx.assign(n, 0.0);
  index_t off = 0, prev_off = 0;
  for (std::size_t l = 0; l < widths.size(); ++l) {
    for (index_t i = 0; i < widths[l]; ++i) {
      const index_t row = L.perm[off + i];
      L.bx[row] = L.b[l][i];
      if (l == 0)
        for (index_t j = 0; j < p; ++j)
          L.B[row * p + j] = L.W[0](i, j);
      else
        for (index_t j = 0; j < widths[l - 1]; ++j)
          L.A[row * n + L.perm[prev_off + j]] = L.W[l](i, j);
    }
    prev_off = off;
    off += widths[l];
  }
  L.blocks = {{"net", 0, n, act(kind, 0.1)}};
  return L;
}

/// Forward pass with Eigen; returns the states in model order.
std::vector<double> forward(const Layered &L, const std::vector<double> &u,
                            ActivationKind kind) {
  const Activation a = act(kind, 0.1);
  Eigen::VectorXd h = Eigen::Map<const Eigen::VectorXd>(u.data(), L.p);
  std::vector<double> x(L.n);
  index_t off = 0;
  for (std::size_t l = 0; l < L.widths.size(); ++l) {
    Eigen::VectorXd pre = L.W[l] * h + L.b[l];
    for (index_t i = 0; i < pre.size(); ++i)
      pre[i] = a(pre[i]);
    for (index_t i = 0; i < pre.size(); ++i)
      x[L.perm[off + i]] = pre[i];
    h = pre;
    off += L.widths[l];
  }
  return x;
}
} // namespace

TEST_CASE("Feed-forward network: sweep equals the layer-by-layer forward pass",
          "[solve]") {
  std::mt19937 rng(6);
  for (auto kind : {ActivationKind::relu, ActivationKind::tanh, ActivationKind::sigmoid,
                    ActivationKind::leaky_relu}) {
    INFO("activation " << act(kind).name());
    const auto L = layered(rng, 8, {24, 30, 30, 12, 6}, kind);
    auto model = dense_model<double>(L.n, L.p, L.A, L.B, L.blocks, L.bx);
    const index_t k = 11;
    auto U = random_inputs<double>(rng, L.p, k, 4);
    EquilibriumSolver<double> automatic(model);
    CHECK(automatic.method() == SolveMethod::sweep);
    CHECK(automatic.method_reason().find("nilpotent") != std::string::npos);
    EquilibriumSolver<double> picard(model, with(SolveMethod::picard));
    Batch<double> Xs, Xp;
    const auto rs = automatic.solve(U, Xs);
    const auto rp = picard.solve(U, Xp);
    REQUIRE(rs.ok());
    REQUIRE(rp.ok());
    CHECK(rs.iterations == 0);
    CHECK(rs.residual == 0);
    // Picard from zero is exact after depth + 1 iterations and sees a zero
    // step at depth + 2.
    CHECK(rp.iterations <= 7);
    for (index_t j = 0; j < k; ++j) {
      std::vector<double> u(L.p);
      for (index_t i = 0; i < L.p; ++i)
        u[i] = U(i, j);
      const auto ref = forward(L, u, kind);
      const double scale = std::max(1.0, max_abs(ref));
      CHECK(max_abs_diff(column(Xs, j), ref) <= 1e-13 * scale);
      CHECK(max_abs_diff(column(Xp, j), ref) <= 1e-13 * scale);
    }
  }
}

TEST_CASE("Sweep solves 1x1 blocks in closed form", "[solve]") {
  // Diagonal A: each state is its own block x_i = phi(a_i x_i + z_i).
  struct Case {
    Activation a;
    double aii, z, expected;
  };
  const double c_tanh = std::atanh(0.5) - 0.8 * 0.5;      // x = 0.5 solves it
  const double c_tanh2 = std::atanh(0.99) - 2 * 0.99;     // a = 2: unique here
  const double c_sig = std::log(0.7 / 0.3) - 1.0 * 0.7;   // x = 0.7
  const double c_sig2 = std::log(0.99 / 0.01) - 6 * 0.99; // a = 6: unique here
  const std::vector<Case> cases = {
      {act(ActivationKind::relu), 0.5, 2.0, 4.0},
      {act(ActivationKind::relu), 0.5, -1.0, 0.0},
      {act(ActivationKind::relu), -1.0, 3.0, 1.5},
      {act(ActivationKind::leaky_relu, 0.1), 0.5, 3.0, 6.0},
      {act(ActivationKind::leaky_relu, 0.1), 0.5, -2.0, -0.2 / 0.95},
      {act(ActivationKind::identity), 3.0, 2.0, -1.0},
      {act(ActivationKind::identity), -0.5, 3.0, 2.0},
      {act(ActivationKind::tanh), 0.8, c_tanh, 0.5},
      {act(ActivationKind::tanh), 2.0, c_tanh2, 0.99},
      {act(ActivationKind::sigmoid), 1.0, c_sig, 0.7},
      {act(ActivationKind::sigmoid), 6.0, c_sig2, 0.99},
  };
  const index_t n = static_cast<index_t>(cases.size());
  Dense A(n * n, 0.0), B(n, 0.0);
  std::vector<StateBlock> blocks;
  for (index_t i = 0; i < n; ++i) {
    A[i * n + i] = cases[i].aii;
    B[i] = cases[i].z; // z = B u with u = 1
    blocks.push_back({"s" + std::to_string(i), i, 1, cases[i].a});
  }
  auto model = dense_model<double>(n, 1, A, B, blocks);
  EquilibriumSolver<double> solver(model);
  CHECK(solver.method() == SolveMethod::sweep);
  Batch<double> U(1, 1), X;
  U(0, 0) = 1;
  const auto rep = solver.solve(U, X);
  INFO(rep.message);
  REQUIRE(rep.ok());
  CHECK(rep.residual <= 1e-15);
  for (index_t i = 0; i < n; ++i) {
    INFO("case " << i << " (" << cases[i].a.name() << ")");
    CHECK(std::abs(X(i, 0) - cases[i].expected) <= 1e-14);
  }

  SECTION("float") {
    auto mf = convert_model<float>(model);
    Batch<float> Uf(1, 1), Xf;
    Uf(0, 0) = 1;
    const auto rf = EquilibriumSolver<float>(mf).solve(Uf, Xf);
    REQUIRE(rf.ok());
    for (index_t i = 0; i < n; ++i)
      CHECK(std::abs(Xf(i, 0) - cases[i].expected) <= 2e-6);
  }
}

TEST_CASE("Ill-posed 1x1 blocks are reported, not solved", "[solve]") {
  for (double aii : {1.5, 1.0}) {
    // x0 = relu(u), x1 = relu(aii x1 + x0), x2 = relu(x1): x1 is ill-posed.
    Dense A = {0, 0, 0, 1, aii, 0, 0, 1, 0}, B = {1, 0, 0};
    auto model =
        dense_model<double>(3, 1, A, B, {{"h", 0, 3, act(ActivationKind::relu)}});
    EquilibriumSolver<double> solver(model);
    CHECK(solver.method() == SolveMethod::sweep);
    Batch<double> U(1, 2), X;
    U(0, 0) = 1;
    U(0, 1) = -1;
    const auto rep = solver.solve(U, X);
    CHECK(rep.status == SolveStatus::ill_posed);
    CHECK(rep.column_status[0] == SolveStatus::ill_posed);
    INFO(rep.message);
    CHECK(rep.message.find("state 2") != std::string::npos);
    CHECK(rep.message.find(aii == 1.5 ? "1.5" : "a_ii = 1") != std::string::npos);
    CHECK(std::isnan(X(1, 0)));
    CHECK(X(0, 0) == 1.0);
    CHECK(std::isinf(rep.residual));
  }
  // tanh with a = 2 and c = 0 has three solutions (0 and about +-0.957).
  Dense A = {2.0}, B = {0.0};
  auto model = dense_model<double>(1, 1, A, B, {{"t", 0, 1, act(ActivationKind::tanh)}});
  Batch<double> U(1, 1), X;
  const auto rep = EquilibriumSolver<double>(model).solve(U, X);
  CHECK(rep.status == SolveStatus::ill_posed);
  INFO(rep.message);
  CHECK(rep.message.find("several solutions") != std::string::npos);
}

TEST_CASE("Non-convergence and non-finite values are reported", "[solve]") {
  std::mt19937 rng(7);
  const index_t n = 20, p = 2;
  Dense A = random_dense(rng, n, n, 0.5), B = random_dense(rng, n, p, 1.0);
  constant_row_sums(A, n, 1.5); // lambda_PF(A) = 1.5: Picard grows like 1.5^t
  std::vector<StateBlock> blocks = {{"lin", 0, n, act(ActivationKind::identity)}};
  auto model = dense_model<double>(n, p, A, B, blocks);
  auto U = random_inputs<double>(rng, p, 3);
  for (int anderson : {0, 2}) {
    auto opt = with(SolveMethod::picard, anderson);
    opt.picard.max_iterations = 200;
    Batch<double> X;
    const auto rep = EquilibriumSolver<double>(model, opt).solve(U, X);
    INFO(rep.message);
    if (anderson == 0) {
      CHECK((rep.status == SolveStatus::diverged ||
             rep.status == SolveStatus::max_iterations));
      CHECK(rep.residual > 1e-6);
    } else {
      // Anderson may find the (unstable) linear fixed point; either way the
      // report must be truthful.
      const auto acts = expand(blocks, n);
      for (index_t j = 0; j < 3; ++j) {
        std::vector<double> u(p);
        for (index_t i = 0; i < p; ++i)
          u[i] = U(i, j);
        const double r = dense_residual(A, acts, affine(B, n, p, u, {}), column(X, j));
        CHECK(std::abs(r - rep.column_residuals[j]) <= 1e-9 * (1 + r));
      }
    }
  }
  SECTION("diverged with the default budget") {
    Batch<double> X;
    const auto rep =
        EquilibriumSolver<double>(model, with(SolveMethod::picard)).solve(U, X);
    INFO(rep.message);
    CHECK(rep.status == SolveStatus::diverged);
    CHECK(rep.residual > 1);
    CHECK(rep.message.find("diverged") != std::string::npos);
  }
  SECTION("the sweep reports the failing cyclic block") {
    auto opt = with(SolveMethod::sweep);
    opt.picard.max_iterations = 50;
    Batch<double> X;
    const auto rep = EquilibriumSolver<double>(model, opt).solve(U, X);
    CHECK(rep.status != SolveStatus::converged);
    CHECK(rep.message.find("cyclic block") != std::string::npos);
  }
  SECTION("NaN inputs give non_finite") {
    Dense As = A;
    scale_inf(As, n, n, 0.5);
    auto ok_model = dense_model<double>(n, p, As, B, blocks);
    auto Un = U;
    Un(0, 1) = std::numeric_limits<double>::quiet_NaN();
    for (auto m : {SolveMethod::picard, SolveMethod::sweep}) {
      Batch<double> X;
      const auto rep = EquilibriumSolver<double>(ok_model, with(m)).solve(Un, X);
      CHECK(rep.status == SolveStatus::non_finite);
      CHECK(rep.column_status[0] == SolveStatus::converged);
      CHECK(rep.column_status[1] == SolveStatus::non_finite);
      CHECK(std::isinf(rep.column_residuals[1]));
      CHECK(rep.column_residuals[0] <= 1e-13);
    }
  }
  SECTION("overflow gives non_finite") {
    Dense Ab = A;
    for (auto &v : Ab)
      v *= 1e200;
    auto huge = dense_model<double>(n, p, Ab, B, blocks);
    auto opt = with(SolveMethod::picard);
    opt.picard.divergence_factor = 1e300;
    Batch<double> X;
    const auto rep = EquilibriumSolver<double>(huge, opt).solve(U, X);
    CHECK(rep.status == SolveStatus::non_finite);
  }
}

TEST_CASE("Solves are deterministic across thread counts", "[solve]") {
  std::mt19937 rng(8);
  // Big enough for the passes to be split: n = 3000, ~12 nonzeros per row.
  const index_t n = 3000, p = 16, k = 40;
  std::vector<Triplet<double>> t;
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<index_t> col(0, n - 1);
  for (index_t i = 0; i < n; ++i)
    for (int e = 0; e < 12; ++e)
      t.push_back({i, col(rng), u(rng) * 0.9 / 12});
  auto A = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(n, n, t));
  std::vector<Triplet<double>> tb;
  for (index_t i = 0; i < n; ++i)
    tb.push_back({i, i % p, u(rng)});
  auto B =
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(n, p, tb));
  auto C = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(n));
  Model<double> implicit(A, B, C, nullptr, {}, {}, mixed_blocks(n));
  // A wide feed-forward net: levels big enough for parallel stages.
  const auto L = layered(rng, 8, {400, 400, 300}, ActivationKind::relu);
  auto ff = dense_model<double>(L.n, L.p, L.A, L.B, L.blocks, L.bx);

  auto run = [&](const Model<double> &m, SolveOptions o, int threads) {
    tbb::task_arena arena(threads);
    Batch<double> X;
    arena.execute([&] {
      std::mt19937 input_rng(9);
      auto U = random_inputs<double>(input_rng, m.inputs(), k);
      EquilibriumSolver<double>(m, o).solve(U, X);
    });
    return X;
  };
  for (auto [name, m, o] :
       {std::tuple{"picard", &implicit, with(SolveMethod::picard)},
        std::tuple{"anderson", &implicit, with(SolveMethod::picard, 4)},
        std::tuple{"sweep (one big block)", &implicit, with(SolveMethod::sweep)},
        std::tuple{"sweep feed-forward", &ff, with(SolveMethod::sweep)}}) {
    INFO(name);
    const auto X1 = run(*m, o, 1), X2 = run(*m, o, 2);
    CHECK(bitwise_equal(X1, X2));
  }
}

TEST_CASE("A column's result does not depend on the batch it is in", "[solve]") {
  std::mt19937 rng(10);
  std::vector<index_t> perm;
  Dense A = block_triangular(rng, {1, 4, 1, 1, 3, 1, 2, 1}, perm);
  const index_t n = static_cast<index_t>(std::sqrt(static_cast<double>(A.size())));
  const index_t p = 3;
  Dense B = random_dense(rng, n, p, 0.8), bx(n, 0.1);
  auto model = dense_model<double>(n, p, A, B, mixed_blocks(n), bx);
  auto Uall = random_inputs<double>(rng, p, 70);
  for (auto [m, anderson] : {std::pair{SolveMethod::picard, 0},
                             {SolveMethod::picard, 3},
                             {SolveMethod::sweep, 0}}) {
    EquilibriumSolver<double> solver(model, with(m, anderson));
    // Each column alone.
    std::vector<Batch<double>> single(70);
    for (index_t j = 0; j < 70; ++j) {
      Batch<double> U1(p, 1);
      for (index_t i = 0; i < p; ++i)
        U1(i, 0) = Uall(i, j);
      REQUIRE(solver.solve(U1, single[j]).ok());
    }
    for (index_t width : {1, 5, 32, 70}) {
      for (index_t slab : {index_t(32), index_t(8), index_t(1)}) {
        INFO("method " << to_string(m) << ", anderson " << anderson << ", width " << width
                       << ", slab " << slab);
        Batch<double> U(p, width, slab), X;
        for (index_t j = 0; j < width; ++j)
          for (index_t i = 0; i < p; ++i)
            U(i, j) = Uall(i, j);
        REQUIRE(solver.solve(U, X).ok());
        bool same = true;
        for (index_t j = 0; j < width; ++j)
          for (index_t i = 0; i < n; ++i)
            same = same && std::memcmp(&X(i, j), &single[j](i, 0), sizeof(double)) == 0;
        CHECK(same);
        // Padding stays zero.
        const auto last = X.slab(X.slab_count() - 1);
        for (index_t i = 0; i < n; ++i)
          for (index_t c = last.cols; c < X.slab_width(); ++c)
            CHECK(X.storage()[(X.slab_count() - 1) * n * X.slab_width() +
                              i * X.slab_width() + c] == 0.0);
      }
    }
  }
}

TEST_CASE("Float solves agree with double", "[solve]") {
  std::mt19937 rng(11);
  std::vector<index_t> perm;
  Dense A = block_triangular(rng, {1, 5, 1, 3, 1, 1, 4}, perm);
  const index_t n = static_cast<index_t>(std::sqrt(static_cast<double>(A.size())));
  const index_t p = 4, k = 6;
  Dense B = random_dense(rng, n, p, 0.8);
  auto md = dense_model<double>(n, p, A, B, mixed_blocks(n));
  auto mf = dense_model<float>(n, p, A, B, mixed_blocks(n));
  auto Ud = random_inputs<double>(rng, p, k);
  Batch<float> Uf(p, k);
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < p; ++i)
      Uf(i, j) = static_cast<float>(Ud(i, j));
  for (auto m : {SolveMethod::picard, SolveMethod::sweep}) {
    for (int anderson : {0, 3}) {
      SolveOptions o;
      o.method = m;
      o.picard.anderson_depth = anderson;
      o.picard.abs_tol = 1e-6;
      o.picard.rel_tol = 1e-6;
      Batch<double> Xd;
      Batch<float> Xf;
      REQUIRE(EquilibriumSolver<double>(md, with(m, anderson)).solve(Ud, Xd).ok());
      const auto rf = EquilibriumSolver<float>(mf, o).solve(Uf, Xf);
      REQUIRE(rf.ok());
      CHECK(rf.residual <= 1e-5);
      for (index_t j = 0; j < k; ++j)
        for (index_t i = 0; i < n; ++i)
          CHECK(std::abs(Xf(i, j) - Xd(i, j)) <= 1e-5);
    }
  }
  // Default options ask for rel_tol = 1e-10, below float resolution: the
  // solver uses 16 eps instead and converges.
  for (int anderson : {0, 3}) {
    SolveOptions o;
    o.method = SolveMethod::picard;
    o.picard.anderson_depth = anderson;
    Batch<float> Xf;
    const auto rf = EquilibriumSolver<float>(mf, o).solve(Uf, Xf);
    CHECK(rf.ok());
    CHECK(rf.iterations < 200);
  }
}

TEST_CASE("predict, warm start, progress and the free functions", "[solve]") {
  std::mt19937 rng(12);
  const index_t n = 25, p = 3, q = 2, k = 4;
  Dense A = random_dense(rng, n, n, 0.3), B = random_dense(rng, n, p, 0.8),
        C = random_dense(rng, q, n, 0.5), D = random_dense(rng, q, p, 1.0);
  scale_inf(A, n, n, 0.7);
  std::vector<double> by = {0.5, -0.25};
  Model<double> model(csr<double>(n, n, A), csr<double>(n, p, B), csr<double>(q, n, C),
                      csr<double>(q, p, D), {}, by, mixed_blocks(n));
  auto U = random_inputs<double>(rng, p, k);
  int calls = 0, last = 0;
  auto opt = with(SolveMethod::picard);
  opt.progress = [&](int it, double step) {
    ++calls;
    CHECK(it == last + 1);
    CHECK(step >= 0);
    last = it;
  };
  EquilibriumSolver<double> solver(model, opt);
  Batch<double> X, Y;
  const auto rep = solver.predict(U, X, Y);
  REQUIRE(rep.ok());
  CHECK(calls == rep.iterations);
  CHECK(rep.step_history.size() == static_cast<std::size_t>(rep.iterations));
  REQUIRE(Y.rows() == q);
  for (index_t j = 0; j < k; ++j)
    for (index_t r = 0; r < q; ++r) {
      double y = by[r];
      for (index_t i = 0; i < n; ++i)
        y += C[r * n + i] * X(i, j);
      for (index_t i = 0; i < p; ++i)
        y += D[r * p + i] * U(i, j);
      CHECK(std::abs(Y(r, j) - y) <= 1e-14);
    }

  // Warm start from the solution: the first step is already below tolerance.
  auto warm_opt = with(SolveMethod::picard);
  warm_opt.picard.warm_start = true;
  warm_opt.picard.abs_tol = 1e-13;
  EquilibriumSolver<double> warm(model, warm_opt);
  Batch<double> Xw = X;
  const auto rw = warm.solve(U, Xw);
  REQUIRE(rw.ok());
  CHECK(rw.iterations == 1);

  // Free functions on z = B U.
  const auto acts = model.activations();
  Batch<double> Z(n, k);
  model.B().apply(Mode::normal, 1.0, U, 0.0, Z);
  Batch<double> Xf;
  const auto rf =
      picard_solve<double>(model.A(), acts, Z, Xf, with(SolveMethod::picard).picard);
  REQUIRE(rf.ok());
  for (index_t j = 0; j < k; ++j)
    CHECK(max_abs_diff(column(Xf, j), column(X, j)) <= 1e-14);
  const auto res = equilibrium_residuals<double>(model.A(), acts, Z, Xf);
  REQUIRE(res.size() == static_cast<std::size_t>(k));
  Batch<double> Xbad = Xf;
  Xbad(3, 1) += 0.25;
  const auto res_bad = equilibrium_residuals<double>(model.A(), acts, Z, Xbad);
  for (index_t j = 0; j < k; ++j) {
    std::vector<double> u(p);
    for (index_t i = 0; i < p; ++i)
      u[i] = U(i, j);
    const auto z = affine(B, n, p, u, {});
    CHECK(std::abs(res[j] - dense_residual(A, acts, z, column(Xf, j))) <= 1e-15);
    CHECK(std::abs(res_bad[j] - dense_residual(A, acts, z, column(Xbad, j))) <= 1e-15);
  }
  CHECK(res_bad[1] >= 0.25 - 1e-12);
  CHECK_THROWS_AS(
      equilibrium_residuals<double>(model.A(), acts, Z, Batch<double>(n, k + 1)),
      InvalidArgument);
}

namespace {
/// A LinearOperator that is not CSR (dense storage): exercises the operator
/// path of Picard and the to_csr() path of the sweep.
template <class T> class DenseOperator final : public LinearOperator<T> {
public:
  DenseOperator(index_t r, index_t c, std::vector<T> a)
      : LinearOperator<T>(r, c), a_(std::move(a)) {}

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution) const override {
    REQUIRE(mode == Mode::normal);
    for (index_t i = 0; i < this->rows(); ++i)
      for (index_t c = 0; c < x.cols; ++c) {
        T s = 0;
        for (index_t j = 0; j < this->cols(); ++j)
          s += a_[i * this->cols() + j] * x(j, c);
        y(i, c) = beta == T(0) ? alpha * s : alpha * s + beta * y(i, c);
      }
  }
  void row_abs_sums_impl(std::span<T> out) const override {
    for (index_t i = 0; i < this->rows(); ++i) {
      out[i] = 0;
      for (index_t j = 0; j < this->cols(); ++j)
        out[i] += std::abs(a_[i * this->cols() + j]);
    }
  }
  void col_abs_sums_impl(std::span<T> out) const override {
    for (index_t j = 0; j < this->cols(); ++j) {
      out[j] = 0;
      for (index_t i = 0; i < this->rows(); ++i)
        out[j] += std::abs(a_[i * this->cols() + j]);
    }
  }
  std::int64_t nnz_impl() const override { return this->rows() * this->cols(); }
  std::size_t bytes_impl() const override { return a_.size() * sizeof(T); }
  std::string kind_impl() const override { return "dense"; }
  CsrMatrix<T> to_csr_impl() const override {
    return CsrMatrix<T>::from_dense(this->rows(), this->cols(), a_);
  }
  std::optional<Entry> find_non_finite_impl() const override { return std::nullopt; }
  std::vector<T> a_;
};
} // namespace

TEST_CASE("Non-CSR operators: Picard through apply(), sweep through to_csr()",
          "[solve]") {
  std::mt19937 rng(13);
  std::vector<index_t> perm;
  Dense A = block_triangular(rng, {2, 1, 3, 1, 1}, perm);
  const index_t n = static_cast<index_t>(std::sqrt(static_cast<double>(A.size())));
  const index_t p = 2;
  Dense B = random_dense(rng, n, p, 1.0);
  auto blocks = mixed_blocks(n);
  auto Aop = std::make_shared<DenseOperator<double>>(n, n, A);
  Dense I(n * n, 0.0);
  for (index_t i = 0; i < n; ++i)
    I[i * n + i] = 1;
  Model<double> model(Aop, csr<double>(n, p, B), csr<double>(n, n, I), nullptr, {}, {},
                      blocks);
  auto U = random_inputs<double>(rng, p, 3);
  for (auto m : {SolveMethod::picard, SolveMethod::sweep}) {
    for (int anderson : {0, 2}) {
      Batch<double> X;
      const auto rep = EquilibriumSolver<double>(model, with(m, anderson)).solve(U, X);
      REQUIRE(rep.ok());
      for (index_t j = 0; j < 3; ++j) {
        std::vector<double> u(p);
        for (index_t i = 0; i < p; ++i)
          u[i] = U(i, j);
        const auto z = affine(B, n, p, u, {});
        CHECK(max_abs_diff(column(X, j), naive_picard(A, expand(blocks, n), z)) <= 1e-13);
        CHECK(rep.column_residuals[j] <= 1e-13);
      }
    }
  }
}

TEST_CASE("Automatic method picks Picard for one strongly connected A", "[solve]") {
  std::mt19937 rng(14);
  const index_t n = 20;
  Dense A = random_dense(rng, n, n, 0.5), B = random_dense(rng, n, 2, 1.0);
  for (index_t i = 0; i < n; ++i)
    A[i * n + (i + 1) % n] = 0.5; // one cycle
  scale_inf(A, n, n, 0.6);
  auto model = dense_model<double>(n, 2, A, B, {});
  EquilibriumSolver<double> solver(model);
  CHECK(solver.method() == SolveMethod::picard);
  CHECK(solver.method_reason().find("strongly connected") != std::string::npos);
  Batch<double> U(2, 1), X;
  U(0, 0) = 1;
  const auto rep = solver.solve(U, X);
  CHECK(rep.ok());
  CHECK(rep.message.find("auto chose picard") == 0);
}

TEST_CASE("Edge cases: empty batch, stored zeros, 64-bit column indices", "[solve]") {
  std::mt19937 rng(15);
  SECTION("k = 0") {
    Dense A = {0, 0, 0.5, 0}, B = {1, 1};
    auto model = dense_model<double>(2, 1, A, B, {});
    for (auto m : {SolveMethod::picard, SolveMethod::sweep}) {
      Batch<double> U(1, 0), X, Y;
      const auto rep = EquilibriumSolver<double>(model, with(m)).predict(U, X, Y);
      CHECK(rep.ok());
      CHECK(X.rows() == 2);
      CHECK(X.cols() == 0);
      CHECK(rep.column_residuals.empty());
    }
  }
  SECTION("a stored zero pointing forward is not an edge") {
    // x0 = relu(u), x1 = relu(2 x0 - 1) with a stored a_01 = 0: still
    // feed-forward, and the sweep must not read x1 before computing it.
    std::vector<Triplet<double>> t = {{1, 0, 2.0}, {0, 1, 0.0}};
    auto A =
        std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(2, 2, t));
    REQUIRE(A->nnz() == 2);
    auto B = csr<double>(2, 1, {1, 0});
    auto C = csr<double>(2, 2, {1, 0, 0, 1});
    Model<double> model(A, B, C, nullptr, {0.0, -1.0});
    EquilibriumSolver<double> solver(model);
    CHECK(solver.method() == SolveMethod::sweep);
    Batch<double> U(1, 2), X;
    U(0, 0) = 3;
    U(0, 1) = -1;
    // Twice: the second solve reuses buffers holding the first result.
    for (int rep = 0; rep < 2; ++rep) {
      REQUIRE(solver.solve(U, X).ok());
      CHECK(X(0, 0) == 3.0);
      CHECK(X(1, 0) == 5.0);
      CHECK(X(0, 1) == 0.0);
      CHECK(X(1, 1) == 0.0);
    }
  }
  SECTION("64-bit column indices give the same bits") {
    const index_t n = 300, p = 4;
    std::vector<Triplet<double>> t;
    std::uniform_real_distribution<double> u(-1, 1);
    std::uniform_int_distribution<index_t> col(0, n - 1);
    for (index_t i = 0; i < n; ++i)
      for (int e = 0; e < 9; ++e)
        t.push_back({i, col(rng), u(rng) * 0.09});
    auto narrow = std::make_shared<CsrMatrix<double>>(
        CsrMatrix<double>::from_triplets(n, n, t, IndexWidth::narrow32));
    auto wide = std::make_shared<CsrMatrix<double>>(
        CsrMatrix<double>::from_triplets(n, n, t, IndexWidth::wide64));
    REQUIRE(wide->wide_indices());
    Dense Bd = random_dense(rng, n, p, 0.5);
    auto B = csr<double>(n, p, Bd);
    auto C = csr<double>(1, n, Dense(n, 1.0));
    Model<double> m32(narrow, B, C, nullptr, {}, {}, mixed_blocks(n));
    Model<double> m64(wide, B, C, nullptr, {}, {}, mixed_blocks(n));
    auto mf32 = convert_model<float>(m32);
    Model<float> mf64(std::make_shared<CsrMatrix<float>>(wide->cast<float>()),
                      mf32.B_ptr(), mf32.C_ptr(), nullptr, {}, {}, mixed_blocks(n));
    for (index_t k : {1, 7}) {
      auto U = random_inputs<double>(rng, p, k);
      Batch<float> Uf(p, k);
      for (index_t j = 0; j < k; ++j)
        for (index_t i = 0; i < p; ++i)
          Uf(i, j) = static_cast<float>(U(i, j));
      for (int anderson : {0, 2}) {
        Batch<double> X32, X64;
        REQUIRE(EquilibriumSolver<double>(m32, with(SolveMethod::picard, anderson))
                    .solve(U, X32)
                    .ok());
        REQUIRE(EquilibriumSolver<double>(m64, with(SolveMethod::picard, anderson))
                    .solve(U, X64)
                    .ok());
        CHECK(bitwise_equal(X32, X64));
        Batch<float> Y32, Y64;
        SolveOptions o;
        o.method = SolveMethod::picard;
        o.picard.anderson_depth = anderson;
        REQUIRE(EquilibriumSolver<float>(mf32, o).solve(Uf, Y32).ok());
        REQUIRE(EquilibriumSolver<float>(mf64, o).solve(Uf, Y64).ok());
        CHECK(bitwise_equal(Y32, Y64));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// picard_solve_part: Picard on a part of the states (the building block of
// tacit::mpi), here with the parts run by threads that exchange their states
// through shared memory, against the solver on the whole model.

namespace {

/// One part's local system, built independently of tacit::mpi: own rows of
/// A with their columns mapped increasingly onto [ghosts below, own, ghosts
/// above].
struct PartSystem {
  index_t begin = 0, end = 0; // global own range
  index_t below = 0;          // ghosts below the own range
  std::vector<index_t> ghosts;
  CsrMatrix<double> A, B;
  std::vector<Activation> act;
  std::vector<double> bias;
};

PartSystem part_system(const Model<double> &model, index_t begin, index_t end) {
  PartSystem s;
  s.begin = begin;
  s.end = end;
  const auto A = csr_view(model.A());
  const auto rp = A->row_ptr();
  std::vector<index_t> cols_used;
  for (auto e = rp[begin]; e < rp[end]; ++e) {
    const index_t c = A->column(e);
    if (c < begin || c >= end)
      cols_used.push_back(c);
  }
  std::sort(cols_used.begin(), cols_used.end());
  cols_used.erase(std::unique(cols_used.begin(), cols_used.end()), cols_used.end());
  s.ghosts = cols_used;
  s.below = std::count_if(s.ghosts.begin(), s.ghosts.end(),
                          [&](index_t c) { return c < begin; });
  const index_t own = end - begin, m = own + static_cast<index_t>(s.ghosts.size());
  std::map<index_t, index_t> local;
  for (index_t k = 0; k < static_cast<index_t>(s.ghosts.size()); ++k)
    local[s.ghosts[k]] = k < s.below ? k : k + own;
  for (index_t i = begin; i < end; ++i)
    local[i] = s.below + (i - begin);
  std::vector<Triplet<double>> t;
  for (index_t i = begin; i < end; ++i)
    for (auto e = rp[i]; e < rp[i + 1]; ++e)
      t.push_back({s.below + (i - begin), local.at(A->column(e)), A->values()[e]});
  s.A = CsrMatrix<double>::from_triplets(m, m, t);
  std::vector<index_t> rows, all_inputs;
  for (index_t i = begin; i < end; ++i)
    rows.push_back(i);
  for (index_t j = 0; j < model.inputs(); ++j)
    all_inputs.push_back(j);
  s.B = csr_view(model.B())->submatrix(rows, all_inputs);
  const auto acts = model.activations();
  s.act.assign(static_cast<std::size_t>(m), Activation{});
  for (index_t i = begin; i < end; ++i)
    s.act[s.below + (i - begin)] = acts[i];
  s.bias.assign(model.bias_x().begin() + begin, model.bias_x().begin() + end);
  return s;
}

} // namespace

TEST_CASE("picard_solve_part on parts run by threads gives the whole solve's bits",
          "[solve][partitioned]") {
  const auto model = random_implicit_model<double>(300, 4, 2, 6, 0.9, 17);
  const auto U = random_batch<double>(4, 37, 18);
  SolveOptions o;
  o.method = SolveMethod::picard;
  EquilibriumSolver<double> solver(model, o);
  Batch<double> Xref;
  const SolveReport ref = solver.solve(U, Xref);
  REQUIRE(ref.ok());

  SECTION("one part: no hooks") {
    const PartSystem s = part_system(model, 0, 300);
    StatePart<double> part{0, 300, {}, {}};
    Batch<double> X;
    const SolveReport r = picard_solve_part(
        s.A, s.act, s.B, std::span<const double>(s.bias), U, X, o.picard, part);
    REQUIRE(r.step_history == ref.step_history);
    REQUIRE(r.column_residuals == ref.column_residuals);
    for (index_t i = 0; i < 300; ++i)
      for (index_t j = 0; j < U.cols(); ++j)
        REQUIRE(X(i, j) == Xref(i, j));
  }

  SECTION("three parts on three threads") {
    const index_t bounds[4] = {0, 90, 210, 300};
    constexpr int P = 3;
    std::vector<PartSystem> sys;
    for (int t = 0; t < P; ++t)
      sys.push_back(part_system(model, bounds[t], bounds[t + 1]));
    std::barrier sync(P);
    double *slabs[P] = {};
    std::vector<double> values[P];
    Batch<double> X[P];
    SolveReport reports[P];
    std::vector<std::thread> threads;
    for (int t = 0; t < P; ++t)
      threads.emplace_back([&, t] {
        const PartSystem &s = sys[t];
        StatePart<double> part;
        part.begin = s.below;
        part.end = s.below + (s.end - s.begin);
        part.exchange = [&, t](double *slab, index_t width) {
          slabs[t] = slab;
          sync.arrive_and_wait();
          const index_t own = s.end - s.begin;
          for (index_t k = 0; k < static_cast<index_t>(s.ghosts.size()); ++k) {
            const index_t g = s.ghosts[k];
            int o = 0;
            while (!(g >= sys[o].begin && g < sys[o].end))
              ++o;
            const index_t from = sys[o].below + (g - sys[o].begin);
            const index_t to = k < s.below ? k : k + own;
            std::copy(slabs[o] + from * width, slabs[o] + (from + 1) * width,
                      slab + to * width);
          }
          sync.arrive_and_wait();
        };
        part.max_reduce = [&, t](std::span<double> v) {
          values[t].assign(v.begin(), v.end());
          sync.arrive_and_wait();
          for (std::size_t i = 0; i < v.size(); ++i)
            for (int o = 0; o < P; ++o)
              v[i] = std::max(v[i], values[o][i]);
          sync.arrive_and_wait();
        };
        reports[t] = picard_solve_part(s.A, s.act, s.B, std::span<const double>(s.bias),
                                       U, X[t], o.picard, part, Execution::reference);
      });
    for (auto &th : threads)
      th.join();
    for (int t = 0; t < P; ++t) {
      REQUIRE(reports[t].status == ref.status);
      REQUIRE(reports[t].iterations == ref.iterations);
      REQUIRE(reports[t].step_history == ref.step_history);
      REQUIRE(reports[t].column_residuals == ref.column_residuals);
      REQUIRE(reports[t].column_iterations == ref.column_iterations);
      index_t differ = 0;
      for (index_t i = sys[t].begin; i < sys[t].end; ++i)
        for (index_t j = 0; j < U.cols(); ++j)
          differ += X[t](sys[t].below + i - sys[t].begin, j) != Xref(i, j) ? 1 : 0;
      REQUIRE(differ == 0);
    }
  }

  SECTION("misuse") {
    const PartSystem s = part_system(model, 0, 300);
    Batch<double> X;
    PicardOptions anderson;
    anderson.anderson_depth = 2;
    StatePart<double> without_hooks{0, 300, {}, {}};
    without_hooks.global_rows = 500; // a part of a larger model
    REQUIRE_THROWS_AS(picard_solve_part(s.A, s.act, s.B, std::span<const double>(s.bias),
                                        U, X, anderson, without_hooks),
                      InvalidArgument);
    without_hooks.global_begin = 300; // own states beyond the model
    without_hooks.global_rows = 400;
    REQUIRE_THROWS_AS(picard_solve_part(s.A, s.act, s.B, std::span<const double>(s.bias),
                                        U, X, anderson, without_hooks),
                      InvalidArgument);
    REQUIRE_THROWS_AS(picard_solve_part(s.A, s.act, s.B, std::span<const double>(s.bias),
                                        U, X, o.picard,
                                        StatePart<double>{0, 299, {}, {}}),
                      InvalidArgument);
    REQUIRE_THROWS_AS(picard_solve_part(s.A, s.act, s.B, std::span<const double>(s.bias),
                                        U, X, o.picard,
                                        StatePart<double>{10, 400, {}, {}}),
                      InvalidArgument);
  }
}

TEST_CASE("picard_solve_part with Anderson on parts run by threads gives the whole "
          "solve's bits",
          "[solve][partitioned]") {
  // 3000 states: chunks of 1024 rows split between parts, a part inside one
  // chunk (the inner products continue across parts).
  const auto model = random_implicit_model<double>(3000, 4, 2, 6, 0.97, 19);
  const auto U = random_batch<double>(4, 37, 20);
  SolveOptions o;
  o.method = SolveMethod::picard;
  o.picard.anderson_depth = 4;
  EquilibriumSolver<double> solver(model, o);
  Batch<double> Xref;
  const SolveReport ref = solver.solve(U, Xref);
  REQUIRE(ref.ok());

  SECTION("one part: no hooks") {
    const PartSystem s = part_system(model, 0, 3000);
    Batch<double> X;
    const SolveReport r =
        picard_solve_part(s.A, s.act, s.B, std::span<const double>(s.bias), U, X, o.picard,
                          StatePart<double>{0, 3000, {}, {}});
    REQUIRE(r.step_history == ref.step_history);
    for (index_t i = 0; i < 3000; ++i)
      for (index_t j = 0; j < U.cols(); ++j)
        REQUIRE(X(i, j) == Xref(i, j));
  }

  SECTION("three parts on three threads") {
    const index_t bounds[4] = {0, 1500, 1900, 3000};
    constexpr int P = 3;
    std::vector<PartSystem> sys;
    for (int t = 0; t < P; ++t)
      sys.push_back(part_system(model, bounds[t], bounds[t + 1]));
    std::barrier sync(P);
    double *slabs[P] = {};
    std::vector<double> values[P], mailbox[P], last;
    std::counting_semaphore<1> ready[P] = {std::counting_semaphore<1>(0),
                                           std::counting_semaphore<1>(0),
                                           std::counting_semaphore<1>(0)};
    Batch<double> X[P];
    SolveReport reports[P];
    std::vector<std::thread> threads;
    for (int t = 0; t < P; ++t)
      threads.emplace_back([&, t] {
        const PartSystem &s = sys[t];
        StatePart<double> part;
        part.begin = s.below;
        part.end = s.below + (s.end - s.begin);
        part.global_begin = s.begin;
        part.global_rows = 3000;
        part.exchange = [&, t](double *slab, index_t width) {
          slabs[t] = slab;
          sync.arrive_and_wait();
          const index_t own = s.end - s.begin;
          for (index_t k = 0; k < static_cast<index_t>(s.ghosts.size()); ++k) {
            const index_t g = s.ghosts[k];
            int o = 0;
            while (!(g >= sys[o].begin && g < sys[o].end))
              ++o;
            const index_t from = sys[o].below + (g - sys[o].begin);
            const index_t to = k < s.below ? k : k + own;
            std::copy(slabs[o] + from * width, slabs[o] + (from + 1) * width,
                      slab + to * width);
          }
          sync.arrive_and_wait();
        };
        part.max_reduce = [&, t](std::span<double> v) {
          values[t].assign(v.begin(), v.end());
          sync.arrive_and_wait();
          for (std::size_t i = 0; i < v.size(); ++i)
            for (int o = 0; o < P; ++o)
              v[i] = std::max(v[i], values[o][i]);
          sync.arrive_and_wait();
        };
        part.receive_previous = [&, t](std::span<double> v) {
          if (t == 0)
            return;
          ready[t].acquire();
          std::copy(mailbox[t].begin(), mailbox[t].end(), v.begin());
        };
        part.send_next = [&, t](std::span<double> v) {
          if (t + 1 == P)
            return;
          mailbox[t + 1].assign(v.begin(), v.end());
          ready[t + 1].release();
        };
        part.broadcast_last = [&, t](std::span<double> v) {
          if (t + 1 == P)
            last.assign(v.begin(), v.end());
          sync.arrive_and_wait();
          std::copy(last.begin(), last.end(), v.begin());
          sync.arrive_and_wait();
        };
        reports[t] = picard_solve_part(s.A, s.act, s.B, std::span<const double>(s.bias),
                                       U, X[t], o.picard, part, Execution::reference);
      });
    for (auto &th : threads)
      th.join();
    for (int t = 0; t < P; ++t) {
      REQUIRE(reports[t].status == ref.status);
      REQUIRE(reports[t].iterations == ref.iterations);
      REQUIRE(reports[t].step_history == ref.step_history);
      REQUIRE(reports[t].column_residuals == ref.column_residuals);
      REQUIRE(reports[t].column_iterations == ref.column_iterations);
      index_t differ = 0;
      for (index_t i = sys[t].begin; i < sys[t].end; ++i)
        for (index_t j = 0; j < U.cols(); ++j)
          differ += X[t](sys[t].below + i - sys[t].begin, j) != Xref(i, j) ? 1 : 0;
      REQUIRE(differ == 0);
    }
  }
}
