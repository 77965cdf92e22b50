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
