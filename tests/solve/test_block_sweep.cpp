// The block sweep over structured models: the compact state layout of
// outputs-only solves, and predict(U, Y) against predict(U, X, Y).

#include <catch2/catch.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <random>
#include <vector>

#include "dense_model_util.hpp"
#include "network_test_util.hpp"
#include "solve/detail/block_sweep.hpp"

using namespace tacit;
using tacit::testutil::csr;
using tacit_test::network::MiniResNet;

namespace {

template <class T> bool same_bits(const Batch<T> &a, const Batch<T> &b) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    return false;
  for (index_t j = 0; j < a.cols(); ++j)
    for (index_t i = 0; i < a.rows(); ++i) {
      const T x = a(i, j), y = b(i, j);
      if (std::memcmp(&x, &y, sizeof x) != 0)
        return false;
    }
  return true;
}

template <class T> Batch<T> random_inputs(index_t p, index_t k, index_t width, int seed) {
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::uniform_real_distribution<double> d(-1, 1);
  Batch<T> U(p, k, width);
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = static_cast<T>(d(rng));
  return U;
}

/// Checks that no two blocks alive at the same time share a row: block k is
/// alive from its own row to its last reader (the outputs read to the end).
template <class T>
void check_no_live_overlap(const Model<T> &model, const detail::BlockSweepPlan<T> &plan,
                           const detail::BlockLayout &layout) {
  const auto nb = static_cast<index_t>(plan.rows.size());
  REQUIRE(static_cast<index_t>(layout.address.size()) == nb);
  std::vector<index_t> last(static_cast<std::size_t>(nb));
  for (index_t i = 0; i < nb; ++i)
    last[i] = i;
  for (index_t i = 0; i < nb; ++i) {
    const auto &row = plan.rows[i];
    for (const auto &term : row.from_states)
      last[term.second] = std::max(last[term.second], i);
    if (row.residual)
      last[row.residual_first] = std::max(last[row.residual_first], i);
    if (row.fused && !row.fused_from_inputs)
      last[row.fused_first] = std::max(last[row.fused_first], i);
  }
  const auto &C = capability<BlockStructured<T>>(model.C())->block_structure();
  for (const auto &e : C.entries())
    last[e.block_col] = nb;
  for (index_t a = 0; a < nb; ++a) {
    const index_t sa = plan.rows[a].size, aa = layout.address[a];
    if (sa == 0)
      continue;
    CHECK(aa % 16 == 0);
    CHECK(aa + sa <= layout.rows);
    for (index_t b = a + 1; b < nb; ++b) {
      const index_t sb = plan.rows[b].size, ab = layout.address[b];
      // a and b are alive together iff b is computed while a is still read.
      if (sb == 0 || b > last[a])
        continue;
      INFO("blocks " << a << " and " << b);
      CHECK((aa + sa <= ab || ab + sb <= aa));
    }
  }
}

/// A structured model whose second block has a cycle (a diagonal block
/// solved by Picard) and whose outputs read both blocks.
template <class T> Model<T> cyclic_block_model() {
  const index_t n0 = 3, n1 = 4, p = 2, q = 2;
  auto A10 =
      csr<T>(n1, n0, {0.5, -0.2, 0.1, 0.3, 0.0, -0.4, 0.2, 0.1, 0.0, -0.3, 0.2, 0.6});
  auto A11 = csr<T>(n1, n1,
                    {0.0, 0.3, 0.0, 0.0, 0.0, 0.0, -0.2, 0.0, 0.0, 0.0, 0.0, 0.25, 0.35,
                     0.0, 0.0, 0.0});
  auto A = std::make_shared<BlockOperator<T>>(
      std::vector<index_t>{n0, n1}, std::vector<index_t>{n0, n1},
      std::vector<BlockEntry<T>>{{1, 0, A10}, {1, 1, A11}});
  auto B = std::make_shared<BlockOperator<T>>(
      std::vector<index_t>{n0, n1}, std::vector<index_t>{p},
      std::vector<BlockEntry<T>>{
          {0, 0, csr<T>(n0, p, {1, -1, 0.5, 2, -0.7, 0.3})},
          {1, 0, csr<T>(n1, p, {0.2, 0.1, -0.4, 0.9, 0, 1, 0.3, 0})}});
  auto C = std::make_shared<BlockOperator<T>>(
      std::vector<index_t>{q}, std::vector<index_t>{n0, n1},
      std::vector<BlockEntry<T>>{{0, 0, csr<T>(q, n0, {1, 0, -2, 0, 0.5, 1})},
                                 {0, 1, csr<T>(q, n1, {0.3, 0, 1, -1, 2, 0.1, 0, 0.7})}});
  auto D = csr<T>(q, p, {0.25, 0, 0, -0.5});
  const Activation relu{ActivationKind::relu}, tanh_{ActivationKind::tanh};
  return Model<T>(A, B, C, D, {0.1, -0.2, 0.3, 0.0, 0.05, -0.1, 0.2}, {0.5, -0.25},
                  {{"first", 0, n0, relu}, {"cycle", n0, n1, tanh_}});
}

template <class T>
void check_predict_without_states(const Model<T> &model, index_t k, index_t width,
                                  bool compact) {
  EquilibriumSolver<T> solver(model);
  const Batch<T> U = random_inputs<T>(model.inputs(), k, width, static_cast<int>(k));
  Batch<T> X, Y_states, Y;
  const SolveReport with_states = solver.predict(U, X, Y_states);
  const SolveReport without = solver.predict(U, Y);
  REQUIRE(with_states.ok());
  REQUIRE(without.ok());
  CHECK(without.method == with_states.method);
  CHECK(without.column_residuals == with_states.column_residuals);
  CHECK(same_bits(Y, Y_states));
  // Again (the workspace reused), then after a narrower batch.
  Batch<T> Y2;
  solver.predict(random_inputs<T>(model.inputs(), 1, 1, 99), Y2);
  CHECK(solver.predict(U, Y2).ok());
  CHECK(same_bits(Y2, Y_states));
  const bool structured = detail::BlockSweepPlan<T>::applicable(model);
  CHECK((structured &&
         detail::BlockSweepPlan<T>(model).compact_layout(model).has_value()) == compact);
}

} // namespace

TEST_CASE("block sweep: the compact layout never gives two live blocks one row",
          "[solve][block_sweep]") {
  for (const bool option_b : {false, true}) {
    const auto model = MiniResNet(option_b, 5).build<double>();
    detail::BlockSweepPlan<double> plan(model);
    const auto layout = plan.compact_layout(model);
    REQUIRE(layout);
    check_no_live_overlap(model, plan, *layout);
    CHECK(layout->rows < model.states());
  }
  const auto r20 = resnet20<float>();
  detail::BlockSweepPlan<float> plan(r20);
  const auto layout = plan.compact_layout(r20);
  REQUIRE(layout);
  check_no_live_overlap(r20, plan, *layout);
  // A residual stage keeps its input, the block's inner state and its output:
  // about three 16 x 32 x 32 blocks of the 188,416 states.
  CHECK(layout->rows <= 3 * 16 * 32 * 32 + 16 * 64);
  const auto full = plan.full_layout();
  CHECK(full.rows == r20.states());
  for (std::size_t b = 0; b < plan.rows.size(); ++b)
    CHECK(full.address[b] == plan.rows[b].offset);
}

TEST_CASE("block sweep: outputs without states equal the outputs with states, bit for "
          "bit",
          "[solve][block_sweep]") {
  SECTION("mini ResNets, float and double, slabs full and partial") {
    for (const bool option_b : {false, true}) {
      const MiniResNet net(option_b, 11);
      check_predict_without_states(net.build<double>(), 37, 8, true);
      check_predict_without_states(net.build<float>(), 37, 8, true);
      check_predict_without_states(net.build<float>(), 1, 1, true);
      check_predict_without_states(net.build<double>(), 5, 32, true);
    }
  }
  SECTION("ResNet20") {
    const auto model = resnet20<float>(ResNetShortcut::option_b, 3);
    EquilibriumSolver<float> solver(model);
    const Batch<float> U = resnet20_inputs<float>(3, 7, 2);
    Batch<float> X, Y_states, Y;
    solver.predict(U, X, Y_states);
    REQUIRE(solver.predict(U, Y).ok());
    CHECK(same_bits(Y, Y_states));
  }
  SECTION("a diagonal block with a cycle, solved by Picard inside the sweep") {
    check_predict_without_states(cyclic_block_model<double>(), 9, 4, true);
    check_predict_without_states(cyclic_block_model<float>(), 9, 4, true);
  }
  SECTION("a CSR model keeps its states in the solver") {
    const auto model = testutil::dense_model<double>(
        3, 2, {0, 0.5, 0, 0, 0, -0.5, 0.25, 0, 0}, {1, 0, 0, 1, 1, 1}, {});
    check_predict_without_states(model, 6, 4, false);
  }
}

TEST_CASE("block sweep: outputs without states reject a wrong input size",
          "[solve][block_sweep]") {
  const auto model = MiniResNet(false, 3).build<double>();
  EquilibriumSolver<double> solver(model);
  Batch<double> Y;
  CHECK_THROWS_WITH(solver.predict(Batch<double>(model.inputs() + 1, 2), Y),
                    Catch::Contains("model has p = " + std::to_string(model.inputs())));
}

TEST_CASE("block sweep: slabs share their state buffers, one per thread, with the "
          "outputs of every slab unchanged",
          "[solve][block_sweep]") {
  // 10 slabs (the last one partial) through the shared buffers, against the
  // outputs formed from the states of the full layout.
  const auto model = MiniResNet(true, 7).build<float>();
  const detail::BlockSweepPlan<float> plan(model);
  const auto layout = plan.compact_layout(model);
  REQUIRE(layout);
  const Batch<float> U = random_inputs<float>(model.inputs(), 37, 4, 5);
  Batch<float> X(model.states(), 37, 4), Y_full;
  detail::BlockSweepWork<float> work;
  SolveReport full_report;
  detail::run_block_sweep(plan, plan.full_layout(), work, X.storage().data(), 4,
                          X.slab_count(), 37, U, static_cast<const float *>(nullptr),
                          PicardOptions{}, false, full_report);
  REQUIRE(full_report.ok());
  detail::block_sweep_outputs(model, plan.full_layout(),
                              std::as_const(X).storage().data(), U, Y_full);
  for (const int threads : {1, 2}) {
    detail::SlabRowsPool<float> pool;
    Batch<float> Y(model.outputs(), 37, 4);
    std::vector<int> done(static_cast<std::size_t>(U.slab_count()), 0);
    SolveReport report;
    Execution::threads(threads).run([&] {
      detail::run_block_sweep(
          plan, *layout, work, static_cast<float *>(nullptr), 4, U.slab_count(), 37, U,
          static_cast<const float *>(nullptr), PicardOptions{}, false, report, &pool,
          [&](const detail::SlabPiece &piece, const float *xs, index_t ld) {
            CHECK(piece.first == 0); // 4 columns: never cut
            CHECK(ld == 4);
            ++done[static_cast<std::size_t>(piece.slab)];
            detail::block_sweep_outputs_piece(model, *layout, xs, ld, U, Y, piece);
          });
    });
    REQUIRE(report.ok());
    CHECK(std::all_of(done.begin(), done.end(), [](int d) { return d == 1; }));
    CHECK(same_bits(Y, Y_full));
    // Each slab's sweep is isolated: a thread waiting inside one starts no
    // other, so no more buffers than threads.
    CHECK(pool.buffers() >= 1);
    CHECK(pool.buffers() <= static_cast<std::size_t>(threads));
  }
}

TEST_CASE("block sweep: a batch of fewer slabs than threads is cut in pieces of 16 "
          "columns, the same bits as one slab per task",
          "[solve][block_sweep]") {
  SECTION("the piece width") {
    const auto model = MiniResNet(false, 3).build<float>();
    const detail::BlockSweepPlan<float> plan(model);
    REQUIRE(plan.feed_forward);
    CHECK(detail::sweep_piece_width(plan, 32, 1, 2) == 16);
    CHECK(detail::sweep_piece_width(plan, 32, 1, 1) == 32);
    CHECK(detail::sweep_piece_width(plan, 32, 2, 2) == 32);
    CHECK(detail::sweep_piece_width(plan, 32, 1, 8) == 16); // never below 16
    CHECK(detail::sweep_piece_width(plan, 64, 1, 4) == 16);
    CHECK(detail::sweep_piece_width(plan, 64, 1, 3) == 32); // 3 pieces would be 22 wide
    CHECK(detail::sweep_piece_width(plan, 48, 1, 2) == 32);
    CHECK(detail::sweep_piece_width(plan, 16, 1, 2) == 16);
    CHECK(detail::sweep_piece_width(plan, 8, 1, 2) == 8);
    const detail::BlockSweepPlan<double> cyclic(cyclic_block_model<double>());
    REQUIRE_FALSE(cyclic.feed_forward);
    CHECK(detail::sweep_piece_width(cyclic, 32, 1, 2) ==
          32); // Picard blocks: whole slabs
  }
  SECTION("the pieces a sweep runs") {
    const auto model = MiniResNet(true, 3).build<float>();
    const detail::BlockSweepPlan<float> plan(model);
    const auto layout = plan.compact_layout(model);
    REQUIRE(layout);
    const Batch<float> U = random_inputs<float>(model.inputs(), 29, 32, 1);
    Batch<float> Y(model.outputs(), 29, 32);
    detail::BlockSweepWork<float> work;
    detail::SlabRowsPool<float> pool;
    std::mutex mutex;
    std::vector<std::array<index_t, 4>> seen;
    SolveReport report;
    Execution::threads(2).run([&] {
      detail::run_block_sweep(
          plan, *layout, work, static_cast<float *>(nullptr), 32, 1, 29, U,
          static_cast<const float *>(nullptr), PicardOptions{}, false, report, &pool,
          [&](const detail::SlabPiece &piece, const float *, index_t ld) {
            std::lock_guard lock(mutex);
            seen.push_back({piece.slab, piece.first, piece.cols, ld});
          });
    });
    REQUIRE(report.ok());
    std::sort(seen.begin(), seen.end());
    CHECK(seen == std::vector<std::array<index_t, 4>>{{0, 0, 16, 16}, {0, 16, 13, 16}});
  }
  // Batches of one and two slabs, the last one partial (a piece of fewer
  // than 16 columns, and one of none): states and outputs on 2 and 4
  // threads (cut) equal those on 1 thread (not cut), bit for bit.
  for (const bool option_b : {false, true})
    for (const index_t k : {32, 29, 45, 20}) {
      INFO("option B " << option_b << ", " << k << " columns");
      const MiniResNet net(option_b, 5);
      const auto check = [&](auto precision) {
        using T = decltype(precision);
        const Model<T> model = net.build<T>();
        const Batch<T> U = random_inputs<T>(model.inputs(), k, 32, static_cast<int>(k));
        Batch<T> X1, Y1, Yc1;
        Execution::threads(1).run([&] {
          EquilibriumSolver<T> solver(model);
          REQUIRE(solver.predict(U, X1, Y1).ok());
          REQUIRE(solver.predict(U, Yc1).ok());
        });
        for (const int threads : {2, 4}) {
          Batch<T> X, Y, Yc;
          Execution::threads(threads).run([&] {
            EquilibriumSolver<T> solver(model);
            REQUIRE(solver.predict(U, X, Y).ok());
            REQUIRE(solver.predict(U, Yc).ok());
          });
          CHECK(same_bits(X, X1));
          CHECK(same_bits(Y, Y1));
          CHECK(same_bits(Yc, Y1));
          CHECK(same_bits(Yc1, Y1));
        }
      };
      check(float{});
      check(double{});
    }
}
