#pragma once
// Internal entry point of the Perron-Frobenius analysis that also hands back
// the positive vector behind each block's certified upper bound (used by the
// diagonal rescaling).

#include <vector>

#include <tacit/analysis/wellposed.hpp>

namespace tacit::inline v1::detail {

/// Per block of the SCC decomposition: for a cyclic block (size > 1), the
/// states of the block in increasing order and the positive vector (same
/// order, normally scaled to max entry 1) whose Collatz-Wielandt ratios gave
/// the block's upper bound `upper`; empty `states` for a 1x1 block, whose
/// bound is |a_ii|.
struct PerronBlockVector {
  std::vector<index_t> states;
  std::vector<double> vector;
  double upper = 0;
};

template <class T>
PerronBound perron_bound_with_vectors(const CsrMatrix<T> &A, const SccDecomposition &scc,
                                      const PerronOptions &options,
                                      std::vector<PerronBlockVector> *vectors);

} // namespace tacit::inline v1::detail
