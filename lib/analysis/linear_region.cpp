// The linear region of a piecewise-linear feed-forward model around an input
// (LinearRegion in bounds.hpp): states and outputs at u0 in double-double
// arithmetic, the Jacobian under the activation pattern at u0 pushed through
// the network's operators a block of columns at a time, and a-priori bounds
// of every rounding, so that the radius and the margins hold for the exact
// real-number model.
//
// Why double-double: an error e introduced at a level reaches the next
// through |A| (a bound cannot use the signs of an error it does not know),
// and |A| grows a vector about 50x per residual block of ResNet20 where A
// itself grows it about 2x. The rounding of a double forward pass (about
// 1e-13 relative per convolution) thus bounds the last states' error by
// ~1e5, far above the margins; at 106 bits the same growth ends near 1e-9.
// The Jacobian's own rounding grows alike but scales with the radius, so
// double (or T) suffices for it.

#include "analysis/detail/bound_analyzer.hpp"

#include <chrono>
#include <unordered_map>

#include <oneapi/tbb/collaborative_call_once.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

namespace tacit::inline v1 {

namespace detail {

namespace {
constexpr double kUnit = 0x1p-53; // unit roundoff of double

double gamma_of(double terms) {
  const double ku = terms * kUnit;
  return ku / (1 - ku);
}

// Sum of products with error-free transformations at three levels (as in
// Ogita, Rump and Oishi's DotK with K = 3): every product is split exactly
// by TwoProduct, the running sum s and the sum c of its errors are kept by
// TwoSum, and only the errors of c (d) are summed in plain double. The
// sum's error is then about n^3 u^3 sum |terms| plus the final rounding to
// hi + lo (u^2 |sum|): the 106 bits of the stored states, not the
// accumulation, set the precision. (Two levels, Dot2, leave n^2 u^2 sum
// |terms|, ~1e-25 for ResNet20's 576-term rows, which |A| grows past the
// margins of a deep network.) err bounds the error carried in from the
// inputs.
struct Accumulator {
  double s = 0, c = 0, d = 0, mag = 0, err = 0, terms = 0;

  static void two_sum(double a, double b, double &sum, double &e) {
    sum = a + b;
    const double bb = sum - a;
    e = (a - (sum - bb)) + (b - bb);
  }
  void to_c(double v) {
    double e = 0;
    two_sum(c, v, c, e);
    d += e;
  }
  void add(double h, double l, double e) {
    double e1 = 0;
    two_sum(s, h, s, e1);
    to_c(e1);
    to_c(l);
    mag += std::abs(h) + std::abs(l);
    err += e;
    terms += 2;
  }
  // v (xh + xl), with |x - (xh + xl)| <= xe; entry_exact says whether v is
  // the exact entry of the real operator (else it is off by u |v|).
  void add_product(double v, double xh, double xl, double xe, bool entry_exact) {
    const double p = v * xh;
    const double pe = std::fma(v, xh, -p);
    const double q = v * xl;
    const double qe = std::fma(v, xl, -q);
    double e1 = 0;
    two_sum(s, p, s, e1);
    to_c(e1);
    to_c(pe);
    to_c(q);
    d += qe;
    const double av = std::abs(v);
    const double m = av * (std::abs(xh) + std::abs(xl));
    mag += m;
    err += av * xe + (entry_exact ? 0.0 : kUnit * m);
    terms += 2;
  }
  // The sum as hi + lo and a bound of its distance to the exact sum of the
  // exact terms. With N = 2 terms the number of values entering c and d
  // (at most 2 per term added): s + c + d equals the exact sum up to the
  // plain summation of d, whose N terms are TwoSum errors of c (each at
  // most u times a partial sum of c, itself at most N u mag) and product
  // errors of the lo parts (at most u^2 mag in all): |d| <= (N^2 + 1) u^2
  // mag, and its rounding is at most gamma_N of that. Then hi + lo =
  // fl2(s + c + d) adds u (|t| + |d|) <= u^2 |hi| + u |d|. err and mag
  // were summed in double, low by at most gamma_terms relative; the factor
  // 4 covers the counting.
  void finish(double &hi, double &lo, double &e) const {
    double t = 0;
    two_sum(s, c, hi, t);
    lo = t + d;
    double h2 = 0, l2 = 0;
    two_sum(hi, lo, h2, l2); // renormalised: |lo| <= u |hi|
    hi = h2;
    lo = l2;
    const double N = 2 * terms + 4;
    const double gs = 1 + gamma_of(terms + 2);
    const double dmax = (N * N + 1) * kUnit * kUnit * mag * gs;
    e = (err * gs + 4 * (gamma_of(N) * dmax + kUnit * dmax +
                         kUnit * kUnit * (std::abs(hi) + std::abs(lo)))) *
        (1 + 4 * kUnit);
  }
};

// A vector to ~106 bits: hi + lo, and a bound of the distance to the exact.
struct DDVector {
  std::vector<double> hi, lo, err;
  explicit DDVector(std::size_t n = 0) : hi(n, 0.0), lo(n, 0.0), err(n, 0.0) {}
};

bool power_of_two_or_zero(double v) {
  if (v == 0)
    return true;
  int e = 0;
  return std::frexp(std::abs(v), &e) == 0.5;
}
} // namespace

// Leaves of the operator trees (what is neither composed nor block
// structured) as explicit entries.
template <class T> struct RegionEntries {
  struct Leaf {
    CsrMatrix<T> csr;
    bool exact = true; ///< entries are the real operator's exactly
  };
  std::unordered_map<const LinearOperator<T> *, Leaf> leaves;

  void add(const LinearOperator<T> &op) {
    if (const auto *c = capability<ComposedOperator<T>>(op)) {
      add(*c->left());
      add(*c->right());
      return;
    }
    if (const auto *b = capability<BlockStructured<T>>(op)) {
      for (const auto &e : b->block_structure().entries())
        add(*e.op);
      return;
    }
    if (leaves.count(&op))
      return;
    Leaf leaf{op.to_csr(), true};
    // Stored entries (matrices, convolution weights, diagonals, padding) are
    // the operator's own numbers. Anything else (pooling divides by the
    // window size) is exact when every entry is a power of two; else each
    // entry may be off by u relative.
    const bool stored = capability<CsrMatrix<T>>(op) ||
                        capability<Conv2dOperator<T>>(op) ||
                        capability<DiagonalForm<T>>(op) || capability<DenseForm<T>>(op) ||
                        capability<ChannelPadOperator<T>>(op);
    if (!stored)
      for (const T v : leaf.csr.values())
        if (!power_of_two_or_zero(double(v))) {
          leaf.exact = false;
          break;
        }
    leaves.emplace(&op, std::move(leaf));
  }

  // acc[i] += (op x)_i for x given as hi + lo with error err (spans of
  // op.cols()), acc of op.rows().
  void accumulate(const LinearOperator<T> &op, std::span<const double> xh,
                  std::span<const double> xl, std::span<const double> xe,
                  std::span<Accumulator> acc) const {
    if (const auto *c = capability<ComposedOperator<T>>(op)) {
      const auto &R = *c->right();
      std::vector<Accumulator> mid(static_cast<std::size_t>(R.rows()));
      accumulate(R, xh, xl, xe, mid);
      DDVector t(mid.size());
      for (std::size_t i = 0; i < mid.size(); ++i)
        mid[i].finish(t.hi[i], t.lo[i], t.err[i]);
      accumulate(*c->left(), t.hi, t.lo, t.err, acc);
      return;
    }
    if (const auto *b = capability<BlockStructured<T>>(op)) {
      const BlockStructure<T> &s = b->block_structure();
      for (const auto &e : s.entries()) {
        const auto c0 = static_cast<std::size_t>(s.col_offset(e.block_col));
        const auto cn = static_cast<std::size_t>(s.col_block_size(e.block_col));
        const auto r0 = static_cast<std::size_t>(s.row_offset(e.block_row));
        const auto rn = static_cast<std::size_t>(s.row_block_size(e.block_row));
        accumulate(*e.op, xh.subspan(c0, cn), xl.subspan(c0, cn), xe.subspan(c0, cn),
                   acc.subspan(r0, rn));
      }
      return;
    }
    const Leaf &leaf = leaves.at(&op);
    const auto rp = leaf.csr.row_ptr();
    const auto vals = leaf.csr.values();
    const bool exact = leaf.exact;
    leaf.csr.visit_columns([&](auto cols) {
      tbb::parallel_for(tbb::blocked_range<index_t>(0, leaf.csr.rows(), 256),
                        [&](const tbb::blocked_range<index_t> &r) {
                          for (index_t i = r.begin(); i < r.end(); ++i) {
                            Accumulator &a = acc[static_cast<std::size_t>(i)];
                            for (auto k = rp[i]; k < rp[i + 1]; ++k) {
                              const auto j = static_cast<std::size_t>(cols[k]);
                              a.add_product(double(vals[k]), xh[j], xl[j], xe[j], exact);
                            }
                          }
                        });
    });
  }
};

} // namespace detail

// ------------------------------------------------------------ LinearRegion

namespace {
// margin_lower(label, k, eps) = a - eps b for eps <= radius, both rounded
// against the bound: a the margin at u0 less its error, b >= the l1
// distance of the exact Jacobian rows.
void margin_terms(const LinearRegion &r, int label, int k, double &a, double &b) {
  const auto l = static_cast<std::size_t>(label), o = static_cast<std::size_t>(k);
  const auto p = static_cast<std::size_t>(r.inputs);
  const double u = detail::kUnit;
  const double m = r.y[l] - r.y[o];
  const double err = (r.y_error[l] + r.y_error[o] + u * std::abs(m)) * (1 + 4 * u);
  a = m - err - 4 * u * (std::abs(m) + err);
  double slope = 0;
  for (std::size_t j = 0; j < p; ++j)
    slope += std::abs(r.jacobian[l * p + j] - r.jacobian[o * p + j]);
  // each difference is off by u, the sum by gamma_p; then the rows' own
  // error bounds, and room for the product with eps and the subtraction.
  b = (slope * (1 + detail::gamma_of(double(p) + 4)) + r.jacobian_error[l] +
       r.jacobian_error[o]) *
      (1 + 8 * u);
}

void check_output(const LinearRegion &r, int k, const char *what) {
  if (k < 0 || k >= r.outputs)
    throw InvalidArgument(std::string("LinearRegion::") + what + ": output " +
                          std::to_string(k) + " is not in [0, " +
                          std::to_string(r.outputs) + ")");
}
} // namespace

double LinearRegion::margin_lower(int label, int k, double eps) const {
  check_output(*this, label, "margin_lower");
  check_output(*this, k, "margin_lower");
  if (!(eps >= 0))
    throw InvalidArgument("LinearRegion::margin_lower: eps must be >= 0");
  if (k == label)
    return 0.0;
  if (eps > radius)
    return -std::numeric_limits<double>::infinity();
  double a = 0, b = 0;
  margin_terms(*this, label, k, a, b);
  return a - eps * b;
}

std::pair<double, double> LinearRegion::output_bounds(int k, double eps) const {
  check_output(*this, k, "output_bounds");
  if (!(eps >= 0))
    throw InvalidArgument("LinearRegion::output_bounds: eps must be >= 0");
  const double inf = std::numeric_limits<double>::infinity();
  if (eps > radius)
    return {-inf, inf};
  const auto o = static_cast<std::size_t>(k);
  const auto p = static_cast<std::size_t>(inputs);
  const double u = detail::kUnit;
  double norm = 0;
  for (std::size_t j = 0; j < p; ++j)
    norm += std::abs(jacobian[o * p + j]);
  norm = (norm * (1 + detail::gamma_of(double(p) + 2)) + jacobian_error[o]) * (1 + 4 * u);
  const double w = (y_error[o] + eps * norm) * (1 + 4 * u);
  return {y[o] - w - 2 * u * std::abs(y[o]), y[o] + w + 2 * u * std::abs(y[o])};
}

double LinearRegion::certified_radius(int label) const {
  check_output(*this, label, "certified_radius");
  double r = radius;
  for (int k = 0; k < outputs; ++k) {
    if (k == label)
      continue;
    double a = 0, b = 0;
    margin_terms(*this, label, k, a, b);
    if (!(a > 0))
      return 0.0;
    if (b > 0)
      r = std::min(r, a / b * (1 - 4 * detail::kUnit));
  }
  // a - r b > 0 for r < a / b; the factor keeps the computed product below.
  for (int k = 0; k < outputs; ++k)
    if (k != label && !(margin_lower(label, k, r) > 0))
      return 0.0;
  return r;
}

// ------------------------------------------------------------ the analyzer

template <class T>
bool BoundAnalyzer<T>::linear_region_supported(std::string *why) const {
  const auto &I = *impl_;
  if (!I.sweep) {
    if (why)
      *why = "A is not strictly block lower triangular (the linear region needs a "
             "feed-forward network with its block structure)";
    return false;
  }
  const auto acts = I.model.activations();
  for (index_t i = 0; i < I.n(); ++i) {
    const auto kind = acts[static_cast<std::size_t>(i)].kind;
    if (kind != ActivationKind::relu && kind != ActivationKind::leaky_relu &&
        kind != ActivationKind::identity) {
      if (why)
        *why = "state " + std::to_string(i) +
               " has a smooth activation (the linear region needs ReLU, leaky ReLU "
               "or identity)";
      return false;
    }
  }
  return true;
}

namespace {
// The checks shared by precise_nominal and linear_region.
template <class T>
void check_region_input_of(const BoundAnalyzer<T> &an, const NominalPoint<T> &nom,
                           const char *what) {
  std::string why;
  if (!an.linear_region_supported(&why))
    throw Unsupported(std::string(what) + ": " + why);
  const index_t p = an.model().inputs();
  if (static_cast<index_t>(nom.u.size()) != p)
    throw InvalidArgument(std::string(what) + ": the nominal point has " +
                          std::to_string(nom.u.size()) +
                          " inputs, the model p = " + std::to_string(p));
}
} // namespace

template <class T>
PreciseNominal
BoundAnalyzer<T>::precise_nominal_in_arena(const NominalPoint<T> &nom) const {
  const auto start = std::chrono::steady_clock::now();
  const auto &I = *impl_;
  const Model<T> &model = I.model;
  const index_t n = I.n(), p = I.p(), q = I.q();
  check_region_input_of(*this, nom, "precise_nominal");
  oneapi::tbb::collaborative_call_once(I.region_once, [&] {
    auto entries = std::make_shared<detail::RegionEntries<T>>();
    entries->add(model.A());
    entries->add(model.B());
    entries->add(model.C());
    if (model.D())
      entries->add(*model.D());
    I.region_entries = std::move(entries);
  });
  const detail::RegionEntries<T> &E = *I.region_entries;
  const BlockStructure<T> &A = *I.sweep;
  const auto blk_entries = A.entries();
  const auto acts = model.activations();

  // --- States at u0 to ~106 bits, block by block.
  const auto un = static_cast<std::size_t>(n);
  std::vector<double> u0(static_cast<std::size_t>(p)),
      zero(static_cast<std::size_t>(p), 0.0);
  for (index_t j = 0; j < p; ++j)
    u0[j] = double(nom.u[j]);
  std::vector<detail::Accumulator> acc(un);
  {
    const auto b = model.bias_x();
    for (index_t i = 0; i < n; ++i)
      acc[i].add(double(b[i]), 0.0, 0.0);
    E.accumulate(model.B(), u0, zero, zero, acc);
  }
  detail::DDVector z(un), x(un);
  for (index_t blk = 0; blk < A.row_blocks(); ++blk) {
    const index_t r0 = A.row_offset(blk), r1 = A.row_offset(blk + 1);
    const auto rows = std::span<detail::Accumulator>(acc).subspan(
        static_cast<std::size_t>(r0), static_cast<std::size_t>(r1 - r0));
    for (const index_t e : A.entries_in_row(blk)) {
      const BlockEntry<T> &en = blk_entries[static_cast<std::size_t>(e)];
      const auto c0 = static_cast<std::size_t>(A.col_offset(en.block_col));
      const auto cn = static_cast<std::size_t>(A.col_block_size(en.block_col));
      E.accumulate(*en.op, std::span<const double>(x.hi).subspan(c0, cn),
                   std::span<const double>(x.lo).subspan(c0, cn),
                   std::span<const double>(x.err).subspan(c0, cn), rows);
    }
    for (index_t i = r0; i < r1; ++i) {
      acc[i].finish(z.hi[i], z.lo[i], z.err[i]);
      const Activation &a = acts[static_cast<std::size_t>(i)];
      const bool positive = z.hi[i] > 0 || (z.hi[i] == 0 && z.lo[i] > 0);
      double s = 1;
      if (a.kind == ActivationKind::relu)
        s = positive ? 1 : 0;
      else if (a.kind == ActivationKind::leaky_relu)
        s = positive ? 1 : a.slope;
      if (s == 1) {
        x.hi[i] = z.hi[i];
        x.lo[i] = z.lo[i];
        x.err[i] = z.err[i];
      } else if (s == 0) {
        // The exact z is within err of a non-positive number: 0 <= relu(z) <= err.
        x.err[i] = z.err[i];
      } else {
        // s (hi + lo): hi's product exact, lo's rounded (<= u |s lo|); phi is
        // max(1, s)-Lipschitz.
        const double ph = s * z.hi[i];
        const double pe = std::fma(s, z.hi[i], -ph);
        x.hi[i] = ph;
        x.lo[i] = pe + s * z.lo[i];
        x.err[i] = (std::max(1.0, s) * z.err[i] + 2 * detail::kUnit * std::abs(x.lo[i])) *
                   (1 + 4 * detail::kUnit);
      }
    }
  }
  // Outputs at u0.
  PreciseNominal out;
  out.y.resize(static_cast<std::size_t>(q));
  out.y_error.resize(static_cast<std::size_t>(q));
  {
    std::vector<detail::Accumulator> ya(static_cast<std::size_t>(q));
    const auto c = model.bias_y();
    for (index_t k = 0; k < q; ++k)
      ya[k].add(double(c[k]), 0.0, 0.0);
    E.accumulate(model.C(), x.hi, x.lo, x.err, ya);
    if (model.D())
      E.accumulate(*model.D(), u0, zero, zero, ya);
    for (index_t k = 0; k < q; ++k) {
      double h = 0, l = 0, e = 0;
      ya[k].finish(h, l, e);
      out.y[k] = h + l;
      out.y_error[k] = (e + detail::kUnit * std::abs(out.y[k])) * (1 + 4 * detail::kUnit);
    }
  }
  out.z_hi = std::move(z.hi);
  out.z_lo = std::move(z.lo);
  out.z_error = std::move(z.err);
  out.x_hi = std::move(x.hi);
  out.x_lo = std::move(x.lo);
  out.x_error = std::move(x.err);
  out.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

template <class T>
LinearRegion BoundAnalyzer<T>::linear_region_in_arena(const NominalPoint<T> &nom) const {
  const auto start = std::chrono::steady_clock::now();
  const auto &I = *impl_;
  const Model<T> &model = I.model;
  const index_t n = I.n(), p = I.p(), q = I.q();
  check_region_input_of(*this, nom, "linear_region");
  const auto un = static_cast<std::size_t>(n);
  // The states at u0 to ~106 bits: the nominal point's own when it has them.
  PreciseNominal computed;
  const PreciseNominal *pn = nom.precise.get();
  if (!pn || pn->z_hi.size() != un || pn->y.size() != static_cast<std::size_t>(q)) {
    computed = precise_nominal_in_arena(nom);
    pn = &computed;
  }
  const BlockStructure<T> &A = *I.sweep;
  const auto blk_entries = A.entries();
  const auto acts = model.activations();
  struct {
    const std::vector<double> &hi, &lo, &err;
  } z{pn->z_hi, pn->z_lo, pn->z_error};
  // The activation pattern at u0: the slope of each state.
  std::vector<T> slope(un);
  for (index_t i = 0; i < n; ++i) {
    const Activation &a = acts[static_cast<std::size_t>(i)];
    const bool positive = z.hi[i] > 0 || (z.hi[i] == 0 && z.lo[i] > 0);
    double s = 1;
    if (a.kind == ActivationKind::relu)
      s = positive ? 1 : 0;
    else if (a.kind == ActivationKind::leaky_relu)
      s = positive ? 1 : a.slope;
    slope[i] = static_cast<T>(s);
  }
  LinearRegion out;
  out.inputs = p;
  out.outputs = q;
  out.y = pn->y;
  out.y_error = pn->y_error;

  // --- Row norms of the Jacobian under the pattern, a block of columns at
  // a time: X = diag(slope) (A X + B E) for the identity columns E.
  const index_t width = std::max<index_t>(1, std::min(I.options.region_columns, p));
  std::vector<double> rz(un, 0.0);
  out.jacobian.assign(static_cast<std::size_t>(q * p), 0.0);
  std::vector<T> X(static_cast<std::size_t>(n * width)), Ein,
      Y(static_cast<std::size_t>(q * width));
  for (index_t j0 = 0; j0 < p; j0 += width) {
    const index_t k = std::min(width, p - j0);
    Ein.assign(static_cast<std::size_t>(p * k), T(0));
    for (index_t c = 0; c < k; ++c)
      Ein[static_cast<std::size_t>((j0 + c) * k + c)] = T(1);
    const ConstMatrixView<T> Ev{Ein.data(), p, k, k};
    model.B().apply(Mode::normal, T(1), Ev, T(0), MatrixView<T>{X.data(), n, k, k});
    for (index_t blk = 0; blk < A.row_blocks(); ++blk) {
      const index_t r0 = A.row_offset(blk), r1 = A.row_offset(blk + 1);
      const MatrixView<T> Xb{X.data() + r0 * k, r1 - r0, k, k};
      for (const index_t e : A.entries_in_row(blk)) {
        const BlockEntry<T> &en = blk_entries[static_cast<std::size_t>(e)];
        const index_t c0 = A.col_offset(en.block_col);
        en.op->apply(
            Mode::normal, T(1),
            ConstMatrixView<T>{X.data() + c0 * k, A.col_block_size(en.block_col), k, k},
            T(1), Xb);
      }
      tbb::parallel_for(tbb::blocked_range<index_t>(r0, r1, 512),
                        [&](const tbb::blocked_range<index_t> &r) {
                          for (index_t i = r.begin(); i < r.end(); ++i) {
                            T *row = X.data() + i * k;
                            double s = 0;
                            for (index_t c = 0; c < k; ++c)
                              s += std::abs(double(row[c]));
                            rz[i] += s;
                            const T f = slope[i];
                            if (f != T(1))
                              for (index_t c = 0; c < k; ++c)
                                row[c] *= f;
                          }
                        });
    }
    const MatrixView<T> Yv{Y.data(), q, k, k};
    model.C().apply(Mode::normal, T(1), ConstMatrixView<T>{X.data(), n, k, k}, T(0), Yv);
    if (model.D())
      model.D()->apply(Mode::normal, T(1), Ev, T(1), Yv);
    for (index_t r = 0; r < q; ++r)
      for (index_t c = 0; c < k; ++c)
        out.jacobian[static_cast<std::size_t>(r * p + j0 + c)] = double(Yv(r, c));
  }

  // --- Rounding of the Jacobian, as l1 norms of the rows' errors:
  //   dz = (1 + gA) Ahat (dx + gA rx),  dx = s dz (+ u s rz for 0 < s < 1),
  //   dy = (1 + gC) Chat (dx + gC rx),
  // rx = s rz the computed rows' norms (rz summed upward). B E and D E are
  // exact: their products are entries times 1 or 0, each sum has one
  // nonzero term.
  const double sum_factor = 1 + detail::gamma_of(double(p) + 2);
  std::vector<T> dz(un, T(0)), dx(un, T(0)), rx(un, T(0));
  std::vector<double> rz_up(un);
  for (index_t i = 0; i < n; ++i) {
    rz_up[i] = rz[i] * sum_factor;
    rx[i] = round_up<T>(double(slope[i]) * rz_up[i]);
  }
  // Each entry's own gamma (its terms plus the entries summed into its
  // block row): the early, narrow convolutions carry most of the growth.
  const T uT = std::numeric_limits<T>::epsilon();
  T g_most = T(0);
  std::vector<T> tmp;
  for (index_t blk = 0; blk < A.row_blocks(); ++blk) {
    const index_t r0 = A.row_offset(blk), r1 = A.row_offset(blk + 1);
    const auto rn = static_cast<std::size_t>(r1 - r0);
    const auto in_row = A.entries_in_row(blk);
    std::span<T> out_rows(dz.data() + r0, rn);
    for (const index_t e : in_row) {
      const BlockEntry<T> &en = blk_entries[static_cast<std::size_t>(e)];
      const auto c0 = static_cast<std::size_t>(A.col_offset(en.block_col));
      const auto cn = static_cast<std::size_t>(A.col_block_size(en.block_col));
      const T g = round_up<T>(detail::product_gamma<T>(
          detail::product_terms(*en.op) + static_cast<index_t>(in_row.size())));
      g_most = std::max(g_most, g);
      tmp.resize(cn);
      for (std::size_t i = 0; i < cn; ++i)
        tmp[i] = (dx[c0 + i] + g * rx[c0 + i]) * (T(1) + 2 * uT);
      Impl::abs_apply(*en.op, false, std::span<const T>(tmp), T(1), out_rows);
    }
    for (index_t i = r0; i < r1; ++i) {
      dz[i] *= (T(1) + g_most) * (T(1) + 4 * uT);
      const T s = slope[i];
      dx[i] =
          s * dz[i] * (T(1) + 2 * uT) + ((s != T(0) && s != T(1)) ? uT * rx[i] : T(0));
    }
  }
  {
    std::vector<T> dy(static_cast<std::size_t>(q), T(0)), tc(un);
    const T gC = static_cast<T>(I.gC);
    for (index_t i = 0; i < n; ++i)
      tc[i] = (dx[i] + gC * rx[i]) * (T(1) + 2 * uT);
    Impl::abs_apply(model.C(), false, std::span<const T>(tc), T(0), std::span<T>(dy));
    out.jacobian_error.resize(static_cast<std::size_t>(q));
    for (index_t k = 0; k < q; ++k)
      out.jacobian_error[k] = double(dy[k] * (T(1) + gC) * (T(1) + 4 * uT));
  }

  // --- The radius of the pattern: every ReLU-like pre-activation keeps its
  // sign while eps (||J_i||_1 + dz_i) < |z_i| - err_i.
  out.radius = std::numeric_limits<double>::infinity();
  for (index_t i = 0; i < n; ++i) {
    const Activation &a = acts[static_cast<std::size_t>(i)];
    if (a.kind == ActivationKind::identity ||
        (a.kind == ActivationKind::leaky_relu && a.slope == 1))
      continue;
    const double num =
        (std::abs(z.hi[i]) - std::abs(z.lo[i]) - z.err[i]) * (1 - 4 * detail::kUnit);
    const double den = (rz_up[i] + double(dz[i])) * (1 + 4 * detail::kUnit);
    if (den == 0)
      continue; // z_i does not depend on u: its sign is the same everywhere
    if (!(num > 0)) {
      out.radius = 0;
      out.limiting_state = i;
      break;
    }
    const double r = num / den * (1 - 2 * detail::kUnit);
    if (r < out.radius) {
      out.radius = r;
      out.limiting_state = i;
    }
  }
  if (!std::isfinite(out.radius))
    out.radius = std::numeric_limits<double>::max(); // affine everywhere
  out.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template bool BoundAnalyzer<T>::linear_region_supported(std::string *) const;          \
  template LinearRegion BoundAnalyzer<T>::linear_region_in_arena(                        \
      const NominalPoint<T> &) const;                                                    \
  template PreciseNominal BoundAnalyzer<T>::precise_nominal_in_arena(                    \
      const NominalPoint<T> &) const;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
