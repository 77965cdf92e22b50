#pragma once
/// \file model.hpp
/// The implicit model  y = C x + D u + c,  x = phi(A x + B u + b).
///
/// The n states are partitioned into named, contiguous blocks, each with its
/// own activation. Matrices are held as shared, immutable operators so that
/// models can share storage (e.g. a rescaled copy shares B).
///
/// Thread safety: a Model is immutable after construction; any number of
/// threads may use one model (and its operators) at the same time.

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/core/activation.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/operator.hpp>

namespace tacit::inline v1 {

/// A named contiguous range of states sharing one activation.
struct TACIT_EXPORT StateBlock {
  std::string name;
  index_t offset = 0;
  index_t size = 0;
  Activation activation;
  friend bool operator==(const StateBlock &, const StateBlock &) = default;
};

template <class T> class TACIT_EXPORT Model {
public:
  /// Builds and validates a model. D may be null (D = 0); empty bias vectors
  /// mean zero; empty `blocks` means one ReLU block over all states.
  /// \throws InvalidArgument on inconsistent dimensions, blocks that do not
  /// tile [0, n), or a NaN/Inf parameter (naming the matrix and the entry).
  Model(OperatorPtr<T> A, OperatorPtr<T> B, OperatorPtr<T> C,
        OperatorPtr<T> D = nullptr, std::vector<T> bias_x = {},
        std::vector<T> bias_y = {}, std::vector<StateBlock> blocks = {});

  index_t states() const noexcept { return A_->rows(); }   ///< n
  index_t inputs() const noexcept { return B_->cols(); }   ///< p
  index_t outputs() const noexcept { return C_->rows(); }  ///< q

  const LinearOperator<T> &A() const noexcept { return *A_; }
  const LinearOperator<T> &B() const noexcept { return *B_; }
  const LinearOperator<T> &C() const noexcept { return *C_; }
  /// D, or nullptr when D = 0.
  const LinearOperator<T> *D() const noexcept { return D_.get(); }
  const OperatorPtr<T> &A_ptr() const noexcept { return A_; }
  const OperatorPtr<T> &B_ptr() const noexcept { return B_; }
  const OperatorPtr<T> &C_ptr() const noexcept { return C_; }
  const OperatorPtr<T> &D_ptr() const noexcept { return D_; }

  /// b (size n, zeros if none was given).
  std::span<const T> bias_x() const noexcept { return bias_x_; }
  /// c (size q).
  std::span<const T> bias_y() const noexcept { return bias_y_; }
  const std::vector<StateBlock> &blocks() const noexcept { return blocks_; }

  /// b and c to change in place: for the owner of a model whose parameters
  /// are trained (a TrainableModel); solvers built on the model copy b, so
  /// they must be rebuilt afterwards.
  std::span<T> mutable_bias_x() noexcept { return bias_x_; }
  std::span<T> mutable_bias_y() noexcept { return bias_y_; }

  /// Per-state activation table (size n), expanded from the blocks.
  std::vector<Activation> activations() const;
  /// True when every block's activation is positively homogeneous.
  bool positively_homogeneous() const noexcept;

  /// Y = C X + D U + c for batches (X: n x k, U: p x k, Y: q x k).
  void output(const Batch<T> &X, const Batch<T> &U, Batch<T> &Y,
              Execution exec = Execution::parallel) const;

private:
  OperatorPtr<T> A_, B_, C_, D_;
  std::vector<T> bias_x_, bias_y_;
  std::vector<StateBlock> blocks_;
};

/// The same model in another precision (operators materialised as CSR).
template <class U, class T> TACIT_EXPORT Model<U> convert_model(const Model<T> &model);

} // namespace tacit::inline v1
