#pragma once
// Per-state activation helpers shared by the bounds and the attacks:
// evaluation, derivative, range and linear relaxations on an interval.

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include <tacit/core/model.hpp>

namespace tacit::inline v1::detail {

enum class ActKind : unsigned char { relu, leaky, tanh, sigmoid, identity };

/// x >= lo_slope z + lo_icpt and x <= up_slope z + up_icpt for z in [l, h].
template <class T> struct Relaxation {
  T lo_slope = 0, lo_icpt = 0, up_slope = 0, up_icpt = 0;
};

/// min over x in [lo, hi] of a x (0 when a == 0, whatever the bounds).
template <class T> inline double min_product(T a, T lo, T hi) {
  if (a == T(0))
    return 0.0;
  return a > T(0) ? double(a) * double(lo) : double(a) * double(hi);
}

struct StateAct {
  ActKind kind = ActKind::relu;
  double slope = 0;

  static StateAct from(const Activation &a) {
    StateAct s;
    switch (a.kind) {
    case ActivationKind::relu:
      s.kind = ActKind::relu;
      break;
    case ActivationKind::leaky_relu:
      s.kind = ActKind::leaky;
      s.slope = a.slope;
      break;
    case ActivationKind::tanh:
      s.kind = ActKind::tanh;
      break;
    case ActivationKind::sigmoid:
      s.kind = ActKind::sigmoid;
      break;
    case ActivationKind::identity:
      s.kind = ActKind::identity;
      break;
    }
    return s;
  }

  template <class T> T apply(T z) const {
    switch (kind) {
    case ActKind::relu:
      return z > T(0) ? z : T(0);
    case ActKind::leaky:
      return z >= T(0) ? z : static_cast<T>(slope) * z;
    case ActKind::tanh:
      return std::tanh(z);
    case ActKind::sigmoid:
      return T(1) / (T(1) + std::exp(-z));
    case ActKind::identity:
      return z;
    }
    return z;
  }

  /// phi(z) rounded outward: exact for ReLU and identity; a leaky ReLU's
  /// product and tanh/sigmoid are within a few units of roundoff.
  template <class T> T apply_lower(T z) const {
    const T f = apply(z);
    if (kind == ActKind::relu || kind == ActKind::identity)
      return f;
    return f - T(4) * std::numeric_limits<T>::epsilon() * std::abs(f) -
           std::numeric_limits<T>::denorm_min();
  }
  template <class T> T apply_upper(T z) const {
    const T f = apply(z);
    if (kind == ActKind::relu || kind == ActKind::identity)
      return f;
    return f + T(4) * std::numeric_limits<T>::epsilon() * std::abs(f) +
           std::numeric_limits<T>::denorm_min();
  }

  /// Derivative (ReLU: 1 for z > 0, else 0).
  template <class T> T derivative(T z) const {
    switch (kind) {
    case ActKind::relu:
      return z > T(0) ? T(1) : T(0);
    case ActKind::leaky:
      return z > T(0) ? T(1) : static_cast<T>(slope);
    case ActKind::tanh: {
      const T t = std::tanh(z);
      return T(1) - t * t;
    }
    case ActKind::sigmoid: {
      const T s = T(1) / (T(1) + std::exp(-z));
      return s * (T(1) - s);
    }
    case ActKind::identity:
      return T(1);
    }
    return T(1);
  }

  /// Enclosure [lo, hi] of the secant slopes (phi(z) - phi(z')) / (z - z')
  /// for z != z' in [l, h] (l <= h, possibly infinite): by the mean value
  /// theorem, the range of phi' on [l, h].
  std::pair<double, double> slope_range(double l, double h) const {
    switch (kind) {
    case ActKind::identity:
      return {1.0, 1.0};
    case ActKind::relu:
    case ActKind::leaky: {
      const double a = kind == ActKind::relu ? 0.0 : slope;
      if (h <= 0)
        return {a, a};
      if (l >= 0)
        return {1.0, 1.0};
      return {std::min(a, 1.0), std::max(a, 1.0)};
    }
    case ActKind::tanh:
    case ActKind::sigmoid: {
      // phi' is even about 0 and decreasing in |z|: largest at the point of
      // [l, h] nearest 0, smallest at the end farthest from it.
      const double near = std::clamp(0.0, l, h);
      const double far = std::max(std::abs(l), std::abs(h));
      const double hi = derivative(near), lo = std::isfinite(far) ? derivative(far) : 0.0;
      // derivative() is evaluated in double: widen by a few ulps.
      const double slack = 8 * std::numeric_limits<double>::epsilon();
      return {std::max(0.0, lo * (1 - slack)), hi * (1 + slack)};
    }
    }
    return {0.0, 1.0};
  }

  /// Intersects [lo, hi] with the range of the activation.
  template <class T> void clamp_range(T &lo, T &hi) const {
    switch (kind) {
    case ActKind::relu:
      lo = std::max(lo, T(0));
      break;
    case ActKind::tanh:
      lo = std::max(lo, T(-1));
      hi = std::min(hi, T(1));
      break;
    case ActKind::sigmoid:
      lo = std::max(lo, T(0));
      hi = std::min(hi, T(1));
      break;
    default:
      break;
    }
  }

  /// Whether a tighter pre-activation interval would tighten the relaxation.
  template <class T> bool needs_refinement(T l, T h) const {
    switch (kind) {
    case ActKind::relu:
    case ActKind::leaky:
      return l < T(0) && h > T(0);
    case ActKind::tanh:
    case ActKind::sigmoid:
      return h > l;
    case ActKind::identity:
      return false;
    }
    return false;
  }

  /// Linear relaxation on [l, h] (finite, l <= h).
  template <class T> Relaxation<T> relax(T l, T h) const {
    Relaxation<T> r;
    switch (kind) {
    case ActKind::identity:
      r.lo_slope = r.up_slope = T(1);
      return r;
    case ActKind::relu:
    case ActKind::leaky: {
      const double a = kind == ActKind::relu ? 0.0 : slope;
      if (h <= T(0)) {
        r.lo_slope = r.up_slope = static_cast<T>(a);
        return r;
      }
      if (l >= T(0)) {
        r.lo_slope = r.up_slope = T(1);
        return r;
      }
      const double dl = l, dh = h;
      const double chord = (dh - a * dl) / (dh - dl);
      const double icpt = a * dl - chord * dl; // line through (l, a l) and (h, h)
      const double tangent = dh >= -dl ? 1.0 : a;
      if (a <= 1) { // convex: chord above, a line through 0 below
        r.up_slope = static_cast<T>(chord);
        r.up_icpt = static_cast<T>(icpt);
        r.lo_slope = static_cast<T>(tangent);
      } else { // concave
        r.lo_slope = static_cast<T>(chord);
        r.lo_icpt = static_cast<T>(icpt);
        r.up_slope = static_cast<T>(tangent);
      }
      return r;
    }
    case ActKind::tanh:
    case ActKind::sigmoid: {
      const double dl = l, dh = h;
      const double fl = apply(dl), fh = apply(dh);
      if (!(dh > dl)) {
        r.lo_icpt = static_cast<T>(fl);
        r.up_icpt = static_cast<T>(fl);
        return r;
      }
      // Chord slope s; offsets g(z) = f(z) - s z extremal at the ends or where
      // f'(z) = s (symmetric points +-z*).
      const double s =
          std::clamp((fh - fl) / (dh - dl), 0.0, kind == ActKind::tanh ? 1.0 : 0.25);
      double gmin = std::min(fl - s * dl, fh - s * dh);
      double gmax = std::max(fl - s * dl, fh - s * dh);
      double zs = 0;
      bool has = false;
      if (kind == ActKind::tanh && s > 0 && s < 1) {
        zs = std::atanh(std::sqrt(1 - s));
        has = true;
      } else if (kind == ActKind::sigmoid && s > 0 && s < 0.25) {
        zs = 2 * std::atanh(std::sqrt(1 - 4 * s));
        has = true;
      }
      if (has)
        for (const double z : {zs, -zs})
          if (z > dl && z < dh) {
            const double g = apply(z) - s * z;
            gmin = std::min(gmin, g);
            gmax = std::max(gmax, g);
          }
      const double slack = 16 * double(std::numeric_limits<T>::epsilon()) *
                           (1 + std::abs(gmin) + std::abs(gmax) +
                            s * std::max(std::abs(dl), std::abs(dh)));
      r.lo_slope = r.up_slope = static_cast<T>(s);
      r.lo_icpt = static_cast<T>(gmin - slack);
      r.up_icpt = static_cast<T>(gmax + slack);
      return r;
    }
    }
    return r;
  }
};

} // namespace tacit::inline v1::detail
