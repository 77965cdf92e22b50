// Certification on a CSR model distributed by states (lib/mpi/certify.cpp)
// against the single-process certify_dataset on the whole model: the same
// predictions, certificates per input and eps, and radii.
#include <catch2/catch.hpp>

#include <vector>

#include <tacit/analysis/bounds.hpp>
#include <tacit/mpi/bounds.hpp>
#include <tacit/mpi/certify.hpp>
#include <tacit/solve/solve.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

Model<double> lower_part(const Model<double> &m) {
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

/// Labels: the single-process prediction, every third input off by one.
std::vector<int> labels_for(const Model<double> &model, const Batch<double> &U) {
  Batch<double> Y;
  EquilibriumSolver<double>(model).predict(U, Y);
  std::vector<int> out;
  for (index_t j = 0; j < U.cols(); ++j) {
    int best = 0;
    for (index_t k = 1; k < model.outputs(); ++k)
      if (Y(k, j) > Y(best, j))
        best = static_cast<int>(k);
    out.push_back(j % 3 == 2 ? (best + 1) % static_cast<int>(model.outputs()) : best);
  }
  return out;
}

} // namespace

TEST_CASE("certification by states counts as the single process", "[mpi][certify]") {
  struct Case {
    const char *name;
    Model<double> model;
  };
  const Case cases[] = {
      {"cyclic (solved by Picard on both sides)", test_model(300, 5, 4, 91, 0.9, 6)},
      {"feed-forward (swept by the single process)", lower_part(test_model(250, 5, 4, 92, 1.5, 8))},
  };
  for (const auto &c : cases) {
    INFO(c.name);
    const Model<double> &model = c.model;
    const auto U = random_batch<double>(model.inputs(), 12, 93);
    const auto labels = labels_for(model, U);
    const std::vector<double> eps = {1e-4, 1e-3, 1e-2, 0.1};
    const BoundAnalyzer<double> single(model);
    const auto dm = mpi::distribute_model(model);
    const mpi::DistributedBoundAnalyzer dist(dm);
    for (const BoundMethod method : {BoundMethod::global, BoundMethod::interval}) {
      INFO(to_string(method));
      CertifyOptions options;
      options.method = method;
      options.bisection_steps = 8;
      const auto ref = certify_dataset<double>(single, U, labels, eps, true, options);
      mpi::RankTimings timings;
      const auto got = mpi::certify_states(dist, U, labels, eps, true, options, {}, &timings);
      REQUIRE(got.count == ref.count);
      REQUIRE(got.correct == ref.correct);
      REQUIRE(got.certified == ref.certified);
      for (index_t j = 0; j < U.cols(); ++j) {
        INFO("input " << j);
        REQUIRE(got.per_input[j].predicted == ref.per_input[j].predicted);
        REQUIRE(got.per_input[j].certified == ref.per_input[j].certified);
        REQUIRE(got.per_input[j].radius == ref.per_input[j].radius);
      }
      // Not a vacuous comparison: some inputs certified, some not.
      REQUIRE(ref.certified.front() > 0);
      REQUIRE(ref.certified.back() < ref.correct);
      if (rank() == 0)
        REQUIRE(timings.output.size() == static_cast<std::size_t>(ranks()));
    }
    // best = global, then interval: the interval's certificates.
    CertifyOptions best;
    best.method = BoundMethod::interval;
    const auto ref = certify_dataset<double>(single, U, labels, eps, false, best);
    best.method = BoundMethod::best;
    REQUIRE(mpi::certify_states(dist, U, labels, eps, false, best).certified == ref.certified);
  }
}

TEST_CASE("certification by states refuses bad input on every rank", "[mpi][certify]") {
  const auto model = test_model(80, 3, 2, 94);
  const auto dm = mpi::distribute_model(model);
  const mpi::DistributedBoundAnalyzer dist(dm);
  const auto U = random_batch<double>(3, 4, 95);
  const std::vector<double> eps = {0.01};
  CertifyOptions options;
  REQUIRE_THROWS_WITH(
      mpi::certify_states(dist, U, std::vector<int>{0, 1, 2, 0}, eps, false, options),
      Catch::Contains("label 2 of input 3 is not in [0, 2)"));
  REQUIRE_THROWS_WITH(mpi::certify_states(dist, random_batch<double>(2, 4, 96),
                                          std::vector<int>{0, 1, 1, 0}, eps, false, options),
                      Catch::Contains("inputs have 2 rows, the model has p = 3"));
  REQUIRE_THROWS_WITH(
      mpi::certify_states(dist, U, std::vector<int>{0, 1}, eps, false, options),
      Catch::Contains("2 labels for 4 inputs"));
  options.method = BoundMethod::linear;
  REQUIRE_THROWS_AS(
      mpi::certify_states(dist, U, std::vector<int>{0, 1, 1, 0}, eps, false, options),
      Unsupported);
}
