// Matrix Market files and model directories read in parallel: each rank
// parses the lines that start in its share of a file's bytes and sends every
// entry to the owner of its row.

#include <tacit/mpi/matrix_market.hpp>

#include <tacit/io/io.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace fs = std::filesystem;

namespace {

int rank_of(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}
int ranks_of(MPI_Comm comm) {
  int r = 1;
  MPI_Comm_size(comm, &r);
  return r;
}

/// A file read by offsets.
class File {
public:
  explicit File(const fs::path &path) : name_(path.string()) {
    std::error_code ec;
    if (fs::is_directory(path, ec))
      throw FileError(name_, 0, "is a directory, expected a file");
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      throw FileError(name_, 0, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      throw FileError(name_, 0, std::string("cannot stat: ") + std::strerror(err));
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  ~File() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  File(const File &) = delete;
  File &operator=(const File &) = delete;
  std::uint64_t size() const noexcept { return size_; }
  const std::string &name() const noexcept { return name_; }
  /// Bytes [at, at + n) (fewer at the end of the file).
  std::string read(std::uint64_t at, std::uint64_t n) const {
    n = at >= size_ ? 0 : std::min(n, size_ - at);
    std::string out(static_cast<std::size_t>(n), '\0');
    std::size_t done = 0;
    while (done < out.size()) {
      const auto r = ::pread(fd_, out.data() + done, out.size() - done,
                             static_cast<off_t>(at + done));
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        throw FileError(name_, 0,
                        "read error at byte " + std::to_string(at + done) + ": " +
                            (r < 0 ? std::strerror(errno) : "unexpected end of file"));
      done += static_cast<std::size_t>(r);
    }
    return out;
  }
  /// The first line start at or after `from` (a line starts at `first` or
  /// after a newline); size() when none.
  std::uint64_t line_start(std::uint64_t from, std::uint64_t first) const {
    if (from <= first)
      return first;
    constexpr std::uint64_t piece = 1 << 16;
    for (std::uint64_t at = from - 1; at < size_; at += piece) {
      const std::string s = read(at, piece);
      if (const auto nl = s.find('\n'); nl != std::string::npos)
        return at + nl + 1;
    }
    return size_;
  }

private:
  std::string name_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

std::string quote(std::string_view s) {
  if (s.size() > 60)
    return "'" + std::string(s.substr(0, 57)) + "...'";
  return "'" + std::string(s) + "'";
}

std::string entry_name(std::int64_t i, std::int64_t j) {
  return "(" + std::to_string(i) + ", " + std::to_string(j) + ")";
}

std::vector<std::string_view> tokens(std::string_view line) {
  std::vector<std::string_view> t;
  std::size_t i = 0;
  while (true) {
    while (i < line.size() && is_blank(line[i]))
      ++i;
    if (i == line.size())
      break;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i]))
      ++i;
    t.push_back(line.substr(start, i - start));
  }
  return t;
}

bool skippable(std::string_view line) {
  for (char c : line) {
    if (c == '%')
      return true;
    if (!is_blank(c))
      return false;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto &c : r)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return r;
}

bool integer_of(std::string_view tok, std::int64_t &v) {
  const char *b = tok.data(), *e = tok.data() + tok.size();
  if (b != e && *b == '+')
    ++b;
  const auto r = std::from_chars(b, e, v);
  return r.ec == std::errc() && r.ptr == e;
}

enum class Symmetry { general, symmetric, skew };

struct Header {
  bool pattern = false, integer = false;
  Symmetry symmetry = Symmetry::general;
  std::int64_t rows = 0, cols = 0, entries = 0;
  std::int64_t size_line = 0, body_line = 0;
  std::uint64_t body_offset = 0;
};

/// The banner and the size line, checked as the single-process reader does.
Header read_header(const File &f) {
  const std::string &name = f.name();
  Header h;
  std::string text = f.read(0, 1 << 16);
  for (std::uint64_t have = text.size(); have < f.size();) {
    // Enough when the size line (the first non-comment line after the
    // banner) is whole.
    std::size_t at = text.find('\n');
    bool whole = false;
    while (at != std::string::npos) {
      const std::size_t next = text.find('\n', at + 1);
      if (next == std::string::npos)
        break;
      if (!skippable(std::string_view(text).substr(at + 1, next - at - 1))) {
        whole = true;
        break;
      }
      at = next;
    }
    if (whole)
      break;
    text += f.read(have, have);
    have = text.size();
  }
  std::size_t pos = 0;
  std::int64_t line_no = 0;
  auto next_line = [&](std::string_view &line) {
    if (pos >= text.size())
      return false;
    const auto nl = text.find('\n', pos);
    const std::size_t end = nl == std::string::npos ? text.size() : nl;
    line = std::string_view(text).substr(pos, end - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    ++line_no;
    return true;
  };
  std::string_view line;
  if (!next_line(line))
    throw FileError(name, 0, "empty file; expected a Matrix Market banner");
  const auto t = tokens(line);
  if (t.empty() || lower(t[0]) != "%%matrixmarket")
    throw FileError(name, 1,
                    "not a Matrix Market file: the first line must be the banner "
                    "%%MatrixMarket matrix coordinate real general, found " +
                        quote(line));
  if (t.size() != 5 || lower(t[1]) != "matrix")
    throw FileError(name, 1, "bad banner " + quote(line));
  const std::string format = lower(t[2]), field = lower(t[3]), symmetry = lower(t[4]);
  if (format == "array")
    throw FileError(name, 1,
                    "an array (dense) file is not read in parallel: convert the model "
                    "with `tacit convert DIR model.tacit`");
  if (format != "coordinate")
    throw FileError(name, 1,
                    "unknown format " + quote(t[2]) +
                        " in the banner (expected coordinate or array)");
  if (field == "pattern")
    h.pattern = true;
  else if (field == "integer")
    h.integer = true;
  else if (field != "real" && field != "double")
    throw FileError(name, 1,
                    "unsupported field " + quote(t[3]) +
                        " in the banner (tacit reads real, integer or pattern matrices)");
  if (symmetry == "symmetric")
    h.symmetry = Symmetry::symmetric;
  else if (symmetry == "skew-symmetric")
    h.symmetry = Symmetry::skew;
  else if (symmetry != "general")
    throw FileError(name, 1,
                    "unsupported symmetry " + quote(t[4]) +
                        " in the banner (expected general, symmetric or skew-symmetric)");
  if (h.pattern && h.symmetry == Symmetry::skew)
    throw FileError(name, 1, "a pattern matrix cannot be skew-symmetric");
  bool found = false;
  while (next_line(line))
    if (!skippable(line)) {
      found = true;
      break;
    }
  if (!found)
    throw FileError(name, line_no,
                    "missing size line: the file ends before the line 'rows columns "
                    "entries'");
  h.size_line = line_no;
  const auto s = tokens(line);
  std::int64_t v[3] = {0, 0, 0};
  if (s.size() != 3 || !integer_of(s[0], v[0]) || !integer_of(s[1], v[1]) ||
      !integer_of(s[2], v[2]) || v[0] < 0 || v[1] < 0 || v[2] < 0)
    throw FileError(
        name, h.size_line,
        "bad size line " + quote(line) +
            ": expected 'rows columns entries' (three non-negative integers)");
  h.rows = v[0];
  h.cols = v[1];
  h.entries = v[2];
  if (h.symmetry != Symmetry::general && h.rows != h.cols)
    throw FileError(
        name, h.size_line,
        std::string("a ") +
            (h.symmetry == Symmetry::symmetric ? "symmetric" : "skew-symmetric") +
            " matrix must be square, the size line declares " + std::to_string(h.rows) +
            " x " + std::to_string(h.cols));
  if (h.rows > std::numeric_limits<std::int32_t>::max() ||
      h.cols > std::numeric_limits<std::int32_t>::max())
    throw FileError(name, h.size_line,
                    "a " + std::to_string(h.rows) + " x " + std::to_string(h.cols) +
                        " matrix exceeds PETSc's 32-bit indices");
  h.body_offset = pos;
  h.body_line = line_no + 1;
  return h;
}

struct Entry {
  std::int64_t row = 0, col = 0; // 0-based
  double value = 0;
  std::int64_t line = 0;
};

/// Parses one entry line; "" or the problem.
std::string parse_entry(std::string_view line, const Header &h, Entry &e) {
  const auto t = tokens(line);
  const std::size_t wanted = h.pattern ? 2 : 3;
  if (t.size() != wanted)
    return std::string("expected ") +
           (h.pattern ? "2 tokens (row column)" : "3 tokens (row column value)") +
           ", found " + std::to_string(t.size()) + ": " + quote(line);
  std::int64_t i = 0, j = 0;
  if (!integer_of(t[0], i))
    return "row index " + quote(t[0]) + " is not an integer in " + quote(line);
  if (!integer_of(t[1], j))
    return "column index " + quote(t[1]) + " is not an integer in " + quote(line);
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
  double v = 1;
  if (!h.pattern) {
    const auto tok = t[2];
    if (h.integer) {
      std::int64_t k = 0;
      if (!integer_of(tok, k))
        return "entry " + entry_name(i, j) + ": value " + quote(tok) +
               " is not an integer (the banner declares an integer matrix)";
      v = static_cast<double>(k);
    } else {
      const char *b = tok.data(), *end = tok.data() + tok.size();
      if (b != end && *b == '+')
        ++b;
      const auto r = std::from_chars(b, end, v);
      if (r.ec == std::errc::result_out_of_range)
        return "entry " + entry_name(i, j) + ": value " + quote(tok) +
               " is out of range for double";
      if (r.ec != std::errc() || r.ptr != end)
        return "entry " + entry_name(i, j) + ": value " + quote(tok) + " is not a number";
      if (!std::isfinite(v))
        return "entry " + entry_name(i, j) + ": value " + quote(tok) +
               " is not finite (NaN and infinite values are rejected)";
    }
    if (h.symmetry == Symmetry::skew && i == j && v != 0)
      return "entry " + entry_name(i, j) +
             " is on the diagonal of a skew-symmetric matrix and must be zero, found " +
             quote(tok);
  }
  e.row = i - 1;
  e.col = j - 1;
  e.value = v;
  return {};
}

void check_partition(const RowPartition &p, index_t rows, const std::string &what) {
  for (int r = 0; r < p.ranks(); ++r)
    if (p.size(r) < 1)
      throw InvalidArgument("the partition of the " + std::to_string(rows) + " " + what +
                            " over " + std::to_string(p.ranks()) + " ranks leaves rank " +
                            std::to_string(r) + " without rows (run with at most " +
                            std::to_string(rows) + " ranks)");
}

/// The values of a text file of one number per line ('#' lines and blank
/// lines ignored) whose index lies in [begin, end); returns the count.
std::int64_t read_values(const fs::path &path, std::int64_t begin, std::int64_t end,
                         std::vector<double> &out) {
  const File f(path);
  std::int64_t count = 0, line_no = 0;
  std::string carry;
  constexpr std::uint64_t piece = 1 << 20;
  auto take = [&](std::string_view line) {
    ++line_no;
    std::size_t a = 0, b = line.size();
    while (a < b && is_blank(line[a]))
      ++a;
    while (b > a && is_blank(line[b - 1]))
      --b;
    line = line.substr(a, b - a);
    if (line.empty() || line[0] == '#')
      return;
    if (count >= begin && count < end) {
      double v = 0;
      const char *p = line.data(), *e = line.data() + line.size();
      if (p != e && *p == '+')
        ++p;
      const auto r = std::from_chars(p, e, v);
      if (r.ec != std::errc() || r.ptr != e || !std::isfinite(v))
        throw FileError(f.name(), line_no,
                        "expected one finite number, found " + quote(line));
      out.push_back(v);
    }
    ++count;
  };
  for (std::uint64_t at = 0; at < f.size(); at += piece) {
    std::string s = carry + f.read(at, piece);
    std::size_t from = 0;
    for (auto nl = s.find('\n'); nl != std::string::npos; nl = s.find('\n', from)) {
      take(std::string_view(s).substr(from, nl - from));
      from = nl + 1;
    }
    carry = s.substr(from);
  }
  if (!carry.empty())
    take(carry);
  return count;
}

std::string dims(const char *file, index_t r, index_t c) {
  return std::string(file) + " is " + std::to_string(r) + " x " + std::to_string(c);
}

/// The block table of model.json, checked as the single-process reader does.
std::vector<StateBlock> read_blocks(const fs::path &path, index_t n) {
  const File f(path);
  const std::string text = f.read(0, f.size());
  const std::string &name = f.name();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error &e) {
    throw FileError(name, 0, std::string("invalid JSON: ") + e.what());
  }
  auto bad = [&](const std::string &what) { return FileError(name, 0, what); };
  if (!j.is_object())
    throw bad("expected a JSON object {\"format\": \"tacit-model\", ...}");
  if (j.contains("format") &&
      (!j["format"].is_string() || j["format"].get<std::string>() != "tacit-model"))
    throw bad("\"format\" is " + j["format"].dump() + ", expected \"tacit-model\"");
  if (j.contains("version") &&
      (!j["version"].is_number_integer() || j["version"].get<std::int64_t>() != 1))
    throw bad("unsupported version " + j["version"].dump() +
              " (this tacit reads version 1)");
  auto activation_of = [&](const nlohmann::json &o, const std::string &where,
                           Activation fallback) {
    double slope = fallback.slope;
    if (o.contains("slope")) {
      if (!o["slope"].is_number())
        throw bad(where + "\"slope\" is " + o["slope"].dump() + ", expected a number");
      slope = o["slope"].get<double>();
    }
    if (!o.contains("activation"))
      return Activation{fallback.kind, slope};
    if (!o["activation"].is_string())
      throw bad(where + "\"activation\" is " + o["activation"].dump() +
                ", expected a string");
    try {
      return Activation::parse(o["activation"].get<std::string>(), slope);
    } catch (const InvalidArgument &e) {
      throw bad(where + e.what());
    }
  };
  const Activation global = activation_of(j, "", Activation{});
  if (!j.contains("blocks"))
    return {{"states", 0, n, global}};
  const auto &list = j["blocks"];
  if (!list.is_array())
    throw bad("\"blocks\" must be an array of {\"name\", \"size\", ...}");
  std::vector<StateBlock> blocks;
  index_t offset = 0;
  for (std::size_t k = 0; k < list.size(); ++k) {
    const auto &b = list[k];
    const std::string where = "blocks[" + std::to_string(k) + "]: ";
    if (!b.is_object())
      throw bad(where + "expected an object, found " + b.dump());
    StateBlock block;
    block.name = "block" + std::to_string(k);
    if (b.contains("name")) {
      if (!b["name"].is_string())
        throw bad(where + "\"name\" is " + b["name"].dump() + ", expected a string");
      block.name = b["name"].get<std::string>();
    }
    if (!b.contains("size") || !b["size"].is_number_integer() ||
        b["size"].get<std::int64_t>() < 0)
      throw bad(where + "\"size\" must be a non-negative integer");
    block.size = b["size"].get<std::int64_t>();
    block.offset = offset;
    if (block.size > n - offset)
      throw bad(where + "block '" + block.name + "' of size " +
                std::to_string(block.size) + " ends past the n = " + std::to_string(n) +
                " states of A.mtx");
    block.activation = activation_of(b, where, global);
    offset += block.size;
    blocks.push_back(std::move(block));
  }
  if (offset != n)
    throw bad("the block sizes sum to " + std::to_string(offset) +
              ", but A.mtx has n = " + std::to_string(n) + " states");
  return blocks;
}

} // namespace

DistributedCsr
read_distributed_matrix_market(const fs::path &path, RowPartition &partition,
                               MPI_Comm comm,
                               const std::function<void(std::int64_t)> &admit) {
  const int rank = rank_of(comm), P = ranks_of(comm);
  // Phase 1, the same on every rank: the header; this rank's lines.
  std::shared_ptr<File> file;
  Header h;
  std::string text;
  detail::collective(comm, [&] {
    file = std::make_shared<File>(path);
    h = read_header(*file);
    if (!partition.starts.empty() && partition.total() != h.rows)
      throw InvalidArgument(file->name() + ": a partition of " +
                            std::to_string(partition.total()) + " rows for " +
                            std::to_string(h.rows) + " rows");
    const std::uint64_t B0 = h.body_offset, E = file->size();
    const std::uint64_t b = B0 + (E - B0) * static_cast<std::uint64_t>(rank) / P;
    const std::uint64_t e = B0 + (E - B0) * static_cast<std::uint64_t>(rank + 1) / P;
    const std::uint64_t s = file->line_start(b, B0);
    const std::uint64_t t = rank + 1 == P ? E : file->line_start(e, B0);
    text = s < t ? file->read(s, t - s) : std::string();
  });
  const std::string &name = file->name();
  // Line numbers: the lines of the lower ranks.
  std::int64_t lines = std::count(text.begin(), text.end(), '\n') +
                       (!text.empty() && text.back() != '\n' ? 1 : 0);
  std::int64_t before = 0;
  MPI_Exscan(&lines, &before, 1, MPI_INT64_T, MPI_SUM, comm);
  if (rank == 0)
    before = 0;
  std::int64_t total_lines = lines;
  MPI_Allreduce(MPI_IN_PLACE, &total_lines, 1, MPI_INT64_T, MPI_SUM, comm);
  // Phase 2: this rank's entries (mirrors expanded), the first problem in
  // its lines reported.
  std::vector<Entry> entries;
  std::vector<std::int64_t> entry_lines;
  detail::collective(comm, [&] {
    std::int64_t line_no = h.body_line + before;
    std::size_t from = 0;
    while (from < text.size()) {
      auto nl = text.find('\n', from);
      if (nl == std::string::npos)
        nl = text.size();
      const std::string_view line = std::string_view(text).substr(from, nl - from);
      from = nl + 1;
      if (!skippable(line)) {
        Entry e;
        if (auto problem = parse_entry(line, h, e); !problem.empty())
          throw FileError(name, line_no, problem);
        e.line = line_no;
        entries.push_back(e);
        entry_lines.push_back(line_no);
        if (h.symmetry != Symmetry::general && e.row != e.col)
          entries.push_back(
              {e.col, e.row, h.symmetry == Symmetry::skew ? -e.value : e.value, line_no});
      }
      ++line_no;
    }
  });
  text = std::string();
  // The entry count of the size line.
  const auto mine = static_cast<std::int64_t>(entry_lines.size());
  std::int64_t seen_before = 0, seen = mine;
  MPI_Exscan(&mine, &seen_before, 1, MPI_INT64_T, MPI_SUM, comm);
  if (rank == 0)
    seen_before = 0;
  MPI_Allreduce(MPI_IN_PLACE, &seen, 1, MPI_INT64_T, MPI_SUM, comm);
  detail::collective(comm, [&] {
    if (seen > h.entries && seen_before <= h.entries && seen_before + mine > h.entries) {
      const auto l = entry_lines[static_cast<std::size_t>(h.entries - seen_before)];
      throw FileError(name, l,
                      "too many entries: the size line (line " +
                          std::to_string(h.size_line) + ") declares " +
                          std::to_string(h.entries) + ", line " + std::to_string(l) +
                          " holds one more");
    }
    if (seen < h.entries)
      throw FileError(
          name, std::max<std::int64_t>(h.body_line + total_lines - 1, h.size_line),
          "too few entries: the size line (line " + std::to_string(h.size_line) +
              ") declares " + std::to_string(h.entries) + ", the file ends after " +
              std::to_string(seen));
  });
  entry_lines = std::vector<std::int64_t>();
  // The partition: balanced over the file's entries per row unless given.
  detail::collective(comm, [&] {
    if (partition.starts.empty()) {
      std::vector<std::int64_t> count(static_cast<std::size_t>(h.rows) + 1, 0);
      for (const auto &e : entries)
        ++count[static_cast<std::size_t>(e.row) + 1];
      MPI_Allreduce(MPI_IN_PLACE, count.data() + 1, static_cast<int>(h.rows), MPI_INT64_T,
                    MPI_SUM, comm);
      // count[i + 1] held row i's count: prefix sums make it row_ptr.
      for (std::size_t i = 1; i < count.size(); ++i)
        count[i] += count[i - 1];
      partition = balanced_partition(static_cast<index_t>(h.rows), P,
                                     [&](index_t i) { return count[i]; });
      check_partition(partition, static_cast<index_t>(h.rows), "rows of " + name);
    }
  });
  // Phase 3: every entry to the owner of its row.
  std::sort(entries.begin(), entries.end(), [](const Entry &a, const Entry &b) {
    return a.row != b.row ? a.row < b.row : a.col < b.col;
  });
  std::vector<int> send(static_cast<std::size_t>(P), 0),
      recv(static_cast<std::size_t>(P));
  {
    int owner = 0;
    for (const auto &e : entries) {
      while (e.row >= partition.end(owner))
        ++owner;
      ++send[owner];
    }
  }
  MPI_Alltoall(send.data(), 1, MPI_INT, recv.data(), 1, MPI_INT, comm);
  std::vector<int> sdispl(static_cast<std::size_t>(P), 0),
      rdispl(static_cast<std::size_t>(P), 0);
  for (int r = 1; r < P; ++r) {
    sdispl[r] = sdispl[r - 1] + send[r - 1];
    rdispl[r] = rdispl[r - 1] + recv[r - 1];
  }
  const std::int64_t own_nnz = static_cast<std::int64_t>(rdispl[P - 1]) + recv[P - 1];
  detail::collective(comm, [&] {
    if (admit)
      admit(own_nnz);
  });
  std::vector<Entry> own(static_cast<std::size_t>(own_nnz));
  MPI_Datatype type;
  MPI_Type_contiguous(sizeof(Entry), MPI_BYTE, &type);
  MPI_Type_commit(&type);
  MPI_Alltoallv(entries.data(), send.data(), sdispl.data(), type, own.data(), recv.data(),
                rdispl.data(), type, comm);
  MPI_Type_free(&type);
  entries = std::vector<Entry>();
  // Phase 4: the own rows, sorted by column, duplicates refused.
  DistributedCsr out;
  out.rows = static_cast<index_t>(h.rows);
  out.cols = static_cast<index_t>(h.cols);
  out.row_begin = partition.begin(rank);
  const index_t r0 = partition.begin(rank), rows = partition.size(rank);
  std::sort(own.begin(), own.end(), [](const Entry &a, const Entry &b) {
    return a.row != b.row   ? a.row < b.row
           : a.col != b.col ? a.col < b.col
                            : a.line < b.line;
  });
  detail::collective(comm, [&] {
    for (std::size_t k = 1; k < own.size(); ++k)
      if (own[k].row == own[k - 1].row && own[k].col == own[k - 1].col) {
        std::int64_t i = own[k].row + 1, j = own[k].col + 1;
        if (h.symmetry != Symmetry::general && i < j)
          std::swap(i, j); // the file holds the lower entry
        const auto l1 = std::min(own[k - 1].line, own[k].line);
        const auto l2 = std::max(own[k - 1].line, own[k].line);
        throw FileError(name, l2,
                        "duplicate entry " + entry_name(i, j) + " on lines " +
                            std::to_string(l1) + " and " + std::to_string(l2) +
                            " (duplicates are not summed; merge them into one entry)");
      }
    std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(rows) + 1, 0);
    std::vector<std::int64_t> cols(own.size());
    std::vector<double> values(own.size());
    for (std::size_t k = 0; k < own.size(); ++k) {
      ++row_ptr[static_cast<std::size_t>(own[k].row - r0) + 1];
      cols[k] = own[k].col;
      values[k] = own[k].value;
    }
    for (std::size_t i = 1; i < row_ptr.size(); ++i)
      row_ptr[i] += row_ptr[i - 1];
    out.local =
        CsrMatrix<double>(rows, out.cols, std::move(row_ptr), cols, std::move(values));
  });
  out.global_nnz = own_nnz;
  MPI_Allreduce(MPI_IN_PLACE, &out.global_nnz, 1, MPI_INT64_T, MPI_SUM, comm);
  return out;
}

DistributedModel load_distributed_model_directory(const fs::path &dir, MPI_Comm comm,
                                                  std::size_t memory_budget) {
  DistributedModel m;
  m.comm = comm;
  m.rank = rank_of(comm);
  m.ranks = ranks_of(comm);
  const std::string dir_name = dir.string();
  // The sizes first (every rank reads the headers): the single-process
  // loader's dimension checks before any body is read.
  Header a, b, c;
  std::optional<Header> d;
  detail::collective(comm, [&] {
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      throw FileError(dir_name, 0, "is not a directory");
    for (const char *required : {"A.mtx", "B.mtx", "C.mtx"})
      if (!fs::exists(dir / required, ec))
        throw FileError(dir_name, 0, std::string("model directory has no ") + required);
    a = read_header(File(dir / "A.mtx"));
    b = read_header(File(dir / "B.mtx"));
    c = read_header(File(dir / "C.mtx"));
    const index_t n = a.rows;
    if (a.cols != n)
      throw FileError((dir / "A.mtx").string(), 0,
                      dims("A.mtx", a.rows, a.cols) + "; A must be square (n x n)");
    if (b.rows != n)
      throw FileError((dir / "B.mtx").string(), 0,
                      dims("B.mtx", b.rows, b.cols) + " but " + dims("A.mtx", n, n) +
                          ": B must have n = " + std::to_string(n) + " rows");
    if (c.cols != n)
      throw FileError((dir / "C.mtx").string(), 0,
                      dims("C.mtx", c.rows, c.cols) + " but " + dims("A.mtx", n, n) +
                          ": C must have n = " + std::to_string(n) + " columns");
    if (fs::exists(dir / "D.mtx", ec)) {
      d = read_header(File(dir / "D.mtx"));
      if (d->rows != c.rows || d->cols != b.cols)
        throw FileError((dir / "D.mtx").string(), 0,
                        dims("D.mtx", d->rows, d->cols) +
                            " but C.mtx has q = " + std::to_string(c.rows) +
                            " rows and B.mtx has p = " + std::to_string(b.cols) +
                            " columns: D must be q x p");
    }
  });
  m.n = a.rows;
  m.p = b.cols;
  m.q = c.rows;
  // A (its rows balanced), then B on the same rows, C's rows split evenly;
  // the budget counted before each is gathered.
  std::uint64_t held = 0;
  auto admit = [&](std::int64_t nnz, index_t cols) {
    const std::uint64_t width = cols > 0x7fffffff ? 8 : 4;
    const auto own = static_cast<std::uint64_t>(m.states.size(m.rank));
    held += (own + 1) * 8 + static_cast<std::uint64_t>(nnz) * (width + 8);
    const std::uint64_t need = held + own * (8 + sizeof(Activation));
    if (memory_budget > 0 && need > memory_budget)
      throw InvalidArgument("rank " + std::to_string(m.rank) + " would hold " +
                            std::to_string(need) + " bytes of the model (states [" +
                            std::to_string(m.states.begin(m.rank)) + ", " +
                            std::to_string(m.states.end(m.rank)) +
                            ")), more than the memory budget of " +
                            std::to_string(memory_budget) + " bytes: use more ranks");
  };
  RowPartition states;
  m.A =
      read_distributed_matrix_market(dir / "A.mtx", states, comm, [&](std::int64_t nnz) {
        m.states = states;
        admit(nnz, m.n);
      });
  m.states = states;
  RowPartition same = states;
  m.B = read_distributed_matrix_market(dir / "B.mtx", same, comm,
                                       [&](std::int64_t nnz) { admit(nnz, m.p); });
  m.outputs = even_partition(m.q, m.ranks);
  RowPartition outputs = m.outputs; // (ranks beyond q hold no outputs)
  m.C = read_distributed_matrix_market(dir / "C.mtx", outputs, comm);
  // b (own slice), c and D (rank 0), the blocks.
  detail::collective(comm, [&] {
    std::error_code ec;
    const index_t r0 = m.own_begin(), r1 = m.own_end();
    if (fs::exists(dir / "bx.txt", ec)) {
      const auto count = read_values(dir / "bx.txt", r0, r1, m.bias_x);
      if (count != m.n)
        throw FileError((dir / "bx.txt").string(), 0,
                        "has " + std::to_string(count) + " values, expected " +
                            std::to_string(m.n) +
                            " (one per state: " + dims("A.mtx", m.n, m.n) + ")");
    } else {
      m.bias_x.assign(static_cast<std::size_t>(r1 - r0), 0.0);
    }
    if (m.rank == 0) {
      if (d)
        m.D = std::make_shared<const CsrMatrix<double>>(
            read_matrix_market<double>(dir / "D.mtx"));
      if (fs::exists(dir / "by.txt", ec)) {
        const auto count = read_values(dir / "by.txt", 0, m.q, m.bias_y);
        if (count != m.q)
          throw FileError((dir / "by.txt").string(), 0,
                          "has " + std::to_string(count) + " values, expected " +
                              std::to_string(m.q) +
                              " (one per output: " + dims("C.mtx", m.q, m.n) + ")");
      } else {
        m.bias_y.assign(static_cast<std::size_t>(m.q), 0.0);
      }
    }
    m.blocks = fs::exists(dir / "model.json", ec)
                   ? read_blocks(dir / "model.json", m.n)
                   : std::vector<StateBlock>{{"states", 0, m.n, Activation{}}};
    m.activations.assign(static_cast<std::size_t>(r1 - r0), Activation{});
    for (const auto &blk : m.blocks) {
      const index_t lo = std::max(r0, blk.offset),
                    hi = std::min(r1, blk.offset + blk.size);
      for (index_t i = lo; i < hi; ++i)
        m.activations[i - r0] = blk.activation;
    }
  });
  return m;
}

} // namespace tacit::inline v1::mpi
