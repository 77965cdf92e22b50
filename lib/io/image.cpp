// PNG files through libpng's simplified API (no setjmp), the colour map,
// heat maps and spy plots.

#include <tacit/io/image.hpp>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/format.hpp>

#include "io/detail/io_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <png.h>

namespace tacit::inline v1 {

Image::Image(index_t w, index_t h, int c, std::uint8_t fill)
    : width(w), height(h), channels(c) {
  if (w < 0 || h < 0)
    throw InvalidArgument("Image: negative size " + std::to_string(w) + " x " +
                          std::to_string(h));
  if (c != 1 && c != 3)
    throw InvalidArgument("Image: " + std::to_string(c) +
                          " channels (expected 1 for gray or 3 for RGB)");
  pixels.assign(static_cast<std::size_t>(w * h * c), fill);
}

void write_png(const std::filesystem::path &path, const Image &image) {
  if (image.channels != 1 && image.channels != 3)
    throw InvalidArgument("write_png: " + std::to_string(image.channels) +
                          " channels (expected 1 or 3)");
  if (image.width <= 0 || image.height <= 0 || image.width > 0x7fffffff ||
      image.height > 0x7fffffff)
    throw InvalidArgument("write_png: cannot write a " + std::to_string(image.width) +
                          " x " + std::to_string(image.height) + " image");
  if (image.pixels.size() !=
      static_cast<std::size_t>(image.width * image.height * image.channels))
    throw InvalidArgument("write_png: " + std::to_string(image.pixels.size()) +
                          " bytes of pixels for a " + std::to_string(image.width) +
                          " x " + std::to_string(image.height) + " x " +
                          std::to_string(image.channels) + " image");
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&png, nullptr, &size, 0, image.pixels.data(), 0,
                                 nullptr)) {
    const std::string msg = png.message;
    png_image_free(&png);
    throw FileError(path.string(), 0, "cannot encode PNG: " + msg);
  }
  std::vector<std::uint8_t> buffer(size);
  if (!png_image_write_to_memory(&png, buffer.data(), &size, 0, image.pixels.data(), 0,
                                 nullptr)) {
    const std::string msg = png.message;
    png_image_free(&png);
    throw FileError(path.string(), 0, "cannot encode PNG: " + msg);
  }
  detail::AtomicFile file(path);
  file.write(buffer.data(), size);
  file.commit();
}

Image read_png(const std::filesystem::path &path) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.string().c_str())) {
    const std::string msg = png.message;
    png_image_free(&png);
    throw FileError(path.string(), 0, "cannot read PNG: " + msg);
  }
  const bool colour = (png.format & PNG_FORMAT_FLAG_COLOR) != 0;
  png.format = colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  Image image(static_cast<index_t>(png.width), static_cast<index_t>(png.height),
              colour ? 3 : 1);
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    const std::string msg = png.message;
    png_image_free(&png);
    throw FileError(path.string(), 0, "cannot decode PNG: " + msg);
  }
  return image;
}

Rgb colormap(double t) {
  static constexpr std::uint8_t anchors[9][3] = {
      {68, 1, 84},    {71, 44, 122}, {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
      {39, 173, 129}, {92, 200, 99}, {170, 220, 50}, {253, 231, 37}};
  if (!(t > 0))
    t = 0;
  if (t > 1)
    t = 1;
  const double x = t * 8;
  const int i = std::min(7, static_cast<int>(x));
  const double f = x - i;
  auto mix = [&](int c) {
    return static_cast<std::uint8_t>(
        std::lround(anchors[i][c] + f * (anchors[i + 1][c] - anchors[i][c])));
  };
  return {mix(0), mix(1), mix(2)};
}

Image heat_map(std::span<const double> values, index_t width, index_t height, double lo,
               double hi, index_t scale) {
  if (width < 0 || height < 0 || static_cast<index_t>(values.size()) != width * height)
    throw InvalidArgument("heat_map: " + std::to_string(values.size()) +
                          " values for a " + std::to_string(width) + " x " +
                          std::to_string(height) + " map");
  if (scale < 1)
    throw InvalidArgument("heat_map: scale must be at least 1, got " +
                          std::to_string(scale));
  if (!(lo < hi)) {
    lo = std::numeric_limits<double>::infinity();
    hi = -lo;
    for (double v : values)
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    if (!(lo < hi)) { // constant (or empty) data
      lo = std::isfinite(lo) ? lo : 0;
      hi = lo + 1;
    }
  }
  Image image(width * scale, height * scale, 3);
  for (index_t y = 0; y < height; ++y)
    for (index_t x = 0; x < width; ++x) {
      const Rgb c = colormap((values[y * width + x] - lo) / (hi - lo));
      for (index_t dy = 0; dy < scale; ++dy)
        for (index_t dx = 0; dx < scale; ++dx) {
          std::uint8_t *p = image.pixel(x * scale + dx, y * scale + dy);
          p[0] = c.r;
          p[1] = c.g;
          p[2] = c.b;
        }
    }
  return image;
}

namespace {

/// Adds the nonzeros of a CSR matrix placed at (r0, c0) to the counts.
template <class T>
void count_csr(const CsrMatrix<T> &m, index_t r0, index_t c0, SpyCounts &s) {
  const auto rp = m.row_ptr();
  const auto vals = m.values();
  m.visit_columns([&](auto cols) {
    for (index_t r = 0; r < m.rows(); ++r) {
      const index_t cy = (r0 + r) * s.cells_y / s.rows;
      std::int64_t *row = s.counts.data() + cy * s.cells_x;
      for (auto e = rp[r]; e < rp[r + 1]; ++e)
        if (vals[e] != T(0))
          ++row[(c0 + static_cast<index_t>(cols[e])) * s.cells_x / s.cols];
    }
  });
}

} // namespace

template <class T>
SpyCounts spy_counts(const LinearOperator<T> &op, index_t cells_x, index_t cells_y) {
  if (cells_x < 1 || cells_y < 1)
    throw InvalidArgument("spy_counts: the grid must have at least one cell, got " +
                          std::to_string(cells_x) + " x " + std::to_string(cells_y));
  SpyCounts s;
  s.rows = op.rows();
  s.cols = op.cols();
  s.cells_x = std::min(cells_x, std::max<index_t>(1, s.cols));
  s.cells_y = std::min(cells_y, std::max<index_t>(1, s.rows));
  s.counts.assign(static_cast<std::size_t>(s.cells_x * s.cells_y), 0);
  if (s.rows == 0 || s.cols == 0)
    return s;
  if (const auto *csr = stored_csr(op)) {
    count_csr(*csr, 0, 0, s);
  } else if (const auto *structured = capability<BlockStructured<T>>(op)) {
    // Entries at the same block position are summed: count their sum.
    const auto *block = &structured->block_structure();
    const auto entries = block->entries();
    for (std::size_t e = 0; e < entries.size();) {
      std::size_t f = e + 1;
      while (f < entries.size() && entries[f].block_row == entries[e].block_row &&
             entries[f].block_col == entries[e].block_col)
        ++f;
      const index_t r0 = block->row_offset(entries[e].block_row);
      const index_t c0 = block->col_offset(entries[e].block_col);
      if (f - e == 1) {
        count_csr(entries[e].op->to_csr(), r0, c0, s);
      } else {
        std::vector<Triplet<T>> trips;
        for (std::size_t g = e; g < f; ++g) {
          const CsrMatrix<T> m = entries[g].op->to_csr();
          for (index_t r = 0; r < m.rows(); ++r)
            for (auto x = m.row_ptr()[r]; x < m.row_ptr()[r + 1]; ++x)
              trips.push_back({r, m.column(x), m.values()[x]});
        }
        count_csr(CsrMatrix<T>::from_triplets(entries[e].op->rows(),
                                              entries[e].op->cols(), trips),
                  r0, c0, s);
      }
      e = f;
    }
  } else {
    count_csr(op.to_csr(), 0, 0, s);
  }
  return s;
}

template <class T>
Image spy_plot(const LinearOperator<T> &op, const SpyOptions &options,
               std::span<const index_t> row_bounds, std::span<const index_t> col_bounds) {
  if (options.size < 1)
    throw InvalidArgument("spy_plot: size must be at least 1 pixel, got " +
                          std::to_string(options.size));
  const index_t rows = std::max<index_t>(1, op.rows());
  const index_t cols = std::max<index_t>(1, op.cols());
  const index_t longest = std::max(rows, cols);
  const index_t side = std::min(options.size, longest);
  // Pixels per side in proportion to the matrix, at least 1.
  const index_t px = std::max<index_t>(1, (cols * side + longest - 1) / longest);
  const index_t py = std::max<index_t>(1, (rows * side + longest - 1) / longest);
  const SpyCounts s = spy_counts(op, px, py);
  Image image(s.cells_x, s.cells_y, 3, 255);

  // Densities: nonzeros per matrix entry of the cell.
  auto extent = [](index_t cell, index_t cells, index_t n) {
    // Matrix indices i with i * cells / n == cell.
    const index_t lo = (cell * n + cells - 1) / cells;
    const index_t hi = ((cell + 1) * n + cells - 1) / cells;
    return std::max<index_t>(1, hi - lo);
  };
  double dmin = std::numeric_limits<double>::infinity(), dmax = 0;
  std::vector<double> density(s.counts.size(), 0.0);
  for (index_t cy = 0; cy < s.cells_y; ++cy)
    for (index_t cx = 0; cx < s.cells_x; ++cx) {
      const std::int64_t c = s.counts[cy * s.cells_x + cx];
      if (c == 0)
        continue;
      const double d = double(c) / (double(extent(cy, s.cells_y, s.rows)) *
                                    double(extent(cx, s.cells_x, s.cols)));
      density[cy * s.cells_x + cx] = d;
      dmin = std::min(dmin, d);
      dmax = std::max(dmax, d);
    }

  // Block boundaries first (light gray), nonzeros over them.
  std::vector<index_t> rb(row_bounds.begin(), row_bounds.end());
  std::vector<index_t> cb(col_bounds.begin(), col_bounds.end());
  if (rb.empty() && cb.empty())
    if (const auto *structured = capability<BlockStructured<T>>(op)) {
      const auto *block = &structured->block_structure();
      for (index_t i = 1; i < block->row_blocks(); ++i)
        rb.push_back(block->row_offset(i));
      for (index_t j = 1; j < block->col_blocks(); ++j)
        cb.push_back(block->col_offset(j));
    }
  if (options.outline && s.rows > 0 && s.cols > 0) {
    for (index_t b : rb)
      if (b > 0 && b < s.rows) {
        const index_t y = b * s.cells_y / s.rows;
        for (index_t x = 0; x < s.cells_x; ++x)
          std::memset(image.pixel(x, y), 200, 3);
      }
    for (index_t b : cb)
      if (b > 0 && b < s.cols) {
        const index_t x = b * s.cells_x / s.cols;
        for (index_t y = 0; y < s.cells_y; ++y)
          std::memset(image.pixel(x, y), 200, 3);
      }
  }
  const double span = std::log(dmax) - std::log(dmin);
  for (index_t cy = 0; cy < s.cells_y; ++cy)
    for (index_t cx = 0; cx < s.cells_x; ++cx) {
      const double d = density[cy * s.cells_x + cx];
      if (d == 0)
        continue;
      std::uint8_t *p = image.pixel(cx, cy);
      if (!options.density) {
        p[0] = p[1] = p[2] = 0;
        continue;
      }
      // Dense cells dark, sparse cells light (but never the pale end).
      const double t = span > 0 ? (std::log(d) - std::log(dmin)) / span : 1.0;
      const Rgb c = colormap(0.85 * (1 - t));
      p[0] = c.r;
      p[1] = c.g;
      p[2] = c.b;
    }
  return image;
}

template <class T> std::vector<index_t> state_block_bounds(const Model<T> &model) {
  std::vector<index_t> b;
  if (const auto *structured = capability<BlockStructured<T>>(model.A())) {
    const auto *block = &structured->block_structure();
    for (index_t i = 1; i < block->row_blocks(); ++i)
      b.push_back(block->row_offset(i));
    return b;
  }
  for (const auto &sb : model.blocks())
    if (sb.offset > 0)
      b.push_back(sb.offset);
  return b;
}

namespace {
void put(Image &image, index_t x, index_t y, Rgb c) {
  std::uint8_t *p = image.pixel(x, y);
  if (image.channels == 3) {
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  } else {
    p[0] = static_cast<std::uint8_t>((299 * c.r + 587 * c.g + 114 * c.b) / 1000);
  }
}
} // namespace

void fill_rect(Image &image, index_t x0, index_t y0, index_t x1, index_t y1, Rgb colour) {
  x0 = std::max<index_t>(0, x0);
  y0 = std::max<index_t>(0, y0);
  x1 = std::min(image.width, x1);
  y1 = std::min(image.height, y1);
  for (index_t y = y0; y < y1; ++y)
    for (index_t x = x0; x < x1; ++x)
      put(image, x, y, colour);
}

void draw_line(Image &image, index_t x0, index_t y0, index_t x1, index_t y1, Rgb colour) {
  const index_t dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const index_t sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  index_t err = dx + dy;
  for (;;) {
    if (x0 >= 0 && y0 >= 0 && x0 < image.width && y0 < image.height)
      put(image, x0, y0, colour);
    if (x0 == x1 && y0 == y1)
      break;
    const index_t e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

ChartFrame chart_frame(index_t width, index_t height) {
  const index_t m = std::max<index_t>(2, std::min(width, height) / 10);
  return {m, m, width - m, height - m};
}

namespace {

Image chart_canvas(index_t width, index_t height, const char *who) {
  if (width < 20 || height < 20)
    throw InvalidArgument(std::string(who) +
                          ": the image must be at least 20 x 20 pixels");
  return Image(width, height, 3, 255);
}

void chart_axes(Image &img, const ChartFrame &f) {
  const Rgb black{0, 0, 0};
  draw_line(img, f.left - 1, f.top, f.left - 1, f.bottom, black);
  draw_line(img, f.left - 1, f.bottom, f.right, f.bottom, black);
}

} // namespace

Image line_chart(std::span<const ChartSeries> series, index_t width, index_t height) {
  Image img = chart_canvas(width, height, "line_chart");
  double xlo = 1e300, xhi = -1e300, ylo = 1e300, yhi = -1e300;
  for (std::size_t s = 0; s < series.size(); ++s) {
    const auto &c = series[s];
    if (c.x.size() != c.y.size())
      throw InvalidArgument("line_chart: series " + std::to_string(s + 1) + " has " +
                            std::to_string(c.x.size()) + " x and " +
                            std::to_string(c.y.size()) + " y values");
    for (std::size_t k = 0; k < c.x.size(); ++k) {
      if (!std::isfinite(c.x[k]) || !std::isfinite(c.y[k]))
        throw InvalidArgument("line_chart: series " + std::to_string(s + 1) + " point " +
                              std::to_string(k + 1) + " is not finite");
      xlo = std::min(xlo, c.x[k]);
      xhi = std::max(xhi, c.x[k]);
      ylo = std::min(ylo, c.y[k]);
      yhi = std::max(yhi, c.y[k]);
    }
  }
  const ChartFrame f = chart_frame(width, height);
  if (xlo > xhi) {
    chart_axes(img, f);
    return img;
  }
  auto widen = [](double &lo, double &hi) {
    if (hi == lo) {
      lo -= 1;
      hi += 1;
    } else {
      const double d = 0.05 * (hi - lo);
      lo -= d;
      hi += d;
    }
  };
  widen(xlo, xhi);
  widen(ylo, yhi);
  const Rgb grid{220, 220, 220};
  for (int k = 1; k < 5; ++k) {
    const index_t x = f.left + (f.right - f.left) * k / 5;
    const index_t y = f.top + (f.bottom - f.top) * k / 5;
    draw_line(img, x, f.top, x, f.bottom - 1, grid);
    draw_line(img, f.left, y, f.right - 1, y, grid);
  }
  chart_axes(img, f);
  auto px = [&](double x) {
    return f.left + static_cast<index_t>(std::lround((x - xlo) / (xhi - xlo) *
                                                     double(f.right - 1 - f.left)));
  };
  auto py = [&](double y) {
    return f.bottom - 1 -
           static_cast<index_t>(
               std::lround((y - ylo) / (yhi - ylo) * double(f.bottom - 1 - f.top)));
  };
  for (const auto &c : series) {
    for (std::size_t k = 0; k + 1 < c.x.size(); ++k)
      draw_line(img, px(c.x[k]), py(c.y[k]), px(c.x[k + 1]), py(c.y[k + 1]), c.colour);
    for (std::size_t k = 0; k < c.x.size(); ++k)
      fill_rect(img, px(c.x[k]) - 2, py(c.y[k]) - 2, px(c.x[k]) + 3, py(c.y[k]) + 3,
                c.colour);
  }
  return img;
}

Image bar_chart(std::span<const double> values, std::span<const double> marks,
                index_t width, index_t height, Rgb colour) {
  Image img = chart_canvas(width, height, "bar_chart");
  if (values.empty())
    throw InvalidArgument("bar_chart: no value");
  if (!marks.empty() && marks.size() != values.size())
    throw InvalidArgument("bar_chart: " + std::to_string(marks.size()) + " marks for " +
                          std::to_string(values.size()) + " bars");
  double top = 0;
  for (const auto *v : {&values, &marks})
    for (std::size_t k = 0; k < v->size(); ++k) {
      const double x = (*v)[k];
      if (!std::isfinite(x) || x < 0)
        throw InvalidArgument(std::string("bar_chart: ") +
                              (v == &values ? "value " : "mark ") +
                              std::to_string(k + 1) + " (" + format_number(x, 6) +
                              ") must be finite and >= 0");
      top = std::max(top, x);
    }
  if (top == 0)
    top = 1;
  const ChartFrame f = chart_frame(width, height);
  const index_t n = static_cast<index_t>(values.size());
  const index_t w = std::max<index_t>(1, (f.right - f.left) / n), gap = w >= 3 ? 1 : 0;
  const double ph = double(f.bottom - f.top);
  for (index_t k = 0; k < n; ++k) {
    const index_t x0 = f.left + k * w, x1 = x0 + w - gap;
    const index_t h = static_cast<index_t>(std::lround(values[k] / top * ph));
    fill_rect(img, x0, f.bottom - h, std::min(x1, f.right), f.bottom, colour);
    if (!marks.empty() && marks[k] > 0) {
      const index_t m = static_cast<index_t>(std::lround(marks[k] / top * ph));
      fill_rect(img, x0, f.bottom - m - 1, std::min(x1, f.right), f.bottom - m + 1,
                Rgb{220, 30, 30});
    }
  }
  chart_axes(img, f);
  return img;
}

template SpyCounts spy_counts(const LinearOperator<float> &, index_t, index_t);
template SpyCounts spy_counts(const LinearOperator<double> &, index_t, index_t);
template Image spy_plot(const LinearOperator<float> &, const SpyOptions &,
                        std::span<const index_t>, std::span<const index_t>);
template Image spy_plot(const LinearOperator<double> &, const SpyOptions &,
                        std::span<const index_t>, std::span<const index_t>);
template std::vector<index_t> state_block_bounds(const Model<float> &);
template std::vector<index_t> state_block_bounds(const Model<double> &);

} // namespace tacit::inline v1
