#pragma once
// CSR product kernels: y = alpha * op(A) x + beta * y for row-major views.
// The parallel kernels split rows into chunks of equal nonzero count (a fixed
// function of the pattern and the thread count only affects which thread
// runs a chunk), and every row's sum is formed in the same order whatever the
// partition, so results are bitwise identical for any number of threads.

#include <cmath>
#include <cstdint>
#include <span>

#include <tacit/dense.hpp>

namespace tacit::detail {

template <class T> inline T maybe_abs(T v, bool absolute) {
  return absolute ? std::abs(v) : v;
}

template <class T> inline void store(T *y, T acc, T alpha, T beta) {
  *y = beta == T(0) ? alpha * acc : alpha * acc + beta * *y;
}

/// One row, one column of x (SpMV): four accumulators break the add chain.
template <bool Abs, class T, class I>
inline T row_dot(const T *__restrict vals, const I *__restrict cols,
                 std::int64_t begin, std::int64_t end, const T *__restrict x,
                 index_t ldx) {
  T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  std::int64_t k = begin;
  for (; k + 4 <= end; k += 4) {
    const T v0 = Abs ? std::abs(vals[k]) : vals[k];
    const T v1 = Abs ? std::abs(vals[k + 1]) : vals[k + 1];
    const T v2 = Abs ? std::abs(vals[k + 2]) : vals[k + 2];
    const T v3 = Abs ? std::abs(vals[k + 3]) : vals[k + 3];
    a0 += v0 * x[cols[k] * ldx];
    a1 += v1 * x[cols[k + 1] * ldx];
    a2 += v2 * x[cols[k + 2] * ldx];
    a3 += v3 * x[cols[k + 3] * ldx];
  }
  for (; k < end; ++k) a0 += (Abs ? std::abs(vals[k]) : vals[k]) * x[cols[k] * ldx];
  return (a0 + a1) + (a2 + a3);
}

/// One row, W consecutive columns of x starting at c0: W independent
/// accumulators updated by a vectorisable axpy per nonzero.
template <int W, bool Abs, class T, class I>
inline void row_block(const T *__restrict vals, const I *__restrict cols,
                      std::int64_t begin, std::int64_t end,
                      const T *__restrict x, index_t ldx, T *__restrict y,
                      T alpha, T beta) {
  T acc[W] = {};
  for (std::int64_t k = begin; k < end; ++k) {
    const T v = Abs ? std::abs(vals[k]) : vals[k];
    const T *__restrict xr = x + static_cast<index_t>(cols[k]) * ldx;
#pragma GCC unroll 64
    for (int w = 0; w < W; ++w) acc[w] += v * xr[w];
  }
  if (beta == T(0)) {
#pragma GCC unroll 64
    for (int w = 0; w < W; ++w) y[w] = alpha * acc[w];
  } else {
#pragma GCC unroll 64
    for (int w = 0; w < W; ++w) y[w] = alpha * acc[w] + beta * y[w];
  }
}

/// Rows [r0, r1) of y = alpha * op(A) x + beta * y (A given by its CSR arrays,
/// op = identity or |.|).
template <bool Abs, class T, class I>
void csr_rows(const std::int64_t *row_ptr, const I *cols, const T *vals,
              index_t r0, index_t r1, T alpha, ConstMatrixView<T> x, T beta,
              MatrixView<T> y) {
  const index_t k = x.cols;
  if (k == 1) {
    for (index_t i = r0; i < r1; ++i)
      store(y.data + i * y.ld,
            row_dot<Abs>(vals, cols, row_ptr[i], row_ptr[i + 1], x.data, x.ld),
            alpha, beta);
    return;
  }
  for (index_t i = r0; i < r1; ++i) {
    const std::int64_t b = row_ptr[i], e = row_ptr[i + 1];
    T *yr = y.data + i * y.ld;
    index_t c = 0;
    for (; c + 32 <= k; c += 32)
      row_block<32, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
    if (c + 16 <= k) {
      row_block<16, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
      c += 16;
    }
    if (c + 8 <= k) {
      row_block<8, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
      c += 8;
    }
    if (c + 4 <= k) {
      row_block<4, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
      c += 4;
    }
    for (; c < k; ++c)
      row_block<1, Abs>(vals, cols, b, e, x.data + c, x.ld, yr + c, alpha, beta);
  }
}

/// Serial reference: the textbook loop, one output entry at a time.
template <class T, class I>
void csr_reference(const std::int64_t *row_ptr, const I *cols, const T *vals,
                   index_t rows, bool absolute, T alpha, ConstMatrixView<T> x,
                   T beta, MatrixView<T> y) {
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
void csr_reference_transpose(const std::int64_t *row_ptr, const I *cols,
                             const T *vals, index_t rows, index_t out_rows,
                             bool absolute, T alpha, ConstMatrixView<T> x,
                             T beta, MatrixView<T> y) {
  for (index_t j = 0; j < out_rows; ++j)
    for (index_t c = 0; c < x.cols; ++c)
      y(j, c) = beta == T(0) ? T(0) : beta * y(j, c);
  for (index_t i = 0; i < rows; ++i)
    for (std::int64_t k = row_ptr[i]; k < row_ptr[i + 1]; ++k)
      for (index_t c = 0; c < x.cols; ++c)
        y(cols[k], c) += alpha * maybe_abs(vals[k], absolute) * x(i, c);
}

/// Row boundaries splitting [0, rows) into `parts` ranges of about equal
/// nonzeros plus rows (rows count too: an empty row still costs a store).
void balanced_row_partition(std::span<const std::int64_t> row_ptr, int parts,
                            std::span<index_t> bounds);

} // namespace tacit::detail
