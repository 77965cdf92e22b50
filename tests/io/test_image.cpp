#include <catch2/catch.hpp>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/io/image.hpp>
#include <tacit/operators/structured.hpp>

#include <filesystem>
#include <random>

using namespace tacit;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("tacit_image_test_" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

} // namespace

TEST_CASE("image: PNG round trip, gray and RGB", "[image]") {
  TempDir dir;
  for (int channels : {1, 3}) {
    Image img(7, 5, channels);
    for (std::size_t i = 0; i < img.pixels.size(); ++i)
      img.pixels[i] = static_cast<std::uint8_t>((i * 37 + 11) % 256);
    const fs::path file = dir.path / ("img" + std::to_string(channels) + ".png");
    write_png(file, img);
    const Image back = read_png(file);
    CHECK(back.width == 7);
    CHECK(back.height == 5);
    CHECK(back.channels == channels);
    CHECK(back.pixels == img.pixels);
  }
  // Only the two files: no temporary left behind.
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 2);
}

TEST_CASE("image: errors", "[image]") {
  TempDir dir;
  Image img(3, 3, 1);
  CHECK_THROWS_AS(write_png(dir.path / "missing" / "x.png", img), FileError);
  img.pixels.pop_back();
  CHECK_THROWS_AS(write_png(dir.path / "x.png", img), InvalidArgument);
  CHECK_THROWS_AS(Image(2, 2, 2), InvalidArgument);
  CHECK_THROWS_AS(write_png(dir.path / "empty.png", Image(0, 3, 1)), InvalidArgument);
  {
    std::FILE *f = std::fopen((dir.path / "bad.png").c_str(), "wb");
    std::fputs("not a png", f);
    std::fclose(f);
  }
  CHECK_THROWS_AS(read_png(dir.path / "bad.png"), FileError);
  CHECK_THROWS_AS(read_png(dir.path / "none.png"), FileError);
}

TEST_CASE("image: colour map and heat map", "[image]") {
  CHECK(colormap(0) == Rgb{68, 1, 84});
  CHECK(colormap(1) == Rgb{253, 231, 37});
  CHECK(colormap(-3) == colormap(0));
  CHECK(colormap(7) == colormap(1));
  CHECK(colormap(std::nan("")) == colormap(0));
  CHECK(colormap(0.5) == Rgb{33, 144, 141});
  // Luminance increases along the map (perceptual ordering).
  double last = -1;
  for (int i = 0; i <= 64; ++i) {
    const Rgb c = colormap(i / 64.0);
    const double y = 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b;
    CHECK(y > last);
    last = y;
  }
  const std::vector<double> v = {0, 1, 2, 3, 4, 5};
  const Image h = heat_map(v, 3, 2, 0, 0, 2);
  CHECK(h.width == 6);
  CHECK(h.height == 4);
  CHECK(h.channels == 3);
  auto at = [&](index_t x, index_t y) {
    const auto *p = h.pixel(x, y);
    return Rgb{p[0], p[1], p[2]};
  };
  CHECK(at(0, 0) == colormap(0));
  CHECK(at(1, 1) == colormap(0));
  CHECK(at(5, 3) == colormap(1));
  CHECK(at(2, 0) == colormap(0.2));
  CHECK(at(0, 2) == colormap(0.6));
  // Explicit range.
  const Image h2 = heat_map(v, 3, 2, 0, 10);
  CHECK(Rgb{h2.pixel(2, 1)[0], h2.pixel(2, 1)[1], h2.pixel(2, 1)[2]} == colormap(0.5));
  CHECK_THROWS_AS(heat_map(v, 4, 2), InvalidArgument);
  CHECK_THROWS_AS(heat_map(v, 3, 2, 0, 0, 0), InvalidArgument);
}

TEST_CASE("image: spy counts on a hand-made matrix", "[image]") {
  // 6 x 4 matrix:
  //   row 0: (0,0) (0,3)      row 1: (1,1)
  //   row 2: (2,0) (2,1)      row 3: (3,2) and a stored zero at (3,3)
  //   row 4: -                row 5: (5,3)
  std::vector<Triplet<double>> t = {{0, 0, 1}, {0, 3, 2},  {1, 1, 3}, {2, 0, 4},
                                    {2, 1, 5}, {3, 2, -6}, {3, 3, 0}, {5, 3, 7}};
  const auto M = CsrMatrix<double>::from_triplets(6, 4, t);
  // Cells of 2 x 2 entries: 3 rows of cells, 2 columns.
  const SpyCounts s = spy_counts(M, 2, 3);
  CHECK(s.cells_x == 2);
  CHECK(s.cells_y == 3);
  CHECK(s.counts == std::vector<std::int64_t>{2, 1, 2, 1, 0, 1});
  // More cells than entries: one cell per entry.
  const SpyCounts full = spy_counts(M, 100, 100);
  CHECK(full.cells_x == 4);
  CHECK(full.cells_y == 6);
  CHECK(full.counts[0 * 4 + 3] == 1);
  CHECK(full.counts[3 * 4 + 3] == 0); // the stored zero
  std::int64_t total = 0;
  for (auto c : full.counts)
    total += c;
  CHECK(total == 7);

  // The same matrix as a BlockOperator (rows 3 + 3, cols 2 + 2), with one
  // position holding two entries that cancel in one place.
  std::vector<BlockEntry<double>> e;
  auto sub = [&](index_t r0, index_t c0) {
    std::vector<Triplet<double>> st;
    for (const auto &x : t)
      if (x.row >= r0 && x.row < r0 + 3 && x.col >= c0 && x.col < c0 + 2)
        st.push_back({x.row - r0, x.col - c0, x.value});
    return std::make_shared<CsrMatrix<double>>(
        CsrMatrix<double>::from_triplets(3, 2, st));
  };
  e.push_back({0, 0, sub(0, 0)});
  e.push_back({0, 1, sub(0, 2)});
  e.push_back({1, 0, sub(3, 0)});
  e.push_back({1, 1, sub(3, 2)});
  std::vector<Triplet<double>> cancel = {{0, 0, 6}, {1, 0, 1}};
  e.push_back({1, 1,
               std::make_shared<CsrMatrix<double>>(
                   CsrMatrix<double>::from_triplets(3, 2, cancel))});
  const BlockOperator<double> B({3, 3}, {2, 2}, e);
  const SpyCounts sb = spy_counts(B, 100, 100);
  // (3,2) cancelled, (4,2) added.
  auto expected = full.counts;
  expected[3 * 4 + 2] = 0;
  expected[4 * 4 + 2] = 1;
  CHECK(sb.counts == expected);
}

TEST_CASE("image: spy plot pixels and block outlines", "[image]") {
  const auto M = CsrMatrix<double>::identity(8);
  SpyOptions o;
  o.size = 8;
  o.density = false;
  const std::vector<index_t> bounds = {4};
  const Image img = spy_plot(M, o, bounds, bounds);
  REQUIRE(img.width == 8);
  REQUIRE(img.height == 8);
  for (index_t y = 0; y < 8; ++y)
    for (index_t x = 0; x < 8; ++x) {
      const auto *p = img.pixel(x, y);
      if (x == y)
        CHECK(p[0] == 0); // nonzero
      else if (x == 4 || y == 4)
        CHECK(p[0] == 200); // outline
      else
        CHECK(p[0] == 255); // background
    }
  // Downsampled: 4 x 4 pixels, the diagonal cells hold 2 nonzeros each.
  o.size = 4;
  o.density = true;
  o.outline = false;
  const Image small = spy_plot(M, o);
  CHECK(small.width == 4);
  CHECK(small.pixel(1, 1)[0] != 255);
  CHECK(small.pixel(1, 2)[0] == 255);
  // Aspect ratio kept.
  const auto wide =
      CsrMatrix<double>::from_triplets(10, 40, std::vector<Triplet<double>>{{0, 0, 1.0}});
  o.size = 20;
  const Image w = spy_plot(wide, o);
  CHECK(w.width == 20);
  CHECK(w.height == 5);
}
