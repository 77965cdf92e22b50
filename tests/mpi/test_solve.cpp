// Distributed Picard (lib/mpi/solve.cpp) against the single-process solver on
// the whole model: the same bits for the states, the same report, outputs to
// rounding.
#include <catch2/catch.hpp>

#include <cmath>

#include <tacit/mpi/mpi.hpp>
#include <tacit/solve/solve.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

struct Reference {
  Batch<double> X, Y;
  SolveReport report;
};

Reference single_process(const Model<double> &model, const Batch<double> &U,
                         const PicardOptions &picard) {
  SolveOptions o;
  o.method = SolveMethod::picard;
  o.picard = picard;
  EquilibriumSolver<double> solver(model, o);
  Reference r;
  r.report = solver.predict(U, r.X, r.Y);
  return r;
}

void check_against(const Model<double> &model, const mpi::DistributedModel &dm,
                   const Batch<double> &U, const PicardOptions &picard) {
  const Reference ref = single_process(model, U, picard);
  Batch<double> Y, X_own;
  mpi::RankTimings timings;
  const SolveReport r = mpi::distributed_predict(dm, U, Y, picard, &timings, &X_own);
  // The report: the same on every rank and the same as the single process's.
  REQUIRE(r.method == SolveMethod::picard);
  REQUIRE(r.status == ref.report.status);
  REQUIRE(r.iterations == ref.report.iterations);
  REQUIRE(r.residual == ref.report.residual);
  REQUIRE(r.column_status == ref.report.column_status);
  REQUIRE(r.column_iterations == ref.report.column_iterations);
  REQUIRE(r.column_residuals == ref.report.column_residuals);
  REQUIRE(r.step_history == ref.report.step_history);
  // The states: the same bits.
  const index_t r0 = dm.own_begin();
  REQUIRE(X_own.rows() == dm.own_end() - r0);
  REQUIRE(X_own.cols() == U.cols());
  index_t differ = 0;
  for (index_t i = 0; i < X_own.rows(); ++i)
    for (index_t j = 0; j < U.cols(); ++j)
      differ += X_own(i, j) != ref.X(r0 + i, j) ? 1 : 0;
  REQUIRE(differ == 0);
  // The outputs on rank 0, in input order, to 1e-13 relative.
  if (dm.rank == 0) {
    REQUIRE(Y.rows() == model.outputs());
    REQUIRE(Y.cols() == U.cols());
    double worst = 0;
    for (index_t i = 0; i < Y.rows(); ++i)
      for (index_t j = 0; j < Y.cols(); ++j) {
        const double scale = std::max(1.0, std::abs(ref.Y(i, j)));
        worst = std::max(worst, std::abs(Y(i, j) - ref.Y(i, j)) / scale);
      }
    CHECK(worst <= 1e-13);
    REQUIRE(timings.solve.size() == static_cast<std::size_t>(dm.ranks));
  } else {
    REQUIRE(Y.cols() == 0);
  }
}

} // namespace

TEST_CASE("distributed Picard gives the single-process states bit for bit",
          "[mpi][solve]") {
  SharedDir dir;
  const auto model = test_model(400, 6, 5, 21);
  save_on_rank0(model, dir / "m.tacit");
  const auto dm = mpi::load_distributed_model(dir / "m.tacit");
  PicardOptions picard;
  SECTION("one input") {
    check_against(model, dm, random_batch<double>(6, 1, 3), picard);
  }
  SECTION("a batch over two slabs") {
    check_against(model, dm, random_batch<double>(6, 45, 4), picard);
  }
  SECTION("from the in-memory model") {
    check_against(model, mpi::distribute_model(model), random_batch<double>(6, 7, 5),
                  picard);
  }
  SECTION("a budget too small: max_iterations reported per column") {
    picard.max_iterations = 4;
    check_against(model, dm, random_batch<double>(6, 3, 6), picard);
  }
  SECTION("a model that diverges: the same status") {
    const auto wild = test_model(200, 3, 2, 8, 3.0);
    picard.max_iterations = 2000;
    check_against(wild, mpi::distribute_model(wild), random_batch<double>(3, 2, 9),
                  picard);
  }
}

TEST_CASE("distributed Picard refuses what it does not do, on every rank",
          "[mpi][solve]") {
  const auto model = test_model(100, 3, 2, 4);
  const auto dm = mpi::distribute_model(model);
  Batch<double> Y;
  REQUIRE_THROWS_AS(mpi::distributed_predict(dm, random_batch<double>(4, 2), Y),
                    InvalidArgument);
}
