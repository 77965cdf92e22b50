// The lambda path with warm starts: its first point is a plain proximal
// training run bit for bit, its second the run from the first point's
// trained model (and not the cold run from the start); the pruned models'
// accuracy is the trained models'; input groups remove inputs and the
// fine-tuning runs on the kept ones; restrict_inputs; bad lambdas.
#include <catch2/catch.hpp>

#include <tacit/train/init.hpp>
#include <tacit/train/path.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

/// Labels of a random linear teacher that reads only the first `informative`
/// of the p inputs (the others are noise).
Dataset<float> teacher_data(index_t p, index_t q, index_t m, index_t informative,
                            std::uint64_t seed) {
  Dataset<float> d;
  d.inputs = inputs<float>(p, m, seed);
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> W(static_cast<std::size_t>(q * informative));
  for (auto &w : W)
    w = u(rng);
  for (index_t j = 0; j < m; ++j) {
    int best = 0;
    double bv = -1e300;
    for (index_t c = 0; c < q; ++c) {
      double s = 0;
      for (index_t i = 0; i < informative; ++i)
        s += W[static_cast<std::size_t>(c * informative + i)] * d.inputs(i, j);
      if (s > bv) {
        bv = s;
        best = static_cast<int>(c);
      }
    }
    d.labels.push_back(best);
  }
  d.name = "teacher";
  return d;
}

TrainOptions options(int epochs) {
  TrainOptions o;
  o.optimizer.kind = OptimizerKind::sgd;
  o.optimizer.lr = 0.1;
  o.optimizer.momentum = 0.9;
  o.batch_size = 16;
  o.epochs = epochs;
  o.shuffle_seed = 5;
  return o;
}

std::vector<float> flat(const Model<float> &m) {
  TrainableModel<float> tm(m);
  std::vector<float> v(static_cast<std::size_t>(tm.size()));
  tm.read(v);
  return v;
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

/// A plain proximal run: train() with a ProximalPenalty at `lambda`.
Model<float> plain(const Model<float> &start, const GroupSet &groups, double lambda,
                   int reweight, const Dataset<float> &data, const Dataset<float> *val,
                   int epochs) {
  TrainableModel<float> tm(start);
  PenaltyOptions po;
  po.lambda = lambda;
  po.reweight_every = reweight;
  ProximalPenalty<float> pen(tm, groups, po);
  TrainOptions o = options(epochs);
  o.after_step = [&](int e, std::int64_t s, double lr) { pen.step(e, s, lr); };
  train(tm, data, val, o);
  return tm.model();
}

} // namespace

TEST_CASE("lambda path: first point = a plain run, second = the warm-started run",
          "[train][path]") {
  const index_t sizes[] = {12, 10, 8, 3};
  const Model<float> start = init_mlp<float>(sizes, 3);
  const auto data = teacher_data(12, 3, 96, 6, 1);
  const auto val = teacher_data(12, 3, 40, 6, 2);
  const GroupSet groups = make_groups(TrainableModel<float>(start), GroupKind::state_row);
  PathOptions po;
  po.lambdas = {0.002, 0.1};
  po.penalty.reweight_every = 1;
  po.train = options(3);
  po.fine_tune_epochs = 1;
  po.fine_tune_lr = 0.05;
  po.prune.keep_inputs = true;
  int seen = 0;
  const std::function<void(const PathPoint<float> &)> on_point =
      [&](const PathPoint<float> &p) { CHECK(p.index == seen++); };
  const auto points = lambda_path(start, groups, data, &val, po, on_point);
  REQUIRE(points.size() == 2);
  CHECK(seen == 2);
  // Point 1: bit for bit the plain run at lambda 1 from the start.
  const auto first = flat(points[0].trained);
  CHECK(same_bits(first, flat(plain(start, groups, 0.002, 1, data, &val, 3))));
  // Point 2: bit for bit the plain run at lambda 2 from point 1's model ...
  const auto second = flat(points[1].trained);
  CHECK(same_bits(second, flat(plain(points[0].trained, groups, 0.1, 1, data, &val, 3))));
  // ... and not the cold run at lambda 2 from the start.
  CHECK_FALSE(same_bits(second, flat(plain(start, groups, 0.1, 1, data, &val, 3))));
  for (const auto &p : points) {
    INFO("lambda " << p.lambda);
    // The pruned model's accuracy is the trained model's (last epoch).
    REQUIRE(p.accuracy);
    REQUIRE(p.report.epochs.back().validation_accuracy);
    CHECK(*p.accuracy == *p.report.epochs.back().validation_accuracy);
    CHECK(p.prune.after.states == static_cast<index_t>(p.prune.kept_states.size()));
    CHECK(p.prune.after.states <= 18 - p.zero_groups);
    CHECK(p.prune.after.inputs == 12);
    REQUIRE(p.tuned);
    CHECK(p.tuned->states() == p.prune.after.states);
    CHECK(p.tuned_report.epochs.size() == 1);
    CHECK(p.tuned_report.epochs[0].lr == 0.05);
    REQUIRE(p.tuned_accuracy);
  }
  // The larger lambda zeroed some groups (the prune has something to do).
  CHECK(points[1].zero_groups > 0);
  CHECK(points[1].prune.after.states < 18);
}

TEST_CASE("lambda path: input groups remove inputs, fine-tuning reads the kept ones",
          "[train][path]") {
  const index_t sizes[] = {12, 10, 3};
  const Model<float> start = init_mlp<float>(sizes, 4);
  const auto data = teacher_data(12, 3, 96, 4, 3);
  const auto val = teacher_data(12, 3, 40, 4, 4);
  const GroupSet groups = make_groups(TrainableModel<float>(start), GroupKind::input);
  REQUIRE(groups.groups.size() == 12);
  PathOptions po;
  po.lambdas = {0.05};
  po.train = options(6);
  po.fine_tune_epochs = 1;
  const auto points = lambda_path(start, groups, data, &val, po);
  REQUIRE(points.size() == 1);
  const auto &p = points[0];
  CHECK(p.zero_groups > 0);
  CHECK(p.prune.after.inputs == 12 - p.zero_groups);
  REQUIRE(p.tuned);
  CHECK(p.tuned->inputs() == p.prune.after.inputs);
  REQUIRE(p.accuracy);
  CHECK(*p.accuracy == *p.report.epochs.back().validation_accuracy);
  REQUIRE(p.tuned_accuracy);
}

TEST_CASE("lambda path: the fine-tuning runs with its own schedule", "[train][path]") {
  const index_t sizes[] = {12, 10, 3};
  const Model<float> start = init_mlp<float>(sizes, 4);
  const auto data = teacher_data(12, 3, 96, 4, 3);
  const auto val = teacher_data(12, 3, 40, 4, 4);
  const GroupSet groups = make_groups(TrainableModel<float>(start), GroupKind::input);
  PathOptions po;
  po.lambdas = {0.05};
  po.train = options(4);
  po.fine_tune_epochs = 3;
  po.fine_tune_lr = 0.08;
  po.fine_tune_schedule = Schedule::parse("cosine");
  const auto points = lambda_path(start, groups, data, &val, po);
  REQUIRE(points.size() == 1);
  const auto &p = points[0];
  REQUIRE(p.tuned);
  // The penalised phase kept its constant rate ...
  for (const auto &e : p.report.epochs)
    CHECK(e.lr == 0.1);
  // ... the fine-tuning decayed its own: cosine over its 3 epochs from 0.08.
  REQUIRE(p.tuned_report.epochs.size() == 3);
  for (int e = 0; e < 3; ++e)
    CHECK(p.tuned_report.epochs[static_cast<std::size_t>(e)].lr ==
          Approx(0.04 * (1 + std::cos(3.141592653589793 * e / 3))).epsilon(1e-12));
  // The tuned model is bit for bit train() of the pruned model on the kept
  // inputs with that schedule, and not the constant-rate fine-tuning.
  const auto small_data = restrict_inputs(data, p.prune.kept_inputs);
  const auto small_val = restrict_inputs(val, p.prune.kept_inputs);
  auto tune = [&](const Schedule &sch) {
    TrainableModel<float> tm(p.prune.pruned);
    TrainOptions f = options(3);
    f.optimizer.lr = 0.08;
    f.schedule = sch;
    train(tm, small_data, &small_val, f);
    return flat(tm.model());
  };
  CHECK(same_bits(flat(*p.tuned), tune(Schedule::parse("cosine"))));
  CHECK_FALSE(same_bits(flat(*p.tuned), tune(Schedule{})));
  po.fine_tune_schedule.reset();
  const auto constant = lambda_path(start, groups, data, &val, po);
  CHECK(same_bits(flat(*constant[0].tuned), tune(Schedule{})));
}

TEST_CASE("lambda path: distillation of the fine-tuning alone", "[train][path]") {
  const index_t sizes[] = {12, 10, 3};
  const Model<float> start = init_mlp<float>(sizes, 4);
  auto data = teacher_data(12, 3, 96, 4, 3);
  const auto val = teacher_data(12, 3, 40, 4, 4);
  // The teacher: another MLP's outputs on the training inputs.
  const Model<float> teacher = init_mlp<float>(sizes, 9);
  EquilibriumSolver<float> solver(teacher, default_solve_options<float>());
  REQUIRE(solver.predict(data.inputs, data.teacher).ok());
  const GroupSet groups = make_groups(TrainableModel<float>(start), GroupKind::input);
  PathOptions po;
  po.lambdas = {0.05};
  po.train = options(4);
  po.fine_tune_epochs = 2;
  po.fine_tune_distillation = Distillation{0.8, 2.0};
  const auto points = lambda_path(start, groups, data, &val, po);
  REQUIRE(points.size() == 1);
  const auto &p = points[0];
  REQUIRE(p.tuned);
  // The penalised phase is the run without a teacher ...
  po.fine_tune_distillation.reset();
  const auto bare = lambda_path(start, groups, data, &val, po);
  CHECK(same_bits(flat(p.trained), flat(bare[0].trained)));
  // ... and the fine-tuning is train() of the pruned model with the teacher's
  // outputs (carried to the kept inputs) at that weight and temperature.
  const auto small_data = restrict_inputs(data, p.prune.kept_inputs);
  REQUIRE(small_data.teacher.cols() == data.size());
  const auto small_val = restrict_inputs(val, p.prune.kept_inputs);
  TrainableModel<float> tm(p.prune.pruned);
  TrainOptions f = options(2);
  f.distillation = {0.8, 2.0};
  train(tm, small_data, &small_val, f);
  CHECK(same_bits(flat(*p.tuned), flat(tm.model())));
  CHECK_FALSE(same_bits(flat(*p.tuned), flat(*bare[0].tuned)));
}

TEST_CASE("restrict_inputs keeps the listed rows", "[train][path]") {
  Dataset<double> d;
  d.inputs = inputs<double>(5, 70, 8, 32);
  d.labels.assign(70, 1);
  const index_t kept[] = {0, 2, 4};
  const auto r = restrict_inputs(d, std::span<const index_t>(kept));
  REQUIRE(r.inputs.rows() == 3);
  REQUIRE(r.inputs.cols() == 70);
  for (index_t j = 0; j < 70; ++j)
    for (index_t k = 0; k < 3; ++k)
      CHECK(r.inputs(k, j) == d.inputs(kept[k], j));
  CHECK(r.labels == d.labels);
  const index_t bad[] = {2, 1};
  CHECK_THROWS_AS(restrict_inputs(d, std::span<const index_t>(bad)), InvalidArgument);
  const index_t out[] = {5};
  CHECK_THROWS_AS(restrict_inputs(d, std::span<const index_t>(out)), InvalidArgument);
}

TEST_CASE("lambda path: bad lambdas are errors naming the entry", "[train][path]") {
  PathOptions po;
  CHECK_THROWS_WITH(po.validate(), Catch::Contains("no lambda"));
  po.lambdas = {0.001, 0.001};
  CHECK_THROWS_WITH(po.validate(), Catch::Contains("entry 2") &&
                                       Catch::Contains("not larger than entry 1"));
  po.lambdas = {0.01, 0.002};
  CHECK_THROWS_WITH(po.validate(), Catch::Contains("entry 2 (0.002)"));
  po.lambdas = {0.001, -0.5};
  CHECK_THROWS_WITH(po.validate(),
                    Catch::Contains("entry 2 (-0.5)") && Catch::Contains(">= 0"));
  po.lambdas = {std::nan("")};
  CHECK_THROWS_WITH(po.validate(), Catch::Contains("entry 1"));
  po.lambdas = {0, 0.1};
  CHECK_NOTHROW(po.validate());
  po.fine_tune_epochs = -1;
  CHECK_THROWS_WITH(po.validate(), Catch::Contains("fine_tune_epochs"));
  po.fine_tune_epochs = 0;
  po.train.checkpoint_dir = "x";
  CHECK_THROWS_AS(po.validate(), InvalidArgument);
  // And through lambda_path, before any training.
  const index_t sizes[] = {4, 3, 2};
  const Model<float> start = init_mlp<float>(sizes, 1);
  po.train.checkpoint_dir.clear();
  po.lambdas = {0.1, 0.05};
  Dataset<float> d;
  d.inputs = inputs<float>(4, 8, 1);
  d.labels.assign(8, 0);
  CHECK_THROWS_AS(lambda_path(start, GroupSet{}, d, nullptr, po), InvalidArgument);
}
