// Thread control per call: the policy's arena is where the work runs (an
// operator defined here observes the concurrency it is called with), and the
// results are the same bits for one thread, two threads and the caller's
// arena.

#include <catch2/catch.hpp>

#include <tacit/analysis/bounds.hpp>
#include <tacit/analysis/sensitivity.hpp>
#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/execution.hpp>
#include <tacit/core/operator_base.hpp>
#include <tacit/solve/solve.hpp>

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

using namespace tacit;

namespace {

/// A CSR matrix that records the largest and smallest concurrency of the
/// arena its products run in.
class Observer final : public OperatorBase<Observer, double> {
public:
  static constexpr std::string_view kind_name = "test_observer";
  explicit Observer(CsrMatrix<double> m)
      : OperatorBase<Observer, double>(m.rows(), m.cols()), m_(std::move(m)) {}
  mutable std::atomic<int> most{0}, least{1 << 30}, calls{0};

private:
  friend OperatorBase<Observer, double>;
  void product(Mode mode, double alpha, ConstMatrixView<double> x, double beta,
               MatrixView<double> y, Execution exec) const {
    const int c = tbb::this_task_arena::max_concurrency();
    ++calls;
    for (int seen = most.load(); c > seen && !most.compare_exchange_weak(seen, c);)
      ;
    for (int seen = least.load(); c < seen && !least.compare_exchange_weak(seen, c);)
      ;
    m_.apply(mode, alpha, x, beta, y, exec);
  }
  CsrMatrix<double> m_;
};

CsrMatrix<double> random_matrix(std::mt19937 &rng, index_t n, index_t m, int per_row,
                                double scale) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<index_t> col(0, m - 1);
  std::vector<Triplet<double>> t;
  for (index_t i = 0; i < n; ++i)
    for (int e = 0; e < per_row; ++e)
      t.push_back({i, col(rng), u(rng) * scale / per_row});
  return CsrMatrix<double>::from_triplets(n, m, t);
}

bool same_bits(const Batch<double> &a, const Batch<double> &b) {
  return a.bytes() == b.bytes() &&
         std::memcmp(a.storage().data(), b.storage().data(), a.bytes()) == 0;
}

} // namespace

/// A CSR matrix whose products record the threads that run them: each
/// product spreads 64 small tasks over the arena it runs in.
class ThreadRecorder final : public OperatorBase<ThreadRecorder, double> {
public:
  static constexpr std::string_view kind_name = "test_thread_recorder";
  explicit ThreadRecorder(CsrMatrix<double> m)
      : OperatorBase<ThreadRecorder, double>(m.rows(), m.cols()), m_(std::move(m)) {}

  std::size_t threads_seen() const {
    std::lock_guard lock(mutex_);
    return seen_.size();
  }
  void clear() {
    std::lock_guard lock(mutex_);
    seen_.clear();
  }

private:
  friend OperatorBase<ThreadRecorder, double>;
  void product(Mode mode, double alpha, ConstMatrixView<double> x, double beta,
               MatrixView<double> y, Execution exec) const {
    tbb::parallel_for(0, 64, [&](int) {
      {
        std::lock_guard lock(mutex_);
        seen_.insert(std::this_thread::get_id());
      }
      // Some work, so that idle threads of the arena take tasks.
      volatile double s = 0;
      for (int i = 0; i < 20000; ++i)
        s = s + 1e-9 * i;
    });
    m_.apply(mode, alpha, x, beta, y, exec);
  }
  CsrMatrix<double> m_;
  mutable std::mutex mutex_;
  mutable std::set<std::thread::id> seen_;
};

TEST_CASE("Execution: the policies and their concurrency", "[execution]") {
  CHECK(Execution::reference.is_reference());
  CHECK(!Execution::parallel.is_reference());
  CHECK(Execution::reference.max_concurrency() == 1);
  CHECK(Execution::parallel.max_concurrency() == tbb::this_task_arena::max_concurrency());
  const auto three = Execution::threads(3);
  CHECK(three.max_concurrency() == 3);
  CHECK(three.task_arena());
  const auto copy = three;
  CHECK(copy == three); // copies share the arena
  CHECK(!(Execution::threads(3) == three));
  tbb::task_arena mine(2);
  CHECK(Execution::arena(mine).task_arena() == &mine);
  CHECK(Execution::arena(mine).max_concurrency() == 2);
  CHECK(three.run([] { return tbb::this_task_arena::max_concurrency(); }) == 3);
  CHECK(Execution::reference.run(
            [] { return tbb::this_task_arena::max_concurrency(); }) == 1);
  CHECK_THROWS_AS(Execution::threads(0), InvalidArgument);
  // Reference calls from several threads at once do not wait for each other.
  std::atomic<int> done{0};
  tbb::parallel_for(0, 8, [&](int) { Execution::reference.run([&] { ++done; }); });
  CHECK(done == 8);
}

TEST_CASE("Execution: an operator's products run in the policy's arena", "[execution]") {
  std::mt19937 rng(1);
  const Observer op(random_matrix(rng, 3000, 3000, 8, 1.0));
  std::vector<double> x(3000, 1.0), y(3000);
  for (const int threads : {1, 2, 3}) {
    op.most = 0;
    op.least = 1 << 30;
    op.apply(Mode::normal, 1.0, std::span<const double>(x), 0.0, std::span<double>(y),
             Execution::threads(threads));
    CHECK(op.most == threads);
    CHECK(op.least == threads);
  }
  tbb::task_arena two(2);
  op.most = 0;
  Batch<double> X(3000, 40), Y;
  Y = Batch<double>(3000, 40);
  op.apply(Mode::transpose, 1.0, X, 0.0, Y, Execution::arena(two));
  CHECK(op.most == 2);
  // Execution::parallel follows the caller's arena.
  op.most = 0;
  two.execute([&] {
    op.apply(Mode::normal, 1.0, std::span<const double>(x), 0.0, std::span<double>(y));
  });
  CHECK(op.most == 2);
}

TEST_CASE("Execution: solvers and analyses run in the policy's arena and give the same "
          "bits for any thread count",
          "[execution]") {
  std::mt19937 rng(7);
  const index_t n = 2000, p = 30, k = 37;
  auto A = std::make_shared<Observer>(random_matrix(rng, n, n, 10, 0.8));
  auto B = std::make_shared<CsrMatrix<double>>(random_matrix(rng, n, p, 3, 1.0));
  auto C = std::make_shared<CsrMatrix<double>>(random_matrix(rng, 7, n, 20, 1.0));
  const Model<double> model(A, B, C);
  Batch<double> U(p, k);
  std::uniform_real_distribution<double> u(-1, 1);
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = u(rng);

  tbb::task_arena one(1);
  const Execution policies[] = {Execution::arena(one), Execution::threads(2),
                                Execution::threads(3)};
  std::vector<Batch<double>> Ys;
  for (const auto &exec : policies) {
    for (const auto method : {SolveMethod::picard, SolveMethod::sweep}) {
      A->most = 0;
      A->least = 1 << 30;
      SolveOptions o;
      o.method = method;
      o.picard.anderson_depth = method == SolveMethod::picard ? 3 : 0;
      o.exec = exec;
      EquilibriumSolver<double> solver(model, o);
      Batch<double> X, Y;
      REQUIRE(solver.predict(U, X, Y).ok());
      if (method == SolveMethod::picard) {
        CHECK(A->most == exec.max_concurrency());
        CHECK(A->least == exec.max_concurrency());
      }
      Ys.push_back(std::move(Y));
    }
  }
  for (std::size_t i = 2; i < Ys.size(); ++i)
    CHECK(same_bits(Ys[i], Ys[i % 2]));

  std::vector<PerronBound> bounds;
  for (const auto &exec : policies) {
    PerronOptions o;
    o.exec = exec;
    A->most = 0;
    bounds.push_back(analyse_well_posedness<double>(*A, o).pf);
    CHECK(A->most == exec.max_concurrency()); // materialised in the arena
  }
  for (const auto &b : bounds) {
    CHECK(b.lower == bounds[0].lower);
    CHECK(b.upper == bounds[0].upper);
  }

  std::vector<std::vector<double>> rows;
  for (const auto &exec : policies) {
    SensitivityOptions o;
    o.exec = exec;
    o.method = SensitivityMethod::iterative;
    const SensitivityOperator<double> S(model, o);
    rows.push_back(S.rows_dense());
  }
  CHECK(rows[1] == rows[0]);
  CHECK(rows[2] == rows[0]);
}

TEST_CASE("Execution: an arena of N threads runs the whole call on at most N threads",
          "[execution]") {
  std::mt19937 rng(3);
  const index_t n = 1500, p = 20;
  auto A = std::make_shared<ThreadRecorder>(random_matrix(rng, n, n, 8, 0.8));
  auto B = std::make_shared<CsrMatrix<double>>(random_matrix(rng, n, p, 3, 1.0));
  auto C = std::make_shared<CsrMatrix<double>>(random_matrix(rng, 5, n, 10, 1.0));
  const Model<double> model(A, B, C);
  Batch<double> U(p, 24);
  std::uniform_real_distribution<double> u(-1, 1);
  for (index_t j = 0; j < U.cols(); ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = u(rng);

  std::vector<Batch<double>> Ys;
  for (const int threads : {1, 2, 3}) {
    tbb::task_arena arena(threads);
    for (const Execution exec : {Execution::threads(threads), Execution::arena(arena)}) {
      A->clear();
      SolveOptions o;
      o.method = SolveMethod::picard;
      o.exec = exec;
      EquilibriumSolver<double> solver(model, o);
      Batch<double> X, Y;
      REQUIRE(solver.predict(U, X, Y).ok());
      CHECK(A->threads_seen() >= 1);
      CHECK(A->threads_seen() <= static_cast<std::size_t>(threads));
      Ys.push_back(std::move(Y));
    }
  }
  // Execution::reference: one thread.
  A->clear();
  SolveOptions o;
  o.exec = Execution::reference;
  o.method = SolveMethod::picard;
  EquilibriumSolver<double> solver(model, o);
  Batch<double> X, Y;
  REQUIRE(solver.predict(U, X, Y).ok());
  CHECK(A->threads_seen() == 1);
  // The same bits whatever the thread count.
  for (const auto &y : Ys)
    CHECK(same_bits(y, Ys[0]));
}

TEST_CASE("Execution: the bound analyzer and certification run in BoundOptions::exec",
          "[execution][bounds]") {
  std::mt19937 rng(11);
  const index_t n = 400, p = 6, q = 3;
  // A with cycles: the analyzer's set-up iterates a certificate vector.
  auto A = std::make_shared<Observer>(random_matrix(rng, n, n, 6, 0.5));
  auto B = std::make_shared<CsrMatrix<double>>(random_matrix(rng, n, p, 2, 1.0));
  auto C = std::make_shared<CsrMatrix<double>>(random_matrix(rng, q, n, 20, 1.0));
  const Model<double> model(A, B, C);
#if defined(__SANITIZE_ADDRESS__)
  const index_t inputs = 8; // sanitizer builds (10-20x slower): fewer inputs
#else
  const index_t inputs = 32;
#endif
  Batch<double> U(p, inputs);
  std::uniform_real_distribution<double> u(-1, 1);
  for (index_t j = 0; j < U.cols(); ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = u(rng);
  // Labels: the model's own predictions, so every input is a candidate.
  Batch<double> X, Y;
  REQUIRE(EquilibriumSolver<double>(model).predict(U, X, Y).ok());
  std::vector<int> labels(U.cols());
  for (index_t j = 0; j < U.cols(); ++j)
    for (index_t k = 1; k < q; ++k)
      if (Y(k, j) > Y(labels[j], j))
        labels[j] = int(k);
  const std::vector<double> eps{1e-4, 1e-2};

  std::vector<CertifiedAccuracy> results;
  for (const Execution exec :
       {Execution::threads(1), Execution::threads(2), Execution::reference}) {
    A->most = 0;
    A->least = 1 << 30;
    A->calls = 0;
    CertifyOptions options;
    options.bounds.exec = exec;
    const BoundAnalyzer<double> analyzer(model, options.bounds);
    REQUIRE(analyzer.certified_well_posed());
    CHECK(A->most <= exec.max_concurrency());
    results.push_back(certify_dataset<double>(analyzer, U, labels, eps, true, options));
    CHECK(A->calls > 0);
    CHECK(A->most <= exec.max_concurrency());
  }
  CHECK(results[0].correct == U.cols());
  for (const auto &r : results) {
    CHECK(r.certified == results[0].certified);
    for (index_t j = 0; j < U.cols(); ++j)
      CHECK(r.per_input[j].radius == results[0].per_input[j].radius);
  }
}
