// The interval bound: the interval fixed point of the equilibrium (handles
// cycles) and interval lower bounds of linear functions of the states.

#include "analysis/detail/bound_analyzer.hpp"

namespace tacit::inline v1 {

template <class T>
StateBounds<T> BoundAnalyzer<T>::Impl::interval_from(StateBounds<T> s,
                                                     const InputBox<T> &box) const {
  std::vector<T> bc, br;
  input_centre(box, bc, br);
  if (sweep) {
    // Feed-forward through blocks: one forward sweep, needing no contraction
    // (a global bound that overflowed on a deep model is not needed).
    if (s.status == BoundStatus::unbounded) {
      const T inf = std::numeric_limits<T>::infinity();
      s.x_lower.assign(n(), -inf);
      s.x_upper.assign(n(), inf);
      s.z_lower.assign(n(), -inf);
      s.z_upper.assign(n(), inf);
      s.status = BoundStatus::ok;
    }
    interval_sweep(s, bc, br);
    s.iterations = 1;
    return s;
  }
  if (s.status == BoundStatus::unbounded)
    return s;
  const int steps = budget();
  int it = 0;
  for (; it < steps; ++it) {
    const double change = interval_step(s, bc, br);
    if (change == 0 || (!nilpotent && change <= options.tolerance))
      break;
  }
  // Every iterate is sound: a budget stop only loosens.
  s.iterations = std::min(it + 1, steps);
  return s;
}

template <class T>
StateBounds<T> BoundAnalyzer<T>::interval_bounds_in_arena(const NominalPoint<T> &nom,
                                                          const InputBox<T> &box) const {
  return impl_->interval_from(global_bounds(nom, box), box);
}

template <class T>
std::vector<T> BoundAnalyzer<T>::interval_lower_in_arena(const StateBounds<T> &bounds,
                                                         const InputBox<T> &box,
                                                         ConstMatrixView<T> G) const {
  const auto &I = *impl_;
  const index_t k = G.cols;
  std::vector<T> W, Du;
  std::vector<double> acc;
  I.output_rows(G, W, Du, acc);
  std::vector<double> mag(k);
  for (index_t j = 0; j < k; ++j)
    mag[j] = std::abs(acc[j]);
  I.add_interval_terms(bounds.x_lower, bounds.x_upper, box, W, Du, k, acc, mag);
  const auto extra = I.output_rounding(bounds, box, G);
  for (index_t j = 0; j < k; ++j)
    acc[j] -= 2 * I.gamma_sum * mag[j] + extra[j];
  std::vector<T> out(k);
  for (index_t j = 0; j < k; ++j)
    out[j] = round_down<T>(acc[j]);
  return out;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template StateBounds<T> BoundAnalyzer<T>::Impl::interval_from(                         \
      StateBounds<T>, const InputBox<T> &) const;                                        \
  template StateBounds<T> BoundAnalyzer<T>::interval_bounds_in_arena(                    \
      const NominalPoint<T> &, const InputBox<T> &) const;                               \
  template std::vector<T> BoundAnalyzer<T>::interval_lower_in_arena(                     \
      const StateBounds<T> &, const InputBox<T> &, ConstMatrixView<T>) const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
