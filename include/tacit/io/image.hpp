#pragma once
/// \file image.hpp
/// Raster images for figures: PNG files (libpng, written atomically), a
/// perceptual colour map, heat maps of value arrays and spy plots of the
/// sparsity pattern of an operator.
///
/// Thread safety: the functions are reentrant; an Image is a value (one writer
/// at a time).

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>

namespace tacit::inline v1 {

/// An 8-bit image, row-major from the top-left pixel, channels interleaved
/// (1 = gray, 3 = RGB).
struct TACIT_EXPORT Image {
  index_t width = 0;
  index_t height = 0;
  int channels = 1;
  std::vector<std::uint8_t> pixels; ///< width * height * channels bytes

  Image() = default;
  /// A width x height image filled with `fill` in every channel.
  /// \throws InvalidArgument for negative sizes or channels other than 1, 3.
  Image(index_t width, index_t height, int channels, std::uint8_t fill = 0);

  std::uint8_t *pixel(index_t x, index_t y) {
    return pixels.data() + (y * width + x) * channels;
  }
  const std::uint8_t *pixel(index_t x, index_t y) const {
    return pixels.data() + (y * width + x) * channels;
  }
};

struct TACIT_EXPORT Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb &, const Rgb &) = default;
};

/// Writes an 8-bit gray or RGB PNG, atomically (temporary file in the same
/// directory, then rename). \throws FileError naming the file;
/// InvalidArgument for an inconsistent image (pixel count, channels, empty).
TACIT_EXPORT void write_png(const std::filesystem::path &path, const Image &image);

/// Reads an 8-bit gray or RGB PNG (other formats are converted to 8-bit gray
/// or RGB: palette and gray+alpha / RGBA lose their alpha).
/// \throws FileError naming the file and the problem.
TACIT_EXPORT Image read_png(const std::filesystem::path &path);

/// A perceptually uniform sequential colour map (dark blue - teal - green -
/// yellow, the shape of matplotlib's viridis, from 9 anchor colours
/// interpolated linearly) at t in [0, 1] (clamped; NaN maps to 0).
TACIT_EXPORT Rgb colormap(double t);

/// Heat map of `values` laid out as `height` rows of `width` values, scaled
/// linearly from [lo, hi] to the colour map (lo >= hi: the data's min and
/// max), each value drawn as a scale x scale square.
/// \throws InvalidArgument when values.size() != width * height or scale < 1.
TACIT_EXPORT Image heat_map(std::span<const double> values, index_t width, index_t height,
                            double lo = 0, double hi = 0, index_t scale = 1);

/// Fills the pixels x0 <= x < x1, y0 <= y < y1 (clipped to the image).
TACIT_EXPORT void fill_rect(Image &image, index_t x0, index_t y0, index_t x1, index_t y1,
                            Rgb colour);
/// A 1-pixel line from (x0, y0) to (x1, y1), both ends drawn (Bresenham;
/// pixels outside the image are skipped).
TACIT_EXPORT void draw_line(Image &image, index_t x0, index_t y0, index_t x1, index_t y1,
                            Rgb colour);

/// The plot area of a chart: a white RGB width x height image with a margin
/// of m = max(2, min(width, height) / 10) pixels on every side; the plot
/// area is x in [m, width - m), y in [m, height - m), framed by black axes
/// on its left (x = m - 1) and bottom (y = height - m) edges.
struct TACIT_EXPORT ChartFrame {
  index_t left = 0, top = 0, right = 0, bottom = 0; ///< [left, right) x [top, bottom)
};
/// The frame of a width x height chart (see ChartFrame).
TACIT_EXPORT ChartFrame chart_frame(index_t width, index_t height);

/// One series of a line chart: points (x[k], y[k]) joined in order, each
/// point a 5 x 5 square.
struct TACIT_EXPORT ChartSeries {
  std::vector<double> x, y;
  Rgb colour;
};

/// A line chart of the series (no text: the caller's report gives the
/// numbers). The data range of all series, widened by 5% on each side (or
/// by 1 when it is a single value), maps linearly onto the plot area; light
/// gray grid lines at 5 even divisions. \throws InvalidArgument on a series
/// whose x and y differ in length, a non-finite value, or width/height < 20.
TACIT_EXPORT Image line_chart(std::span<const ChartSeries> series, index_t width,
                              index_t height);

/// A bar chart: bar k of values[k] >= 0 fills the columns
/// [left + k w, left + (k + 1) w - g) (w = max(1, plot width / n), gap g =
/// 1 when w >= 3, else 0) from the bottom of the plot area up to
/// round(values[k] / top * plot height) rows, top = the largest value of
/// `values` and `marks` (1 when all are 0), in `colour`. `marks` (empty or
/// one per bar, e.g. the true values) are drawn as red horizontal ticks 2
/// pixels high across the bar's columns at their heights (a zero mark is
/// not drawn).
/// \throws InvalidArgument on a negative or non-finite value, a marks size
/// other than 0 or n, no value, or width/height < 20.
TACIT_EXPORT Image bar_chart(std::span<const double> values,
                             std::span<const double> marks, index_t width, index_t height,
                             Rgb colour = {40, 90, 160});

/// Options of a spy plot.
struct TACIT_EXPORT SpyOptions {
  /// Size in pixels of the longer side (the shorter follows the aspect
  /// ratio; at most one pixel per row/column).
  index_t size = 512;
  /// Colour cells by log density (nonzeros / cell area) rather than by
  /// presence only.
  bool density = true;
  /// Outline block boundaries (rows and columns of the partition).
  bool outline = true;
};

/// Nonzero counts per cell of a grid over an operator (rows of the grid
/// are bands of matrix rows): counts[cy * cells_x + cx].
struct TACIT_EXPORT SpyCounts {
  index_t cells_x = 0, cells_y = 0;
  index_t rows = 0, cols = 0;
  std::vector<std::int64_t> counts;
};

/// Counts the stored nonzeros (nonzero values) of `op` per cell. CSR is
/// streamed row by row; a structured BlockOperator block by block (each
/// block materialised on its own); other operators through to_csr().
template <class T>
TACIT_EXPORT SpyCounts spy_counts(const LinearOperator<T> &op, index_t cells_x,
                                  index_t cells_y);

/// Spy plot: white background, cells with nonzeros coloured by density
/// (colour map, log scale) or black, and gray lines at the boundaries
/// `row_bounds` / `col_bounds` (matrix indices; empty: those of a
/// BlockOperator, if op is one).
template <class T>
TACIT_EXPORT Image spy_plot(const LinearOperator<T> &op, const SpyOptions &options = {},
                            std::span<const index_t> row_bounds = {},
                            std::span<const index_t> col_bounds = {});

/// Block boundaries of a model's A: the BlockOperator partition when A is
/// one, else the offsets of the model's state blocks.
template <class T>
TACIT_EXPORT std::vector<index_t> state_block_bounds(const Model<T> &model);

} // namespace tacit::inline v1
