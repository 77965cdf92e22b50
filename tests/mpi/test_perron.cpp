// The distributed lambda_PF(|A|) enclosure (lib/mpi/perron.cpp) against the
// exact value (dense Eigen) and the single-process enclosure; norms; SLEPc.
#include <catch2/catch.hpp>

#include <cmath>

#include <Eigen/Dense>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/mpi/mpi.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

double exact_spectral_radius(const CsrMatrix<double> &A) {
  const index_t n = A.rows();
  Eigen::MatrixXd M = Eigen::MatrixXd::Zero(n, n);
  const auto rp = A.row_ptr();
  for (index_t i = 0; i < n; ++i)
    for (auto e = rp[i]; e < rp[i + 1]; ++e)
      M(i, A.column(e)) = std::abs(A.values()[e]);
  const Eigen::VectorXcd ev = M.eigenvalues();
  double rho = 0;
  for (index_t i = 0; i < n; ++i)
    rho = std::max(rho, std::abs(ev(i)));
  return rho;
}

/// The model with A + 0.05 P (P the cyclic shift): A strongly connected, so
/// that lambda_PF(|A|) has a positive Perron vector and the power iteration
/// on the whole |A| tightens (the single-process enclosure works per SCC).
Model<double> strongly_connected(const Model<double> &m) {
  const auto A = csr_view(m.A());
  const index_t n = A->rows();
  std::vector<Triplet<double>> t;
  const auto rp = A->row_ptr();
  for (index_t i = 0; i < n; ++i) {
    for (auto e = rp[i]; e < rp[i + 1]; ++e)
      t.push_back({i, A->column(e), A->values()[e]});
    t.push_back({i, (i + 1) % n, 0.05});
  }
  auto A2 = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(n, n, t));
  return Model<double>(A2, m.B_ptr(), m.C_ptr(), m.D_ptr(),
                       std::vector<double>(m.bias_x().begin(), m.bias_x().end()),
                       std::vector<double>(m.bias_y().begin(), m.bias_y().end()), m.blocks());
}

} // namespace

TEST_CASE("the distributed enclosure of lambda_PF(|A|) contains the exact value and "
          "agrees with the single-process one",
          "[mpi][perron]") {
  for (const double norm : {0.9, 1.4}) {
    INFO("||A||_inf = " << norm);
    const auto model = strongly_connected(test_model(150, 3, 2, 31, norm, 5));
    const auto A = csr_view(model.A());
    const double exact = exact_spectral_radius(*A);
    const auto dm = mpi::distribute_model(model);
    mpi::RankTimings timings;
    const PerronBound d = mpi::distributed_perron_bound(dm, {}, &timings);
    const PerronBound s = perron_frobenius_bound(*A);
    INFO("exact " << exact << ", distributed [" << d.lower << ", " << d.upper
                  << "], single [" << s.lower << ", " << s.upper << "]");
    REQUIRE(d.lower <= exact);
    REQUIRE(exact <= d.upper);
    REQUIRE(s.lower <= exact);
    REQUIRE(exact <= s.upper);
    REQUIRE(d.status == PerronStatus::tight);
    REQUIRE(d.upper - d.lower <= 1e-8 * d.upper);
    REQUIRE(d.certified() == s.certified());
    if (exact < 0.999)
      REQUIRE(d.certified());
    if (exact > 1.001)
      REQUIRE(!d.certified());
    // The result is the same on every rank.
    double mine[2] = {d.lower, d.upper}, lo[2], hi[2];
    MPI_Allreduce(mine, lo, 2, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(mine, hi, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    REQUIRE(lo[0] == hi[0]);
    REQUIRE(lo[1] == hi[1]);
    // SLEPc's estimate, not certified, close to the exact value.
    const double est = mpi::slepc_spectral_radius_estimate(dm);
    CHECK(std::abs(est - exact) <= 1e-8 * exact);
  }
}

TEST_CASE("stop_when_decided stops once the interval is on one side of 1",
          "[mpi][perron]") {
  const auto model = test_model(150, 3, 2, 32, 0.5, 5);
  PerronOptions o;
  o.stop_when_decided = true;
  const PerronBound d = mpi::distributed_perron_bound(mpi::distribute_model(model), o);
  REQUIRE(d.certified());
  REQUIRE(d.status == PerronStatus::decided);
  REQUIRE(d.iterations <= 3);
}

TEST_CASE("distributed norms equal the single-process norms", "[mpi][perron]") {
  const auto model = test_model(170, 3, 2, 33);
  const auto [inf, one] = mpi::distributed_norms(mpi::distribute_model(model));
  REQUIRE(inf == Approx(norm_inf(model.A())).epsilon(1e-14));
  REQUIRE(one == Approx(norm_1(model.A())).epsilon(1e-14));
}
