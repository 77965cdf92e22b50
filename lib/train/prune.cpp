// Pruning to a smaller model (see tacit/train/prune.hpp).

#include <tacit/train/prune.hpp>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/format.hpp>
#include <tacit/operators/structured.hpp>

#include <cmath>
#include <deque>
#include <string>

namespace tacit::inline v1 {

namespace {

using Keep = std::vector<char>;

template <class T> bool present(T v, double threshold) {
  return std::abs(double(v)) > threshold;
}

bool all_of(const Keep &k, index_t first, index_t count) {
  for (index_t i = first; i < first + count; ++i)
    if (!k[static_cast<std::size_t>(i)])
      return false;
  return true;
}

index_t count(const Keep &k, index_t first, index_t n) {
  index_t c = 0;
  for (index_t i = first; i < first + n; ++i)
    c += k[static_cast<std::size_t>(i)] ? 1 : 0;
  return c;
}

/// The operator with the entries outside (rows, cols) or below the
/// threshold removed. `shrink`: only the kept rows and columns remain;
/// otherwise the dimensions stay (the masked model). r0, c0: the operator's
/// place in the keep vectors.
template <class T>
OperatorPtr<T> cut(const OperatorPtr<T> &op, const Keep &rows, index_t r0,
                   const Keep &cols, index_t c0, double threshold, bool shrink,
                   const char *name) {
  const index_t m = op->rows(), n = op->cols();
  auto row_kept = [&](index_t i) { return rows[static_cast<std::size_t>(r0 + i)] != 0; };
  auto col_kept = [&](index_t j) { return cols[static_cast<std::size_t>(c0 + j)] != 0; };
  const index_t mr = shrink ? count(rows, r0, m) : m,
                nc = shrink ? count(cols, c0, n) : n;
  // New column numbers (monotone).
  std::vector<index_t> col_new(static_cast<std::size_t>(n), -1);
  for (index_t j = 0, k = 0; j < n; ++j)
    if (col_kept(j))
      col_new[j] = shrink ? k++ : j;
  if (const auto *csr = capability<CsrMatrix<T>>(*op)) {
    std::vector<std::int64_t> rp{0}, ci;
    std::vector<T> vals;
    const auto p = csr->row_ptr();
    const auto v = csr->values();
    for (index_t i = 0; i < m; ++i) {
      if (shrink && !row_kept(i))
        continue;
      if (row_kept(i))
        for (std::int64_t k = p[i]; k < p[i + 1]; ++k) {
          const index_t j = csr->column(k);
          if (col_kept(j) && present(v[k], threshold)) {
            ci.push_back(col_new[j]);
            vals.push_back(v[k]);
          }
        }
      rp.push_back(static_cast<std::int64_t>(ci.size()));
    }
    return std::make_shared<CsrMatrix<T>>(mr, nc, std::move(rp), ci, std::move(vals));
  }
  if (const auto *d = capability<DenseForm<T>>(*op);
      d && dynamic_cast<const DenseOperator<T> *>(op.get())) {
    const auto w = d->row_major();
    std::vector<T> out;
    out.reserve(static_cast<std::size_t>(mr * nc));
    for (index_t i = 0; i < m; ++i) {
      if (shrink && !row_kept(i))
        continue;
      for (index_t j = 0; j < n; ++j) {
        if (shrink && !col_kept(j))
          continue;
        const T x = w[static_cast<std::size_t>(i * n + j)];
        out.push_back(row_kept(i) && col_kept(j) && present(x, threshold) ? x : T(0));
      }
    }
    return std::make_shared<DenseOperator<T>>(mr, nc, std::move(out));
  }
  if (const auto *dg = capability<DiagonalForm<T>>(*op); dg && m == n) {
    bool same = true; // rows and columns kept alike: a diagonal again
    for (index_t i = 0; i < m; ++i)
      same = same && row_kept(i) == col_kept(i);
    if (same) {
      const auto dv = dg->diagonal_values();
      std::vector<T> out;
      for (index_t i = 0; i < m; ++i) {
        if (shrink && !row_kept(i))
          continue;
        out.push_back(row_kept(i) && present(dv[i], threshold) ? dv[i] : T(0));
      }
      if (all_of(rows, r0, m) && threshold <= 0 && dg->identity_scale())
        return op; // an identity (or scaled one), unchanged
      return std::make_shared<DiagonalOperator<T>>(std::move(out));
    }
  }
  if (const auto *b = dynamic_cast<const BlockOperator<T> *>(op.get())) {
    std::vector<index_t> rs, cs, rmap, cmap; // new block index or -1
    for (index_t i = 0; i < b->row_blocks(); ++i) {
      const index_t k = shrink ? count(rows, r0 + b->row_offset(i), b->row_block_size(i))
                               : b->row_block_size(i);
      rmap.push_back(shrink && k == 0 && b->row_block_size(i) > 0
                         ? -1
                         : static_cast<index_t>(rs.size()));
      if (rmap.back() >= 0)
        rs.push_back(k);
    }
    for (index_t j = 0; j < b->col_blocks(); ++j) {
      const index_t k = shrink ? count(cols, c0 + b->col_offset(j), b->col_block_size(j))
                               : b->col_block_size(j);
      cmap.push_back(shrink && k == 0 && b->col_block_size(j) > 0
                         ? -1
                         : static_cast<index_t>(cs.size()));
      if (cmap.back() >= 0)
        cs.push_back(k);
    }
    std::vector<BlockEntry<T>> entries;
    for (const auto &en : b->entries()) {
      const index_t nr = rmap[static_cast<std::size_t>(en.block_row)],
                    nc2 = cmap[static_cast<std::size_t>(en.block_col)];
      if (nr < 0 || nc2 < 0)
        continue;
      entries.push_back(
          {nr, nc2,
           cut<T>(en.op, rows, r0 + b->row_offset(en.block_row), cols,
                  c0 + b->col_offset(en.block_col), threshold, shrink, name)});
    }
    return std::make_shared<BlockOperator<T>>(std::move(rs), std::move(cs),
                                              std::move(entries));
  }
  // Any other operator: kept as it is when none of its rows and columns goes
  // (its entries are not thresholded).
  if (all_of(rows, r0, m) && all_of(cols, c0, n))
    return op;
  throw Unsupported(std::string("prune: ") + name + " holds a " + op->kind() +
                    " operator, which cannot lose rows or columns (channel pruning of "
                    "convolutions is not available)");
}

template <class T> std::int64_t nonzeros(const LinearOperator<T> *op) {
  if (!op)
    return 0;
  const auto c = op->to_csr();
  std::int64_t z = 0;
  for (const T v : c.values())
    z += v != T(0) ? 1 : 0;
  return z;
}

} // namespace

template <class T> ModelSize model_size(const Model<T> &m) {
  ModelSize s;
  s.states = m.states();
  s.inputs = m.inputs();
  s.outputs = m.outputs();
  s.parameters = m.states() + m.outputs();
  for (const LinearOperator<T> *op : {&m.A(), &m.B(), &m.C(), m.D()}) {
    if (!op)
      continue;
    s.parameters += parameter_count(*op);
    s.nonzeros += nonzeros(op);
    s.flops += 2 * op->nnz();
  }
  return s;
}

template <class T> PruneResult<T> prune_model(const Model<T> &m, const PruneOptions &o) {
  if (!(o.threshold >= 0) || !std::isfinite(o.threshold))
    throw InvalidArgument("prune: the threshold " + format_number(o.threshold, 6) +
                          " must be finite and >= 0");
  const index_t n = m.states(), p = m.inputs(), q = m.outputs();
  const double thr = o.threshold;
  const auto A = m.A().to_csr(), B = m.B().to_csr(), C = m.C().to_csr();
  const auto At = A.transpose();
  const auto act = m.activations();
  const auto bx = m.bias_x();
  // Forward: states that may be nonzero.
  Keep live(static_cast<std::size_t>(n), 0);
  std::deque<index_t> work;
  for (index_t i = 0; i < n; ++i) {
    bool nz = present(bx[i], thr) || act[i](T(0)) != T(0);
    const auto bp = B.row_ptr();
    for (std::int64_t k = bp[i]; k < bp[i + 1] && !nz; ++k)
      nz = present(B.values()[k], thr);
    if (nz) {
      live[i] = 1;
      work.push_back(i);
    }
  }
  const auto tp = At.row_ptr();
  while (!work.empty()) { // j live: the rows reading j become live
    const index_t j = work.front();
    work.pop_front();
    for (std::int64_t k = tp[j]; k < tp[j + 1]; ++k) {
      const index_t i = At.column(k);
      if (!live[i] && present(At.values()[k], thr)) {
        live[i] = 1;
        work.push_back(i);
      }
    }
  }
  // Backward from the outputs: live states that something kept reads.
  Keep keep(static_cast<std::size_t>(n), 0);
  const auto cp = C.row_ptr();
  for (index_t r = 0; r < q; ++r)
    for (std::int64_t k = cp[r]; k < cp[r + 1]; ++k) {
      const index_t j = C.column(k);
      if (live[j] && !keep[j] && present(C.values()[k], thr)) {
        keep[j] = 1;
        work.push_back(j);
      }
    }
  const auto ap = A.row_ptr();
  while (!work.empty()) { // i kept: the live states its row reads are kept
    const index_t i = work.front();
    work.pop_front();
    for (std::int64_t k = ap[i]; k < ap[i + 1]; ++k) {
      const index_t j = A.column(k);
      if (live[j] && !keep[j] && present(A.values()[k], thr)) {
        keep[j] = 1;
        work.push_back(j);
      }
    }
  }
  const index_t kept_n = count(keep, 0, n);
  if (kept_n == 0)
    throw InvalidArgument(
        "prune: every one of the " + std::to_string(n) + " states would be removed (" +
        std::to_string(count(live, 0, n)) +
        " may be nonzero, none of them is read by the outputs at "
        "threshold " +
        format_number(thr, 6) + "); nothing would remain to predict with");
  // Inputs read by a kept row of B or by D.
  Keep in(static_cast<std::size_t>(p), o.keep_inputs ? 1 : 0);
  const auto bp = B.row_ptr();
  for (index_t i = 0; i < n; ++i)
    if (keep[i])
      for (std::int64_t k = bp[i]; k < bp[i + 1]; ++k)
        if (present(B.values()[k], thr))
          in[B.column(k)] = 1;
  if (m.D()) {
    const auto D = m.D()->to_csr();
    for (std::int64_t k = 0; k < D.nnz(); ++k)
      if (present(D.values()[k], thr))
        in[D.column(k)] = 1;
  }
  const Keep outs(static_cast<std::size_t>(q), 1);

  auto build = [&](bool shrink) {
    auto A2 = cut<T>(m.A_ptr(), keep, 0, keep, 0, thr, shrink, "A");
    auto B2 = cut<T>(m.B_ptr(), keep, 0, in, 0, thr, shrink, "B");
    auto C2 = cut<T>(m.C_ptr(), outs, 0, keep, 0, thr, shrink, "C");
    OperatorPtr<T> D2 =
        m.D_ptr() ? cut<T>(m.D_ptr(), outs, 0, in, 0, thr, shrink, "D") : nullptr;
    std::vector<T> b;
    for (index_t i = 0; i < n; ++i)
      if (!shrink || keep[i])
        b.push_back(keep[i] ? bx[i] : T(0));
    std::vector<StateBlock> blocks;
    index_t off = 0;
    for (const auto &blk : m.blocks()) {
      const index_t size = shrink ? count(keep, blk.offset, blk.size) : blk.size;
      if (size == 0 && blk.size > 0)
        continue;
      blocks.push_back({blk.name, off, size, blk.activation});
      off += size;
    }
    return Model<T>(A2, B2, C2, D2, std::move(b),
                    std::vector<T>(m.bias_y().begin(), m.bias_y().end()),
                    std::move(blocks));
  };
  Model<T> masked = build(false);
  Model<T> pruned = build(true);
  std::vector<index_t> ks, ki;
  for (index_t i = 0; i < n; ++i)
    if (keep[i])
      ks.push_back(i);
  for (index_t j = 0; j < p; ++j)
    if (in[j])
      ki.push_back(j);
  const ModelSize before = model_size(m), after = model_size(pruned);
  return PruneResult<T>{
      std::move(masked), std::move(pruned), std::move(ks), std::move(ki), before, after};
}

#define TACIT_INSTANTIATE(T)                                                             \
  template ModelSize model_size(const Model<T> &);                                       \
  template PruneResult<T> prune_model(const Model<T> &, const PruneOptions &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
