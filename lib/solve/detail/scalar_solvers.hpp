#pragma once
// Scalar equations of the sweep's 1x1 blocks: whether x = phi(a x + c) is
// uniquely solvable for every c, and its solution (closed forms for the
// piecewise-linear activations, safeguarded Newton for tanh and sigmoid).

#include <algorithm>
#include <cmath>
#include <limits>

#include <tacit/core/model.hpp>

namespace tacit::inline v1::detail {

/// Whether a 1x1 block x = phi(a x + c) has a unique solution for every c.
/// tanh and sigmoid with a * Lipschitz > 1 are decided per c (see
/// solve_singleton), so they count as well-posed here.
inline bool singleton_well_posed(const Activation &act, double a) {
  switch (act.kind) {
  case ActivationKind::relu:
    return a < 1;
  case ActivationKind::leaky_relu:
    return a < 1 && act.slope * a < 1;
  case ActivationKind::identity:
    return a != 1;
  case ActivationKind::tanh:
  case ActivationKind::sigmoid:
    return true;
  }
  return false;
}

/// Solution of the scalar equation x = phi(a x + c) for a structurally
/// well-posed singleton (closed forms in T for the piecewise-linear
/// activations). `unique` is false when tanh/sigmoid with a large self-weight
/// have several solutions for this c (x is then NaN).
struct ScalarSolution {
  double x = 0;
  bool unique = true;
};

namespace scalar {
// h(x) = x - sigma(a x + c) and its derivative for tanh / sigmoid.
inline double sigma(bool is_tanh, double t) {
  return is_tanh ? std::tanh(t) : 1.0 / (1.0 + std::exp(-t));
}
inline double sigma_prime(bool is_tanh, double t) {
  const double s = sigma(is_tanh, t);
  return is_tanh ? 1.0 - s * s : s * (1.0 - s);
}
// Safeguarded Newton on [lo, hi] with h(lo) <= 0 <= h(hi), h increasing on it.
inline double bracketed_root(bool is_tanh, double a, double c, double lo, double hi) {
  auto h = [&](double x) { return x - sigma(is_tanh, a * x + c); };
  double hlo = h(lo), hhi = h(hi);
  if (hlo >= 0)
    return lo;
  if (hhi <= 0)
    return hi;
  double x = std::clamp(sigma(is_tanh, c), lo, hi); // root when a == 0
  for (int it = 0; it < 200; ++it) {
    const double hx = h(x);
    if (hx == 0)
      return x;
    if (hx < 0)
      lo = x;
    else
      hi = x;
    const double dh = 1.0 - a * sigma_prime(is_tanh, a * x + c);
    double next = x - hx / dh;
    if (!(next > lo && next < hi))
      next = 0.5 * (lo + hi);
    if (next == x || hi - lo <= 2 * std::numeric_limits<double>::epsilon() *
                                    std::max(1.0, std::abs(x)))
      return std::abs(h(next)) < std::abs(hx) ? next : x;
    x = next;
  }
  return x;
}
} // namespace scalar

/// x = sigma(a x + c) for sigma = tanh (range [-1, 1], Lipschitz 1) or
/// sigmoid (range [0, 1], Lipschitz 1/4). With a * L <= 1, h(x) = x -
/// sigma(a x + c) is increasing: one root. Otherwise h increases, decreases
/// on [x1, x2] (where a sigma' = 1) and increases again: the root is unique
/// iff h(x1) < 0 or h(x2) > 0.
inline ScalarSolution solve_saturating(bool is_tanh, double a, double c) {
  const double lo = is_tanh ? -1.0 : 0.0, hi = 1.0;
  const double inv_lip = is_tanh ? 1.0 : 4.0; // a * L <= 1 <=> a <= inv_lip
  if (!(std::isfinite(a) && std::isfinite(c)))
    return {std::numeric_limits<double>::quiet_NaN(), true};
  if (a <= inv_lip)
    return {scalar::bracketed_root(is_tanh, a, c, lo, hi), true};
  // Stationary points of h: sigma'(t) = 1 / a at t = +-t_star.
  double t_star;
  if (is_tanh) {
    t_star = std::acosh(std::sqrt(a));
  } else {
    const double r = std::sqrt(1.0 - 4.0 / a);
    t_star = std::log((1.0 + r) / (1.0 - r));
  }
  const double x1 = (-t_star - c) / a, x2 = (t_star - c) / a;
  auto h = [&](double x) { return x - scalar::sigma(is_tanh, a * x + c); };
  const double margin = 64 * std::numeric_limits<double>::epsilon();
  if (h(x1) < -margin) // the local maximum is below zero: root right of x2
    return {scalar::bracketed_root(is_tanh, a, c, std::clamp(x2, lo, hi), hi), true};
  if (h(x2) > margin) // the local minimum is above zero: root left of x1
    return {scalar::bracketed_root(is_tanh, a, c, lo, std::clamp(x1, lo, hi)), true};
  return {std::numeric_limits<double>::quiet_NaN(), false};
}

/// Solution of x = phi(a x + c) for a structurally well-posed singleton.
/// Fused: the kernels' level rounds a * b + c once (FMA), so the leaky-ReLU
/// branch does too, and every batch width gives the same bits.
template <bool Fused, class T>
inline T solve_singleton(const Activation &act, T a, T c, bool &unique) {
  switch (act.kind) {
  case ActivationKind::relu:
    return c > T(0) ? c / (T(1) - a) : T(0);
  case ActivationKind::leaky_relu: {
    const T s = static_cast<T>(act.slope);
    T den;
    if constexpr (Fused) {
      den = std::fma(-s, a, T(1));
    } else {
      const T p = -s * a;
      den = p + T(1);
    }
    return c >= T(0) ? c / (T(1) - a) : (s * c) / den;
  }
  case ActivationKind::identity:
    return c / (T(1) - a);
  case ActivationKind::tanh:
  case ActivationKind::sigmoid: {
    const auto r = solve_saturating(act.kind == ActivationKind::tanh,
                                    static_cast<double>(a), static_cast<double>(c));
    unique = r.unique;
    return static_cast<T>(r.x);
  }
  }
  return c;
}

} // namespace tacit::inline v1::detail
