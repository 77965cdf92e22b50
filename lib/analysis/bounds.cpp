// Componentwise bounds of implicit models over input boxes: the global
// bound from (I - L|A|)^-1, the interval fixed point and the linear
// (CROWN-style) bound by back-substitution through the equilibrium.

#include <tacit/analysis/bounds.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/operators/structured.hpp>

#include "analysis/detail/activation_bounds.hpp"

namespace tacit::inline v1 {

std::string to_string(BoundMethod m) {
  switch (m) {
  case BoundMethod::global:
    return "global";
  case BoundMethod::interval:
    return "interval";
  case BoundMethod::linear:
    return "linear";
  case BoundMethod::best:
    return "best";
  }
  return "best";
}

BoundMethod parse_bound_method(std::string_view s) {
  if (s == "global")
    return BoundMethod::global;
  if (s == "interval")
    return BoundMethod::interval;
  if (s == "linear")
    return BoundMethod::linear;
  if (s == "best")
    return BoundMethod::best;
  throw InvalidArgument("unknown bound '" + std::string(s) +
                        "' (expected global, interval, linear or best)");
}

std::string to_string(BoundStatus s) {
  switch (s) {
  case BoundStatus::ok:
    return "ok";
  case BoundStatus::inexact:
    return "inexact";
  case BoundStatus::unbounded:
    return "unbounded";
  }
  return "ok";
}

template <class T>
InputBox<T> linf_box(std::span<const T> u0, T eps, T domain_lo, T domain_hi) {
  if (!(eps >= T(0)))
    throw InvalidArgument("linf_box: eps must be >= 0, got " + std::to_string(eps));
  InputBox<T> box;
  box.lower.resize(u0.size());
  box.upper.resize(u0.size());
  const bool clip = domain_lo <= domain_hi;
  for (std::size_t i = 0; i < u0.size(); ++i) {
    T lo = u0[i] - eps, hi = u0[i] + eps;
    if (clip) {
      lo = std::max(lo, std::min(domain_lo, u0[i]));
      hi = std::min(hi, std::max(domain_hi, u0[i]));
    }
    box.lower[i] = lo;
    box.upper[i] = hi;
  }
  return box;
}

template <class T>
InputBox<T> box_around(std::span<const T> u0, std::span<const T> sigma) {
  if (sigma.size() != u0.size())
    throw InvalidArgument("box_around: sigma has " + std::to_string(sigma.size()) +
                          " entries, u0 " + std::to_string(u0.size()));
  InputBox<T> box;
  box.lower.resize(u0.size());
  box.upper.resize(u0.size());
  for (std::size_t i = 0; i < u0.size(); ++i) {
    if (!(sigma[i] >= T(0)))
      throw InvalidArgument("box_around: sigma[" + std::to_string(i) + "] must be >= 0");
    box.lower[i] = u0[i] - sigma[i];
    box.upper[i] = u0[i] + sigma[i];
  }
  return box;
}

template <class T> bool MarginBounds<T>::certified() const noexcept {
  for (std::size_t k = 0; k < margin_lower.size(); ++k)
    if (static_cast<int>(k) != label && !(margin_lower[k] > T(0)))
      return false;
  return status != BoundStatus::unbounded && !margin_lower.empty();
}

template <class T> int NominalPoint<T>::predicted() const noexcept {
  int best = 0;
  for (std::size_t k = 1; k < y.size(); ++k)
    if (y[k] > y[best])
      best = static_cast<int>(k);
  return best;
}

using detail::ActKind;
using detail::Relaxation;

namespace {
// The largest T not above v (a lower bound stays a lower bound in T).
template <class T> T round_down(double v) {
  T t = static_cast<T>(v);
  if (double(t) > v)
    t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  return t;
}

// Back-substitution through a strictly block lower triangular A, block
// column b from the last to the first: add(op, o0, r0, r1) adds an entry's
// transposed product, read from its (already final) block row starting at
// o0, into rows [r0, r1) of block b; close(r0, r1) then finalises block b.
template <class T, class Add, class Close>
void reverse_block_sweep(const BlockOperator<T> &A, Add &&add, Close &&close) {
  const auto entries = A.entries();
  for (index_t b = A.row_blocks() - 1; b >= 0; --b) {
    const index_t r0 = A.row_offset(b), r1 = A.row_offset(b + 1);
    for (const index_t e : A.entries_in_col(b)) {
      const BlockEntry<T> &entry = entries[static_cast<std::size_t>(e)];
      add(*entry.op, A.row_offset(entry.block_row), r0, r1);
    }
    close(r0, r1);
  }
}

// max(|lo|, |hi|) per entry.
template <class T>
std::vector<T> magnitudes(const std::vector<T> &lo, const std::vector<T> &hi) {
  std::vector<T> m(lo.size());
  for (std::size_t i = 0; i < lo.size(); ++i)
    m[i] = std::max(std::abs(lo[i]), std::abs(hi[i]));
  return m;
}
} // namespace

template <class T> struct BoundAnalyzer<T>::Impl {
  Model<T> model;
  BoundOptions options;
  std::vector<detail::StateAct> acts;
  std::vector<T> lip;
  std::vector<std::vector<index_t>> level_states;
  bool nilpotent = false;
  /// A when it is strictly block lower triangular: the linear bound's
  /// back-substitution is then one reverse sweep over its blocks.
  const BlockOperator<T> *sweep = nullptr;
  /// States whose row of A is empty: z_i = B_i u + b_i is linear in u, so its
  /// interval over the box is already exact and refining it gains nothing.
  std::vector<char> input_only;
  std::vector<T> cert_v;
  double rho = 1;
  bool certified = false;
  /// Relative rounding allowance of one product |M| |v| (gamma_m), and of a
  /// final bound's sum of n + p + q terms in double on top of it.
  double gamma = 0, gamma_sum = 0;

  Impl(const Model<T> &m, BoundOptions o) : model(m), options(o) {}

  index_t n() const { return model.states(); }
  index_t p() const { return model.inputs(); }
  index_t q() const { return model.outputs(); }

  int budget() const {
    return nilpotent ? static_cast<int>(level_states.size()) + 2
                     : std::max(1, options.max_iterations);
  }

  // y = L (|A| w) + s
  void lip_abs_step(std::span<const T> w, std::span<const T> s, std::span<T> out) const {
    model.A().apply(Mode::abs, T(1), w, T(0), out);
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = lip[i] * out[i] + s[i];
  }

  void input_centre(const InputBox<T> &box, std::vector<T> &zc,
                    std::vector<T> &zr) const {
    const index_t np = p();
    std::vector<T> uc(np), ur(np);
    for (index_t j = 0; j < np; ++j) {
      uc[j] = (box.lower[j] + box.upper[j]) / 2;
      ur[j] = (box.upper[j] - box.lower[j]) / 2;
    }
    zc.assign(n(), T(0));
    zr.assign(n(), T(0));
    model.B().apply(Mode::normal, T(1), std::span<const T>(uc), T(0), std::span<T>(zc));
    // Rounding of B uc and |B| ur: gamma |B| (|uc| + ur), through the radius.
    // (The centre and radius of the box are themselves rounded: the box
    // [uc - ur, uc + ur] may miss its ends by u |uc|, also covered.)
    const T g = static_cast<T>(gamma);
    for (index_t j = 0; j < np; ++j)
      ur[j] += g * (std::abs(uc[j]) + ur[j]);
    model.B().apply(Mode::abs, T(1), std::span<const T>(ur), T(0), std::span<T>(zr));
    const auto b = model.bias_x();
    for (index_t i = 0; i < n(); ++i) {
      zc[i] += b[i];
      zr[i] += g * (std::abs(zc[i]) + zr[i]);
    }
  }

  // The rows of g^T y = g^T (C x + D u + c) for the columns g of G (q x k):
  // W = C^T G (n x k), Du = D^T G (p x k), cst = G^T c.
  void output_rows(ConstMatrixView<T> G, std::vector<T> &W, std::vector<T> &Du,
                   std::vector<double> &cst) const {
    const index_t k = G.cols;
    W.resize(static_cast<std::size_t>(n() * k));
    Du.assign(static_cast<std::size_t>(p() * k), T(0));
    model.C().apply(Mode::transpose, T(1), G, T(0), MatrixView<T>{W.data(), n(), k, k});
    if (model.D())
      model.D()->apply(Mode::transpose, T(1), G, T(0),
                       MatrixView<T>{Du.data(), p(), k, k});
    cst.assign(static_cast<std::size_t>(k), 0.0);
    const auto c = model.bias_y();
    for (index_t r = 0; r < q(); ++r)
      for (index_t j = 0; j < k; ++j)
        cst[j] += double(G(r, j)) * double(c[r]);
  }

  // Rounding of W = C^T G and Du = D^T G against the state and input
  // magnitudes: gamma sum_r |G_rj| (|C| xmag + |D| umag)_r, doubled as an
  // allowance (the products' own cancellation is not in |W|).
  std::vector<double> output_rounding(const StateBounds<T> &bounds,
                                      const InputBox<T> &box,
                                      ConstMatrixView<T> G) const {
    const std::vector<T> xmag = magnitudes(bounds.x_lower, bounds.x_upper);
    std::vector<T> reach(q(), T(0));
    model.C().apply(Mode::abs, T(1), std::span<const T>(xmag), T(0), std::span<T>(reach));
    if (model.D()) {
      const std::vector<T> umag = magnitudes(box.lower, box.upper);
      model.D()->apply(Mode::abs, T(1), std::span<const T>(umag), T(1),
                       std::span<T>(reach));
    }
    std::vector<double> out(G.cols, 0.0);
    for (index_t r = 0; r < q(); ++r)
      for (index_t j = 0; j < G.cols; ++j)
        out[j] += std::abs(double(G(r, j))) * double(reach[r]);
    for (auto &v : out)
      v *= 2 * gamma;
    return out;
  }

  // Pre-activation interval from state bounds: z = A x + (B u + b).
  void preactivation(const std::vector<T> &xl, const std::vector<T> &xh,
                     const std::vector<T> &bc, const std::vector<T> &br,
                     std::vector<T> &zl, std::vector<T> &zh) const {
    const index_t nn = n();
    std::vector<T> m(nn), r(nn);
    const T g = static_cast<T>(gamma);
    for (index_t i = 0; i < nn; ++i) {
      m[i] = xl[i] / 2 + xh[i] / 2;
      r[i] = xh[i] / 2 - xl[i] / 2;
    }
    std::vector<T> zc(nn), zr(nn);
    model.A().apply(Mode::normal, T(1), std::span<const T>(m), T(0), std::span<T>(zc));
    // Rounding of A m and |A| r (and of m, r themselves): gamma |A| (|m| + r).
    for (index_t i = 0; i < nn; ++i)
      r[i] += g * (std::abs(m[i]) + r[i]);
    model.A().apply(Mode::abs, T(1), std::span<const T>(r), T(0), std::span<T>(zr));
    zl.resize(nn);
    zh.resize(nn);
    for (index_t i = 0; i < nn; ++i) {
      const T c = zc[i] + bc[i];
      const T rad = zr[i] + br[i] + g * (std::abs(c) + zr[i] + br[i]);
      zl[i] = c - rad;
      zh[i] = c + rad;
    }
  }

  // One interval step; returns the largest relative shrink.
  double interval_step(StateBounds<T> &s, const std::vector<T> &bc,
                       const std::vector<T> &br) const {
    std::vector<T> zl, zh;
    preactivation(s.x_lower, s.x_upper, bc, br, zl, zh);
    double change = 0;
    for (index_t i = 0; i < n(); ++i) {
      if (!s.z_lower.empty()) {
        zl[i] = std::max(zl[i], s.z_lower[i]);
        zh[i] = std::min(zh[i], s.z_upper[i]);
      }
      const T lo = std::max(s.x_lower[i], acts[i].apply_lower(zl[i]));
      const T hi = std::min(s.x_upper[i], acts[i].apply_upper(zh[i]));
      const double width = double(s.x_upper[i]) - double(s.x_lower[i]);
      const double shrink = double(lo - s.x_lower[i]) + double(s.x_upper[i] - hi);
      if (shrink > 0)
        change = std::max(change, width > 0 ? shrink / width : 1.0);
      s.x_lower[i] = lo;
      s.x_upper[i] = std::max(lo, hi);
    }
    s.z_lower = std::move(zl);
    s.z_upper = std::move(zh);
    return change;
  }
};

template <class T>
BoundAnalyzer<T>::BoundAnalyzer(const Model<T> &model, BoundOptions options)
    : impl_(std::make_unique<Impl>(model, options)) {
  auto &I = *impl_;
  const index_t n = model.states();
  const auto acts = model.activations();
  I.acts.resize(n);
  I.lip.resize(n);
  for (index_t i = 0; i < n; ++i) {
    const Activation &a = acts[i];
    if (a.kind == ActivationKind::leaky_relu && a.slope < 0)
      throw Unsupported("bounds: the leaky ReLU of state " + std::to_string(i) +
                        " has a negative slope " + std::to_string(a.slope) +
                        " and is not monotone");
    I.acts[i] = detail::StateAct::from(a);
    I.lip[i] = static_cast<T>(a.lipschitz());
  }
  // Levels of the SCC DAG.
  std::optional<CsrMatrix<T>> storage;
  const CsrMatrix<T> *csr = dynamic_cast<const CsrMatrix<T> *>(&model.A());
  if (!csr) {
    storage.emplace(model.A().to_csr());
    csr = &*storage;
  }
  {
    // Most nonzeros in a row or a column of A, B, C, D: every product's
    // a-priori rounding bound is gamma_m |M| |v|.
    index_t most = 1;
    const auto scan = [&](const CsrMatrix<T> &M) {
      std::vector<index_t> col_count(static_cast<std::size_t>(M.cols()), 0);
      const auto rp = M.row_ptr();
      for (index_t i = 0; i < M.rows(); ++i)
        most = std::max<index_t>(most, rp[i + 1] - rp[i]);
      M.visit_columns([&](auto cols) {
        for (const auto c : cols)
          most = std::max<index_t>(most, ++col_count[static_cast<std::size_t>(c)]);
      });
    };
    const auto scan_op = [&](const LinearOperator<T> &op) {
      if (const auto *m = dynamic_cast<const CsrMatrix<T> *>(&op))
        scan(*m);
      else
        scan(op.to_csr());
    };
    scan(*csr);
    scan_op(model.B());
    scan_op(model.C());
    if (model.D())
      scan_op(*model.D());
    const double unit = std::numeric_limits<T>::epsilon() / 2;
    I.gamma = 2.0 * double(most + 8) * unit;
    I.gamma_sum = I.gamma + 2.0 * double(n + model.inputs() + model.outputs() + 8) *
                                std::numeric_limits<double>::epsilon() / 2;
  }
  const SccDecomposition scc = strongly_connected_components(*csr);
  I.nilpotent = scc.nilpotent();
  I.input_only.resize(n);
  for (index_t i = 0; i < n; ++i)
    I.input_only[i] = csr->row_ptr()[i + 1] == csr->row_ptr()[i];
  if (const auto *block = dynamic_cast<const BlockOperator<T> *>(&model.A());
      block && block->square_partition() && block->strictly_block_lower_triangular())
    I.sweep = block;
  I.level_states.resize(scc.level_count());
  for (index_t l = 0; l < scc.level_count(); ++l)
    for (index_t k = scc.level_ptr[l]; k < scc.level_ptr[l + 1]; ++k)
      for (index_t t = scc.block_ptr[k]; t < scc.block_ptr[k + 1]; ++t)
        I.level_states[l].push_back(scc.order[t]);
  for (auto &lv : I.level_states)
    std::sort(lv.begin(), lv.end());

  // Certificate vector: v ~ (I - L|A|)^-1 1, rho = max (L|A| v)_i / v_i.
  std::vector<T> ones(n, T(1)), v(n, T(1)), next(n);
  const int budget = I.budget();
  for (int it = 0; it < budget; ++it) {
    I.lip_abs_step(v, ones, next);
    double diff = 0, scale = 0;
    for (index_t i = 0; i < n; ++i) {
      diff = std::max(diff, std::abs(double(next[i]) - double(v[i])));
      scale = std::max(scale, std::abs(double(next[i])));
    }
    v.swap(next);
    if (diff == 0 || (!I.nilpotent && diff <= options.tolerance * scale))
      break;
  }
  model.A().apply(Mode::abs, T(1), std::span<const T>(v), T(0), std::span<T>(next));
  double rho = 0;
  bool finite = true;
  for (index_t i = 0; i < n; ++i) {
    if (!std::isfinite(double(v[i])) || !(v[i] > T(0))) {
      finite = false;
      break;
    }
    rho = std::max(rho, double(I.lip[i]) * double(next[i]) / double(v[i]));
  }
  I.rho = finite ? rho : 1.0;
  I.certified = finite && rho < 1.0;
  I.cert_v = std::move(v);
}

template <class T> BoundAnalyzer<T>::~BoundAnalyzer() = default;
template <class T> BoundAnalyzer<T>::BoundAnalyzer(BoundAnalyzer &&) noexcept = default;
template <class T>
BoundAnalyzer<T> &BoundAnalyzer<T>::operator=(BoundAnalyzer &&) noexcept = default;

template <class T> const Model<T> &BoundAnalyzer<T>::model() const noexcept {
  return impl_->model;
}
template <class T> const BoundOptions &BoundAnalyzer<T>::options() const noexcept {
  return impl_->options;
}
template <class T> bool BoundAnalyzer<T>::certified_well_posed() const noexcept {
  return impl_->certified;
}
template <class T> double BoundAnalyzer<T>::rate() const noexcept {
  return impl_->rho;
}
template <class T> index_t BoundAnalyzer<T>::levels() const noexcept {
  return static_cast<index_t>(impl_->level_states.size());
}
template <class T> bool BoundAnalyzer<T>::feed_forward() const noexcept {
  return impl_->nilpotent;
}

template <class T>
NominalPoint<T> BoundAnalyzer<T>::nominal(std::span<const T> u0,
                                          std::span<const T> x0) const {
  const auto &I = *impl_;
  const Model<T> &m = I.model;
  if (static_cast<index_t>(u0.size()) != m.inputs() ||
      static_cast<index_t>(x0.size()) != m.states())
    throw InvalidArgument("nominal: u0 has " + std::to_string(u0.size()) +
                          " entries (p = " + std::to_string(m.inputs()) + "), x0 " +
                          std::to_string(x0.size()) +
                          " (n = " + std::to_string(m.states()) + ")");
  NominalPoint<T> nom;
  nom.u.assign(u0.begin(), u0.end());
  nom.x.assign(x0.begin(), x0.end());
  std::vector<T> z(m.states());
  m.B().apply(Mode::normal, T(1), u0, T(0), std::span<T>(z));
  m.A().apply(Mode::normal, T(1), x0, T(1), std::span<T>(z));
  nom.residual.resize(m.states());
  const auto b = m.bias_x();
  for (index_t i = 0; i < m.states(); ++i)
    nom.residual[i] = x0[i] - I.acts[i].apply(z[i] + b[i]);
  // Rounding of the residual: z is off by gamma (|A||x0| + |B||u0|), phi is
  // Lipschitz, and the bias addition, phi and the subtraction add a few
  // units of roundoff.
  {
    std::vector<T> ax(x0.size()), au(u0.size());
    for (std::size_t i = 0; i < x0.size(); ++i)
      ax[i] = std::abs(x0[i]);
    for (std::size_t j = 0; j < u0.size(); ++j)
      au[j] = std::abs(u0[j]);
    std::vector<T> mag(m.states());
    m.B().apply(Mode::abs, T(1), std::span<const T>(au), T(0), std::span<T>(mag));
    m.A().apply(Mode::abs, T(1), std::span<const T>(ax), T(1), std::span<T>(mag));
    const double g = I.gamma;
    nom.residual_rounding.resize(m.states());
    for (index_t i = 0; i < m.states(); ++i)
      nom.residual_rounding[i] = static_cast<T>(
          g * (double(I.lip[i]) * (double(mag[i]) + std::abs(double(b[i]))) +
               std::abs(double(x0[i])) + std::abs(double(nom.residual[i]))));
  }
  nom.y.assign(m.outputs(), T(0));
  m.C().apply(Mode::normal, T(1), x0, T(0), std::span<T>(nom.y));
  if (m.D())
    m.D()->apply(Mode::normal, T(1), u0, T(1), std::span<T>(nom.y));
  const auto c = m.bias_y();
  for (index_t k = 0; k < m.outputs(); ++k)
    nom.y[k] += c[k];
  return nom;
}

template <class T>
NominalPoint<T> BoundAnalyzer<T>::nominal(std::span<const T> u0) const {
  const Model<T> &m = impl_->model;
  if (static_cast<index_t>(u0.size()) != m.inputs())
    throw InvalidArgument("nominal: u0 has " + std::to_string(u0.size()) +
                          " entries, the model has p = " + std::to_string(m.inputs()));
  Batch<T> U(m.inputs(), 1), X;
  U.set_column(0, u0);
  EquilibriumSolver<T> solver(m);
  solver.solve(U, X);
  std::vector<T> x(m.states());
  X.get_column(0, x);
  return nominal(u0, std::span<const T>(x));
}

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

namespace {

// Buffers of the linear bound, kept across the chunks of one analysis so
// that each chunk does not fault in fresh pages.
template <class T> struct LinearWork {
  std::vector<T> V, LV, next;
  std::vector<T> a; ///< B^T Lambda(V) + Du of the last bound (when asked for)
  /// Relative rounding allowance of a bound's magnitude (see bounds.hpp).
  double rounding = 0;
};

// Lower bounds of W^T x + Du^T u + cst (W: n x k in work.V, Du: p x k) by
// back-substitution with the relaxations of `bounds`: V = W + A^T Lambda(V).
// A strictly block lower triangular A (`sweep`) is swept once, block column
// by block column in reverse order, each Lambda(V_b) formed as soon as V_b is
// final; otherwise V is iterated to its fixed point (exactly, in levels + 1
// steps, when A is nilpotent).
template <class T>
std::vector<T> linear_kernel(const Model<T> &model, const BlockOperator<T> *sweep,
                             std::span<const detail::StateAct> acts, bool nilpotent,
                             int budget, double tolerance, const StateBounds<T> &bounds,
                             const InputBox<T> &box, LinearWork<T> &work,
                             std::vector<T> Du, std::vector<double> cst, index_t k,
                             int *iterations, const T *lower_slopes = nullptr,
                             bool *was_exact = nullptr) {
  const index_t n = model.states(), p = model.inputs();
  std::vector<Relaxation<T>> rel(n);
  for (index_t i = 0; i < n; ++i)
    rel[i] = acts[i].relax(bounds.z_lower[i], bounds.z_upper[i]);
  std::vector<T> &V = work.V, &LV = work.LV, &next = work.next;
  LV.resize(n * k);
  const auto lambda_rows = [&](const std::vector<T> &v, std::vector<T> &out, index_t r0,
                               index_t r1) {
    for (index_t i = r0; i < r1; ++i) {
      const Relaxation<T> &r = rel[i];
      const T *__restrict vi = v.data() + i * k;
      T *__restrict oi = out.data() + i * k;
      if (lower_slopes) {
        const T *__restrict li = lower_slopes + i * k;
        for (index_t j = 0; j < k; ++j)
          oi[j] = vi[j] >= T(0) ? vi[j] * li[j] : vi[j] * r.up_slope;
      } else {
        for (index_t j = 0; j < k; ++j)
          oi[j] = vi[j] >= T(0) ? vi[j] * r.lo_slope : vi[j] * r.up_slope;
      }
    }
  };
  const auto lambda = [&](const std::vector<T> &v, std::vector<T> &out) {
    lambda_rows(v, out, 0, n);
  };
  int it = 0;
  bool exact = false;
  if (sweep) {
    reverse_block_sweep(
        *sweep,
        [&](const LinearOperator<T> &op, index_t o0, index_t r0, index_t r1) {
          op.apply(Mode::transpose, T(1),
                   ConstMatrixView<T>{LV.data() + o0 * k, op.rows(), k, k}, T(1),
                   MatrixView<T>{V.data() + r0 * k, r1 - r0, k, k});
        },
        [&](index_t r0, index_t r1) { lambda_rows(V, LV, r0, r1); });
    exact = true;
  } else {
    const std::vector<T> W = V;
    next.resize(n * k);
    for (; it < budget; ++it) {
      lambda(V, LV);
      next = W;
      model.A().apply(Mode::transpose, T(1), ConstMatrixView<T>{LV.data(), n, k, k}, T(1),
                      MatrixView<T>{next.data(), n, k, k});
      double diff = 0, scale = 0;
      for (index_t t = 0; t < n * k; ++t) {
        diff = std::max(diff, std::abs(double(next[t]) - double(V[t])));
        scale = std::max(scale, std::abs(double(next[t])));
      }
      if (diff == 0) {
        exact = true;
        break;
      }
      if (!nilpotent && diff <= tolerance * scale)
        break;
      V.swap(next);
    }
    if (it == budget) { // V holds the last iterate; recompute Lambda(V) and its image
      lambda(V, LV);
      next = W;
      model.A().apply(Mode::transpose, T(1), ConstMatrixView<T>{LV.data(), n, k, k}, T(1),
                      MatrixView<T>{next.data(), n, k, k});
    }
  }
  if (iterations)
    *iterations = it + 1;
  // Residual e = next - V (zero when exact) is bounded on the state interval.
  // Rounding: the computed V has a residual of at most gamma (|W| +
  // |A|^T |LV|) against the computed LV, and B^T LV is off by gamma |B|^T
  // |LV|; with |W| <= |V| + |A|^T |LV| + ..., all of it is within the
  // magnitude sum below times the allowance (|A|^T |LV| against the state
  // magnitudes is |LV| against |A| xmag: one product for all columns).
  const auto b = model.bias_x();
  const std::vector<T> xmag = magnitudes(bounds.x_lower, bounds.x_upper);
  const std::vector<T> umag = magnitudes(box.lower, box.upper);
  std::vector<T> reach(n);
  model.A().apply(Mode::abs, T(1), std::span<const T>(xmag), T(0), std::span<T>(reach));
  model.B().apply(Mode::abs, T(1), std::span<const T>(umag), T(1), std::span<T>(reach));
  std::vector<double> acc = cst, mag(k);
  for (index_t j = 0; j < k; ++j)
    mag[j] = std::abs(cst[j]);
  for (index_t i = 0; i < n; ++i) {
    const Relaxation<T> &r = rel[i];
    const double bi = std::abs(double(b[i])), ri = double(reach[i]), xi = double(xmag[i]);
    for (index_t j = 0; j < k; ++j) {
      const T v = V[i * k + j];
      const double lv = double(LV[i * k + j]);
      if (lv != 0)
        acc[j] += lv * double(b[i]);
      const T icpt = v >= T(0) ? r.lo_icpt : r.up_icpt;
      if (v != T(0) && icpt != T(0))
        acc[j] += double(v) * double(icpt);
      double e_mag = 0;
      if (!exact) {
        const T e = next[i * k + j] - v;
        acc[j] += detail::min_product(e, bounds.x_lower[i], bounds.x_upper[i]);
        e_mag = std::abs(double(e));
      }
      mag[j] += std::abs(lv) * (bi + ri) +
                std::abs(double(v)) * (std::abs(double(icpt)) + xi) + e_mag * xi;
    }
  }
  // a = B^T Lambda(V) + Du
  model.B().apply(Mode::transpose, T(1), ConstMatrixView<T>{LV.data(), n, k, k}, T(1),
                  MatrixView<T>{Du.data(), p, k, k});
  for (index_t i = 0; i < p; ++i)
    for (index_t j = 0; j < k; ++j) {
      const T a = Du[i * k + j];
      acc[j] += detail::min_product(a, box.lower[i], box.upper[i]);
      mag[j] += std::abs(double(a)) * double(umag[i]);
    }
  if (was_exact) {
    *was_exact = exact;
    work.a.swap(Du);
  }
  std::vector<T> out(k);
  for (index_t j = 0; j < k; ++j)
    out[j] = round_down<T>(acc[j] - work.rounding * mag[j]);
  return out;
}

// Optimised lower lines (as in alpha-CROWN): the lower slope alpha_ij of
// every unstable convex ReLU-like state i (any slope in [a_i, 1] through the
// origin is a valid lower line) is a free parameter of the sound bound
// f_j(alpha) of column j. f_j is piecewise linear in alpha with gradient
// V_ij phi_ij (V_ij >= 0), phi the pre-activations of the relaxed network
// driven by the box vertex u* that attains the minimum: one forward pass.
// Projected Adam ascent from the adaptive slopes; the best bound of each
// column over the steps is kept (every step's bound is sound). Needs an
// exact back-substitution (feed-forward A): otherwise returns `best`.
template <class T>
std::vector<T> optimise_lower_slopes(const Model<T> &model, const BlockOperator<T> *sweep,
                                     std::span<const detail::StateAct> acts,
                                     bool nilpotent, int budget, double tolerance,
                                     const StateBounds<T> &bounds, const InputBox<T> &box,
                                     const std::vector<T> &W, const std::vector<T> &Du,
                                     const std::vector<double> &cst, index_t k, int steps,
                                     double rounding, std::vector<T> best) {
  const index_t n = model.states(), p = model.inputs();
  if (!nilpotent || steps <= 0 || k == 0)
    return best;
  std::vector<Relaxation<T>> rel(n);
  std::vector<T> slope_lo(n, T(0));
  std::vector<char> free(n, 0);
  bool any = false;
  for (index_t i = 0; i < n; ++i) {
    rel[i] = acts[i].relax(bounds.z_lower[i], bounds.z_upper[i]);
    const auto &a = acts[i];
    const bool relu_like = a.kind == detail::ActKind::relu ||
                           (a.kind == detail::ActKind::leaky && a.slope <= 1);
    if (relu_like && bounds.z_lower[i] < T(0) && bounds.z_upper[i] > T(0)) {
      free[i] = 1;
      slope_lo[i] = a.kind == detail::ActKind::relu ? T(0) : static_cast<T>(a.slope);
      any = true;
    }
  }
  if (!any)
    return best;
  std::vector<T> alpha(n * k), m1(n * k, T(0)), m2(n * k, T(0));
  for (index_t i = 0; i < n; ++i)
    std::fill(alpha.begin() + i * k, alpha.begin() + (i + 1) * k, rel[i].lo_slope);
  LinearWork<T> work;
  work.rounding = rounding;
  std::vector<T> base(n * k), psi(n * k), next(n * k), ustar(p * k);
  const auto b = model.bias_x();
  const double lr = 0.2, beta1 = 0.9, beta2 = 0.999;
  double pow1 = 1, pow2 = 1;
  for (int step = 0; step < steps; ++step) {
    work.V = W;
    bool exact = false;
    const auto f =
        linear_kernel<T>(model, sweep, acts, nilpotent, budget, tolerance, bounds, box,
                         work, Du, cst, k, nullptr, alpha.data(), &exact);
    if (!exact)
      return best;
    for (index_t j = 0; j < k; ++j)
      best[j] = std::max(best[j], f[j]);
    if (step + 1 == steps)
      break;
    // Forward pass of the relaxed network at u*: phi = b + B u* + A psi,
    // psi = icpt + lambda phi (exact after depth + 1 steps).
    for (index_t j = 0; j < p; ++j)
      for (index_t c = 0; c < k; ++c)
        ustar[j * k + c] = work.a[j * k + c] >= T(0) ? box.lower[j] : box.upper[j];
    model.B().apply(Mode::normal, T(1), ConstMatrixView<T>{ustar.data(), p, k, k}, T(0),
                    MatrixView<T>{base.data(), n, k, k});
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < k; ++c)
        base[i * k + c] += b[i];
    std::fill(psi.begin(), psi.end(), T(0));
    const std::vector<T> &V = work.V;
    for (int it = 0; it < budget; ++it) {
      next = base;
      model.A().apply(Mode::normal, T(1), ConstMatrixView<T>{psi.data(), n, k, k}, T(1),
                      MatrixView<T>{next.data(), n, k, k});
      bool same = true;
      for (index_t i = 0; i < n; ++i) {
        const Relaxation<T> &r = rel[i];
        for (index_t c = 0; c < k; ++c) {
          const index_t t = i * k + c;
          const T v = V[t] >= T(0) ? alpha[t] * next[t] + r.lo_icpt
                                   : r.up_slope * next[t] + r.up_icpt;
          same = same && v == psi[t];
          psi[t] = v;
        }
      }
      if (same)
        break;
    }
    // next = phi (the pre-activations of the last pass); Adam ascent.
    pow1 *= beta1;
    pow2 *= beta2;
    for (index_t i = 0; i < n; ++i) {
      if (!free[i])
        continue;
      for (index_t c = 0; c < k; ++c) {
        const index_t t = i * k + c;
        const double g = V[t] >= T(0) ? double(V[t]) * double(next[t]) : 0.0;
        m1[t] = static_cast<T>(beta1 * m1[t] + (1 - beta1) * g);
        m2[t] = static_cast<T>(beta2 * m2[t] + (1 - beta2) * g * g);
        const double mh = m1[t] / (1 - pow1), vh = m2[t] / (1 - pow2);
        const double a = double(alpha[t]) + lr * mh / (std::sqrt(vh) + 1e-12);
        alpha[t] = static_cast<T>(std::clamp(a, double(slope_lo[i]), 1.0));
      }
    }
  }
  return best;
}

} // namespace

template <class T>
std::vector<T>
BoundAnalyzer<T>::linear_lower(const StateBounds<T> &bounds, const InputBox<T> &box,
                               ConstMatrixView<T> G, int *dual_iterations) const {
  const auto &I = *impl_;
  const index_t k = G.cols;
  if (k == 0)
    return {};
  LinearWork<T> work;
  work.rounding = 2 * I.gamma_sum;
  std::vector<T> Du;
  std::vector<double> cst;
  I.output_rows(G, work.V, Du, cst);
  auto lin = linear_kernel<T>(I.model, I.sweep, I.acts, I.nilpotent, I.budget(),
                              I.options.tolerance, bounds, box, work, std::move(Du),
                              std::move(cst), k, dual_iterations);
  const auto extra = I.output_rounding(bounds, box, G);
  for (index_t j = 0; j < k; ++j)
    lin[j] = round_down<T>(double(lin[j]) - extra[j]);
  // Never looser than interval arithmetic on the same state bounds.
  const auto ib = interval_lower(bounds, box, G);
  for (index_t j = 0; j < k; ++j)
    lin[j] = std::max(lin[j], ib[j]);
  return lin;
}

template <class T>
StateBounds<T> BoundAnalyzer<T>::linear_state_bounds(const NominalPoint<T> &nom,
                                                     const InputBox<T> &box,
                                                     LinearBoundStats *stats) const {
  const auto &I = *impl_;
  StateBounds<T> s = interval_bounds(nom, box);
  LinearBoundStats st;
  const index_t n = I.n(), p = I.p();
  for (index_t i = 0; i < n; ++i)
    st.unstable_before += I.acts[i].needs_refinement(s.z_lower[i], s.z_upper[i]) ? 1 : 0;
  if (s.status == BoundStatus::unbounded || !I.options.refine) {
    st.unstable_after = st.unstable_before;
    if (stats)
      *stats = st;
    return s;
  }
  std::vector<T> bc, br;
  I.input_centre(box, bc, br);
  const auto b = I.model.bias_x();
  const index_t chunk = std::max<index_t>(1, I.options.refine_batch / 2);
  LinearWork<T> work;
  work.rounding = 2 * I.gamma_sum;
  std::vector<T> E;
  for (const auto &level : I.level_states) {
    std::vector<index_t> todo;
    for (index_t i : level)
      if (!I.input_only[i] && I.acts[i].needs_refinement(s.z_lower[i], s.z_upper[i]))
        todo.push_back(i);
    if (todo.empty())
      continue;
    for (std::size_t start = 0; start < todo.size(); start += chunk) {
      const index_t m = std::min<index_t>(chunk, todo.size() - start);
      const index_t k = 2 * m;
      E.assign(n * k, T(0));
      std::vector<double> cst(k);
      for (index_t t = 0; t < m; ++t) {
        const index_t i = todo[start + t];
        E[i * k + 2 * t] = T(1);
        E[i * k + 2 * t + 1] = T(-1);
        cst[2 * t] = double(b[i]);
        cst[2 * t + 1] = -double(b[i]);
      }
      std::vector<T> Du(p * k);
      work.V.resize(n * k);
      I.model.A().apply(Mode::transpose, T(1), ConstMatrixView<T>{E.data(), n, k, k},
                        T(0), MatrixView<T>{work.V.data(), n, k, k});
      I.model.B().apply(Mode::transpose, T(1), ConstMatrixView<T>{E.data(), n, k, k},
                        T(0), MatrixView<T>{Du.data(), p, k, k});
      int its = 0;
      const auto lb = linear_kernel<T>(I.model, I.sweep, I.acts, I.nilpotent, I.budget(),
                                       I.options.tolerance, s, box, work, std::move(Du),
                                       std::move(cst), k, &its);
      st.dual_iterations = std::max(st.dual_iterations, its);
      for (index_t t = 0; t < m; ++t) {
        const index_t i = todo[start + t];
        s.z_lower[i] = std::max(s.z_lower[i], lb[2 * t]);
        s.z_upper[i] = std::min(s.z_upper[i], -lb[2 * t + 1]);
        if (s.z_upper[i] < s.z_lower[i]) // rounding: keep a valid interval
          s.z_upper[i] = s.z_lower[i];
        s.x_lower[i] = std::max(s.x_lower[i], I.acts[i].apply_lower(s.z_lower[i]));
        s.x_upper[i] = std::max(
            s.x_lower[i], std::min(s.x_upper[i], I.acts[i].apply_upper(s.z_upper[i])));
        st.refined += 2;
      }
    }
    // Carry the tighter states forward by one interval step.
    I.interval_step(s, bc, br);
  }
  for (index_t i = 0; i < n; ++i)
    st.unstable_after += I.acts[i].needs_refinement(s.z_lower[i], s.z_upper[i]) ? 1 : 0;
  if (stats)
    *stats = st;
  return s;
}

template <class T>
MarginBounds<T>
BoundAnalyzer<T>::margins(const NominalPoint<T> &nom, const InputBox<T> &box, int label,
                          BoundMethod method, LinearBoundStats *stats) const {
  const auto &I = *impl_;
  const index_t q = I.q();
  if (label < 0 || label >= q)
    throw InvalidArgument("margins: label " + std::to_string(label) + " is not in [0, " +
                          std::to_string(q) + ")");
  // G = [e_label - e_k (k = 0..q-1), e_j, -e_j]
  const index_t k = 3 * q;
  std::vector<T> G(q * k, T(0));
  for (index_t j = 0; j < q; ++j) {
    G[label * k + j] += T(1);
    G[j * k + j] -= T(1);
    G[j * k + q + j] = T(1);
    G[j * k + 2 * q + j] = T(-1);
  }
  const ConstMatrixView<T> Gv{G.data(), q, k, k};
  MarginBounds<T> out;
  out.label = label;
  const auto fill = [&](const std::vector<T> &lb, BoundStatus status) {
    out.status = status;
    out.margin_lower.assign(lb.begin(), lb.begin() + q);
    out.margin_lower[label] = T(0);
    out.y_lower.assign(lb.begin() + q, lb.begin() + 2 * q);
    out.y_upper.resize(q);
    for (index_t j = 0; j < q; ++j)
      out.y_upper[j] = -lb[2 * q + j];
  };
  const bool cascade = method == BoundMethod::best;
  StateBounds<T> s = global_bounds(nom, box);
  fill(interval_lower(s, box, Gv), s.status);
  if (method == BoundMethod::global || s.status == BoundStatus::unbounded ||
      (cascade && out.certified()))
    return out;
  s = interval_bounds(nom, box);
  auto ib = interval_lower(s, box, Gv);
  fill(ib, s.status);
  if (method == BoundMethod::interval || (cascade && out.certified()))
    return out;
  LinearBoundStats st;
  s = linear_state_bounds(nom, box, &st);
  int its = 0;
  auto lb = linear_lower(s, box, Gv, &its);
  st.dual_iterations = std::max(st.dual_iterations, its);
  for (index_t j = 0; j < k; ++j)
    lb[j] = std::max(lb[j], ib[j]);
  // Margins not yet positive: optimise the lower lines for them.
  std::vector<index_t> open;
  for (index_t j = 0; j < q; ++j)
    if (j != label && !(lb[j] > T(0)))
      open.push_back(j);
  if (I.options.slope_steps > 0 && !open.empty() && s.status != BoundStatus::unbounded &&
      I.nilpotent) {
    const index_t m = static_cast<index_t>(open.size());
    std::vector<T> Gs(q * m, T(0)), W, Du;
    std::vector<double> cst;
    std::vector<T> start(m);
    for (index_t t = 0; t < m; ++t) {
      Gs[label * m + t] += T(1);
      Gs[open[t] * m + t] -= T(1);
      start[t] = lb[open[t]];
    }
    const ConstMatrixView<T> Gsv{Gs.data(), q, m, m};
    I.output_rows(Gsv, W, Du, cst);
    const auto opt = optimise_lower_slopes<T>(
        I.model, I.sweep, I.acts, I.nilpotent, I.budget(), I.options.tolerance, s, box, W,
        Du, cst, m, I.options.slope_steps, 2 * I.gamma_sum, start);
    const auto extra = I.output_rounding(s, box, Gsv);
    for (index_t t = 0; t < m; ++t)
      lb[open[t]] = std::max(lb[open[t]], round_down<T>(double(opt[t]) - extra[t]));
  }
  fill(lb, s.status);
  if (stats)
    *stats = st;
  return out;
}

template <class T>
LocalLipschitz BoundAnalyzer<T>::local_lipschitz(const StateBounds<T> &bounds) const {
  const auto &I = *impl_;
  const index_t n = I.n(), p = I.p(), q = I.q();
  if (static_cast<index_t>(bounds.z_lower.size()) != n ||
      static_cast<index_t>(bounds.z_upper.size()) != n)
    throw InvalidArgument("local_lipschitz: the state bounds have " +
                          std::to_string(bounds.z_lower.size()) + " entries, the model " +
                          std::to_string(n) + " states");
  LocalLipschitz out;
  const double inf = std::numeric_limits<double>::infinity();
  const auto refuse = [&] {
    out.status = BoundStatus::unbounded;
    out.magnitude.assign(static_cast<std::size_t>(q * p), inf);
    out.upper.assign(static_cast<std::size_t>(q), inf);
    return out;
  };
  if (bounds.status == BoundStatus::unbounded || !I.certified)
    return refuse();
  out.status = bounds.status;
  // Secant slopes s_i in [sm - sr, sm + sr], sm >= 0 (monotone activations).
  std::vector<T> sm(n), sr(n);
  for (index_t i = 0; i < n; ++i) {
    const auto [lo, hi] =
        I.acts[i].slope_range(double(bounds.z_lower[i]), double(bounds.z_upper[i]));
    sm[i] = static_cast<T>(0.5 * (lo + hi));
    sr[i] = static_cast<T>(0.5 * (hi - lo));
    if (sm[i] + sr[i] < static_cast<T>(hi)) // rounding of the centre: keep hi inside
      sr[i] = static_cast<T>(hi) - sm[i];
  }
  // h = C^T e_k + A^T (s .* h) for the q outputs at once (n x q, row-major),
  // in centre/radius form; G = s .* h encloses the products.
  const index_t k = q;
  std::vector<T> E(static_cast<std::size_t>(q * k), T(0));
  for (index_t j = 0; j < q; ++j)
    E[j * k + j] = T(1);
  const ConstMatrixView<T> Ev{E.data(), q, k, k};
  std::vector<T> W(static_cast<std::size_t>(n * k));
  I.model.C().apply(Mode::transpose, T(1), Ev, T(0), MatrixView<T>{W.data(), n, k, k});
  // Rounding: the radius carries gamma times the magnitudes of every
  // product that follows (C^T here, s .* h, A^T and B^T through Gr).
  const T g = static_cast<T>(I.gamma);
  std::vector<T> Hm = W, Hr(W.size()), Gm(W.size()), Gr(W.size());
  for (std::size_t t = 0; t < W.size(); ++t)
    Hr[t] = g * std::abs(W[t]);
  const auto enclose_rows = [&](const std::vector<T> &hm, const std::vector<T> &hr,
                                index_t r0, index_t r1) {
    for (index_t i = r0; i < r1; ++i) {
      const T m = sm[i], r = sr[i];
      for (index_t j = i * k; j < (i + 1) * k; ++j) {
        Gm[j] = m * hm[j];
        const T rad = m * hr[j] + r * (std::abs(hm[j]) + hr[j]);
        Gr[j] = rad + g * (std::abs(Gm[j]) + rad);
      }
    }
  };
  // F(H) = (W + A^T Gm(H), |A|^T Gr(H)).
  const auto image = [&](const std::vector<T> &hm, const std::vector<T> &hr,
                         std::vector<T> &fm, std::vector<T> &fr) {
    enclose_rows(hm, hr, 0, n);
    fm = W;
    I.model.A().apply(Mode::transpose, T(1), ConstMatrixView<T>{Gm.data(), n, k, k}, T(1),
                      MatrixView<T>{fm.data(), n, k, k});
    fr.resize(W.size());
    for (std::size_t t = 0; t < W.size(); ++t)
      fr[t] = g * std::abs(W[t]);
    I.model.A().apply(Mode::abs_transpose, T(1), ConstMatrixView<T>{Gr.data(), n, k, k},
                      T(1), MatrixView<T>{fr.data(), n, k, k});
  };
  if (I.sweep) {
    reverse_block_sweep(
        *I.sweep,
        [&](const LinearOperator<T> &op, index_t o0, index_t r0, index_t r1) {
          op.apply(Mode::transpose, T(1),
                   ConstMatrixView<T>{Gm.data() + o0 * k, op.rows(), k, k}, T(1),
                   MatrixView<T>{Hm.data() + r0 * k, r1 - r0, k, k});
          op.apply(Mode::abs_transpose, T(1),
                   ConstMatrixView<T>{Gr.data() + o0 * k, op.rows(), k, k}, T(1),
                   MatrixView<T>{Hr.data() + r0 * k, r1 - r0, k, k});
        },
        [&](index_t r0, index_t r1) { enclose_rows(Hm, Hr, r0, r1); });
    out.iterations = 1;
  } else {
    std::vector<T> Fm, Fr;
    bool exact = false;
    const int budget = I.budget();
    int it = 0;
    for (; it < budget; ++it) {
      image(Hm, Hr, Fm, Fr);
      double diff = 0, scale = 0;
      for (std::size_t t = 0; t < Fm.size(); ++t) {
        diff = std::max({diff, std::abs(double(Fm[t]) - double(Hm[t])),
                         std::abs(double(Fr[t]) - double(Hr[t]))});
        scale = std::max(scale, std::abs(double(Fm[t])) + double(Fr[t]));
      }
      Hm.swap(Fm);
      Hr.swap(Fr);
      if (diff == 0) {
        exact = true;
        break;
      }
      if (!I.nilpotent && diff <= I.options.tolerance * scale)
        break;
    }
    out.iterations = std::min(it + 1, budget);
    if (!exact) {
      // An iterate need not enclose the fixed points: verify an inclusion
      // F(W') within W' for an inflated W' (epsilon inflation, repeated: the
      // inflated iteration settles to a set F maps into itself since the
      // radius map |A|^T (s_hi .* r) contracts). Then each selection of slopes
      // maps W' into itself and its (unique) fixed point lies in F(W').
      bool verified = false;
      std::vector<T> Wm, Wr;
      for (int attempt = 0; attempt < budget && !verified; ++attempt) {
        const double delta = attempt < 5 ? 1e-8 : attempt < 15 ? 1e-6 : 1e-4;
        double scale = 0;
        for (std::size_t t = 0; t < Hm.size(); ++t)
          scale = std::max(scale, std::abs(double(Hm[t])) + double(Hr[t]));
        Wm = Hm;
        Wr.resize(Hr.size());
        for (std::size_t t = 0; t < Hr.size(); ++t)
          Wr[t] = static_cast<T>(double(Hr[t]) +
                                 delta * (double(Hr[t]) + std::abs(double(Hm[t]))) +
                                 delta * 1e-3 * scale);
        image(Wm, Wr, Fm, Fr);
        verified = true;
        for (std::size_t t = 0; t < Fm.size() && verified; ++t)
          verified =
              std::abs(double(Fm[t]) - double(Wm[t])) + double(Fr[t]) <= double(Wr[t]);
        Hm.swap(Fm);
        Hr.swap(Fr);
        ++out.iterations;
      }
      if (!verified)
        return refuse();
    }
    enclose_rows(Hm, Hr, 0, n);
  }
  // J^T = B^T G + D^T: centre B^T Gm + D^T, radius |B|^T Gr (p x q).
  std::vector<T> Jm(static_cast<std::size_t>(p * k)), Jr(Jm.size());
  I.model.B().apply(Mode::transpose, T(1), ConstMatrixView<T>{Gm.data(), n, k, k}, T(0),
                    MatrixView<T>{Jm.data(), p, k, k});
  if (I.model.D())
    I.model.D()->apply(Mode::transpose, T(1), Ev, T(1),
                       MatrixView<T>{Jm.data(), p, k, k});
  I.model.B().apply(Mode::abs_transpose, T(1), ConstMatrixView<T>{Gr.data(), n, k, k},
                    T(0), MatrixView<T>{Jr.data(), p, k, k});
  out.magnitude.assign(static_cast<std::size_t>(q * p), 0.0);
  out.upper.assign(static_cast<std::size_t>(q), 0.0);
  for (index_t j = 0; j < p; ++j)
    for (index_t r = 0; r < q; ++r) {
      const double mag = (std::abs(double(Jm[j * k + r])) + double(Jr[j * k + r])) *
                         (1 + 4 * double(std::numeric_limits<T>::epsilon()));
      out.magnitude[r * p + j] = mag;
      out.upper[r] += mag;
    }
  for (const double u : out.upper)
    if (!std::isfinite(u))
      return refuse();
  return out;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template InputBox<T> linf_box<T>(std::span<const T>, T, T, T);                         \
  template InputBox<T> box_around<T>(std::span<const T>, std::span<const T>);            \
  template struct MarginBounds<T>;                                                       \
  template struct NominalPoint<T>;                                                       \
  template class BoundAnalyzer<T>;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
