#include <catch2/catch.hpp>
#include <tacit/core/dense.hpp>

#include <algorithm>
#include <cstdint>

using namespace tacit;

TEST_CASE("Batch stores columns slab-major with zero padding", "[dense]") {
  Batch<double> b(5, 7, 3); // slabs of 3, 3, 1 columns
  CHECK(b.slab_count() == 3);
  CHECK(b.slab_cols(0) == 3);
  CHECK(b.slab_cols(2) == 1);
  CHECK(b.storage().size() == 5 * 9);
  for (index_t i = 0; i < 5; ++i)
    for (index_t j = 0; j < 7; ++j)
      b(i, j) = 10.0 * i + j;
  // Element (i, j) lives in slab j / 3 at row i, column j % 3.
  CHECK(b.storage()[(6 / 3) * 5 * 3 + 4 * 3 + 0] == 46.0);
  CHECK(b.slab(1)(2, 1) == 24.0);
  CHECK(b.slab(1).ld == 3);
  // Padding columns of the last slab are untouched zeros.
  CHECK(b.storage()[2 * 15 + 4 * 3 + 1] == 0.0);
  std::vector<double> col(5);
  b.get_column(4, col);
  CHECK(col == std::vector<double>{4, 14, 24, 34, 44});
  std::vector<double> in{1, 2, 3, 4, 5};
  b.set_column(6, in);
  CHECK(b(3, 6) == 4.0);
  b.set_zero();
  CHECK(b(3, 6) == 0.0);
}

TEST_CASE("Batch rejects bad sizes and bad column access", "[dense]") {
  CHECK_THROWS_AS(Batch<float>(-1, 2), InvalidArgument);
  CHECK_THROWS_AS(Batch<float>(2, 2, 0), InvalidArgument);
  Batch<float> b(3, 2);
  std::vector<float> wrong(4);
  CHECK_THROWS_AS(b.get_column(0, wrong), InvalidArgument);
  std::vector<float> ok(3);
  CHECK_THROWS_AS(b.get_column(2, ok), InvalidArgument);
  CHECK_THROWS_WITH(b.set_column(5, ok), Catch::Contains("column 5"));
}

TEST_CASE("Empty batches are valid", "[dense]") {
  Batch<double> b(4, 0);
  CHECK(b.slab_count() == 0);
  CHECK(b.bytes() == 0);
}

TEST_CASE("Batch storage is cache-line aligned and a narrow batch has no padding",
          "[dense]") {
  for (index_t rows : {1, 3, 1000, 300000}) { // the last one is above 4 MB
    for (index_t cols : {1, 5, 32, 33}) {
      Batch<double> b(rows, cols);
      CAPTURE(rows, cols);
      CHECK(reinterpret_cast<std::uintptr_t>(b.storage().data()) % 64 == 0);
      CHECK(b.slab_width() == std::min<index_t>(cols, default_slab_width));
      CHECK(b.storage().size() ==
            static_cast<std::size_t>(rows * b.slab_count() * b.slab_width()));
    }
  }
  Batch<float> v(10, 1, 32); // one vector: contiguous
  CHECK(v.slab_width() == 1);
  v(7, 0) = 3.0f;
  CHECK(v.storage()[7] == 3.0f);
  // Copies keep the alignment.
  Batch<double> a(100, 40, 16);
  const Batch<double> c = a;
  CHECK(reinterpret_cast<std::uintptr_t>(c.storage().data()) % 64 == 0);
  CHECK(c.slab_width() == 16);
  CHECK(c.slab_count() == 3);
}
