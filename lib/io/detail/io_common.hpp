#pragma once
// Private helpers shared by the file readers and writers (lib/io/matrix_market.cpp,
// lib/io/model_files.cpp, lib/io/native_format.cpp).
//
// read_whole_file and AtomicFile carry TACIT_EXPORT: the component libraries
// (onnx, image) call them in libtacit_core. They are not public API.

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <tacit/core/error.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1::detail {

/// A whole file held in memory (not zero-initialised, unlike std::string).
struct FileBuffer {
  std::unique_ptr<char[]> data;
  std::size_t size = 0;
  std::string_view view() const noexcept { return {data.get(), size}; }
};

/// Size of the blocks through which read_matrix_market streams a file
/// (64 MiB; tests lower it to exercise block boundaries).
extern std::size_t matrix_market_block_bytes;

/// Rows or columns a Matrix Market file may declare whatever its size (2^26;
/// beyond it, at most 16 per byte of the file). Fuzzers lower it so that
/// inputs declaring millions of empty rows do not slow them down.
extern std::int64_t matrix_market_base_dimension_limit;

/// Whether save_model_directory replaces an existing directory by an atomic
/// exchange (renameat2 RENAME_EXCHANGE) when the file system supports it;
/// tests turn it off to exercise the three-rename fallback.
extern bool replace_directory_by_exchange;

/// A file opened for reading (closed by the destructor), with its status:
/// the one place where a reader opens a file.
class InputFile {
public:
  /// \throws FileError naming the file: "cannot open: <reason>", "cannot
  /// stat: <reason>".
  explicit InputFile(const std::filesystem::path &path);
  ~InputFile();
  InputFile(const InputFile &) = delete;
  InputFile &operator=(const InputFile &) = delete;

  int fd() const noexcept { return fd_; }
  /// The path as error messages name it.
  const std::string &name() const noexcept { return name_; }
  bool regular() const noexcept { return regular_; }
  bool directory() const noexcept { return directory_; }
  /// Bytes of a regular file.
  std::uint64_t size() const noexcept { return size_; }

private:
  std::string name_;
  int fd_ = -1;
  bool regular_ = false, directory_ = false;
  std::uint64_t size_ = 0;
};

/// Reads a whole regular file. \throws FileError if it cannot be opened or
/// read, or is a directory.
TACIT_EXPORT FileBuffer read_whole_file(const std::filesystem::path &path);

/// Text for an error message about `path`: the path as given.
inline std::string display_name(const std::filesystem::path &path) {
  return path.string();
}

/// Quotes a piece of untrusted text for an error message: at most `limit`
/// characters, non-printable bytes escaped as \xNN.
std::string quote_text(std::string_view text, std::size_t limit = 40);

/// A file written atomically: content goes to a temporary file in the
/// destination's directory, which commit() flushes to disk (fsync) and renames
/// over the destination. If commit() is not reached (an exception), the
/// destructor removes the temporary file, leaving the destination untouched.
class TACIT_EXPORT AtomicFile {
public:
  /// Creates the temporary file. \throws FileError naming the destination.
  explicit AtomicFile(std::filesystem::path destination);
  ~AtomicFile();
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;

  void write(const void *data, std::size_t size);
  void write(std::string_view text) { write(text.data(), text.size()); }
  /// Buffer to append formatted text to; call flush_if_large() now and then.
  std::string &buffer() noexcept { return buffer_; }
  void flush_if_large() {
    if (buffer_.size() >= (std::size_t{1} << 20))
      flush();
  }
  /// Writes the buffer, fsyncs, closes and renames into place.
  void commit();
  const std::filesystem::path &destination() const noexcept { return destination_; }

private:
  void flush();
  void write_raw(const char *data, std::size_t size);
  [[noreturn]] void fail(const std::string &what, int err);

  std::filesystem::path destination_, temp_;
  int fd_ = -1;
  std::string buffer_;
  bool committed_ = false;
};

/// Appends the shortest decimal text that reads back to exactly `v`.
template <class T> inline void append_value(std::string &out, T v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

/// Appends a decimal integer.
inline void append_integer(std::string &out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

/// Outcome of parsing a number token.
enum class NumberStatus { ok, not_a_number, out_of_range, non_finite };

/// Parses the whole of [begin, end) as a value of type T (a leading '+' is
/// accepted). Values too small for T round to zero or a subnormal (as strtod
/// does); values too large are out_of_range; "nan"/"inf" are non_finite.
template <class T>
inline NumberStatus parse_real(const char *begin, const char *end, T &value) {
  if (begin != end && *begin == '+' && end - begin > 1 && begin[1] != '-')
    ++begin;
  auto r = std::from_chars(begin, end, value);
  if (r.ec == std::errc::result_out_of_range && r.ptr == end) {
    // Overflow or underflow: decide with the wider long double.
    long double wide = 0;
    const auto r2 = std::from_chars(begin, end, wide);
    if (r2.ec != std::errc() || r2.ptr != end)
      return NumberStatus::out_of_range;
    value = static_cast<T>(wide);
    return std::isfinite(value) ? NumberStatus::ok : NumberStatus::out_of_range;
  }
  if (r.ec != std::errc() || r.ptr != end)
    return NumberStatus::not_a_number;
  if (!std::isfinite(value))
    return NumberStatus::non_finite;
  return NumberStatus::ok;
}

/// Parses the whole of [begin, end) as a decimal integer (leading '+' accepted).
inline NumberStatus parse_integer(const char *begin, const char *end,
                                  std::int64_t &value) {
  if (begin != end && *begin == '+' && end - begin > 1 && begin[1] != '-')
    ++begin;
  const auto r = std::from_chars(begin, end, value);
  if (r.ec == std::errc::result_out_of_range && r.ptr == end)
    return NumberStatus::out_of_range;
  if (r.ec != std::errc() || r.ptr != end)
    return NumberStatus::not_a_number;
  return NumberStatus::ok;
}

/// "float" or "double".
template <class T> constexpr const char *type_name() {
  return std::is_same_v<T, float> ? "float" : "double";
}

inline bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/// Reads [text] as lines of numbers: blank lines and lines whose first
/// non-blank character is '#' are skipped; numbers are separated by blanks or
/// by one comma (with optional blanks around it); every other line must hold
/// exactly `per_line` numbers. Values are appended to `out` line after line.
/// \returns the number of non-skipped lines. \throws FileError naming the line
/// and column (1-based) of the problem. `what` names one line's content in
/// messages ("vector", "value").
template <class T>
std::int64_t parse_number_lines(std::string_view text, const std::string &name,
                                std::int64_t per_line, const char *what,
                                std::vector<T> &out);

} // namespace tacit::inline v1::detail
