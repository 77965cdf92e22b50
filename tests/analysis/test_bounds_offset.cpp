// The interval bound around a precise nominal point
// (BoundAnalyzer::interval_margins_around, lib/analysis/bounds_offset.cpp):
// sound against exact rational evaluation with zero tolerance, attained at a
// vertex where interval arithmetic is exact, never looser than the box bound
// beyond rounding, certifying where the box bound's rounding cannot, and on
// ResNet20 built in and imported from ONNX.
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

// Points of the ball |u - u0| <= eps (eps a power of two, u0 dyadic, so every
// point below is a double exactly): random vertices and random points on a
// grid of eps / 8.
std::vector<std::vector<double>>
ball_points(std::mt19937 &rng, const std::vector<double> &u0, double eps, int count) {
  std::uniform_int_distribution<int> grid(-8, 8), side(0, 1);
  std::vector<std::vector<double>> out;
  for (int s = 0; s < count; ++s) {
    std::vector<double> u = u0;
    for (auto &v : u)
      v += s % 2 ? (side(rng) ? eps : -eps) : eps * grid(rng) / 8;
    out.push_back(std::move(u));
  }
  return out;
}

// Checks the margins and output bounds of `b` against the exact model at
// every point, with zero tolerance.
void check_sound(const DenseModel &m, const MarginBounds<double> &b, int label,
                 const std::vector<std::vector<double>> &points) {
  for (const auto &u : points) {
    std::vector<Exact> x, z, y;
    evaluate_exact(m, u, x, z, y);
    for (index_t k = 0; k < m.q; ++k) {
      CAPTURE(k, y[k].approx(), b.y_lower[k], b.y_upper[k]);
      REQUIRE(Exact(b.y_lower[k]) <= y[k]);
      REQUIRE(y[k] <= Exact(b.y_upper[k]));
      if (k != label) {
        CAPTURE(b.margin_lower[k]);
        REQUIRE(Exact(b.margin_lower[k]) <= y[label] - y[k]);
      }
    }
  }
}

} // namespace

TEST_CASE("interval around a precise nominal point: sound in exact arithmetic on deep "
          "residual MLPs with ReLU, leaky ReLU (slopes 0.1 and 2) and identity",
          "[bounds][offset]") {
  for (const std::uint32_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    std::vector<index_t> sizes;
    const DenseModel m = mixed_deep_model(rng, sizes);
    const Model<double> model = layered_model<double>(m, sizes);
    BoundAnalyzer<double> an(model);
    const std::vector<double> u0 = dyadic_input(rng, m.p);
    auto nom = an.nominal(std::span<const double>(u0));
    const int label = nom.predicted();
    const PreciseNominal pn = an.precise_nominal(nom);
    // Radii from deep inside every state's sign to far beyond (unstable
    // states at every layer, the slope-2 layers included).
    for (const int e : {-40, -20, -10, -6, -3, 0}) {
      const double eps = std::ldexp(1.0, e);
      CAPTURE(eps);
      const auto b = an.interval_margins_around(nom, pn, eps, label);
      check_sound(m, b, label, ball_points(rng, u0, eps, 24));
      // Never looser than the box bound by more than rounding: in exact
      // arithmetic the two enclose the same sets.
      const auto box = linf_box<double>(u0, eps, 1, 0);
      const auto ib = an.margins(nom, box, label, BoundMethod::interval);
      for (index_t k = 0; k < m.q; ++k) {
        CAPTURE(k, b.margin_lower[k], ib.margin_lower[k]);
        CHECK(b.margin_lower[k] >=
              ib.margin_lower[k] - 1e-9 * (1 + std::abs(ib.margin_lower[k])));
        CHECK(b.y_lower[k] >= ib.y_lower[k] - 1e-9 * (1 + std::abs(ib.y_lower[k])));
        CHECK(b.y_upper[k] <= ib.y_upper[k] + 1e-9 * (1 + std::abs(ib.y_upper[k])));
      }
    }
    // Clipped to a domain: sound on the clipped ball, and tighter.
    const double eps = 0.125;
    const auto clipped = an.interval_margins_around(nom, pn, eps, label, 0.0, 1.0);
    auto points = ball_points(rng, u0, eps, 24);
    for (auto &u : points)
      for (auto &v : u)
        v = std::clamp(v, 0.0, 1.0);
    check_sound(m, clipped, label, points);
  }
}

TEST_CASE("interval around a precise nominal point: output bounds attained at a vertex "
          "when every state is stable",
          "[bounds][offset]") {
  // One layer of ReLU states held positive by their bias, C = I: each
  // output is affine in u on the ball, and its interval bound is the exact
  // minimum, at the vertex u0 - eps sign(B_k).
  std::mt19937 rng(5);
  DenseModel m;
  m.n = 4;
  m.p = 6;
  m.q = 4;
  m.A.assign(16, 0.0);
  m.B = random_dense(rng, 4, 6, 1.0);
  m.C.assign(16, 0.0);
  for (index_t i = 0; i < 4; ++i)
    m.C[i * 4 + i] = 1;
  m.bx.assign(4, 8.0);
  m.by.assign(4, 0.0);
  m.act.assign(4, Activation{});
  const Model<double> model = layered_model<double>(m, {4});
  BoundAnalyzer<double> an(model);
  const std::vector<double> u0 = dyadic_input(rng, m.p);
  const auto nom = an.nominal(std::span<const double>(u0));
  const int label = nom.predicted();
  const PreciseNominal pn = an.precise_nominal(nom);
  const double eps = std::ldexp(1.0, -7);
  const auto b = an.interval_margins_around(nom, pn, eps, label);
  for (index_t k = 0; k < 4; ++k) {
    std::vector<double> lo = u0, hi = u0;
    for (index_t j = 0; j < m.p; ++j) {
      const double w = m.B[k * m.p + j];
      lo[j] += w > 0 ? -eps : eps;
      hi[j] += w > 0 ? eps : -eps;
    }
    std::vector<Exact> x, z, ylo, yhi;
    evaluate_exact(m, lo, x, z, ylo);
    evaluate_exact(m, hi, x, z, yhi);
    CAPTURE(k, ylo[k].approx(), b.y_lower[k], yhi[k].approx(), b.y_upper[k]);
    REQUIRE(Exact(b.y_lower[k]) <= ylo[k]);
    REQUIRE(yhi[k] <= Exact(b.y_upper[k]));
    CHECK(ylo[k].approx() - b.y_lower[k] <= 1e-13 * (1 + std::abs(ylo[k].approx())));
    CHECK(b.y_upper[k] - yhi[k].approx() <= 1e-13 * (1 + std::abs(yhi[k].approx())));
  }
}

TEST_CASE("interval around a precise nominal point: a float model is bounded as the "
          "real-number model of its parameters",
          "[bounds][offset]") {
  std::mt19937 rng(11);
  std::vector<index_t> sizes;
  const DenseModel m = rounded_to_float(mixed_deep_model(rng, sizes));
  const Model<float> model = layered_model<float>(m, sizes);
  BoundAnalyzer<float> an(model);
  const std::vector<double> u0d = dyadic_input(rng, m.p);
  const std::vector<float> u0(u0d.begin(), u0d.end());
  const auto nom = an.nominal(std::span<const float>(u0));
  const int label = nom.predicted();
  const PreciseNominal pn = an.precise_nominal(nom);
  for (const int e : {-30, -12, -5}) {
    const double eps = std::ldexp(1.0, e);
    CAPTURE(eps);
    const auto bf = an.interval_margins_around(nom, pn, eps, label);
    MarginBounds<double> b;
    b.margin_lower.assign(bf.margin_lower.begin(), bf.margin_lower.end());
    b.y_lower.assign(bf.y_lower.begin(), bf.y_lower.end());
    b.y_upper.assign(bf.y_upper.begin(), bf.y_upper.end());
    check_sound(m, b, label, ball_points(rng, u0d, eps, 24));
  }
}

TEST_CASE("interval around a precise nominal point: certifies a deep network where the "
          "box bound's own rounding exceeds the margins",
          "[bounds][offset]") {
  // 40 residual layers of 16 at gain 2.5: |W| grows interval widths far faster
  // than W grows the states, so the box bound at a point box (eps = 0)
  // already carries rounding above the margins.
  std::mt19937 rng(3);
  std::vector<index_t> sizes;
  const DenseModel m = deep_mlp(rng, 5, 16, 40, 3, 2.5, 0.5, 1.0, &sizes);
  const Model<double> model = layered_model<double>(m, sizes);
  BoundAnalyzer<double> an(model);
  const std::vector<double> u0 = dyadic_input(rng, m.p);
  auto nom = an.nominal(std::span<const double>(u0));
  const int label = nom.predicted();
  nom.precise = std::make_shared<const PreciseNominal>(an.precise_nominal(nom));
  CertifyOptions co;
  co.method = BoundMethod::interval;
  const double radius = certified_radius(an, nom, label, co);
  CAPTURE(radius);
  REQUIRE(radius > 0);
  // The box bound certifies nothing, not even a point box.
  const auto box = linf_box<double>(u0, 0.0, 1, 0);
  CHECK_FALSE(an.margins(nom, box, label, BoundMethod::interval).certified());
  NominalPoint<double> plain = nom;
  plain.precise.reset();
  CHECK(certified_radius(an, plain, label, co) == 0);
  // Sound at that radius against the exact model.
  check_sound(m, an.interval_margins_around(nom, *nom.precise, radius, label), label,
              ball_points(rng, u0, std::ldexp(1.0, std::ilogb(radius)), 24));
  // And certify_dataset finds the same radius.
  Batch<double> U(m.p, 1);
  U.set_column(0, std::span<const double>(u0));
  const std::vector<int> labels{label};
  const std::vector<double> eps{radius};
  const auto acc = certify_dataset(an, U, labels, eps, true, co);
  CHECK(acc.certified[0] == 1);
  CHECK(acc.per_input[0].radius == radius);
}

TEST_CASE("interval around a precise nominal point: misuse", "[bounds][offset]") {
  std::mt19937 rng(7);
  std::vector<index_t> sizes;
  const DenseModel m = mixed_deep_model(rng, sizes, 3);
  const Model<double> model = layered_model<double>(m, sizes);
  BoundAnalyzer<double> an(model);
  const std::vector<double> u0 = dyadic_input(rng, m.p);
  const auto nom = an.nominal(std::span<const double>(u0));
  const PreciseNominal pn = an.precise_nominal(nom);
  CHECK_THROWS_AS(an.interval_margins_around(nom, pn, -1e-3, 0), InvalidArgument);
  CHECK_THROWS_AS(an.interval_margins_around(nom, pn, std::nan(""), 0), InvalidArgument);
  CHECK_THROWS_AS(an.interval_margins_around(nom, pn, 1e-3, static_cast<int>(m.q)),
                  InvalidArgument);
  PreciseNominal shorter = pn;
  shorter.z_hi.pop_back();
  CHECK_THROWS_AS(an.interval_margins_around(nom, shorter, 1e-3, 0), InvalidArgument);
  // A smooth activation: no precise nominal point, no offsets.
  DenseModel smooth = m;
  for (auto &a : smooth.act)
    a = Activation{ActivationKind::tanh};
  BoundAnalyzer<double> sa(layered_model<double>(smooth, sizes));
  const auto snom = sa.nominal(std::span<const double>(u0));
  CHECK_THROWS_AS(sa.precise_nominal(snom), Unsupported);
  CHECK_THROWS_AS(sa.interval_margins_around(snom, pn, 1e-3, 0), Unsupported);
}

TEST_CASE("interval around a precise nominal point: ResNet20, built in and imported from "
          "ONNX, certifies nonzero radii in float64 and float32, sound under sampling "
          "and PGD",
          "[bounds][offset][resnet][slow]") {
#if defined(__SANITIZE_ADDRESS__)
  const bool full = false;
#else
  const bool full = true;
#endif
  const auto dir = std::filesystem::path(TACIT_TEST_DATA_DIR) / "onnx";
  for (const bool onnx : {false, true}) {
    if (onnx && !full)
      continue;
    CAPTURE(onnx);
    const Model<double> model =
        onnx ? import_onnx<double>(dir / "resnet20.onnx") : resnet20<double>();
    const Batch<double> inputs =
        onnx ? read_vectors<double>(dir / "resnet20_input.txt", 3072)
             : resnet20_inputs<double>(1);
    std::vector<double> u0(3072);
    inputs.get_column(0, u0);
    BoundAnalyzer<double> an(model);
    auto nom = an.nominal(std::span<const double>(u0));
    const int label = nom.predicted();
    nom.precise = std::make_shared<const PreciseNominal>(an.precise_nominal(nom));
    CertifyOptions co;
    co.method = BoundMethod::interval;
    const double radius = certified_radius(an, nom, label, co);
    CAPTURE(radius);
    CHECK(radius > 0);
    // The box bound certifies nothing (its point-box rounding alone exceeds
    // the margins).
    NominalPoint<double> plain = nom;
    plain.precise.reset();
    CHECK_FALSE(certify_at(an, plain, label, 1e-300, co));

    // Soundness where samples are distinct doubles: at the linear region's
    // radius (about 1e-8) the bounds are loose but finite; every sampled
    // output and the margin PGD reaches lie within them.
    const LinearRegion region = an.linear_region(nom);
    const double eps = region.radius;
    const auto b = an.interval_margins_around(nom, *nom.precise, eps, label);
    std::mt19937_64 rng(17);
    std::uniform_real_distribution<double> unit(0, 1);
    const index_t samples = full ? 8 : 2;
    Batch<double> Us(3072, samples), X, Y;
    for (index_t s = 0; s < samples; ++s)
      for (index_t j = 0; j < 3072; ++j) {
        const double t = s % 2 ? std::round(unit(rng)) : unit(rng);
        Us(j, s) = u0[j] + (2 * t - 1) * eps;
      }
    EquilibriumSolver<double> solver(model);
    REQUIRE(solver.predict(Us, X, Y).ok());
    for (index_t s = 0; s < samples; ++s)
      for (int k = 0; k < 10; ++k) {
        REQUIRE(std::isfinite(b.y_lower[k]));
        REQUIRE(b.y_lower[k] <= Y(k, s));
        REQUIRE(Y(k, s) <= b.y_upper[k]);
        if (k != label)
          REQUIRE(b.margin_lower[k] <= Y(label, s) - Y(k, s));
      }
    if (full) {
      PgdOptions pgd;
      pgd.eps = eps;
      pgd.steps = 2;
      pgd.restarts = 0;
      pgd.domain_lo = 1;
      pgd.domain_hi = 0;
      const auto res = pgd_attack<double>(model, std::span<const double>(u0), label, pgd);
      Batch<double> Ua(3072, 1), Xa, Ya;
      Ua.set_column(0, std::span<const double>(res.u));
      REQUIRE(solver.predict(Ua, Xa, Ya).ok());
      for (int k = 0; k < 10; ++k)
        if (k != label)
          CHECK(b.margin_lower[k] <= Ya(label, 0) - Ya(k, 0));

      // float32: the same network's parameters rounded to float, analysed as
      // that real-number model.
      const Model<float> mf =
          onnx ? import_onnx<float>(dir / "resnet20.onnx") : resnet20<float>();
      BoundAnalyzer<float> af(mf);
      const std::vector<float> u0f(u0.begin(), u0.end());
      auto nf = af.nominal(std::span<const float>(u0f));
      if (nf.predicted() == label) {
        nf.precise = std::make_shared<const PreciseNominal>(af.precise_nominal(nf));
        CHECK(certified_radius(af, nf, label, co) > 0);
      }
    }
  }
}
