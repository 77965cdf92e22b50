// Operator types defined here, outside the library, run through the solver,
// the well-posedness analysis and the linear bound exactly like the built-in
// ones: a 1-D stencil with a fused activation, a chain of stencils that knows
// its block structure, and a Kronecker product that has nothing but its
// product. Each is compared with the same model built from CSR matrices
// assembled independently from the definitions.

#include <catch2/catch.hpp>

#include <tacit/analysis/bounds.hpp>
#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/capabilities.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/operator_base.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/solve/solve.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>

using namespace tacit;

namespace {

/// y_i = sum_k w[k] x_{i + k - r} (2r + 1 weights, zero outside 0..n-1); the
/// transpose is the stencil with reversed weights.
template <class T>
class Stencil1d final : public OperatorBase<Stencil1d<T>, T>, public FusedActivation<T> {
public:
  static constexpr std::string_view kind_name = "test_stencil1d";

  Stencil1d(index_t n, std::vector<T> w)
      : OperatorBase<Stencil1d<T>, T>(n, n), w_(std::move(w)),
        r_(static_cast<index_t>(w_.size()) / 2) {}

  T weight(index_t i, index_t j) const { // entry (i, j)
    const index_t k = j - i + r_;
    return k >= 0 && k < static_cast<index_t>(w_.size()) ? w_[k] : T(0);
  }

  /// One pass: each value is formed, biased, activated and stored once.
  bool apply_activated(T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                       std::span<const T> bias, const Activation &phi,
                       Execution exec = Execution::parallel,
                       ConstMatrixView<T> residual = {},
                       T residual_scale = T(1)) const override {
    (void)exec;
    ++fused_calls;
    bool finite = true;
    for (index_t i = 0; i < y.rows; ++i)
      for (index_t c = 0; c < y.cols; ++c) {
        T v = alpha * row(Mode::normal, i, x, c) + (beta == T(0) ? T(0) : beta * y(i, c));
        if (!bias.empty())
          v += bias[i];
        if (residual.data)
          v += residual_scale * residual(i, c);
        finite = finite && std::isfinite(v);
        y(i, c) = phi(v);
      }
    return finite;
  }

  mutable std::atomic<int> fused_calls{0};

private:
  friend OperatorBase<Stencil1d<T>, T>;

  T row(Mode mode, index_t i, ConstMatrixView<T> x, index_t c) const {
    T s = 0;
    for (index_t k = 0; k < static_cast<index_t>(w_.size()); ++k) {
      const index_t j = is_transposed(mode) ? i - (k - r_) : i + k - r_;
      if (j < 0 || j >= this->rows())
        continue;
      s += (is_absolute(mode) ? std::abs(w_[k]) : w_[k]) * x(j, c);
    }
    return s;
  }

  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution) const {
    for (index_t i = 0; i < y.rows; ++i)
      for (index_t c = 0; c < y.cols; ++c)
        y(i, c) = alpha * row(mode, i, x, c) + (beta == T(0) ? T(0) : beta * y(i, c));
  }

  std::vector<T> w_;
  index_t r_;
};

/// k blocks of m states: block i >= 1 reads block i - 1 through a stencil,
/// and optionally itself through a second one (a cycle). Knows its blocks.
template <class T>
class StencilChain final : public OperatorBase<StencilChain<T>, T>,
                           public BlockStructured<T> {
public:
  static constexpr std::string_view kind_name = "test_stencil_chain";

  StencilChain(index_t k, index_t m, std::vector<std::shared_ptr<Stencil1d<T>>> below,
               std::vector<std::shared_ptr<Stencil1d<T>>> diagonal)
      : OperatorBase<StencilChain<T>, T>(k * m, k * m),
        blocks_(std::vector<index_t>(static_cast<std::size_t>(k), m),
                std::vector<index_t>(static_cast<std::size_t>(k), m),
                entries(below, diagonal), "StencilChain") {}

  const BlockStructure<T> &block_structure() const noexcept override { return blocks_; }

private:
  friend OperatorBase<StencilChain<T>, T>;

  static std::vector<BlockEntry<T>>
  entries(const std::vector<std::shared_ptr<Stencil1d<T>>> &below,
          const std::vector<std::shared_ptr<Stencil1d<T>>> &diagonal) {
    std::vector<BlockEntry<T>> e;
    for (std::size_t i = 0; i < below.size(); ++i)
      e.push_back({static_cast<index_t>(i) + 1, static_cast<index_t>(i), below[i]});
    for (std::size_t i = 0; i < diagonal.size(); ++i)
      if (diagonal[i])
        e.push_back({static_cast<index_t>(i), static_cast<index_t>(i), diagonal[i]});
    return e;
  }

  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const {
    for (index_t i = 0; i < y.rows; ++i)
      for (index_t c = 0; c < y.cols; ++c)
        y(i, c) = beta == T(0) ? T(0) : beta * y(i, c);
    const bool tr = is_transposed(mode);
    for (const auto &e : blocks_.entries()) {
      const index_t out = tr ? e.block_col : e.block_row,
                    in = tr ? e.block_row : e.block_col;
      const index_t o0 = blocks_.row_offset(out), i0 = blocks_.row_offset(in);
      const index_t m = blocks_.row_block_size(in);
      e.op->apply(mode, alpha, ConstMatrixView<T>(x.data + i0 * x.ld, m, x.cols, x.ld),
                  T(1), MatrixView<T>{y.data + o0 * y.ld, m, y.cols, y.ld}, exec);
    }
  }

  BlockStructure<T> blocks_;
};

/// P (a x a) kron Q (b x b), dense factors; only the product is defined, so
/// every other member comes from OperatorBase's defaults.
template <class T> class Kronecker final : public OperatorBase<Kronecker<T>, T> {
public:
  static constexpr std::string_view kind_name = "test_kronecker";

  Kronecker(index_t a, std::vector<T> P, index_t b, std::vector<T> Q)
      : OperatorBase<Kronecker<T>, T>(a * b, a * b), a_(a), b_(b), P_(std::move(P)),
        Q_(std::move(Q)) {}

private:
  friend OperatorBase<Kronecker<T>, T>;

  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution) const {
    auto f = [&](const std::vector<T> &M, index_t n, index_t i, index_t j) {
      const T v = is_transposed(mode) ? M[j * n + i] : M[i * n + j];
      return is_absolute(mode) ? std::abs(v) : v;
    };
    for (index_t i1 = 0; i1 < a_; ++i1)
      for (index_t i2 = 0; i2 < b_; ++i2)
        for (index_t c = 0; c < y.cols; ++c) {
          T s = 0;
          for (index_t j1 = 0; j1 < a_; ++j1)
            for (index_t j2 = 0; j2 < b_; ++j2)
              s += f(P_, a_, i1, j1) * f(Q_, b_, i2, j2) * x(j1 * b_ + j2, c);
          T &out = y(i1 * b_ + i2, c);
          out = alpha * s + (beta == T(0) ? T(0) : beta * out);
        }
  }

  index_t a_, b_;
  std::vector<T> P_, Q_;
};

std::vector<double> random_values(std::mt19937 &rng, std::size_t n, double scale) {
  std::uniform_real_distribution<double> d(-scale, scale);
  std::vector<double> v(n);
  for (auto &x : v)
    x = d(rng);
  return v;
}

/// Dense random B (n x p) and C (q x n) as CSR.
OperatorPtr<double> random_csr(std::mt19937 &rng, index_t r, index_t c, double scale) {
  const auto v = random_values(rng, static_cast<std::size_t>(r * c), scale);
  return std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_dense(r, c, v));
}

struct ChainCase {
  std::shared_ptr<StencilChain<double>> chain;
  std::vector<std::shared_ptr<Stencil1d<double>>> below, diagonal;
  OperatorPtr<double> reference; // the same A assembled from the stencils' entries
};

ChainCase make_chain(std::mt19937 &rng, index_t k, index_t m, bool cyclic) {
  ChainCase c;
  for (index_t i = 0; i + 1 < k; ++i)
    c.below.push_back(std::make_shared<Stencil1d<double>>(m, random_values(rng, 5, 0.5)));
  if (cyclic)
    for (index_t i = 0; i < k; ++i)
      c.diagonal.push_back(
          i % 2 == 1 ? std::make_shared<Stencil1d<double>>(m, random_values(rng, 3, 0.15))
                     : nullptr);
  c.chain = std::make_shared<StencilChain<double>>(k, m, c.below, c.diagonal);
  std::vector<Triplet<double>> t;
  auto add = [&](const Stencil1d<double> &s, index_t r0, index_t c0) {
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < m; ++j)
        if (s.weight(i, j) != 0)
          t.push_back({r0 + i, c0 + j, s.weight(i, j)});
  };
  for (index_t i = 0; i + 1 < k; ++i)
    add(*c.below[i], (i + 1) * m, i * m);
  for (std::size_t i = 0; i < c.diagonal.size(); ++i)
    if (c.diagonal[i])
      add(*c.diagonal[i], static_cast<index_t>(i) * m, static_cast<index_t>(i) * m);
  c.reference = std::make_shared<CsrMatrix<double>>(
      CsrMatrix<double>::from_triplets(k * m, k * m, t));
  return c;
}

void check_close(std::span<const double> a, std::span<const double> b, double tol) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    CHECK(std::abs(a[i] - b[i]) <= tol * (1 + std::abs(b[i])));
}

/// Solves both models for the same inputs and compares the outputs.
void check_same_solution(const Model<double> &model, const Model<double> &reference,
                         std::mt19937 &rng) {
  const index_t k = 5;
  Batch<double> U(model.inputs(), k), X1, Y1, X2, Y2;
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < model.inputs(); ++i)
      U(i, j) = random_values(rng, 1, 1.0)[0];
  EquilibriumSolver<double> s1(model), s2(reference);
  REQUIRE(s1.predict(U, X1, Y1).ok());
  REQUIRE(s2.predict(U, X2, Y2).ok());
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < model.outputs(); ++i)
      CHECK(std::abs(Y1(i, j) - Y2(i, j)) <= 1e-10 * (1 + std::abs(Y2(i, j))));
}

/// The linear bound (states and margins) on a box agrees for both models.
void check_same_linear_bound(const Model<double> &model, const Model<double> &reference,
                             std::mt19937 &rng) {
  const auto u0 = random_values(rng, static_cast<std::size_t>(model.inputs()), 1.0);
  const auto box = linf_box<double>(u0, 0.02);
  BoundAnalyzer<double> a1(model), a2(reference);
  REQUIRE(a1.certified_well_posed());
  REQUIRE(a2.certified_well_posed());
  CHECK(a1.feed_forward() == a2.feed_forward());
  const auto n1 = a1.nominal(u0), n2 = a2.nominal(u0);
  check_close(n1.y, n2.y, 1e-10);
  const auto b1 = a1.linear_state_bounds(n1, box), b2 = a2.linear_state_bounds(n2, box);
  REQUIRE(b1.status == BoundStatus::ok);
  REQUIRE(b2.status == BoundStatus::ok);
  check_close(b1.x_lower, b2.x_lower, 1e-8);
  check_close(b1.x_upper, b2.x_upper, 1e-8);
  const auto m1 = a1.margins(n1, box, 0, BoundMethod::linear);
  const auto m2 = a2.margins(n2, box, 0, BoundMethod::linear);
  check_close(m1.margin_lower, m2.margin_lower, 1e-8);
}

} // namespace

TEST_CASE("A new operator type defaults every member but its product",
          "[operator][extension]") {
  std::mt19937 rng(3);
  const index_t a = 3, b = 4;
  const auto P = random_values(rng, a * a, 1.0), Q = random_values(rng, b * b, 1.0);
  Kronecker<double> K(a, P, b, Q);
  std::vector<Triplet<double>> t;
  for (index_t i1 = 0; i1 < a; ++i1)
    for (index_t i2 = 0; i2 < b; ++i2)
      for (index_t j1 = 0; j1 < a; ++j1)
        for (index_t j2 = 0; j2 < b; ++j2)
          t.push_back({i1 * b + i2, j1 * b + j2, P[i1 * a + j1] * Q[i2 * b + j2]});
  const auto ref = CsrMatrix<double>::from_triplets(a * b, a * b, t);

  const auto csr = K.to_csr(); // from products with unit vectors
  CHECK(csr.to_dense() == ref.to_dense());
  CHECK(K.nnz() == ref.nnz());
  CHECK(K.kind() == "test_kronecker");
  CHECK(K.bytes() == sizeof(Kronecker<double>));
  CHECK(!K.find_non_finite());
  check_close(K.row_abs_sums(), ref.row_abs_sums(), 1e-14);
  check_close(K.col_abs_sums(), ref.col_abs_sums(), 1e-14);
  std::vector<double> s(static_cast<std::size_t>(a * b), 0.0);
  add_abs_sums<double>(K, true, s);
  check_close(s, ref.row_abs_sums(), 1e-14);

  // No capability: a CSR view materialises; a CSR matrix is borrowed.
  CHECK(!stored_csr<double>(K));
  CHECK(!capability<BlockStructured<double>>(K));
  const auto view = csr_view<double>(K);
  CHECK(!view.borrowed());
  CHECK(view->to_dense() == ref.to_dense());
  CHECK(csr_view<double>(ref).borrowed());
  CHECK(&*csr_view<double>(ref) == &ref);
}

TEST_CASE("Solver, lambda_PF and the linear bound run through an operator with only a "
          "product",
          "[operator][extension]") {
  std::mt19937 rng(5);
  const index_t a = 4, b = 5, n = a * b, p = 6, q = 3;
  auto P = random_values(rng, a * a, 1.0), Q = random_values(rng, b * b, 1.0);
  // Scale so that lambda_PF(|P| kron |Q|) is well below 1.
  for (auto &v : P)
    v *= 0.6 / a;
  for (auto &v : Q)
    v *= 0.6 / b;
  auto K = std::make_shared<Kronecker<double>>(a, P, b, Q);
  std::vector<Triplet<double>> t;
  for (index_t i1 = 0; i1 < a; ++i1)
    for (index_t i2 = 0; i2 < b; ++i2)
      for (index_t j1 = 0; j1 < a; ++j1)
        for (index_t j2 = 0; j2 < b; ++j2)
          t.push_back({i1 * b + i2, j1 * b + j2, P[i1 * a + j1] * Q[i2 * b + j2]});
  auto A_ref =
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(n, n, t));
  const auto B = random_csr(rng, n, p, 1.0), C = random_csr(rng, q, n, 1.0);
  const auto bias = random_values(rng, n, 0.3);
  const Model<double> model(K, B, C, nullptr, {bias.begin(), bias.end()});
  const Model<double> reference(A_ref, B, C, nullptr, {bias.begin(), bias.end()});

  check_same_solution(model, reference, rng);

  const auto w1 = analyse_well_posedness<double>(*K), w2 = analyse_well_posedness(*A_ref);
  CHECK(w1.pf.certified());
  CHECK(w1.pf.lower <= w2.pf.upper * (1 + 1e-12));
  CHECK(w2.pf.lower <= w1.pf.upper * (1 + 1e-12));
  CHECK(w1.scc_count == w2.scc_count);

  check_same_linear_bound(model, reference, rng);
}

TEST_CASE("A new operator type that knows its blocks and fuses its activation is swept "
          "block by block",
          "[operator][extension]") {
  std::mt19937 rng(11);
  const index_t k = 6, m = 7, n = k * m, p = 5, q = 4;
  for (const bool cyclic : {false, true}) {
    DYNAMIC_SECTION((cyclic ? "with cyclic diagonal blocks" : "feed-forward")) {
      auto c = make_chain(rng, k, m, cyclic);
      CHECK(c.chain->to_csr().to_dense() ==
            static_cast<const CsrMatrix<double> &>(*c.reference).to_dense());
      const auto B = random_csr(rng, n, p, 1.0), C = random_csr(rng, q, n, 1.0);
      const auto bias = random_values(rng, n, 0.3);
      std::vector<StateBlock> blocks;
      for (index_t i = 0; i < k; ++i)
        blocks.push_back({"b" + std::to_string(i), i * m, m, Activation{}});
      const Model<double> model(c.chain, B, C, nullptr, {bias.begin(), bias.end()}, {},
                                blocks);
      const Model<double> reference(c.reference, B, C, nullptr,
                                    {bias.begin(), bias.end()}, {}, blocks);

      // The solver sweeps the chain's own blocks; in a feed-forward row the
      // stencil is the fused product.
      EquilibriumSolver<double> solver(model);
      CHECK(solver.method() == SolveMethod::sweep);
      CHECK_THAT(solver.method_reason(),
                 Catch::Contains("block sweep over 6 state blocks"));
      check_same_solution(model, reference, rng);
      int fused = 0;
      for (const auto &s : c.below)
        fused += s->fused_calls.load();
      CHECK(fused > 0); // the rows without a diagonal block

      // lambda_PF from the structure: exactly 0 for the feed-forward chain.
      const auto w1 = analyse_well_posedness<double>(*c.chain),
                 w2 = analyse_well_posedness(*c.reference);
      CHECK(w1.pf.certified());
      CHECK_THAT(w1.pf.message, Catch::Contains("from the structure"));
      CHECK(w1.pf.lower <= w2.pf.upper * (1 + 1e-12) + 1e-300);
      CHECK(w2.pf.lower <= w1.pf.upper * (1 + 1e-12) + 1e-300);
      CHECK(w1.norm_inf == Approx(w2.norm_inf).epsilon(1e-14));
      if (!cyclic) {
        CHECK(w1.pf.upper == 0);
        CHECK(w1.nilpotent);
      }

      // The block DAG: k levels, one block each.
      const auto scc = strongly_connected_components(c.chain->block_structure());
      CHECK(scc.block_count() == k);
      CHECK(scc.level_count() == k);
      CHECK(scc.nilpotent() == !cyclic);

      check_same_linear_bound(model, reference, rng);
    }
  }
}

TEST_CASE("A fused product offered by a new type matches the unfused sequence",
          "[operator][extension]") {
  std::mt19937 rng(2);
  const index_t n = 9, k = 3;
  Stencil1d<double> s(n, random_values(rng, 3, 1.0));
  const auto x = random_values(rng, n * k, 1.0), r = random_values(rng, n * k, 1.0);
  const auto bias = random_values(rng, n, 1.0);
  for (const double beta : {0.0, 0.5}) {
    auto y1 = random_values(rng, n * k, 1.0), y2 = y1;
    const ConstMatrixView<double> xv(x.data(), n, k, k), rv(r.data(), n, k, k);
    CHECK(apply_activated<double>(s, 2.0, xv, beta,
                                  MatrixView<double>{y1.data(), n, k, k}, bias,
                                  Activation{}, Execution::parallel, rv, 0.5));
    CHECK(apply_activated_unfused<double>(s, 2.0, xv, beta,
                                          MatrixView<double>{y2.data(), n, k, k}, bias,
                                          Activation{}, Execution::parallel, rv, 0.5));
    check_close(y1, y2, 1e-14);
  }
  CHECK(s.fused_calls == 2);
}
