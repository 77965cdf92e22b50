// Matrix Market reader and writer.
//
// The reader streams a file through a bounded buffer (blocks of whole lines)
// and parses it with std::from_chars. The entries of a coordinate file are
// parsed in chunks of whole lines (in parallel for large files); every chunk
// stops at its first problem, and the problems are then resolved in file
// order, so results and messages do not depend on the chunking. Entries are
// held with 32-bit indices when the dimensions allow. Error paths that need
// to point back at earlier lines (duplicates, one entry too many) read the
// file again. Entries are bucketed by row (a stable counting
// sort), rows are sorted by column only when the file was not, and duplicates
// are detected on the sorted rows.

#include <tacit/io/io.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>

#include <fcntl.h>
#include <string.h> // memrchr
#include <sys/stat.h>
#include <unistd.h>

#include <tbb/parallel_for.h>

#include "io/detail/io_common.hpp"

namespace tacit::inline v1 {

namespace detail {
std::size_t matrix_market_block_bytes = std::size_t{64} << 20;
std::int64_t matrix_market_base_dimension_limit = std::int64_t{1} << 26;
} // namespace detail

namespace {

using detail::is_blank;
using detail::NumberStatus;
using detail::quote_text;

enum class Field { real, integer, pattern };
enum class Symmetry { general, symmetric, skew };

struct Header {
  MatrixMarketFormat format = MatrixMarketFormat::coordinate;
  Field field = Field::real;
  Symmetry symmetry = Symmetry::general;
  std::int64_t rows = 0, cols = 0;
  /// Coordinate: declared entries. Array: values stored in the file.
  std::int64_t entries = 0;
  std::int64_t size_line = 0;  ///< line number of the size line
  std::size_t body_offset = 0; ///< byte offset of the line after it
  std::int64_t body_line = 0;  ///< line number of that line
};

[[noreturn]] void fail(const std::string &name, std::int64_t line,
                       const std::string &what) {
  throw FileError(name, line, what);
}

std::string entry_name(std::int64_t i, std::int64_t j) {
  std::string r(1, '(');
  r += std::to_string(i);
  r += ", ";
  r += std::to_string(j);
  r += ')';
  return r;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto &c : r)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return r;
}

/// Splits a line into blank-separated tokens (at most `limit`; the count goes
/// on past it).
struct Tokens {
  std::string_view token[6];
  int count = 0;
};
Tokens split(std::string_view line) {
  Tokens t;
  std::size_t i = 0;
  while (true) {
    while (i < line.size() && is_blank(line[i]))
      ++i;
    if (i == line.size())
      break;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i]))
      ++i;
    if (t.count < 6)
      t.token[t.count] = line.substr(start, i - start);
    ++t.count;
  }
  return t;
}

bool is_skippable(std::string_view line) {
  for (char c : line) {
    if (c == '%')
      return true;
    if (!is_blank(c))
      return false;
  }
  return true;
}

/// Iterates over the lines of a text from a byte offset.
class LineReader {
public:
  LineReader(std::string_view text, std::size_t offset, std::int64_t first_line)
      : text_(text), pos_(offset), line_(first_line - 1) {}
  bool next(std::string_view &line) {
    if (pos_ >= text_.size())
      return false;
    const char *begin = text_.data() + pos_;
    const void *nl = std::memchr(begin, '\n', text_.size() - pos_);
    const std::size_t len =
        nl ? static_cast<std::size_t>(static_cast<const char *>(nl) - begin)
           : text_.size() - pos_;
    line = std::string_view(begin, len);
    pos_ += len + 1;
    ++line_;
    return true;
  }
  std::int64_t line() const noexcept { return line_; }
  std::size_t offset() const noexcept { return std::min(pos_, text_.size()); }

private:
  std::string_view text_;
  std::size_t pos_;
  std::int64_t line_;
};

constexpr const char *banner_form =
    "'%%MatrixMarket matrix <coordinate|array> <real|integer|pattern> "
    "<general|symmetric|skew-symmetric>'";

std::int64_t max_dimension(std::uint64_t file_bytes) {
  const auto by_size = static_cast<std::int64_t>(
      std::min<std::uint64_t>(file_bytes, std::uint64_t{1} << 40) * 16);
  return std::max(detail::matrix_market_base_dimension_limit, by_size);
}

/// Parses the banner and the size line at the start of `text` (which holds at
/// least those lines); `total_bytes` is the size of the whole file.
Header parse_header(std::string_view text, const std::string &name,
                    std::uint64_t total_bytes) {
  Header h;
  LineReader lines(text, 0, 1);
  std::string_view line;
  if (!lines.next(line) || (text.size() == 0))
    fail(name, 0,
         std::string("empty file; expected a Matrix Market banner ") + banner_form);
  const Tokens t = split(line);
  if (t.count == 0 || lower(t.token[0]) != "%%matrixmarket")
    fail(name, 1,
         "not a Matrix Market file: the first line must be the banner " +
             std::string(banner_form) + ", found " + quote_text(line));
  if (t.count != 5)
    fail(name, 1,
         "bad banner " + quote_text(line) +
             ": expected 4 words after "
             "%%MatrixMarket, as in " +
             banner_form);
  const std::string object = lower(t.token[1]), format = lower(t.token[2]),
                    field = lower(t.token[3]), symmetry = lower(t.token[4]);
  if (object != "matrix")
    fail(name, 1,
         "unsupported object " + quote_text(t.token[1]) +
             " in the banner (only 'matrix' is supported)");
  if (format == "coordinate")
    h.format = MatrixMarketFormat::coordinate;
  else if (format == "array")
    h.format = MatrixMarketFormat::array;
  else
    fail(name, 1,
         "unknown format " + quote_text(t.token[2]) +
             " in the banner (expected coordinate or array)");
  if (field == "real" || field == "double")
    h.field = Field::real;
  else if (field == "integer")
    h.field = Field::integer;
  else if (field == "pattern")
    h.field = Field::pattern;
  else if (field == "complex")
    fail(name, 1,
         "complex matrices are not supported (tacit reads real, "
         "integer or pattern matrices)");
  else
    fail(name, 1,
         "unknown field " + quote_text(t.token[3]) +
             " in the banner (expected real, integer or pattern)");
  if (symmetry == "general")
    h.symmetry = Symmetry::general;
  else if (symmetry == "symmetric")
    h.symmetry = Symmetry::symmetric;
  else if (symmetry == "skew-symmetric")
    h.symmetry = Symmetry::skew;
  else if (symmetry == "hermitian")
    fail(name, 1,
         "hermitian matrices are not supported (tacit reads general, "
         "symmetric or skew-symmetric matrices)");
  else
    fail(name, 1,
         "unknown symmetry " + quote_text(t.token[4]) +
             " in the banner (expected general, symmetric or "
             "skew-symmetric)");
  if (h.field == Field::pattern && h.format == MatrixMarketFormat::array)
    fail(name, 1, "a pattern matrix must use the coordinate format, not array");
  if (h.field == Field::pattern && h.symmetry == Symmetry::skew)
    fail(name, 1, "a pattern matrix cannot be skew-symmetric");

  // Size line: the first line that is neither blank nor a comment.
  bool found = false;
  while (lines.next(line))
    if (!is_skippable(line)) {
      found = true;
      break;
    }
  const bool coordinate = h.format == MatrixMarketFormat::coordinate;
  const char *size_form = coordinate
                              ? "'rows columns entries' (three non-negative integers)"
                              : "'rows columns' (two non-negative integers)";
  if (!found)
    fail(name, lines.line(),
         std::string("missing size line: the file ends before the line ") + size_form);
  h.size_line = lines.line();
  const Tokens s = split(line);
  const int wanted = coordinate ? 3 : 2;
  if (s.count != wanted)
    fail(name, h.size_line,
         "bad size line " + quote_text(line) + ": expected " + size_form);
  const char *what[3] = {"row count", "column count", "entry count"};
  std::int64_t value[3] = {0, 0, 0};
  for (int k = 0; k < wanted; ++k) {
    const auto tok = s.token[k];
    const auto st = detail::parse_integer(tok.data(), tok.data() + tok.size(), value[k]);
    if (st == NumberStatus::out_of_range)
      fail(name, h.size_line,
           std::string(what[k]) + " " + quote_text(tok) + " is too large");
    if (st != NumberStatus::ok)
      fail(name, h.size_line,
           "bad size line " + quote_text(line) + ": " + what[k] + " " + quote_text(tok) +
               " is not an integer; expected " + size_form);
    if (value[k] < 0)
      fail(name, h.size_line,
           std::string("negative ") + what[k] + " " + std::to_string(value[k]) +
               " in the size line");
  }
  h.rows = value[0];
  h.cols = value[1];
  const std::int64_t limit = max_dimension(total_bytes);
  if (h.rows > limit || h.cols > limit)
    fail(name, h.size_line,
         "the size line declares a " + std::to_string(h.rows) + " x " +
             std::to_string(h.cols) + " matrix, more than a file of " +
             std::to_string(total_bytes) + " bytes can plausibly describe (limit " +
             std::to_string(limit) + " rows or columns)");
  if (h.symmetry != Symmetry::general && h.rows != h.cols)
    fail(name, h.size_line,
         std::string("a ") +
             (h.symmetry == Symmetry::symmetric ? "symmetric" : "skew-symmetric") +
             " matrix must be square, the size line declares " + std::to_string(h.rows) +
             " x " + std::to_string(h.cols));
  // Values the matrix can hold in this storage scheme (saturating at 2^63-1).
  auto mul = [](std::int64_t a, std::int64_t b) {
    return a != 0 && b > std::numeric_limits<std::int64_t>::max() / a
               ? std::numeric_limits<std::int64_t>::max()
               : a * b;
  };
  const std::int64_t n = h.rows;
  const std::int64_t capacity = h.symmetry == Symmetry::general ? mul(n, h.cols)
                                : h.symmetry == Symmetry::symmetric
                                    ? mul(n, n + 1) / 2
                                    : mul(n, std::max<std::int64_t>(n - 1, 0)) / 2;
  if (coordinate) {
    h.entries = value[2];
    if (h.entries > capacity)
      fail(name, h.size_line,
           "the size line declares " + std::to_string(h.entries) +
               " entries, more than the " + std::to_string(capacity) +
               " positions of a " + std::to_string(h.rows) + " x " +
               std::to_string(h.cols) +
               (h.symmetry == Symmetry::general ? "" : " triangular") + " matrix");
  } else {
    // Every value needs at least two bytes ("0\n").
    if (static_cast<std::uint64_t>(capacity) > total_bytes)
      fail(name, h.size_line,
           "an array of " + std::to_string(h.rows) + " x " + std::to_string(h.cols) +
               " needs more values than a file of " + std::to_string(total_bytes) +
               " bytes can hold");
    h.entries = capacity;
  }
  h.body_offset = lines.offset();
  h.body_line = lines.line() + 1;
  return h;
}

/// True when `prefix` (the start of a longer file) holds the banner and the
/// size line, each ended by a newline.
bool holds_header(std::string_view prefix) {
  LineReader lines(prefix, 0, 1);
  std::string_view line;
  bool first = true;
  while (lines.next(line)) {
    const bool terminated = line.data() + line.size() < prefix.data() + prefix.size();
    if (!terminated)
      return false;
    if (!first && !is_skippable(line))
      return true;
    first = false;
  }
  return false;
}

// ------------------------------------------------------------ text sources

/// The text after the size line, delivered in blocks of whole lines, so that
/// a large file is parsed through a bounded buffer.
class BodySource {
public:
  virtual ~BodySource() = default;
  /// The next block (it ends at a line end, or at the end of the text);
  /// false at the end. The view stays valid until the next call.
  virtual bool next(std::string_view &block) = 0;
  /// Starts again from the first line after the size line.
  virtual void rewind() = 0;
  /// Bytes after the size line.
  virtual std::uint64_t bytes() const = 0;
};

class MemoryBody final : public BodySource {
public:
  explicit MemoryBody(std::string_view body) : body_(body) {}
  bool next(std::string_view &block) override {
    if (done_ || body_.empty())
      return false;
    block = body_;
    done_ = true;
    return true;
  }
  void rewind() override { done_ = false; }
  std::uint64_t bytes() const override { return body_.size(); }

private:
  std::string_view body_;
  bool done_ = false;
};

/// A file descriptor read with pread from a start offset.
class FileBody final : public BodySource {
public:
  FileBody(int fd, std::string name, std::uint64_t start, std::uint64_t size)
      : fd_(fd), name_(std::move(name)), start_(start), pos_(start), size_(size) {
    capacity_ = static_cast<std::size_t>(std::min<std::uint64_t>(
        std::max<std::size_t>(detail::matrix_market_block_bytes, 1),
        size > start ? size - start + 1 : 1));
    buffer_.reset(new char[capacity_]);
  }
  bool next(std::string_view &block) override {
    std::memmove(buffer_.get(), buffer_.get() + carry_at_, carry_);
    std::size_t filled = carry_;
    carry_ = carry_at_ = 0;
    while (true) {
      while (filled < capacity_ && pos_ < size_) {
        const auto got = ::pread(fd_, buffer_.get() + filled, capacity_ - filled,
                                 static_cast<off_t>(pos_));
        if (got < 0) {
          if (errno == EINTR)
            continue;
          throw FileError(name_, 0, std::string("read error: ") + std::strerror(errno));
        }
        if (got == 0) { // the file shrank
          size_ = pos_;
          break;
        }
        filled += static_cast<std::size_t>(got);
        pos_ += static_cast<std::uint64_t>(got);
      }
      if (filled == 0)
        return false;
      if (pos_ >= size_) {
        block = std::string_view(buffer_.get(), filled);
        return true;
      }
      const void *nl = ::memrchr(buffer_.get(), '\n', filled);
      if (nl) {
        const auto len =
            static_cast<std::size_t>(static_cast<const char *>(nl) - buffer_.get()) + 1;
        block = std::string_view(buffer_.get(), len);
        carry_at_ = len;
        carry_ = filled - len;
        return true;
      }
      // A line longer than the buffer: grow it.
      std::unique_ptr<char[]> bigger(new char[capacity_ * 2]);
      std::memcpy(bigger.get(), buffer_.get(), filled);
      buffer_ = std::move(bigger);
      capacity_ *= 2;
    }
  }
  void rewind() override {
    pos_ = start_;
    carry_ = carry_at_ = 0;
  }
  std::uint64_t bytes() const override { return size_ - start_; }

private:
  int fd_;
  std::string name_;
  std::uint64_t start_, pos_, size_;
  std::unique_ptr<char[]> buffer_;
  std::size_t capacity_ = 0, carry_at_ = 0, carry_ = 0;
};

/// Calls f(line, line_number) for every line after the size line until f
/// returns false. For the error paths only (serial).
template <class F> void for_each_body_line(BodySource &src, const Header &h, F &&f) {
  src.rewind();
  std::int64_t next_line = h.body_line;
  std::string_view block;
  while (src.next(block)) {
    LineReader lines(block, 0, next_line);
    std::string_view line;
    while (lines.next(line))
      if (!f(line, lines.line()))
        return;
    next_line = lines.line() + 1;
  }
}

// ------------------------------------------------------------ entries

/// Entries of one chunk of lines, and the first problem in it. Indices are
/// 0-based, stored as I (32-bit when the dimensions allow).
template <class T, class I> struct Chunk {
  std::size_t begin = 0, end = 0; ///< byte range in the current block
  std::vector<I> row, col;
  std::vector<T> val;
  std::int64_t lines = 0;   ///< lines scanned (up to and including an error)
  std::int64_t entries = 0; ///< entry lines parsed before any error
  bool failed = false;
  std::string problem;
};

const char *token_form(const Header &h) {
  if (h.format == MatrixMarketFormat::array)
    return "1 token (value)";
  return h.field == Field::pattern ? "2 tokens (row column)"
                                   : "3 tokens (row column value)";
}

/// Parses a value token; "" on success, else the problem.
template <class T>
std::string parse_value_token(std::string_view tok, const Header &h,
                              const std::string &where, T &v) {
  if (h.field == Field::integer) {
    std::int64_t k = 0;
    const auto st = detail::parse_integer(tok.data(), tok.data() + tok.size(), k);
    if (st == NumberStatus::out_of_range)
      return where + ": integer value " + quote_text(tok) + " is out of range";
    if (st != NumberStatus::ok)
      return where + ": value " + quote_text(tok) +
             " is not an integer (the banner declares an integer matrix)";
    v = static_cast<T>(k);
    return {};
  }
  const auto st = detail::parse_real(tok.data(), tok.data() + tok.size(), v);
  switch (st) {
  case NumberStatus::ok:
    return {};
  case NumberStatus::non_finite:
    return where + ": value " + quote_text(tok) +
           " is not finite (NaN and infinite values are rejected)";
  case NumberStatus::out_of_range:
    return where + ": value " + quote_text(tok) + " is out of range for " +
           detail::type_name<T>();
  default:
    return where + ": value " + quote_text(tok) + " is not a number";
  }
}

/// Checks a coordinate entry's position; "" if fine. i, j are 1-based.
std::string check_position(std::int64_t i, std::int64_t j, const Header &h) {
  if (i < 1 || i > h.rows)
    return "entry " + entry_name(i, j) + ": row " + std::to_string(i) +
           " is outside 1.." + std::to_string(h.rows);
  if (j < 1 || j > h.cols)
    return "entry " + entry_name(i, j) + ": column " + std::to_string(j) +
           " is outside 1.." + std::to_string(h.cols);
  if (h.symmetry != Symmetry::general && i < j)
    return "entry " + entry_name(i, j) + " is above the diagonal; a " +
           (h.symmetry == Symmetry::symmetric ? "symmetric" : "skew-symmetric") +
           " file stores only the lower triangle (row >= column)";
  return {};
}

/// Full (slow) parse of a coordinate entry line, with precise messages.
/// Returns "" and sets i, j (1-based) and v on success.
template <class T>
std::string parse_entry_line(std::string_view line, const Header &h, std::int64_t &i,
                             std::int64_t &j, T &v) {
  const Tokens t = split(line);
  const int wanted = h.field == Field::pattern ? 2 : 3;
  if (t.count != wanted)
    return std::string("expected ") + token_form(h) + ", found " +
           std::to_string(t.count) + ": " + quote_text(line);
  std::int64_t ij[2];
  const char *what[2] = {"row", "column"};
  for (int k = 0; k < 2; ++k) {
    const auto tok = t.token[k];
    const auto st = detail::parse_integer(tok.data(), tok.data() + tok.size(), ij[k]);
    if (st == NumberStatus::out_of_range)
      return std::string(what[k]) + " index " + quote_text(tok) +
             " is out of range (rows are 1.." + std::to_string(h.rows) + ", columns 1.." +
             std::to_string(h.cols) + ")";
    if (st != NumberStatus::ok)
      return std::string(what[k]) + " index " + quote_text(tok) +
             " is not an integer in " + quote_text(line);
  }
  i = ij[0];
  j = ij[1];
  if (auto p = check_position(i, j, h); !p.empty())
    return p;
  if (h.field == Field::pattern) {
    v = T(1);
    return {};
  }
  if (auto p = parse_value_token(t.token[2], h, "entry " + entry_name(i, j), v);
      !p.empty())
    return p;
  if (h.symmetry == Symmetry::skew && i == j && v != T(0))
    return "entry " + entry_name(i, j) +
           " is on the diagonal of a skew-symmetric matrix and must be zero, found " +
           quote_text(t.token[2]);
  return {};
}

inline const char *skip_blanks(const char *p, const char *end) {
  while (p < end && is_blank(*p))
    ++p;
  return p;
}

/// Plain decimal digits (at most 18, so no overflow); nullptr when the slow
/// path must decide (sign, no digit, too many digits).
inline const char *fast_index(const char *p, const char *end, std::int64_t &v) {
  const char *const start = p;
  std::uint64_t x = 0;
  while (p < end && static_cast<unsigned>(*p - '0') < 10u) {
    x = x * 10 + static_cast<unsigned>(*p - '0');
    ++p;
  }
  if (p == start || p - start > 18)
    return nullptr;
  v = static_cast<std::int64_t>(x);
  return p;
}

/// Fast path for one coordinate entry line (no signs, no oddities). Returns
/// false when the slow path must decide.
template <class T>
inline bool fast_entry(const char *p, const char *end, const Header &h, std::int64_t &i,
                       std::int64_t &j, T &v) {
  p = fast_index(p, end, i);
  if (!p || p == end || !is_blank(*p))
    return false;
  p = fast_index(skip_blanks(p, end), end, j);
  if (!p)
    return false;
  if (h.field == Field::pattern) {
    v = T(1);
  } else {
    if (p == end || !is_blank(*p))
      return false;
    p = skip_blanks(p, end);
    if (h.field == Field::integer) {
      std::int64_t k;
      const auto rv = std::from_chars(p, end, k);
      if (rv.ec != std::errc())
        return false;
      v = static_cast<T>(k);
      p = rv.ptr;
    } else {
      const auto rv = std::from_chars(p, end, v);
      if (rv.ec != std::errc() || !std::isfinite(v))
        return false;
      p = rv.ptr;
    }
  }
  if (skip_blanks(p, end) != end)
    return false;
  if (i < 1 || i > h.rows || j < 1 || j > h.cols)
    return false;
  if (h.symmetry != Symmetry::general && i < j)
    return false;
  if (h.symmetry == Symmetry::skew && i == j && v != T(0))
    return false;
  return true;
}

template <class T, class I>
void parse_coordinate_chunk(std::string_view block, const Header &h, Chunk<T, I> &c,
                            std::size_t reserve) {
  c.row.reserve(reserve);
  c.col.reserve(reserve);
  c.val.reserve(reserve);
  const char *p = block.data() + c.begin;
  const char *const end = block.data() + c.end;
  const bool skew = h.symmetry == Symmetry::skew;
  while (p < end) {
    const char *eol = static_cast<const char *>(std::memchr(p, '\n', end - p));
    if (!eol)
      eol = end;
    ++c.lines;
    const char *q = skip_blanks(p, eol);
    if (q == eol || *q == '%') {
      p = eol + 1;
      continue;
    }
    std::int64_t i, j;
    T v;
    if (!fast_entry(q, eol, h, i, j, v)) {
      const auto problem = parse_entry_line(std::string_view(p, eol - p), h, i, j, v);
      if (!problem.empty()) {
        c.failed = true;
        c.problem = problem;
        return;
      }
    }
    ++c.entries;
    if (!(skew && i == j)) { // a skew-symmetric diagonal entry is zero
      c.row.push_back(static_cast<I>(i - 1));
      c.col.push_back(static_cast<I>(j - 1));
      c.val.push_back(v);
    }
    p = eol + 1;
  }
}

/// Line number of the k-th (1-based) entry line after the size line.
std::int64_t locate_entry_line(BodySource &src, const Header &h, std::int64_t k) {
  std::int64_t seen = 0, found = 0;
  for_each_body_line(src, h, [&](std::string_view line, std::int64_t number) {
    found = number;
    return is_skippable(line) || ++seen < k;
  });
  return found;
}

/// Lines of the first two entries at (i, j) (1-based) of a coordinate file.
std::pair<std::int64_t, std::int64_t> locate_duplicate(BodySource &src, const Header &h,
                                                       std::int64_t i, std::int64_t j) {
  std::int64_t first = 0, second = 0;
  for_each_body_line(src, h, [&](std::string_view line, std::int64_t number) {
    if (is_skippable(line))
      return true;
    const Tokens t = split(line);
    std::int64_t a = 0, b = 0;
    if (t.count < 2 ||
        detail::parse_integer(t.token[0].data(), t.token[0].data() + t.token[0].size(),
                              a) != NumberStatus::ok ||
        detail::parse_integer(t.token[1].data(), t.token[1].data() + t.token[1].size(),
                              b) != NumberStatus::ok)
      return true;
    if (a == i && b == j) {
      if (first) {
        second = number;
        return false;
      }
      first = number;
    }
    return true;
  });
  return {first, second ? second : first};
}

/// Builds the CSR matrix from per-chunk entries (expanding mirrors).
template <class T, class I>
CsrMatrix<T> assemble(BodySource &src, const std::string &name, const Header &h,
                      std::vector<Chunk<T, I>> &chunks) {
  const bool mirror = h.symmetry != Symmetry::general;
  const T sign = h.symmetry == Symmetry::skew ? T(-1) : T(1);
  const auto rows = static_cast<std::size_t>(h.rows);
  std::vector<std::int64_t> row_ptr(rows + 1, 0);
  for (const auto &c : chunks)
    for (std::size_t k = 0; k < c.row.size(); ++k) {
      ++row_ptr[static_cast<std::size_t>(c.row[k]) + 1];
      if (mirror && c.row[k] != c.col[k])
        ++row_ptr[static_cast<std::size_t>(c.col[k]) + 1];
    }
  std::partial_sum(row_ptr.begin(), row_ptr.end(), row_ptr.begin());
  const auto nnz = static_cast<std::size_t>(row_ptr[rows]);
  std::vector<std::int64_t> col(nnz);
  std::vector<T> val(nnz);
  {
    std::vector<std::int64_t> next(row_ptr.begin(), row_ptr.end() - 1);
    for (auto &c : chunks) {
      for (std::size_t k = 0; k < c.row.size(); ++k) {
        const auto i = static_cast<std::size_t>(c.row[k]);
        const auto j = static_cast<std::size_t>(c.col[k]);
        auto d = next[i]++;
        col[d] = static_cast<std::int64_t>(j);
        val[d] = c.val[k];
        if (mirror && i != j) {
          d = next[j]++;
          col[d] = static_cast<std::int64_t>(i);
          val[d] = sign * c.val[k];
        }
      }
      // Release the chunk's memory as soon as it is scattered.
      c.row = {};
      c.col = {};
      c.val = {};
    }
  }
  // Sort rows that are not sorted (files written row by row or column by
  // column come out sorted from the stable bucketing), then look for
  // duplicates.
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows, 4096),
                    [&](const tbb::blocked_range<std::size_t> &range) {
                      std::vector<std::pair<std::int64_t, T>> buf;
                      for (auto r = range.begin(); r != range.end(); ++r) {
                        const auto b = row_ptr[r], e = row_ptr[r + 1];
                        if (std::is_sorted(col.begin() + b, col.begin() + e))
                          continue;
                        buf.clear();
                        for (auto k = b; k < e; ++k)
                          buf.emplace_back(col[k], val[k]);
                        std::stable_sort(buf.begin(), buf.end(),
                                         [](const auto &x, const auto &y) {
                                           return x.first < y.first;
                                         });
                        for (auto k = b; k < e; ++k) {
                          col[k] = buf[k - b].first;
                          val[k] = buf[k - b].second;
                        }
                      }
                    });
  for (std::size_t r = 0; r < rows; ++r)
    for (auto k = row_ptr[r] + 1; k < row_ptr[r + 1]; ++k)
      if (col[k] == col[k - 1]) {
        std::int64_t i = static_cast<std::int64_t>(r) + 1, j = col[k] + 1;
        if (mirror && i < j)
          std::swap(i, j); // the file holds the lower entry
        const auto [l1, l2] = locate_duplicate(src, h, i, j);
        fail(name, l2,
             "duplicate entry " + entry_name(i, j) + " on lines " + std::to_string(l1) +
                 " and " + std::to_string(l2) +
                 " (duplicates are not summed; merge them into one entry)");
      }
  try {
    return CsrMatrix<T>(h.rows, h.cols, std::move(row_ptr), col, std::move(val));
  } catch (const InvalidArgument &e) {
    fail(name, 0, e.what()); // unreachable for checked entries
  }
}

template <class T, class I>
CsrMatrix<T> parse_coordinate(BodySource &src, const std::string &name, const Header &h) {
  // Each block is cut into chunks of about 8 MiB after a newline; the chunks
  // of a block are parsed in parallel.
  constexpr std::size_t chunk_bytes = std::size_t{8} << 20;
  const double body = static_cast<double>(src.bytes());
  std::vector<Chunk<T, I>> chunks;
  std::int64_t parsed = 0;
  std::string_view block;
  while (src.next(block)) {
    const std::size_t first = chunks.size();
    for (std::size_t pos = 0; pos < block.size();) {
      Chunk<T, I> c;
      c.begin = pos;
      std::size_t end = std::min(block.size(), pos + chunk_bytes);
      if (end < block.size()) {
        const void *nl = std::memchr(block.data() + end, '\n', block.size() - end);
        end =
            nl ? static_cast<std::size_t>(static_cast<const char *>(nl) - block.data()) +
                     1
               : block.size();
      }
      c.end = end;
      chunks.push_back(std::move(c));
      pos = end;
    }
    auto reserve_for = [&](const Chunk<T, I> &c) {
      // Proportional share of the declared entries, never more than the
      // chunk's bytes allow (4 bytes is the shortest entry line).
      const double share = body > 0 ? double(c.end - c.begin) / body : 0.0;
      const auto expected =
          static_cast<std::size_t>(share * double(h.entries) * 1.02) + 16;
      return std::min(expected, (c.end - c.begin) / 4 + 1);
    };
    if (chunks.size() - first == 1) {
      parse_coordinate_chunk(block, h, chunks[first], reserve_for(chunks[first]));
    } else {
      tbb::parallel_for(first, chunks.size(), [&](std::size_t k) {
        parse_coordinate_chunk(block, h, chunks[k], reserve_for(chunks[k]));
      });
    }
    // Everything needed to report the first problem has been read.
    bool stop = false;
    for (std::size_t k = first; k < chunks.size(); ++k) {
      parsed += chunks[k].entries;
      stop = stop || chunks[k].failed;
    }
    if (stop || parsed > h.entries)
      break;
  }
  // Resolve problems in file order.
  std::int64_t line = h.body_line, seen = 0;
  for (const auto &c : chunks) {
    if (seen + c.entries > h.entries) {
      const auto l = locate_entry_line(src, h, h.entries + 1);
      fail(name, l,
           "too many entries: the size line (line " + std::to_string(h.size_line) +
               ") declares " + std::to_string(h.entries) + ", line " + std::to_string(l) +
               " holds one more");
    }
    if (c.failed) {
      const auto l = line + c.lines - 1;
      if (seen + c.entries == h.entries)
        fail(name, l,
             "unexpected content after the last of the " + std::to_string(h.entries) +
                 " entries declared on line " + std::to_string(h.size_line) + ": " +
                 c.problem);
      fail(name, l, c.problem);
    }
    seen += c.entries;
    line += c.lines;
  }
  if (seen < h.entries)
    fail(name, std::max<std::int64_t>(line - 1, h.size_line),
         "too few entries: the size line (line " + std::to_string(h.size_line) +
             ") declares " + std::to_string(h.entries) + ", the file ends after " +
             std::to_string(seen));
  return assemble(src, name, h, chunks);
}

template <class T>
CsrMatrix<T> parse_array(BodySource &src, const std::string &name, const Header &h) {
  // Values are stored column by column: all of them (general), the lower
  // triangle with the diagonal (symmetric) or without it (skew-symmetric).
  std::vector<Chunk<T, std::int64_t>> chunks(1);
  auto &c = chunks[0];
  const std::int64_t first_row_offset = h.symmetry == Symmetry::skew ? 1 : 0;
  std::int64_t i = first_row_offset, j = 0, seen = 0; // next position (0-based)
  std::int64_t last_line = h.size_line;
  for_each_body_line(src, h, [&](std::string_view line, std::int64_t number) {
    last_line = number;
    if (is_skippable(line))
      return true;
    const Tokens t = split(line);
    if (seen == h.entries)
      fail(name, number,
           "too many values: an array of " + std::to_string(h.rows) + " x " +
               std::to_string(h.cols) + " holds " + std::to_string(h.entries) +
               " values in this file, line " + std::to_string(number) +
               " holds one more: " + quote_text(line));
    if (t.count != 1)
      fail(name, number,
           std::string("expected ") + token_form(h) + ", found " +
               std::to_string(t.count) + ": " + quote_text(line));
    T v{};
    const auto where = "entry " + entry_name(i + 1, j + 1);
    if (auto p = parse_value_token(t.token[0], h, where, v); !p.empty())
      fail(name, number, p);
    if (v != T(0)) {
      c.row.push_back(i);
      c.col.push_back(j);
      c.val.push_back(v);
    }
    ++seen;
    if (++i == h.rows) {
      ++j;
      i = h.symmetry == Symmetry::general ? 0 : j + first_row_offset;
    }
    return true;
  });
  if (seen < h.entries)
    fail(name, last_line,
         "too few values: an array of " + std::to_string(h.rows) + " x " +
             std::to_string(h.cols) + " needs " + std::to_string(h.entries) +
             " values in this file, it ends after " + std::to_string(seen));
  return assemble(src, name, h, chunks);
}

template <class T>
CsrMatrix<T> parse_body(BodySource &src, const std::string &name, const Header &h) {
  if (h.format == MatrixMarketFormat::array)
    return parse_array<T>(src, name, h);
  constexpr auto narrow =
      static_cast<std::int64_t>(std::numeric_limits<std::int32_t>::max());
  if (h.rows <= narrow && h.cols <= narrow)
    return parse_coordinate<T, std::int32_t>(src, name, h);
  return parse_coordinate<T, std::int64_t>(src, name, h);
}

} // namespace

template <class T>
CsrMatrix<T> parse_matrix_market(std::string_view text, const std::string &name) {
  const Header h = parse_header(text, name, text.size());
  MemoryBody body(text.substr(h.body_offset));
  return parse_body<T>(body, name, h);
}

template <class T> CsrMatrix<T> read_matrix_market(const std::filesystem::path &path) {
  const detail::InputFile input(path);
  const std::string &name = input.name();
  const int fd = input.fd();
  if (input.directory())
    throw FileError(name, 0, "is a directory, expected a file");
  if (!input.regular()) {
    // A pipe or a device: read it whole.
    const auto buffer = detail::read_whole_file(path);
    return parse_matrix_market<T>(buffer.view(), name);
  }
  const auto size = input.size();
  // Read the start of the file until it holds the banner and the size line.
  std::string prefix;
  std::uint64_t pos = 0;
  for (std::size_t want = std::size_t{1} << 16;; want *= 2) {
    const auto old = prefix.size();
    prefix.resize(static_cast<std::size_t>(std::min<std::uint64_t>(want, size)));
    while (pos < prefix.size()) {
      const auto got =
          ::pread(fd, prefix.data() + pos, prefix.size() - pos, static_cast<off_t>(pos));
      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0)
        throw FileError(name, 0, std::string("read error: ") + std::strerror(errno));
      if (got == 0)
        break;
      pos += static_cast<std::uint64_t>(got);
    }
    prefix.resize(static_cast<std::size_t>(pos));
    if (pos == old || pos >= size || holds_header(prefix))
      break;
  }
  const Header h = parse_header(prefix, name, size);
  FileBody body(fd, name, h.body_offset, std::max<std::uint64_t>(size, pos));
  return parse_body<T>(body, name, h);
}

template <class T>
CsrMatrix<T> read_matrix_market(std::istream &in, const std::string &name) {
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad())
    throw FileError(name, 0, "read error");
  const std::string text = std::move(content).str();
  return parse_matrix_market<T>(text, name);
}

template <class T>
void write_matrix_market(const std::filesystem::path &path, const CsrMatrix<T> &matrix,
                         MatrixMarketFormat format) {
  if (const auto e = matrix.find_non_finite())
    throw InvalidArgument("write_matrix_market: entry " +
                          entry_name(e->row + 1, e->col + 1) +
                          " is not finite; Matrix Market files hold finite values only");
  detail::AtomicFile file(path);
  auto &out = file.buffer();
  const auto row_ptr = matrix.row_ptr();
  const auto values = matrix.values();
  if (format == MatrixMarketFormat::coordinate) {
    out += "%%MatrixMarket matrix coordinate real general\n";
    detail::append_integer(out, matrix.rows());
    out += ' ';
    detail::append_integer(out, matrix.cols());
    out += ' ';
    detail::append_integer(out, matrix.nnz());
    out += '\n';
    // Rows are cut into pieces of about 2^17 entries; a wave of pieces is
    // formatted in parallel, then written in order.
    std::vector<index_t> piece_start{0};
    for (index_t i = 0, since = 0; i < matrix.rows(); ++i) {
      since += row_ptr[i + 1] - row_ptr[i];
      if (since >= (index_t{1} << 17) && i + 1 < matrix.rows()) {
        piece_start.push_back(i + 1);
        since = 0;
      }
    }
    piece_start.push_back(matrix.rows());
    const std::size_t pieces = piece_start.size() - 1;
    constexpr std::size_t wave = 16;
    std::vector<std::string> text(std::min(pieces, wave));
    matrix.visit_columns([&](auto cols) {
      for (std::size_t first = 0; first < pieces; first += wave) {
        const std::size_t count = std::min(wave, pieces - first);
        tbb::parallel_for(std::size_t{0}, count, [&](std::size_t w) {
          auto &piece = text[w];
          piece.clear();
          for (index_t i = piece_start[first + w]; i < piece_start[first + w + 1]; ++i)
            for (auto k = row_ptr[i]; k < row_ptr[i + 1]; ++k) {
              detail::append_integer(piece, i + 1);
              piece += ' ';
              detail::append_integer(piece, static_cast<std::int64_t>(cols[k]) + 1);
              piece += ' ';
              detail::append_value(piece, values[k]);
              piece += '\n';
            }
        });
        for (std::size_t w = 0; w < count; ++w)
          file.write(std::string_view(text[w]));
      }
    });
  } else {
    out += "%%MatrixMarket matrix array real general\n";
    detail::append_integer(out, matrix.rows());
    out += ' ';
    detail::append_integer(out, matrix.cols());
    out += '\n';
    // Column j of the matrix is row j of its transpose.
    const auto t = matrix.transpose();
    const auto t_ptr = t.row_ptr();
    const auto t_val = t.values();
    t.visit_columns([&](auto rows) {
      for (index_t j = 0; j < t.rows(); ++j) {
        auto k = t_ptr[j];
        for (index_t i = 0; i < matrix.rows(); ++i) {
          if (k < t_ptr[j + 1] && rows[k] == i)
            detail::append_value(out, t_val[k++]);
          else
            out += '0';
          out += '\n';
        }
        file.flush_if_large();
      }
    });
  }
  file.commit();
}

#define TACIT_INSTANTIATE(T)                                                             \
  template CsrMatrix<T> parse_matrix_market<T>(std::string_view, const std::string &);   \
  template CsrMatrix<T> read_matrix_market<T>(const std::filesystem::path &);            \
  template CsrMatrix<T> read_matrix_market<T>(std::istream &, const std::string &);      \
  template void write_matrix_market<T>(const std::filesystem::path &,                    \
                                       const CsrMatrix<T> &, MatrixMarketFormat);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
