#pragma once
/// \file groups.hpp
/// Groups of parameters of a trainable model, for group-sparse penalties
/// (prox.hpp) and pruning (prune.hpp).
///
/// A group is a set of positions in the model's flat parameter vector
/// (TrainableModel::tensors() order) with a weight. Because a state of an
/// implicit model is a state whatever layer it came from, the groups are
/// defined on the model's matrices:
///
///   input j         column j of (B; D): zero, input j is not read
///   state_row i     row i of (A, B) and the bias b_i: zero (with phi(0) =
///                   0), state i is identically zero
///   state_column i  column i of (A; C): zero, state i is not read
///   state i         both (overlaps the rows and columns of other states)
///   block k         the state rows of every state of block k
///   channel c       a channel of a state block (every state of a dense or
///                   CSR block is a channel): the parameters that produce
///                   its states (a convolution's kernel slice w[c, :, :, :],
///                   the rows of a dense layer, the diagonal of a scaling,
///                   its bias) and every parameter that reads them (the
///                   slices w[:, c, :, :] of the convolutions reading the
///                   block, the columns of the dense layers, after a
///                   pooling those of the pooled channel). Channels tied by
///                   a copy without parameters (the identity of a residual
///                   addition, an average pooling, a channel padding) form
///                   one group, the union across the tie: zeroed together,
///                   they are pruned together (prune.hpp). The groups
///                   overlap (a kernel entry w[c, c', ...] produces c and
///                   reads c'): the prox is the sequential heuristic.
///   user            a set read from a file (read_group_file)
///
/// Every group lists its members explicitly, so groups whose parameters are
/// not single matrix entries (the kernel slices of a convolution channel)
/// fit the same description. Group weights are sqrt(group size) by default.
///
/// Parameter positions are known for CSR, dense and diagonal operators and
/// block operators made of them; a group kind that would need the position
/// of another operator's parameters (a convolution's kernel) is refused
/// with InvalidArgument. Channel groups know, in addition, the channel
/// slices of convolutions (from their row feature map and their weight
/// tensor [out][in / groups][kh][kw]) and of a dense layer composed with a
/// pooling.
///
/// Thread safety: the functions are pure; a GroupSet is a value.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/train/trainable.hpp>

namespace tacit::inline v1 {

enum class GroupKind { input, state_row, state_column, state, block, user, channel };
TACIT_EXPORT std::string to_string(GroupKind k);

/// Where a parameter value sits in M = [A B; C D] and the biases.
struct TACIT_EXPORT ParameterPosition {
  /// 0 A, 1 B, 2 C, 3 D, 4 b (bias of the states), 5 c (output bias); -1:
  /// not a single entry (a shared or convolution weight, a tied bias).
  int matrix = -1;
  index_t row = 0, col = 0; ///< in the matrix (col = 0 for the biases)
};

/// The position of each value of the flat parameter vector.
template <class T>
TACIT_EXPORT std::vector<ParameterPosition>
parameter_positions(const TrainableModel<T> &model);

struct TACIT_EXPORT ParameterGroup {
  GroupKind kind = GroupKind::user;
  std::string name; ///< "input 17", "state h1:5", a file's label
  /// The input, state or block (-1 for user groups); for a channel group its
  /// first channel, counted over the blocks in order (channel c of block b
  /// is the sum of the channels of the blocks before b, plus c).
  index_t index = -1;
  std::vector<index_t> members; ///< flat parameter indices, ascending, unique
  double weight = 1;            ///< w_g in lambda sum_g w_g ||theta_g||_2
};

struct TACIT_EXPORT GroupSet {
  std::vector<ParameterGroup> groups;
  /// True when no parameter belongs to two groups (the block
  /// soft-thresholding is then the exact proximal operator).
  bool disjoint() const;
  /// Number of distinct parameters in the groups.
  index_t covered() const;
};

/// The groups of one kind (not `user`): one per input, state or block.
/// Weights sqrt(group size); groups with no parameter are left out.
/// \throws InvalidArgument when a group would need the position of a
/// parameter that is not a single entry (a convolution weight).
template <class T>
TACIT_EXPORT GroupSet make_groups(const TrainableModel<T> &model, GroupKind kind);

/// "inputs", "states" (rows with their biases), "state-rows",
/// "state-columns", "states-both", "blocks", "channels".
/// \throws InvalidArgument otherwise.
TACIT_EXPORT GroupKind parse_group_kind(std::string_view s);

/// Groups from a text file, one group per line:
///
///   LABEL KIND INDEX...      KIND: state | row | column | input
///
/// INDEX is a 0-based index or a range A-B (inclusive); the group is the
/// union of the rows (row), columns (column), rows and columns (state) of
/// the listed states, or of the columns of (B; D) of the listed inputs.
/// '#' starts a comment; blank lines are skipped.
/// \throws FileError naming the file, the line and the problem (a state or
/// input that does not exist, with the model's count; an unknown kind; a
/// bad index; an empty group).
template <class T>
TACIT_EXPORT GroupSet read_group_file(const TrainableModel<T> &model,
                                      const std::filesystem::path &path);

/// Counts of the groups of each kind a model offers (for tacit info): the
/// kinds whose positions are known, with their group counts (channels only
/// for a model with feature maps; elsewhere they are the states-both groups).
struct TACIT_EXPORT GroupSummary {
  GroupKind kind;
  index_t count = 0;
  index_t largest = 0; ///< parameters in the largest group
};
template <class T>
TACIT_EXPORT std::vector<GroupSummary> group_summary(const TrainableModel<T> &model);

} // namespace tacit::inline v1
