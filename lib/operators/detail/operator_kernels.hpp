#pragma once
// Helpers shared by the structured operators: reusable scratch buffers, the
// y = alpha * acc + beta * y epilogue and the parallel/serial row loop.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <tacit/core/dense.hpp>
#include <tacit/core/operator.hpp>

#include "core/detail/populate.hpp"
#include "core/detail/slab_buffer.hpp"

namespace tacit::inline v1::detail {

/// A pool of 64-byte aligned buffers reused across products (uninitialised:
/// every user writes a buffer before reading it). A product takes
/// a buffer (allocating only when the pool is empty, i.e. on first use or
/// under concurrent products), and gives it back when done. Unlike
/// thread-local storage this stays correct when a TBB worker runs another
/// product of the same operator while waiting inside a nested parallel loop.
template <class T> struct ScratchPool {
  std::mutex mutex;
  using Buffer = std::vector<T, UninitAllocator<T>>;
  std::vector<std::unique_ptr<Buffer>> free;

  class Lease {
  public:
    Lease(ScratchPool &pool, std::size_t n) : pool_(&pool) {
      {
        std::lock_guard lock(pool.mutex);
        if (!pool.free.empty()) {
          buf_ = std::move(pool.free.back());
          pool.free.pop_back();
        }
      }
      if (!buf_)
        buf_ = std::make_unique<Buffer>();
      if (buf_->size() < n) {
        buf_->clear(); // grows without copying the old contents
        buf_->resize(n);
        populate_pages(buf_->data(), n * sizeof(T));
      }
    }
    Lease(const Lease &) = delete;
    Lease &operator=(const Lease &) = delete;
    ~Lease() {
      std::lock_guard lock(pool_->mutex);
      pool_->free.push_back(std::move(buf_));
    }
    T *data() noexcept { return buf_->data(); }

  private:
    ScratchPool *pool_;
    std::unique_ptr<Buffer> buf_;
  };
};

/// y[0..n) = alpha * acc + beta * y (beta == 0 overwrites y).
template <class T>
inline void store_scaled(T *__restrict y, const T *__restrict acc, index_t n, T alpha,
                         T beta) {
  if (beta == T(0)) {
    for (index_t j = 0; j < n; ++j)
      y[j] = alpha * acc[j];
  } else {
    for (index_t j = 0; j < n; ++j)
      y[j] = alpha * acc[j] + beta * y[j];
  }
}

/// y[0..n) = beta * y (beta == 0 writes zeros).
template <class T> inline void scale_in_place(T *y, index_t n, T beta) {
  if (beta == T(0))
    std::fill(y, y + n, T(0));
  else if (beta != T(1))
    for (index_t j = 0; j < n; ++j)
      y[j] *= beta;
}

/// Rows [0, rows) of y scaled by beta.
template <class T> inline void scale_rows(MatrixView<T> y, T beta) {
  for (index_t i = 0; i < y.rows; ++i)
    scale_in_place(y.row(i), y.cols, beta);
}

/// Calls f(begin, end) over [0, n): in parallel chunks of at least `grain`,
/// or serially for Execution::reference. f must write disjoint outputs per
/// index, so the result does not depend on the split.
template <class F>
inline void for_range(Execution exec, index_t n, index_t grain, F &&f) {
  if (n <= 0)
    return;
  if (exec == Execution::reference || n <= grain) {
    f(index_t(0), n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<index_t>(0, n, std::max<index_t>(1, grain)),
                    [&](const tbb::blocked_range<index_t> &r) { f(r.begin(), r.end()); });
}

/// y_i = alpha * (d_i * x_i) + beta * y_i for every row i of a diagonal
/// operator with row factors `coef(i)` (|d_i| when Abs). The product d_i * x_i
/// is formed first, as gather_rows forms its one-tap sum, so both kernels
/// give the same values. Contiguous views (ld == cols, e.g. one column) are
/// treated as one flat array so that the loop vectorises at any width; small
/// products run on the calling thread (a task costs more than the copy).
template <bool Abs, class T, class Coef>
void scale_rows_by(Execution exec, index_t rows, T alpha, ConstMatrixView<T> x, T beta,
                   MatrixView<T> y, const Coef &coef) {
  const index_t cols = x.cols;
  auto row_range = [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      const T v = Abs ? std::abs(coef(i)) : coef(i);
      const T *__restrict xr = x.row(i);
      T *__restrict yr = y.row(i);
      if (beta == T(0))
        for (index_t j = 0; j < cols; ++j)
          yr[j] = alpha * (v * xr[j]);
      else
        for (index_t j = 0; j < cols; ++j)
          yr[j] = alpha * (v * xr[j]) + beta * yr[j];
    }
  };
  const index_t grain = std::max<index_t>(1, 32768 / std::max<index_t>(1, cols));
  if (cols == 1 && x.ld == 1 && y.ld == 1) {
    auto flat = [&](index_t begin, index_t end) {
      const T *__restrict xr = x.data;
      T *__restrict yr = y.data;
      if (beta == T(0))
        for (index_t i = begin; i < end; ++i) {
          const T v = Abs ? std::abs(coef(i)) : coef(i);
          yr[i] = alpha * (v * xr[i]);
        }
      else
        for (index_t i = begin; i < end; ++i) {
          const T v = Abs ? std::abs(coef(i)) : coef(i);
          yr[i] = alpha * (v * xr[i]) + beta * yr[i];
        }
    };
    return for_range(exec, rows, grain, flat);
  }
  for_range(exec, rows, grain, row_range);
}

/// Chunk of columns processed with register/stack accumulators.
inline constexpr index_t column_chunk = 32;

} // namespace tacit::inline v1::detail

namespace tacit::inline v1::detail {

/// Kernels for operators described by their taps: `taps(i, f)` calls f(j, w)
/// for the structural entries (j, w) of row i, in ascending j. Products with
/// op(M) gather row by row: acc = sum over taps of w * x_j (in tap order),
/// then y_i = alpha * acc + beta * y_i. The same code runs serially for
/// Execution::reference, so both give the same bits.
template <bool Abs, class T, class Taps>
void gather_rows(Execution exec, index_t out_rows, T alpha, ConstMatrixView<T> x, T beta,
                 MatrixView<T> y, index_t grain, const Taps &taps) {
  for_range(exec, out_rows, grain, [&](index_t begin, index_t end) {
    alignas(64) T acc[column_chunk];
    for (index_t i = begin; i < end; ++i) {
      T *yr = y.row(i);
      for (index_t n0 = 0; n0 < x.cols; n0 += column_chunk) {
        const index_t nc = std::min(column_chunk, x.cols - n0);
        std::fill(acc, acc + nc, T(0));
        bool any = false;
        taps(i, [&](index_t j, T w) {
          const T v = Abs ? std::abs(w) : w;
          const T *__restrict xr = x.row(j) + n0;
          for (index_t n = 0; n < nc; ++n)
            acc[n] += v * xr[n];
          any = true;
        });
        if (any)
          store_scaled(yr + n0, acc, nc, alpha, beta);
        else
          scale_in_place(yr + n0, nc, beta);
      }
    }
  });
}

/// out[i] = sum over the taps of row i of |w| (parallel over rows).
template <class T, class Taps>
void tap_abs_sums(index_t rows, std::span<T> out, index_t grain, const Taps &taps) {
  for_range(Execution::parallel, rows, grain, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      T s = 0;
      taps(i, [&](index_t, T w) { s += std::abs(w); });
      out[i] = s;
    }
  });
}

/// Number of taps over all rows.
template <class Taps> std::int64_t tap_count(index_t rows, const Taps &taps) {
  std::int64_t count = 0;
  for (index_t i = 0; i < rows; ++i)
    taps(i, [&](index_t, auto) { ++count; });
  return count;
}

/// The first tap (in row-major order) whose weight is NaN or infinite.
template <class Taps>
std::optional<Entry> tap_find_non_finite(index_t rows, const Taps &taps) {
  for (index_t i = 0; i < rows; ++i) {
    std::optional<Entry> found;
    taps(i, [&](index_t j, auto w) {
      if (!found && !std::isfinite(w))
        found = Entry{i, j};
    });
    if (found)
      return found;
  }
  return std::nullopt;
}

} // namespace tacit::inline v1::detail

#include <tacit/core/csr.hpp>

namespace tacit::inline v1::detail {

/// The CSR matrix of a tap description (taps in ascending column order).
template <class T, class Taps>
CsrMatrix<T> tap_to_csr(index_t rows, index_t cols, const Taps &taps) {
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(rows) + 1, 0);
  for (index_t i = 0; i < rows; ++i) {
    std::int64_t c = 0;
    taps(i, [&](index_t, T) { ++c; });
    row_ptr[i + 1] = row_ptr[i] + c;
  }
  std::vector<std::int64_t> col(static_cast<std::size_t>(row_ptr[rows]));
  std::vector<T> val(col.size());
  for (index_t i = 0; i < rows; ++i) {
    std::int64_t k = row_ptr[i];
    taps(i, [&](index_t j, T w) {
      col[k] = j;
      val[k] = w;
      ++k;
    });
  }
  return CsrMatrix<T>(rows, cols, std::move(row_ptr), col, std::move(val));
}

} // namespace tacit::inline v1::detail
