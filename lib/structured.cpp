#include <tacit/csr.hpp>
#include <tacit/structured.hpp>

#include <string>

namespace tacit {

TensorShape Conv2dGeometry::output() const {
  const index_t oh =
      (input.height + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h +
      1;
  const index_t ow =
      (input.width + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w +
      1;
  return {out_channels, oh, ow};
}

void Conv2dGeometry::validate() const {}

namespace detail {
template <class T> struct ConvState {};
template <class T> struct ScratchPool {};
template <class T> struct BlockCache {};
} // namespace detail

#define TACIT_STUB(Class)                                                                \
  template <class T>                                                                     \
  void Class<T>::apply_impl(Mode, T, ConstMatrixView<T>, T, MatrixView<T>, Execution)    \
      const {                                                                            \
    throw Unsupported(#Class ": not implemented yet");                                   \
  }                                                                                      \
  template <class T> void Class<T>::row_abs_sums_impl(std::span<T>) const {              \
    throw Unsupported(#Class ": not implemented yet");                                   \
  }                                                                                      \
  template <class T> void Class<T>::col_abs_sums_impl(std::span<T>) const {              \
    throw Unsupported(#Class ": not implemented yet");                                   \
  }                                                                                      \
  template <class T> CsrMatrix<T> Class<T>::to_csr_impl() const {                        \
    throw Unsupported(#Class ": not implemented yet");                                   \
  }

TACIT_STUB(Conv2dOperator)
TACIT_STUB(IdentityOperator)
TACIT_STUB(DiagonalOperator)
TACIT_STUB(ChannelPadOperator)
TACIT_STUB(AvgPool2dOperator)
TACIT_STUB(DenseOperator)
TACIT_STUB(ComposedOperator)
TACIT_STUB(BlockOperator)

template <class T>
Conv2dOperator<T>::Conv2dOperator(Conv2dGeometry g, std::vector<T> weights)
    : LinearOperator<T>(g.output().size(), g.input.size()), geometry_(g),
      weights_(std::move(weights)) {}
template <class T> std::int64_t Conv2dOperator<T>::nnz_impl() const {
  return 0;
}
template <class T> std::size_t Conv2dOperator<T>::bytes_impl() const {
  return 0;
}
template <class T> std::optional<Entry> Conv2dOperator<T>::find_non_finite_impl() const {
  return std::nullopt;
}

template <class T>
IdentityOperator<T>::IdentityOperator(index_t n, T scale)
    : LinearOperator<T>(n, n), scale_(scale) {}
template <class T> std::int64_t IdentityOperator<T>::nnz_impl() const {
  return this->rows();
}
template <class T>
std::optional<Entry> IdentityOperator<T>::find_non_finite_impl() const {
  return std::nullopt;
}

template <class T>
DiagonalOperator<T>::DiagonalOperator(std::vector<T> d)
    : LinearOperator<T>(static_cast<index_t>(d.size()), static_cast<index_t>(d.size())),
      diagonal_(std::move(d)) {}
template <class T> std::int64_t DiagonalOperator<T>::nnz_impl() const {
  return this->rows();
}
template <class T> std::size_t DiagonalOperator<T>::bytes_impl() const {
  return 0;
}
template <class T>
std::optional<Entry> DiagonalOperator<T>::find_non_finite_impl() const {
  return std::nullopt;
}

template <class T>
ChannelPadOperator<T>::ChannelPadOperator(TensorShape input, index_t out_channels,
                                          index_t stride, index_t pad_front)
    : LinearOperator<T>(out_channels * ((input.height - 1) / stride + 1) *
                            ((input.width - 1) / stride + 1),
                        input.size()),
      input_(input), output_{out_channels, (input.height - 1) / stride + 1,
                             (input.width - 1) / stride + 1},
      stride_(stride), pad_front_(pad_front) {}
template <class T> std::int64_t ChannelPadOperator<T>::nnz_impl() const {
  return 0;
}

template <class T>
AvgPool2dOperator<T>::AvgPool2dOperator(TensorShape input, index_t kh, index_t kw,
                                        index_t sh, index_t sw, index_t pt, index_t pl,
                                        index_t pb, index_t pr, bool cip)
    : LinearOperator<T>(input.channels * ((input.height + pt + pb - kh) / sh + 1) *
                            ((input.width + pl + pr - kw) / sw + 1),
                        input.size()),
      input_(input), output_{input.channels, (input.height + pt + pb - kh) / sh + 1,
                             (input.width + pl + pr - kw) / sw + 1},
      kh_(kh), kw_(kw), sh_(sh), sw_(sw), pt_(pt), pl_(pl), pb_(pb), pr_(pr),
      count_include_pad_(cip) {}
template <class T> AvgPool2dOperator<T> AvgPool2dOperator<T>::global(TensorShape input) {
  return AvgPool2dOperator(input, input.height, input.width, 1, 1, 0, 0, 0, 0, false);
}
template <class T> std::int64_t AvgPool2dOperator<T>::nnz_impl() const {
  return 0;
}

template <class T>
DenseOperator<T>::DenseOperator(index_t rows, index_t cols, std::vector<T> d)
    : LinearOperator<T>(rows, cols), data_(std::move(d)) {}
template <class T> std::int64_t DenseOperator<T>::nnz_impl() const {
  return this->rows() * this->cols();
}
template <class T> std::size_t DenseOperator<T>::bytes_impl() const {
  return 0;
}
template <class T> std::optional<Entry> DenseOperator<T>::find_non_finite_impl() const {
  return std::nullopt;
}

template <class T>
ComposedOperator<T>::ComposedOperator(OperatorPtr<T> l, OperatorPtr<T> r)
    : LinearOperator<T>(l->rows(), r->cols()), left_(std::move(l)), right_(std::move(r)) {
}
template <class T> std::int64_t ComposedOperator<T>::nnz_impl() const {
  return 0;
}
template <class T> std::size_t ComposedOperator<T>::bytes_impl() const {
  return 0;
}
template <class T>
std::optional<Entry> ComposedOperator<T>::find_non_finite_impl() const {
  return std::nullopt;
}

template <class T>
BlockOperator<T>::BlockOperator(std::vector<index_t> rs, std::vector<index_t> cs,
                                std::vector<BlockEntry<T>> e)
    : LinearOperator<T>(0, 0), row_sizes_(std::move(rs)), col_sizes_(std::move(cs)),
      entries_(std::move(e)) {}
template <class T>
std::span<const index_t> BlockOperator<T>::entries_in_row(index_t) const {
  return {};
}
template <class T>
std::span<const index_t> BlockOperator<T>::entries_in_col(index_t) const {
  return {};
}
template <class T>
bool BlockOperator<T>::strictly_block_lower_triangular() const noexcept {
  return false;
}
template <class T> bool BlockOperator<T>::block_lower_triangular() const noexcept {
  return false;
}
template <class T> std::int64_t BlockOperator<T>::nnz_impl() const {
  return 0;
}
template <class T> std::size_t BlockOperator<T>::bytes_impl() const {
  return 0;
}
template <class T> std::optional<Entry> BlockOperator<T>::find_non_finite_impl() const {
  return std::nullopt;
}

#define TACIT_INSTANTIATE(Class)                                                         \
  template class Class<float>;                                                           \
  template class Class<double>;
TACIT_INSTANTIATE(Conv2dOperator)
TACIT_INSTANTIATE(IdentityOperator)
TACIT_INSTANTIATE(DiagonalOperator)
TACIT_INSTANTIATE(ChannelPadOperator)
TACIT_INSTANTIATE(AvgPool2dOperator)
TACIT_INSTANTIATE(DenseOperator)
TACIT_INSTANTIATE(ComposedOperator)
TACIT_INSTANTIATE(BlockOperator)

} // namespace tacit
