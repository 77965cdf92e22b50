#pragma once
/// \file idx.hpp
/// IDX files (the format of MNIST and Fashion-MNIST), plain or gzip-compressed.
///
/// An IDX file is a 4-byte magic `00 00 TT DD` (TT the element type, DD the
/// number of dimensions), DD big-endian u32 dimensions, then the elements in
/// row-major order, big-endian. Images are a 3-D array count x rows x cols of
/// unsigned bytes; labels a 1-D array of unsigned bytes.
///
/// Files are read through zlib (gzopen/gzread), which reads gzip-compressed
/// and uncompressed files alike. Data is read in chunks as it arrives, so a
/// header announcing more elements than the file holds makes the reader fail
/// with "truncated" before allocating more than the file backs.
///
/// Thread safety: the readers are reentrant; the data sets they return are
/// values.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include <tacit/core/dense.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

/// Element types of IDX files (the third byte of the magic).
enum class IdxType : std::uint8_t {
  u8 = 0x08,
  i8 = 0x09,
  i16 = 0x0B,
  i32 = 0x0C,
  f32 = 0x0D,
  f64 = 0x0E
};

/// Bytes per element of an IDX type.
TACIT_EXPORT int idx_element_bytes(IdxType type) noexcept;

/// The content of an IDX file: its type, its dimensions and its elements as
/// stored (big-endian bytes).
struct TACIT_EXPORT IdxArray {
  IdxType type = IdxType::u8;
  std::vector<index_t> dims;
  std::vector<std::uint8_t> bytes;
  /// Number of elements (product of dims).
  index_t size() const noexcept;
};

/// Reads an IDX file. With `max_items` >= 0, reads at most that many items
/// along the first dimension (dims[0] is then min(dims[0], max_items)) and
/// ignores the rest of the file; otherwise reads the whole file and rejects
/// bytes after the last element.
/// \throws FileError naming the file and what is wrong: cannot open, bad magic
/// (non-zero first bytes, unknown type, no dimensions), a size too large to
/// address, truncation (how many bytes were expected and how many were read),
/// trailing bytes, or a gzip decompression error.
TACIT_EXPORT IdxArray read_idx(const std::filesystem::path &path, index_t max_items = -1);

/// Images of an IDX file of unsigned bytes (count x rows x cols), at most
/// `max_items` of them (all when negative), as a batch with one image per
/// column: rows*cols values in row-major pixel order (PyTorch's flatten of a
/// 1 x rows x cols image), each byte scaled by 1/255 into [0, 1].
/// \throws FileError as read_idx, or when the file does not hold 3-D unsigned
/// bytes.
template <class T> struct TACIT_EXPORT IdxImages {
  Batch<T> images; ///< (rows*cols) x count
  index_t height = 0, width = 0;
};
template <class T>
TACIT_EXPORT IdxImages<T> read_idx_images(const std::filesystem::path &path, index_t max_items = -1);

/// Labels of an IDX file of unsigned bytes (1-D), at most `max_items`.
/// \throws FileError as read_idx, or when the file does not hold 1-D unsigned
/// bytes.
TACIT_EXPORT std::vector<int> read_idx_labels(const std::filesystem::path &path,
                                 index_t max_items = -1);

/// A labelled image set: images and labels of the same count.
template <class T> struct TACIT_EXPORT LabelledImages {
  Batch<T> images; ///< (height*width) x count, values in [0, 1]
  std::vector<int> labels;
  index_t height = 0, width = 0;
};

/// Reads an image file and its label file (at most `max_items` of each).
/// \throws FileError as above, or naming both files when their counts differ.
template <class T>
TACIT_EXPORT LabelledImages<T> read_idx_dataset(const std::filesystem::path &images,
                                   const std::filesystem::path &labels,
                                   index_t max_items = -1);

/// The directory of the Fashion-MNIST files (train-images-idx3-ubyte.gz,
/// train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
/// t10k-labels-idx1-ubyte.gz): $TACIT_FASHION_MNIST_DIR when set, else
/// /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).
/// Empty when the directory does not hold the four files.
TACIT_EXPORT std::optional<std::filesystem::path> fashion_mnist_directory();

} // namespace tacit::inline v1
