// Local Lipschitz bounds on a box: the mean-value Jacobian enclosed by
// centre/radius interval arithmetic through the equilibrium.

#include "analysis/detail/bound_analyzer.hpp"

namespace tacit::inline v1 {

template <class T>
LocalLipschitz BoundAnalyzer<T>::local_lipschitz_in_arena(const StateBounds<T> &bounds) const {
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
  // product that follows (C^T here, s .* h, A^T and B^T through Gr), and
  // the radius products use the rounding majorants (|L||R| for a composed
  // operator, the sum of |parts| for merged blocks; rounding.hpp).
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
    detail::majorant_apply(I.model.A(), true, ConstMatrixView<T>{Gr.data(), n, k, k},
                           T(1), MatrixView<T>{fr.data(), n, k, k});
  };
  if (I.sweep) {
    reverse_block_sweep(
        *I.sweep,
        [&](const LinearOperator<T> &op, index_t o0, index_t r0, index_t r1) {
          op.apply(Mode::transpose, T(1),
                   ConstMatrixView<T>{Gm.data() + o0 * k, op.rows(), k, k}, T(1),
                   MatrixView<T>{Hm.data() + r0 * k, r1 - r0, k, k});
          detail::majorant_apply(op, true,
                                 ConstMatrixView<T>{Gr.data() + o0 * k, op.rows(), k, k},
                                 T(1), MatrixView<T>{Hr.data() + r0 * k, r1 - r0, k, k});
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
  detail::majorant_apply(I.model.B(), true, ConstMatrixView<T>{Gr.data(), n, k, k}, T(0),
                         MatrixView<T>{Jr.data(), p, k, k});
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
  template LocalLipschitz BoundAnalyzer<T>::local_lipschitz_in_arena(const StateBounds<T> &) const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
