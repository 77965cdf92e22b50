// The linear-relaxation bound (CROWN-style): back-substitution through the
// equilibrium with refined intermediate bounds, and optimised lower slopes.

#include "analysis/detail/bound_analyzer.hpp"

namespace tacit::inline v1 {

namespace detail {

// Block of a state in a block structure's row partition.
template <class T> index_t block_of(const BlockStructure<T> &A, index_t i) {
  index_t lo = 0, hi = A.row_blocks() - 1;
  while (lo < hi) {
    const index_t mid = (lo + hi + 1) / 2;
    if (A.row_offset(mid) <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

} // namespace detail

using detail::LinearWork;
using detail::Seed;

// Lower bounds of W^T x + E^T z + Du^T u + cst (W: n x k in work.V, E the
// seeds, Du: p x k) by back-substitution with the relaxations of `bounds`:
// V = W + A^T (Lambda(V) + E). A strictly block lower triangular A (`sweep`)
// is swept once, block column by block column in reverse order, each
// Lambda(V_b) formed as soon as V_b is final; otherwise V is iterated to its
// fixed point (exactly, in levels + 1 steps, when A is nilpotent). With
// top >= 0 (sweep only), W and E are zero beyond block row `top`, and so are
// V and Lambda(V): the sweep starts there.
//
// Soundness. For x, u in their boxes with x = phi(A x + B u + b) and any V,
// with LV = Lambda(V) + E and e = W + A^T LV - V:
//   W^T x + E^T z = V^T x - LV^T A x + e^T x + E^T z
//                 >= LV^T z + V^T icpt - LV^T (z - B u - b) + e^T x
//                  = (B^T LV)^T u + LV^T b + V^T icpt + e^T x,
// the inequality from the relaxation lines (V_i x_i >= Lambda(V)_i z_i +
// V_i icpt_i). Rounding: LV, V, e and a = B^T LV + Du are computed; the
// computed LV_i differs from V_i times its slope by u |LV_i| (a term of size
// u |LV_i| |z_i| <= u |LV_i| (|b_i| + (Ahat xmag + Bhat umag)_i)), a computed V
// leaves e of at most gA (|W| + Ahat^T |LV|), a is off by gB (Bhat^T |LV| +
// |Du|), the relaxation lines' own rounding is u (|LV_i| |z_i| + |V_i|
// |icpt_i|), and the final sums in double add gamma_sum times their terms:
// every one of these is within work.rounding times the magnitude sum `mag`
// below (|W| <= |V| + Ahat^T |LV| + |e|, and rounding >= 2 gamma_sum).
template <class T>
std::vector<T> BoundAnalyzer<T>::Impl::linear_kernel(
    const StateBounds<T> &bounds, const InputBox<T> &box, LinearWork<T> &work,
    std::span<const Seed<T>> seeds, std::vector<T> Du, std::vector<double> cst, index_t k,
    int *iterations, const T *lower_slopes, bool *was_exact, index_t top,
    const std::vector<T> *reach_in) const {
  const index_t np = p(), nn = n();
  const index_t rows_end = sweep && top >= 0 ? sweep->row_offset(top + 1) : nn;
  std::vector<Relaxation<T>> rel(nn);
  for (index_t i = 0; i < rows_end; ++i)
    rel[i] = acts[i].relax(bounds.z_lower[i], bounds.z_upper[i]);
  std::vector<T> &V = work.V, &LV = work.LV, &next = work.next;
  if (work.k != k || static_cast<index_t>(LV.size()) != nn * k) {
    LV.assign(static_cast<std::size_t>(nn * k), T(0));
    work.dirty = 0;
  } else if (work.dirty > rows_end) {
    std::fill(LV.begin() + rows_end * k, LV.begin() + work.dirty * k, T(0));
  }
  work.k = k;
  work.dirty = rows_end;
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
    // seeds are sorted by row
    auto it = std::lower_bound(seeds.begin(), seeds.end(), r0,
                               [](const Seed<T> &sd, index_t r) { return sd.row < r; });
    for (; it != seeds.end() && it->row < r1; ++it)
      out[it->row * k + it->col] += it->value;
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
        [&](index_t r0, index_t r1) { lambda_rows(V, LV, r0, r1); }, top);
    exact = true;
  } else {
    const std::vector<T> W = V;
    next.resize(nn * k);
    const int steps = budget();
    for (; it < steps; ++it) {
      lambda_rows(V, LV, 0, nn);
      next = W;
      model.A().apply(Mode::transpose, T(1), ConstMatrixView<T>{LV.data(), nn, k, k},
                      T(1), MatrixView<T>{next.data(), nn, k, k});
      double diff = 0, scale = 0;
      for (index_t t = 0; t < nn * k; ++t) {
        diff = std::max(diff, std::abs(double(next[t]) - double(V[t])));
        scale = std::max(scale, std::abs(double(next[t])));
      }
      if (diff == 0) {
        exact = true;
        break;
      }
      if (!nilpotent && diff <= options.tolerance * scale)
        break;
      V.swap(next);
    }
    if (it == steps) { // V holds the last iterate; recompute Lambda(V) and its image
      lambda_rows(V, LV, 0, nn);
      next = W;
      model.A().apply(Mode::transpose, T(1), ConstMatrixView<T>{LV.data(), nn, k, k},
                      T(1), MatrixView<T>{next.data(), nn, k, k});
    }
  }
  if (iterations)
    *iterations = it + 1;
  const auto b = model.bias_x();
  const std::vector<T> xmag = magnitudes(bounds.x_lower, bounds.x_upper);
  const std::vector<T> umag = magnitudes(box.lower, box.upper);
  std::vector<T> own_reach;
  if (!reach_in)
    preactivation_reach(bounds, box, nullptr, own_reach);
  const std::vector<T> &reach = reach_in ? *reach_in : own_reach;
  std::vector<double> acc = cst, mag(k);
  for (index_t j = 0; j < k; ++j)
    mag[j] = std::abs(cst[j]);
  for (index_t i = 0; i < rows_end; ++i) {
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
  // a = B^T LV + Du
  model.B().apply(Mode::transpose, T(1), ConstMatrixView<T>{LV.data(), nn, k, k}, T(1),
                  MatrixView<T>{Du.data(), np, k, k});
  for (index_t i = 0; i < np; ++i)
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

template <class T>
void BoundAnalyzer<T>::Impl::preactivation_reach(const StateBounds<T> &bounds,
                                                 const InputBox<T> &box,
                                                 const std::vector<index_t> *blocks,
                                                 std::vector<T> &reach) const {
  const index_t nn = n();
  const std::vector<T> xmag = magnitudes(bounds.x_lower, bounds.x_upper);
  const std::vector<T> umag = magnitudes(box.lower, box.upper);
  if (!blocks || !sweep) {
    reach.resize(nn);
    abs_apply(model.A(), false, std::span<const T>(xmag), T(0), std::span<T>(reach));
    abs_apply(model.B(), false, std::span<const T>(umag), T(1), std::span<T>(reach));
    return;
  }
  // Bhat umag for all rows once, then Ahat xmag for the rows of the blocks.
  if (static_cast<index_t>(reach.size()) != nn) {
    reach.resize(nn);
    abs_apply(model.B(), false, std::span<const T>(umag), T(0), std::span<T>(reach));
  }
  std::vector<T> acc;
  const auto entries = sweep->entries();
  for (const index_t blk : *blocks) {
    const index_t r0 = sweep->row_offset(blk), r1 = sweep->row_offset(blk + 1);
    acc.assign(static_cast<std::size_t>(r1 - r0), T(0));
    for (const index_t e : sweep->entries_in_row(blk)) {
      const BlockEntry<T> &en = entries[static_cast<std::size_t>(e)];
      const index_t c0 = sweep->col_offset(en.block_col);
      abs_apply(
          *en.op, false,
          std::span<const T>(xmag.data() + c0, static_cast<std::size_t>(en.op->cols())),
          T(1), std::span<T>(acc));
    }
    for (index_t i = r0; i < r1; ++i)
      reach[i] += acc[i - r0];
  }
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
std::vector<T> BoundAnalyzer<T>::Impl::optimise_slopes(
    const StateBounds<T> &bounds, const InputBox<T> &box, const std::vector<T> &W,
    const std::vector<T> &Du, const std::vector<double> &cst, index_t k,
    std::vector<T> best) const {
  const index_t nn = n(), np = p();
  const int steps = options.slope_steps;
  if (!nilpotent || steps <= 0 || k == 0)
    return best;
  std::vector<Relaxation<T>> rel(nn);
  std::vector<T> slope_lo(nn, T(0));
  std::vector<char> free(nn, 0);
  bool any = false;
  for (index_t i = 0; i < nn; ++i) {
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
  std::vector<T> alpha(nn * k), m1(nn * k, T(0)), m2(nn * k, T(0));
  for (index_t i = 0; i < nn; ++i)
    std::fill(alpha.begin() + i * k, alpha.begin() + (i + 1) * k, rel[i].lo_slope);
  LinearWork<T> work;
  work.rounding = 2 * gamma_sum;
  std::vector<T> base(nn * k), psi(nn * k), next(nn * k), ustar(np * k);
  const auto b = model.bias_x();
  const double lr = 0.2, beta1 = 0.9, beta2 = 0.999;
  double pow1 = 1, pow2 = 1;
  for (int step = 0; step < steps; ++step) {
    work.V = W;
    bool exact = false;
    const auto f =
        linear_kernel(bounds, box, work, {}, Du, cst, k, nullptr, alpha.data(), &exact);
    if (!exact)
      return best;
    for (index_t j = 0; j < k; ++j)
      best[j] = std::max(best[j], f[j]);
    if (step + 1 == steps)
      break;
    // Forward pass of the relaxed network at u*: phi = b + B u* + A psi,
    // psi = icpt + lambda phi (one sweep over the blocks, or exact after
    // depth + 1 steps).
    for (index_t j = 0; j < np; ++j)
      for (index_t c = 0; c < k; ++c)
        ustar[j * k + c] = work.a[j * k + c] >= T(0) ? box.lower[j] : box.upper[j];
    model.B().apply(Mode::normal, T(1), ConstMatrixView<T>{ustar.data(), np, k, k}, T(0),
                    MatrixView<T>{base.data(), nn, k, k});
    for (index_t i = 0; i < nn; ++i)
      for (index_t c = 0; c < k; ++c)
        base[i * k + c] += b[i];
    const std::vector<T> &V = work.V;
    const auto relax_rows = [&](index_t r0, index_t r1) {
      bool same = true;
      for (index_t i = r0; i < r1; ++i) {
        const Relaxation<T> &r = rel[i];
        for (index_t c = 0; c < k; ++c) {
          const index_t t = i * k + c;
          const T v = V[t] >= T(0) ? alpha[t] * next[t] + r.lo_icpt
                                   : r.up_slope * next[t] + r.up_icpt;
          same = same && v == psi[t];
          psi[t] = v;
        }
      }
      return same;
    };
    if (sweep) {
      next = base;
      const auto entries = sweep->entries();
      for (index_t blk = 0; blk < sweep->row_blocks(); ++blk) {
        const index_t r0 = sweep->row_offset(blk), r1 = sweep->row_offset(blk + 1);
        for (const index_t e : sweep->entries_in_row(blk)) {
          const BlockEntry<T> &en = entries[static_cast<std::size_t>(e)];
          const index_t c0 = sweep->col_offset(en.block_col);
          en.op->apply(Mode::normal, T(1),
                       ConstMatrixView<T>{psi.data() + c0 * k, en.op->cols(), k, k}, T(1),
                       MatrixView<T>{next.data() + r0 * k, r1 - r0, k, k});
        }
        relax_rows(r0, r1);
      }
    } else {
      std::fill(psi.begin(), psi.end(), T(0));
      for (int it = 0; it < budget(); ++it) {
        next = base;
        model.A().apply(Mode::normal, T(1), ConstMatrixView<T>{psi.data(), nn, k, k},
                        T(1), MatrixView<T>{next.data(), nn, k, k});
        if (relax_rows(0, nn))
          break;
      }
    }
    // next = phi (the pre-activations of the last pass); Adam ascent.
    pow1 *= beta1;
    pow2 *= beta2;
    for (index_t i = 0; i < nn; ++i) {
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

template <class T>
std::vector<T>
BoundAnalyzer<T>::linear_lower_in_arena(const StateBounds<T> &bounds, const InputBox<T> &box,
                               ConstMatrixView<T> G, int *dual_iterations) const {
  const auto &I = *impl_;
  const index_t k = G.cols;
  if (k == 0)
    return {};
  detail::check_box(box, I.p());
  LinearWork<T> work;
  work.rounding = 2 * I.gamma_sum;
  std::vector<T> Du;
  std::vector<double> cst;
  I.output_rows(G, work.V, Du, cst);
  auto lin = I.linear_kernel(bounds, box, work, {}, std::move(Du), std::move(cst), k,
                             dual_iterations);
  const auto extra = I.output_rounding(bounds, box, G);
  for (index_t j = 0; j < k; ++j)
    lin[j] = round_down<T>(double(lin[j]) - extra[j]);
  // Never looser than interval arithmetic on the same state bounds.
  const auto ib = interval_lower(bounds, box, G);
  for (index_t j = 0; j < k; ++j)
    lin[j] = std::max(lin[j], ib[j]);
  return lin;
}

// Refinement (full CROWN): the pre-activation bounds of the unstable states
// are tightened level by level of the dependency DAG by the linear bound of
// +-z_i itself (seeds), so that each level's relaxations use the refined
// bounds of the levels before it. With a block sweep the back-substitution
// of a chunk starts at the highest block it touches.
template <class T>
StateBounds<T> BoundAnalyzer<T>::Impl::linear_from(StateBounds<T> s,
                                                   const InputBox<T> &box,
                                                   LinearBoundStats *stats) const {
  LinearBoundStats st;
  const index_t nn = n(), np = p();
  for (index_t i = 0; i < nn; ++i)
    st.unstable_before += acts[i].needs_refinement(s.z_lower[i], s.z_upper[i]) ? 1 : 0;
  if (s.status == BoundStatus::unbounded || !options.refine) {
    st.unstable_after = st.unstable_before;
    if (stats)
      *stats = st;
    return s;
  }
  std::vector<T> bc, br;
  input_centre(box, bc, br);
  // Columns per chunk: at most refine_batch, and at most ~2^24 entries per
  // n x k buffer on a large model.
  const index_t cap = std::max<index_t>(2, (index_t(1) << 24) / std::max<index_t>(1, nn));
  const index_t chunk = std::max<index_t>(1, std::min(options.refine_batch, cap) / 2);
  LinearWork<T> work;
  work.rounding = 2 * gamma_sum;
  std::vector<Seed<T>> seeds;
  std::vector<T> reach;
  double spent = 0;
  for (std::size_t l = 0; l < level_states.size(); ++l) {
    // This level's pre-activations from the refined levels before it: a
    // sweep over its blocks, or an interval step.
    if (l > 0) {
      if (sweep)
        interval_sweep(s, bc, br, &level_blocks[l]);
      else
        interval_step(s, bc, br);
    }
    std::vector<index_t> todo;
    for (index_t i : level_states[l])
      if (!input_only[i] && acts[i].needs_refinement(s.z_lower[i], s.z_upper[i]))
        todo.push_back(i);
    if (todo.empty() || st.truncated)
      continue;
    preactivation_reach(s, box, sweep ? &level_blocks[l] : nullptr, reach);
    for (std::size_t start = 0; start < todo.size(); start += chunk) {
      const index_t m = std::min<index_t>(chunk, todo.size() - start);
      const index_t k = 2 * m;
      seeds.clear();
      for (index_t t = 0; t < m; ++t) {
        const index_t i = todo[start + t];
        seeds.push_back({i, 2 * t, T(1)});
        seeds.push_back({i, 2 * t + 1, T(-1)});
      }
      std::sort(seeds.begin(), seeds.end(),
                [](const Seed<T> &a, const Seed<T> &b) { return a.row < b.row; });
      const index_t top = sweep ? detail::block_of(*sweep, seeds.back().row) : -1;
      const index_t rows_end = sweep ? sweep->row_offset(top + 1) : nn;
      spent += double(k) * double(rows_end);
      if (spent > options.refine_budget) {
        st.truncated = true;
        break;
      }
      work.V.resize(static_cast<std::size_t>(nn * k));
      std::fill(work.V.begin(), work.V.begin() + rows_end * k, T(0));
      int its = 0;
      const auto lb = linear_kernel(s, box, work, seeds,
                                    std::vector<T>(static_cast<std::size_t>(np * k)),
                                    std::vector<double>(static_cast<std::size_t>(k), 0.0),
                                    k, &its, nullptr, nullptr, top, &reach);
      st.dual_iterations = std::max(st.dual_iterations, its);
      for (index_t t = 0; t < m; ++t) {
        const index_t i = todo[start + t];
        tighten(s, i, lb[2 * t], -lb[2 * t + 1]);
        st.refined += 2;
      }
    }
  }
  // The states after the last level read the refined bounds too.
  if (!sweep)
    interval_step(s, bc, br);
  for (index_t i = 0; i < nn; ++i)
    st.unstable_after += acts[i].needs_refinement(s.z_lower[i], s.z_upper[i]) ? 1 : 0;
  if (stats)
    *stats = st;
  return s;
}

template <class T>
StateBounds<T> BoundAnalyzer<T>::linear_state_bounds_in_arena(const NominalPoint<T> &nom,
                                                     const InputBox<T> &box,
                                                     LinearBoundStats *stats) const {
  return impl_->linear_from(interval_bounds(nom, box), box, stats);
}

#define TACIT_INSTANTIATE(T)                                                             \
  template std::vector<T> BoundAnalyzer<T>::Impl::linear_kernel(                         \
      const StateBounds<T> &, const InputBox<T> &, detail::LinearWork<T> &,              \
      std::span<const detail::Seed<T>>, std::vector<T>, std::vector<double>, index_t,    \
      int *, const T *, bool *, index_t, const std::vector<T> *) const;                  \
  template void BoundAnalyzer<T>::Impl::preactivation_reach(                             \
      const StateBounds<T> &, const InputBox<T> &, const std::vector<index_t> *,         \
      std::vector<T> &) const;                                                           \
  template std::vector<T> BoundAnalyzer<T>::Impl::optimise_slopes(                       \
      const StateBounds<T> &, const InputBox<T> &, const std::vector<T> &,               \
      const std::vector<T> &, const std::vector<double> &, index_t, std::vector<T>)      \
      const;                                                                             \
  template StateBounds<T> BoundAnalyzer<T>::Impl::linear_from(                           \
      StateBounds<T>, const InputBox<T> &, LinearBoundStats *) const;                    \
  template std::vector<T> BoundAnalyzer<T>::linear_lower_in_arena(                                \
      const StateBounds<T> &, const InputBox<T> &, ConstMatrixView<T>, int *) const;     \
  template StateBounds<T> BoundAnalyzer<T>::linear_state_bounds_in_arena(                         \
      const NominalPoint<T> &, const InputBox<T> &, LinearBoundStats *) const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
