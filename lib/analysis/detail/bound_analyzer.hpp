#pragma once
// The state of a BoundAnalyzer (its Impl) and helpers shared by the files of
// the bounds: lib/analysis/bounds.cpp (boxes, nominal points, margins),
// bounds_global.cpp, bounds_interval.cpp, bounds_linear.cpp and
// local_lipschitz.cpp.

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

namespace detail {
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
void reverse_block_sweep(const BlockStructure<T> &A, Add &&add, Close &&close) {
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
/// Optimised lower ReLU slopes for the margins of W (bounds_linear.cpp):
/// projected Adam on the bound of each margin from the adaptive slopes,
/// keeping the best bound of each; returns those bounds.
template <class T>
std::vector<T> optimise_lower_slopes(const Model<T> &model,
                                     const BlockStructure<T> *sweep,
                                     std::span<const detail::StateAct> acts,
                                     bool nilpotent, int budget, double tolerance,
                                     const StateBounds<T> &bounds, const InputBox<T> &box,
                                     const std::vector<T> &W, const std::vector<T> &Du,
                                     const std::vector<double> &cst, index_t k, int steps,
                                     double rounding, std::vector<T> best);

} // namespace detail

using detail::ActKind;
using detail::Relaxation;
using detail::magnitudes;
using detail::reverse_block_sweep;
using detail::round_down;

template <class T> struct BoundAnalyzer<T>::Impl {
  Model<T> model;
  BoundOptions options;
  std::vector<detail::StateAct> acts;
  std::vector<T> lip;
  std::vector<std::vector<index_t>> level_states;
  bool nilpotent = false;
  /// A when it is strictly block lower triangular: the linear bound's
  /// back-substitution is then one reverse sweep over its blocks.
  const BlockStructure<T> *sweep = nullptr;
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

} // namespace tacit::inline v1
