// Parameter groups of a trainable model (see tacit/train/groups.hpp).

#include <tacit/train/groups.hpp>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/operators/structured.hpp>

#include "train/detail/channels.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace tacit::inline v1 {

std::string to_string(GroupKind k) {
  switch (k) {
  case GroupKind::input:
    return "inputs";
  case GroupKind::state_row:
    return "state-rows";
  case GroupKind::state_column:
    return "state-columns";
  case GroupKind::state:
    return "states-both";
  case GroupKind::block:
    return "blocks";
  case GroupKind::user:
    return "user";
  case GroupKind::channel:
    return "channels";
  }
  return "?";
}

GroupKind parse_group_kind(std::string_view s) {
  if (s == "inputs")
    return GroupKind::input;
  if (s == "states" || s == "state-rows")
    return GroupKind::state_row;
  if (s == "state-columns")
    return GroupKind::state_column;
  if (s == "states-both")
    return GroupKind::state;
  if (s == "blocks")
    return GroupKind::block;
  if (s == "channels")
    return GroupKind::channel;
  throw InvalidArgument("unknown group kind '" + std::string(s) +
                        "' (inputs, states, state-rows, state-columns, states-both, "
                        "blocks, channels or a file)");
}

bool GroupSet::disjoint() const {
  std::vector<index_t> all;
  for (const auto &g : groups)
    all.insert(all.end(), g.members.begin(), g.members.end());
  std::sort(all.begin(), all.end());
  return std::adjacent_find(all.begin(), all.end()) == all.end();
}

index_t GroupSet::covered() const {
  std::vector<index_t> all;
  for (const auto &g : groups)
    all.insert(all.end(), g.members.begin(), g.members.end());
  std::sort(all.begin(), all.end());
  return static_cast<index_t>(std::unique(all.begin(), all.end()) - all.begin());
}

namespace {

/// Appends the positions of op's parameters (parameter_shapes() order), op
/// placed at (r0, c0) of matrix `which`.
template <class T>
void place(const LinearOperator<T> &op, int which, index_t r0, index_t c0,
           std::vector<ParameterPosition> &out) {
  const auto *t = capability<Trainable<T>>(op);
  if (!t)
    return;
  if (const auto *csr = capability<CsrMatrix<T>>(op)) {
    const auto rp = csr->row_ptr();
    for (index_t i = 0; i < csr->rows(); ++i)
      for (std::int64_t k = rp[i]; k < rp[i + 1]; ++k)
        out.push_back({which, r0 + i, c0 + csr->column(k)});
    return;
  }
  if (const auto *d = dynamic_cast<const DenseOperator<T> *>(&op)) {
    for (index_t i = 0; i < d->rows(); ++i)
      for (index_t j = 0; j < d->cols(); ++j)
        out.push_back({which, r0 + i, c0 + j});
    return;
  }
  if (dynamic_cast<const DiagonalOperator<T> *>(&op)) {
    for (index_t i = 0; i < op.rows(); ++i)
      out.push_back({which, r0 + i, c0 + i});
    return;
  }
  if (const auto *b = dynamic_cast<const BlockOperator<T> *>(&op)) {
    // The order of BlockOperator::parameter_shapes(): entries in order, each
    // trainable operator once (an operator at several blocks has no single
    // position).
    std::map<const LinearOperator<T> *, std::pair<std::size_t, std::size_t>> seen;
    const auto entries = b->entries();
    for (const auto &en : entries) {
      if (!capability<Trainable<T>>(*en.op))
        continue;
      if (const auto it = seen.find(en.op.get()); it != seen.end()) {
        for (std::size_t k = it->second.first; k < it->second.second; ++k)
          out[k].matrix = -1;
        continue;
      }
      const std::size_t first = out.size();
      place(*en.op, which, r0 + b->row_offset(en.block_row),
            c0 + b->col_offset(en.block_col), out);
      seen[en.op.get()] = {first, out.size()};
    }
    return;
  }
  // Convolutions, composed products: parameters without a single position.
  for (const auto &s : t->parameter_shapes())
    for (index_t k = 0; k < s.size(); ++k)
      out.push_back({-1, 0, 0});
}

std::vector<index_t> sorted_unique(std::vector<index_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

/// Flat indices per row/column of each matrix, built once.
struct Index {
  index_t n = 0, p = 0, q = 0;
  // rows[i]: row i of (A, B) and b_i; cols[i]: column i of (A; C);
  // inputs[j]: column j of (B; D).
  std::vector<std::vector<index_t>> rows, cols, inputs;
  bool unknown_state = false; ///< a parameter of A, B or C without position
  bool unknown_input = false; ///< a parameter of B or D without position

  template <class T> explicit Index(const TrainableModel<T> &tm) {
    const auto &m = tm.model();
    n = m.states();
    p = m.inputs();
    q = m.outputs();
    rows.resize(static_cast<std::size_t>(n));
    cols.resize(static_cast<std::size_t>(n));
    inputs.resize(static_cast<std::size_t>(p));
    const auto pos = parameter_positions(tm);
    // Which matrix each tensor belongs to, for parameters without position.
    std::vector<int> matrix_of(pos.size(), -1);
    for (int w = 0; w < 4; ++w) {
      const auto r = tm.operator_tensors(w);
      for (std::size_t t = r.first; t < r.first + r.count; ++t) {
        const auto &ti = tm.tensors()[t];
        for (index_t k = 0; k < ti.size; ++k)
          matrix_of[static_cast<std::size_t>(ti.offset + k)] = w;
      }
    }
    for (const auto &bb : tm.bias_blocks())
      if (bb.plane > 1) {
        const auto &ti = tm.tensors()[bb.tensor];
        for (index_t k = 0; k < ti.size; ++k)
          matrix_of[static_cast<std::size_t>(ti.offset + k)] = 4;
      }
    for (std::size_t k = 0; k < pos.size(); ++k) {
      const auto &ps = pos[k];
      const auto f = static_cast<index_t>(k);
      switch (ps.matrix) {
      case 0:
        rows[ps.row].push_back(f);
        cols[ps.col].push_back(f);
        break;
      case 1:
        rows[ps.row].push_back(f);
        inputs[ps.col].push_back(f);
        break;
      case 2:
        cols[ps.col].push_back(f);
        break;
      case 3:
        inputs[ps.col].push_back(f);
        break;
      case 4:
        rows[ps.row].push_back(f);
        break;
      case 5:
        break;
      default:
        if (matrix_of[k] == 0 || matrix_of[k] == 2 || matrix_of[k] == 4)
          unknown_state = true;
        if (matrix_of[k] == 1) {
          unknown_state = true;
          unknown_input = true;
        }
        if (matrix_of[k] == 3)
          unknown_input = true;
      }
    }
  }
};

std::string state_name(const std::vector<StateBlock> &blocks, index_t i) {
  for (const auto &b : blocks)
    if (i >= b.offset && i < b.offset + b.size)
      return b.name + ":" + std::to_string(i - b.offset);
  return std::to_string(i);
}

ParameterGroup make(GroupKind kind, std::string name, index_t index,
                    std::vector<index_t> members) {
  ParameterGroup g;
  g.kind = kind;
  g.name = std::move(name);
  g.index = index;
  g.members = sorted_unique(std::move(members));
  g.weight = std::sqrt(double(g.members.size()));
  return g;
}

/// The parameters of each channel of the state blocks: those that produce
/// its states (prod) and those that read them (read), per channel id of the
/// layout.
struct ChannelSlices {
  std::vector<std::vector<index_t>> prod, read;
};

/// Adds the parameters of op (placed at (r0, c0) of matrix `which`, its
/// first parameter at flat index `off`, advanced past them) to the channels
/// they produce (rows of A and B) and read (columns of A and C).
template <class T>
void channel_slices(const LinearOperator<T> &op, int which, index_t r0, index_t c0,
                    index_t &off, const detail::ChannelLayout &L, ChannelSlices &out,
                    std::set<const LinearOperator<T> *> &seen) {
  const auto *t = capability<Trainable<T>>(op);
  if (!t)
    return;
  const bool row_states = which == 0 || which == 1, col_states = which == 0 || which == 2;
  auto add = [&](index_t row, index_t col, index_t f) { // row, col: local states
    if (row_states)
      out.prod[static_cast<std::size_t>(L.channel_of(r0 + row))].push_back(f);
    if (col_states)
      out.read[static_cast<std::size_t>(L.channel_of(c0 + col))].push_back(f);
  };
  auto refuse = [&](const std::string &why) {
    throw InvalidArgument("make_groups: channel groups: " + why);
  };
  if (const auto *b = dynamic_cast<const BlockOperator<T> *>(&op)) {
    for (const auto &en : b->entries()) {
      if (!capability<Trainable<T>>(*en.op))
        continue;
      if (!seen.insert(en.op.get()).second)
        refuse("a " + std::string(en.op->kind()) +
               " operator stands at several blocks (its parameters have no single "
               "channel)");
      channel_slices(*en.op, which, r0 + b->row_offset(en.block_row),
                     c0 + b->col_offset(en.block_col), off, L, out, seen);
    }
    return;
  }
  const index_t count = parameter_count(op);
  if (const auto *csr = capability<CsrMatrix<T>>(op)) {
    const auto rp = csr->row_ptr();
    for (index_t i = 0; i < csr->rows(); ++i)
      for (std::int64_t k = rp[i]; k < rp[i + 1]; ++k)
        add(i, csr->column(k), off + static_cast<index_t>(k));
  } else if (capability<DenseForm<T>>(op)) {
    for (index_t i = 0; i < op.rows(); ++i)
      for (index_t j = 0; j < op.cols(); ++j)
        add(i, j, off + i * op.cols() + j);
  } else if (capability<DiagonalForm<T>>(op) && op.rows() == op.cols() &&
             count == op.rows()) {
    for (index_t i = 0; i < op.rows(); ++i)
      add(i, i, off + i);
  } else if (const auto fm = t->row_feature_map(); fm && fm->size() == 3) {
    // A convolution: one tensor [out][in / groups][kh][kw].
    const auto shapes = t->parameter_shapes();
    const auto in = detail::cols_shape(op);
    if (shapes.size() != 1 || shapes[0].shape.size() != 4 || !in ||
        shapes[0].shape[0] != (*fm)[0])
      refuse("a " + std::string(op.kind()) +
             " operator whose weights are not [out][in / groups][kh][kw]");
    const index_t co_n = shapes[0].shape[0], cin_g = shapes[0].shape[1],
                  K = shapes[0].shape[2] * shapes[0].shape[3];
    const index_t groups = in->channels / cin_g, cout_g = co_n / groups;
    const index_t po = (*fm)[1] * (*fm)[2], pi = in->height * in->width;
    for (index_t co = 0; co < co_n; ++co)
      for (index_t cig = 0; cig < cin_g; ++cig) {
        const index_t ci = (co / cout_g) * cin_g + cig;
        for (index_t k = 0; k < K; ++k)
          add(co * po, ci * pi, off + (co * cin_g + cig) * K + k);
      }
  } else if (const auto *cp = dynamic_cast<const ComposedOperator<T> *>(&op)) {
    // A dense layer after a pooling: column j of the dense layer reads the
    // pooled channel j / (pooled plane).
    const auto *left = cp->left().get();
    const auto *pool = dynamic_cast<const AvgPool2dOperator<T> *>(cp->right().get());
    if (!capability<DenseForm<T>>(*left) || !pool)
      refuse("a composed operator other than a dense layer after a pooling");
    const TensorShape pin = pool->input_shape(), pout = pool->output_shape();
    const index_t po = pout.height * pout.width, pi = pin.height * pin.width;
    for (index_t i = 0; i < left->rows(); ++i)
      for (index_t j = 0; j < left->cols(); ++j)
        add(i, (j / po) * pi, off + i * left->cols() + j);
  } else {
    refuse("the parameters of a " + std::string(op.kind()) + " operator have no channel");
  }
  off += count;
}

template <class T> GroupSet channel_groups(const TrainableModel<T> &tm) {
  const auto &m = tm.model();
  const auto L = detail::channel_layout(m);
  ChannelSlices cs;
  cs.prod.resize(static_cast<std::size_t>(L.channels));
  cs.read.resize(static_cast<std::size_t>(L.channels));
  const LinearOperator<T> *ops[3] = {&m.A(), &m.B(), &m.C()};
  std::set<const LinearOperator<T> *> seen;
  for (int w = 0; w < 3; ++w) {
    const auto r = tm.operator_tensors(w);
    if (r.count == 0)
      continue;
    index_t off = tm.tensors()[r.first].offset;
    channel_slices(*ops[w], w, 0, 0, off, L, cs, seen);
  }
  for (const auto &bb : tm.bias_blocks()) {
    const index_t toff = tm.tensors()[bb.tensor].offset;
    for (index_t s = bb.offset; s < bb.offset + bb.size; ++s)
      cs.prod[static_cast<std::size_t>(L.channel_of(s))].push_back(
          toff + (s - bb.offset) / bb.plane);
  }
  detail::ChannelUnion U(L.channels);
  for (const auto &[a, b] : L.ties)
    U.unite(a, b);
  const auto &blocks = m.blocks();
  auto label = [&](index_t ch) {
    const index_t b = static_cast<index_t>(
        std::upper_bound(L.base.begin(), L.base.end(), ch) - L.base.begin() - 1);
    return blocks[b].name + ":" + std::to_string(ch - L.base[b]);
  };
  std::map<index_t, std::pair<std::string, std::vector<index_t>>> comp;
  for (index_t ch = 0; ch < L.channels; ++ch) {
    auto &[name, mem] = comp[U.find(ch)];
    name += (name.empty() ? "channel " : "+") + label(ch);
    mem.insert(mem.end(), cs.prod[ch].begin(), cs.prod[ch].end());
    mem.insert(mem.end(), cs.read[ch].begin(), cs.read[ch].end());
  }
  GroupSet s;
  for (auto &[root, c] : comp) {
    auto g = make(GroupKind::channel, std::move(c.first), root, std::move(c.second));
    if (!g.members.empty())
      s.groups.push_back(std::move(g));
  }
  return s;
}

} // namespace

template <class T>
std::vector<ParameterPosition> parameter_positions(const TrainableModel<T> &tm) {
  std::vector<ParameterPosition> out;
  out.reserve(static_cast<std::size_t>(tm.size()));
  const auto &m = tm.model();
  const LinearOperator<T> *ops[4] = {&m.A(), &m.B(), &m.C(), m.D()};
  for (int w = 0; w < 4; ++w) {
    const auto r = tm.operator_tensors(w);
    if (r.count == 0)
      continue;
    const std::size_t before = out.size();
    place(*ops[w], w, 0, 0, out);
    index_t expected = 0;
    for (std::size_t t = r.first; t < r.first + r.count; ++t)
      expected += tm.tensors()[t].size;
    if (static_cast<index_t>(out.size() - before) != expected) // defensive
      out.resize(before + static_cast<std::size_t>(expected), ParameterPosition{});
  }
  for (const auto &bb : tm.bias_blocks()) {
    const auto &ti = tm.tensors()[bb.tensor];
    for (index_t k = 0; k < ti.size; ++k)
      out.push_back(bb.plane == 1 ? ParameterPosition{4, bb.offset + k, 0}
                                  : ParameterPosition{-1, 0, 0});
  }
  const auto &by = tm.tensors()[tm.output_bias_tensor()];
  for (index_t k = 0; k < by.size; ++k)
    out.push_back({5, k, 0});
  return out;
}

template <class T> GroupSet make_groups(const TrainableModel<T> &tm, GroupKind kind) {
  if (kind == GroupKind::channel)
    return channel_groups(tm);
  const Index ix(tm);
  const auto &blocks = tm.model().blocks();
  if (kind == GroupKind::user)
    throw InvalidArgument("make_groups: user groups come from read_group_file");
  if (kind == GroupKind::input && ix.unknown_input)
    throw InvalidArgument("make_groups: input groups need the position of every "
                          "parameter of B and D (a convolution's weights have none)");
  if (kind != GroupKind::input && ix.unknown_state)
    throw InvalidArgument("make_groups: state groups need the position of every "
                          "parameter of A, B, C and b (a convolution's weights have "
                          "none; channel groups are not available)");
  GroupSet s;
  auto add = [&](ParameterGroup g) {
    if (!g.members.empty())
      s.groups.push_back(std::move(g));
  };
  switch (kind) {
  case GroupKind::input:
    for (index_t j = 0; j < ix.p; ++j)
      add(make(kind, "input " + std::to_string(j), j, ix.inputs[j]));
    break;
  case GroupKind::state_row:
  case GroupKind::state_column:
  case GroupKind::state:
    for (index_t i = 0; i < ix.n; ++i) {
      std::vector<index_t> mem;
      if (kind != GroupKind::state_column)
        mem = ix.rows[i];
      if (kind != GroupKind::state_row)
        mem.insert(mem.end(), ix.cols[i].begin(), ix.cols[i].end());
      add(make(kind, "state " + state_name(blocks, i), i, std::move(mem)));
    }
    break;
  case GroupKind::block:
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      std::vector<index_t> mem;
      for (index_t i = blocks[b].offset; i < blocks[b].offset + blocks[b].size; ++i)
        mem.insert(mem.end(), ix.rows[i].begin(), ix.rows[i].end());
      add(make(kind, "block " + blocks[b].name, static_cast<index_t>(b), std::move(mem)));
    }
    break;
  default:
    break;
  }
  return s;
}

namespace {

bool parse_index(std::string_view s, index_t &v) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && v >= 0;
}

} // namespace

template <class T>
GroupSet read_group_file(const TrainableModel<T> &tm, const std::filesystem::path &path) {
  std::ifstream in(path);
  if (!in)
    throw FileError(path.string(), 0, "cannot open the group file");
  const Index ix(tm);
  GroupSet s;
  std::string line;
  std::int64_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (const auto h = line.find('#'); h != std::string::npos)
      line.resize(h);
    std::istringstream ls(line);
    std::string label, kind;
    if (!(ls >> label))
      continue;
    auto fail = [&](const std::string &what) {
      throw FileError(path.string(), no, "group '" + label + "': " + what);
    };
    if (!(ls >> kind))
      fail("no kind (state, row, column or input) and no index");
    const bool is_input = kind == "input";
    if (!is_input && kind != "state" && kind != "row" && kind != "column")
      fail("unknown kind '" + kind + "' (state, row, column or input)");
    if (is_input && ix.unknown_input)
      fail("input groups need the position of every parameter of B and D");
    if (!is_input && ix.unknown_state)
      fail("state groups need the position of every parameter of A, B, C and b");
    const index_t limit = is_input ? ix.p : ix.n;
    const char *what = is_input ? "input" : "state";
    std::vector<index_t> mem;
    std::string tok;
    index_t items = 0;
    while (ls >> tok) {
      index_t a = 0, b = 0;
      const auto dash = tok.find('-', 1);
      const bool ok = dash == std::string::npos
                          ? parse_index(tok, a) && (b = a, true)
                          : parse_index(std::string_view(tok).substr(0, dash), a) &&
                                parse_index(std::string_view(tok).substr(dash + 1), b);
      if (!ok || b < a)
        fail("bad index '" + tok + "' (a 0-based index or a range A-B)");
      for (index_t i = a; i <= b; ++i) {
        if (i >= limit)
          fail(std::string(what) + " " + std::to_string(i) +
               " does not exist (the model has " + std::to_string(limit) + " " + what +
               "s, 0 to " + std::to_string(limit - 1) + ")");
        ++items;
        if (is_input) {
          mem.insert(mem.end(), ix.inputs[i].begin(), ix.inputs[i].end());
          continue;
        }
        if (kind != "column")
          mem.insert(mem.end(), ix.rows[i].begin(), ix.rows[i].end());
        if (kind != "row")
          mem.insert(mem.end(), ix.cols[i].begin(), ix.cols[i].end());
      }
    }
    if (items == 0)
      fail("no index");
    auto g = make(GroupKind::user, label, -1, std::move(mem));
    if (g.members.empty())
      fail("the listed " + std::string(what) + "s have no parameter");
    s.groups.push_back(std::move(g));
  }
  if (s.groups.empty())
    throw FileError(path.string(), 0, "no group in the file");
  return s;
}

template <class T> std::vector<GroupSummary> group_summary(const TrainableModel<T> &tm) {
  std::vector<GroupSummary> out;
  for (const auto kind : {GroupKind::input, GroupKind::state_row, GroupKind::state_column,
                          GroupKind::state, GroupKind::block, GroupKind::channel}) {
    // Channel groups of a model without feature maps are the states-both
    // groups: listed for structured networks only.
    if (kind == GroupKind::channel && !detail::channel_layout(tm.model()).feature_maps)
      continue;
    try {
      const auto s = make_groups(tm, kind);
      GroupSummary g{kind, static_cast<index_t>(s.groups.size()), 0};
      for (const auto &gr : s.groups)
        g.largest = std::max<index_t>(g.largest, static_cast<index_t>(gr.members.size()));
      out.push_back(g);
    } catch (const InvalidArgument &) {
      // Not available on this model (parameters without position).
    }
  }
  return out;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template std::vector<ParameterPosition> parameter_positions(                           \
      const TrainableModel<T> &);                                                        \
  template GroupSet make_groups(const TrainableModel<T> &, GroupKind);                   \
  template GroupSet read_group_file(const TrainableModel<T> &,                           \
                                    const std::filesystem::path &);                      \
  template std::vector<GroupSummary> group_summary(const TrainableModel<T> &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
