// Pruning to a smaller model (see tacit/train/prune.hpp).

#include <tacit/train/prune.hpp>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/format.hpp>
#include <tacit/operators/structured.hpp>

#include "train/detail/channels.hpp"

#include <algorithm>
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

template <class T>
OperatorPtr<T> cut(const OperatorPtr<T> &op, const Keep &rows, index_t r0,
                   const Keep &cols, index_t c0, double threshold, bool shrink,
                   const char *name);

/// The kept channels of `channels` planes of `plane` states from r0; a
/// channel kept in part is an error (the layout keeps whole channels).
std::vector<index_t> kept_channels(const Keep &k, index_t r0, index_t channels,
                                   index_t plane, const char *name, const char *kind) {
  std::vector<index_t> out;
  for (index_t c = 0; c < channels; ++c) {
    const index_t kept = count(k, r0 + c * plane, plane);
    if (kept == plane)
      out.push_back(c);
    else if (kept != 0)
      throw Unsupported(std::string("prune: ") + name + ": a " + kind + " would keep " +
                        std::to_string(kept) + " of the " + std::to_string(plane) +
                        " states of channel " + std::to_string(c) +
                        " (only whole channels can go)");
  }
  return out;
}

/// Convolutions, poolings, channel paddings and composed products (a dense
/// layer after a pooling): the operator on the kept channels (shrink) or
/// with the removed channels' slices zeroed (masked); null for the other
/// operators.
template <class T>
OperatorPtr<T> cut_channels(const OperatorPtr<T> &op, const Keep &rows, index_t r0,
                            const Keep &cols, index_t c0, double threshold, bool shrink,
                            const char *name) {
  if (const auto *cv = dynamic_cast<const Conv2dOperator<T> *>(op.get())) {
    const Conv2dGeometry &g = cv->geometry();
    const TensorShape o = g.output();
    const auto ko =
        kept_channels(rows, r0, o.channels, o.height * o.width, name, "convolution");
    const auto ki = kept_channels(cols, c0, g.input.channels,
                                  g.input.height * g.input.width, name, "convolution");
    const bool all = static_cast<index_t>(ko.size()) == o.channels &&
                     static_cast<index_t>(ki.size()) == g.input.channels;
    if (!all && g.groups != 1)
      throw Unsupported(std::string("prune: ") + name + ": a grouped convolution (" +
                        std::to_string(g.groups) + " groups) cannot lose channels");
    const auto w = cv->weights();
    bool small = false;
    for (const T v : w)
      small = small || !present(v, threshold);
    if (all && !small)
      return op;
    const index_t cin_g = g.input.channels / g.groups, K = g.kernel_h * g.kernel_w;
    Conv2dGeometry g2 = g;
    std::vector<T> w2;
    if (shrink) {
      g2.out_channels = static_cast<index_t>(ko.size());
      g2.input.channels = static_cast<index_t>(ki.size());
      if (ko.empty() || ki.empty())
        return nullptr; // no entry left: the caller drops it (never for kept blocks)
      for (const index_t co : ko)
        for (index_t cig = 0; cig < g2.input.channels / g2.groups; ++cig) {
          const index_t ci = g.groups == 1 ? ki[static_cast<std::size_t>(cig)] : cig;
          for (index_t k = 0; k < K; ++k) {
            const T v = w[static_cast<std::size_t>((co * cin_g + ci) * K + k)];
            w2.push_back(present(v, threshold) ? v : T(0));
          }
        }
    } else {
      std::vector<char> out_kept(static_cast<std::size_t>(o.channels), 0),
          in_kept(static_cast<std::size_t>(g.input.channels), 0);
      for (const index_t c : ko)
        out_kept[c] = 1;
      for (const index_t c : ki)
        in_kept[c] = 1;
      w2.assign(w.begin(), w.end());
      for (index_t co = 0; co < o.channels; ++co)
        for (index_t cig = 0; cig < cin_g; ++cig) {
          const index_t ci = (co / (o.channels / g.groups)) * cin_g + cig;
          for (index_t k = 0; k < K; ++k) {
            T &v = w2[static_cast<std::size_t>((co * cin_g + cig) * K + k)];
            if (!out_kept[co] || !in_kept[ci] || !present(v, threshold))
              v = T(0);
          }
        }
    }
    return std::make_shared<Conv2dOperator<T>>(g2, std::move(w2));
  }
  if (const auto *pl = dynamic_cast<const AvgPool2dOperator<T> *>(op.get())) {
    const TensorShape in = pl->input_shape(), out = pl->output_shape();
    const auto ko =
        kept_channels(rows, r0, out.channels, out.height * out.width, name, "pooling");
    const auto ki =
        kept_channels(cols, c0, in.channels, in.height * in.width, name, "pooling");
    if (ko.size() == static_cast<std::size_t>(in.channels) && ki.size() == ko.size())
      return op;
    if (ko != ki)
      throw Unsupported(std::string("prune: ") + name +
                        ": a pooling would keep different input and output channels");
    if (!shrink)
      return op; // the removed channels are zero or unread
    const auto p = pl->pads();
    return std::make_shared<AvgPool2dOperator<T>>(
        TensorShape{static_cast<index_t>(ki.size()), in.height, in.width}, pl->kernel_h(),
        pl->kernel_w(), pl->stride_h(), pl->stride_w(), p[0], p[1], p[2], p[3],
        pl->count_include_pad());
  }
  if (const auto *pd = dynamic_cast<const ChannelPadOperator<T> *>(op.get())) {
    const TensorShape in = pd->input_shape(), out = pd->output_shape();
    const auto ko = kept_channels(rows, r0, out.channels, out.height * out.width, name,
                                  "channel padding");
    const auto ki = kept_channels(cols, c0, in.channels, in.height * in.width, name,
                                  "channel padding");
    if (ko.size() == static_cast<std::size_t>(out.channels) &&
        ki.size() == static_cast<std::size_t>(in.channels))
      return op;
    const index_t pf = pd->pad_front();
    std::vector<index_t> copied; // kept output channels that copy an input channel
    index_t front = 0;
    for (const index_t c : ko) {
      if (c < pf)
        ++front;
      else if (c < pf + in.channels)
        copied.push_back(c - pf);
    }
    if (copied != ki)
      throw Unsupported(std::string("prune: ") + name +
                        ": a channel padding would keep input channels whose output "
                        "channels go, or the reverse");
    if (!shrink)
      return op;
    return std::make_shared<ChannelPadOperator<T>>(
        TensorShape{static_cast<index_t>(ki.size()), in.height, in.width},
        static_cast<index_t>(ko.size()), pd->stride(), front);
  }
  if (const auto *cp = dynamic_cast<const ComposedOperator<T> *>(op.get())) {
    // L (R x): the middle is R's rows. A channel-preserving R (a pooling)
    // keeps the columns' channels; any other R keeps every middle row.
    const auto &R = cp->right();
    const index_t mid = R->rows();
    Keep mk(static_cast<std::size_t>(mid), 1);
    if (const auto *pl = dynamic_cast<const AvgPool2dOperator<T> *>(R.get())) {
      const TensorShape in = pl->input_shape(), out = pl->output_shape();
      const auto ki =
          kept_channels(cols, c0, in.channels, in.height * in.width, name, "pooling");
      std::fill(mk.begin(), mk.end(), 0);
      const index_t po = out.height * out.width;
      for (const index_t c : ki)
        std::fill_n(mk.begin() + c * po, po, 1);
    }
    auto L2 = cut<T>(cp->left(), rows, r0, mk, 0, threshold, shrink, name);
    auto R2 = cut<T>(R, mk, 0, cols, c0, threshold, shrink, name);
    if (L2 == cp->left() && R2 == R)
      return op;
    return std::make_shared<ComposedOperator<T>>(std::move(L2), std::move(R2));
  }
  return nullptr;
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
    if (same && dg->identity_scale() && present(*dg->identity_scale(), threshold)) {
      // An identity (a residual addition): unchanged in the masked model
      // (the removed rows read removed, zero, states), smaller when pruned.
      if (!shrink || all_of(rows, r0, m))
        return op;
      return std::make_shared<IdentityOperator<T>>(mr, *dg->identity_scale());
    }
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
  if (auto c = cut_channels<T>(op, rows, r0, cols, c0, threshold, shrink, name))
    return c;
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
  // Structured networks: whole channels. A channel with one kept state is
  // kept whole (its other states are zero or unread: keeping them changes no
  // prediction), and channels tied by a copy (a residual addition, a pooling,
  // a channel padding) are kept together, so that every operator keeps whole
  // channels of its rows and columns.
  const auto layout = detail::channel_layout(m);
  if (layout.feature_maps) {
    std::vector<char> ck(static_cast<std::size_t>(layout.channels), 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (index_t b = 0; b < static_cast<index_t>(layout.size.size()); ++b)
        for (index_t c = 0; c < layout.block_channels(b); ++c) {
          const index_t first = layout.offset[b] + c * layout.plane[b];
          if (count(keep, first, layout.plane[b]) > 0) {
            ck[layout.base[b] + c] = 1;
            for (index_t i = first; i < first + layout.plane[b]; ++i)
              if (!keep[i]) {
                keep[i] = 1;
                changed = true;
              }
          }
        }
      for (const auto &[a, b] : layout.ties)
        if (ck[a] != ck[b]) {
          const index_t lost = ck[a] ? b : a;
          ck[lost] = 1;
          const index_t blk = static_cast<index_t>(
              std::upper_bound(layout.base.begin(), layout.base.end(), lost) -
              layout.base.begin() - 1);
          std::fill_n(keep.begin() + layout.offset[blk] +
                          (lost - layout.base[blk]) * layout.plane[blk],
                      layout.plane[blk], 1);
          changed = true;
        }
    }
    for (std::size_t b = 0; b < layout.size.size(); ++b)
      if (layout.size[b] > 0 && count(keep, layout.offset[b], layout.size[b]) == 0)
        throw InvalidArgument(
            "prune: every channel of block '" + m.blocks()[b].name + "' (" +
            std::to_string(layout.block_channels(static_cast<index_t>(b))) +
            " channels of " + std::to_string(layout.plane[b]) +
            " states) would be removed at threshold " + format_number(thr, 6) +
            "; the network would lose the layer");
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
  // A structured network reads whole input channels: every input is kept.
  Keep in(static_cast<std::size_t>(p), o.keep_inputs || layout.feature_maps ? 1 : 0);
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
  std::vector<BlockChannels> channels;
  for (std::size_t b = 0; b < layout.size.size(); ++b) {
    const index_t P = layout.plane[b];
    channels.push_back({m.blocks()[b].name, P, layout.size[b] / P,
                        count(keep, layout.offset[b], layout.size[b]) / P});
  }
  return PruneResult<T>{
      std::move(masked),  std::move(pruned), std::move(ks), std::move(ki), before, after,
      std::move(channels)};
}

#define TACIT_INSTANTIATE(T)                                                             \
  template ModelSize model_size(const Model<T> &);                                       \
  template PruneResult<T> prune_model(const Model<T> &, const PruneOptions &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
