// Bounds against sampling (random points and vertices of the box, evaluated
// by an independent dense Picard), monotone tightness of the three bounds, a
// hand-computed two-layer example and certification.
#include <catch2/catch.hpp>
#include <tacit/analysis/attack.hpp>
#include <tacit/analysis/bounds.hpp>
#include <tacit/analysis/sensitivity.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/operators/structured.hpp>

#include <ClpSimplex.hpp>
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <type_traits>

#include "bounds_test_util.hpp"

using namespace tacit;
using namespace tacit::testutil;

namespace {

struct Case {
  std::string name;
  DenseModel dense;
  Model<double> model;
  double eps;
};

Case make_case(const std::string &name, DenseModel d, double eps) {
  std::vector<StateBlock> blocks = {{"s", 0, d.n, d.act[0]}};
  Model<double> m = make_model(d, blocks);
  return {name, std::move(d), std::move(m), eps};
}

std::vector<Case> cases() {
  std::mt19937 rng(7);
  std::vector<Case> out;
  out.push_back(make_case("relu mlp", mlp(rng, 8, {12, 10, 8}, 4), 0.08));
  out.push_back(make_case(
      "leaky mlp", mlp(rng, 6, {10, 8}, 3, {ActivationKind::leaky_relu, 0.1}), 0.1));
  out.push_back(
      make_case("tanh mlp", mlp(rng, 6, {10, 8}, 3, {ActivationKind::tanh}), 0.15));
  out.push_back(make_case("cnn", small_cnn(rng, 6, 2, 8, 3), 0.05));
  out.push_back(make_case("implicit relu 0.6", implicit(rng, 12, 5, 3, 0.6), 0.1));
  out.push_back(make_case("implicit relu 0.9", implicit(rng, 10, 4, 3, 0.9), 0.05));
  out.push_back(make_case("implicit tanh 0.8",
                          implicit(rng, 10, 4, 3, 0.8, {ActivationKind::tanh}), 0.1));
  out.push_back(make_case("implicit sigmoid 0.9",
                          implicit(rng, 10, 4, 3, 0.9, {ActivationKind::sigmoid}), 0.3));
  return out;
}

constexpr double tol = 1e-9;

} // namespace

TEMPLATE_TEST_CASE("bounds enclose sampled states and outputs", "[bounds]", float,
                   double) {
  using T = TestType;
  for (auto &c : cases()) {
    INFO(c.name);
    // A float model holds the parameters rounded to float: its bounds are
    // about that exact model, which the reference evaluates.
    const DenseModel d = std::is_same_v<T, float> ? rounded_to_float(c.dense) : c.dense;
    const Model<T> model = make_model_t<T>(d, {{"s", 0, d.n, d.act[0]}});
    BoundAnalyzer<T> an(model);
    REQUIRE(an.certified_well_posed());
    std::mt19937 rng(11);
    std::uniform_real_distribution<double> ud(0, 1);
    std::vector<T> u0(d.p);
    for (auto &v : u0)
      v = static_cast<T>(ud(rng));
    const auto nom = an.nominal(std::span<const T>(u0));
    const auto box = linf_box<T>(u0, static_cast<T>(c.eps));
    const auto g = an.global_bounds(nom, box);
    const auto iv = an.interval_bounds(nom, box);
    LinearBoundStats stats;
    const auto lin = an.linear_state_bounds(nom, box, &stats);
    REQUIRE(iv.status == BoundStatus::ok);
    std::vector<MarginBounds<T>> mb[3];
    for (int label = 0; label < d.q; ++label)
      for (int m = 0; m < 3; ++m)
        mb[m].push_back(an.margins(nom, box, label, BoundMethod(m)));

    // Points: random in the box, and vertices.
    const bool all_vertices = d.p <= 8;
    const int count = all_vertices ? (1 << d.p) + 300 : 800;
    std::vector<double> u(d.p), x, y;
    for (int s = 0; s < count; ++s) {
      for (index_t j = 0; j < d.p; ++j) {
        const double lo = box.lower[j], hi = box.upper[j];
        if (all_vertices && s < (1 << d.p))
          u[j] = (s >> j) & 1 ? hi : lo;
        else if (s % 2)
          u[j] = ud(rng) < 0.5 ? lo : hi;
        else
          u[j] = lo + ud(rng) * (hi - lo);
      }
      evaluate(d, u, x, y);
      for (const auto *b : {&g, &iv, &lin})
        for (index_t i = 0; i < d.n; ++i) {
          REQUIRE(x[i] >= double(b->x_lower[i]) - tol);
          REQUIRE(x[i] <= double(b->x_upper[i]) + tol);
        }
      // pre-activations
      for (index_t i = 0; i < d.n; ++i) {
        const double z = preactivation(d, i, x, u);
        for (const auto *b : {&g, &iv, &lin}) {
          REQUIRE(z >= double(b->z_lower[i]) - tol);
          REQUIRE(z <= double(b->z_upper[i]) + tol);
        }
      }
      for (int label = 0; label < d.q; ++label)
        for (int m = 0; m < 3; ++m) {
          const auto &r = mb[m][label];
          for (index_t k = 0; k < d.q; ++k) {
            REQUIRE(y[label] - y[k] >= double(r.margin_lower[k]) - tol);
            REQUIRE(y[k] >= double(r.y_lower[k]) - tol);
            REQUIRE(y[k] <= double(r.y_upper[k]) + tol);
          }
        }
    }
  }
}

TEST_CASE("linear within interval within global", "[bounds]") {
  for (auto &c : cases()) {
    INFO(c.name);
    BoundAnalyzer<double> an(c.model);
    std::mt19937 rng(3);
    std::uniform_real_distribution<double> ud(0, 1);
    double gain = 0;
    for (int trial = 0; trial < 5; ++trial) {
      std::vector<double> u0(c.dense.p);
      for (auto &v : u0)
        v = ud(rng);
      const auto nom = an.nominal(std::span<const double>(u0));
      const auto box = linf_box<double>(u0, c.eps * (0.5 + trial * 0.3));
      const auto g = an.global_bounds(nom, box);
      const auto iv = an.interval_bounds(nom, box);
      const auto lin = an.linear_state_bounds(nom, box);
      for (index_t i = 0; i < c.dense.n; ++i) {
        REQUIRE(g.x_lower[i] <= iv.x_lower[i]);
        REQUIRE(iv.x_lower[i] <= lin.x_lower[i]);
        REQUIRE(g.x_upper[i] >= iv.x_upper[i]);
        REQUIRE(iv.x_upper[i] >= lin.x_upper[i]);
        REQUIRE(iv.z_lower[i] <= lin.z_lower[i]);
        REQUIRE(iv.z_upper[i] >= lin.z_upper[i]);
      }
      for (int label = 0; label < c.dense.q; ++label) {
        const auto mg = an.margins(nom, box, label, BoundMethod::global);
        const auto mi = an.margins(nom, box, label, BoundMethod::interval);
        const auto ml = an.margins(nom, box, label, BoundMethod::linear);
        for (index_t k = 0; k < c.dense.q; ++k) {
          REQUIRE(mg.margin_lower[k] <= mi.margin_lower[k]);
          REQUIRE(mi.margin_lower[k] <= ml.margin_lower[k]);
          gain += ml.margin_lower[k] - mi.margin_lower[k];
          REQUIRE(mg.y_lower[k] <= mi.y_lower[k]);
          REQUIRE(mi.y_lower[k] <= ml.y_lower[k]);
        }
      }
    }
    if (c.name.find("mlp") != std::string::npos) // CROWN must actually gain on MLPs
      CHECK(gain > 0);
  }
}

namespace {

/// The exact minimum of y_label - y_k over the box of a feed-forward ReLU
/// DenseModel (A strictly lower triangular in state order), independent of
/// the bounds: on each activation pattern of the states the network is
/// affine in u and the pattern's region is a polyhedron, so the minimum is
/// the least of one LP per pattern (COIN-OR CLP).
double exact_margin_minimum(const DenseModel &d, const std::vector<double> &lo,
                            const std::vector<double> &hi, int label, index_t k) {
  const index_t n = d.n, p = d.p;
  double best = std::numeric_limits<double>::infinity();
  for (std::uint64_t mask = 0; mask < (std::uint64_t(1) << n); ++mask) {
    // z_i = gz_i u + cz_i and x_i = gx_i u + cx_i on this pattern.
    std::vector<std::vector<double>> gz(n, std::vector<double>(p, 0.0)), gx = gz;
    std::vector<double> cz(n, 0.0), cx(n, 0.0);
    for (index_t i = 0; i < n; ++i) {
      cz[i] = d.bx[i];
      for (index_t j = 0; j < p; ++j)
        gz[i][j] = d.B[i * p + j];
      for (index_t j = 0; j < i; ++j)
        if (const double a = d.A[i * n + j]; a != 0) {
          cz[i] += a * cx[j];
          for (index_t t = 0; t < p; ++t)
            gz[i][t] += a * gx[j][t];
        }
      if ((mask >> i) & 1) {
        gx[i] = gz[i];
        cx[i] = cz[i];
      }
    }
    std::vector<double> obj(p, 0.0);
    double constant = d.by[label] - d.by[k];
    for (index_t j = 0; j < n; ++j) {
      const double w = d.C[label * n + j] - d.C[k * n + j];
      constant += w * cx[j];
      for (index_t t = 0; t < p; ++t)
        obj[t] += w * gx[j][t];
    }
    ClpSimplex lp;
    lp.setLogLevel(0);
    lp.resize(0, int(p));
    for (index_t t = 0; t < p; ++t) {
      lp.setColumnBounds(int(t), lo[t], hi[t]);
      lp.setObjectiveCoefficient(int(t), obj[t]);
    }
    std::vector<int> cols(p);
    for (index_t t = 0; t < p; ++t)
      cols[t] = int(t);
    for (index_t i = 0; i < n; ++i) {
      const bool active = (mask >> i) & 1;
      const double inf = COIN_DBL_MAX;
      lp.addRow(int(p), cols.data(), gz[i].data(), active ? -cz[i] : -inf,
                active ? inf : -cz[i]);
    }
    lp.primal();
    if (lp.isProvenOptimal())
      best = std::min(best, lp.objectiveValue() + constant);
  }
  return best;
}

} // namespace

TEST_CASE("the linear bound's gain is real: interval <= linear <= the exact minimum of "
          "each margin (enumerated activation patterns, one LP each), and linear closes "
          "most of the interval bound's gap",
          "[bounds]") {
  std::mt19937 rng(41);
  std::uniform_real_distribution<double> ud(0, 1);
  double gap_linear = 0, gap_interval = 0;
  for (int trial = 0; trial < 4; ++trial) {
    CAPTURE(trial);
    const DenseModel d = mlp(rng, 3, {5, 4}, 3);
    const Model<double> model = make_model(d, {});
    BoundAnalyzer<double> an(model);
    std::vector<double> u0(d.p);
    for (auto &v : u0)
      v = ud(rng);
    const auto nom = an.nominal(std::span<const double>(u0));
    const auto box = linf_box<double>(u0, 0.25);
    std::vector<double> x, y;
    for (int label = 0; label < d.q; ++label) {
      const auto mi = an.margins(nom, box, label, BoundMethod::interval);
      const auto ml = an.margins(nom, box, label, BoundMethod::linear);
      for (index_t k = 0; k < d.q; ++k) {
        if (k == label)
          continue;
        const double exact = exact_margin_minimum(d, box.lower, box.upper, label, k);
        CAPTURE(label, k, exact, mi.margin_lower[k], ml.margin_lower[k]);
        // The reference itself: no sample of the box goes below it.
        for (int s = 0; s < 200; ++s) {
          std::vector<double> u(d.p);
          for (index_t j = 0; j < d.p; ++j)
            u[j] = box.lower[j] + ud(rng) * (box.upper[j] - box.lower[j]);
          evaluate(d, u, x, y);
          REQUIRE(y[label] - y[k] >= exact - 1e-7);
        }
        REQUIRE(mi.margin_lower[k] <= ml.margin_lower[k]);
        REQUIRE(ml.margin_lower[k] <= exact + 1e-7);
        gap_linear += exact - ml.margin_lower[k];
        gap_interval += exact - mi.margin_lower[k];
      }
    }
  }
  CAPTURE(gap_linear, gap_interval);
  CHECK(gap_interval > 0);
  CHECK(gap_linear <= 0.5 * gap_interval);
}

TEST_CASE("hand-computed two-layer example", "[bounds]") {
  // x1 = relu(u), x2 = relu(u), x3 = relu(x1 - x2 + 1); y0 = x1 - x2, y1 = 0.
  // u in [-1, 2]: interval x1, x2 in [0, 2], z3 in [-1, 3], margin >= -2.
  // Linear: x1 >= u (slope 1 as h >= -l), x2 <= 2/3 (u + 1): margin >=
  // u/3 - 2/3 >= -1; refined z3 in [0, 2].
  DenseModel d;
  d.n = 3;
  d.p = 1;
  d.q = 2;
  d.A = {0, 0, 0, 0, 0, 0, 1, -1, 0};
  d.B = {1, 1, 0};
  d.C = {1, -1, 0, 0, 0, 0};
  d.bx = {0, 0, 1};
  d.by = {0, 0};
  d.act.assign(3, Activation{});
  const Model<double> model = make_model(d, {});
  BoundAnalyzer<double> an(model);
  CHECK(an.feed_forward());
  CHECK(an.levels() == 2);
  const std::vector<double> u0 = {0.5};
  const auto nom = an.nominal(std::span<const double>(u0));
  CHECK(nom.x[0] == Approx(0.5));
  const auto box = linf_box<double>(u0, 1.5);
  const auto iv = an.interval_bounds(nom, box);
  CHECK(iv.x_lower[0] == 0);
  CHECK(iv.x_upper[0] == Approx(2));
  CHECK(iv.z_lower[2] == Approx(-1));
  CHECK(iv.z_upper[2] == Approx(3));
  const auto lin = an.linear_state_bounds(nom, box);
  CHECK(lin.z_lower[2] == Approx(0).margin(1e-12));
  CHECK(lin.z_upper[2] == Approx(2));
  CHECK(an.margins(nom, box, 0, BoundMethod::interval).margin_lower[1] == Approx(-2));
  CHECK(an.margins(nom, box, 0, BoundMethod::global).margin_lower[1] == Approx(-2));
  // Optimised lower slope: x1 >= a u gives a margin >= (a - 2/3) u - 2/3 on
  // u in [-1, 2], best at a = 2/3: -2/3 (the adaptive a = 1 gives -1).
  BoundOptions adaptive;
  adaptive.slope_steps = 0;
  BoundAnalyzer<double> plain(model, adaptive);
  CHECK(plain.margins(nom, box, 0, BoundMethod::linear).margin_lower[1] == Approx(-1));
  const double optimised = an.margins(nom, box, 0, BoundMethod::linear).margin_lower[1];
  CHECK(optimised <= -2.0 / 3 + 1e-12);
  CHECK(optimised >= -2.0 / 3 - 0.02);
}

TEST_CASE("global bound equals S |u - u0| on a linear model", "[bounds]") {
  // Identity activation, implicit A: x = A x + B u, the global radius is
  // (I - |A|)^-1 |B| sigma, here A = [[0, .5], [.5, 0]], B = [1; 1]:
  // w = 2 sigma for both states.
  DenseModel d;
  d.n = 2;
  d.p = 1;
  d.q = 1;
  d.A = {0, 0.5, 0.5, 0};
  d.B = {1, 1};
  d.C = {1, 0};
  d.bx = {0, 0};
  d.by = {0};
  d.act.assign(2, Activation{ActivationKind::identity});
  const Model<double> model = make_model(d, {{"s", 0, 2, {ActivationKind::identity}}});
  BoundAnalyzer<double> an(model);
  CHECK_FALSE(an.feed_forward());
  CHECK(an.rate() < 1);
  const std::vector<double> u0 = {1.0};
  const auto nom = an.nominal(std::span<const double>(u0));
  const auto g = an.global_bounds(nom, linf_box<double>(u0, 0.25));
  CHECK(g.x_lower[0] == Approx(2 - 0.5).epsilon(1e-6));
  CHECK(g.x_upper[1] == Approx(2 + 0.5).epsilon(1e-6));
  CHECK(g.x_upper[1] >= 2.5 - 1e-12); // sound even though the iteration is truncated
}

TEMPLATE_TEST_CASE("deep feed-forward networks: every bound works through the block "
                   "sweep, certifies a nonzero radius and holds under sampling and PGD",
                   "[bounds][deep]", float, double) {
  using T = TestType;
  std::mt19937 rng(31);
  std::vector<index_t> sizes;
  // 24 layers and a dead unit per layer reaching the next one with weight
  // 1e18: the global bound's certificate vector exceeds 1e18, so
  // max(1 - 1/v_i) rounds to 1 (this refused every bound before).
  DenseModel d = deep_mlp(rng, 6, 6, 24, 3, 1.0, 0.5, 1e18, &sizes);
  if constexpr (std::is_same_v<T, float>)
    d = rounded_to_float(d); // the exact model the float model holds
  const Model<T> model = layered_model<T>(d, sizes);
  const Model<T> csr = make_model_t<T>(d, {{"s", 0, d.n, Activation{}}});
  BoundAnalyzer<T> sweep(model), iterate(csr);
  REQUIRE(sweep.feed_forward());
  REQUIRE(sweep.certified_well_posed());
  CHECK(sweep.rate() == 0);
  CHECK(sweep.levels() == 24);
  REQUIRE(iterate.feed_forward());
  REQUIRE(iterate.certified_well_posed());
  CertifyOptions oi, ol;
  oi.method = BoundMethod::interval;
  ol.method = BoundMethod::linear;
  oi.domain_lo = ol.domain_lo = 1; // no clipping
  oi.domain_hi = ol.domain_hi = 0;
  const double agree = std::is_same_v<T, float> ? 1e-4 : 1e-9;
  std::uniform_real_distribution<double> ud(0, 1);
  for (int trial = 0; trial < 3; ++trial) {
    CAPTURE(trial);
    std::vector<T> u0(d.p);
    for (auto &v : u0)
      v = static_cast<T>(ud(rng));
    const auto nom = sweep.nominal(std::span<const T>(u0));
    const int label = nom.predicted();
    const double ri = certified_radius(sweep, nom, label, oi);
    const double rl = certified_radius(sweep, nom, label, ol);
    CAPTURE(ri, rl);
    CHECK(ri > 0);
    CHECK(rl >= ri);
    const auto box = linf_box<T>(u0, static_cast<T>(rl));
    // The sweeps and the iteration on the same A as CSR agree.
    const auto ni = iterate.nominal(std::span<const T>(u0));
    for (const BoundMethod m : {BoundMethod::interval, BoundMethod::linear}) {
      const auto a = sweep.margins(nom, box, label, m);
      const auto b = iterate.margins(ni, box, label, m);
      for (index_t k = 0; k < d.q; ++k)
        CHECK(double(a.margin_lower[k]) ==
              Approx(double(b.margin_lower[k])).epsilon(agree).margin(agree));
    }
    const auto iv = sweep.interval_bounds(nom, box);
    const auto lin = sweep.linear_state_bounds(nom, box);
    const auto ml = sweep.margins(nom, box, label, BoundMethod::linear);
    REQUIRE(ml.certified());
    double bound = std::numeric_limits<double>::infinity();
    for (index_t k = 0; k < d.q; ++k)
      if (k != label)
        bound = std::min(bound, double(ml.margin_lower[k]));
    // Samples of the box (vertices and interior), evaluated on the exact
    // model by the dense reference.
    std::vector<double> u(d.p), x, y;
    for (int s = 0; s < 400; ++s) {
      for (index_t j = 0; j < d.p; ++j) {
        const double t = ud(rng);
        u[j] = double(box.lower[j]) + (s % 2 ? std::round(t) : t) *
                                          (double(box.upper[j]) - double(box.lower[j]));
      }
      evaluate(d, u, x, y);
      for (const auto *b : {&iv, &lin})
        for (index_t i = 0; i < d.n; ++i) {
          REQUIRE(x[i] >= double(b->x_lower[i]) - 1e-12 * (1 + std::abs(x[i])));
          REQUIRE(x[i] <= double(b->x_upper[i]) + 1e-12 * (1 + std::abs(x[i])));
        }
      for (index_t k = 0; k < d.q; ++k)
        REQUIRE(y[label] - y[k] >= double(ml.margin_lower[k]) - 1e-12);
    }
    // PGD at the certified radius: the margin it reaches (re-evaluated on
    // the exact model) is never below the certified lower bound.
    PgdOptions pgd;
    pgd.eps = rl;
    pgd.steps = 30;
    pgd.restarts = 2;
    pgd.domain_lo = 1;
    pgd.domain_hi = 0;
    pgd.seed = trial;
    const auto res = pgd_attack<T>(model, std::span<const T>(u0), label, pgd);
    CHECK_FALSE(res.success);
    std::vector<double> ua(res.u.begin(), res.u.end());
    evaluate(d, ua, x, y);
    double reached = std::numeric_limits<double>::infinity();
    for (index_t k = 0; k < d.q; ++k)
      if (k != label)
        reached = std::min(reached, y[label] - y[k]);
    CHECK(reached >= bound);
  }
}

TEST_CASE("certified radius and certified accuracy", "[bounds]") {
  std::mt19937 rng(5);
  DenseModel d = mlp(rng, 10, {16, 12}, 4);
  const Model<double> model = make_model(d, {});
  BoundAnalyzer<double> an(model);
  const index_t count = 12;
  Batch<double> U(d.p, count);
  std::vector<int> labels(count);
  std::uniform_real_distribution<double> ud(0, 1);
  std::vector<double> u(d.p), x, y;
  for (index_t j = 0; j < count; ++j) {
    for (auto &v : u)
      v = ud(rng);
    U.set_column(j, u);
    evaluate(d, u, x, y);
    labels[j] = int(std::max_element(y.begin(), y.end()) - y.begin());
  }
  labels[0] = (labels[0] + 1) % 4; // one misclassified input
  const std::vector<double> eps = {0.001, 0.01, 0.05};
  CertifyOptions opt;
  const auto acc = certify_dataset(an, U, labels, eps, true, opt);
  CHECK(acc.correct == count - 1);
  CHECK(acc.per_input[0].radius == 0);
  for (std::size_t e = 1; e < eps.size(); ++e)
    CHECK(acc.certified[e] <= acc.certified[e - 1]);
  for (index_t j = 1; j < count; ++j) {
    const auto &c = acc.per_input[j];
    CHECK(c.radius > 0);
    U.get_column(j, u);
    const auto nom = an.nominal(std::span<const double>(u));
    // The radius is certified; well beyond it the bound fails.
    CHECK(certify_at(an, nom, labels[j], c.radius, opt));
    CHECK_FALSE(certify_at(an, nom, labels[j], c.radius * 1.01 + 1e-9, opt));
    // Interval and global radii are never larger than the linear one.
    CertifyOptions oi = opt;
    oi.method = BoundMethod::interval;
    CHECK(certified_radius(an, nom, labels[j], oi) <= c.radius * (1 + 1e-3));
  }
  // best and linear certify the same inputs.
  CertifyOptions ol = opt;
  ol.method = BoundMethod::linear;
  const auto accl = certify_dataset(an, U, labels, eps, false, ol);
  CHECK(accl.certified == acc.certified);
}

#include <tacit/solve/solve.hpp>

#include "fashion_test_util.hpp"

TEMPLATE_TEST_CASE("bounds of the committed Fashion-MNIST models hold for 10^4 sampled "
                   "perturbations each",
                   "[bounds][slow]", float, double) {
  using T = TestType;
  const auto dir = fashion_test_data();
  const auto data = fashion_test_images(dir, 1);
  const index_t p = 784;
  std::vector<T> u0(p);
  for (index_t j = 0; j < p; ++j)
    u0[j] = static_cast<T>(data.images(j, 0));
  const int label = data.labels[0];
  const auto box = linf_box<T>(u0, T(0.01), T(0), T(1));
  for (const char *name : {"fashion_mlp", "fashion_cnn"}) {
    INFO(name);
    const auto model = fashion_model<T>(name);
    // The samples are evaluated on the exact real-number model of the
    // stored parameters (for float, the float values read as doubles).
    const Model<double> exact = exact_model(model);
    BoundAnalyzer<T> an(model);
    const auto nom = an.nominal(std::span<const T>(u0));
    const StateBounds<T> sb[3] = {an.global_bounds(nom, box),
                                  an.interval_bounds(nom, box),
                                  an.linear_state_bounds(nom, box)};
    MarginBounds<T> mb[3];
    for (int m = 0; m < 3; ++m)
      mb[m] = an.margins(nom, box, label, BoundMethod(m));
    // Each bound is inside the one before it, and the linear margin is the
    // largest.
    for (index_t i = 0; i < model.states(); ++i)
      for (int m = 1; m < 3; ++m) {
        REQUIRE(sb[m].x_lower[i] >= sb[m - 1].x_lower[i]);
        REQUIRE(sb[m].x_upper[i] <= sb[m - 1].x_upper[i]);
      }
    for (index_t k = 0; k < 10; ++k)
      REQUIRE(mb[2].margin_lower[k] >= mb[1].margin_lower[k]);
    // 10^4 points of the box: 4,000 vertices with random signs, 6,000
    // uniform inside; the exact model's own forward (the solver) at each.
    std::mt19937_64 rng(99);
    std::uniform_real_distribution<double> unit(0, 1);
#if defined(__SANITIZE_ADDRESS__)
    const index_t total = 1000, chunk = 500; // sanitizer builds: a sample
#else
    const index_t total = 10000, chunk = 2000;
#endif
    EquilibriumSolver<double> solver(exact);
    index_t checked = 0;
    for (index_t c0 = 0; c0 < total; c0 += chunk) {
      Batch<double> U(p, chunk), X, Y;
      for (index_t c = 0; c < chunk; ++c)
        for (index_t j = 0; j < p; ++j) {
          const double t = unit(rng), lo = box.lower[j], hi = box.upper[j];
          U(j, c) = std::min(
              hi, lo + (c0 + c < total * 2 / 5 ? (t < 0.5 ? 0.0 : 1.0) : t) * (hi - lo));
        }
      REQUIRE(solver.predict(U, X, Y).ok());
      for (index_t c = 0; c < chunk; ++c) {
        for (int m = 0; m < 3; ++m) {
          for (index_t i = 0; i < model.states(); ++i) {
            const double x = X(i, c), slack = 1e-12 * (1 + std::abs(x));
            if (!(x >= double(sb[m].x_lower[i]) - slack &&
                  x <= double(sb[m].x_upper[i]) + slack)) {
              UNSCOPED_INFO("bound " << m << ", state " << i << ", sample " << c0 + c
                                     << ": " << x << " outside [" << sb[m].x_lower[i]
                                     << ", " << sb[m].x_upper[i] << "]");
              REQUIRE(false);
            }
          }
          for (index_t k = 0; k < 10; ++k) {
            const double margin = Y(label, c) - Y(k, c);
            const double slack = 1e-12 * (1 + std::abs(margin));
            REQUIRE(margin >= double(mb[m].margin_lower[k]) - slack);
            REQUIRE(Y(k, c) >= double(mb[m].y_lower[k]) - slack);
            REQUIRE(Y(k, c) <= double(mb[m].y_upper[k]) + slack);
          }
        }
        ++checked;
      }
    }
    CHECK(checked == total);
  }
}

namespace {

/// The same model with A materialised as CSR (B, C, D and biases shared).
Model<double> with_csr_a(const Model<double> &m) {
  return Model<double>(
      std::make_shared<const CsrMatrix<double>>(m.A().to_csr()), m.B_ptr(), m.C_ptr(),
      m.D_ptr(), std::vector<double>(m.bias_x().begin(), m.bias_x().end()),
      std::vector<double>(m.bias_y().begin(), m.bias_y().end()), m.blocks());
}

} // namespace

TEST_CASE("committed Fashion-MNIST models: at eps 0.005 the linear bound certifies at "
          "least twice as many test images as interval propagation, and every one that "
          "interval propagation certifies",
          "[bounds][slow]") {
  const auto dir = fashion_test_data();
  const index_t count = 200;
  const auto data = fashion_test_images(dir, count);
  const std::vector<double> eps = {0.005};
  for (const char *name : {"fashion_mlp", "fashion_cnn"}) {
    INFO(name);
    const auto model = fashion_model(name);
    BoundAnalyzer<double> analyzer(model);
    const auto interval =
        certify_dataset<double>(analyzer, data.images, data.labels, eps, false,
                                pixel_certify_options(BoundMethod::interval));
    const auto linear =
        certify_dataset<double>(analyzer, data.images, data.labels, eps, false,
                                pixel_certify_options(BoundMethod::linear));
    CAPTURE(interval.certified[0], linear.certified[0], linear.correct);
    CHECK(interval.certified[0] > 0);
    CHECK(linear.certified[0] >= 2 * interval.certified[0]);
    for (index_t j = 0; j < count; ++j)
      if (interval.per_input[j].certified[0])
        REQUIRE(linear.per_input[j].certified[0]);
  }
}

TEST_CASE("linear bound: the block sweep of a structured A equals the fixed point "
          "iteration on the same A as CSR",
          "[bounds]") {
  const auto dir = fashion_test_data();
  const auto structured = fashion_model("fashion_cnn");
  REQUIRE(dynamic_cast<const BlockOperator<double> *>(&structured.A()));
  const Model<double> csr = with_csr_a(structured);
  const auto data = fashion_test_images(dir, 3);
  BoundAnalyzer<double> sweep(structured), iterate(csr);
  for (index_t c = 0; c < 3; ++c) {
    std::vector<double> u0(784);
    for (index_t j = 0; j < 784; ++j)
      u0[j] = data.images(j, c);
    for (const double eps : {0.01, 0.05}) {
      CAPTURE(c, eps);
      const auto box = linf_box<double>(u0, eps, 0.0, 1.0);
      const auto ns = sweep.nominal(std::span<const double>(u0));
      const auto ni = iterate.nominal(std::span<const double>(u0));
      LinearBoundStats st_sweep, st_iter;
      const auto a = sweep.linear_state_bounds(ns, box, &st_sweep);
      const auto b = iterate.linear_state_bounds(ni, box, &st_iter);
      REQUIRE(st_sweep.refined > 0);
      CHECK(st_sweep.refined == st_iter.refined);
      for (index_t i = 0; i < structured.states(); ++i) {
        const double scale = 1e-9 * (1 + std::abs(b.z_lower[i]) + std::abs(b.z_upper[i]));
        REQUIRE(a.z_lower[i] == Approx(b.z_lower[i]).margin(scale));
        REQUIRE(a.z_upper[i] == Approx(b.z_upper[i]).margin(scale));
      }
      LinearBoundStats ms_sweep, ms_iter;
      const auto ma =
          sweep.margins(ns, box, data.labels[c], BoundMethod::linear, &ms_sweep);
      const auto mb =
          iterate.margins(ni, box, data.labels[c], BoundMethod::linear, &ms_iter);
      // The margin rows reach back through both layers: one sweep against
      // two steps of the iteration (the second confirms the fixed point).
      CHECK(ms_sweep.dual_iterations == 1);
      CHECK(ms_iter.dual_iterations == 2);
      for (index_t k = 0; k < 10; ++k)
        REQUIRE(
            ma.margin_lower[k] ==
            Approx(mb.margin_lower[k]).margin(1e-9 * (1 + std::abs(mb.margin_lower[k]))));
    }
  }
}

namespace {

double derivative_of(const Activation &a, double z) {
  switch (a.kind) {
  case ActivationKind::relu:
    return z > 0 ? 1.0 : 0.0;
  case ActivationKind::leaky_relu:
    return z > 0 ? 1.0 : a.slope;
  case ActivationKind::tanh:
    return 1 - std::tanh(z) * std::tanh(z);
  case ActivationKind::sigmoid: {
    const double s = 1 / (1 + std::exp(-z));
    return s * (1 - s);
  }
  case ActivationKind::identity:
    return 1.0;
  }
  return 1.0;
}

/// Dense Jacobian dy/du at u (q x p, row-major): C P (I - A P)^-1 B + D with
/// P = diag(phi'(z)), from the reference equilibrium and an Eigen LU solve.
Eigen::MatrixXd dense_jacobian(const DenseModel &m, const std::vector<double> &u) {
  std::vector<double> x, y;
  evaluate(m, u, x, y);
  const auto map = [](const Dense &a, index_t r, index_t c) {
    return Eigen::Map<
        const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
        a.data(), r, c);
  };
  Eigen::VectorXd P(m.n);
  for (index_t i = 0; i < m.n; ++i)
    P[i] = derivative_of(m.act[i], preactivation(m, i, x, u));
  const Eigen::MatrixXd A = map(m.A, m.n, m.n), B = map(m.B, m.n, m.p),
                        C = map(m.C, m.q, m.n);
  const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(m.n, m.n);
  Eigen::MatrixXd J =
      C * P.asDiagonal() * (I - A * P.asDiagonal()).partialPivLu().solve(B);
  if (!m.D.empty())
    J += map(m.D, m.q, m.p);
  return J;
}

} // namespace

TEST_CASE("local Lipschitz bound: sampled pairs and Jacobians in the box, tight on a "
          "tiny box, never above the global bound",
          "[bounds][lipschitz]") {
  for (auto &c : cases()) {
    INFO(c.name);
    const DenseModel &d = c.dense;
    BoundAnalyzer<double> an(c.model);
    std::mt19937 rng(23);
    std::uniform_real_distribution<double> ud(0, 1);
    std::vector<double> u0(d.p);
    for (auto &v : u0)
      v = ud(rng);
    const auto nom = an.nominal(std::span<const double>(u0));
    const auto box = linf_box<double>(u0, c.eps);
    const auto lin = an.linear_state_bounds(nom, box);
    const LocalLipschitz L = an.local_lipschitz(lin);
    REQUIRE(L.status == BoundStatus::ok);
    REQUIRE(L.upper.size() == std::size_t(d.q));
    REQUIRE(L.magnitude.size() == std::size_t(d.q * d.p));
    CHECK(L.iterations >= 1);

    // Never above the global (S 1)_k, nor above the same computation on the
    // (looser) interval bounds.
    SensitivityOperator<double> S(c.model);
    Batch<double> U1(d.p, 1);
    const auto global = lipschitz_bounds(c.model, S, U1);
    const LocalLipschitz Li = an.local_lipschitz(an.interval_bounds(nom, box));
    for (index_t k = 0; k < d.q; ++k) {
      double row = 0;
      for (index_t j = 0; j < d.p; ++j)
        row += L.magnitude[k * d.p + j];
      CHECK(L.upper[k] == Approx(row).epsilon(1e-12));
      CHECK(L.upper[k] <= global.upper[k] * (1 + 1e-9) + 1e-12);
      CHECK(L.upper[k] <= Li.upper[k] * (1 + 1e-9) + 1e-12);
    }

    // Pairs of points in the box (vertices and interior): the weighted bound
    // sum_j magnitude_kj |u_j - u'_j| holds; Jacobians inside the box are
    // enclosed entrywise.
    std::vector<double> u(d.p), v(d.p), x, y, xv, yv;
    for (int s = 0; s < 300; ++s) {
      for (index_t j = 0; j < d.p; ++j) {
        const double a = ud(rng), b = ud(rng);
        u[j] = box.lower[j] + (s % 2 ? std::round(a) : a) * (box.upper[j] - box.lower[j]);
        v[j] = box.lower[j] + (s % 3 ? b : std::round(b)) * (box.upper[j] - box.lower[j]);
      }
      evaluate(d, u, x, y);
      evaluate(d, v, xv, yv);
      for (index_t k = 0; k < d.q; ++k) {
        double bound = 0;
        for (index_t j = 0; j < d.p; ++j)
          bound += L.magnitude[k * d.p + j] * std::abs(u[j] - v[j]);
        REQUIRE(std::abs(y[k] - yv[k]) <= bound + tol);
      }
      const Eigen::MatrixXd J = dense_jacobian(d, u);
      for (index_t k = 0; k < d.q; ++k)
        for (index_t j = 0; j < d.p; ++j)
          REQUIRE(std::abs(J(k, j)) <= L.magnitude[k * d.p + j] + tol);
    }

    // On a tiny box every slope is (almost) fixed: the bound is the l1 norm
    // of the Jacobian rows at u0.
    const auto tiny = linf_box<double>(u0, 1e-10);
    const LocalLipschitz Lt = an.local_lipschitz(an.linear_state_bounds(nom, tiny));
    REQUIRE(Lt.status == BoundStatus::ok);
    const Eigen::MatrixXd J0 = dense_jacobian(d, u0);
    for (index_t k = 0; k < d.q; ++k) {
      const double l1 = J0.row(k).cwiseAbs().sum();
      CHECK(Lt.upper[k] == Approx(l1).epsilon(1e-6).margin(1e-9));
      CHECK(Lt.upper[k] <= L.upper[k] * (1 + 1e-9) + 1e-12);
    }
  }
}

TEST_CASE("local Lipschitz bound: the block sweep of a structured A equals the "
          "iteration on the same A as CSR, gradients in the box stay below it",
          "[bounds][lipschitz]") {
  const auto dir = fashion_test_data();
  const auto structured = fashion_model("fashion_cnn");
  const Model<double> csr = with_csr_a(structured);
  const auto data = fashion_test_images(dir, 2);
  BoundAnalyzer<double> sweep(structured), iterate(csr);
  for (index_t c = 0; c < 2; ++c) {
    std::vector<double> u0(784);
    for (index_t j = 0; j < 784; ++j)
      u0[j] = data.images(j, c);
    const auto box = linf_box<double>(u0, 0.02, 0.0, 1.0);
    const auto ns = sweep.nominal(std::span<const double>(u0));
    const auto bounds = sweep.linear_state_bounds(ns, box);
    const LocalLipschitz a = sweep.local_lipschitz(bounds);
    const LocalLipschitz b = iterate.local_lipschitz(bounds);
    REQUIRE(a.status == BoundStatus::ok);
    REQUIRE(b.status == BoundStatus::ok);
    CHECK(a.iterations == 1);
    CHECK(b.iterations == 2); // the second step confirms the fixed point
    for (std::size_t t = 0; t < a.magnitude.size(); ++t)
      REQUIRE(a.magnitude[t] ==
              Approx(b.magnitude[t]).margin(1e-9 * (1 + std::abs(b.magnitude[t]))));
    // Gradients at points of the box (the model's own adjoint solve).
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> ud(0, 1);
    const index_t m = 64;
    Batch<double> U(784, m), G;
    for (index_t s = 0; s < m; ++s)
      for (index_t j = 0; j < 784; ++j)
        U(j, s) = box.lower[j] + ud(rng) * (box.upper[j] - box.lower[j]);
    std::vector<index_t> outputs(10);
    for (index_t k = 0; k < 10; ++k)
      outputs[k] = k;
    output_gradients(structured, U, std::span<const index_t>(outputs), G);
    for (index_t s = 0; s < m; ++s)
      for (index_t k = 0; k < 10; ++k)
        for (index_t j = 0; j < 784; ++j)
          REQUIRE(std::abs(G(j, s * 10 + k)) <= a.magnitude[k * 784 + j] + 1e-9);
  }
}

TEST_CASE("local Lipschitz bound: unbounded state bounds and misuse",
          "[bounds][lipschitz]") {
  auto all = cases();
  const Case &c = all.front();
  BoundAnalyzer<double> an(c.model);
  std::vector<double> u0(c.dense.p, 0.5);
  const auto nom = an.nominal(std::span<const double>(u0));
  auto s = an.interval_bounds(nom, linf_box<double>(u0, 0.1));
  s.status = BoundStatus::unbounded;
  const LocalLipschitz L = an.local_lipschitz(s);
  CHECK(L.status == BoundStatus::unbounded);
  for (const double u : L.upper)
    CHECK(std::isinf(u));
  s.z_lower.pop_back();
  CHECK_THROWS_WITH(an.local_lipschitz(s), Catch::Contains("state bounds have"));
}

TEST_CASE("linear bound: optimised lower slopes are never looser than the adaptive ones, "
          "tighter on some margins, and sound against sampling",
          "[bounds]") {
  const auto dir = fashion_test_data();
  const auto model = fashion_model("fashion_mlp");
  BoundOptions off;
  off.slope_steps = 0;
  BoundAnalyzer<double> adaptive(model, off), optimised(model);
  REQUIRE(optimised.options().slope_steps > 0);
  const auto data = fashion_test_images(dir, 12);
  index_t tighter = 0;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> unit(0, 1);
  for (index_t c = 0; c < 12; ++c) {
    std::vector<double> u0(784);
    for (index_t j = 0; j < 784; ++j)
      u0[j] = data.images(j, c);
    const auto nom = adaptive.nominal(std::span<const double>(u0));
    const auto box = linf_box<double>(u0, 0.03, 0.0, 1.0);
    const int label = data.labels[c];
    const auto a = adaptive.margins(nom, box, label, BoundMethod::linear);
    const auto o = optimised.margins(nom, box, label, BoundMethod::linear);
    for (index_t k = 0; k < 10; ++k) {
      REQUIRE(o.margin_lower[k] >= a.margin_lower[k]);
      tighter += o.margin_lower[k] > a.margin_lower[k] + 1e-9 ? 1 : 0;
    }
    if (c >= 3)
      continue;
    // Sampled points of the box (half of them vertices) never beat the bound.
    Batch<double> U(784, 500), X, Y;
    for (index_t s = 0; s < 500; ++s)
      for (index_t j = 0; j < 784; ++j) {
        const double t = unit(rng);
        U(j, s) =
            box.lower[j] + (s % 2 ? std::round(t) : t) * (box.upper[j] - box.lower[j]);
      }
    EquilibriumSolver<double> solver(model);
    REQUIRE(solver.predict(U, X, Y).ok());
    for (index_t s = 0; s < 500; ++s)
      for (index_t k = 0; k < 10; ++k)
        REQUIRE(Y(label, s) - Y(k, s) >=
                o.margin_lower[k] - 1e-12 * (1 + std::abs(Y(k, s))));
  }
  CHECK(tighter > 0);
}

TEST_CASE("rounding: a margin that is exactly 0 is never certified", "[bounds]") {
  // x = 0.1 u0 + 0.2 u1 (identity), y0 = x, y1 = 0.3: at u = (1, 1) the
  // margin y0 - y1 is exactly 0, but 0.1 + 0.2 - 0.3 evaluates to +5.6e-17
  // (and -0.3 + 0.1 + 0.2 to +2.8e-17) in double. Without the rounding
  // allowance every bound would "certify" class 0 on the box of radius 0.
  DenseModel d;
  d.n = 1;
  d.p = 2;
  d.q = 2;
  d.A = {0};
  d.B = {0.1, 0.2};
  d.C = {1, 0};
  d.bx = {0};
  d.by = {0, 0.3};
  d.act.assign(1, Activation{ActivationKind::identity});
  const Model<double> model = make_model(d, {{"x", 0, 1, d.act[0]}});
  BoundAnalyzer<double> an(model);
  const std::vector<double> u0 = {1, 1};
  const auto nom = an.nominal(std::span<const double>(u0));
  REQUIRE(nom.y[0] - nom.y[1] > 0); // the rounding this test is about
  const auto box = linf_box<double>(u0, 0.0);
  for (const BoundMethod m : {BoundMethod::global, BoundMethod::interval,
                              BoundMethod::linear, BoundMethod::best}) {
    INFO(to_string(m));
    const auto mb = an.margins(nom, box, 0, m);
    CHECK(mb.margin_lower[1] <= 0);
    CHECK(mb.margin_lower[1] > -1e-12); // and the allowance stays small
    CHECK_FALSE(mb.certified());
    CHECK(mb.y_lower[0] <= 0.3);
    CHECK(mb.y_upper[0] >= 0.3);
  }
  CertifyOptions options;
  CHECK(certified_radius(an, nom, 0, options) == 0);
}

TEST_CASE("linear state bounds: enclosures that do not intersect are reported, not "
          "collapsed",
          "[bounds]") {
  // A nominal point whose recorded residual understates how far x0 is from
  // the equilibrium: the global interval of one state of the last hidden
  // layer is moved strictly above every value the state takes on the box,
  // yet still overlaps its interval bound. The interval bound stays
  // consistent; the refinement of the linear bound proves the state below
  // the (false) global lower end, and must report it.
  std::mt19937 rng(7);
  const DenseModel d = mlp(rng, 8, {12, 10, 8}, 4);
  const Model<double> model = make_model(d, {{"s", 0, d.n, d.act[0]}});
  BoundAnalyzer<double> an(model);
  std::vector<double> u0(d.p);
  std::uniform_real_distribution<double> ud(0, 1);
  for (auto &v : u0)
    v = ud(rng);
  const auto nom = an.nominal(std::span<const double>(u0));
  const auto box = linf_box<double>(u0, 0.08);
  const auto g = an.global_bounds(nom, box);
  const auto iv = an.interval_bounds(nom, box);
  const auto lin = an.linear_state_bounds(nom, box);
  // A state of the last hidden layer that the linear bound tightens from
  // above by a clear gap and that is unstable under the interval bound (so
  // that the refinement revisits it).
  index_t chosen = -1;
  for (index_t i = d.n - 8; i < d.n && chosen < 0; ++i)
    if (iv.z_lower[i] < 0 && iv.z_upper[i] > 0 && lin.x_upper[i] > 0 &&
        iv.x_upper[i] - lin.x_upper[i] > 0.1 * (iv.x_upper[i] - iv.x_lower[i]))
      chosen = i;
  REQUIRE(chosen >= 0);
  CAPTURE(chosen, lin.x_upper[chosen], iv.x_upper[chosen]);
  const double target = (lin.x_upper[chosen] + iv.x_upper[chosen]) / 2;
  NominalPoint<double> bad = nom;
  // The global interval is x0 -+ w (its lower end clipped to the range of
  // the ReLU): centre it at target + w.
  bad.x[chosen] = target + (g.x_upper[chosen] - nom.x[chosen]);
  const auto g2 = an.global_bounds(bad, box);
  REQUIRE(g2.x_lower[chosen] > lin.x_upper[chosen]);
  REQUIRE(g2.x_lower[chosen] < iv.x_upper[chosen]);
  // The interval bound alone still finds a nonempty (if false) intersection.
  const auto iv2 = an.interval_bounds(bad, box);
  REQUIRE(iv2.x_lower[chosen] <= iv2.x_upper[chosen]);
  CHECK_THROWS_AS(an.linear_state_bounds(bad, box), Error);
  CHECK_THROWS_WITH(an.linear_state_bounds(bad, box),
                    Catch::Contains("enclosures of state " + std::to_string(chosen) +
                                    " do not intersect"));
  // The margins of the linear bound run the same refinement.
  CHECK_THROWS_WITH(an.margins(bad, box, 0, BoundMethod::linear),
                    Catch::Contains("do not intersect"));
}

// ------------------------------------------------------------ residual networks

#include <tacit/io/io.hpp>
#include <tacit/nn/network.hpp>

namespace {

/// A small CIFAR-style ResNet on 3 x 8 x 8 images through the network
/// builder (structured convolutions, residual adds, an option-A shortcut,
/// global average pooling, a dense classifier): 5 ReLU blocks.
template <class T> Model<T> mini_resnet(std::uint64_t seed) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> bd(-0.05, 0.05);
  NetworkBuilder<T> net;
  const Activation relu{ActivationKind::relu};
  const auto conv = [&](index_t x, index_t out, index_t stride, double gain) {
    Conv2dGeometry g;
    g.input = net.shape(x);
    g.out_channels = out;
    g.kernel_h = g.kernel_w = 3;
    g.stride_h = g.stride_w = stride;
    g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 1;
    const index_t fan = g.input.channels * 9;
    std::vector<T> w(static_cast<std::size_t>(out * fan)),
        b(static_cast<std::size_t>(out));
    for (auto &v : w)
      v = static_cast<T>(gain * std::sqrt(2.0 / double(fan)) * nd(rng));
    for (auto &v : b)
      v = static_cast<T>(bd(rng));
    return net.conv2d(x, g, std::move(w), std::move(b));
  };
  auto x = net.input({3, 8, 8});
  x = net.activation(conv(x, 4, 1, 1.0), relu);
  auto h = net.activation(conv(x, 4, 1, 1.0), relu);
  x = net.activation(net.add(conv(h, 4, 1, 0.5), x), relu);
  h = net.activation(conv(x, 8, 2, 1.0), relu);
  x = net.activation(net.add(conv(h, 8, 1, 0.5), net.channel_pad(x, 8, 2, 2)), relu);
  const auto pooled = net.flatten(net.global_avg_pool(x));
  std::vector<T> fc(80), fb(10);
  for (auto &v : fc)
    v = static_cast<T>(nd(rng) / std::sqrt(8.0));
  for (auto &v : fb)
    v = static_cast<T>(bd(rng));
  return net.build(net.dense(pooled, 10, std::move(fc), std::move(fb)));
}

/// Checks the bounds of `model` on the box |u - u0| <= eps against samples
/// of the box and PGD, both evaluated on the exact model by its own solver
/// in double: the interval and linear state bounds contain the sampled
/// states, the margin bounds stay below the sampled margins and below the
/// margin PGD reaches. Returns the linear margin bounds.
template <class T>
MarginBounds<T> check_bounds_by_sampling(const BoundAnalyzer<T> &an,
                                         const Model<double> &exact,
                                         std::span<const T> u0, int label, double eps,
                                         index_t samples, int pgd_steps) {
  const index_t p = exact.inputs(), n = exact.states(), q = exact.outputs();
  const auto nom = an.nominal(u0);
  const auto box = linf_box<T>(u0, static_cast<T>(eps));
  const auto iv = an.interval_bounds(nom, box);
  LinearBoundStats stats;
  const auto lin = an.linear_state_bounds(nom, box, &stats);
  REQUIRE(iv.status == BoundStatus::ok);
  REQUIRE(lin.status == BoundStatus::ok);
  const auto mi = an.margins(nom, box, label, BoundMethod::interval);
  const auto ml = an.margins(nom, box, label, BoundMethod::linear);
  REQUIRE(ml.status == BoundStatus::ok);
  for (index_t k = 0; k < q; ++k) {
    REQUIRE(std::isfinite(double(ml.margin_lower[k])));
    REQUIRE(ml.margin_lower[k] >= mi.margin_lower[k]);
  }
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> unit(0, 1);
  Batch<double> U(p, samples), X, Y;
  for (index_t c = 0; c < samples; ++c)
    for (index_t j = 0; j < p; ++j) {
      const double t = unit(rng);
      U(j, c) = double(box.lower[j]) + (c % 2 ? std::round(t) : t) *
                                           (double(box.upper[j]) - double(box.lower[j]));
    }
  EquilibriumSolver<double> solver(exact);
  REQUIRE(solver.predict(U, X, Y).ok());
  for (index_t c = 0; c < samples; ++c) {
    for (const auto *b : {&iv, &lin})
      for (index_t i = 0; i < n; ++i) {
        const double x = X(i, c), slack = 1e-9 * (1 + std::abs(x));
        if (!(x >= double(b->x_lower[i]) - slack && x <= double(b->x_upper[i]) + slack)) {
          UNSCOPED_INFO("state " << i << " of sample " << c << ": " << x << " outside ["
                                 << b->x_lower[i] << ", " << b->x_upper[i] << "]");
          REQUIRE(false);
        }
      }
    for (index_t k = 0; k < q; ++k)
      REQUIRE(Y(label, c) - Y(k, c) >=
              double(ml.margin_lower[k]) - 1e-9 * (1 + std::abs(Y(k, c))));
  }
  double bound = std::numeric_limits<double>::infinity();
  for (index_t k = 0; k < q; ++k)
    if (k != label)
      bound = std::min(bound, double(ml.margin_lower[k]));
  PgdOptions pgd;
  pgd.eps = eps;
  pgd.steps = pgd_steps;
  pgd.restarts = 0;
  pgd.domain_lo = 1;
  pgd.domain_hi = 0;
  const auto res = pgd_attack<T>(an.model(), u0, label, pgd);
  Batch<double> Ua(p, 1), Xa, Ya;
  for (index_t j = 0; j < p; ++j)
    Ua(j, 0) = double(res.u[j]);
  REQUIRE(solver.predict(Ua, Xa, Ya).ok());
  double reached = std::numeric_limits<double>::infinity();
  for (index_t k = 0; k < q; ++k)
    if (k != label)
      reached = std::min(reached, Ya(label, 0) - Ya(k, 0));
  CHECK(reached >= bound - 1e-9 * (1 + std::abs(reached)));
  return ml;
}

} // namespace

TEMPLATE_TEST_CASE("a residual CNN built from structured operators: interval and linear "
                   "bounds certify nonzero radii and hold under sampling and PGD",
                   "[bounds][resnet]", float, double) {
  using T = TestType;
  const Model<T> model = mini_resnet<T>(3);
  const Model<double> exact = exact_model(model);
  BoundAnalyzer<T> an(model);
  REQUIRE(an.feed_forward());
  REQUIRE(an.certified_well_posed());
  std::mt19937 rng(8);
  std::uniform_real_distribution<double> ud(0, 1);
  CertifyOptions oi, ol;
  oi.method = BoundMethod::interval;
  ol.method = BoundMethod::linear;
  oi.domain_lo = ol.domain_lo = 1;
  oi.domain_hi = ol.domain_hi = 0;
  for (int trial = 0; trial < 2; ++trial) {
    CAPTURE(trial);
    std::vector<T> u0(model.inputs());
    for (auto &v : u0)
      v = static_cast<T>(ud(rng));
    const auto nom = an.nominal(std::span<const T>(u0));
    const int label = nom.predicted();
    const double ri = certified_radius(an, nom, label, oi);
    const double rl = certified_radius(an, nom, label, ol);
    CAPTURE(ri, rl);
    CHECK(ri > 0);
    CHECK(rl > ri);
    const auto ml = check_bounds_by_sampling<T>(an, exact, u0, label, rl, 200, 20);
    CHECK(ml.certified());
  }
}

TEMPLATE_TEST_CASE("ResNet20, built in and imported from ONNX: the bounds run through "
                   "the block sweep without materialising A and hold under sampling and "
                   "PGD",
                   "[bounds][resnet][slow]", float, double) {
  using T = TestType;
#if defined(__SANITIZE_ADDRESS__)
  const index_t samples = 4; // sanitizer builds: a sample
  const int steps = 1;
#else
  const index_t samples = 24;
  const int steps = 3;
#endif
  BoundOptions options;
  options.refine_budget = double(1 << 22); // a few refinement chunks
  for (const bool onnx : {false, true}) {
    CAPTURE(onnx);
    const Model<T> model =
        onnx ? import_onnx<T>(std::filesystem::path(TACIT_TEST_DATA_DIR) / "onnx" /
                              "resnet20.onnx")
             : resnet20<T>();
    const Batch<T> inputs =
        onnx ? read_vectors<T>(std::filesystem::path(TACIT_TEST_DATA_DIR) / "onnx" /
                                   "resnet20_input.txt",
                               3072)
             : resnet20_inputs<T>(1);
    const Model<double> exact = exact_model(model);
    BoundAnalyzer<T> an(model, options);
    REQUIRE(an.feed_forward());
    REQUIRE(an.certified_well_posed());
    CHECK(an.rate() == 0);
    CHECK(an.levels() == 19);
    std::vector<T> u0(3072);
    inputs.get_column(0, u0);
    const int label = an.nominal(std::span<const T>(u0)).predicted();
    check_bounds_by_sampling<T>(an, exact, u0, label, 1e-4, samples, steps);
  }
}
