// Builds a 3-state model with the installed tacit, solves it and checks the
// answer against the closed form of a feed-forward chain; checks that the
// headers and the library agree on the version.
#include <tacit/tacit.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

int main() {
  using namespace tacit;
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
#ifdef CONSUMER_UMBRELLA
  // A symbol of an optional component: the umbrella links them all.
  if (colormap(0.0).r == colormap(1.0).r && colormap(0.0).g == colormap(1.0).g)
    return 1;
#endif
  return report.ok() && std::abs(Y(0, 0) - expected) < 1e-12 ? 0 : 1;
}
