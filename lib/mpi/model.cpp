// Distributed models: partitions, the parallel native-file reader, and the
// distribution of a model every rank holds.

#include <tacit/mpi/matrix_market.hpp>
#include <tacit/mpi/mpi.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/detail/crc32.hpp"
#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace fs = std::filesystem;

namespace {

/// When there are at least as many rows as ranks, moves boundaries so that
/// every rank has a row (a rank with nothing to do would only wait).
void give_every_rank_a_row(RowPartition &p) {
  const int P = p.ranks();
  const index_t n = p.total();
  if (n < P)
    return;
  for (int k = 1; k < P; ++k)
    p.starts[k] = std::clamp(p.starts[k], p.starts[k - 1] + 1, n - (P - k));
}

} // namespace

RowPartition balanced_partition(index_t rows, int ranks,
                                const std::function<std::int64_t(index_t)> &row_ptr) {
  if (ranks < 1)
    throw InvalidArgument("balanced_partition: " + std::to_string(ranks) + " ranks");
  RowPartition p;
  p.starts.assign(static_cast<std::size_t>(ranks) + 1, 0);
  const double total = static_cast<double>(row_ptr(rows)) + static_cast<double>(rows);
  index_t r = 0;
  for (int k = 1; k < ranks; ++k) {
    const double target = total * k / ranks;
    index_t lo = r, hi = rows;
    while (lo < hi) {
      const index_t mid = lo + (hi - lo) / 2;
      if (static_cast<double>(row_ptr(mid)) + static_cast<double>(mid) < target)
        lo = mid + 1;
      else
        hi = mid;
    }
    r = lo;
    p.starts[k] = r;
  }
  p.starts[ranks] = rows;
  give_every_rank_a_row(p);
  return p;
}

RowPartition even_partition(index_t rows, int ranks) {
  if (ranks < 1)
    throw InvalidArgument("even_partition: " + std::to_string(ranks) + " ranks");
  RowPartition p;
  p.starts.resize(static_cast<std::size_t>(ranks) + 1);
  for (int k = 0; k <= ranks; ++k)
    p.starts[k] = rows * k / ranks;
  return p;
}

std::size_t DistributedModel::local_bytes() const {
  std::size_t b = A.local.bytes() + B.local.bytes() + C.local.bytes() +
                  bias_x.size() * sizeof(double) +
                  activations.size() * sizeof(Activation) +
                  bias_y.size() * sizeof(double);
  if (D)
    b += D->bytes();
  return b;
}

namespace {

/// Every rank must hold states: an empty rank is refused (on every rank).
void check_partition(const RowPartition &p, index_t n) {
  for (int r = 0; r < p.ranks(); ++r) {
    if (p.end(r) < p.begin(r))
      throw InvalidArgument("the partition of the " + std::to_string(n) +
                            " states is not monotone at rank " + std::to_string(r) +
                            " (row pointers of A not increasing?)");
    if (p.size(r) == 0)
      throw InvalidArgument(
          "the partition of the " + std::to_string(n) + " states over " +
          std::to_string(p.ranks()) + " ranks leaves rank " + std::to_string(r) +
          " without states (run with at most " + std::to_string(n) + " ranks)");
  }
}

std::vector<Activation> own_activations(const std::vector<StateBlock> &blocks,
                                        index_t begin, index_t end) {
  std::vector<Activation> a(static_cast<std::size_t>(end - begin));
  for (const auto &b : blocks) {
    const index_t lo = std::max(begin, b.offset), hi = std::min(end, b.offset + b.size);
    for (index_t i = lo; i < hi; ++i)
      a[i - begin] = b.activation;
  }
  return a;
}

void check_blocks(const std::vector<StateBlock> &blocks, index_t n,
                  const std::string &where) {
  index_t at = 0;
  for (const auto &b : blocks) {
    if (b.offset != at || b.size < 0)
      throw FileError(where, 0,
                      "state block '" + b.name + "' starts at " +
                          std::to_string(b.offset) + ", expected " + std::to_string(at) +
                          " (blocks must tile the states)");
    at += b.size;
  }
  if (at != n)
    throw FileError(where, 0,
                    "the state blocks cover " + std::to_string(at) +
                        " states, n = " + std::to_string(n));
}

// ------------------------------------------------------------- native file

constexpr std::size_t header_bytes = 56;
constexpr char magic[8] = {'T', 'A', 'C', 'I', 'T', 'M', 'D', 'L'};

/// pread-based reader naming the file and the offset in its errors.
class FileSlice {
public:
  explicit FileSlice(const fs::path &path) : name_(path.string()) {
    fd_ = ::open(name_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      throw FileError(name_, 0, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw FileError(name_, 0, "not a regular file");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  ~FileSlice() { ::close(fd_); }
  FileSlice(const FileSlice &) = delete;
  FileSlice &operator=(const FileSlice &) = delete;

  const std::string &name() const { return name_; }
  std::uint64_t size() const { return size_; }

  void read(std::uint64_t offset, void *out, std::uint64_t bytes,
            const char *what) const {
    if (offset > size_ || bytes > size_ - offset)
      fail("truncated: " + std::string(what) + " needs " + std::to_string(bytes) +
           " bytes at byte offset " + std::to_string(offset) + ", the file has " +
           std::to_string(size_));
    auto *p = static_cast<char *>(out);
    while (bytes > 0) {
      const ssize_t got = ::pread(fd_, p, bytes, static_cast<off_t>(offset));
      if (got <= 0)
        fail("read error at byte offset " + std::to_string(offset) + " (" + what +
             "): " + (got < 0 ? std::strerror(errno) : "end of file"));
      p += got;
      offset += static_cast<std::uint64_t>(got);
      bytes -= static_cast<std::uint64_t>(got);
    }
  }
  template <class V> V value(std::uint64_t offset, const char *what) const {
    V v;
    read(offset, &v, sizeof v, what);
    return v;
  }
  [[noreturn]] void fail(const std::string &what) const {
    throw FileError(name_, 0, what);
  }

private:
  std::string name_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

struct Section {
  std::uint32_t role = 0, kind = 0;
  std::uint64_t payload = 0, length = 0; // payload offset and length
};

const char *role_name(std::uint32_t role) {
  static const char *names[] = {"?", "blocks", "A", "B", "C", "D", "bx", "by"};
  return role < 8 ? names[role] : "?";
}

/// A CSR section: its sizes and where its arrays are.
struct CsrSection {
  const char *name = "";
  std::uint64_t rows = 0, cols = 0, nnz = 0;
  std::uint32_t width = 4;
  std::uint64_t row_ptr = 0, col_idx = 0, values = 0; // offsets
};

CsrSection csr_section(const FileSlice &f, const Section &s, std::size_t value_bytes,
                       index_t want_rows, index_t want_cols, index_t n, index_t p, index_t q) {
  CsrSection c;
  c.name = role_name(s.role);
  const std::string sec = std::string("section ") + c.name;
  if (s.kind != 2)
    throw Unsupported(f.name() + ": " + sec + " is a structured operator (kind " +
                      std::to_string(s.kind) +
                      "); tacit-mpi distributes CSR models (convert with tacit convert "
                      "after materialising, or use tacit)");
  if (s.length < 32)
    f.fail(sec + ": payload of " + std::to_string(s.length) +
           " bytes, too short for CSR");
  c.rows = f.value<std::uint64_t>(s.payload, "CSR rows");
  c.cols = f.value<std::uint64_t>(s.payload + 8, "CSR cols");
  c.nnz = f.value<std::uint64_t>(s.payload + 16, "CSR nnz");
  c.width = f.value<std::uint32_t>(s.payload + 24, "CSR index width");
  if (c.rows != static_cast<std::uint64_t>(want_rows) ||
      c.cols != static_cast<std::uint64_t>(want_cols))
    f.fail(sec + " is " + std::to_string(c.rows) + " x " + std::to_string(c.cols) +
           ", but the header says n = " + std::to_string(n) + ", p = " + std::to_string(p) +
           ", q = " + std::to_string(q) + " (" + c.name + " must be " +
           std::to_string(want_rows) + " x " + std::to_string(want_cols) + ")");
  if (c.width != 4 && c.width != 8)
    f.fail(sec + ": column index width " + std::to_string(c.width) +
           " (expected 4 or 8)");
  // Sizes bounded by the payload before any arithmetic that could overflow.
  if (c.rows >= s.length / 8 || c.nnz > s.length)
    f.fail(sec + ": " + std::to_string(c.rows) + " rows and " + std::to_string(c.nnz) +
           " nonzeros do not fit its " + std::to_string(s.length) + "-byte payload");
  const std::uint64_t need = 32 + (c.rows + 1) * 8 + c.nnz * (c.width + value_bytes);
  if (need != s.length)
    f.fail(sec + ": payload of " + std::to_string(s.length) + " bytes, expected " +
           std::to_string(need) + " for " + std::to_string(c.rows) + " rows and " +
           std::to_string(c.nnz) + " nonzeros");
  c.row_ptr = s.payload + 32;
  c.col_idx = c.row_ptr + (c.rows + 1) * 8;
  c.values = c.col_idx + c.nnz * c.width;
  return c;
}

/// Rows [r0, r1) of a CSR section, columns global, values as double.
CsrMatrix<double> read_rows(const FileSlice &f, const CsrSection &c, index_t r0,
                            index_t r1, std::size_t value_bytes) {
  const std::string sec = std::string("section ") + c.name;
  const auto m = static_cast<std::size_t>(r1 - r0);
  std::vector<std::int64_t> ptr(m + 1);
  f.read(c.row_ptr + static_cast<std::uint64_t>(r0) * 8, ptr.data(), (m + 1) * 8,
         "row pointers");
  for (std::size_t i = 0; i <= m; ++i) {
    if (ptr[i] < 0 || static_cast<std::uint64_t>(ptr[i]) > c.nnz ||
        (i > 0 && ptr[i] < ptr[i - 1]))
      f.fail(sec + ": row pointer " + std::to_string(r0 + static_cast<index_t>(i)) +
             " = " + std::to_string(ptr[i]) + " is out of order or outside [0, " +
             std::to_string(c.nnz) + "]");
  }
  const std::int64_t first = ptr[0];
  const auto count = static_cast<std::size_t>(ptr[m] - first);
  for (auto &p : ptr)
    p -= first;
  std::vector<std::int64_t> cols(count);
  if (c.width == 4) {
    std::vector<std::uint32_t> raw(count);
    f.read(c.col_idx + static_cast<std::uint64_t>(first) * 4, raw.data(), count * 4,
           "column indices");
    std::copy(raw.begin(), raw.end(), cols.begin());
  } else {
    std::vector<std::uint64_t> raw(count);
    f.read(c.col_idx + static_cast<std::uint64_t>(first) * 8, raw.data(), count * 8,
           "column indices");
    for (std::size_t e = 0; e < count; ++e)
      cols[e] = static_cast<std::int64_t>(std::min<std::uint64_t>(raw[e], INT64_MAX));
  }
  std::vector<double> vals(count);
  if (value_bytes == 4) {
    std::vector<float> raw(count);
    f.read(c.values + static_cast<std::uint64_t>(first) * 4, raw.data(), count * 4,
           "values");
    std::copy(raw.begin(), raw.end(), vals.begin());
  } else {
    f.read(c.values + static_cast<std::uint64_t>(first) * 8, vals.data(), count * 8,
           "values");
  }
  for (std::size_t i = 0; i < m; ++i)
    for (auto e = ptr[i]; e < ptr[i + 1]; ++e) {
      const index_t row = r0 + static_cast<index_t>(i);
      if (cols[e] < 0 || static_cast<std::uint64_t>(cols[e]) >= c.cols ||
          (e > ptr[i] && cols[e] <= cols[e - 1]))
        f.fail(sec + ": row " + std::to_string(row) + ": column index " +
               std::to_string(cols[e]) + " is outside [0, " + std::to_string(c.cols) +
               ") or not increasing");
      if (!std::isfinite(vals[e]))
        f.fail(sec + ": entry (" + std::to_string(row) + ", " + std::to_string(cols[e]) +
               ") is not finite");
    }
  return CsrMatrix<double>(static_cast<index_t>(m), static_cast<index_t>(c.cols),
                           std::move(ptr), cols, std::move(vals));
}

std::vector<double> read_dense(const FileSlice &f, const Section &s,
                               std::size_t value_bytes, index_t expected, index_t i0,
                               index_t i1) {
  const std::string sec = std::string("section ") + role_name(s.role);
  if (s.kind != 3)
    throw Unsupported(f.name() + ": " + sec + " is stored as runs (kind " +
                      std::to_string(s.kind) + "); tacit-mpi reads dense vectors");
  const auto len = f.value<std::uint64_t>(s.payload, "vector length");
  if (len != static_cast<std::uint64_t>(expected))
    f.fail(sec + " has " + std::to_string(len) + " values, expected " +
           std::to_string(expected));
  if (s.length != 8 + len * value_bytes)
    f.fail(sec + ": payload of " + std::to_string(s.length) + " bytes, expected " +
           std::to_string(8 + len * value_bytes));
  const auto m = static_cast<std::size_t>(i1 - i0);
  std::vector<double> v(m);
  if (value_bytes == 4) {
    std::vector<float> raw(m);
    f.read(s.payload + 8 + static_cast<std::uint64_t>(i0) * 4, raw.data(), m * 4,
           "values");
    std::copy(raw.begin(), raw.end(), v.begin());
  } else {
    f.read(s.payload + 8 + static_cast<std::uint64_t>(i0) * 8, v.data(), m * 8, "values");
  }
  for (std::size_t i = 0; i < m; ++i)
    if (!std::isfinite(v[i]))
      f.fail(sec + ": value " + std::to_string(i0 + static_cast<index_t>(i)) +
             " is not finite");
  return v;
}

std::vector<StateBlock> read_blocks(const FileSlice &f, const Section &s) {
  if (s.kind != 1)
    f.fail("section blocks has kind " + std::to_string(s.kind) + " (expected 1)");
  std::vector<char> b(static_cast<std::size_t>(s.length));
  f.read(s.payload, b.data(), s.length, "block table");
  std::size_t at = 0;
  auto take = [&](void *out, std::size_t bytes) {
    if (b.size() - at < bytes)
      f.fail("section blocks: truncated block table");
    std::memcpy(out, b.data() + at, bytes);
    at += bytes;
  };
  std::uint64_t count = 0;
  take(&count, 8);
  if (count > b.size() / 32)
    f.fail("section blocks: " + std::to_string(count) + " blocks in " +
           std::to_string(b.size()) + " bytes");
  std::vector<StateBlock> blocks;
  for (std::uint64_t k = 0; k < count; ++k) {
    std::uint64_t offset, size;
    std::uint32_t code, name_len;
    double slope;
    take(&offset, 8);
    take(&size, 8);
    take(&code, 4);
    take(&name_len, 4);
    take(&slope, 8);
    if (b.size() - at < name_len)
      f.fail("section blocks: truncated block name");
    StateBlock block;
    block.name.assign(b.data() + at, name_len);
    at += name_len;
    static const char *names[] = {"relu", "leaky_relu", "tanh", "sigmoid", "identity"};
    if (code > 4)
      f.fail("section blocks: block '" + block.name + "' has activation code " +
             std::to_string(code));
    block.activation = Activation::parse(names[code], slope);
    block.offset = static_cast<index_t>(offset);
    block.size = static_cast<index_t>(size);
    blocks.push_back(std::move(block));
  }
  return blocks;
}

void init_comm(DistributedModel &m, MPI_Comm comm) {
  m.comm = comm;
  MPI_Comm_rank(comm, &m.rank);
  MPI_Comm_size(comm, &m.ranks);
}

} // namespace


/// The CRC-32 of every section (its 16-byte header and payload, as written),
/// checked without any rank reading the whole file: rank r checksums the r-th
/// equal byte share of each section, the shares' CRCs are gathered and
/// combined in order (detail::crc32_combine), and every rank compares the
/// result with the stored CRC, so all ranks agree on a damaged section and
/// name it. Done before any row is read, as the single-process reader does,
/// so that damage is reported as a checksum mismatch rather than as whatever
/// it makes the arrays look like.
void verify_section_checksums(MPI_Comm comm, const DistributedModel &m, const FileSlice &f,
                              const std::optional<Section> (&sections)[8]) {
  constexpr int roles = 8;
  const auto extent = [&](const Section &s, int rank) {
    const std::uint64_t begin = s.payload - 16, bytes = s.length + 16;
    const auto at = [&](int r) {
      // bytes * r / ranks without overflow for any file size.
      return begin + bytes / static_cast<std::uint64_t>(m.ranks) * static_cast<std::uint64_t>(r) +
             bytes % static_cast<std::uint64_t>(m.ranks) * static_cast<std::uint64_t>(r) /
                 static_cast<std::uint64_t>(m.ranks);
    };
    return std::pair<std::uint64_t, std::uint64_t>{at(rank), at(rank + 1)};
  };
  std::uint32_t mine[roles] = {};
  detail::collective(comm, [&] {
    std::vector<unsigned char> buffer(std::size_t(1) << 20);
    for (int role = 1; role < roles; ++role) {
      if (!sections[role])
        continue;
      auto [at, end] = extent(*sections[role], m.rank);
      std::uint32_t crc = 0;
      while (at < end) {
        const auto chunk = std::min<std::uint64_t>(end - at, buffer.size());
        f.read(at, buffer.data(), chunk, "a section (checksum)");
        crc = tacit::detail::crc32_update(crc, buffer.data(), static_cast<std::size_t>(chunk));
        at += chunk;
      }
      mine[role] = crc;
    }
  });
  std::vector<std::uint32_t> all(static_cast<std::size_t>(m.ranks) * roles);
  MPI_Allgather(mine, roles, MPI_UINT32_T, all.data(), roles, MPI_UINT32_T, comm);
  detail::collective(comm, [&] {
    for (int role = 1; role < roles; ++role) {
      if (!sections[role])
        continue;
      const Section &s = *sections[role];
      std::uint32_t crc = 0;
      for (int r = 0; r < m.ranks; ++r) {
        const auto [begin, end] = extent(s, r);
        crc = tacit::detail::crc32_combine(
            crc, all[static_cast<std::size_t>(r) * roles + static_cast<std::size_t>(role)],
            end - begin);
      }
      const auto stored = f.value<std::uint32_t>(s.payload + s.length, "a section's CRC-32");
      if (stored != crc) {
        char text[64];
        std::snprintf(text, sizeof text, "stored 0x%08x, computed 0x%08x", stored, crc);
        f.fail("CRC mismatch in section " + std::string(role_name(static_cast<std::uint32_t>(role))) +
               " (at byte offset " + std::to_string(s.payload - 16) + "): " + text +
               "; the file is corrupt");
      }
    }
  });
}

DistributedModel load_distributed_model(const fs::path &path, MPI_Comm comm,
                                        std::size_t memory_budget) {
  if (std::error_code ec; fs::is_directory(path, ec)) // lib/mpi/matrix_market.cpp
    return load_distributed_model_directory(path, comm, memory_budget);
  DistributedModel m;
  init_comm(m, comm);
  // Phase 1 (every rank the same reads): header, sections, the partition.
  struct Layout {
    std::size_t value_bytes = 8;
    bool has_d = false;
    std::optional<Section> sections[8];
    CsrSection csr[4];
  };
  auto layout = std::make_shared<Layout>();
  auto file = detail::collective(comm, [&] {
    auto f = std::make_shared<FileSlice>(path);
    unsigned char h[header_bytes] = {};
    f->read(0, h, std::min<std::uint64_t>(8, f->size()), "the magic");
    if (std::memcmp(h, magic, 8) != 0)
      f->fail("not a native tacit model file (no TACITMDL magic); tacit-mpi reads "
              "native files: convert a model directory with `tacit convert DIR "
              "model.tacit`");
    f->read(0, h, header_bytes, "the header");
    auto at = [&](std::size_t o, auto v) {
      std::memcpy(&v, h + o, sizeof v);
      return v;
    };
    const auto version = at(8, std::uint32_t{});
    const auto bom = at(12, std::uint32_t{});
    const auto type = at(16, std::uint32_t{});
    const auto flags = at(20, std::uint32_t{});
    const auto n = at(24, std::uint64_t{}), p = at(32, std::uint64_t{}),
               q = at(40, std::uint64_t{});
    const auto count = at(48, std::uint32_t{});
    if (version < 1 || version > 2)
      f->fail("unsupported native format version " + std::to_string(version));
    if (bom != 0x01020304u)
      f->fail("byte-order mark " + std::to_string(bom) + " (big-endian or corrupt file)");
    if (type != 1 && type != 2)
      f->fail("value type " + std::to_string(type) +
              " (expected 1 float32 or 2 float64)");
    layout->value_bytes = type == 1 ? 4 : 8;
    layout->has_d = (flags & 1u) != 0;
    if (n > f->size() * 8 + 8 || p > f->size() * 8 + 8 || q > f->size() * 8 + 8)
      f->fail("header dimensions n = " + std::to_string(n) +
              ", p = " + std::to_string(p) + ", q = " + std::to_string(q) +
              " exceed what the file can hold");
    m.n = static_cast<index_t>(n);
    m.p = static_cast<index_t>(p);
    m.q = static_cast<index_t>(q);
    std::uint64_t off = header_bytes;
    for (std::uint32_t k = 0; k < count; ++k) {
      unsigned char sh[16];
      f->read(off, sh, 16, "a section header");
      Section s;
      std::memcpy(&s.role, sh, 4);
      std::memcpy(&s.kind, sh + 4, 4);
      std::memcpy(&s.length, sh + 8, 8);
      s.payload = off + 16;
      if (s.length > f->size() || s.payload + s.length + 4 > f->size())
        f->fail("truncated: section " + std::string(role_name(s.role)) +
                " at byte offset " + std::to_string(off) + " declares " +
                std::to_string(s.length) + " payload bytes, the file has " +
                std::to_string(f->size()));
      if (s.role < 1 || s.role > 7)
        f->fail("unknown section role " + std::to_string(s.role) + " at byte offset " +
                std::to_string(off));
      if (layout->sections[s.role])
        f->fail(std::string("duplicate section ") + role_name(s.role));
      layout->sections[s.role] = s;
      off = s.payload + s.length + 4;
    }
    if (off != f->size())
      f->fail(std::to_string(f->size() - off) + " unexpected bytes after the last of " +
              std::to_string(count) + " sections");
    for (std::uint32_t role = 1; role <= 7; ++role)
      if (!layout->sections[role] && !(role == 5 && !layout->has_d))
        f->fail(std::string("missing section ") + role_name(role));
    const index_t want_rows[4] = {m.n, m.n, m.q, m.q},
                  want_cols[4] = {m.n, m.p, m.n, m.p};
    for (int k = 0; k < (layout->has_d ? 4 : 3); ++k) {
      auto &c = layout->csr[k];
      c = csr_section(*f, *layout->sections[2 + k], layout->value_bytes, want_rows[k],
                      want_cols[k], m.n, m.p, m.q);
    }
    // This rank's boundary of the nonzero-balanced split, by binary search
    // over A's row pointers in the file.
    const auto &a = layout->csr[0];
    const auto row_ptr = [&](index_t i) {
      return f->value<std::int64_t>(a.row_ptr + static_cast<std::uint64_t>(i) * 8,
                                    "a row pointer of A");
    };
    const std::int64_t total_nnz = row_ptr(m.n);
    if (total_nnz < 0 || static_cast<std::uint64_t>(total_nnz) != a.nnz)
      f->fail("section A: last row pointer " + std::to_string(total_nnz) +
              " differs from nnz " + std::to_string(a.nnz));
    return f;
  });
  verify_section_checksums(comm, m, *file, layout->sections);

  // Boundaries: rank r computes boundary r (rows with cost >= r/P of the
  // total), then all boundaries are gathered.
  std::vector<long long> starts(static_cast<std::size_t>(m.ranks) + 1, 0);
  // (No MPI call inside a collective() body that may throw on one rank only.)
  const long long boundary = detail::collective(comm, [&]() -> long long {
    const auto &a = layout->csr[0];
    long long mine = 0;
    if (m.rank > 0) {
      const auto row_ptr = [&](index_t i) -> std::int64_t {
        return file->value<std::int64_t>(a.row_ptr + static_cast<std::uint64_t>(i) * 8,
                                         "a row pointer of A");
      };
      const double total = static_cast<double>(a.nnz) + static_cast<double>(m.n);
      const double target = total * m.rank / m.ranks;
      index_t lo = 0, hi = m.n;
      while (lo < hi) {
        const index_t mid = lo + (hi - lo) / 2;
        if (static_cast<double>(row_ptr(mid)) + static_cast<double>(mid) < target)
          lo = mid + 1;
        else
          hi = mid;
      }
      mine = lo;
    }
    return mine;
  });
  MPI_Allgather(&boundary, 1, MPI_LONG_LONG, starts.data(), 1, MPI_LONG_LONG, comm);
  starts[m.ranks] = m.n;
  m.states.starts.assign(starts.begin(), starts.end());
  give_every_rank_a_row(m.states);
  m.outputs = even_partition(m.q, m.ranks);
  detail::collective(comm, [&] { check_partition(m.states, m.n); });

  // Phase 2: each rank its own rows.
  detail::collective(comm, [&] {
    const FileSlice &f = *file;
    const auto vb = layout->value_bytes;
    const index_t r0 = m.own_begin(), r1 = m.own_end();
    const index_t o0 = m.outputs.begin(m.rank), o1 = m.outputs.end(m.rank);
    if (memory_budget > 0) {
      // The share's bytes as held (64-bit row pointers, 32- or 64-bit column
      // indices, double values), from the row pointers at its ends.
      auto share = [&](const CsrSection &c, index_t a, index_t b) {
        const auto at = [&](index_t i) {
          return f.value<std::int64_t>(c.row_ptr + static_cast<std::uint64_t>(i) * 8,
                                       "a row pointer");
        };
        const auto nnz = static_cast<std::uint64_t>(std::max<std::int64_t>(0, at(b) - at(a)));
        const std::uint64_t width = c.cols > 0x7fffffffu ? 8 : 4;
        return static_cast<std::uint64_t>(b - a + 1) * 8 + nnz * (width + 8);
      };
      std::uint64_t need = share(layout->csr[0], r0, r1) + share(layout->csr[1], r0, r1) +
                           share(layout->csr[2], o0, o1) +
                           static_cast<std::uint64_t>(r1 - r0) * (8 + sizeof(Activation));
      if (m.rank == 0 && layout->has_d)
        need += share(layout->csr[3], 0, m.q);
      if (need > memory_budget)
        throw InvalidArgument("rank " + std::to_string(m.rank) + " would hold " +
                              std::to_string(need) + " bytes of the model (states [" +
                              std::to_string(r0) + ", " + std::to_string(r1) +
                              ")), more than the memory budget of " +
                              std::to_string(memory_budget) + " bytes: use more ranks");
    }
    m.A = {m.n, m.n, r0, static_cast<std::int64_t>(layout->csr[0].nnz),
           read_rows(f, layout->csr[0], r0, r1, vb)};
    m.B = {m.n, m.p, r0, static_cast<std::int64_t>(layout->csr[1].nnz),
           read_rows(f, layout->csr[1], r0, r1, vb)};
    m.C = {m.q, m.n, o0, static_cast<std::int64_t>(layout->csr[2].nnz),
           read_rows(f, layout->csr[2], o0, o1, vb)};
    m.bias_x = read_dense(f, *layout->sections[6], vb, m.n, r0, r1);
    m.blocks = read_blocks(f, *layout->sections[1]);
    check_blocks(m.blocks, m.n, f.name());
    m.activations = own_activations(m.blocks, r0, r1);
    if (m.rank == 0) {
      if (layout->has_d)
        m.D = std::make_shared<const CsrMatrix<double>>(
            read_rows(f, layout->csr[3], 0, m.q, vb));
      m.bias_y = read_dense(f, *layout->sections[7], vb, m.q, 0, m.q);
    }
  });
  return m;
}

DistributedModel distribute_model(const Model<double> &model, MPI_Comm comm) {
  DistributedModel m;
  init_comm(m, comm);
  detail::collective(comm, [&] {
    m.n = model.states();
    m.p = model.inputs();
    m.q = model.outputs();
    const auto A = csr_view(model.A());
    const auto rp = A->row_ptr();
    m.states = balanced_partition(m.n, m.ranks, [&](index_t i) { return rp[i]; });
    m.outputs = even_partition(m.q, m.ranks);
    check_partition(m.states, m.n);
    const index_t r0 = m.own_begin(), r1 = m.own_end();
    auto rows_of = [](const CsrMatrix<double> &M, index_t a, index_t b) {
      std::vector<index_t> rows(static_cast<std::size_t>(b - a)),
          cols(static_cast<std::size_t>(M.cols()));
      for (index_t i = a; i < b; ++i)
        rows[i - a] = i;
      for (index_t j = 0; j < M.cols(); ++j)
        cols[j] = j;
      return M.submatrix(rows, cols);
    };
    m.A = {m.n, m.n, r0, A->nnz(), rows_of(*A, r0, r1)};
    const auto B = csr_view(model.B());
    m.B = {m.n, m.p, r0, B->nnz(), rows_of(*B, r0, r1)};
    const auto C = csr_view(model.C());
    const index_t o0 = m.outputs.begin(m.rank), o1 = m.outputs.end(m.rank);
    m.C = {m.q, m.n, o0, C->nnz(), rows_of(*C, o0, o1)};
    m.bias_x.assign(model.bias_x().begin() + r0, model.bias_x().begin() + r1);
    m.blocks = model.blocks();
    m.activations = own_activations(m.blocks, r0, r1);
    if (m.rank == 0) {
      if (model.D())
        m.D = csr_view(model.D_ptr()).shared();
      m.bias_y.assign(model.bias_y().begin(), model.bias_y().end());
    }
  });
  return m;
}

} // namespace tacit::inline v1::mpi
