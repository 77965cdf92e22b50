#pragma once
// CSR helpers outside the kernels: serial reference products, the row
// schedule of the multi-column kernels and the balanced row partition.

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <tacit/core/dense.hpp>

namespace tacit::inline v1::detail {

template <class T> inline T maybe_abs(T v, bool absolute) {
  return absolute ? std::abs(v) : v;
}

/// Serial reference: the textbook loop, one output entry at a time.
template <class T, class I>
void csr_reference(const std::int64_t *row_ptr, const I *cols, const T *vals,
                   index_t rows, bool absolute, T alpha, ConstMatrixView<T> x, T beta,
                   MatrixView<T> y) {
  for (index_t i = 0; i < rows; ++i)
    for (index_t c = 0; c < x.cols; ++c) {
      T sum = 0;
      for (std::int64_t k = row_ptr[i]; k < row_ptr[i + 1]; ++k)
        sum += maybe_abs(vals[k], absolute) * x(cols[k], c);
      y(i, c) = beta == T(0) ? alpha * sum : alpha * sum + beta * y(i, c);
    }
}

/// Serial reference for the transposed product: scatter over A's rows.
template <class T, class I>
void csr_reference_transpose(const std::int64_t *row_ptr, const I *cols, const T *vals,
                             index_t rows, index_t out_rows, bool absolute, T alpha,
                             ConstMatrixView<T> x, T beta, MatrixView<T> y) {
  for (index_t j = 0; j < out_rows; ++j)
    for (index_t c = 0; c < x.cols; ++c)
      y(j, c) = beta == T(0) ? T(0) : beta * y(j, c);
  for (index_t i = 0; i < rows; ++i)
    for (std::int64_t k = row_ptr[i]; k < row_ptr[i + 1]; ++k)
      for (index_t c = 0; c < x.cols; ++c)
        y(cols[k], c) += alpha * maybe_abs(vals[k], absolute) * x(i, c);
}

/// Order in which the multi-column kernels visit rows: stable-sorted by last
/// column (empty rows first). Only the visiting order changes, never how a
/// row is computed. `cost_ptr` is the prefix sum of row lengths in that
/// order, for balanced_row_partition. `identity` when the order is 0..n-1.
struct RowSchedule {
  std::vector<index_t> order;
  std::vector<std::int64_t> cost_ptr;
  bool identity = true;
  /// twins[q] (1..4): how many rows from position q on (in visiting order)
  /// have the length of the row at q and its columns after the first
  /// twin_heads[q] (0 or 1) entries; they are computed together. Empty when
  /// no two neighbours share their columns.
  std::vector<unsigned char> twins, twin_heads;
};

/// Row boundaries splitting [0, rows) into `parts` ranges of about equal
/// nonzeros plus rows (rows count too: an empty row still costs a store).
void balanced_row_partition(std::span<const std::int64_t> row_ptr, int parts,
                            std::span<index_t> bounds);

} // namespace tacit::inline v1::detail
