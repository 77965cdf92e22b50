// Chart drawing: rectangles and lines land on the expected pixels, a bar of
// known height fills the expected rows, marks and line-chart points sit where
// the documented mapping puts them; bad input is refused.
#include <catch2/catch.hpp>

#include <tacit/core/error.hpp>
#include <tacit/io/image.hpp>

#include <vector>

using namespace tacit;

namespace {
Rgb at(const Image &img, index_t x, index_t y) {
  const auto *p = img.pixel(x, y);
  return {p[0], p[1], p[2]};
}
const Rgb white{255, 255, 255}, black{0, 0, 0};
} // namespace

TEST_CASE("fill_rect and draw_line set exactly their pixels", "[image][chart]") {
  Image img(8, 6, 3, 255);
  fill_rect(img, 2, 1, 5, 3, Rgb{1, 2, 3});
  for (index_t y = 0; y < 6; ++y)
    for (index_t x = 0; x < 8; ++x) {
      const bool in = x >= 2 && x < 5 && y >= 1 && y < 3;
      CHECK((at(img, x, y) == (in ? Rgb{1, 2, 3} : white)));
    }
  fill_rect(img, -3, -3, 100, 100, white); // clipped
  draw_line(img, 0, 0, 7, 0, black);
  draw_line(img, 7, 5, 0, 5, black);
  draw_line(img, 3, 0, 3, 5, black);
  draw_line(img, -5, 2, 20, 2, black); // clipped
  for (index_t x = 0; x < 8; ++x) {
    CHECK(at(img, x, 0) == black);
    CHECK(at(img, x, 5) == black);
    CHECK(at(img, x, 2) == black);
  }
  for (index_t y = 0; y < 6; ++y)
    CHECK(at(img, 3, y) == black);
  CHECK(at(img, 1, 1) == white);
  // A diagonal: one pixel per column.
  Image d(5, 5, 3, 255);
  draw_line(d, 0, 0, 4, 4, black);
  for (index_t y = 0; y < 5; ++y)
    for (index_t x = 0; x < 5; ++x)
      CHECK((at(d, x, y) == (x == y ? black : white)));
}

TEST_CASE("bar_chart: a bar of known height fills the right rows", "[image][chart]") {
  // 40 x 40: margin 4, plot area x in [4, 36), y in [4, 36): 32 rows.
  const ChartFrame f = chart_frame(40, 40);
  REQUIRE(f.left == 4);
  REQUIRE(f.top == 4);
  REQUIRE(f.right == 36);
  REQUIRE(f.bottom == 36);
  const std::vector<double> v = {1.0, 0.5, 0.0, 0.25};
  const Rgb c{40, 90, 160};
  const Image img = bar_chart(v, {}, 40, 40, c);
  // Bars 8 columns wide (7 filled, one gap): bar k in [4 + 8k, 11 + 8k).
  const index_t heights[] = {32, 16, 0, 8};
  for (index_t k = 0; k < 4; ++k)
    for (index_t x = 4 + 8 * k; x < 12 + 8 * k; ++x)
      for (index_t y = f.top; y < f.bottom; ++y) {
        const bool filled = x < 11 + 8 * k && y >= f.bottom - heights[k];
        INFO("bar " << k << " x " << x << " y " << y);
        CHECK((at(img, x, y) == (filled ? c : white)));
      }
  // The axes.
  CHECK(at(img, f.left - 1, 10) == black);
  CHECK(at(img, 20, f.bottom) == black);
  // Marks: 2 rows at the mark's height (value 0.5 of top 1: 16 rows).
  const std::vector<double> m = {0.5, 0, 0, 0};
  const Image mk = bar_chart(v, m, 40, 40, c);
  CHECK(at(mk, 5, f.bottom - 17) == (Rgb{220, 30, 30}));
  CHECK(at(mk, 5, f.bottom - 16) == (Rgb{220, 30, 30}));
  CHECK(at(mk, 5, f.bottom - 18) == c);
  CHECK_THROWS_AS(bar_chart(std::vector<double>{-1.0}, {}, 40, 40), InvalidArgument);
  CHECK_THROWS_AS(bar_chart(v, std::vector<double>{1.0}, 40, 40), InvalidArgument);
  CHECK_THROWS_AS(bar_chart(v, {}, 10, 40), InvalidArgument);
}

TEST_CASE("line_chart: points where the mapping puts them", "[image][chart]") {
  // Data x, y in [0, 10], widened by 5%: [-0.5, 10.5] on pixels [4, 35].
  ChartSeries s{{0, 10}, {0, 10}, {200, 0, 0}};
  const ChartSeries one[] = {s};
  const Image img = line_chart(one, 40, 40);
  const ChartFrame f = chart_frame(40, 40);
  auto px = [&](double x) { return f.left + std::lround((x + 0.5) / 11 * 31); };
  auto py = [&](double y) { return f.bottom - 1 - std::lround((y + 0.5) / 11 * 31); };
  CHECK(at(img, px(0), py(0)) == (Rgb{200, 0, 0}));
  CHECK(at(img, px(10), py(10)) == (Rgb{200, 0, 0}));
  CHECK(at(img, px(5), py(5)) == (Rgb{200, 0, 0})); // on the line
  CHECK(at(img, px(10), py(0)) != (Rgb{200, 0, 0}));
  ChartSeries bad{{0, 1}, {0}, {}};
  const ChartSeries two[] = {bad};
  CHECK_THROWS_AS(line_chart(two, 40, 40), InvalidArgument);
}
