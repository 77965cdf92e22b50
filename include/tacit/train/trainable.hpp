#pragma once
/// \file trainable.hpp
/// A model whose parameters can be trained.
///
/// Models share their operators (pointers to const), so training works on a
/// deep copy: `TrainableModel` clones every trainable operator of A, B, C, D
/// (capability `Trainable`, tacit/core/capabilities.hpp) and owns the
/// copies; fixed operators (identities, pooling, channel padding) stay
/// shared. Its parameters are a list of named tensors:
///
///   "A.<name>", "B.<name>", "C.<name>", "D.<name>"  the operators' tensors
///                                                  (e.g. "A.(2,1).weight")
///   "bx.<block>"  the bias b of a state block: one value per state, or one
///                 value per channel when the block is a feature map (the
///                 rows of a convolution) whose bias is constant over each
///                 channel plane (a network's per-channel bias stays tied)
///   "by"          the output bias c
///
/// Gradients and optimiser states use the same layout: one flat vector,
/// tensor t at offset tensors()[t].offset.
///
/// Thread safety: const members may be called concurrently. Changing the
/// parameters (values(), write(), commit()) requires that no other thread
/// uses the model or anything built on it (solvers) at the same time.

#include <memory>
#include <span>
#include <string>
#include <vector>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>

namespace tacit::inline v1 {

/// How the biases of state blocks are parametrised.
enum class BiasTying {
  automatic, ///< per channel for feature-map blocks with a per-channel bias
  none       ///< one parameter per state
};

/// One parameter tensor of a trainable model.
struct TACIT_EXPORT TensorInfo {
  std::string name;
  std::vector<index_t> shape;
  index_t offset = 0; ///< in the flat parameter (and gradient) vector
  index_t size = 0;
};

template <class T> class TACIT_EXPORT TrainableModel {
public:
  /// A deep copy of `model` that owns its trainable parameters.
  explicit TrainableModel(const Model<T> &model, BiasTying tying = BiasTying::automatic);
  ~TrainableModel();
  TrainableModel(TrainableModel &&) noexcept;
  TrainableModel &operator=(TrainableModel &&) noexcept;

  /// The model (its operators are this object's copies; it reflects every
  /// committed change). Solvers built on it must be rebuilt after a change.
  const Model<T> &model() const noexcept;

  /// The tensors, in flat-vector order.
  const std::vector<TensorInfo> &tensors() const noexcept;
  /// Total number of parameter values.
  index_t size() const noexcept;
  /// Index of the tensor named `name`. \throws InvalidArgument if none.
  std::size_t find(const std::string &name) const;

  /// The storage of each tensor, to be changed in place; call commit()
  /// afterwards.
  std::vector<std::span<T>> values();
  /// Read-only views of the same storage.
  std::vector<std::span<const T>> values() const;
  /// Copies all parameters into `flat` (size()).
  void read(std::span<T> flat) const;
  /// Sets all parameters from `flat` (size()) and commits.
  void write(std::span<const T> flat);
  /// After a change through values(): operators drop their derived caches,
  /// tied biases are expanded into b.
  void commit();

  /// Views of `flat` (size()) per tensor, in tensors() order.
  std::vector<std::span<T>> split(std::span<T> flat) const;
  std::vector<std::span<const T>> split(std::span<const T> flat) const;

  /// The tensors of each of A, B, C, D (first index and count in tensors();
  /// count 0 when the operator is not trainable or absent).
  struct Range {
    std::size_t first = 0, count = 0;
  };
  Range operator_tensors(int which) const noexcept; ///< 0 A, 1 B, 2 C, 3 D
  /// The owned copy of A, B, C or D (0..3) to change in place (then
  /// commit()); null when absent or not trainable (shared, fixed).
  LinearOperator<T> *mutable_operator(int which) noexcept;
  /// Bias tensors: per state block, how its gradient folds (plane = 1: one
  /// parameter per state; else channels of plane states each).
  struct BiasBlock {
    std::size_t tensor = 0;
    index_t offset = 0, size = 0, plane = 1;
  };
  const std::vector<BiasBlock> &bias_blocks() const noexcept;
  /// Index of the "by" tensor.
  std::size_t output_bias_tensor() const noexcept;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace tacit::inline v1
