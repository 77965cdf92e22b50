// Attacks: gradients against finite differences, PGD never breaks a
// certified radius (and does break inputs far outside it), the top-k attack
// changes exactly the pixels of the top entries of S, the LP attack.
#include <catch2/catch.hpp>
#include <tacit/analysis/attack.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <type_traits>

#include "bounds_test_util.hpp"

using namespace tacit;
using namespace tacit::testutil;

TEST_CASE("margin gradient matches finite differences", "[attack]") {
  std::mt19937 rng(2);
  for (const bool cyclic : {false, true}) {
    DenseModel d = cyclic ? implicit(rng, 10, 5, 3, 0.7, {ActivationKind::tanh})
                          : mlp(rng, 5, {8, 6}, 3, {ActivationKind::tanh});
    const Model<double> model = make_model(d, {{"s", 0, d.n, d.act[0]}});
    std::vector<double> u(d.p);
    std::uniform_real_distribution<double> ud(0, 1);
    for (auto &v : u)
      v = ud(rng);
    std::vector<double> y;
    const auto g = margin_gradient<double>(model, u, 0, 2, &y);
    for (index_t i = 0; i < d.p; ++i) {
      std::vector<double> up = u, um = u, x, yp, ym;
      up[i] += 1e-6;
      um[i] -= 1e-6;
      evaluate(d, up, x, yp);
      evaluate(d, um, x, ym);
      const double fd = ((yp[0] - yp[2]) - (ym[0] - ym[2])) / 2e-6;
      CHECK(g[i] == Approx(fd).epsilon(1e-5).margin(1e-7));
    }
  }
}

TEMPLATE_TEST_CASE("PGD never goes below the certified margin bound", "[attack]", float,
                   double) {
  using T = TestType;
  std::mt19937 rng(9);
  for (int m = 0; m < 2; ++m) {
    INFO((m == 0 ? "mlp" : "implicit"));
    DenseModel d = m == 0 ? mlp(rng, 6, {12, 8}, 3) : implicit(rng, 10, 6, 3, 0.8);
    if constexpr (std::is_same_v<T, float>)
      d = rounded_to_float(d); // the exact model a float model holds
    const Model<T> model = make_model_t<T>(d, {{"s", 0, d.n, d.act[0]}});
    BoundAnalyzer<T> an(model);
    CertifyOptions opt;
    opt.domain_lo = 0;
    opt.domain_hi = 1;
    PgdOptions pgd;
    pgd.steps = 20;
    pgd.restarts = 2;
    std::uniform_real_distribution<double> ud(0, 1);
    int broken_outside = 0;
    for (int trial = 0; trial < 10; ++trial) {
      CAPTURE(trial);
      std::vector<T> u(d.p);
      for (auto &v : u)
        v = static_cast<T>(ud(rng));
      const auto nom = an.nominal(std::span<const T>(u));
      const int label = nom.predicted();
      const double r = certified_radius(an, nom, label, opt);
      REQUIRE(r > 0);
      // The lower bound of the margin on the certified box.
      const auto box = linf_box<T>(std::span<const T>(u), static_cast<T>(r), T(0), T(1));
      const auto mb = an.margins(nom, box, label, BoundMethod::best);
      REQUIRE(mb.certified());
      double bound = std::numeric_limits<double>::infinity();
      for (index_t k = 0; k < d.q; ++k)
        if (k != label)
          bound = std::min(bound, double(mb.margin_lower[k]));
      pgd.eps = r;
      pgd.seed = trial;
      const auto res = pgd_attack<T>(model, u, label, pgd);
      CHECK_FALSE(res.success);
      // The margin PGD reaches, at its input, on the exact model: never below
      // the certified lower bound.
      std::vector<double> ua(res.u.begin(), res.u.end()), x, y;
      evaluate(d, ua, x, y);
      double reached = std::numeric_limits<double>::infinity();
      for (index_t k = 0; k < d.q; ++k)
        if (k != label)
          reached = std::min(reached, y[label] - y[k]);
      CAPTURE(bound, reached, res.margin);
      CHECK(reached >= bound - 1e-12 * (1 + std::abs(reached)));
      CHECK(res.margin >=
            bound - 1e-4 * (1 + std::abs(reached))); // its own (T) evaluation
      // Far outside the radius the attack usually succeeds.
      pgd.eps = std::min(1.0, 20 * r);
      broken_outside += pgd_attack<T>(model, u, label, pgd).success ? 1 : 0;
    }
    CHECK(broken_outside > 0);
  }
}

TEST_CASE("top-k attack changes the top pixels of S", "[attack]") {
  std::mt19937 rng(4);
  DenseModel d = small_cnn(rng, 6, 2, 8, 3);
  const Model<double> model = make_model(d, {});
  const index_t count = 20;
  Batch<double> U(d.p, count);
  std::vector<int> labels(count);
  std::uniform_real_distribution<double> ud(0.2, 0.8); // away from the clip limits
  std::vector<double> u(d.p), x, y;
  for (index_t j = 0; j < count; ++j) {
    for (auto &v : u)
      v = ud(rng);
    U.set_column(j, u);
    evaluate(d, u, x, y);
    labels[j] = int(std::max_element(y.begin(), y.end()) - y.begin());
  }
  for (const auto signs : {SignMethod::random, SignMethod::gradient}) {
    TopKOptions opt;
    opt.k = {0, 1, 3, 36};
    opt.signs = signs;
    opt.magnitude = 1.0;
    const auto res = topk_attack(model, U, labels, opt);
    REQUIRE(res.correct.size() == 4);
    CHECK(res.clean_correct == count);
    CHECK(res.correct[0] == count);            // k = 0 changes nothing
    CHECK(res.mean_changed[1] == Approx(1.0)); // pixels in [0.2, 0.8] always change
    CHECK(res.mean_changed[2] == Approx(3.0));
    CHECK(res.correct[3] <= res.correct[0]);
  }
  // Gradient signs are at least as strong as random ones on the full image.
  TopKOptions g;
  g.k = {36};
  g.signs = SignMethod::gradient;
  g.magnitude = 0.3;
  TopKOptions r = g;
  r.signs = SignMethod::random;
  CHECK(topk_attack(model, U, labels, g).correct[0] <=
        topk_attack(model, U, labels, r).correct[0]);
}

TEST_CASE("LP attack breaks inputs and respects the budget", "[attack]") {
  std::mt19937 rng(6);
  DenseModel d = mlp(rng, 8, {10, 8}, 3);
  const Model<double> model = make_model(d, {});
  BoundAnalyzer<double> an(model);
  const index_t count = 10;
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
  LpAttackOptions opt;
  opt.k = {0, 2, 8};
  opt.sigma = 2; // unclipped inputs moved by up to 2 (the model is robust to less)
  opt.targets = 2;
  opt.domain_lo = 1;
  opt.domain_hi = 0;
  const auto res = lp_attack(an, U, labels, opt);
  CHECK(res.clean_correct == count);
  CHECK(res.correct[0] == count); // no budget: nothing changes
  CHECK(res.mean_changed[0] == 0);
  CHECK(res.correct[2] <= res.correct[1]);
  CHECK(res.correct[1] < count); // a budget of two inputs breaks some
  // Certified inputs at sigma are never broken by the LP attack.
  LpAttackOptions small = opt;
  small.sigma = 1e-4;
  small.k = {double(d.p)};
  CertifyOptions copt;
  index_t certified = 0;
  for (index_t j = 0; j < count; ++j) {
    U.get_column(j, u);
    const auto nom = an.nominal(std::span<const double>(u));
    certified += certify_at(an, nom, labels[j], 1e-4, copt) ? 1 : 0;
  }
  CHECK(lp_attack(an, U, labels, small).correct[0] >= certified);
}

#ifdef TACIT_CLI_PATH
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <tacit/io/io.hpp>

#include "io_test_util.hpp"

namespace {
std::string run_json(const std::string &args) {
  const std::string cmd =
      std::string(TACIT_CLI_PATH) + " " + args + " --json 2>/dev/null";
  std::FILE *pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe);
  std::string out;
  char buf[4096];
  while (std::size_t got = std::fread(buf, 1, sizeof buf, pipe))
    out.append(buf, got);
  CHECK(::pclose(pipe) == 0);
  return out;
}
} // namespace

TEST_CASE("tacit certify and tacit attack on text inputs", "[attack][cli]") {
  tacit_test::ScratchDir dir;
  std::mt19937 rng(8);
  DenseModel d = mlp(rng, 6, {8, 6}, 3);
  const Model<double> model = make_model(d, {});
  save_model_directory(model, dir / "model");
  std::ofstream u(dir / "u.txt"), l(dir / "l.txt");
  std::uniform_real_distribution<double> ud(0, 1);
  std::vector<double> in(d.p), x, y;
  for (int j = 0; j < 5; ++j) {
    for (auto &v : in) {
      v = ud(rng);
      u << v << ' ';
    }
    u << '\n';
    evaluate(d, in, x, y);
    l << int(std::max_element(y.begin(), y.end()) - y.begin()) << '\n';
  }
  u.close();
  l.close();
  const std::string io = (dir / "model").string() + " --input " +
                         (dir / "u.txt").string() + " --labels " +
                         (dir / "l.txt").string();
  const auto c =
      nlohmann::json::parse(run_json("certify " + io + " --eps 0.001,0.01 " +
                                     "--radius-output " + (dir / "r.txt").string()));
  CHECK(c["inputs"] == 5);
  CHECK(c["correct"] == 5);
  CHECK(c["certified"].size() == 2);
  const Batch<double> R = read_vectors<double>(dir / "r.txt", 1);
  CHECK(R.cols() == 5);
  for (index_t j = 0; j < 5; ++j)
    CHECK(R(0, j) > 0);
  const auto a =
      nlohmann::json::parse(run_json("attack " + io + " --k 0,2 --method gradient"));
  CHECK(a["clean_correct"] == 5);
  CHECK(a["results"][0]["correct"] == 5);
  CHECK(a["results"][1]["mean_changed"] == Approx(2.0));
}
#endif

#include "fashion_test_util.hpp"

TEST_CASE("PGD (100 steps, 10 restarts) never breaks a certified radius of the committed "
          "Fashion-MNIST models",
          "[attack][slow]") {
  const auto dir = fashion_test_data();
  // Eight images with the full attack in release builds; sanitizer builds
  // (10-20x slower) run a lighter version of the same checks.
#if defined(__SANITIZE_ADDRESS__)
  const index_t count = 2;
  const int steps = 10, restarts = 1;
#else
  const index_t count = 8;
  const int steps = 100, restarts = 10;
#endif
  const auto data = fashion_test_images(dir, count);
  for (const char *name : {"fashion_mlp", "fashion_cnn"}) {
    INFO(name);
    const auto model = fashion_model(name);
    BoundAnalyzer<double> an(model);
    const CertifyOptions opt = pixel_certify_options();
    PgdOptions pgd;
    pgd.steps = steps;
    pgd.restarts = restarts;
    int certified = 0, broken_outside = 0;
    for (index_t j = 0; j < count; ++j) {
      std::vector<double> u(784);
      for (index_t i = 0; i < 784; ++i)
        u[i] = data.images(i, j);
      const auto nom = an.nominal(std::span<const double>(u));
      if (nom.predicted() != data.labels[j])
        continue;
      const double r = certified_radius(an, nom, data.labels[j], opt);
      if (r <= 0)
        continue;
      ++certified;
      INFO("image " << j << ", certified radius " << r);
      pgd.eps = r;
      pgd.seed = static_cast<std::uint64_t>(j + 1);
      const auto inside = pgd_attack<double>(model, u, data.labels[j], pgd);
      CHECK_FALSE(inside.success);
      // The margin PGD reaches is never below the certified lower bound.
      const auto mb = an.margins(nom, linf_box<double>(u, r, 0.0, 1.0), data.labels[j],
                                 BoundMethod::best);
      REQUIRE(mb.certified());
      double bound = std::numeric_limits<double>::infinity();
      for (index_t k = 0; k < 10; ++k)
        if (k != data.labels[j])
          bound = std::min(bound, double(mb.margin_lower[k]));
      CHECK(inside.margin >= bound - 1e-12 * (1 + std::abs(inside.margin)));
      // The same attack with 10x the radius breaks some: it is not toothless.
      pgd.eps = 10 * r;
      broken_outside += pgd_attack<double>(model, u, data.labels[j], pgd).success ? 1 : 0;
    }
    CHECK(certified >= count / 2);
    if (count >= 8)
      CHECK(broken_outside > 0);
  }
}
