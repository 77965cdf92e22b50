// Rounding allowances of the bounds (lib/analysis/detail/rounding.hpp and
// their use in bounds*.cpp), checked with zero tolerance: the models are
// evaluated exactly (floating-point expansions) at the vertices of the box
// and at points inside it, or in long double for models with cycles; float
// models are compared with the exact real-number model of their stored
// parameters.
#include <catch2/catch.hpp>
#include <tacit/analysis/bounds.hpp>
#include <tacit/operators/structured.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <type_traits>

#include "analysis/detail/rounding.hpp"
#include "bounds_test_util.hpp"
#include "exact_util.hpp"

using namespace tacit;
using namespace tacit::testutil;

namespace {

/// State blocks of equal consecutive activations.
std::vector<StateBlock> blocks_of(const DenseModel &d) {
  std::vector<StateBlock> out;
  for (index_t i = 0; i < d.n; ++i) {
    if (out.empty() || !(out.back().activation == d.act[i]))
      out.push_back({"s" + std::to_string(i), i, 0, d.act[i]});
    ++out.back().size;
  }
  return out;
}

/// Awkward decimal weights: none is a dyadic fraction, so every product
/// rounds.
double awkward(std::mt19937 &rng, double scale) {
  std::uniform_int_distribution<int> digits(1, 999);
  const double v = digits(rng) / 1000.0 * scale;
  return rng() % 2 ? v : -v;
}

/// A feed-forward network p -> sizes -> q with the given activation per
/// layer (A strictly lower triangular in state order).
DenseModel awkward_mlp(std::mt19937 &rng, index_t p, const std::vector<index_t> &sizes,
                       const std::vector<Activation> &acts, index_t q, double gain) {
  DenseModel m = mlp(rng, p, sizes, q);
  index_t off = 0, prev_off = 0, prev = p;
  for (std::size_t l = 0; l < sizes.size(); ++l) {
    const double sc = gain / std::sqrt(double(prev));
    for (index_t i = 0; i < sizes[l]; ++i) {
      for (index_t j = 0; j < prev; ++j) {
        if (l == 0)
          m.B[(off + i) * p + j] = awkward(rng, sc);
        else
          m.A[(off + i) * m.n + prev_off + j] = awkward(rng, sc);
      }
      m.bx[off + i] = awkward(rng, 0.3);
      m.act[off + i] = acts[l % acts.size()];
    }
    prev_off = off;
    prev = sizes[l];
    off += sizes[l];
  }
  for (index_t k = 0; k < q; ++k) {
    for (index_t j = 0; j < prev; ++j)
      m.C[k * m.n + prev_off + j] = awkward(rng, 1.0 / std::sqrt(double(prev)));
    m.by[k] = awkward(rng, 0.2);
  }
  return m;
}

template <class T> DenseModel held_by(DenseModel d) {
  if constexpr (std::is_same_v<T, float>)
    return rounded_to_float(std::move(d));
  else
    return d;
}

/// Points of the box: every vertex, then interior points.
std::vector<std::vector<double>> box_points(const std::vector<double> &lo,
                                            const std::vector<double> &hi, int interior,
                                            std::mt19937 &rng) {
  const std::size_t p = lo.size();
  std::vector<std::vector<double>> out;
  for (std::size_t v = 0; v < (std::size_t(1) << p); ++v) {
    std::vector<double> u(p);
    for (std::size_t j = 0; j < p; ++j)
      u[j] = (v >> j) & 1 ? hi[j] : lo[j];
    out.push_back(std::move(u));
  }
  std::uniform_real_distribution<double> t(0, 1);
  for (int s = 0; s < interior; ++s) {
    std::vector<double> u(p);
    for (std::size_t j = 0; j < p; ++j)
      u[j] = std::min(hi[j], lo[j] + t(rng) * (hi[j] - lo[j]));
    out.push_back(std::move(u));
  }
  return out;
}

/// Every bound of `an` on the box against the exact model `d` at `points`,
/// with zero tolerance.
template <class T>
void check_exactly(const DenseModel &d, const BoundAnalyzer<T> &an,
                   const InputBox<T> &box, const NominalPoint<T> &nom,
                   const std::vector<std::vector<double>> &points) {
  const StateBounds<T> sb[3] = {an.global_bounds(nom, box), an.interval_bounds(nom, box),
                                an.linear_state_bounds(nom, box)};
  std::vector<MarginBounds<T>> mb[3];
  for (int label = 0; label < d.q; ++label)
    for (int m = 0; m < 3; ++m)
      mb[m].push_back(an.margins(nom, box, label, BoundMethod(m)));
  std::vector<Exact> x, z, y;
  for (const auto &u : points) {
    evaluate_exact(d, u, x, z, y);
    for (int m = 0; m < 3; ++m) {
      CAPTURE(m);
      REQUIRE(sb[m].status != BoundStatus::unbounded);
      for (index_t i = 0; i < d.n; ++i) {
        CAPTURE(i, x[i].approx(), z[i].approx());
        REQUIRE(Exact(double(sb[m].x_lower[i])) <= x[i]);
        REQUIRE(x[i] <= Exact(double(sb[m].x_upper[i])));
        REQUIRE(Exact(double(sb[m].z_lower[i])) <= z[i]);
        REQUIRE(z[i] <= Exact(double(sb[m].z_upper[i])));
      }
      for (int label = 0; label < d.q; ++label)
        for (index_t k = 0; k < d.q; ++k) {
          const auto &r = mb[m][label];
          CAPTURE(label, k);
          REQUIRE(Exact(double(r.margin_lower[k])) <= y[label] - y[k]);
          REQUIRE(Exact(double(r.y_lower[k])) <= y[k]);
          REQUIRE(y[k] <= Exact(double(r.y_upper[k])));
        }
    }
  }
}

} // namespace

TEMPLATE_TEST_CASE(
    "zero tolerance: every bound holds exactly at every vertex and inside "
    "the box, for ReLU, leaky ReLU (slope 0.3 and 1.7), identity and mixed "
    "networks, shallow and deep",
    "[bounds][rounding]", float, double) {
  using T = TestType;
  std::mt19937 rng(2024);
  const Activation relu{}, leaky_small{ActivationKind::leaky_relu, 0.3},
      leaky_steep{ActivationKind::leaky_relu, 1.7}, identity{ActivationKind::identity};
  struct Net {
    const char *name;
    DenseModel d;
    double eps;
  };
  std::vector<Net> nets;
  nets.push_back({"relu", awkward_mlp(rng, 5, {6, 5}, {relu}, 3, 1.5), 0.05});
  nets.push_back({"leaky 1.7", awkward_mlp(rng, 4, {5, 4}, {leaky_steep}, 3, 0.8), 0.05});
  nets.push_back(
      {"mixed layers",
       awkward_mlp(rng, 5, {6, 5, 4}, {relu, leaky_small, identity, leaky_steep}, 3, 1.2),
       0.03});
  {
    DenseModel mixed = awkward_mlp(rng, 4, {6, 6}, {relu}, 3, 1.2);
    const Activation per_state[] = {relu, leaky_small, leaky_steep, identity};
    for (index_t i = 0; i < mixed.n; ++i)
      mixed.act[i] = per_state[i % 4];
    nets.push_back({"mixed states", mixed, 0.04});
  }
  nets.push_back({"deep",
                  awkward_mlp(rng, 3, std::vector<index_t>(14, 3),
                              {relu, leaky_small, leaky_steep}, 2, 1.3),
                  0.02});
  nets.push_back({"linear", awkward_mlp(rng, 4, {5, 4}, {identity}, 3, 1.0), 0.1});
  for (auto &net : nets) {
    INFO(net.name);
    const DenseModel d = held_by<T>(net.d);
    const Model<T> model = make_model_t<T>(d, blocks_of(d));
    BoundAnalyzer<T> an(model);
    REQUIRE(an.feed_forward());
    std::uniform_real_distribution<double> ud(0, 1);
    for (const double eps : {0.0, net.eps}) {
      CAPTURE(eps);
      std::vector<T> u0(d.p);
      for (auto &v : u0)
        v = static_cast<T>(ud(rng));
      const auto nom = an.nominal(std::span<const T>(u0));
      const auto box = linf_box<T>(u0, static_cast<T>(eps));
      const std::vector<double> lo(box.lower.begin(), box.lower.end()),
          hi(box.upper.begin(), box.upper.end());
      check_exactly<T>(d, an, box, nom, box_points(lo, hi, 60, rng));
    }
  }
}

TEMPLATE_TEST_CASE(
    "zero tolerance: on a linear network the linear bound is attained at a "
    "vertex, and stays below it",
    "[bounds][rounding]", float, double) {
  using T = TestType;
  std::mt19937 rng(77);
  const DenseModel d = held_by<T>(
      awkward_mlp(rng, 5, {6, 4}, {Activation{ActivationKind::identity}}, 3, 1.0));
  const Model<T> model = make_model_t<T>(d, blocks_of(d));
  BoundAnalyzer<T> an(model);
  std::vector<T> u0 = {T(0.3), T(0.7), T(0.1), T(0.9), T(0.5)};
  const auto nom = an.nominal(std::span<const T>(u0));
  const auto box = linf_box<T>(u0, T(0.25));
  const std::vector<double> lo(box.lower.begin(), box.lower.end()),
      hi(box.upper.begin(), box.upper.end());
  std::mt19937 prng(1);
  const auto vertices = box_points(lo, hi, 0, prng);
  const double unit = std::numeric_limits<T>::epsilon();
  std::vector<Exact> x, z, y;
  for (int label = 0; label < d.q; ++label) {
    const auto ml = an.margins(nom, box, label, BoundMethod::linear);
    for (index_t k = 0; k < d.q; ++k) {
      if (k == label)
        continue;
      // The exact minimum of the (affine) margin over the box is at a vertex.
      Exact best;
      bool first = true;
      for (const auto &u : vertices) {
        evaluate_exact(d, u, x, z, y);
        const Exact m = y[label] - y[k];
        if (first || m < best)
          best = m;
        first = false;
      }
      CAPTURE(label, k, best.approx(), ml.margin_lower[k]);
      REQUIRE(Exact(double(ml.margin_lower[k])) <= best);
      // ... and the bound is that minimum up to its rounding allowance.
      CHECK(best.approx() - double(ml.margin_lower[k]) <=
            1e4 * unit * (1 + std::abs(best.approx())));
    }
  }
}

TEMPLATE_TEST_CASE("zero tolerance (long double): ReLU, leaky ReLU and mixed models with "
                   "cycles",
                   "[bounds][rounding]", float, double) {
  using T = TestType;
  std::mt19937 rng(11);
  const Activation relu{}, leaky_small{ActivationKind::leaky_relu, 0.5},
      leaky_steep{ActivationKind::leaky_relu, 1.5};
  std::vector<std::pair<const char *, DenseModel>> nets;
  nets.push_back({"relu", implicit(rng, 8, 3, 3, 0.8)});
  nets.push_back({"leaky 0.5", implicit(rng, 8, 3, 3, 0.8, leaky_small)});
  // Lipschitz 1.5: ||A||_inf = 0.55 keeps L|A| a contraction.
  nets.push_back({"leaky 1.5", implicit(rng, 8, 3, 3, 0.55, leaky_steep)});
  {
    DenseModel mixed = implicit(rng, 9, 3, 3, 0.6);
    const Activation per_state[] = {relu, leaky_small, leaky_steep};
    for (index_t i = 0; i < mixed.n; ++i)
      mixed.act[i] = per_state[i % 3];
    nets.push_back({"mixed", mixed});
  }
  for (auto &[name, net] : nets) {
    INFO(name);
    const DenseModel d = held_by<T>(net);
    const Model<T> model = make_model_t<T>(d, blocks_of(d));
    BoundAnalyzer<T> an(model);
    REQUIRE_FALSE(an.feed_forward());
    REQUIRE(an.certified_well_posed());
    std::vector<T> u0(d.p);
    std::uniform_real_distribution<double> ud(0, 1);
    for (auto &v : u0)
      v = static_cast<T>(ud(rng));
    const auto nom = an.nominal(std::span<const T>(u0));
    for (const double eps : {0.0, 0.05}) {
      const auto box = linf_box<T>(u0, static_cast<T>(eps));
      const StateBounds<T> sb[3] = {an.global_bounds(nom, box),
                                    an.interval_bounds(nom, box),
                                    an.linear_state_bounds(nom, box)};
      const auto mb = an.margins(nom, box, 0, BoundMethod::linear);
      const std::vector<double> lo(box.lower.begin(), box.lower.end()),
          hi(box.upper.begin(), box.upper.end());
      for (const auto &u : box_points(lo, hi, 30, rng)) {
        // The equilibrium by Picard in long double to its fixed point.
        std::vector<long double> x(d.n, 0.0L), nx(d.n);
        for (int it = 0; it < 20000; ++it) {
          for (index_t i = 0; i < d.n; ++i) {
            long double s = d.bx[i];
            for (index_t j = 0; j < d.n; ++j)
              s += (long double)d.A[i * d.n + j] * x[j];
            for (index_t j = 0; j < d.p; ++j)
              s += (long double)d.B[i * d.p + j] * (long double)u[j];
            nx[i] = s > 0 || d.act[i].kind == ActivationKind::identity
                        ? s
                        : (d.act[i].kind == ActivationKind::relu
                               ? 0.0L
                               : (long double)d.act[i].slope * s);
          }
          const bool same = nx == x;
          x.swap(nx);
          if (same)
            break;
        }
        std::vector<long double> y(d.q);
        for (index_t k = 0; k < d.q; ++k) {
          long double s = d.by[k];
          for (index_t j = 0; j < d.n; ++j)
            s += (long double)d.C[k * d.n + j] * x[j];
          for (index_t j = 0; j < d.p; ++j)
            s += (long double)d.D[k * d.p + j] * (long double)u[j];
          y[k] = s;
        }
        for (int m = 0; m < 3; ++m)
          for (index_t i = 0; i < d.n; ++i) {
            CAPTURE(m, i);
            REQUIRE((long double)sb[m].x_lower[i] <= x[i]);
            REQUIRE(x[i] <= (long double)sb[m].x_upper[i]);
          }
        for (index_t k = 0; k < d.q; ++k) {
          REQUIRE((long double)mb.margin_lower[k] <= y[0] - y[k]);
          REQUIRE((long double)mb.y_lower[k] <= y[k]);
          REQUIRE(y[k] <= (long double)mb.y_upper[k]);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE(
    "rho: a cycle whose exact gain is at least 1 is never certified, however "
    "its product rounds",
    "[bounds][rounding]", float, double) {
  using T = TestType;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> ud(0.2, 5.0);
  int certified_below = 0;
  for (int trial = 0; trial < 200; ++trial) {
    // x0 = phi(a x1 + u), x1 = phi(b x2), x2 = phi(c x0): gain |a b c| L^3,
    // c chosen so that the exact product is just at or just above 1.
    const Activation act = trial % 3 == 0 ? Activation{ActivationKind::leaky_relu, 1.25}
                                          : Activation{ActivationKind::identity};
    const double L = act.lipschitz();
    const T a = static_cast<T>(ud(rng)), b = static_cast<T>(ud(rng));
    T c = static_cast<T>(1.0 / (double(a) * double(b) * L * L * L));
    const auto gain = [&](T cc) {
      return Exact(1.0) * double(a) * double(b) * double(cc) * L * L * L;
    };
    while (gain(c) < Exact(1.0))
      c = std::nextafter(c, T(10));
    if (trial % 2)
      c = std::nextafter(c, T(10)); // also strictly above 1
    DenseModel d;
    d.n = 3;
    d.p = 1;
    d.q = 1;
    d.A = {0, double(a), 0, 0, 0, double(b), double(c), 0, 0};
    d.B = {1, 0, 0};
    d.C = {1, 0, 0};
    d.bx = {0, 0, 0};
    d.by = {0};
    d.act.assign(3, act);
    const Model<T> model = make_model_t<T>(d, blocks_of(d));
    BoundAnalyzer<T> an(model);
    CAPTURE(trial, double(a), double(b), double(c));
    REQUIRE_FALSE(an.certified_well_posed());
    REQUIRE(an.rate() >= 1);
    // A gain a little below 1 is certified (the allowance is small).
    d.A[6] = double(static_cast<T>(double(c) * (1 - 1e-3)));
    BoundAnalyzer<T> below(make_model_t<T>(d, blocks_of(d)));
    certified_below += below.certified_well_posed() ? 1 : 0;
  }
  CHECK(certified_below == 200);
}

TEMPLATE_TEST_CASE("linf_box rounds outward: it contains every real point within eps",
                   "[bounds][rounding]", float, double) {
  using T = TestType;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> ud(-3, 3), ed(0, 0.5);
  std::vector<T> u0(2000);
  for (auto &v : u0)
    v = static_cast<T>(ud(rng));
  for (const T eps : {T(0.1), T(1e-3), static_cast<T>(ed(rng)), T(1) / T(3)}) {
    const auto box = linf_box<T>(std::span<const T>(u0), eps);
    for (std::size_t i = 0; i < u0.size(); ++i) {
      REQUIRE(Exact(double(box.lower[i])) <= Exact(double(u0[i])) - Exact(double(eps)));
      REQUIRE(Exact(double(u0[i])) + Exact(double(eps)) <= Exact(double(box.upper[i])));
    }
  }
}

namespace {

/// A one-state model x = u (identity) with outputs y = C x: the margin
/// y_0 - y_1 is C_0 u exactly.
template <class T> Model<T> output_model(OperatorPtr<T> C) {
  std::vector<T> one = {T(1)}, zero = {T(0)};
  return Model<T>(std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_dense(1, 1, zero)),
                  std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_dense(1, 1, one)),
                  std::move(C), nullptr, std::vector<T>{T(0)}, std::vector<T>{T(0), T(0)},
                  {{"x", 0, 1, Activation{ActivationKind::identity}}});
}

template <class T>
std::shared_ptr<CsrMatrix<T>> dense_csr(index_t r, index_t c, std::vector<double> v) {
  return std::make_shared<CsrMatrix<T>>(
      CsrMatrix<T>::from_dense(r, c, std::vector<T>(v.begin(), v.end())));
}

} // namespace

TEMPLATE_TEST_CASE("a product kept unevaluated and merged blocks are allowed for through "
                   "their parts: |L||R| and the sum of |parts|, not |L R| or |sum|",
                   "[bounds][rounding]", float, double) {
  using T = TestType;
  // C_0 = L R with L = [3, -1] and R = [0.1; 0.3]: exactly 3 fl(0.1) -
  // fl(0.3), a few units of roundoff, while L (R x) computed through the
  // parts cancels to a different value. |L R| would allow nothing for
  // that; the bound must still be below the exact margin.
  const T a = T(0.1), b = T(0.3);
  const auto L = dense_csr<T>(2, 2, {3, -1, 0, 0});
  const auto R = dense_csr<T>(2, 1, {double(a), double(b)});
  const auto composed = std::make_shared<ComposedOperator<T>>(L, R);
  // The same row as two entries of one block: P1 = 3 fl(0.1) rounded to T
  // and P2 = -fl(0.3), at an input where the products round.
  const T p1 = T(3) * a;
  std::vector<BlockEntry<T>> entries = {{0, 0, dense_csr<T>(1, 1, {double(p1)})},
                                        {0, 0, dense_csr<T>(1, 1, {-double(b)})}};
  const auto merged = std::make_shared<BlockOperator<T>>(
      std::vector<index_t>{1, 1}, std::vector<index_t>{1}, std::move(entries));
  struct Case {
    const char *name;
    OperatorPtr<T> C;
    Exact row; // the exact C_0
    T u;
  };
  const Case cases[] = {
      {"composed", composed, Exact(double(a)) * 3.0 - Exact(double(b)), T(1)},
      {"merged", merged, Exact(double(p1)) - Exact(double(b)), T(0.1)}};
  for (const auto &c : cases) {
    INFO(c.name);
    // The majorant is the parts' and their terms add up.
    std::vector<T> one = {T(1)}, out(2);
    detail::majorant_apply<T>(*c.C, false, std::span<const T>(one), T(0),
                              std::span<T>(out));
    CHECK(double(out[0]) >= 0.6 * (1 - 1e-6));
    CHECK(detail::product_terms(*c.C) >= 3);
    const Model<T> model = output_model<T>(c.C);
    BoundAnalyzer<T> an(model);
    const std::vector<T> u0 = {c.u};
    const auto nom = an.nominal(std::span<const T>(u0));
    const auto box = linf_box<T>(std::span<const T>(u0), T(0));
    const Exact exact = c.row * double(c.u);
    CAPTURE(exact.approx());
    for (const BoundMethod m :
         {BoundMethod::global, BoundMethod::interval, BoundMethod::linear}) {
      CAPTURE(to_string(m));
      const auto mb = an.margins(nom, box, 0, m);
      CAPTURE(mb.margin_lower[1], mb.y_lower[0], mb.y_upper[0]);
      REQUIRE(Exact(double(mb.margin_lower[1])) <= exact);
      REQUIRE(Exact(double(mb.y_lower[0])) <= exact);
      REQUIRE(exact <= Exact(double(mb.y_upper[0])));
    }
  }
}

TEST_CASE("product terms and majorants of structured operators", "[bounds][rounding]") {
  // A convolution's terms come from its geometry and bound its CSR form's.
  Conv2dGeometry g;
  g.input = {3, 5, 5};
  g.out_channels = 4;
  g.kernel_h = g.kernel_w = 3;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 1;
  std::mt19937 rng(9);
  std::vector<double> w(4 * 3 * 9);
  for (auto &v : w)
    v = awkward(rng, 1.0);
  const Conv2dOperator<double> conv(g, w);
  CHECK(detail::product_terms(conv) >= detail::csr_terms(conv.to_csr()));
  CHECK(detail::product_terms(conv) == 4 * 9);
  // A composed operator's majorant is |L||R|, entry by entry.
  const auto L = dense_csr<double>(2, 3, {1, -2, 0.5, -1, 1, 1});
  const auto R = dense_csr<double>(3, 2, {1, 1, 1, -1, -2, 3});
  const ComposedOperator<double> lr(L, R);
  const std::vector<double> x = {0.25, 2};
  std::vector<double> got(2), tgot(2);
  detail::majorant_apply<double>(lr, false, std::span<const double>(x), 0.0,
                                 std::span<double>(got));
  // |L||R| = [[1+2+1, 1+2+1.5], [1+1+2, 1+1+3]] = [[4, 4.5], [4, 5]]
  CHECK(got[0] == 4 * 0.25 + 4.5 * 2);
  CHECK(got[1] == 4 * 0.25 + 5 * 2);
  detail::majorant_apply<double>(lr, true, std::span<const double>(x), 0.0,
                                 std::span<double>(tgot));
  CHECK(tgot[0] == 4 * 0.25 + 4 * 2);
  CHECK(tgot[1] == 4.5 * 0.25 + 5 * 2);
  CHECK(detail::product_terms(lr) == 3 + 3);
}
