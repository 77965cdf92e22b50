#include <catch2/catch.hpp>
#include <tacit/csr.hpp>
#include <random>

using namespace tacit;

namespace {
template <class T>
CsrMatrix<T> random_csr(index_t m, index_t n, double density, unsigned seed,
                        IndexWidth w = IndexWidth::automatic) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1), p(0, 1);
  std::vector<Triplet<T>> t;
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j)
      if (p(rng) < density) t.push_back({i, j, static_cast<T>(u(rng))});
  return CsrMatrix<T>::from_triplets(m, n, t, w);
}
} // namespace

TEMPLATE_TEST_CASE("CSR parallel kernels equal the serial reference", "[csr]", float, double) {
  for (auto width : {IndexWidth::narrow32, IndexWidth::wide64}) {
    auto A = random_csr<TestType>(301, 257, 0.05, 7, width);
    for (index_t k : {1, 3, 8, 33, 70}) {
      Batch<TestType> x(257, k, 32), xt(301, k, 32);
      std::mt19937 rng(3);
      std::uniform_real_distribution<double> u(-1, 1);
      for (auto &v : x.storage()) v = static_cast<TestType>(u(rng));
      for (auto &v : xt.storage()) v = static_cast<TestType>(u(rng));
      for (Mode mode : {Mode::normal, Mode::abs, Mode::transpose, Mode::abs_transpose}) {
        const bool t = is_transposed(mode);
        Batch<TestType> y1(t ? 257 : 301, k, 32), y2(t ? 257 : 301, k, 32);
        for (auto &v : y1.storage()) v = 1;
        for (auto &v : y2.storage()) v = 1;
        A.apply(mode, TestType(2), t ? xt : x, TestType(0.5), y1, Execution::parallel);
        A.apply(mode, TestType(2), t ? xt : x, TestType(0.5), y2, Execution::reference);
        for (index_t i = 0; i < y1.rows(); ++i)
          for (index_t c = 0; c < k; ++c)
            REQUIRE(y1(i, c) == Approx(y2(i, c)).epsilon(1e-5).margin(1e-5));
      }
    }
  }
}

#include <Eigen/Dense>
#include <tbb/task_arena.h>

TEST_CASE("CSR construction validates its arrays", "[csr]") {
  using M = CsrMatrix<double>;
  std::vector<std::int64_t> cols = {0, 2};
  CHECK_THROWS_WITH(M(2, 3, {0, 1}, cols, {1.0, 2.0}), Catch::Contains("rows + 1"));
  CHECK_THROWS_WITH(M(2, 3, {1, 1, 2}, cols, {1.0, 2.0}), Catch::Contains("row_ptr[0]"));
  CHECK_THROWS_WITH(M(2, 3, {0, 2, 1}, cols, {1.0, 2.0}), Catch::Contains("decreases"));
  std::vector<std::int64_t> out_of_range = {0, 3};
  CHECK_THROWS_WITH(M(2, 3, {0, 1, 2}, out_of_range, {1.0, 2.0}),
                    Catch::Contains("(2, 4)") && Catch::Contains("outside"));
  std::vector<std::int64_t> unsorted = {2, 0};
  CHECK_THROWS_WITH(M(1, 3, {0, 2}, unsorted, {1.0, 2.0}), Catch::Contains("strictly increasing"));
  CHECK_THROWS_WITH(M(1, 3, {0, 2}, cols, {1.0}), Catch::Contains("values has 1"));
  std::vector<Triplet<double>> bad = {{0, 5, 1.0}};
  CHECK_THROWS_AS(M::from_triplets(2, 2, bad), InvalidArgument);
}

TEST_CASE("CSR from triplets sums duplicates and keeps explicit zeros", "[csr]") {
  std::vector<Triplet<double>> t = {{1, 2, 1.0}, {0, 0, 3.0}, {1, 2, 2.5}, {1, 0, 0.0}};
  auto A = CsrMatrix<double>::from_triplets(2, 3, t);
  CHECK(A.nnz() == 3);
  CHECK(A.to_dense() == std::vector<double>{3, 0, 0, 0, 0, 3.5});
  CHECK(A.column(1) == 0);  // the explicit zero at (1, 0), sorted first in row 1
}

TEST_CASE("CSR products match dense Eigen products", "[csr]") {
  auto A = random_csr<double>(40, 31, 0.2, 5);
  const auto dense = A.to_dense();
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> E(
      dense.data(), 40, 31);
  Eigen::VectorXd x = Eigen::VectorXd::LinSpaced(31, -1, 2);
  Eigen::VectorXd xt = Eigen::VectorXd::LinSpaced(40, 3, -1);
  std::vector<double> y(40, 0.0), yt(31, 0.0);
  A.apply(Mode::normal, 1.0, std::span<const double>(x.data(), 31), 0.0, std::span<double>(y));
  A.apply(Mode::abs_transpose, 1.0, std::span<const double>(xt.data(), 40), 0.0,
          std::span<double>(yt));
  Eigen::VectorXd ref = E * x, reft = E.cwiseAbs().transpose() * xt;
  for (int i = 0; i < 40; ++i) CHECK(y[i] == Approx(ref[i]).margin(1e-13));
  for (int i = 0; i < 31; ++i) CHECK(yt[i] == Approx(reft[i]).margin(1e-13));
  // Row/column absolute sums and induced norms.
  auto rs = A.row_abs_sums();
  auto cs = A.col_abs_sums();
  for (int i = 0; i < 40; ++i) CHECK(rs[i] == Approx(E.row(i).cwiseAbs().sum()));
  for (int j = 0; j < 31; ++j) CHECK(cs[j] == Approx(E.col(j).cwiseAbs().sum()));
  CHECK(norm_inf(A) == Approx(E.cwiseAbs().rowwise().sum().maxCoeff()));
  CHECK(norm_1(A) == Approx(E.cwiseAbs().colwise().sum().maxCoeff()));
}

TEST_CASE("CSR transpose, permutation and submatrix agree with dense copies", "[csr]") {
  auto A = random_csr<float>(12, 12, 0.3, 9);
  const auto d = A.to_dense();
  auto At = A.transpose();
  const auto dt = At.to_dense();
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 12; ++j) CHECK(dt[j * 12 + i] == d[i * 12 + j]);
  std::vector<index_t> perm = {3, 0, 11, 5, 1, 2, 4, 6, 7, 10, 9, 8};
  auto P = A.permuted(perm);
  const auto dp = P.to_dense();
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 12; ++j) CHECK(dp[i * 12 + j] == d[perm[i] * 12 + perm[j]]);
  std::vector<index_t> rows = {2, 7}, cols = {1, 4, 9};
  auto S = A.submatrix(rows, cols);
  const auto ds = S.to_dense();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) CHECK(ds[i * 3 + j] == d[rows[i] * 12 + cols[j]]);
  std::vector<index_t> not_perm = {0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  CHECK_THROWS_AS(A.permuted(not_perm), InvalidArgument);
  auto dg = A.diagonal();
  for (int i = 0; i < 12; ++i) CHECK(dg[i] == d[i * 13]);
  auto Ad = A.cast<double>();
  CHECK(Ad.to_dense() == std::vector<double>(d.begin(), d.end()));
}

TEST_CASE("CSR products are bitwise identical on 1 and 2 threads", "[csr]") {
  auto A = random_csr<double>(3000, 2500, 0.01, 21);
  Batch<double> x(2500, 40), xt(3000, 40);
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto &v : x.storage()) v = u(rng);
  for (auto &v : xt.storage()) v = u(rng);
  for (Mode mode : {Mode::normal, Mode::transpose}) {
    const bool t = is_transposed(mode);
    Batch<double> y1(t ? 2500 : 3000, 40), y2(t ? 2500 : 3000, 40);
    tbb::task_arena(1).execute([&] { A.apply(mode, 1.0, t ? xt : x, 0.0, y1); });
    tbb::task_arena(2).execute([&] { A.apply(mode, 1.0, t ? xt : x, 0.0, y2); });
    CHECK(std::equal(y1.storage().begin(), y1.storage().end(), y2.storage().begin()));
  }
}

TEST_CASE("CSR caches its transpose and drops it when values change", "[csr]") {
  auto A = random_csr<double>(20, 10, 0.3, 4);
  CHECK(A.cache_bytes() == 0);
  std::vector<double> x(20, 1.0), y(10);
  A.apply(Mode::transpose, 1.0, std::span<const double>(x), 0.0, std::span<double>(y));
  CHECK(A.cache_bytes() > 0);
  auto vals = A.mutable_values();
  for (auto &v : vals) v *= 2;
  CHECK(A.cache_bytes() == 0);
  std::vector<double> y2(10);
  A.apply(Mode::transpose, 1.0, std::span<const double>(x), 0.0, std::span<double>(y2));
  for (int j = 0; j < 10; ++j) CHECK(y2[j] == Approx(2 * y[j]));
}
