#pragma once
// The steps of the global bound that do not depend on how the states are
// held: checks of the box and the nominal point, the unbounded result, the
// box radii sigma, the source s and the final interval x0 -/+ w. Shared by
// BoundAnalyzer (bounds_global.cpp, the whole model) and the distributed
// analyzer (lib/mpi/bounds.cpp, each rank's own states), so that both form
// the same bits.

#include <tacit/analysis/bounds.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <tacit/core/error.hpp>

#include "analysis/detail/activation_bounds.hpp"

namespace tacit::inline v1::detail {

/// max(|lo|, |hi|) per entry.
template <class T>
std::vector<T> magnitudes(const std::vector<T> &lo, const std::vector<T> &hi) {
  std::vector<T> m(lo.size());
  for (std::size_t i = 0; i < lo.size(); ++i)
    m[i] = std::max(std::abs(lo[i]), std::abs(hi[i]));
  return m;
}

/// InvalidArgument unless the box has p entries with lower <= upper.
template <class T> void check_box(const InputBox<T> &box, index_t p) {
  if (static_cast<index_t>(box.lower.size()) != p ||
      static_cast<index_t>(box.upper.size()) != p)
    throw InvalidArgument("bounds: the input box has " +
                          std::to_string(box.lower.size()) +
                          " entries, the model has p = " + std::to_string(p));
  for (index_t j = 0; j < p; ++j)
    if (!(box.lower[j] <= box.upper[j]))
      throw InvalidArgument("bounds: the input box is empty or NaN at input " +
                            std::to_string(j) + ": [" + std::to_string(box.lower[j]) +
                            ", " + std::to_string(box.upper[j]) + "]");
}

/// InvalidArgument unless the nominal point has p inputs and n states with
/// their residuals; `states` names n ("n = 5", "this rank 5 states").
template <class T>
void check_nominal(const NominalPoint<T> &nom, index_t p, index_t n,
                   const std::string &states) {
  if (static_cast<index_t>(nom.u.size()) != p || static_cast<index_t>(nom.x.size()) != n ||
      static_cast<index_t>(nom.residual.size()) != n)
    throw InvalidArgument("bounds: the nominal point has " + std::to_string(nom.u.size()) +
                          " inputs and " + std::to_string(nom.x.size()) +
                          " states, the model p = " + std::to_string(p) + " and " + states);
}

/// `out` made the unbounded result on n states (every interval infinite).
template <class T> StateBounds<T> &make_unbounded(StateBounds<T> &out, index_t n) {
  const T inf = std::numeric_limits<T>::infinity();
  out.status = BoundStatus::unbounded;
  out.x_lower.assign(n, -inf);
  out.x_upper.assign(n, inf);
  out.z_lower.assign(n, -inf);
  out.z_upper.assign(n, inf);
  return out;
}

/// sigma_j: the largest distance from u0_j to the box (>= 0).
template <class T> std::vector<T> box_radii(const NominalPoint<T> &nom, const InputBox<T> &box) {
  const std::size_t p = nom.u.size();
  std::vector<T> sigma(p);
  for (std::size_t j = 0; j < p; ++j)
    sigma[j] = std::max({nom.u[j] - box.lower[j], box.upper[j] - nom.u[j], T(0)});
  return sigma;
}

/// s = (1 + max(gB, gA)) (L Bhat sigma + |r0| + rounding of r0), in place on
/// s = Bhat sigma: sigma, the product and the sums are each off by a few
/// roundings, which the factor covers. Entry i of s is state `first + i` of
/// lip and the nominal point.
template <class T, class Lip>
void global_source(std::span<T> s, const Lip &lip, const NominalPoint<T> &nom, double gA,
                   double gB) {
  const bool has_rounding = nom.residual_rounding.size() == nom.residual.size();
  const T fb = T(1) + static_cast<T>(std::max(gB, gA));
  for (std::size_t i = 0; i < s.size(); ++i)
    s[i] = fb * (lip[i] * s[i] + std::abs(nom.residual[i]) +
                 (has_rounding ? nom.residual_rounding[i] : T(0)));
}

/// The states' interval x0 -/+ (w + gA (w + |x0|)) (the widening covers the
/// rounding of x0 -/+ w), clamped to each activation's range.
template <class T>
void global_interval(std::span<const T> w, const NominalPoint<T> &nom, double gA,
                     std::span<const StateAct> acts, StateBounds<T> &out) {
  const std::size_t n = w.size();
  out.x_lower.resize(n);
  out.x_upper.resize(n);
  const T g = static_cast<T>(gA);
  for (std::size_t i = 0; i < n; ++i) {
    const T wi = w[i] + g * (w[i] + std::abs(nom.x[i]));
    T lo = nom.x[i] - wi, hi = nom.x[i] + wi;
    acts[i].clamp_range(lo, hi);
    out.x_lower[i] = lo;
    out.x_upper[i] = std::max(lo, hi);
  }
}

} // namespace tacit::inline v1::detail
