// Native binary model file, versions 1 and 2 (layout documented in io.hpp at
// save_model_native). Version 2 adds operator-tree sections (kind 4) for
// structured operators; a model whose operators are all CSR is still written
// as version 1.
//
// Design notes:
// - Every size read from the file is checked against the bytes that remain
//   before anything is allocated from it, so a corrupt or hostile file cannot
//   make the reader allocate more than the file's own size.
// - A section's fixed fields are read first; when they are consistent with
//   the section's length, the arrays are read straight into the vectors that
//   will hold them (no intermediate copy of a large matrix), the CRC is
//   checked, and only then is the content validated, so a damaged file is
//   reported as a CRC mismatch rather than as whatever the damage looks like.
// - The format is little-endian; big-endian hosts are refused with a clear
//   message (byte swapping is not implemented).

#include <tacit/io/io.hpp>
#include <tacit/io/native_codec.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/detail/crc32.hpp"
#include "io/detail/io_common.hpp"

namespace fs = std::filesystem;

namespace tacit::inline v1 {

namespace {

constexpr char magic[8] = {'T', 'A', 'C', 'I', 'T', 'M', 'D', 'L'};
constexpr std::uint32_t format_version = 2;   // newest version read and written
constexpr std::uint32_t csr_only_version = 1; // written when every operator is CSR
constexpr int max_tree_depth = 64;
constexpr std::uint32_t byte_order_mark = 0x01020304u;
constexpr std::size_t header_bytes = 56;
constexpr std::size_t section_header_bytes = 16;
constexpr std::uint32_t flag_has_d = 1u;

enum class ValueType : std::uint32_t { float32 = 1, float64 = 2 };
enum class Role : std::uint32_t {
  blocks = 1,
  A = 2,
  B = 3,
  C = 4,
  D = 5,
  bx = 6,
  by = 7
};
enum class Kind : std::uint32_t {
  block_table = 1,
  csr = 2,
  dense_vector = 3,
  operator_tree = 4,
  run_vector = 5 // version 2: u64 length, u64 run count, runs (u64 length, value)
};
/// Node code of a CSR matrix in an operator tree: every operator without a
/// codec of its own (io/native_codec.hpp) is stored as one.
constexpr std::uint32_t csr_node_code = 1;

const char *role_name(std::uint32_t role) {
  switch (role) {
  case 1:
    return "blocks";
  case 2:
    return "A";
  case 3:
    return "B";
  case 4:
    return "C";
  case 5:
    return "D";
  case 6:
    return "bx";
  case 7:
    return "by";
  default:
    return "?";
  }
}

template <class T> constexpr ValueType value_type_of() {
  return std::is_same_v<T, float> ? ValueType::float32 : ValueType::float64;
}

void require_little_endian(const std::string &name) {
  if constexpr (std::endian::native != std::endian::little)
    throw FileError(name, 0,
                    "the native model format is little-endian and this host is "
                    "big-endian; use a model directory instead");
}

std::uint32_t crc_update(std::uint32_t crc, const void *data, std::size_t size) {
  return detail::crc32_update(crc, data, size);
}

std::uint32_t activation_code(ActivationKind k) {
  switch (k) {
  case ActivationKind::relu:
    return 0;
  case ActivationKind::leaky_relu:
    return 1;
  case ActivationKind::tanh:
    return 2;
  case ActivationKind::sigmoid:
    return 3;
  case ActivationKind::identity:
    return 4;
  }
  return 0;
}

std::optional<ActivationKind> activation_from_code(std::uint32_t c) {
  switch (c) {
  case 0:
    return ActivationKind::relu;
  case 1:
    return ActivationKind::leaky_relu;
  case 2:
    return ActivationKind::tanh;
  case 3:
    return ActivationKind::sigmoid;
  case 4:
    return ActivationKind::identity;
  default:
    return std::nullopt;
  }
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// ------------------------------------------------------------------ writing

/// Appends little-endian scalars to a small buffer.
struct Bytes {
  std::string data;
  template <class U> void put(U v) {
    static_assert(std::is_trivially_copyable_v<U>);
    data.append(reinterpret_cast<const char *>(&v), sizeof v);
  }
};

class SectionWriter {
public:
  SectionWriter(detail::AtomicFile &file, Role role, Kind kind, std::uint64_t payload)
      : file_(file), left_(payload) {
    Bytes h;
    h.put(static_cast<std::uint32_t>(role));
    h.put(static_cast<std::uint32_t>(kind));
    h.put(payload);
    emit(h.data.data(), h.data.size(), false);
  }
  void write(const void *data, std::size_t size) { emit(data, size, true); }
  void write(const Bytes &b) { write(b.data.data(), b.data.size()); }
  void finish() {
    if (left_ != 0)
      throw std::logic_error("native section length mismatch");
    file_.write(&crc_, sizeof crc_);
  }

private:
  void emit(const void *data, std::size_t size, bool payload) {
    crc_ = crc_update(crc_, data, size);
    file_.write(data, size);
    if (payload)
      left_ -= size;
  }
  detail::AtomicFile &file_;
  std::uint64_t left_;
  std::uint32_t crc_ = 0;
};

template <class T>
void write_csr(detail::AtomicFile &file, Role role, const LinearOperator<T> &op) {
  const auto view = csr_view(op);
  const CsrMatrix<T> &m = *view;
  const std::uint32_t width = m.wide_indices() ? 8 : 4;
  const auto rows = static_cast<std::uint64_t>(m.rows());
  const auto nnz = static_cast<std::uint64_t>(m.nnz());
  const std::uint64_t payload = 32 + (rows + 1) * 8 + nnz * (width + sizeof(T));
  SectionWriter s(file, role, Kind::csr, payload);
  Bytes h;
  h.put(rows);
  h.put(static_cast<std::uint64_t>(m.cols()));
  h.put(nnz);
  h.put(width);
  h.put(std::uint32_t{0});
  s.write(h);
  s.write(m.row_ptr().data(), m.row_ptr().size_bytes());
  m.visit_columns([&](auto cols) { s.write(cols.data(), cols.size_bytes()); });
  s.write(m.values().data(), m.values().size_bytes());
  s.finish();
}

/// Operators stored as a tree: those with a codec (everything else, a CSR
/// matrix included, is stored as CSR).
template <class T> bool is_structured(const LinearOperator<T> &op) {
  return find_native_codec(op) != nullptr;
}

template <class T> void append_values(Bytes &b, std::span<const T> v) {
  b.put(static_cast<std::uint64_t>(v.size()));
  b.data.append(reinterpret_cast<const char *>(v.data()), v.size_bytes());
}

template <class T> void encode_tree(Bytes &b, const LinearOperator<T> &op);

/// A node's fields, appended to the tree's bytes.
template <class T> class TreeEncoder final : public NativeEncoder<T> {
public:
  explicit TreeEncoder(Bytes &b) : b_(b) {}
  void put_count(index_t v) override { b_.put(static_cast<std::uint64_t>(v)); }
  void put_value(T v) override { b_.put(v); }
  void put_values(std::span<const T> v) override { append_values(b_, v); }
  void put_operator(const LinearOperator<T> &op) override { encode_tree(b_, op); }

private:
  Bytes &b_;
};

/// Node: u32 code, u32 0, u64 rows, u64 cols, then the code's fields.
template <class T> void encode_tree(Bytes &b, const LinearOperator<T> &op) {
  auto head = [&](std::uint32_t code) {
    b.put(code);
    b.put(std::uint32_t{0});
    b.put(static_cast<std::uint64_t>(op.rows()));
    b.put(static_cast<std::uint64_t>(op.cols()));
  };
  if (const auto *codec = find_native_codec(op)) {
    head(codec->code);
    TreeEncoder<T> out(b);
    codec->encode(op, out);
    return;
  }
  head(csr_node_code);
  const auto view = csr_view(op);
  const CsrMatrix<T> &m = *view;
  b.put(static_cast<std::uint64_t>(m.nnz()));
  b.put(std::uint32_t{m.wide_indices() ? 8u : 4u});
  b.put(std::uint32_t{0});
  b.data.append(reinterpret_cast<const char *>(m.row_ptr().data()),
                m.row_ptr().size_bytes());
  m.visit_columns([&](auto cols) {
    b.data.append(reinterpret_cast<const char *>(cols.data()), cols.size_bytes());
  });
  b.data.append(reinterpret_cast<const char *>(m.values().data()),
                m.values().size_bytes());
}

template <class T>
void write_operator(detail::AtomicFile &file, Role role, const LinearOperator<T> &op) {
  if (!is_structured(op)) {
    write_csr(file, role, op);
    return;
  }
  Bytes b;
  encode_tree(b, op);
  SectionWriter s(file, role, Kind::operator_tree, b.data.size());
  s.write(b);
  s.finish();
}

/// A vector as runs of equal values (biases of a network are constant over
/// each channel plane), when that is at most half the size.
template <class T>
bool write_runs(detail::AtomicFile &file, Role role, std::span<const T> v) {
  std::vector<std::pair<std::uint64_t, T>> runs;
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i + 1;
    while (j < v.size() && std::memcmp(&v[j], &v[i], sizeof(T)) == 0)
      ++j;
    runs.push_back({j - i, v[i]});
    i = j;
    if (runs.size() * (8 + sizeof(T)) > v.size_bytes() / 2)
      return false;
  }
  Bytes b;
  b.put(static_cast<std::uint64_t>(v.size()));
  b.put(static_cast<std::uint64_t>(runs.size()));
  for (const auto &[length, value] : runs) {
    b.put(length);
    b.put(value);
  }
  SectionWriter s(file, role, Kind::run_vector, b.data.size());
  s.write(b);
  s.finish();
  return true;
}

template <class T>
void write_vector(detail::AtomicFile &file, Role role, std::span<const T> v) {
  SectionWriter s(file, role, Kind::dense_vector, 8 + v.size_bytes());
  Bytes h;
  h.put(static_cast<std::uint64_t>(v.size()));
  s.write(h);
  s.write(v.data(), v.size_bytes());
  s.finish();
}

void write_blocks(detail::AtomicFile &file, const std::vector<StateBlock> &blocks) {
  Bytes b;
  b.put(static_cast<std::uint64_t>(blocks.size()));
  for (const auto &block : blocks) {
    b.put(static_cast<std::uint64_t>(block.offset));
    b.put(static_cast<std::uint64_t>(block.size));
    b.put(activation_code(block.activation.kind));
    b.put(static_cast<std::uint32_t>(block.name.size()));
    b.put(block.activation.slope);
    b.data += block.name;
  }
  SectionWriter s(file, Role::blocks, Kind::block_table, b.data.size());
  s.write(b);
  s.finish();
}

// ------------------------------------------------------------------ reading

/// Sequential reader over a file descriptor or a memory buffer that knows how
/// many bytes remain, so that every length can be checked before use.
class ByteReader {
public:
  ByteReader(std::string name, std::string_view memory)
      : name_(std::move(name)), memory_(memory), size_(memory.size()) {}
  ByteReader(std::string name, int fd, std::uint64_t size)
      : name_(std::move(name)), fd_(fd), size_(size) {}

  const std::string &name() const noexcept { return name_; }
  std::uint64_t offset() const noexcept { return offset_; }
  std::uint64_t remaining() const noexcept { return size_ - offset_; }

  /// \throws FileError (truncated) naming the offset and `what`.
  void read(void *dst, std::uint64_t n, const std::string &what) {
    if (n > remaining())
      truncated(n, what);
    if (fd_ < 0) {
      std::memcpy(dst, memory_.data() + offset_, n);
    } else {
      auto p = static_cast<char *>(dst);
      std::uint64_t left = n;
      while (left > 0) {
        const auto got = ::read(
            fd_, p, static_cast<std::size_t>(std::min<std::uint64_t>(left, 1u << 30)));
        if (got < 0) {
          if (errno == EINTR)
            continue;
          throw FileError(name_, 0,
                          "read error at byte offset " +
                              std::to_string(offset_ + (n - left)) + ": " +
                              std::strerror(errno));
        }
        if (got == 0) { // the file shrank while being read
          size_ = offset_ + (n - left);
          truncated(n, what);
        }
        p += got;
        left -= static_cast<std::uint64_t>(got);
      }
    }
    offset_ += n;
  }

  [[noreturn]] void truncated(std::uint64_t n, const std::string &what) const {
    throw FileError(name_, 0,
                    "truncated at byte offset " + std::to_string(offset_) +
                        ": expected " + std::to_string(n) + " bytes of " + what +
                        ", but only " + std::to_string(remaining()) + " remain");
  }

  [[noreturn]] void fail(const std::string &what) const {
    throw FileError(name_, 0, what);
  }

private:
  std::string name_;
  std::string_view memory_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint64_t offset_ = 0;
};

/// A section being read: tracks the payload bytes left and the running CRC.
class SectionReader {
public:
  SectionReader(ByteReader &in, std::uint32_t role, std::uint64_t start,
                std::uint64_t payload, std::uint32_t crc)
      : in_(in), role_(role), start_(start), left_(payload), crc_(crc) {}

  std::string label() const {
    return std::string("section ") + role_name(role_) + " (at byte offset " +
           std::to_string(start_) + ")";
  }
  std::uint64_t left() const noexcept { return left_; }

  void read(void *dst, std::uint64_t n, const char *what) {
    if (n > left_)
      in_.fail(label() + ": its length ends before the " + what);
    in_.read(dst, n, std::string(what) + " of " + label());
    crc_ = crc_update(crc_, dst, static_cast<std::size_t>(n));
    left_ -= n;
  }
  template <class U> U get(const char *what) {
    U v;
    read(&v, sizeof v, what);
    return v;
  }
  /// Reads the rest of the payload (through a small buffer) and the CRC.
  void skip_rest() {
    char buf[1 << 16];
    while (left_ > 0)
      read(buf, std::min<std::uint64_t>(left_, sizeof buf), "payload");
  }
  /// Reads the stored CRC; true when it matches.
  bool crc_matches() {
    std::uint32_t stored = 0;
    in_.read(&stored, 4, "CRC-32 of " + label());
    stored_ = stored;
    return stored == crc_;
  }
  /// Reads the rest and the CRC; throws on a mismatch.
  void finish() {
    skip_rest();
    if (!crc_matches())
      crc_error();
  }
  [[noreturn]] void crc_error() const {
    in_.fail("CRC mismatch in " + label() + ": stored " + hex32(stored_) + ", computed " +
             hex32(crc_) + "; the file is corrupt");
  }
  /// For an inconsistent section: a CRC mismatch is reported first (damage is
  /// the likelier cause), otherwise `problem`.
  [[noreturn]] void reject(const std::string &problem) {
    skip_rest();
    if (!crc_matches())
      crc_error();
    in_.fail(label() + ": " + problem);
  }

private:
  ByteReader &in_;
  std::uint32_t role_;
  std::uint64_t start_, left_;
  std::uint32_t crc_, stored_ = 0;
};

struct Header {
  std::uint32_t version = 1;
  ValueType type = ValueType::float64;
  std::uint32_t flags = 0;
  std::uint64_t n = 0, p = 0, q = 0;
  std::uint32_t sections = 0;
};

template <class U> U load_le(const unsigned char *p) {
  U v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

Header read_header(ByteReader &in) {
  unsigned char h[header_bytes];
  const auto head = std::min<std::uint64_t>(8, in.remaining());
  in.read(h, head, "magic");
  if (head < 8 || std::memcmp(h, magic, 8) != 0)
    in.fail("not a tacit native model file (the file does not start with the magic "
            "\"TACITMDL\")");
  in.read(h + 8, header_bytes - 8, "file header");
  const auto version = load_le<std::uint32_t>(h + 8);
  if (version < 1 || version > format_version)
    in.fail("unsupported native format version " + std::to_string(version) +
            " (this tacit reads version 1 and version " + std::to_string(format_version) +
            " files)");
  const auto stored_crc = load_le<std::uint32_t>(h + 52);
  const auto crc = crc_update(0, h, 52);
  if (stored_crc != crc)
    in.fail("CRC mismatch in the file header (bytes 0..51): stored " + hex32(stored_crc) +
            ", computed " + hex32(crc) + "; the file is corrupt");
  const auto bom = load_le<std::uint32_t>(h + 12);
  if (bom != byte_order_mark)
    in.fail("byte-order mark is " + hex32(bom) + ", expected " + hex32(byte_order_mark) +
            " (little-endian)");
  Header r;
  r.version = version;
  const auto type = load_le<std::uint32_t>(h + 16);
  if (type != 1 && type != 2)
    in.fail("unknown value type " + std::to_string(type) +
            " in the header (1 = float32, 2 = float64)");
  r.type = static_cast<ValueType>(type);
  r.flags = load_le<std::uint32_t>(h + 20);
  if (r.flags & ~flag_has_d)
    in.fail("unknown flags " + hex32(r.flags) + " in the header");
  r.n = load_le<std::uint64_t>(h + 24);
  r.p = load_le<std::uint64_t>(h + 32);
  r.q = load_le<std::uint64_t>(h + 40);
  r.sections = load_le<std::uint32_t>(h + 48);
  constexpr auto limit =
      static_cast<std::uint64_t>(std::numeric_limits<index_t>::max() / 2);
  if (r.n > limit || r.p > limit || r.q > limit)
    in.fail("absurd dimensions in the header: n = " + std::to_string(r.n) +
            ", p = " + std::to_string(r.p) + ", q = " + std::to_string(r.q));
  return r;
}

/// Reads `count` stored values of type F into `out` (type T), converting.
template <class T, class F>
void read_values_as(SectionReader &s, std::uint64_t count, std::vector<T> &out) {
  out.resize(static_cast<std::size_t>(count));
  if constexpr (std::is_same_v<T, F>) {
    s.read(out.data(), count * sizeof(T), "values");
  } else {
    constexpr std::uint64_t chunk = 1 << 16;
    std::vector<F> buf(static_cast<std::size_t>(std::min(count, chunk)));
    for (std::uint64_t k = 0; k < count; k += chunk) {
      const auto m = std::min(chunk, count - k);
      s.read(buf.data(), m * sizeof(F), "values");
      for (std::uint64_t t = 0; t < m; ++t)
        out[k + t] = static_cast<T>(buf[t]);
    }
  }
}

template <class T>
void read_values(SectionReader &s, ValueType type, std::uint64_t count,
                 std::vector<T> &out) {
  if (type == ValueType::float32)
    read_values_as<T, float>(s, count, out);
  else
    read_values_as<T, double>(s, count, out);
}

template <class T>
CsrMatrix<T> read_csr(SectionReader &s, ValueType type, const ByteReader &in) {
  const auto rows = s.get<std::uint64_t>("row count");
  const auto cols = s.get<std::uint64_t>("column count");
  const auto nnz = s.get<std::uint64_t>("nonzero count");
  const auto width = s.get<std::uint32_t>("index width");
  const auto reserved = s.get<std::uint32_t>("reserved field");
  const std::uint64_t value_bytes = type == ValueType::float32 ? 4 : 8;
  const std::uint64_t left = s.left();
  // Consistency with the section length, overflow-safe: every count is
  // bounded by the remaining payload before it is multiplied.
  const bool consistent =
      (width == 4 || width == 8) && reserved == 0 && rows < left / 8 &&
      nnz <= left / (width + value_bytes) &&
      (rows + 1) * 8 + nnz * (width + value_bytes) == left &&
      cols <= static_cast<std::uint64_t>(std::numeric_limits<index_t>::max() / 2);
  if (!consistent) {
    std::string why = "inconsistent CSR header (rows " + std::to_string(rows) +
                      ", cols " + std::to_string(cols) + ", nnz " + std::to_string(nnz) +
                      ", index width " + std::to_string(width) + ") for a payload of " +
                      std::to_string(left + 32) + " bytes";
    s.reject(why);
  }
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(rows + 1));
  s.read(row_ptr.data(), (rows + 1) * 8, "row pointers");
  std::vector<std::int64_t> col(static_cast<std::size_t>(nnz));
  if (width == 8) {
    s.read(col.data(), nnz * 8, "column indices");
  } else {
    constexpr std::uint64_t chunk = 1 << 16;
    std::vector<std::int32_t> buf(static_cast<std::size_t>(std::min(nnz, chunk)));
    for (std::uint64_t k = 0; k < nnz; k += chunk) {
      const auto m = std::min(chunk, nnz - k);
      s.read(buf.data(), m * 4, "column indices");
      std::copy(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(m),
                col.begin() + static_cast<std::ptrdiff_t>(k));
    }
  }
  std::vector<T> values;
  read_values(s, type, nnz, values);
  s.finish();
  if (type != value_type_of<T>())
    for (std::size_t k = 0; k < values.size(); ++k)
      if (!std::isfinite(values[k])) {
        const auto row = std::upper_bound(row_ptr.begin(), row_ptr.end(),
                                          static_cast<std::int64_t>(k)) -
                         row_ptr.begin();
        in.fail(s.label() + ": value at entry (" + std::to_string(row) + ", " +
                std::to_string(col[k] + 1) + ") is not finite in " +
                detail::type_name<T>() + " (out of range after conversion)");
      }
  try {
    return CsrMatrix<T>(static_cast<index_t>(rows), static_cast<index_t>(cols),
                        std::move(row_ptr), col, std::move(values),
                        width == 8 ? IndexWidth::wide64 : IndexWidth::narrow32);
  } catch (const InvalidArgument &e) {
    in.fail(s.label() + ": invalid CSR matrix: " + e.what());
  }
}

template <class T>
std::vector<T> read_vector(SectionReader &s, ValueType type, const ByteReader &in) {
  const auto length = s.get<std::uint64_t>("vector length");
  const std::uint64_t value_bytes = type == ValueType::float32 ? 4 : 8;
  if (length > s.left() / value_bytes || length * value_bytes != s.left())
    s.reject("vector of " + std::to_string(length) +
             " values does not fit a payload of " + std::to_string(s.left() + 8) +
             " bytes");
  std::vector<T> v;
  read_values(s, type, length, v);
  s.finish();
  for (std::size_t k = 0; k < v.size(); ++k)
    if (!std::isfinite(v[k]))
      in.fail(s.label() + ": value " + std::to_string(k + 1) + " is not finite in " +
              detail::type_name<T>());
  return v;
}

std::vector<StateBlock> read_blocks(SectionReader &s, const ByteReader &in) {
  // Small: read whole, check the CRC, then parse.
  std::string payload(static_cast<std::size_t>(s.left()), '\0');
  s.read(payload.data(), payload.size(), "block table");
  s.finish();
  const auto *p = reinterpret_cast<const unsigned char *>(payload.data());
  std::size_t left = payload.size();
  auto bad = [&](const std::string &what) { in.fail(s.label() + ": " + what); };
  if (left < 8)
    bad("the block table is shorter than its count");
  const auto count = load_le<std::uint64_t>(p);
  p += 8;
  left -= 8;
  if (count > left / 32)
    bad("block count " + std::to_string(count) + " does not fit the table");
  std::vector<StateBlock> blocks;
  blocks.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t k = 0; k < count; ++k) {
    if (left < 32)
      bad("block " + std::to_string(k) + " is cut short");
    StateBlock b;
    const auto offset = load_le<std::uint64_t>(p);
    const auto size = load_le<std::uint64_t>(p + 8);
    const auto code = load_le<std::uint32_t>(p + 16);
    const auto name_length = load_le<std::uint32_t>(p + 20);
    const auto slope = load_le<double>(p + 24);
    p += 32;
    left -= 32;
    if (name_length > left)
      bad("the name of block " + std::to_string(k) + " is cut short");
    b.name.assign(reinterpret_cast<const char *>(p), name_length);
    p += name_length;
    left -= name_length;
    const auto kind = activation_from_code(code);
    if (!kind)
      bad("block '" + b.name + "' has unknown activation code " + std::to_string(code));
    constexpr auto limit =
        static_cast<std::uint64_t>(std::numeric_limits<index_t>::max() / 2);
    if (offset > limit || size > limit)
      bad("block '" + b.name + "' has an absurd offset or size");
    b.offset = static_cast<index_t>(offset);
    b.size = static_cast<index_t>(size);
    b.activation = Activation{*kind, slope};
    blocks.push_back(std::move(b));
  }
  if (left != 0)
    bad(std::to_string(left) + " unexpected bytes after the last block");
  return blocks;
}

/// Parses an operator tree from a section payload held in memory (its CRC
/// already checked). Every count is checked against the bytes left before
/// anything is allocated from it; constructors validate the content.
template <class T> class TreeParser {
public:
  TreeParser(const std::string &payload, ValueType type, std::string label,
             const ByteReader &in)
      : p_(reinterpret_cast<const unsigned char *>(payload.data())),
        size_(payload.size()), type_(type), label_(std::move(label)), in_(in) {}

  OperatorPtr<T> parse_root() {
    auto op = parse(0);
    if (at_ != size_)
      fail(std::to_string(size_ - at_) + " unexpected bytes after the operator tree");
    return op;
  }

private:
  [[noreturn]] void fail(const std::string &what) const {
    in_.fail(label_ + ": operator tree, at payload byte " + std::to_string(at_) + ": " +
             what);
  }
  template <class U> U get(const char *what) {
    if (size_ - at_ < sizeof(U))
      fail(std::string("cut short before the ") + what);
    U v;
    std::memcpy(&v, p_ + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  index_t count(const char *what) {
    const auto v = get<std::uint64_t>(what);
    constexpr auto limit =
        static_cast<std::uint64_t>(std::numeric_limits<index_t>::max() / 2);
    if (v > limit)
      fail(std::string("absurd ") + what + " " + std::to_string(v));
    return static_cast<index_t>(v);
  }
  std::size_t value_bytes() const { return type_ == ValueType::float32 ? 4 : 8; }
  T value(const char *what) {
    const double v = type_ == ValueType::float32 ? static_cast<double>(get<float>(what))
                                                 : get<double>(what);
    const T t = static_cast<T>(v);
    if (!std::isfinite(t))
      fail(std::string(what) + " is not finite in " + detail::type_name<T>());
    return t;
  }
  std::vector<T> values(index_t expected, const char *what) {
    const index_t n = count(what);
    if (expected >= 0 && n != expected)
      fail(std::string(what) + ": " + std::to_string(n) + " values, expected " +
           std::to_string(expected));
    if (static_cast<std::uint64_t>(n) > (size_ - at_) / value_bytes())
      fail(std::string(what) + ": " + std::to_string(n) + " values do not fit the " +
           std::to_string(size_ - at_) + " bytes left");
    std::vector<T> v(static_cast<std::size_t>(n));
    for (auto &x : v)
      x = value(what);
    return v;
  }
  template <class F> OperatorPtr<T> make(const std::string &kind, F &&f) {
    try {
      return f();
    } catch (const InvalidArgument &e) {
      fail("invalid " + kind + ": " + e.what());
    }
  }

  /// The fields of one node, for its codec.
  class NodeDecoder final : public NativeDecoder<T> {
  public:
    NodeDecoder(TreeParser &parser, int depth, index_t rows, index_t cols)
        : p_(parser), depth_(depth), rows_(rows), cols_(cols) {}
    index_t rows() const noexcept override { return rows_; }
    index_t cols() const noexcept override { return cols_; }
    index_t count(const char *what) override { return p_.count(what); }
    T value(const char *what) override { return p_.value(what); }
    std::vector<T> values(index_t expected, const char *what) override {
      return p_.values(expected, what);
    }
    OperatorPtr<T> nested() override { return p_.parse(depth_ + 1); }
    std::uint64_t bytes_left() const noexcept override { return p_.size_ - p_.at_; }
    std::size_t value_bytes() const noexcept override { return p_.value_bytes(); }
    [[noreturn]] void fail(const std::string &what) override { p_.fail(what); }

  private:
    TreeParser &p_;
    int depth_;
    index_t rows_, cols_;
  };

  OperatorPtr<T> parse(int depth) {
    if (depth > max_tree_depth)
      fail("operators nested deeper than " + std::to_string(max_tree_depth));
    const auto start = at_;
    const auto code = get<std::uint32_t>("operator code");
    const auto reserved = get<std::uint32_t>("reserved field");
    const index_t rows = count("row count"), cols = count("column count");
    if (reserved != 0)
      fail("reserved field is " + std::to_string(reserved) + ", expected 0");
    OperatorPtr<T> op;
    if (code == csr_node_code) {
      const index_t nnz = count("nonzero count");
      const auto width = get<std::uint32_t>("index width");
      get<std::uint32_t>("reserved field");
      if ((width != 4 && width != 8) ||
          static_cast<std::uint64_t>(rows) >= (size_ - at_) / 8 ||
          static_cast<std::uint64_t>(nnz) > (size_ - at_) / (width + value_bytes()))
        fail("inconsistent CSR node (rows " + std::to_string(rows) + ", nnz " +
             std::to_string(nnz) + ", index width " + std::to_string(width) + ")");
      std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(rows + 1));
      for (auto &v : row_ptr)
        v = get<std::int64_t>("row pointers");
      std::vector<std::int64_t> col(static_cast<std::size_t>(nnz));
      for (auto &v : col)
        v = width == 8 ? get<std::int64_t>("column indices")
                       : static_cast<std::int64_t>(get<std::int32_t>("column indices"));
      std::vector<T> vals(static_cast<std::size_t>(nnz));
      for (auto &v : vals)
        v = value("CSR values");
      op = make("CSR node", [&] {
        return std::make_shared<CsrMatrix<T>>(rows, cols, std::move(row_ptr), col,
                                              std::move(vals));
      });
    } else if (const auto *codec = find_native_codec<T>(code)) {
      NodeDecoder node(*this, depth, rows, cols);
      op = make(codec->label, [&] { return codec->decode(node); });
      if (!op)
        fail("the " + codec->label + " codec returned no operator");
    } else {
      at_ = start;
      fail("unknown operator code " + std::to_string(code));
    }
    if (op->rows() != rows || op->cols() != cols)
      fail("the node (at payload byte " + std::to_string(start) + ") says " +
           std::to_string(rows) + " x " + std::to_string(cols) + " but its operator is " +
           std::to_string(op->rows()) + " x " + std::to_string(op->cols()));
    return op;
  }

  const unsigned char *p_;
  std::size_t size_, at_ = 0;
  ValueType type_;
  std::string label_;
  const ByteReader &in_;
};

template <class T>
OperatorPtr<T> read_tree(SectionReader &s, ValueType type, const ByteReader &in) {
  std::string payload(static_cast<std::size_t>(s.left()), '\0');
  s.read(payload.data(), payload.size(), "operator tree");
  s.finish();
  TreeParser<T> parser(payload, type, s.label(), in);
  return parser.parse_root();
}

template <class T>
std::vector<T> read_runs(SectionReader &s, ValueType type, const ByteReader &in) {
  const auto length = s.get<std::uint64_t>("vector length");
  const auto count = s.get<std::uint64_t>("run count");
  const std::uint64_t value_bytes = type == ValueType::float32 ? 4 : 8;
  if (count > s.left() / (8 + value_bytes) || count * (8 + value_bytes) != s.left() ||
      length > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max() / 2))
    s.reject("run-length vector of " + std::to_string(count) +
             " runs does not fit a payload of " + std::to_string(s.left() + 16) +
             " bytes");
  std::string payload(static_cast<std::size_t>(s.left()), '\0');
  s.read(payload.data(), payload.size(), "runs");
  s.finish();
  const auto *p = reinterpret_cast<const unsigned char *>(payload.data());
  std::uint64_t total = 0;
  for (std::uint64_t r = 0; r < count; ++r)
    total += std::min<std::uint64_t>(load_le<std::uint64_t>(p + r * (8 + value_bytes)),
                                     length + 1);
  if (total != length)
    in.fail(s.label() + ": runs cover " + std::to_string(total) + " values, expected " +
            std::to_string(length));
  std::vector<T> v;
  v.reserve(static_cast<std::size_t>(length));
  for (std::uint64_t r = 0; r < count; ++r) {
    const unsigned char *q = p + r * (8 + value_bytes);
    const auto n = load_le<std::uint64_t>(q);
    const T value = type == ValueType::float32 ? static_cast<T>(load_le<float>(q + 8))
                                               : static_cast<T>(load_le<double>(q + 8));
    if (!std::isfinite(value))
      in.fail(s.label() + ": run " + std::to_string(r + 1) + " is not finite in " +
              detail::type_name<T>());
    v.insert(v.end(), static_cast<std::size_t>(n), value);
  }
  return v;
}

template <class T> Model<T> read_native(ByteReader &in) {
  require_little_endian(in.name());
  const Header h = read_header(in);
  std::optional<std::vector<StateBlock>> blocks;
  OperatorPtr<T> mat[4]; // A, B, C, D
  std::optional<std::vector<T>> bx, by;
  for (std::uint32_t k = 0; k < h.sections; ++k) {
    const auto start = in.offset();
    unsigned char sh[section_header_bytes];
    in.read(sh, sizeof sh,
            "section header " + std::to_string(k + 1) + " of " +
                std::to_string(h.sections));
    const auto role = load_le<std::uint32_t>(sh);
    const auto kind = load_le<std::uint32_t>(sh + 4);
    const auto payload = load_le<std::uint64_t>(sh + 8);
    if (in.remaining() < 4 || payload > in.remaining() - 4)
      in.fail("truncated at byte offset " + std::to_string(in.offset()) +
              ": expected a " + std::to_string(payload) +
              "-byte payload and a 4-byte CRC for section " + role_name(role) + " (" +
              std::to_string(k + 1) + " of " + std::to_string(h.sections) +
              ", at byte offset " + std::to_string(start) + "), but only " +
              std::to_string(in.remaining()) + " bytes remain");
    SectionReader s(in, role, start, payload, crc_update(0, sh, sizeof sh));
    Kind expected;
    switch (role) {
    case 1:
      expected = Kind::block_table;
      break;
    case 2:
    case 3:
    case 4:
    case 5:
      expected = Kind::csr;
      break;
    case 6:
    case 7:
      expected = Kind::dense_vector;
      break;
    default:
      s.reject("unknown section role " + std::to_string(role));
    }
    const bool tree = expected == Kind::csr && h.version >= 2 &&
                      kind == static_cast<std::uint32_t>(Kind::operator_tree);
    const bool runs = expected == Kind::dense_vector && h.version >= 2 &&
                      kind == static_cast<std::uint32_t>(Kind::run_vector);
    if (kind != static_cast<std::uint32_t>(expected) && !tree && !runs)
      s.reject("section kind " + std::to_string(kind) +
               " is not supported by this version of tacit (expected " +
               std::to_string(static_cast<std::uint32_t>(expected)) + ")");
    auto duplicate = [&] { s.reject("the file holds this section twice"); };
    switch (role) {
    case 1:
      if (blocks)
        duplicate();
      blocks = read_blocks(s, in);
      break;
    case 2:
    case 3:
    case 4:
    case 5: {
      auto &m = mat[role - 2];
      if (m)
        duplicate();
      if (role == 5 && !(h.flags & flag_has_d))
        s.reject("the header says the model has no D, but the file holds a D section");
      if (tree)
        m = read_tree<T>(s, h.type, in);
      else
        m = std::make_shared<CsrMatrix<T>>(read_csr<T>(s, h.type, in));
      break;
    }
    case 6:
      if (bx)
        duplicate();
      bx = runs ? read_runs<T>(s, h.type, in) : read_vector<T>(s, h.type, in);
      break;
    case 7:
      if (by)
        duplicate();
      by = runs ? read_runs<T>(s, h.type, in) : read_vector<T>(s, h.type, in);
      break;
    }
  }
  if (in.remaining() != 0)
    in.fail(std::to_string(in.remaining()) + " unexpected bytes at byte offset " +
            std::to_string(in.offset()) + " after the last of " +
            std::to_string(h.sections) + " sections");
  const bool has_d = h.flags & flag_has_d;
  const char *names[4] = {"A", "B", "C", "D"};
  for (int k = 0; k < (has_d ? 4 : 3); ++k)
    if (!mat[k])
      in.fail(std::string("missing section ") + names[k]);
  if (!blocks)
    in.fail("missing section blocks");
  if (!bx)
    in.fail("missing section bx");
  if (!by)
    in.fail("missing section by");
  // Dimensions against the header.
  auto dims_of = [](const LinearOperator<T> &m) {
    return std::to_string(m.rows()) + " x " + std::to_string(m.cols());
  };
  const auto n = static_cast<index_t>(h.n), p = static_cast<index_t>(h.p),
             q = static_cast<index_t>(h.q);
  const index_t want_rows[4] = {n, n, q, q}, want_cols[4] = {n, p, n, p};
  for (int k = 0; k < (has_d ? 4 : 3); ++k)
    if (mat[k]->rows() != want_rows[k] || mat[k]->cols() != want_cols[k])
      in.fail(std::string("section ") + names[k] + " is " + dims_of(*mat[k]) +
              ", but the header says n = " + std::to_string(n) +
              ", p = " + std::to_string(p) + ", q = " + std::to_string(q) + " (" +
              names[k] + " must be " + std::to_string(want_rows[k]) + " x " +
              std::to_string(want_cols[k]) + ")");
  if (static_cast<index_t>(bx->size()) != n)
    in.fail("section bx has " + std::to_string(bx->size()) +
            " values, expected n = " + std::to_string(n));
  if (static_cast<index_t>(by->size()) != q)
    in.fail("section by has " + std::to_string(by->size()) +
            " values, expected q = " + std::to_string(q));
  try {
    return Model<T>(mat[0], mat[1], mat[2], has_d ? mat[3] : nullptr, std::move(*bx),
                    std::move(*by), std::move(*blocks));
  } catch (const InvalidArgument &e) {
    in.fail(e.what());
  }
}

} // namespace

template <class T> void save_model_native(const Model<T> &model, const fs::path &file) {
  require_little_endian(detail::display_name(file));
  detail::AtomicFile out(file);
  const bool has_d = model.D() != nullptr;
  unsigned char h[header_bytes] = {};
  auto store = [&](std::size_t at, auto v) { std::memcpy(h + at, &v, sizeof v); };
  const bool structured = is_structured(model.A()) || is_structured(model.B()) ||
                          is_structured(model.C()) ||
                          (has_d && is_structured(*model.D()));
  std::memcpy(h, magic, 8);
  store(8, structured ? format_version : csr_only_version);
  store(12, byte_order_mark);
  store(16, static_cast<std::uint32_t>(value_type_of<T>()));
  store(20, has_d ? flag_has_d : 0u);
  store(24, static_cast<std::uint64_t>(model.states()));
  store(32, static_cast<std::uint64_t>(model.inputs()));
  store(40, static_cast<std::uint64_t>(model.outputs()));
  store(48, static_cast<std::uint32_t>(has_d ? 7 : 6));
  store(52, crc_update(0, h, 52));
  out.write(h, sizeof h);
  write_blocks(out, model.blocks());
  write_operator(out, Role::A, model.A());
  write_operator(out, Role::B, model.B());
  write_operator(out, Role::C, model.C());
  if (has_d)
    write_operator(out, Role::D, *model.D());
  if (!structured || !write_runs(out, Role::bx, model.bias_x()))
    write_vector(out, Role::bx, model.bias_x());
  if (!structured || !write_runs(out, Role::by, model.bias_y()))
    write_vector(out, Role::by, model.bias_y());
  out.commit();
}

template <class T> Model<T> load_model_native(const fs::path &file) {
  const detail::InputFile input(file);
  if (!input.regular())
    throw FileError(input.name(), 0, "is not a regular file");
  ByteReader in(input.name(), input.fd(), input.size());
  return read_native<T>(in);
}

template <class T>
Model<T> parse_model_native(std::string_view bytes, const std::string &name) {
  ByteReader in(name, bytes);
  return read_native<T>(in);
}

bool is_native_model_file(const fs::path &path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    return false;
  std::optional<detail::InputFile> file;
  try {
    file.emplace(path);
  } catch (const FileError &) {
    return false; // unreadable: not recognised as a native file
  }
  const int fd = file->fd();
  char head[8];
  std::size_t got = 0;
  while (got < sizeof head) {
    const auto r = ::read(fd, head + got, sizeof head - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += static_cast<std::size_t>(r);
  }
  return got == sizeof head && std::memcmp(head, magic, sizeof head) == 0;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template void save_model_native<T>(const Model<T> &, const fs::path &);                \
  template Model<T> load_model_native<T>(const fs::path &);                              \
  template Model<T> parse_model_native<T>(std::string_view, const std::string &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
