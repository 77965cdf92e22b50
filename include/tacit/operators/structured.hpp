#pragma once
/// \file structured.hpp
/// Structured operators: convolutions, pooling, channel padding, diagonal,
/// identity, dense, products of operators and block-partitioned operators.
///
/// Each is a `LinearOperator<T>` (T = float or double) that never stores the
/// equivalent sparse matrix: products, absolute-value products, transposed
/// products, row/column absolute sums and nnz are computed from the
/// structure; `to_csr()` materialises the matrix when asked.
///
/// Layout of feature maps. The state vector of one sample of a C x H x W
/// feature map is stored channel-major: index (c*H + h)*W + w, exactly
/// PyTorch's flatten order of one CHW sample. In a Batch / MatrixView
/// (row = state, column = sample) this is the CHWN layout: for every (c,h,w)
/// the samples of a slab are contiguous.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

/// Shape of one sample of a feature map: channels x height x width (a flat
/// vector of length n is n x 1 x 1).
struct TACIT_EXPORT TensorShape {
  index_t channels = 1, height = 1, width = 1;
  /// channels * height * width.
  index_t size() const noexcept { return channels * height * width; }
  friend bool operator==(const TensorShape &, const TensorShape &) = default;
};

/// Geometry of a 2-D convolution (NCHW semantics of PyTorch/ONNX for one
/// sample): out[co, oh, ow] = sum over ci in the group of co, kh, kw of
/// w[co, ci, kh, kw] * in[ci, oh*stride_h - pad_top + kh*dilation_h,
/// ow*stride_w - pad_left + kw*dilation_w] (taps outside the image read 0).
struct TACIT_EXPORT Conv2dGeometry {
  TensorShape input;
  index_t out_channels = 1;
  index_t kernel_h = 1, kernel_w = 1;
  index_t stride_h = 1, stride_w = 1;
  /// ONNX pads may be asymmetric.
  index_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  index_t dilation_h = 1, dilation_w = 1;
  index_t groups = 1;

  /// Output shape: out_channels x (H + pt + pb - dh*(kh-1) - 1)/sh + 1 x ...
  TensorShape output() const;
  /// \throws InvalidArgument naming the bad field (non-positive sizes,
  /// strides, dilations or groups, negative pads, channels not divisible by
  /// groups, empty output).
  void validate() const;
  friend bool operator==(const Conv2dGeometry &, const Conv2dGeometry &) = default;
};

namespace detail {
template <class T> struct ConvState;
template <class T> struct ScratchPool;
template <class T> struct BlockCache;
} // namespace detail

/// A 2-D convolution as an operator from input.size() to output().size()
/// states (rows = output().size(), cols = input.size()).
///
/// Modes: abs is the convolution with |kernel|; transpose is the adjoint
/// (transposed) convolution. Products with several columns run a direct
/// convolution on the CHWN layout (an implicit GEMM over a zero-padded,
/// stride-phase-split copy of the input) or im2col followed by a GEMM,
/// whichever was measured faster for the shape.
template <class T> class TACIT_EXPORT Conv2dOperator final : public LinearOperator<T> {
public:
  /// \param weights [out_channels][in_channels/groups][kernel_h][kernel_w].
  /// \throws InvalidArgument on a bad geometry or weight count.
  Conv2dOperator(Conv2dGeometry g, std::vector<T> weights);

  const Conv2dGeometry &geometry() const noexcept { return geometry_; }
  std::span<const T> weights() const noexcept { return weights_; }

  /// A network layer in one pass: y = phi(alpha * conv(x) + beta * y + bias +
  /// residual_scale * residual) (bias: one value per output row, or empty;
  /// residual: a matrix of y's shape, or empty, e.g. a ResNet skip
  /// connection), the bias, residual and activation applied as the products
  /// are stored rather than in further passes over y. Returns false when a
  /// value before the activation was NaN or infinite (phi may hide it: ReLU
  /// maps NaN to 0).
  /// \throws InvalidArgument as apply() does, or on a bias or residual of
  /// the wrong size.
  bool apply_activated(T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                       std::span<const T> bias, const Activation &phi,
                       Execution exec = Execution::parallel,
                       ConstMatrixView<T> residual = {}, T residual_scale = T(1)) const;

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override;
  std::string kind_impl() const override { return "conv2d"; }
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override;

  Conv2dGeometry geometry_;
  std::vector<T> weights_;
  std::shared_ptr<detail::ConvState<T>> state_;
};

/// y = scale * x (n x n).
template <class T> class TACIT_EXPORT IdentityOperator final : public LinearOperator<T> {
public:
  explicit IdentityOperator(index_t n, T scale = T(1));
  T scale() const noexcept { return scale_; }

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override { return sizeof(*this); }
  std::string kind_impl() const override { return "identity"; }
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override;

  T scale_;
};

/// y = diag(d) x (n x n). Every diagonal position is a structural entry.
template <class T> class TACIT_EXPORT DiagonalOperator final : public LinearOperator<T> {
public:
  explicit DiagonalOperator(std::vector<T> diagonal);
  std::span<const T> diagonal() const noexcept { return diagonal_; }

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override;
  std::string kind_impl() const override { return "diagonal"; }
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override;

  std::vector<T> diagonal_;
};

/// The option-A shortcut of CIFAR ResNets: spatial subsampling and zero
/// channel padding, out[c + pad_front, h, w] = in[c, h*stride, w*stride],
/// other output channels 0. Output shape: out_channels x ceil(H/stride) x
/// ceil(W/stride) (PyTorch's x[:, :, ::stride, ::stride]).
template <class T> class TACIT_EXPORT ChannelPadOperator final : public LinearOperator<T> {
public:
  /// \throws InvalidArgument unless stride >= 1, pad_front >= 0 and
  /// pad_front + input.channels <= out_channels.
  ChannelPadOperator(TensorShape input, index_t out_channels, index_t stride,
                     index_t pad_front);
  TensorShape input_shape() const noexcept { return input_; }
  TensorShape output_shape() const noexcept { return output_; }
  index_t stride() const noexcept { return stride_; }
  index_t pad_front() const noexcept { return pad_front_; }

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override { return sizeof(*this); }
  std::string kind_impl() const override { return "channel_pad"; }
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override { return std::nullopt; }

  TensorShape input_, output_;
  index_t stride_, pad_front_;
};

/// 2-D average pooling with ONNX AveragePool semantics (floor mode): each
/// output is the mean of the window's taps inside the image, divided by the
/// full window size when count_include_pad, else by the number of taps
/// inside. Global average pooling: kernel = the whole plane.
template <class T> class TACIT_EXPORT AvgPool2dOperator final : public LinearOperator<T> {
public:
  /// \throws InvalidArgument on non-positive kernel/stride, negative pads, a
  /// pad >= kernel size, or an empty output.
  AvgPool2dOperator(TensorShape input, index_t kernel_h, index_t kernel_w,
                    index_t stride_h, index_t stride_w, index_t pad_top, index_t pad_left,
                    index_t pad_bottom, index_t pad_right, bool count_include_pad);
  /// Global average pooling: C x H x W -> C x 1 x 1.
  static AvgPool2dOperator global(TensorShape input);

  TensorShape input_shape() const noexcept { return input_; }
  TensorShape output_shape() const noexcept { return output_; }

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override { return sizeof(*this); }
  std::string kind_impl() const override { return "avg_pool"; }
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override { return std::nullopt; }

  TensorShape input_, output_;
  index_t kh_, kw_, sh_, sw_, pt_, pl_, pb_, pr_;
  bool count_include_pad_;
};

/// A dense rows x cols matrix stored row-major.
template <class T> class TACIT_EXPORT DenseOperator final : public LinearOperator<T> {
public:
  /// \throws InvalidArgument unless row_major.size() == rows * cols.
  DenseOperator(index_t rows, index_t cols, std::vector<T> row_major);
  std::span<const T> data() const noexcept { return data_; }

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override;
  std::string kind_impl() const override { return "dense"; }
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override;

  std::vector<T> data_;
};

/// y = L (R x): a product kept unevaluated (e.g. a classifier after pooling).
/// Absolute-value products use |L R| (not |L||R|): the product is formed
/// explicitly (once, cached) for the abs modes, the absolute sums, nnz and
/// find_non_finite; plain and transposed products never form it.
template <class T> class TACIT_EXPORT ComposedOperator final : public LinearOperator<T> {
public:
  /// \throws InvalidArgument on a null factor or left.cols() != right.rows().
  ComposedOperator(OperatorPtr<T> left, OperatorPtr<T> right);
  const OperatorPtr<T> &left() const noexcept { return left_; }
  const OperatorPtr<T> &right() const noexcept { return right_; }

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override;
  std::string kind_impl() const override { return "composed"; }
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override;

  const CsrMatrix<T> &product() const;

  OperatorPtr<T> left_, right_;
  std::shared_ptr<detail::ScratchPool<T>> scratch_;
  std::shared_ptr<detail::BlockCache<T>> cache_;
};

/// One nonzero block of a BlockOperator. Several entries at the same
/// (block_row, block_col) are summed.
template <class T> struct TACIT_EXPORT BlockEntry {
  index_t block_row = 0, block_col = 0;
  OperatorPtr<T> op;
};

/// A matrix partitioned into row blocks and column blocks with a few nonzero
/// blocks (operators). Products run the block rows in parallel (block columns
/// for transposed products); within a block row the entries are applied in
/// entry order, so results do not depend on the thread count. Block rows
/// without entries only scale y by beta.
template <class T> class TACIT_EXPORT BlockOperator final : public LinearOperator<T> {
public:
  /// \throws InvalidArgument on a negative block size, an entry outside the
  /// partition, a null operator or an operator whose size differs from its
  /// block's.
  BlockOperator(std::vector<index_t> row_block_sizes,
                std::vector<index_t> col_block_sizes, std::vector<BlockEntry<T>> entries);

  index_t row_blocks() const noexcept { return static_cast<index_t>(row_sizes_.size()); }
  index_t col_blocks() const noexcept { return static_cast<index_t>(col_sizes_.size()); }
  /// First row of block row i (prefix sum; i == row_blocks() gives rows()).
  index_t row_offset(index_t i) const {
    return row_offsets_.at(static_cast<std::size_t>(i));
  }
  /// First column of block column j (j == col_blocks() gives cols()).
  index_t col_offset(index_t j) const {
    return col_offsets_.at(static_cast<std::size_t>(j));
  }
  index_t row_block_size(index_t i) const {
    return row_sizes_.at(static_cast<std::size_t>(i));
  }
  index_t col_block_size(index_t j) const {
    return col_sizes_.at(static_cast<std::size_t>(j));
  }

  /// The entries, sorted by (block_row, block_col) (stable: entries at the
  /// same block keep their given order).
  std::span<const BlockEntry<T>> entries() const noexcept { return entries_; }
  /// Indices into entries() of the entries of block row i.
  std::span<const index_t> entries_in_row(index_t i) const;
  /// Indices into entries() of the entries of block column j (ascending).
  std::span<const index_t> entries_in_col(index_t j) const;

  /// Same number and sizes of row and column blocks.
  bool square_partition() const noexcept { return row_sizes_ == col_sizes_; }
  /// For a square partition: true when every entry has block_col < block_row
  /// (strictly block lower triangular: feed-forward, lambda_PF(|A|) = 0).
  /// False for a non-square partition.
  bool strictly_block_lower_triangular() const noexcept;
  /// The same with block_col <= block_row (diagonal blocks allowed).
  bool block_lower_triangular() const noexcept;

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override;
  void row_abs_sums_impl(std::span<T> out) const override;
  void col_abs_sums_impl(std::span<T> out) const override;
  std::int64_t nnz_impl() const override;
  std::size_t bytes_impl() const override;
  std::string kind_impl() const override { return "block"; }
  CsrMatrix<T> to_csr_impl() const override;
  std::optional<Entry> find_non_finite_impl() const override;

  // Entries [first, last) of entries() sharing one block.
  struct Group {
    index_t first = 0, last = 0;
  };
  const CsrMatrix<T> &group_sum(index_t group) const;

  std::vector<index_t> row_sizes_, col_sizes_, row_offsets_, col_offsets_;
  std::vector<BlockEntry<T>> entries_;
  // entries_in_row(i) = order_[row_ptr_[i], row_ptr_[i+1]) (order_ = 0, 1, ...);
  // entries_in_col(j) = by_col_[col_ptr_[j], col_ptr_[j+1]).
  std::vector<index_t> order_, row_ptr_, by_col_, col_ptr_;
  std::vector<Group> groups_;
  std::vector<index_t> entry_group_; // group of each entry
  std::shared_ptr<detail::BlockCache<T>> cache_;
};

} // namespace tacit::inline v1
