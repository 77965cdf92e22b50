// Optimisers against torch.optim (SGD with momentum, Nesterov and weight
// decay, Adam, AdamW; fixture tests/data/train/optimizers.json), schedules,
// state save/load.
#include <catch2/catch.hpp>

#include <tacit/core/error.hpp>
#include <tacit/train/optimizer.hpp>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

using namespace tacit;

TEST_CASE("optimizers: three steps equal torch.optim", "[train][optimizer][pytorch]") {
  std::ifstream in(std::string(TACIT_TEST_DATA_DIR) + "/train/optimizers.json");
  REQUIRE(in.good());
  const auto doc = nlohmann::json::parse(in);
  const auto p0 = doc.at("params").get<std::vector<double>>();
  const auto grads = doc.at("grads").get<std::vector<std::vector<double>>>();
  for (const auto &run : doc.at("runs")) {
    OptimizerOptions o;
    o.kind = parse_optimizer(run.at("optimizer").get<std::string>());
    o.lr = run.at("lr");
    o.momentum = run.at("momentum");
    o.nesterov = run.at("nesterov");
    o.weight_decay = run.at("weight_decay");
    if (run.contains("beta1")) {
      o.beta1 = run.at("beta1");
      o.beta2 = run.at("beta2");
      o.eps = run.at("eps");
    }
    // Split into two tensors to exercise the flat offsets.
    std::vector<double> a(p0.begin(), p0.begin() + 2), b(p0.begin() + 2, p0.end());
    const std::span<double> tensors[2] = {a, b};
    Optimizer<double> opt(o, 6);
    for (std::size_t s = 0; s < grads.size(); ++s) {
      opt.step(tensors, grads[s], o.lr);
      const auto want = run.at("after").at(s).get<std::vector<double>>();
      for (int i = 0; i < 6; ++i) {
        const double got = i < 2 ? a[i] : b[i - 2];
        INFO(run.at("optimizer").get<std::string>()
             << " step " << s + 1 << " value " << i);
        CHECK(std::abs(got - want[i]) <= 1e-14 * std::max(1.0, std::abs(want[i])));
      }
    }
  }
}

TEST_CASE("optimizers: state round trip continues with the same bits",
          "[train][optimizer]") {
  OptimizerOptions o;
  o.kind = OptimizerKind::adam;
  o.lr = 0.01;
  std::vector<float> p = {1, 2, 3}, q = p;
  const std::vector<float> g1 = {0.1f, -0.2f, 0.3f}, g2 = {0.5f, 0.1f, -0.4f};
  Optimizer<float> a(o, 3), b(o, 3);
  const std::span<float> tp[1] = {p}, tq[1] = {q};
  a.step(tp, g1, o.lr);
  b.step(tq, g1, o.lr);
  Optimizer<float> c(o, 3);
  c.load_state(b.save_state());
  a.step(tp, g2, o.lr);
  c.step(tq, g2, o.lr);
  CHECK(p == q);
  Optimizer<double> wrong(o, 3);
  CHECK_THROWS_AS(wrong.load_state(b.save_state()), InvalidArgument);
  OptimizerOptions s;
  Optimizer<float> sgd(s, 3);
  CHECK_THROWS_AS(sgd.load_state(b.save_state()), InvalidArgument);
}

TEST_CASE("optimizers: bad options and schedules", "[train][optimizer]") {
  OptimizerOptions o;
  o.lr = -1;
  CHECK_THROWS_AS(Optimizer<double>(o, 1), InvalidArgument);
  o.lr = 0.1;
  o.nesterov = true;
  CHECK_THROWS_AS(Optimizer<double>(o, 1), InvalidArgument);
  CHECK_THROWS_AS(parse_optimizer("rmsprop"), InvalidArgument);
  const Schedule st = Schedule::parse("step:3:0.5");
  CHECK(st.rate(0.1, 0, 10) == 0.1);
  CHECK(st.rate(0.1, 3, 10) == Approx(0.05));
  CHECK(st.rate(0.1, 7, 10) == Approx(0.025));
  const Schedule co = Schedule::parse("cosine");
  CHECK(co.rate(0.1, 0, 10) == Approx(0.1));
  CHECK(co.rate(0.1, 5, 10) == Approx(0.05));
  CHECK(Schedule::parse("constant").rate(0.3, 9, 10) == 0.3);
  CHECK_THROWS_AS(Schedule::parse("step:0"), InvalidArgument);
  CHECK_THROWS_AS(Schedule::parse("linear"), InvalidArgument);
}
