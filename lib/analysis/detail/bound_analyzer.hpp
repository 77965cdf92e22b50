#pragma once
// The state of a BoundAnalyzer (its Impl) and helpers shared by the files of
// the bounds: lib/analysis/bounds.cpp (boxes, nominal points, margins),
// bounds_global.cpp, bounds_interval.cpp, bounds_linear.cpp and
// local_lipschitz.cpp.

#include <tacit/analysis/bounds.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include <oneapi/tbb/collaborative_call_once.h>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>

#include "analysis/detail/activation_bounds.hpp"
#include "analysis/detail/global_bound.hpp"
#include "analysis/detail/rounding.hpp"

namespace tacit::inline v1 {

namespace detail {
// The largest T not above v (a lower bound stays a lower bound in T).
template <class T> T round_down(double v) {
  T t = static_cast<T>(v);
  if (double(t) > v)
    t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  return t;
}
// The smallest T not below v.
template <class T> T round_up(double v) {
  T t = static_cast<T>(v);
  if (double(t) < v)
    t = std::nextafter(t, std::numeric_limits<T>::infinity());
  return t;
}

// Back-substitution through a strictly block lower triangular A, block
// column b from `top` (default: the last) to the first: add(op, o0, r0, r1)
// adds an entry's transposed product, read from its (already final) block
// row starting at o0, into rows [r0, r1) of block b; close(r0, r1) then
// finalises block b. Entries from block rows above `top` are skipped.
template <class T, class Add, class Close>
void reverse_block_sweep(const BlockStructure<T> &A, Add &&add, Close &&close,
                         index_t top = -1) {
  const auto entries = A.entries();
  if (top < 0)
    top = A.row_blocks() - 1;
  for (index_t b = top; b >= 0; --b) {
    const index_t r0 = A.row_offset(b), r1 = A.row_offset(b + 1);
    for (const index_t e : A.entries_in_col(b)) {
      const BlockEntry<T> &entry = entries[static_cast<std::size_t>(e)];
      if (entry.block_row > top)
        continue;
      add(*entry.op, A.row_offset(entry.block_row), r0, r1);
    }
    close(r0, r1);
  }
}

// Buffers of the linear bound, kept across the chunks of one analysis so
// that each chunk does not fault in fresh pages.
template <class T> struct LinearWork {
  std::vector<T> V, LV, next;
  std::vector<T> a; ///< B^T Lambda(V) + Du of the last bound (when asked for)
  /// Relative rounding allowance of a bound's magnitude (see bounds.hpp).
  double rounding = 0;
  /// Columns of the last call, and the rows of LV it may have left nonzero.
  index_t k = -1, dirty = 0;
};

// An objective term on a pre-activation: column `col` of the bound includes
// value * z_row (refinement: the bounds of z_row themselves).
template <class T> struct Seed {
  index_t row = 0, col = 0;
  T value = 0;
};

} // namespace detail

using detail::ActKind;
using detail::magnitudes;
using detail::Relaxation;
using detail::reverse_block_sweep;
using detail::round_down;
using detail::round_up;

namespace detail {
// Explicit entries of the model's operators for the double-double states
// of BoundAnalyzer::linear_region (linear_region.cpp).
template <class T> struct RegionEntries;
} // namespace detail

template <class T> struct BoundAnalyzer<T>::Impl {
  Model<T> model;
  /// Materialised once by the first linear_region call.
  mutable oneapi::tbb::collaborative_once_flag region_once;
  mutable std::shared_ptr<const detail::RegionEntries<T>> region_entries;
  BoundOptions options;
  std::vector<detail::StateAct> acts;
  /// Lipschitz constants of the activations, rounded up to T.
  std::vector<T> lip;
  std::vector<std::vector<index_t>> level_states;
  bool nilpotent = false;
  /// A when it is strictly block lower triangular: the global and interval
  /// bounds are then one forward sweep over its blocks, the linear bound's
  /// back-substitution one reverse sweep.
  const BlockStructure<T> *sweep = nullptr;
  /// The blocks of each level (sweep only).
  std::vector<std::vector<index_t>> level_blocks;
  /// States whose row of A is zero: z_i = B_i u + b_i is linear in u, so its
  /// interval over the box is already exact and refining it gains nothing.
  std::vector<char> input_only;
  std::vector<T> cert_v;
  double rho = 1;
  bool certified = false;
  /// Relative rounding allowances of products with A, B, C and D (gamma of
  /// detail::product_gamma, against the majorants of rounding.hpp), the
  /// largest of them, and that plus the final sums of n + p + q terms in
  /// double.
  double gA = 0, gB = 0, gC = 0, gD = 0, gamma = 0, gamma_sum = 0;

  Impl(const Model<T> &m, BoundOptions o) : model(m), options(o) {}

  // The interval bound started from the global one (bounds_interval.cpp).
  StateBounds<T> interval_from(StateBounds<T> global, const InputBox<T> &box) const;
  // The linear state bounds started from the interval ones (bounds_linear.cpp).
  StateBounds<T> linear_from(StateBounds<T> interval, const InputBox<T> &box,
                             LinearBoundStats *stats) const;
  // Back-substitution of the linear bound (bounds_linear.cpp).
  std::vector<T> linear_kernel(const StateBounds<T> &bounds, const InputBox<T> &box,
                               detail::LinearWork<T> &work,
                               std::span<const detail::Seed<T>> seeds, std::vector<T> Du,
                               std::vector<double> cst, index_t k, int *iterations,
                               const T *lower_slopes = nullptr, bool *was_exact = nullptr,
                               index_t top = -1,
                               const std::vector<T> *reach = nullptr) const;
  // reach = Ahat xmag + Bhat umag (the magnitude of the pre-activations), for
  // the rows of the given blocks (sweep), or all rows.
  void preactivation_reach(const StateBounds<T> &bounds, const InputBox<T> &box,
                           const std::vector<index_t> *blocks,
                           std::vector<T> &reach) const;
  // Optimised lower ReLU slopes for the margins of W (bounds_linear.cpp):
  // projected Adam on the bound of each margin from the adaptive slopes,
  // keeping the best bound of each; returns those bounds.
  std::vector<T> optimise_slopes(const StateBounds<T> &bounds, const InputBox<T> &box,
                                 const std::vector<T> &W, const std::vector<T> &Du,
                                 const std::vector<double> &cst, index_t k,
                                 std::vector<T> best) const;

  index_t n() const { return model.states(); }
  index_t p() const { return model.inputs(); }
  index_t q() const { return model.outputs(); }

  int budget() const {
    return nilpotent ? static_cast<int>(level_states.size()) + 2
                     : std::max(1, options.max_iterations);
  }

  // y = Mhat x + beta y with M's rounding majorant (|M| for stored matrices).
  static void abs_apply(const LinearOperator<T> &M, bool transposed, std::span<const T> x,
                        T beta, std::span<T> y) {
    detail::majorant_apply(M, transposed, x, beta, y);
  }

  // One step of the global bound's map, rounded upward:
  //   out = (1 + gA) (lip .* fl(Ahat w)) + s.
  // fl(Ahat w) >= (1 - gamma_k) Ahat w >= (1 - gamma_k) |A| w, and the
  // product with lip, the factor and the sum add three roundings: with
  // gA >= 2 gamma_k + 16 u, out >= L |A| w + s - u |s| for every w >= 0; s
  // carries its own factor (1 + gA), so out >= L |A| w + s exactly.
  void global_step(std::span<const T> w, std::span<const T> s, std::span<T> out) const {
    abs_apply(model.A(), false, w, T(0), out);
    const T f = T(1) + static_cast<T>(gA);
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = f * (lip[i] * out[i]) + s[i];
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
    // Rounding of B uc and Bhat ur: gB Bhat (|uc| + ur), through the radius.
    // (The centre and radius of the box are themselves rounded: the box
    // [uc - ur, uc + ur] may miss its ends by u (|uc| + ur), also covered.)
    const T g = static_cast<T>(gB);
    for (index_t j = 0; j < np; ++j)
      ur[j] += g * (std::abs(uc[j]) + ur[j]);
    abs_apply(model.B(), false, std::span<const T>(ur), T(0), std::span<T>(zr));
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
  // magnitudes: sum_r |G_rj| (gC Chat xmag + gD Dhat umag)_r, doubled as an
  // allowance (the products' own cancellation is not in |W|).
  std::vector<double> output_rounding(const StateBounds<T> &bounds,
                                      const InputBox<T> &box,
                                      ConstMatrixView<T> G) const {
    const std::vector<T> xmag = magnitudes(bounds.x_lower, bounds.x_upper);
    std::vector<T> rc(q(), T(0)), rd(q(), T(0));
    abs_apply(model.C(), false, std::span<const T>(xmag), T(0), std::span<T>(rc));
    if (model.D()) {
      const std::vector<T> umag = magnitudes(box.lower, box.upper);
      abs_apply(*model.D(), false, std::span<const T>(umag), T(0), std::span<T>(rd));
    }
    std::vector<double> out(G.cols, 0.0);
    for (index_t r = 0; r < q(); ++r) {
      const double reach = gC * double(rc[r]) + gD * double(rd[r]);
      for (index_t j = 0; j < G.cols; ++j)
        out[j] += std::abs(double(G(r, j))) * reach;
    }
    for (auto &v : out)
      v *= 2;
    return out;
  }

  // The columns of the margins and output bounds of `label` (q x 3q,
  // row-major): G = [e_label - e_k (k = 0..q-1), e_j, -e_j].
  std::vector<T> margin_columns(int label) const {
    const index_t nq = q(), k = 3 * nq;
    std::vector<T> G(static_cast<std::size_t>(nq * k), T(0));
    for (index_t j = 0; j < nq; ++j) {
      G[label * k + j] += T(1);
      G[j * k + j] -= T(1);
      G[j * k + nq + j] = T(1);
      G[j * k + 2 * nq + j] = T(-1);
    }
    return G;
  }

  // The lower bounds lb of margin_columns(label) as MarginBounds.
  MarginBounds<T> margin_bounds(const std::vector<T> &lb, int label,
                                BoundStatus status) const {
    const index_t nq = q();
    MarginBounds<T> out;
    out.label = label;
    out.status = status;
    out.margin_lower.assign(lb.begin(), lb.begin() + nq);
    out.margin_lower[label] = T(0);
    out.y_lower.assign(lb.begin() + nq, lb.begin() + 2 * nq);
    out.y_upper.resize(static_cast<std::size_t>(nq));
    for (index_t j = 0; j < nq; ++j)
      out.y_upper[j] = -lb[2 * nq + j];
    return out;
  }

  // acc_j += the least of W_j^T x over [xl, xh] plus Du_j^T u over the box
  // (interval arithmetic, W n x k, Du p x k), mag_j += the magnitudes of the
  // terms for the rounding allowance.
  void add_interval_terms(const std::vector<T> &xl, const std::vector<T> &xh,
                          const InputBox<T> &box, const std::vector<T> &W,
                          const std::vector<T> &Du, index_t k, std::vector<double> &acc,
                          std::vector<double> &mag) const {
    for (index_t i = 0; i < n(); ++i) {
      const double xm = std::max(std::abs(double(xl[i])), std::abs(double(xh[i])));
      for (index_t j = 0; j < k; ++j) {
        acc[j] += detail::min_product(W[i * k + j], xl[i], xh[i]);
        mag[j] += std::abs(double(W[i * k + j])) * xm;
      }
    }
    for (index_t i = 0; i < p(); ++i) {
      const double um =
          std::max(std::abs(double(box.lower[i])), std::abs(double(box.upper[i])));
      for (index_t j = 0; j < k; ++j) {
        acc[j] += detail::min_product(Du[i * k + j], box.lower[i], box.upper[i]);
        mag[j] += std::abs(double(Du[i * k + j])) * um;
      }
    }
  }

  // zc = sum of the entries of block row blk applied to the centres m, zr =
  // their majorants applied to the radii rr (one block of a forward sweep).
  void block_products(index_t blk, const std::vector<T> &m, const std::vector<T> &rr,
                      std::vector<T> &zc, std::vector<T> &zr) const {
    const BlockStructure<T> &A = *sweep;
    const auto entries = A.entries();
    const auto rows = static_cast<std::size_t>(A.row_offset(blk + 1) - A.row_offset(blk));
    zc.assign(rows, T(0));
    zr.assign(rows, T(0));
    for (const index_t e : A.entries_in_row(blk)) {
      const BlockEntry<T> &en = entries[static_cast<std::size_t>(e)];
      const index_t c0 = A.col_offset(en.block_col);
      const auto cn = static_cast<std::size_t>(A.col_block_size(en.block_col));
      en.op->apply(Mode::normal, T(1), std::span<const T>(m.data() + c0, cn), T(1),
                   std::span<T>(zc));
      abs_apply(*en.op, false, std::span<const T>(rr.data() + c0, cn), T(1),
                std::span<T>(zr));
    }
  }

  // Centre m and widened radius rr = r + gA (|m| + r) of the state interval
  // [xl, xh]: [m - r, m + r] contains it up to u (|m| + r), and A m is off
  // by at most gA Ahat |m|, so A m +- Ahat rr encloses A x over it.
  void state_centre(const std::vector<T> &xl, const std::vector<T> &xh, index_t i0,
                    index_t i1, std::vector<T> &m, std::vector<T> &rr) const {
    const T g = static_cast<T>(gA);
    for (index_t i = i0; i < i1; ++i) {
      m[i] = xl[i] / 2 + xh[i] / 2;
      const T r = xh[i] / 2 - xl[i] / 2;
      rr[i] = r + g * (std::abs(m[i]) + r);
    }
  }

  // Pre-activation interval of rows [i0, i1) from the centre A m + (B uc + b)
  // and the radius Ahat rr + br of their products (zc, zr), widened by the
  // rounding of the sums.
  void close_preactivation(const std::vector<T> &zc, const std::vector<T> &zr,
                           index_t off, const std::vector<T> &bc,
                           const std::vector<T> &br, index_t i0, index_t i1,
                           std::vector<T> &zl, std::vector<T> &zh) const {
    const T g = static_cast<T>(gA);
    for (index_t i = i0; i < i1; ++i) {
      const T c = zc[i - off] + bc[i];
      const T rad = zr[i - off] + br[i] + g * (std::abs(c) + zr[i - off] + br[i]);
      zl[i] = c - rad;
      zh[i] = c + rad;
    }
  }

  // Pre-activation interval from state bounds: z = A x + (B u + b).
  void preactivation(const std::vector<T> &xl, const std::vector<T> &xh,
                     const std::vector<T> &bc, const std::vector<T> &br,
                     std::vector<T> &zl, std::vector<T> &zh) const {
    const index_t nn = n();
    std::vector<T> m(nn), rr(nn), zc(nn), zr(nn);
    state_centre(xl, xh, 0, nn, m, rr);
    model.A().apply(Mode::normal, T(1), std::span<const T>(m), T(0), std::span<T>(zc));
    abs_apply(model.A(), false, std::span<const T>(rr), T(0), std::span<T>(zr));
    zl.resize(nn);
    zh.resize(nn);
    close_preactivation(zc, zr, 0, bc, br, 0, nn, zl, zh);
  }

  // Intersects state i's bounds with phi([zl, zh]) and its pre-activation
  // bounds with [zl, zh]. Every enclosure is sound, so they cannot cross;
  // crossing means an unsound input (a nominal point whose residual is
  // understated) or an unsound rounding allowance, reported rather than
  // hidden. Returns the relative shrink of the state interval.
  double tighten(StateBounds<T> &s, index_t i, T zl, T zh) const {
    if (!s.z_lower.empty()) {
      zl = std::max(zl, s.z_lower[i]);
      zh = std::min(zh, s.z_upper[i]);
    }
    const T lo = std::max(s.x_lower[i], acts[i].apply_lower(zl));
    const T hi = std::min(s.x_upper[i], acts[i].apply_upper(zh));
    if (zh < zl || hi < lo)
      throw Error("bounds: the enclosures of state " + std::to_string(i) +
                  " do not intersect (pre-activation [" + std::to_string(double(zl)) +
                  ", " + std::to_string(double(zh)) + "], state [" +
                  std::to_string(double(lo)) + ", " + std::to_string(double(hi)) +
                  "]): the nominal point is not an equilibrium within its recorded "
                  "residual, or a rounding allowance is too small");
    const double width = double(s.x_upper[i]) - double(s.x_lower[i]);
    const double shrink = double(lo - s.x_lower[i]) + double(s.x_upper[i] - hi);
    s.x_lower[i] = lo;
    s.x_upper[i] = hi;
    s.z_lower[i] = zl;
    s.z_upper[i] = zh;
    return shrink > 0 ? (width > 0 ? shrink / width : 1.0) : 0.0;
  }

  // One interval step; returns the largest relative shrink.
  double interval_step(StateBounds<T> &s, const std::vector<T> &bc,
                       const std::vector<T> &br) const {
    std::vector<T> zl, zh;
    preactivation(s.x_lower, s.x_upper, bc, br, zl, zh);
    const T inf = std::numeric_limits<T>::infinity();
    if (s.z_lower.empty()) {
      s.z_lower.assign(n(), -inf);
      s.z_upper.assign(n(), inf);
    }
    double change = 0;
    for (index_t i = 0; i < n(); ++i)
      change = std::max(change, tighten(s, i, zl[i], zh[i]));
    return change;
  }

  // The interval bound of a strictly block lower triangular A in one forward
  // sweep: every block row reads blocks that are final, so this is the
  // fixed point of interval_step (depth + 1 steps) at the cost of one step.
  // Each block entry is applied separately, so the radius uses the sum of
  // the entries' majorants.
  // With `blocks`, only those blocks are swept (all reading final blocks).
  void interval_sweep(StateBounds<T> &s, const std::vector<T> &bc,
                      const std::vector<T> &br,
                      const std::vector<index_t> *blocks = nullptr) const {
    const BlockStructure<T> &A = *sweep;
    const index_t nn = n();
    const T inf = std::numeric_limits<T>::infinity();
    if (s.z_lower.empty()) {
      s.z_lower.assign(nn, -inf);
      s.z_upper.assign(nn, inf);
    }
    std::vector<T> m(nn), rr(nn), zc, zr, zl(nn), zh(nn);
    if (blocks) // centres of the blocks read
      state_centre(s.x_lower, s.x_upper, 0, nn, m, rr);
    const index_t count = blocks ? static_cast<index_t>(blocks->size()) : A.row_blocks();
    for (index_t t = 0; t < count; ++t) {
      const index_t blk = blocks ? (*blocks)[t] : t;
      const index_t r0 = A.row_offset(blk), r1 = A.row_offset(blk + 1);
      block_products(blk, m, rr, zc, zr);
      close_preactivation(zc, zr, r0, bc, br, r0, r1, zl, zh);
      for (index_t i = r0; i < r1; ++i)
        tighten(s, i, zl[i], zh[i]);
      state_centre(s.x_lower, s.x_upper, r0, r1, m, rr);
    }
  }
};

} // namespace tacit::inline v1
