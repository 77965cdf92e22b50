// The interval bound as offsets from the exact nominal point
// (BoundAnalyzer::interval_margins_around): d_x = x(u) - x*(u0) through a
// feed-forward network, block by block, with x*(u0) known to ~106 bits
// (PreciseNominal).
//
// Why offsets: the box bound (interval_bounds) carries the rounding of
// every centre A m + B u + b, about u |A| |x| per level, and the box itself
// rounded to T (at least one unit in the last place of u0): both grow by
// |A| per level, about 50x per residual block of ResNet20, and end above
// the margins even for a point box. Here the centres are offsets, which
// vanish with eps, so every rounding is relative to the offsets, and the
// nominal values enter only through the signs of z* (their error bounds
// are part of the activation rule below).

#include "analysis/detail/bound_analyzer.hpp"

namespace tacit::inline v1 {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
double down(double v) {
  return std::nextafter(v, -kInf);
}
double up(double v) {
  return std::nextafter(v, kInf);
}

/// phi(c + t) - phi(c) for phi(z) = z (z >= 0), a z (z < 0), rounded
/// down (up = false) or up, by the formula of the signs of c and c + t
/// (exact in floating point: a sum of doubles is 0 only when exactly 0),
/// so that a t far below the unit roundoff of c is not lost.
double activation_difference(double a, double c, double t, bool round_up) {
  const auto r = [&](double v) { return round_up ? up(v) : down(v); };
  const bool c_pos = c >= 0, sum_pos = c + t >= 0;
  if (c_pos && sum_pos)
    return t;
  if (!c_pos && !sum_pos)
    return a == 0 ? 0.0 : r(a * t);
  if (c_pos) // a (c + t) - c = a t + (a - 1) c
    return r(r(a * t) + r((a - 1) * c));
  return r(t + r((1 - a) * c)); // c + t - a c
}

/// Bounds of phi(z* + t) - phi(z*) over z* in [zl, zh] and t in [tl, th],
/// for ReLU (slope a = 0), leaky ReLU (slope a >= 0, possibly > 1) and the
/// identity (a = 1), rounded outward. phi is monotone, so the difference
/// grows with t: its least value is at tl, its largest at th; as a function
/// of z* it is piecewise linear with kinks at 0 and -t, so its extremes over
/// [zl, zh] are at the ends or at those kinks. With z* exact these are
/// the interval bound's [phi(z* + tl), phi(z* + th)] less phi(z*).
std::pair<double, double> activation_offset(double a, double zl, double zh, double tl,
                                            double th) {
  if (a == 1)
    return {tl, th};
  double lo = kInf, hi = -kInf;
  const auto candidates = [&](double t, auto &&use) {
    use(zl);
    use(zh);
    if (zl < 0 && 0 < zh)
      use(0.0);
    if (zl < -t && -t < zh)
      use(-t);
  };
  candidates(
      tl, [&](double c) { lo = std::min(lo, activation_difference(a, c, tl, false)); });
  candidates(th,
             [&](double c) { hi = std::max(hi, activation_difference(a, c, th, true)); });
  return {lo, hi};
}

} // namespace

template <class T>
MarginBounds<T> BoundAnalyzer<T>::interval_margins_around_in_arena(
    const NominalPoint<T> &nom, const PreciseNominal &pn, double eps, int label,
    double domain_lo, double domain_hi) const {
  const auto &I = *impl_;
  const Model<T> &model = I.model;
  const index_t n = I.n(), p = I.p(), q = I.q();
  std::string why;
  if (!linear_region_supported(&why))
    throw Unsupported("interval_margins_around: " + why);
  if (!(eps >= 0) || !std::isfinite(eps))
    throw InvalidArgument("interval_margins_around: eps must be finite and >= 0, got " +
                          std::to_string(eps));
  if (label < 0 || label >= q)
    throw InvalidArgument("interval_margins_around: label " + std::to_string(label) +
                          " is not in [0, " + std::to_string(q) + ")");
  const auto un = static_cast<std::size_t>(n);
  if (static_cast<index_t>(nom.u.size()) != p || pn.z_hi.size() != un ||
      pn.z_lo.size() != un || pn.z_error.size() != un ||
      pn.y.size() != static_cast<std::size_t>(q) ||
      pn.y_error.size() != static_cast<std::size_t>(q))
    throw InvalidArgument(
        "interval_margins_around: the nominal point has " + std::to_string(nom.u.size()) +
        " inputs and its precise states " + std::to_string(pn.z_hi.size()) +
        " states and " + std::to_string(pn.y.size()) + " outputs; the model has p = " +
        std::to_string(p) + ", n = " + std::to_string(n) + ", q = " + std::to_string(q));

  // Input offsets: [-eps, eps], clipped to the domain (never past u0: the
  // box keeps its centre, as linf_box does), rounded outward to T.
  const bool clip = domain_lo <= domain_hi;
  InputBox<T> du;
  du.lower.resize(static_cast<std::size_t>(p));
  du.upper.resize(static_cast<std::size_t>(p));
  for (index_t j = 0; j < p; ++j) {
    double lo = -eps, hi = eps;
    if (clip) {
      const double u0 = double(nom.u[j]);
      lo = std::max(lo, std::min(down(domain_lo - u0), 0.0));
      hi = std::min(hi, std::max(up(domain_hi - u0), 0.0));
    }
    du.lower[j] = round_down<T>(lo);
    du.upper[j] = round_up<T>(hi);
  }
  // B d_u as centre and radius (as input_centre, without the bias: offsets).
  std::vector<T> bc(un, T(0)), br(un, T(0));
  {
    std::vector<T> uc(static_cast<std::size_t>(p)), ur(static_cast<std::size_t>(p));
    const T g = static_cast<T>(I.gB);
    for (index_t j = 0; j < p; ++j) {
      uc[j] = du.lower[j] / 2 + du.upper[j] / 2;
      ur[j] = du.upper[j] / 2 - du.lower[j] / 2;
      ur[j] += g * (std::abs(uc[j]) + ur[j]);
    }
    model.B().apply(Mode::normal, T(1), std::span<const T>(uc), T(0), std::span<T>(bc));
    Impl::abs_apply(model.B(), false, std::span<const T>(ur), T(0), std::span<T>(br));
    for (index_t i = 0; i < n; ++i)
      br[i] += g * (std::abs(bc[i]) + br[i]);
  }

  // The sweep: d_z of a block from the final d_x of the blocks it reads.
  const BlockStructure<T> &A = *I.sweep;
  const auto acts = model.activations();
  StateBounds<T> d;
  d.x_lower.assign(un, T(0));
  d.x_upper.assign(un, T(0));
  std::vector<T> m(un, T(0)), rr(un, T(0)), zc, zr, zl(un), zh(un);
  for (index_t blk = 0; blk < A.row_blocks(); ++blk) {
    const index_t r0 = A.row_offset(blk), r1 = A.row_offset(blk + 1);
    I.block_products(blk, m, rr, zc, zr);
    I.close_preactivation(zc, zr, r0, bc, br, r0, r1, zl, zh);
    for (index_t i = r0; i < r1; ++i) {
      const Activation &a = acts[static_cast<std::size_t>(i)];
      const double slope =
          a.kind == ActivationKind::relu
              ? 0.0
              : (a.kind == ActivationKind::leaky_relu ? double(a.slope) : 1.0);
      // z* within [zlo, zhi]: hi + lo rounded each way, then the error.
      const double centre = pn.z_hi[i] + pn.z_lo[i];
      const double zlo = down(down(centre) - pn.z_error[i]);
      const double zhi = up(up(centre) + pn.z_error[i]);
      const auto [lo, hi] =
          activation_offset(slope, zlo, zhi, double(zl[i]), double(zh[i]));
      d.x_lower[i] = round_down<T>(lo);
      d.x_upper[i] = round_up<T>(hi);
    }
    I.state_centre(d.x_lower, d.x_upper, r0, r1, m, rr);
  }

  // Margins and outputs: g^T y(u) = g^T y* + g^T (C d_x + D d_u), the first
  // from the precise outputs with their errors, the second by interval
  // arithmetic on the offsets (interval_lower without the bias).
  const index_t k = 3 * q;
  const std::vector<T> G = I.margin_columns(label);
  const ConstMatrixView<T> Gv{G.data(), q, k, k};
  std::vector<T> W, Du;
  std::vector<double> unused;
  I.output_rows(Gv, W, Du, unused);
  std::vector<double> acc(static_cast<std::size_t>(k), 0.0),
      mag(static_cast<std::size_t>(k), 0.0);
  for (index_t r = 0; r < q; ++r)
    for (index_t j = 0; j < k; ++j) {
      const double g = double(Gv(r, j));
      acc[j] += g * pn.y[r] - std::abs(g) * pn.y_error[r];
      mag[j] += std::abs(g) * (std::abs(pn.y[r]) + pn.y_error[r]);
    }
  I.add_interval_terms(d.x_lower, d.x_upper, du, W, Du, k, acc, mag);
  // The sums have n + p + q terms (gamma_sum) and q more for the errors.
  const double g_sum =
      I.gamma_sum + double(2 * q + 8) * std::numeric_limits<double>::epsilon();
  const auto extra = I.output_rounding(d, du, Gv);
  std::vector<T> lb(static_cast<std::size_t>(k));
  for (index_t j = 0; j < k; ++j)
    lb[j] = round_down<T>(acc[j] - 2 * g_sum * mag[j] - extra[j]);
  return I.margin_bounds(lb, label, BoundStatus::ok);
}

#define TACIT_INSTANTIATE(T)                                                             \
  template MarginBounds<T> BoundAnalyzer<T>::interval_margins_around_in_arena(           \
      const NominalPoint<T> &, const PreciseNominal &, double, int, double, double)      \
      const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
