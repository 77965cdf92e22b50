#pragma once
// A reference forward pass written with plain loops (convolution, batch norm,
// ReLU, add, pooling, dense) in double, and a mini ResNet built both by it
// and by NetworkBuilder: the independent reference of the network tests.

#include <tacit/nn/network.hpp>
#include <tacit/operators/structured.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace tacit_test::network {

using namespace tacit;

// ------------------------------------------------------------ reference

using Vec = std::vector<double>;

struct Ref {
  TensorShape s;
  Vec v; // one sample, CHW
};

inline Vec random_vec(std::mt19937 &rng, std::size_t n, double scale = 1.0) {
  std::uniform_real_distribution<double> u(-scale, scale);
  Vec v(n);
  for (auto &x : v)
    x = u(rng);
  return v;
}

inline Ref ref_conv(const Ref &x, const Conv2dGeometry &g, const Vec &w, const Vec &b) {
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

inline Ref ref_bn(Ref x, const Vec &gamma, const Vec &beta, const Vec &mean,
                  const Vec &var, double eps) {
  const index_t plane = x.s.height * x.s.width;
  for (index_t c = 0; c < x.s.channels; ++c)
    for (index_t k = 0; k < plane; ++k) {
      double &v = x.v[c * plane + k];
      v = gamma[c] * (v - mean[c]) / std::sqrt(var[c] + eps) + beta[c];
    }
  return x;
}

inline Ref ref_relu(Ref x) {
  for (auto &v : x.v)
    v = std::max(v, 0.0);
  return x;
}

inline Ref ref_add(Ref a, const Ref &b) {
  for (std::size_t i = 0; i < a.v.size(); ++i)
    a.v[i] += b.v[i];
  return a;
}

inline Ref ref_global_pool(const Ref &x) {
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

inline Ref ref_avg_pool2(const Ref &x) { // 2x2, stride 2, no padding
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

inline Ref ref_dense(const Ref &x, index_t out, const Vec &w, const Vec &b) {
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

inline Ref ref_pad(const Ref &x, index_t out_channels, index_t stride, index_t front) {
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

inline BnParams random_bn(std::mt19937 &rng, index_t c) {
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

inline Conv2dGeometry geom(TensorShape in, index_t out, index_t k, index_t stride,
                           index_t pad) {
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

inline ConvSpec random_conv(std::mt19937 &rng, TensorShape in, index_t out, index_t k,
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

inline double max_rel_diff(const Batch<double> &Y, const std::vector<Vec> &ref) {
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

inline std::vector<Vec> random_inputs(std::uint32_t seed, index_t p, int count) {
  std::mt19937 rng(seed);
  std::vector<Vec> u;
  for (int k = 0; k < count; ++k)
    u.push_back(random_vec(rng, static_cast<std::size_t>(p)));
  return u;
}

} // namespace tacit_test::network
