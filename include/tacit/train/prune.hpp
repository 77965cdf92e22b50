#pragma once
/// \file prune.hpp
/// Pruning: from a model with zero groups to a smaller model with the same
/// predictions.
///
/// An entry of A, B, C, D with |value| <= threshold counts as absent. A
/// state is removed when it is identically zero or when nothing kept reads
/// it:
/// - zero: phi_i(0) = 0, |b_i| <= threshold and every entry of its row of
///   (A, B) is absent or reads a zero state (a fixed point: the states that
///   only zero states feed are zero too);
/// - unread: no entry of its column of C, and no entry of its column of A
///   in the row of a kept state (a fixed point backwards from the outputs).
/// An input is removed when no entry of its column of B (in a kept row) or
/// of D is present.
///
/// The result holds two models. `masked` has the original dimensions with
/// every removed entry taken out: absent from CSR operators, zero in dense
/// and diagonal ones, and b_i = 0 for removed states. `pruned` keeps only
/// the kept states and inputs (block partitions shrink, empty blocks go).
///
/// Predictions. The pruned model's outputs equal the masked model's bit for
/// bit (as values: -0 and +0 compare equal), in float32 and float64, for
/// any input with finite values:
/// - a CSR row of the pruned model holds the same entries in the same order
///   as the masked row (only the column numbers change, monotonically), and
///   the CSR kernels' summation order depends only on an entry's position
///   in its row and the row's length;
/// - a dense product sums each output as one multiply-add chain over the
///   inner index in order, starting from +0 (operators/detail/gemm_plan.hpp);
///   the masked model's extra terms are 0 * x with x finite, i.e. +-0, and
///   adding +-0 to a chain that starts at +0 leaves every partial sum
///   unchanged (a sum of +0 and -0 is +0 in round-to-nearest);
/// - a removed state is 0 in the masked model (or unread), so the solvers'
///   stopping tests (infinity norms of steps and residuals) see the same
///   values and stop at the same iteration; a block sweep solves the same
///   cyclic blocks.
/// The masked model differs from the original model only by the entries
/// whose |value| <= threshold (none when the threshold is 0 and the removed
/// groups are exactly zero, apart from the order of the CSR kernels'
/// accumulators: a rounding difference).
///
/// Structured networks (a block operator A over the state blocks, some of
/// them feature maps: tacit/nn/network.hpp) lose whole channels. A channel
/// goes when all its states go; a channel with one kept state is kept whole
/// (its other states are zero or unread), and channels tied by a copy
/// without parameters (the identity of a residual addition, a diagonal, an
/// average pooling, a channel padding) are kept or removed together. A
/// convolution then loses the kernel slices of its removed output channels
/// and of its removed input channels (the slices that read them), a pooling
/// or channel padding its removed channels, a dense layer after a pooling
/// the columns of the removed channels; the network keeps its kind (the
/// same operators, fewer channels) and exports to ONNX as before. Every
/// input of a structured network is kept. The predictions are bit for bit
/// the masked network's because a convolution's forward product sums each
/// output as one multiply-add chain over (input channel, kernel row, kernel
/// column) in order (operators/detail/conv_kernels.hpp, both back ends), so
/// the removed channels' terms are the same +-0 additions as a dense
/// product's.
///
/// Supported operators: CSR, dense, diagonal and identity, convolutions
/// (not grouped ones losing channels), average poolings, channel paddings,
/// composed products of these, and block operators made of them. Others are
/// kept when none of their rows or columns is removed; otherwise
/// Unsupported.
///
/// Thread safety: pure functions of immutable models.

#include <cstdint>
#include <string>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>

namespace tacit::inline v1 {

struct TACIT_EXPORT PruneOptions {
  double threshold = 0; ///< entries with |value| <= threshold are absent
  /// Keep every input (the pruned model reads the same input vectors).
  bool keep_inputs = false;
};

/// Sizes of a model.
struct TACIT_EXPORT ModelSize {
  index_t states = 0, inputs = 0, outputs = 0;
  /// Trainable parameters of A, B, C, D plus the n + q biases.
  index_t parameters = 0;
  /// Nonzero values of A, B, C, D.
  std::int64_t nonzeros = 0;
  /// Multiply-adds times two of one evaluation of A, B, C, D per input (the
  /// stored entries: a sweep of a feed-forward model does exactly this).
  std::int64_t flops = 0;
};

template <class T> TACIT_EXPORT ModelSize model_size(const Model<T> &model);

/// Channels of one state block before and after pruning (a block that is
/// not a feature map has one channel of one state per state).
struct TACIT_EXPORT BlockChannels {
  std::string name;
  index_t plane = 1; ///< states per channel (height * width)
  index_t before = 0, after = 0;
};

template <class T> struct TACIT_EXPORT PruneResult {
  Model<T> masked;
  Model<T> pruned;
  std::vector<index_t> kept_states, kept_inputs; ///< original indices, ascending
  ModelSize before, after;
  std::vector<BlockChannels> channels; ///< per state block of the model
};

/// \throws InvalidArgument when every state would be removed, or every
/// channel of one block of a structured network (the message names the
/// block and gives the counts), or on a negative threshold; Unsupported on
/// an operator that cannot lose rows or columns (see the file comment).
template <class T>
TACIT_EXPORT PruneResult<T> prune_model(const Model<T> &model,
                                        const PruneOptions &options = {});

} // namespace tacit::inline v1
