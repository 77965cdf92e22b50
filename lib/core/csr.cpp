#include <tacit/core/csr.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>
#include <string>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "core/detail/csr_dispatch.hpp"
#include "core/detail/csr_schedule.hpp"
#include "core/detail/huge_pages.hpp"
#include "core/detail/parallel.hpp"

namespace tacit::inline v1 {

namespace detail {
/// Data derived from the matrix on first use, shared by copies and dropped
/// when the values change: the explicit transpose and the row schedule of the
/// multi-column kernels.
template <class T> struct CsrTransposeCache {
  std::once_flag once;
  std::unique_ptr<CsrMatrix<T>> transpose;
  std::once_flag schedule_once;
  RowSchedule schedule;
};

/// Guards the cache pointer of every matrix: const calls (products, copies)
/// may create or read it concurrently; the contents are built under
/// std::call_once.
inline std::mutex &cache_slot_mutex() {
  static std::mutex m;
  return m;
}

template <class T>
std::shared_ptr<CsrTransposeCache<T>>
shared_cache(std::shared_ptr<CsrTransposeCache<T>> &slot) {
  std::lock_guard lock(cache_slot_mutex());
  if (!slot)
    slot = std::make_shared<CsrTransposeCache<T>>();
  return slot;
}

template <class T>
std::shared_ptr<CsrTransposeCache<T>>
load_cache(const std::shared_ptr<CsrTransposeCache<T>> &slot) {
  std::lock_guard lock(cache_slot_mutex());
  return slot;
}

template <class I>
RowSchedule build_row_schedule(std::span<const std::int64_t> row_ptr,
                               std::span<const I> cols) {
  const index_t rows = static_cast<index_t>(row_ptr.size()) - 1;
  RowSchedule s;
  s.order.resize(static_cast<std::size_t>(rows));
  std::iota(s.order.begin(), s.order.end(), index_t(0));
  auto last = [&](index_t i) -> index_t {
    return row_ptr[i + 1] > row_ptr[i] ? static_cast<index_t>(cols[row_ptr[i + 1] - 1])
                                       : -1;
  };
  std::vector<index_t> key(static_cast<std::size_t>(rows));
  for (index_t i = 0; i < rows; ++i)
    key[i] = last(i);
  std::stable_sort(s.order.begin(), s.order.end(),
                   [&](index_t a, index_t b) { return key[a] < key[b]; });
  s.identity = true;
  for (index_t q = 0; q < rows && s.identity; ++q)
    s.identity = s.order[q] == q;
  // Neighbours (in visiting order) with identical columns, in runs of <= 4.
  // A row may differ from its neighbour in its first column only (a residual
  // line next to a convolution's window): the head.
  s.twins.assign(static_cast<std::size_t>(rows), 1);
  s.twin_heads.assign(static_cast<std::size_t>(rows), 0);
  bool any_twins = false;
  for (index_t q = rows - 2; q >= 0; --q) {
    const index_t a = s.order[q], b = s.order[q + 1];
    const std::int64_t len = row_ptr[a + 1] - row_ptr[a];
    if (len < 2 || len != row_ptr[b + 1] - row_ptr[b] ||
        !std::equal(cols.begin() + row_ptr[a] + 1, cols.begin() + row_ptr[a + 1],
                    cols.begin() + row_ptr[b] + 1))
      continue;
    const unsigned char head = cols[row_ptr[a]] == cols[row_ptr[b]] ? 0 : 1;
    if (s.twins[q + 1] > 1 && s.twin_heads[q + 1] != head)
      continue;
    s.twins[q] = static_cast<unsigned char>(std::min(4, s.twins[q + 1] + 1));
    s.twin_heads[q] = head;
    any_twins = true;
  }
  if (!any_twins) {
    s.twins.clear();
    s.twin_heads.clear();
  }
  if (s.identity) {
    s.order.clear();
    return s;
  }
  s.cost_ptr.resize(static_cast<std::size_t>(rows) + 1);
  s.cost_ptr[0] = 0;
  for (index_t q = 0; q < rows; ++q)
    s.cost_ptr[q + 1] = s.cost_ptr[q] + (row_ptr[s.order[q] + 1] - row_ptr[s.order[q]]);
  return s;
}

void balanced_row_partition(std::span<const std::int64_t> row_ptr, int parts,
                            std::span<index_t> bounds) {
  const index_t rows = static_cast<index_t>(row_ptr.size()) - 1;
  const double total = static_cast<double>(row_ptr[rows]) + rows;
  bounds[0] = 0;
  index_t r = 0;
  for (int p = 1; p < parts; ++p) {
    const double target = total * p / parts;
    // Smallest r with row_ptr[r] + r >= target (cost is monotone in r).
    index_t lo = r, hi = rows;
    while (lo < hi) {
      const index_t mid = lo + (hi - lo) / 2;
      if (static_cast<double>(row_ptr[mid]) + mid < target)
        lo = mid + 1;
      else
        hi = mid;
    }
    r = lo;
    bounds[p] = r;
  }
  bounds[parts] = rows;
}
} // namespace detail

namespace {

std::string entry_name(index_t r, index_t c) {
  return "(" + std::to_string(r + 1) + ", " + std::to_string(c + 1) + ")";
}

bool want_wide(IndexWidth w, index_t cols) {
  if (w == IndexWidth::wide64)
    return true;
  const bool fits = cols <= std::numeric_limits<std::int32_t>::max();
  if (w == IndexWidth::narrow32 && !fits)
    throw InvalidArgument("CSR: " + std::to_string(cols) +
                          " columns do not fit 32-bit indices");
  return !fits;
}

} // namespace

template <class T>
CsrMatrix<T>::CsrMatrix(index_t rows, index_t cols)
    : OperatorBase<CsrMatrix<T>, T>(rows, cols),
      row_ptr_(static_cast<std::size_t>(rows) + 1, 0),
      cols_(std::vector<std::int32_t>{}) {
  if (want_wide(IndexWidth::automatic, cols))
    cols_ = std::vector<std::int64_t>{};
}

template <class T>
CsrMatrix<T>::CsrMatrix(index_t rows, index_t cols, std::vector<std::int64_t> row_ptr,
                        std::span<const std::int64_t> col_idx, std::vector<T> values,
                        IndexWidth width)
    : OperatorBase<CsrMatrix<T>, T>(rows, cols), row_ptr_(std::move(row_ptr)),
      values_(std::move(values)) {
  if (static_cast<index_t>(row_ptr_.size()) != rows + 1)
    throw InvalidArgument("CSR: row_ptr has " + std::to_string(row_ptr_.size()) +
                          " entries, expected rows + 1 = " + std::to_string(rows + 1));
  if (row_ptr_[0] != 0)
    throw InvalidArgument("CSR: row_ptr[0] = " + std::to_string(row_ptr_[0]) +
                          ", expected 0");
  for (index_t i = 0; i < rows; ++i)
    if (row_ptr_[i + 1] < row_ptr_[i])
      throw InvalidArgument("CSR: row_ptr decreases at row " + std::to_string(i + 1));
  const auto nnz = row_ptr_[rows];
  if (static_cast<std::int64_t>(col_idx.size()) != nnz ||
      static_cast<std::int64_t>(values_.size()) != nnz)
    throw InvalidArgument("CSR: row_ptr says " + std::to_string(nnz) +
                          " nonzeros, col_idx has " + std::to_string(col_idx.size()) +
                          ", values has " + std::to_string(values_.size()));
  for (index_t i = 0; i < rows; ++i)
    for (auto k = row_ptr_[i]; k < row_ptr_[i + 1]; ++k) {
      if (col_idx[k] < 0 || col_idx[k] >= cols)
        throw InvalidArgument("CSR: entry " + entry_name(i, col_idx[k]) +
                              " has its column outside 1.." + std::to_string(cols));
      if (k > row_ptr_[i] && col_idx[k] <= col_idx[k - 1])
        throw InvalidArgument("CSR: columns of row " + std::to_string(i + 1) +
                              " are not strictly increasing at entry " +
                              entry_name(i, col_idx[k]));
    }
  auto copy_columns = [&](auto tag) {
    std::vector<decltype(tag)> c;
    detail::reserve_huge_pages(c, col_idx.size());
    c.assign(col_idx.begin(), col_idx.end());
    cols_ = std::move(c);
  };
  if (want_wide(width, cols))
    copy_columns(std::int64_t{});
  else
    copy_columns(std::int32_t{});
}

template <class T>
CsrMatrix<T> CsrMatrix<T>::from_triplets(index_t rows, index_t cols,
                                         std::span<const Triplet<T>> triplets,
                                         IndexWidth width) {
  if (rows < 0 || cols < 0)
    throw InvalidArgument("CSR: negative size");
  std::vector<std::int64_t> count(static_cast<std::size_t>(rows) + 1, 0);
  for (const auto &t : triplets) {
    if (t.row < 0 || t.row >= rows || t.col < 0 || t.col >= cols)
      throw InvalidArgument("CSR: triplet " + entry_name(t.row, t.col) + " outside a " +
                            std::to_string(rows) + " x " + std::to_string(cols) +
                            " matrix");
    ++count[t.row + 1];
  }
  std::partial_sum(count.begin(), count.end(), count.begin());
  std::vector<std::int64_t> ci(triplets.size());
  std::vector<T> cv(triplets.size());
  std::vector<std::int64_t> next(count.begin(), count.end() - 1);
  for (const auto &t : triplets) {
    const auto k = next[t.row]++;
    ci[k] = t.col;
    cv[k] = t.value;
  }
  // Sort each row by column and sum duplicates.
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(rows) + 1, 0);
  std::vector<std::int64_t> out_c;
  std::vector<T> out_v;
  out_c.reserve(triplets.size());
  out_v.reserve(triplets.size());
  std::vector<std::pair<std::int64_t, T>> buf;
  for (index_t i = 0; i < rows; ++i) {
    buf.clear();
    for (auto k = count[i]; k < count[i + 1]; ++k)
      buf.emplace_back(ci[k], cv[k]);
    std::stable_sort(buf.begin(), buf.end(),
                     [](auto &a, auto &b) { return a.first < b.first; });
    for (std::size_t k = 0; k < buf.size(); ++k) {
      if (!out_c.empty() && static_cast<std::int64_t>(out_c.size()) > row_ptr[i] &&
          out_c.back() == buf[k].first)
        out_v.back() += buf[k].second;
      else {
        out_c.push_back(buf[k].first);
        out_v.push_back(buf[k].second);
      }
    }
    row_ptr[i + 1] = static_cast<std::int64_t>(out_c.size());
  }
  return CsrMatrix(rows, cols, std::move(row_ptr), out_c, std::move(out_v), width);
}

template <class T>
CsrMatrix<T> CsrMatrix<T>::from_dense(index_t rows, index_t cols, std::span<const T> a,
                                      IndexWidth width) {
  if (static_cast<index_t>(a.size()) != rows * cols)
    throw InvalidArgument("CSR::from_dense: " + std::to_string(a.size()) +
                          " values for a " + std::to_string(rows) + " x " +
                          std::to_string(cols) + " matrix");
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(rows) + 1, 0), ci;
  std::vector<T> v;
  for (index_t i = 0; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j)
      if (a[i * cols + j] != T(0)) {
        ci.push_back(j);
        v.push_back(a[i * cols + j]);
      }
    row_ptr[i + 1] = static_cast<std::int64_t>(ci.size());
  }
  return CsrMatrix(rows, cols, std::move(row_ptr), ci, std::move(v), width);
}

template <class T> CsrMatrix<T> CsrMatrix<T>::identity(index_t n, T scale) {
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(n) + 1), ci(n);
  std::iota(row_ptr.begin(), row_ptr.end(), 0);
  std::iota(ci.begin(), ci.end(), 0);
  return CsrMatrix(n, n, std::move(row_ptr), ci, std::vector<T>(n, scale));
}

template <class T>
CsrMatrix<T>::CsrMatrix(const CsrMatrix &o)
    : OperatorBase<CsrMatrix<T>, T>(o), row_ptr_(o.row_ptr_), cols_(o.cols_),
      values_(o.values_), transpose_cache_(detail::load_cache(o.transpose_cache_)) {}
template <class T> CsrMatrix<T> &CsrMatrix<T>::operator=(const CsrMatrix &o) {
  if (this != &o) {
    OperatorBase<CsrMatrix<T>, T>::operator=(o);
    row_ptr_ = o.row_ptr_;
    cols_ = o.cols_;
    values_ = o.values_;
    transpose_cache_ = detail::load_cache(o.transpose_cache_);
  }
  return *this;
}
template <class T> CsrMatrix<T>::CsrMatrix(CsrMatrix &&) noexcept = default;
template <class T> CsrMatrix<T> &CsrMatrix<T>::operator=(CsrMatrix &&) noexcept = default;
template <class T> CsrMatrix<T>::~CsrMatrix() = default;

template <class T> std::span<T> CsrMatrix<T>::mutable_values() {
  transpose_cache_.reset();
  return values_;
}

template <class T> std::span<const std::int32_t> CsrMatrix<T>::col_idx32() const {
  if (wide_indices())
    throw InvalidArgument("CSR: column indices are 64-bit; use col_idx64()");
  return std::get<0>(cols_);
}
template <class T> std::span<const std::int64_t> CsrMatrix<T>::col_idx64() const {
  if (!wide_indices())
    throw InvalidArgument("CSR: column indices are 32-bit; use col_idx32()");
  return std::get<1>(cols_);
}

template <class T> CsrMatrix<T> CsrMatrix<T>::transpose() const {
  // Counting sort by column in parallel: the rows are cut into chunks of
  // about equal nonzeros; chunk p counts its entries per column, the counts
  // give every (column, chunk) pair its own output range, and each chunk
  // scatters its rows in increasing order. Entries of a column therefore come
  // out sorted by row, and the result does not depend on the chunk count.
  const index_t m = this->rows(), n = this->cols();
  const std::int64_t nnz = this->nnz();
  const int chunks = nnz < (1 << 16)
                         ? 1
                         : static_cast<int>(std::clamp<index_t>(
                               m / 1024, 1, tbb::this_task_arena::max_concurrency() * 2));
  std::vector<index_t> bounds(static_cast<std::size_t>(chunks) + 1);
  detail::balanced_row_partition(row_ptr_, chunks, bounds);
  // counts[p * n + j]: entries of chunk p in column j, later its next slot.
  std::vector<std::int64_t> counts(static_cast<std::size_t>(chunks) * n, 0);
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(n) + 1, 0);
  std::vector<T> v;
  detail::reserve_huge_pages(v, static_cast<std::size_t>(nnz));
  v.resize(static_cast<std::size_t>(nnz));
  CsrMatrix result(n, m);
  auto build = [&](auto cols, auto &out_cols) {
    using Out = typename std::decay_t<decltype(out_cols)>::value_type;
    detail::reserve_huge_pages(out_cols, static_cast<std::size_t>(nnz));
    out_cols.resize(static_cast<std::size_t>(nnz));
    tbb::parallel_for(0, chunks, [&](int p) {
      std::int64_t *cnt = counts.data() + static_cast<std::size_t>(p) * n;
      for (auto k = row_ptr_[bounds[p]]; k < row_ptr_[bounds[p + 1]]; ++k)
        ++cnt[cols[k]];
    });
    for (index_t j = 0; j < n; ++j) {
      std::int64_t total = 0;
      for (int p = 0; p < chunks; ++p)
        total += counts[static_cast<std::size_t>(p) * n + j];
      row_ptr[j + 1] = row_ptr[j] + total;
    }
    tbb::parallel_for(tbb::blocked_range<index_t>(0, n, 4096),
                      [&](const tbb::blocked_range<index_t> &r) {
                        for (index_t j = r.begin(); j < r.end(); ++j) {
                          std::int64_t next = row_ptr[j];
                          for (int p = 0; p < chunks; ++p) {
                            auto &c = counts[static_cast<std::size_t>(p) * n + j];
                            const auto here = c;
                            c = next;
                            next += here;
                          }
                        }
                      });
    tbb::parallel_for(0, chunks, [&](int p) {
      std::int64_t *next = counts.data() + static_cast<std::size_t>(p) * n;
      for (index_t i = bounds[p]; i < bounds[p + 1]; ++i)
        for (auto k = row_ptr_[i]; k < row_ptr_[i + 1]; ++k) {
          const auto dst = next[cols[k]]++;
          out_cols[dst] = static_cast<Out>(i);
          v[dst] = values_[k];
        }
    });
  };
  visit_columns([&](auto cols) {
    std::visit([&](auto &out_cols) { build(cols, out_cols); }, result.cols_);
  });
  result.row_ptr_ = std::move(row_ptr);
  result.values_ = std::move(v);
  return result;
}

template <class T> CsrMatrix<T> CsrMatrix<T>::abs() const {
  CsrMatrix r(*this);
  r.transpose_cache_.reset();
  for (auto &v : r.values_)
    v = std::abs(v);
  return r;
}

template <class T> template <class U> CsrMatrix<U> CsrMatrix<T>::cast() const {
  std::vector<U> v;
  detail::reserve_huge_pages(v, values_.size());
  v.assign(values_.begin(), values_.end());
  std::vector<std::int64_t> ci(static_cast<std::size_t>(this->nnz()));
  for (std::int64_t k = 0; k < this->nnz(); ++k)
    ci[k] = column(k);
  return CsrMatrix<U>(this->rows(), this->cols(), row_ptr_, ci, std::move(v),
                      wide_indices() ? IndexWidth::wide64 : IndexWidth::narrow32);
}

template <class T>
CsrMatrix<T> CsrMatrix<T>::permuted(std::span<const index_t> perm) const {
  const index_t n = this->rows();
  if (this->cols() != n || static_cast<index_t>(perm.size()) != n)
    throw InvalidArgument("CSR::permuted: needs a square matrix and a "
                          "permutation of its size");
  std::vector<index_t> inv(n, -1);
  for (index_t k = 0; k < n; ++k) {
    if (perm[k] < 0 || perm[k] >= n || inv[perm[k]] != -1)
      throw InvalidArgument("CSR::permuted: not a permutation at position " +
                            std::to_string(k));
    inv[perm[k]] = k;
  }
  std::vector<Triplet<T>> t;
  t.reserve(static_cast<std::size_t>(this->nnz()));
  for (index_t k = 0; k < n; ++k) {
    const index_t i = perm[k];
    for (auto e = row_ptr_[i]; e < row_ptr_[i + 1]; ++e)
      t.push_back({k, inv[column(e)], values_[e]});
  }
  return from_triplets(n, n, t);
}

template <class T>
CsrMatrix<T> CsrMatrix<T>::submatrix(std::span<const index_t> rows,
                                     std::span<const index_t> cols) const {
  std::vector<index_t> map(static_cast<std::size_t>(this->cols()), -1);
  for (std::size_t k = 0; k < cols.size(); ++k) {
    if (cols[k] < 0 || cols[k] >= this->cols())
      throw InvalidArgument("CSR::submatrix: column out of range");
    map[cols[k]] = static_cast<index_t>(k);
  }
  std::vector<Triplet<T>> t;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const index_t i = rows[r];
    if (i < 0 || i >= this->rows())
      throw InvalidArgument("CSR::submatrix: row out of range");
    for (auto e = row_ptr_[i]; e < row_ptr_[i + 1]; ++e)
      if (map[column(e)] >= 0)
        t.push_back({static_cast<index_t>(r), map[column(e)], values_[e]});
  }
  return from_triplets(static_cast<index_t>(rows.size()),
                       static_cast<index_t>(cols.size()), t);
}

template <class T> std::vector<T> CsrMatrix<T>::diagonal() const {
  const index_t n = std::min(this->rows(), this->cols());
  std::vector<T> d(static_cast<std::size_t>(n), T(0));
  for (index_t i = 0; i < n; ++i)
    for (auto e = row_ptr_[i]; e < row_ptr_[i + 1]; ++e)
      if (column(e) == i)
        d[i] = values_[e];
  return d;
}

template <class T> std::vector<T> CsrMatrix<T>::to_dense() const {
  std::vector<T> a(static_cast<std::size_t>(this->rows() * this->cols()), T(0));
  for (index_t i = 0; i < this->rows(); ++i)
    for (auto e = row_ptr_[i]; e < row_ptr_[i + 1]; ++e)
      a[i * this->cols() + column(e)] = values_[e];
  return a;
}

template <class T> std::size_t CsrMatrix<T>::cache_bytes() const noexcept {
  auto cache = detail::load_cache(transpose_cache_);
  if (!cache || !cache->transpose)
    return 0;
  return cache->transpose->bytes();
}

template <class T> std::size_t CsrMatrix<T>::storage_bytes() const {
  const std::size_t idx = wide_indices() ? 8 : 4;
  return row_ptr_.size() * sizeof(std::int64_t) + values_.size() * (sizeof(T) + idx);
}

template <class T> const CsrMatrix<T> &CsrMatrix<T>::cached_transpose() const {
  auto cache = detail::shared_cache(transpose_cache_);
  std::call_once(cache->once,
                 [&] { cache->transpose = std::make_unique<CsrMatrix>(transpose()); });
  return *cache->transpose;
}

template <class T>
void CsrMatrix<T>::product(Mode mode, T alpha, ConstMatrixView<T> x, T beta,
                           MatrixView<T> y, Execution exec) const {
  const bool absolute = is_absolute(mode);
  if (exec == Execution::reference) {
    visit_columns([&](auto cols) {
      if (is_transposed(mode))
        detail::csr_reference_transpose(row_ptr_.data(), cols.data(), values_.data(),
                                        this->rows(), this->cols(), absolute, alpha, x,
                                        beta, y);
      else
        detail::csr_reference(row_ptr_.data(), cols.data(), values_.data(), this->rows(),
                              absolute, alpha, x, beta, y);
    });
    return;
  }
  if (is_transposed(mode)) {
    cached_transpose().product(absolute ? Mode::abs : Mode::normal, alpha, x, beta, y,
                               exec);
    return;
  }
  const index_t rows = this->rows();
  const int threads = tbb::this_task_arena::max_concurrency();
  // Several chunks per thread so that TBB can balance residual imbalance; the
  // partition only decides who computes a row, never how.
  const int parts = static_cast<int>(
      std::clamp<index_t>(rows / 64, 1, static_cast<index_t>(threads) * 8));
  // With several columns, rows are visited in the schedule's order: rows
  // that end at the same column (in a convolution: all output channels at one
  // position) run back to back and reuse the same rows of x from L1/L2.
  // A single column of x fits in cache anyway, and SpMV keeps the natural
  // order for contiguous writes of y.
  std::shared_ptr<detail::CsrTransposeCache<T>> cache;
  const detail::RowSchedule *schedule = nullptr;
  if (x.cols > 1 && rows > 1) {
    cache = detail::shared_cache(transpose_cache_);
    std::call_once(cache->schedule_once, [&] {
      cache->schedule = visit_columns(
          [&](auto cols) { return detail::build_row_schedule(row_ptr_, cols); });
    });
    if (!cache->schedule.identity)
      schedule = &cache->schedule;
  }
  const index_t *order = schedule ? schedule->order.data() : nullptr;
  const bool grouped = cache && !cache->schedule.twins.empty();
  const unsigned char *twins = grouped ? cache->schedule.twins.data() : nullptr;
  const unsigned char *twin_heads = grouped ? cache->schedule.twin_heads.data() : nullptr;
  visit_columns([&](auto cols) {
    using I = typename decltype(cols)::value_type;
    // The active level's kernel, chosen once per product.
    const auto rows_kernel = detail::csr_kernels().of<T>().template rows<I>(absolute);
    auto run = [&](index_t q0, index_t q1) {
      rows_kernel(row_ptr_.data(), cols.data(), values_.data(), order, q0, q1, alpha, x,
                  beta, y, twins, twin_heads);
    };
    if (parts == 1) {
      run(0, rows);
      return;
    }
    std::vector<index_t> bounds(static_cast<std::size_t>(parts) + 1);
    detail::balanced_row_partition(schedule
                                       ? std::span<const std::int64_t>(schedule->cost_ptr)
                                       : std::span<const std::int64_t>(row_ptr_),
                                   parts, bounds);
    detail::for_tasks(parts, true, [&](index_t p) { run(bounds[p], bounds[p + 1]); });
  });
}

template <class T> void CsrMatrix<T>::row_abs_sums_into(std::span<T> out) const {
  tbb::parallel_for(tbb::blocked_range<index_t>(0, this->rows(), 4096),
                    [&](const tbb::blocked_range<index_t> &r) {
                      for (index_t i = r.begin(); i < r.end(); ++i) {
                        T s = 0;
                        for (auto k = row_ptr_[i]; k < row_ptr_[i + 1]; ++k)
                          s += std::abs(values_[k]);
                        out[i] = s;
                      }
                    });
}

template <class T> void CsrMatrix<T>::col_abs_sums_into(std::span<T> out) const {
  std::fill(out.begin(), out.end(), T(0));
  visit_columns([&](auto cols) {
    for (std::int64_t k = 0; k < this->nnz(); ++k)
      out[cols[k]] += std::abs(values_[k]);
  });
}

template <class T> std::optional<Entry> CsrMatrix<T>::first_non_finite() const {
  for (index_t i = 0; i < this->rows(); ++i)
    for (auto k = row_ptr_[i]; k < row_ptr_[i + 1]; ++k)
      if (!std::isfinite(values_[k]))
        return Entry{i, column(k)};
  return std::nullopt;
}

template class CsrMatrix<float>;
template class CsrMatrix<double>;
template CsrMatrix<float> CsrMatrix<double>::cast<float>() const;
template CsrMatrix<double> CsrMatrix<float>::cast<double>() const;
template CsrMatrix<float> CsrMatrix<float>::cast<float>() const;
template CsrMatrix<double> CsrMatrix<double>::cast<double>() const;

} // namespace tacit::inline v1
