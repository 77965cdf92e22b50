#include <catch2/catch.hpp>
#include <tacit/nn/generate.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <vector>

using namespace tacit;

namespace {

/// Layers of a shape, recomputed here from the documented layout (channel-
/// major planes, layers one after the other, image halved at each stage).
struct TestLayer {
  index_t channels, image, offset;
  index_t size() const { return channels * image * image; }
  index_t state(index_t c, index_t y, index_t x) const {
    return offset + (c * image + y) * image + x;
  }
};

std::vector<TestLayer> test_layers(const ResNetLikeShape &s) {
  std::vector<TestLayer> out;
  index_t image = s.image, offset = 0;
  for (std::size_t st = 0; st < s.stage_channels.size(); ++st) {
    if (st > 0)
      image /= 2;
    for (index_t l = 0; l < s.stage_layers[st]; ++l) {
      out.push_back({s.stage_channels[st], image, offset});
      offset += out.back().size();
    }
  }
  return out;
}

template <class T>
T dense_at(const std::vector<T> &d, index_t cols, index_t i, index_t j) {
  return d[static_cast<std::size_t>(i * cols + j)];
}

/// Expected dense matrix of a 3x3 convolution (padding 1) from an input of
/// `in_c` planes of `in_h` x `in_h` starting at column `in_off` to output
/// layer `out`, with kernel K[co][ci][dy][dx]: the textbook formula
///   out(co, oy, ox) = sum_{ci, dy, dx} K * in(ci, s*oy + dy - 1, s*ox + dx - 1).
template <class T>
void expect_conv(std::vector<T> &E, index_t cols, index_t in_c, index_t in_h,
                 index_t in_off, const TestLayer &out, const std::vector<T> &K) {
  const index_t s = in_h / out.image;
  for (index_t co = 0; co < out.channels; ++co)
    for (index_t oy = 0; oy < out.image; ++oy)
      for (index_t ox = 0; ox < out.image; ++ox)
        for (index_t ci = 0; ci < in_c; ++ci)
          for (index_t dy = 0; dy < 3; ++dy)
            for (index_t dx = 0; dx < 3; ++dx) {
              const index_t iy = s * oy + dy - 1, ix = s * ox + dx - 1;
              if (iy < 0 || ix < 0 || iy >= in_h || ix >= in_h)
                continue;
              E[out.state(co, oy, ox) * cols + in_off + (ci * in_h + iy) * in_h + ix] =
                  K[((co * in_c + ci) * 3 + dy) * 3 + dx];
            }
}

/// Kernel read off the matrix at an interior output position (1, 1).
template <class T>
std::vector<T> kernel_from(const std::vector<T> &D, index_t cols, index_t in_c,
                           index_t in_h, index_t in_off, const TestLayer &out) {
  const index_t s = in_h / out.image;
  std::vector<T> K(static_cast<std::size_t>(out.channels * in_c * 9));
  for (index_t co = 0; co < out.channels; ++co)
    for (index_t ci = 0; ci < in_c; ++ci)
      for (index_t dy = 0; dy < 3; ++dy)
        for (index_t dx = 0; dx < 3; ++dx)
          K[((co * in_c + ci) * 3 + dy) * 3 + dx] =
              dense_at(D, cols, out.state(co, 1, 1),
                       in_off + (ci * in_h + s + dy - 1) * in_h + s + dx - 1);
  return K;
}

const ResNetLikeShape small_shape{12, 2, {3, 5, 6}, {3, 4, 2}, true, 4};

} // namespace

TEST_CASE("Generators are deterministic and depend on the seed", "[generate]") {
  auto A1 = resnet_like_matrix<double>(small_shape, 5);
  auto A2 = resnet_like_matrix<double>(small_shape, 5);
  auto A3 = resnet_like_matrix<double>(small_shape, 6);
  CHECK(std::equal(A1.values().begin(), A1.values().end(), A2.values().begin()));
  CHECK(std::equal(A1.row_ptr().begin(), A1.row_ptr().end(), A3.row_ptr().begin()));
  CHECK_FALSE(std::equal(A1.values().begin(), A1.values().end(), A3.values().begin()));

  auto M1 = random_implicit_model<float>(300, 20, 5, 7, 0.8, 11);
  auto M2 = random_implicit_model<float>(300, 20, 5, 7, 0.8, 11);
  auto M3 = random_implicit_model<float>(300, 20, 5, 7, 0.8, 12);
  CHECK(M1.A().to_csr().to_dense() == M2.A().to_csr().to_dense());
  CHECK(M1.B().to_csr().to_dense() == M2.B().to_csr().to_dense());
  CHECK(M1.C().to_csr().to_dense() == M2.C().to_csr().to_dense());
  CHECK(M1.A().to_csr().to_dense() != M3.A().to_csr().to_dense());

  // A batch has the same values whatever its slab width; seeds differ.
  auto U1 = random_batch<double>(50, 70, 3, 32);
  auto U2 = random_batch<double>(50, 70, 3, 16);
  auto U3 = random_batch<double>(50, 70, 4, 32);
  bool same = true, differs = false, in_range = true;
  for (index_t i = 0; i < 50; ++i)
    for (index_t j = 0; j < 70; ++j) {
      same = same && U1(i, j) == U2(i, j);
      differs = differs || U1(i, j) != U3(i, j);
      in_range = in_range && U1(i, j) >= -1 && U1(i, j) <= 1;
    }
  CHECK(same);
  CHECK(differs);
  CHECK(in_range);
  // Padding columns of the last slab stay zero.
  auto pad = U1.slab(2);
  for (index_t i = 0; i < 50; ++i)
    for (index_t j = 70 - 64; j < 32; ++j)
      same = same && pad.data[i * pad.ld + j] == 0.0;
  CHECK(same);
  // Fixed bits on every machine: these values pin down the generator.
  CHECK(random_batch<double>(1, 1, 1)(0, 0) == 0.42239691636591137);
  double sum = 0;
  for (double v : A1.values())
    sum += v;
  CHECK(sum == 204.74696228447385);
}

TEST_CASE("Small ResNet-like model equals a direct convolution network", "[generate]") {
  const auto &shape = small_shape;
  const auto layers = test_layers(shape);
  const index_t n = layers.back().offset + layers.back().size();
  const index_t p = shape.input_channels * shape.image * shape.image;
  auto model = resnet_like_model<double>(shape, 9);
  REQUIRE(model.states() == n);
  REQUIRE(model.inputs() == p);
  REQUIRE(model.outputs() == shape.classes);
  REQUIRE(model.blocks().size() == layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    CHECK(model.blocks()[l].offset == layers[l].offset);
    CHECK(model.blocks()[l].size == layers[l].size());
    CHECK(model.blocks()[l].activation.kind == ActivationKind::relu);
  }
  CHECK(model.blocks()[0].name == "stage1.conv0");
  CHECK(model.blocks()[4].name == "stage2.conv1");

  const auto A = model.A().to_csr().to_dense();
  std::vector<double> E(A.size(), 0.0);
  for (std::size_t l = 1; l < layers.size(); ++l) {
    const TestLayer &in = layers[l - 1];
    const auto K = kernel_from(A, n, in.channels, in.image, in.offset, layers[l]);
    // Weights are drawn uniform(-a, a), a = sqrt(3 / fan_in), all distinct.
    const double a = std::sqrt(3.0 / (9.0 * static_cast<double>(in.channels)));
    for (double w : K)
      CHECK(std::abs(w) <= a);
    auto sorted = K;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    expect_conv(E, n, in.channels, in.image, in.offset, layers[l], K);
    // Residual: identity from two layers back on layers 2, 4, ...; at a stage
    // change, strided identity onto the first channels.
    if (l >= 2 && l % 2 == 0) {
      const TestLayer &src = layers[l - 2], &dst = layers[l];
      const index_t s = src.image / dst.image;
      for (index_t c = 0; c < src.channels; ++c)
        for (index_t y = 0; y < dst.image; ++y)
          for (index_t x = 0; x < dst.image; ++x)
            E[dst.state(c, y, x) * n + src.state(c, s * y, s * x)] = 1.0;
    }
  }
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      if (A[i * n + j] != E[i * n + j])
        FAIL("A(" << i << ", " << j << ") = " << A[i * n + j] << ", expected "
                  << E[i * n + j]);

  // B: the stem convolution of the input image.
  const auto B = model.B().to_csr().to_dense();
  std::vector<double> EB(B.size(), 0.0);
  const auto KB = kernel_from(B, p, shape.input_channels, shape.image, 0, layers.front());
  expect_conv(EB, p, shape.input_channels, shape.image, 0, layers.front(), KB);
  CHECK(B == EB);
  CHECK(std::count(KB.begin(), KB.end(), 0.0) == 0);

  // C: average pool of the last layer then a dense classifier: constant
  // over each channel plane, equal to W[k][c] / plane size.
  const auto C = model.C().to_csr().to_dense();
  const TestLayer &last = layers.back();
  const index_t plane = last.image * last.image;
  const double bound = std::sqrt(3.0 / static_cast<double>(last.channels));
  std::size_t c_wrong = 0;
  for (index_t k = 0; k < shape.classes; ++k)
    for (index_t j = 0; j < n; ++j) {
      const double v = C[k * n + j];
      if (j < last.offset) {
        c_wrong += v != 0.0;
        continue;
      }
      const index_t c = (j - last.offset) / plane;
      c_wrong += v != C[k * n + last.state(c, 0, 0)] || v == 0.0 ||
                 std::abs(v * static_cast<double>(plane)) > bound;
    }
  CHECK(c_wrong == 0);
  // Biases are per channel.
  std::size_t bias_wrong = 0;
  for (const auto &L : layers)
    for (index_t s = 0; s < L.size(); ++s)
      bias_wrong +=
          model.bias_x()[L.offset + s] !=
          model.bias_x()[L.offset + (s / (L.image * L.image)) * L.image * L.image];
  CHECK(bias_wrong == 0);

  // The float model holds the same weights rounded.
  auto mf = resnet_like_model<float>(shape, 9);
  const auto Af = mf.A().to_csr().to_dense();
  std::size_t float_mismatches = 0;
  for (std::size_t k = 0; k < A.size(); ++k)
    float_mismatches += Af[k] != static_cast<float>(A[k]);
  CHECK(float_mismatches == 0);

  // Without residual lines only the convolutions remain.
  auto plain_shape = shape;
  plain_shape.residual = false;
  auto Ap = resnet_like_matrix<double>(plain_shape, 9);
  CHECK(Ap.nnz() == model.A().nnz() - (layers[2].size() + layers[4].size() / 5 * 3 +
                                       layers[6].size() + layers[8].size() / 6 * 5));
}

TEST_CASE("Default ResNet-like model has ResNet20's size, is feed-forward and keeps "
          "activations of order one",
          "[generate]") {
  // One model for all checks: building it takes about a second.
  const auto model = resnet_like_model<double>();
  const auto &A = dynamic_cast<const CsrMatrix<double> &>(model.A());
  const auto layers = test_layers(ResNetLikeShape{});
  REQUIRE(layers.size() == 19);
  REQUIRE(A.rows() == 188416);
  REQUIRE(A.cols() == 188416);
  CHECK(A.nnz() > 35'000'000);
  CHECK(A.nnz() < 42'000'000);
  CHECK_FALSE(A.wide_indices());
  // Strictly block lower triangular: each row of a layer reads only earlier
  // layers, the first layer reads nothing (its input arrives through B).
  const auto rp = A.row_ptr();
  const auto cols = A.col_idx32();
  std::size_t bad = 0;
  index_t min_row_nnz = A.nnz(), max_row_nnz = 0;
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (index_t i = layers[l].offset; i < layers[l].offset + layers[l].size(); ++i) {
      if (l == 0) {
        bad += rp[i + 1] != rp[i];
        continue;
      }
      min_row_nnz = std::min<index_t>(min_row_nnz, rp[i + 1] - rp[i]);
      max_row_nnz = std::max<index_t>(max_row_nnz, rp[i + 1] - rp[i]);
      if (rp[i + 1] > rp[i])
        bad += cols[rp[i + 1] - 1] >= layers[l].offset ||
               cols[rp[i]] < (l >= 2 ? layers[l - 2].offset : layers[l - 1].offset);
    }
  CHECK(bad == 0);
  CHECK(min_row_nnz == 4 * 16); // corner of a stage-1 layer: 2x2 taps
  CHECK(max_row_nnz == 64 * 9 + 1);

  // Activations stay of order one through the 19 layers.
  const auto U = random_batch<double>(model.inputs(), 1, 2);
  std::vector<double> u(static_cast<std::size_t>(model.inputs())), bu(model.states());
  U.get_column(0, u);
  model.B().apply(Mode::normal, 1.0, std::span<const double>(u), 0.0,
                  std::span<double>(bu));
  // One forward sweep in state order solves a strictly lower triangular A.
  const auto vals = A.values();
  std::vector<double> x(static_cast<std::size_t>(model.states()));
  for (index_t i = 0; i < model.states(); ++i) {
    double z = bu[i] + model.bias_x()[i];
    for (auto k = rp[i]; k < rp[i + 1]; ++k)
      z += vals[k] * x[cols[k]];
    x[i] = std::max(z, 0.0);
  }
  for (const auto &b : model.blocks()) {
    double s2 = 0;
    for (index_t i = b.offset; i < b.offset + b.size; ++i)
      s2 += x[i] * x[i];
    const double rms = std::sqrt(s2 / static_cast<double>(b.size));
    INFO(b.name << " rms " << rms);
    CHECK(rms > 0.1);
    CHECK(rms < 3.0);
  }
}

TEMPLATE_TEST_CASE("Random implicit model has the requested norm and shape", "[generate]",
                   float, double) {
  for (double target : {0.9, 0.5, 2.0}) {
    auto model = random_implicit_model<TestType>(500, 30, 7, 12, target, 3);
    CHECK(model.states() == 500);
    CHECK(model.inputs() == 30);
    CHECK(model.outputs() == 7);
    CHECK(norm_inf(model.A()) == static_cast<double>(static_cast<TestType>(target)));
    const auto A = model.A().to_csr();
    index_t short_rows = 0;
    for (index_t i = 0; i < 500; ++i)
      short_rows += A.row_ptr()[i + 1] - A.row_ptr()[i] != 12;
    CHECK(short_rows == 0);
    // Row sums vary (the matrix is not just rescaled rows).
    const auto sums = A.row_abs_sums();
    CHECK(*std::min_element(sums.begin(), sums.end()) < 0.9 * target);
    CHECK(model.B().nnz() == 500 * 4);
    CHECK(model.C().nnz() == 7 * 32);
  }
  // Truly implicit: the pattern has cycles, so the states cannot be ordered
  // feed-forward (some entry on or above the diagonal).
  auto model = random_implicit_model<double>(200, 10, 3, 5, 0.9, 1);
  const auto A = model.A().to_csr();
  bool upper = false;
  for (index_t i = 0; i < 200; ++i)
    for (auto k = A.row_ptr()[i]; k < A.row_ptr()[i + 1]; ++k)
      upper |= A.column(k) >= i;
  CHECK(upper);
  // Rows longer than the matrix is wide are capped.
  auto tiny = random_implicit_model<double>(3, 2, 1, 10, 0.5, 1);
  CHECK(tiny.A().nnz() == 9);
  CHECK(norm_inf(tiny.A()) == 0.5);
}

TEST_CASE("Generators reject bad shapes", "[generate]") {
  ResNetLikeShape s;
  s.stage_layers = {7, 6};
  CHECK_THROWS_WITH(resnet_like_matrix<double>(s), Catch::Contains("stage_layers"));
  s = {};
  s.image = 6;
  CHECK_THROWS_WITH(resnet_like_matrix<double>(s), Catch::Contains("cannot be halved"));
  s = {};
  s.stage_channels = {16, 0, 64};
  CHECK_THROWS_WITH(resnet_like_matrix<double>(s), Catch::Contains("stage 2"));
  CHECK_THROWS_AS(random_implicit_model<double>(0, 1, 1), InvalidArgument);
  CHECK_THROWS_WITH(random_implicit_model<double>(10, 1, 1, 4, -1.0),
                    Catch::Contains("norm_inf"));
}
