// Well-posedness reports: norms, SCCs and the certified lambda_PF(|A|)
// interval of any operator; an operator with a block lower triangular block
// structure is analysed from its structure (the enclosure itself is in
// perron.cpp).

#include <tacit/analysis/wellposed.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <tacit/core/csr.hpp>
#include <tacit/core/format.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/operators/structured.hpp>

#include "analysis/detail/perron.hpp"

namespace tacit::inline v1 {

namespace {

/// max of the absolute row (or column) sums of an operator with block
/// structure `S`, each block's sums accumulated in double by the block.
template <class T>
double block_norm(const LinearOperator<T> &op, const BlockStructure<T> &A, bool rows) {
  std::vector<double> sums(static_cast<std::size_t>(rows ? A.rows() : A.cols()), 0.0);
  // Entries at the same block are summed before |.|: bound them by the sum
  // of their absolute sums only when alone; otherwise use the operator's
  // own sums of the group.
  const auto entries = A.entries();
  std::vector<char> shared(entries.size(), 0);
  for (std::size_t e = 1; e < entries.size(); ++e)
    if (entries[e].block_row == entries[e - 1].block_row &&
        entries[e].block_col == entries[e - 1].block_col)
      shared[e] = shared[e - 1] = 1;
  bool any_shared = false;
  for (std::size_t e = 0; e < entries.size(); ++e) {
    if (shared[e]) {
      any_shared = true;
      continue;
    }
    const auto &en = entries[e];
    add_abs_sums(*en.op, rows,
                 std::span<double>(
                     sums.data() +
                         (rows ? A.row_offset(en.block_row) : A.col_offset(en.block_col)),
                     static_cast<std::size_t>(rows ? en.op->rows() : en.op->cols())));
  }
  if (any_shared) // rare: let the operator handle the summed groups
    return rows ? norm_inf(op) : norm_1(op);
  double best = 0;
  for (const double v : sums)
    best = std::max(best, v);
  return best;
}

/// Well-posedness of an operator with a block lower triangular block
/// structure `A`, from the structure: lambda_PF(|A|) is the largest over the diagonal
/// blocks (0 for a strictly block lower triangular A, with nothing materialised); only
/// the diagonal blocks that have entries are converted to CSR. Norms come from the
/// operator's row and column absolute sums.
template <class T>
WellPosednessReport block_well_posedness(const LinearOperator<T> &op,
                                         const BlockStructure<T> &A,
                                         const PerronOptions &options) {
  detail::check_perron_options(options);
  WellPosednessReport r;
  r.n = op.rows();
  r.nnz = op.nnz();
  r.norm_inf = block_norm(op, A, true);
  r.norm_1 = block_norm(op, A, false);
  if (const auto e = op.find_non_finite())
    throw InvalidArgument("perron_frobenius_bound: A has a non-finite entry at (" +
                          std::to_string(e->row + 1) + ", " + std::to_string(e->col + 1) +
                          ")");
  PerronBound &pf = r.pf;
  const auto entries = A.entries();
  index_t diagonal_states = 0, largest = r.n > 0 ? 1 : 0, scc_count = 0;
  bool nilpotent = true;
  detail::DiagonalBlockMerge merged; // over the diagonal blocks of the state blocks
  for (index_t i = 0; i < A.row_blocks(); ++i) {
    std::vector<BlockEntry<T>> diag;
    for (const index_t e : A.entries_in_row(i))
      if (entries[e].block_col == i)
        diag.push_back({0, 0, entries[e].op});
    if (diag.empty())
      continue;
    const index_t size = A.row_block_size(i);
    const CsrMatrix<T> M =
        diag.size() == 1 ? diag[0].op->to_csr()
                         : BlockOperator<T>({size}, {size}, std::move(diag)).to_csr();
    const SccDecomposition scc = strongly_connected_components(M);
    const PerronBound b = perron_frobenius_bound(M, scc, options);
    diagonal_states += size;
    scc_count += scc.block_count();
    largest = std::max(largest, scc.largest_block());
    nilpotent = nilpotent && scc.nilpotent();
    pf.cyclic_blocks += b.cyclic_blocks;
    merged.add(pf, i, b);
  }
  // States of blocks without a diagonal entry are 1x1 SCCs without a cycle.
  r.scc_count = scc_count + (r.n - diagonal_states);
  r.scc_largest = largest;
  r.nilpotent = nilpotent;
  pf.blocks = r.scc_count;
  pf.largest_block = largest;
  merged.finish(pf);
  const index_t widest = merged.widest;
  std::string msg = "lambda_PF(|A|) in [" + format_number(pf.lower, 10) + ", " +
                    format_number(pf.upper, 10) +
                    "] from the structure of a block operator with " +
                    std::to_string(A.row_blocks()) + " state blocks";
  if (widest < 0 && pf.upper == 0)
    msg +=
        A.strictly_block_lower_triangular()
            ? ": strictly block lower triangular (feed-forward), so A is nilpotent and "
              "lambda_PF(|A|) = 0 exactly"
            : ": the diagonal blocks are nilpotent";
  else if (widest >= 0)
    msg += "; upper bound from diagonal block " + std::to_string(widest + 1);
  if (pf.upper < 1)
    msg += "; certified well-posed for componentwise non-expansive activations";
  else if (pf.lower >= 1)
    msg += "; lambda_PF(|A|) >= 1: the Perron-Frobenius condition fails";
  else
    msg += "; not certified (upper bound >= 1)";
  pf.message = std::move(msg);
  return r;
}

} // namespace

template <class T>
WellPosednessReport analyse_well_posedness(const LinearOperator<T> &A,
                                           const PerronOptions &options) {
  return options.exec.run([&]() -> WellPosednessReport {
    if (A.rows() != A.cols())
      throw InvalidArgument("analyse_well_posedness: A is " + std::to_string(A.rows()) +
                            " x " + std::to_string(A.cols()) + ", not square");
    if (const auto *blocks = capability<BlockStructured<T>>(A)) {
      const auto &structure = blocks->block_structure();
      if (structure.square_partition() && structure.block_lower_triangular())
        return block_well_posedness(A, structure, options);
    }
    const auto csr = csr_view(A);
    WellPosednessReport r;
    r.n = csr->rows();
    r.nnz = csr->nnz();
    r.norm_inf = norm_inf(*csr);
    r.norm_1 = norm_1(*csr);
    const SccDecomposition scc = strongly_connected_components(*csr);
    r.pf = perron_frobenius_bound(*csr, scc, options);
    r.scc_count = scc.block_count();
    r.scc_largest = scc.largest_block();
    r.nilpotent = scc.nilpotent();
    return r;
  });
}

template WellPosednessReport analyse_well_posedness(const LinearOperator<float> &,
                                                    const PerronOptions &);
template WellPosednessReport analyse_well_posedness(const LinearOperator<double> &,
                                                    const PerronOptions &);

} // namespace tacit::inline v1
