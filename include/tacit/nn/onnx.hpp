#pragma once
/// \file onnx.hpp
/// Import of feed-forward ONNX networks as structured implicit models, and
/// their export back to ONNX.
///
/// The ONNX graph (a ModelProto, read with the protobuf classes of libonnx)
/// is walked in its topological order and each node drives a
/// `NetworkBuilder<T>` (network.hpp), so convolutions, pooling and padding
/// stay structured operators and A is strictly block lower triangular (one
/// state block per activation node).
///
/// Supported operators (default domain, any opset up to 18):
/// - Conv (2-D; strides, pads, dilations, group; auto_pad NOTSET or VALID;
///   constant weight and optional bias)
/// - Gemm (alpha, beta, transB; transA = 0; constant B and C, C of shape
///   [out], [1, out] or a scalar), MatMul by a constant [in, out] matrix
///   (an Add of a constant right after it becomes the bias)
/// - BatchNormalization (inference: epsilon from the node, default 1e-5)
/// - Relu, LeakyRelu (alpha), Sigmoid, Tanh: each a state block named after
///   the node
/// - Add of two tensors of the same shape (residual), or of a tensor and a
///   per-channel / per-feature / scalar constant (a bias), Mul by such a
///   constant (a scale)
/// - AveragePool (kernel_shape, strides, pads, count_include_pad; ceil_mode
///   0), GlobalAveragePool
/// - Flatten (axis 1), Reshape to [N, features] (N the batch: -1, 0 or the
///   batch size from Shape), Identity, Dropout (inference: identity)
/// - Slice of a feature map that subsamples the spatial axes from index 0
///   and Pad with zeros of the channels (the ResNet "option A" shortcut), or
///   zero Pad of the spatial axes feeding a Conv or an AveragePool
/// - constants and shape arithmetic evaluated at import: Constant, Shape,
///   Gather, Unsqueeze, Squeeze, Concat, Slice, Reshape, Transpose, Cast,
///   ConstantOfShape, Add, Sub, Mul, Div, Identity
///
/// The first dimension of the graph input is the batch (symbolic or fixed);
/// the other dimensions give the input shape (C x H x W, or a flat vector).
/// Initializers may be float32, float64, int32 or int64, stored in raw_data
/// or in the typed fields; parameters are read as double and rounded to T.
///
/// Errors: a file that cannot be read or is not a valid ModelProto:
/// FileError naming the file. An operator, attribute value or graph shape
/// outside the list above: Unsupported; an inconsistent graph (undefined
/// tensor, wrong weight size, bad attribute value): InvalidArgument. The
/// messages name the file, the node (name and op type) and the attribute or
/// input concerned.
///
/// Thread safety: import_onnx and export_onnx are reentrant.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/config.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>
#include <tacit/operators/structured.hpp>

namespace tacit::inline v1 {

/// What an import found, for reports.
struct TACIT_EXPORT OnnxImportInfo {
  std::string producer;   ///< producer_name and version, e.g. "pytorch 1.13.0"
  std::int64_t opset = 0; ///< default-domain opset version
  std::string graph_name;
  std::string input_name, output_name;
  std::vector<index_t> input_dims; ///< without the batch dimension
  std::vector<index_t> output_dims;
  std::string batch;      ///< the batch dimension: a symbol, a number, or empty
  index_t nodes = 0;      ///< nodes in the graph
  index_t parameters = 0; ///< floating-point initializer values
  std::vector<std::string> op_types; ///< distinct op types, sorted
};

/// Imports an ONNX file. \throws FileError, Unsupported or InvalidArgument
/// (see the file comment).
template <class T>
TACIT_EXPORT Model<T> import_onnx(const std::filesystem::path &file,
                                  OnnxImportInfo *info = nullptr);

/// Choices of an import.
struct TACIT_EXPORT OnnxImportOptions {
  /// A classifier after pooling (or another linear map) becomes one small
  /// dense matrix (fast inference); false keeps the layers' own parameters
  /// (for training): NetworkBuilder::fold_dense_products.
  bool fold_dense_products = true;
};

/// The same with options.
template <class T>
TACIT_EXPORT Model<T> import_onnx(const std::filesystem::path &file,
                                  const OnnxImportOptions &options,
                                  OnnxImportInfo *info = nullptr);

/// The same from the bytes of an ONNX file in memory; `name` is used in
/// messages.
template <class T>
TACIT_EXPORT Model<T> import_onnx_bytes(std::string_view bytes, const std::string &name,
                                        OnnxImportInfo *info = nullptr,
                                        const OnnxImportOptions &options = {});

/// Choices of an export.
struct TACIT_EXPORT OnnxExportOptions {
  std::string graph_name = "tacit"; ///< GraphProto name
};

/// Writes a feed-forward structured model (A, B, C, D block operators over
/// the state blocks with A strictly block lower triangular, as import_onnx
/// makes) as an ONNX graph (opset 13, float32 or float64 as T): per state
/// block the sum of its terms and its activation node (Relu, LeakyRelu,
/// Sigmoid, Tanh), named after the block; convolutions as Conv, dense
/// matrices as Gemm (transB = 1), diagonals as BatchNormalization (mean 0,
/// variance 1, epsilon 0), average pooling as AveragePool or
/// GlobalAveragePool, the option-A shortcut as Slice and Pad, products of
/// operators as their factors in turn, sums as Add. A block's bias is the
/// B or C input of its first Conv, Gemm or BatchNormalization term (else a
/// per-channel Add). The input is N x C x H x W when an operator reading it
/// knows its shape (else N x p); the output N x q.
///
/// import_onnx of the file (with the options of the import that made the
/// model) gives the same model bit for bit. Initializers are named after
/// the block and the term ("<block>.t<k>.weight", ".bias"; "output.t<k>..."
/// for C and D).
/// \throws Unsupported naming the block and the term for an operator without
/// an ONNX form here (CSR, a diagonal or bias that varies within a channel
/// plane, the identity activation) or a model that is not such a network;
/// FileError when the file cannot be written (written atomically: a failed
/// export leaves no file).
template <class T>
TACIT_EXPORT void export_onnx(const Model<T> &model, const std::filesystem::path &file,
                              const OnnxExportOptions &options = {});

/// The same as the bytes of the ONNX file.
template <class T>
TACIT_EXPORT std::string export_onnx_bytes(const Model<T> &model,
                                           const OnnxExportOptions &options = {});

/// Whether this tacit has the onnx component (libonnx and protobuf found at
/// configure time); without it the import functions are not defined and a
/// program must link tacit::onnx to call them.
constexpr bool onnx_import_available() noexcept {
  return TACIT_HAVE_ONNX != 0;
}

} // namespace tacit::inline v1
