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
  index_t block_size(index_t k) const noexcept {
    return block_ptr[k + 1] - block_ptr[k];
  }
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

} // namespace tacit::inline v1
