// Distributed Anderson acceleration (lib/mpi/anderson.cpp, the chained inner
// products of lib/solve/fixed_point.cpp) against the single-process solver
// with the same depth: the same bits for the states, the same report.
#include <catch2/catch.hpp>

#include <cmath>

#include <tacit/mpi/mpi.hpp>
#include <tacit/solve/partitioned.hpp>
#include <tacit/solve/solve.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

void check_anderson(const Model<double> &model, const mpi::DistributedModel &dm,
                    const Batch<double> &U, const PicardOptions &picard) {
  SolveOptions o;
  o.method = SolveMethod::picard;
  o.picard = picard;
  EquilibriumSolver<double> solver(model, o);
  Batch<double> X_ref, Y_ref;
  const SolveReport ref = solver.predict(U, X_ref, Y_ref);

  Batch<double> Y, X_own;
  const SolveReport r = mpi::distributed_predict(dm, U, Y, picard, nullptr, &X_own);
  REQUIRE(r.method == SolveMethod::picard);
  REQUIRE(r.status == ref.status);
  REQUIRE(r.iterations == ref.iterations);
  REQUIRE(r.residual == ref.residual);
  REQUIRE(r.column_status == ref.column_status);
  REQUIRE(r.column_iterations == ref.column_iterations);
  REQUIRE(r.column_residuals == ref.column_residuals);
  REQUIRE(r.step_history == ref.step_history);
  const index_t r0 = dm.own_begin();
  REQUIRE(X_own.rows() == dm.own_end() - r0);
  index_t differ = 0;
  for (index_t i = 0; i < X_own.rows(); ++i)
    for (index_t j = 0; j < U.cols(); ++j)
      differ += X_own(i, j) != X_ref(r0 + i, j) ? 1 : 0;
  REQUIRE(differ == 0);
  if (dm.rank == 0) {
    double worst = 0;
    for (index_t i = 0; i < Y.rows(); ++i)
      for (index_t j = 0; j < Y.cols(); ++j)
        worst = std::max(worst, std::abs(Y(i, j) - Y_ref(i, j)) /
                                    std::max(1.0, std::abs(Y_ref(i, j))));
    CHECK(worst <= 1e-13);
  }
}

} // namespace

TEST_CASE("distributed Anderson gives the single-process states bit for bit",
          "[mpi][solve][anderson]") {
  PicardOptions picard;
  picard.anderson_depth = 5;
  SECTION("a model of one chunk (every rank inside it)") {
    const auto model = test_model(400, 6, 5, 21, 0.97);
    check_anderson(model, mpi::distribute_model(model), random_batch<double>(6, 3, 3),
                   picard);
  }
  SECTION("several chunks of 1024 states split across the ranks, two slabs") {
    const auto model = test_model(3100, 5, 4, 22, 0.97);
    SharedDir dir;
    save_on_rank0(model, dir / "m.tacit");
    const auto dm = mpi::load_distributed_model(dir / "m.tacit");
    check_anderson(model, dm, random_batch<double>(5, 40, 4), picard);
  }
  SECTION("depth 1, a small budget: max_iterations per column") {
    const auto model = test_model(2500, 4, 3, 23, 0.99);
    picard.anderson_depth = 1;
    picard.max_iterations = 6;
    check_anderson(model, mpi::distribute_model(model), random_batch<double>(4, 5, 5),
                   picard);
  }
  SECTION("a model that diverges: the same statuses") {
    const auto wild = test_model(1500, 3, 2, 8, 3.0);
    picard.max_iterations = 500;
    check_anderson(wild, mpi::distribute_model(wild), random_batch<double>(3, 2, 9),
                   picard);
  }
}

TEST_CASE("picard_solve_part with Anderson needs the chain hooks on a part",
          "[mpi][solve][anderson]") {
  const auto model = test_model(50, 2, 2, 4);
  const CsrMatrix<double> *A = stored_csr(model.A());
  REQUIRE(A != nullptr);
  PicardOptions picard;
  picard.anderson_depth = 2;
  StatePart<double> part;
  part.begin = 0;
  part.end = 50;
  part.global_begin = 0;
  part.global_rows = 80; // a part of a larger model, without hooks
  std::vector<Activation> act(50, Activation::parse("relu"));
  std::vector<double> bias(model.bias_x().begin(), model.bias_x().end());
  Batch<double> X;
  REQUIRE_THROWS_AS(picard_solve_part<double>(*A, act, model.B(), bias,
                                              random_batch<double>(2, 1), X, picard,
                                              part),
                    InvalidArgument);
}
