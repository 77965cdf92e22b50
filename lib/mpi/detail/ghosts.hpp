#pragma once
// The ghost states of a rank: the columns of its rows of A outside its own
// range, shared by the distributed Picard solve and the distributed product.

#include <algorithm>
#include <vector>

#include <tacit/mpi/mpi.hpp>

namespace tacit::inline v1::mpi::detail {

struct GhostColumns {
  std::vector<index_t> ghosts; ///< global indices, increasing, no duplicates
  index_t below = 0;           ///< how many of them precede the own range
};

/// The distinct columns of the rank's rows of A outside [own_begin, own_end).
inline GhostColumns ghost_columns(const DistributedModel &model) {
  GhostColumns out;
  const index_t r0 = model.own_begin(), r1 = model.own_end();
  model.A.local.visit_columns([&](auto cols) {
    for (const auto c : cols)
      if (c < r0 || c >= r1)
        out.ghosts.push_back(static_cast<index_t>(c));
  });
  std::sort(out.ghosts.begin(), out.ghosts.end());
  out.ghosts.erase(std::unique(out.ghosts.begin(), out.ghosts.end()), out.ghosts.end());
  out.below =
      std::lower_bound(out.ghosts.begin(), out.ghosts.end(), r0) - out.ghosts.begin();
  return out;
}

} // namespace tacit::inline v1::mpi::detail
