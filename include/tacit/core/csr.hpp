#pragma once
/// \file csr.hpp
/// Compressed sparse row matrix.
///
/// Row pointers are 64-bit (nnz may exceed 2^31); column indices are 32-bit
/// when the column count allows it and 64-bit otherwise (`IndexWidth`), which
/// keeps SpMV bandwidth at 12 bytes per double nonzero. Within a row, column
/// indices are strictly increasing (enforced on construction).
///
/// Products with M^T use an explicit transpose built on first use and cached
/// (thread-safe), so that transposed products are as fast and as
/// deterministic as plain ones; `bytes()` does not count that cache,
/// `cache_bytes()` does.
///
/// Thread safety: every const member (products of every mode, sums,
/// conversions) and copying may run concurrently on one matrix; the first
/// transposed product builds the cached transpose once while the others
/// wait. mutable_values() and assignment to the matrix must not run
/// concurrently with any other call on it: mutable_values() drops the cached
/// transpose that a concurrent transposed product may be reading, and the
/// values it hands out are read by every product. Copies share the cache
/// until one of them changes its values.

#include <cstdint>
#include <memory>
#include <span>
#include <variant>
#include <vector>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/core/operator_base.hpp>

namespace tacit::inline v1 {

/// Width of stored column indices.
enum class IndexWidth { automatic, narrow32, wide64 };

/// One (row, col, value) entry.
template <class T> struct TACIT_EXPORT Triplet {
  index_t row = 0;
  index_t col = 0;
  T value = 0;
};

namespace detail {
template <class T> struct CsrTransposeCache;
}

/// Trainable: the parameters are the stored values ("values", on the fixed
/// pattern); the gradient of v^T M x is sum over columns of v_i x_j at each
/// stored entry (i, j).
template <class T>
class TACIT_EXPORT CsrMatrix final : public OperatorBase<CsrMatrix<T>, T>,
                                     public Trainable<T> {
public:
  static constexpr std::string_view kind_name = "csr";

  /// Empty rows x cols matrix (no nonzeros).
  CsrMatrix(index_t rows = 0, index_t cols = 0);

  /// From raw arrays. Checks sizes, monotone row pointers, column range and
  /// strictly increasing columns within each row.
  /// \throws InvalidArgument naming the first offending row/entry.
  CsrMatrix(index_t rows, index_t cols, std::vector<std::int64_t> row_ptr,
            std::span<const std::int64_t> col_idx, std::vector<T> values,
            IndexWidth width = IndexWidth::automatic);

  /// From triplets in any order; duplicates are summed; explicit zeros kept.
  static CsrMatrix from_triplets(index_t rows, index_t cols,
                                 std::span<const Triplet<T>> triplets,
                                 IndexWidth width = IndexWidth::automatic);

  /// From a dense row-major array, keeping entries != 0.
  static CsrMatrix from_dense(index_t rows, index_t cols,
                              std::span<const T> row_major,
                              IndexWidth width = IndexWidth::automatic);

  /// Identity of size n scaled by `scale`.
  static CsrMatrix identity(index_t n, T scale = T(1));

  CsrMatrix(const CsrMatrix &);
  CsrMatrix &operator=(const CsrMatrix &);
  CsrMatrix(CsrMatrix &&) noexcept;
  CsrMatrix &operator=(CsrMatrix &&) noexcept;
  ~CsrMatrix() override;

  std::span<const std::int64_t> row_ptr() const noexcept { return row_ptr_; }
  std::span<const T> values() const noexcept { return values_; }
  /// Mutable values (pattern fixed). Drops the cached transpose.
  std::span<T> mutable_values();

  bool wide_indices() const noexcept { return cols_.index() == 1; }
  /// Column indices; call the one matching wide_indices().
  std::span<const std::int32_t> col_idx32() const;
  std::span<const std::int64_t> col_idx64() const;
  /// Calls f(std::span<const I>) with the stored column indices.
  template <class F> decltype(auto) visit_columns(F &&f) const {
    if (cols_.index() == 0)
      return f(std::span<const std::int32_t>(std::get<0>(cols_)));
    return f(std::span<const std::int64_t>(std::get<1>(cols_)));
  }
  /// Column index of stored entry k (slow path; prefer visit_columns).
  index_t column(std::int64_t k) const noexcept {
    return cols_.index() == 0 ? std::get<0>(cols_)[k] : std::get<1>(cols_)[k];
  }

  /// Explicit transpose.
  CsrMatrix transpose() const;
  /// Entry-wise absolute value.
  CsrMatrix abs() const;
  /// Converts the value type.
  template <class U> CsrMatrix<U> cast() const;
  /// Symmetric permutation P M P^T where new index k is old index perm[k].
  CsrMatrix permuted(std::span<const index_t> perm) const;
  /// Submatrix of the given rows and columns (both sorted ascending or not).
  CsrMatrix submatrix(std::span<const index_t> rows,
                      std::span<const index_t> cols) const;
  /// Diagonal entries (0 where absent).
  std::vector<T> diagonal() const;
  /// Dense row-major copy (small matrices only).
  std::vector<T> to_dense() const;

  /// Bytes held by the cached transpose (0 until a transposed product).
  std::size_t cache_bytes() const noexcept;

  // Trainable
  std::vector<ParameterShape> parameter_shapes() const override;
  std::vector<std::span<T>> parameter_values() override;
  void parameters_changed() override;
  void accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                           std::span<const std::span<T>> grad,
                           Execution exec = Execution::parallel) const override;
  std::shared_ptr<LinearOperator<T>> clone() const override;

private:
  friend OperatorBase<CsrMatrix<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const;
  void row_abs_sums_into(std::span<T> out) const;
  void col_abs_sums_into(std::span<T> out) const;
  std::int64_t nnz_count() const noexcept {
    return static_cast<std::int64_t>(values_.size());
  }
  std::size_t storage_bytes() const;
  CsrMatrix materialise() const { return *this; }
  std::optional<Entry> first_non_finite() const;

  const CsrMatrix &cached_transpose() const;

  std::vector<std::int64_t> row_ptr_;
  std::variant<std::vector<std::int32_t>, std::vector<std::int64_t>> cols_;
  std::vector<T> values_;
  mutable std::shared_ptr<detail::CsrTransposeCache<T>> transpose_cache_;
};

/// The storage of op when op is a CSR matrix, else null (nothing is
/// materialised).
template <class T> const CsrMatrix<T> *stored_csr(const LinearOperator<T> &op) noexcept {
  return capability<CsrMatrix<T>>(op);
}

/// An operator as a CSR matrix: op's own storage when op is one (borrowed,
/// nothing copied), otherwise op.to_csr() (owned by the view). The one place
/// where "use the CSR if it is one, otherwise build a copy" is written.
///
/// Thread safety: a const view may be read by any number of threads.
template <class T> class CsrView {
public:
  /// A borrowed op must outlive the view.
  explicit CsrView(const LinearOperator<T> &op) {
    if (const auto *csr = stored_csr(op)) {
      csr_ =
          std::shared_ptr<const CsrMatrix<T>>(std::shared_ptr<const CsrMatrix<T>>(), csr);
      borrowed_ = true;
    } else {
      csr_ = std::make_shared<const CsrMatrix<T>>(op.to_csr());
    }
  }
  /// The same; a borrowed op is kept alive by the view (and by shared()).
  explicit CsrView(const OperatorPtr<T> &op) {
    if (const auto *csr = stored_csr(*op)) {
      csr_ = std::shared_ptr<const CsrMatrix<T>>(op, csr);
      borrowed_ = true;
    } else {
      csr_ = std::make_shared<const CsrMatrix<T>>(op->to_csr());
    }
  }

  const CsrMatrix<T> &operator*() const noexcept { return *csr_; }
  const CsrMatrix<T> *operator->() const noexcept { return csr_.get(); }
  const CsrMatrix<T> &get() const noexcept { return *csr_; }
  /// True when the view is the operator's own storage.
  bool borrowed() const noexcept { return borrowed_; }
  /// The matrix as a shared pointer (for a view of an OperatorPtr or an owned
  /// copy, it keeps the matrix alive on its own).
  const std::shared_ptr<const CsrMatrix<T>> &shared() const noexcept { return csr_; }

private:
  std::shared_ptr<const CsrMatrix<T>> csr_;
  bool borrowed_ = false;
};

/// op as CSR (see CsrView).
template <class T> CsrView<T> csr_view(const LinearOperator<T> &op) {
  return CsrView<T>(op);
}
template <class T> CsrView<T> csr_view(const OperatorPtr<T> &op) {
  return CsrView<T>(op);
}

} // namespace tacit::inline v1
