#pragma once
// Internal entry point of the Perron-Frobenius analysis that also hands back
// the positive vector behind each block's certified upper bound (used by the
// diagonal rescaling), and the pieces perron.cpp shares with wellposed.cpp.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
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

/// \throws InvalidArgument on options out of range.
void check_perron_options(const PerronOptions &options);

/// lambda_PF of a block triangular matrix is the max over its diagonal
/// blocks: merges the blocks' intervals, work counts and statuses (the
/// least settled status wins).
struct DiagonalBlockMerge {
  std::int64_t iterations = 0, shift_invert_steps = 0;
  bool budget = false, stalled = false, decided = false;
  index_t widest = -1; // block with the largest upper bound, if above the start

  template <class Outcome> void add(PerronBound &pf, index_t block, const Outcome &o) {
    pf.lower = std::max(pf.lower, o.lower);
    if (o.upper > pf.upper) {
      pf.upper = o.upper;
      widest = block;
    }
    iterations += o.iterations;
    shift_invert_steps += o.shift_invert_steps;
    pf.underflow = pf.underflow || o.underflow;
    budget = budget || o.status == PerronStatus::budget_exhausted;
    stalled = stalled || o.status == PerronStatus::stalled;
    decided = decided || o.status == PerronStatus::decided;
  }

  void finish(PerronBound &pf) const {
    constexpr std::int64_t int_max = std::numeric_limits<int>::max();
    pf.iterations = static_cast<int>(std::min(iterations, int_max));
    pf.shift_invert_steps = static_cast<int>(std::min(shift_invert_steps, int_max));
    pf.status = budget    ? PerronStatus::budget_exhausted
                : stalled ? PerronStatus::stalled
                : decided ? PerronStatus::decided
                          : PerronStatus::tight;
  }
};

} // namespace tacit::inline v1::detail
