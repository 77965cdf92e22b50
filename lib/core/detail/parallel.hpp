#pragma once
// The parallel loop of the solvers and analyses: one TBB task per index of a
// partition the caller made (rows of equal work, slabs of a batch), so that
// the work of each index, and hence every result, does not depend on the
// thread count.

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <tacit/core/dense.hpp>

namespace tacit::inline v1::detail {

/// f(t) for t = 0 .. count-1: one task per index in the calling thread's
/// arena (no further splitting), or in order on the calling thread when
/// !parallel or count <= 1.
template <class F> void for_tasks(index_t count, bool parallel, F &&f) {
  if (!parallel || count <= 1) {
    for (index_t t = 0; t < count; ++t)
      f(t);
    return;
  }
  tbb::parallel_for(
      tbb::blocked_range<index_t>(0, count, 1),
      [&](const tbb::blocked_range<index_t> &r) {
        for (index_t t = r.begin(); t < r.end(); ++t)
          f(t);
      },
      tbb::simple_partitioner());
}

} // namespace tacit::inline v1::detail
