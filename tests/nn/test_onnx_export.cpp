// ONNX export: import -> export -> import gives the same model bit for bit
// (the native files of the two models are equal byte for byte, structure
// included), on every committed ONNX fixture, with and without folded dense
// products, in float32 and float64; models without an ONNX form are refused
// and nothing is written.
#include <catch2/catch.hpp>

#include <tacit/core/error.hpp>
#include <tacit/io/io.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/nn/onnx.hpp>
#include <tacit/operators/structured.hpp>

#include <random>
#include <string>
#include <vector>

#include "io_test_util.hpp"

using namespace tacit;
using namespace tacit_test;

namespace {

const fs::path data_dir = fs::path(TACIT_TEST_DATA_DIR);

/// The native file of a model (operators, structure and values).
template <class T>
std::string native_bytes(const Model<T> &model, const ScratchDir &dir) {
  const fs::path file = dir / "m.tacit";
  save_model_native(model, file);
  return read_text(file);
}

template <class T> void check_round_trip(const fs::path &file, bool fold) {
  INFO(file.string() << (fold ? " (folded)" : " (layers kept)"));
  OnnxImportOptions o;
  o.fold_dense_products = fold;
  const Model<T> first = import_onnx<T>(file, o);
  const std::string exported = export_onnx_bytes(first);
  const Model<T> second = import_onnx_bytes<T>(exported, "exported", nullptr, o);
  ScratchDir dir;
  const std::string a = native_bytes(first, dir), b = native_bytes(second, dir);
  CHECK(a.size() == b.size());
  CHECK(a == b);
  // Exporting the re-imported model gives the same graph.
  CHECK(export_onnx_bytes(second) == exported);
}

} // namespace

TEST_CASE("ONNX export round trip on the committed fixtures", "[onnx][onnx_export]") {
  const std::vector<fs::path> files = {data_dir / "onnx/residual_mlp.onnx",
                                       data_dir / "onnx/residual_mlp_folded.onnx",
                                       data_dir / "onnx/tiny_cnn.onnx",
                                       data_dir / "onnx/tiny_cnn_folded.onnx",
                                       data_dir / "onnx/typed_double.onnx",
                                       data_dir / "fashion/fashion_mlp.onnx",
                                       data_dir / "fashion/fashion_cnn.onnx",
                                       data_dir / "train/mlp.onnx",
                                       data_dir / "train/cnn.onnx",
                                       data_dir / "train/cnn_folded.onnx",
                                       data_dir / "train/fashion_cnn_init.onnx"};
  for (const auto &f : files)
    for (bool fold : {true, false}) {
      check_round_trip<double>(f, fold);
      check_round_trip<float>(f, fold);
    }
}

TEST_CASE("ONNX export round trip of ResNet20", "[onnx][onnx_export]") {
  for (const char *name : {"resnet20.onnx", "resnet20_folded.onnx"})
    for (bool fold : {true, false}) {
      check_round_trip<float>(data_dir / "onnx" / name, fold);
      check_round_trip<double>(data_dir / "onnx" / name, fold);
    }
}

TEST_CASE("ONNX export of the built ResNet20 (option B shortcuts) round trips",
          "[onnx][onnx_export]") {
  // resnet20() builds through NetworkBuilder: the same operators as an import.
  const Model<float> model = resnet20<float>(ResNetShortcut::option_b, 3);
  const std::string exported = export_onnx_bytes(model);
  const Model<float> back = import_onnx_bytes<float>(exported, "exported");
  ScratchDir dir;
  CHECK(native_bytes(model, dir) == native_bytes(back, dir));
}

TEST_CASE("ONNX export refuses models without an ONNX form", "[onnx][onnx_export]") {
  ScratchDir dir;
  // A truly implicit CSR model.
  const auto implicit = random_implicit_model<double>(20, 4, 3, 3, 0.9, 5);
  const fs::path out = dir / "net.onnx";
  try {
    export_onnx(implicit, out);
    FAIL("no exception");
  } catch (const Unsupported &e) {
    CHECK(std::string(e.what()).find("feed-forward structured") != std::string::npos);
  }
  CHECK(!fs::exists(out));

  // An identity activation block.
  NetworkBuilder<double> b;
  auto x = b.input(TensorShape{3, 1, 1});
  x = b.dense(x, 2, {1, 2, 3, 4, 5, 6}, {0.5, -0.5});
  x = b.activation(x, Activation{ActivationKind::identity}, "linear");
  x = b.dense(x, 1, {1, 1});
  const Model<double> linear = b.build(x);
  try {
    export_onnx(linear, out);
    FAIL("no exception");
  } catch (const Unsupported &e) {
    CHECK(std::string(e.what()).find("'linear'") != std::string::npos);
  }
  CHECK(!fs::exists(out));

  // A file that cannot be written: FileError, and an existing file is kept.
  CHECK_THROWS_AS(export_onnx(resnet20<float>(), dir / "missing" / "net.onnx"),
                  FileError);
  write_text(out, "keep");
  CHECK_THROWS_AS(export_onnx(linear, out), Unsupported);
  CHECK(read_text(out) == "keep");
}

TEST_CASE("ONNX export of a network with every exported operator",
          "[onnx][onnx_export]") {
  // Conv with groups, dilation and asymmetric pads, average pooling with
  // pads, a channel padding, a per-channel diagonal (batch norm after a
  // dense layer), a residual identity, leaky ReLU, tanh and sigmoid blocks.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> U(-1, 1);
  auto values = [&](std::size_t n) {
    std::vector<double> v(n);
    for (auto &x : v)
      x = U(rng);
    return v;
  };
  NetworkBuilder<double> b;
  b.fold_dense_products(false);
  auto u = b.input(TensorShape{4, 7, 6});
  Conv2dGeometry g;
  g.input = {4, 7, 6};
  g.out_channels = 6;
  g.kernel_h = 3;
  g.kernel_w = 2;
  g.pad_top = 1;
  g.pad_bottom = 2;
  g.pad_left = 1;
  g.dilation_h = 2;
  g.groups = 2;
  auto c = b.conv2d(u, g, values(6 * 2 * 3 * 2), values(6));
  auto x1 = b.activation(c, Activation{ActivationKind::leaky_relu, 0.125}, "leaky");
  const auto s1 = b.shape(x1);
  Conv2dGeometry g2;
  g2.input = s1;
  g2.out_channels = 6;
  g2.kernel_h = g2.kernel_w = 3;
  g2.pad_top = g2.pad_left = g2.pad_bottom = g2.pad_right = 1;
  auto c2 = b.conv2d(x1, g2, values(6 * 6 * 9), values(6));
  auto x2 = b.activation(b.add(c2, x1), Activation{ActivationKind::tanh}, "residual");
  auto p = b.avg_pool(x2, 2, 2, 2, 2, 1, 0, 0, 1, true);
  auto pad = b.channel_pad(x2, 8, 2, 1);
  b.activation(pad, Activation{ActivationKind::relu}, "shortcut");
  auto f = b.flatten(p);
  const index_t nf = b.shape(f).size();
  auto d = b.dense(f, 5, values(static_cast<std::size_t>(5 * nf)), values(5));
  auto bn = b.batch_norm(d, values(5), values(5), values(5), {1, 2, 3, 4, 5});
  auto x3 = b.activation(bn, Activation{ActivationKind::sigmoid}, "gate");
  auto y = b.dense(x3, 3, values(15), values(3));
  const Model<double> model = b.build(y);
  const std::string exported = export_onnx_bytes(model);
  OnnxImportOptions o;
  o.fold_dense_products = false;
  const Model<double> back = import_onnx_bytes<double>(exported, "exported", nullptr, o);
  ScratchDir dir;
  CHECK(native_bytes(model, dir) == native_bytes(back, dir));
  CHECK(same_model(model, back));
}
