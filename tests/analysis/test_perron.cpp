#include <catch2/catch.hpp>
#include <tacit/analysis/wellposed.hpp>

#include <Eigen/Dense>
#include <tbb/task_arena.h>

#include <cmath>
#include <random>

using namespace tacit;

namespace {

using Trips = std::vector<Triplet<double>>;

/// Independent reference: max |eigenvalue| of |A| by dense Eigen.
double dense_spectral_radius(const CsrMatrix<double> &A) {
  const index_t n = A.rows();
  Eigen::MatrixXd M = Eigen::MatrixXd::Zero(n, n);
  for (index_t i = 0; i < n; ++i)
    for (auto k = A.row_ptr()[i]; k < A.row_ptr()[i + 1]; ++k)
      M(i, A.column(k)) = std::abs(A.values()[k]);
  if (n == 0)
    return 0;
  Eigen::EigenSolver<Eigen::MatrixXd> es(M, false);
  return es.eigenvalues().cwiseAbs().maxCoeff();
}

/// Random entries on an n x n block at (offset, offset), plus a Hamiltonian
/// cycle so that the block is irreducible.
void add_irreducible_block(Trips &t, index_t offset, index_t n, double density,
                           bool signed_values, std::mt19937 &rng, double scale = 1) {
  std::uniform_real_distribution<double> u(0, 1);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      if (u(rng) < density || j == (i + 1) % n) {
        double v = scale * (0.1 + u(rng));
        if (signed_values && u(rng) < 0.5)
          v = -v;
        t.push_back({offset + i, offset + j, v});
      }
}

/// Checks that the bound contains the reference and is at most rel wide.
void check_contains(const PerronBound &pf, double truth, double rel = 1e-6) {
  INFO(pf.message);
  INFO("truth " << truth << " lower " << pf.lower << " upper " << pf.upper);
  // Eigen's value carries its own rounding error.
  CHECK(pf.lower <= truth * (1 + 1e-12) + 1e-300);
  CHECK(pf.upper >= truth * (1 - 1e-12));
  CHECK(pf.upper - pf.lower <= rel * pf.upper);
  CHECK(pf.lower <= pf.upper);
}

CsrMatrix<double> make(index_t n, const Trips &t) {
  return CsrMatrix<double>::from_triplets(n, n, t);
}

} // namespace

TEST_CASE("PF bound on irreducible random matrices contains the dense spectral radius",
          "[wellposed]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 6; ++trial) {
    const index_t n = 10 + 15 * trial;
    Trips t;
    add_irreducible_block(t, 0, n, trial % 2 ? 0.3 : 0.05, trial % 3 == 0, rng,
                          1.0 / static_cast<double>(n));
    const auto A = make(n, t);
    const auto pf = perron_frobenius_bound(A);
    check_contains(pf, dense_spectral_radius(A));
    CHECK(pf.status == PerronStatus::tight);
    CHECK(pf.cyclic_blocks == 1);
    CHECK(pf.largest_block == n);
    CHECK(pf.iterations > 0);
  }
}

TEST_CASE("PF bound on reducible block triangular matrices is the max over blocks",
          "[wellposed]") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(0, 1);
  // Blocks of sizes 5, 8, 1 (self-loop), 12, 1 (no loop), 6 with distinct
  // radii, coupled by random entries below the block diagonal.
  const std::vector<index_t> sizes = {5, 8, 1, 12, 1, 6};
  const std::vector<double> scales = {0.05, 0.02, 0.3, 0.06, 0, 0.09};
  Trips t;
  index_t off = 0;
  std::vector<index_t> offsets;
  for (std::size_t b = 0; b < sizes.size(); ++b) {
    offsets.push_back(off);
    if (sizes[b] == 1) {
      if (scales[b] > 0)
        t.push_back({off, off, -scales[b]});
    } else {
      add_irreducible_block(t, off, sizes[b], 0.3, b % 2 == 1, rng, scales[b]);
    }
    for (index_t i = off; i < off + sizes[b]; ++i)
      for (index_t j = 0; j < off; ++j)
        if (u(rng) < 0.2)
          t.push_back({i, j, 5 * (u(rng) - 0.5)});
    off += sizes[b];
  }
  const auto A = make(off, t);
  const auto pf = perron_frobenius_bound(A);
  check_contains(pf, dense_spectral_radius(A));
  CHECK(pf.blocks == static_cast<index_t>(sizes.size()));
  CHECK(pf.cyclic_blocks == 4);
  CHECK(pf.largest_block == 12);
  // The max over blocks, computed block by block with Eigen.
  double best = 0;
  for (std::size_t b = 0; b < sizes.size(); ++b) {
    std::vector<index_t> idx(sizes[b]);
    for (index_t k = 0; k < sizes[b]; ++k)
      idx[k] = offsets[b] + k;
    best = std::max(best, dense_spectral_radius(A.submatrix(idx, idx)));
  }
  check_contains(pf, best);
}

TEST_CASE("PF bound on periodic blocks: weighted cycles and a bipartite block",
          "[wellposed]") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0.5, 2.0);
  SECTION("scaled cyclic permutation: radius is the scale, exactly") {
    const index_t n = 7;
    Trips t;
    for (index_t i = 0; i < n; ++i)
      t.push_back({i, (i + 1) % n, -0.8});
    const auto pf = perron_frobenius_bound(make(n, t));
    CHECK(pf.lower <= 0.8);
    CHECK(pf.upper >= 0.8);
    CHECK(pf.upper - pf.lower <= 1e-14);
  }
  SECTION("weighted cycles: radius is the geometric mean of the weights") {
    for (index_t n : {3, 10, 60, 400}) {
      Trips t;
      double log_sum = 0;
      for (index_t i = 0; i < n; ++i) {
        const double w = u(rng);
        log_sum += std::log(w);
        t.push_back({(i + 1) % n, i, w});
      }
      const double truth = std::exp(log_sum / static_cast<double>(n));
      const auto pf = perron_frobenius_bound(make(n, t));
      INFO("cycle of " << n << ": " << pf.message);
      check_contains(pf, truth, 1e-9);
      CHECK(pf.status == PerronStatus::tight);
      // Long cycles mix slowly: shift-invert must take over.
      if (n == 400)
        CHECK(pf.shift_invert_steps > 0);
    }
  }
  SECTION("long weighted cycle without shift-invert stays valid on a budget") {
    const index_t n = 400;
    Trips t;
    double log_sum = 0;
    for (index_t i = 0; i < n; ++i) {
      const double w = u(rng);
      log_sum += std::log(w);
      t.push_back({(i + 1) % n, i, w});
    }
    PerronOptions opt;
    opt.shift_invert = false;
    opt.max_iterations = 300;
    const auto pf = perron_frobenius_bound(make(n, t), opt);
    const double truth = std::exp(log_sum / static_cast<double>(n));
    CHECK(pf.status == PerronStatus::budget_exhausted);
    CHECK(pf.iterations == 300);
    CHECK(pf.shift_invert_steps == 0);
    CHECK(pf.lower <= truth);
    CHECK(pf.upper >= truth);
  }
  SECTION("bipartite block [[0, B], [C, 0]]: eigenvalues +-sqrt(rho(BC))") {
    const index_t p = 6, q = 9;
    Trips t;
    std::uniform_real_distribution<double> w(0.1, 1.0);
    for (index_t i = 0; i < p; ++i)
      for (index_t j = 0; j < q; ++j) {
        t.push_back({i, p + j, w(rng)});
        t.push_back({p + j, i, -w(rng)});
      }
    const auto A = make(p + q, t);
    const auto pf = perron_frobenius_bound(A);
    check_contains(pf, dense_spectral_radius(A), 1e-9);
    CHECK(pf.cyclic_blocks == 1);
  }
}

TEST_CASE("PF bound of a nilpotent (feed-forward) matrix is exactly 0", "[wellposed]") {
  std::mt19937 rng(9);
  std::uniform_real_distribution<double> u(-1, 1);
  Trips t;
  const index_t n = 300;
  for (index_t i = 1; i < n; ++i)
    for (int k = 0; k < 5; ++k)
      t.push_back(
          {i, static_cast<index_t>(std::abs(u(rng)) * static_cast<double>(i)), u(rng)});
  t.push_back({5, 5, 0.0}); // a stored zero on the diagonal is no self-loop
  const auto A = make(n, t);
  const auto pf = perron_frobenius_bound(A);
  CHECK(pf.lower == 0);
  CHECK(pf.upper == 0);
  CHECK(pf.iterations == 0);
  CHECK(pf.cyclic_blocks == 0);
  CHECK(pf.status == PerronStatus::tight);
  CHECK(pf.certified());
  const auto report =
      analyse_well_posedness(static_cast<const LinearOperator<double> &>(A));
  CHECK(report.nilpotent);
  CHECK(report.scc_count == n);
  CHECK(report.scc_largest == 1);
}

TEST_CASE("PF bound of diagonal matrices and a 2x2 closed form", "[wellposed]") {
  SECTION("diagonal: exact max |a_ii|") {
    Trips t = {{0, 0, 0.25}, {1, 1, -0.75}, {2, 2, 0.5}, {4, 4, 0.125}};
    const auto pf = perron_frobenius_bound(make(5, t));
    CHECK(pf.lower == 0.75);
    CHECK(pf.upper == 0.75);
    CHECK(pf.iterations == 0);
    CHECK(pf.message.find("self-loop of state 2") != std::string::npos);
  }
  SECTION("2x2: (a + d)/2 + sqrt(((a - d)/2)^2 + bc)") {
    const double a = 0.3, b = -0.7, c = 0.45, d = -0.1;
    Trips t = {{0, 0, a}, {0, 1, b}, {1, 0, c}, {1, 1, d}};
    const double ad = std::abs(a), dd = std::abs(d);
    const double truth =
        (ad + dd) / 2 + std::sqrt((ad - dd) * (ad - dd) / 4 + std::abs(b) * std::abs(c));
    PerronOptions opt;
    opt.rel_width = 1e-13;
    const auto pf = perron_frobenius_bound(make(2, t), opt);
    check_contains(pf, truth, 1e-13);
  }
}

TEST_CASE("PF certification on each side of 1", "[wellposed]") {
  std::mt19937 rng(21);
  const index_t n = 40;
  Trips t;
  add_irreducible_block(t, 0, n, 0.2, true, rng);
  const auto A0 = make(n, t);
  const double rho0 = dense_spectral_radius(A0);
  for (double target : {0.999999, 1.000001, 0.5, 2.0}) {
    Trips s = t;
    for (auto &e : s)
      e.value *= target / rho0;
    const auto A = make(n, s);
    const auto pf = perron_frobenius_bound(A);
    INFO("target " << target << ": " << pf.message);
    check_contains(pf, dense_spectral_radius(A), 1e-9);
    CHECK(pf.certified() == (target < 1));
    if (target > 1)
      CHECK(pf.lower > 1);
  }
}

TEST_CASE("PF bound of a badly scaled cycle stays valid", "[wellposed]") {
  // Weights 1e150, 1e150, 1e-150, 1e-150: radius 1, Perron vector entries
  // spread over 300 orders of magnitude.
  Trips t = {{1, 0, 1e150}, {2, 1, 1e150}, {3, 2, 1e-150}, {0, 3, 1e-150}};
  const auto pf = perron_frobenius_bound(make(4, t));
  INFO(pf.message);
  CHECK(pf.lower <= 1);
  CHECK(pf.upper >= 1);
  CHECK(pf.upper - pf.lower <= 1e-9);
}

TEST_CASE("PF bound when the Perron vector cannot be represented", "[wellposed]") {
  // Weights 1e200, 1e200, 1e-200, 1e-200: radius 1, but the Perron vector
  // spans 400 orders of magnitude, beyond double: some entry underflows.
  Trips t = {{1, 0, 1e200}, {2, 1, 1e200}, {3, 2, 1e-200}, {0, 3, 1e-200}};
  PerronOptions opt;
  opt.max_iterations = 2000;
  const auto pf = perron_frobenius_bound(make(4, t), opt);
  INFO(pf.message);
  CHECK(pf.lower <= 1);
  CHECK(pf.upper >= 1);
  CHECK(pf.underflow);
  CHECK(pf.message.find("underflow") != std::string::npos);
  CHECK(pf.status != PerronStatus::tight);
}

TEST_CASE("PF bound of an empty matrix", "[wellposed]") {
  const auto pf = perron_frobenius_bound(CsrMatrix<double>(0, 0));
  CHECK(pf.lower == 0);
  CHECK(pf.upper == 0);
  CHECK(pf.blocks == 0);
  CHECK(pf.certified());
}

TEST_CASE("PF bound for float matrices contains the radius of the float values",
          "[wellposed]") {
  std::mt19937 rng(17);
  const index_t n = 30;
  Trips t;
  add_irreducible_block(t, 0, n, 0.25, true, rng, 0.05);
  const auto A = make(n, t).cast<float>();
  const auto pf = perron_frobenius_bound(A);
  // The float values converted exactly back to double.
  check_contains(pf, dense_spectral_radius(A.cast<double>()));
}

TEST_CASE("PF options: budget, decided, rel_width and bad input", "[wellposed]") {
  std::mt19937 rng(2);
  Trips t;
  add_irreducible_block(t, 0, 50, 0.1, false, rng, 0.02);
  const auto A = make(50, t);
  const double truth = dense_spectral_radius(A);
  SECTION("budget of one product gives the row-sum bounds") {
    PerronOptions opt;
    opt.max_iterations = 1;
    const auto pf = perron_frobenius_bound(A, opt);
    CHECK(pf.status == PerronStatus::budget_exhausted);
    CHECK(pf.iterations == 1);
    const auto sums = A.row_abs_sums();
    CHECK(pf.upper >= *std::max_element(sums.begin(), sums.end()));
    CHECK(pf.upper <= *std::max_element(sums.begin(), sums.end()) * (1 + 1e-13));
    CHECK(pf.lower <= *std::min_element(sums.begin(), sums.end()));
    CHECK(pf.lower <= truth);
    CHECK(pf.upper >= truth);
  }
  SECTION("stop when decided") {
    PerronOptions opt;
    opt.stop_when_decided = true;
    const auto pf = perron_frobenius_bound(A, opt);
    CHECK(pf.status == PerronStatus::decided);
    CHECK(pf.upper < 1);
    CHECK(pf.lower <= truth);
    CHECK(pf.upper >= truth);
  }
  SECTION("a loose rel_width stops earlier") {
    PerronOptions loose;
    loose.rel_width = 1e-2;
    const auto a = perron_frobenius_bound(A, loose);
    const auto b = perron_frobenius_bound(A);
    CHECK(a.iterations < b.iterations);
    CHECK(a.upper - a.lower <= 1e-2 * a.upper);
    check_contains(b, truth, 1e-9);
  }
  SECTION("bad input is rejected") {
    PerronOptions bad;
    bad.rel_width = -1;
    CHECK_THROWS_AS(perron_frobenius_bound(A, bad), InvalidArgument);
    bad = {};
    bad.max_iterations = 0;
    CHECK_THROWS_AS(perron_frobenius_bound(A, bad), InvalidArgument);
    Trips r = {{0, 1, 1.0}};
    CHECK_THROWS_AS(perron_frobenius_bound(CsrMatrix<double>::from_triplets(2, 3, r)),
                    InvalidArgument);
    Trips nan = {{0, 1, 1.0}, {1, 0, std::nan("")}};
    CHECK_THROWS_AS(perron_frobenius_bound(make(2, nan)), InvalidArgument);
    const auto other = make(3, {{0, 1, 1.0}});
    CHECK_THROWS_AS(perron_frobenius_bound(A, strongly_connected_components(other)),
                    InvalidArgument);
  }
}

TEST_CASE("PF bound is deterministic across thread counts, reference agrees",
          "[wellposed]") {
  // One large block, so that the parallel vector passes and SpMV kick in.
  const index_t n = 40000;
  std::mt19937 rng(13);
  std::uniform_int_distribution<index_t> col(0, n - 1);
  std::uniform_real_distribution<double> u(-1, 1);
  Trips t;
  for (index_t i = 0; i < n; ++i) {
    t.push_back({i, (i + 1) % n, 0.3});
    for (int k = 0; k < 7; ++k)
      t.push_back({i, col(rng), u(rng) / 8});
  }
  // With `extra` feed-forward states after the block, the block is no longer
  // the whole matrix and is extracted (another code path).
  for (index_t extra : {0, 5}) {
    Trips te = t;
    for (index_t k = 0; k < extra; ++k)
      te.push_back({n + k, k, 1.0});
    const auto A = make(n + extra, te);
    PerronBound one, two;
    tbb::task_arena(1).execute([&] { one = perron_frobenius_bound(A); });
    tbb::task_arena(2).execute([&] { two = perron_frobenius_bound(A); });
    CHECK(one.lower == two.lower);
    CHECK(one.upper == two.upper);
    CHECK(one.iterations == two.iterations);
    CHECK(one.upper - one.lower <= 1e-9 * one.upper);
    CHECK(one.largest_block == n);
    PerronOptions ref;
    ref.exec = Execution::reference;
    const auto r = perron_frobenius_bound(A, ref);
    // Both enclose the same number, so they intersect.
    CHECK(std::max(r.lower, one.lower) <= std::min(r.upper, one.upper));
    CHECK(r.upper - r.lower <= 1e-9 * r.upper);
  }
}

namespace {
/// A dense operator that is not a CsrMatrix: analyse_well_posedness must
/// materialise it.
class DenseOp final : public LinearOperator<double> {
public:
  DenseOp(index_t n, std::vector<double> a)
      : LinearOperator<double>(n, n), a_(std::move(a)) {}

private:
  double at(index_t i, index_t j) const { return a_[i * cols() + j]; }
  void apply_impl(Mode mode, double alpha, ConstMatrixView<double> x, double beta,
                  MatrixView<double> y, Execution) const override {
    for (index_t i = 0; i < y.rows; ++i)
      for (index_t c = 0; c < y.cols; ++c) {
        double s = 0;
        for (index_t j = 0; j < x.rows; ++j) {
          double v = is_transposed(mode) ? at(j, i) : at(i, j);
          if (is_absolute(mode))
            v = std::abs(v);
          s += v * x(j, c);
        }
        y(i, c) = alpha * s + (beta == 0 ? 0 : beta * y(i, c));
      }
  }
  void row_abs_sums_impl(std::span<double> out) const override {
    for (index_t i = 0; i < rows(); ++i) {
      out[i] = 0;
      for (index_t j = 0; j < cols(); ++j)
        out[i] += std::abs(at(i, j));
    }
  }
  void col_abs_sums_impl(std::span<double> out) const override {
    for (index_t j = 0; j < cols(); ++j) {
      out[j] = 0;
      for (index_t i = 0; i < rows(); ++i)
        out[j] += std::abs(at(i, j));
    }
  }
  std::int64_t nnz_impl() const override {
    return std::count_if(a_.begin(), a_.end(), [](double v) { return v != 0; });
  }
  std::size_t bytes_impl() const override { return a_.size() * sizeof(double); }
  std::string kind_impl() const override { return "dense"; }
  CsrMatrix<double> to_csr_impl() const override {
    return CsrMatrix<double>::from_dense(rows(), cols(), a_);
  }
  std::optional<Entry> find_non_finite_impl() const override { return std::nullopt; }
  std::vector<double> a_;
};
} // namespace

TEST_CASE("analyse_well_posedness reports norms, SCCs and the PF interval",
          "[wellposed]") {
  // 0 <-> 1 cycle, 2 depends on them with a self-loop, 3 feed-forward.
  const std::vector<double> a = {0,   0.5, 0,    0, //
                                 0.8, 0,   0,    0, //
                                 -1,  2,   -0.3, 0, //
                                 0,   0,   4,    0};
  DenseOp op(4, a);
  const auto r = analyse_well_posedness(static_cast<const LinearOperator<double> &>(op));
  CHECK(r.n == 4);
  CHECK(r.nnz == 6);
  CHECK(r.norm_inf == Approx(4.0));
  CHECK(r.norm_1 == Approx(4.3));
  CHECK(r.scc_count == 3);
  CHECK(r.scc_largest == 2);
  CHECK(!r.nilpotent);
  CHECK(r.pf.cyclic_blocks == 1);
  check_contains(r.pf, std::sqrt(0.4), 1e-9);
  CHECK(r.pf.certified());
  CHECK(to_string(r.pf.status) == "tight");
  // The same through the CSR path.
  const auto csr = CsrMatrix<double>::from_dense(4, 4, a);
  const auto r2 =
      analyse_well_posedness(static_cast<const LinearOperator<double> &>(csr));
  CHECK(r2.pf.lower == r.pf.lower);
  CHECK(r2.pf.upper == r.pf.upper);
  CHECK(r2.norm_1 == r.norm_1);
}
