#pragma once
// Channels of the state blocks of a model, shared by the channel groups
// (groups.cpp) and channel pruning (prune.cpp).
//
// A state block whose rows are a C x H x W feature map (the rows of a
// convolution, a pooling or a channel padding, or an identity / diagonal
// from such a block) has C channels of H*W states each; any other block has
// one channel per state. The blocks are the model's StateBlocks; when A is a
// BlockOperator over them, its entries give the feature maps and the ties:
// an entry without parameters of its own that copies channel c' of block j
// into channel c of block i (an identity or diagonal: a residual addition or
// a batch norm kept as a scaling; an average pooling; a channel padding, c =
// c' + pad_front) ties (i, c) to (j, c'): the two are zero together or not
// at all, so they form one group and are pruned together.

#include <tacit/core/capabilities.hpp>
#include <tacit/core/model.hpp>
#include <tacit/operators/structured.hpp>

#include <algorithm>
#include <numeric>
#include <optional>
#include <vector>

namespace tacit::inline v1::detail {

/// The output feature map of an operator's rows, when it has one.
template <class T> std::optional<TensorShape> rows_shape(const LinearOperator<T> &op) {
  if (const auto *t = capability<Trainable<T>>(op))
    if (const auto f = t->row_feature_map(); f && f->size() == 3)
      return TensorShape{(*f)[0], (*f)[1], (*f)[2]};
  if (const auto *p = dynamic_cast<const AvgPool2dOperator<T> *>(&op))
    return p->output_shape();
  if (const auto *p = dynamic_cast<const ChannelPadOperator<T> *>(&op))
    return p->output_shape();
  if (const auto *c = dynamic_cast<const ComposedOperator<T> *>(&op))
    return rows_shape(*c->left());
  return std::nullopt;
}

/// The input feature map an operator's columns read, when it has one.
template <class T> std::optional<TensorShape> cols_shape(const LinearOperator<T> &op) {
  if (const auto *c = dynamic_cast<const Conv2dOperator<T> *>(&op))
    return c->geometry().input;
  if (const auto *p = dynamic_cast<const AvgPool2dOperator<T> *>(&op))
    return p->input_shape();
  if (const auto *p = dynamic_cast<const ChannelPadOperator<T> *>(&op))
    return p->input_shape();
  if (const auto *c = dynamic_cast<const ComposedOperator<T> *>(&op))
    return cols_shape(*c->right());
  return std::nullopt;
}

/// Channel c_row of the rows copies channel c_row - shift of the columns
/// (identity, diagonal, pooling: 0; channel padding: pad_front), or nullopt
/// when the operator is not such a copy.
template <class T>
std::optional<index_t> channel_copy_shift(const LinearOperator<T> &op) {
  if (const auto *p = dynamic_cast<const ChannelPadOperator<T> *>(&op))
    return p->pad_front();
  if (dynamic_cast<const AvgPool2dOperator<T> *>(&op))
    return 0;
  if (capability<DiagonalForm<T>>(op) && op.rows() == op.cols())
    return 0;
  return std::nullopt;
}

struct ChannelLayout {
  /// Per state block (Model::blocks() order).
  std::vector<index_t> offset, size, plane, base; ///< base: first channel id
  index_t channels = 0;                           ///< total over the blocks
  bool feature_maps = false; ///< some block has planes of more than one state
  std::vector<std::pair<index_t, index_t>> ties; ///< channel ids tied

  index_t block_of(index_t state) const {
    const auto it = std::upper_bound(offset.begin(), offset.end(), state);
    return static_cast<index_t>(it - offset.begin()) - 1;
  }
  index_t channel_of(index_t state) const {
    const index_t b = block_of(state);
    return base[b] + (state - offset[b]) / plane[b];
  }
  index_t block_channels(index_t b) const { return size[b] / plane[b]; }
};

template <class T> ChannelLayout channel_layout(const Model<T> &m) {
  ChannelLayout L;
  const auto &blocks = m.blocks();
  const auto nb = static_cast<index_t>(blocks.size());
  for (const auto &b : blocks) {
    L.offset.push_back(b.offset);
    L.size.push_back(b.size);
  }
  L.plane.assign(static_cast<std::size_t>(nb), 0);
  const auto *A = dynamic_cast<const BlockOperator<T> *>(&m.A());
  const auto *B = dynamic_cast<const BlockOperator<T> *>(&m.B());
  bool aligned = A && A->square_partition() && A->row_blocks() == nb;
  for (index_t i = 0; aligned && i < nb; ++i)
    aligned = A->row_offset(i) == blocks[i].offset;
  const bool b_aligned = aligned && B && B->row_blocks() == nb;
  auto set = [&](index_t b, const std::optional<TensorShape> &s) {
    if (s && s->size() == L.size[b] && s->height * s->width > 1 && L.plane[b] == 0)
      L.plane[b] = s->height * s->width;
  };
  if (aligned) {
    for (const auto &en : A->entries()) {
      set(en.block_row, rows_shape(*en.op));
      set(en.block_col, cols_shape(*en.op));
    }
    if (b_aligned)
      for (const auto &en : B->entries())
        set(en.block_row, rows_shape(*en.op));
    // Copies carry the planes across (a residual addition of two blocks).
    for (bool changed = true; changed;) {
      changed = false;
      for (const auto &en : A->entries()) {
        if (!channel_copy_shift(*en.op) || en.op->rows() != en.op->cols())
          continue;
        auto &pi = L.plane[en.block_row], &pj = L.plane[en.block_col];
        if (pi == 0 && pj != 0 && L.size[en.block_row] % pj == 0) {
          pi = pj;
          changed = true;
        } else if (pj == 0 && pi != 0 && L.size[en.block_col] % pi == 0) {
          pj = pi;
          changed = true;
        }
      }
    }
  }
  for (index_t b = 0; b < nb; ++b) {
    if (L.plane[b] == 0)
      L.plane[b] = 1;
    L.feature_maps = L.feature_maps || L.plane[b] > 1;
    L.base.push_back(L.channels);
    L.channels += L.size[b] / L.plane[b];
  }
  if (aligned)
    for (const auto &en : A->entries()) {
      const auto shift = channel_copy_shift(*en.op);
      if (!shift)
        continue;
      const index_t i = en.block_row, j = en.block_col;
      const auto rs = rows_shape(*en.op), cs = cols_shape(*en.op);
      const index_t ci = L.block_channels(i), cj = L.block_channels(j);
      // The copy must read whole channels of both blocks.
      const index_t pr =
          rs ? rs->height * rs->width : en.op->rows() / std::max<index_t>(ci, 1);
      const index_t pc =
          cs ? cs->height * cs->width : en.op->cols() / std::max<index_t>(cj, 1);
      if (pr != L.plane[i] || pc != L.plane[j])
        continue;
      for (index_t c = 0; c < cj; ++c)
        if (c + *shift < ci)
          L.ties.emplace_back(L.base[i] + c + *shift, L.base[j] + c);
    }
  return L;
}

/// Union-find over channel ids.
struct ChannelUnion {
  std::vector<index_t> parent;
  explicit ChannelUnion(index_t n) : parent(static_cast<std::size_t>(n)) {
    std::iota(parent.begin(), parent.end(), index_t(0));
  }
  index_t find(index_t a) {
    while (parent[a] != a)
      a = parent[a] = parent[parent[a]];
    return a;
  }
  void unite(index_t a, index_t b) {
    a = find(a);
    b = find(b);
    if (a != b)
      parent[std::max(a, b)] = std::min(a, b); // the root is the first channel
  }
};

} // namespace tacit::inline v1::detail
