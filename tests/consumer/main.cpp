// Builds a 3-state model with the installed tacit, solves it and checks the
// answer against the closed form of a feed-forward chain; checks that the
// headers and the library agree on the version, and that an operator type
// defined here is understood by the library (its block structure is found
// and swept).
#include <tacit/tacit.hpp>
#ifdef CONSUMER_MPI
#include <tacit/mpi/mpi.hpp>
#endif

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

namespace {

/// A = [0 0; 2 0] as two 1x1 blocks, the (1, 0) block a CSR matrix.
class Chain final : public tacit::OperatorBase<Chain, double>,
                    public tacit::BlockStructured<double> {
public:
  static constexpr std::string_view kind_name = "consumer_chain";
  Chain()
      : OperatorBase<Chain, double>(2, 2),
        blocks_({1, 1}, {1, 1},
                {{1, 0,
                  std::make_shared<tacit::CsrMatrix<double>>(
                      tacit::CsrMatrix<double>::identity(1, 2.0))}}) {}
  const tacit::BlockStructure<double> &block_structure() const noexcept override {
    return blocks_;
  }

private:
  friend OperatorBase<Chain, double>;
  void product(tacit::Mode mode, double alpha, tacit::ConstMatrixView<double> x,
               double beta, tacit::MatrixView<double> y, tacit::Execution) const {
    const bool tr = tacit::is_transposed(mode);
    for (tacit::index_t c = 0; c < y.cols; ++c) {
      const double y0 = beta == 0 ? 0 : beta * y(0, c),
                   y1 = beta == 0 ? 0 : beta * y(1, c);
      y(0, c) = y0 + (tr ? alpha * 2 * x(1, c) : 0);
      y(1, c) = y1 + (tr ? 0 : alpha * 2 * x(0, c));
    }
  }
  tacit::BlockStructure<double> blocks_;
};

} // namespace

int main(int argc, char **argv) {
  using namespace tacit;
#ifdef CONSUMER_MPI
  mpi::Environment env(argc, argv);
#else
  (void)argc;
  (void)argv;
#endif
  if (std::strcmp(version, runtime_version()) != 0) {
    std::printf("headers %s, library %s\n", version, runtime_version());
    return 1;
  }
  // x0 = relu(u), x1 = relu(2 x0 - 1), y = x1 + 0.5 u
  std::vector<Triplet<double>> a = {{1, 0, 2.0}};
  auto A = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(2, 2, a));
  std::vector<Triplet<double>> b = {{0, 0, 1.0}};
  auto B = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(2, 1, b));
  std::vector<Triplet<double>> c = {{0, 1, 1.0}};
  auto C = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(1, 2, c));
  std::vector<Triplet<double>> d = {{0, 0, 0.5}};
  auto D = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(1, 1, d));
  Model<double> model(A, B, C, D, {0.0, -1.0}, {0.0});
  EquilibriumSolver<double> solver(model);
  Batch<double> U(1, 1), X, Y;
  U(0, 0) = 3.0;
  const auto report = solver.predict(U, X, Y);
  const double expected = 5.0 + 1.5;
  std::printf("tacit %s (%s): method %s, status %s, y = %g (expected %g)\n",
              runtime_version(), runtime_components(), to_string(report.method).c_str(),
              to_string(report.status).c_str(), Y(0, 0), expected);
  // The same model with A of a type the library has never seen.
  Model<double> user(std::make_shared<Chain>(), B, C, D, {0.0, -1.0}, {0.0});
  EquilibriumSolver<double> user_solver(user);
  Batch<double> X2, Y2;
  const auto user_report = user_solver.predict(U, X2, Y2);
  std::printf("own operator type: %s, y = %g\n", user_solver.method_reason().c_str(),
              Y2(0, 0));
  if (!user_report.ok() || Y2(0, 0) != Y(0, 0) ||
      user_solver.method_reason().find("block sweep") == std::string::npos ||
      !capability<BlockStructured<double>>(user.A()))
    return 1;
#ifdef CONSUMER_UMBRELLA
  // A symbol of an optional component: the umbrella links them all.
  if (colormap(0.0).r == colormap(1.0).r && colormap(0.0).g == colormap(1.0).g)
    return 1;
#endif
#ifdef CONSUMER_MPI
  // The same model distributed over the ranks of the job.
  const auto dm = mpi::distribute_model(model);
  Batch<double> Yd;
  const auto dreport = mpi::distributed_predict(dm, U, Yd);
  std::printf("rank %d of %d: states [%lld, %lld), status %s\n", dm.rank, dm.ranks,
              static_cast<long long>(dm.own_begin()),
              static_cast<long long>(dm.own_end()), to_string(dreport.status).c_str());
  if (!dreport.ok() || (dm.rank == 0 && Yd(0, 0) != Y(0, 0)))
    return 1;
#endif
  return report.ok() && std::abs(Y(0, 0) - expected) < 1e-12 ? 0 : 1;
}
