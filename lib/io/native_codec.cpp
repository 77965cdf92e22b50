// The registry of native-format codecs (see io/native_codec.hpp), and the
// codecs of tacit's own operator types.

#include <tacit/io/native_codec.hpp>
#include <tacit/operators/structured.hpp>

#include <deque>
#include <mutex>
#include <typeindex>

namespace tacit::inline v1 {

namespace {

template <class T> struct Registry;
template <class T> void register_builtin_codecs(Registry<T> &r);

template <class T> struct Registry {
  std::mutex mutex;
  std::deque<NativeCodec<T>> codecs; // stable addresses

  /// The registry, tacit's codecs registered on first use.
  static Registry &get() {
    static Registry r;
    static std::once_flag builtins;
    std::call_once(builtins, [] { register_builtin_codecs<T>(r); });
    return r;
  }

  /// Adds a codec (the caller holds the lock or is the first use).
  void add(NativeCodec<T> codec) {
    if (!codec.type || !codec.encode || !codec.decode || codec.kind.empty())
      throw InvalidArgument("register_native_codec: the codec of '" + codec.kind +
                            "' lacks a kind, a type, an encoder or a decoder");
    if (codec.code <= 1)
      throw InvalidArgument("register_native_codec: code " + std::to_string(codec.code) +
                            " of '" + codec.kind + "' is reserved");
    if (codec.label.empty())
      codec.label = codec.kind;
    for (const auto &c : codecs)
      if (c.kind == codec.kind || c.code == codec.code)
        throw InvalidArgument("register_native_codec: '" + codec.kind + "' (code " +
                              std::to_string(codec.code) +
                              ") clashes with the codec of '" + c.kind + "' (code " +
                              std::to_string(c.code) + ")");
    codecs.push_back(std::move(codec));
  }
};

// Node codes of tacit's types (1 is the CSR node, written by the format
// itself for every operator without a codec).
enum BuiltinCode : std::uint32_t {
  conv2d = 2,
  identity = 3,
  diagonal = 4,
  channel_pad = 5,
  dense = 6,
  composed = 7,
  block = 8,
  avg_pool = 9
};

template <class T> void register_builtin_codecs(Registry<T> &r) {
  r.add(make_native_codec<Conv2dOperator<T>>(
      conv2d,
      [](const Conv2dOperator<T> &conv, NativeEncoder<T> &out) {
        const auto &g = conv.geometry();
        for (const index_t v :
             {g.input.channels, g.input.height, g.input.width, g.out_channels, g.kernel_h,
              g.kernel_w, g.stride_h, g.stride_w, g.pad_top, g.pad_left, g.pad_bottom,
              g.pad_right, g.dilation_h, g.dilation_w, g.groups})
          out.put_count(v);
        out.put_values(conv.weights());
      },
      [](NativeDecoder<T> &in) -> OperatorPtr<T> {
        Conv2dGeometry g;
        index_t *fields[] = {&g.input.channels, &g.input.height, &g.input.width,
                             &g.out_channels,   &g.kernel_h,     &g.kernel_w,
                             &g.stride_h,       &g.stride_w,     &g.pad_top,
                             &g.pad_left,       &g.pad_bottom,   &g.pad_right,
                             &g.dilation_h,     &g.dilation_w,   &g.groups};
        for (auto *f : fields)
          *f = in.count("convolution geometry");
        auto w = in.values(-1, "convolution weights");
        g.validate();
        return std::make_shared<Conv2dOperator<T>>(g, std::move(w));
      },
      "convolution"));
  r.add(make_native_codec<IdentityOperator<T>>(
      identity,
      [](const IdentityOperator<T> &id, NativeEncoder<T> &out) {
        out.put_value(id.scale());
      },
      [](NativeDecoder<T> &in) -> OperatorPtr<T> {
        const T scale = in.value("identity scale");
        return std::make_shared<IdentityOperator<T>>(in.rows(), scale);
      }));
  r.add(make_native_codec<DiagonalOperator<T>>(
      diagonal,
      [](const DiagonalOperator<T> &d, NativeEncoder<T> &out) {
        out.put_values(d.diagonal());
      },
      [](NativeDecoder<T> &in) -> OperatorPtr<T> {
        return std::make_shared<DiagonalOperator<T>>(in.values(in.rows(), "diagonal"));
      }));
  r.add(make_native_codec<ChannelPadOperator<T>>(
      channel_pad,
      [](const ChannelPadOperator<T> &pad, NativeEncoder<T> &out) {
        const auto in = pad.input_shape();
        for (const index_t v :
             {in.channels, in.height, in.width, pad.output_shape().channels, pad.stride(),
              pad.pad_front()})
          out.put_count(v);
      },
      [](NativeDecoder<T> &in) -> OperatorPtr<T> {
        TensorShape shape;
        shape.channels = in.count("channel pad input");
        shape.height = in.count("channel pad input");
        shape.width = in.count("channel pad input");
        const index_t out = in.count("channel pad output channels");
        const index_t stride = in.count("channel pad stride");
        const index_t front = in.count("channel pad front");
        return std::make_shared<ChannelPadOperator<T>>(shape, out, stride, front);
      },
      "channel pad"));
  r.add(make_native_codec<DenseOperator<T>>(
      dense,
      [](const DenseOperator<T> &d, NativeEncoder<T> &out) { out.put_values(d.data()); },
      [](NativeDecoder<T> &in) -> OperatorPtr<T> {
        const index_t rows = in.rows(), cols = in.cols();
        if (rows > 0 &&
            static_cast<std::uint64_t>(cols) >
                in.bytes_left() / in.value_bytes() / static_cast<std::uint64_t>(rows))
          in.fail("dense node of " + std::to_string(rows) + " x " + std::to_string(cols) +
                  " does not fit the bytes left");
        auto v = in.values(rows * cols, "dense values");
        return std::make_shared<DenseOperator<T>>(rows, cols, std::move(v));
      }));
  r.add(make_native_codec<ComposedOperator<T>>(
      composed,
      [](const ComposedOperator<T> &c, NativeEncoder<T> &out) {
        out.put_operator(*c.left());
        out.put_operator(*c.right());
      },
      [](NativeDecoder<T> &in) -> OperatorPtr<T> {
        auto left = in.nested();
        auto right = in.nested();
        return std::make_shared<ComposedOperator<T>>(std::move(left), std::move(right));
      },
      "composed operator"));
  r.add(make_native_codec<BlockOperator<T>>(
      block,
      [](const BlockOperator<T> &blk, NativeEncoder<T> &out) {
        out.put_count(blk.row_blocks());
        out.put_count(blk.col_blocks());
        for (index_t i = 0; i < blk.row_blocks(); ++i)
          out.put_count(blk.row_block_size(i));
        for (index_t j = 0; j < blk.col_blocks(); ++j)
          out.put_count(blk.col_block_size(j));
        out.put_count(static_cast<index_t>(blk.entries().size()));
        for (const auto &e : blk.entries()) {
          out.put_count(e.block_row);
          out.put_count(e.block_col);
          out.put_operator(*e.op);
        }
      },
      [](NativeDecoder<T> &in) -> OperatorPtr<T> {
        const index_t nr = in.count("row block count"),
                      nc = in.count("column block count");
        if (static_cast<std::uint64_t>(nr) + static_cast<std::uint64_t>(nc) >
            in.bytes_left() / 8)
          in.fail("block counts " + std::to_string(nr) + " x " + std::to_string(nc) +
                  " do not fit the bytes left");
        std::vector<index_t> rs(static_cast<std::size_t>(nr)),
            cs(static_cast<std::size_t>(nc));
        for (auto &v : rs)
          v = in.count("row block size");
        for (auto &v : cs)
          v = in.count("column block size");
        const index_t ne = in.count("entry count");
        if (static_cast<std::uint64_t>(ne) > in.bytes_left() / 40)
          in.fail("entry count " + std::to_string(ne) + " does not fit the bytes left");
        std::vector<BlockEntry<T>> entries;
        entries.reserve(static_cast<std::size_t>(ne));
        for (index_t e = 0; e < ne; ++e) {
          BlockEntry<T> en;
          en.block_row = in.count("entry block row");
          en.block_col = in.count("entry block column");
          en.op = in.nested();
          entries.push_back(std::move(en));
        }
        return std::make_shared<BlockOperator<T>>(std::move(rs), std::move(cs),
                                                  std::move(entries));
      },
      "block operator"));
  r.add(make_native_codec<AvgPool2dOperator<T>>(
      avg_pool,
      [](const AvgPool2dOperator<T> &pool, NativeEncoder<T> &out) {
        const auto in = pool.input_shape();
        const auto pads = pool.pads();
        for (const index_t v :
             {in.channels, in.height, in.width, pool.kernel_h(), pool.kernel_w(),
              pool.stride_h(), pool.stride_w(), pads[0], pads[1], pads[2], pads[3],
              index_t(pool.count_include_pad() ? 1 : 0)})
          out.put_count(v);
      },
      [](NativeDecoder<T> &in) -> OperatorPtr<T> {
        TensorShape shape;
        shape.channels = in.count("pooling input");
        shape.height = in.count("pooling input");
        shape.width = in.count("pooling input");
        index_t v[9];
        for (auto &x : v)
          x = in.count("pooling window");
        return std::make_shared<AvgPool2dOperator<T>>(shape, v[0], v[1], v[2], v[3], v[4],
                                                      v[5], v[6], v[7], v[8] != 0);
      },
      "average pooling"));
}

} // namespace

template <class T> void register_native_codec(NativeCodec<T> codec) {
  auto &r = Registry<T>::get();
  std::lock_guard lock(r.mutex);
  r.add(std::move(codec));
}

template <class T> const NativeCodec<T> *find_native_codec(const LinearOperator<T> &op) {
  auto &r = Registry<T>::get();
  const std::string kind = op.kind();
  std::lock_guard lock(r.mutex);
  for (const auto &c : r.codecs)
    if (c.kind == kind)
      return std::type_index(typeid(op)) == std::type_index(*c.type) ? &c : nullptr;
  return nullptr;
}

template <class T> const NativeCodec<T> *find_native_codec(std::uint32_t code) {
  auto &r = Registry<T>::get();
  std::lock_guard lock(r.mutex);
  for (const auto &c : r.codecs)
    if (c.code == code)
      return &c;
  return nullptr;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template void register_native_codec<T>(NativeCodec<T>);                                \
  template const NativeCodec<T> *find_native_codec<T>(const LinearOperator<T> &);        \
  template const NativeCodec<T> *find_native_codec<T>(std::uint32_t);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
