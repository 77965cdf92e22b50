// The CIFAR ResNet20 as an implicit model (see include/tacit/nn/network.hpp).
//
// Parameters are drawn in double from tacit's own generator (splitmix64;
// normal deviates from sums of uniforms, no transcendental functions), and
// the batch-norm statistics are calibrated: a forward pass in double on two
// deterministic images measures each convolution's per-channel mean and
// variance, which are then perturbed to become the running statistics. With
// gamma around 1 (around 0.45 on the last convolution of a residual block)
// every activation stays O(1) through the 19 ReLU layers. The parameters are
// cached per (shortcut, seed): the calibration runs once per process.

#include <tacit/nn/network.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace tacit::inline v1 {

namespace {

class SplitMix64 {
public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Approximately standard normal: (sum of 4 uniforms - 2) * sqrt(3).
  double normal() {
    double s = 0;
    for (int k = 0; k < 4; ++k)
      s += uniform();
    return (s - 2.0) * 1.7320508075688772;
  }

private:
  std::uint64_t state_;
};

constexpr double bn_epsilon = 1e-5;

struct ConvBn {
  Conv2dGeometry g;
  std::vector<double> w, gamma, beta, mean, var;
};

struct BasicBlock {
  ConvBn c1, c2;
  bool identity_shortcut = true;
  bool project = false; // option B
  ConvBn proj;
  index_t out_channels = 0, stride = 1;
};

struct ResNetParams {
  ConvBn stem;
  std::vector<BasicBlock> blocks;
  std::vector<double> fc_w, fc_b;
};

/// Samples x (C*H*W) activations, sample-major.
struct Tensor {
  TensorShape shape;
  index_t samples = 0;
  std::vector<double> v;
  double *sample(index_t s) { return v.data() + s * shape.size(); }
  const double *sample(index_t s) const { return v.data() + s * shape.size(); }
};

Conv2dGeometry conv_geometry(TensorShape in, index_t out, index_t k, index_t stride) {
  Conv2dGeometry g;
  g.input = in;
  g.out_channels = out;
  g.kernel_h = g.kernel_w = k;
  g.stride_h = g.stride_w = stride;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = k / 2;
  return g;
}

/// Direct convolution (groups = 1, dilation 1) of every sample.
Tensor convolve(const Conv2dGeometry &g, const std::vector<double> &w, const Tensor &x) {
  Tensor y;
  y.shape = g.output();
  y.samples = x.samples;
  y.v.assign(static_cast<std::size_t>(y.shape.size() * x.samples), 0.0);
  const index_t H = g.input.height, W = g.input.width, OH = y.shape.height,
                OW = y.shape.width, C = g.input.channels;
  for (index_t s = 0; s < x.samples; ++s) {
    const double *in = x.sample(s);
    double *out = y.sample(s);
    for (index_t o = 0; o < g.out_channels; ++o)
      for (index_t c = 0; c < C; ++c)
        for (index_t kh = 0; kh < g.kernel_h; ++kh)
          for (index_t kw = 0; kw < g.kernel_w; ++kw) {
            const double wv = w[((o * C + c) * g.kernel_h + kh) * g.kernel_w + kw];
            for (index_t oh = 0; oh < OH; ++oh) {
              const index_t ih = oh * g.stride_h - g.pad_top + kh;
              if (ih < 0 || ih >= H)
                continue;
              for (index_t ow = 0; ow < OW; ++ow) {
                const index_t iw = ow * g.stride_w - g.pad_left + kw;
                if (iw < 0 || iw >= W)
                  continue;
                out[(o * OH + oh) * OW + ow] += wv * in[(c * H + ih) * W + iw];
              }
            }
          }
  }
  return y;
}

/// He-initialised convolution followed by a calibrated batch norm (applied
/// to y in place).
void make_conv_bn(SplitMix64 &rng, ConvBn &cb, const Conv2dGeometry &g, const Tensor &x,
                  Tensor &y, double gamma_lo, double gamma_hi) {
  cb.g = g;
  const index_t fan_in = g.input.channels * g.kernel_h * g.kernel_w;
  const double scale = std::sqrt(2.0 / static_cast<double>(fan_in));
  cb.w.resize(static_cast<std::size_t>(g.out_channels * fan_in));
  for (auto &v : cb.w)
    v = scale * rng.normal();
  y = convolve(g, cb.w, x);
  const index_t C = y.shape.channels, plane = y.shape.height * y.shape.width;
  cb.gamma.resize(C);
  cb.beta.resize(C);
  cb.mean.resize(C);
  cb.var.resize(C);
  for (index_t c = 0; c < C; ++c) {
    double sum = 0, sq = 0;
    for (index_t s = 0; s < y.samples; ++s)
      for (index_t k = 0; k < plane; ++k) {
        const double v = y.sample(s)[c * plane + k];
        sum += v;
        sq += v * v;
      }
    const double count = static_cast<double>(plane * y.samples);
    const double m = sum / count;
    const double var = std::max(sq / count - m * m, 1e-4);
    cb.mean[c] = m + 0.2 * std::sqrt(var) * rng.normal();
    cb.var[c] = var * rng.uniform(0.75, 1.3);
    cb.gamma[c] = rng.uniform(gamma_lo, gamma_hi);
    cb.beta[c] = 0.1 * rng.normal();
    const double sc = cb.gamma[c] / std::sqrt(cb.var[c] + bn_epsilon);
    for (index_t s = 0; s < y.samples; ++s)
      for (index_t k = 0; k < plane; ++k) {
        double &v = y.sample(s)[c * plane + k];
        v = (v - cb.mean[c]) * sc + cb.beta[c];
      }
  }
}

void relu(Tensor &t) {
  for (auto &v : t.v)
    v = v > 0 ? v : 0;
}

Tensor pad_channels(const Tensor &x, index_t out_channels, index_t stride) {
  Tensor y;
  const index_t H = x.shape.height, W = x.shape.width;
  y.shape = {out_channels, (H + stride - 1) / stride, (W + stride - 1) / stride};
  y.samples = x.samples;
  y.v.assign(static_cast<std::size_t>(y.shape.size() * x.samples), 0.0);
  const index_t front = (out_channels - x.shape.channels) / 2;
  for (index_t s = 0; s < x.samples; ++s)
    for (index_t c = 0; c < x.shape.channels; ++c)
      for (index_t h = 0; h < y.shape.height; ++h)
        for (index_t w = 0; w < y.shape.width; ++w)
          y.sample(s)[((c + front) * y.shape.height + h) * y.shape.width + w] =
              x.sample(s)[(c * H + h * stride) * W + w * stride];
  return y;
}

std::vector<double> smooth_images(index_t count, std::uint64_t seed) {
  // A 5 x 5 grid of random values per channel, bilinearly interpolated to
  // 32 x 32, plus a little pixel noise.
  SplitMix64 rng(seed * 0x9e3779b97f4a7c15ull + 0x1234567ull);
  constexpr index_t C = 3, S = 32, G = 5;
  std::vector<double> out(static_cast<std::size_t>(count * C * S * S));
  for (index_t n = 0; n < count; ++n)
    for (index_t c = 0; c < C; ++c) {
      double grid[G][G];
      for (auto &row : grid)
        for (auto &v : row)
          v = rng.uniform(-1.6, 1.6);
      for (index_t h = 0; h < S; ++h)
        for (index_t w = 0; w < S; ++w) {
          const double gh = static_cast<double>(h) * (G - 1) / (S - 1);
          const double gw = static_cast<double>(w) * (G - 1) / (S - 1);
          const index_t h0 = std::min<index_t>(static_cast<index_t>(gh), G - 2);
          const index_t w0 = std::min<index_t>(static_cast<index_t>(gw), G - 2);
          const double fh = gh - static_cast<double>(h0),
                       fw = gw - static_cast<double>(w0);
          const double v = (1 - fh) * ((1 - fw) * grid[h0][w0] + fw * grid[h0][w0 + 1]) +
                           fh * ((1 - fw) * grid[h0 + 1][w0] + fw * grid[h0 + 1][w0 + 1]);
          out[((n * C + c) * S + h) * S + w] = v + 0.2 * rng.uniform(-1, 1);
        }
    }
  return out;
}

std::shared_ptr<const ResNetParams> make_params(ResNetShortcut shortcut,
                                                std::uint64_t seed) {
  auto p = std::make_shared<ResNetParams>();
  SplitMix64 rng(seed ^ 0x5eed5eed5eed5eedull);
  Tensor x;
  x.shape = {3, 32, 32};
  x.samples = 2;
  x.v = smooth_images(2, seed + 7);
  Tensor y;
  make_conv_bn(rng, p->stem, conv_geometry(x.shape, 16, 3, 1), x, y, 0.8, 1.2);
  relu(y);
  x = std::move(y);
  const index_t channels[3] = {16, 32, 64};
  for (int stage = 0; stage < 3; ++stage)
    for (int b = 0; b < 3; ++b) {
      BasicBlock blk;
      blk.out_channels = channels[stage];
      blk.stride = (stage > 0 && b == 0) ? 2 : 1;
      blk.identity_shortcut = blk.stride == 1 && x.shape.channels == blk.out_channels;
      blk.project = !blk.identity_shortcut && shortcut == ResNetShortcut::option_b;
      Tensor h, o;
      make_conv_bn(rng, blk.c1, conv_geometry(x.shape, blk.out_channels, 3, blk.stride),
                   x, h, 0.8, 1.2);
      relu(h);
      make_conv_bn(rng, blk.c2, conv_geometry(h.shape, blk.out_channels, 3, 1), h, o, 0.3,
                   0.6);
      Tensor sc;
      if (blk.identity_shortcut)
        sc = x;
      else if (blk.project)
        make_conv_bn(rng, blk.proj,
                     conv_geometry(x.shape, blk.out_channels, 1, blk.stride), x, sc, 0.4,
                     0.8);
      else
        sc = pad_channels(x, blk.out_channels, blk.stride);
      for (std::size_t i = 0; i < o.v.size(); ++i)
        o.v[i] += sc.v[i];
      relu(o);
      x = std::move(o);
      p->blocks.push_back(std::move(blk));
    }
  const index_t features = 64, classes = 10;
  p->fc_w.resize(static_cast<std::size_t>(classes * features));
  for (auto &v : p->fc_w)
    v = std::sqrt(1.0 / static_cast<double>(features)) * rng.normal();
  p->fc_b.resize(static_cast<std::size_t>(classes));
  for (auto &v : p->fc_b)
    v = 0.1 * rng.normal();
  return p;
}

std::shared_ptr<const ResNetParams> params(ResNetShortcut shortcut, std::uint64_t seed) {
  static std::mutex mutex;
  static std::map<std::pair<int, std::uint64_t>, std::shared_ptr<const ResNetParams>>
      cache;
  const std::pair<int, std::uint64_t> key{static_cast<int>(shortcut), seed};
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = cache.find(key); it != cache.end())
      return it->second;
  }
  auto p = make_params(shortcut, seed);
  std::lock_guard<std::mutex> lock(mutex);
  return cache.emplace(key, std::move(p)).first->second;
}

template <class T> std::vector<T> cast(const std::vector<double> &v) {
  return std::vector<T>(v.begin(), v.end());
}

template <class T>
typename NetworkBuilder<T>::Node
conv_bn(NetworkBuilder<T> &net, typename NetworkBuilder<T>::Node x, const ConvBn &cb) {
  const auto c = net.conv2d(x, cb.g, cast<T>(cb.w));
  return net.batch_norm(c, cast<T>(cb.gamma), cast<T>(cb.beta), cast<T>(cb.mean),
                        cast<T>(cb.var), bn_epsilon);
}

} // namespace

template <class T> Model<T> resnet20(ResNetShortcut shortcut, std::uint64_t seed) {
  const auto p = params(shortcut, seed);
  NetworkBuilder<T> net;
  const Activation relu_act{ActivationKind::relu};
  auto x = net.input({3, 32, 32});
  x = net.activation(conv_bn(net, x, p->stem), relu_act, "stem");
  for (std::size_t k = 0; k < p->blocks.size(); ++k) {
    const auto &blk = p->blocks[k];
    const std::string name =
        "stage" + std::to_string(k / 3 + 1) + ".block" + std::to_string(k % 3 + 1);
    const auto h = net.activation(conv_bn(net, x, blk.c1), relu_act, name + ".relu1");
    const auto o = conv_bn(net, h, blk.c2);
    typename NetworkBuilder<T>::Node sc;
    if (blk.identity_shortcut)
      sc = x;
    else if (blk.project)
      sc = conv_bn(net, x, blk.proj);
    else
      sc = net.channel_pad(x, blk.out_channels, blk.stride,
                           (blk.out_channels - net.shape(x).channels) / 2);
    x = net.activation(net.add(o, sc), relu_act, name + ".relu2");
  }
  const auto pooled = net.flatten(net.global_avg_pool(x));
  const auto y = net.dense(pooled, 10, cast<T>(p->fc_w), cast<T>(p->fc_b));
  return net.build(y);
}

template <class T>
Batch<T> resnet20_inputs(index_t count, std::uint64_t seed, index_t slab_width) {
  if (count < 0)
    throw InvalidArgument("resnet20_inputs: negative count " + std::to_string(count));
  const auto images = smooth_images(count, seed);
  Batch<T> U(3 * 32 * 32, count, slab_width);
  for (index_t j = 0; j < count; ++j)
    for (index_t i = 0; i < 3 * 32 * 32; ++i)
      U(i, j) = static_cast<T>(images[static_cast<std::size_t>(j * 3072 + i)]);
  return U;
}

template Model<float> resnet20<float>(ResNetShortcut, std::uint64_t);
template Model<double> resnet20<double>(ResNetShortcut, std::uint64_t);
template Batch<float> resnet20_inputs<float>(index_t, std::uint64_t, index_t);
template Batch<double> resnet20_inputs<double>(index_t, std::uint64_t, index_t);

} // namespace tacit::inline v1
