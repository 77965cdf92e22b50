#pragma once
// Helpers shared by the I/O tests: scratch directories, random matrices and
// models, bit-exact comparisons and deterministic mutations for fuzzing.

#include <tacit/io/io.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace tacit_test {

namespace fs = std::filesystem;

/// A fresh directory under the system temporary directory, removed at scope end.
class ScratchDir {
public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("tacit_io_test_" + std::to_string(::getpid()) +
                                         "_" + std::to_string(counter.fetch_add(1)));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    // Restore write permission on anything a test made read-only.
    for (auto it = fs::recursive_directory_iterator(path_, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  const fs::path &path() const { return path_; }
  fs::path operator/(const std::string &name) const { return path_ / name; }
  /// Names of the entries in the directory (or in `sub`), sorted.
  std::vector<std::string> list(const fs::path &sub = {}) const {
    std::vector<std::string> names;
    for (const auto &e : fs::directory_iterator(sub.empty() ? path_ : path_ / sub))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

private:
  fs::path path_;
};

inline void write_text(const fs::path &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string read_text(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Bits of a value (to compare floating-point values exactly, -0 and all).
template <class T> auto bits(T v) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  U u;
  std::memcpy(&u, &v, sizeof v);
  return u;
}

template <class T> bool same_bits(std::span<const T> a, std::span<const T> b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t k = 0; k < a.size(); ++k)
    if (bits(a[k]) != bits(b[k]))
      return false;
  return true;
}

/// Same dimensions, pattern and value bits.
template <class T>
bool same_csr(const tacit::CsrMatrix<T> &a, const tacit::CsrMatrix<T> &b) {
  if (a.rows() != b.rows() || a.cols() != b.cols() || a.nnz() != b.nnz())
    return false;
  if (!std::equal(a.row_ptr().begin(), a.row_ptr().end(), b.row_ptr().begin()))
    return false;
  for (std::int64_t k = 0; k < a.nnz(); ++k)
    if (a.column(k) != b.column(k))
      return false;
  return same_bits(a.values(), b.values());
}

/// Values spanning many magnitudes, signs, -0, subnormals and extremes (of
/// float when `float_safe`, so that conversion to float stays finite).
template <class T> T awkward_value(std::mt19937_64 &rng, bool float_safe = false) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<int> pick(0, 9);
  switch (pick(rng)) {
  case 0:
    return T(-0.0);
  case 1:
    return std::numeric_limits<T>::denorm_min() * T(1 + (rng() % 100));
  case 2:
    return float_safe ? static_cast<T>(std::numeric_limits<float>::max() * u(rng))
                      : std::numeric_limits<T>::max() * static_cast<T>(u(rng));
  case 3:
    return std::numeric_limits<T>::min() * static_cast<T>(u(rng));
  case 4:
    return static_cast<T>(std::round(u(rng) * 1000));
  case 5:
    return static_cast<T>(u(rng) * 1e-30);
  case 6:
    return static_cast<T>(u(rng) * 1e30);
  default:
    return static_cast<T>(u(rng));
  }
}

/// Random m x n matrix with about density * m * n entries (awkward values,
/// explicit zeros included unless `no_zeros`).
template <class T>
tacit::CsrMatrix<T> random_matrix(tacit::index_t m, tacit::index_t n, double density,
                                  std::uint64_t seed, bool no_zeros = false,
                                  tacit::IndexWidth width = tacit::IndexWidth::automatic,
                                  bool float_safe = false) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> p(0, 1);
  std::vector<tacit::Triplet<T>> t;
  for (tacit::index_t i = 0; i < m; ++i)
    for (tacit::index_t j = 0; j < n; ++j)
      if (p(rng) < density) {
        T v = awkward_value<T>(rng, float_safe);
        if (no_zeros && v == T(0))
          v = T(0.5);
        t.push_back({i, j, v});
      }
  return tacit::CsrMatrix<T>::from_triplets(m, n, t, width);
}

/// A small random model (n states, p inputs, q outputs).
template <class T>
tacit::Model<T> random_model(tacit::index_t n, tacit::index_t p, tacit::index_t q,
                             std::uint64_t seed, bool with_d, bool with_biases,
                             bool with_blocks, bool float_safe = false) {
  using namespace tacit;
  auto A = std::make_shared<CsrMatrix<T>>(
      random_matrix<T>(n, n, 0.3, seed, false, IndexWidth::automatic, float_safe));
  auto B = std::make_shared<CsrMatrix<T>>(
      random_matrix<T>(n, p, 0.5, seed + 1, false, IndexWidth::automatic, float_safe));
  auto C = std::make_shared<CsrMatrix<T>>(
      random_matrix<T>(q, n, 0.5, seed + 2, false, IndexWidth::automatic, float_safe));
  std::shared_ptr<CsrMatrix<T>> D;
  if (with_d)
    D = std::make_shared<CsrMatrix<T>>(
        random_matrix<T>(q, p, 0.5, seed + 3, false, IndexWidth::automatic, float_safe));
  std::vector<T> bx, by;
  if (with_biases) {
    std::mt19937_64 rng(seed + 4);
    for (index_t i = 0; i < n; ++i)
      bx.push_back(awkward_value<T>(rng, float_safe));
    for (index_t i = 0; i < q; ++i)
      by.push_back(awkward_value<T>(rng, float_safe));
  }
  std::vector<StateBlock> blocks;
  if (with_blocks && n >= 3) {
    const index_t a = n / 3, b = n / 3;
    blocks.push_back({"conv1", 0, a, Activation{ActivationKind::relu, 0.01}});
    blocks.push_back({"mid layer", a, b, Activation{ActivationKind::leaky_relu, 0.125}});
    blocks.push_back({"out", a + b, 0, Activation{ActivationKind::identity, 0.01}});
    blocks.push_back({"tail", a + b, n - a - b, Activation{ActivationKind::tanh, 0.01}});
  }
  return Model<T>(A, B, C, D, bx, by, blocks);
}

template <class T>
bool same_operator(const tacit::LinearOperator<T> *a, const tacit::LinearOperator<T> *b) {
  if (!a || !b)
    return a == b;
  return same_csr(a->to_csr(), b->to_csr());
}

/// Same matrices, biases and blocks, bit for bit.
template <class T> bool same_model(const tacit::Model<T> &a, const tacit::Model<T> &b) {
  return same_operator(&a.A(), &b.A()) && same_operator(&a.B(), &b.B()) &&
         same_operator(&a.C(), &b.C()) && same_operator(a.D(), b.D()) &&
         same_bits(a.bias_x(), b.bias_x()) && same_bits(a.bias_y(), b.bias_y()) &&
         a.blocks() == b.blocks();
}

/// Deterministic random mutation of a file's bytes: byte flips, truncation,
/// insertion of random or structural bytes, duplication/removal of a line,
/// digit changes.
inline std::string mutate(const std::string &original, std::mt19937_64 &rng) {
  std::string s = original;
  const int steps = 1 + static_cast<int>(rng() % 3);
  for (int step = 0; step < steps; ++step) {
    const std::size_t size = s.size();
    const std::size_t at = size ? rng() % size : 0;
    switch (rng() % 8) {
    case 0: // flip a bit
      if (size)
        s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8)));
      break;
    case 1: // random byte
      if (size)
        s[at] = static_cast<char>(rng() % 256);
      break;
    case 2: // truncate
      s.resize(size ? rng() % size : 0);
      break;
    case 3: { // insert interesting bytes
      static const char *pieces[] = {"\n",
                                     " ",
                                     "%",
                                     "-",
                                     "0",
                                     "9",
                                     "e",
                                     ".",
                                     "nan",
                                     "1e999",
                                     "99999999999999999999",
                                     "\r\n",
                                     ",",
                                     "\0",
                                     "%%MatrixMarket",
                                     "\xff"};
      const std::string piece = pieces[rng() % (sizeof pieces / sizeof *pieces)];
      s.insert(std::min(at, s.size()), piece.empty() ? std::string(1, '\0') : piece);
      break;
    }
    case 4: { // duplicate a line
      if (!size)
        break;
      const auto b = s.rfind('\n', at), e = s.find('\n', at);
      const auto from = b == std::string::npos ? 0 : b + 1;
      const auto to = e == std::string::npos ? s.size() : e + 1;
      s.insert(from, s.substr(from, to - from));
      break;
    }
    case 5: { // remove a line
      if (!size)
        break;
      const auto b = s.rfind('\n', at), e = s.find('\n', at);
      const auto from = b == std::string::npos ? 0 : b + 1;
      const auto to = e == std::string::npos ? s.size() : e + 1;
      s.erase(from, to - from);
      break;
    }
    case 6: // change a digit
      if (size && s[at] >= '0' && s[at] <= '9')
        s[at] = static_cast<char>('0' + rng() % 10);
      else if (size)
        s[at] = static_cast<char>('0' + rng() % 10);
      break;
    default: // overwrite a little-endian word with an extreme value
      if (size >= 8) {
        const std::uint64_t extremes[] = {0,
                                          1,
                                          0xffffffffffffffffull,
                                          0x7fffffffffffffffull,
                                          0x100000000ull,
                                          0xffffffffull};
        const auto v = extremes[rng() % 6];
        const auto pos = rng() % (size - 7);
        std::memcpy(s.data() + pos, &v, rng() % 2 ? 8 : 4);
      }
      break;
    }
  }
  return s;
}

} // namespace tacit_test
