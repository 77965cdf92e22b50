#pragma once
// A-priori rounding bounds of operator products, for the bounds
// (lib/analysis/bounds*.cpp, local_lipschitz.cpp).
//
// A product y = op(M) x computed by any kernel, in any summation order, is a
// sum of at most k products m_ij x_j per output, so it is off by at most
// gamma_k (|M| |x|)_i, gamma_k = k u / (1 - k u) (u the unit roundoff), for
// an explicitly stored M. A structured operator computes through its parts,
// and the bound is then in terms of the parts:
//   - L (R x) (ComposedOperator) is off by gamma_kL |L| |R x| + |L| gamma_kR
//     |R| |x| <= gamma_{kL + kR} |L| |R| |x|: the majorant is |L| |R|, which
//     may exceed |L R| (cancellation inside the product);
//   - a block of a block-structured operator (BlockStructured) that sums
//     several entries, M = P1 + P2 + ...,
//     is computed as P1 x + P2 x + ...: off by gamma_{max k + entries}
//     (|P1| + |P2| + ...) |x|, and |P1| + |P2| + ... may exceed |M|.
// product_terms() is k for every mode of an operator and majorant_apply()
// the product with the majorant (|M| for explicitly stored operators). The
// analyses widen with gamma(k) majorant |x|. An operator type that none of
// the capabilities below describes is taken to compute each output as one
// sum of its entries' products (as a stored matrix does); its k is counted
// on its CSR form when that is small, else bounded by its width.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <tacit/core/block_structure.hpp>
#include <tacit/core/capabilities.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/operators/structured.hpp>

namespace tacit::inline v1::detail {

/// Terms above which an operator of unknown structure is not materialised
/// to count its nonzeros per row and column (its width is used instead).
inline constexpr std::int64_t kMaterialiseTermsLimit = std::int64_t(1) << 22;

template <class T> index_t csr_terms(const CsrMatrix<T> &M) {
  index_t most = 1;
  const auto rp = M.row_ptr();
  for (index_t i = 0; i < M.rows(); ++i)
    most = std::max<index_t>(most, static_cast<index_t>(rp[i + 1] - rp[i]));
  std::vector<index_t> col_count(static_cast<std::size_t>(M.cols()), 0);
  M.visit_columns([&](auto cols) {
    for (const auto c : cols)
      most = std::max<index_t>(most, ++col_count[static_cast<std::size_t>(c)]);
  });
  return most;
}

/// Most products summed into one output of op(M) x, for every mode (a bound:
/// also counting terms that are structurally zero is sound).
template <class T> index_t product_terms(const LinearOperator<T> &op) {
  if (const auto *m = capability<CsrMatrix<T>>(op))
    return csr_terms(*m);
  if (const auto *c = capability<Conv2dOperator<T>>(op)) {
    const Conv2dGeometry &g = c->geometry();
    const index_t taps = g.kernel_h * g.kernel_w;
    return std::max<index_t>(1, taps * std::max(g.input.channels, g.out_channels) /
                                    std::max<index_t>(1, g.groups));
  }
  if (capability<DiagonalForm<T>>(op) || capability<ChannelPadOperator<T>>(op))
    return 1;
  if (capability<DenseForm<T>>(op))
    return std::max<index_t>(1, std::max(op.rows(), op.cols()));
  if (const auto *c = capability<ComposedOperator<T>>(op))
    return product_terms(*c->left()) + product_terms(*c->right());
  if (const auto *bs = capability<BlockStructured<T>>(op)) {
    const BlockStructure<T> &b = bs->block_structure();
    index_t most = 0, per_block = 0;
    for (const auto &e : b.entries())
      most = std::max(most, product_terms(*e.op));
    for (index_t i = 0; i < b.row_blocks(); ++i)
      per_block = std::max<index_t>(per_block, b.entries_in_row(i).size());
    for (index_t j = 0; j < b.col_blocks(); ++j)
      per_block = std::max<index_t>(per_block, b.entries_in_col(j).size());
    return std::max<index_t>(1, most + per_block);
  }
  if (op.nnz() <= kMaterialiseTermsLimit)
    return csr_terms(op.to_csr());
  return std::max<index_t>(1, std::max(op.rows(), op.cols()));
}

/// gamma of products with `terms` terms, with room for the scaling by alpha,
/// the addition of beta y and of a bias (8 more roundings), doubled.
template <class T> double product_gamma(index_t terms) {
  return 2.0 * double(terms + 8) * double(std::numeric_limits<T>::epsilon()) / 2;
}

/// Whether the majorant of op differs from |op| (a ComposedOperator, or a
/// block structure with merged entries or such an entry).
template <class T> bool majorant_differs(const LinearOperator<T> &op) {
  if (capability<ComposedOperator<T>>(op))
    return true;
  if (const auto *bs = capability<BlockStructured<T>>(op)) {
    const BlockStructure<T> &b = bs->block_structure();
    for (const auto &g : b.groups())
      if (g.last - g.first > 1)
        return true;
    for (const auto &e : b.entries())
      if (majorant_differs(*e.op))
        return true;
  }
  return false;
}

/// y = Mhat x + beta y (transposed: Mhat^T x + beta y) with the rounding
/// majorant Mhat >= |M| described above.
template <class T>
void majorant_apply(const LinearOperator<T> &op, bool transposed, ConstMatrixView<T> x,
                    T beta, MatrixView<T> y) {
  const Mode abs_mode = transposed ? Mode::abs_transpose : Mode::abs;
  if (!majorant_differs(op)) {
    op.apply(abs_mode, T(1), x, beta, y);
    return;
  }
  const index_t k = x.cols;
  if (const auto *c = capability<ComposedOperator<T>>(op)) {
    const LinearOperator<T> &first = transposed ? *c->left() : *c->right();
    const LinearOperator<T> &second = transposed ? *c->right() : *c->left();
    const index_t mid = c->left()->cols();
    std::vector<T> z(static_cast<std::size_t>(mid * k));
    majorant_apply(first, transposed, x, T(0), MatrixView<T>{z.data(), mid, k, k});
    majorant_apply(second, transposed, ConstMatrixView<T>{z.data(), mid, k, k}, beta, y);
    return;
  }
  const BlockStructure<T> &b = capability<BlockStructured<T>>(op)->block_structure();
  const auto entries = b.entries();
  const index_t nblocks = transposed ? b.col_blocks() : b.row_blocks();
  for (index_t blk = 0; blk < nblocks; ++blk) {
    const index_t out_off = transposed ? b.col_offset(blk) : b.row_offset(blk);
    const index_t out_n = transposed ? b.col_block_size(blk) : b.row_block_size(blk);
    MatrixView<T> yb{y.data + out_off * y.ld, out_n, k, y.ld};
    for (index_t i = 0; i < out_n; ++i)
      for (index_t j = 0; j < k; ++j)
        yb(i, j) = beta == T(0) ? T(0) : beta * yb(i, j);
    for (const index_t e : transposed ? b.entries_in_col(blk) : b.entries_in_row(blk)) {
      const BlockEntry<T> &en = entries[static_cast<std::size_t>(e)];
      const index_t in_blk = transposed ? en.block_row : en.block_col;
      const index_t in_off = transposed ? b.row_offset(in_blk) : b.col_offset(in_blk);
      const index_t in_n =
          transposed ? b.row_block_size(in_blk) : b.col_block_size(in_blk);
      majorant_apply(*en.op, transposed,
                     ConstMatrixView<T>{x.data + in_off * x.ld, in_n, k, x.ld}, T(1), yb);
    }
  }
}

/// The same on vectors.
template <class T>
void majorant_apply(const LinearOperator<T> &op, bool transposed, std::span<const T> x,
                    T beta, std::span<T> y) {
  majorant_apply(op, transposed,
                 ConstMatrixView<T>{x.data(), static_cast<index_t>(x.size()), 1, 1}, beta,
                 MatrixView<T>{y.data(), static_cast<index_t>(y.size()), 1, 1});
}

} // namespace tacit::inline v1::detail
