// The global bound: states within |x - x0| <= w, w the least solution of
// w = L|A| w + s, s = L|B| sigma + |r0| (r0 the nominal residual).

#include "analysis/detail/bound_analyzer.hpp"
#include "analysis/detail/global_bound.hpp"

namespace tacit::inline v1 {


// Soundness under rounding. The exact w* is the least fixed point of
// F(w) = L|A| w + s; for a nilpotent A it is reached in depth + 1 steps, and
// with cycles (lambda_PF(L|A|) < 1 certified) F^k(w) decreases to w* from
// any supersolution w >= F(w). Every step here is Impl::global_step, which
// is >= F(w) for every w whatever the rounding (its factor 1 + gA covers the
// product's a-priori error), and s is computed upward. So:
// - feed-forward: the computed iteration reaches a vector w with
//   w = global_step(w) >= F(w) (it stabilises after depth + 1 steps, as the
//   computed step of a level reads earlier levels only): a supersolution,
//   hence w >= w*, however the error grows with depth;
// - with cycles: the iterate at the tolerance is raised along the
//   certificate vector v (L|A| v <= rho v) to w + c v and accepted only when
//   global_step(w + c v) <= w + c v is checked as computed (c doubled until
//   it is): again a supersolution, so the 1 / (1 - rho) growth of the error
//   needs no a-priori estimate.
template <class T>
StateBounds<T> BoundAnalyzer<T>::global_bounds_in_arena(const NominalPoint<T> &nom,
                                               const InputBox<T> &box) const {
  const auto &I = *impl_;
  const index_t n = I.n(), p = I.p();
  detail::check_box(box, p);
  detail::check_nominal(nom, p, n, "n = " + std::to_string(n));
  StateBounds<T> out;
  const auto unbounded = [&] { return detail::make_unbounded(out, n); };
  if (!I.certified)
    return unbounded();
  const std::vector<T> sigma = detail::box_radii(nom, box);
  std::vector<T> s(n);
  Impl::abs_apply(I.model.B(), false, std::span<const T>(sigma), T(0), std::span<T>(s));
  detail::global_source(std::span<T>(s), I.lip, nom, I.gA, I.gB);
  std::vector<T> w = s, next(n);
  int it = 0;
  if (I.sweep) {
    // One forward sweep: block b from the final blocks before it.
    const BlockStructure<T> &A = *I.sweep;
    const auto entries = A.entries();
    const T f = T(1) + static_cast<T>(I.gA);
    std::vector<T> acc;
    for (index_t blk = 0; blk < A.row_blocks(); ++blk) {
      const index_t r0 = A.row_offset(blk), r1 = A.row_offset(blk + 1);
      const auto row = A.entries_in_row(blk);
      if (row.empty())
        continue;
      acc.assign(static_cast<std::size_t>(r1 - r0), T(0));
      for (const index_t e : row) {
        const BlockEntry<T> &en = entries[static_cast<std::size_t>(e)];
        const index_t c0 = A.col_offset(en.block_col);
        const auto cn = static_cast<std::size_t>(A.col_block_size(en.block_col));
        Impl::abs_apply(*en.op, false, std::span<const T>(w.data() + c0, cn), T(1),
                        std::span<T>(acc));
      }
      for (index_t i = r0; i < r1; ++i)
        w[i] = f * (I.lip[i] * acc[i - r0]) + s[i];
    }
    it = 0;
  } else if (I.nilpotent) {
    const int budget = I.budget();
    bool exact = false;
    for (; it < budget && !exact; ++it) {
      I.global_step(w, s, next);
      exact = std::equal(w.begin(), w.end(), next.begin());
      w.swap(next);
    }
    if (!exact) // only when the values are not finite
      return unbounded();
  } else {
    const int budget = I.budget();
    bool converged = false;
    for (; it < budget; ++it) {
      I.global_step(w, s, next);
      double diff = 0, scale = 0;
      for (index_t i = 0; i < n; ++i) {
        diff = std::max(diff, std::abs(double(next[i]) - double(w[i])));
        scale = std::max(scale, std::abs(double(next[i])));
      }
      w.swap(next);
      if (!(diff > I.options.tolerance * scale)) {
        converged = true;
        break;
      }
    }
    if (!converged)
      out.status = BoundStatus::inexact;
    // Raise w along v until it is a computed supersolution.
    I.global_step(w, s, next);
    double c = 0;
    for (index_t i = 0; i < n; ++i)
      c = std::max(c, (double(next[i]) - double(w[i])) /
                          ((1.0 - I.rho) * double(I.cert_v[i])));
    if (!(c > 0)) {
      double wmax = 0;
      for (index_t i = 0; i < n; ++i)
        wmax = std::max(wmax, double(w[i]) / double(I.cert_v[i]));
      c = std::max(wmax, 1.0) * std::numeric_limits<T>::epsilon();
    }
    std::vector<T> cand(n);
    bool verified = false;
    for (int attempt = 0; attempt < 64 && !verified && std::isfinite(c); ++attempt) {
      for (index_t i = 0; i < n; ++i)
        cand[i] = w[i] + static_cast<T>(c) * I.cert_v[i];
      I.global_step(cand, s, next);
      verified = true;
      for (index_t i = 0; i < n && verified; ++i)
        verified = next[i] <= cand[i];
      c *= 2;
    }
    if (!verified)
      return unbounded();
    w.swap(cand);
  }
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) // overflow on a very deep model
      return unbounded();
  out.iterations = it + 1;
  detail::global_interval(std::span<const T>(w), nom, I.gA, I.acts, out);
  std::vector<T> bc, br;
  I.input_centre(box, bc, br);
  I.preactivation(out.x_lower, out.x_upper, bc, br, out.z_lower, out.z_upper);
  return out;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template StateBounds<T> BoundAnalyzer<T>::global_bounds_in_arena(const NominalPoint<T> &,       \
                                                          const InputBox<T> &) const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
