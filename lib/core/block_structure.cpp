#include <tacit/core/block_structure.hpp>

#include <algorithm>
#include <numeric>

namespace tacit::inline v1 {

namespace {
void check_sizes(const std::vector<index_t> &sizes, const char *owner, const char *what) {
  for (std::size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i] < 0)
      throw InvalidArgument(std::string(owner) + ": " + what + " block " +
                            std::to_string(i) + " has negative size " +
                            std::to_string(sizes[i]));
}
std::vector<index_t> prefix(const std::vector<index_t> &sizes) {
  std::vector<index_t> p(sizes.size() + 1, 0);
  for (std::size_t i = 0; i < sizes.size(); ++i)
    p[i + 1] = p[i] + sizes[i];
  return p;
}
} // namespace

template <class T>
BlockStructure<T>::BlockStructure(std::vector<index_t> rs, std::vector<index_t> cs,
                                  std::vector<BlockEntry<T>> e, const char *owner)
    : row_sizes_(std::move(rs)), col_sizes_(std::move(cs)), entries_(std::move(e)),
      owner_(owner) {
  check_sizes(row_sizes_, owner_, "row");
  check_sizes(col_sizes_, owner_, "column");
  row_offsets_ = prefix(row_sizes_);
  col_offsets_ = prefix(col_sizes_);
  const index_t R = row_blocks(), C = col_blocks();
  for (std::size_t k = 0; k < entries_.size(); ++k) {
    const auto &en = entries_[k];
    const std::string where = std::string(owner_) + ": entry " + std::to_string(k) +
                              " at block (" + std::to_string(en.block_row) + ", " +
                              std::to_string(en.block_col) + ")";
    if (en.block_row < 0 || en.block_row >= R || en.block_col < 0 || en.block_col >= C)
      throw InvalidArgument(where + " is outside the " + std::to_string(R) + " x " +
                            std::to_string(C) + " block partition");
    if (!en.op)
      throw InvalidArgument(where + " has a null operator");
    if (en.op->rows() != row_sizes_[en.block_row] ||
        en.op->cols() != col_sizes_[en.block_col])
      throw InvalidArgument(where + ": operator is " + std::to_string(en.op->rows()) +
                            " x " + std::to_string(en.op->cols()) + ", block is " +
                            std::to_string(row_sizes_[en.block_row]) + " x " +
                            std::to_string(col_sizes_[en.block_col]));
  }
  std::stable_sort(entries_.begin(), entries_.end(), [](const auto &a, const auto &b) {
    return a.block_row != b.block_row ? a.block_row < b.block_row
                                      : a.block_col < b.block_col;
  });
  const index_t E = static_cast<index_t>(entries_.size());
  order_.resize(static_cast<std::size_t>(E));
  std::iota(order_.begin(), order_.end(), index_t(0));
  row_ptr_.assign(static_cast<std::size_t>(R) + 1, 0);
  col_ptr_.assign(static_cast<std::size_t>(C) + 1, 0);
  for (const auto &en : entries_) {
    ++row_ptr_[en.block_row + 1];
    ++col_ptr_[en.block_col + 1];
  }
  for (index_t i = 0; i < R; ++i)
    row_ptr_[i + 1] += row_ptr_[i];
  for (index_t j = 0; j < C; ++j)
    col_ptr_[j + 1] += col_ptr_[j];
  by_col_ = order_;
  std::stable_sort(by_col_.begin(), by_col_.end(), [&](index_t a, index_t b) {
    return entries_[a].block_col < entries_[b].block_col;
  });
  entry_group_.resize(static_cast<std::size_t>(E));
  for (index_t k = 0; k < E; ++k) {
    if (k == 0 || entries_[k].block_row != entries_[k - 1].block_row ||
        entries_[k].block_col != entries_[k - 1].block_col)
      groups_.push_back({k, k + 1});
    else
      groups_.back().last = k + 1;
    entry_group_[k] = static_cast<index_t>(groups_.size()) - 1;
  }
}

template <class T>
std::span<const index_t> BlockStructure<T>::entries_in_row(index_t i) const {
  if (i < 0 || i >= row_blocks())
    throw InvalidArgument(std::string(owner_) + "::entries_in_row: block row " +
                          std::to_string(i) + " out of range");
  return {order_.data() + row_ptr_[i],
          static_cast<std::size_t>(row_ptr_[i + 1] - row_ptr_[i])};
}

template <class T>
std::span<const index_t> BlockStructure<T>::entries_in_col(index_t j) const {
  if (j < 0 || j >= col_blocks())
    throw InvalidArgument(std::string(owner_) + "::entries_in_col: block column " +
                          std::to_string(j) + " out of range");
  return {by_col_.data() + col_ptr_[j],
          static_cast<std::size_t>(col_ptr_[j + 1] - col_ptr_[j])};
}

template <class T>
bool BlockStructure<T>::strictly_block_lower_triangular() const noexcept {
  if (!square_partition())
    return false;
  for (const auto &e : entries_)
    if (e.block_col >= e.block_row)
      return false;
  return true;
}

template <class T> bool BlockStructure<T>::block_lower_triangular() const noexcept {
  if (!square_partition())
    return false;
  for (const auto &e : entries_)
    if (e.block_col > e.block_row)
      return false;
  return true;
}

template <class T> std::size_t BlockStructure<T>::bytes() const noexcept {
  return (row_sizes_.size() * 2 + col_sizes_.size() * 2 + order_.size() * 3 +
          row_ptr_.size() + col_ptr_.size()) *
             sizeof(index_t) +
         entries_.size() * sizeof(BlockEntry<T>);
}

template class BlockStructure<float>;
template class BlockStructure<double>;

} // namespace tacit::inline v1
