#pragma once
// The search of certified_radius (lib/analysis/certify.cpp) over a predicate
// "certified at radius e", shared by the single-process certification and
// the one on a model distributed by states (lib/mpi/certify.cpp), so that
// both try the same radii in the same order.

#include <algorithm>
#include <cmath>

namespace tacit::inline v1::detail {

/// The largest radius in (0, cap] found with ok(radius) true: geometric
/// growth from 1/256 (or halving down to cap 2^-floor_log2), then bisection_steps
/// bisections. With from_region > 0 (a radius already certified in closed
/// form) the search starts there and returns it when twice that radius
/// fails (no bisection: each step would be a full bound that the closed
/// form already beats). 0 when nothing is certified.
template <class Ok>
double radius_search(double cap, int bisection_steps, double from_region, Ok &&ok,
                     int floor_log2 = 30) {
  double lo = 0, hi = 0;
  double e = std::min(cap, 1.0 / 256);
  if (from_region > 0) {
    lo = std::min(cap, from_region);
    if (lo >= cap)
      return lo;
    const double next = std::min(cap, 2 * lo);
    if (!ok(next))
      return lo;
    e = next;
  }
  if (from_region > 0 || ok(e)) {
    lo = e;
    while (true) {
      const double next = std::min(cap, 2 * lo);
      if (next <= lo)
        return lo; // certified up to the cap
      if (!ok(next)) {
        hi = next;
        break;
      }
      lo = next;
      if (lo >= cap)
        return lo;
    }
  } else {
    hi = e;
    const double floor = cap * std::ldexp(1.0, -floor_log2);
    // Nothing certified at the smallest radius searched: stop there (one
    // bound instead of 22; the bounds only loosen as the box grows).
    if (!ok(floor))
      return 0.0;
    while (true) {
      e = hi / 2;
      if (e < floor)
        return 0.0;
      if (ok(e)) {
        lo = e;
        break;
      }
      hi = e;
    }
  }
  for (int s = 0; s < bisection_steps; ++s) {
    const double mid = lo / 2 + hi / 2;
    if (ok(mid))
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

} // namespace tacit::inline v1::detail
