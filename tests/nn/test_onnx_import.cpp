#include <catch2/catch.hpp>

#include <tacit/core/error.hpp>
#include <tacit/io/idx.hpp>
#include <tacit/io/io.hpp>
#include <tacit/nn/onnx.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>

#include "fashion_test_util.hpp"
#include "io_test_util.hpp"

using namespace tacit;
using tacit::testutil::fashion_model;
using tacit::testutil::fashion_test_data;
using tacit::testutil::fashion_test_images;
using namespace tacit_test;

namespace {

const fs::path onnx_dir = fs::path(TACIT_TEST_DATA_DIR) / "onnx";
const fs::path fashion_dir = fs::path(TACIT_TEST_DATA_DIR) / "fashion";

/// Number of values on the first line of a text file of vectors.
index_t values_per_line(const fs::path &file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  std::istringstream s(line);
  index_t count = 0;
  std::string token;
  while (s >> token)
    ++count;
  return count;
}

/// Outputs of `model` for the inputs in `input_file`.
template <class T> Batch<T> evaluate(const Model<T> &model, const Batch<T> &U) {
  EquilibriumSolver<T> solver(model);
  Batch<T> X, Y;
  const auto report = solver.predict(U, X, Y);
  REQUIRE(report.ok());
  return Y;
}

/// max over samples of max_i |y_i - ref_i| / max_i |ref_i|.
template <class T> double relative_error(const Batch<T> &Y, const Batch<double> &ref) {
  REQUIRE(Y.rows() == ref.rows());
  REQUIRE(Y.cols() == ref.cols());
  double worst = 0;
  for (index_t j = 0; j < ref.cols(); ++j) {
    double err = 0, scale = 0;
    for (index_t i = 0; i < ref.rows(); ++i) {
      err = std::max(err, std::abs(double(Y(i, j)) - ref(i, j)));
      scale = std::max(scale, std::abs(ref(i, j)));
    }
    worst = std::max(worst, err / scale);
  }
  return worst;
}

template <class T>
double parity(const std::string &network, const std::string &variant,
              index_t expected_blocks) {
  const fs::path file = onnx_dir / (network + variant + ".onnx");
  OnnxImportInfo info;
  const Model<T> model = import_onnx<T>(file, &info);
  CHECK(static_cast<index_t>(model.blocks().size()) == expected_blocks);
  // Feed-forward: A is a strictly block lower triangular block operator.
  const auto *A = dynamic_cast<const BlockOperator<T> *>(&model.A());
  REQUIRE(A != nullptr);
  CHECK(A->strictly_block_lower_triangular());
  const fs::path inputs = onnx_dir / (network + "_input.txt");
  const fs::path outputs = onnx_dir / (network + variant + "_output.txt");
  REQUIRE(values_per_line(inputs) == model.inputs());
  REQUIRE(values_per_line(outputs) == model.outputs());
  const auto U = read_vectors<T>(inputs, model.inputs());
  const auto ref = read_vectors<double>(outputs, model.outputs());
  const double err = relative_error(evaluate(model, U), ref);
  INFO(file.string() << ": relative error " << err);
  return err;
}

template <class E> std::string message_of(const std::function<void()> &f) {
  try {
    f();
  } catch (const E &e) {
    return e.what();
  }
  FAIL("no exception");
  return {};
}

bool has(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("ONNX import reproduces PyTorch float64 outputs", "[onnx]") {
  struct Case {
    const char *network;
    index_t blocks;
  };
  for (const Case c : {Case{"tiny_cnn", 5}, Case{"residual_mlp", 3}}) {
    for (const char *variant : {"", "_folded"}) {
      INFO(c.network << variant);
      const double e64 = parity<double>(c.network, variant, c.blocks);
      const double e32 = parity<float>(c.network, variant, c.blocks);
      CHECK(e64 <= 1e-10);
      CHECK(e32 <= 1e-4);
    }
  }
}

TEST_CASE("ONNX import of ResNet20 (option A shortcuts, BN kept and folded)", "[onnx]") {
  OnnxImportInfo info;
  const auto model = import_onnx<float>(onnx_dir / "resnet20.onnx", &info);
  CHECK(model.states() == 188416);
  CHECK(model.inputs() == 3072);
  CHECK(model.outputs() == 10);
  CHECK(info.batch == "batch");
  CHECK(info.input_dims == std::vector<index_t>{3, 32, 32});
  CHECK(info.output_dims == std::vector<index_t>{10});
  CHECK(info.op_types.size() == 19);
  const auto *A = dynamic_cast<const BlockOperator<float> *>(&model.A());
  REQUIRE(A != nullptr);
  CHECK(A->strictly_block_lower_triangular());
}

TEST_CASE("ONNX import of ResNet20 reproduces PyTorch", "[onnx][slow]") {
  for (const char *variant : {"", "_folded"}) {
    INFO("resnet20" << variant);
    CHECK(parity<double>("resnet20", variant, 19) <= 1e-10);
    CHECK(parity<float>("resnet20", variant, 19) <= 1e-4);
  }
}

TEST_CASE("ONNX import: float64 model with typed initializers and a Constant bias",
          "[onnx]") {
  OnnxImportInfo info;
  const auto model = import_onnx<double>(onnx_dir / "typed_double.onnx", &info);
  CHECK(info.input_dims == std::vector<index_t>{2, 3});
  CHECK(model.blocks().size() == 1);
  CHECK(model.blocks()[0].activation.kind == ActivationKind::tanh);
  CHECK(model.blocks()[0].name == "tanh");
  const auto U = read_vectors<double>(onnx_dir / "typed_double_input.txt", 6);
  const auto ref = read_vectors<double>(onnx_dir / "typed_double_output.txt", 3);
  CHECK(relative_error(evaluate(model, U), ref) <= 1e-13);
}

TEST_CASE("ONNX import rejects unsupported and malformed models", "[onnx]") {
  SECTION("unsupported operator") {
    const auto msg = message_of<Unsupported>(
        [] { (void)import_onnx<double>(onnx_dir / "unsupported_op.onnx"); });
    INFO(msg);
    CHECK(has(msg, "unsupported_op.onnx"));
    CHECK(has(msg, "node 'probabilities' (Softmax)"));
    CHECK(has(msg, "operator Softmax is not supported"));
  }
  SECTION("unsupported attribute value") {
    const auto msg = message_of<Unsupported>(
        [] { (void)import_onnx<double>(onnx_dir / "bad_auto_pad.onnx"); });
    INFO(msg);
    CHECK(has(msg, "node 'conv_same' (Conv)"));
    CHECK(has(msg, "auto_pad = SAME_UPPER"));
    const auto msg2 = message_of<Unsupported>(
        [] { (void)import_onnx<float>(onnx_dir / "bad_transa.onnx"); });
    INFO(msg2);
    CHECK(has(msg2, "node 'fc_transposed' (Gemm)"));
    CHECK(has(msg2, "transA = 1"));
  }
  SECTION("weights given as a graph input") {
    const auto msg = message_of<Unsupported>(
        [] { (void)import_onnx<double>(onnx_dir / "weight_input.onnx"); });
    INFO(msg);
    CHECK(has(msg, "several inputs ('input', 'weight')"));
  }
  SECTION("truncated files and non-ONNX files") {
    const std::string bytes = read_text(onnx_dir / "tiny_cnn.onnx");
    REQUIRE(bytes.size() > 1000);
    const auto msg = message_of<FileError>([&] {
      (void)import_onnx_bytes<double>(bytes.substr(0, bytes.size() / 2), "cut.onnx");
    });
    CHECK(has(msg, "cut.onnx: not a valid ONNX model"));
    // Every strict prefix is rejected with a tacit error (never a crash or a model).
    for (std::size_t cut = 0; cut < bytes.size(); cut += 1 + cut / 7) {
      INFO("prefix of " << cut << " bytes");
      CHECK_THROWS_AS(import_onnx_bytes<double>(bytes.substr(0, cut), "cut.onnx"), Error);
    }
    ScratchDir dir;
    write_text(dir / "text.onnx", "this is not a protobuf message\n");
    CHECK_THROWS_AS(import_onnx<double>(dir / "text.onnx"), FileError);
    CHECK(has(
        message_of<FileError>([&] { (void)import_onnx<double>(dir / "missing.onnx"); }),
        "missing.onnx"));
  }
}

TEST_CASE("ONNX import of damaged files: a tacit error or a model, never a crash",
          "[onnx]") {
  std::mt19937_64 rng(2024);
  int rejected = 0, imported = 0;
  for (const char *file : {"tiny_cnn.onnx", "typed_double.onnx", "residual_mlp.onnx"}) {
    const std::string original = read_text(onnx_dir / file);
    for (int k = 0; k < 150; ++k) {
      const std::string bytes = mutate(original, rng);
      try {
        (void)import_onnx_bytes<double>(bytes, file);
        ++imported;
      } catch (const Error &) {
        ++rejected;
      }
    }
  }
  CHECK(rejected > 0);
  CHECK(imported + rejected == 450);
}

TEST_CASE("Fashion-MNIST models: tacit predictions equal PyTorch's", "[onnx][fashion]") {
  const auto dir = fashion_test_data();
  // The whole test set in release builds, a sample under sanitizers.
#if defined(__SANITIZE_ADDRESS__)
  const index_t count = 500;
#else
  const index_t count = 10000;
#endif
  const auto test = fashion_test_images(dir, count);
  for (const char *name : {"fashion_mlp", "fashion_cnn"}) {
    INFO(name);
    const auto model = fashion_model(name);
    REQUIRE(model.inputs() == 784);
    REQUIRE(model.outputs() == 10);
    const std::string expected =
        read_text(fashion_dir / (std::string(name) + "_predictions.txt"));
    REQUIRE(expected.size() >= static_cast<std::size_t>(count));
    const auto Y = evaluate(model, test.images);
    index_t agree = 0, correct = 0, correct_pytorch = 0;
    for (index_t j = 0; j < count; ++j) {
      int best = 0;
      for (int c = 1; c < 10; ++c)
        if (Y(c, j) > Y(best, j))
          best = c;
      const int theirs = expected[static_cast<std::size_t>(j)] - '0';
      agree += best == theirs;
      correct += best == test.labels[j];
      correct_pytorch += theirs == test.labels[j];
    }
    CHECK(agree == count);
    CHECK(correct == correct_pytorch);
    if (count == 10000) {
      // accuracy.txt: "<name> float32 <acc> float64 <acc> correct64 <count>".
      std::istringstream acc(read_text(fashion_dir / "accuracy.txt"));
      std::string line;
      bool found = false;
      while (std::getline(acc, line)) {
        std::istringstream s(line);
        std::string model_name, k1, k2, k3;
        double a32 = 0, a64 = 0;
        index_t c64 = -1;
        if (s >> model_name >> k1 >> a32 >> k2 >> a64 >> k3 >> c64 &&
            model_name == name) {
          found = true;
          CHECK(correct == c64);
        }
      }
      CHECK(found);
    }
  }
}

#ifdef TACIT_CLI_PATH
TEST_CASE("tacit import-onnx writes native files and Matrix Market directories",
          "[onnx][cli]") {
  ScratchDir dir;
  const auto run = [&](const std::vector<std::string> &args) {
    std::string command = std::string("'") + TACIT_CLI_PATH + "'";
    for (const auto &a : args)
      command += " '" + a + "'";
    command +=
        " >'" + (dir / "stdout").string() + "' 2>'" + (dir / "stderr").string() + "'";
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  const auto U = read_vectors<double>(onnx_dir / "tiny_cnn_input.txt", 300);
  const auto ref = read_vectors<double>(onnx_dir / "tiny_cnn_output.txt", 5);
  const std::string net = (onnx_dir / "tiny_cnn.onnx").string();

  REQUIRE(run({"import-onnx", net, "-o", (dir / "cnn.tacit").string()}) == 0);
  const auto native = load_model<double>(dir / "cnn.tacit");
  CHECK(relative_error(evaluate(native, U), ref) <= 1e-10);

  REQUIRE(run({"import-onnx", net, "-o", (dir / "cnn_dir").string(), "--format",
               "mtx"}) == 0);
  CHECK(fs::exists(dir / "cnn_dir" / "A.mtx"));
  const auto mtx = load_model<double>(dir / "cnn_dir");
  CHECK(mtx.blocks().size() == 5);
  CHECK(relative_error(evaluate(mtx, U), ref) <= 1e-10);

  // Errors: exit code 2, the node named, nothing written.
  CHECK(run({"import-onnx", (onnx_dir / "unsupported_op.onnx").string(), "-o",
             (dir / "bad.tacit").string()}) == 2);
  CHECK(has(read_text(dir / "stderr"), "node 'probabilities' (Softmax)"));
  CHECK_FALSE(fs::exists(dir / "bad.tacit"));
  CHECK(run({"import-onnx", (onnx_dir / "bad_auto_pad.onnx").string(), "-o",
             (dir / "bad_dir").string(), "--format", "mtx"}) == 2);
  CHECK_FALSE(fs::exists(dir / "bad_dir"));
  const auto names = dir.list();
  CHECK(std::count_if(names.begin(), names.end(), [](const std::string &s) {
          return s.find("bad") != std::string::npos;
        }) == 0);
  CHECK(run({"import-onnx", net}) == 1); // -o missing
}
#endif
