// Componentwise bounds of implicit models over input boxes: boxes, the
// analyser's set-up, nominal points and margins. The bounds themselves are
// in bounds_global.cpp (from (I - L|A|)^-1), bounds_interval.cpp (the
// interval fixed point) and bounds_linear.cpp (CROWN-style back-substitution
// through the equilibrium); local Lipschitz bounds in local_lipschitz.cpp.

#include "analysis/detail/bound_analyzer.hpp"

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

namespace {
// a + b rounded toward -infinity (down) or +infinity: the rounded sum and
// its exact error by TwoSum; a step when the rounding went the wrong way.
template <class T> T add_directed(T a, T b, bool up) {
  const T s = a + b;
  if (!std::isfinite(s))
    return s;
  const T bb = s - a;
  const T err = (a - (s - bb)) + (b - bb);
  if (up ? err > T(0) : err < T(0))
    return std::nextafter(s, up ? std::numeric_limits<T>::infinity()
                                : -std::numeric_limits<T>::infinity());
  return s;
}
} // namespace

template <class T>
InputBox<T> linf_box(std::span<const T> u0, T eps, T domain_lo, T domain_hi) {
  if (!(eps >= T(0)))
    throw InvalidArgument("linf_box: eps must be >= 0, got " + std::to_string(eps));
  InputBox<T> box;
  box.lower.resize(u0.size());
  box.upper.resize(u0.size());
  const bool clip = domain_lo <= domain_hi;
  for (std::size_t i = 0; i < u0.size(); ++i) {
    // Rounded outward: the box contains every real u with |u - u0| <= eps.
    T lo = add_directed(u0[i], -eps, false), hi = add_directed(u0[i], eps, true);
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
template <class T>
BoundAnalyzer<T>::BoundAnalyzer(const Model<T> &model, BoundOptions options)
    : impl_(std::make_unique<Impl>(model, options)) {
  // Materialising an operator for its SCCs or term counts and the
  // certificate iteration are products: all of it runs in options.exec.
  options.exec.run([&] {
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
      I.lip[i] = round_up<T>(a.lipschitz());
    }
    // Rounding allowances of the products (rounding.hpp): from the structure
    // of each operator, without materialising a structured one.
    {
      using detail::product_gamma;
      using detail::product_terms;
      I.gA = product_gamma<T>(product_terms(model.A()));
      I.gB = product_gamma<T>(product_terms(model.B()));
      I.gC = product_gamma<T>(product_terms(model.C()));
      I.gD = model.D() ? product_gamma<T>(product_terms(*model.D())) : 0.0;
      I.gamma = std::max({I.gA, I.gB, I.gC, I.gD});
      I.gamma_sum = I.gamma + 2.0 * double(n + model.inputs() + model.outputs() + 8) *
                                  std::numeric_limits<double>::epsilon() / 2;
    }
    // Levels of the dependency DAG. A strictly block lower triangular A: the
    // levels of its blocks (a block's is one more than the highest block it
    // reads), which order every state after the states it reads, without
    // materialising A. Otherwise the levels of the SCC DAG of A as CSR.
    I.input_only.assign(n, 0);
    const BlockStructured<T> *structured = capability<BlockStructured<T>>(model.A());
    if (const BlockStructure<T> *block =
            structured ? &structured->block_structure() : nullptr;
        block && block->square_partition() && block->strictly_block_lower_triangular()) {
      I.sweep = block;
      I.nilpotent = true;
      const auto entries = block->entries();
      std::vector<index_t> level(static_cast<std::size_t>(block->row_blocks()), 0);
      index_t depth = 0;
      for (index_t b = 0; b < block->row_blocks(); ++b) {
        const auto row = block->entries_in_row(b);
        for (const index_t e : row)
          level[b] = std::max(level[b], level[entries[e].block_col] + 1);
        depth = std::max(depth, level[b]);
        if (row.empty())
          for (index_t i = block->row_offset(b); i < block->row_offset(b + 1); ++i)
            I.input_only[i] = 1;
      }
      I.level_states.resize(static_cast<std::size_t>(n > 0 ? depth + 1 : 0));
      I.level_blocks.resize(I.level_states.size());
      for (index_t b = 0; b < block->row_blocks(); ++b) {
        I.level_blocks[level[b]].push_back(b);
        for (index_t i = block->row_offset(b); i < block->row_offset(b + 1); ++i)
          I.level_states[level[b]].push_back(i);
      }
    } else {
      const auto csr = csr_view(model.A());
      const SccDecomposition scc = strongly_connected_components(*csr);
      I.nilpotent = scc.nilpotent();
      for (index_t i = 0; i < n; ++i)
        I.input_only[i] = csr->row_ptr()[i + 1] == csr->row_ptr()[i];
      I.level_states.resize(scc.level_count());
      for (index_t l = 0; l < scc.level_count(); ++l)
        for (index_t k = scc.level_ptr[l]; k < scc.level_ptr[l + 1]; ++k)
          for (index_t t = scc.block_ptr[k]; t < scc.block_ptr[k + 1]; ++t)
            I.level_states[l].push_back(scc.order[t]);
      for (auto &lv : I.level_states)
        std::sort(lv.begin(), lv.end());
    }

    if (I.nilpotent) {
      // lambda_PF(L|A|) = 0 exactly: the global bound's iteration terminates
      // (its sweep is exact), no certificate vector is needed.
      I.rho = 0;
      I.certified = true;
      return;
    }
    // Certificate vector: v ~ (I - L|A|)^-1 1 and the Collatz-Wielandt bound
    // rho = max_i (L|A| v)_i / v_i >= lambda_PF(L|A|), computed upward: the
    // product through Ahat >= |A| with its rounding allowance gA, the ratio
    // rounded up in double.
    std::vector<T> ones(n, T(1)), v(n, T(1)), next(n);
    const int budget = I.budget();
    for (int it = 0; it < budget; ++it) {
      I.global_step(v, ones, next);
      double diff = 0, scale = 0;
      for (index_t i = 0; i < n; ++i) {
        diff = std::max(diff, std::abs(double(next[i]) - double(v[i])));
        scale = std::max(scale, std::abs(double(next[i])));
      }
      v.swap(next);
      if (!(diff > options.tolerance * scale))
        break;
    }
    Impl::abs_apply(model.A(), false, std::span<const T>(v), T(0), std::span<T>(next));
    double rho = 0;
    bool finite = true;
    const double up = 1 + 4 * std::numeric_limits<double>::epsilon();
    for (index_t i = 0; i < n; ++i) {
      if (!std::isfinite(double(v[i])) || !(v[i] > T(0)) ||
          !std::isfinite(double(next[i]))) {
        finite = false;
        break;
      }
      rho = std::max(rho,
                     (1 + I.gA) * double(I.lip[i]) * double(next[i]) / double(v[i]) * up);
    }
    I.rho = finite ? rho : 1.0;
    I.certified = finite && rho < 1.0;
    I.cert_v = std::move(v);
  });
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
NominalPoint<T> BoundAnalyzer<T>::nominal_in_arena(std::span<const T> u0,
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
  // Rounding of the residual: z is off by g (Ahat |x0| + Bhat |u0|), phi is
  // Lipschitz, and the bias addition, phi and the subtraction add a few
  // units of roundoff (g >= 16 u covers them against |x0| and |r0|).
  {
    std::vector<T> ax(x0.size()), au(u0.size());
    for (std::size_t i = 0; i < x0.size(); ++i)
      ax[i] = std::abs(x0[i]);
    for (std::size_t j = 0; j < u0.size(); ++j)
      au[j] = std::abs(u0[j]);
    std::vector<T> mag(m.states());
    Impl::abs_apply(m.B(), false, std::span<const T>(au), T(0), std::span<T>(mag));
    Impl::abs_apply(m.A(), false, std::span<const T>(ax), T(1), std::span<T>(mag));
    const double g = std::max(I.gA, I.gB);
    nom.residual_rounding.resize(m.states());
    for (index_t i = 0; i < m.states(); ++i)
      nom.residual_rounding[i] = detail::round_up<T>(
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
NominalPoint<T> BoundAnalyzer<T>::nominal_in_arena(std::span<const T> u0) const {
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
MarginBounds<T> BoundAnalyzer<T>::margins_in_arena(const NominalPoint<T> &nom,
                                                   const InputBox<T> &box, int label,
                                                   BoundMethod method,
                                                   LinearBoundStats *stats) const {
  const auto &I = *impl_;
  const index_t q = I.q();
  if (label < 0 || label >= q)
    throw InvalidArgument("margins: label " + std::to_string(label) + " is not in [0, " +
                          std::to_string(q) + ")");
  const index_t k = 3 * q;
  const std::vector<T> G = I.margin_columns(label);
  const ConstMatrixView<T> Gv{G.data(), q, k, k};
  MarginBounds<T> out;
  const auto fill = [&](const std::vector<T> &lb, BoundStatus status) {
    out = I.margin_bounds(lb, label, status);
  };
  const bool cascade = method == BoundMethod::best;
  StateBounds<T> s = global_bounds(nom, box);
  if (s.status == BoundStatus::unbounded)
    fill(std::vector<T>(k, -std::numeric_limits<T>::infinity()), s.status);
  else
    fill(interval_lower(s, box, Gv), s.status);
  if (method == BoundMethod::global || (cascade && out.certified()))
    return out;
  s = I.interval_from(std::move(s), box);
  if (s.status == BoundStatus::unbounded)
    return out;
  auto ib = interval_lower(s, box, Gv);
  fill(ib, s.status);
  if (method == BoundMethod::interval || (cascade && out.certified()))
    return out;
  // Within the linear region of the nominal point the model is affine:
  // its margins are exact up to the region's error bounds.
  if (nom.region && I.options.linear_region && nom.region->inputs == I.p() &&
      nom.region->outputs == q) {
    double eps_box = 0;
    for (index_t j = 0; j < I.p(); ++j) {
      const double d = std::max(double(nom.u[j]) - double(box.lower[j]),
                                double(box.upper[j]) - double(nom.u[j]));
      eps_box =
          std::max(eps_box, std::nextafter(d, std::numeric_limits<double>::infinity()));
    }
    if (eps_box <= nom.region->radius) {
      std::vector<T> rb(k);
      for (index_t j = 0; j < q; ++j) {
        rb[j] = j == label ? T(0)
                           : round_down<T>(nom.region->margin_lower(
                                 label, static_cast<int>(j), eps_box));
        const auto [lo, hi] = nom.region->output_bounds(static_cast<int>(j), eps_box);
        rb[q + j] = round_down<T>(lo);
        rb[2 * q + j] = -round_up<T>(hi);
      }
      for (index_t j = 0; j < k; ++j)
        rb[j] = std::max(rb[j], ib[j]);
      fill(rb, s.status);
      if (stats)
        *stats = LinearBoundStats{};
      return out;
    }
  }
  LinearBoundStats st;
  s = I.linear_from(std::move(s), box, &st);
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
  // (Not after a truncated refinement: its intermediate bounds are loose
  // and the optimisation would cost a sweep per step for nothing.)
  if (I.options.slope_steps > 0 && !open.empty() && I.nilpotent && !st.truncated) {
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
    const auto opt = I.optimise_slopes(s, box, W, Du, cst, m, start);
    const auto extra = I.output_rounding(s, box, Gsv);
    for (index_t t = 0; t < m; ++t)
      lb[open[t]] = std::max(lb[open[t]], round_down<T>(double(opt[t]) - extra[t]));
  }
  fill(lb, s.status);
  if (stats)
    *stats = st;
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
