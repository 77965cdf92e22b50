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
///
/// Thread safety: every const member, products of every mode included, may be
/// called from several threads at once (caches built on first use, such as
/// the convolution's absolute and adjoint kernels or a composed operator's
/// explicit product, are made once under std::call_once or a lock). Changing
/// an operator's parameters (training, tacit/train/trainable.hpp) must not run
/// concurrently with any other call on it.

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <tacit/core/block_structure.hpp>
#include <tacit/core/capabilities.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/core/operator_base.hpp>

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
template <class T>
class TACIT_EXPORT Conv2dOperator final : public OperatorBase<Conv2dOperator<T>, T>,
                                          public FusedActivation<T>,
                                          public AccurateAbsSums<T>,
                                          public Foldable<T>,
                                          public Trainable<T> {
public:
  static constexpr std::string_view kind_name = "conv2d";

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
                       ConstMatrixView<T> residual = {},
                       T residual_scale = T(1)) const override;

  /// Absolute row or column sums from the kernel alone, in double: the taps
  /// of an output pixel that fall inside the image are a product of the
  /// valid kernel rows and the valid kernel columns, so each sum is at most
  /// kh * kw precomputed per-channel sums of |w| (no pass over the taps of
  /// every pixel).
  void add_abs_sums(bool rows, std::span<double> out) const override;

  /// diag(d) conv when d is constant over each output channel's plane: the
  /// convolution with its output channels scaled.
  OperatorPtr<T> scaled_rows(std::span<const T> d) const override;
  /// conv + other when other is a convolution of the same geometry.
  OperatorPtr<T> plus(const LinearOperator<T> &other) const override;

  // Trainable: "weight" [out_channels][in_channels / groups][kernel_h][kernel_w];
  // its gradient is the correlation of the input maps x with the adjoint maps
  // v, summed over the batch (a fast kernel per instruction-set level).
  std::vector<ParameterShape> parameter_shapes() const override;
  std::vector<std::span<T>> parameter_values() override;
  void parameters_changed() override;
  void accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                           std::span<const std::span<T>> grad,
                           Execution exec = Execution::parallel) const override;
  std::shared_ptr<LinearOperator<T>> clone() const override;
  /// {out_channels, height, width} of the output.
  std::optional<std::vector<index_t>> row_feature_map() const override;

private:
  friend OperatorBase<Conv2dOperator<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const;
  std::size_t storage_bytes() const;
  CsrMatrix<T> materialise() const;
  std::optional<Entry> first_non_finite() const;

  Conv2dGeometry geometry_;
  std::vector<T> weights_;
  std::shared_ptr<detail::ConvState<T>> state_;
};

/// y = scale * x (n x n).
template <class T>
class TACIT_EXPORT IdentityOperator final : public OperatorBase<IdentityOperator<T>, T>,
                                            public DiagonalForm<T> {
public:
  static constexpr std::string_view kind_name = "identity";
  explicit IdentityOperator(index_t n, T scale = T(1));
  T scale() const noexcept { return scale_; }

  std::vector<T> diagonal_values() const override;
  std::optional<T> identity_scale() const override { return scale_; }

private:
  friend OperatorBase<IdentityOperator<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const;
  CsrMatrix<T> materialise() const;
  std::optional<Entry> first_non_finite() const;

  T scale_;
};

/// y = diag(d) x (n x n). Every diagonal position is a structural entry.
template <class T>
class TACIT_EXPORT DiagonalOperator final : public OperatorBase<DiagonalOperator<T>, T>,
                                            public DiagonalForm<T>,
                                            public Trainable<T> {
public:
  static constexpr std::string_view kind_name = "diagonal";
  explicit DiagonalOperator(std::vector<T> diagonal);
  std::span<const T> diagonal() const noexcept { return diagonal_; }

  std::vector<T> diagonal_values() const override { return diagonal_; }

  // Trainable: "diagonal" [n]; gradient sum over columns of v_i x_i.
  std::vector<ParameterShape> parameter_shapes() const override;
  std::vector<std::span<T>> parameter_values() override;
  void parameters_changed() override;
  void accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                           std::span<const std::span<T>> grad,
                           Execution exec = Execution::parallel) const override;
  std::shared_ptr<LinearOperator<T>> clone() const override;

private:
  friend OperatorBase<DiagonalOperator<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const;
  std::size_t storage_bytes() const;
  CsrMatrix<T> materialise() const;
  std::optional<Entry> first_non_finite() const;

  std::vector<T> diagonal_;
};

/// The option-A shortcut of CIFAR ResNets: spatial subsampling and zero
/// channel padding, out[c + pad_front, h, w] = in[c, h*stride, w*stride],
/// other output channels 0. Output shape: out_channels x ceil(H/stride) x
/// ceil(W/stride) (PyTorch's x[:, :, ::stride, ::stride]).
template <class T>
class TACIT_EXPORT ChannelPadOperator final
    : public OperatorBase<ChannelPadOperator<T>, T> {
public:
  static constexpr std::string_view kind_name = "channel_pad";
  /// \throws InvalidArgument unless stride >= 1, pad_front >= 0 and
  /// pad_front + input.channels <= out_channels.
  ChannelPadOperator(TensorShape input, index_t out_channels, index_t stride,
                     index_t pad_front);
  TensorShape input_shape() const noexcept { return input_; }
  TensorShape output_shape() const noexcept { return output_; }
  index_t stride() const noexcept { return stride_; }
  index_t pad_front() const noexcept { return pad_front_; }

private:
  friend OperatorBase<ChannelPadOperator<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const;
  CsrMatrix<T> materialise() const;
  std::optional<Entry> first_non_finite() const { return std::nullopt; }

  TensorShape input_, output_;
  index_t stride_, pad_front_;
};

/// 2-D average pooling with ONNX AveragePool semantics (floor mode): each
/// output is the mean of the window's taps inside the image, divided by the
/// full window size when count_include_pad, else by the number of taps
/// inside. Global average pooling: kernel = the whole plane.
template <class T>
class TACIT_EXPORT AvgPool2dOperator final
    : public OperatorBase<AvgPool2dOperator<T>, T> {
public:
  static constexpr std::string_view kind_name = "avg_pool";
  /// \throws InvalidArgument on non-positive kernel/stride, negative pads, a
  /// pad >= kernel size, or an empty output.
  AvgPool2dOperator(TensorShape input, index_t kernel_h, index_t kernel_w,
                    index_t stride_h, index_t stride_w, index_t pad_top, index_t pad_left,
                    index_t pad_bottom, index_t pad_right, bool count_include_pad);
  /// Global average pooling: C x H x W -> C x 1 x 1.
  static AvgPool2dOperator global(TensorShape input);

  TensorShape input_shape() const noexcept { return input_; }
  TensorShape output_shape() const noexcept { return output_; }
  /// The window: kernel, strides, pads (top, left, bottom, right), divisor.
  index_t kernel_h() const noexcept { return kh_; }
  index_t kernel_w() const noexcept { return kw_; }
  index_t stride_h() const noexcept { return sh_; }
  index_t stride_w() const noexcept { return sw_; }
  std::array<index_t, 4> pads() const noexcept { return {pt_, pl_, pb_, pr_}; }
  bool count_include_pad() const noexcept { return count_include_pad_; }

private:
  friend OperatorBase<AvgPool2dOperator<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const;
  CsrMatrix<T> materialise() const;
  std::optional<Entry> first_non_finite() const { return std::nullopt; }

  TensorShape input_, output_;
  index_t kh_, kw_, sh_, sw_, pt_, pl_, pb_, pr_;
  bool count_include_pad_;
};

/// A dense rows x cols matrix stored row-major.
template <class T>
class TACIT_EXPORT DenseOperator final : public OperatorBase<DenseOperator<T>, T>,
                                         public DenseForm<T>,
                                         public Trainable<T> {
public:
  static constexpr std::string_view kind_name = "dense";
  /// \throws InvalidArgument unless row_major.size() == rows * cols.
  DenseOperator(index_t rows, index_t cols, std::vector<T> row_major);
  std::span<const T> data() const noexcept { return data_; }

  std::span<const T> row_major() const noexcept override { return data_; }

  // Trainable: "weight" [rows][cols]; gradient v x^T.
  std::vector<ParameterShape> parameter_shapes() const override;
  std::vector<std::span<T>> parameter_values() override;
  void parameters_changed() override;
  void accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                           std::span<const std::span<T>> grad,
                           Execution exec = Execution::parallel) const override;
  std::shared_ptr<LinearOperator<T>> clone() const override;

private:
  friend OperatorBase<DenseOperator<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const;
  std::size_t storage_bytes() const;
  CsrMatrix<T> materialise() const;
  std::optional<Entry> first_non_finite() const;

  std::vector<T> data_;
};

/// y = L (R x): a product kept unevaluated (e.g. a classifier after pooling).
/// Absolute-value products use |L R| (not |L||R|): the product is formed
/// explicitly (once, cached) for the abs modes, the absolute sums, nnz and
/// find_non_finite; plain and transposed products never form it.
template <class T>
class TACIT_EXPORT ComposedOperator final : public OperatorBase<ComposedOperator<T>, T>,
                                            public Trainable<T> {
public:
  static constexpr std::string_view kind_name = "composed";
  /// \throws InvalidArgument on a null factor or left.cols() != right.rows().
  ComposedOperator(OperatorPtr<T> left, OperatorPtr<T> right);
  const OperatorPtr<T> &left() const noexcept { return left_; }
  const OperatorPtr<T> &right() const noexcept { return right_; }

  // Trainable: the tensors of the trainable factors, named "left." and
  // "right." + the factor's names; L gets (v, R x), R gets (L^T v, x).
  // parameter_values() only on a clone() (which owns its factors).
  std::vector<ParameterShape> parameter_shapes() const override;
  std::vector<std::span<T>> parameter_values() override;
  void parameters_changed() override;
  void accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                           std::span<const std::span<T>> grad,
                           Execution exec = Execution::parallel) const override;
  std::shared_ptr<LinearOperator<T>> clone() const override;

private:
  friend OperatorBase<ComposedOperator<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const;
  std::size_t storage_bytes() const;
  CsrMatrix<T> materialise() const;
  std::optional<Entry> first_non_finite() const;

  const CsrMatrix<T> &explicit_product() const;

  OperatorPtr<T> left_, right_;
  std::shared_ptr<detail::ScratchPool<T>> scratch_;
  std::shared_ptr<detail::BlockCache<T>> cache_;
  bool owns_factors_ = false; // a clone(): its trainable factors are its own
};

/// A matrix partitioned into row blocks and column blocks with a few nonzero
/// blocks (operators; entries at the same block are summed). Products run
/// the block rows in parallel (block columns for transposed products); within
/// a block row the entries are applied in entry order, so results do not
/// depend on the thread count. Block rows without entries only scale y by
/// beta. The partition and the entries are its block structure.
template <class T>
class TACIT_EXPORT BlockOperator final : public OperatorBase<BlockOperator<T>, T>,
                                         public BlockStructured<T>,
                                         public Trainable<T> {
public:
  static constexpr std::string_view kind_name = "block";
  /// \throws InvalidArgument on a negative block size, an entry outside the
  /// partition, a null operator or an operator whose size differs from its
  /// block's.
  BlockOperator(std::vector<index_t> row_block_sizes,
                std::vector<index_t> col_block_sizes, std::vector<BlockEntry<T>> entries);

  const BlockStructure<T> &block_structure() const noexcept override { return blocks_; }

  index_t row_blocks() const noexcept { return blocks_.row_blocks(); }
  index_t col_blocks() const noexcept { return blocks_.col_blocks(); }
  /// First row of block row i (prefix sum; i == row_blocks() gives rows()).
  index_t row_offset(index_t i) const { return blocks_.row_offset(i); }
  /// First column of block column j (j == col_blocks() gives cols()).
  index_t col_offset(index_t j) const { return blocks_.col_offset(j); }
  index_t row_block_size(index_t i) const { return blocks_.row_block_size(i); }
  index_t col_block_size(index_t j) const { return blocks_.col_block_size(j); }

  /// The entries, sorted by (block_row, block_col) (stable: entries at the
  /// same block keep their given order).
  std::span<const BlockEntry<T>> entries() const noexcept { return blocks_.entries(); }
  /// Indices into entries() of the entries of block row i.
  std::span<const index_t> entries_in_row(index_t i) const {
    return blocks_.entries_in_row(i);
  }
  /// Indices into entries() of the entries of block column j (ascending).
  std::span<const index_t> entries_in_col(index_t j) const {
    return blocks_.entries_in_col(j);
  }

  /// Same number and sizes of row and column blocks.
  bool square_partition() const noexcept { return blocks_.square_partition(); }
  /// For a square partition: true when every entry has block_col < block_row
  /// (strictly block lower triangular: feed-forward, lambda_PF(|A|) = 0).
  /// False for a non-square partition.
  bool strictly_block_lower_triangular() const noexcept {
    return blocks_.strictly_block_lower_triangular();
  }
  /// The same with block_col <= block_row (diagonal blocks allowed).
  bool block_lower_triangular() const noexcept {
    return blocks_.block_lower_triangular();
  }

  // Trainable: the tensors of the trainable entries, in entry order, named
  // "(i,j)." + the entry's names (block row i, block column j; a second
  // entry at the same block "(i,j)#2."). An entry gets the rows of v of its
  // block row and the rows of x of its block column. parameter_values() only
  // on a clone() (which owns its entries).
  std::vector<ParameterShape> parameter_shapes() const override;
  std::vector<std::span<T>> parameter_values() override;
  void parameters_changed() override;
  void accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                           std::span<const std::span<T>> grad,
                           Execution exec = Execution::parallel) const override;
  std::shared_ptr<LinearOperator<T>> clone() const override;

private:
  friend OperatorBase<BlockOperator<T>, T>;
  explicit BlockOperator(BlockStructure<T> blocks);
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const;
  std::size_t storage_bytes() const;
  CsrMatrix<T> materialise() const;
  std::optional<Entry> first_non_finite() const;

  const CsrMatrix<T> &group_sum(index_t group) const;

  BlockStructure<T> blocks_;
  std::shared_ptr<detail::BlockCache<T>> cache_;
  bool owns_entries_ = false; // a clone(): its trainable entries are its own
};

} // namespace tacit::inline v1
