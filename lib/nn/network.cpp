// NetworkBuilder: feed-forward network graphs into implicit models with
// structured operators (see include/tacit/nn/network.hpp).
//
// Every node holds an affine expression  sum_t L_t v_t + bias  where v_t is a
// state block (an earlier activation node) or the input u, and L_t an
// operator (null for the identity). Linear nodes map expressions to
// expressions; an activation node turns its expression into the row of A
// and B of a new state block and becomes the plain expression x_k.

#include <tacit/nn/network.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>

namespace tacit::inline v1 {

namespace {

/// Below this many entries the product Dense * op is formed explicitly (a
/// classifier after pooling becomes one small dense matrix).
constexpr index_t kDenseFoldLimit = index_t(1) << 21;

std::string shape_text(const TensorShape &s) {
  return std::to_string(s.channels) + " x " + std::to_string(s.height) + " x " +
         std::to_string(s.width);
}

template <class T> struct Term {
  index_t target = -1; // state block, or -1 for the input
  OperatorPtr<T> op;   // null: identity
};

template <class T> struct Expr {
  TensorShape shape;
  std::vector<Term<T>> terms;
  std::vector<T> bias; // empty: zero
  std::string label;   // "node 3 (conv2d)"
};

/// y = L v for a single vector (v may be empty = zero).
template <class T>
std::vector<T> apply_vector(const LinearOperator<T> &L, const std::vector<T> &v) {
  if (v.empty())
    return {};
  std::vector<T> y(static_cast<std::size_t>(L.rows()), T(0));
  L.apply(Mode::normal, T(1), std::span<const T>(v), T(0), std::span<T>(y));
  return y;
}

/// s when op is stored as s I (null op: the identity), else none.
template <class T> std::optional<T> identity_scale(const OperatorPtr<T> &op) {
  if (!op)
    return T(1);
  const auto *diag = capability<DiagonalForm<T>>(*op);
  return diag ? diag->identity_scale() : std::nullopt;
}

/// L o op, folded where cheap.
template <class T>
OperatorPtr<T> compose(OperatorPtr<T> L, const OperatorPtr<T> &op, bool fold_dense) {
  if (!op)
    return L;
  if (const auto s = identity_scale(op); s && *s == T(1))
    return L;
  if (const auto s = identity_scale(L); s && *s == T(1))
    return op;
  if (const auto *dense = fold_dense ? capability<DenseForm<T>>(*L) : nullptr;
      dense && L->rows() * op->cols() <= kDenseFoldLimit) {
    // Rows of L * op are op^T applied to the rows of L.
    const index_t r = L->rows(), m = op->rows(), c = op->cols();
    std::vector<T> prod(static_cast<std::size_t>(r * c), T(0));
    // All rows at once: X (m x r) holds L^T, Y (c x r) = op^T X.
    std::vector<T> lt(static_cast<std::size_t>(m * r)),
        yt(static_cast<std::size_t>(c * r));
    const auto d = dense->row_major();
    for (index_t i = 0; i < r; ++i)
      for (index_t k = 0; k < m; ++k)
        lt[k * r + i] = d[i * m + k];
    op->apply(Mode::transpose, T(1), ConstMatrixView<T>(lt.data(), m, r, r), T(0),
              MatrixView<T>{yt.data(), c, r, r});
    for (index_t i = 0; i < r; ++i)
      for (index_t j = 0; j < c; ++j)
        prod[i * c + j] = yt[j * r + i];
    return std::make_shared<DenseOperator<T>>(r, c, std::move(prod));
  }
  return std::make_shared<ComposedOperator<T>>(std::move(L), op);
}

/// diag(d) o op, folded into op's own form (a convolution scales its output
/// channels), or into a diagonal when op is diagonal.
template <class T>
OperatorPtr<T> scale_rows(const std::vector<T> &d, const OperatorPtr<T> &op) {
  if (!op)
    return std::make_shared<DiagonalOperator<T>>(d);
  if (const auto *fold = capability<Foldable<T>>(*op))
    if (auto folded = fold->scaled_rows(d))
      return folded;
  if (const auto *diag = capability<DiagonalForm<T>>(*op)) {
    std::vector<T> e(d);
    const auto values = diag->diagonal_values();
    for (std::size_t i = 0; i < e.size(); ++i)
      e[i] *= values[i];
    return std::make_shared<DiagonalOperator<T>>(std::move(e));
  }
  return std::make_shared<ComposedOperator<T>>(std::make_shared<DiagonalOperator<T>>(d),
                                               op);
}

/// a + b for two operators on the same target, when they merge exactly
/// (diagonal forms, or a fold of a's own form such as two convolutions of
/// the same geometry); null otherwise.
template <class T>
OperatorPtr<T> try_merge(const OperatorPtr<T> &a, const OperatorPtr<T> &b, index_t n) {
  auto diagonal_of = [n](const OperatorPtr<T> &op, std::vector<T> &out) {
    if (!op) {
      out.assign(static_cast<std::size_t>(n), T(1));
      return true;
    }
    if (const auto *diag = capability<DiagonalForm<T>>(*op)) {
      out = diag->diagonal_values();
      return true;
    }
    return false;
  };
  std::vector<T> da, db;
  if (diagonal_of(a, da) && diagonal_of(b, db)) {
    const bool uniform =
        std::all_of(da.begin(), da.end(), [&](T v) { return v == da[0]; }) &&
        std::all_of(db.begin(), db.end(), [&](T v) { return v == db[0]; });
    if (uniform && n > 0)
      return std::make_shared<IdentityOperator<T>>(n, da[0] + db[0]);
    for (std::size_t i = 0; i < da.size(); ++i)
      da[i] += db[i];
    return std::make_shared<DiagonalOperator<T>>(std::move(da));
  }
  if (a && b)
    if (const auto *fold = capability<Foldable<T>>(*a))
      return fold->plus(*b);
  return nullptr;
}

template <class T> void check_finite(const std::vector<T> &v, const std::string &what) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw InvalidArgument(what + ": value " + std::to_string(i + 1) + " is not finite");
}

} // namespace

template <class T> struct NetworkBuilder<T>::Impl {
  std::vector<Expr<T>> nodes;
  bool has_input = false;
  TensorShape input_shape;
  std::vector<StateBlock> blocks;
  std::vector<std::vector<Term<T>>> block_terms;
  std::vector<std::vector<T>> block_bias;
  bool fold_dense = true;

  const Expr<T> &node(Node x, const char *op) const {
    if (x < 0 || x >= static_cast<Node>(nodes.size()))
      throw InvalidArgument(std::string("network ") + op + ": unknown node " +
                            std::to_string(x) + " (the builder has " +
                            std::to_string(nodes.size()) + " nodes)");
    return nodes[static_cast<std::size_t>(x)];
  }
  std::string label(const char *op) const {
    return "node " + std::to_string(nodes.size()) + " (" + op + ")";
  }
  Node push(Expr<T> e) {
    nodes.push_back(std::move(e));
    return static_cast<Node>(nodes.size()) - 1;
  }
  /// Applies L (rows = new shape) to every term and to the bias.
  Expr<T> map(const Expr<T> &x, const OperatorPtr<T> &L, TensorShape shape,
              std::string lbl) const {
    Expr<T> e;
    e.shape = shape;
    e.label = std::move(lbl);
    for (const auto &t : x.terms)
      e.terms.push_back({t.target, compose(L, t.op, fold_dense)});
    e.bias = apply_vector(*L, x.bias);
    return e;
  }
  index_t target_size(index_t target) const {
    return target < 0 ? input_shape.size()
                      : blocks[static_cast<std::size_t>(target)].size;
  }
  /// The operator of a term, with the identity made explicit.
  OperatorPtr<T> explicit_op(const Term<T> &t) const {
    return t.op ? t.op : std::make_shared<IdentityOperator<T>>(target_size(t.target));
  }
};

template <class T>
NetworkBuilder<T>::NetworkBuilder() : impl_(std::make_unique<Impl>()) {}
template <class T> NetworkBuilder<T>::~NetworkBuilder() = default;
template <class T>
NetworkBuilder<T>::NetworkBuilder(NetworkBuilder &&) noexcept = default;
template <class T>
NetworkBuilder<T> &NetworkBuilder<T>::operator=(NetworkBuilder &&) noexcept = default;

template <class T> auto NetworkBuilder<T>::input(TensorShape shape) -> Node {
  auto &im = *impl_;
  if (im.has_input)
    throw InvalidArgument("network input: the network already has an input (" +
                          shape_text(im.input_shape) + "); exactly one is allowed");
  if (shape.channels < 1 || shape.height < 1 || shape.width < 1)
    throw InvalidArgument("network input: shape " + shape_text(shape) +
                          " must have positive sizes");
  im.has_input = true;
  im.input_shape = shape;
  Expr<T> e;
  e.shape = shape;
  e.terms.push_back({-1, nullptr});
  e.label = im.label("input");
  return im.push(std::move(e));
}

template <class T>
auto NetworkBuilder<T>::conv2d(Node x, Conv2dGeometry g, std::vector<T> weights,
                               std::vector<T> bias) -> Node {
  auto &im = *impl_;
  const auto &in = im.node(x, "conv2d");
  const std::string lbl = im.label("conv2d");
  if (!(g.input == in.shape))
    throw InvalidArgument("network " + lbl + ": the geometry's input is " +
                          shape_text(g.input) + " but its input " + in.label + " is " +
                          shape_text(in.shape));
  try {
    g.validate();
  } catch (const InvalidArgument &e) {
    throw InvalidArgument("network " + lbl + ": " + e.what());
  }
  const TensorShape out = g.output();
  const index_t expect =
      g.out_channels * (g.input.channels / g.groups) * g.kernel_h * g.kernel_w;
  if (static_cast<index_t>(weights.size()) != expect)
    throw InvalidArgument(
        "network " + lbl + ": " + std::to_string(weights.size()) + " weights, expected " +
        std::to_string(expect) + " (out " + std::to_string(g.out_channels) +
        " x in/groups " + std::to_string(g.input.channels / g.groups) + " x " +
        std::to_string(g.kernel_h) + " x " + std::to_string(g.kernel_w) + ")");
  if (!bias.empty() && static_cast<index_t>(bias.size()) != g.out_channels)
    throw InvalidArgument("network " + lbl + ": bias has " + std::to_string(bias.size()) +
                          " values, expected one per output channel (" +
                          std::to_string(g.out_channels) + ")");
  check_finite(weights, "network " + lbl + " weights");
  check_finite(bias, "network " + lbl + " bias");
  auto conv = std::make_shared<Conv2dOperator<T>>(g, std::move(weights));
  Expr<T> e = im.map(in, conv, out, lbl);
  if (!bias.empty()) {
    if (e.bias.empty())
      e.bias.assign(static_cast<std::size_t>(out.size()), T(0));
    const index_t plane = out.height * out.width;
    for (index_t c = 0; c < out.channels; ++c)
      for (index_t k = 0; k < plane; ++k)
        e.bias[c * plane + k] += bias[c];
  }
  return im.push(std::move(e));
}

template <class T>
auto NetworkBuilder<T>::batch_norm(Node x, std::vector<T> gamma, std::vector<T> beta,
                                   std::vector<T> mean, std::vector<T> var,
                                   double epsilon) -> Node {
  auto &im = *impl_;
  const auto &in = im.node(x, "batch_norm");
  const std::string lbl = im.label("batch_norm");
  const index_t C = in.shape.channels;
  const std::pair<const char *, const std::vector<T> *> params[] = {
      {"gamma", &gamma}, {"beta", &beta}, {"mean", &mean}, {"var", &var}};
  for (const auto &[name, v] : params) {
    if (static_cast<index_t>(v->size()) != C)
      throw InvalidArgument(
          "network " + lbl + ": " + name + " has " + std::to_string(v->size()) +
          " values, expected one per channel (" + std::to_string(C) + ") of its input " +
          in.label + " (" + shape_text(in.shape) + ")");
    check_finite(*v, "network " + lbl + " " + name);
  }
  if (!std::isfinite(epsilon) || epsilon < 0)
    throw InvalidArgument("network " + lbl + ": epsilon must be finite and >= 0");
  std::vector<T> s(static_cast<std::size_t>(C)), t(static_cast<std::size_t>(C));
  for (index_t c = 0; c < C; ++c) {
    const double v = static_cast<double>(var[c]) + epsilon;
    if (!(v > 0))
      throw InvalidArgument("network " + lbl + ": var + epsilon of channel " +
                            std::to_string(c) + " is " + std::to_string(v) +
                            ", must be positive");
    const double sc = static_cast<double>(gamma[c]) / std::sqrt(v);
    s[c] = static_cast<T>(sc);
    t[c] =
        static_cast<T>(static_cast<double>(beta[c]) - static_cast<double>(mean[c]) * sc);
  }
  const index_t plane = in.shape.height * in.shape.width;
  std::vector<T> d(static_cast<std::size_t>(in.shape.size()));
  for (index_t c = 0; c < C; ++c)
    std::fill(d.begin() + c * plane, d.begin() + (c + 1) * plane, s[c]);
  Expr<T> e;
  e.shape = in.shape;
  e.label = lbl;
  for (const auto &term : in.terms)
    e.terms.push_back({term.target, scale_rows(d, term.op)});
  e.bias.assign(static_cast<std::size_t>(in.shape.size()), T(0));
  for (index_t c = 0; c < C; ++c)
    for (index_t k = 0; k < plane; ++k) {
      const index_t i = c * plane + k;
      e.bias[i] = (in.bias.empty() ? T(0) : s[c] * in.bias[i]) + t[c];
    }
  return im.push(std::move(e));
}

template <class T>
auto NetworkBuilder<T>::dense(Node x, index_t out_features, std::vector<T> weights,
                              std::vector<T> bias) -> Node {
  auto &im = *impl_;
  const auto &in = im.node(x, "dense");
  const std::string lbl = im.label("dense");
  if (in.shape.height != 1 || in.shape.width != 1)
    throw InvalidArgument("network " + lbl + ": its input " + in.label + " is " +
                          shape_text(in.shape) +
                          "; a dense layer needs a flat input (add a flatten node)");
  const index_t n_in = in.shape.channels;
  if (out_features < 1)
    throw InvalidArgument("network " + lbl + ": out_features must be positive");
  if (static_cast<index_t>(weights.size()) != out_features * n_in)
    throw InvalidArgument("network " + lbl + ": " + std::to_string(weights.size()) +
                          " weights, expected out x in = " +
                          std::to_string(out_features) + " x " + std::to_string(n_in));
  if (!bias.empty() && static_cast<index_t>(bias.size()) != out_features)
    throw InvalidArgument("network " + lbl + ": bias has " + std::to_string(bias.size()) +
                          " values, expected " + std::to_string(out_features));
  check_finite(weights, "network " + lbl + " weights");
  check_finite(bias, "network " + lbl + " bias");
  auto W = std::make_shared<DenseOperator<T>>(out_features, n_in, std::move(weights));
  Expr<T> e = im.map(in, W, TensorShape{out_features, 1, 1}, lbl);
  if (!bias.empty()) {
    if (e.bias.empty())
      e.bias.assign(static_cast<std::size_t>(out_features), T(0));
    for (index_t i = 0; i < out_features; ++i)
      e.bias[i] += bias[i];
  }
  return im.push(std::move(e));
}

template <class T> auto NetworkBuilder<T>::add(Node a, Node b) -> Node {
  auto &im = *impl_;
  const auto &ea = im.node(a, "add");
  const auto &eb = im.node(b, "add");
  const std::string lbl = im.label("add");
  if (!(ea.shape == eb.shape))
    throw InvalidArgument("network " + lbl + ": its inputs differ in shape: " + ea.label +
                          " is " + shape_text(ea.shape) + ", " + eb.label + " is " +
                          shape_text(eb.shape));
  Expr<T> e;
  e.shape = ea.shape;
  e.label = lbl;
  e.terms = ea.terms;
  for (const auto &t : eb.terms) {
    bool merged = false;
    for (auto &u : e.terms)
      if (u.target == t.target) {
        if (auto m = try_merge(u.op, t.op, ea.shape.size())) {
          u.op = std::move(m);
          merged = true;
          break;
        }
      }
    if (!merged)
      e.terms.push_back(t);
  }
  if (!ea.bias.empty() || !eb.bias.empty()) {
    e.bias.assign(static_cast<std::size_t>(e.shape.size()), T(0));
    for (std::size_t i = 0; i < e.bias.size(); ++i)
      e.bias[i] =
          (ea.bias.empty() ? T(0) : ea.bias[i]) + (eb.bias.empty() ? T(0) : eb.bias[i]);
  }
  return im.push(std::move(e));
}

template <class T>
auto NetworkBuilder<T>::activation(Node x, Activation phi, std::string name) -> Node {
  auto &im = *impl_;
  const auto &in = im.node(x, "activation");
  const std::string lbl = im.label("activation");
  const index_t k = static_cast<index_t>(im.blocks.size());
  if (name.empty())
    name = "act" + std::to_string(k);
  for (const auto &b : im.blocks)
    if (b.name == name)
      throw InvalidArgument("network " + lbl + ": a state block named '" + name +
                            "' already exists");
  StateBlock blk;
  blk.name = name;
  blk.offset = im.blocks.empty() ? 0 : im.blocks.back().offset + im.blocks.back().size;
  blk.size = in.shape.size();
  blk.activation = phi;
  // Keep the terms and bias of the expression (copied before push_back may
  // reallocate the node list).
  std::vector<Term<T>> terms = in.terms;
  std::vector<T> bias = in.bias;
  const TensorShape shape = in.shape;
  im.blocks.push_back(blk);
  im.block_terms.push_back(std::move(terms));
  im.block_bias.push_back(std::move(bias));
  Expr<T> e;
  e.shape = shape;
  e.terms.push_back({k, nullptr});
  e.label = lbl + " '" + name + "'";
  return im.push(std::move(e));
}

template <class T>
auto NetworkBuilder<T>::avg_pool(Node x, index_t kernel_h, index_t kernel_w,
                                 index_t stride_h, index_t stride_w, index_t pad_top,
                                 index_t pad_left, index_t pad_bottom, index_t pad_right,
                                 bool count_include_pad) -> Node {
  auto &im = *impl_;
  const auto &in = im.node(x, "avg_pool");
  const std::string lbl = im.label("avg_pool");
  std::shared_ptr<AvgPool2dOperator<T>> pool;
  try {
    pool = std::make_shared<AvgPool2dOperator<T>>(in.shape, kernel_h, kernel_w, stride_h,
                                                  stride_w, pad_top, pad_left, pad_bottom,
                                                  pad_right, count_include_pad);
  } catch (const InvalidArgument &e) {
    throw InvalidArgument("network " + lbl + " on " + in.label + " (" +
                          shape_text(in.shape) + "): " + e.what());
  }
  return im.push(im.map(in, pool, pool->output_shape(), lbl));
}

template <class T> auto NetworkBuilder<T>::global_avg_pool(Node x) -> Node {
  auto &im = *impl_;
  const auto &in = im.node(x, "global_avg_pool");
  const std::string lbl = im.label("global_avg_pool");
  auto pool =
      std::make_shared<AvgPool2dOperator<T>>(AvgPool2dOperator<T>::global(in.shape));
  return im.push(im.map(in, pool, pool->output_shape(), lbl));
}

template <class T> auto NetworkBuilder<T>::flatten(Node x) -> Node {
  auto &im = *impl_;
  Expr<T> e = im.node(x, "flatten");
  e.shape = TensorShape{e.shape.size(), 1, 1};
  e.label = im.label("flatten");
  return im.push(std::move(e));
}

template <class T> auto NetworkBuilder<T>::identity(Node x) -> Node {
  auto &im = *impl_;
  Expr<T> e = im.node(x, "identity");
  e.label = im.label("identity");
  return im.push(std::move(e));
}

template <class T>
auto NetworkBuilder<T>::channel_pad(Node x, index_t out_channels, index_t stride,
                                    index_t pad_front) -> Node {
  auto &im = *impl_;
  const auto &in = im.node(x, "channel_pad");
  const std::string lbl = im.label("channel_pad");
  std::shared_ptr<ChannelPadOperator<T>> pad;
  try {
    pad = std::make_shared<ChannelPadOperator<T>>(in.shape, out_channels, stride,
                                                  pad_front);
  } catch (const InvalidArgument &e) {
    throw InvalidArgument("network " + lbl + " on " + in.label + " (" +
                          shape_text(in.shape) + "): " + e.what());
  }
  return im.push(im.map(in, pad, pad->output_shape(), lbl));
}

template <class T> TensorShape NetworkBuilder<T>::shape(Node x) const {
  return impl_->node(x, "shape").shape;
}

template <class T> index_t NetworkBuilder<T>::state_blocks() const noexcept {
  return static_cast<index_t>(impl_->blocks.size());
}

template <class T> void NetworkBuilder<T>::fold_dense_products(bool on) noexcept {
  impl_->fold_dense = on;
}

template <class T> Model<T> NetworkBuilder<T>::build(Node output) const {
  const auto &im = *impl_;
  if (!im.has_input)
    throw InvalidArgument("network build: the network has no input node");
  const auto &out = im.node(output, "build");
  const index_t p = im.input_shape.size(), q = out.shape.size();
  const index_t nb = static_cast<index_t>(im.blocks.size());
  std::vector<index_t> sizes;
  for (const auto &b : im.blocks)
    sizes.push_back(b.size);
  const index_t n = nb == 0 ? 0 : im.blocks.back().offset + im.blocks.back().size;

  std::vector<BlockEntry<T>> a_entries, b_entries, c_entries, d_entries;
  std::vector<T> bias_x(static_cast<std::size_t>(n), T(0));
  for (index_t i = 0; i < nb; ++i) {
    for (const auto &t : im.block_terms[i]) {
      if (t.target < 0)
        b_entries.push_back({i, 0, im.explicit_op(t)});
      else
        a_entries.push_back({i, t.target, im.explicit_op(t)});
    }
    const auto &bb = im.block_bias[i];
    if (!bb.empty())
      std::copy(bb.begin(), bb.end(), bias_x.begin() + im.blocks[i].offset);
  }
  for (const auto &t : out.terms) {
    if (t.target < 0)
      d_entries.push_back({0, 0, im.explicit_op(t)});
    else
      c_entries.push_back({0, t.target, im.explicit_op(t)});
  }
  std::vector<T> bias_y = out.bias;
  if (bias_y.empty())
    bias_y.assign(static_cast<std::size_t>(q), T(0));

  OperatorPtr<T> A, B, C, D;
  if (nb == 0) {
    A = std::make_shared<CsrMatrix<T>>(0, 0);
    B = std::make_shared<CsrMatrix<T>>(0, p);
    C = std::make_shared<CsrMatrix<T>>(q, 0);
  } else {
    A = std::make_shared<BlockOperator<T>>(sizes, sizes, std::move(a_entries));
    B = std::make_shared<BlockOperator<T>>(sizes, std::vector<index_t>{p},
                                           std::move(b_entries));
    C = std::make_shared<BlockOperator<T>>(std::vector<index_t>{q}, sizes,
                                           std::move(c_entries));
  }
  if (!d_entries.empty())
    D = std::make_shared<BlockOperator<T>>(std::vector<index_t>{q},
                                           std::vector<index_t>{p}, std::move(d_entries));
  return Model<T>(std::move(A), std::move(B), std::move(C), std::move(D),
                  std::move(bias_x), std::move(bias_y), im.blocks);
}

template class NetworkBuilder<float>;
template class NetworkBuilder<double>;

} // namespace tacit::inline v1
