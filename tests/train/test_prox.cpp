// Proximal steps: block soft-thresholding, l1 and sparse-group lasso against
// their closed forms and against a brute-force minimiser of
// 0.5 ||x - v||^2 + t P(x) on a grid; reweighting; the trainer's hook with
// the inf-norm projection (zeros kept, feasible); bad options.
#include <catch2/catch.hpp>

#include <tacit/train/prox.hpp>
#include <tacit/train/trainer.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

GroupSet two_pairs(double w0, double w1) {
  GroupSet s;
  s.groups.push_back({GroupKind::user, "g0", -1, {0, 1}, w0});
  s.groups.push_back({GroupKind::user, "g1", -1, {2, 3}, w1});
  return s;
}

/// Brute force over a grid of step h on [-2, 2]^2 for one pair (v0, v1):
/// argmin 0.5 |x - v|^2 + t (alpha (|x0| + |x1|) + (1 - alpha) w |x|_2).
std::pair<double, double> grid_argmin(double v0, double v1, double t, double w,
                                      double alpha, double h = 2e-3) {
  double best = std::numeric_limits<double>::infinity(), b0 = 0, b1 = 0;
  const int N = static_cast<int>(std::lround(2 / h));
  for (int i = -N; i <= N; ++i)
    for (int j = -N; j <= N; ++j) {
      const double x0 = i * h, x1 = j * h;
      const double f = 0.5 * ((x0 - v0) * (x0 - v0) + (x1 - v1) * (x1 - v1)) +
                       t * (alpha * (std::abs(x0) + std::abs(x1)) +
                            (1 - alpha) * w * std::hypot(x0, x1));
      if (f < best) {
        best = f;
        b0 = x0;
        b1 = x1;
      }
    }
  return {b0, b1};
}

} // namespace

TEST_CASE("prox_group_lasso: block soft-thresholding in closed form", "[prox]") {
  std::vector<double> v = {3, 4, 0.3, -0.4};
  prox_group_lasso<double>(v, two_pairs(1, 2), 1.0);
  // ||(3, 4)|| = 5 > 1: scaled by 1 - 1/5; ||(0.3, -0.4)|| = 0.5 <= 2: zero.
  CHECK(v[0] == Approx(3 * 0.8).epsilon(1e-15));
  CHECK(v[1] == Approx(4 * 0.8).epsilon(1e-15));
  CHECK(v[2] == 0.0);
  CHECK(v[3] == 0.0);
  // t = 0 is the identity.
  std::vector<float> f = {1.5f, -2.0f, 0.25f, 7.0f};
  const auto g = f;
  prox_group_lasso<float>(f, two_pairs(1, 1), 0.0);
  CHECK(f == g);
}

TEST_CASE("prox_l1 and sparse-group lasso in closed form", "[prox]") {
  std::vector<double> v = {3, -0.5, 0.3, -4};
  prox_l1<double>(v, two_pairs(1, 1), 1.0);
  CHECK(v == std::vector<double>{2, 0, 0, -3});
  // Sparse-group: l1 at t alpha, then the group at t (1 - alpha).
  std::vector<double> s = {3, -0.5, 0.3, -4};
  prox_sparse_group_lasso<double>(s, two_pairs(1, 1), 2.0, 0.25);
  // After l1 (0.5): (2.5, 0, 0, -3.5); groups at level 1.5.
  CHECK(s[0] == Approx(2.5 * (1 - 1.5 / 2.5)));
  CHECK(s[1] == 0.0);
  CHECK(s[2] == 0.0);
  CHECK(s[3] == Approx(-3.5 * (1 - 1.5 / 3.5)));
}

TEST_CASE("prox against a brute-force minimiser on small vectors", "[prox]") {
  const double vs[][4] = {
      {0.9, -1.3, 0.2, 0.1}, {-0.35, 0.6, 1.2, -1.1}, {0.05, 0.02, -1.5, 0.4}};
  for (const auto &v0 : vs)
    for (const double alpha : {0.0, 0.4, 1.0})
      for (const double t : {0.1, 0.45, 0.8}) {
        const double w0 = std::sqrt(2.0), w1 = 0.7;
        std::vector<double> x(v0, v0 + 4);
        const auto groups = two_pairs(w0, w1);
        if (alpha == 0)
          prox_group_lasso<double>(x, groups, t);
        else if (alpha == 1)
          prox_l1<double>(x, groups, t);
        else
          prox_sparse_group_lasso<double>(x, groups, t, alpha);
        const auto a = grid_argmin(v0[0], v0[1], t, w0, alpha);
        const auto b = grid_argmin(v0[2], v0[3], t, w1, alpha);
        INFO("v = " << v0[0] << " " << v0[1] << " " << v0[2] << " " << v0[3]
                    << " t = " << t << " alpha = " << alpha);
        CHECK(std::abs(x[0] - a.first) <= 3e-3);
        CHECK(std::abs(x[1] - a.second) <= 3e-3);
        CHECK(std::abs(x[2] - b.first) <= 3e-3);
        CHECK(std::abs(x[3] - b.second) <= 3e-3);
      }
}

TEST_CASE("penalty values and options", "[prox]") {
  const std::vector<double> v = {3, 4, 0, -1};
  const auto g = two_pairs(2, 1);
  CHECK(penalty_value<double>(v, g, PenaltyKind::group_lasso) == Approx(2 * 5 + 1));
  CHECK(penalty_value<double>(v, g, PenaltyKind::l1) == Approx(8));
  CHECK(penalty_value<double>(v, g, PenaltyKind::sparse_group_lasso, 0.5) ==
        Approx(0.5 * 8 + 0.5 * 11));
  PenaltyOptions o;
  o.lambda = -1;
  CHECK_THROWS_WITH(o.validate(), Catch::Contains("lambda -1"));
  o.lambda = 1;
  o.alpha = 2;
  CHECK_THROWS_AS(o.validate(), InvalidArgument);
  std::vector<double> x = {1, 2, 3, 4};
  CHECK_THROWS_AS(prox_group_lasso<double>(x, g, -0.5), InvalidArgument);
  GroupSet bad;
  bad.groups.push_back({GroupKind::user, "far", -1, {1, 9}, 1});
  CHECK_THROWS_WITH(prox_group_lasso<double>(x, bad, 0.5), Catch::Contains("far"));
}

TEST_CASE("ProximalPenalty in the trainer: zero rows, kept by the projection",
          "[prox][trainer]") {
  const Model<double> model = cyclic_model<double>();
  TrainableModel<double> tm(model);
  auto groups = make_groups(tm, GroupKind::state_row);
  PenaltyOptions po;
  po.lambda = 0.05;
  po.reweight_every = 1;
  ProximalPenalty<double> pen(tm, groups, po);
  // Regression data from the model itself, shifted.
  std::mt19937_64 rng(7);
  Dataset<double> d;
  d.inputs = Batch<double>(model.inputs(), 64);
  for (index_t j = 0; j < 64; ++j)
    for (index_t i = 0; i < model.inputs(); ++i)
      d.inputs(i, j) = uniform(rng, 1, 1.0)[0];
  d.targets = Batch<double>(model.outputs(), 64);
  for (index_t j = 0; j < 64; ++j)
    for (index_t i = 0; i < model.outputs(); ++i)
      d.targets(i, j) = 0.1 * double(i);
  d.name = "synthetic";
  TrainOptions o;
  o.gradient = tight(LossKind::squared);
  o.optimizer.lr = 0.5;
  o.batch_size = 16;
  o.epochs = 4;
  o.constraint = Constraint::inf_norm;
  o.kappa = 0.5;
  o.after_step = [&](int e, std::int64_t s, double lr) { pen.step(e, s, lr); };
  const auto report = train(tm, d, nullptr, o);
  CHECK(report.epochs.size() == 4);
  const index_t zero = pen.zero_groups();
  CHECK(zero > 0);
  CHECK(zero < static_cast<index_t>(pen.groups().groups.size()));
  CHECK(norm_inf(tm.model().A()) <= 0.5 + 1e-12);
  // The zero rows are zero rows of the model (A, B, b).
  std::vector<double> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  const auto norms = group_norms<double>(flat, pen.groups());
  index_t zero_norms = 0;
  for (double n : norms)
    zero_norms += n == 0 ? 1 : 0;
  CHECK(zero_norms == zero);
  // Weights were reweighted: a nonzero group has weight base / (norm + eps).
  for (std::size_t g = 0; g < norms.size(); ++g)
    CHECK(pen.groups().groups[g].weight > 0);
}
