// NetworkBuilder and resnet20 against an independent reference forward pass
// written here with plain loops (convolution, batch norm, ReLU, add, pooling,
// dense) in double; structured solves against CSR sweeps of the same
// matrices; well-posedness from the structure; native-file round trips.
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

using namespace tacit;
using namespace tacit_test;

namespace {

// ------------------------------------------------------------ reference

using Vec = std::vector<double>;

struct Ref {
  TensorShape s;
  Vec v; // one sample, CHW
};

Vec random_vec(std::mt19937 &rng, std::size_t n, double scale = 1.0) {
  std::uniform_real_distribution<double> u(-scale, scale);
  Vec v(n);
  for (auto &x : v)
    x = u(rng);
  return v;
}

Ref ref_conv(const Ref &x, const Conv2dGeometry &g, const Vec &w, const Vec &b) {
  const TensorShape o = g.output();
  Ref y{o, Vec(static_cast<std::size_t>(o.size()), 0.0)};
  const index_t cin_g = g.input.channels / g.groups, cout_g = g.out_channels / g.groups;
  for (index_t co = 0; co < o.channels; ++co)
    for (index_t oh = 0; oh < o.height; ++oh)
      for (index_t ow = 0; ow < o.width; ++ow) {
        double sum = b.empty() ? 0.0 : b[co];
        for (index_t c = 0; c < cin_g; ++c)
          for (index_t kh = 0; kh < g.kernel_h; ++kh)
            for (index_t kw = 0; kw < g.kernel_w; ++kw) {
              const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
              const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
              if (ih < 0 || ih >= x.s.height || iw < 0 || iw >= x.s.width)
                continue;
              const index_t ci = (co / cout_g) * cin_g + c;
              sum += w[((co * cin_g + c) * g.kernel_h + kh) * g.kernel_w + kw] *
                     x.v[(ci * x.s.height + ih) * x.s.width + iw];
            }
        y.v[(co * o.height + oh) * o.width + ow] = sum;
      }
  return y;
}

Ref ref_bn(Ref x, const Vec &gamma, const Vec &beta, const Vec &mean, const Vec &var,
           double eps) {
  const index_t plane = x.s.height * x.s.width;
  for (index_t c = 0; c < x.s.channels; ++c)
    for (index_t k = 0; k < plane; ++k) {
      double &v = x.v[c * plane + k];
      v = gamma[c] * (v - mean[c]) / std::sqrt(var[c] + eps) + beta[c];
    }
  return x;
}

Ref ref_relu(Ref x) {
  for (auto &v : x.v)
    v = std::max(v, 0.0);
  return x;
}

Ref ref_add(Ref a, const Ref &b) {
  for (std::size_t i = 0; i < a.v.size(); ++i)
    a.v[i] += b.v[i];
  return a;
}

Ref ref_global_pool(const Ref &x) {
  const index_t plane = x.s.height * x.s.width;
  Ref y{{x.s.channels, 1, 1}, Vec(static_cast<std::size_t>(x.s.channels), 0.0)};
  for (index_t c = 0; c < x.s.channels; ++c) {
    double sum = 0;
    for (index_t k = 0; k < plane; ++k)
      sum += x.v[c * plane + k];
    y.v[c] = sum / static_cast<double>(plane);
  }
  return y;
}

Ref ref_avg_pool2(const Ref &x) { // 2x2, stride 2, no padding
  Ref y{{x.s.channels, x.s.height / 2, x.s.width / 2}, {}};
  y.v.assign(static_cast<std::size_t>(y.s.size()), 0.0);
  for (index_t c = 0; c < y.s.channels; ++c)
    for (index_t h = 0; h < y.s.height; ++h)
      for (index_t w = 0; w < y.s.width; ++w) {
        double s = 0;
        for (index_t a = 0; a < 2; ++a)
          for (index_t b = 0; b < 2; ++b)
            s += x.v[(c * x.s.height + 2 * h + a) * x.s.width + 2 * w + b];
        y.v[(c * y.s.height + h) * y.s.width + w] = s / 4;
      }
  return y;
}

Ref ref_dense(const Ref &x, index_t out, const Vec &w, const Vec &b) {
  const index_t in = x.s.size();
  Ref y{{out, 1, 1}, Vec(static_cast<std::size_t>(out), 0.0)};
  for (index_t i = 0; i < out; ++i) {
    double s = b.empty() ? 0.0 : b[i];
    for (index_t j = 0; j < in; ++j)
      s += w[i * in + j] * x.v[j];
    y.v[i] = s;
  }
  return y;
}

Ref ref_pad(const Ref &x, index_t out_channels, index_t stride, index_t front) {
  Ref y{{out_channels, (x.s.height + stride - 1) / stride,
         (x.s.width + stride - 1) / stride},
        {}};
  y.v.assign(static_cast<std::size_t>(y.s.size()), 0.0);
  for (index_t c = 0; c < x.s.channels; ++c)
    for (index_t h = 0; h < y.s.height; ++h)
      for (index_t w = 0; w < y.s.width; ++w)
        y.v[((c + front) * y.s.height + h) * y.s.width + w] =
            x.v[(c * x.s.height + h * stride) * x.s.width + w * stride];
  return y;
}

// ------------------------------------------------------------ networks

/// A network described once, evaluated both through NetworkBuilder<T> and
/// through the reference.
struct BnParams {
  Vec gamma, beta, mean, var;
};

BnParams random_bn(std::mt19937 &rng, index_t c) {
  std::uniform_real_distribution<double> g(0.5, 1.5), b(-0.3, 0.3), m(-0.5, 0.5),
      v(0.5, 2.0);
  BnParams p;
  for (index_t k = 0; k < c; ++k) {
    p.gamma.push_back(g(rng));
    p.beta.push_back(b(rng));
    p.mean.push_back(m(rng));
    p.var.push_back(v(rng));
  }
  return p;
}

template <class T> std::vector<T> cast(const Vec &v) {
  return std::vector<T>(v.begin(), v.end());
}

Conv2dGeometry geom(TensorShape in, index_t out, index_t k, index_t stride, index_t pad) {
  Conv2dGeometry g;
  g.input = in;
  g.out_channels = out;
  g.kernel_h = g.kernel_w = k;
  g.stride_h = g.stride_w = stride;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = pad;
  return g;
}

struct ConvSpec {
  Conv2dGeometry g;
  Vec w, b;
  BnParams bn;
};

ConvSpec random_conv(std::mt19937 &rng, TensorShape in, index_t out, index_t k,
                     index_t stride, bool bias) {
  ConvSpec c;
  c.g = geom(in, out, k, stride, k / 2);
  const double scale = std::sqrt(2.0 / static_cast<double>(in.channels * k * k));
  c.w = random_vec(rng, static_cast<std::size_t>(out * in.channels * k * k), scale * 1.7);
  if (bias)
    c.b = random_vec(rng, static_cast<std::size_t>(out), 0.2);
  c.bn = random_bn(rng, out);
  return c;
}

/// Mini ResNet (1 basic block per stage) with option A or B.
struct MiniResNet {
  TensorShape input{3, 8, 8};
  ConvSpec stem;
  struct Block {
    ConvSpec c1, c2, proj;
    index_t out = 0, stride = 1;
    bool identity = true;
  };
  std::vector<Block> blocks;
  Vec fc_w, fc_b;
  bool option_b = false;
  index_t classes = 5;

  MiniResNet(bool b, std::uint32_t seed) : option_b(b) {
    std::mt19937 rng(seed);
    stem = random_conv(rng, input, 4, 3, 1, false);
    TensorShape s{4, 8, 8};
    const index_t channels[3] = {4, 8, 16};
    for (int k = 0; k < 3; ++k) {
      Block blk;
      blk.out = channels[k];
      blk.stride = k > 0 ? 2 : 1;
      blk.identity = k == 0;
      blk.c1 = random_conv(rng, s, blk.out, 3, blk.stride, false);
      const TensorShape o = blk.c1.g.output();
      blk.c2 = random_conv(rng, o, blk.out, 3, 1, false);
      if (!blk.identity && option_b)
        blk.proj = random_conv(rng, s, blk.out, 1, blk.stride, false);
      s = o;
      blocks.push_back(blk);
    }
    fc_w = random_vec(rng, static_cast<std::size_t>(classes * 16), 0.5);
    fc_b = random_vec(rng, static_cast<std::size_t>(classes), 0.1);
  }

  Vec reference(const Vec &u) const {
    auto cbn = [](const Ref &x, const ConvSpec &c) {
      return ref_bn(ref_conv(x, c.g, c.w, c.b), c.bn.gamma, c.bn.beta, c.bn.mean,
                    c.bn.var, 1e-5);
    };
    Ref x = ref_relu(cbn(Ref{input, u}, stem));
    for (const auto &blk : blocks) {
      const Ref h = ref_relu(cbn(x, blk.c1));
      const Ref o = cbn(h, blk.c2);
      Ref sc = blk.identity ? x
               : option_b   ? cbn(x, blk.proj)
                          : ref_pad(x, blk.out, blk.stride, (blk.out - x.s.channels) / 2);
      x = ref_relu(ref_add(o, sc));
    }
    return ref_dense(ref_global_pool(x), classes, fc_w, fc_b).v;
  }

  template <class T> Model<T> build() const {
    NetworkBuilder<T> net;
    auto cbn = [&](index_t x, const ConvSpec &c) {
      const auto y = net.conv2d(x, c.g, cast<T>(c.w), cast<T>(c.b));
      return net.batch_norm(y, cast<T>(c.bn.gamma), cast<T>(c.bn.beta),
                            cast<T>(c.bn.mean), cast<T>(c.bn.var), 1e-5);
    };
    const Activation relu{ActivationKind::relu};
    auto x = net.activation(cbn(net.input(input), stem), relu, "stem");
    for (const auto &blk : blocks) {
      const auto h = net.activation(cbn(x, blk.c1), relu);
      const auto o = cbn(h, blk.c2);
      const auto sc = blk.identity ? x
                      : option_b   ? cbn(x, blk.proj)
                                   : net.channel_pad(x, blk.out, blk.stride,
                                                     (blk.out - net.shape(x).channels) / 2);
      x = net.activation(net.add(o, sc), relu);
    }
    const auto y = net.dense(net.flatten(net.global_avg_pool(x)), classes, cast<T>(fc_w),
                             cast<T>(fc_b));
    return net.build(y);
  }
};

template <class T> Batch<T> to_batch(const std::vector<Vec> &cols, index_t rows) {
  Batch<T> U(rows, static_cast<index_t>(cols.size()));
  for (std::size_t j = 0; j < cols.size(); ++j)
    for (index_t i = 0; i < rows; ++i)
      U(i, static_cast<index_t>(j)) = static_cast<T>(cols[j][i]);
  return U;
}

double max_rel_diff(const Batch<double> &Y, const std::vector<Vec> &ref) {
  double worst = 0;
  for (std::size_t j = 0; j < ref.size(); ++j) {
    double scale = 0;
    for (double v : ref[j])
      scale = std::max(scale, std::abs(v));
    for (index_t i = 0; i < Y.rows(); ++i)
      worst = std::max(worst, std::abs(Y(i, static_cast<index_t>(j)) - ref[j][i]) /
                                  std::max(scale, 1e-300));
  }
  return worst;
}

template <class T> Model<T> csr_copy(const Model<T> &m) {
  auto conv = [](const LinearOperator<T> *op) -> OperatorPtr<T> {
    if (!op)
      return nullptr;
    return std::make_shared<CsrMatrix<T>>(op->to_csr());
  };
  return Model<T>(conv(&m.A()), conv(&m.B()), conv(&m.C()), conv(m.D()),
                  std::vector<T>(m.bias_x().begin(), m.bias_x().end()),
                  std::vector<T>(m.bias_y().begin(), m.bias_y().end()), m.blocks());
}

std::vector<Vec> random_inputs(std::uint32_t seed, index_t p, int count) {
  std::mt19937 rng(seed);
  std::vector<Vec> u;
  for (int k = 0; k < count; ++k)
    u.push_back(random_vec(rng, static_cast<std::size_t>(p)));
  return u;
}

} // namespace

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

TEST_CASE("Native format: structured models round trip bitwise; damage is rejected",
          "[network][io]") {
  ScratchDir dir;
  const MiniResNet net(true, 3);
  const Model<float> model = net.build<float>();
  const auto path = dir / "mini.tacit";
  save_model_native(model, path);
  const Model<float> back = load_model_native<float>(path);
  CHECK(back.A().kind() == "block");
  CHECK(back.B().kind() == "block");
  const auto *A = dynamic_cast<const BlockOperator<float> *>(&model.A());
  const auto *A2 = dynamic_cast<const BlockOperator<float> *>(&back.A());
  REQUIRE(A2);
  CHECK(A2->entries().size() == A->entries().size());
  CHECK(back.blocks() == model.blocks());
  const Batch<float> U =
      to_batch<float>(random_inputs(3, net.input.size(), 3), net.input.size());
  Batch<float> X1, Y1, X2, Y2;
  EquilibriumSolver<float>(model).predict(U, X1, Y1);
  EquilibriumSolver<float>(back).predict(U, X2, Y2);
  CHECK(std::memcmp(X1.storage().data(), X2.storage().data(), X1.bytes()) == 0);
  CHECK(std::memcmp(Y1.storage().data(), Y2.storage().data(), Y1.bytes()) == 0);
  // The CSR matrices are the same bits.
  const auto a1 = model.A().to_csr(), a2 = back.A().to_csr();
  REQUIRE(a1.nnz() == a2.nnz());
  CHECK(std::memcmp(a1.values().data(), a2.values().data(), a1.values().size_bytes()) ==
        0);
  // Read as double: converted, still structured.
  CHECK(load_model_native<double>(path).A().kind() == "block");

  const std::string good = read_text(path);
  CHECK(good.size() < 200000);
  std::uint32_t version = 0;
  std::memcpy(&version, good.data() + 8, 4);
  CHECK(version == 2);
  for (const std::size_t cut : {good.size() - 1, good.size() / 2, std::size_t(100)}) {
    CAPTURE(cut);
    CHECK_THROWS_WITH(parse_model_native<float>(good.substr(0, cut), "cut.tacit"),
                      Catch::Contains("cut.tacit") && Catch::Contains("truncated"));
  }
  auto bad = good;
  bad[good.size() / 2] ^= 0x20;
  CHECK_THROWS_WITH(parse_model_native<float>(bad, "bad.tacit"),
                    Catch::Contains("CRC mismatch") && Catch::Contains("corrupt"));
}

TEST_CASE("Native format: ResNet20 file is about the size of its weights",
          "[network][io]") {
  ScratchDir dir;
  const Model<float> model = resnet20<float>();
  const auto path = dir / "resnet20.tacit";
  save_model_native(model, path);
  const auto size = std::filesystem::file_size(path);
  CHECK(size < 300000 * sizeof(float) + 200000); // weights + the dense classifier
  const Model<float> back = load_model_native<float>(path);
  CHECK(back.states() == 188416);
  const Batch<float> U = resnet20_inputs<float>(1);
  Batch<float> X1, Y1, X2, Y2;
  EquilibriumSolver<float>(model).predict(U, X1, Y1);
  EquilibriumSolver<float>(back).predict(U, X2, Y2);
  CHECK(std::memcmp(Y1.storage().data(), Y2.storage().data(), Y1.bytes()) == 0);
}
