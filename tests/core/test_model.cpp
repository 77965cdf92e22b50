#include <catch2/catch.hpp>
#include <tacit/core/model.hpp>

#include <Eigen/Dense>
#include <cmath>
#include <random>

using namespace tacit;

namespace {
template <class T> OperatorPtr<T> dense_op(index_t r, index_t c, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> a(static_cast<std::size_t>(r * c));
  for (auto &v : a) v = static_cast<T>(u(rng));
  return std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_dense(r, c, a));
}
} // namespace

TEST_CASE("Activations evaluate and parse", "[model]") {
  Activation relu{}, leaky{ActivationKind::leaky_relu, 0.1}, th{ActivationKind::tanh},
      sg{ActivationKind::sigmoid}, id{ActivationKind::identity};
  CHECK(relu(-2.0) == 0.0);
  CHECK(relu(3.0) == 3.0);
  CHECK(leaky(-2.0) == Approx(-0.2));
  CHECK(th(0.5) == Approx(std::tanh(0.5)));
  CHECK(sg(0.0) == Approx(0.5));
  CHECK(id(-7.0f) == -7.0f);
  CHECK(relu.positively_homogeneous());
  CHECK(leaky.positively_homogeneous());
  CHECK(!th.positively_homogeneous());
  CHECK(sg.lipschitz() == 0.25);
  for (const auto &a : {relu, leaky, th, sg, id}) CHECK(Activation::parse(a.name()).kind == a.kind);
  CHECK_THROWS_WITH(Activation::parse("softplus"), Catch::Contains("softplus"));
}

TEST_CASE("Model validates dimensions, blocks and values", "[model]") {
  auto A = dense_op<double>(4, 4, 1), B = dense_op<double>(4, 3, 2), C = dense_op<double>(2, 4, 3);
  CHECK_NOTHROW(Model<double>(A, B, C));
  CHECK_THROWS_WITH(Model<double>(dense_op<double>(4, 5, 1), B, C), Catch::Contains("square"));
  CHECK_THROWS_WITH(Model<double>(A, dense_op<double>(5, 3, 1), C), Catch::Contains("B must have"));
  CHECK_THROWS_WITH(Model<double>(A, B, dense_op<double>(2, 3, 1)), Catch::Contains("C must have"));
  CHECK_THROWS_WITH(Model<double>(A, B, C, dense_op<double>(3, 3, 1)), Catch::Contains("D must be"));
  CHECK_THROWS_WITH(Model<double>(A, B, C, nullptr, {1.0, 2.0}), Catch::Contains("state bias"));
  CHECK_THROWS_WITH(Model<double>(A, B, C, nullptr, {}, {}, {{"a", 0, 3, {}}}),
                    Catch::Contains("cover 3"));
  CHECK_THROWS_WITH(Model<double>(A, B, C, nullptr, {}, {}, {{"a", 0, 2, {}}, {"b", 3, 2, {}}}),
                    Catch::Contains("'b'"));
  std::vector<Triplet<double>> t = {{0, 0, 1.0}, {1, 2, NAN}};
  auto Bnan = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(4, 3, t));
  CHECK_THROWS_WITH(Model<double>(A, Bnan, C), Catch::Contains("matrix B") && Catch::Contains("(2, 3)"));
  CHECK_THROWS_WITH(Model<double>(A, B, C, nullptr, {0, 0, INFINITY, 0}),
                    Catch::Contains("bx") && Catch::Contains("3"));
}

TEST_CASE("Model blocks expand to per-state activations", "[model]") {
  auto A = dense_op<float>(5, 5, 1), B = dense_op<float>(5, 2, 2), C = dense_op<float>(1, 5, 3);
  Model<float> m(A, B, C, nullptr, {}, {},
                 {{"h1", 0, 2, {ActivationKind::tanh}}, {"h2", 2, 3, {ActivationKind::relu}}});
  auto acts = m.activations();
  CHECK(acts[1].kind == ActivationKind::tanh);
  CHECK(acts[2].kind == ActivationKind::relu);
  CHECK(!m.positively_homogeneous());
  Model<float> d(A, B, C);
  CHECK(d.blocks().size() == 1);
  CHECK(d.positively_homogeneous());
}

TEST_CASE("Model output is C X + D U + c", "[model]") {
  auto A = dense_op<double>(6, 6, 1), B = dense_op<double>(6, 4, 2), C = dense_op<double>(3, 6, 3),
       D = dense_op<double>(3, 4, 4);
  Model<double> m(A, B, C, D, {}, {0.5, -1.0, 2.0});
  Batch<double> X(6, 37), U(4, 37), Y;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  for (index_t i = 0; i < 6; ++i)
    for (index_t j = 0; j < 37; ++j) X(i, j) = u(rng);
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 37; ++j) U(i, j) = u(rng);
  m.output(X, U, Y);
  REQUIRE(Y.rows() == 3);
  const auto cd = C->to_csr().to_dense(), dd = D->to_csr().to_dense();
  Eigen::Map<const Eigen::Matrix<double, 3, 6, Eigen::RowMajor>> Ce(cd.data());
  Eigen::Map<const Eigen::Matrix<double, 3, 4, Eigen::RowMajor>> De(dd.data());
  for (index_t j = 0; j < 37; ++j) {
    Eigen::VectorXd x(6), uu(4);
    for (int i = 0; i < 6; ++i) x[i] = X(i, j);
    for (int i = 0; i < 4; ++i) uu[i] = U(i, j);
    Eigen::Vector3d ref = Ce * x + De * uu + Eigen::Vector3d(0.5, -1.0, 2.0);
    for (int i = 0; i < 3; ++i) CHECK(Y(i, j) == Approx(ref[i]).margin(1e-14));
  }
  auto mf = convert_model<float>(m);
  CHECK(mf.states() == 6);
  CHECK(mf.bias_y()[2] == 2.0f);
}
