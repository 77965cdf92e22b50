// ONNX import: walks the graph of a ModelProto in topological order and
// drives a NetworkBuilder<T> (operator list and error policy in onnx.hpp).
//
// Design notes:
// - Every tensor name maps to a Value: either a constant (initializers,
//   Constant nodes and the shape arithmetic exporters emit, evaluated here on
//   small integer/real arrays) or a data tensor (a builder node plus its
//   dimensions without the batch).
// - The batch size is unknown at import; Shape of a data tensor yields the
//   marker `batch_marker` in position 0, which shape arithmetic carries along
//   (Gather, Concat, Unsqueeze...) and Reshape accepts as "the batch".
// - Some operations are kept pending on a data tensor instead of creating a
//   builder node at once: a dense layer (Gemm/MatMul) waits for an Add of a
//   constant that becomes its bias; a strided Slice and a channel Pad wait to
//   become one channel-pad node (the ResNet option-A shortcut); a spatial
//   zero Pad waits to be absorbed into the padding of the Conv or
//   AveragePool that reads it. Anything else materialises the pending work.

#include <tacit/nn/onnx.hpp>

#include <tacit/core/error.hpp>
#include <tacit/nn/network.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>
#include <variant>

#include "io/detail/io_common.hpp"

#include <onnx/onnx_pb.h>

namespace fs = std::filesystem;

namespace tacit::inline v1 {


namespace {

/// Stands for the batch size in shape arithmetic.
constexpr std::int64_t batch_marker = std::numeric_limits<std::int64_t>::min() + 1;
/// Largest constant the importer reads (elements).
constexpr std::int64_t max_elements = std::int64_t{1} << 31;
/// Largest constant the importer computes (shape arithmetic: small).
constexpr std::int64_t max_computed = std::int64_t{1} << 24;
/// Largest padding accepted (per side).
constexpr std::int64_t max_pad = std::int64_t{1} << 16;

/// A constant tensor: integer or real values, row-major.
struct Const {
  std::vector<std::int64_t> dims;
  bool integral = false;
  std::vector<double> real;
  std::vector<std::int64_t> integer;

  std::int64_t size() const {
    return static_cast<std::int64_t>(integral ? integer.size() : real.size());
  }
};

/// Work kept pending on a data tensor (see the file comment).
struct Pending {
  index_t stride_h = 1, stride_w = 1;
  index_t c_front = 0, c_back = 0;
  index_t top = 0, left = 0, bottom = 0, right = 0;
  bool subsample_or_channels() const {
    return stride_h != 1 || stride_w != 1 || c_front != 0 || c_back != 0;
  }
  bool spatial() const { return top != 0 || left != 0 || bottom != 0 || right != 0; }
};

struct DenseParams {
  index_t out = 0;
  std::vector<double> weights; // [out][in]
  std::vector<double> bias;    // out values
};

/// A data tensor: `node` (or the input of the pending dense layer) with the
/// pending work applied; `dims` are the dimensions after it (no batch).
struct Data {
  index_t node = -1;
  std::vector<index_t> dims;
  Pending pending;
  std::shared_ptr<const DenseParams> dense;
};

using Value = std::variant<Const, Data>;

std::string dims_text(const std::vector<std::int64_t> &dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    s += i ? ", " : "";
    s += dims[i] == batch_marker ? std::string("N") : std::to_string(dims[i]);
  }
  return s + "]";
}

index_t product(const std::vector<index_t> &dims) {
  index_t p = 1;
  for (index_t d : dims)
    p *= d;
  return p;
}

TensorShape shape_of(const std::vector<index_t> &dims) {
  switch (dims.size()) {
  case 1:
    return {dims[0], 1, 1};
  case 2:
    return {dims[0], 1, dims[1]};
  case 3:
    return {dims[0], dims[1], dims[2]};
  default:
    return {product(dims), 1, 1};
  }
}

std::vector<index_t> dims_of(const TensorShape &s, std::size_t rank) {
  switch (rank) {
  case 1:
    return {s.size()};
  case 2:
    return {s.channels, s.height * s.width};
  default:
    return {s.channels, s.height, s.width};
  }
}

/// Strides of a row-major array.
std::vector<std::int64_t> strides_of(const std::vector<std::int64_t> &dims) {
  std::vector<std::int64_t> s(dims.size(), 1);
  for (std::size_t i = dims.size(); i-- > 1;)
    s[i - 1] = s[i] * dims[i];
  return s;
}

const char *data_type_name(int t) {
  switch (t) {
  case onnx::TensorProto::FLOAT:
    return "float32";
  case onnx::TensorProto::DOUBLE:
    return "float64";
  case onnx::TensorProto::INT64:
    return "int64";
  case onnx::TensorProto::INT32:
    return "int32";
  case onnx::TensorProto::FLOAT16:
    return "float16";
  case onnx::TensorProto::BFLOAT16:
    return "bfloat16";
  case onnx::TensorProto::STRING:
    return "string";
  default:
    return "other";
  }
}

template <class T> class Importer {
public:
  using Node = typename NetworkBuilder<T>::Node;

  Importer(const onnx::ModelProto &model, std::string name, OnnxImportInfo *info,
           const OnnxImportOptions &options)
      : model_(model), name_(std::move(name)), info_(info) {
    builder_.fold_dense_products(options.fold_dense_products);
  }

  Model<T> run();

private:
  // ---- messages
  std::string where(const onnx::NodeProto &n) const {
    std::string who = n.name().empty()
                          ? "#" + std::to_string(node_index_) +
                                (n.output_size() ? " -> '" + n.output(0) + "'" : "")
                          : "'" + n.name() + "'";
    return name_ + ": node " + who + " (" + n.op_type() + ")";
  }
  [[noreturn]] void unsupported(const onnx::NodeProto &n, const std::string &what) const {
    throw Unsupported(where(n) + ": " + what);
  }
  [[noreturn]] void invalid(const onnx::NodeProto &n, const std::string &what) const {
    throw InvalidArgument(where(n) + ": " + what);
  }

  // ---- attributes
  const onnx::AttributeProto *attr(const onnx::NodeProto &n, const char *key) const {
    for (const auto &a : n.attribute())
      if (a.name() == key)
        return &a;
    return nullptr;
  }
  void check_attributes(const onnx::NodeProto &n,
                        std::initializer_list<const char *> known) const {
    for (const auto &a : n.attribute()) {
      bool ok = false;
      for (const char *k : known)
        ok = ok || a.name() == k;
      if (!ok)
        unsupported(n, "attribute '" + a.name() + "' is not supported");
    }
  }
  std::int64_t attr_int(const onnx::NodeProto &n, const char *key,
                        std::int64_t fallback) const {
    const auto *a = attr(n, key);
    if (!a)
      return fallback;
    if (a->type() != onnx::AttributeProto::INT)
      invalid(n, std::string("attribute '") + key + "' is not an integer");
    return a->i();
  }
  double attr_float(const onnx::NodeProto &n, const char *key, double fallback) const {
    const auto *a = attr(n, key);
    if (!a)
      return fallback;
    if (a->type() != onnx::AttributeProto::FLOAT)
      invalid(n, std::string("attribute '") + key + "' is not a float");
    return a->f();
  }
  std::string attr_string(const onnx::NodeProto &n, const char *key,
                          const std::string &fallback) const {
    const auto *a = attr(n, key);
    if (!a)
      return fallback;
    if (a->type() != onnx::AttributeProto::STRING)
      invalid(n, std::string("attribute '") + key + "' is not a string");
    return a->s();
  }
  std::optional<std::vector<std::int64_t>> attr_ints(const onnx::NodeProto &n,
                                                     const char *key) const {
    const auto *a = attr(n, key);
    if (!a)
      return std::nullopt;
    if (a->type() != onnx::AttributeProto::INTS)
      invalid(n, std::string("attribute '") + key + "' is not a list of integers");
    return std::vector<std::int64_t>(a->ints().begin(), a->ints().end());
  }

  // ---- values
  const Value &value(const onnx::NodeProto &n, int i) const {
    if (i >= n.input_size() || n.input(i).empty())
      invalid(n, "input " + std::to_string(i) + " is missing");
    const auto it = values_.find(n.input(i));
    if (it == values_.end())
      invalid(n,
              "input '" + n.input(i) +
                  "' is not an initializer, a graph input or an earlier node's output");
    return it->second;
  }
  bool has_input(const onnx::NodeProto &n, int i) const {
    return i < n.input_size() && !n.input(i).empty();
  }
  bool is_const(const onnx::NodeProto &n, int i) const {
    return std::holds_alternative<Const>(value(n, i));
  }
  const Const &constant(const onnx::NodeProto &n, int i, const char *role) const {
    const auto &v = value(n, i);
    if (!std::holds_alternative<Const>(v))
      unsupported(n, std::string(role) + " '" + n.input(i) +
                         "' must be a constant (an initializer or a Constant node)");
    return std::get<Const>(v);
  }
  const Data &data(const onnx::NodeProto &n, int i) const {
    const auto &v = value(n, i);
    if (!std::holds_alternative<Data>(v))
      unsupported(n, "input '" + n.input(i) +
                         "' is a constant; expected a tensor computed "
                         "from the network input");
    return std::get<Data>(v);
  }
  std::vector<double> reals(const onnx::NodeProto &n, const Const &c,
                            const char *role) const {
    if (!c.integral)
      return c.real;
    std::vector<double> out;
    for (auto v : c.integer) {
      if (v == batch_marker)
        unsupported(n, std::string(role) + " depends on the batch size");
      out.push_back(static_cast<double>(v));
    }
    return out;
  }
  std::vector<std::int64_t> ints(const onnx::NodeProto &n, const Const &c,
                                 const char *role) const {
    if (c.integral)
      return c.integer;
    std::vector<std::int64_t> out;
    for (double v : c.real) {
      if (v != std::trunc(v) || std::abs(v) > 9e18)
        invalid(n, std::string(role) + " holds a non-integer value");
      out.push_back(static_cast<std::int64_t>(v));
    }
    return out;
  }
  void set_output(const onnx::NodeProto &n, int i, Value v) {
    if (i >= n.output_size() || n.output(i).empty())
      return;
    values_[n.output(i)] = std::move(v);
  }
  void check_outputs(const onnx::NodeProto &n, int max) const {
    for (int i = max; i < n.output_size(); ++i)
      if (!n.output(i).empty())
        unsupported(n, "output " + std::to_string(i) + " ('" + n.output(i) +
                           "') is not supported (training outputs?)");
  }

  Const parse_tensor(const onnx::TensorProto &t, const std::string &context) const;

  /// Creates the pending builder nodes of input i of n (spatial pads only if
  /// allowed, returned in `pads`). Updates the stored value.
  Node use(const onnx::NodeProto &n, int i, Pending *pads = nullptr);
  Node materialize(const onnx::NodeProto &n, Data &d, Pending *pads);
  Data new_data(Node node, std::size_t rank) const {
    Data d;
    d.node = node;
    d.dims = dims_of(builder_.shape(node), rank);
    return d;
  }
  std::string block_name(const onnx::NodeProto &n) {
    std::string base = n.name().empty() ? n.output(0) : n.name();
    std::string name = base;
    for (int k = 2; !block_names_.insert(name).second; ++k)
      name = base + "_" + std::to_string(k);
    return name;
  }

  // ---- operators
  void node(const onnx::NodeProto &n);
  void op_constant(const onnx::NodeProto &n);
  void op_conv(const onnx::NodeProto &n);
  void op_gemm(const onnx::NodeProto &n);
  void op_matmul(const onnx::NodeProto &n);
  void op_batch_norm(const onnx::NodeProto &n);
  void op_activation(const onnx::NodeProto &n, Activation phi);
  void op_binary(const onnx::NodeProto &n);
  void op_avg_pool(const onnx::NodeProto &n);
  void op_flatten(const onnx::NodeProto &n);
  void op_reshape(const onnx::NodeProto &n);
  void op_slice(const onnx::NodeProto &n);
  void op_pad(const onnx::NodeProto &n);
  void op_shape(const onnx::NodeProto &n);
  void op_gather(const onnx::NodeProto &n);
  void op_unsqueeze(const onnx::NodeProto &n, bool squeeze);
  void op_concat(const onnx::NodeProto &n);
  void op_transpose(const onnx::NodeProto &n);
  void op_cast(const onnx::NodeProto &n);
  void op_constant_of_shape(const onnx::NodeProto &n);
  /// Per-channel affine y = scale * x + shift on a data tensor.
  Data channel_affine(const onnx::NodeProto &n, const Data &x,
                      const std::vector<double> &scale, const std::vector<double> &shift);
  /// Values of a constant broadcast over the channels of `x` (per channel
  /// or scalar); empty when it does not broadcast that way.
  std::optional<std::vector<double>> per_channel(const onnx::NodeProto &n, const Data &x,
                                                 const Const &c) const;

  const onnx::ModelProto &model_;
  std::string name_;
  OnnxImportInfo *info_;
  NetworkBuilder<T> builder_;
  std::unordered_map<std::string, Value> values_;
  std::set<std::string> block_names_;
  std::int64_t opset_ = 0;
  std::int64_t static_batch_ = -1;
  int node_index_ = 0;
};

template <class T>
Const Importer<T>::parse_tensor(const onnx::TensorProto &t,
                                const std::string &context) const {
  const std::string who = name_ + ": " + context;
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    throw Unsupported(who + ": external data is not supported");
  Const c;
  std::int64_t count = 1;
  for (auto d : t.dims()) {
    if (d < 0)
      throw InvalidArgument(who + ": negative dimension " + std::to_string(d));
    if (d != 0 && count > max_elements / d)
      throw Unsupported(who + ": too many elements");
    count *= d;
    c.dims.push_back(d);
  }
  const auto n = static_cast<std::size_t>(count);
  const std::string &raw = t.raw_data();
  const bool has_raw = t.has_raw_data();
  auto check_count = [&](std::size_t have, const char *field) {
    if (have != n)
      throw InvalidArgument(who + ": " + std::to_string(have) + " values in " + field +
                            " for dimensions " + dims_text(c.dims) + " (" +
                            std::to_string(n) + " values)");
  };
  auto from_raw = [&](auto sample, auto &out) {
    using E = decltype(sample);
    check_count(raw.size() / sizeof(E), "raw_data");
    if (raw.size() % sizeof(E) != 0)
      throw InvalidArgument(who + ": raw_data length " + std::to_string(raw.size()) +
                            " is not a multiple of the element size");
    for (std::size_t i = 0; i < n; ++i) {
      E v;
      std::memcpy(&v, raw.data() + i * sizeof(E), sizeof(E));
      out.push_back(static_cast<std::remove_reference_t<decltype(out[0])>>(v));
    }
  };
  switch (t.data_type()) {
  case onnx::TensorProto::FLOAT:
    if (has_raw)
      from_raw(float{}, c.real);
    else {
      check_count(static_cast<std::size_t>(t.float_data_size()), "float_data");
      c.real.assign(t.float_data().begin(), t.float_data().end());
    }
    break;
  case onnx::TensorProto::DOUBLE:
    if (has_raw)
      from_raw(double{}, c.real);
    else {
      check_count(static_cast<std::size_t>(t.double_data_size()), "double_data");
      c.real.assign(t.double_data().begin(), t.double_data().end());
    }
    break;
  case onnx::TensorProto::INT64:
    c.integral = true;
    if (has_raw)
      from_raw(std::int64_t{}, c.integer);
    else {
      check_count(static_cast<std::size_t>(t.int64_data_size()), "int64_data");
      c.integer.assign(t.int64_data().begin(), t.int64_data().end());
    }
    break;
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::INT16:
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::UINT8:
  case onnx::TensorProto::UINT16:
  case onnx::TensorProto::BOOL:
    c.integral = true;
    if (has_raw) {
      switch (t.data_type()) {
      case onnx::TensorProto::INT32:
        from_raw(std::int32_t{}, c.integer);
        break;
      case onnx::TensorProto::INT16:
        from_raw(std::int16_t{}, c.integer);
        break;
      case onnx::TensorProto::UINT16:
        from_raw(std::uint16_t{}, c.integer);
        break;
      case onnx::TensorProto::INT8:
        from_raw(std::int8_t{}, c.integer);
        break;
      default:
        from_raw(std::uint8_t{}, c.integer);
      }
    } else {
      check_count(static_cast<std::size_t>(t.int32_data_size()), "int32_data");
      c.integer.assign(t.int32_data().begin(), t.int32_data().end());
    }
    break;
  default:
    throw Unsupported(who + ": element type " + data_type_name(t.data_type()) + " (" +
                      std::to_string(t.data_type()) + ") is not supported");
  }
  if (!c.integral)
    for (std::size_t i = 0; i < c.real.size(); ++i)
      if (!std::isfinite(c.real[i]))
        throw InvalidArgument(who + ": value " + std::to_string(i) + " is not finite");
  return c;
}

template <class T>
typename Importer<T>::Node Importer<T>::use(const onnx::NodeProto &n, int i,
                                            Pending *pads) {
  value(n, i); // existence check
  auto &v = values_.at(n.input(i));
  if (!std::holds_alternative<Data>(v))
    unsupported(n, "input '" + n.input(i) +
                       "' is a constant; expected a tensor computed from the network "
                       "input");
  return materialize(n, std::get<Data>(v), pads);
}

template <class T>
typename Importer<T>::Node Importer<T>::materialize(const onnx::NodeProto &n, Data &d,
                                                    Pending *pads) {
  if (d.dense) {
    const auto &p = *d.dense;
    std::vector<T> w(p.weights.begin(), p.weights.end());
    std::vector<T> b(p.bias.begin(), p.bias.end());
    d.node = builder_.dense(d.node, p.out, std::move(w), std::move(b));
    d.dense.reset();
  }
  Pending &q = d.pending;
  if (q.subsample_or_channels()) {
    if (q.stride_h != q.stride_w)
      unsupported(n, "its input subsamples the two spatial axes with different steps (" +
                         std::to_string(q.stride_h) + " and " +
                         std::to_string(q.stride_w) + ")");
    const TensorShape in = builder_.shape(d.node);
    const Node out = builder_.channel_pad(d.node, in.channels + q.c_front + q.c_back,
                                          q.stride_h, q.c_front);
    const auto got = dims_of(builder_.shape(out), 3);
    const std::vector<index_t> want = {d.dims[0], d.dims[1] - q.top - q.bottom,
                                       d.dims[2] - q.left - q.right};
    if (got != want)
      invalid(n, "subsampled/padded input has shape " + dims_text(got) + ", expected " +
                     dims_text(want));
    d.node = out;
    q.stride_h = q.stride_w = 1;
    q.c_front = q.c_back = 0;
  }
  if (q.spatial()) {
    if (!pads)
      unsupported(n, "its input is zero-padded spatially (Pad); only a Conv or an "
                     "AveragePool can read a padded tensor");
    *pads = q;
  }
  return d.node;
}

template <class T> void Importer<T>::op_constant(const onnx::NodeProto &n) {
  check_attributes(n,
                   {"value", "value_float", "value_floats", "value_int", "value_ints"});
  Const c;
  if (const auto *a = attr(n, "value")) {
    c = parse_tensor(a->t(), "node '" + n.name() + "' (Constant) value");
  } else if (const auto *f = attr(n, "value_float")) {
    c.real = {f->f()};
  } else if (const auto *fs = attr(n, "value_floats")) {
    c.real.assign(fs->floats().begin(), fs->floats().end());
    c.dims = {static_cast<std::int64_t>(c.real.size())};
  } else if (const auto *i = attr(n, "value_int")) {
    c.integral = true;
    c.integer = {i->i()};
  } else if (const auto *is = attr(n, "value_ints")) {
    c.integral = true;
    c.integer.assign(is->ints().begin(), is->ints().end());
    c.dims = {static_cast<std::int64_t>(c.integer.size())};
  } else {
    unsupported(n, "no value (sparse_value and string values are not supported)");
  }
  set_output(n, 0, std::move(c));
}

template <class T> void Importer<T>::op_conv(const onnx::NodeProto &n) {
  check_attributes(n,
                   {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
  check_outputs(n, 1);
  const Data &x0 = data(n, 0);
  if (x0.dims.size() != 3)
    unsupported(n,
                "input '" + n.input(0) + "' has shape " + dims_text(x0.dims) +
                    " per sample; only 2-D convolutions (N x C x H x W) are supported");
  const Const &w = constant(n, 1, "weight");
  if (w.dims.size() != 4)
    unsupported(n, "weight has shape " + dims_text(w.dims) +
                       "; only 2-D convolutions (4-D weights) are supported");
  const std::string auto_pad = attr_string(n, "auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "VALID" && !auto_pad.empty())
    unsupported(n, "attribute auto_pad = " + auto_pad +
                       " is not supported (only NOTSET with explicit pads, or VALID)");
  Conv2dGeometry g;
  g.out_channels = w.dims[0];
  g.kernel_h = w.dims[2];
  g.kernel_w = w.dims[3];
  g.groups = attr_int(n, "group", 1);
  if (const auto k = attr_ints(n, "kernel_shape"))
    if (*k != std::vector<std::int64_t>{g.kernel_h, g.kernel_w})
      invalid(n, "attribute kernel_shape = " + dims_text(*k) +
                     " does not match the weight shape " + dims_text(w.dims));
  const auto strides = attr_ints(n, "strides").value_or(std::vector<std::int64_t>{1, 1});
  const auto dil = attr_ints(n, "dilations").value_or(std::vector<std::int64_t>{1, 1});
  const auto pads = attr_ints(n, "pads").value_or(std::vector<std::int64_t>{0, 0, 0, 0});
  if (strides.size() != 2)
    invalid(n, "attribute strides = " + dims_text(strides) + ": expected 2 values");
  if (dil.size() != 2)
    invalid(n, "attribute dilations = " + dims_text(dil) + ": expected 2 values");
  if (pads.size() != 4)
    invalid(n, "attribute pads = " + dims_text(pads) + ": expected 4 values");
  if (auto_pad == "VALID" && pads != std::vector<std::int64_t>{0, 0, 0, 0})
    invalid(n, "attribute pads = " + dims_text(pads) + " with auto_pad = VALID");
  for (auto p : pads)
    if (p < 0 || p > max_pad)
      unsupported(n, "pads " + dims_text(pads) +
                         " are not supported (negative or too large)");
  g.stride_h = strides[0];
  g.stride_w = strides[1];
  g.dilation_h = dil[0];
  g.dilation_w = dil[1];
  Pending extra;
  const Node x = use(n, 0, &extra);
  g.input = builder_.shape(x);
  g.pad_top = pads[0] + extra.top;
  g.pad_left = pads[1] + extra.left;
  g.pad_bottom = pads[2] + extra.bottom;
  g.pad_right = pads[3] + extra.right;
  if (g.groups < 1 || g.input.channels % g.groups != 0 ||
      w.dims[1] * g.groups != g.input.channels)
    invalid(n, "weight shape " + dims_text(w.dims) +
                   " and group = " + std::to_string(g.groups) + " do not fit " +
                   std::to_string(g.input.channels) + " input channels");
  try {
    g.validate();
  } catch (const InvalidArgument &e) {
    invalid(n, e.what());
  }
  std::vector<T> weights(w.real.begin(), w.real.end());
  if (w.integral)
    unsupported(n, "integer weights are not supported");
  std::vector<T> bias;
  if (has_input(n, 2)) {
    const Const &b = constant(n, 2, "bias");
    const auto bv = reals(n, b, "bias");
    if (static_cast<index_t>(bv.size()) != g.out_channels)
      invalid(n, "bias has " + std::to_string(bv.size()) + " values for " +
                     std::to_string(g.out_channels) + " output channels");
    bias.assign(bv.begin(), bv.end());
  }
  set_output(n, 0,
             new_data(builder_.conv2d(x, g, std::move(weights), std::move(bias)), 3));
}

template <class T> void Importer<T>::op_gemm(const onnx::NodeProto &n) {
  check_attributes(n, {"alpha", "beta", "transA", "transB"});
  check_outputs(n, 1);
  if (attr_int(n, "transA", 0) != 0)
    unsupported(n, "attribute transA = " + std::to_string(attr_int(n, "transA", 0)) +
                       " is not supported (only 0: the data operand is not transposed)");
  const double alpha = attr_float(n, "alpha", 1.0);
  const double beta = attr_float(n, "beta", 1.0);
  const bool trans_b = attr_int(n, "transB", 0) != 0;
  const Data &x = data(n, 0);
  if (x.dims.size() != 1)
    invalid(n, "input '" + n.input(0) + "' has shape " + dims_text(x.dims) +
                   " per sample; Gemm needs a matrix (N x features)");
  const Const &b = constant(n, 1, "weight B");
  if (b.dims.size() != 2)
    invalid(n, "weight B has shape " + dims_text(b.dims) + "; expected a matrix");
  const index_t in = x.dims[0];
  const index_t out = trans_b ? b.dims[0] : b.dims[1];
  if ((trans_b ? b.dims[1] : b.dims[0]) != in)
    invalid(n, "weight B of shape " + dims_text(b.dims) +
                   (trans_b ? " (transB = 1)" : "") + " does not fit " +
                   std::to_string(in) + " input features");
  const auto bv = reals(n, b, "weight B");
  auto p = std::make_shared<DenseParams>();
  p->out = out;
  p->weights.resize(static_cast<std::size_t>(out * in));
  for (index_t o = 0; o < out; ++o)
    for (index_t i = 0; i < in; ++i)
      p->weights[o * in + i] = alpha * (trans_b ? bv[o * in + i] : bv[i * out + o]);
  p->bias.assign(static_cast<std::size_t>(out), 0.0);
  if (has_input(n, 2)) {
    const Const &c = constant(n, 2, "bias C");
    const auto cv = reals(n, c, "bias C");
    const index_t cn = static_cast<index_t>(cv.size());
    const bool ok =
        (cn == 1 && (c.dims.empty() || product(c.dims) == 1)) ||
        (cn == out && (c.dims.size() == 1 || (c.dims.size() == 2 && c.dims[0] == 1)));
    if (!ok)
      unsupported(n, "bias C of shape " + dims_text(c.dims) +
                         " is not supported (only [out], [1, out] or a scalar)");
    for (index_t o = 0; o < out; ++o)
      p->bias[o] = beta * cv[cn == 1 ? 0 : o];
  }
  Data y;
  y.node = use(n, 0);
  y.dims = {out};
  y.dense = std::move(p);
  set_output(n, 0, std::move(y));
}

template <class T> void Importer<T>::op_matmul(const onnx::NodeProto &n) {
  check_attributes(n, {});
  check_outputs(n, 1);
  if (is_const(n, 0))
    unsupported(n, "a constant left operand is not supported (only data x constant)");
  const Data &x = data(n, 0);
  const Const &b = constant(n, 1, "right operand");
  if (x.dims.size() != 1 || b.dims.size() != 2 || b.dims[0] != x.dims[0])
    unsupported(
        n, "only (N x " + std::to_string(x.dims.empty() ? 0 : x.dims.back()) +
               ") x (features x out) products are supported; the operand shapes are " +
               dims_text(x.dims) + " per sample and " + dims_text(b.dims));
  const index_t in = b.dims[0], out = b.dims[1];
  const auto bv = reals(n, b, "right operand");
  auto p = std::make_shared<DenseParams>();
  p->out = out;
  p->weights.resize(static_cast<std::size_t>(out * in));
  for (index_t o = 0; o < out; ++o)
    for (index_t i = 0; i < in; ++i)
      p->weights[o * in + i] = bv[i * out + o];
  p->bias.assign(static_cast<std::size_t>(out), 0.0);
  Data y;
  y.node = use(n, 0);
  y.dims = {out};
  y.dense = std::move(p);
  set_output(n, 0, std::move(y));
}

template <class T> void Importer<T>::op_batch_norm(const onnx::NodeProto &n) {
  check_attributes(n, {"epsilon", "momentum", "spatial", "training_mode"});
  check_outputs(n, 1);
  if (attr_int(n, "training_mode", 0) != 0)
    unsupported(n, "attribute training_mode = 1 is not supported (inference only)");
  if (attr_int(n, "spatial", 1) != 1)
    unsupported(n, "attribute spatial = 0 is not supported");
  const double eps = attr_float(n, "epsilon", 1e-5);
  const Data &x = data(n, 0);
  const index_t channels = x.dims.empty() ? 1 : x.dims[0];
  std::vector<std::vector<T>> p;
  const char *roles[] = {"scale", "bias B", "mean", "var"};
  for (int i = 1; i <= 4; ++i) {
    const auto v = reals(n, constant(n, i, roles[i - 1]), roles[i - 1]);
    if (static_cast<index_t>(v.size()) != channels)
      invalid(n, std::string(roles[i - 1]) + " has " + std::to_string(v.size()) +
                     " values for " + std::to_string(channels) + " channels");
    p.emplace_back(v.begin(), v.end());
  }
  const Node xn = use(n, 0);
  const std::size_t rank = x.dims.size();
  Node y;
  try {
    y = builder_.batch_norm(xn, std::move(p[0]), std::move(p[1]), std::move(p[2]),
                            std::move(p[3]), eps);
  } catch (const InvalidArgument &e) {
    invalid(n, e.what());
  }
  set_output(n, 0, new_data(y, rank));
}

template <class T>
void Importer<T>::op_activation(const onnx::NodeProto &n, Activation phi) {
  check_attributes(n, {"alpha"});
  check_outputs(n, 1);
  if (phi.kind == ActivationKind::leaky_relu)
    phi.slope = attr_float(n, "alpha", 0.01);
  else if (attr(n, "alpha"))
    unsupported(n, "attribute 'alpha' is not supported");
  const std::size_t rank = data(n, 0).dims.size();
  const Node x = use(n, 0);
  set_output(n, 0, new_data(builder_.activation(x, phi, block_name(n)), rank));
}

template <class T>
std::optional<std::vector<double>>
Importer<T>::per_channel(const onnx::NodeProto &n, const Data &x, const Const &c) const {
  const auto v = reals(n, c, "constant operand");
  const index_t channels = x.dims[0];
  if (v.size() == 1 && c.dims.size() <= x.dims.size() + 1)
    return std::vector<double>(static_cast<std::size_t>(channels), v[0]);
  // Right-aligned against [N, C, ...]: the channel axis holds C, others 1.
  const std::size_t full = x.dims.size() + 1;
  if (c.dims.size() > full)
    return std::nullopt;
  const std::size_t offset = full - c.dims.size();
  for (std::size_t k = 0; k < c.dims.size(); ++k) {
    const std::size_t axis = k + offset;
    const std::int64_t want = axis == 1 ? channels : 1;
    if (c.dims[k] != want)
      return std::nullopt;
  }
  if (static_cast<index_t>(v.size()) != channels)
    return std::nullopt;
  return v;
}

template <class T>
Data Importer<T>::channel_affine(const onnx::NodeProto &n, const Data &x,
                                 const std::vector<double> &scale,
                                 const std::vector<double> &shift) {
  (void)x;
  const std::size_t rank =
      std::get<Data>(values_.at(n.input(is_const(n, 0) ? 1 : 0))).dims.size();
  const Node xn = use(n, is_const(n, 0) ? 1 : 0);
  const std::size_t c = scale.size();
  // y = gamma (x - 0) / sqrt(1 + 0) + beta: exact.
  const Node y =
      builder_.batch_norm(xn, std::vector<T>(scale.begin(), scale.end()),
                          std::vector<T>(shift.begin(), shift.end()),
                          std::vector<T>(c, T(0)), std::vector<T>(c, T(1)), 0.0);
  return new_data(y, rank);
}

template <class T> void Importer<T>::op_binary(const onnx::NodeProto &n) {
  check_attributes(n, {});
  check_outputs(n, 1);
  const std::string &op = n.op_type();
  const bool c0 = is_const(n, 0), c1 = is_const(n, 1);
  if (c0 && c1) { // constant arithmetic with numpy broadcasting
    const Const &a = std::get<Const>(value(n, 0));
    const Const &b = std::get<Const>(value(n, 1));
    const std::size_t rank = std::max(a.dims.size(), b.dims.size());
    std::vector<std::int64_t> dims(rank);
    auto dim = [&](const Const &c, std::size_t k) -> std::int64_t {
      const std::size_t off = rank - c.dims.size();
      return k < off ? 1 : c.dims[k - off];
    };
    for (std::size_t k = 0; k < rank; ++k) {
      const auto da = dim(a, k), db = dim(b, k);
      if (da != db && da != 1 && db != 1)
        invalid(n, "shapes " + dims_text(a.dims) + " and " + dims_text(b.dims) +
                       " do not broadcast");
      dims[k] = da == 1 ? db : da;
    }
    Const r;
    r.dims = dims;
    r.integral = a.integral && b.integral;
    std::int64_t total = 1;
    for (auto d : dims)
      if ((total *= d) > max_computed)
        unsupported(n, "the result " + dims_text(dims) + " is too large to evaluate");
    const auto rs = strides_of(dims);
    auto index = [&](const Const &c, std::int64_t flat) {
      std::int64_t idx = 0, stride = 1;
      for (std::size_t k = rank; k-- > 0;) {
        const std::int64_t coord = (flat / rs[k]) % dims[k];
        const auto d = dim(c, k);
        idx += (d == 1 ? 0 : coord) * stride;
        stride *= d;
      }
      return idx;
    };
    const auto av = r.integral ? std::vector<double>{} : reals(n, a, "operand");
    const auto bv = r.integral ? std::vector<double>{} : reals(n, b, "operand");
    for (std::int64_t f = 0; f < total; ++f) {
      const auto ia = index(a, f), ib = index(b, f);
      if (r.integral) {
        const auto x = a.integer[ia], y = b.integer[ib];
        if (x == batch_marker || y == batch_marker)
          unsupported(n, "arithmetic on the batch size is not supported");
        std::int64_t v = 0;
        if (op == "Add")
          v = x + y;
        else if (op == "Sub")
          v = x - y;
        else if (op == "Mul")
          v = x * y;
        else {
          if (y == 0)
            invalid(n, "integer division by zero");
          v = x / y;
        }
        r.integer.push_back(v);
      } else {
        const double x = av[ia], y = bv[ib];
        r.real.push_back(op == "Add"   ? x + y
                         : op == "Sub" ? x - y
                         : op == "Mul" ? x * y
                                       : x / y);
      }
    }
    set_output(n, 0, std::move(r));
    return;
  }
  if (!c0 && !c1) {
    if (op != "Add")
      unsupported(n, "the product or difference of two computed tensors is not supported "
                     "(only Add)");
    const Data &a = data(n, 0), &b = data(n, 1);
    if (a.dims != b.dims)
      unsupported(n, "operand shapes " + dims_text(a.dims) + " and " + dims_text(b.dims) +
                         " differ (broadcasting is not supported)");
    const std::size_t rank = a.dims.size();
    const Node x = use(n, 0);
    const Node y = use(n, 1);
    set_output(n, 0, new_data(builder_.add(x, y), rank));
    return;
  }
  // Data and a constant.
  const int di = c0 ? 1 : 0;
  const Data x = data(n, di);
  const Const &c = constant(n, 1 - di, "operand");
  if (op == "Div" && c0)
    unsupported(n, "dividing a constant by a tensor is not supported");
  if (op == "Sub" && c0)
    unsupported(n, "subtracting a tensor from a constant is not supported");
  // A constant bias on a pending dense layer becomes its bias.
  if ((op == "Add" || op == "Sub") && x.dense) {
    const auto v = reals(n, c, "bias");
    const index_t out = x.dense->out;
    const bool fits = (v.size() == 1 && product(c.dims) == 1 && c.dims.size() <= 2) ||
                      (static_cast<index_t>(v.size()) == out &&
                       (c.dims.size() == 1 || (c.dims.size() == 2 && c.dims[0] == 1)));
    if (fits) {
      auto p = std::make_shared<DenseParams>(*x.dense);
      for (index_t o = 0; o < out; ++o)
        p->bias[o] += (op == "Sub" ? -1.0 : 1.0) * v[v.size() == 1 ? 0 : o];
      Data y = x;
      y.dense = std::move(p);
      set_output(n, 0, std::move(y));
      return;
    }
  }
  const auto pc = per_channel(n, x, c);
  if (!pc)
    unsupported(n, "constant operand of shape " + dims_text(c.dims) +
                       " is neither a scalar nor per channel for a tensor of shape " +
                       dims_text(x.dims) + " per sample");
  const std::size_t channels = pc->size();
  std::vector<double> scale(channels, 1.0), shift(channels, 0.0);
  for (std::size_t k = 0; k < channels; ++k) {
    const double v = (*pc)[k];
    if (op == "Add")
      shift[k] = v;
    else if (op == "Sub")
      shift[k] = -v;
    else if (op == "Mul")
      scale[k] = v;
    else {
      if (v == 0)
        invalid(n, "division by zero");
      scale[k] = 1.0 / v;
    }
  }
  set_output(n, 0, channel_affine(n, x, scale, shift));
}

template <class T> void Importer<T>::op_avg_pool(const onnx::NodeProto &n) {
  check_outputs(n, 1);
  const Data &x0 = data(n, 0);
  if (x0.dims.size() != 3)
    unsupported(n, "input has shape " + dims_text(x0.dims) +
                       " per sample; only 2-D pooling (N x C x H x W) is supported");
  if (n.op_type() == "GlobalAveragePool") {
    check_attributes(n, {});
    const Node x = use(n, 0);
    set_output(n, 0, new_data(builder_.global_avg_pool(x), 3));
    return;
  }
  check_attributes(n, {"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape",
                       "pads", "strides", "dilations"});
  const std::string auto_pad = attr_string(n, "auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "VALID" && !auto_pad.empty())
    unsupported(n, "attribute auto_pad = " + auto_pad +
                       " is not supported (only NOTSET with explicit pads, or VALID)");
  const auto k = attr_ints(n, "kernel_shape");
  if (!k || k->size() != 2)
    invalid(n, "attribute kernel_shape must hold 2 values");
  const auto strides = attr_ints(n, "strides").value_or(std::vector<std::int64_t>{1, 1});
  const auto pads = attr_ints(n, "pads").value_or(std::vector<std::int64_t>{0, 0, 0, 0});
  if (const auto d = attr_ints(n, "dilations"))
    if (*d != std::vector<std::int64_t>{1, 1})
      unsupported(n, "attribute dilations = " + dims_text(*d) + " is not supported");
  if (strides.size() != 2 || pads.size() != 4)
    invalid(n, "attributes strides / pads must hold 2 / 4 values");
  bool include = attr_int(n, "count_include_pad", 0) != 0;
  Pending extra;
  const Node x = use(n, 0, &extra);
  std::vector<std::int64_t> p = pads;
  if (extra.spatial()) {
    // Zeros padded by a Pad are always counted.
    if (!include && pads != std::vector<std::int64_t>{0, 0, 0, 0})
      unsupported(n, "a Pad before an AveragePool with its own pads and "
                     "count_include_pad = 0 is not supported");
    include = true;
    p[0] += extra.top;
    p[1] += extra.left;
    p[2] += extra.bottom;
    p[3] += extra.right;
  }
  const TensorShape in = builder_.shape(x);
  if (attr_int(n, "ceil_mode", 0) != 0) {
    const std::int64_t eh = in.height + p[0] + p[2] - (*k)[0];
    const std::int64_t ew = in.width + p[1] + p[3] - (*k)[1];
    if (eh % strides[0] != 0 || ew % strides[1] != 0)
      unsupported(n, "attribute ceil_mode = 1 is not supported (here it changes the "
                     "output size)");
  }
  Node y;
  try {
    y = builder_.avg_pool(x, (*k)[0], (*k)[1], strides[0], strides[1], p[0], p[1], p[2],
                          p[3], include);
  } catch (const InvalidArgument &e) {
    invalid(n, e.what());
  }
  set_output(n, 0, new_data(y, 3));
}

template <class T> void Importer<T>::op_flatten(const onnx::NodeProto &n) {
  check_attributes(n, {"axis"});
  check_outputs(n, 1);
  const Data &x = data(n, 0);
  std::int64_t axis = attr_int(n, "axis", 1);
  const auto rank = static_cast<std::int64_t>(x.dims.size()) + 1;
  if (axis < 0)
    axis += rank;
  if (axis != 1)
    unsupported(n, "attribute axis = " + std::to_string(attr_int(n, "axis", 1)) +
                       " is not supported (only 1: keep the batch, flatten the rest)");
  const index_t features = product(x.dims);
  const Node xn = use(n, 0);
  Data y;
  y.node = x.dims.size() == 1 ? xn : builder_.flatten(xn);
  y.dims = {features};
  set_output(n, 0, std::move(y));
}

template <class T> void Importer<T>::op_reshape(const onnx::NodeProto &n) {
  check_attributes(n, {"allowzero"});
  check_outputs(n, 1);
  if (attr_int(n, "allowzero", 0) != 0)
    unsupported(n, "attribute allowzero = 1 is not supported");
  const auto shape = ints(n, constant(n, 1, "shape"), "shape");
  if (is_const(n, 0)) { // constant reshape
    Const c = std::get<Const>(value(n, 0));
    std::vector<std::int64_t> dims(shape.size());
    std::int64_t known = 1, infer = -1;
    for (std::size_t k = 0; k < shape.size(); ++k) {
      std::int64_t d = shape[k];
      if (d == 0) {
        if (k >= c.dims.size())
          invalid(n, "shape " + dims_text(shape) + ": 0 beyond the input rank");
        d = c.dims[k];
      }
      if (d == -1) {
        if (infer >= 0)
          invalid(n, "shape " + dims_text(shape) + " has two -1");
        infer = static_cast<std::int64_t>(k);
        continue;
      }
      if (d < 0)
        invalid(n, "shape " + dims_text(shape) + " has a negative entry");
      dims[k] = d;
      known *= d;
    }
    if (infer >= 0) {
      if (known == 0 || c.size() % known != 0)
        invalid(n, "cannot reshape " + dims_text(c.dims) + " to " + dims_text(shape));
      dims[static_cast<std::size_t>(infer)] = c.size() / known;
      known *= dims[static_cast<std::size_t>(infer)];
    }
    if (known != c.size())
      invalid(n, "cannot reshape " + dims_text(c.dims) + " to " + dims_text(shape));
    c.dims = dims;
    set_output(n, 0, std::move(c));
    return;
  }
  const Data &x = data(n, 0);
  const index_t features = product(x.dims);
  if (shape.empty())
    unsupported(n, "reshape to a scalar is not supported");
  // Resolve the target dimensions after the batch.
  const std::int64_t first = shape[0];
  const bool first_is_batch = first == batch_marker || first == 0 ||
                              (static_batch_ > 0 && first == static_batch_);
  if (!first_is_batch && first != -1)
    unsupported(n,
                "target shape " + dims_text(shape) +
                    " changes the batch dimension; only [N, ...] targets are supported");
  std::vector<index_t> rest;
  std::int64_t known = 1;
  int infer = -1;
  for (std::size_t k = 1; k < shape.size(); ++k) {
    std::int64_t d = shape[k];
    if (d == 0) {
      if (k - 1 >= x.dims.size())
        invalid(n, "target shape " + dims_text(shape) + ": 0 beyond the input rank");
      d = x.dims[k - 1];
    }
    if (d == -1) {
      if (infer >= 0 || first == -1)
        invalid(n, "target shape " + dims_text(shape) + " has two -1");
      infer = static_cast<int>(rest.size());
      rest.push_back(0);
      continue;
    }
    if (d <= 0)
      unsupported(n, "target shape " + dims_text(shape) + " is not supported");
    rest.push_back(d);
    known *= d;
  }
  if (infer >= 0) {
    if (known == 0 || features % known != 0)
      invalid(n, "cannot reshape " + dims_text(x.dims) + " per sample to " +
                     dims_text(shape));
    rest[static_cast<std::size_t>(infer)] = features / known;
    known = features;
  }
  if (known != features)
    invalid(n, "cannot reshape " + dims_text(x.dims) + " per sample (" +
                   std::to_string(features) + " values) to " + dims_text(shape) +
                   " (the batch dimension is kept)");
  if (rest == x.dims) {
    set_output(n, 0, values_.at(n.input(0)));
    return;
  }
  if (rest.size() != 1)
    unsupported(n, "reshape of " + dims_text(x.dims) + " per sample to " +
                       dims_text(rest) +
                       " is not supported (only flattening to [N, features])");
  const Node xn = use(n, 0);
  Data y;
  y.node = x.dims.size() == 1 ? xn : builder_.flatten(xn);
  y.dims = {features};
  set_output(n, 0, std::move(y));
}

/// Slice parameters of input/attribute form, normalised per axis.
struct SliceSpec {
  std::vector<std::int64_t> starts, ends, axes, steps;
};

template <class T> void Importer<T>::op_slice(const onnx::NodeProto &n) {
  check_outputs(n, 1);
  SliceSpec s;
  if (opset_ < 10) {
    check_attributes(n, {"starts", "ends", "axes"});
    s.starts = attr_ints(n, "starts").value_or(std::vector<std::int64_t>{});
    s.ends = attr_ints(n, "ends").value_or(std::vector<std::int64_t>{});
    if (const auto a = attr_ints(n, "axes"))
      s.axes = *a;
  } else {
    check_attributes(n, {});
    s.starts = ints(n, constant(n, 1, "starts"), "starts");
    s.ends = ints(n, constant(n, 2, "ends"), "ends");
    if (has_input(n, 3))
      s.axes = ints(n, constant(n, 3, "axes"), "axes");
    if (has_input(n, 4))
      s.steps = ints(n, constant(n, 4, "steps"), "steps");
  }
  if (s.axes.empty())
    for (std::size_t k = 0; k < s.starts.size(); ++k)
      s.axes.push_back(static_cast<std::int64_t>(k));
  if (s.steps.empty())
    s.steps.assign(s.starts.size(), 1);
  if (s.ends.size() != s.starts.size() || s.axes.size() != s.starts.size() ||
      s.steps.size() != s.starts.size())
    invalid(n, "starts, ends, axes and steps differ in length");

  const bool constant_input = is_const(n, 0);
  std::vector<std::int64_t> in_dims;
  if (constant_input)
    in_dims = std::get<Const>(value(n, 0)).dims;
  else {
    in_dims = {batch_marker};
    for (auto d : data(n, 0).dims)
      in_dims.push_back(d);
  }
  const auto rank = static_cast<std::int64_t>(in_dims.size());
  // Per axis: start, step, count.
  std::vector<std::int64_t> first(in_dims.size(), 0), step(in_dims.size(), 1),
      count(in_dims.begin(), in_dims.end());
  std::vector<bool> touched(in_dims.size(), false);
  for (std::size_t k = 0; k < s.starts.size(); ++k) {
    std::int64_t axis = s.axes[k] < 0 ? s.axes[k] + rank : s.axes[k];
    if (axis < 0 || axis >= rank || touched[axis])
      invalid(n, "bad or repeated axis " + std::to_string(s.axes[k]));
    touched[axis] = true;
    const std::int64_t st = s.steps[k];
    if (st == 0)
      invalid(n, "step 0");
    const std::int64_t dim = in_dims[axis];
    if (dim == batch_marker) {
      if (s.starts[k] != 0 || st != 1 || s.ends[k] < (std::int64_t{1} << 31))
        unsupported(n, "slicing the batch dimension is not supported");
      continue;
    }
    // ONNX clamping rules.
    auto clamp = [&](std::int64_t v, std::int64_t lo, std::int64_t hi) {
      if (v < 0)
        v = v + dim < 0 && v < -dim ? -1 : v + dim;
      return std::clamp(v, lo, hi);
    };
    std::int64_t b = s.starts[k], e = s.ends[k];
    if (st > 0) {
      b = b < 0 ? std::max<std::int64_t>(b + dim, 0) : std::min(b, dim);
      e = e < 0 ? std::max<std::int64_t>(e + dim, 0) : std::min(e, dim);
      count[axis] = e > b ? (e - b + st - 1) / st : 0;
    } else {
      b = clamp(b, -1, dim - 1);
      e = e < -dim ? -1 : clamp(e, -1, dim - 1);
      count[axis] = b > e ? (b - e + (-st) - 1) / (-st) : 0;
    }
    first[axis] = b;
    step[axis] = st;
  }
  if (constant_input) {
    const Const &c = std::get<Const>(value(n, 0));
    Const r;
    r.integral = c.integral;
    r.dims = count;
    const auto total = product(count);
    const auto in_strides = strides_of(c.dims);
    const auto out_strides = strides_of(count);
    for (std::int64_t f = 0; f < total; ++f) {
      std::int64_t src = 0;
      for (std::size_t a = 0; a < count.size(); ++a) {
        const std::int64_t coord = (f / out_strides[a]) % count[a];
        src += (first[a] + coord * step[a]) * in_strides[a];
      }
      if (c.integral)
        r.integer.push_back(c.integer[src]);
      else
        r.real.push_back(c.real[src]);
    }
    set_output(n, 0, std::move(r));
    return;
  }
  Data y = data(n, 0);
  for (std::size_t a = 1; a < in_dims.size(); ++a) {
    if (!touched[a] || (first[a] == 0 && step[a] == 1 && count[a] == in_dims[a]))
      continue;
    const bool spatial = y.dims.size() == 3 && a >= 2;
    if (!spatial || first[a] != 0 || step[a] < 1 ||
        count[a] != (in_dims[a] + step[a] - 1) / step[a])
      unsupported(n, "only slices that subsample the spatial axes of an N x C x H x W "
                     "tensor from index 0 to the end are supported (axis " +
                         std::to_string(a) + ": start " + std::to_string(first[a]) +
                         ", step " + std::to_string(step[a]) + ", " +
                         std::to_string(count[a]) + " of " + std::to_string(in_dims[a]) +
                         ")");
    if (y.dense || y.pending.spatial())
      unsupported(n, "slicing a padded tensor is not supported");
    (a == 2 ? y.pending.stride_h : y.pending.stride_w) *= step[a];
    y.dims[a - 1] = count[a];
  }
  set_output(n, 0, std::move(y));
}

template <class T> void Importer<T>::op_pad(const onnx::NodeProto &n) {
  check_outputs(n, 1);
  std::vector<std::int64_t> pads;
  double fill = 0;
  if (opset_ < 11) {
    check_attributes(n, {"mode", "pads", "value"});
    pads = attr_ints(n, "pads").value_or(std::vector<std::int64_t>{});
    fill = attr_float(n, "value", 0.0);
  } else {
    check_attributes(n, {"mode"});
    pads = ints(n, constant(n, 1, "pads"), "pads");
    if (has_input(n, 2)) {
      const auto v = reals(n, constant(n, 2, "constant_value"), "constant_value");
      if (v.size() != 1)
        invalid(n, "constant_value must be a scalar");
      fill = v[0];
    }
    if (has_input(n, 3))
      unsupported(n, "input 'axes' is not supported");
  }
  const std::string mode = attr_string(n, "mode", "constant");
  if (mode != "constant")
    unsupported(n, "attribute mode = " + mode + " is not supported (only constant)");
  if (fill != 0)
    unsupported(n, "padding with " + std::to_string(fill) +
                       " is not supported (only zero padding)");
  Data y = data(n, 0);
  const std::size_t rank = y.dims.size() + 1;
  if (pads.size() != 2 * rank)
    invalid(n, "pads " + dims_text(pads) + " do not have 2 x " + std::to_string(rank) +
                   " values");
  for (auto p : pads) {
    if (p < 0)
      unsupported(n,
                  "negative pads (cropping) " + dims_text(pads) + " are not supported");
    if (p > max_pad)
      unsupported(n, "pads " + dims_text(pads) + " are too large");
  }
  if (pads[0] != 0 || pads[rank] != 0)
    unsupported(n, "padding the batch dimension is not supported");
  if (y.dense)
    materialize(n, y, nullptr);
  const index_t front = pads[1], back = pads[rank + 1];
  if (front || back) {
    if (y.pending.spatial())
      unsupported(n, "channel padding of a spatially padded tensor is not supported");
    y.pending.c_front += front;
    y.pending.c_back += back;
    y.dims[0] += front + back;
  }
  if (rank == 4) {
    y.pending.top += pads[2];
    y.pending.left += pads[3];
    y.pending.bottom += pads[6];
    y.pending.right += pads[7];
    y.dims[1] += pads[2] + pads[6];
    y.dims[2] += pads[3] + pads[7];
  } else {
    for (std::size_t a = 2; a < rank; ++a)
      if (pads[a] || pads[rank + a])
        unsupported(n, "padding of this axis is not supported (pads " + dims_text(pads) +
                           ")");
  }
  set_output(n, 0, std::move(y));
}

template <class T> void Importer<T>::op_shape(const onnx::NodeProto &n) {
  check_attributes(n, {"start", "end"});
  check_outputs(n, 1);
  std::vector<std::int64_t> dims;
  if (is_const(n, 0))
    dims = std::get<Const>(value(n, 0)).dims;
  else {
    dims = {batch_marker};
    for (auto d : data(n, 0).dims)
      dims.push_back(d);
  }
  const auto rank = static_cast<std::int64_t>(dims.size());
  std::int64_t b = attr_int(n, "start", 0), e = attr_int(n, "end", rank);
  b = std::clamp<std::int64_t>(b < 0 ? b + rank : b, 0, rank);
  e = std::clamp<std::int64_t>(e < 0 ? e + rank : e, 0, rank);
  Const c;
  c.integral = true;
  for (std::int64_t k = b; k < e; ++k)
    c.integer.push_back(dims[k]);
  c.dims = {static_cast<std::int64_t>(c.integer.size())};
  set_output(n, 0, std::move(c));
}

template <class T> void Importer<T>::op_gather(const onnx::NodeProto &n) {
  check_attributes(n, {"axis"});
  check_outputs(n, 1);
  const Const &c = constant(n, 0, "data");
  const Const &idx = constant(n, 1, "indices");
  const auto indices = ints(n, idx, "indices");
  const auto rank = static_cast<std::int64_t>(c.dims.size());
  std::int64_t axis = attr_int(n, "axis", 0);
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis >= rank)
    invalid(n, "attribute axis out of range");
  Const r;
  r.integral = c.integral;
  r.dims.assign(c.dims.begin(), c.dims.begin() + axis);
  r.dims.insert(r.dims.end(), idx.dims.begin(), idx.dims.end());
  r.dims.insert(r.dims.end(), c.dims.begin() + axis + 1, c.dims.end());
  std::int64_t outer = 1, inner = 1;
  for (std::int64_t k = 0; k < axis; ++k)
    outer *= c.dims[k];
  for (std::int64_t k = axis + 1; k < rank; ++k)
    inner *= c.dims[k];
  const std::int64_t dim = c.dims[axis];
  if (outer * inner * static_cast<std::int64_t>(indices.size()) > max_computed)
    unsupported(n, "the result is too large to evaluate");
  for (std::int64_t o = 0; o < outer; ++o)
    for (auto i : indices) {
      if (i < 0)
        i += dim;
      if (i < 0 || i >= dim)
        invalid(n, "index out of range");
      for (std::int64_t q = 0; q < inner; ++q) {
        const std::int64_t src = (o * dim + i) * inner + q;
        if (c.integral)
          r.integer.push_back(c.integer[src]);
        else
          r.real.push_back(c.real[src]);
      }
    }
  set_output(n, 0, std::move(r));
}

template <class T>
void Importer<T>::op_unsqueeze(const onnx::NodeProto &n, bool squeeze) {
  check_outputs(n, 1);
  std::vector<std::int64_t> axes;
  if (opset_ < 13) {
    check_attributes(n, {"axes"});
    axes = attr_ints(n, "axes").value_or(std::vector<std::int64_t>{});
  } else {
    check_attributes(n, {});
    if (has_input(n, 1))
      axes = ints(n, constant(n, 1, "axes"), "axes");
  }
  if (!is_const(n, 0)) {
    unsupported(n, "only constants (shape arithmetic) can be " +
                       std::string(squeeze ? "squeezed" : "unsqueezed"));
  }
  Const c = std::get<Const>(value(n, 0));
  if (squeeze) {
    const auto rank = static_cast<std::int64_t>(c.dims.size());
    std::vector<bool> drop(c.dims.size(), false);
    if (axes.empty())
      for (std::size_t k = 0; k < c.dims.size(); ++k)
        drop[k] = c.dims[k] == 1;
    for (auto a : axes) {
      if (a < 0)
        a += rank;
      if (a < 0 || a >= rank || c.dims[a] != 1)
        invalid(n, "cannot squeeze axis " + std::to_string(a));
      drop[a] = true;
    }
    std::vector<std::int64_t> dims;
    for (std::size_t k = 0; k < c.dims.size(); ++k)
      if (!drop[k])
        dims.push_back(c.dims[k]);
    c.dims = dims;
  } else {
    const auto rank = static_cast<std::int64_t>(c.dims.size() + axes.size());
    std::vector<bool> one(static_cast<std::size_t>(rank), false);
    for (auto a : axes) {
      if (a < 0)
        a += rank;
      if (a < 0 || a >= rank || one[a])
        invalid(n, "bad axis " + std::to_string(a));
      one[a] = true;
    }
    std::vector<std::int64_t> dims;
    std::size_t src = 0;
    for (std::int64_t k = 0; k < rank; ++k)
      dims.push_back(one[k] ? 1 : c.dims[src++]);
    c.dims = dims;
  }
  set_output(n, 0, std::move(c));
}

template <class T> void Importer<T>::op_concat(const onnx::NodeProto &n) {
  check_attributes(n, {"axis"});
  check_outputs(n, 1);
  std::vector<const Const *> parts;
  for (int i = 0; i < n.input_size(); ++i)
    parts.push_back(&constant(n, i, "input"));
  if (parts.empty())
    invalid(n, "no inputs");
  const auto rank = static_cast<std::int64_t>(parts[0]->dims.size());
  std::int64_t axis = attr_int(n, "axis", 0);
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis >= rank)
    invalid(n, "attribute axis out of range");
  Const r;
  r.integral = true;
  for (const auto *p : parts)
    r.integral = r.integral && p->integral;
  r.dims = parts[0]->dims;
  r.dims[axis] = 0;
  for (const auto *p : parts) {
    if (static_cast<std::int64_t>(p->dims.size()) != rank)
      invalid(n, "inputs differ in rank");
    for (std::int64_t k = 0; k < rank; ++k)
      if (k != axis && p->dims[k] != parts[0]->dims[k])
        invalid(n, "input shapes differ off the concatenation axis");
    r.dims[axis] += p->dims[axis];
  }
  std::int64_t outer = 1;
  for (std::int64_t k = 0; k < axis; ++k)
    outer *= r.dims[k];
  for (std::int64_t o = 0; o < outer; ++o)
    for (const auto *p : parts) {
      const std::int64_t chunk = outer ? p->size() / std::max<std::int64_t>(outer, 1) : 0;
      for (std::int64_t q = 0; q < chunk; ++q) {
        if (r.integral)
          r.integer.push_back(p->integer[o * chunk + q]);
        else
          r.real.push_back(p->integral ? static_cast<double>(p->integer[o * chunk + q])
                                       : p->real[o * chunk + q]);
      }
    }
  set_output(n, 0, std::move(r));
}

template <class T> void Importer<T>::op_transpose(const onnx::NodeProto &n) {
  check_attributes(n, {"perm"});
  check_outputs(n, 1);
  const Const &c = constant(n, 0, "data");
  const std::size_t rank = c.dims.size();
  std::vector<std::int64_t> perm(rank);
  if (const auto p = attr_ints(n, "perm"))
    perm = *p;
  else
    for (std::size_t k = 0; k < rank; ++k)
      perm[k] = static_cast<std::int64_t>(rank - 1 - k);
  if (perm.size() != rank)
    invalid(n, "attribute perm has the wrong length");
  Const r;
  r.integral = c.integral;
  for (auto p : perm) {
    if (p < 0 || p >= static_cast<std::int64_t>(rank))
      invalid(n, "attribute perm out of range");
    r.dims.push_back(c.dims[p]);
  }
  const auto in_strides = strides_of(c.dims);
  const auto out_strides = strides_of(r.dims);
  const auto total = c.size();
  for (std::int64_t f = 0; f < total; ++f) {
    std::int64_t src = 0;
    for (std::size_t a = 0; a < rank; ++a)
      src += ((f / out_strides[a]) % r.dims[a]) * in_strides[perm[a]];
    if (c.integral)
      r.integer.push_back(c.integer[src]);
    else
      r.real.push_back(c.real[src]);
  }
  set_output(n, 0, std::move(r));
}

template <class T> void Importer<T>::op_cast(const onnx::NodeProto &n) {
  check_attributes(n, {"to", "saturate"});
  check_outputs(n, 1);
  const auto to = attr_int(n, "to", 0);
  if (!is_const(n, 0)) { // a cast of the data to float or double is a no-op here
    if (to != onnx::TensorProto::FLOAT && to != onnx::TensorProto::DOUBLE)
      unsupported(n, std::string("cast of a computed tensor to ") +
                         data_type_name(int(to)) + " is not supported");
    set_output(n, 0, value(n, 0));
    return;
  }
  Const c = std::get<Const>(value(n, 0));
  switch (to) {
  case onnx::TensorProto::FLOAT:
  case onnx::TensorProto::DOUBLE:
    if (c.integral) {
      c.real = reals(n, c, "input");
      c.integer.clear();
      c.integral = false;
    }
    if (to == onnx::TensorProto::FLOAT)
      for (auto &v : c.real)
        v = static_cast<float>(v);
    break;
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::INT32:
    if (!c.integral) {
      for (double v : c.real)
        c.integer.push_back(static_cast<std::int64_t>(std::trunc(v)));
      c.real.clear();
      c.integral = true;
    }
    break;
  default:
    unsupported(n,
                std::string("cast to ") + data_type_name(int(to)) + " is not supported");
  }
  set_output(n, 0, std::move(c));
}

template <class T> void Importer<T>::op_constant_of_shape(const onnx::NodeProto &n) {
  check_attributes(n, {"value"});
  check_outputs(n, 1);
  const auto dims = ints(n, constant(n, 0, "shape"), "shape");
  Const fill;
  fill.real = {0.0};
  if (const auto *a = attr(n, "value"))
    fill = parse_tensor(a->t(), "node '" + n.name() + "' (ConstantOfShape) value");
  if (fill.size() != 1)
    invalid(n, "attribute value must hold one element");
  Const r;
  r.integral = fill.integral;
  std::int64_t total = 1;
  for (auto d : dims) {
    if (d < 0 || (d && total > max_computed / d))
      unsupported(n, "shape " + dims_text(dims) + " is not supported");
    total *= d;
  }
  r.dims = dims;
  if (r.integral)
    r.integer.assign(static_cast<std::size_t>(total), fill.integer[0]);
  else
    r.real.assign(static_cast<std::size_t>(total), fill.real[0]);
  set_output(n, 0, std::move(r));
}

template <class T> void Importer<T>::node(const onnx::NodeProto &n) {
  if (!n.domain().empty() && n.domain() != "ai.onnx")
    unsupported(n, "operators of domain '" + n.domain() + "' are not supported");
  const std::string &op = n.op_type();
  if (op == "Constant")
    op_constant(n);
  else if (op == "Conv")
    op_conv(n);
  else if (op == "Gemm")
    op_gemm(n);
  else if (op == "MatMul")
    op_matmul(n);
  else if (op == "BatchNormalization")
    op_batch_norm(n);
  else if (op == "Relu")
    op_activation(n, {ActivationKind::relu});
  else if (op == "LeakyRelu")
    op_activation(n, {ActivationKind::leaky_relu, 0.01});
  else if (op == "Sigmoid")
    op_activation(n, {ActivationKind::sigmoid});
  else if (op == "Tanh")
    op_activation(n, {ActivationKind::tanh});
  else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div")
    op_binary(n);
  else if (op == "AveragePool" || op == "GlobalAveragePool")
    op_avg_pool(n);
  else if (op == "Flatten")
    op_flatten(n);
  else if (op == "Reshape")
    op_reshape(n);
  else if (op == "Identity" || op == "Dropout") {
    if (op == "Dropout") {
      check_attributes(n, {"ratio", "seed", "is_test"});
      if (has_input(n, 2))
        unsupported(n, "input training_mode is not supported (inference only)");
    } else
      check_attributes(n, {});
    check_outputs(n, 1);
    set_output(n, 0, value(n, 0));
  } else if (op == "Slice")
    op_slice(n);
  else if (op == "Pad")
    op_pad(n);
  else if (op == "Shape")
    op_shape(n);
  else if (op == "Gather")
    op_gather(n);
  else if (op == "Unsqueeze" || op == "Squeeze")
    op_unsqueeze(n, op == "Squeeze");
  else if (op == "Concat")
    op_concat(n);
  else if (op == "Transpose")
    op_transpose(n);
  else if (op == "Cast")
    op_cast(n);
  else if (op == "ConstantOfShape")
    op_constant_of_shape(n);
  else
    unsupported(n,
                "operator " + op +
                    " is not supported (supported: Conv, Gemm, MatMul, "
                    "BatchNormalization, Relu, LeakyRelu, Sigmoid, Tanh, Add, Sub, Mul, "
                    "Div, AveragePool, GlobalAveragePool, Flatten, Reshape, Identity, "
                    "Dropout, Slice, Pad, Constant and shape arithmetic)");
}

template <class T> Model<T> Importer<T>::run() {
  for (const auto &o : model_.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx")
      opset_ = o.version();
  if (!model_.has_graph())
    throw FileError(name_, 0, "the model has no graph");
  const auto &g = model_.graph();
  if (opset_ == 0)
    throw FileError(name_, 0,
                    "the model declares no default-domain opset (opset_import)");
  if (opset_ > 18)
    throw Unsupported(name_ + ": opset " + std::to_string(opset_) +
                      " is newer than the supported opsets (up to 18)");

  // Initializers.
  index_t parameters = 0;
  for (const auto &t : g.initializer()) {
    Const c = parse_tensor(t, "initializer '" + t.name() + "'");
    if (!c.integral)
      parameters += c.size();
    values_[t.name()] = std::move(c);
  }
  // The one real input (older IR versions also list the initializers).
  const onnx::ValueInfoProto *input = nullptr;
  for (const auto &v : g.input()) {
    if (values_.count(v.name()))
      continue;
    if (input)
      throw Unsupported(name_ + ": the graph has several inputs ('" + input->name() +
                        "', '" + v.name() + "'); only one is supported");
    input = &v;
  }
  if (!input)
    throw InvalidArgument(name_ + ": the graph has no input");
  if (g.output_size() != 1)
    throw Unsupported(name_ + ": the graph has " + std::to_string(g.output_size()) +
                      " outputs; only one is supported");
  const auto &type = input->type();
  if (!type.has_tensor_type() || !type.tensor_type().has_shape())
    throw Unsupported(name_ + ": input '" + input->name() +
                      "' is not a tensor with a known shape");
  const auto elem = type.tensor_type().elem_type();
  if (elem != onnx::TensorProto::FLOAT && elem != onnx::TensorProto::DOUBLE)
    throw Unsupported(name_ + ": input '" + input->name() + "' has element type " +
                      data_type_name(elem) + " (only float32 or float64)");
  const auto &shape = type.tensor_type().shape();
  if (shape.dim_size() < 2 || shape.dim_size() > 4)
    throw Unsupported(name_ + ": input '" + input->name() + "' has " +
                      std::to_string(shape.dim_size()) +
                      " dimensions; expected N x features, N x C x L or N x C x H x W");
  std::string batch;
  if (shape.dim(0).has_dim_value()) {
    static_batch_ = shape.dim(0).dim_value();
    batch = std::to_string(static_batch_);
  } else if (shape.dim(0).has_dim_param()) {
    batch = shape.dim(0).dim_param();
  }
  std::vector<index_t> dims;
  for (int k = 1; k < shape.dim_size(); ++k) {
    if (!shape.dim(k).has_dim_value() || shape.dim(k).dim_value() <= 0)
      throw Unsupported(name_ + ": input '" + input->name() + "' dimension " +
                        std::to_string(k) + " is not a fixed positive size");
    dims.push_back(shape.dim(k).dim_value());
    if (product(dims) > max_computed * 16)
      throw Unsupported(name_ + ": input '" + input->name() +
                        "' is too large (more than 2^28 values per sample)");
  }
  Data in;
  in.node = builder_.input(shape_of(dims));
  in.dims = dims;
  values_[input->name()] = in;

  std::set<std::string> ops;
  for (node_index_ = 0; node_index_ < g.node_size(); ++node_index_) {
    const auto &n = g.node(node_index_);
    ops.insert(n.op_type());
    node(n);
  }
  const std::string &out_name = g.output(0).name();
  const auto it = values_.find(out_name);
  if (it == values_.end())
    throw InvalidArgument(name_ + ": the graph output '" + out_name +
                          "' is not computed by any node");
  if (!std::holds_alternative<Data>(it->second))
    throw Unsupported(name_ + ": the graph output '" + out_name +
                      "' is a constant (it does not depend on the input)");
  Data &y = std::get<Data>(it->second);
  onnx::NodeProto output_node;
  output_node.set_name(out_name);
  output_node.set_op_type("graph output");
  const Node yn = materialize(output_node, y, nullptr);
  Model<T> result = builder_.build(yn);
  if (info_) {
    info_->producer =
        model_.producer_name() +
        (model_.producer_version().empty() ? "" : " " + model_.producer_version());
    info_->opset = opset_;
    info_->graph_name = g.name();
    info_->input_name = input->name();
    info_->output_name = out_name;
    info_->input_dims = dims;
    info_->output_dims = y.dims;
    info_->batch = batch;
    info_->nodes = g.node_size();
    info_->parameters = parameters;
    info_->op_types.assign(ops.begin(), ops.end());
  }
  return result;
}

} // namespace

template <class T>
Model<T> import_onnx_bytes(std::string_view bytes, const std::string &name,
                           OnnxImportInfo *info, const OnnxImportOptions &options) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw FileError(name, 0, "larger than 2 GiB; not supported");
  onnx::ModelProto model;
  if (!model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw FileError(name, 0,
                    "not a valid ONNX model (the protobuf message does not parse: "
                    "truncated or not an ONNX file)");
  Importer<T> importer(model, name, info, options);
  return importer.run();
}


template <class T> Model<T> import_onnx(const fs::path &file, OnnxImportInfo *info) {
  return import_onnx<T>(file, OnnxImportOptions{}, info);
}

template <class T>
Model<T> import_onnx(const fs::path &file, const OnnxImportOptions &options,
                     OnnxImportInfo *info) {
  const auto buffer = detail::read_whole_file(file);
  return import_onnx_bytes<T>(buffer.view(), detail::display_name(file), info, options);
}

template Model<float> import_onnx<float>(const fs::path &, OnnxImportInfo *);
template Model<double> import_onnx<double>(const fs::path &, OnnxImportInfo *);
template Model<float> import_onnx<float>(const fs::path &, const OnnxImportOptions &,
                                        OnnxImportInfo *);
template Model<double> import_onnx<double>(const fs::path &, const OnnxImportOptions &,
                                          OnnxImportInfo *);
template Model<float> import_onnx_bytes<float>(std::string_view, const std::string &,
                                               OnnxImportInfo *, const OnnxImportOptions &);
template Model<double> import_onnx_bytes<double>(std::string_view, const std::string &,
                                                 OnnxImportInfo *, const OnnxImportOptions &);

} // namespace tacit::inline v1
