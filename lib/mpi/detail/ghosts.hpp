#pragma once
// The ghost states of a rank: the columns of its rows of A outside its own
// range, and every stored entry's column in the local index space (ghosts
// below the own range, the own states, ghosts above, all in increasing
// global order), shared by the distributed Picard solve and the distributed
// product.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <utility>
#include <vector>

#include <tacit/mpi/mpi.hpp>

namespace tacit::inline v1::mpi::detail {

struct GhostColumns {
  std::vector<index_t> ghosts;     ///< global indices, increasing, no duplicates
  index_t below = 0;               ///< how many of them precede the own range
  std::vector<std::int64_t> local; ///< local column of every stored entry
};

/// Sorts keys by their bits [shift, shift + bits) (least significant digit
/// first, stable): linear in the number of keys, where a comparison sort and
/// a binary search per entry cost about as much as the whole power iteration
/// on two ranks.
inline void radix_sort(std::vector<std::uint64_t> &keys, int shift, int bits) {
  constexpr int digit = 11;
  std::vector<std::uint64_t> tmp(keys.size());
  std::vector<std::size_t> count(std::size_t(1) << digit);
  for (int d = 0; d < bits; d += digit) {
    const int s = shift + d;
    const std::uint64_t mask = (std::uint64_t(1) << std::min(digit, bits - d)) - 1;
    std::fill(count.begin(), count.end(), 0);
    for (const auto k : keys)
      ++count[(k >> s) & mask];
    std::size_t at = 0;
    for (auto &c : count)
      at += std::exchange(c, at);
    for (const auto k : keys)
      tmp[count[(k >> s) & mask]++] = k;
    keys.swap(tmp);
  }
}

/// Sorted ghosts and local columns by a radix sort of the off-rank entries
/// (memory 16 bytes per off-rank entry, independent of n).
inline GhostColumns ghost_columns_sorted(const DistributedModel &model) {
  GhostColumns out;
  const index_t r0 = model.own_begin(), r1 = model.own_end(), own = r1 - r0;
  const auto &L = model.A.local;
  const auto nnz = static_cast<std::uint64_t>(L.nnz());
  out.local.resize(static_cast<std::size_t>(nnz));
  // Off-rank entries as keys column << pbits | position, sorted by column.
  const int pbits = std::max(1, static_cast<int>(std::bit_width(nnz)));
  const int cbits =
      std::max(1, static_cast<int>(std::bit_width(static_cast<std::uint64_t>(model.n))));
  std::vector<std::uint64_t> keys;
  L.visit_columns([&](auto cols) {
    for (std::uint64_t e = 0; e < nnz; ++e) {
      const auto c = static_cast<index_t>(cols[e]);
      if (c >= r0 && c < r1)
        out.local[e] = c - r0; // shifted by the ghosts below at the end
      else
        keys.push_back(static_cast<std::uint64_t>(c) << pbits | e);
    }
  });
  const std::uint64_t pmask = (std::uint64_t(1) << pbits) - 1;
  if (pbits + cbits <= 64) {
    radix_sort(keys, pbits, cbits);
  } else { // beyond 64 bits of column and position: compare the columns
    std::stable_sort(keys.begin(), keys.end(), [&](std::uint64_t a, std::uint64_t b) {
      return (a >> pbits) < (b >> pbits);
    });
  }
  index_t previous = -1;
  for (const auto k : keys) {
    const auto c = static_cast<index_t>(k >> pbits);
    if (c != previous) {
      out.ghosts.push_back(c);
      previous = c;
    }
    out.local[k & pmask] = static_cast<index_t>(out.ghosts.size()) - 1;
  }
  out.below =
      std::lower_bound(out.ghosts.begin(), out.ghosts.end(), r0) - out.ghosts.begin();
  const index_t g = out.below;
  // Own columns after the ghosts below, ghosts above after the own states.
  L.visit_columns([&](auto cols) {
    for (std::uint64_t e = 0; e < nnz; ++e) {
      const auto c = static_cast<index_t>(cols[e]);
      auto &x = out.local[e];
      if (c >= r0 && c < r1)
        x += g;
      else if (x >= g)
        x += own;
    }
  });
  return out;
}

/// The same by a bitmap of the n states: one bit per column a row reads,
/// then the local index of a column is the number of marked columns before
/// it (a popcount prefix per 64-bit word). Two passes over the entries and
/// one over n / 64 words, no sort: about 10x faster than the radix sort's
/// scatters at n = 10^6, but its memory (n / 4 bytes) grows with n.
inline GhostColumns ghost_columns_bitmap(const DistributedModel &model) {
  GhostColumns out;
  const index_t r0 = model.own_begin(), r1 = model.own_end(), own = r1 - r0;
  const auto &L = model.A.local;
  const auto nnz = static_cast<std::uint64_t>(L.nnz());
  const auto words = static_cast<std::size_t>((model.n + 63) / 64);
  std::vector<std::uint64_t> marked(words, 0);
  L.visit_columns([&](auto cols) {
    for (std::uint64_t e = 0; e < nnz; ++e) {
      const auto c = static_cast<std::uint64_t>(cols[e]);
      marked[c >> 6] |= std::uint64_t(1) << (c & 63);
    }
  });
  // The own range counts as marked for the local numbering (local index =
  // marked columns before c, ghosts and own states alike) but not as ghosts.
  std::vector<index_t> before(words);
  index_t count = 0;
  for (std::size_t w = 0; w < words; ++w) {
    const auto base = static_cast<index_t>(w * 64);
    std::uint64_t m = marked[w];
    if (base >= r0 && base + 64 <= r1) {
      m = ~std::uint64_t(0);
      marked[w] = m;
    } else if (base < r1 && base + 64 > r0) { // the word meets the own range
      for (int b = 0; b < 64; ++b) {
        const index_t c = base + b;
        if (c >= r0 && c < r1)
          m |= std::uint64_t(1) << b;
      }
      marked[w] = m;
    }
    before[w] = count;
    count += std::popcount(m);
  }
  out.ghosts.reserve(static_cast<std::size_t>(count - own));
  for (std::size_t w = 0; w < words; ++w) {
    for (std::uint64_t m = marked[w]; m; m &= m - 1) {
      const auto c = static_cast<index_t>(w * 64) + std::countr_zero(m);
      if (c < r0 || c >= r1)
        out.ghosts.push_back(c);
    }
  }
  out.below =
      std::lower_bound(out.ghosts.begin(), out.ghosts.end(), r0) - out.ghosts.begin();
  out.local.resize(static_cast<std::size_t>(nnz));
  L.visit_columns([&](auto cols) {
    for (std::uint64_t e = 0; e < nnz; ++e) {
      const auto c = static_cast<std::uint64_t>(cols[e]);
      const std::uint64_t lower = (std::uint64_t(1) << (c & 63)) - 1;
      out.local[e] = before[c >> 6] + std::popcount(marked[c >> 6] & lower);
    }
  });
  return out;
}

/// The ghosts of the rank's rows of A (the distinct columns outside
/// [own_begin, own_end)) and the local columns of its entries: by the bitmap
/// when it takes no more memory than the sort's keys, else by the sort.
inline GhostColumns ghost_columns(const DistributedModel &model) {
  const double bitmap_bytes = 0.25 * static_cast<double>(model.n); // bits + counts
  const double sort_bytes = 16.0 * static_cast<double>(model.A.local.nnz());
  return bitmap_bytes <= sort_bytes ? ghost_columns_bitmap(model)
                                    : ghost_columns_sorted(model);
}

} // namespace tacit::inline v1::mpi::detail
