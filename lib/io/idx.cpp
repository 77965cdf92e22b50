// IDX files (MNIST / Fashion-MNIST), plain or gzip-compressed, read through
// zlib's gzread (which passes uncompressed files through unchanged).
//
// Elements are read in chunks of at most 1 MiB and the buffer grows with the
// data actually read, so a header announcing a huge array costs nothing until
// the file really holds that much.

#include <tacit/io/idx.hpp>

#include <tacit/core/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include <zlib.h>

namespace fs = std::filesystem;

namespace tacit::inline v1 {

namespace {

constexpr std::size_t chunk_bytes = std::size_t{1} << 20;

/// An open gzFile, closed at scope end.
class GzReader {
public:
  explicit GzReader(const fs::path &path) : name_(path.string()) {
    std::error_code ec;
    if (fs::is_directory(path, ec))
      throw FileError(name_, 0, "is a directory, expected an IDX file");
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (!file_)
      throw FileError(name_, 0,
                      std::string("cannot open: ") +
                          (errno ? std::strerror(errno) : "out of memory"));
    gzbuffer(file_, 1u << 17);
  }
  ~GzReader() {
    if (file_)
      gzclose_r(file_);
  }
  GzReader(const GzReader &) = delete;
  GzReader &operator=(const GzReader &) = delete;

  /// Reads up to `size` bytes; returns the count read (less only at the end
  /// of the data). \throws FileError on a read or decompression error.
  std::size_t read(void *data, std::size_t size) {
    auto *out = static_cast<unsigned char *>(data);
    std::size_t total = 0;
    while (total < size) {
      const auto want = static_cast<unsigned>(std::min(size - total, chunk_bytes));
      const int got = gzread(file_, out + total, want);
      if (got < 0)
        fail();
      if (got == 0)
        break;
      total += static_cast<std::size_t>(got);
    }
    // A gzip stream cut short reads as end of data with an error pending.
    int errnum = Z_OK;
    gzerror(file_, &errnum);
    if (errnum != Z_OK)
      fail();
    return total;
  }

  const std::string &name() const noexcept { return name_; }

private:
  [[noreturn]] void fail() {
    int errnum = Z_OK;
    const char *text = gzerror(file_, &errnum);
    std::string what = errnum == Z_ERRNO ? std::string(std::strerror(errno))
                                         : std::string(text ? text : "unknown error");
    if (errnum == Z_BUF_ERROR)
      what = "truncated gzip data (" + what + ")";
    else if (errnum == Z_DATA_ERROR)
      what = "corrupt gzip data (" + what + ")";
    throw FileError(name_, 0, "read error: " + what);
  }

  std::string name_;
  gzFile file_ = nullptr;
};

const char *type_name(IdxType t) {
  switch (t) {
  case IdxType::u8:
    return "unsigned byte";
  case IdxType::i8:
    return "signed byte";
  case IdxType::i16:
    return "int16";
  case IdxType::i32:
    return "int32";
  case IdxType::f32:
    return "float32";
  case IdxType::f64:
    return "float64";
  }
  return "unknown";
}

bool valid_type(std::uint8_t t) {
  return t == 0x08 || t == 0x09 || t == 0x0B || t == 0x0C || t == 0x0D || t == 0x0E;
}

std::string hex_byte(unsigned v) {
  const char *digits = "0123456789abcdef";
  return std::string("0x") + digits[(v >> 4) & 15] + digits[v & 15];
}

std::string dims_text(const std::vector<index_t> &dims) {
  std::string s;
  for (std::size_t i = 0; i < dims.size(); ++i)
    s += (i ? " x " : "") + std::to_string(dims[i]);
  return s;
}

} // namespace

int idx_element_bytes(IdxType type) noexcept {
  switch (type) {
  case IdxType::u8:
  case IdxType::i8:
    return 1;
  case IdxType::i16:
    return 2;
  case IdxType::i32:
  case IdxType::f32:
    return 4;
  case IdxType::f64:
    return 8;
  }
  return 0;
}

index_t IdxArray::size() const noexcept {
  index_t n = 1;
  for (index_t d : dims)
    n *= d;
  return n;
}

IdxArray read_idx(const fs::path &path, index_t max_items) {
  GzReader in(path);
  const std::string &name = in.name();
  unsigned char magic[4];
  const std::size_t got_magic = in.read(magic, 4);
  if (got_magic < 4)
    throw FileError(name, 0,
                    "truncated: " + std::to_string(got_magic) +
                        " bytes, an IDX file starts with a 4-byte magic number");
  if (magic[0] != 0 || magic[1] != 0)
    throw FileError(name, 0,
                    "bad magic number " + hex_byte(magic[0]) + " " + hex_byte(magic[1]) +
                        " " + hex_byte(magic[2]) + " " + hex_byte(magic[3]) +
                        ": an IDX file starts with two zero bytes (not an IDX file?)");
  if (!valid_type(magic[2]))
    throw FileError(name, 0,
                    "bad magic number: unknown element type " + hex_byte(magic[2]) +
                        " (expected 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e)");
  if (magic[3] == 0)
    throw FileError(name, 0, "bad magic number: zero dimensions");
  IdxArray a;
  a.type = static_cast<IdxType>(magic[2]);
  const int rank = magic[3];
  std::vector<unsigned char> header(static_cast<std::size_t>(rank) * 4);
  const std::size_t got_header = in.read(header.data(), header.size());
  if (got_header < header.size())
    throw FileError(name, 0,
                    "truncated header: " + std::to_string(rank) + " dimensions need " +
                        std::to_string(header.size()) + " bytes after the magic, " +
                        std::to_string(got_header) + " present");
  const auto element = static_cast<std::uint64_t>(idx_element_bytes(a.type));
  std::uint64_t count = 1;
  constexpr std::uint64_t limit = std::uint64_t{1} << 50;
  for (int d = 0; d < rank; ++d) {
    const unsigned char *p = header.data() + 4 * d;
    const std::uint64_t v = (std::uint64_t{p[0]} << 24) | (std::uint64_t{p[1]} << 16) |
                            (std::uint64_t{p[2]} << 8) | std::uint64_t{p[3]};
    a.dims.push_back(static_cast<index_t>(v));
    if (v != 0 && count > limit / v)
      throw FileError(name, 0,
                      "dimensions " + dims_text(a.dims) + "...: too many elements");
    count *= v;
  }
  if (count > limit / element)
    throw FileError(name, 0, "dimensions " + dims_text(a.dims) + ": too many elements");
  const std::uint64_t declared = count * element;
  if (max_items >= 0 &&
      static_cast<std::uint64_t>(max_items) < std::uint64_t(a.dims[0])) {
    const std::uint64_t per_item = a.dims[0] == 0 ? 0 : count / std::uint64_t(a.dims[0]);
    a.dims[0] = max_items;
    count = per_item * static_cast<std::uint64_t>(max_items);
  }
  const std::uint64_t wanted = count * element;
  // Grow with the data actually present.
  std::uint64_t have = 0;
  while (have < wanted) {
    const auto step = static_cast<std::size_t>(std::min<std::uint64_t>(
        wanted - have, std::max<std::uint64_t>(chunk_bytes, have)));
    a.bytes.resize(static_cast<std::size_t>(have) + step);
    const std::size_t got = in.read(a.bytes.data() + have, step);
    have += got;
    if (got < step)
      break;
  }
  if (have < wanted)
    throw FileError(name, 0,
                    "truncated data: " + std::string(type_name(a.type)) + " array " +
                        dims_text(a.dims) + " needs " + std::to_string(wanted) +
                        " bytes after the header, " + std::to_string(have) + " present");
  if (wanted == declared) {
    unsigned char extra[64];
    const std::size_t more = in.read(extra, sizeof extra);
    if (more > 0)
      throw FileError(name, 0,
                      "trailing bytes after the " + std::string(type_name(a.type)) +
                          " array " + dims_text(a.dims) + " (" +
                          std::to_string(declared) + " data bytes expected)");
  }
  return a;
}

template <class T> IdxImages<T> read_idx_images(const fs::path &path, index_t max_items) {
  IdxArray a = read_idx(path, max_items);
  if (a.type != IdxType::u8 || a.dims.size() != 3)
    throw FileError(path.string(), 0,
                    "expected images (a 3-D unsigned byte array count x rows x cols), "
                    "found a " +
                        std::string(type_name(a.type)) + " array " + dims_text(a.dims));
  IdxImages<T> out;
  out.height = a.dims[1];
  out.width = a.dims[2];
  const index_t pixels = out.height * out.width;
  const index_t count = a.dims[0];
  out.images = Batch<T>(pixels, count);
  const T scale = T(1) / T(255);
  for (index_t s = 0; s < out.images.slab_count(); ++s) {
    MatrixView<T> v = out.images.slab(s);
    const index_t first = s * out.images.slab_width();
    for (index_t j = 0; j < v.cols; ++j) {
      const std::uint8_t *src = a.bytes.data() + (first + j) * pixels;
      for (index_t i = 0; i < pixels; ++i)
        v(i, j) = T(src[i]) * scale;
    }
  }
  return out;
}

std::vector<int> read_idx_labels(const fs::path &path, index_t max_items) {
  IdxArray a = read_idx(path, max_items);
  if (a.type != IdxType::u8 || a.dims.size() != 1)
    throw FileError(path.string(), 0,
                    "expected labels (a 1-D unsigned byte array), found a " +
                        std::string(type_name(a.type)) + " array " + dims_text(a.dims));
  return std::vector<int>(a.bytes.begin(), a.bytes.end());
}

template <class T>
LabelledImages<T> read_idx_dataset(const fs::path &images, const fs::path &labels,
                                   index_t max_items) {
  auto im = read_idx_images<T>(images, max_items);
  auto lb = read_idx_labels(labels, max_items);
  if (static_cast<index_t>(lb.size()) != im.images.cols())
    throw FileError(labels.string(), 0,
                    std::to_string(lb.size()) + " labels for " +
                        std::to_string(im.images.cols()) + " images in " +
                        images.string());
  return {std::move(im.images), std::move(lb), im.height, im.width};
}

std::optional<fs::path> fashion_mnist_directory() {
  fs::path dir = "/usr/share/datasets/fashion-mnist";
  if (const char *env = std::getenv("TACIT_FASHION_MNIST_DIR"); env && *env)
    dir = env;
  std::error_code ec;
  for (const char *f : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    if (!fs::is_regular_file(dir / f, ec))
      return std::nullopt;
  return dir;
}

template struct IdxImages<float>;
template struct IdxImages<double>;
template IdxImages<float> read_idx_images<float>(const fs::path &, index_t);
template IdxImages<double> read_idx_images<double>(const fs::path &, index_t);
template LabelledImages<float> read_idx_dataset<float>(const fs::path &, const fs::path &,
                                                       index_t);
template LabelledImages<double> read_idx_dataset<double>(const fs::path &,
                                                         const fs::path &, index_t);

} // namespace tacit::inline v1
