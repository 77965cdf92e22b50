// Data parallel over inputs (lib/mpi/batch.cpp) against the single-process
// solver and certifier on the whole batch: the same bits, in input order.
// And the generated distributed model (lib/mpi/generate.cpp) against
// random_implicit_model, and its halo.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include <tacit/analysis/bounds.hpp>
#include <tacit/mpi/batch.hpp>
#include <tacit/mpi/generate.hpp>
#include <tacit/solve/solve.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

/// A small feed-forward network (sweep) and an implicit model (Picard, the
/// columns converging at different iterations).
Model<double> network() {
  ResNetLikeShape s;
  s.image = 4;
  s.input_channels = 2;
  s.stage_channels = {3, 4};
  s.stage_layers = {2, 2};
  s.classes = 5;
  return resnet_like_model<double>(s, 7);
}

template <class T> bool same_bits(const Batch<T> &a, const Batch<T> &b) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    return false;
  for (index_t j = 0; j < a.cols(); ++j)
    for (index_t i = 0; i < a.rows(); ++i)
      if (a(i, j) != b(i, j))
        return false;
  return true;
}

void check_predict(const Model<double> &model, SolveMethod method, index_t k) {
  const auto U = random_batch<double>(model.inputs(), k, 5);
  SolveOptions o;
  o.method = method;
  EquilibriumSolver<double> ref_solver(model, o);
  Batch<double> Xref, Yref;
  const SolveReport ref = ref_solver.predict(U, Xref, Yref);
  EquilibriumSolver<double> solver(model, o);
  Batch<double> X, Y;
  mpi::RankTimings timings;
  const SolveReport r =
      mpi::batch_predict(MPI_COMM_WORLD, solver, model, U, Y, &X, &timings);
  REQUIRE(r.method == ref.method);
  REQUIRE(r.status == ref.status);
  REQUIRE(r.iterations == ref.iterations);
  REQUIRE(r.residual == ref.residual);
  REQUIRE(r.column_status == ref.column_status);
  REQUIRE(r.column_iterations == ref.column_iterations);
  REQUIRE(r.column_residuals == ref.column_residuals);
  if (rank() == 0) {
    REQUIRE(same_bits(Y, Yref));
    REQUIRE(same_bits(X, Xref));
    REQUIRE(timings.solve.size() == static_cast<std::size_t>(ranks()));
  } else {
    REQUIRE(Y.cols() == 0);
  }
  // The outputs-only predict: the same bits too.
  Batch<double> Y2;
  mpi::batch_predict(MPI_COMM_WORLD, solver, model, U, Y2);
  if (rank() == 0)
    REQUIRE(same_bits(Y2, Yref));
}

} // namespace

TEST_CASE("batch_partition gives whole slabs, spread evenly, in order", "[mpi][batch]") {
  const auto p = mpi::batch_partition(100, 3, 32);
  REQUIRE(p.starts == std::vector<index_t>{0, 32, 64, 100});
  const auto q = mpi::batch_partition(40, 4, 32);
  REQUIRE(q.starts == std::vector<index_t>{0, 0, 32, 32, 40});
  REQUIRE(mpi::batch_partition(0, 2, 32).starts == std::vector<index_t>{0, 0, 0});
  REQUIRE_THROWS_AS(mpi::batch_partition(10, 0, 32), InvalidArgument);
}

TEST_CASE("batch_predict gives the single-process outputs, states and report bit for bit",
          "[mpi][batch]") {
  SECTION("a feed-forward network, swept; inputs over several slabs") {
    check_predict(network(), SolveMethod::automatic, 75);
  }
  SECTION("fewer inputs than ranks have slabs: idle ranks") {
    check_predict(network(), SolveMethod::automatic, 5);
  }
  SECTION("an implicit model by Picard, columns converging at their own iterations") {
    check_predict(test_model(300, 6, 4, 11), SolveMethod::picard, 70);
  }
}

TEST_CASE("batch_predict refuses inputs of the wrong size on every rank",
          "[mpi][batch]") {
  const auto model = network();
  EquilibriumSolver<double> solver(model);
  const auto U = random_batch<double>(model.inputs() + 1, 4, 5);
  Batch<double> Y;
  REQUIRE_THROWS_AS(mpi::batch_predict(MPI_COMM_WORLD, solver, model, U, Y),
                    InvalidArgument);
}

TEST_CASE("batch_certify gives the single-process counts, certificates and radii",
          "[mpi][batch]") {
  const auto model = network();
  const index_t k = 45;
  const auto U = random_batch<double>(model.inputs(), k, 9);
  // Labels: the predictions, and a wrong one for every fifth input.
  Batch<double> Y;
  EquilibriumSolver<double>(model).predict(U, Y);
  std::vector<int> labels(static_cast<std::size_t>(k));
  for (index_t j = 0; j < k; ++j) {
    int best = 0;
    for (index_t i = 1; i < Y.rows(); ++i)
      if (Y(i, j) > Y(best, j))
        best = static_cast<int>(i);
    labels[j] = j % 5 == 4 ? (best + 1) % static_cast<int>(Y.rows()) : best;
  }
  const std::vector<double> eps = {0.001, 0.01};
  for (const BoundMethod method : {BoundMethod::interval, BoundMethod::best}) {
    CertifyOptions options;
    options.method = method;
    BoundAnalyzer<double> analyzer(model, options.bounds);
    const auto ref = certify_dataset<double>(analyzer, U, labels, eps, true, options);
    mpi::RankTimings timings;
    const auto got = mpi::batch_certify<double>(MPI_COMM_WORLD, analyzer, U, labels, eps,
                                                true, options, &timings);
    if (rank() != 0)
      continue;
    REQUIRE(got.count == ref.count);
    REQUIRE(got.correct == ref.correct);
    REQUIRE(got.certified == ref.certified);
    REQUIRE(got.per_input.size() == ref.per_input.size());
    for (std::size_t j = 0; j < ref.per_input.size(); ++j) {
      INFO("input " << j);
      REQUIRE(got.per_input[j].label == ref.per_input[j].label);
      REQUIRE(got.per_input[j].predicted == ref.per_input[j].predicted);
      REQUIRE(got.per_input[j].radius == ref.per_input[j].radius);
      REQUIRE(got.per_input[j].region_radius == ref.per_input[j].region_radius);
      REQUIRE(got.per_input[j].certified == ref.per_input[j].certified);
    }
  }
}

TEST_CASE("random_implicit_model_part: the parts make up the whole model, bit for bit",
          "[mpi][generate]") {
  const index_t n = 1000, p = 7, q = 5;
  const auto whole = random_implicit_model<double>(n, p, q, 9, 0.8, 3);
  const auto A = csr_view(whole.A());
  // Three parts, the scaling agreed as a distributed program would.
  const index_t cuts[] = {0, 333, 700, n};
  double largest = 0;
  index_t top = 0;
  for (int k = 0; k < 3; ++k) {
    auto probe = random_implicit_model_part<double>(
        n, p, q, 9, 0.8, 3, cuts[k], cuts[k + 1], 0, 0, [&](double &s, index_t &row) {
          if (s > largest) {
            largest = s;
            top = row;
          }
        });
  }
  for (int k = 0; k < 3; ++k) {
    const auto part = random_implicit_model_part<double>(n, p, q, 9, 0.8, 3, cuts[k],
                                                         cuts[k + 1], k == 0 ? 0 : q, q,
                                                         [&](double &s, index_t &row) {
                                                           s = largest;
                                                           row = top;
                                                         });
    for (index_t i = cuts[k]; i < cuts[k + 1]; ++i) {
      const auto rp = A->row_ptr(), lp = part.A.row_ptr();
      const index_t li = i - cuts[k];
      REQUIRE(lp[li + 1] - lp[li] == rp[i + 1] - rp[i]);
      for (auto e = rp[i], f = lp[li]; e < rp[i + 1]; ++e, ++f) {
        REQUIRE(part.A.column(f) == A->column(e));
        REQUIRE(part.A.values()[f] == A->values()[e]);
      }
      REQUIRE(part.bias_x[li] == whole.bias_x()[i]);
    }
    if (k == 0)
      REQUIRE(part.C.to_dense() == csr_view(whole.C())->to_dense());
  }
  const auto pattern = random_implicit_pattern(n, 9, 3, 100, 200);
  for (index_t i = 100; i < 200; ++i)
    for (auto e = pattern.row_ptr()[i - 100]; e < pattern.row_ptr()[i - 99]; ++e)
      REQUIRE(pattern.column(e) ==
              A->column(A->row_ptr()[i] + (e - pattern.row_ptr()[i - 100])));
}

TEST_CASE("generate_distributed_model holds each rank's rows of random_implicit_model",
          "[mpi][generate]") {
  mpi::ImplicitModelShape shape;
  shape.states = 2000;
  shape.inputs = 12;
  shape.outputs = 6;
  shape.row_nnz = 8;
  shape.seed = 17;
  const auto dm = mpi::generate_distributed_model(shape);
  const auto whole = random_implicit_model<double>(2000, 12, 6, 8, 0.9, 17);
  const auto ref = mpi::distribute_model(whole);
  REQUIRE(dm.states.starts == ref.states.starts);
  REQUIRE(dm.outputs.starts == ref.outputs.starts);
  REQUIRE(dm.A.global_nnz == ref.A.global_nnz);
  REQUIRE(dm.A.local.to_dense() == ref.A.local.to_dense());
  REQUIRE(dm.B.local.to_dense() == ref.B.local.to_dense());
  REQUIRE(dm.C.local.to_dense() == ref.C.local.to_dense());
  REQUIRE(dm.bias_x == ref.bias_x);
  REQUIRE(dm.blocks == ref.blocks);
  // The states of a solve: the same bits as the whole model's.
  const auto U = random_batch<double>(12, 10, 3);
  Batch<double> Y1, Y2, X1, X2;
  mpi::distributed_predict(dm, U, Y1, {}, nullptr, &X1);
  mpi::distributed_predict(ref, U, Y2, {}, nullptr, &X2);
  REQUIRE(same_bits(X1, X2));

  SECTION("its halo, against the ghosts counted here; and the same counted without MPI") {
    const auto halo = mpi::distributed_halo(dm);
    const auto counted = mpi::random_implicit_halo(shape, dm.ranks);
    if (dm.rank == 0) {
      REQUIRE(halo.size() == static_cast<std::size_t>(dm.ranks));
      REQUIRE(counted.size() == halo.size());
      std::int64_t sent = 0, received = 0;
      for (int r = 0; r < dm.ranks; ++r) {
        REQUIRE(counted[r].rows == halo[r].rows);
        REQUIRE(counted[r].nnz == halo[r].nnz);
        REQUIRE(counted[r].ghosts == halo[r].ghosts);
        REQUIRE(counted[r].neighbours == halo[r].neighbours);
        sent += halo[r].sent;
        received += halo[r].ghosts;
      }
      REQUIRE(sent == received);
    }
    // This rank's ghosts, counted directly.
    std::set<index_t> mine;
    const auto A = csr_view(whole.A());
    for (index_t i = dm.own_begin(); i < dm.own_end(); ++i)
      for (auto e = A->row_ptr()[i]; e < A->row_ptr()[i + 1]; ++e)
        if (A->column(e) < dm.own_begin() || A->column(e) >= dm.own_end())
          mine.insert(A->column(e));
    if (dm.rank == 0)
      REQUIRE(halo[0].ghosts == static_cast<index_t>(mine.size()));
    if (dm.ranks == 1)
      REQUIRE(mine.empty());
  }
}

TEST_CASE(
    "generate_distributed_model refuses a share over the memory budget on every rank",
    "[mpi][generate]") {
  mpi::ImplicitModelShape shape;
  shape.states = 3000;
  shape.inputs = 4;
  shape.outputs = 2;
  REQUIRE_THROWS_WITH(mpi::generate_distributed_model(shape, MPI_COMM_WORLD, 1000),
                      Catch::Contains("more than the memory budget"));
  shape.states = 0;
  REQUIRE_THROWS_AS(mpi::generate_distributed_model(shape), InvalidArgument);
}
