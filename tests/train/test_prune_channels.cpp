// Channel groups and channel pruning of a structured network: a small CNN
// with batch norm, a residual block, a strided convolution and a dense layer
// after global pooling. The channel groups (members counted by hand from the
// layer sizes; residual channels tied into one group); zeroed groups pruned
// to a network with fewer channels whose predictions equal the zeroed
// network's bit for bit (float64 and float32, random inputs, with and
// without a folded classifier); a residual channel zero on one side of the
// tie only is kept; the pruned network exported to ONNX and re-imported
// gives the same bits; a prune that removes every channel of a layer is an
// error naming it. The committed Fashion CNN with every third channel group
// zeroed: pruned and zeroed networks agree bit for bit on the whole
// Fashion-MNIST test set, float64 and float32. A mini ResNet (three stages,
// option-A shortcuts: channel paddings; option B: projections) with every
// third channel group zeroed: the same bits, and its ONNX round trip.
#include <catch2/catch.hpp>

#include <tacit/config.hpp>
#include <tacit/core/error.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/train/groups.hpp>
#include <tacit/train/prox.hpp>
#include <tacit/train/prune.hpp>
#if TACIT_HAVE_ONNX
#include <tacit/nn/onnx.hpp>
#endif

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fashion_test_util.hpp"
#include "network_test_util.hpp"
#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

/// Output channels of a convolution (with its batch norm) made exactly zero:
/// zero kernel slice, conv bias 0, BN beta 0 and mean 0 (folded bias 0).
struct Zeros {
  std::set<index_t> c1, c2, c3, c4;
};

/// input 3x8x8 -> conv c1 (4, 3x3) + BN -> relu a1 -> conv c2 (4) + BN ->
/// relu a2 -> conv c3 (4) + BN, + a1 -> relu a3 -> conv c4 (6, stride 2) +
/// BN -> relu a4 -> global pool -> dense 6 -> 5.
template <class T> Model<T> cnn(const Zeros &z, bool fold, std::uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  NetworkBuilder<T> net;
  net.fold_dense_products(fold);
  auto conv = [&](auto x, index_t cin, index_t cout, index_t stride,
                  const std::set<index_t> &zero) {
    const index_t H = net.shape(x).height;
    Conv2dGeometry g{{cin, H, H}, cout, 3, 3, stride, stride, 1, 1, 1, 1};
    auto w = uniform(rng, static_cast<std::size_t>(cout * cin * 9), 0.4);
    auto b = uniform(rng, static_cast<std::size_t>(cout), 0.1);
    auto gamma = uniform(rng, static_cast<std::size_t>(cout), 0.3);
    auto beta = uniform(rng, static_cast<std::size_t>(cout), 0.1);
    auto mean = uniform(rng, static_cast<std::size_t>(cout), 0.1);
    auto var = uniform(rng, static_cast<std::size_t>(cout), 0.3);
    for (index_t c = 0; c < cout; ++c) {
      gamma[c] += 1;
      var[c] += 1;
      if (zero.count(c)) {
        std::fill_n(w.begin() + c * cin * 9, cin * 9, 0.0);
        b[c] = beta[c] = mean[c] = 0;
      }
    }
    x = net.conv2d(x, g, cast<T>(w), cast<T>(b));
    return net.batch_norm(x, cast<T>(gamma), cast<T>(beta), cast<T>(mean), cast<T>(var));
  };
  const Activation relu{ActivationKind::relu};
  auto u = net.input({3, 8, 8});
  auto a1 = net.activation(conv(u, 3, 4, 1, z.c1), relu, "a1");
  auto a2 = net.activation(conv(a1, 4, 4, 1, z.c2), relu, "a2");
  auto a3 = net.activation(net.add(conv(a2, 4, 4, 1, z.c3), a1), relu, "a3");
  auto a4 = net.activation(conv(a3, 4, 6, 2, z.c4), relu, "a4");
  auto f = net.flatten(net.global_avg_pool(a4));
  return net.build(
      net.dense(f, 5, cast<T>(uniform(rng, 30, 0.5)), cast<T>(uniform(rng, 5, 0.1))));
}

template <class T> Batch<T> predict(const Model<T> &m, const Batch<T> &U) {
  EquilibriumSolver<T> s(m);
  Batch<T> X, Y;
  const auto r = s.predict(U, X, Y);
  REQUIRE(r.ok());
  return Y;
}

template <class T> index_t differing(const Batch<T> &a, const Batch<T> &b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  index_t d = 0;
  for (index_t i = 0; i < a.rows(); ++i)
    for (index_t j = 0; j < a.cols(); ++j)
      d += a(i, j) == b(i, j) ? 0 : 1; // -0 == +0
  return d;
}

std::map<std::string, index_t> channels_after(const std::vector<BlockChannels> &cs) {
  std::map<std::string, index_t> out;
  for (const auto &c : cs)
    out[c.name] = c.after;
  return out;
}

/// Zeroes the channel groups named in `names` (through the groups' members).
template <class T>
Model<T> zero_channel_groups(const Model<T> &m, const std::set<std::string> &names) {
  TrainableModel<T> tm(m);
  const auto groups = make_groups(tm, GroupKind::channel);
  std::vector<T> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  index_t found = 0;
  for (const auto &g : groups.groups)
    if (names.count(g.name)) {
      ++found;
      for (const index_t k : g.members)
        flat[static_cast<std::size_t>(k)] = T(0);
    }
  REQUIRE(found == static_cast<index_t>(names.size()));
  tm.write(flat);
  return tm.model();
}

template <class T> void groups_case(bool fold) {
  const Model<T> m = cnn<T>({}, fold);
  TrainableModel<T> tm(m);
  const auto s = make_groups(tm, GroupKind::channel);
  // a1 and a3 tied channel by channel by the residual addition: 4 groups,
  // a2: 4, a4: 6.
  REQUIRE(s.groups.size() == 14);
  std::map<std::string, std::size_t> size;
  for (const auto &g : s.groups) {
    CHECK(g.kind == GroupKind::channel);
    CHECK(g.weight == Approx(std::sqrt(double(g.members.size()))));
    size[g.name] = g.members.size();
  }
  // a2:c: c2's slice w[c] (4 x 9) and its bias, c3's slice w[:, c] (4 x 9).
  CHECK(size.at("channel a2:1") == 36 + 1 + 36);
  // a1:c + a3:c: c1's w[c] (3 x 9) and bias, c3's w[c] (4 x 9) and bias;
  // read by c2 (w[:, c], 4 x 9) and c4 (w[:, c], 6 x 9).
  CHECK(size.at("channel a1:2+a3:2") == 27 + 1 + 36 + 1 + 36 + 54);
  // a4:c: c4's w[c] (4 x 9) and bias, the classifier's column c (5 rows; the
  // pooled plane is one value), or folded with the pooling, its 16 columns
  // of channel c.
  CHECK(size.at("channel a4:5") == 36 + 1 + (fold ? 5 * 16 : 5));
  CHECK(s.covered() == tm.size() - 5); // every parameter but the output bias
  CHECK_FALSE(s.disjoint());
  // tacit info's summary lists the channels of a structured network.
  const auto summary = group_summary(tm);
  bool listed = false;
  for (const auto &g : summary)
    listed = listed || (g.kind == GroupKind::channel && g.count == 14);
  CHECK(listed);
  // A large group-lasso step zeroes whole groups.
  std::vector<T> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  ProximalPenalty<T> prox(tm, s, {PenaltyKind::group_lasso, 1e3});
  prox.step(1, 1, 1.0);
  CHECK(prox.zero_groups() == 14);
}

template <class T> void prune_case(bool fold) {
  INFO((fold ? "folded classifier" : "classifier kept after the pooling"));
  const Model<T> full = cnn<T>({}, fold);
  const Model<T> m = zero_channel_groups(
      full, {"channel a2:1", "channel a1:2+a3:2", "channel a4:0", "channel a4:5"});
  const auto r = prune_model(m);
  const auto after = channels_after(r.channels);
  CHECK(after.at("a1") == 3);
  CHECK(after.at("a2") == 3);
  CHECK(after.at("a3") == 3);
  CHECK(after.at("a4") == 4);
  CHECK(r.after.states == 3 * 64 * 3 + 4 * 16);
  CHECK(r.after.inputs == 192);
  CHECK(r.after.parameters < r.before.parameters);
  CHECK(r.after.flops < r.before.flops);
  CHECK(r.pruned.A().kind() == "block");
  Batch<T> U = inputs<T>(192, 37, 5);
  const auto y0 = predict(m, U), ym = predict(r.masked, U), yp = predict(r.pruned, U);
  CHECK(differing(ym, yp) == 0);
  CHECK(differing(y0, yp) == 0); // the zeroed network itself
#if TACIT_HAVE_ONNX
  OnnxImportOptions o;
  o.fold_dense_products = fold;
  const std::string bytes = export_onnx_bytes(r.pruned);
  const Model<T> back = import_onnx_bytes<T>(bytes, "pruned", nullptr, o);
  CHECK(back.states() == r.pruned.states());
  CHECK(differing(predict(back, U), yp) == 0);
  CHECK(export_onnx_bytes(back) == bytes);
#endif
}

template <class T> void tie_case() {
  // Channel 2 of a1 zero (c1's slice and bias) but channel 2 of a3 fed by
  // c3: the residual tie keeps a1:2. With c3's channel 2 zero as well, both
  // go (a1:2 feeds c2 and a3 through nonzero slices: they read zeros).
  const Model<T> one = cnn<T>({{2}, {}, {}, {}}, false);
  const auto r1 = prune_model(one);
  CHECK(channels_after(r1.channels).at("a1") == 4);
  CHECK(channels_after(r1.channels).at("a3") == 4);
  CHECK(r1.after.states == r1.before.states);
  const Model<T> both = cnn<T>({{2}, {}, {2}, {}}, false);
  const auto r2 = prune_model(both);
  CHECK(channels_after(r2.channels).at("a1") == 3);
  CHECK(channels_after(r2.channels).at("a2") == 4);
  CHECK(channels_after(r2.channels).at("a3") == 3);
  Batch<T> U = inputs<T>(192, 19, 9);
  CHECK(differing(predict(both, U), predict(r2.pruned, U)) == 0);
  CHECK(differing(predict(r2.masked, U), predict(r2.pruned, U)) == 0);
}

template <class T> void fashion_case(const Model<T> &cnn, const Batch<T> &U) {
  TrainableModel<T> tm(cnn);
  const auto groups = make_groups(tm, GroupKind::channel);
  std::set<std::string> names;
  for (std::size_t g = 0; g < groups.groups.size(); g += 3)
    names.insert(groups.groups[g].name);
  const Model<T> m = zero_channel_groups(cnn, names);
  const auto r = prune_model(m);
  index_t before = 0, after = 0;
  for (const auto &c : r.channels) {
    before += c.before;
    after += c.after;
    CHECK(c.after > 0);
  }
  // A group of channels tied across blocks ("channel /Relu:3+/Relu_2:3") is
  // one channel of each block it names.
  auto blocks_of = [](const std::string &name) {
    return 1 + static_cast<index_t>(std::count(name.begin(), name.end(), '+'));
  };
  index_t all = 0, removed = 0;
  for (const auto &g : groups.groups)
    all += blocks_of(g.name);
  for (const auto &name : names)
    removed += blocks_of(name);
  CHECK(before == all);
  CHECK(after == before - removed);
  CHECK(r.after.flops < r.before.flops);
  const auto yp = predict(r.pruned, U);
  CHECK(differing(predict(r.masked, U), yp) == 0);
  CHECK(differing(predict(m, U), yp) == 0);
}

template <class T> void resnet_case(bool option_b) {
  INFO((option_b ? "option B" : "option A"));
  const Model<T> net = tacit_test::network::MiniResNet(option_b, 3).build<T>();
  TrainableModel<T> tm(net);
  const auto groups = make_groups(tm, GroupKind::channel);
  std::set<std::string> names;
  for (std::size_t g = 1; g < groups.groups.size(); g += 3)
    names.insert(groups.groups[g].name);
  const Model<T> m = zero_channel_groups(net, names);
  const auto r = prune_model(m);
  index_t before = 0, after = 0;
  for (const auto &c : r.channels) {
    before += c.before;
    after += c.after;
  }
  CHECK(after < before);
  CHECK(r.after.flops < r.before.flops);
  const Batch<T> U = inputs<T>(net.inputs(), 23, 4);
  const auto yp = predict(r.pruned, U);
  CHECK(differing(predict(r.masked, U), yp) == 0);
  CHECK(differing(predict(m, U), yp) == 0);
#if TACIT_HAVE_ONNX
  const Model<T> back = import_onnx_bytes<T>(export_onnx_bytes(r.pruned), "pruned");
  CHECK(differing(predict(back, U), yp) == 0);
#endif
}

} // namespace

TEST_CASE("channel pruning: a mini ResNet with option A and option B shortcuts",
          "[prune][prune_channels]") {
  for (bool b : {false, true}) {
    resnet_case<double>(b);
    resnet_case<float>(b);
  }
}

TEST_CASE("channel pruning: the committed Fashion CNN, the whole test set bit for bit",
          "[prune][prune_channels][fashion]") {
  const auto dir = tacit::testutil::fashion_test_data();
  const auto test = tacit::testutil::fashion_test_images(dir, -1);
  REQUIRE(test.images.cols() == 10000);
  fashion_case<double>(tacit::testutil::fashion_model<double>("fashion_cnn"),
                       test.images);
  Batch<float> U(test.images.rows(), test.images.cols());
  for (index_t i = 0; i < U.rows(); ++i)
    for (index_t j = 0; j < U.cols(); ++j)
      U(i, j) = static_cast<float>(test.images(i, j));
  fashion_case<float>(tacit::testutil::fashion_model<float>("fashion_cnn"), U);
}

#if TACIT_HAVE_ONNX
TEST_CASE("channel pruning: the committed Fashion ResNet, the whole test set bit for bit",
          "[prune][prune_channels][fashion]") {
  // tests/data/train/fashion_resnet_init.onnx: stem, three stages of a basic
  // block with projection shortcuts, global pooling and a classifier, read
  // with its layers kept (as tacit train reads it) and with the classifier
  // folded with the pooling; every third channel group zeroed.
  const auto dir = tacit::testutil::fashion_test_data();
#if defined(__SANITIZE_ADDRESS__)
  const index_t images = 200; // sanitizer builds: the first 200 (release: all)
#else
  const index_t images = 10000;
#endif
  const auto test = tacit::testutil::fashion_test_images(dir, images == 10000 ? -1 : images);
  REQUIRE(test.images.cols() == images);
  Batch<float> U(test.images.rows(), test.images.cols());
  for (index_t i = 0; i < U.rows(); ++i)
    for (index_t j = 0; j < U.cols(); ++j)
      U(i, j) = static_cast<float>(test.images(i, j));
  const auto file =
      std::filesystem::path(TACIT_TEST_DATA_DIR) / "train" / "fashion_resnet_init.onnx";
  for (bool fold : {false, true}) {
    INFO((fold ? "classifier folded with the pooling" : "layers kept"));
    OnnxImportOptions o;
    o.fold_dense_products = fold;
    fashion_case<float>(import_onnx<float>(file, o), U);
    fashion_case<double>(import_onnx<double>(file, o), test.images);
  }
}
#endif

TEST_CASE("channel groups of a CNN with a residual block", "[groups][prune_channels]") {
  groups_case<double>(false);
  groups_case<double>(true);
  groups_case<float>(false);
}

TEST_CASE("channel pruning: the pruned CNN predicts the zeroed one's bits",
          "[prune][prune_channels]") {
  for (bool fold : {false, true}) {
    prune_case<double>(fold);
    prune_case<float>(fold);
  }
}

TEST_CASE("channel pruning: residual channels go together", "[prune][prune_channels]") {
  tie_case<double>();
  tie_case<float>();
}

TEST_CASE("channel pruning: every channel of a layer is an error",
          "[prune][prune_channels]") {
  const Model<double> m = cnn<double>({{}, {0, 1, 2, 3}, {}, {}}, false);
  try {
    prune_model(m);
    FAIL("no error");
  } catch (const InvalidArgument &e) {
    const std::string what = e.what();
    CHECK(what.find("every channel of block 'a2'") != std::string::npos);
    CHECK(what.find("4 channels of 64 states") != std::string::npos);
  }
}
