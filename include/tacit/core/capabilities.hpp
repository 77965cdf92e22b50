#pragma once
/// \file capabilities.hpp
/// What an operator can do beyond its products, as interfaces an operator
/// type derives from next to `OperatorBase` (in the manner of Ginkgo's
/// mixins). Solvers and analyses ask `capability<Cap>(op)` and fall back on
/// the products when the answer is null, so each capability is an
/// optimisation or a structure to exploit, never a requirement:
///
/// - `CsrMatrix<T>` itself: the operator is stored as CSR; `csr_view(op)`
///   (csr.hpp) borrows it instead of materialising a copy.
/// - `BlockStructured`: a block partition and the nonzero blocks (block
///   sweeps, structural well-posedness, block sensitivity, linear bounds).
/// - `FusedActivation`: y = phi(alpha M x + beta y + bias + s r) in one pass
///   (a network layer); `apply_activated(op, ...)` is the generic form.
/// - `AccurateAbsSums`: absolute row and column sums accumulated in double
///   from the operator's own parameters; `add_abs_sums(op, ...)` is the
///   generic form.
/// - `DiagonalForm`: M = diag(d), possibly stored as a scaled identity.
/// - `DenseForm`: M stored dense, row-major.
/// - `Foldable`: exact folds into the operator's own form (diag(d) M, M + N),
///   which keep a network built layer by layer structured.
///
/// Thread safety: capability queries and the const members below may be
/// called concurrently on one operator.

#include <optional>
#include <span>
#include <vector>

#include <tacit/core/activation.hpp>
#include <tacit/core/block_structure.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/operator.hpp>

namespace tacit::inline v1 {

/// An operator that knows its blocks.
template <class T> class TACIT_EXPORT BlockStructured {
public:
  virtual ~BlockStructured() = default;
  /// The partition and the nonzero blocks (valid as long as the operator).
  virtual const BlockStructure<T> &block_structure() const noexcept = 0;
};

/// An operator with a product that applies a bias, a residual and an
/// activation as it stores its result.
template <class T> class TACIT_EXPORT FusedActivation {
public:
  virtual ~FusedActivation() = default;
  /// y = phi(alpha M x + beta y + bias + residual_scale * residual) (bias:
  /// one value per row, or empty; residual: a matrix of y's shape, or empty),
  /// in one pass over y. Returns false when a value before the activation was
  /// NaN or infinite (phi may hide it: ReLU maps NaN to 0).
  /// \throws InvalidArgument as apply() does, or on a bias or residual of
  /// the wrong size.
  virtual bool apply_activated(T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                               std::span<const T> bias, const Activation &phi,
                               Execution exec = Execution::parallel,
                               ConstMatrixView<T> residual = {},
                               T residual_scale = T(1)) const = 0;
};

/// The same for any operator: the operator's fused product when it has one,
/// otherwise `apply_activated_unfused`.
template <class T>
TACIT_EXPORT bool
apply_activated(const LinearOperator<T> &op, T alpha, ConstMatrixView<T> x, T beta,
                MatrixView<T> y, std::span<const T> bias, const Activation &phi,
                Execution exec = Execution::parallel, ConstMatrixView<T> residual = {},
                T residual_scale = T(1));

/// The unfused sequence that defines apply_activated: the product into y,
/// then, row by row, v = y + bias + residual_scale * residual and y = phi(v).
/// A fused kernel's reference.
template <class T>
TACIT_EXPORT bool
apply_activated_unfused(const LinearOperator<T> &op, T alpha, ConstMatrixView<T> x,
                        T beta, MatrixView<T> y, std::span<const T> bias,
                        const Activation &phi, Execution exec = Execution::parallel,
                        ConstMatrixView<T> residual = {}, T residual_scale = T(1));

/// Absolute sums accumulated in double from the operator's own parameters
/// (a convolution: from its kernel), for norms that must not lose the
/// precision of a float32 model.
template <class T> class TACIT_EXPORT AccurateAbsSums {
public:
  virtual ~AccurateAbsSums() = default;
  /// Adds sum_j |M_ij| (rows) or sum_i |M_ij| (columns) to out (size rows()
  /// or cols()).
  virtual void add_abs_sums(bool rows, std::span<double> out) const = 0;
};

/// The same for any operator: the capability when it has it, otherwise its
/// row_abs_sums() or col_abs_sums() widened to double.
/// \throws InvalidArgument when out has the wrong size.
template <class T>
TACIT_EXPORT void add_abs_sums(const LinearOperator<T> &op, bool rows,
                               std::span<double> out);

/// A diagonal operator.
template <class T> class TACIT_EXPORT DiagonalForm {
public:
  virtual ~DiagonalForm() = default;
  /// d with M = diag(d).
  virtual std::vector<T> diagonal_values() const = 0;
  /// s when M is stored as s I (one value for the whole diagonal), else none.
  virtual std::optional<T> identity_scale() const { return std::nullopt; }
};

/// A dense operator stored row-major.
template <class T> class TACIT_EXPORT DenseForm {
public:
  virtual ~DenseForm() = default;
  /// rows() x cols() values, row by row.
  virtual std::span<const T> row_major() const noexcept = 0;
};

/// Exact folds into the operator's own form. Each returns null when there is
/// none (the caller then keeps a composed or summed form).
template <class T> class TACIT_EXPORT Foldable {
public:
  virtual ~Foldable() = default;
  /// diag(d) M (d of size rows()).
  virtual OperatorPtr<T> scaled_rows(std::span<const T> d) const {
    (void)d;
    return nullptr;
  }
  /// M + other (other of M's size).
  virtual OperatorPtr<T> plus(const LinearOperator<T> &other) const {
    (void)other;
    return nullptr;
  }
};

} // namespace tacit::inline v1
