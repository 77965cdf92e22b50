#pragma once
// Cache-line aligned slab-major buffers for the solvers' hot data.
//
// Why: the solver kernels load 64-byte vectors from rows of a slab; a buffer
// from std::vector (malloc/mmap) starts 16 bytes past a cache line, so every
// such load would straddle two lines (measured: 1.4x slower sweeps).

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <vector>

#include <tacit/dense.hpp>

namespace tacit::detail {

/// Allocations of at least this size are aligned to 2 MB and advised to use
/// transparent huge pages: the sweep streams its copy of A once per solve and
/// gathers rows of x, and with 4 KB pages that was measured ~10% slower.
inline constexpr std::size_t huge_page_threshold = std::size_t(4) << 20;
inline constexpr std::size_t huge_page_size = std::size_t(2) << 20;

// allocate_aligned and AlignedAllocator: tacit/dense.hpp (Batch uses them).

template <class T> using aligned_vector = std::vector<T, AlignedAllocator<T>>;

/// A slab-major rows x cols array (slabs of `width` columns, each rows x
/// width row-major) owned elsewhere: a SlabBuffer or a Batch's storage.
template <class T> struct SlabView {
  T *data = nullptr;
  index_t rows = 0, cols = 0, width = 1, slabs = 0;
  index_t slab_size() const noexcept { return rows * width; }
  T *slab(index_t s) const noexcept { return data + s * slab_size(); }
  index_t slab_cols(index_t s) const noexcept {
    return std::clamp<index_t>(cols - s * width, 0, width);
  }
};

template <class T> SlabView<T> slab_view(Batch<T> &b) {
  return {b.storage().data(), b.rows(), b.cols(), b.slab_width(), b.slab_count()};
}

/// Slab-major rows x cols storage like Batch (slabs of `width` columns, each
/// rows x width row-major), 64-byte aligned. Grows, never shrinks. Padding
/// columns of the last slab are never read by the solver kernels.
template <class T> struct SlabBuffer {
  aligned_vector<T> data;
  index_t rows = 0, cols = 0, width = 1, slabs = 0;

  void reshape(index_t r, index_t c, index_t w) {
    rows = r;
    cols = c;
    width = w;
    slabs = (c + w - 1) / w;
    const auto need = static_cast<std::size_t>(slabs * rows * width);
    if (data.size() < need)
      data.resize(need);
  }
  index_t slab_size() const noexcept { return rows * width; }
  T *slab(index_t s) noexcept { return data.data() + s * slab_size(); }
  const T *slab(index_t s) const noexcept { return data.data() + s * slab_size(); }
  index_t slab_cols(index_t s) const noexcept {
    return std::clamp<index_t>(cols - s * width, 0, width);
  }
  /// Reshapes to the batch's rows and columns with slab width `w` (which must
  /// give the same slab boundaries: w == b.slab_width(), or one slab) and
  /// copies its real columns.
  void copy_from(const Batch<T> &b, index_t w) {
    reshape(b.rows(), b.cols(), w);
    for (index_t s = 0; s < slabs; ++s) {
      const auto src = b.slab(s);
      T *dst = slab(s);
      for (index_t i = 0; i < rows; ++i)
        std::copy(src.row(i), src.row(i) + src.cols, dst + i * width);
    }
  }
  /// Copies the real columns into a batch of the same rows and columns (and
  /// the same slab boundaries).
  void copy_to(Batch<T> &b) const { copy_slabs_to(data.data(), b); }
  /// The same from a raw slab-major array of this buffer's shape.
  void copy_slabs_to(const T *base, Batch<T> &b) const {
    for (index_t s = 0; s < slabs; ++s) {
      auto dst = b.slab(s);
      const T *src = base + s * slab_size();
      for (index_t i = 0; i < rows; ++i)
        std::copy(src + i * width, src + i * width + dst.cols, dst.row(i));
    }
  }
  SlabView<T> view() noexcept { return {data.data(), rows, cols, width, slabs}; }
  SlabView<const T> view() const noexcept {
    return {data.data(), rows, cols, width, slabs};
  }
  void zero() { std::fill(data.begin(), data.begin() + slabs * slab_size(), T(0)); }
};

/// The solvers' internal slab width for a batch of k columns with slab width
/// w: min(w, k). A narrow batch is then stored densely (a single column is a
/// contiguous vector) while slab boundaries stay those of the batch.
inline index_t internal_width(index_t w, index_t k) {
  return std::max<index_t>(1, std::min(w, k));
}

} // namespace tacit::detail
