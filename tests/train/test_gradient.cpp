// Gradients of the mean loss through the equilibrium against central finite
// differences: a CSR model with cycles (every activation) and a structured
// network (strided, padded and grouped convolutions, a kept batch norm, a
// residual, pooling, dense layers); losses; determinism across threads.
#include <catch2/catch.hpp>

#include <tacit/train/gradient.hpp>

#include <tbb/global_control.h>

#include <tacit/nn/onnx.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include <cmath>
#include <type_traits>
#include <vector>

#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

/// Every parameter's gradient against a central difference.
void check_all(TrainableModel<double> &tm, const Batch<double> &U,
               const Targets<double> &targets, const GradientOptions &o,
               double tol = 1e-6) {
  std::vector<double> grad(static_cast<std::size_t>(tm.size()));
  {
    GradientEngine<double> e(tm, o);
    const auto r = e.compute(U, targets, grad);
    REQUIRE(r.ok());
  }
  const auto &tensors = tm.tensors();
  for (const auto &t : tensors)
    for (index_t i = 0; i < t.size; ++i) {
      const index_t at = t.offset + i;
      const double fd = central_difference(tm, at, 1e-6, U, targets, o);
      INFO(t.name << "[" << i << "]: gradient " << grad[at] << ", difference " << fd);
      CHECK(std::abs(grad[at] - fd) <= tol * std::max(1.0, std::abs(fd)));
    }
}

} // namespace

TEST_CASE("gradient: CSR model with cycles, every activation, cross-entropy",
          "[train][gradient]") {
  const Model<double> m = cyclic_model<double>();
  TrainableModel<double> tm(m);
  // A values, B, C, D, five bias blocks, by.
  REQUIRE(tm.tensors().size() == 4 + 5 + 1);
  const Batch<double> U = inputs<double>(m.inputs(), 7, 11);
  const std::vector<int> labels = {0, 3, 1, 2, 2, 0, 1};
  Targets<double> t;
  t.labels = labels;
  for (const auto method : {AdjointMethod::automatic, AdjointMethod::klu}) {
    GradientOptions o = tight();
    o.adjoint.method = method;
    check_all(tm, U, t, o);
  }
}

TEST_CASE("gradient: CSR model with cycles, squared loss, Anderson adjoint",
          "[train][gradient]") {
  const Model<double> m = cyclic_model<double>(8);
  TrainableModel<double> tm(m);
  const Batch<double> U = inputs<double>(m.inputs(), 5, 12);
  const Batch<double> Yt = inputs<double>(m.outputs(), 5, 13);
  Targets<double> t;
  t.values = &Yt;
  GradientOptions o = tight(LossKind::squared);
  o.adjoint.picard.anderson_depth = 4;
  check_all(tm, U, t, o);
}

TEST_CASE("gradient: structured network (conv, groups, stride, batch norm, residual)",
          "[train][gradient]") {
  const Model<double> m = structured_model<double>();
  TrainableModel<double> tm(m);
  // The first block's bias is tied per channel (a convolution's rows).
  REQUIRE(tm.tensors()[tm.find("bx.a1")].size == 4);
  const Batch<double> U = inputs<double>(m.inputs(), 6, 21);
  const std::vector<int> labels = {0, 1, 2, 2, 1, 0};
  Targets<double> t;
  t.labels = labels;
  check_all(tm, U, t, tight());
}

TEST_CASE("gradient: float32 against float64 at the same parameters and inputs",
          "[train][gradient]") {
  // The float64 gradient is the one checked against finite differences
  // above; the float64 model holds exactly the float32 model's values.
  for (int which = 0; which < 2; ++which) {
    INFO((which == 0 ? "CSR model with cycles" : "structured network"));
    TrainableModel<float> tf(which == 0 ? cyclic_model<float>()
                                        : structured_model<float>());
    TrainableModel<double> td(which == 0 ? cyclic_model<double>()
                                         : structured_model<double>());
    REQUIRE(tf.size() == td.size());
    std::vector<float> pf(static_cast<std::size_t>(tf.size()));
    tf.read(pf);
    const std::vector<double> pd(pf.begin(), pf.end());
    td.write(pd);
    const index_t p = tf.model().inputs(), q = tf.model().outputs(), k = 9;
    const Batch<float> Uf = inputs<float>(p, k, 41);
    Batch<double> Ud(p, k);
    for (index_t j = 0; j < k; ++j)
      for (index_t i = 0; i < p; ++i)
        Ud(i, j) = Uf(i, j);
    std::vector<int> labels(static_cast<std::size_t>(k));
    for (index_t j = 0; j < k; ++j)
      labels[j] = static_cast<int>(j % q);
    Targets<float> t32;
    t32.labels = labels;
    Targets<double> t64;
    t64.labels = labels;
    std::vector<float> gf(pf.size());
    std::vector<double> gd(pd.size());
    GradientEngine<float> ef(tf);
    const auto rf = ef.compute(Uf, t32, gf);
    REQUIRE(rf.ok());
    GradientEngine<double> ed(td, tight());
    const auto rd = ed.compute(Ud, t64, gd);
    REQUIRE(rd.ok());
    CHECK(std::abs(rf.loss - rd.loss) <= 1e-5 * std::abs(rd.loss));
    for (const auto &tensor : td.tensors()) {
      double diff = 0, norm = 0;
      for (index_t i = tensor.offset; i < tensor.offset + tensor.size; ++i) {
        diff = std::max(diff, std::abs(double(gf[i]) - gd[i]));
        norm = std::max(norm, std::abs(gd[i]));
      }
      INFO(tensor.name << ": max difference " << diff << ", max |gradient| " << norm);
      CHECK(diff <= 1e-4 * norm);
      CHECK(norm > 0); // every tensor is reached by the loss
    }
  }
}

TEST_CASE("gradient: the same bits for 1 and N threads", "[train][gradient]") {
  for (int which = 0; which < 2; ++which) {
    const Model<float> m = which == 0 ? cyclic_model<float>() : structured_model<float>();
    TrainableModel<float> tm(m);
    const Batch<float> U = inputs<float>(m.inputs(), 70, 31);
    std::vector<int> labels(70);
    for (int i = 0; i < 70; ++i)
      labels[i] = i % static_cast<int>(m.outputs());
    Targets<float> t;
    t.labels = labels;
    auto run = [&](int threads) {
      tbb::global_control c(tbb::global_control::max_allowed_parallelism, threads);
      std::vector<float> g(static_cast<std::size_t>(tm.size()));
      GradientEngine<float> e(tm);
      REQUIRE(e.compute(U, t, g).ok());
      return g;
    };
    const auto one = run(1), many = run(4);
    CHECK(one == many);
  }
}

TEST_CASE("loss_and_gradient: cross-entropy and squared against formulas",
          "[train][gradient]") {
  Batch<double> Y(3, 2);
  Y(0, 0) = 1;
  Y(1, 0) = 2;
  Y(2, 0) = 0.5;
  Y(0, 1) = -1;
  Y(1, 1) = 0;
  Y(2, 1) = 3;
  const std::vector<int> labels = {1, 0};
  Targets<double> t;
  t.labels = labels;
  Batch<double> G;
  index_t correct = 0;
  const double L = loss_and_gradient(LossKind::cross_entropy, Y, t, G, &correct);
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.5)) - 2.0;
  const double l1 = std::log(std::exp(-1.0) + std::exp(0.0) + std::exp(3.0)) + 1.0;
  CHECK(L == Approx(l0 + l1).epsilon(1e-14));
  CHECK(correct == 1);
  CHECK(G(1, 0) ==
        Approx(std::exp(2.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(0.5)) - 1)
            .epsilon(1e-14));
  const std::vector<int> bad = {1, 3};
  t.labels = bad;
  CHECK_THROWS_AS(loss_and_gradient(LossKind::cross_entropy, Y, t, G), InvalidArgument);
  Batch<double> Yt(3, 2);
  Targets<double> s;
  s.values = &Yt;
  const double Ls = loss_and_gradient(LossKind::squared, Y, s, G);
  CHECK(Ls == Approx((1 + 4 + 0.25 + 1 + 0 + 9) / 3.0).epsilon(1e-14));
  CHECK(G(2, 1) == Approx(2.0 * 3 / 3.0));
}

TEST_CASE("loss_and_gradient: distillation against the formula and finite differences",
          "[train][gradient]") {
  Batch<double> Y(3, 2), Tch(3, 2);
  const double y[6] = {1, 2, 0.5, -1, 0, 3}, t[6] = {0.3, 2.5, -1, 2, 0.1, 1};
  for (index_t c = 0; c < 2; ++c)
    for (index_t j = 0; j < 3; ++j) {
      Y(j, c) = y[3 * c + j];
      Tch(j, c) = t[3 * c + j];
    }
  const std::vector<int> labels = {1, 2};
  const double w = 0.7, tau = 3;
  Targets<double> tg;
  tg.labels = labels;
  tg.teacher = &Tch;
  tg.teacher_weight = w;
  tg.temperature = tau;
  // The loss written out: softmaxes, cross-entropy and KL term by term.
  auto loss_of = [&](const Batch<double> &Z) {
    double total = 0;
    for (index_t c = 0; c < 2; ++c) {
      double se = 0, ss = 0, st = 0;
      for (index_t j = 0; j < 3; ++j) {
        se += std::exp(Z(j, c));
        ss += std::exp(Z(j, c) / tau);
        st += std::exp(Tch(j, c) / tau);
      }
      const double ce = -std::log(std::exp(Z(labels[c], c)) / se);
      double kl = 0;
      for (index_t j = 0; j < 3; ++j) {
        const double pt = std::exp(Tch(j, c) / tau) / st,
                     ps = std::exp(Z(j, c) / tau) / ss;
        kl += pt * std::log(pt / ps);
      }
      total += (1 - w) * ce + w * tau * tau * kl;
    }
    return total;
  };
  Batch<double> G;
  index_t correct = 0;
  const double L = loss_and_gradient(LossKind::cross_entropy, Y, tg, G, &correct);
  CHECK(L == Approx(loss_of(Y)).epsilon(1e-13));
  CHECK(correct == 2);
  for (index_t c = 0; c < 2; ++c)
    for (index_t j = 0; j < 3; ++j) {
      Batch<double> Yp = Y, Ym = Y;
      const double h = 1e-6;
      Yp(j, c) += h;
      Ym(j, c) -= h;
      CHECK(G(j, c) == Approx((loss_of(Yp) - loss_of(Ym)) / (2 * h)).epsilon(1e-7));
    }
  // Weight 0: the plain cross-entropy, bit for bit.
  Targets<double> plain;
  plain.labels = labels;
  Batch<double> G0, G1;
  const double L0 = loss_and_gradient(LossKind::cross_entropy, Y, plain, G0);
  tg.teacher_weight = 0;
  const double L1 = loss_and_gradient(LossKind::cross_entropy, Y, tg, G1);
  CHECK(L1 == L0);
  for (index_t c = 0; c < 2; ++c)
    for (index_t j = 0; j < 3; ++j)
      CHECK(G1(j, c) == G0(j, c));
  // Weight 1 and the teacher's own outputs: nothing to learn.
  tg.teacher = &Y;
  tg.teacher_weight = 1;
  CHECK(std::abs(loss_and_gradient(LossKind::cross_entropy, Y, tg, G1)) < 1e-14);
  for (index_t c = 0; c < 2; ++c)
    for (index_t j = 0; j < 3; ++j)
      CHECK(std::abs(G1(j, c)) < 1e-15);
  // Misuse: shapes, weight, temperature.
  Batch<double> wrong(2, 2);
  tg.teacher = &wrong;
  CHECK_THROWS_WITH(loss_and_gradient(LossKind::cross_entropy, Y, tg, G1),
                    Catch::Contains("teacher's outputs are 2 x 2"));
  tg.teacher = &Tch;
  tg.teacher_weight = 1.5;
  CHECK_THROWS_WITH(loss_and_gradient(LossKind::cross_entropy, Y, tg, G1),
                    Catch::Contains("weight 1.5"));
  tg.teacher_weight = 0.5;
  tg.temperature = 0;
  CHECK_THROWS_WITH(loss_and_gradient(LossKind::cross_entropy, Y, tg, G1),
                    Catch::Contains("temperature 0"));
}

// ------------------------------------------------------------------ PyTorch

namespace {

nlohmann::json read_json(const std::string &name) {
  std::ifstream in(std::string(TACIT_TEST_DATA_DIR) + "/train/" + name);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

/// Inputs (p x k) and labels of a fixture.
void fixture_batch(const nlohmann::json &doc, Batch<double> &U,
                   std::vector<int> &labels) {
  const auto &rows = doc.at("inputs");
  const index_t k = static_cast<index_t>(rows.size()),
                p = static_cast<index_t>(rows.at(0).size());
  U = Batch<double>(p, k);
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < p; ++i)
      U(i, j) = rows.at(j).at(i).get<double>();
  labels = doc.at("labels").get<std::vector<int>>();
}

/// tacit's gradient of each tensor against PyTorch's autograd (float64),
/// with the PyTorch parameter of each tacit tensor (in tacit's order): to
/// 1e-10 relative in float64; in float32 (the file's weights and the inputs
/// rounded to float) to 1e-4 relative.
template <class T>
void compare_with_pytorch(const std::string &onnx_file, const std::string &json_file,
                          const std::vector<std::string> &torch_names) {
  constexpr bool f64 = std::is_same_v<T, double>;
  const double tol = f64 ? 1e-10 : 1e-4, loss_tol = f64 ? 1e-12 : 1e-5;
  const auto doc = read_json(json_file);
  OnnxImportOptions io;
  io.fold_dense_products = false;
  const Model<T> m =
      import_onnx<T>(std::string(TACIT_TEST_DATA_DIR) + "/train/" + onnx_file, io);
  TrainableModel<T> tm(m);
  REQUIRE(tm.tensors().size() == torch_names.size());
  Batch<double> U64;
  std::vector<int> labels;
  fixture_batch(doc, U64, labels);
  Batch<T> U(U64.rows(), U64.cols());
  for (index_t j = 0; j < U.cols(); ++j)
    for (index_t i = 0; i < U.rows(); ++i)
      U(i, j) = static_cast<T>(U64(i, j));
  Targets<T> t;
  t.labels = labels;
  std::vector<T> grad(static_cast<std::size_t>(tm.size()));
  GradientEngine<T> e(tm, f64 ? tight() : GradientOptions{});
  const auto r = e.compute(U, t, grad);
  REQUIRE(r.ok());
  CHECK(std::abs(r.loss - doc.at("loss").get<double>()) <=
        loss_tol * std::abs(doc.at("loss").get<double>()));
  const auto g = tm.split(std::span<T>(grad));
  for (std::size_t k = 0; k < torch_names.size(); ++k) {
    const auto ref = doc.at("grads").at(torch_names[k]).get<std::vector<double>>();
    INFO(tm.tensors()[k].name << " <-> " << torch_names[k]);
    REQUIRE(ref.size() == g[k].size());
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      diff = std::max(diff, std::abs(double(g[k][i]) - ref[i]));
      norm = std::max(norm, std::abs(ref[i]));
    }
    INFO("max difference " << diff << ", max |gradient| " << norm);
    CHECK(diff <= tol * norm);
  }
}

} // namespace

TEMPLATE_TEST_CASE("gradient: MLP (ReLU, tanh, leaky ReLU) against PyTorch autograd",
                   "[train][gradient][pytorch]", double, float) {
  compare_with_pytorch<TestType>("mlp.onnx", "mlp.json",
                                 {"fc2.weight", "fc3.weight", "fc1.weight", "fc4.weight",
                                  "fc1.bias", "fc2.bias", "fc3.bias", "fc4.bias"});
}

TEMPLATE_TEST_CASE(
    "gradient: CNN with batch norm and a residual against PyTorch autograd",
    "[train][gradient][pytorch]", double, float) {
  // Batch norms are folded into the convolutions: the gradient is the folded
  // network's (PyTorch differentiates the same folded network).
  for (const char *file : {"cnn.onnx", "cnn_folded.onnx"})
    compare_with_pytorch<TestType>(file, "cnn.json",
                                   {"conv2.weight", "conv3.weight", "conv1.weight",
                                    "fc.weight", "conv1.bias", "conv2.bias", "conv3.bias",
                                    "fc.bias"});
}
