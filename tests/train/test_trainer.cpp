// The training loop: full-batch SGD steps equal PyTorch's (MLP, folded CNN);
// resuming from a checkpoint gives the same bits as not stopping; the same
// bits for 1 and N threads; the inf-norm projection keeps a model with
// cycles certified; bad data and lost well-posedness are clear errors.
#include <catch2/catch.hpp>

#include <tacit/nn/onnx.hpp>
#include <tacit/train/trainer.hpp>

#include <tbb/global_control.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

Dataset<double> fixture_data(const nlohmann::json &doc) {
  Dataset<double> d;
  const auto &rows = doc.at("inputs");
  const index_t k = static_cast<index_t>(rows.size()),
                p = static_cast<index_t>(rows.at(0).size());
  d.inputs = Batch<double>(p, k);
  for (index_t j = 0; j < k; ++j)
    for (index_t i = 0; i < p; ++i)
      d.inputs(i, j) = rows.at(j).at(i).get<double>();
  d.labels = doc.at("labels").get<std::vector<int>>();
  d.name = "fixture";
  return d;
}

void sgd_steps_like_pytorch(const std::string &onnx_file, const std::string &json_file,
                            const std::vector<std::string> &torch_names) {
  std::ifstream in(std::string(TACIT_TEST_DATA_DIR) + "/train/" + json_file);
  const auto doc = nlohmann::json::parse(in);
  OnnxImportOptions io;
  io.fold_dense_products = false;
  TrainableModel<double> tm(
      import_onnx<double>(std::string(TACIT_TEST_DATA_DIR) + "/train/" + onnx_file, io));
  const Dataset<double> data = fixture_data(doc);
  TrainOptions o;
  o.gradient = tight();
  o.optimizer.kind = OptimizerKind::sgd;
  o.optimizer.lr = doc.at("sgd").at("lr");
  o.optimizer.momentum = doc.at("sgd").at("momentum");
  o.optimizer.weight_decay = doc.at("sgd").at("weight_decay");
  o.batch_size = data.size();
  o.epochs = 2;
  o.shuffle_seed.reset();
  int checked = 0;
  o.on_epoch = [&](const EpochReport &r) {
    const auto &after = doc.at("sgd").at("after").at(r.epoch - 1);
    const auto v = std::as_const(tm).values();
    for (std::size_t k = 0; k < torch_names.size(); ++k) {
      const auto want = after.at(torch_names[k]).get<std::vector<double>>();
      REQUIRE(want.size() == v[k].size());
      double diff = 0, norm = 0;
      for (std::size_t i = 0; i < want.size(); ++i) {
        diff = std::max(diff, std::abs(v[k][i] - want[i]));
        norm = std::max(norm, std::abs(want[i]));
      }
      INFO(onnx_file << " epoch " << r.epoch << ": " << tm.tensors()[k].name << " <-> "
                     << torch_names[k] << ": max difference " << diff);
      CHECK(diff <= 1e-10 * norm);
    }
    ++checked;
  };
  const TrainReport rep = train(tm, data, nullptr, o);
  CHECK(checked == 2);
  CHECK(rep.constraint == Constraint::none);
}

Dataset<float> labelled_random(index_t p, index_t q, index_t m, std::uint64_t seed) {
  Dataset<float> d;
  d.inputs = inputs<float>(p, m, seed);
  for (index_t j = 0; j < m; ++j)
    d.labels.push_back(static_cast<int>((j * 7 + seed) % q));
  d.name = "random";
  return d;
}

} // namespace

TEST_CASE("train: two full-batch SGD steps (momentum, weight decay) equal PyTorch's",
          "[train][trainer][pytorch]") {
  sgd_steps_like_pytorch("mlp.onnx", "mlp.json",
                         {"fc2.weight", "fc3.weight", "fc1.weight", "fc4.weight",
                          "fc1.bias", "fc2.bias", "fc3.bias", "fc4.bias"});
  sgd_steps_like_pytorch("cnn_folded.onnx", "cnn.json",
                         {"conv2.weight", "conv3.weight", "conv1.weight", "fc.weight",
                          "conv1.bias", "conv2.bias", "conv3.bias", "fc.bias"});
}

TEST_CASE("train: resuming from a checkpoint gives the same bits as not stopping",
          "[train][trainer]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "tacit_test_checkpoints";
  fs::remove_all(dir);
  for (int which = 0; which < 2; ++which) {
    const Model<float> m = which == 0 ? cyclic_model<float>() : structured_model<float>();
    const Dataset<float> data = labelled_random(m.inputs(), m.outputs(), 100, 5);
    TrainOptions o;
    o.optimizer.kind = OptimizerKind::adam;
    o.optimizer.lr = 0.01;
    o.batch_size = 16;
    o.epochs = 3;
    o.shuffle_seed = 9;
    TrainableModel<float> straight(m);
    train(straight, data, nullptr, o);
    std::vector<float> a(static_cast<std::size_t>(straight.size()));
    straight.read(a);

    TrainableModel<float> first(m);
    TrainOptions o1 = o;
    o1.epochs = 1;
    o1.checkpoint_dir = dir / std::to_string(which);
    train(first, data, nullptr, o1);
    const auto cp = load_checkpoint<float>(o1.checkpoint_dir);
    REQUIRE(cp);
    CHECK(cp->epochs_done == 1);
    TrainableModel<float> resumed(m);
    resume(resumed, *cp, data, nullptr, o);
    std::vector<float> b(a.size());
    resumed.read(b);
    CHECK(a == b);
    // No temporary directories are left.
    for (const auto &e : fs::directory_iterator(o1.checkpoint_dir))
      CHECK(e.path().filename().string().rfind("epoch-", 0) == 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("train: the same bits for 1 and N threads", "[train][trainer]") {
  const Model<float> m = structured_model<float>();
  const Dataset<float> data = labelled_random(m.inputs(), m.outputs(), 80, 3);
  auto run = [&](int threads) {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, threads);
    TrainableModel<float> tm(m);
    TrainOptions o;
    o.optimizer.lr = 0.05;
    o.optimizer.momentum = 0.9;
    o.batch_size = 20;
    o.epochs = 2;
    train(tm, data, nullptr, o);
    std::vector<float> v(static_cast<std::size_t>(tm.size()));
    tm.read(v);
    return v;
  };
  CHECK(run(1) == run(3));
}

TEST_CASE(
    "train: a sample-major dataset holds the same values and trains to the same bits",
    "[train][trainer]") {
  const Model<float> m = structured_model<float>();
  Dataset<float> data = labelled_random(m.inputs(), m.outputs(), 70, 4);
  data.targets = inputs<float>(m.outputs(), 70, 9);
  const Dataset<float> sm = sample_major(data);
  REQUIRE(sm.inputs.slab_width() == 1);
  REQUIRE(sm.targets.slab_width() == 1);
  CHECK(sm.labels == data.labels);
  for (index_t j = 0; j < data.size(); ++j) {
    for (index_t i = 0; i < data.inputs.rows(); ++i)
      REQUIRE(sm.inputs(i, j) == data.inputs(i, j));
    for (index_t i = 0; i < data.targets.rows(); ++i)
      REQUIRE(sm.targets(i, j) == data.targets(i, j));
  }
  auto run = [&](const Dataset<float> &d) {
    TrainableModel<float> tm(m);
    TrainOptions o;
    o.optimizer.lr = 0.05;
    o.batch_size = 16;
    o.epochs = 2;
    o.shuffle_seed = 3;
    train(tm, d, nullptr, o);
    std::vector<float> v(static_cast<std::size_t>(tm.size()));
    tm.read(v);
    return v;
  };
  CHECK(run(data) == run(sm));
}

TEST_CASE("train: standardised inputs, their checkpoints, and the fold for raw inputs",
          "[train][trainer]") {
  namespace fs = std::filesystem;
  const double mean = 0.3, sd = 0.45;
  for (int which = 0; which < 2; ++which) {
    INFO((which == 0 ? "CSR with cycles" : "structured (padded convolution B)"));
    const Model<double> m =
        which == 0 ? cyclic_model<double>() : structured_model<double>();
    Dataset<double> data;
    data.inputs = inputs<double>(m.inputs(), 60, 6);
    for (index_t j = 0; j < 60; ++j)
      data.labels.push_back(static_cast<int>(j % m.outputs()));
    data.name = "random";
    Dataset<double> validation = data;
    // The same data standardised by hand.
    Dataset<double> manual = data;
    for (index_t j = 0; j < 60; ++j)
      for (index_t i = 0; i < m.inputs(); ++i)
        manual.inputs(i, j) = (data.inputs(i, j) - mean) / sd;
    TrainOptions o;
    o.optimizer.lr = 0.05;
    o.optimizer.momentum = 0.9;
    o.batch_size = 16;
    o.epochs = 2;
    TrainableModel<double> by_hand(m);
    const auto r_hand = train(by_hand, manual, &manual, o);
    TrainOptions os = o;
    os.input_mean = mean;
    os.input_std = sd;
    TrainableModel<double> standardised(m);
    const auto r_std = train(standardised, data, &validation, os);
    std::vector<double> a(static_cast<std::size_t>(by_hand.size())), b(a.size());
    by_hand.read(a);
    standardised.read(b);
    CHECK(a == b);
    CHECK(*r_hand.epochs.back().validation_loss == *r_std.epochs.back().validation_loss);

    // The folded model on raw inputs predicts what the trained one does on
    // standardised inputs (exactly in real arithmetic).
    const Model<double> folded =
        fold_input_standardization(standardised.model(), mean, sd);
    Batch<double> Y_raw, Y_std;
    REQUIRE(EquilibriumSolver<double>(folded).predict(data.inputs, Y_raw).ok());
    REQUIRE(EquilibriumSolver<double>(standardised.model())
                .predict(manual.inputs, Y_std)
                .ok());
    double worst = 0, scale = 0;
    for (index_t j = 0; j < 60; ++j)
      for (index_t i = 0; i < m.outputs(); ++i) {
        worst = std::max(worst, std::abs(Y_raw(i, j) - Y_std(i, j)));
        scale = std::max(scale, std::abs(Y_std(i, j)));
      }
    CHECK(worst <= 1e-12 * std::max(1.0, scale));
    CHECK(scale > 0);

    // Checkpoints record the standardisation; resuming needs the same one.
    const fs::path dir = fs::temp_directory_path() / "tacit_test_standardised";
    fs::remove_all(dir);
    TrainOptions o1 = os;
    o1.epochs = 1;
    o1.checkpoint_dir = dir;
    TrainableModel<double> first(m);
    train(first, data, nullptr, o1);
    const auto cp = load_checkpoint<double>(dir);
    REQUIRE(cp);
    CHECK(cp->input_mean == mean);
    CHECK(cp->input_std == sd);
    TrainableModel<double> resumed(m);
    resume(resumed, *cp, data, nullptr, os);
    std::vector<double> c(a.size());
    resumed.read(c);
    CHECK(c == b);
    TrainableModel<double> wrong(m);
    CHECK_THROWS_WITH(resume(wrong, *cp, data, nullptr, o),
                      Catch::Contains("standardised as (u - 0.3) / 0.45"));
    fs::remove_all(dir);
  }
  const Model<double> m = structured_model<double>();
  CHECK_THROWS_AS(fold_input_standardization(m, 0.0, 0.0), InvalidArgument);
  CHECK_THROWS_AS(fold_input_standardization(m, std::nan(""), 1.0), InvalidArgument);
  TrainOptions bad;
  bad.input_std = -1;
  TrainableModel<double> tm(m);
  Dataset<double> d;
  d.inputs = inputs<double>(m.inputs(), 4, 1);
  d.labels = {0, 1, 0, 1};
  CHECK_THROWS_WITH(train(tm, d, nullptr, bad), Catch::Contains("standard deviation"));
}

TEST_CASE("train: a model with cycles stays certified under the inf-norm projection",
          "[train][trainer]") {
  const Model<double> m = cyclic_model<double>(6);
  const Dataset<float> fdata = labelled_random(m.inputs(), m.outputs(), 60, 2);
  Dataset<double> data;
  data.inputs = Batch<double>(m.inputs(), 60);
  for (index_t j = 0; j < 60; ++j)
    for (index_t i = 0; i < m.inputs(); ++i)
      data.inputs(i, j) = fdata.inputs(i, j);
  data.labels = fdata.labels;
  TrainableModel<double> tm(m);
  TrainOptions o;
  o.optimizer.lr = 0.5; // large steps: the projection has work to do
  o.batch_size = 10;
  o.epochs = 3;
  o.kappa = 0.7;
  std::int64_t constrained = 0;
  o.on_epoch = [&](const EpochReport &r) {
    CHECK(r.certified);
    CHECK(r.lambda_upper < 1);
    CHECK(r.norm_inf <= 0.7 * (1 + 1e-12));
    constrained += r.constrained;
  };
  const auto rep = train(tm, data, nullptr, o);
  CHECK(rep.constraint == Constraint::inf_norm);
  CHECK(rep.epochs.size() == 3);
  CHECK(constrained > 0);
  CHECK(norm_inf(tm.model().A()) <= 0.7 * (1 + 1e-12));
}

TEST_CASE("train: bad data and lost well-posedness are errors naming where",
          "[train][trainer]") {
  const Model<double> m = cyclic_model<double>(6);
  Dataset<double> data;
  data.inputs = inputs<double>(m.inputs(), 10, 4);
  data.labels.assign(10, 1);
  data.name = "set.txt";
  TrainOptions o;
  o.batch_size = 5;
  {
    TrainableModel<double> tm(m);
    auto bad = data;
    bad.labels[3] = 9;
    try {
      train(tm, bad, nullptr, o);
      FAIL("no error");
    } catch (const InvalidArgument &e) {
      CHECK_THAT(e.what(), Catch::Contains("set.txt") && Catch::Contains("sample 4") &&
                               Catch::Contains("label 9"));
    }
    bad = data;
    bad.inputs(2, 6) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_WITH(train(tm, bad, nullptr, o), Catch::Contains("sample 7"));
  }
  {
    // No constraint and a huge rate: A leaves the well-posed region.
    TrainableModel<double> tm(m);
    std::vector<double> before(static_cast<std::size_t>(tm.size()));
    tm.read(before);
    TrainOptions wild = o;
    wild.constraint = Constraint::none;
    wild.optimizer.lr = 1e6;
    wild.epochs = 5;
    try {
      train(tm, data, nullptr, wild);
      FAIL("no error");
    } catch (const TrainingError &e) {
      CHECK(e.epoch() >= 1);
      CHECK_THAT(e.what(), Catch::Contains("epoch"));
    }
    std::vector<double> after(before.size());
    tm.read(after);
    for (double v : after)
      CHECK(std::isfinite(v));
  }
}

namespace {

/// The outputs of `m` for the inputs of `d` (a teacher's soft targets).
template <class T> Batch<T> outputs_of(const Model<T> &m, const Dataset<T> &d) {
  EquilibriumSolver<T> solver(m, default_solve_options<T>());
  Batch<T> Y;
  REQUIRE(solver.predict(d.inputs, Y).ok());
  return Y;
}

template <class T> std::vector<T> trained_values(TrainableModel<T> &tm) {
  std::vector<T> v(static_cast<std::size_t>(tm.size()));
  tm.read(v);
  return v;
}

} // namespace

TEST_CASE("train: distillation (weight 0 is plain training, a model's own outputs teach "
          "nothing, a student approaches its teacher, same bits for 1 and N threads)",
          "[train][trainer]") {
  const Model<double> student = structured_model<double>(4),
                      teacher = structured_model<double>(7);
  Dataset<double> data;
  data.inputs = inputs<double>(student.inputs(), 60, 5);
  for (index_t j = 0; j < 60; ++j)
    data.labels.push_back(static_cast<int>((j * 7 + 5) % student.outputs()));
  data.name = "random";
  data.teacher = outputs_of(teacher, data);
  TrainOptions o;
  o.gradient = tight();
  o.optimizer.lr = 0.05;
  o.batch_size = 20;
  o.epochs = 2;
  o.shuffle_seed = 3;
  SECTION("weight 0 reads no teacher: the same bits as without one") {
    Dataset<double> bare = data;
    bare.teacher = Batch<double>();
    TrainableModel<double> a(student), b(student);
    o.distillation.temperature = 4;
    train(a, data, nullptr, o);
    train(b, bare, nullptr, o);
    CHECK(trained_values(a) == trained_values(b));
  }
  SECTION("the student's own outputs with weight 1: zero gradient, nothing changes") {
    Dataset<double> self = data;
    self.teacher = outputs_of(student, data);
    o.batch_size = data.size(); // one step per epoch, from the same parameters
    o.epochs = 1;
    o.distillation = {1.0, 2.0};
    TrainableModel<double> tm(student);
    const auto before = trained_values(tm);
    train(tm, self, nullptr, o);
    const auto after = trained_values(tm);
    REQUIRE(before.size() == after.size());
    double moved = 0;
    for (std::size_t i = 0; i < before.size(); ++i)
      moved = std::max(moved, std::abs(after[i] - before[i]));
    CHECK(moved < 1e-14);
  }
  SECTION("a student trained on the soft targets alone approaches its teacher") {
    o.distillation = {1.0, 1.0};
    o.epochs = 30;
    std::vector<double> losses;
    o.on_epoch = [&](const EpochReport &r) { losses.push_back(r.train_loss); };
    TrainableModel<double> tm(student);
    train(tm, data, nullptr, o);
    REQUIRE(losses.size() == 30);
    CHECK(losses.back() < 0.5 * losses.front());
  }
  SECTION("the same bits for 1 and N threads") {
    o.distillation = {0.6, 3.0};
    auto run = [&](int threads) {
      tbb::global_control c(tbb::global_control::max_allowed_parallelism, threads);
      TrainableModel<double> tm(student);
      train(tm, data, nullptr, o);
      return trained_values(tm);
    };
    CHECK(run(1) == run(3));
  }
  SECTION("misuse: the teacher's shape, a non-finite output, the weight, the loss") {
    TrainableModel<double> tm(student);
    o.distillation = {0.5, 2.0};
    Dataset<double> bad = data;
    bad.teacher = Batch<double>(student.outputs(), data.size() - 1);
    CHECK_THROWS_WITH(train(tm, bad, nullptr, o),
                      Catch::Contains("teacher's outputs are") && Catch::Contains("59"));
    bad = data;
    bad.teacher(1, 8) = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(train(tm, bad, nullptr, o),
                      Catch::Contains("sample 9") && Catch::Contains("teacher output 2"));
    o.distillation.weight = 1.5;
    CHECK_THROWS_WITH(train(tm, data, nullptr, o), Catch::Contains("weight 1.5"));
    o.distillation = {0.5, -1.0};
    CHECK_THROWS_WITH(train(tm, data, nullptr, o), Catch::Contains("temperature -1"));
    o.distillation = {0.5, 1.0};
    o.gradient.loss = LossKind::squared;
    bad = data;
    bad.targets = inputs<double>(student.outputs(), data.size(), 2);
    CHECK_THROWS_WITH(train(tm, bad, nullptr, o), Catch::Contains("cross-entropy"));
  }
}

TEST_CASE("train: a sample-major dataset carries the teacher's outputs",
          "[train][trainer]") {
  Dataset<float> data;
  data.inputs = inputs<float>(5, 9, 1);
  data.teacher = inputs<float>(3, 9, 2);
  data.labels.assign(9, 0);
  const Dataset<float> sm = sample_major(data);
  REQUIRE(sm.teacher.slab_width() == 1);
  REQUIRE(sm.teacher.rows() == 3);
  for (index_t j = 0; j < 9; ++j)
    for (index_t i = 0; i < 3; ++i)
      CHECK(sm.teacher(i, j) == data.teacher(i, j));
}
