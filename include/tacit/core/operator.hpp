#pragma once
/// \file operator.hpp
/// The operator concept every solver and analysis is written against.
///
/// A `LinearOperator<T>` is an m x n matrix known through its products:
///   y = alpha * op(M) x + beta * y,  op(M) in {M, M^T, |M|, |M|^T},
/// for one vector or a batch, plus row and column absolute sums, nnz, bytes
/// and materialisation as CSR. Following the non-virtual-interface idiom, the
/// public methods check their arguments and forward to private virtual
/// implementations. Every implementation provides a parallel kernel and a
/// serial reference kernel (`Execution::reference`); tests compare the two.
///
/// An operator type is written against `OperatorBase` (operator_base.hpp),
/// which supplies every virtual but the product from what the type defines.
/// What a solver or an analysis can exploit beyond the products (its CSR
/// storage, a block structure, a fused activation, ...) is a capability: an
/// interface of capabilities.hpp that the operator type also derives from,
/// found with `capability<Cap>(op)`. Nothing in tacit asks for a concrete
/// operator type, so a new type works everywhere by deriving from the
/// capabilities it has.
///
/// Thread safety: operators are immutable after construction, and every
/// const member of a LinearOperator (products included) may be called from
/// several threads at once on one operator; tacit's solvers rely on it, and
/// an operator type must provide it (build caches under std::call_once or a
/// lock, as CsrMatrix does). Members that change an operator (e.g.
/// CsrMatrix::mutable_values) are exclusive. Products run in the arena of
/// their Execution (execution.hpp).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <tacit/core/dense.hpp>
#include <tacit/core/execution.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

template <class T> class CsrMatrix;
template <class T> class LinearOperator;

/// Operators are shared and immutable: models, block operators and solvers
/// hold them through this pointer.
template <class T> using OperatorPtr = std::shared_ptr<const LinearOperator<T>>;

/// Which product to form.
enum class Mode {
  normal,       ///< y = alpha M x + beta y
  transpose,    ///< y = alpha M^T x + beta y
  abs,          ///< y = alpha |M| x + beta y
  abs_transpose ///< y = alpha |M|^T x + beta y
};

/// Whether the product is transposed.
constexpr bool is_transposed(Mode m) noexcept {
  return m == Mode::transpose || m == Mode::abs_transpose;
}
/// Whether the product uses absolute values of the entries.
constexpr bool is_absolute(Mode m) noexcept {
  return m == Mode::abs || m == Mode::abs_transpose;
}

/// Position of an entry in a matrix.
struct TACIT_EXPORT Entry {
  index_t row = 0;
  index_t col = 0;
};

template <class T> class TACIT_EXPORT LinearOperator {
public:
  using value_type = T;
  virtual ~LinearOperator() = default;

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }

  /// y = alpha * op(M) x + beta * y on row-major views (x and y have the same
  /// number of columns). beta == 0 overwrites y (NaN in y is not propagated).
  /// \throws InvalidArgument on a dimension mismatch or aliasing x and y.
  void apply(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
             Execution exec = Execution::parallel) const;

  /// The same on slab-major batches, slab by slab.
  void apply(Mode mode, T alpha, const Batch<T> &x, T beta, Batch<T> &y,
             Execution exec = Execution::parallel) const;

  /// The same on single vectors.
  void apply(Mode mode, T alpha, std::span<const T> x, T beta, std::span<T> y,
             Execution exec = Execution::parallel) const;

  /// Sum over j of |M_ij| for every row i (size rows()).
  std::vector<T> row_abs_sums() const;
  /// Sum over i of |M_ij| for every column j (size cols()).
  std::vector<T> col_abs_sums() const;

  /// Number of structurally nonzero entries (of the equivalent CSR matrix).
  std::int64_t nnz() const { return nnz_impl(); }
  /// Bytes used to store the operator (not counting caches).
  std::size_t bytes() const { return bytes_impl(); }
  /// Short description of the storage ("csr", "conv2d", ...).
  std::string kind() const { return kind_impl(); }

  /// The operator as an explicit CSR matrix (materialises it).
  CsrMatrix<T> to_csr() const;

  /// The first entry that is NaN or infinite, if any.
  std::optional<Entry> find_non_finite() const { return find_non_finite_impl(); }

protected:
  LinearOperator(index_t rows, index_t cols);
  /// The argument checks of apply(); false when there is nothing to compute.
  /// \throws InvalidArgument as apply() does.
  bool check_views(Mode mode, ConstMatrixView<T> x, MatrixView<T> y) const;
  LinearOperator(const LinearOperator &) = default;
  LinearOperator &operator=(const LinearOperator &) = default;
  LinearOperator(LinearOperator &&) noexcept = default;
  LinearOperator &operator=(LinearOperator &&) noexcept = default;

private:
  virtual void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                          MatrixView<T> y, Execution exec) const = 0;
  virtual void row_abs_sums_impl(std::span<T> out) const = 0;
  virtual void col_abs_sums_impl(std::span<T> out) const = 0;
  virtual std::int64_t nnz_impl() const = 0;
  virtual std::size_t bytes_impl() const = 0;
  virtual std::string kind_impl() const = 0;
  virtual CsrMatrix<T> to_csr_impl() const = 0;
  virtual std::optional<Entry> find_non_finite_impl() const = 0;

  index_t rows_ = 0;
  index_t cols_ = 0;
};

/// The capability `Cap` of `op` (an interface of capabilities.hpp, or the
/// storage type itself, e.g. CsrMatrix<T>) if op has it, else null. The only
/// place where tacit asks an operator what it is.
template <class Cap, class T>
const Cap *capability(const LinearOperator<T> &op) noexcept {
  return dynamic_cast<const Cap *>(&op);
}
/// The same on an operator the caller may change (a deep copy it owns, see
/// `Trainable`).
template <class Cap, class T> Cap *capability(LinearOperator<T> &op) noexcept {
  return dynamic_cast<Cap *>(&op);
}

/// Induced infinity norm: max row absolute sum.
template <class T> TACIT_EXPORT double norm_inf(const LinearOperator<T> &op);
/// Induced 1-norm: max column absolute sum.
template <class T> TACIT_EXPORT double norm_1(const LinearOperator<T> &op);

} // namespace tacit::inline v1
