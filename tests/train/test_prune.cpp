// Pruning: the removed states and inputs of a CSR model with cycles and of
// the Fashion MLP with zeroed groups; the pruned model's predictions equal
// the masked model's bit for bit (float64 and float32; the MLP on the whole
// Fashion-MNIST test set); sizes before and after; a prune that removes
// every state is an error.
#include <catch2/catch.hpp>

#include <tacit/solve/solve.hpp>
#include <tacit/train/groups.hpp>
#include <tacit/train/prune.hpp>

#include <vector>

#include "fashion_test_util.hpp"
#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

/// Zeroes the listed groups of a trainable copy of `model`.
template <class T>
Model<T> zero_groups(const Model<T> &model, GroupKind kind,
                     const std::vector<index_t> &which) {
  TrainableModel<T> tm(model, BiasTying::none);
  const auto groups = make_groups(tm, kind);
  std::vector<T> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  for (const auto &g : groups.groups)
    for (const index_t w : which)
      if (g.index == w)
        for (const index_t k : g.members)
          flat[static_cast<std::size_t>(k)] = T(0);
  tm.write(flat);
  return tm.model();
}

template <class T>
Batch<T> predict(const Model<T> &m, const Batch<T> &U, SolveMethod method) {
  auto o = default_solve_options<T>();
  o.method = method;
  EquilibriumSolver<T> s(m, o);
  Batch<T> X, Y;
  const auto r = s.predict(U, X, Y);
  REQUIRE(r.ok());
  return Y;
}

/// The inputs of the pruned model: the kept rows of U.
template <class T>
Batch<T> select_rows(const Batch<T> &U, const std::vector<index_t> &rows) {
  Batch<T> V(static_cast<index_t>(rows.size()), U.cols());
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (index_t j = 0; j < U.cols(); ++j)
      V(static_cast<index_t>(i), j) = U(rows[i], j);
  return V;
}

template <class T> index_t differing(const Batch<T> &a, const Batch<T> &b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  index_t d = 0;
  for (index_t i = 0; i < a.rows(); ++i)
    for (index_t j = 0; j < a.cols(); ++j)
      d += a(i, j) == b(i, j) ? 0 : 1; // -0 == +0
  return d;
}

template <class T> void cyclic_case() {
  Model<T> model = cyclic_model<T>();
  // Rows of states 1 (relu) and 7 (tanh): zero states. Columns of 10
  // (sigmoid) and 13 (identity): unread. Input 2: column of (B; D).
  model = zero_groups(model, GroupKind::state_row, {1, 7});
  model = zero_groups(model, GroupKind::state_column, {10, 13});
  model = zero_groups(model, GroupKind::input, {2});
  const auto r = prune_model(model);
  CHECK(r.kept_states == std::vector<index_t>{0, 2, 3, 4, 5, 6, 8, 9, 11, 12, 14});
  CHECK(r.kept_inputs == std::vector<index_t>{0, 1, 3, 4, 5});
  CHECK(r.before.states == 15);
  CHECK(r.after.states == 11);
  CHECK(r.after.inputs == 5);
  CHECK(r.after.nonzeros < r.before.nonzeros);
  CHECK(r.after.flops < r.before.flops);
  CHECK(r.pruned.blocks().size() == 5);
  std::mt19937_64 rng(11);
  Batch<T> U(model.inputs(), 37);
  for (index_t i = 0; i < U.rows(); ++i)
    for (index_t j = 0; j < U.cols(); ++j)
      U(i, j) = static_cast<T>(uniform(rng, 1, 1.0)[0]);
  const Batch<T> V = select_rows(U, r.kept_inputs);
  for (const auto method : {SolveMethod::picard, SolveMethod::sweep}) {
    INFO("method " << to_string(method));
    const auto ym = predict(r.masked, U, method);
    const auto yp = predict(r.pruned, V, method);
    CHECK(differing(ym, yp) == 0);
    // The masked model is the model up to the CSR kernels' accumulator order.
    const auto y0 = predict(model, U, method);
    for (index_t i = 0; i < y0.rows(); ++i)
      for (index_t j = 0; j < y0.cols(); ++j)
        CHECK(double(ym(i, j)) == Approx(double(y0(i, j)))
                                      .epsilon(std::is_same_v<T, float> ? 1e-4 : 1e-10)
                                      .margin(1e-6));
  }
}

template <class T> void fashion_case(const Batch<T> &U) {
  const Model<T> mlp = tacit::testutil::fashion_model<T>("fashion_mlp");
  // Every third hidden state's row (with its bias): zero states.
  std::vector<index_t> rows;
  const index_t hidden = mlp.states() - 0;
  for (index_t i = 0; i < hidden; i += 3)
    rows.push_back(i);
  const Model<T> model = zero_groups(mlp, GroupKind::state_row, rows);
  const auto r = prune_model(model);
  CHECK(r.after.states <= mlp.states() - static_cast<index_t>(rows.size()));
  CHECK(r.after.parameters < r.before.parameters);
  CHECK(r.after.flops < r.before.flops);
  const Batch<T> V = select_rows(U, r.kept_inputs);
  const auto ym = predict(r.masked, U, SolveMethod::automatic);
  const auto yp = predict(r.pruned, V, SolveMethod::automatic);
  CHECK(differing(ym, yp) == 0);
  // Dense products: the zeroed model itself gives the same bits.
  const auto y0 = predict(model, U, SolveMethod::automatic);
  CHECK(differing(y0, yp) == 0);
}

} // namespace

TEST_CASE("prune: CSR model with cycles, float64 and float32", "[prune]") {
  cyclic_case<double>();
  cyclic_case<float>();
}

TEST_CASE("prune: Fashion MLP with zero hidden states, the whole test set bit for bit",
          "[prune][fashion]") {
  const auto dir = tacit::testutil::fashion_test_data();
  const auto test = tacit::testutil::fashion_test_images(dir, -1);
  REQUIRE(test.images.cols() == 10000);
  fashion_case<double>(test.images);
  Batch<float> U(test.images.rows(), test.images.cols());
  for (index_t i = 0; i < U.rows(); ++i)
    for (index_t j = 0; j < U.cols(); ++j)
      U(i, j) = static_cast<float>(test.images(i, j));
  fashion_case<float>(U);
}

TEST_CASE("prune: errors", "[prune]") {
  Model<double> model = cyclic_model<double>();
  std::vector<index_t> all;
  for (index_t i = 0; i < model.states(); ++i)
    all.push_back(i);
  const auto dead = zero_groups(model, GroupKind::state_column, all);
  CHECK_THROWS_WITH(prune_model(dead), Catch::Contains("every one of the 15 states"));
  PruneOptions o;
  o.threshold = -1;
  CHECK_THROWS_AS(prune_model(model, o), InvalidArgument);
  // A huge threshold removes everything too.
  o.threshold = 1e9;
  CHECK_THROWS_AS(prune_model(model, o), InvalidArgument);
}
