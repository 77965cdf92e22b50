// The global bound: states within |x - x0| <= (I - L|A|)^-1 (L|B| sigma + r).

#include "analysis/detail/bound_analyzer.hpp"

namespace tacit::inline v1 {

template <class T>
StateBounds<T> BoundAnalyzer<T>::global_bounds(const NominalPoint<T> &nom,
                                               const InputBox<T> &box) const {
  const auto &I = *impl_;
  const index_t n = I.n(), p = I.p();
  if (static_cast<index_t>(box.lower.size()) != p ||
      static_cast<index_t>(box.upper.size()) != p)
    throw InvalidArgument("bounds: the input box has " +
                          std::to_string(box.lower.size()) +
                          " entries, the model has p = " + std::to_string(p));
  StateBounds<T> out;
  const T inf = std::numeric_limits<T>::infinity();
  if (!I.certified) {
    out.status = BoundStatus::unbounded;
    out.x_lower.assign(n, -inf);
    out.x_upper.assign(n, inf);
    out.z_lower.assign(n, -inf);
    out.z_upper.assign(n, inf);
    return out;
  }
  std::vector<T> sigma(p);
  for (index_t j = 0; j < p; ++j)
    sigma[j] = std::max({nom.u[j] - box.lower[j], box.upper[j] - nom.u[j], T(0)});
  std::vector<T> s(n);
  I.model.B().apply(Mode::abs, T(1), std::span<const T>(sigma), T(0), std::span<T>(s));
  const bool has_rounding = nom.residual_rounding.size() == static_cast<std::size_t>(n);
  for (index_t i = 0; i < n; ++i)
    s[i] = I.lip[i] * s[i] + std::abs(nom.residual[i]) +
           (has_rounding ? nom.residual_rounding[i] : T(0));
  // Rounding of the |B| sigma product, and of each step L |A| w + s (a
  // supersolution of the widened map is one of the exact map).
  const T g = static_cast<T>(I.gamma);
  for (index_t i = 0; i < n; ++i)
    s[i] += g * s[i];
  std::vector<T> w = s, next(n);
  const int budget = I.budget();
  bool exact = false;
  int it = 0;
  for (; it < budget; ++it) {
    I.lip_abs_step(w, s, next);
    double diff = 0, scale = 0, cmax = 0;
    for (index_t i = 0; i < n; ++i) {
      const double d = double(next[i]) - double(w[i]);
      diff = std::max(diff, std::abs(d));
      scale = std::max(scale, std::abs(double(next[i])));
      cmax = std::max(cmax, d / ((1.0 - I.rho) * double(I.cert_v[i])));
    }
    if (diff == 0) {
      exact = true;
      break;
    }
    if (!I.nilpotent && diff <= I.options.tolerance * scale) {
      // w + c v is a supersolution: L(|A|(w + c v)) + s <= w + c v.
      for (index_t i = 0; i < n; ++i)
        w[i] += static_cast<T>(cmax) * I.cert_v[i];
      exact = true;
      break;
    }
    w.swap(next);
  }
  if (!exact) {
    // Budget spent: make w a supersolution from the last step.
    I.lip_abs_step(w, s, next);
    double cmax = 0;
    for (index_t i = 0; i < n; ++i)
      cmax = std::max(cmax, (double(next[i]) - double(w[i])) /
                                ((1.0 - I.rho) * double(I.cert_v[i])));
    for (index_t i = 0; i < n; ++i)
      w[i] += static_cast<T>(cmax) * I.cert_v[i];
    out.status = BoundStatus::inexact;
  }
  out.iterations = it + 1;
  out.x_lower.resize(n);
  out.x_upper.resize(n);
  for (index_t i = 0; i < n; ++i) {
    const T wi = w[i] + g * (w[i] + std::abs(nom.x[i]));
    T lo = nom.x[i] - wi, hi = nom.x[i] + wi;
    I.acts[i].clamp_range(lo, hi);
    out.x_lower[i] = lo;
    out.x_upper[i] = std::max(lo, hi);
  }
  std::vector<T> bc, br;
  I.input_centre(box, bc, br);
  I.preactivation(out.x_lower, out.x_upper, bc, br, out.z_lower, out.z_upper);
  return out;
}


#define TACIT_INSTANTIATE(T) \
  template StateBounds<T> BoundAnalyzer<T>::global_bounds(const NominalPoint<T> &,       \
                                                          const InputBox<T> &) const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
