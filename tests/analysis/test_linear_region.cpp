// The linear region of a piecewise-linear feed-forward model
// (lib/analysis/linear_region.cpp): its radius, outputs, Jacobian and
// margins against exact arithmetic on small deep models, its use by the
// certification, and its soundness on ResNet20 under sampling and PGD.

#include <tacit/analysis/attack.hpp>
#include <tacit/analysis/bounds.hpp>
#include <tacit/core/error.hpp>
#include <tacit/io/io.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/nn/onnx.hpp>
#include <tacit/solve/solve.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <random>

#include "bounds_test_util.hpp"
#include "exact_util.hpp"

using namespace tacit;
using namespace tacit::testutil;

namespace {

bool nonlinear(const Activation &a) {
  return a.kind == ActivationKind::relu ||
         (a.kind == ActivationKind::leaky_relu && a.slope != 1);
}

// Exact pre-activations and outputs at u, and the exact Jacobians at u0 by
// exact differences over a step h (a power of two) that stays within the
// region: the model is affine there, so the differences are the Jacobian.
struct ExactLinearisation {
  std::vector<Exact> z, y;
  std::vector<double> Jz, Jy; // n x p, q x p (nearest doubles of exact values)
};

ExactLinearisation linearise(const DenseModel &m, const std::vector<double> &u0,
                             double h) {
  ExactLinearisation out;
  std::vector<Exact> x;
  evaluate_exact(m, u0, x, out.z, out.y);
  out.Jz.assign(static_cast<std::size_t>(m.n * m.p), 0.0);
  out.Jy.assign(static_cast<std::size_t>(m.q * m.p), 0.0);
  for (index_t j = 0; j < m.p; ++j) {
    std::vector<double> u = u0;
    u[j] += h;
    std::vector<Exact> xs, zs, ys;
    evaluate_exact(m, u, xs, zs, ys);
    for (index_t i = 0; i < m.n; ++i)
      out.Jz[i * m.p + j] = ((zs[i] - out.z[i]) * (1 / h)).approx();
    for (index_t k = 0; k < m.q; ++k)
      out.Jy[k * m.p + j] = ((ys[k] - out.y[k]) * (1 / h)).approx();
  }
  return out;
}

// The exact radius of the activation pattern: min |z_i| / ||J_i||_1 over the
// ReLU-like states that depend on u.
double exact_region_radius(const DenseModel &m, const ExactLinearisation &ex) {
  double radius = std::numeric_limits<double>::infinity();
  for (index_t i = 0; i < m.n; ++i) {
    if (!nonlinear(m.act[i]))
      continue;
    double norm = 0;
    for (index_t j = 0; j < m.p; ++j)
      norm += std::abs(ex.Jz[i * m.p + j]);
    if (norm > 0)
      radius = std::min(radius, std::abs(ex.z[i].approx()) / norm);
  }
  return radius;
}

} // namespace

TEST_CASE("linear region: radius, outputs, Jacobian and margins against exact arithmetic "
          "on deep residual MLPs with mixed activations",
          "[bounds][region]") {
  for (const std::uint32_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    std::vector<index_t> sizes;
    const DenseModel m = mixed_deep_model(rng, sizes);
    const Model<double> model = layered_model<double>(m, sizes);
    BoundAnalyzer<double> an(model);
    REQUIRE(an.linear_region_supported());
    const std::vector<double> u0 = dyadic_input(rng, m.p);
    const auto nom = an.nominal(std::span<const double>(u0));
    const LinearRegion region = an.linear_region(nom);
    REQUIRE(region.inputs == m.p);
    REQUIRE(region.outputs == m.q);
    const double h = std::ldexp(1.0, -30);
    REQUIRE(region.radius > h);
    const ExactLinearisation ex = linearise(m, u0, h);

    // The radius: no larger than the exact one, and close to it.
    const double exact_radius = exact_region_radius(m, ex);
    CAPTURE(region.radius, exact_radius);
    CHECK(region.radius <= exact_radius * (1 + 1e-12));
    CHECK(region.radius >= exact_radius * (1 - 1e-9));

    // Outputs and Jacobian rows within their error bounds (zero tolerance:
    // exact comparisons), the bounds themselves small.
    for (index_t k = 0; k < m.q; ++k) {
      const Exact dy = ex.y[k] - Exact(region.y[k]);
      CHECK(dy <= Exact(region.y_error[k]));
      CHECK(Exact(-region.y_error[k]) <= dy);
      CHECK(region.y_error[k] <=
            1e-15 * (1 + std::abs(region.y[k]))); // y is rounded to double
      double dist = 0;
      for (index_t j = 0; j < m.p; ++j)
        dist += std::abs(ex.Jy[k * m.p + j] - region.jacobian[k * m.p + j]);
      CHECK(dist <= region.jacobian_error[k] + 1e-14); // Jy itself is rounded to double
      CHECK(region.jacobian_error[k] <= 1e-11);
    }

    // Margins at a dyadic eps inside the radius: the exact minimum of an
    // affine margin over the box is at the vertex u0 - eps sign(J_l - J_k);
    // the bound is below it (exactly) and within 1e-9 of it.
    const int label = nom.predicted();
    const double eps = std::ldexp(1.0, std::ilogb(region.radius) - 1);
    REQUIRE(eps <= region.radius);
    for (int k = 0; k < static_cast<int>(m.q); ++k) {
      if (k == label)
        continue;
      std::vector<double> v = u0;
      for (index_t j = 0; j < m.p; ++j) {
        const double g = ex.Jy[label * m.p + j] - ex.Jy[k * m.p + j];
        v[j] += g > 0 ? -eps : (g < 0 ? eps : 0);
      }
      std::vector<Exact> xv, zv, yv;
      evaluate_exact(m, v, xv, zv, yv);
      for (index_t i = 0; i < m.n; ++i) // the vertex keeps the pattern
        if (nonlinear(m.act[i]))
          REQUIRE(zv[i].sign() == ex.z[i].sign());
      const Exact margin = yv[label] - yv[k];
      const double bound = region.margin_lower(label, k, eps);
      CAPTURE(k, margin.approx(), bound);
      CHECK(Exact(bound) <= margin);
      CHECK(margin.approx() - bound <= 1e-9 * (1 + std::abs(margin.approx())));
      // Beyond the radius the region says nothing.
      CHECK(std::isinf(region.margin_lower(label, k, region.radius * 2 + 1e-300)));
    }
  }
}

TEST_CASE("linear region: a float model is analysed as the real-number model of its "
          "parameters",
          "[bounds][region]") {
  std::mt19937 rng(5);
  std::vector<index_t> sizes;
  const DenseModel m = rounded_to_float(mixed_deep_model(rng, sizes));
  const Model<float> model = layered_model<float>(m, sizes);
  BoundAnalyzer<float> an(model);
  const std::vector<double> u0d = dyadic_input(rng, m.p);
  const std::vector<float> u0(u0d.begin(), u0d.end());
  const auto nom = an.nominal(std::span<const float>(u0));
  const LinearRegion region = an.linear_region(nom);
  const ExactLinearisation ex = linearise(m, u0d, std::ldexp(1.0, -30));
  const double exact_radius = exact_region_radius(m, ex);
  CAPTURE(region.radius, exact_radius);
  CHECK(region.radius > 0);
  CHECK(region.radius <= exact_radius * (1 + 1e-12));
  CHECK(region.radius >= exact_radius * 0.99); // the Jacobian is pushed through in float
  for (index_t k = 0; k < m.q; ++k) {
    const Exact dy = ex.y[k] - Exact(region.y[k]);
    CHECK(dy <= Exact(region.y_error[k]));
    CHECK(Exact(-region.y_error[k]) <= dy);
  }
}

TEST_CASE("linear region: the certified radius starts from the region's and goes on "
          "with the other bounds, and certify_dataset reports it",
          "[bounds][region]") {
  std::mt19937 rng(11);
  std::vector<index_t> sizes;
  // 14 layers with gain 2.2: the interval enclosure grows ~|W| per layer.
  const DenseModel m = mixed_deep_model(rng, sizes, 14, 2.2);
  const Model<double> model = layered_model<double>(m, sizes);
  BoundOptions with, without;
  without.linear_region = false;
  BoundAnalyzer<double> an(model, with), plain(model, without);
  CertifyOptions co;
  co.method = BoundMethod::linear;
  const std::vector<double> u0 = dyadic_input(rng, m.p);
  auto nom = an.nominal(std::span<const double>(u0));
  const int label = nom.predicted();
  const double r_plain = certified_radius(plain, nom, label, co);
  nom.region = std::make_shared<const LinearRegion>(an.linear_region(nom));
  const double r_region = certified_radius(an, nom, label, co);
  CAPTURE(r_plain, r_region, nom.region->radius);
  CHECK(r_region > 0);
  CHECK(r_region >= nom.region->certified_radius(label));
  CHECK(r_region >= 0.99 * r_plain); // beyond the region: CROWN, without bisection
  // Margins of the linear bound inside the region are the region's.
  const auto box = linf_box<double>(u0, r_region / 2);
  const auto mb = an.margins(nom, box, label, BoundMethod::linear);
  CHECK(mb.certified());
  // Exact evaluation at random vertices of the certified box keeps the label.
  std::uniform_int_distribution<int> coin(0, 1);
  const double eps = std::ldexp(1.0, std::ilogb(r_region));
  REQUIRE(eps <= r_region);
  for (int s = 0; s < 64; ++s) {
    std::vector<double> v = u0;
    for (auto &t : v)
      t += coin(rng) ? eps : -eps;
    std::vector<Exact> x, z, y;
    evaluate_exact(m, v, x, z, y);
    for (index_t k = 0; k < m.q; ++k)
      if (static_cast<int>(k) != label) {
        REQUIRE(y[k] < y[label]);
        REQUIRE(Exact(nom.region->margin_lower(label, static_cast<int>(k), eps)) <=
                y[label] - y[k]);
      }
  }
  // certify_dataset computes the region per input for the linear bound.
  Batch<double> U(m.p, 1);
  U.set_column(0, std::span<const double>(u0));
  const std::vector<int> labels{label};
  const std::vector<double> eps_list{r_region / 2};
  const auto acc = certify_dataset(an, U, labels, eps_list, true, co);
  REQUIRE(acc.per_input.size() == 1);
  CHECK(acc.per_input[0].region_radius == nom.region->radius);
  CHECK(acc.per_input[0].radius == r_region);
  CHECK(acc.certified[0] == 1);
  co.method = BoundMethod::interval;
  const auto acc_i = certify_dataset(an, U, labels, eps_list, false, co);
  CHECK(acc_i.per_input[0].region_radius == -1);
}

TEST_CASE("linear region: models it does not apply to, and misuse", "[bounds][region]") {
  std::mt19937 rng(3);
  std::vector<index_t> sizes;
  DenseModel m = mixed_deep_model(rng, sizes, 3);
  for (index_t i = 0; i < sizes[0]; ++i)
    m.act[i] = Activation{ActivationKind::tanh};
  {
    BoundAnalyzer<double> an(layered_model<double>(m, sizes));
    std::string why;
    CHECK_FALSE(an.linear_region_supported(&why));
    CHECK(why.find("state 0") != std::string::npos);
    CHECK(why.find("smooth") != std::string::npos);
    const std::vector<double> u0(m.p, 0.5);
    const auto nom = an.nominal(std::span<const double>(u0));
    CHECK_THROWS_AS(an.linear_region(nom), Unsupported);
  }
  {
    // With cycles: no block sweep.
    const DenseModel c = implicit(rng, 8, 3, 2, 0.5);
    BoundAnalyzer<double> an(make_model(c, {}));
    std::string why;
    CHECK_FALSE(an.linear_region_supported(&why));
    CHECK(why.find("block lower triangular") != std::string::npos);
  }
  for (index_t i = 0; i < sizes[0]; ++i)
    m.act[i] = Activation{};
  BoundAnalyzer<double> an(layered_model<double>(m, sizes));
  const std::vector<double> u0(m.p, 0.25);
  const auto nom = an.nominal(std::span<const double>(u0));
  const LinearRegion r = an.linear_region(nom);
  CHECK_THROWS_AS(r.margin_lower(0, 3, 0.0), InvalidArgument);
  CHECK_THROWS_AS(r.margin_lower(-1, 0, 0.0), InvalidArgument);
  CHECK_THROWS_AS(r.margin_lower(0, 1, -1.0), InvalidArgument);
  CHECK_THROWS_AS(r.certified_radius(7), InvalidArgument);
  CHECK_THROWS_AS(r.output_bounds(3, 0.0), InvalidArgument);
  NominalPoint<double> wrong = nom;
  wrong.u.pop_back();
  CHECK_THROWS_AS(an.linear_region(wrong), InvalidArgument);
}

TEST_CASE("linear region: ResNet20, built in and imported from ONNX, certifies nonzero "
          "radii that hold under sampling and PGD",
          "[bounds][region][resnet][slow]") {
#if defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds: the built-in network, the region's own radius, a sample.
  const index_t samples = 4;
  const int steps = 1;
  const bool full = false;
#else
  const index_t samples = 24;
  const int steps = 3;
  const bool full = true;
#endif
  for (const bool onnx : {false, true}) {
    if (onnx && !full)
      continue;
    CAPTURE(onnx);
    const auto dir = std::filesystem::path(TACIT_TEST_DATA_DIR) / "onnx";
    const Model<double> model =
        onnx ? import_onnx<double>(dir / "resnet20.onnx") : resnet20<double>();
    const Batch<double> inputs =
        onnx ? read_vectors<double>(dir / "resnet20_input.txt", 3072)
             : resnet20_inputs<double>(1);
    BoundAnalyzer<double> an(model);
    REQUIRE(an.linear_region_supported());
    std::vector<double> u0(3072);
    inputs.get_column(0, u0);
    auto nom = an.nominal(std::span<const double>(u0));
    const int label = nom.predicted();
    nom.region = std::make_shared<const LinearRegion>(an.linear_region(nom));
    const double eps = nom.region->certified_radius(label);
    CAPTURE(nom.region->radius, eps);
    REQUIRE(nom.region->radius > 0);
    REQUIRE(eps > 0);
    if (full) {
      // certify_dataset finds the same region and at least its radius.
      CertifyOptions co;
      co.method = BoundMethod::linear;
      Batch<double> U(3072, 1);
      U.set_column(0, std::span<const double>(u0));
      const std::vector<int> labels{label};
      const std::vector<double> none;
      const auto acc = certify_dataset(an, U, labels, none, true, co);
      CHECK(acc.per_input[0].region_radius == nom.region->radius);
      CHECK(acc.per_input[0].radius >= eps);
      {
        // float32: the region's radius (about 3e-17, set by the Jacobian's
        // float rounding) lies far below one unit in the last place of the
        // inputs; certify_at takes the region's margins on the ball itself
        // and agrees with the certified radius, where a box rounded to
        // float would leave the region and certify nothing.
        const Model<float> mf =
            onnx ? import_onnx<float>(dir / "resnet20.onnx") : resnet20<float>();
        BoundAnalyzer<float> af(mf);
        const std::vector<float> uf(u0.begin(), u0.end());
        auto nf = af.nominal(std::span<const float>(uf));
        if (nf.predicted() == label) {
          nf.region = std::make_shared<const LinearRegion>(af.linear_region(nf));
          const double rf = nf.region->certified_radius(label);
          CAPTURE(rf);
          CHECK(rf > 0);
          CHECK(rf < 1e-9);
          CHECK(certify_at(af, nf, label, rf, co));
          CHECK(certified_radius(af, nf, label, co) >= rf);
          NominalPoint<float> plain = nf;
          plain.region.reset();
          CHECK_FALSE(certify_at(af, plain, label, rf, co));
        }
      }
      if (!onnx) {
        // The interval and CROWN bounds certify nothing at that radius.
        BoundOptions off;
        off.linear_region = false;
        off.refine_budget = double(1 << 22);
        BoundAnalyzer<double> plain(model, off);
        const auto nom0 = plain.nominal(std::span<const double>(u0));
        CHECK_FALSE(certify_at(plain, nom0, label, eps, co));
      }
    }

    // Sampling at the certified radius (vertices and interior points), with
    // the double solver: the label holds and every margin is above its
    // bound, up to the solver's own rounding.
    std::mt19937_64 rng(17);
    std::uniform_real_distribution<double> unit(0, 1);
    Batch<double> Us(3072, samples), X, Y;
    for (index_t s = 0; s < samples; ++s)
      for (index_t j = 0; j < 3072; ++j) {
        const double t = s % 2 ? std::round(unit(rng)) : unit(rng);
        Us(j, s) = u0[j] + (2 * t - 1) * eps;
      }
    EquilibriumSolver<double> solver(model);
    REQUIRE(solver.predict(Us, X, Y).ok());
    for (index_t s = 0; s < samples; ++s)
      for (int k = 0; k < 10; ++k)
        if (k != label)
          REQUIRE(Y(label, s) - Y(k, s) >= nom.region->margin_lower(label, k, eps) -
                                               1e-9 * (1 + std::abs(Y(k, s))));
    // PGD within the certified radius reaches no margin below the bound.
    PgdOptions pgd;
    pgd.eps = eps;
    pgd.steps = steps;
    pgd.restarts = 0;
    pgd.domain_lo = 1;
    pgd.domain_hi = 0;
    const auto res = pgd_attack<double>(model, std::span<const double>(u0), label, pgd);
    Batch<double> Ua(3072, 1), Xa, Ya;
    Ua.set_column(0, std::span<const double>(res.u));
    REQUIRE(solver.predict(Ua, Xa, Ya).ok());
    for (int k = 0; k < 10; ++k)
      if (k != label)
        CHECK(Ya(label, 0) - Ya(k, 0) >=
              nom.region->margin_lower(label, k, eps) - 1e-9 * (1 + std::abs(Ya(k, 0))));
  }
}
