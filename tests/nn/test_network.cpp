// NetworkBuilder and resnet20 against an independent reference forward pass
// written with plain loops (convolution, batch norm, ReLU, add, pooling,
// dense) in double (network_test_util.hpp); structured solves against CSR
// sweeps of the same matrices; well-posedness from the structure.
#include <catch2/catch.hpp>

#include <tacit/io/io.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/analysis/wellposed.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>

#include "io_test_util.hpp"
#include "network_test_util.hpp"

using namespace tacit;
using namespace tacit_test;

using namespace tacit_test::network;

TEST_CASE("NetworkBuilder: tiny CNN (conv, BN, pooling, dense) against the reference",
          "[network]") {
  std::mt19937 rng(5);
  const TensorShape in{2, 8, 8};
  const ConvSpec c1 = random_conv(rng, in, 3, 3, 1, true);
  const ConvSpec c2 = random_conv(rng, c1.g.output(), 4, 3, 1, true);
  const Vec w = random_vec(rng, 7 * 16, 0.5), b = random_vec(rng, 7, 0.1);
  const Activation relu{ActivationKind::relu}, leaky{ActivationKind::leaky_relu, 0.1};
  auto build = [&](auto tag) {
    using T = decltype(tag);
    NetworkBuilder<T> net;
    auto x = net.input(in);
    x = net.conv2d(x, c1.g, cast<T>(c1.w), cast<T>(c1.b));
    x = net.batch_norm(x, cast<T>(c1.bn.gamma), cast<T>(c1.bn.beta), cast<T>(c1.bn.mean),
                       cast<T>(c1.bn.var), 1e-5);
    x = net.activation(x, relu, "a1");
    x = net.conv2d(x, c2.g, cast<T>(c2.w), cast<T>(c2.b));
    x = net.activation(x, leaky, "a2");
    x = net.avg_pool(x, 2, 2, 2, 2);
    REQUIRE(net.shape(x) == TensorShape{4, 4, 4});
    x = net.global_avg_pool(net.avg_pool(x, 2, 2, 2, 2));
    REQUIRE(net.shape(x) == TensorShape{4, 1, 1});
    x = net.flatten(x);
    // dense on 4 features
    return net.build(
        net.dense(x, 7, cast<T>(Vec(w.begin(), w.begin() + 28)), cast<T>(b)));
  };
  const Model<double> model = build(double{});
  CHECK(model.states() == 3 * 64 + 4 * 64);
  REQUIRE(model.blocks().size() == 2);
  CHECK(model.blocks()[0].name == "a1");
  CHECK(model.blocks()[1].activation == leaky);
  CHECK(model.A().kind() == "block");
  CHECK(model.C().kind() == "block");

  const auto inputs = random_inputs(11, in.size(), 3);
  std::vector<Vec> ref;
  for (const auto &u : inputs) {
    Ref r = ref_relu(ref_bn(ref_conv(Ref{in, u}, c1.g, c1.w, c1.b), c1.bn.gamma,
                            c1.bn.beta, c1.bn.mean, c1.bn.var, 1e-5));
    r = ref_conv(r, c2.g, c2.w, c2.b);
    for (auto &v : r.v)
      v = v >= 0 ? v : 0.1 * v;
    r = ref_global_pool(ref_avg_pool2(ref_avg_pool2(r)));
    ref.push_back(ref_dense(r, 7, Vec(w.begin(), w.begin() + 28), b).v);
  }
  EquilibriumSolver<double> solver(model);
  Batch<double> X, Y;
  const auto report = solver.predict(to_batch<double>(inputs, in.size()), X, Y);
  REQUIRE(report.ok());
  CHECK(report.method == SolveMethod::sweep);
  CHECK(report.message.find("block sweep") != std::string::npos);
  CHECK(max_rel_diff(Y, ref) < 1e-12);

  const Model<float> mf = build(float{});
  EquilibriumSolver<float> sf(mf);
  Batch<float> Xf, Yf;
  REQUIRE(sf.predict(to_batch<float>(inputs, in.size()), Xf, Yf).ok());
  for (index_t j = 0; j < Y.cols(); ++j)
    for (index_t i = 0; i < Y.rows(); ++i)
      CHECK(std::abs(double(Yf(i, j)) - Y(i, j)) < 1e-4 * (1 + std::abs(Y(i, j))));
}

TEST_CASE("NetworkBuilder: residual MLP with batch norm after an add", "[network]") {
  std::mt19937 rng(9);
  const index_t d = 12;
  const Vec w1 = random_vec(rng, d * d, 0.4), b1 = random_vec(rng, d, 0.1);
  const Vec w2 = random_vec(rng, d * d, 0.4), b2 = random_vec(rng, d, 0.1);
  const Vec w3 = random_vec(rng, 3 * d, 0.4), b3 = random_vec(rng, 3, 0.1);
  const BnParams bn = random_bn(rng, d);
  NetworkBuilder<double> net;
  const Activation tanh_act{ActivationKind::tanh}, relu{ActivationKind::relu};
  const auto u = net.input({d, 1, 1});
  const auto h1 = net.activation(net.dense(u, d, w1, b1), tanh_act, "h1");
  const auto s = net.add(net.dense(h1, d, w2, b2), u); // skip from the input
  const auto n = net.batch_norm(net.add(s, h1), bn.gamma, bn.beta, bn.mean, bn.var, 1e-3);
  const auto h2 = net.activation(n, relu, "h2");
  const auto out = net.add(net.dense(h2, 3, w3, b3), net.dense(u, 3, w3, b3)); // D != 0
  const auto model = net.build(net.identity(out));
  REQUIRE(model.D() != nullptr);

  const auto inputs = random_inputs(3, d, 4);
  std::vector<Vec> ref;
  for (const auto &x : inputs) {
    const Ref in{{d, 1, 1}, x};
    const Ref a1 = [&] {
      Ref r = ref_dense(in, d, w1, b1);
      for (auto &v : r.v)
        v = std::tanh(v);
      return r;
    }();
    Ref t = ref_add(ref_add(ref_dense(a1, d, w2, b2), in), a1);
    t = ref_relu(ref_bn(t, bn.gamma, bn.beta, bn.mean, bn.var, 1e-3));
    ref.push_back(ref_add(ref_dense(t, 3, w3, b3), ref_dense(in, 3, w3, b3)).v);
  }
  EquilibriumSolver<double> solver(model);
  Batch<double> X, Y;
  REQUIRE(solver.predict(to_batch<double>(inputs, d), X, Y).ok());
  CHECK(max_rel_diff(Y, ref) < 1e-12);
}

TEST_CASE("NetworkBuilder: mini ResNet, options A and B, against the reference and CSR",
          "[network]") {
  for (const bool option_b : {false, true}) {
    CAPTURE(option_b);
    const MiniResNet net(option_b, option_b ? 31 : 30);
    const Model<double> model = net.build<double>();
    CHECK(model.states() == 4 * 64 + 2 * (4 * 64 + 8 * 16 + 16 * 4));
    const auto *A = dynamic_cast<const BlockOperator<double> *>(&model.A());
    REQUIRE(A);
    CHECK(A->strictly_block_lower_triangular());

    const auto inputs = random_inputs(option_b ? 8 : 7, net.input.size(), 5);
    std::vector<Vec> ref;
    for (const auto &u : inputs)
      ref.push_back(net.reference(u));
    const Batch<double> U = to_batch<double>(inputs, net.input.size());
    EquilibriumSolver<double> solver(model);
    CHECK(solver.method() == SolveMethod::sweep);
    Batch<double> X, Y;
    const auto report = solver.predict(U, X, Y);
    REQUIRE(report.ok());
    CHECK(report.residual == 0);
    CHECK(max_rel_diff(Y, ref) < 1e-12);

    // The same matrices as CSR, through the CSR sweep.
    const Model<double> csr = csr_copy(model);
    EquilibriumSolver<double> csr_solver(csr);
    Batch<double> Xc, Yc;
    REQUIRE(csr_solver.predict(U, Xc, Yc).ok());
    for (index_t j = 0; j < X.cols(); ++j)
      for (index_t i = 0; i < X.rows(); ++i)
        REQUIRE(std::abs(X(i, j) - Xc(i, j)) <= 1e-12 * (1 + std::abs(X(i, j))));

    // Well-posedness from the structure: exactly 0, the norms of the CSR.
    const auto wp = analyse_well_posedness(model.A());
    CHECK(wp.pf.lower == 0);
    CHECK(wp.pf.upper == 0);
    CHECK(wp.pf.certified());
    CHECK(wp.nilpotent);
    CHECK(wp.n == model.states());
    const auto wc = analyse_well_posedness(csr.A());
    CHECK(wp.norm_inf == Approx(wc.norm_inf).epsilon(1e-12));
    CHECK(wp.norm_1 == Approx(wc.norm_1).epsilon(1e-12));
    CHECK(wp.nnz == csr.A().nnz());

    // Repeated solves reuse the workspace and give the same bits; a batch
    // of one column gives the same values as inside the batch.
    Batch<double> X2, Y2;
    solver.predict(U, X2, Y2);
    CHECK(std::memcmp(Y.storage().data(), Y2.storage().data(), Y.bytes()) == 0);
    // A NaN in one input column is reported for that column only, although
    // the fused ReLU stores would map it to 0.
    Batch<double> Un = U, Xn, Yn;
    Un(3, 1) = std::numeric_limits<double>::quiet_NaN();
    const auto bad = solver.predict(Un, Xn, Yn);
    CHECK(bad.status == SolveStatus::non_finite);
    for (index_t j = 0; j < Un.cols(); ++j)
      CHECK((bad.column_status[j] == SolveStatus::non_finite) == (j == 1));
    for (index_t i = 0; i < Y.rows(); ++i)
      CHECK(Yn(i, 0) == Y(i, 0));
    Batch<double> U1(U.rows(), 1), X1, Y1;
    for (index_t i = 0; i < U.rows(); ++i)
      U1(i, 0) = U(i, 2);
    solver.predict(U1, X1, Y1);
    for (index_t i = 0; i < Y.rows(); ++i)
      CHECK(Y1(i, 0) == Approx(Y(i, 2)).epsilon(1e-13));
  }
}

TEST_CASE("NetworkBuilder: a cyclic diagonal block is solved by Picard on the block",
          "[network]") {
  // x1 = relu(W u), x2 = relu(0.3 P x2 + x1) with P a cyclic shift: a
  // diagonal block in the block operator.
  const index_t d = 6;
  std::vector<double> w(d * d);
  std::mt19937 rng(4);
  for (auto &v : w)
    v = std::uniform_real_distribution<double>(-1, 1)(rng);
  std::vector<Triplet<double>> shift;
  for (index_t i = 0; i < d; ++i)
    shift.push_back({i, (i + 1) % d, 0.3});
  auto P =
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(d, d, shift));
  auto Id = std::make_shared<IdentityOperator<double>>(d);
  auto W = std::make_shared<DenseOperator<double>>(d, d, w);
  std::vector<index_t> sizes{d, d};
  auto A = std::make_shared<BlockOperator<double>>(
      sizes, sizes, std::vector<BlockEntry<double>>{{1, 0, Id}, {1, 1, P}});
  auto B = std::make_shared<BlockOperator<double>>(
      sizes, std::vector<index_t>{d}, std::vector<BlockEntry<double>>{{0, 0, W}});
  auto C = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(2 * d));
  const Model<double> model(A, B, C);
  const auto wp = analyse_well_posedness(model.A());
  CHECK(wp.pf.upper == Approx(0.3).epsilon(1e-6));
  CHECK(wp.pf.certified());
  CHECK_FALSE(wp.nilpotent);

  EquilibriumSolver<double> solver(model);
  CHECK(solver.method() == SolveMethod::sweep);
  const Batch<double> U = to_batch<double>(random_inputs(2, d, 3), d);
  Batch<double> X;
  const auto r = solver.solve(U, X);
  REQUIRE(r.ok());
  CHECK(r.iterations > 1);
  const Model<double> csr = csr_copy(model);
  SolveOptions picard;
  picard.method = SolveMethod::picard;
  EquilibriumSolver<double> ref(csr, picard);
  Batch<double> Xr;
  REQUIRE(ref.solve(U, Xr).ok());
  for (index_t j = 0; j < X.cols(); ++j)
    for (index_t i = 0; i < X.rows(); ++i)
      CHECK(X(i, j) == Approx(Xr(i, j)).margin(1e-9));
}

TEST_CASE("NetworkBuilder: errors name the node", "[network]") {
  NetworkBuilder<double> net;
  CHECK_THROWS_AS(net.build(0), InvalidArgument);
  const auto u = net.input({2, 4, 4});
  CHECK_THROWS_WITH(net.input({1, 1, 1}), Catch::Contains("already has an input"));
  Conv2dGeometry g = geom({3, 4, 4}, 2, 3, 1, 1);
  CHECK_THROWS_WITH(net.conv2d(u, g, Vec(2 * 3 * 9)),
                    Catch::Contains("node 1 (conv2d)") && Catch::Contains("3 x 4 x 4") &&
                        Catch::Contains("2 x 4 x 4"));
  g.input = {2, 4, 4};
  CHECK_THROWS_WITH(net.conv2d(u, g, Vec(5)), Catch::Contains("5 weights, expected 36"));
  const auto c = net.conv2d(u, g, Vec(36, 0.1));
  CHECK_THROWS_WITH(net.batch_norm(c, Vec(3), Vec(2), Vec(2), Vec(2), 1e-5),
                    Catch::Contains("gamma has 3 values") && Catch::Contains("(conv2d)"));
  CHECK_THROWS_WITH(net.batch_norm(c, Vec(2, 1), Vec(2), Vec(2), Vec{1, -1}, 1e-5),
                    Catch::Contains("var + epsilon of channel 1"));
  CHECK_THROWS_WITH(net.dense(c, 3, Vec(3 * 32)), Catch::Contains("flat input"));
  const auto f = net.flatten(c);
  CHECK(net.shape(f) == TensorShape{32, 1, 1});
  CHECK_THROWS_WITH(net.dense(f, 3, Vec(10)),
                    Catch::Contains("expected out x in = 3 x 32"));
  CHECK_THROWS_WITH(net.add(f, u),
                    Catch::Contains("differ in shape") && Catch::Contains("2 x 4 x 4"));
  CHECK_THROWS_WITH(net.add(c, 99), Catch::Contains("unknown node 99"));
  const auto a = net.activation(c, {}, "x");
  CHECK_THROWS_WITH(net.activation(a, {}, "x"), Catch::Contains("named 'x'"));
  CHECK_THROWS_WITH(net.conv2d(u, g, Vec(36, std::nan(""))),
                    Catch::Contains("not finite"));
}

TEST_CASE("resnet20: shape, structure, certification, float vs double", "[network]") {
  const Model<double> md = resnet20<double>();
  CHECK(md.states() == 188416);
  CHECK(md.inputs() == 3072);
  CHECK(md.outputs() == 10);
  CHECK(md.blocks().size() == 19);
  const auto *A = dynamic_cast<const BlockOperator<double> *>(&md.A());
  REQUIRE(A);
  CHECK(A->strictly_block_lower_triangular());
  CHECK(md.A().bytes() < 3000000); // the weights (270k doubles), not 37M nonzeros
  const auto wp = analyse_well_posedness(md.A());
  CHECK(wp.pf.upper == 0);
  CHECK(wp.pf.certified());

  const Model<float> mf = resnet20<float>();
  const Batch<double> Ud = resnet20_inputs<double>(2);
  const Batch<float> Uf = resnet20_inputs<float>(2);
  EquilibriumSolver<double> sd(md);
  EquilibriumSolver<float> sf(mf);
  Batch<double> Xd, Yd;
  Batch<float> Xf, Yf;
  REQUIRE(sd.predict(Ud, Xd, Yd).ok());
  REQUIRE(sf.predict(Uf, Xf, Yf).ok());
  double scale = 0;
  for (index_t j = 0; j < 2; ++j)
    for (index_t i = 0; i < 10; ++i)
      scale = std::max(scale, std::abs(Yd(i, j)));
  CHECK(scale > 0.1); // activations neither vanish...
  CHECK(scale < 100); // ...nor explode
  for (index_t j = 0; j < 2; ++j)
    for (index_t i = 0; i < 10; ++i)
      CHECK(std::abs(double(Yf(i, j)) - Yd(i, j)) <= 1e-4 * scale);
  // Option B has the projection convolutions (more weights).
  const Model<float> mb = resnet20<float>(ResNetShortcut::option_b);
  CHECK(mb.states() == 188416);
  CHECK(mb.A().bytes() > mf.A().bytes());
}
