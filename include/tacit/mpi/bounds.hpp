#pragma once
/// \file bounds.hpp
/// The global and interval bounds of tacit/analysis/bounds.hpp on a CSR
/// model distributed by states (component tacit::mpi): every rank bounds its
/// own states, the products with A and |A| by tacit's CSR kernel on its rows
/// (DistributedProduct, the neighbours' states exchanged before every
/// product), B's own rows and the inputs on every rank.
///
/// The set-up, the rounding allowances, the iterations and their stopping
/// rules are those of BoundAnalyzer on the whole model: the allowance gA from
/// the most terms of a row or column of A (counted over all ranks), the
/// certificate vector v ~ (I - L|A|)^-1 1 and its rate rho, the global
/// bound's iteration to the tolerance raised along v until it is a computed
/// supersolution (or, for a feed-forward A, iterated until exact), the
/// interval fixed point from it. Every row sum is formed in the
/// single-process order and every reduction is a maximum, a minimum or a
/// conjunction (exact): the own slices of the bounds are the same bits as
/// BoundAnalyzer<double>'s for any number of ranks.
///
/// Feed-forward: the levels of A (a state's is one more than the highest
/// state its row reads) are found by iterating that rule to its fixed point,
/// one exchange per level; an A whose levels have not settled after
/// BoundOptions::max_iterations iterations is taken as cyclic (sound bounds
/// all the same; a feed-forward A that deep would get the cyclic stopping
/// rules instead of the single process's).
///
/// Margins (margins()): the lower bounds of g^T y, y = C x + D u + c, for
/// the margins y_label - y_k and the outputs, by interval arithmetic on the
/// state bounds (BoundAnalyzer::interval_lower). The set-up moves C's
/// columns to the owners of their states (each rank keeps C^T's rows of its
/// own states, in the order of the single process's explicit transpose: a
/// second copy of C's entries, spread over the ranks by states), so
/// W = C^T G is formed by the same kernel on the same rows. The sums over
/// the states are chained from rank to rank in the order of the states
/// (rank 0 starting with G^T c, the last passing back to rank 0, which adds
/// the inputs' terms with D and the rounding allowance and broadcasts the
/// result); the output products C x0 and |C| xmag are formed by the owners
/// of C's rows from the states gathered on every rank (an n-vector, not the
/// model). So the margins and outputs are the single-process bits, on every
/// rank.
///
/// Thread safety: the calls are collective over the model's communicator.

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include <tacit/analysis/bounds.hpp>
#include <tacit/mpi/mpi.hpp>

namespace tacit::inline v1::mpi {

/// Bounds on the own states of a distributed CSR model (float64).
class TACIT_EXPORT DistributedBoundAnalyzer {
public:
  /// The set-up of BoundAnalyzer (activations, allowances, levels,
  /// certificate vector) across the ranks. The model must outlive the
  /// analyzer. Collective.
  /// `memory_budget` > 0: the bytes one rank may hold for the model and the
  /// analyzer's copy of C's entries in the columns of its states (C^T's own
  /// rows); a rank that would need more refuses, on every rank, before the
  /// copy is made.
  /// \throws Unsupported for a leaky ReLU of negative slope (not monotone);
  /// InvalidArgument for a share over the memory budget.
  explicit DistributedBoundAnalyzer(const DistributedModel &model, BoundOptions options = {},
                                    std::size_t memory_budget = 0);
  ~DistributedBoundAnalyzer();
  DistributedBoundAnalyzer(const DistributedBoundAnalyzer &) = delete;
  DistributedBoundAnalyzer &operator=(const DistributedBoundAnalyzer &) = delete;

  /// lambda_PF(L|A|) < 1 certified (false: every bound is unbounded).
  bool certified_well_posed() const noexcept;
  /// The certified rate rho (0 for a feed-forward A).
  double rate() const noexcept;
  bool feed_forward() const noexcept;
  /// Levels of a feed-forward A (depth + 1), 0 otherwise.
  index_t levels() const noexcept;

  /// The nominal point (BoundAnalyzer::nominal): u0 the p inputs (the same on
  /// every rank), x0_own the own states of the equilibrium. The result's u
  /// holds the inputs, x, residual and residual_rounding the own states, y
  /// the q outputs C x0 + D u0 + c (every rank; the single-process bits).
  /// Collective. \throws InvalidArgument on wrong sizes.
  NominalPoint<double> nominal(std::span<const double> u0,
                               std::span<const double> x0_own) const;

  /// The global bound (BoundAnalyzer::global_bounds) on the own states.
  /// Collective. \throws InvalidArgument for a box without p entries or
  /// lower > upper (on every rank).
  StateBounds<double> global_bounds(const NominalPoint<double> &nominal,
                                    const InputBox<double> &box) const;
  /// The interval bound (BoundAnalyzer::interval_bounds) on the own states.
  /// Collective. \throws Error (on every rank) when the enclosures of a state
  /// do not intersect (a nominal point that is not an equilibrium within its
  /// recorded residual), naming the state.
  StateBounds<double> interval_bounds(const NominalPoint<double> &nominal,
                                      const InputBox<double> &box) const;

  /// Margins y_label - y_k and output bounds over the box
  /// (BoundAnalyzer::margins), the same on every rank: global, interval, or
  /// best = global, then interval when the global bound does not certify
  /// (the linear bound is not available on a model distributed by states;
  /// the interval margins are never below the global ones). Collective.
  /// \throws InvalidArgument for a label outside [0, q); Unsupported for
  /// BoundMethod::linear (on every rank).
  MarginBounds<double> margins(const NominalPoint<double> &nominal,
                               const InputBox<double> &box, int label,
                               BoundMethod method) const;

  const DistributedModel &model() const noexcept;
  const BoundOptions &options() const noexcept;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace tacit::inline v1::mpi
