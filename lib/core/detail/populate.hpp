#pragma once
// A new scratch buffer's pages mapped in one call instead of one page fault
// per 4 KiB page at first touch (the first solve of a command touches tens
// of megabytes of fresh scratch memory).

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tacit::inline v1::detail {

/// Buffers smaller than this are left to fault in page by page.
inline constexpr std::size_t populate_threshold = std::size_t(256) << 10;

/// Asks the kernel to map the whole pages of a new buffer writable now
/// (MADV_POPULATE_WRITE, Linux 5.14+: one call instead of a page fault per
/// 4 KiB page; measured about half the cost of faulting 6 MB in, on the
/// AVX-512 reference host). A hint: the contents are unchanged, and where the
/// call is not available the pages fault in at first touch as usual.
inline void populate_pages([[maybe_unused]] void *p, [[maybe_unused]] std::size_t bytes) {
#if defined(__linux__)
#ifdef MADV_POPULATE_WRITE
  constexpr int populate_write = MADV_POPULATE_WRITE;
#else
  constexpr int populate_write = 23; // Linux's value, missing from older headers
#endif
  if (bytes < populate_threshold)
    return;
  constexpr std::uintptr_t page = 4096;
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t first = (begin + page - 1) & ~(page - 1);
  const std::uintptr_t last = (begin + bytes) & ~(page - 1);
  if (last > first)
    madvise(reinterpret_cast<void *>(first), last - first, populate_write);
#endif
}

} // namespace tacit::inline v1::detail
