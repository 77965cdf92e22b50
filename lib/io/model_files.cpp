// Model directories, vector files and atomic writes.

#include <tacit/io/io.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "io/detail/io_common.hpp"

namespace fs = std::filesystem;

namespace tacit::inline v1 {

namespace detail {

bool replace_directory_by_exchange = true;

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

/// A name for a temporary sibling of `base`: ".<base>.<tag>-<pid>-<n>-<random>".
std::string temporary_name(const std::string &base, const char *tag) {
  static std::atomic<unsigned> counter{0};
  static const std::uint64_t salt = [] {
    std::random_device rd;
    return (std::uint64_t(rd()) << 32) ^ rd() ^
           static_cast<std::uint64_t>(
               std::chrono::steady_clock::now().time_since_epoch().count());
  }();
  const unsigned n = counter.fetch_add(1);
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "-%ld-%u-%08llx", static_cast<long>(::getpid()), n,
                static_cast<unsigned long long>((salt * (n + 1)) >> 32));
  return "." + base + "." + tag + suffix;
}

fs::path parent_or_dot(const fs::path &p) {
  const auto parent = p.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

/// fsync of a directory, so that a rename in it is durable (best effort: some
/// file systems refuse fsync on directories).
void sync_directory(const fs::path &dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  (void)::fsync(fd);
  ::close(fd);
}

} // namespace

InputFile::InputFile(const fs::path &path) : name_(display_name(path)) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0)
    throw FileError(name_, 0, "cannot open: " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    throw FileError(name_, 0, "cannot stat: " + errno_text(err));
  }
  regular_ = S_ISREG(st.st_mode);
  directory_ = S_ISDIR(st.st_mode);
  size_ = regular_ ? static_cast<std::uint64_t>(st.st_size) : 0;
}

InputFile::~InputFile() { ::close(fd_); }

FileBuffer read_whole_file(const fs::path &path) {
  const InputFile file(path);
  const auto &name = file.name();
  const int fd = file.fd();
  if (file.directory())
    throw FileError(name, 0, "is a directory, expected a file");
  FileBuffer b;
  std::size_t capacity =
      file.regular() ? static_cast<std::size_t>(file.size()) + 1 : std::size_t{1} << 16;
  b.data.reset(new char[capacity]);
  while (true) {
    if (b.size == capacity) { // the file grew, or is not a regular file
      std::unique_ptr<char[]> bigger(new char[capacity * 2]);
      std::memcpy(bigger.get(), b.data.get(), b.size);
      b.data = std::move(bigger);
      capacity *= 2;
    }
    const auto got = ::read(fd, b.data.get() + b.size, capacity - b.size);
    if (got < 0) {
      if (errno == EINTR)
        continue;
      throw FileError(name, 0, "read error: " + errno_text(errno));
    }
    if (got == 0)
      break;
    b.size += static_cast<std::size_t>(got);
  }
  return b;
}

std::string quote_text(std::string_view text, std::size_t limit) {
  std::string r = "'";
  const std::size_t n = std::min(text.size(), limit);
  for (std::size_t k = 0; k < n; ++k) {
    const auto c = static_cast<unsigned char>(text[k]);
    if (c == '\r' && k + 1 == text.size())
      break;
    if (c >= 0x20 && c < 0x7f) {
      r += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      r += buf;
    }
  }
  if (text.size() > limit)
    r += "...";
  return r + "'";
}

AtomicFile::AtomicFile(fs::path destination) : destination_(std::move(destination)) {
  const auto name = display_name(destination_);
  if (!destination_.has_filename())
    throw FileError(name, 0, "cannot write: the path names a directory, not a file");
  const auto dir = parent_or_dot(destination_);
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_ = dir / temporary_name(destination_.filename().string(), "tmp");
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0)
      return;
    if (errno != EEXIST)
      break;
  }
  const int err = errno;
  throw FileError(name, 0,
                  "cannot create a temporary file in '" + dir.string() +
                      "': " + errno_text(err));
}

AtomicFile::~AtomicFile() {
  if (committed_)
    return;
  if (fd_ >= 0)
    ::close(fd_);
  ::unlink(temp_.c_str());
}

void AtomicFile::fail(const std::string &what, int err) {
  throw FileError(display_name(destination_), 0, what + ": " + errno_text(err));
}

void AtomicFile::write_raw(const char *data, std::size_t size) {
  while (size > 0) {
    const auto put =
        ::write(fd_, data, std::min<std::size_t>(size, std::size_t{1} << 30));
    if (put < 0) {
      if (errno == EINTR)
        continue;
      fail("write failed", errno);
    }
    data += put;
    size -= static_cast<std::size_t>(put);
  }
}

void AtomicFile::flush() {
  write_raw(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void AtomicFile::write(const void *data, std::size_t size) {
  if (size >= (std::size_t{1} << 19)) { // large: no copy, after what is buffered
    flush();
    write_raw(static_cast<const char *>(data), size);
    return;
  }
  buffer_.append(static_cast<const char *>(data), size);
  flush_if_large();
}

void AtomicFile::commit() {
  flush();
  if (::fsync(fd_) != 0)
    fail("fsync failed", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0)
    fail("close failed", errno);
  if (::rename(temp_.c_str(), destination_.c_str()) != 0)
    fail("cannot rename the temporary file into place", errno);
  committed_ = true;
  sync_directory(parent_or_dot(destination_));
}

template <class T>
std::int64_t parse_number_lines(std::string_view text, const std::string &name,
                                std::int64_t per_line, const char *what,
                                std::vector<T> &out) {
  std::int64_t line_no = 0, kept = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const char *begin = text.data() + pos;
    const void *nl = std::memchr(begin, '\n', text.size() - pos);
    const std::size_t len =
        nl ? static_cast<std::size_t>(static_cast<const char *>(nl) - begin)
           : text.size() - pos;
    const std::string_view line(begin, len);
    pos += len + 1;
    ++line_no;
    std::size_t i = 0;
    while (i < line.size() && is_blank(line[i]))
      ++i;
    if (i == line.size() || line[i] == '#')
      continue;
    ++kept;
    auto column = [&](std::size_t k) { return "column " + std::to_string(k + 1) + ": "; };
    std::int64_t count = 0;
    while (true) {
      while (i < line.size() && is_blank(line[i]))
        ++i;
      const std::size_t start = i;
      while (i < line.size() && !is_blank(line[i]) && line[i] != ',')
        ++i;
      if (start == i)
        throw FileError(name, line_no,
                        column(start) + (i < line.size() ? "empty field before ','"
                                                         : "missing number after ','"));
      if (count == per_line)
        throw FileError(name, line_no,
                        column(start) + "more than " + std::to_string(per_line) +
                            " numbers; expected " + std::to_string(per_line) +
                            " per line (one " + what + " per line)");
      T v{};
      const auto token = line.substr(start, i - start);
      switch (parse_real(line.data() + start, line.data() + i, v)) {
      case NumberStatus::ok:
        break;
      case NumberStatus::non_finite:
        throw FileError(name, line_no,
                        column(start) + "value " + quote_text(token) +
                            " is not finite (NaN and infinite values are rejected)");
      case NumberStatus::out_of_range:
        throw FileError(name, line_no,
                        column(start) + "value " + quote_text(token) +
                            " is out of range for " + type_name<T>());
      default:
        throw FileError(name, line_no,
                        column(start) + "expected a number, found " + quote_text(token));
      }
      out.push_back(v);
      ++count;
      while (i < line.size() && is_blank(line[i]))
        ++i;
      if (i == line.size())
        break;
      if (line[i] == ',')
        ++i; // a comma separates, and a number must follow
    }
    if (count != per_line)
      throw FileError(name, line_no,
                      std::to_string(count) + (count == 1 ? " number" : " numbers") +
                          ", expected " + std::to_string(per_line) + " (one " + what +
                          " per line)");
  }
  return kept;
}

template std::int64_t parse_number_lines<float>(std::string_view, const std::string &,
                                                std::int64_t, const char *,
                                                std::vector<float> &);
template std::int64_t parse_number_lines<double>(std::string_view, const std::string &,
                                                 std::int64_t, const char *,
                                                 std::vector<double> &);

} // namespace detail

void write_file_atomically(const fs::path &path, const std::string &content) {
  detail::AtomicFile file(path);
  file.write(content);
  file.commit();
}

// ---------------------------------------------------------------- vectors

template <class T> Batch<T> read_vectors(const fs::path &path, index_t expected) {
  if (expected < 0)
    throw InvalidArgument("read_vectors: expected = " + std::to_string(expected) +
                          " numbers per line, must be >= 0");
  const auto buffer = detail::read_whole_file(path);
  std::vector<T> flat;
  const auto count = detail::parse_number_lines<T>(
      buffer.view(), detail::display_name(path), expected, "vector", flat);
  Batch<T> batch(expected, count);
  for (index_t k = 0; k < count; ++k)
    for (index_t i = 0; i < expected; ++i)
      batch(i, k) = flat[static_cast<std::size_t>(k * expected + i)];
  return batch;
}

template <class T> void write_vectors(const fs::path &path, const Batch<T> &Y) {
  detail::AtomicFile file(path);
  auto &out = file.buffer();
  for (index_t k = 0; k < Y.cols(); ++k) {
    for (index_t i = 0; i < Y.rows(); ++i) {
      if (i)
        out += ' ';
      detail::append_value(out, Y(i, k));
    }
    out += '\n';
    file.flush_if_large();
  }
  file.commit();
}

// ---------------------------------------------------------------- model directory

namespace {

const char *const model_file_names[] = {"A.mtx",  "B.mtx",  "C.mtx",     "D.mtx",
                                        "bx.txt", "by.txt", "model.json"};

constexpr const char *what_a_model_is =
    "a model is a directory holding A.mtx, B.mtx and C.mtx (optionally D.mtx, "
    "bx.txt, by.txt and model.json) or a native model file starting with "
    "\"TACITMDL\"";

std::string dims(const char *file, index_t r, index_t c) {
  return std::string(file) + " is " + std::to_string(r) + " x " + std::to_string(c);
}

template <class T>
std::vector<T> read_bias(const fs::path &path, index_t wanted, const std::string &why) {
  const auto buffer = detail::read_whole_file(path);
  std::vector<T> values;
  detail::parse_number_lines<T>(buffer.view(), detail::display_name(path), 1, "value",
                                values);
  if (static_cast<index_t>(values.size()) != wanted)
    throw FileError(detail::display_name(path), 0,
                    "has " + std::to_string(values.size()) + " values, expected " +
                        std::to_string(wanted) + " (" + why + ")");
  return values;
}

/// 1-based line of a byte offset.
std::int64_t line_of(std::string_view text, std::size_t byte) {
  byte = std::min(byte, text.size());
  return 1 +
         std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(byte), '\n');
}

std::vector<StateBlock> read_blocks(const fs::path &path, index_t n) {
  const auto name = detail::display_name(path);
  const auto buffer = detail::read_whole_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(buffer.view());
  } catch (const nlohmann::json::parse_error &e) {
    // e.byte is 1-based; the message already says where.
    throw FileError(name, line_of(buffer.view(), e.byte ? e.byte - 1 : 0),
                    std::string("invalid JSON: ") + e.what());
  }
  auto bad = [&](const std::string &what) { return FileError(name, 0, what); };
  if (!j.is_object())
    throw bad("expected a JSON object {\"format\": \"tacit-model\", ...}");
  if (j.contains("format") &&
      (!j["format"].is_string() || j["format"].get<std::string>() != "tacit-model"))
    throw bad("\"format\" is " + j["format"].dump() + ", expected \"tacit-model\"");
  if (j.contains("version")) {
    const auto &v = j["version"];
    if (!v.is_number_integer())
      throw bad("\"version\" is " + v.dump() + ", expected an integer");
    if (v.get<std::int64_t>() != 1)
      throw bad("unsupported version " + v.dump() + " (this tacit reads version 1)");
  }
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
  std::vector<StateBlock> blocks;
  if (!j.contains("blocks")) {
    blocks.push_back({"states", 0, n, global});
    return blocks;
  }
  const auto &list = j["blocks"];
  if (!list.is_array())
    throw bad("\"blocks\" must be an array of {\"name\", \"size\", ...}");
  index_t offset = 0;
  for (std::size_t k = 0; k < list.size(); ++k) {
    const auto &b = list[k];
    const std::string where = "blocks[" + std::to_string(k) + "]: ";
    if (!b.is_object())
      throw bad(where + "expected an object, found " + b.dump());
    StateBlock block;
    if (b.contains("name")) {
      if (!b["name"].is_string())
        throw bad(where + "\"name\" is " + b["name"].dump() + ", expected a string");
      block.name = b["name"].get<std::string>();
    } else {
      block.name = "block" + std::to_string(k);
    }
    if (!b.contains("size") || !b["size"].is_number_integer() ||
        b["size"].get<std::int64_t>() < 0)
      throw bad(where + "\"size\" must be a non-negative integer" +
                (b.contains("size") ? ", found " + b["size"].dump() : ""));
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

std::string blocks_json(const std::vector<StateBlock> &blocks) {
  nlohmann::json j;
  j["format"] = "tacit-model";
  j["version"] = 1;
  auto list = nlohmann::json::array();
  for (const auto &b : blocks) {
    nlohmann::json o;
    o["name"] = b.name;
    o["size"] = b.size;
    o["activation"] = b.activation.name();
    if (b.activation.kind == ActivationKind::leaky_relu ||
        b.activation.slope != Activation{}.slope)
      o["slope"] = b.activation.slope;
    list.push_back(std::move(o));
  }
  j["blocks"] = std::move(list);
  return j.dump(2) + "\n";
}

template <class T> void write_values(const fs::path &path, std::span<const T> values) {
  detail::AtomicFile file(path);
  auto &out = file.buffer();
  for (const T v : values) {
    detail::append_value(out, v);
    out += '\n';
    file.flush_if_large();
  }
  file.commit();
}

/// Removes a directory tree unless released.
struct TreeGuard {
  fs::path path;
  ~TreeGuard() {
    if (path.empty())
      return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// Creates a new empty directory next to `target` (permissions from the umask).
fs::path make_sibling_directory(const fs::path &target, const char *tag) {
  const auto parent = detail::parent_or_dot(target);
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto p = parent / detail::temporary_name(target.filename().string(), tag);
    if (::mkdir(p.c_str(), 0777) == 0)
      return p;
    if (errno != EEXIST)
      break;
  }
  const int err = errno;
  throw FileError(detail::display_name(target), 0,
                  "cannot create a temporary directory in '" + parent.string() +
                      "': " + detail::errno_text(err));
}

} // namespace

template <class T> Model<T> load_model_directory(const fs::path &dir) {
  const auto dir_name = detail::display_name(dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw FileError(dir_name, 0, "is not a directory; " + std::string(what_a_model_is));
  for (const char *required : {"A.mtx", "B.mtx", "C.mtx"})
    if (!fs::exists(dir / required, ec))
      throw FileError(dir_name, 0,
                      std::string("model directory has no ") + required + "; " +
                          what_a_model_is);
  auto A = std::make_shared<CsrMatrix<T>>(read_matrix_market<T>(dir / "A.mtx"));
  const index_t n = A->rows();
  if (A->cols() != n)
    throw FileError(detail::display_name(dir / "A.mtx"), 0,
                    dims("A.mtx", A->rows(), A->cols()) + "; A must be square (n x n)");
  auto B = std::make_shared<CsrMatrix<T>>(read_matrix_market<T>(dir / "B.mtx"));
  if (B->rows() != n)
    throw FileError(detail::display_name(dir / "B.mtx"), 0,
                    dims("B.mtx", B->rows(), B->cols()) + " but " + dims("A.mtx", n, n) +
                        ": B must have n = " + std::to_string(n) + " rows");
  const index_t p = B->cols();
  auto C = std::make_shared<CsrMatrix<T>>(read_matrix_market<T>(dir / "C.mtx"));
  if (C->cols() != n)
    throw FileError(detail::display_name(dir / "C.mtx"), 0,
                    dims("C.mtx", C->rows(), C->cols()) + " but " + dims("A.mtx", n, n) +
                        ": C must have n = " + std::to_string(n) + " columns");
  const index_t q = C->rows();
  std::shared_ptr<CsrMatrix<T>> D;
  if (fs::exists(dir / "D.mtx", ec)) {
    D = std::make_shared<CsrMatrix<T>>(read_matrix_market<T>(dir / "D.mtx"));
    if (D->rows() != q || D->cols() != p)
      throw FileError(detail::display_name(dir / "D.mtx"), 0,
                      dims("D.mtx", D->rows(), D->cols()) +
                          " but C.mtx has q = " + std::to_string(q) +
                          " rows and B.mtx has p = " + std::to_string(p) +
                          " columns: D must be q x p = " + std::to_string(q) + " x " +
                          std::to_string(p));
  }
  std::vector<T> bx, by;
  if (fs::exists(dir / "bx.txt", ec))
    bx = read_bias<T>(dir / "bx.txt", n, "one per state: " + dims("A.mtx", n, n));
  if (fs::exists(dir / "by.txt", ec))
    by = read_bias<T>(dir / "by.txt", q, "one per output: " + dims("C.mtx", q, n));
  std::vector<StateBlock> blocks;
  if (fs::exists(dir / "model.json", ec))
    blocks = read_blocks(dir / "model.json", n);
  try {
    return Model<T>(std::move(A), std::move(B), std::move(C), std::move(D), std::move(bx),
                    std::move(by), std::move(blocks));
  } catch (const InvalidArgument &e) {
    throw FileError(dir_name, 0, e.what());
  }
}

template <class T> Model<T> load_model(const fs::path &path) {
  const auto name = detail::display_name(path);
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status))
    throw FileError(name, 0, "no such file or directory");
  if (fs::is_directory(status))
    return load_model_directory<T>(path);
  if (is_native_model_file(path))
    return load_model_native<T>(path);
  throw FileError(name, 0,
                  std::string("is not a model: ") + what_a_model_is +
                      (path.extension() == ".mtx"
                           ? " (a single Matrix Market file is one matrix, not a model)"
                           : ""));
}

template <class T>
void save_model_directory(const Model<T> &model, const fs::path &target_in) {
  fs::path target = target_in;
  if (!target.has_filename())
    target = target.parent_path(); // "out/" -> "out"
  const auto name = detail::display_name(target);
  if (target.empty() || target.filename() == "." || target.filename() == "..")
    throw FileError(detail::display_name(target_in), 0,
                    "cannot save a model directory here: name a new or model directory");
  std::error_code ec;
  const auto status = fs::symlink_status(target, ec);
  const bool exists = fs::exists(status);
  if (exists) {
    if (!fs::is_directory(status))
      throw FileError(name, 0, "exists and is not a directory; refusing to replace it");
    const std::set<std::string> known(std::begin(model_file_names),
                                      std::end(model_file_names));
    for (const auto &entry : fs::directory_iterator(target, ec)) {
      const auto file = entry.path().filename().string();
      if (!known.count(file) || !entry.is_regular_file())
        throw FileError(name, 0,
                        "refusing to replace this directory: it contains '" + file +
                            "', which is not a model file");
    }
    if (ec)
      throw FileError(name, 0, "cannot list the directory: " + ec.message());
  }

  TreeGuard temp{make_sibling_directory(target, "tmp")};
  write_matrix_market(temp.path / "A.mtx", *csr_view(model.A()));
  write_matrix_market(temp.path / "B.mtx", *csr_view(model.B()));
  write_matrix_market(temp.path / "C.mtx", *csr_view(model.C()));
  if (model.D())
    write_matrix_market(temp.path / "D.mtx", *csr_view(*model.D()));
  write_values(temp.path / "bx.txt", model.bias_x());
  write_values(temp.path / "by.txt", model.bias_y());
  write_file_atomically(temp.path / "model.json", blocks_json(model.blocks()));
  detail::sync_directory(temp.path);

  const auto parent = detail::parent_or_dot(target);
  if (!exists) {
    if (::rename(temp.path.c_str(), target.c_str()) != 0)
      throw FileError(name, 0,
                      "cannot rename the temporary directory into place: " +
                          detail::errno_text(errno));
    temp.path.clear();
    detail::sync_directory(parent);
    return;
  }
#ifdef RENAME_EXCHANGE
  // Swap both directories in one step; the old content ends up in temp.
  if (detail::replace_directory_by_exchange &&
      ::renameat2(AT_FDCWD, temp.path.c_str(), AT_FDCWD, target.c_str(),
                  RENAME_EXCHANGE) == 0) {
    detail::sync_directory(parent);
    return; // the guard deletes the old content
  }
#endif
  // Three steps: move the old directory away (onto an empty placeholder),
  // move the new one in, delete the old one.
  TreeGuard old{make_sibling_directory(target, "old")};
  if (::rename(target.c_str(), old.path.c_str()) != 0) {
    const int err = errno;
    throw FileError(name, 0,
                    "cannot move the old directory away: " + detail::errno_text(err));
  }
  if (::rename(temp.path.c_str(), target.c_str()) != 0) {
    const int err = errno;
    if (::rename(old.path.c_str(), target.c_str()) == 0)
      old.path.clear();
    throw FileError(name, 0,
                    "cannot rename the new directory into place: " +
                        detail::errno_text(err));
  }
  temp.path.clear();
  detail::sync_directory(parent);
}

#define TACIT_INSTANTIATE(T)                                                             \
  template Batch<T> read_vectors<T>(const fs::path &, index_t);                          \
  template void write_vectors<T>(const fs::path &, const Batch<T> &);                    \
  template Model<T> load_model_directory<T>(const fs::path &);                           \
  template Model<T> load_model<T>(const fs::path &);                                     \
  template void save_model_directory<T>(const Model<T> &, const fs::path &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
