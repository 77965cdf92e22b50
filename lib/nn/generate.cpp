#include <tacit/nn/generate.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "core/detail/huge_pages.hpp"

namespace tacit::inline v1 {

namespace {

// ---------------------------------------------------------------------------
// Random numbers. Own generators (splitmix64 to seed, xoshiro256** to draw)
// and own conversions to real numbers, so the same seed gives the same bits
// with every compiler and standard library. Independent streams are keyed by
// (seed, stream id), which lets rows or columns be generated in parallel in
// any order.

std::uint64_t splitmix64(std::uint64_t &state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Rng {
public:
  Rng(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t sm = seed ^ (0x6a09e667f3bcc909ULL * (stream + 1));
    // Mix the stream id in twice so that nearby streams start far apart.
    splitmix64(sm);
    sm ^= stream * 0xd1b54a32d192ed03ULL;
    for (auto &w : s_)
      w = splitmix64(sm);
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  /// Uniform in [0, 1): 53 random bits.
  double uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [-a, a).
  double symmetric(double a) { return a * (2.0 * uniform01() - 1.0); }
  /// Uniform integer in [0, bound) (bound > 0), by rejection: no modulo bias.
  std::uint64_t below(std::uint64_t bound) {
    const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % bound);
    std::uint64_t r;
    do
      r = next();
    while (r >= limit);
    return r % bound;
  }

private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// Stream ids: disjoint ranges per purpose.
constexpr std::uint64_t stream_conv = 1ULL << 40;   // + layer
constexpr std::uint64_t stream_bias = 2ULL << 40;   // + layer
constexpr std::uint64_t stream_dense = 3ULL << 40;  // classifier
constexpr std::uint64_t stream_rows_a = 4ULL << 40; // + row
constexpr std::uint64_t stream_rows_b = 5ULL << 40; // + row
constexpr std::uint64_t stream_rows_c = 6ULL << 40; // + row
constexpr std::uint64_t stream_batch = 7ULL << 40;  // + column

// ---------------------------------------------------------------------------
// ResNet-like layout.

/// One layer of states: channels x image x image, states ordered
/// (channel, row, column), starting at `offset`.
struct Layer {
  index_t channels = 0;
  index_t image = 0;
  index_t offset = 0;
  index_t stage = 0;
  index_t size() const { return channels * image * image; }
  index_t state(index_t c, index_t y, index_t x) const {
    return offset + (c * image + y) * image + x;
  }
};

std::vector<Layer> layers_of(const ResNetLikeShape &shape) {
  auto bad = [](const std::string &what) {
    throw InvalidArgument("ResNet-like shape: " + what);
  };
  if (shape.image < 1)
    bad("image size must be >= 1, got " + std::to_string(shape.image));
  if (shape.input_channels < 1)
    bad("input_channels must be >= 1, got " + std::to_string(shape.input_channels));
  if (shape.classes < 1)
    bad("classes must be >= 1, got " + std::to_string(shape.classes));
  if (shape.stage_channels.empty() ||
      shape.stage_channels.size() != shape.stage_layers.size())
    bad("stage_channels (" + std::to_string(shape.stage_channels.size()) +
        " stages) and stage_layers (" + std::to_string(shape.stage_layers.size()) +
        " stages) must be non-empty and of equal length");
  std::vector<Layer> layers;
  index_t image = shape.image, offset = 0;
  for (std::size_t s = 0; s < shape.stage_channels.size(); ++s) {
    if (shape.stage_channels[s] < 1 || shape.stage_layers[s] < 1)
      bad("stage " + std::to_string(s + 1) + " needs >= 1 channel and >= 1 layer, got " +
          std::to_string(shape.stage_channels[s]) + " channels, " +
          std::to_string(shape.stage_layers[s]) + " layers");
    if (s > 0) {
      if (image % 2 != 0)
        bad("image size " + std::to_string(image) + " at stage " + std::to_string(s + 1) +
            " cannot be halved");
      image /= 2;
    }
    for (index_t l = 0; l < shape.stage_layers[s]; ++l) {
      layers.push_back({shape.stage_channels[s], image, offset, static_cast<index_t>(s)});
      offset += layers.back().size();
    }
  }
  return layers;
}

/// Number of taps of a 3x3 window (padding 1) that fall inside [0, in):
/// output position o, stride s.
index_t taps(index_t o, index_t stride, index_t in) {
  index_t count = 0;
  for (index_t d = 0; d < 3; ++d) {
    const index_t i = o * stride + d - 1;
    count += (i >= 0 && i < in) ? 1 : 0;
  }
  return count;
}

/// A 3x3 convolution from `in` (a layer or the input image) to `out`.
struct Conv {
  index_t in_channels = 0, in_image = 0, in_offset = 0;
  index_t stride = 1;
  std::vector<double> weight; // [out_c][in_c][3][3]
  std::vector<double> bias;   // [out_c]
};

Conv make_conv(index_t in_channels, index_t in_image, index_t in_offset, const Layer &out,
               std::uint64_t seed, std::uint64_t layer_id, double gain) {
  Conv conv{in_channels, in_image, in_offset, in_image / out.image, {}, {}};
  const index_t fan_in = in_channels * 9;
  const double a = gain * std::sqrt(3.0 / static_cast<double>(fan_in));
  Rng rng(seed, stream_conv + layer_id);
  conv.weight.resize(static_cast<std::size_t>(out.channels * fan_in));
  for (auto &w : conv.weight)
    w = rng.symmetric(a);
  Rng brng(seed, stream_bias + layer_id);
  conv.bias.resize(static_cast<std::size_t>(out.channels));
  for (auto &b : conv.bias)
    b = brng.symmetric(0.1);
  return conv;
}

/// Residual source for a layer: identity from the layer two back when the
/// shapes agree, strided identity onto the first channels when the image
/// halves (option-A shortcut), none otherwise.
struct Residual {
  bool present = false;
  const Layer *source = nullptr;
  index_t stride = 1;
};

Residual residual_of(const std::vector<Layer> &layers, std::size_t l, bool enabled) {
  // Residual lines close pairs of convolutions after the stem: layers 2, 4, 6...
  if (!enabled || l < 2 || l % 2 != 0)
    return {};
  const Layer &src = layers[l - 2], &dst = layers[l];
  if (src.channels == dst.channels && src.image == dst.image)
    return {true, &src, 1};
  if (src.channels <= dst.channels && src.image == 2 * dst.image)
    return {true, &src, 2};
  return {};
}

/// Entries of one output state's row of a convolution, in increasing column
/// order: (column, value) pairs passed to `emit`.
template <class Emit>
void conv_row(const Conv &conv, index_t co, index_t oy, index_t ox, Emit &&emit) {
  const index_t H = conv.in_image;
  for (index_t ci = 0; ci < conv.in_channels; ++ci) {
    const double *w = conv.weight.data() + (co * conv.in_channels + ci) * 9;
    for (index_t dy = 0; dy < 3; ++dy) {
      const index_t iy = oy * conv.stride + dy - 1;
      if (iy < 0 || iy >= H)
        continue;
      for (index_t dx = 0; dx < 3; ++dx) {
        const index_t ix = ox * conv.stride + dx - 1;
        if (ix < 0 || ix >= H)
          continue;
        emit(conv.in_offset + (ci * H + iy) * H + ix, w[dy * 3 + dx]);
      }
    }
  }
}

index_t conv_row_count(const Conv &conv, index_t oy, index_t ox) {
  return conv.in_channels * taps(oy, conv.stride, conv.in_image) *
         taps(ox, conv.stride, conv.in_image);
}

/// Builds a CSR matrix whose rows are produced independently: count(i) gives
/// row i's length, fill(i, cols, vals) writes it (columns increasing).
template <class T, class Count, class Fill>
CsrMatrix<T> build_rows(index_t rows, index_t cols, Count &&count, Fill &&fill) {
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(rows) + 1, 0);
  tbb::parallel_for(tbb::blocked_range<index_t>(0, rows, 2048),
                    [&](const tbb::blocked_range<index_t> &r) {
                      for (index_t i = r.begin(); i < r.end(); ++i)
                        row_ptr[i + 1] = count(i);
                    });
  std::partial_sum(row_ptr.begin(), row_ptr.end(), row_ptr.begin());
  const auto nnz = static_cast<std::size_t>(row_ptr[rows]);
  std::vector<std::int64_t> ci(nnz);
  std::vector<T> cv;
  detail::reserve_huge_pages(cv, nnz);
  cv.resize(nnz);
  tbb::parallel_for(tbb::blocked_range<index_t>(0, rows, 512),
                    [&](const tbb::blocked_range<index_t> &r) {
                      for (index_t i = r.begin(); i < r.end(); ++i)
                        fill(i, ci.data() + row_ptr[i], cv.data() + row_ptr[i]);
                    });
  return CsrMatrix<T>(rows, cols, std::move(row_ptr), ci, std::move(cv));
}

/// Layer index of state i (layers are contiguous and ordered).
std::size_t layer_index(const std::vector<Layer> &layers, index_t i) {
  auto it = std::upper_bound(layers.begin(), layers.end(), i,
                             [](index_t v, const Layer &L) { return v < L.offset; });
  return static_cast<std::size_t>(it - layers.begin()) - 1;
}

// Weight gains: uniform(-a, a) with a = gain * sqrt(3 / fan_in) has variance
// gain^2 / fan_in. A ReLU halves the second moment and every other layer adds
// back the residual line, so gain 1 keeps the activations of order one (rms
// between about 0.4 and 1) through the 19 layers of the default shape; the
// stem sees inputs in [-1, 1] (second moment 1/3) and gets a larger gain.
constexpr double conv_gain = 1.0;
constexpr double stem_gain = 1.7;

struct ResNetParts {
  std::vector<Layer> layers;
  std::vector<Conv> convs; // convs[l] feeds layer l; convs[0] reads the input
  index_t n = 0;
};

ResNetParts resnet_parts(const ResNetLikeShape &shape, std::uint64_t seed) {
  ResNetParts p;
  p.layers = layers_of(shape);
  p.n = p.layers.back().offset + p.layers.back().size();
  for (std::size_t l = 0; l < p.layers.size(); ++l) {
    if (l == 0)
      p.convs.push_back(make_conv(shape.input_channels, shape.image, 0, p.layers[0], seed,
                                  0, stem_gain));
    else
      p.convs.push_back(make_conv(p.layers[l - 1].channels, p.layers[l - 1].image,
                                  p.layers[l - 1].offset, p.layers[l], seed, l,
                                  conv_gain));
  }
  return p;
}

template <class T>
CsrMatrix<T> resnet_matrix(const ResNetParts &p, const ResNetLikeShape &shape) {
  auto locate = [&](index_t i) {
    const std::size_t l = layer_index(p.layers, i);
    const Layer &L = p.layers[l];
    const index_t local = i - L.offset, hw = L.image * L.image;
    return std::tuple{l, local / hw, (local % hw) / L.image, local % L.image};
  };
  auto count = [&](index_t i) -> std::int64_t {
    auto [l, c, y, x] = locate(i);
    if (l == 0)
      return 0;
    const Residual r = residual_of(p.layers, l, shape.residual);
    const bool res = r.present && c < r.source->channels;
    return conv_row_count(p.convs[l], y, x) + (res ? 1 : 0);
  };
  auto fill = [&](index_t i, std::int64_t *cols, T *vals) {
    auto [l, c, y, x] = locate(i);
    if (l == 0)
      return;
    const Residual r = residual_of(p.layers, l, shape.residual);
    // The source of the residual line (two layers back) precedes the
    // previous layer, so its column comes first.
    if (r.present && c < r.source->channels) {
      *cols++ = r.source->state(c, y * r.stride, x * r.stride);
      *vals++ = T(1);
    }
    conv_row(p.convs[l], c, y, x, [&](index_t col, double v) {
      *cols++ = col;
      *vals++ = static_cast<T>(v);
    });
  };
  return build_rows<T>(p.n, p.n, count, fill);
}

} // namespace

template <class T>
CsrMatrix<T> resnet_like_matrix(const ResNetLikeShape &shape, std::uint64_t seed) {
  return resnet_matrix<T>(resnet_parts(shape, seed), shape);
}

template <class T>
Model<T> resnet_like_model(const ResNetLikeShape &shape, std::uint64_t seed) {
  const ResNetParts p = resnet_parts(shape, seed);
  auto A = std::make_shared<CsrMatrix<T>>(resnet_matrix<T>(p, shape));
  const index_t n = p.n;
  const index_t inputs = shape.input_channels * shape.image * shape.image;

  // B: the stem convolution of the input image (rows of layer 0 only).
  const Layer &first = p.layers.front();
  const Conv &stem = p.convs.front();
  auto B = std::make_shared<CsrMatrix<T>>(build_rows<T>(
      n, inputs,
      [&](index_t i) -> std::int64_t {
        if (i >= first.size())
          return 0;
        const index_t local = i % (first.image * first.image);
        return conv_row_count(stem, local / first.image, local % first.image);
      },
      [&](index_t i, std::int64_t *cols, T *vals) {
        if (i >= first.size())
          return;
        const index_t hw = first.image * first.image, local = i % hw;
        conv_row(stem, i / hw, local / first.image, local % first.image,
                 [&](index_t col, double v) {
                   *cols++ = col;
                   *vals++ = static_cast<T>(v);
                 });
      }));

  // C: global average pool of the last layer, then a dense classifier,
  // folded into one q x n matrix: C[k, (c, y, x)] = W[k][c] / image^2.
  const Layer &last = p.layers.back();
  const index_t q = shape.classes, hw = last.image * last.image;
  std::vector<double> dense(static_cast<std::size_t>(q * last.channels));
  Rng drng(seed, stream_dense);
  const double a = std::sqrt(3.0 / static_cast<double>(last.channels));
  for (auto &w : dense)
    w = drng.symmetric(a);
  auto C = std::make_shared<CsrMatrix<T>>(build_rows<T>(
      q, n, [&](index_t) -> std::int64_t { return last.size(); },
      [&](index_t k, std::int64_t *cols, T *vals) {
        for (index_t s = 0; s < last.size(); ++s) {
          cols[s] = last.offset + s;
          vals[s] =
              static_cast<T>(dense[k * last.channels + s / hw] / static_cast<double>(hw));
        }
      }));

  // Per-channel biases (as batch normalisation folds into a convolution).
  std::vector<T> bias_x(static_cast<std::size_t>(n));
  for (std::size_t l = 0; l < p.layers.size(); ++l) {
    const Layer &L = p.layers[l];
    const index_t plane = L.image * L.image;
    for (index_t s = 0; s < L.size(); ++s)
      bias_x[L.offset + s] = static_cast<T>(p.convs[l].bias[s / plane]);
  }
  std::vector<T> bias_y(static_cast<std::size_t>(q));
  for (auto &b : bias_y)
    b = static_cast<T>(drng.symmetric(0.1));

  std::vector<StateBlock> blocks;
  std::vector<index_t> within(shape.stage_layers.size(), 0);
  for (const Layer &L : p.layers) {
    const index_t k = within[L.stage]++;
    blocks.push_back({"stage" + std::to_string(L.stage + 1) + ".conv" + std::to_string(k),
                      L.offset, L.size(), Activation{}});
  }
  return Model<T>(std::move(A), std::move(B), std::move(C), nullptr, std::move(bias_x),
                  std::move(bias_y), std::move(blocks));
}

namespace {

void check_implicit_arguments(index_t states, index_t inputs, index_t outputs,
                              index_t row_nnz, double norm_inf) {
  if (states < 1 || inputs < 1 || outputs < 1)
    throw InvalidArgument("random_implicit_model: states, inputs and outputs must be "
                          ">= 1, got " +
                          std::to_string(states) + ", " + std::to_string(inputs) + ", " +
                          std::to_string(outputs));
  if (row_nnz < 1)
    throw InvalidArgument("random_implicit_model: row_nnz must be >= 1, got " +
                          std::to_string(row_nnz));
  if (!(norm_inf > 0) || !std::isfinite(norm_inf))
    throw InvalidArgument("random_implicit_model: norm_inf must be positive and "
                          "finite, got " +
                          std::to_string(norm_inf));
}

/// Rows [begin, end) of a random sparse rows x cols matrix: each row
/// `per_row` distinct columns drawn uniformly (so the pattern has cycles and
/// diagonal entries), values uniform in [-scale, scale); row i from its own
/// stream, whatever the range.
CsrMatrix<double> random_sparse_rows(std::uint64_t seed, index_t begin, index_t end,
                                     index_t cols, index_t per_row, std::uint64_t stream,
                                     double scale) {
  per_row = std::min(per_row, cols);
  return build_rows<double>(
      end - begin, cols, [&](index_t) -> std::int64_t { return per_row; },
      [&](index_t local, std::int64_t *c, double *v) {
        const index_t i = begin + local;
        Rng rng(seed, stream + static_cast<std::uint64_t>(i));
        if (per_row * 2 > cols) {
          // Dense-ish row: choose by selection sampling (already sorted).
          index_t need = per_row, k = 0;
          for (index_t j = 0; j < cols && need > 0; ++j)
            if (rng.below(static_cast<std::uint64_t>(cols - j)) <
                static_cast<std::uint64_t>(need)) {
              c[k++] = j;
              --need;
            }
        } else {
          for (index_t k = 0; k < per_row;) {
            const auto j =
                static_cast<index_t>(rng.below(static_cast<std::uint64_t>(cols)));
            if (std::find(c, c + k, j) == c + k)
              c[k++] = j;
          }
          std::sort(c, c + per_row);
        }
        for (index_t k = 0; k < per_row; ++k)
          v[k] = scale * rng.symmetric(1.0);
      });
}

} // namespace

template <class T>
ImplicitModelPart<T> random_implicit_model_part(
    index_t states, index_t inputs, index_t outputs, index_t row_nnz, double norm_inf,
    std::uint64_t seed, index_t row_begin, index_t row_end, index_t out_begin,
    index_t out_end, const std::function<void(double &, index_t &)> &max_reduce) {
  check_implicit_arguments(states, inputs, outputs, row_nnz, norm_inf);
  if (row_begin < 0 || row_end < row_begin || row_end > states || out_begin < 0 ||
      out_end < out_begin || out_end > outputs)
    throw InvalidArgument(
        "random_implicit_model_part: states [" + std::to_string(row_begin) + ", " +
        std::to_string(row_end) + ") and outputs [" + std::to_string(out_begin) + ", " +
        std::to_string(out_end) + ") must lie in [0, " + std::to_string(states) +
        "] and [0, " + std::to_string(outputs) + "]");
  ImplicitModelPart<T> part;
  part.A =
      random_sparse_rows(seed, row_begin, row_end, states, row_nnz, stream_rows_a, 1.0)
          .template cast<T>();
  {
    // Scale to the requested norm, then make the largest row hit it exactly
    // (row sums formed in storage order in T, as row_abs_sums does).
    const T target = static_cast<T>(norm_inf);
    const auto rp = part.A.row_ptr();
    auto vals = part.A.mutable_values();
    auto row_sum = [&](index_t i) {
      T s = 0;
      for (auto k = rp[i]; k < rp[i + 1]; ++k)
        s += std::abs(vals[k]);
      return s;
    };
    const auto sums = part.A.row_abs_sums();
    double largest = -std::numeric_limits<double>::infinity();
    index_t top = row_end;
    if (!sums.empty()) {
      const auto local = std::max_element(sums.begin(), sums.end()) - sums.begin();
      largest = static_cast<double>(sums[local]);
      top = row_begin + static_cast<index_t>(local);
    }
    if (max_reduce)
      max_reduce(largest, top);
    const double factor = norm_inf / largest;
    for (auto &v : vals)
      v = static_cast<T>(static_cast<double>(v) * factor);
    for (index_t i = 0; i < row_end - row_begin; ++i)
      while (row_sum(i) > target) // rounding pushed the row over: shrink it
        for (auto k = rp[i]; k < rp[i + 1]; ++k)
          vals[k] *= T(1) - std::numeric_limits<T>::epsilon();
    // The last entry of the largest row absorbs what rounding took off.
    if (top >= row_begin && top < row_end) {
      const auto b = rp[top - row_begin], e = rp[top - row_begin + 1];
      T partial = 0;
      for (auto k = b; k + 1 < e; ++k)
        partial += std::abs(vals[k]);
      vals[e - 1] = std::copysign(target - partial, vals[e - 1]);
    }
  }
  const index_t b_row = std::min<index_t>(inputs, 4);
  const index_t c_row = std::min<index_t>(states, 32);
  part.B = random_sparse_rows(seed, row_begin, row_end, inputs, b_row, stream_rows_b,
                              1.0 / std::sqrt(double(b_row)))
               .template cast<T>();
  part.C = random_sparse_rows(seed, out_begin, out_end, states, c_row, stream_rows_c,
                              1.0 / std::sqrt(double(c_row)))
               .template cast<T>();
  // b: one stream over all states, drawn in order up to the part.
  part.bias_x.resize(static_cast<std::size_t>(row_end - row_begin));
  Rng brng(seed, stream_bias);
  for (index_t i = 0; i < row_begin; ++i)
    brng.next();
  for (auto &b : part.bias_x)
    b = static_cast<T>(brng.symmetric(0.1));
  return part;
}

CsrMatrix<double> random_implicit_pattern(index_t states, index_t row_nnz,
                                          std::uint64_t seed, index_t row_begin,
                                          index_t row_end) {
  check_implicit_arguments(states, 1, 1, row_nnz, 1.0);
  if (row_begin < 0 || row_end < row_begin || row_end > states)
    throw InvalidArgument("random_implicit_pattern: rows [" + std::to_string(row_begin) +
                          ", " + std::to_string(row_end) + ") must lie in [0, " +
                          std::to_string(states) + "]");
  return random_sparse_rows(seed, row_begin, row_end, states, row_nnz, stream_rows_a,
                            1.0);
}

template <class T>
Model<T> random_implicit_model(index_t states, index_t inputs, index_t outputs,
                               index_t row_nnz, double norm_inf, std::uint64_t seed) {
  auto part = random_implicit_model_part<T>(states, inputs, outputs, row_nnz, norm_inf,
                                            seed, 0, states, 0, outputs);
  return Model<T>(std::make_shared<CsrMatrix<T>>(std::move(part.A)),
                  std::make_shared<CsrMatrix<T>>(std::move(part.B)),
                  std::make_shared<CsrMatrix<T>>(std::move(part.C)), nullptr,
                  std::move(part.bias_x));
}

template <class T>
Batch<T> random_batch(index_t rows, index_t cols, std::uint64_t seed,
                      index_t slab_width) {
  Batch<T> batch(rows, cols, slab_width);
  tbb::parallel_for(index_t(0), cols, [&](index_t j) {
    Rng rng(seed, stream_batch + static_cast<std::uint64_t>(j));
    const index_t s = j / slab_width, w = j % slab_width;
    auto slab = batch.slab(s);
    for (index_t i = 0; i < rows; ++i)
      slab(i, w) = static_cast<T>(rng.symmetric(1.0));
  });
  return batch;
}

template CsrMatrix<float> resnet_like_matrix<float>(const ResNetLikeShape &,
                                                    std::uint64_t);
template CsrMatrix<double> resnet_like_matrix<double>(const ResNetLikeShape &,
                                                      std::uint64_t);
template Model<float> resnet_like_model<float>(const ResNetLikeShape &, std::uint64_t);
template Model<double> resnet_like_model<double>(const ResNetLikeShape &, std::uint64_t);
template Model<float> random_implicit_model<float>(index_t, index_t, index_t, index_t,
                                                   double, std::uint64_t);
template Model<double> random_implicit_model<double>(index_t, index_t, index_t, index_t,
                                                     double, std::uint64_t);
template ImplicitModelPart<float>
random_implicit_model_part<float>(index_t, index_t, index_t, index_t, double,
                                  std::uint64_t, index_t, index_t, index_t, index_t,
                                  const std::function<void(double &, index_t &)> &);
template ImplicitModelPart<double>
random_implicit_model_part<double>(index_t, index_t, index_t, index_t, double,
                                   std::uint64_t, index_t, index_t, index_t, index_t,
                                   const std::function<void(double &, index_t &)> &);
template Batch<float> random_batch<float>(index_t, index_t, std::uint64_t, index_t);
template Batch<double> random_batch<double>(index_t, index_t, std::uint64_t, index_t);

} // namespace tacit::inline v1
