#include <catch2/catch.hpp>
#include <tacit/core/csr.hpp>

#include <cmath>

using namespace tacit;

TEST_CASE("apply checks dimensions, leading dimensions and aliasing", "[operator]") {
  auto A = CsrMatrix<double>::identity(4, 2.0);
  std::vector<double> x(4, 1.0), y(3);
  CHECK_THROWS_WITH(A.apply(Mode::normal, 1.0, std::span<const double>(x), 0.0,
                            std::span<double>(y)),
                    Catch::Contains("4 x 4") && Catch::Contains("y is 3 x 1"));
  std::vector<double> buf(8, 1.0);
  ConstMatrixView<double> xv(buf.data(), 4, 1, 1);
  MatrixView<double> yv{buf.data() + 2, 4, 1, 1};
  CHECK_THROWS_WITH(A.apply(Mode::normal, 1.0, xv, 0.0, yv), Catch::Contains("overlap"));
  MatrixView<double> bad_ld{buf.data() + 4, 2, 2, 1};
  ConstMatrixView<double> x2(buf.data(), 4, 2, 2);
  CHECK_THROWS_AS(A.apply(Mode::normal, 1.0, x2, 0.0, bad_ld), InvalidArgument);
}

TEST_CASE("beta = 0 overwrites y even when it holds NaN", "[operator]") {
  auto A = CsrMatrix<float>::identity(3, 1.0f);
  std::vector<float> x{1, 2, 3}, y(3, std::nanf(""));
  A.apply(Mode::normal, 2.0f, std::span<const float>(x), 0.0f, std::span<float>(y));
  CHECK(y == std::vector<float>{2, 4, 6});
  A.apply(Mode::normal, 1.0f, std::span<const float>(x), 1.0f, std::span<float>(y),
          Execution::reference);
  CHECK(y == std::vector<float>{3, 6, 9});
}

TEST_CASE("find_non_finite names the first bad entry", "[operator]") {
  std::vector<Triplet<double>> t = {{0, 1, 1.0}, {2, 0, INFINITY}, {1, 1, NAN}};
  auto A = CsrMatrix<double>::from_triplets(3, 2, t);
  auto e = A.find_non_finite();
  REQUIRE(e);
  CHECK(e->row == 1);
  CHECK(e->col == 1);
  CHECK(!CsrMatrix<double>::identity(3).find_non_finite());
}
