#pragma once
// Small models for the bound and attack tests, built from dense matrices,
// and an independent dense reference evaluation (plain loops, Picard to
// convergence) of x(u) and y(u).

#include <tacit/core/csr.hpp>
#include <tacit/core/model.hpp>
#include <tacit/io/io.hpp>
#include <tacit/operators/structured.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <type_traits>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

namespace tacit::testutil {

using Dense = std::vector<double>; // row-major

struct DenseModel {
  index_t n = 0, p = 0, q = 0;
  Dense A, B, C, D; // D may be empty
  std::vector<double> bx, by;
  std::vector<Activation> act; // per state
};

inline std::shared_ptr<CsrMatrix<double>> to_csr(index_t r, index_t c, const Dense &a) {
  return std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_dense(r, c, a));
}

inline Model<double> make_model(const DenseModel &m, std::vector<StateBlock> blocks) {
  return Model<double>(
      to_csr(m.n, m.n, m.A), to_csr(m.n, m.p, m.B), to_csr(m.q, m.n, m.C),
      m.D.empty() ? nullptr : to_csr(m.q, m.p, m.D), m.bx, m.by, std::move(blocks));
}

inline Dense random_dense(std::mt19937 &rng, index_t r, index_t c, double scale,
                          double density = 1.0) {
  std::uniform_real_distribution<double> u(-scale, scale), d(0, 1);
  Dense a(static_cast<std::size_t>(r * c), 0.0);
  for (auto &v : a)
    if (d(rng) < density)
      v = u(rng);
  return a;
}

/// Feed-forward MLP p -> h[0] -> ... -> q as an implicit model (states are
/// the hidden layers in order; A block lower triangular).
inline DenseModel mlp(std::mt19937 &rng, index_t p, const std::vector<index_t> &h,
                      index_t q, Activation a = {}) {
  DenseModel m;
  m.p = p;
  m.q = q;
  for (auto s : h)
    m.n += s;
  m.A.assign(m.n * m.n, 0.0);
  m.B.assign(m.n * p, 0.0);
  m.C.assign(q * m.n, 0.0);
  index_t off = 0, prev_off = 0, prev = p;
  for (std::size_t l = 0; l < h.size(); ++l) {
    const double sc = 1.5 / std::sqrt(double(prev));
    const Dense W = random_dense(rng, h[l], prev, sc);
    for (index_t i = 0; i < h[l]; ++i)
      for (index_t j = 0; j < prev; ++j) {
        if (l == 0)
          m.B[(off + i) * p + j] = W[i * prev + j];
        else
          m.A[(off + i) * m.n + prev_off + j] = W[i * prev + j];
      }
    prev_off = off;
    prev = h[l];
    off += h[l];
  }
  const Dense W = random_dense(rng, q, prev, 1.5 / std::sqrt(double(prev)));
  for (index_t i = 0; i < q; ++i)
    for (index_t j = 0; j < prev; ++j)
      m.C[i * m.n + prev_off + j] = W[i * prev + j];
  std::uniform_real_distribution<double> bd(-0.2, 0.2);
  m.bx.resize(m.n);
  for (auto &b : m.bx)
    b = bd(rng);
  m.by.resize(q);
  for (auto &b : m.by)
    b = bd(rng);
  m.act.assign(m.n, a);
  return m;
}

/// A small CNN-like model on a side x side image: a 3x3 valid convolution
/// with `channels` output channels, a dense layer of `hidden`, q outputs.
inline DenseModel small_cnn(std::mt19937 &rng, index_t side, index_t channels,
                            index_t hidden, index_t q) {
  DenseModel m;
  const index_t o = side - 2, conv = channels * o * o;
  m.p = side * side;
  m.q = q;
  m.n = conv + hidden;
  m.A.assign(m.n * m.n, 0.0);
  m.B.assign(m.n * m.p, 0.0);
  m.C.assign(q * m.n, 0.0);
  std::uniform_real_distribution<double> w(-0.5, 0.5);
  for (index_t c = 0; c < channels; ++c) {
    double k[9];
    for (auto &v : k)
      v = w(rng);
    for (index_t y = 0; y < o; ++y)
      for (index_t x = 0; x < o; ++x)
        for (index_t dy = 0; dy < 3; ++dy)
          for (index_t dx = 0; dx < 3; ++dx)
            m.B[((c * o + y) * o + x) * m.p + (y + dy) * side + (x + dx)] =
                k[dy * 3 + dx];
  }
  const Dense W = random_dense(rng, hidden, conv, 1.5 / std::sqrt(double(conv)));
  for (index_t i = 0; i < hidden; ++i)
    for (index_t j = 0; j < conv; ++j)
      m.A[(conv + i) * m.n + j] = W[i * conv + j];
  const Dense V = random_dense(rng, q, hidden, 1.5 / std::sqrt(double(hidden)));
  for (index_t i = 0; i < q; ++i)
    for (index_t j = 0; j < hidden; ++j)
      m.C[i * m.n + conv + j] = V[i * hidden + j];
  std::uniform_real_distribution<double> bd(-0.1, 0.1);
  m.bx.resize(m.n);
  for (auto &b : m.bx)
    b = bd(rng);
  m.by.assign(q, 0.0);
  m.act.assign(m.n, Activation{});
  return m;
}

/// A truly implicit model: dense-ish A with cycles scaled to ||A||_inf =
/// `norm` (lambda_PF(|A|) <= norm), D nonzero.
inline DenseModel implicit(std::mt19937 &rng, index_t n, index_t p, index_t q,
                           double norm, Activation a = {}) {
  DenseModel m;
  m.n = n;
  m.p = p;
  m.q = q;
  m.A = random_dense(rng, n, n, 1.0, 0.5);
  double mx = 0;
  for (index_t i = 0; i < n; ++i) {
    double s = 0;
    for (index_t j = 0; j < n; ++j)
      s += std::abs(m.A[i * n + j]);
    mx = std::max(mx, s);
  }
  for (auto &v : m.A)
    v *= norm / mx;
  m.B = random_dense(rng, n, p, 1.0);
  m.C = random_dense(rng, q, n, 1.0);
  m.D = random_dense(rng, q, p, 0.3);
  std::uniform_real_distribution<double> bd(-0.3, 0.3);
  m.bx.resize(n);
  for (auto &b : m.bx)
    b = bd(rng);
  m.by.resize(q);
  for (auto &b : m.by)
    b = bd(rng);
  m.act.assign(n, a);
  return m;
}

/// The model with every parameter rounded to float: the exact real-number
/// model that a float model of `m` holds.
inline DenseModel rounded_to_float(DenseModel m) {
  for (auto *v : {&m.A, &m.B, &m.C, &m.D, &m.bx, &m.by})
    for (auto &x : *v)
      x = double(float(x));
  return m;
}

template <class T>
std::shared_ptr<CsrMatrix<T>> csr_t(index_t r, index_t c, const Dense &a) {
  return std::make_shared<CsrMatrix<T>>(
      CsrMatrix<T>::from_dense(r, c, std::vector<T>(a.begin(), a.end())));
}

/// The model in T with A, B, C, D as CSR.
template <class T>
Model<T> make_model_t(const DenseModel &m, std::vector<StateBlock> blocks) {
  return Model<T>(csr_t<T>(m.n, m.n, m.A), csr_t<T>(m.n, m.p, m.B),
                  csr_t<T>(m.q, m.n, m.C),
                  m.D.empty() ? nullptr : csr_t<T>(m.q, m.p, m.D),
                  std::vector<T>(m.bx.begin(), m.bx.end()),
                  std::vector<T>(m.by.begin(), m.by.end()), std::move(blocks));
}

/// The model in T with A as a BlockOperator over the state blocks of
/// `sizes` (one CSR entry per nonzero block), as the network builder lays
/// out a feed-forward network; B and C as CSR. Activations per state.
template <class T>
Model<T> layered_model(const DenseModel &m, const std::vector<index_t> &sizes) {
  std::vector<index_t> offset(sizes.size() + 1, 0);
  for (std::size_t b = 0; b < sizes.size(); ++b)
    offset[b + 1] = offset[b] + sizes[b];
  std::vector<BlockEntry<T>> entries;
  std::vector<StateBlock> blocks;
  for (std::size_t r = 0; r < sizes.size(); ++r) {
    for (std::size_t c = 0; c < sizes.size(); ++c) {
      Dense blk(static_cast<std::size_t>(sizes[r] * sizes[c]), 0.0);
      bool any = false;
      for (index_t i = 0; i < sizes[r]; ++i)
        for (index_t j = 0; j < sizes[c]; ++j) {
          const double v = m.A[(offset[r] + i) * m.n + offset[c] + j];
          blk[i * sizes[c] + j] = v;
          any = any || v != 0;
        }
      if (any)
        entries.push_back({index_t(r), index_t(c), csr_t<T>(sizes[r], sizes[c], blk)});
    }
    blocks.push_back(
        {"layer" + std::to_string(r), offset[r], sizes[r], m.act[offset[r]]});
  }
  return Model<T>(std::make_shared<BlockOperator<T>>(sizes, sizes, std::move(entries)),
                  csr_t<T>(m.n, m.p, m.B), csr_t<T>(m.q, m.n, m.C),
                  m.D.empty() ? nullptr : csr_t<T>(m.q, m.p, m.D),
                  std::vector<T>(m.bx.begin(), m.bx.end()),
                  std::vector<T>(m.by.begin(), m.by.end()), std::move(blocks));
}

/// A deep feed-forward network p -> width x layers -> q with residual
/// lines (x_l = phi(W_l x_{l-1} + residual x_{l-2} + b_l)) and one dead unit per
/// layer (no inputs, bias -1: always 0 after ReLU) that reaches the next
/// layer with weight `dead_weight`: the certificate vector of the global
/// bound, v = (I - L|A|)^-1 1, then exceeds dead_weight, which rounds
/// max(1 - 1/v_i) to 1, while the unit changes nothing.
inline DenseModel deep_mlp(std::mt19937 &rng, index_t p, index_t width, index_t layers,
                           index_t q, double gain, double residual, double dead_weight,
                           std::vector<index_t> *sizes = nullptr) {
  DenseModel m;
  const index_t w = width + 1; // the last unit of each layer is dead
  m.p = p;
  m.q = q;
  m.n = w * layers;
  m.A.assign(m.n * m.n, 0.0);
  m.B.assign(m.n * p, 0.0);
  m.C.assign(q * m.n, 0.0);
  m.bx.assign(m.n, 0.0);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> bd(-0.1, 0.1);
  for (index_t l = 0; l < layers; ++l) {
    const index_t off = l * w, in = l == 0 ? p : width;
    const double sc = gain / std::sqrt(double(in));
    for (index_t i = 0; i < width; ++i) {
      for (index_t j = 0; j < in; ++j) {
        const double v = sc * nd(rng);
        if (l == 0)
          m.B[(off + i) * p + j] = v;
        else
          m.A[(off + i) * m.n + off - w + j] = v;
      }
      if (l > 0)
        m.A[(off + i) * m.n + off - 1] = dead_weight; // the dead unit before
      if (l > 1)
        m.A[(off + i) * m.n + off - 2 * w + i] = residual;
      m.bx[off + i] = bd(rng);
    }
    m.bx[off + width] = -1; // dead
  }
  const index_t last = (layers - 1) * w;
  for (index_t k = 0; k < q; ++k)
    for (index_t j = 0; j < width; ++j)
      m.C[k * m.n + last + j] = nd(rng) / std::sqrt(double(width));
  m.by.assign(q, 0.0);
  m.act.assign(m.n, Activation{});
  if (sizes)
    sizes->assign(static_cast<std::size_t>(layers), w);
  return m;
}

/// A deep residual MLP (bounds_test_util's deep_mlp) whose layers take ReLU,
/// leaky ReLU (slopes 0.1 and 2), identity and ReLU again in turn (one
/// activation per layer: a model's activations are per state block), and a
/// D term.
inline DenseModel mixed_deep_model(std::mt19937 &rng, std::vector<index_t> &sizes,
                                   index_t layers = 8, double gain = 1.3) {
  DenseModel m = deep_mlp(rng, 5, 6, layers, 3, gain, 0.5, 1.0, &sizes);
  const Activation kinds[4] = {Activation{}, Activation{ActivationKind::leaky_relu, 0.1},
                               Activation{ActivationKind::leaky_relu, 2.0},
                               Activation{ActivationKind::identity}};
  index_t i = 0;
  for (std::size_t l = 0; l < sizes.size(); ++l)
    for (index_t t = 0; t < sizes[l]; ++t, ++i)
      m.act[i] = kinds[l % 4];
  m.D = random_dense(rng, m.q, m.p, 0.3);
  return m;
}

/// Dyadic inputs in [0, 1) (multiples of 2^-6): u0 + t e_j is exact for the
/// steps below.
inline std::vector<double> dyadic_input(std::mt19937 &rng, index_t p) {
  std::uniform_int_distribution<int> d(0, 63);
  std::vector<double> u(static_cast<std::size_t>(p));
  for (auto &v : u)
    v = d(rng) / 64.0;
  return u;
}

/// The exact real-number model of a model in T, in double (a float model's
/// parameters are doubles exactly), keeping its structured operators: the
/// model written to a native file in T and read back in double.
template <class T> Model<double> exact_model(const Model<T> &model) {
  if constexpr (std::is_same_v<T, double>) {
    return model;
  } else {
    static std::atomic<int> counter{0};
    const auto path = std::filesystem::temp_directory_path() /
                      ("tacit_exact_model_" + std::to_string(::getpid()) + "_" +
                       std::to_string(counter.fetch_add(1)) + ".tacit");
    save_model_native(model, path);
    Model<double> out = load_model_native<double>(path);
    std::filesystem::remove(path);
    return out;
  }
}

/// z_i = (A x + B u + b)_i by plain loops.
inline double preactivation(const DenseModel &m, index_t i, const std::vector<double> &x,
                            const std::vector<double> &u) {
  double z = m.bx[i];
  for (index_t j = 0; j < m.n; ++j)
    z += m.A[i * m.n + j] * x[j];
  for (index_t j = 0; j < m.p; ++j)
    z += m.B[i * m.p + j] * u[j];
  return z;
}

/// Reference x(u) by plain Picard to convergence, and y(u).
inline void evaluate(const DenseModel &m, const std::vector<double> &u,
                     std::vector<double> &x, std::vector<double> &y) {
  x.assign(m.n, 0.0);
  std::vector<double> nx(m.n);
  for (int it = 0; it < 5000; ++it) {
    double step = 0;
    for (index_t i = 0; i < m.n; ++i) {
      nx[i] = m.act[i](preactivation(m, i, x, u));
      step = std::max(step, std::abs(nx[i] - x[i]));
    }
    x.swap(nx);
    if (step < 1e-14)
      break;
  }
  y.assign(m.q, 0.0);
  for (index_t k = 0; k < m.q; ++k) {
    double s = m.by[k];
    for (index_t j = 0; j < m.n; ++j)
      s += m.C[k * m.n + j] * x[j];
    if (!m.D.empty())
      for (index_t j = 0; j < m.p; ++j)
        s += m.D[k * m.p + j] * u[j];
    y[k] = s;
  }
}

} // namespace tacit::testutil
