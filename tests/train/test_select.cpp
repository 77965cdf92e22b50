// Input selection by refitting (select.hpp): inputs_read against columns set
// by hand; select_inputs on a case whose answer is known (targets a linear
// function of 3 of 6 inputs, which 2 ReLU states represent exactly:
// w.u = relu(w.u) - relu(-w.u)): the 3 are kept, the other 3 dropped, a
// non-candidate stays exactly zero, the log obeys the rule; bad options.
// bcd_select_inputs from the parameters that generated the targets, with
// small spurious columns added: the spurious inputs go, the true ones stay.
#include <catch2/catch.hpp>

#include <tacit/train/bcd.hpp>
#include <tacit/train/groups.hpp>
#include <tacit/train/init.hpp>
#include <tacit/train/select.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using namespace tacit;

namespace {

/// `model` with the columns of (B; D) of `inputs` set to zero.
template <class T>
Model<T> zero_inputs(const Model<T> &model, std::vector<index_t> inputs) {
  TrainableModel<T> tm(model);
  std::vector<T> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  for (const ParameterGroup &g : make_groups(tm, GroupKind::input).groups)
    if (std::find(inputs.begin(), inputs.end(), g.index) != inputs.end())
      for (const index_t k : g.members)
        flat[static_cast<std::size_t>(k)] = T(0);
  tm.write(flat);
  return tm.model();
}

/// y = 2 u0 - 1.5 u2 + u5 on m Gaussian inputs of dimension 6 (noiseless).
Dataset<double> linear_data(index_t m) {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> g(0, 1);
  Dataset<double> d;
  d.inputs = Batch<double>(6, m);
  d.targets = Batch<double>(1, m);
  for (index_t j = 0; j < m; ++j) {
    for (index_t i = 0; i < 6; ++i)
      d.inputs(i, j) = g(rng);
    d.targets(0, j) = 2 * d.inputs(0, j) - 1.5 * d.inputs(2, j) + d.inputs(5, j);
  }
  d.name = "linear";
  return d;
}

SelectOptions select_options() {
  SelectOptions so;
  so.refit.gradient.loss = LossKind::squared;
  so.refit.optimizer.kind = OptimizerKind::adam;
  so.refit.optimizer.lr = 0.02;
  so.refit.batch_size = 50;
  so.refit.epochs = 150;
  so.refit.kappa = 0.5;
  so.trial_epochs = 40;
  so.tolerance = 0.5;
  so.floor = 1e-4; // the fits are exact: the controls end at 1e-9 ... 1e-6
  return so;
}

} // namespace

TEST_CASE("inputs_read: the columns of B with a value above the threshold", "[select]") {
  const Model<double> m0 = init_implicit<double>(3, 5, 2, 1.0, 0.5, 2);
  CHECK(inputs_read(m0) == std::vector<index_t>{0, 1, 2, 3, 4});
  const Model<double> m1 = zero_inputs(m0, {1, 4});
  CHECK(inputs_read(m1) == std::vector<index_t>{0, 2, 3});
  // A threshold above every |value| leaves nothing.
  CHECK(inputs_read(m1, 1e6).empty());
}

TEST_CASE("select_inputs keeps exactly the inputs a linear target reads", "[select]") {
  const Dataset<double> data = linear_data(200);
  // Input 3 is not a candidate (zero column in the start model).
  const Model<double> start =
      zero_inputs(init_implicit<double>(4, 6, 1, 1.0, 0.5, 3), {3});
  const SelectOptions so = select_options();
  std::vector<SelectTrial> seen;
  const SelectResult<double> r =
      select_inputs(start, data, so, [&](const SelectTrial &t) { seen.push_back(t); });
  CHECK(r.candidates == std::vector<index_t>{0, 1, 2, 4, 5});
  for (const SelectTrial &t : r.trials)
    UNSCOPED_INFO("round " << t.round << " input " << t.input << " loss " << t.loss
                           << (t.dropped ? " dropped" : ""));
  CHECK(r.selected == std::vector<index_t>{0, 2, 5});
  CHECK(inputs_read(r.model) == r.selected); // dropped columns exactly zero
  INFO("refit loss " << r.refit_loss << ", final " << r.loss);
  CHECK(r.loss < 0.05 * 4.0); // the fit: y's variance is 4 + 2.25 + 1
  // The log: per round a control and one trial per kept input; a drop
  // obeys the rule and is the round's smallest trial loss.
  REQUIRE(seen.size() == r.trials.size());
  std::size_t k = 0;
  std::size_t kept = r.candidates.size();
  for (int round = 1; k < seen.size(); ++round) {
    REQUIRE(seen[k].input == -1);
    CHECK(seen[k].round == round);
    const double control = seen[k].loss;
    ++k;
    double smallest = INFINITY;
    bool dropped = false;
    for (std::size_t t = 0; t < kept; ++t, ++k) {
      REQUIRE(k < seen.size());
      CHECK(seen[k].round == round);
      smallest = std::min(smallest, seen[k].loss);
      if (seen[k].dropped) {
        dropped = true;
        CHECK(seen[k].loss <= (1 + so.tolerance) * control + so.floor);
      }
    }
    if (dropped)
      --kept;
    else
      CHECK(smallest > (1 + so.tolerance) * control + so.floor); // the stop
  }
  CHECK(kept == r.selected.size());
  // The same bits again (determinism).
  const SelectResult<double> again = select_inputs(start, data, so);
  CHECK(again.loss == r.loss);
  CHECK(again.selected == r.selected);
}

TEST_CASE("select_inputs with tolerance 0 on a fit that needs every input keeps them",
          "[select]") {
  // Only the three true inputs are candidates: dropping any raises the loss
  // by far more than the refits' variation.
  const Dataset<double> data = linear_data(200);
  const Model<double> start =
      zero_inputs(init_implicit<double>(4, 6, 1, 1.0, 0.5, 3), {1, 3, 4});
  SelectOptions so = select_options();
  so.tolerance = 0;
  so.floor = 0;
  const SelectResult<double> r = select_inputs(start, data, so);
  CHECK(r.selected == std::vector<index_t>{0, 2, 5});
  CHECK(r.trials.size() == 4); // one round: the control and 3 trials
}

TEST_CASE("select_inputs: bad options are errors naming the field", "[select]") {
  const Dataset<double> data = linear_data(20);
  const Model<double> start = init_implicit<double>(2, 6, 1, 1.0, 0.5, 3);
  SelectOptions so = select_options();
  so.trial_epochs = 0;
  CHECK_THROWS_WITH(select_inputs(start, data, so), Catch::Contains("trial_epochs"));
  so = select_options();
  so.tolerance = -1;
  CHECK_THROWS_WITH(select_inputs(start, data, so), Catch::Contains("tolerance"));
  so = select_options();
  so.floor = -1;
  CHECK_THROWS_WITH(select_inputs(start, data, so), Catch::Contains("floor"));
  so = select_options();
  so.threshold = NAN;
  CHECK_THROWS_WITH(select_inputs(start, data, so), Catch::Contains("threshold"));
  so = select_options();
  so.refit.after_step = [](int, std::int64_t, double) {};
  CHECK_THROWS_WITH(select_inputs(start, data, so), Catch::Contains("after_step"));
  // Data of the wrong width.
  const Model<double> wide = init_implicit<double>(2, 7, 1, 1.0, 0.5, 3);
  CHECK_THROWS_AS(select_inputs(wide, data, select_options()), InvalidArgument);
}

TEST_CASE("bcd_select_inputs drops spurious columns added to the true parameters",
          "[select][bcd]") {
  // Targets from a ReLU model reading inputs 0 and 2 of 5; the start is that
  // model with columns 1 and 4 of B set to small values (input 3 unread).
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> d(-1, 1);
  const index_t n = 4, p = 5, m = 200;
  BcdParameters t;
  t.A = BcdMatrix(n, n);
  t.B = BcdMatrix(n, p);
  t.C = BcdMatrix(1, n);
  t.D = BcdMatrix(1, p);
  t.maskA = BcdMatrix(n, n, 1);
  t.maskB = BcdMatrix(n, p, 1);
  t.maskC = BcdMatrix(1, n, 1);
  t.maskD = BcdMatrix(1, p, 0);
  t.b.assign(std::size_t(n), 0.1);
  t.c.assign(1, 0.0);
  for (index_t i = 0; i < n; ++i) {
    for (index_t j = 0; j < n; ++j)
      t.A(i, j) = 0.1 * d(rng);
    t.B(i, 0) = d(rng);
    t.B(i, 2) = d(rng);
    t.C(0, i) = d(rng);
  }
  BcdMatrix U(p, m);
  for (auto &v : U.values)
    v = d(rng);
  const BcdMatrix Y = bcd_predict(t, U);
  BcdParameters start = t;
  for (index_t i = 0; i < n; ++i) {
    start.B(i, 1) = 0.02 * d(rng);
    start.B(i, 4) = 0.02 * d(rng);
  }
  BcdSelectOptions so;
  so.bcd.lambda = 1;
  so.bcd.mu = 1;
  so.bcd.kappa = 0.5;
  so.refit_iterations = 10;
  so.trial_iterations = 5;
  so.tolerance = 0.5;
  const BcdSelectResult r = bcd_select_inputs(start, U, Y, so);
  CHECK(r.candidates == std::vector<index_t>{0, 1, 2, 4});
  CHECK(r.selected == std::vector<index_t>{0, 2});
  const auto norms = bcd_column_norms(r.params.B);
  for (const index_t j : {1, 3, 4}) {
    CHECK(norms[std::size_t(j)] == 0);
    for (index_t i = 0; i < n; ++i)
      CHECK(r.params.maskB(i, j) == 0);
  }
  CHECK(r.loss == Approx(std::pow(bcd_rmse(r.params, U, Y), 2)).epsilon(1e-12));
  // Two drops, then a stop: 3 rounds of a control and one trial per input.
  CHECK(r.trials.size() == (1 + 4) + (1 + 3) + (1 + 2));
  BcdSelectOptions bad = so;
  bad.trial_iterations = 0;
  CHECK_THROWS_WITH(bcd_select_inputs(start, U, Y, bad),
                    Catch::Contains("trial_iterations"));
  bad = so;
  bad.tolerance = INFINITY;
  CHECK_THROWS_WITH(bcd_select_inputs(start, U, Y, bad), Catch::Contains("tolerance"));
}
