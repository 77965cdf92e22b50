// The global and interval bounds on a CSR model distributed by states: the
// steps of lib/analysis/bounds*.cpp (BoundAnalyzer) on each rank's own
// states, the products with A and |A| by DistributedProduct (the
// single-process row sums), the maxima, minima and conjunctions over all
// states by MPI_Allreduce (exact), so that the own slices are the
// single-process bits.

#include <tacit/mpi/bounds.hpp>
#include <tacit/mpi/product.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "analysis/detail/activation_bounds.hpp"
#include "analysis/detail/rounding.hpp"
#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
} // namespace

struct DistributedBoundAnalyzer::Impl {
  const DistributedModel &model;
  BoundOptions options;
  std::unique_ptr<DistributedProduct> product;
  index_t own = 0;
  std::vector<tacit::detail::StateAct> acts; // own states
  std::vector<double> lip;            // own states
  double gA = 0, gB = 0;
  bool nilpotent = false;
  index_t level_count = 0;
  std::vector<double> cert_v; // own states
  double rho = 1;
  bool certified = false;

  Impl(const DistributedModel &m, BoundOptions o) : model(m), options(o) {}

  int budget() const {
    return nilpotent ? static_cast<int>(level_count) + 2 : std::max(1, options.max_iterations);
  }
  double max_all(double v) const {
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, model.comm);
    return v;
  }
  void max_all(double *v, int count) const {
    MPI_Allreduce(MPI_IN_PLACE, v, count, MPI_DOUBLE, MPI_MAX, model.comm);
  }
  bool all(bool b) const {
    int v = b ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, model.comm);
    return v != 0;
  }

  // out = (1 + gA) (lip .* fl(|A| w)) + s (BoundAnalyzer::Impl::global_step).
  void global_step(std::span<const double> w, std::span<const double> s,
                   std::span<double> out) const {
    product->apply(Mode::abs, w, out);
    const double f = 1 + gA;
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = f * (lip[i] * out[i]) + s[i];
  }

  void input_centre(const InputBox<double> &box, std::vector<double> &zc,
                    std::vector<double> &zr) const {
    const index_t np = model.p;
    std::vector<double> uc(np), ur(np);
    for (index_t j = 0; j < np; ++j) {
      uc[j] = (box.lower[j] + box.upper[j]) / 2;
      ur[j] = (box.upper[j] - box.lower[j]) / 2;
    }
    zc.assign(own, 0.0);
    zr.assign(own, 0.0);
    const auto &B = model.B.local;
    B.apply(Mode::normal, 1.0, std::span<const double>(uc), 0.0, std::span<double>(zc));
    const double g = gB;
    for (index_t j = 0; j < np; ++j)
      ur[j] += g * (std::abs(uc[j]) + ur[j]);
    B.apply(Mode::abs, 1.0, std::span<const double>(ur), 0.0, std::span<double>(zr));
    for (index_t i = 0; i < own; ++i) {
      zc[i] += model.bias_x[i];
      zr[i] += g * (std::abs(zc[i]) + zr[i]);
    }
  }

  void preactivation(const std::vector<double> &xl, const std::vector<double> &xh,
                     const std::vector<double> &bc, const std::vector<double> &br,
                     std::vector<double> &zl, std::vector<double> &zh) const {
    std::vector<double> m(own), rr(own), zc(own), zr(own);
    const double g = gA;
    for (index_t i = 0; i < own; ++i) {
      m[i] = xl[i] / 2 + xh[i] / 2;
      const double r = xh[i] / 2 - xl[i] / 2;
      rr[i] = r + g * (std::abs(m[i]) + r);
    }
    product->apply(Mode::normal, m, zc);
    product->apply(Mode::abs, rr, zr);
    zl.resize(own);
    zh.resize(own);
    for (index_t i = 0; i < own; ++i) {
      const double c = zc[i] + bc[i];
      const double rad = zr[i] + br[i] + g * (std::abs(c) + zr[i] + br[i]);
      zl[i] = c - rad;
      zh[i] = c + rad;
    }
  }

  // BoundAnalyzer::Impl::tighten on own state i (global index in errors).
  double tighten(StateBounds<double> &s, index_t i, double zl, double zh) const {
    zl = std::max(zl, s.z_lower[i]);
    zh = std::min(zh, s.z_upper[i]);
    const double lo = std::max(s.x_lower[i], acts[i].apply_lower(zl));
    const double hi = std::min(s.x_upper[i], acts[i].apply_upper(zh));
    if (zh < zl || hi < lo)
      throw Error("bounds: the enclosures of state " +
                  std::to_string(model.own_begin() + i) + " do not intersect (pre-activation [" +
                  std::to_string(zl) + ", " + std::to_string(zh) + "], state [" +
                  std::to_string(lo) + ", " + std::to_string(hi) +
                  "]): the nominal point is not an equilibrium within its recorded "
                  "residual, or a rounding allowance is too small");
    const double width = s.x_upper[i] - s.x_lower[i];
    const double shrink = (lo - s.x_lower[i]) + (s.x_upper[i] - hi);
    s.x_lower[i] = lo;
    s.x_upper[i] = hi;
    s.z_lower[i] = zl;
    s.z_upper[i] = zh;
    return shrink > 0 ? (width > 0 ? shrink / width : 1.0) : 0.0;
  }

  // One interval step; the largest relative shrink over all states.
  double interval_step(StateBounds<double> &s, const std::vector<double> &bc,
                       const std::vector<double> &br) const {
    std::vector<double> zl, zh;
    preactivation(s.x_lower, s.x_upper, bc, br, zl, zh);
    if (s.z_lower.empty()) {
      s.z_lower.assign(own, -inf);
      s.z_upper.assign(own, inf);
    }
    double change = 0;
    std::exception_ptr error;
    try {
      for (index_t i = 0; i < own; ++i)
        change = std::max(change, tighten(s, i, zl[i], zh[i]));
    } catch (const std::exception &) {
      error = std::current_exception();
    }
    collective_check(model.comm, error);
    return max_all(change);
  }
};

DistributedBoundAnalyzer::DistributedBoundAnalyzer(const DistributedModel &model,
                                                   BoundOptions options)
    : impl_(std::make_unique<Impl>(model, options)) {
  Impl &I = *impl_;
  const MPI_Comm comm = model.comm;
  I.own = model.own_end() - model.own_begin();
  const index_t own = I.own, n = model.n;
  detail::collective(comm, [&] {
    I.acts.resize(own);
    I.lip.resize(own);
    for (index_t i = 0; i < own; ++i) {
      const Activation &a = model.activations[i];
      if (a.kind == ActivationKind::leaky_relu && a.slope < 0)
        throw Unsupported("bounds: the leaky ReLU of state " +
                          std::to_string(model.own_begin() + i) + " has a negative slope " +
                          std::to_string(a.slope) + " and is not monotone");
      I.acts[i] = tacit::detail::StateAct::from(a);
      I.lip[i] = a.lipschitz();
    }
  });
  I.product = std::make_unique<DistributedProduct>(model);
  DistributedProduct &P = *I.product;
  const auto &L = P.local_matrix();
  const index_t g = P.ghosts_below(), m = own + P.ghosts();
  // Most terms of a row or a column of A (detail::csr_terms over all ranks):
  // the column counts of the own rows, the ghosts' added to their owners.
  {
    double most = 1;
    const auto rp = L.row_ptr();
    for (index_t i = 0; i < own; ++i)
      most = std::max(most, static_cast<double>(rp[i + 1] - rp[i]));
    std::vector<double> count(static_cast<std::size_t>(m), 0.0);
    L.visit_columns([&](auto cols) {
      for (const auto c : cols)
        count[static_cast<std::size_t>(c)] += 1;
    });
    std::vector<double> own_count(count.begin() + g, count.begin() + g + own);
    P.add_to_owners(count, own_count);
    for (const double c : own_count)
      most = std::max(most, c);
    I.gA = tacit::detail::product_gamma<double>(static_cast<index_t>(I.max_all(most)));
  }
  {
    // B: its own rows, and its p column counts summed over the ranks.
    const auto &B = model.B.local;
    std::int64_t most = 1;
    const auto rp = B.row_ptr();
    for (index_t i = 0; i < B.rows(); ++i)
      most = std::max<std::int64_t>(most, rp[i + 1] - rp[i]);
    std::vector<std::int64_t> count(static_cast<std::size_t>(model.p), 0);
    B.visit_columns([&](auto cols) {
      for (const auto c : cols)
        ++count[static_cast<std::size_t>(c)];
    });
    MPI_Allreduce(MPI_IN_PLACE, count.data(), static_cast<int>(count.size()), MPI_INT64_T,
                  MPI_SUM, comm);
    for (const auto c : count)
      most = std::max(most, c);
    MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_INT64_T, MPI_MAX, comm);
    I.gB = tacit::detail::product_gamma<double>(static_cast<index_t>(most));
  }
  // Levels: level_i = 1 + the highest level its row reads (0 for an empty
  // row), iterated from 0 to its fixed point (depth + 1 iterations); a level
  // of n or more, or no fixed point within the budget, means a cycle.
  {
    std::vector<double> level(static_cast<std::size_t>(m), 0.0), next(own);
    const auto rp = L.row_ptr();
    const int cap = std::max(1, options.max_iterations);
    bool settled = false;
    double highest = 0;
    for (int t = 0; t <= cap; ++t) {
      P.exchange(level);
      bool changed = false;
      highest = 0;
      L.visit_columns([&](auto cols) {
        for (index_t i = 0; i < own; ++i) {
          double l = 0;
          for (auto e = rp[i]; e < rp[i + 1]; ++e)
            l = std::max(l, level[static_cast<std::size_t>(cols[e])] + 1);
          next[i] = l;
          changed = changed || l != level[g + i];
          highest = std::max(highest, l);
        }
      });
      std::copy(next.begin(), next.end(), level.begin() + g);
      double red[2] = {changed ? 1.0 : 0.0, highest};
      I.max_all(red, 2);
      highest = red[1];
      if (red[0] == 0) {
        settled = true;
        break;
      }
      if (highest >= static_cast<double>(n))
        break;
    }
    I.nilpotent = settled;
    I.level_count = settled && n > 0 ? static_cast<index_t>(highest) + 1 : 0;
  }
  if (I.nilpotent) {
    I.rho = 0;
    I.certified = true;
    return;
  }
  // Certificate vector (BoundAnalyzer's constructor).
  std::vector<double> ones(own, 1.0), v(own, 1.0), next(own);
  const int budget = I.budget();
  for (int it = 0; it < budget; ++it) {
    I.global_step(v, ones, next);
    double red[2] = {0, 0}; // diff, scale
    for (index_t i = 0; i < own; ++i) {
      red[0] = std::max(red[0], std::abs(next[i] - v[i]));
      red[1] = std::max(red[1], std::abs(next[i]));
    }
    I.max_all(red, 2);
    v.swap(next);
    if (!(red[0] > options.tolerance * red[1]))
      break;
  }
  P.apply(Mode::abs, v, next);
  double rho = 0;
  bool finite = true;
  const double up = 1 + 4 * std::numeric_limits<double>::epsilon();
  for (index_t i = 0; i < own; ++i) {
    if (!std::isfinite(v[i]) || !(v[i] > 0) || !std::isfinite(next[i])) {
      finite = false;
      break;
    }
    rho = std::max(rho, (1 + I.gA) * I.lip[i] * next[i] / v[i] * up);
  }
  finite = I.all(finite);
  rho = I.max_all(rho);
  I.rho = finite ? rho : 1.0;
  I.certified = finite && rho < 1.0;
  I.cert_v = std::move(v);
}

DistributedBoundAnalyzer::~DistributedBoundAnalyzer() = default;

bool DistributedBoundAnalyzer::certified_well_posed() const noexcept {
  return impl_->certified;
}
double DistributedBoundAnalyzer::rate() const noexcept { return impl_->rho; }
bool DistributedBoundAnalyzer::feed_forward() const noexcept { return impl_->nilpotent; }
index_t DistributedBoundAnalyzer::levels() const noexcept { return impl_->level_count; }

NominalPoint<double> DistributedBoundAnalyzer::nominal(std::span<const double> u0,
                                                       std::span<const double> x0) const {
  const Impl &I = *impl_;
  const DistributedModel &M = I.model;
  const index_t own = I.own;
  if (static_cast<index_t>(u0.size()) != M.p || static_cast<index_t>(x0.size()) != own)
    throw InvalidArgument("nominal: u0 has " + std::to_string(u0.size()) +
                          " entries (p = " + std::to_string(M.p) + "), x0 " +
                          std::to_string(x0.size()) + " (this rank owns " +
                          std::to_string(own) + " states)");
  NominalPoint<double> nom;
  nom.u.assign(u0.begin(), u0.end());
  nom.x.assign(x0.begin(), x0.end());
  // z = B u0 + A x0 (the kernel's y = acc + y: the same rounding as adding
  // A x0 to B u0 afterwards).
  std::vector<double> z(own), t(own);
  M.B.local.apply(Mode::normal, 1.0, u0, 0.0, std::span<double>(z));
  I.product->apply(Mode::normal, x0, t);
  for (index_t i = 0; i < own; ++i)
    z[i] = t[i] + z[i];
  nom.residual.resize(own);
  for (index_t i = 0; i < own; ++i)
    nom.residual[i] = x0[i] - I.acts[i].apply(z[i] + M.bias_x[i]);
  std::vector<double> ax(own), au(u0.size()), mag(own);
  for (index_t i = 0; i < own; ++i)
    ax[i] = std::abs(x0[i]);
  for (std::size_t j = 0; j < u0.size(); ++j)
    au[j] = std::abs(u0[j]);
  M.B.local.apply(Mode::abs, 1.0, std::span<const double>(au), 0.0, std::span<double>(mag));
  I.product->apply(Mode::abs, ax, t);
  for (index_t i = 0; i < own; ++i)
    mag[i] = t[i] + mag[i];
  const double g = std::max(I.gA, I.gB);
  nom.residual_rounding.resize(own);
  for (index_t i = 0; i < own; ++i)
    nom.residual_rounding[i] =
        g * (I.lip[i] * (mag[i] + std::abs(M.bias_x[i])) + std::abs(x0[i]) +
             std::abs(nom.residual[i]));
  return nom;
}

StateBounds<double> DistributedBoundAnalyzer::global_bounds(const NominalPoint<double> &nom,
                                                            const InputBox<double> &box) const {
  const Impl &I = *impl_;
  const DistributedModel &M = I.model;
  const index_t own = I.own, p = M.p;
  detail::collective(M.comm, [&] {
    if (static_cast<index_t>(box.lower.size()) != p ||
        static_cast<index_t>(box.upper.size()) != p)
      throw InvalidArgument("bounds: the input box has " + std::to_string(box.lower.size()) +
                            " entries, the model has p = " + std::to_string(p));
    for (index_t j = 0; j < p; ++j)
      if (!(box.lower[j] <= box.upper[j]))
        throw InvalidArgument("bounds: the input box is empty or NaN at input " +
                              std::to_string(j) + ": [" + std::to_string(box.lower[j]) +
                              ", " + std::to_string(box.upper[j]) + "]");
    if (static_cast<index_t>(nom.u.size()) != p || static_cast<index_t>(nom.x.size()) != own ||
        nom.residual.size() != static_cast<std::size_t>(own))
      throw InvalidArgument("bounds: the nominal point has " + std::to_string(nom.u.size()) +
                            " inputs and " + std::to_string(nom.x.size()) +
                            " states, the model p = " + std::to_string(p) +
                            " and this rank " + std::to_string(own) + " states");
  });
  StateBounds<double> out;
  const auto unbounded = [&] {
    out.status = BoundStatus::unbounded;
    out.x_lower.assign(own, -inf);
    out.x_upper.assign(own, inf);
    out.z_lower.assign(own, -inf);
    out.z_upper.assign(own, inf);
    return out;
  };
  if (!I.certified)
    return unbounded();
  std::vector<double> sigma(p);
  for (index_t j = 0; j < p; ++j)
    sigma[j] = std::max({nom.u[j] - box.lower[j], box.upper[j] - nom.u[j], 0.0});
  std::vector<double> s(own);
  M.B.local.apply(Mode::abs, 1.0, std::span<const double>(sigma), 0.0, std::span<double>(s));
  const bool has_rounding = nom.residual_rounding.size() == static_cast<std::size_t>(own);
  const double fb = 1 + std::max(I.gB, I.gA);
  for (index_t i = 0; i < own; ++i)
    s[i] = fb * (I.lip[i] * s[i] + std::abs(nom.residual[i]) +
                 (has_rounding ? nom.residual_rounding[i] : 0.0));
  std::vector<double> w = s, next(own);
  int it = 0;
  if (I.nilpotent) {
    const int budget = I.budget();
    bool exact = false;
    for (; it < budget && !exact; ++it) {
      I.global_step(w, s, next);
      exact = I.all(std::equal(w.begin(), w.end(), next.begin()));
      w.swap(next);
    }
    if (!exact)
      return unbounded();
  } else {
    const int budget = I.budget();
    bool converged = false;
    for (; it < budget; ++it) {
      I.global_step(w, s, next);
      double red[2] = {0, 0};
      for (index_t i = 0; i < own; ++i) {
        red[0] = std::max(red[0], std::abs(next[i] - w[i]));
        red[1] = std::max(red[1], std::abs(next[i]));
      }
      I.max_all(red, 2);
      w.swap(next);
      if (!(red[0] > I.options.tolerance * red[1])) {
        converged = true;
        break;
      }
    }
    if (!converged)
      out.status = BoundStatus::inexact;
    I.global_step(w, s, next);
    double c = 0;
    for (index_t i = 0; i < own; ++i)
      c = std::max(c, (next[i] - w[i]) / ((1.0 - I.rho) * I.cert_v[i]));
    c = I.max_all(c);
    if (!(c > 0)) {
      double wmax = 0;
      for (index_t i = 0; i < own; ++i)
        wmax = std::max(wmax, w[i] / I.cert_v[i]);
      wmax = I.max_all(wmax);
      c = std::max(wmax, 1.0) * std::numeric_limits<double>::epsilon();
    }
    std::vector<double> cand(own);
    bool verified = false;
    for (int attempt = 0; attempt < 64 && !verified && std::isfinite(c); ++attempt) {
      for (index_t i = 0; i < own; ++i)
        cand[i] = w[i] + c * I.cert_v[i];
      I.global_step(cand, s, next);
      bool ok = true;
      for (index_t i = 0; i < own && ok; ++i)
        ok = next[i] <= cand[i];
      verified = I.all(ok);
      c *= 2;
    }
    if (!verified)
      return unbounded();
    w.swap(cand);
  }
  bool finite = true;
  for (index_t i = 0; i < own; ++i)
    finite = finite && std::isfinite(w[i]);
  if (!I.all(finite))
    return unbounded();
  out.iterations = it + 1;
  out.x_lower.resize(own);
  out.x_upper.resize(own);
  const double g = I.gA;
  for (index_t i = 0; i < own; ++i) {
    const double wi = w[i] + g * (w[i] + std::abs(nom.x[i]));
    double lo = nom.x[i] - wi, hi = nom.x[i] + wi;
    I.acts[i].clamp_range(lo, hi);
    out.x_lower[i] = lo;
    out.x_upper[i] = std::max(lo, hi);
  }
  std::vector<double> bc, br;
  I.input_centre(box, bc, br);
  I.preactivation(out.x_lower, out.x_upper, bc, br, out.z_lower, out.z_upper);
  return out;
}

StateBounds<double>
DistributedBoundAnalyzer::interval_bounds(const NominalPoint<double> &nom,
                                          const InputBox<double> &box) const {
  const Impl &I = *impl_;
  StateBounds<double> s = global_bounds(nom, box);
  if (s.status == BoundStatus::unbounded)
    return s;
  std::vector<double> bc, br;
  I.input_centre(box, bc, br);
  const int steps = I.budget();
  int it = 0;
  for (; it < steps; ++it) {
    const double change = I.interval_step(s, bc, br);
    if (change == 0 || (!I.nilpotent && change <= I.options.tolerance))
      break;
  }
  s.iterations = std::min(it + 1, steps);
  return s;
}

} // namespace tacit::inline v1::mpi
