#include <catch2/catch.hpp>
#include <random>
#include <tacit/core/csr.hpp>

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
      if (p(rng) < density)
        t.push_back({i, j, static_cast<T>(u(rng))});
  return CsrMatrix<T>::from_triplets(m, n, t, w);
}
} // namespace

TEMPLATE_TEST_CASE("CSR parallel kernels equal the serial reference", "[csr]", float,
                   double) {
  for (auto width : {IndexWidth::narrow32, IndexWidth::wide64}) {
    auto A = random_csr<TestType>(301, 257, 0.05, 7, width);
    for (index_t k : {1, 3, 8, 33, 70}) {
      Batch<TestType> x(257, k, 32), xt(301, k, 32);
      std::mt19937 rng(3);
      std::uniform_real_distribution<double> u(-1, 1);
      for (auto &v : x.storage())
        v = static_cast<TestType>(u(rng));
      for (auto &v : xt.storage())
        v = static_cast<TestType>(u(rng));
      for (Mode mode : {Mode::normal, Mode::abs, Mode::transpose, Mode::abs_transpose}) {
        const bool t = is_transposed(mode);
        Batch<TestType> y1(t ? 257 : 301, k, 32), y2(t ? 257 : 301, k, 32);
        for (auto &v : y1.storage())
          v = 1;
        for (auto &v : y2.storage())
          v = 1;
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
  CHECK_THROWS_WITH(M(1, 3, {0, 2}, unsorted, {1.0, 2.0}),
                    Catch::Contains("strictly increasing"));
  CHECK_THROWS_WITH(M(1, 3, {0, 2}, cols, {1.0}), Catch::Contains("values has 1"));
  std::vector<Triplet<double>> bad = {{0, 5, 1.0}};
  CHECK_THROWS_AS(M::from_triplets(2, 2, bad), InvalidArgument);
}

TEST_CASE("CSR from triplets sums duplicates and keeps explicit zeros", "[csr]") {
  std::vector<Triplet<double>> t = {{1, 2, 1.0}, {0, 0, 3.0}, {1, 2, 2.5}, {1, 0, 0.0}};
  auto A = CsrMatrix<double>::from_triplets(2, 3, t);
  CHECK(A.nnz() == 3);
  CHECK(A.to_dense() == std::vector<double>{3, 0, 0, 0, 0, 3.5});
  CHECK(A.column(1) == 0); // the explicit zero at (1, 0), sorted first in row 1
}

TEST_CASE("CSR products match dense Eigen products", "[csr]") {
  auto A = random_csr<double>(40, 31, 0.2, 5);
  const auto dense = A.to_dense();
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
      E(dense.data(), 40, 31);
  Eigen::VectorXd x = Eigen::VectorXd::LinSpaced(31, -1, 2);
  Eigen::VectorXd xt = Eigen::VectorXd::LinSpaced(40, 3, -1);
  std::vector<double> y(40, 0.0), yt(31, 0.0);
  A.apply(Mode::normal, 1.0, std::span<const double>(x.data(), 31), 0.0,
          std::span<double>(y));
  A.apply(Mode::abs_transpose, 1.0, std::span<const double>(xt.data(), 40), 0.0,
          std::span<double>(yt));
  Eigen::VectorXd ref = E * x, reft = E.cwiseAbs().transpose() * xt;
  for (int i = 0; i < 40; ++i)
    CHECK(y[i] == Approx(ref[i]).margin(1e-13));
  for (int i = 0; i < 31; ++i)
    CHECK(yt[i] == Approx(reft[i]).margin(1e-13));
  // Row/column absolute sums and induced norms.
  auto rs = A.row_abs_sums();
  auto cs = A.col_abs_sums();
  for (int i = 0; i < 40; ++i)
    CHECK(rs[i] == Approx(E.row(i).cwiseAbs().sum()));
  for (int j = 0; j < 31; ++j)
    CHECK(cs[j] == Approx(E.col(j).cwiseAbs().sum()));
  CHECK(norm_inf(A) == Approx(E.cwiseAbs().rowwise().sum().maxCoeff()));
  CHECK(norm_1(A) == Approx(E.cwiseAbs().colwise().sum().maxCoeff()));
}

TEST_CASE("CSR transpose, permutation and submatrix agree with dense copies", "[csr]") {
  auto A = random_csr<float>(12, 12, 0.3, 9);
  const auto d = A.to_dense();
  auto At = A.transpose();
  const auto dt = At.to_dense();
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 12; ++j)
      CHECK(dt[j * 12 + i] == d[i * 12 + j]);
  std::vector<index_t> perm = {3, 0, 11, 5, 1, 2, 4, 6, 7, 10, 9, 8};
  auto P = A.permuted(perm);
  const auto dp = P.to_dense();
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 12; ++j)
      CHECK(dp[i * 12 + j] == d[perm[i] * 12 + perm[j]]);
  std::vector<index_t> rows = {2, 7}, cols = {1, 4, 9};
  auto S = A.submatrix(rows, cols);
  const auto ds = S.to_dense();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      CHECK(ds[i * 3 + j] == d[rows[i] * 12 + cols[j]]);
  std::vector<index_t> not_perm = {0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  CHECK_THROWS_AS(A.permuted(not_perm), InvalidArgument);
  auto dg = A.diagonal();
  for (int i = 0; i < 12; ++i)
    CHECK(dg[i] == d[i * 13]);
  auto Ad = A.cast<double>();
  CHECK(Ad.to_dense() == std::vector<double>(d.begin(), d.end()));
}

TEST_CASE("CSR products are bitwise identical on 1 and 2 threads", "[csr]") {
  auto A = random_csr<double>(3000, 2500, 0.01, 21);
  Batch<double> x(2500, 40), xt(3000, 40);
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto &v : x.storage())
    v = u(rng);
  for (auto &v : xt.storage())
    v = u(rng);
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
  for (auto &v : vals)
    v *= 2;
  CHECK(A.cache_bytes() == 0);
  std::vector<double> y2(10);
  A.apply(Mode::transpose, 1.0, std::span<const double>(x), 0.0, std::span<double>(y2));
  for (int j = 0; j < 10; ++j)
    CHECK(y2[j] == Approx(2 * y[j]));
}

// ---------------------------------------------------------------------------
// Kernel paths: SpMV gathers and masked tails, SpMM panels of every width,
// strided views, index widths, precisions, alpha/beta, absolute modes, the
// parallel transpose. Each parallel product is compared with the serial
// reference within a bound on the rounding error of a sum of products.

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>

namespace {

/// Rows of every length from 0 to 100 (gather tails, unrolled-loop tails),
/// random columns and values.
template <class T>
CsrMatrix<T> ragged_csr(index_t m, index_t n, unsigned seed, IndexWidth w) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<Triplet<T>> t;
  for (index_t i = 0; i < m; ++i) {
    const index_t len = (i * 37) % std::min<index_t>(101, n + 1);
    std::vector<index_t> cols(static_cast<std::size_t>(n));
    std::iota(cols.begin(), cols.end(), 0);
    std::shuffle(cols.begin(), cols.end(), rng);
    for (index_t k = 0; k < len; ++k)
      t.push_back({i, cols[k], static_cast<T>(u(rng))});
  }
  return CsrMatrix<T>::from_triplets(m, n, t, w);
}

/// |y - y_ref| <= 2 gamma_(in+2) (|alpha| (|A| |x|) + |beta| |y0|) entrywise: twice
/// the worst-case rounding error of a sum of `in` products, so any summation
/// order passes and a missing or wrong term does not.
template <class T>
bool within_rounding(const CsrMatrix<T> &A, Mode mode, std::type_identity_t<T> alpha,
                     std::type_identity_t<T> beta,
                     std::type_identity_t<ConstMatrixView<T>> x,
                     std::type_identity_t<ConstMatrixView<T>> y0,
                     std::type_identity_t<ConstMatrixView<T>> y,
                     std::type_identity_t<ConstMatrixView<T>> ref) {
  const auto d = A.to_dense();
  const bool t = is_transposed(mode);
  const index_t out = t ? A.cols() : A.rows(), in = t ? A.rows() : A.cols();
  const double eps = std::numeric_limits<T>::epsilon();
  for (index_t i = 0; i < out; ++i)
    for (index_t c = 0; c < x.cols; ++c) {
      double mag = 0;
      for (index_t j = 0; j < in; ++j)
        mag += std::abs(
            static_cast<double>(t ? d[j * A.cols() + i] : d[i * A.cols() + j]) * x(j, c));
      const double bound =
          2 * double(in + 2) * eps *
              (std::abs(double(alpha)) * mag + std::abs(double(beta) * y0(i, c))) +
          1e-30;
      if (!(std::abs(double(y(i, c)) - double(ref(i, c))) <= bound)) {
        UNSCOPED_INFO("entry (" << i << ", " << c << "): " << y(i, c) << " vs reference "
                                << ref(i, c) << ", bound " << bound);
        return false;
      }
    }
  return true;
}

} // namespace

TEMPLATE_TEST_CASE("CSR kernel paths for every width, stride, index width and mode",
                   "[csr][kernels]", float, double) {
  using T = TestType;
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto width : {IndexWidth::narrow32, IndexWidth::wide64}) {
    const auto A = ragged_csr<T>(61, 113, 3, width);
    REQUIRE(A.wide_indices() == (width == IndexWidth::wide64));
    for (index_t k = 1; k <= 70; ++k)
      for (index_t pad : {0, 3}) {
        const index_t ld = k + pad;
        for (Mode mode :
             {Mode::normal, Mode::abs, Mode::transpose, Mode::abs_transpose}) {
          const bool t = is_transposed(mode);
          const index_t in = t ? 61 : 113, out = t ? 113 : 61;
          std::vector<T> xs(static_cast<std::size_t>(in * ld)),
              y0(static_cast<std::size_t>(out * ld));
          for (auto &v : xs)
            v = static_cast<T>(u(rng));
          for (auto &v : y0)
            v = static_cast<T>(u(rng));
          // Padding columns of y hold a sentinel that must survive.
          for (index_t i = 0; i < out; ++i)
            for (index_t c = k; c < ld; ++c)
              y0[i * ld + c] = T(-7);
          for (T beta : {T(0), T(0.75)}) {
            const T alpha = T(-1.5);
            auto y1 = y0, y2 = y0;
            if (beta == T(0)) // beta == 0 overwrites: NaN in y must not leak
              for (index_t i = 0; i < out; ++i)
                y1[i * ld] = std::numeric_limits<T>::quiet_NaN();
            ConstMatrixView<T> x(xs.data(), in, k, ld);
            A.apply(mode, alpha, x, beta, MatrixView<T>{y1.data(), out, k, ld},
                    Execution::parallel);
            A.apply(mode, alpha, x, beta, MatrixView<T>{y2.data(), out, k, ld},
                    Execution::reference);
            INFO("k = " << k << ", ld = " << ld << ", mode " << int(mode) << ", beta "
                        << beta << ", wide " << A.wide_indices());
            REQUIRE(within_rounding(A, mode, alpha, beta, x, {y0.data(), out, k, ld},
                                    {y1.data(), out, k, ld}, {y2.data(), out, k, ld}));
            bool sentinel = true;
            for (index_t i = 0; i < out; ++i)
              for (index_t c = k; c < ld; ++c)
                sentinel = sentinel && y1[i * ld + c] == T(-7);
            REQUIRE(sentinel);
          }
        }
      }
  }
}

TEMPLATE_TEST_CASE("CSR slab batches of every slab width match the reference",
                   "[csr][kernels]", float, double) {
  using T = TestType;
  const auto A = ragged_csr<T>(90, 90, 5, IndexWidth::automatic);
  for (index_t w : {1, 7, 16, 32, 33, 64})
    for (index_t k : {1, 5, 40, 128}) {
      Batch<T> x(90, k, w), y1(90, k, w), y2(90, k, w);
      std::mt19937 rng(static_cast<unsigned>(w * 1000 + k));
      std::uniform_real_distribution<double> u(-1, 1);
      for (index_t i = 0; i < 90; ++i)
        for (index_t c = 0; c < k; ++c)
          x(i, c) = static_cast<T>(u(rng));
      A.apply(Mode::normal, T(1), x, T(0), y1, Execution::parallel);
      A.apply(Mode::normal, T(1), x, T(0), y2, Execution::reference);
      for (index_t s = 0; s < x.slab_count(); ++s)
        REQUIRE(within_rounding(A, Mode::normal, T(1), T(0), x.slab(s), y2.slab(s),
                                y1.slab(s), y2.slab(s)));
      // Padding of the last slab stays zero.
      // A batch narrower than a slab is stored without padding.
      CHECK(y1.slab_width() == std::min(w, k));
      const auto last = y1.slab(y1.slab_count() - 1);
      const index_t sw = y1.slab_width();
      bool zero = true;
      for (index_t i = 0; i < 90; ++i)
        for (index_t c = last.cols; c < sw; ++c)
          zero = zero && last.data[i * sw + c] == T(0);
      CHECK(zero);
    }
}

TEMPLATE_TEST_CASE("CSR kernels and transpose give the same bits on 1 and 2 threads",
                   "[csr][kernels]", float, double) {
  using T = TestType;
  // Large enough for the partitioned kernels and the chunked transpose.
  const auto A = random_csr<T>(4000, 3500, 0.006, 8);
  REQUIRE(A.nnz() > (1 << 16));
  CsrMatrix<T> t1, t2;
  tbb::task_arena(1).execute([&] { t1 = A.transpose(); });
  tbb::task_arena(2).execute([&] { t2 = A.transpose(); });
  CHECK(std::equal(t1.row_ptr().begin(), t1.row_ptr().end(), t2.row_ptr().begin()));
  CHECK(std::equal(t1.values().begin(), t1.values().end(), t2.values().begin()));
  CHECK(std::equal(t1.col_idx32().begin(), t1.col_idx32().end(), t2.col_idx32().begin()));
  // The transpose is right: entry by entry against the original.
  const auto d = A.to_dense(), dt = t1.to_dense();
  bool same = true;
  for (index_t i = 0; i < 4000; ++i)
    for (index_t j = 0; j < 3500; ++j)
      same = same && dt[j * 4000 + i] == d[i * 3500 + j];
  CHECK(same);
  for (index_t k : {1, 8, 70}) {
    for (Mode mode : {Mode::normal, Mode::abs_transpose}) {
      const bool t = is_transposed(mode);
      Batch<T> x(t ? 4000 : 3500, k), y1(t ? 3500 : 4000, k), y2(t ? 3500 : 4000, k);
      std::mt19937 rng(static_cast<unsigned>(k));
      std::uniform_real_distribution<double> u(-1, 1);
      for (index_t i = 0; i < x.rows(); ++i)
        for (index_t c = 0; c < k; ++c)
          x(i, c) = static_cast<T>(u(rng));
      tbb::task_arena(1).execute([&] { A.apply(mode, T(1), x, T(0), y1); });
      tbb::task_arena(2).execute([&] { A.apply(mode, T(1), x, T(0), y2); });
      CHECK(std::equal(y1.storage().begin(), y1.storage().end(), y2.storage().begin()));
    }
    // A contiguous vector takes the gather path.
    if (k == 1) {
      std::vector<T> x(3500), y1(4000), y2(4000);
      for (index_t j = 0; j < 3500; ++j)
        x[j] = static_cast<T>(std::sin(double(j)));
      tbb::task_arena(1).execute([&] {
        A.apply(Mode::normal, T(1), std::span<const T>(x), T(0), std::span<T>(y1));
      });
      tbb::task_arena(2).execute([&] {
        A.apply(Mode::normal, T(1), std::span<const T>(x), T(0), std::span<T>(y2));
      });
      CHECK(y1 == y2);
    }
  }
}

TEMPLATE_TEST_CASE("CSR rows sharing their columns are computed together with the bits "
                   "of one row at a time",
                   "[csr][kernels]", float, double) {
  using T = TestType;
  // Runs of 1..6 rows with the same columns (a convolution's output channels
  // at one position), with and without a distinct first column (a residual
  // line), of every length up to 40, next to unrelated rows.
  std::mt19937_64 rng(23);
  std::uniform_real_distribution<double> u(-1, 1);
  const index_t n = 150;
  std::vector<Triplet<T>> t;
  index_t row = 0;
  for (int g = 0; g < 60; ++g) {
    const index_t len = 1 + g % 40, run = 1 + g % 6;
    const bool head = g % 3 == 1;
    std::vector<index_t> cols(static_cast<std::size_t>(n - 10));
    std::iota(cols.begin(), cols.end(), 10);
    std::shuffle(cols.begin(), cols.end(), rng);
    cols.resize(static_cast<std::size_t>(len));
    for (index_t r = 0; r < run; ++r, ++row) {
      if (head) // a column below all shared ones, different per row
        t.push_back({row, (row * 7) % 10, static_cast<T>(u(rng))});
      for (index_t c : cols)
        t.push_back({row, c, static_cast<T>(u(rng))});
    }
    if (g % 5 == 0) { // an unrelated row in between
      for (index_t k = 0; k < 5; ++k)
        t.push_back({row, (row * 13 + k * 29) % n, T(0.5)});
      ++row;
    }
  }
  const auto A = CsrMatrix<T>::from_triplets(row, n, t);
  std::vector<index_t> all_cols(static_cast<std::size_t>(n));
  std::iota(all_cols.begin(), all_cols.end(), 0);
  for (index_t k : {2, 5, 8, 16, 17, 24, 32, 40, 64, 70, 128}) {
    std::vector<T> xs(static_cast<std::size_t>(n * k)),
        y1(static_cast<std::size_t>(row * k));
    for (auto &v : xs)
      v = static_cast<T>(u(rng));
    for (auto &v : y1)
      v = static_cast<T>(u(rng));
    auto y2 = y1;
    const ConstMatrixView<T> x(xs.data(), n, k, k);
    for (Mode mode : {Mode::normal, Mode::abs}) {
      A.apply(mode, T(2), x, T(-1), MatrixView<T>{y1.data(), row, k, k});
      // One row at a time: a one-row matrix has no neighbours to share with.
      for (index_t i = 0; i < row; ++i) {
        const index_t one[] = {i};
        const auto Ai = A.submatrix(one, all_cols);
        Ai.apply(mode, T(2), x, T(-1), MatrixView<T>{y2.data() + i * k, 1, k, k});
      }
      INFO("k = " << k << ", mode " << int(mode));
      REQUIRE(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(T)) == 0);
    }
    auto y3 = y1;
    A.apply(Mode::normal, T(1), x, T(0), MatrixView<T>{y1.data(), row, k, k});
    A.apply(Mode::normal, T(1), x, T(0), MatrixView<T>{y3.data(), row, k, k},
            Execution::reference);
    REQUIRE(within_rounding(A, Mode::normal, T(1), T(0), x, {y3.data(), row, k, k},
                            {y1.data(), row, k, k}, {y3.data(), row, k, k}));
  }
}
