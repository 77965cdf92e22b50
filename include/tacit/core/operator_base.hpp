#pragma once
/// \file operator_base.hpp
/// The base every operator type derives from (CRTP): it implements
/// LinearOperator's virtual interface from the hooks the type defines, so a
/// type writes only what it has. The hooks may be private when the type
/// befriends its base (`friend OperatorBase<Type, T>;`):
///
///   required
///     static constexpr std::string_view kind_name;  // "csr", "conv2d", ...
///     void product(Mode, T alpha, ConstMatrixView<T> x, T beta,
///                  MatrixView<T> y, Execution) const; // checked views
///   optional (default in brackets)
///     void row_abs_sums_into(std::span<T> out) const;  // [|M| 1]
///     void col_abs_sums_into(std::span<T> out) const;  // [|M|^T 1]
///     std::int64_t nnz_count() const;                  // [materialise().nnz()]
///     std::size_t storage_bytes() const;               // [sizeof(Type)]
///     CsrMatrix<T> materialise() const;                // [from products with unit
///     vectors] std::optional<Entry> first_non_finite() const;   // [of materialise()]
///
/// `out` of the sums arrives zeroed. The defaults are correct for any
/// operator and cost products (materialise: cols()/64 products of 64
/// columns); a type defines the hooks it can do better.
///
/// Example (a 1-D difference operator, rows = cols - 1):
///
///   template <class T>
///   class Difference final : public OperatorBase<Difference<T>, T> {
///   public:
///     explicit Difference(index_t n) : OperatorBase<Difference<T>, T>(n - 1, n) {}
///     static constexpr std::string_view kind_name = "difference";
///   private:
///     friend OperatorBase<Difference<T>, T>;
///     void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
///                  MatrixView<T> y, Execution exec) const;
///   };
///
/// Thread safety: OperatorBase adds no state; the hooks are const and are
/// called from several threads at once, so a type that caches (a transpose,
/// absolute sums) builds the cache under std::call_once or a lock.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/core/operator.hpp>

namespace tacit::inline v1 {

template <class T> struct Triplet;

template <class Derived, class T>
class TACIT_EXPORT OperatorBase : public LinearOperator<T> {
protected:
  OperatorBase(index_t rows, index_t cols) : LinearOperator<T>(rows, cols) {}

private:
  const Derived &self() const noexcept { return static_cast<const Derived &>(*this); }

  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const final {
    self().product(mode, alpha, x, beta, y, exec);
  }

  void row_abs_sums_impl(std::span<T> out) const final {
    if constexpr (requires(const Derived &d) { d.row_abs_sums_into(out); })
      self().row_abs_sums_into(out);
    else
      abs_product(Mode::abs, out);
  }

  void col_abs_sums_impl(std::span<T> out) const final {
    if constexpr (requires(const Derived &d) { d.col_abs_sums_into(out); })
      self().col_abs_sums_into(out);
    else
      abs_product(Mode::abs_transpose, out);
  }

  std::int64_t nnz_impl() const final {
    if constexpr (requires(const Derived &d) { d.nnz_count(); })
      return self().nnz_count();
    else
      return this->to_csr().nnz();
  }

  std::size_t bytes_impl() const final {
    if constexpr (requires(const Derived &d) { d.storage_bytes(); })
      return self().storage_bytes();
    else
      return sizeof(Derived);
  }

  std::string kind_impl() const final { return std::string(Derived::kind_name); }

  CsrMatrix<T> to_csr_impl() const final {
    if constexpr (requires(const Derived &d) { d.materialise(); })
      return self().materialise();
    else
      return materialise_from_products();
  }

  std::optional<Entry> find_non_finite_impl() const final {
    if constexpr (requires(const Derived &d) { d.first_non_finite(); })
      return self().first_non_finite();
    else
      return this->to_csr().find_non_finite();
  }

  // out = op(|M|) 1.
  void abs_product(Mode mode, std::span<T> out) const {
    const index_t n = mode == Mode::abs ? this->cols() : this->rows();
    const std::vector<T> ones(static_cast<std::size_t>(n), T(1));
    this->apply(mode, T(1), std::span<const T>(ones), T(0), out);
  }

  // M from its products with blocks of unit vectors; exact zeros are dropped.
  CsrMatrix<T> materialise_from_products() const {
    constexpr index_t width = 64;
    const index_t m = this->rows(), n = this->cols();
    std::vector<Triplet<T>> entries;
    std::vector<T> x, y;
    for (index_t j0 = 0; j0 < n; j0 += width) {
      const index_t w = std::min(width, n - j0);
      x.assign(static_cast<std::size_t>(n * w), T(0));
      y.assign(static_cast<std::size_t>(m * w), T(0));
      for (index_t c = 0; c < w; ++c)
        x[static_cast<std::size_t>((j0 + c) * w + c)] = T(1);
      this->apply(Mode::normal, T(1), ConstMatrixView<T>(x.data(), n, w, w), T(0),
                  MatrixView<T>{y.data(), m, w, w});
      for (index_t i = 0; i < m; ++i)
        for (index_t c = 0; c < w; ++c)
          if (const T v = y[static_cast<std::size_t>(i * w + c)]; v != T(0))
            entries.push_back({i, j0 + c, v});
    }
    return CsrMatrix<T>::from_triplets(m, n, entries);
  }
};

} // namespace tacit::inline v1

#include <tacit/core/csr.hpp>
