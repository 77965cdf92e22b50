// The global and interval bounds on a distributed CSR model
// (lib/mpi/bounds.cpp) against the single-process BoundAnalyzer on the whole
// model: every rank's slices the same bits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <tacit/analysis/bounds.hpp>
#include <tacit/mpi/bounds.hpp>
#include <tacit/solve/solve.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

/// The model with A's entries above the diagonal and on it dropped: a
/// feed-forward (strictly lower triangular) A.
Model<double> feed_forward(const Model<double> &m) {
  const auto A = csr_view(m.A());
  std::vector<Triplet<double>> t;
  for (index_t i = 0; i < A->rows(); ++i)
    for (auto e = A->row_ptr()[i]; e < A->row_ptr()[i + 1]; ++e)
      if (A->column(e) < i)
        t.push_back({i, A->column(e), A->values()[e]});
  auto L = std::make_shared<CsrMatrix<double>>(
      CsrMatrix<double>::from_triplets(A->rows(), A->cols(), t));
  return Model<double>(L, m.B_ptr(), m.C_ptr(), m.D_ptr(),
                       std::vector<double>(m.bias_x().begin(), m.bias_x().end()),
                       std::vector<double>(m.bias_y().begin(), m.bias_y().end()), m.blocks());
}

template <class V> std::vector<double> slice(const V &v, index_t r0, index_t r1) {
  return std::vector<double>(v.begin() + r0, v.begin() + r1);
}

void require_same(const StateBounds<double> &whole, const StateBounds<double> &mine,
                  index_t r0, index_t r1) {
  REQUIRE(mine.status == whole.status);
  REQUIRE(mine.iterations == whole.iterations);
  // Bit for bit (== also on the infinities of an unbounded result).
  REQUIRE(mine.x_lower == slice(whole.x_lower, r0, r1));
  REQUIRE(mine.x_upper == slice(whole.x_upper, r0, r1));
  REQUIRE(mine.z_lower == slice(whole.z_lower, r0, r1));
  REQUIRE(mine.z_upper == slice(whole.z_upper, r0, r1));
}

} // namespace

TEST_CASE("the distributed global and interval bounds are the single-process bits",
          "[mpi][bounds]") {
  struct Case {
    const char *name;
    Model<double> model;
  };
  const Case cases[] = {
      {"cyclic, ||A||_inf 0.9", test_model(300, 4, 3, 61, 0.9, 6)},
      {"cyclic, ||A||_inf 0.5, 2,000 states", test_model(2000, 5, 3, 62, 0.5, 12)},
      {"feed-forward", feed_forward(test_model(250, 4, 3, 63, 1.5, 8))},
      {"not certified, ||A||_inf 3", test_model(120, 3, 2, 64, 3.0, 6)},
  };
  for (const auto &c : cases) {
    INFO(c.name);
    const Model<double> &model = c.model;
    const BoundAnalyzer<double> single(model);
    const auto dm = mpi::distribute_model(model);
    const mpi::DistributedBoundAnalyzer dist(dm);
    REQUIRE(dist.certified_well_posed() == single.certified_well_posed());
    REQUIRE(dist.rate() == single.rate());
    REQUIRE(dist.feed_forward() == single.feed_forward());
    if (single.feed_forward())
      REQUIRE(dist.levels() == single.levels());
    const index_t r0 = dm.own_begin(), r1 = dm.own_end();
    for (const std::uint64_t seed : {1u, 2u}) {
      const auto U = random_batch<double>(model.inputs(), 1, 70 + seed);
      std::vector<double> u(static_cast<std::size_t>(model.inputs()));
      U.get_column(0, u);
      // The equilibrium by the single-process solver (a fixed iterate when
      // the model is not well posed: the bounds are then unbounded anyway).
      SolveOptions so;
      so.method = SolveMethod::picard;
      so.picard.max_iterations = 300;
      Batch<double> X;
      EquilibriumSolver<double>(model, so).solve(U, X);
      std::vector<double> x(static_cast<std::size_t>(model.states()));
      X.get_column(0, x);
      const auto nom = single.nominal(std::span<const double>(u), std::span<const double>(x));
      const std::vector<double> x_own = slice(x, r0, r1);
      const auto dnom = dist.nominal(u, x_own);
      REQUIRE(dnom.residual == slice(nom.residual, r0, r1));
      REQUIRE(dnom.residual_rounding == slice(nom.residual_rounding, r0, r1));
      for (const double eps : {1e-3, 0.03, 0.3}) {
        INFO("seed " << seed << ", eps " << eps);
        const auto box = linf_box<double>(u, eps);
        require_same(single.global_bounds(nom, box), dist.global_bounds(dnom, box), r0, r1);
        require_same(single.interval_bounds(nom, box), dist.interval_bounds(dnom, box), r0,
                     r1);
      }
    }
  }
}

TEST_CASE("the distributed bounds refuse a bad box on every rank", "[mpi][bounds]") {
  const auto model = test_model(60, 3, 2, 65);
  const auto dm = mpi::distribute_model(model);
  const mpi::DistributedBoundAnalyzer dist(dm);
  std::vector<double> u(3, 0.5);
  const auto nom =
      dist.nominal(u, std::vector<double>(static_cast<std::size_t>(dm.own_end() - dm.own_begin())));
  InputBox<double> box = linf_box<double>(u, 0.1);
  box.lower.pop_back();
  REQUIRE_THROWS_WITH(dist.global_bounds(nom, box),
                      Catch::Contains("the input box has 2 entries, the model has p = 3"));
  box = linf_box<double>(u, 0.1);
  box.lower[1] = 1.0; // above upper
  REQUIRE_THROWS_WITH(dist.interval_bounds(nom, box),
                      Catch::Contains("empty or NaN at input 1"));
  REQUIRE_THROWS_AS(dist.nominal(std::vector<double>(2), std::vector<double>(1)),
                    InvalidArgument);
}

TEST_CASE("the distributed margins and outputs are the single-process bits",
          "[mpi][bounds][margins]") {
  struct Case {
    const char *name;
    Model<double> model;
  };
  const Case cases[] = {
      {"cyclic, ||A||_inf 0.9", test_model(300, 4, 3, 81, 0.9, 6)},
      {"cyclic, 10 outputs", test_model(400, 6, 10, 82, 0.7, 8)},
      {"feed-forward", feed_forward(test_model(250, 4, 3, 83, 1.5, 8))},
      {"not certified, ||A||_inf 3", test_model(120, 3, 2, 84, 3.0, 6)},
  };
  for (const auto &c : cases) {
    INFO(c.name);
    const Model<double> &model = c.model;
    const BoundAnalyzer<double> single(model);
    const auto dm = mpi::distribute_model(model);
    const mpi::DistributedBoundAnalyzer dist(dm);
    const index_t r0 = dm.own_begin(), r1 = dm.own_end();
    const auto U = random_batch<double>(model.inputs(), 2, 90);
    SolveOptions so;
    so.method = SolveMethod::picard;
    so.picard.max_iterations = 300;
    Batch<double> X;
    EquilibriumSolver<double>(model, so).solve(U, X);
    int certified_global = 0, certified_interval = 0, uncertified = 0;
    for (index_t col = 0; col < U.cols(); ++col) {
      std::vector<double> u(static_cast<std::size_t>(model.inputs())),
          x(static_cast<std::size_t>(model.states()));
      U.get_column(col, u);
      X.get_column(col, x);
      const auto nom = single.nominal(std::span<const double>(u), std::span<const double>(x));
      const auto dnom = dist.nominal(u, slice(x, r0, r1));
      REQUIRE(dnom.y == nom.y); // every rank, bit for bit
      for (const double eps : {1e-4, 3e-3, 0.03, 0.3})
        for (int label = 0; label < model.outputs(); ++label) {
          INFO("input " << col << ", eps " << eps << ", label " << label);
          const auto box = linf_box<double>(u, eps);
          const auto g = single.margins(nom, box, label, BoundMethod::global);
          const auto i = single.margins(nom, box, label, BoundMethod::interval);
          const auto dg = dist.margins(dnom, box, label, BoundMethod::global);
          const auto di = dist.margins(dnom, box, label, BoundMethod::interval);
          const auto db = dist.margins(dnom, box, label, BoundMethod::best);
          for (const auto &[a, b] : {std::pair{&g, &dg}, std::pair{&i, &di},
                                     std::pair{g.certified() ? &g : &i, &db}}) {
            REQUIRE(b->status == a->status);
            REQUIRE(b->label == a->label);
            REQUIRE(b->margin_lower == a->margin_lower);
            REQUIRE(b->y_lower == a->y_lower);
            REQUIRE(b->y_upper == a->y_upper);
          }
          certified_global += g.certified() ? 1 : 0;
          certified_interval += i.certified() ? 1 : 0;
          uncertified += i.certified() ? 0 : 1;
        }
    }
    // Both outcomes occur on the certified models (the comparison covers them).
    INFO("certified " << certified_global << " / " << certified_interval << ", not "
                      << uncertified);
    if (single.certified_well_posed())
      REQUIRE((certified_interval > 0 && uncertified > 0));
  }
}

TEST_CASE("the distributed margins refuse a bad label on every rank", "[mpi][bounds][margins]") {
  const auto model = test_model(60, 3, 2, 85);
  const auto dm = mpi::distribute_model(model);
  const mpi::DistributedBoundAnalyzer dist(dm);
  std::vector<double> u(3, 0.5);
  const auto nom =
      dist.nominal(u, std::vector<double>(static_cast<std::size_t>(dm.own_end() - dm.own_begin())));
  const auto box = linf_box<double>(u, 0.1);
  REQUIRE_THROWS_WITH(dist.margins(nom, box, 2, BoundMethod::interval),
                      Catch::Contains("label 2 is not in [0, 2)"));
  REQUIRE_THROWS_AS(dist.margins(nom, box, 0, BoundMethod::linear), Unsupported);
}

TEST_CASE("the distributed bounds count C's columns of the own states in the memory budget",
          "[mpi][bounds][budget]") {
  const auto model = test_model(120, 4, 5, 97);
  const auto dm = mpi::distribute_model(model);
  // Independently: the entries of the whole C in the columns of each rank's
  // states, held as C^T's own rows (64-bit row pointers, 32-bit columns,
  // double values) beside the rank's share of the model.
  const auto C = csr_view(model.C());
  std::vector<std::uint64_t> need(static_cast<std::size_t>(ranks()));
  for (int r = 0; r < ranks(); ++r) {
    const index_t b = dm.states.begin(r), e = dm.states.end(r);
    std::uint64_t entries = 0;
    for (std::int64_t k = 0; k < C->nnz(); ++k)
      entries += C->column(k) >= b && C->column(k) < e ? 1 : 0;
    need[r] = static_cast<std::uint64_t>(e - b + 1) * 8 + entries * 12;
  }
  std::vector<std::uint64_t> held(static_cast<std::size_t>(ranks()));
  const std::uint64_t mine = dm.local_bytes();
  MPI_Allgather(&mine, 1, MPI_UINT64_T, held.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  std::uint64_t most = 0, most_share = 0;
  for (int r = 0; r < ranks(); ++r) {
    REQUIRE(need[r] > 8 * static_cast<std::uint64_t>(dm.states.size(r) + 1));
    most = std::max(most, held[r] + need[r]);
    most_share = std::max(most_share, held[r]);
  }
  // The share and the copy together: accepted at the largest, the same bounds.
  const mpi::DistributedBoundAnalyzer unbounded(dm), tight(dm, {}, most);
  REQUIRE(tight.rate() == unbounded.rate());
  // One byte less, or a budget the share alone meets: refused on every rank.
  REQUIRE_THROWS_WITH(mpi::DistributedBoundAnalyzer(dm, {}, most - 1),
                      Catch::Contains("of C's columns of its states") &&
                          Catch::Contains("more than the memory budget of " +
                                          std::to_string(most - 1)));
  REQUIRE_THROWS_WITH(mpi::DistributedBoundAnalyzer(dm, {}, most_share),
                      Catch::Contains("more than the memory budget"));
}
