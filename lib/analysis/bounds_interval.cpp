// The interval bound: the interval fixed point of the equilibrium (handles
// cycles) and interval lower bounds of linear functions of the states.

#include "analysis/detail/bound_analyzer.hpp"

namespace tacit::inline v1 {

template <class T>
StateBounds<T> BoundAnalyzer<T>::interval_bounds(const NominalPoint<T> &nom,
                                                 const InputBox<T> &box) const {
  const auto &I = *impl_;
  StateBounds<T> s = global_bounds(nom, box);
  if (s.status == BoundStatus::unbounded)
    return s;
  std::vector<T> bc, br;
  I.input_centre(box, bc, br);
  const int budget = I.budget();
  int it = 0;
  bool converged = false;
  for (; it < budget; ++it) {
    const double change = I.interval_step(s, bc, br);
    if (change == 0 || (!I.nilpotent && change <= I.options.tolerance)) {
      converged = true;
      break;
    }
  }
  s.iterations = it + 1;
  if (!converged && !I.nilpotent && s.status == BoundStatus::ok)
    s.status = BoundStatus::ok; // every iterate is sound; a budget stop only loosens
  return s;
}

template <class T>
std::vector<T> BoundAnalyzer<T>::interval_lower(const StateBounds<T> &bounds,
                                                const InputBox<T> &box,
                                                ConstMatrixView<T> G) const {
  const auto &I = *impl_;
  const index_t n = I.n(), p = I.p(), k = G.cols;
  std::vector<T> W, Du;
  std::vector<double> acc;
  I.output_rows(G, W, Du, acc);
  std::vector<double> mag(k);
  for (index_t j = 0; j < k; ++j)
    mag[j] = std::abs(acc[j]);
  for (index_t i = 0; i < n; ++i) {
    const double xm = std::max(std::abs(double(bounds.x_lower[i])),
                               std::abs(double(bounds.x_upper[i])));
    for (index_t j = 0; j < k; ++j) {
      acc[j] += detail::min_product(W[i * k + j], bounds.x_lower[i], bounds.x_upper[i]);
      mag[j] += std::abs(double(W[i * k + j])) * xm;
    }
  }
  for (index_t i = 0; i < p; ++i) {
    const double um =
        std::max(std::abs(double(box.lower[i])), std::abs(double(box.upper[i])));
    for (index_t j = 0; j < k; ++j) {
      acc[j] += detail::min_product(Du[i * k + j], box.lower[i], box.upper[i]);
      mag[j] += std::abs(double(Du[i * k + j])) * um;
    }
  }
  const auto extra = I.output_rounding(bounds, box, G);
  for (index_t j = 0; j < k; ++j)
    acc[j] -= 2 * I.gamma_sum * mag[j] + extra[j];
  std::vector<T> out(k);
  for (index_t j = 0; j < k; ++j)
    out[j] = round_down<T>(acc[j]);
  return out;
}


#define TACIT_INSTANTIATE(T) \
  template StateBounds<T> BoundAnalyzer<T>::interval_bounds(const NominalPoint<T> &,     \
                                                            const InputBox<T> &) const;  \
  template std::vector<T> BoundAnalyzer<T>::interval_lower(                              \
      const StateBounds<T> &, const InputBox<T> &, ConstMatrixView<T>) const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
