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

#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/core/export.hpp>

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
TACIT_EXPORT SpyCounts spy_counts(const LinearOperator<T> &op, index_t cells_x, index_t cells_y);

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
template <class T> TACIT_EXPORT std::vector<index_t> state_block_bounds(const Model<T> &model);

} // namespace tacit::inline v1
