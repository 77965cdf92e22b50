// Identity, diagonal, channel padding, average pooling, dense, composed and
// block operators (the convolution is in conv.cpp).
#include <tacit/core/csr.hpp>
#include <tacit/operators/structured.hpp>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>
#include <string>

#include "operators/detail/gemm_plan.hpp"
#include "operators/detail/operator_kernels.hpp"

namespace tacit::inline v1 {

namespace detail {

/// Lazily built CSR matrices (the explicit product of a composed operator,
/// the sums of block entries sharing a block), built once under a lock.
template <class T> struct BlockCache {
  std::mutex mutex;
  std::vector<std::unique_ptr<CsrMatrix<T>>> items;
  template <class Build> const CsrMatrix<T> &get(std::size_t i, Build &&build) {
    std::lock_guard lock(mutex);
    if (items.size() <= i)
      items.resize(i + 1);
    if (!items[i])
      items[i] = std::make_unique<CsrMatrix<T>>(build());
    return *items[i];
  }
};

} // namespace detail

namespace {

std::string shape_str(const TensorShape &s) {
  return std::to_string(s.channels) + " x " + std::to_string(s.height) + " x " +
         std::to_string(s.width);
}

void check_shape(const TensorShape &s, const char *what) {
  if (s.channels < 1 || s.height < 1 || s.width < 1)
    throw InvalidArgument(std::string(what) + ": shape " + shape_str(s) +
                          " must have positive channels, height and width");
}

/// floor(a / b) for b > 0 and any sign of a.
index_t floor_div(index_t a, index_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/// Products through the tap description: forward taps for normal/abs, adjoint
/// taps for transpose/abs_transpose.
template <class T, class Fwd, class Adj>
void tap_apply(const LinearOperator<T> &op, Mode mode, T alpha, ConstMatrixView<T> x,
               T beta, MatrixView<T> y, Execution exec, index_t grain, const Fwd &fwd,
               const Adj &adj) {
  const index_t out = is_transposed(mode) ? op.cols() : op.rows();
  switch (mode) {
  case Mode::normal:
    return detail::gather_rows<false>(exec, out, alpha, x, beta, y, grain, fwd);
  case Mode::abs:
    return detail::gather_rows<true>(exec, out, alpha, x, beta, y, grain, fwd);
  case Mode::transpose:
    return detail::gather_rows<false>(exec, out, alpha, x, beta, y, grain, adj);
  case Mode::abs_transpose:
    return detail::gather_rows<true>(exec, out, alpha, x, beta, y, grain, adj);
  }
}

/// Grain (rows per task) so that a task does about 16k multiply-adds.
index_t grain_for(std::int64_t taps_per_row, index_t cols) {
  const std::int64_t work =
      std::max<std::int64_t>(1, taps_per_row * std::max<index_t>(1, cols));
  return static_cast<index_t>(std::clamp<std::int64_t>(16384 / work, 1, 4096));
}

} // namespace

// ---------------------------------------------------------------- geometry

TensorShape Conv2dGeometry::output() const {
  const index_t oh =
      (input.height + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h +
      1;
  const index_t ow =
      (input.width + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w +
      1;
  return {out_channels, oh, ow};
}

void Conv2dGeometry::validate() const {
  auto bad = [](const std::string &field, index_t v, const char *why) {
    throw InvalidArgument("Conv2dGeometry: " + field + " = " + std::to_string(v) + " " +
                          why);
  };
  if (input.channels < 1)
    bad("input.channels", input.channels, "must be positive");
  if (input.height < 1)
    bad("input.height", input.height, "must be positive");
  if (input.width < 1)
    bad("input.width", input.width, "must be positive");
  if (out_channels < 1)
    bad("out_channels", out_channels, "must be positive");
  if (kernel_h < 1)
    bad("kernel_h", kernel_h, "must be positive");
  if (kernel_w < 1)
    bad("kernel_w", kernel_w, "must be positive");
  if (stride_h < 1)
    bad("stride_h", stride_h, "must be positive");
  if (stride_w < 1)
    bad("stride_w", stride_w, "must be positive");
  if (dilation_h < 1)
    bad("dilation_h", dilation_h, "must be positive");
  if (dilation_w < 1)
    bad("dilation_w", dilation_w, "must be positive");
  if (pad_top < 0)
    bad("pad_top", pad_top, "must not be negative");
  if (pad_left < 0)
    bad("pad_left", pad_left, "must not be negative");
  if (pad_bottom < 0)
    bad("pad_bottom", pad_bottom, "must not be negative");
  if (pad_right < 0)
    bad("pad_right", pad_right, "must not be negative");
  if (groups < 1)
    bad("groups", groups, "must be positive");
  if (input.channels % groups != 0)
    bad("groups", groups,
        ("must divide input.channels = " + std::to_string(input.channels)).c_str());
  if (out_channels % groups != 0)
    bad("groups", groups,
        ("must divide out_channels = " + std::to_string(out_channels)).c_str());
  if (input.height + pad_top + pad_bottom < dilation_h * (kernel_h - 1) + 1)
    bad("kernel_h", kernel_h, "(dilated) exceeds the padded input height: empty output");
  if (input.width + pad_left + pad_right < dilation_w * (kernel_w - 1) + 1)
    bad("kernel_w", kernel_w, "(dilated) exceeds the padded input width: empty output");
}

// ---------------------------------------------------------------- identity

template <class T>
IdentityOperator<T>::IdentityOperator(index_t n, T scale)
    : OperatorBase<IdentityOperator<T>, T>(n, n), scale_(scale) {}

template <class T>
void IdentityOperator<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                                  MatrixView<T> y, Execution exec) const {
  const T s = scale_;
  if (exec != Execution::reference) {
    auto coef = [s](index_t) { return s; };
    if (is_absolute(mode))
      return detail::scale_rows_by<true>(exec, this->rows(), alpha, x, beta, y, coef);
    return detail::scale_rows_by<false>(exec, this->rows(), alpha, x, beta, y, coef);
  }
  auto taps = [s](index_t i, auto &&f) { f(i, s); };
  tap_apply(*this, mode, alpha, x, beta, y, exec, grain_for(1, x.cols), taps, taps);
}
template <class T> std::vector<T> IdentityOperator<T>::diagonal_values() const {
  return std::vector<T>(static_cast<std::size_t>(this->rows()), scale_);
}
template <class T> void IdentityOperator<T>::row_abs_sums_into(std::span<T> out) const {
  std::fill(out.begin(), out.end(), std::abs(scale_));
}
template <class T> void IdentityOperator<T>::col_abs_sums_into(std::span<T> out) const {
  std::fill(out.begin(), out.end(), std::abs(scale_));
}
template <class T> std::int64_t IdentityOperator<T>::nnz_count() const {
  return this->rows();
}
template <class T> CsrMatrix<T> IdentityOperator<T>::materialise() const {
  return CsrMatrix<T>::identity(this->rows(), scale_);
}
template <class T> std::optional<Entry> IdentityOperator<T>::first_non_finite() const {
  if (this->rows() > 0 && !std::isfinite(scale_))
    return Entry{0, 0};
  return std::nullopt;
}

// ---------------------------------------------------------------- diagonal

template <class T>
DiagonalOperator<T>::DiagonalOperator(std::vector<T> d)
    : OperatorBase<DiagonalOperator<T>, T>(static_cast<index_t>(d.size()),
                                           static_cast<index_t>(d.size())),
      diagonal_(std::move(d)) {}

template <class T>
void DiagonalOperator<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                                  MatrixView<T> y, Execution exec) const {
  const T *d = diagonal_.data();
  if (exec != Execution::reference) {
    auto coef = [d](index_t i) { return d[i]; };
    if (is_absolute(mode))
      return detail::scale_rows_by<true>(exec, this->rows(), alpha, x, beta, y, coef);
    return detail::scale_rows_by<false>(exec, this->rows(), alpha, x, beta, y, coef);
  }
  auto taps = [d](index_t i, auto &&f) { f(i, d[i]); };
  tap_apply(*this, mode, alpha, x, beta, y, exec, grain_for(1, x.cols), taps, taps);
}
template <class T> void DiagonalOperator<T>::row_abs_sums_into(std::span<T> out) const {
  for (std::size_t i = 0; i < diagonal_.size(); ++i)
    out[i] = std::abs(diagonal_[i]);
}
template <class T> void DiagonalOperator<T>::col_abs_sums_into(std::span<T> out) const {
  row_abs_sums_into(out);
}
template <class T> std::int64_t DiagonalOperator<T>::nnz_count() const {
  return this->rows();
}
template <class T> std::size_t DiagonalOperator<T>::storage_bytes() const {
  return diagonal_.size() * sizeof(T) + sizeof(*this);
}
template <class T> CsrMatrix<T> DiagonalOperator<T>::materialise() const {
  const T *d = diagonal_.data();
  return detail::tap_to_csr<T>(this->rows(), this->cols(),
                               [d](index_t i, auto &&f) { f(i, d[i]); });
}
template <class T> std::optional<Entry> DiagonalOperator<T>::first_non_finite() const {
  for (std::size_t i = 0; i < diagonal_.size(); ++i)
    if (!std::isfinite(diagonal_[i]))
      return Entry{static_cast<index_t>(i), static_cast<index_t>(i)};
  return std::nullopt;
}

// ---------------------------------------------------------------- channel pad

namespace {
struct PadTaps {
  TensorShape in, out;
  index_t stride, front;
  // Output row (co, oh, ow) <- input (co - front, oh*stride, ow*stride).
  template <class F> void fwd(index_t r, F &&f) const {
    const index_t plane = out.height * out.width;
    const index_t ci = r / plane - front;
    if (ci < 0 || ci >= in.channels)
      return;
    const index_t oh = (r % plane) / out.width, ow = r % out.width;
    f((ci * in.height + oh * stride) * in.width + ow * stride, 1.0);
  }
  template <class F> void adj(index_t r, F &&f) const {
    const index_t plane = in.height * in.width;
    const index_t ci = r / plane, h = (r % plane) / in.width, w = r % in.width;
    if (h % stride != 0 || w % stride != 0)
      return;
    f(((ci + front) * out.height + h / stride) * out.width + w / stride, 1.0);
  }
};
template <class T> auto typed_fwd(const PadTaps &p) {
  return [p](index_t i, auto &&f) { p.fwd(i, [&](index_t j, double w) { f(j, T(w)); }); };
}
template <class T> auto typed_adj(const PadTaps &p) {
  return [p](index_t i, auto &&f) { p.adj(i, [&](index_t j, double w) { f(j, T(w)); }); };
}
} // namespace

namespace {
TensorShape pad_output(const TensorShape &input, index_t out_channels, index_t stride,
                       index_t pad_front) {
  check_shape(input, "ChannelPadOperator");
  if (stride < 1)
    throw InvalidArgument("ChannelPadOperator: stride = " + std::to_string(stride) +
                          " must be positive");
  if (pad_front < 0 || pad_front + input.channels > out_channels)
    throw InvalidArgument(
        "ChannelPadOperator: pad_front = " + std::to_string(pad_front) + " with " +
        std::to_string(input.channels) +
        " input channels does not fit in out_channels = " + std::to_string(out_channels));
  return {out_channels, (input.height - 1) / stride + 1, (input.width - 1) / stride + 1};
}
} // namespace

template <class T>
ChannelPadOperator<T>::ChannelPadOperator(TensorShape input, index_t out_channels,
                                          index_t stride, index_t pad_front)
    : OperatorBase<ChannelPadOperator<T>, T>(
          pad_output(input, out_channels, stride, pad_front).size(), input.size()),
      input_(input), output_(pad_output(input, out_channels, stride, pad_front)),
      stride_(stride), pad_front_(pad_front) {}

template <class T>
void ChannelPadOperator<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                                    MatrixView<T> y, Execution exec) const {
  const PadTaps p{input_, output_, stride_, pad_front_};
  if (exec != Execution::reference && !is_transposed(mode)) {
    // Row copies per output channel (the taps all have weight 1, so |.| is
    // the same product): y = alpha * x(ci, oh*s, ow*s) + beta * y, or beta * y
    // on the padded channels.
    const index_t OH = output_.height, OW = output_.width, N = x.cols;
    const index_t grain = std::max<index_t>(1, 32768 / std::max<index_t>(1, OH * OW * N));
    detail::for_range(exec, output_.channels, grain, [&](index_t c0, index_t c1) {
      for (index_t co = c0; co < c1; ++co) {
        const index_t ci = co - pad_front_;
        const bool padded = ci < 0 || ci >= input_.channels;
        for (index_t oh = 0; oh < OH; ++oh)
          for (index_t ow = 0; ow < OW; ++ow) {
            T *__restrict yr = y.row((co * OH + oh) * OW + ow);
            if (padded) {
              detail::scale_in_place(yr, N, beta);
              continue;
            }
            detail::store_scaled(
                yr,
                x.row((ci * input_.height + oh * stride_) * input_.width + ow * stride_),
                N, alpha, beta);
          }
      }
    });
    return;
  }
  tap_apply(*this, mode, alpha, x, beta, y, exec, grain_for(1, x.cols), typed_fwd<T>(p),
            typed_adj<T>(p));
}
template <class T> void ChannelPadOperator<T>::row_abs_sums_into(std::span<T> out) const {
  const PadTaps p{input_, output_, stride_, pad_front_};
  detail::tap_abs_sums(this->rows(), out, 4096, typed_fwd<T>(p));
}
template <class T> void ChannelPadOperator<T>::col_abs_sums_into(std::span<T> out) const {
  const PadTaps p{input_, output_, stride_, pad_front_};
  detail::tap_abs_sums(this->cols(), out, 4096, typed_adj<T>(p));
}
template <class T> std::int64_t ChannelPadOperator<T>::nnz_count() const {
  return input_.channels * output_.height * output_.width;
}
template <class T> CsrMatrix<T> ChannelPadOperator<T>::materialise() const {
  const PadTaps p{input_, output_, stride_, pad_front_};
  return detail::tap_to_csr<T>(this->rows(), this->cols(), typed_fwd<T>(p));
}

// ---------------------------------------------------------------- average pooling

namespace {
struct PoolTaps {
  TensorShape in, out;
  index_t kh, kw, sh, sw, pt, pl;
  bool include_pad;

  void window(index_t o, index_t k, index_t s, index_t p, index_t n, index_t &lo,
              index_t &hi) const {
    const index_t start = o * s - p;
    lo = std::max<index_t>(start, 0);
    hi = std::min<index_t>(start + k, n);
  }
  double weight(index_t oh, index_t ow) const {
    if (include_pad)
      return 1.0 / static_cast<double>(kh * kw);
    index_t h0, h1, w0, w1;
    window(oh, kh, sh, pt, in.height, h0, h1);
    window(ow, kw, sw, pl, in.width, w0, w1);
    return 1.0 / static_cast<double>((h1 - h0) * (w1 - w0));
  }
  template <class T, class F> void fwd(index_t r, F &&f) const {
    const index_t plane = out.height * out.width;
    const index_t c = r / plane, oh = (r % plane) / out.width, ow = r % out.width;
    index_t h0, h1, w0, w1;
    window(oh, kh, sh, pt, in.height, h0, h1);
    window(ow, kw, sw, pl, in.width, w0, w1);
    const T wgt = static_cast<T>(weight(oh, ow));
    for (index_t h = h0; h < h1; ++h)
      for (index_t w = w0; w < w1; ++w)
        f((c * in.height + h) * in.width + w, wgt);
  }
  // Outputs o with o*s - p <= i < o*s - p + k.
  void range(index_t i, index_t k, index_t s, index_t p, index_t n, index_t &lo,
             index_t &hi) const {
    lo = std::max<index_t>(0, -floor_div(-(i + p - k + 1), s));
    hi = std::min<index_t>(n, floor_div(i + p, s) + 1);
  }
  template <class T, class F> void adj(index_t r, F &&f) const {
    const index_t plane = in.height * in.width;
    const index_t c = r / plane, h = (r % plane) / in.width, w = r % in.width;
    index_t oh0, oh1, ow0, ow1;
    range(h, kh, sh, pt, out.height, oh0, oh1);
    range(w, kw, sw, pl, out.width, ow0, ow1);
    for (index_t oh = oh0; oh < oh1; ++oh)
      for (index_t ow = ow0; ow < ow1; ++ow)
        f((c * out.height + oh) * out.width + ow, static_cast<T>(weight(oh, ow)));
  }
};

TensorShape pool_output(const TensorShape &input, index_t kh, index_t kw, index_t sh,
                        index_t sw, index_t pt, index_t pl, index_t pb, index_t pr) {
  check_shape(input, "AvgPool2dOperator");
  auto bad = [](const char *f, index_t v, const char *why) {
    throw InvalidArgument(std::string("AvgPool2dOperator: ") + f + " = " +
                          std::to_string(v) + " " + why);
  };
  if (kh < 1)
    bad("kernel_h", kh, "must be positive");
  if (kw < 1)
    bad("kernel_w", kw, "must be positive");
  if (sh < 1)
    bad("stride_h", sh, "must be positive");
  if (sw < 1)
    bad("stride_w", sw, "must be positive");
  if (pt < 0 || pt >= kh)
    bad("pad_top", pt, "must be in [0, kernel_h)");
  if (pb < 0 || pb >= kh)
    bad("pad_bottom", pb, "must be in [0, kernel_h)");
  if (pl < 0 || pl >= kw)
    bad("pad_left", pl, "must be in [0, kernel_w)");
  if (pr < 0 || pr >= kw)
    bad("pad_right", pr, "must be in [0, kernel_w)");
  if (input.height + pt + pb < kh)
    bad("kernel_h", kh, "exceeds the padded input height");
  if (input.width + pl + pr < kw)
    bad("kernel_w", kw, "exceeds the padded input width");
  return {input.channels, (input.height + pt + pb - kh) / sh + 1,
          (input.width + pl + pr - kw) / sw + 1};
}
} // namespace

template <class T>
AvgPool2dOperator<T>::AvgPool2dOperator(TensorShape input, index_t kh, index_t kw,
                                        index_t sh, index_t sw, index_t pt, index_t pl,
                                        index_t pb, index_t pr, bool cip)
    : OperatorBase<AvgPool2dOperator<T>, T>(
          pool_output(input, kh, kw, sh, sw, pt, pl, pb, pr).size(), input.size()),
      input_(input), output_(pool_output(input, kh, kw, sh, sw, pt, pl, pb, pr)), kh_(kh),
      kw_(kw), sh_(sh), sw_(sw), pt_(pt), pl_(pl), pb_(pb), pr_(pr),
      count_include_pad_(cip) {}

template <class T> AvgPool2dOperator<T> AvgPool2dOperator<T>::global(TensorShape input) {
  check_shape(input, "AvgPool2dOperator::global");
  return AvgPool2dOperator(input, input.height, input.width, 1, 1, 0, 0, 0, 0, false);
}

#define TACIT_POOL_TAPS                                                                  \
  const PoolTaps p{input_, output_, kh_, kw_, sh_, sw_, pt_, pl_, count_include_pad_};   \
  auto fwd = [&p](index_t i, auto &&f) { p.fwd<T>(i, f); };                              \
  auto adj = [&p](index_t i, auto &&f) { p.adj<T>(i, f); };                              \
  (void)fwd;                                                                             \
  (void)adj

template <class T>
void AvgPool2dOperator<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                                   MatrixView<T> y, Execution exec) const {
  TACIT_POOL_TAPS;
  tap_apply(*this, mode, alpha, x, beta, y, exec, grain_for(kh_ * kw_, x.cols), fwd, adj);
}
template <class T> void AvgPool2dOperator<T>::row_abs_sums_into(std::span<T> out) const {
  TACIT_POOL_TAPS;
  detail::tap_abs_sums(this->rows(), out, 1024, fwd);
}
template <class T> void AvgPool2dOperator<T>::col_abs_sums_into(std::span<T> out) const {
  TACIT_POOL_TAPS;
  detail::tap_abs_sums(this->cols(), out, 1024, adj);
}
template <class T> std::int64_t AvgPool2dOperator<T>::nnz_count() const {
  // Taps inside the image, per output channel: sum over output rows and
  // columns of the clipped window sizes (separable).
  TACIT_POOL_TAPS;
  std::int64_t rows = 0, cols = 0;
  for (index_t oh = 0; oh < output_.height; ++oh) {
    index_t lo, hi;
    p.window(oh, kh_, sh_, pt_, input_.height, lo, hi);
    rows += hi - lo;
  }
  for (index_t ow = 0; ow < output_.width; ++ow) {
    index_t lo, hi;
    p.window(ow, kw_, sw_, pl_, input_.width, lo, hi);
    cols += hi - lo;
  }
  return input_.channels * rows * cols;
}
template <class T> CsrMatrix<T> AvgPool2dOperator<T>::materialise() const {
  TACIT_POOL_TAPS;
  return detail::tap_to_csr<T>(this->rows(), this->cols(), fwd);
}
#undef TACIT_POOL_TAPS

// ---------------------------------------------------------------- dense

namespace {
index_t dense_rows(index_t rows, index_t cols, std::size_t size) {
  if (rows < 0 || cols < 0)
    throw InvalidArgument("DenseOperator: negative size " + std::to_string(rows) + " x " +
                          std::to_string(cols));
  if (static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols) != size)
    throw InvalidArgument("DenseOperator: " + std::to_string(size) +
                          " values given for a " + std::to_string(rows) + " x " +
                          std::to_string(cols) + " matrix");
  return rows;
}
} // namespace

template <class T>
DenseOperator<T>::DenseOperator(index_t rows, index_t cols, std::vector<T> d)
    : OperatorBase<DenseOperator<T>, T>(dense_rows(rows, cols, d.size()), cols),
      data_(std::move(d)) {}

#define TACIT_DENSE_TAPS                                                                 \
  const T *a = data_.data();                                                             \
  const index_t m = this->rows(), n = this->cols();                                      \
  auto fwd = [=](index_t i, auto &&f) {                                                  \
    for (index_t j = 0; j < n; ++j)                                                      \
      f(j, a[i * n + j]);                                                                \
  };                                                                                     \
  auto adj = [=](index_t j, auto &&f) {                                                  \
    for (index_t i = 0; i < m; ++i)                                                      \
      f(i, a[i * n + j]);                                                                \
  };                                                                                     \
  (void)fwd;                                                                             \
  (void)adj

template <class T>
void DenseOperator<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                               MatrixView<T> y, Execution exec) const {
  TACIT_DENSE_TAPS;
  const index_t inner = is_transposed(mode) ? m : n;
  if (exec == Execution::parallel && !is_absolute(mode)) {
    // The level's register-tiled kernel on row chunks (W or W^T by strides).
    const bool tr = is_transposed(mode);
    const index_t out = tr ? n : m, cols = x.cols;
    const index_t rs = tr ? 1 : n, cs = tr ? n : 1;
    const auto &kernel = detail::gemm_kernels().of<T>();
    detail::for_range(exec, out, grain_for(inner, cols), [&](index_t i0, index_t i1) {
      kernel.product(i0, i1, 0, cols, inner, a, rs, cs, x.data, x.ld, y.data, y.ld, alpha,
                     beta);
    });
    return;
  }
  tap_apply(*this, mode, alpha, x, beta, y, exec, grain_for(inner, x.cols), fwd, adj);
}
template <class T> void DenseOperator<T>::row_abs_sums_into(std::span<T> out) const {
  TACIT_DENSE_TAPS;
  detail::tap_abs_sums(m, out, grain_for(n, 1), fwd);
}
template <class T> void DenseOperator<T>::col_abs_sums_into(std::span<T> out) const {
  TACIT_DENSE_TAPS;
  detail::tap_abs_sums(n, out, grain_for(m, 1), adj);
}
template <class T> std::int64_t DenseOperator<T>::nnz_count() const {
  return this->rows() * this->cols();
}
template <class T> std::size_t DenseOperator<T>::storage_bytes() const {
  return data_.size() * sizeof(T) + sizeof(*this);
}
template <class T> CsrMatrix<T> DenseOperator<T>::materialise() const {
  TACIT_DENSE_TAPS;
  return detail::tap_to_csr<T>(m, n, fwd);
}
template <class T> std::optional<Entry> DenseOperator<T>::first_non_finite() const {
  TACIT_DENSE_TAPS;
  return detail::tap_find_non_finite(m, fwd);
}
#undef TACIT_DENSE_TAPS

// ---------------------------------------------------------------- composed

namespace {
template <class T>
index_t composed_rows(const OperatorPtr<T> &l, const OperatorPtr<T> &r) {
  if (!l || !r)
    throw InvalidArgument("ComposedOperator: null factor");
  if (l->cols() != r->rows())
    throw InvalidArgument("ComposedOperator: left is " + std::to_string(l->rows()) +
                          " x " + std::to_string(l->cols()) + ", right is " +
                          std::to_string(r->rows()) + " x " + std::to_string(r->cols()));
  return l->rows();
}

/// Sparse product L R (Gustavson, dense accumulator per row; columns sorted).
template <class T>
CsrMatrix<T> csr_product(const CsrMatrix<T> &L, const CsrMatrix<T> &R) {
  const index_t m = L.rows(), n = R.cols();
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(m) + 1, 0), cols;
  std::vector<T> vals, acc(static_cast<std::size_t>(n), T(0));
  std::vector<index_t> mark(static_cast<std::size_t>(n), -1), pattern;
  const auto lp = L.row_ptr(), rp = R.row_ptr();
  const auto lv = L.values(), rv = R.values();
  for (index_t i = 0; i < m; ++i) {
    pattern.clear();
    for (std::int64_t a = lp[i]; a < lp[i + 1]; ++a) {
      const index_t k = L.column(a);
      for (std::int64_t b = rp[k]; b < rp[k + 1]; ++b) {
        const index_t j = R.column(b);
        if (mark[j] != i) {
          mark[j] = i;
          acc[j] = T(0);
          pattern.push_back(j);
        }
        acc[j] += lv[a] * rv[b];
      }
    }
    std::sort(pattern.begin(), pattern.end());
    for (index_t j : pattern) {
      cols.push_back(j);
      vals.push_back(acc[j]);
    }
    row_ptr[i + 1] = static_cast<std::int64_t>(cols.size());
  }
  return CsrMatrix<T>(m, n, std::move(row_ptr), cols, std::move(vals));
}
} // namespace

template <class T>
ComposedOperator<T>::ComposedOperator(OperatorPtr<T> l, OperatorPtr<T> r)
    : OperatorBase<ComposedOperator<T>, T>(composed_rows(l, r), r->cols()),
      left_(std::move(l)), right_(std::move(r)),
      scratch_(std::make_shared<detail::ScratchPool<T>>()),
      cache_(std::make_shared<detail::BlockCache<T>>()) {}

template <class T> const CsrMatrix<T> &ComposedOperator<T>::explicit_product() const {
  return cache_->get(0, [&] { return csr_product(left_->to_csr(), right_->to_csr()); });
}

template <class T>
void ComposedOperator<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                                  MatrixView<T> y, Execution exec) const {
  if (is_absolute(mode))
    return explicit_product().apply(mode, alpha, x, beta, y, exec);
  const index_t mid = left_->cols(), k = x.cols;
  typename detail::ScratchPool<T>::Lease z(*scratch_, static_cast<std::size_t>(mid * k));
  MatrixView<T> zv{z.data(), mid, k, k};
  if (mode == Mode::normal) {
    right_->apply(Mode::normal, T(1), x, T(0), zv, exec);
    left_->apply(Mode::normal, alpha, zv, beta, y, exec);
  } else {
    left_->apply(Mode::transpose, T(1), x, T(0), zv, exec);
    right_->apply(Mode::transpose, alpha, zv, beta, y, exec);
  }
}
template <class T> void ComposedOperator<T>::row_abs_sums_into(std::span<T> out) const {
  const auto s = explicit_product().row_abs_sums();
  std::copy(s.begin(), s.end(), out.begin());
}
template <class T> void ComposedOperator<T>::col_abs_sums_into(std::span<T> out) const {
  const auto s = explicit_product().col_abs_sums();
  std::copy(s.begin(), s.end(), out.begin());
}
template <class T> std::int64_t ComposedOperator<T>::nnz_count() const {
  return explicit_product().nnz();
}
template <class T> std::size_t ComposedOperator<T>::storage_bytes() const {
  return left_->bytes() + right_->bytes() + sizeof(*this);
}
template <class T> CsrMatrix<T> ComposedOperator<T>::materialise() const {
  return explicit_product();
}
template <class T> std::optional<Entry> ComposedOperator<T>::first_non_finite() const {
  if (!left_->find_non_finite() && !right_->find_non_finite())
    return std::nullopt;
  return explicit_product().find_non_finite();
}

// ---------------------------------------------------------------- block

namespace {
template <class T> MatrixView<T> row_slice(MatrixView<T> v, index_t begin, index_t n) {
  return {v.data + begin * v.ld, n, v.cols, v.ld};
}
template <class T>
ConstMatrixView<T> row_slice(ConstMatrixView<T> v, index_t begin, index_t n) {
  return {v.data + begin * v.ld, n, v.cols, v.ld};
}
} // namespace

template <class T>
BlockOperator<T>::BlockOperator(std::vector<index_t> rs, std::vector<index_t> cs,
                                std::vector<BlockEntry<T>> e)
    : BlockOperator(BlockStructure<T>(std::move(rs), std::move(cs), std::move(e),
                                      "BlockOperator")) {}

template <class T>
BlockOperator<T>::BlockOperator(BlockStructure<T> blocks)
    : OperatorBase<BlockOperator<T>, T>(blocks.rows(), blocks.cols()),
      blocks_(std::move(blocks)), cache_(std::make_shared<detail::BlockCache<T>>()) {}

template <class T> const CsrMatrix<T> &BlockOperator<T>::group_sum(index_t g) const {
  return cache_->get(static_cast<std::size_t>(g), [&] {
    const auto &grp = blocks_.groups()[g];
    const auto entries = blocks_.entries();
    const auto &first = entries[grp.first];
    std::vector<Triplet<T>> t;
    for (index_t k = grp.first; k < grp.last; ++k) {
      const auto m = entries[k].op->to_csr();
      const auto rp = m.row_ptr();
      const auto v = m.values();
      for (index_t i = 0; i < m.rows(); ++i)
        for (std::int64_t a = rp[i]; a < rp[i + 1]; ++a)
          t.push_back({i, m.column(a), v[a]});
    }
    return CsrMatrix<T>::from_triplets(blocks_.row_block_size(first.block_row),
                                       blocks_.col_block_size(first.block_col), t);
  });
}

template <class T>
void BlockOperator<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                               MatrixView<T> y, Execution exec) const {
  const bool tr = is_transposed(mode), ab = is_absolute(mode);
  const index_t nblocks = tr ? col_blocks() : row_blocks();
  const auto entries = blocks_.entries();
  const auto groups = blocks_.groups();
  auto one_block = [&](index_t b) {
    const index_t out_off = tr ? col_offset(b) : row_offset(b);
    const index_t out_n = tr ? col_block_size(b) : row_block_size(b);
    if (out_n == 0)
      return;
    MatrixView<T> yb = row_slice(y, out_off, out_n);
    const std::span<const index_t> list = tr ? entries_in_col(b) : entries_in_row(b);
    if (list.empty()) {
      detail::scale_rows(yb, beta);
      return;
    }
    T b_now = beta;
    for (index_t e : list) {
      const auto &en = entries[e];
      const index_t in_blk = tr ? en.block_row : en.block_col;
      const index_t in_off = tr ? row_offset(in_blk) : col_offset(in_blk);
      const index_t in_n = tr ? row_block_size(in_blk) : col_block_size(in_blk);
      const ConstMatrixView<T> xb = row_slice(x, in_off, in_n);
      const index_t g = blocks_.group_of(e);
      const auto &grp = groups[g];
      if (ab && grp.last - grp.first > 1) {
        // |sum of the entries| is not the sum of their absolute values.
        if (e != grp.first)
          continue;
        group_sum(g).apply(mode, alpha, xb, b_now, yb, exec);
      } else {
        en.op->apply(mode, alpha, xb, b_now, yb, exec);
      }
      b_now = T(1);
    }
  };
  if (exec == Execution::reference) {
    for (index_t b = 0; b < nblocks; ++b)
      one_block(b);
  } else {
    tbb::parallel_for(tbb::blocked_range<index_t>(0, nblocks, 1),
                      [&](const tbb::blocked_range<index_t> &r) {
                        for (index_t b = r.begin(); b < r.end(); ++b)
                          one_block(b);
                      });
  }
}

template <class T> void BlockOperator<T>::row_abs_sums_into(std::span<T> out) const {
  const auto entries = blocks_.entries();
  const auto groups = blocks_.groups();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto &grp = groups[g];
    const auto &en = entries[grp.first];
    const auto s = grp.last - grp.first > 1
                       ? group_sum(static_cast<index_t>(g)).row_abs_sums()
                       : en.op->row_abs_sums();
    T *o = out.data() + row_offset(en.block_row);
    for (std::size_t i = 0; i < s.size(); ++i)
      o[i] += s[i];
  }
}
template <class T> void BlockOperator<T>::col_abs_sums_into(std::span<T> out) const {
  const auto entries = blocks_.entries();
  const auto groups = blocks_.groups();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto &grp = groups[g];
    const auto &en = entries[grp.first];
    const auto s = grp.last - grp.first > 1
                       ? group_sum(static_cast<index_t>(g)).col_abs_sums()
                       : en.op->col_abs_sums();
    T *o = out.data() + col_offset(en.block_col);
    for (std::size_t i = 0; i < s.size(); ++i)
      o[i] += s[i];
  }
}
template <class T> std::int64_t BlockOperator<T>::nnz_count() const {
  const auto entries = blocks_.entries();
  const auto groups = blocks_.groups();
  std::int64_t total = 0;
  for (std::size_t g = 0; g < groups.size(); ++g)
    total += groups[g].last - groups[g].first > 1
                 ? group_sum(static_cast<index_t>(g)).nnz()
                 : entries[groups[g].first].op->nnz();
  return total;
}
template <class T> std::size_t BlockOperator<T>::storage_bytes() const {
  std::vector<const LinearOperator<T> *> seen;
  std::size_t total = sizeof(*this) + blocks_.bytes();
  for (const auto &e : blocks_.entries()) {
    if (std::find(seen.begin(), seen.end(), e.op.get()) != seen.end())
      continue;
    seen.push_back(e.op.get());
    total += e.op->bytes();
  }
  return total;
}
template <class T> CsrMatrix<T> BlockOperator<T>::materialise() const {
  std::vector<Triplet<T>> t;
  for (const auto &en : blocks_.entries()) {
    const auto m = en.op->to_csr();
    const auto rp = m.row_ptr();
    const auto v = m.values();
    const index_t r0 = row_offset(en.block_row), c0 = col_offset(en.block_col);
    for (index_t i = 0; i < m.rows(); ++i)
      for (std::int64_t a = rp[i]; a < rp[i + 1]; ++a)
        t.push_back({r0 + i, c0 + m.column(a), v[a]});
  }
  return CsrMatrix<T>::from_triplets(this->rows(), this->cols(), t);
}
template <class T> std::optional<Entry> BlockOperator<T>::first_non_finite() const {
  const auto entries = blocks_.entries();
  const auto groups = blocks_.groups();
  std::optional<Entry> best;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto &en = entries[groups[g].first];
    const auto f = groups[g].last - groups[g].first > 1
                       ? group_sum(static_cast<index_t>(g)).find_non_finite()
                       : en.op->find_non_finite();
    if (!f)
      continue;
    const Entry e{f->row + row_offset(en.block_row), f->col + col_offset(en.block_col)};
    if (!best || e.row < best->row || (e.row == best->row && e.col < best->col))
      best = e;
  }
  return best;
}

// After a clone's parameters changed: the factors' and entries' caches and
// the explicit products built from them (the rest of Trainable is in
// trainable.cpp).
namespace {
template <class T> void notify_owned(const OperatorPtr<T> &op) {
  if (auto *t = capability<Trainable<T>>(const_cast<LinearOperator<T> &>(*op)))
    t->parameters_changed();
}
} // namespace
template <class T> void ComposedOperator<T>::parameters_changed() {
  if (owns_factors_) {
    notify_owned(left_);
    notify_owned(right_);
  }
  cache_ = std::make_shared<detail::BlockCache<T>>();
}
template <class T> void BlockOperator<T>::parameters_changed() {
  if (owns_entries_) {
    std::vector<const LinearOperator<T> *> done;
    for (const auto &e : blocks_.entries())
      if (std::find(done.begin(), done.end(), e.op.get()) == done.end()) {
        done.push_back(e.op.get());
        notify_owned(e.op);
      }
  }
  cache_ = std::make_shared<detail::BlockCache<T>>();
}

#define TACIT_INSTANTIATE(Class)                                                         \
  template class Class<float>;                                                           \
  template class Class<double>;
TACIT_INSTANTIATE(IdentityOperator)
TACIT_INSTANTIATE(DiagonalOperator)
TACIT_INSTANTIATE(ChannelPadOperator)
TACIT_INSTANTIATE(AvgPool2dOperator)
TACIT_INSTANTIATE(DenseOperator)
TACIT_INSTANTIATE(ComposedOperator)
TACIT_INSTANTIATE(BlockOperator)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
