#pragma once
// Transparent huge pages for the large arrays of sparse matrices.
//
// Streaming hundreds of megabytes through 4 KiB pages costs a TLB miss every
// 4 KiB and stops the hardware prefetchers at every page boundary; on the
// reference machine a plain read of 512 MB runs about 25% faster from 2 MiB
// pages. Linux only backs anonymous memory with huge pages on request
// (transparent_hugepage = madvise), and the request must come before the
// pages are first touched, so arrays are reserved, advised, then filled.
// Elsewhere, or for small arrays, this is a plain reserve.

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tacit::inline v1::detail {

/// Arrays smaller than this gain nothing from huge pages.
inline constexpr std::size_t huge_page_threshold = std::size_t(8) << 20;

/// Reserves room for n elements in an empty vector and asks the kernel to
/// back the whole 2 MiB pages inside it with huge pages. Must be called
/// before the elements are written (resize/assign afterwards).
template <class U> void reserve_huge_pages(std::vector<U> &v, std::size_t n) {
  v.reserve(n);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const std::size_t bytes = n * sizeof(U);
  if (bytes < huge_page_threshold)
    return;
  constexpr std::uintptr_t huge = std::uintptr_t(2) << 20;
  const auto begin = reinterpret_cast<std::uintptr_t>(v.data());
  const std::uintptr_t first = (begin + huge - 1) & ~(huge - 1);
  const std::uintptr_t last = (begin + bytes) & ~(huge - 1);
  if (last > first)
    madvise(reinterpret_cast<void *>(first), last - first, MADV_HUGEPAGE); // a hint
#endif
}

} // namespace tacit::inline v1::detail
