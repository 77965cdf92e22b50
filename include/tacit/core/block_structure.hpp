#pragma once
/// \file block_structure.hpp
/// A block partition of a matrix and its nonzero blocks: the structure that
/// the block sweep, the structural well-posedness analysis, the block
/// sensitivity back-end and the linear bound exploit. An operator that knows
/// its blocks offers it through the `BlockStructured` capability
/// (capabilities.hpp); `BlockOperator` is one such operator, and any other
/// type may build a `BlockStructure` over operators of its own.
///
/// Thread safety: immutable after construction; any number of threads may
/// read one object.

#include <span>
#include <string>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/core/operator.hpp>

namespace tacit::inline v1 {

/// One nonzero block. Several entries at the same (block_row, block_col) are
/// summed.
template <class T> struct TACIT_EXPORT BlockEntry {
  index_t block_row = 0, block_col = 0;
  OperatorPtr<T> op;
};

/// Row blocks, column blocks and the nonzero blocks of a matrix.
template <class T> class TACIT_EXPORT BlockStructure {
public:
  /// Entries [first, last) of entries() that share one block position.
  struct Group {
    index_t first = 0, last = 0;
  };

  BlockStructure() = default;
  /// \param owner names the operator in error messages.
  /// \throws InvalidArgument on a negative block size, an entry outside the
  /// partition, a null operator or an operator whose size differs from its
  /// block's.
  BlockStructure(std::vector<index_t> row_block_sizes,
                 std::vector<index_t> col_block_sizes, std::vector<BlockEntry<T>> entries,
                 const char *owner = "BlockStructure");

  /// Total rows and columns (sums of the block sizes).
  index_t rows() const noexcept { return row_offsets_.back(); }
  index_t cols() const noexcept { return col_offsets_.back(); }
  index_t row_blocks() const noexcept { return static_cast<index_t>(row_sizes_.size()); }
  index_t col_blocks() const noexcept { return static_cast<index_t>(col_sizes_.size()); }
  /// First row of block row i (prefix sum; i == row_blocks() gives rows()).
  index_t row_offset(index_t i) const {
    return row_offsets_.at(static_cast<std::size_t>(i));
  }
  /// First column of block column j (j == col_blocks() gives cols()).
  index_t col_offset(index_t j) const {
    return col_offsets_.at(static_cast<std::size_t>(j));
  }
  index_t row_block_size(index_t i) const {
    return row_sizes_.at(static_cast<std::size_t>(i));
  }
  index_t col_block_size(index_t j) const {
    return col_sizes_.at(static_cast<std::size_t>(j));
  }

  /// The entries, sorted by (block_row, block_col) (stable: entries at the
  /// same block keep their given order).
  std::span<const BlockEntry<T>> entries() const noexcept { return entries_; }
  /// Indices into entries() of the entries of block row i.
  std::span<const index_t> entries_in_row(index_t i) const;
  /// Indices into entries() of the entries of block column j (ascending).
  std::span<const index_t> entries_in_col(index_t j) const;
  /// The block positions: runs of entries() at one (block_row, block_col).
  std::span<const Group> groups() const noexcept { return groups_; }
  /// Index into groups() of entry e.
  index_t group_of(index_t e) const {
    return entry_group_.at(static_cast<std::size_t>(e));
  }

  /// Same number and sizes of row and column blocks.
  bool square_partition() const noexcept { return row_sizes_ == col_sizes_; }
  /// For a square partition: true when every entry has block_col < block_row
  /// (strictly block lower triangular: feed-forward, lambda_PF(|A|) = 0).
  /// False for a non-square partition.
  bool strictly_block_lower_triangular() const noexcept;
  /// The same with block_col <= block_row (diagonal blocks allowed).
  bool block_lower_triangular() const noexcept;

  /// Bytes of the structure itself (not of the entries' operators).
  std::size_t bytes() const noexcept;

private:
  std::vector<index_t> row_sizes_, col_sizes_, row_offsets_{0}, col_offsets_{0};
  std::vector<BlockEntry<T>> entries_;
  // entries_in_row(i) = order_[row_ptr_[i], row_ptr_[i+1]) (order_ = 0, 1, ...);
  // entries_in_col(j) = by_col_[col_ptr_[j], col_ptr_[j+1]).
  std::vector<index_t> order_, row_ptr_{0}, by_col_, col_ptr_{0};
  std::vector<Group> groups_;
  std::vector<index_t> entry_group_; // group of each entry
  const char *owner_ = "BlockStructure";
};

} // namespace tacit::inline v1
