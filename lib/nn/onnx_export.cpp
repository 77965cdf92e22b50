// Export of feed-forward structured models as ONNX graphs (see
// include/tacit/nn/onnx.hpp).
//
// Each state block k becomes the sum of its terms (the entries of block row k
// of B and A, each applied to the input or to an earlier block's tensor),
// then its activation node, named after the block. The output is the sum of
// the terms of C and D. The nodes are the ones import_onnx reads, chosen so
// that the import rebuilds the same operators: a convolution is a Conv, a
// dense matrix a Gemm (transB = 1), a diagonal a BatchNormalization with
// mean 0, variance 1 and epsilon 0 (exact: its scale is the diagonal), a
// product of operators its factors in turn. A block's bias rides on the
// first term whose outermost operator carries one (the Conv's B, the Gemm's
// C, the BatchNormalization's B), as the import adds it.

#include <tacit/nn/onnx.hpp>

#include <tacit/core/error.hpp>
#include <tacit/core/version.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string>

#include "io/detail/io_common.hpp"

#include <onnx/onnx_pb.h>

namespace fs = std::filesystem;

namespace tacit::inline v1 {

namespace {

/// A tensor of the graph: its name, its shape per sample and its rank without
/// the batch (1: N x features, 3: N x C x H x W).
struct Tensor {
  std::string name;
  TensorShape shape;
  int rank = 1;
};

std::string shape_text(const TensorShape &s) {
  return std::to_string(s.channels) + " x " + std::to_string(s.height) + " x " +
         std::to_string(s.width);
}

template <class T> class Exporter {
public:
  Exporter(const Model<T> &model, const OnnxExportOptions &options)
      : model_(model), options_(options) {}

  onnx::ModelProto run();

private:
  [[noreturn]] void unsupported(const std::string &what) const {
    throw Unsupported("export-onnx: " + what);
  }

  std::string unique(const std::string &base) {
    std::string name = base;
    for (int k = 2; !names_.insert(name).second; ++k)
      name = base + "_" + std::to_string(k);
    return name;
  }

  std::string real_initializer(const std::string &base, std::vector<std::int64_t> dims,
                               std::span<const T> values) {
    auto *t = graph_->add_initializer();
    const std::string name = unique(base);
    t->set_name(name);
    for (auto d : dims)
      t->add_dims(d);
    t->set_data_type(std::is_same_v<T, float> ? onnx::TensorProto::FLOAT
                                              : onnx::TensorProto::DOUBLE);
    t->set_raw_data(std::string(reinterpret_cast<const char *>(values.data()),
                                values.size() * sizeof(T)));
    return name;
  }

  std::string int_initializer(const std::string &base, std::vector<std::int64_t> values) {
    auto *t = graph_->add_initializer();
    const std::string name = unique(base);
    t->set_name(name);
    t->add_dims(static_cast<std::int64_t>(values.size()));
    t->set_data_type(onnx::TensorProto::INT64);
    t->set_raw_data(std::string(reinterpret_cast<const char *>(values.data()),
                                values.size() * sizeof(std::int64_t)));
    return name;
  }

  onnx::NodeProto *node(const std::string &op, const std::string &base,
                        std::vector<std::string> inputs) {
    auto *n = graph_->add_node();
    const std::string name = unique(base);
    n->set_op_type(op);
    n->set_name(name);
    for (auto &i : inputs)
      n->add_input(i);
    n->add_output(name);
    return n;
  }

  static void ints_attribute(onnx::NodeProto *n, const char *name,
                             std::vector<std::int64_t> values) {
    auto *a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto v : values)
      a->add_ints(v);
  }
  static void int_attribute(onnx::NodeProto *n, const char *name, std::int64_t v) {
    auto *a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void float_attribute(onnx::NodeProto *n, const char *name, double v) {
    auto *a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }

  Tensor flatten(const Tensor &x, const std::string &scope) {
    if (x.rank == 1)
      return x;
    auto *n = node("Flatten", scope + ".flatten", {x.name});
    int_attribute(n, "axis", 1);
    return {n->output(0), TensorShape{x.shape.size(), 1, 1}, 1};
  }

  /// Whether the outermost operator of op can carry a bias.
  static bool carries_bias(const LinearOperator<T> &op) {
    if (const auto *c = capability<ComposedOperator<T>>(op))
      return carries_bias(*c->left());
    if (const auto *id = capability<IdentityOperator<T>>(op))
      return id->scale() != T(1);
    return capability<Conv2dOperator<T>>(op) || capability<DenseOperator<T>>(op) ||
           capability<DiagonalOperator<T>>(op);
  }

  /// The diagonal d of an op of output shape `s` as one value per channel,
  /// or none when it varies within a channel plane.
  static std::optional<std::vector<T>> per_channel(std::span<const T> d,
                                                   const TensorShape &s) {
    const index_t plane = s.height * s.width;
    std::vector<T> c(static_cast<std::size_t>(s.channels));
    for (index_t k = 0; k < s.channels; ++k) {
      c[k] = d[k * plane];
      for (index_t i = 1; i < plane; ++i)
        if (std::bit_cast<
                std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(
                d[k * plane + i]) !=
            std::bit_cast<
                std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(c[k]))
          return std::nullopt;
    }
    return c;
  }

  /// y = op x as nodes; `bias` (the whole block's bias, or null) is added by
  /// the outermost operator, which must carry one.
  Tensor apply(const LinearOperator<T> &op, const Tensor &x, const std::string &scope,
               const std::vector<T> *bias);

  Tensor sum(std::vector<Tensor> terms, const std::string &scope);
  Tensor block_input(const std::vector<Tensor> &sources, index_t col, bool input) const {
    return input ? input_ : sources.at(static_cast<std::size_t>(col));
  }

  const Model<T> &model_;
  OnnxExportOptions options_;
  onnx::ModelProto proto_;
  onnx::GraphProto *graph_ = nullptr;
  std::set<std::string> names_;
  Tensor input_;
};

template <class T>
Tensor Exporter<T>::apply(const LinearOperator<T> &op, const Tensor &x,
                          const std::string &scope, const std::vector<T> *bias) {
  if (const auto *c = capability<ComposedOperator<T>>(op)) {
    const Tensor mid = apply(*c->right(), x, scope + ".r", nullptr);
    return apply(*c->left(), mid, scope + ".l", bias);
  }
  if (const auto *conv = capability<Conv2dOperator<T>>(op)) {
    const auto &g = conv->geometry();
    if (x.rank != 3 || !(x.shape == g.input))
      unsupported(scope + ": a convolution on " + shape_text(g.input) +
                  " reads a tensor of shape " + shape_text(x.shape) +
                  (x.rank == 1 ? " held flat" : ""));
    const TensorShape out = g.output();
    std::vector<std::string> in = {
        x.name, real_initializer(
                    scope + ".weight",
                    {g.out_channels, g.input.channels / g.groups, g.kernel_h, g.kernel_w},
                    conv->weights())};
    if (bias) {
      const auto b = per_channel(*bias, out);
      if (!b)
        unsupported(scope + ": the bias is not constant over each channel plane");
      in.push_back(real_initializer(scope + ".bias", {out.channels}, *b));
    }
    auto *n = node("Conv", scope + ".conv", in);
    ints_attribute(n, "kernel_shape", {g.kernel_h, g.kernel_w});
    ints_attribute(n, "strides", {g.stride_h, g.stride_w});
    ints_attribute(n, "pads", {g.pad_top, g.pad_left, g.pad_bottom, g.pad_right});
    ints_attribute(n, "dilations", {g.dilation_h, g.dilation_w});
    int_attribute(n, "group", g.groups);
    return {n->output(0), out, 3};
  }
  if (const auto *dense = capability<DenseOperator<T>>(op)) {
    const Tensor flat = flatten(x, scope);
    std::vector<std::string> in = {
        flat.name,
        real_initializer(scope + ".weight", {op.rows(), op.cols()}, dense->data())};
    if (bias)
      in.push_back(real_initializer(scope + ".bias", {op.rows()}, *bias));
    auto *n = node("Gemm", scope + ".gemm", in);
    int_attribute(n, "transB", 1);
    return {n->output(0), TensorShape{op.rows(), 1, 1}, 1};
  }
  std::optional<std::vector<T>> diagonal;
  if (const auto *d = capability<DiagonalOperator<T>>(op))
    diagonal.emplace(d->diagonal().begin(), d->diagonal().end());
  else if (const auto *id = capability<IdentityOperator<T>>(op)) {
    if (id->scale() == T(1) && !bias)
      return x;
    diagonal.emplace(static_cast<std::size_t>(op.rows()), id->scale());
  }
  if (diagonal) {
    // BatchNormalization(scale = d, B = bias, mean = 0, var = 1, epsilon = 0):
    // d x + bias exactly.
    const auto scale = per_channel(*diagonal, x.shape);
    if (!scale)
      unsupported(scope + ": a diagonal that varies within a channel plane of a " +
                  shape_text(x.shape) + " tensor has no ONNX form here");
    const std::size_t c = scale->size();
    std::vector<T> shift(c, T(0));
    if (bias) {
      const auto b = per_channel(*bias, x.shape);
      if (!b)
        unsupported(scope + ": the bias is not constant over each channel plane");
      shift = *b;
    }
    const std::vector<T> zeros(c, T(0)), ones(c, T(1));
    const auto ci = static_cast<std::int64_t>(c);
    auto *n = node("BatchNormalization", scope + ".scale",
                   {x.name, real_initializer(scope + ".diagonal", {ci}, *scale),
                    real_initializer(scope + ".bias", {ci}, shift),
                    real_initializer(scope + ".mean", {ci}, zeros),
                    real_initializer(scope + ".var", {ci}, ones)});
    float_attribute(n, "epsilon", 0.0);
    return {n->output(0), x.shape, x.rank};
  }
  if (const auto *pool = capability<AvgPool2dOperator<T>>(op)) {
    if (x.rank != 3 || !(x.shape == pool->input_shape()))
      unsupported(scope + ": average pooling on " + shape_text(pool->input_shape()) +
                  " reads a tensor of shape " + shape_text(x.shape));
    const auto global = AvgPool2dOperator<T>::global(x.shape);
    const auto pads = pool->pads();
    const bool is_global =
        pool->kernel_h() == global.kernel_h() && pool->kernel_w() == global.kernel_w() &&
        pool->stride_h() == global.stride_h() && pool->stride_w() == global.stride_w() &&
        pads == global.pads() && pool->count_include_pad() == global.count_include_pad();
    if (is_global)
      return {node("GlobalAveragePool", scope + ".pool", {x.name})->output(0),
              pool->output_shape(), 3};
    auto *n = node("AveragePool", scope + ".pool", {x.name});
    ints_attribute(n, "kernel_shape", {pool->kernel_h(), pool->kernel_w()});
    ints_attribute(n, "strides", {pool->stride_h(), pool->stride_w()});
    ints_attribute(n, "pads", {pads[0], pads[1], pads[2], pads[3]});
    int_attribute(n, "count_include_pad", pool->count_include_pad() ? 1 : 0);
    return {n->output(0), pool->output_shape(), 3};
  }
  if (const auto *pad = capability<ChannelPadOperator<T>>(op)) {
    if (x.rank != 3 || !(x.shape == pad->input_shape()))
      unsupported(scope + ": a channel padding of " + shape_text(pad->input_shape()) +
                  " reads a tensor of shape " + shape_text(x.shape));
    Tensor y = x;
    if (pad->stride() > 1) {
      const std::int64_t end = std::numeric_limits<std::int64_t>::max();
      y.name = node("Slice", scope + ".subsample",
                    {x.name, int_initializer(scope + ".starts", {0, 0}),
                     int_initializer(scope + ".ends", {end, end}),
                     int_initializer(scope + ".axes", {2, 3}),
                     int_initializer(scope + ".steps", {pad->stride(), pad->stride()})})
                   ->output(0);
    }
    const auto out = pad->output_shape();
    const std::int64_t front = pad->pad_front(),
                       back = out.channels - x.shape.channels - pad->pad_front();
    y.name =
        node("Pad", scope + ".pad",
             {y.name, int_initializer(scope + ".pads", {0, front, 0, 0, 0, back, 0, 0})})
            ->output(0);
    y.shape = out;
    return y;
  }
  unsupported(scope + ": an operator of kind '" + op.kind() +
              "' has no ONNX form (convolution, dense, diagonal, identity, average "
              "pooling, channel padding and their products have one)");
}

template <class T>
Tensor Exporter<T>::sum(std::vector<Tensor> terms, const std::string &scope) {
  const bool any_flat = std::any_of(terms.begin(), terms.end(),
                                    [](const Tensor &t) { return t.rank == 1; });
  if (any_flat)
    for (auto &t : terms)
      t = flatten(t, scope);
  Tensor acc = terms.at(0);
  for (std::size_t k = 1; k < terms.size(); ++k) {
    if (terms[k].shape.size() != acc.shape.size())
      unsupported(scope + ": terms of sizes " + std::to_string(acc.shape.size()) +
                  " and " + std::to_string(terms[k].shape.size()));
    acc.name = node("Add", scope + ".add", {acc.name, terms[k].name})->output(0);
  }
  return acc;
}

/// The input's shape when an operator reading it knows it.
template <class T>
std::optional<TensorShape> input_shape_of(const LinearOperator<T> &op) {
  if (const auto *c = capability<ComposedOperator<T>>(op))
    return input_shape_of(*c->right());
  if (const auto *conv = capability<Conv2dOperator<T>>(op))
    return conv->geometry().input;
  if (const auto *pool = capability<AvgPool2dOperator<T>>(op))
    return pool->input_shape();
  if (const auto *pad = capability<ChannelPadOperator<T>>(op))
    return pad->input_shape();
  return std::nullopt;
}

template <class T> onnx::ModelProto Exporter<T>::run() {
  const auto &blocks = model_.blocks();
  const auto *A = capability<BlockOperator<T>>(model_.A());
  const auto *B = capability<BlockOperator<T>>(model_.B());
  const auto *C = capability<BlockOperator<T>>(model_.C());
  const auto *D = model_.D() ? capability<BlockOperator<T>>(*model_.D()) : nullptr;
  const index_t nb = static_cast<index_t>(blocks.size());
  const auto structured = [&]() {
    if (!A || !B || !C || (model_.D() && !D) || nb == 0)
      return false;
    if (!A->square_partition() || A->row_blocks() != nb ||
        !A->strictly_block_lower_triangular() || B->row_blocks() != nb ||
        B->col_blocks() != 1 || C->row_blocks() != 1 || C->col_blocks() != nb ||
        (D && (D->row_blocks() != 1 || D->col_blocks() != 1)))
      return false;
    for (index_t k = 0; k < nb; ++k)
      if (A->row_block_size(k) != blocks[k].size)
        return false;
    return true;
  };
  if (!structured())
    unsupported("the model is not a feed-forward structured network (A, B, C, D block "
                "operators over the state blocks, A strictly block lower triangular, as "
                "import-onnx makes); A is '" +
                model_.A().kind() + "'");

  proto_.set_ir_version(8);
  proto_.set_producer_name("tacit");
  proto_.set_producer_version(version);
  auto *opset = proto_.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  graph_ = proto_.mutable_graph();
  graph_->set_name(options_.graph_name);
  const auto elem =
      std::is_same_v<T, float> ? onnx::TensorProto::FLOAT : onnx::TensorProto::DOUBLE;

  // The input: N x C x H x W when an operator reading it knows its shape.
  const index_t p = model_.inputs();
  input_ = {unique("input"), TensorShape{p, 1, 1}, 1};
  std::vector<BlockEntry<T>> readers(B->entries().begin(), B->entries().end());
  if (D)
    readers.insert(readers.end(), D->entries().begin(), D->entries().end());
  for (const auto &e : readers)
    if (const auto s = input_shape_of(*e.op); s && s->size() == p) {
      input_.shape = *s;
      input_.rank = 3;
      break;
    }
  {
    auto *vi = graph_->add_input();
    vi->set_name(input_.name);
    auto *tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    auto *sh = tt->mutable_shape();
    sh->add_dim()->set_dim_param("N");
    if (input_.rank == 1)
      sh->add_dim()->set_dim_value(p);
    else
      for (auto d : {input_.shape.channels, input_.shape.height, input_.shape.width})
        sh->add_dim()->set_dim_value(d);
  }

  std::vector<Tensor> states;
  const auto bias_x = model_.bias_x();
  const auto bias_terms =
      [&](const std::vector<std::pair<const BlockEntry<T> *, bool>> &entries,
          std::span<const T> bias, const std::string &scope) {
        const bool zero = std::all_of(bias.begin(), bias.end(), [](T v) {
          return std::bit_cast<
                     std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(
                     v) == 0;
        });
        std::vector<T> b(bias.begin(), bias.end());
        bool pending = !zero;
        std::vector<Tensor> terms;
        for (std::size_t t = 0; t < entries.size(); ++t) {
          const auto &[e, from_input] = entries[t];
          const Tensor x =
              from_input ? input_ : states.at(static_cast<std::size_t>(e->block_col));
          const bool carry = pending && carries_bias(*e->op);
          terms.push_back(
              apply(*e->op, x, scope + ".t" + std::to_string(t), carry ? &b : nullptr));
          if (carry)
            pending = false;
        }
        if (terms.empty())
          unsupported(scope + ": no term (a block that reads nothing has no ONNX form)");
        Tensor y = sum(std::move(terms), scope);
        if (pending) {
          // No term carries the bias: a per-channel Add.
          const auto c = per_channel(b, y.shape);
          if (!c)
            unsupported(scope + ": the bias is not constant over each channel plane");
          std::vector<std::int64_t> dims = {y.shape.channels};
          if (y.rank == 3)
            dims = {y.shape.channels, 1, 1};
          y.name = node("Add", scope + ".bias_add",
                        {y.name, real_initializer(scope + ".bias", dims, *c)})
                       ->output(0);
        }
        return y;
      };

  for (index_t k = 0; k < nb; ++k) {
    const auto &blk = blocks[k];
    std::vector<std::pair<const BlockEntry<T> *, bool>> entries;
    for (auto e : B->entries_in_row(k))
      entries.push_back({&B->entries()[e], true});
    for (auto e : A->entries_in_row(k))
      entries.push_back({&A->entries()[e], false});
    Tensor z = bias_terms(entries, bias_x.subspan(blk.offset, blk.size), blk.name);
    std::string op;
    switch (blk.activation.kind) {
    case ActivationKind::relu:
      op = "Relu";
      break;
    case ActivationKind::leaky_relu:
      op = "LeakyRelu";
      break;
    case ActivationKind::sigmoid:
      op = "Sigmoid";
      break;
    case ActivationKind::tanh:
      op = "Tanh";
      break;
    case ActivationKind::identity:
      unsupported(
          "block '" + blk.name +
          "' has the identity activation, which has no ONNX node that import-onnx "
          "reads as a state block");
    }
    auto *n = node(op, blk.name, {z.name});
    if (blk.activation.kind == ActivationKind::leaky_relu)
      float_attribute(n, "alpha", blk.activation.slope);
    states.push_back({n->output(0), z.shape, z.rank});
  }

  std::vector<std::pair<const BlockEntry<T> *, bool>> out_entries;
  for (const auto &e : C->entries())
    out_entries.push_back({&e, false});
  if (D)
    for (const auto &e : D->entries())
      out_entries.push_back({&e, true});
  Tensor y = bias_terms(out_entries, model_.bias_y(), "output");
  y = flatten(y, "output");
  // The graph output: the last node's output, renamed.
  const std::string out_name = unique("output_y");
  auto *last = graph_->mutable_node(graph_->node_size() - 1);
  if (last->output(0) == y.name &&
      std::none_of(states.begin(), states.end(),
                   [&](const Tensor &s) { return s.name == y.name; })) {
    last->set_output(0, out_name);
  } else {
    node("Identity", out_name, {y.name})->set_output(0, out_name);
  }
  auto *vo = graph_->add_output();
  vo->set_name(out_name);
  auto *tt = vo->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem);
  tt->mutable_shape()->add_dim()->set_dim_param("N");
  tt->mutable_shape()->add_dim()->set_dim_value(model_.outputs());
  return proto_;
}

} // namespace

template <class T>
std::string export_onnx_bytes(const Model<T> &model, const OnnxExportOptions &options) {
  Exporter<T> exporter(model, options);
  const onnx::ModelProto proto = exporter.run();
  std::string bytes;
  if (!proto.SerializeToString(&bytes))
    throw Unsupported("export-onnx: the graph does not serialise (larger than 2 GiB?)");
  return bytes;
}

template <class T>
void export_onnx(const Model<T> &model, const fs::path &file,
                 const OnnxExportOptions &options) {
  const std::string bytes = export_onnx_bytes(model, options);
  detail::AtomicFile out(file);
  out.write(bytes);
  out.commit();
}

template std::string export_onnx_bytes<float>(const Model<float> &,
                                              const OnnxExportOptions &);
template std::string export_onnx_bytes<double>(const Model<double> &,
                                               const OnnxExportOptions &);
template void export_onnx<float>(const Model<float> &, const fs::path &,
                                 const OnnxExportOptions &);
template void export_onnx<double>(const Model<double> &, const fs::path &,
                                  const OnnxExportOptions &);

} // namespace tacit::inline v1
