#pragma once
/// \file network.hpp
/// Implicit models from feed-forward network graphs, and the CIFAR ResNet20.
///
/// `NetworkBuilder` records a graph of layers (the layers an ONNX import
/// produces: convolution, batch normalisation, dense, add, activation,
/// pooling, flatten) and turns it into an implicit model
/// y = C x + D u + c, x = phi(A x + B u + b) with structured operators:
///
/// - every activation node becomes a state block (a `StateBlock` with the
///   node's name and activation), in the order the nodes were created;
/// - every tensor between activations is kept as an affine expression
///   sum_j L_j x_j + L_u u + bias over earlier state blocks x_j and the input
///   u; linear nodes transform the expression instead of creating states:
///   a batch norm after a single convolution term is folded into that
///   convolution's weights and bias (otherwise it becomes a diagonal scaling),
///   a dense layer after pooling is folded into one small dense operator,
///   an add concatenates the terms (merging convolutions of the same geometry
///   and identities on the same block);
/// - A is a `BlockOperator` over the state blocks, strictly block lower
///   triangular (lambda_PF(|A|) = 0, solved exactly by one block sweep),
///   B a `BlockOperator` of the state blocks by one input block, C and D come
///   from the output node's expression and the biases from the expressions'
///   constant parts.
///
/// Layouts: a feature map of shape C x H x W is stored channel-major,
/// index (c * H + h) * W + w (PyTorch's flatten order of one sample).
///
/// Thread safety: a NetworkBuilder is used by one thread at a time (every call
/// adds to it); the models it builds are immutable and shared freely. resnet20()
/// and the other builders are reentrant.

#include <cstdint>
#include <string>
#include <vector>

#include <tacit/core/model.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

template <class T> class TACIT_EXPORT NetworkBuilder {
public:
  using Node = index_t;

  NetworkBuilder();
  ~NetworkBuilder();
  NetworkBuilder(NetworkBuilder &&) noexcept;
  NetworkBuilder &operator=(NetworkBuilder &&) noexcept;

  /// The network's input u (flattened to p = shape.size()). Exactly one.
  /// \throws InvalidArgument when called twice or for an empty shape.
  Node input(TensorShape shape);

  /// 2-D convolution; `g.input` must equal shape(x). Weights are
  /// [out][in / groups][kh][kw] (PyTorch / ONNX order), bias empty (zero) or
  /// one value per output channel.
  /// \throws InvalidArgument naming the node on a shape or size mismatch.
  Node conv2d(Node x, Conv2dGeometry g, std::vector<T> weights, std::vector<T> bias = {});

  /// Inference batch normalisation per channel:
  /// y = gamma (x - mean) / sqrt(var + epsilon) + beta.
  /// \throws InvalidArgument on sizes other than shape(x).channels, a
  /// negative variance + epsilon or non-finite values.
  Node batch_norm(Node x, std::vector<T> gamma, std::vector<T> beta, std::vector<T> mean,
                  std::vector<T> var, double epsilon = 1e-5);

  /// Fully connected layer y = W x + bias on a flat x (height = width = 1);
  /// weights [out][in] row-major (PyTorch Linear).
  Node dense(Node x, index_t out_features, std::vector<T> weights,
             std::vector<T> bias = {});

  /// Elementwise sum of two tensors of the same shape.
  Node add(Node a, Node b);

  /// Componentwise activation: a new state block named `name` (default
  /// "act<k>"). Every activation node is a state block, even the identity.
  Node activation(Node x, Activation phi, std::string name = {});

  /// Average pooling (AvgPool2dOperator semantics).
  Node avg_pool(Node x, index_t kernel_h, index_t kernel_w, index_t stride_h,
                index_t stride_w, index_t pad_top = 0, index_t pad_left = 0,
                index_t pad_bottom = 0, index_t pad_right = 0,
                bool count_include_pad = false);
  /// Average over each whole channel plane: C x H x W -> C x 1 x 1.
  Node global_avg_pool(Node x);

  /// C x H x W -> (C*H*W) x 1 x 1 (no data movement in this layout).
  Node flatten(Node x);
  /// The same tensor (a named no-op, as ONNX Identity).
  Node identity(Node x);

  /// ResNet "option A" shortcut: out[c + pad_front, h, w] =
  /// in[c, h * stride, w * stride], other channels zero
  /// (ChannelPadOperator semantics).
  Node channel_pad(Node x, index_t out_channels, index_t stride, index_t pad_front);

  /// Whether a dense layer applied after another linear map (pooling, a
  /// convolution without activation between) is formed as one dense matrix
  /// when small (the default: fewer passes at inference). Off keeps the
  /// composition (a ComposedOperator), so that the layer keeps its own
  /// parameters, as training needs. Applies to the nodes added afterwards.
  void fold_dense_products(bool on) noexcept;

  /// Shape of a node's tensor.
  TensorShape shape(Node x) const;
  /// Number of state blocks (activation nodes) so far.
  index_t state_blocks() const noexcept;

  /// The model whose output y is node `output`'s tensor (flattened).
  /// \throws InvalidArgument when there is no input or `output` is unknown.
  Model<T> build(Node output) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Shortcut of the ResNet basic blocks where the shape changes.
enum class ResNetShortcut {
  option_a, ///< zero channel padding of the subsampled input (no parameters)
  option_b  ///< 1x1 convolution with stride 2 followed by batch normalisation
};

/// The CIFAR ResNet20 (He et al. 2016): conv3x3(3 -> 16) + BN + ReLU, three
/// stages of three basic blocks (16, 32, 64 channels; stride 2 at the start
/// of stages 2 and 3), global average pooling and a dense 64 -> 10
/// classifier, built through NetworkBuilder: n = 188,416 states in 19 ReLU
/// blocks, p = 3072 inputs (3 x 32 x 32), q = 10 outputs.
/// Weights are deterministic pseudo-random (He-scaled, from `seed`, the same
/// bits on every machine); the batch-norm statistics are non-trivial
/// (running mean and variance calibrated on deterministic inputs and then
/// perturbed, gamma and beta random) so that activations stay O(1).
/// Float and double models hold the same parameters (rounded for float).
template <class T>
TACIT_EXPORT Model<T> resnet20(ResNetShortcut shortcut = ResNetShortcut::option_a,
                  std::uint64_t seed = 20);

/// Deterministic CIFAR-like inputs for resnet20 (3 x 32 x 32 per column,
/// smooth random images with values in about [-2, 2]).
template <class T>
TACIT_EXPORT Batch<T> resnet20_inputs(index_t count, std::uint64_t seed = 1,
                         index_t slab_width = default_slab_width);

} // namespace tacit::inline v1
