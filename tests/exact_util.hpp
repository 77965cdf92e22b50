#pragma once
// Exact real arithmetic on doubles for the zero-tolerance tests: a value is
// a floating-point expansion (a sum of doubles, Shewchuk 1997), kept
// nonoverlapping by exact two-sums, multiplied by a double exactly by
// two-products (fma). Sums and products of doubles, ReLU, leaky ReLU and the
// identity are exact as long as nothing overflows or underflows, which the
// tests' magnitudes rule out.

#include <algorithm>
#include <cmath>
#include <vector>

#include "bounds_test_util.hpp"

namespace tacit::testutil {

class Exact {
public:
  Exact() = default;
  Exact(double v) { // NOLINT: implicit from a double, exactly
    if (v != 0)
      terms_.push_back(v);
  }

  Exact &operator+=(const Exact &o) {
    for (const double t : o.terms_)
      grow(t);
    return *this;
  }
  Exact &operator-=(const Exact &o) {
    for (const double t : o.terms_)
      grow(-t);
    return *this;
  }
  friend Exact operator+(Exact a, const Exact &b) { return a += b; }
  friend Exact operator-(Exact a, const Exact &b) { return a -= b; }
  /// The product with a double, exactly.
  friend Exact operator*(const Exact &a, double d) {
    Exact r;
    for (const double t : a.terms_) {
      const double p = t * d, e = std::fma(t, d, -p);
      r.grow(p);
      r.grow(e);
    }
    return r;
  }

  /// -1, 0 or 1.
  int sign() const {
    for (auto it = terms_.rbegin(); it != terms_.rend(); ++it)
      if (*it != 0)
        return *it > 0 ? 1 : -1;
    return 0;
  }
  /// The nearest double (the largest term dominates a nonoverlapping sum).
  double approx() const {
    double s = 0;
    for (const double t : terms_)
      s += t;
    return s;
  }
  friend bool operator<=(const Exact &a, const Exact &b) { return (b - a).sign() >= 0; }
  friend bool operator>=(const Exact &a, const Exact &b) { return (a - b).sign() >= 0; }
  friend bool operator<(const Exact &a, const Exact &b) { return (b - a).sign() > 0; }

private:
  // Grow-Expansion with zero elimination: terms_ stays nonoverlapping and
  // increasing in magnitude, and its sum changes by exactly t.
  void grow(double t) {
    std::vector<double> out;
    out.reserve(terms_.size() + 1);
    double q = t;
    for (const double e : terms_) {
      const double s = q + e, bv = s - q, err = (q - (s - bv)) + (e - bv);
      if (err != 0)
        out.push_back(err);
      q = s;
    }
    if (q != 0)
      out.push_back(q);
    terms_.swap(out);
  }
  std::vector<double> terms_;
};

inline Exact activate(const Activation &a, const Exact &z) {
  switch (a.kind) {
  case ActivationKind::relu:
    return z.sign() > 0 ? z : Exact();
  case ActivationKind::leaky_relu:
    return z.sign() >= 0 ? z : z * a.slope;
  case ActivationKind::identity:
    return z;
  default:
    throw std::logic_error("exact evaluation: only piecewise-linear activations");
  }
}

/// x(u), z(u) and y(u) of a feed-forward DenseModel (A strictly lower
/// triangular in state order) with piecewise-linear activations, exactly.
inline void evaluate_exact(const DenseModel &m, const std::vector<double> &u,
                           std::vector<Exact> &x, std::vector<Exact> &z,
                           std::vector<Exact> &y) {
  x.assign(m.n, Exact());
  z.assign(m.n, Exact());
  for (index_t i = 0; i < m.n; ++i) {
    Exact s(m.bx[i]);
    for (index_t j = 0; j < i; ++j)
      if (m.A[i * m.n + j] != 0)
        s += x[j] * m.A[i * m.n + j];
    for (index_t j = i; j < m.n; ++j)
      if (m.A[i * m.n + j] != 0)
        throw std::logic_error("evaluate_exact: A is not strictly lower triangular");
    for (index_t j = 0; j < m.p; ++j)
      if (m.B[i * m.p + j] != 0)
        s += Exact(u[j]) * m.B[i * m.p + j];
    z[i] = s;
    x[i] = activate(m.act[i], s);
  }
  y.assign(m.q, Exact());
  for (index_t k = 0; k < m.q; ++k) {
    Exact s(m.by[k]);
    for (index_t j = 0; j < m.n; ++j)
      if (m.C[k * m.n + j] != 0)
        s += x[j] * m.C[k * m.n + j];
    if (!m.D.empty())
      for (index_t j = 0; j < m.p; ++j)
        if (m.D[k * m.p + j] != 0)
          s += Exact(u[j]) * m.D[k * m.p + j];
    y[k] = s;
  }
}

} // namespace tacit::testutil
