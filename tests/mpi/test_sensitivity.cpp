// Distributed rows of S = |C| (I - |A|)^-1 |B| + |D| (lib/mpi/sensitivity.cpp)
// against the single-process SensitivityOperator and dense Eigen.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <Eigen/Dense>

#include <tacit/analysis/sensitivity.hpp>
#include <tacit/mpi/sensitivity.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

Eigen::MatrixXd dense_abs(const LinearOperator<double> &op) {
  const CsrMatrix<double> *M = stored_csr(op);
  REQUIRE(M != nullptr);
  Eigen::MatrixXd out = Eigen::MatrixXd::Zero(M->rows(), M->cols());
  const auto rp = M->row_ptr();
  for (index_t i = 0; i < M->rows(); ++i)
    for (auto e = rp[i]; e < rp[i + 1]; ++e)
      out(i, M->column(e)) += std::abs(M->values()[e]);
  return out;
}

double worst_relative(const std::vector<double> &got, const std::vector<double> &ref) {
  REQUIRE(got.size() == ref.size());
  double scale = 0, worst = 0;
  for (const double x : ref)
    scale = std::max(scale, std::abs(x));
  for (std::size_t i = 0; i < ref.size(); ++i)
    worst = std::max(worst, std::abs(got[i] - ref[i]) / scale);
  return worst;
}

void check_rows(const Model<double> &model, const mpi::DistributedModel &dm,
                const std::vector<index_t> &rows, mpi::SensitivitySolver solver) {
  mpi::DistributedSensitivityOptions o;
  o.solver = solver;
  mpi::RankTimings timings;
  const auto got = mpi::distributed_sensitivity_rows(dm, rows, o, &timings);
  REQUIRE(got.converged);
  REQUIRE(got.theta < 1);
  REQUIRE(got.lambda_upper < 1);
  REQUIRE(got.error_bound <= 1e-12);
  REQUIRE(got.iterations > 0);
  if (dm.rank != 0) {
    REQUIRE(got.values.empty());
    return;
  }
  const SensitivityOperator<double> S(model);
  const std::vector<double> ref = S.rows_dense(rows);
  CHECK(worst_relative(got.values, ref) <= 1e-12);
  REQUIRE(timings.solve.size() == static_cast<std::size_t>(dm.ranks));
}

} // namespace

TEST_CASE("distributed sensitivity rows equal the single-process rows",
          "[mpi][sensitivity]") {
  const auto model = test_model(600, 7, 5, 31, 0.9);
  SharedDir dir;
  save_on_rank0(model, dir / "m.tacit");
  const auto dm = mpi::load_distributed_model(dir / "m.tacit");
  SECTION("GMRES, every row") {
    check_rows(model, dm, {0, 1, 2, 3, 4}, mpi::SensitivitySolver::gmres);
  }
  SECTION("Richardson with the certified stopping bound, some rows") {
    check_rows(model, dm, {4, 0, 2}, mpi::SensitivitySolver::richardson);
  }
  SECTION("a contraction close to 1") {
    const auto slow = test_model(500, 4, 3, 32, 0.98);
    check_rows(slow, mpi::distribute_model(slow), {0, 1, 2},
               mpi::SensitivitySolver::gmres);
  }
}

TEST_CASE("distributed sensitivity rows equal dense Eigen on a tiny model",
          "[mpi][sensitivity]") {
  const auto model = test_model(12, 3, 2, 33, 0.8, 3);
  const auto dm = mpi::distribute_model(model);
  const std::vector<index_t> rows = {0, 1};
  for (const auto solver :
       {mpi::SensitivitySolver::gmres, mpi::SensitivitySolver::richardson}) {
    mpi::DistributedSensitivityOptions o;
    o.solver = solver;
    const auto got = mpi::distributed_sensitivity_rows(dm, rows, o);
    if (dm.rank != 0)
      continue;
    const Eigen::MatrixXd A = dense_abs(model.A()), B = dense_abs(model.B()),
                          C = dense_abs(model.C()), D = dense_abs(*model.D());
    const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(12, 12);
    const Eigen::MatrixXd S = C * (I - A).fullPivLu().solve(B) + D;
    std::vector<double> ref;
    for (const index_t r : rows)
      for (index_t j = 0; j < 3; ++j)
        ref.push_back(S(r, j));
    CHECK(worst_relative(got.values, ref) <= 1e-12);
  }
}

TEST_CASE("distributed sensitivity refuses, on every rank", "[mpi][sensitivity]") {
  SECTION("a row outside [0, q)") {
    const auto model = test_model(60, 3, 2, 34);
    const auto dm = mpi::distribute_model(model);
    const std::vector<index_t> rows = {2};
    REQUIRE_THROWS_AS(mpi::distributed_sensitivity_rows(dm, rows), InvalidArgument);
  }
  SECTION("lambda_PF(|A|) >= 1: not certified") {
    const auto wild = test_model(60, 3, 2, 35, 3.0);
    const auto dm = mpi::distribute_model(wild);
    const std::vector<index_t> rows = {0};
    try {
      mpi::distributed_sensitivity_rows(dm, rows);
      FAIL("no error");
    } catch (const NumericalError &e) {
      REQUIRE(mpi::error_on_every_rank(e));
      REQUIRE(std::string(e.what()).find("not certified") != std::string::npos);
    }
  }
}
