// The linear-relaxation bound (CROWN-style): back-substitution through the
// equilibrium with refined intermediate bounds, and optimised lower slopes.

#include "analysis/detail/bound_analyzer.hpp"

namespace tacit::inline v1 {

namespace detail {

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
std::vector<T> linear_kernel(const Model<T> &model, const BlockStructure<T> *sweep,
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
std::vector<T> optimise_lower_slopes(const Model<T> &model,
                                     const BlockStructure<T> *sweep,
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

} // namespace detail

using detail::LinearWork;
using detail::linear_kernel;

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


#define TACIT_INSTANTIATE(T)                                                             \
  template std::vector<T> detail::optimise_lower_slopes<T>(                              \
      const Model<T> &, const BlockStructure<T> *, std::span<const detail::StateAct>,    \
      bool, int, double, const StateBounds<T> &, const InputBox<T> &,                    \
      const std::vector<T> &, const std::vector<T> &, const std::vector<double> &,       \
      index_t, int, double, std::vector<T>);                                             \
  template std::vector<T> BoundAnalyzer<T>::linear_lower(                                \
      const StateBounds<T> &, const InputBox<T> &, ConstMatrixView<T>, int *) const;     \
  template StateBounds<T> BoundAnalyzer<T>::linear_state_bounds(                         \
      const NominalPoint<T> &, const InputBox<T> &, LinearBoundStats *) const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
