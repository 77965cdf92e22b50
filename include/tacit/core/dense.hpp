#pragma once
/// \file dense.hpp
/// Dense views and the batch container.
///
/// Layout. A batch of k vectors of length n is stored *slab-major*: the k
/// columns are cut into slabs of `slab_width` consecutive columns and each slab
/// is an n x slab_width row-major block. One row of a slab holds the values of
/// one state for slab_width inputs, contiguous, so a sparse product reads each
/// nonzero a_ij once per slab and updates slab_width contiguous values
/// (a vectorisable axpy), while a slab stays small enough for the rows of x
/// that a CSR row touches to be reused from cache. The last slab is padded to
/// the full width; padding columns are kept at zero by tacit's kernels.
///
/// Kernels operate on `MatrixView`: any row-major block with a leading
/// dimension (a slab, a whole row-major matrix, or a single vector with
/// cols == 1).
///
/// Thread safety: views and batches are plain data. Any number of threads may
/// read one batch; writing it (or a view of it) excludes every other access to
/// the written elements. Kernels write disjoint slabs and rows from their own
/// tasks.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <tacit/core/error.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

using index_t = std::int64_t;

namespace detail {
/// Aligned storage: kernels load whole cache lines from rows of a slab, and a
/// malloc'ed buffer starts 16 bytes past a line. With `huge_pages`, from 4 MB
/// on, 2 MB aligned and advised to use transparent huge pages (fewer TLB
/// misses for long-lived solver buffers, but a first touch that may wait for
/// the kernel to compact memory). Defined in the library.
TACIT_EXPORT void *allocate_aligned(std::size_t bytes, std::size_t align,
                                    bool huge_pages = true);
TACIT_EXPORT void deallocate_aligned(void *p, std::size_t bytes, std::size_t align,
                                     bool huge_pages = true) noexcept;

template <class T, std::size_t Align = 64, bool HugePages = true>
struct TACIT_EXPORT AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, Align, HugePages> &) noexcept {}
  template <class U> struct rebind {
    using other = AlignedAllocator<U, Align, HugePages>;
  };
  T *allocate(std::size_t n) {
    return static_cast<T *>(allocate_aligned(n * sizeof(T), Align, HugePages));
  }
  void deallocate(T *p, std::size_t n) noexcept {
    deallocate_aligned(p, n * sizeof(T), Align, HugePages);
  }
  template <class U>
  bool operator==(const AlignedAllocator<U, Align, HugePages> &) const noexcept {
    return true;
  }
};

/// AlignedAllocator whose default construction leaves elements uninitialised
/// (resize() does not write them): for buffers whose users write every
/// element before reading it, or zero them in parallel, so that the first
/// touch of their pages is not a serial memset.
template <class T, std::size_t Align = 64, bool HugePages = true>
struct TACIT_EXPORT UninitAllocator : AlignedAllocator<T, Align, HugePages> {
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U, Align, HugePages> &) noexcept {}
  template <class U> struct rebind {
    using other = UninitAllocator<U, Align, HugePages>;
  };
  template <class U> void construct(U *p) noexcept(noexcept(U())) {
    ::new (static_cast<void *>(p)) U;
  }
  template <class U, class... Args> void construct(U *p, Args &&...args) {
    ::new (static_cast<void *>(p)) U(static_cast<Args &&>(args)...);
  }
};
} // namespace detail

/// Read-write row-major view: element (i, j) is data[i * ld + j].
template <class T> struct TACIT_EXPORT MatrixView {
  T *data = nullptr;
  index_t rows = 0;
  index_t cols = 0;
  index_t ld = 0;

  T &operator()(index_t i, index_t j) const { return data[i * ld + j]; }
  T *row(index_t i) const { return data + i * ld; }
};

/// Read-only row-major view.
template <class T> struct TACIT_EXPORT ConstMatrixView {
  const T *data = nullptr;
  index_t rows = 0;
  index_t cols = 0;
  index_t ld = 0;

  ConstMatrixView() = default;
  ConstMatrixView(const T *d, index_t r, index_t c, index_t l)
      : data(d), rows(r), cols(c), ld(l) {}
  ConstMatrixView(const MatrixView<T> &v)
      : data(v.data), rows(v.rows), cols(v.cols), ld(v.ld) {}

  const T &operator()(index_t i, index_t j) const { return data[i * ld + j]; }
  const T *row(index_t i) const { return data + i * ld; }
};

/// View of a contiguous vector as an n x 1 matrix.
template <class T> MatrixView<T> vector_view(std::span<T> v) {
  return {v.data(), static_cast<index_t>(v.size()), 1, 1};
}
template <class T> ConstMatrixView<T> vector_view(std::span<const T> v) {
  return {v.data(), static_cast<index_t>(v.size()), 1, 1};
}

/// Default number of columns per slab. 32 columns fill 4 (double) or 2
/// (float) cache lines per row: wide enough to amortise reading A, narrow
/// enough that the rows of x touched by one CSR row stay in L1/L2.
inline constexpr index_t default_slab_width = 32;

/// Owning batch of `cols` vectors of length `rows` in slab-major layout.
template <class T> class TACIT_EXPORT Batch {
public:
  Batch() = default;
  /// Zero-initialised batch (a large one zeroed in parallel, so that its
  /// pages are first touched by every thread, not one). The slab width is
  /// min(slab_width, cols) (at least 1): a batch narrower than a slab has no
  /// padding. \throws
  /// InvalidArgument on negative sizes or slab_width < 1.
  Batch(index_t rows, index_t cols, index_t slab_width = default_slab_width);

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  index_t slab_width() const noexcept { return width_; }
  index_t slab_count() const noexcept { return slabs_; }
  /// Number of real (non-padding) columns in slab s.
  index_t slab_cols(index_t s) const noexcept {
    return s + 1 < slabs_ ? width_ : cols_ - s * width_;
  }

  /// Slab s as a rows x slab_cols(s) view with ld = slab_width.
  MatrixView<T> slab(index_t s) noexcept {
    return {data_.data() + s * rows_ * width_, rows_, slab_cols(s), width_};
  }
  ConstMatrixView<T> slab(index_t s) const noexcept {
    return {data_.data() + s * rows_ * width_, rows_, slab_cols(s), width_};
  }

  T &operator()(index_t i, index_t j) noexcept {
    return data_[(j / width_) * rows_ * width_ + i * width_ + j % width_];
  }
  const T &operator()(index_t i, index_t j) const noexcept {
    return data_[(j / width_) * rows_ * width_ + i * width_ + j % width_];
  }

  /// Copies column j out into `out` (size rows()).
  void get_column(index_t j, std::span<T> out) const;
  /// Copies `in` (size rows()) into column j.
  void set_column(index_t j, std::span<const T> in);
  void set_zero();

  /// Bytes of storage (including padding).
  std::size_t bytes() const noexcept { return data_.size() * sizeof(T); }
  std::span<T> storage() noexcept { return data_; }
  std::span<const T> storage() const noexcept { return data_; }

private:
  index_t rows_ = 0, cols_ = 0, width_ = default_slab_width, slabs_ = 0;
  // Cache-line aligned (solvers write in place), on ordinary pages: a batch
  // is often short-lived, and a huge-page first touch can stall.
  std::vector<T, detail::UninitAllocator<T, 64, false>> data_;
};

} // namespace tacit::inline v1
