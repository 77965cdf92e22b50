#pragma once
/// \file generate.hpp
/// Deterministic generated models and matrices: the built-in defaults of the
/// `tacit` command, benchmark inputs and test fixtures. The same seed gives
/// the same bits on every machine (own generator, no std distributions).
///
/// Thread safety: the generators are reentrant (each call has its own random
/// state, seeded by its arguments).

#include <cstdint>
#include <functional>
#include <vector>

#include <tacit/core/model.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

/// Shape of a ResNet-like stack of 3x3 convolution layers on square images.
struct TACIT_EXPORT ResNetLikeShape {
  index_t image = 32;         ///< input height = width
  index_t input_channels = 3;
  /// Stages: channels per stage (the image halves from one stage to the next).
  std::vector<index_t> stage_channels = {16, 32, 64};
  /// Convolution layers per stage (ResNet20: 1 + 6, 6, 6).
  std::vector<index_t> stage_layers = {7, 6, 6};
  /// Identity (residual) line from the layer two back, where shapes agree.
  bool residual = true;
  index_t classes = 10;
};

/// A of a ResNet-like network as CSR: each state of a layer reads a 3x3 window
/// (zero padding, stride 2 at a stage change) of every channel plane of the
/// previous layer, plus a residual identity line. Strictly block lower
/// triangular (nilpotent). With the default shape: n = 188,416 states and
/// about 40M nonzeros. Weights are scaled so activations stay O(1).
template <class T>
TACIT_EXPORT CsrMatrix<T> resnet_like_matrix(const ResNetLikeShape &shape = {},
                                std::uint64_t seed = 1);

/// Full feed-forward model around resnet_like_matrix: B is the first layer's
/// convolution of the input image, C a global-average-pool + dense
/// classifier, ReLU everywhere, one state block per layer.
template <class T>
TACIT_EXPORT Model<T> resnet_like_model(const ResNetLikeShape &shape = {},
                           std::uint64_t seed = 1);

/// A truly implicit sparse model: A random sparse (about `row_nnz` entries per
/// row, with cycles), scaled so that ||A||_inf = `norm_inf` (< 1 certifies
/// well-posedness), B and C random sparse, ReLU.
template <class T>
TACIT_EXPORT Model<T> random_implicit_model(index_t states, index_t inputs, index_t outputs,
                               index_t row_nnz = 16, double norm_inf = 0.9,
                               std::uint64_t seed = 1);

/// One part of random_implicit_model(states, inputs, outputs, row_nnz,
/// norm_inf, seed): its rows of A, B (global columns) and b, and its rows of C.
template <class T> struct ImplicitModelPart {
  CsrMatrix<T> A;        ///< rows [row_begin, row_end) of A, states columns
  CsrMatrix<T> B;        ///< the same rows of B, inputs columns
  CsrMatrix<T> C;        ///< rows [out_begin, out_end) of C, states columns
  std::vector<T> bias_x; ///< b on [row_begin, row_end)
};

/// The states [row_begin, row_end) and outputs [out_begin, out_end) of
/// random_implicit_model<T>(states, inputs, outputs, row_nnz, norm_inf, seed),
/// the same bits, generated without the rest of the model: for programs that
/// build a model too large for one process in parts (tacit::mpi generates each
/// rank's share). Every row of A has min(row_nnz, states) nonzeros. Scaling A
/// to norm_inf needs the largest row sum of the whole |A|: `max_reduce(sum,
/// row)` receives this part's largest row sum before scaling (-inf for no
/// rows) and the first row holding it, and must replace them with the largest
/// over all parts and the first global row holding it (collective in a
/// distributed program); empty when the part holds every row.
/// \throws InvalidArgument as random_implicit_model, or for ranges outside
/// [0, states] / [0, outputs].
template <class T>
TACIT_EXPORT ImplicitModelPart<T> random_implicit_model_part(
    index_t states, index_t inputs, index_t outputs, index_t row_nnz, double norm_inf,
    std::uint64_t seed, index_t row_begin, index_t row_end, index_t out_begin,
    index_t out_end, const std::function<void(double &, index_t &)> &max_reduce = {});

/// Rows [row_begin, row_end) of random_implicit_model(states, ..., row_nnz,
/// ..., seed)'s A before its scaling to norm_inf: the pattern (the same
/// columns) with values proportional to the model's. For counting what a
/// partition of a large model exchanges without generating the model.
/// \throws InvalidArgument for states < 1, row_nnz < 1 or a range outside
/// [0, states].
TACIT_EXPORT CsrMatrix<double> random_implicit_pattern(index_t states, index_t row_nnz,
                                                       std::uint64_t seed,
                                                       index_t row_begin,
                                                       index_t row_end);

/// Deterministic inputs in [-1, 1]: rows x cols.
template <class T>
TACIT_EXPORT Batch<T> random_batch(index_t rows, index_t cols, std::uint64_t seed = 1,
                      index_t slab_width = default_slab_width);

} // namespace tacit::inline v1
