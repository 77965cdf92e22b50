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

#include <tacit/core/dense.hpp>

namespace tacit::inline v1::detail {

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
  SlabView<T> view() noexcept { return {data.data(), rows, cols, width, slabs}; }
  SlabView<const T> view() const noexcept {
    return {data.data(), rows, cols, width, slabs};
  }
  void zero() { std::fill(data.begin(), data.begin() + slabs * slab_size(), T(0)); }
};

} // namespace tacit::inline v1::detail
