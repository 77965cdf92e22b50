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
/// - `Trainable`: named parameter tensors, the gradient of v^T M x with
///   respect to them (accumulated over a batch), deep copies that own their
///   parameters.
///
/// Thread safety: capability queries and the const members below may be
/// called concurrently on one operator. The non-const members of
/// `Trainable` change the operator: no other thread may use it meanwhile.

#include <memory>
#include <optional>
#include <span>
#include <string>
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

/// Name and shape of one parameter tensor of a trainable operator.
struct TACIT_EXPORT ParameterShape {
  std::string name;           ///< "weight", "values", "diagonal"; "left.weight" ...
  std::vector<index_t> shape; ///< e.g. {out, in / groups, kh, kw}; {nnz} for CSR
  /// Number of values (product of shape).
  index_t size() const noexcept {
    index_t s = 1;
    for (index_t d : shape)
      s *= d;
    return s;
  }
  friend bool operator==(const ParameterShape &, const ParameterShape &) = default;
};

/// An operator whose values are parameters that training changes: M = M(theta)
/// linear in theta (a convolution's kernel, a dense matrix, the values of a
/// CSR matrix on its pattern, a diagonal; composed and block operators
/// delegate to their factors and blocks).
///
/// Ownership: models share operators (OperatorPtr is a pointer to const), so
/// parameters are changed only on a deep copy made by clone(), which owns
/// its parameters and shares nothing trainable with the original; the
/// non-const members may be called on such a copy only.
template <class T> class TACIT_EXPORT Trainable {
public:
  virtual ~Trainable() = default;

  /// The parameter tensors, in a fixed order (may be empty: a block operator
  /// of fixed operators).
  virtual std::vector<ParameterShape> parameter_shapes() const = 0;

  /// The operator's own storage of each tensor (in parameter_shapes()
  /// order), to be changed in place; call parameters_changed() afterwards.
  /// The views stay valid as long as the operator.
  /// \throws InvalidArgument on an operator that does not own its parameters
  /// (a composed or block operator that is not a clone()).
  virtual std::vector<std::span<T>> parameter_values() = 0;

  /// Drops what the operator derived from its parameters (packed kernels,
  /// transposes, cached products) after they were changed.
  virtual void parameters_changed() = 0;

  /// grad[t] += d/d(theta_t) of sum over the columns c of v_c^T M x_c: for
  /// an explicit matrix the outer products v x^T restricted to the structure
  /// (for a convolution the correlation of the input maps x with the adjoint
  /// maps v). v is rows() x k, x is cols() x k; grad holds one span per
  /// tensor of parameter_shapes(), of its size. Deterministic: the same bits
  /// for 1 or N threads and for the reference and parallel kernels' splits.
  /// \throws InvalidArgument on mismatched sizes.
  virtual void accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                                   std::span<const std::span<T>> grad,
                                   Execution exec = Execution::parallel) const = 0;

  /// A deep copy that owns its parameters (trainable factors and blocks
  /// cloned, fixed ones shared).
  virtual std::shared_ptr<LinearOperator<T>> clone() const = 0;

  /// The rows as a C x H x W feature map when the operator has one (a
  /// convolution): a bias of these rows is then one value per channel.
  virtual std::optional<std::vector<index_t>> row_feature_map() const {
    return std::nullopt;
  }
};

/// The total number of parameter values of op (0 when it is not trainable).
template <class T> index_t parameter_count(const LinearOperator<T> &op) {
  const auto *t = capability<Trainable<T>>(op);
  if (!t)
    return 0;
  index_t n = 0;
  for (const auto &s : t->parameter_shapes())
    n += s.size();
  return n;
}

} // namespace tacit::inline v1
