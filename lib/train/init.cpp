// Fresh models: MLPs and truly implicit sparse models (see tacit/train/init.hpp).

#include <tacit/train/init.hpp>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/operators/structured.hpp>

#include <charconv>
#include <cmath>
#include <string>
#include <vector>

namespace tacit::inline v1 {

namespace {

/// splitmix64 stream of uniform values.
struct Stream {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t x = (state += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
  /// Uniform in [0, 1).
  double unit() { return double(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [-a, a).
  double sym(double a) { return (2 * unit() - 1) * a; }
};

template <class T> std::vector<T> uniform(Stream &s, index_t n, double a) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto &x : v)
    x = static_cast<T>(s.sym(a));
  return v;
}

} // namespace

template <class T>
Model<T> init_mlp(std::span<const index_t> sizes, std::uint64_t seed, Activation phi) {
  if (sizes.size() < 2)
    throw InvalidArgument("init_mlp: give at least the input and output sizes");
  for (const index_t s : sizes)
    if (s < 1)
      throw InvalidArgument("init_mlp: layer size " + std::to_string(s) +
                            " must be >= 1");
  Stream rng{seed};
  NetworkBuilder<T> net;
  auto x = net.input({sizes[0], 1, 1});
  for (std::size_t l = 1; l < sizes.size(); ++l) {
    const index_t in = sizes[l - 1], out = sizes[l];
    const double bound = 1 / std::sqrt(double(in));
    auto w = uniform<T>(rng, out * in, bound);
    auto b = uniform<T>(rng, out, bound);
    x = net.dense(x, out, std::move(w), std::move(b));
    if (l + 1 < sizes.size())
      x = net.activation(x, phi, "h" + std::to_string(l));
  }
  return net.build(x);
}

template <class T>
Model<T> init_implicit(index_t n, index_t p, index_t q, double density, double kappa,
                       std::uint64_t seed) {
  if (n < 1 || p < 1 || q < 1)
    throw InvalidArgument("init_implicit: n, p and q must be >= 1");
  if (!(density > 0 && density <= 1))
    throw InvalidArgument("init_implicit: density must be in (0, 1]");
  if (!(kappa > 0 && kappa < 1))
    throw InvalidArgument("init_implicit: kappa must be in (0, 1)");
  Stream rng{seed};
  std::vector<Triplet<T>> t;
  const double bound_a = 1 / std::sqrt(std::max(1.0, density * double(n)));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      if (rng.unit() < density)
        t.push_back({i, j, static_cast<T>(rng.sym(bound_a))});
  CsrMatrix<T> A = CsrMatrix<T>::from_triplets(n, n, t);
  project_inf_norm(A, static_cast<T>(kappa));
  auto B = std::make_shared<DenseOperator<T>>(
      n, p, uniform<T>(rng, n * p, 1 / std::sqrt(double(p))));
  auto C = std::make_shared<DenseOperator<T>>(
      q, n, uniform<T>(rng, q * n, 1 / std::sqrt(double(n))));
  return Model<T>(std::make_shared<CsrMatrix<T>>(std::move(A)), B, C, nullptr,
                  std::vector<T>(static_cast<std::size_t>(n), T(0)),
                  std::vector<T>(static_cast<std::size_t>(q), T(0)),
                  {{"states", 0, n, Activation{}}});
}

template <class T> Model<T> init_model(std::string_view spec, std::uint64_t seed) {
  const auto colon = spec.find(':');
  const std::string_view kind = spec.substr(0, colon);
  const std::string_view rest =
      colon == spec.npos ? std::string_view() : spec.substr(colon + 1);
  const std::string where = "--init '" + std::string(spec) + "'";
  std::vector<std::string_view> items;
  for (std::size_t a = 0; a <= rest.size();) {
    const auto comma = rest.find(',', a);
    items.push_back(rest.substr(a, comma == rest.npos ? rest.npos : comma - a));
    if (comma == rest.npos)
      break;
    a = comma + 1;
  }
  auto number = [&](std::string_view s, const char *what) {
    double v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() ||
        !std::isfinite(v))
      throw InvalidArgument(where + ": " + what + " '" + std::string(s) +
                            "' is not a number");
    return v;
  };
  if (kind == "mlp") {
    std::vector<index_t> sizes;
    Activation phi;
    for (const auto item : items) {
      if (item.starts_with("phi=")) {
        try {
          phi = Activation::parse(item.substr(4));
        } catch (const InvalidArgument &e) {
          throw InvalidArgument(where + ": " + e.what());
        }
        continue;
      }
      const double v = number(item, "layer size");
      if (v < 1 || v != std::floor(v) || v > 1e9)
        throw InvalidArgument(where + ": layer size '" + std::string(item) +
                              "' must be a whole number >= 1");
      sizes.push_back(static_cast<index_t>(v));
    }
    if (sizes.size() < 2)
      throw InvalidArgument(where + ": give at least the input and output sizes, e.g. "
                                    "mlp:784,64,10");
    return init_mlp<T>(sizes, seed, phi);
  }
  if (kind == "implicit") {
    double n = -1, p = -1, q = -1, density = 0.01, kappa = 0.95;
    for (const auto item : items) {
      const auto eq = item.find('=');
      if (eq == item.npos)
        throw InvalidArgument(where + ": expected key=value, got '" + std::string(item) +
                              "'");
      const auto key = item.substr(0, eq);
      const double v = number(item.substr(eq + 1), "value");
      if (key == "n")
        n = v;
      else if (key == "p")
        p = v;
      else if (key == "q")
        q = v;
      else if (key == "density")
        density = v;
      else if (key == "kappa")
        kappa = v;
      else
        throw InvalidArgument(where + ": unknown key '" + std::string(key) +
                              "' (expected n, p, q, density, kappa)");
    }
    for (const auto &[v, name] : {std::pair{n, "n"}, {p, "p"}, {q, "q"}})
      if (v < 1 || v != std::floor(v) || v > 1e9)
        throw InvalidArgument(where + ": " + name +
                              " must be given as a whole number >= 1");
    return init_implicit<T>(static_cast<index_t>(n), static_cast<index_t>(p),
                            static_cast<index_t>(q), density, kappa, seed);
  }
  throw InvalidArgument(where + ": expected mlp:SIZES or implicit:n=..,p=..,q=..");
}

#define TACIT_INSTANTIATE(T)                                                             \
  template Model<T> init_mlp(std::span<const index_t>, std::uint64_t, Activation);       \
  template Model<T> init_implicit(index_t, index_t, index_t, double, double,             \
                                  std::uint64_t);                                        \
  template Model<T> init_model<T>(std::string_view, std::uint64_t);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
