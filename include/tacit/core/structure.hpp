#pragma once
/// \file structure.hpp
/// Strongly connected components of the pattern of A (SuiteSparse BTF) and
/// the block-triangular order that makes x = phi(A x + b) solvable block by
/// block: with states permuted by `order`, A is block lower triangular, so
/// block k depends only on blocks 0..k. The same analysis applies to the
/// blocks of any operator that knows its block structure (a network), one
/// node per block, without materialising the operator.
///
/// Thread safety: the functions are reentrant and read their argument only; an
/// SccDecomposition is a value.

#include <optional>
#include <vector>

#include <tacit/core/block_structure.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

struct TACIT_EXPORT SccDecomposition {
  /// States in dependency order; block k is order[block_ptr[k] .. block_ptr[k+1]).
  std::vector<index_t> order;
  /// Block boundaries into `order` (size block_count() + 1).
  std::vector<index_t> block_ptr;
  /// Blocks grouped by level of the block DAG: the blocks of level l,
  /// level_ptr[l] .. level_ptr[l+1] (indices into the block list), depend only
  /// on blocks of earlier levels, so each level can be solved in parallel.
  std::vector<index_t> level_ptr;
  /// Block index of each state (size n).
  std::vector<index_t> block_of;
  /// For each block: 1 when it contains a cycle (size > 1, or a nonzero
  /// diagonal entry), 0 for a trivial 1x1 block.
  std::vector<char> has_cycle;

  index_t block_count() const noexcept {
    return block_ptr.empty() ? 0 : static_cast<index_t>(block_ptr.size()) - 1;
  }
  index_t level_count() const noexcept {
    return level_ptr.empty() ? 0 : static_cast<index_t>(level_ptr.size()) - 1;
  }
  index_t block_size(index_t k) const noexcept { return block_ptr[k + 1] - block_ptr[k]; }
  /// Size of the largest block.
  index_t largest_block() const noexcept;
  /// Number of 1x1 blocks.
  index_t singleton_count() const noexcept;
  /// True when every block is a 1x1 block without a diagonal entry: A is
  /// nilpotent (a feed-forward network), lambda_PF(|A|) = 0.
  bool nilpotent() const noexcept;
};

/// SCCs of the directed graph with an edge j -> i for each a_ij != 0 (stored
/// zeros are ignored), computed by SuiteSparse BTF in O(n + nnz).
template <class T>
TACIT_EXPORT SccDecomposition strongly_connected_components(const CsrMatrix<T> &A);

/// SCCs of the block graph of a square block partition: one node per block
/// (order, block_of, ... index blocks, not states), an edge j -> i for each
/// nonzero block (i, j) (an entry counts even if its operator is zero), a
/// cycle for a block with an entry on the diagonal. For a block lower
/// triangular structure every SCC is one block and the levels are those of
/// the block DAG: the blocks of a level can be computed in parallel.
/// \throws InvalidArgument unless the partition is square.
template <class T>
TACIT_EXPORT SccDecomposition
strongly_connected_components(const BlockStructure<T> &blocks);

/// How the dependency structure of an operator A was analysed.
enum class StructureSource {
  /// From the operator's block structure (a square, strictly block lower
  /// triangular partition: a network). Nothing is materialised; every state
  /// is its own acyclic SCC and the levels are those of the block DAG.
  blocks,
  /// From the SCCs of A's pattern, one node per state (A's CSR form, borrowed
  /// when A is stored as CSR and built otherwise).
  states,
};

/// The SCC structure of A in the terms a user reads: counts, largest
/// component, levels and whether A is nilpotent (feed-forward).
struct TACIT_EXPORT StructureSummary {
  StructureSource source = StructureSource::states;
  index_t states = 0;        ///< n
  index_t components = 0;    ///< SCCs (n when source == blocks)
  index_t largest = 0;       ///< states in the largest SCC
  index_t cyclic = 0;        ///< SCCs that contain a cycle
  index_t singletons = 0;    ///< 1x1 SCCs
  index_t levels = 0;        ///< levels of the SCC DAG (of the block DAG for blocks)
  bool nilpotent = false;    ///< lambda_PF(|A|) = 0
  index_t state_blocks = 0;  ///< block rows of the partition (source == blocks)
  index_t block_entries = 0; ///< nonzero blocks (source == blocks)
  /// The state-level decomposition (source == states only).
  std::optional<SccDecomposition> scc;
};

/// Summary of a state-level decomposition.
TACIT_EXPORT StructureSummary summarise(const SccDecomposition &scc);

/// The structure of a square operator A, found the cheapest way it allows:
/// from its block structure when that is a square, strictly block lower
/// triangular partition (costs O(blocks), reads no values), otherwise from the
/// SCCs of its CSR form (O(n + nnz); builds a CSR copy when A is not CSR).
/// \throws InvalidArgument unless A is square.
template <class T>
TACIT_EXPORT StructureSummary analyse_structure(const LinearOperator<T> &A);

} // namespace tacit::inline v1
