#pragma once
/// \file native_codec.hpp
/// How operator types are stored in the native model file. An operator tree
/// node is a u32 code, a u32 0, u64 rows, u64 cols, then the fields its
/// codec writes; the codec of an operator is found by its kind() when
/// writing and by its code when reading. An operator whose kind has no codec
/// is stored as CSR (its to_csr()), so every operator can be saved; a type
/// that registers a codec is saved in its own form and loaded back as
/// itself.
///
/// tacit's own types are registered on first use (codes 1 to 8); codes below
/// 1024 are reserved for tacit. A program registers its own types once,
/// before it saves or loads models holding them:
///
///   register_native_codec<MyOp<double>>(
///       5000,
///       [](const MyOp<double> &op, NativeEncoder<double> &out) {
///         out.put_values(op.weights());
///       },
///       [](NativeDecoder<double> &in) -> OperatorPtr<double> {
///         return std::make_shared<MyOp<double>>(in.rows(), in.values(-1, "weights"));
///       });
///
/// Thread safety: registration may run concurrently with other
/// registrations and with saving and loading (a lock guards the registry).

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/core/operator.hpp>

namespace tacit::inline v1 {

/// Writes the fields of one node (little-endian, values in T).
template <class T> class TACIT_EXPORT NativeEncoder {
public:
  /// A size or count (u64).
  virtual void put_count(index_t v) = 0;
  /// One value.
  virtual void put_value(T v) = 0;
  /// A u64 count, then the values.
  virtual void put_values(std::span<const T> v) = 0;
  /// A nested node: any operator (its own codec, or CSR).
  virtual void put_operator(const LinearOperator<T> &op) = 0;

protected:
  ~NativeEncoder() = default;
};

/// Reads the fields of one node. Every read is checked against the bytes
/// left in the section; a problem throws FileError naming the file, the
/// section and the byte offset.
template <class T> class TACIT_EXPORT NativeDecoder {
public:
  /// The node's size, as stored in its header.
  virtual index_t rows() const noexcept = 0;
  virtual index_t cols() const noexcept = 0;
  /// A size or count (u64), at most half the range of index_t.
  virtual index_t count(const char *what) = 0;
  /// One value, finite in T.
  virtual T value(const char *what) = 0;
  /// A u64 count, then that many finite values; expected >= 0 requires the
  /// count to be `expected`.
  virtual std::vector<T> values(index_t expected, const char *what) = 0;
  /// A nested node.
  virtual OperatorPtr<T> nested() = 0;
  /// Bytes left in the node's section, and bytes per stored value (4 or 8):
  /// a size read from the file is checked against them before anything is
  /// allocated from it.
  virtual std::uint64_t bytes_left() const noexcept = 0;
  virtual std::size_t value_bytes() const noexcept = 0;
  /// \throws FileError naming the position.
  [[noreturn]] virtual void fail(const std::string &what) = 0;

protected:
  ~NativeDecoder() = default;
};

/// The codec of one operator kind.
template <class T> struct TACIT_EXPORT NativeCodec {
  /// The kind() of the operators it stores.
  std::string kind;
  /// The node code in the file (>= 1024 for types outside tacit).
  std::uint32_t code = 0;
  /// Name in error messages ("convolution").
  std::string label;
  /// The type it writes (operators of the same kind but another type are
  /// stored as CSR).
  const std::type_info *type = nullptr;
  /// Writes op's fields (op has the codec's type).
  std::function<void(const LinearOperator<T> &op, NativeEncoder<T> &out)> encode;
  /// Builds the operator from its fields; an InvalidArgument it throws is
  /// reported as a FileError of the node.
  std::function<OperatorPtr<T>(NativeDecoder<T> &in)> decode;
};

/// Adds a codec.
/// \throws InvalidArgument when its kind or code is already registered, or
/// it lacks a type, an encoder or a decoder.
template <class T> TACIT_EXPORT void register_native_codec(NativeCodec<T> codec);

/// The codec registered for op's kind and type, or null.
template <class T>
TACIT_EXPORT const NativeCodec<T> *find_native_codec(const LinearOperator<T> &op);

/// The codec registered for a node code, or null.
template <class T>
TACIT_EXPORT const NativeCodec<T> *find_native_codec(std::uint32_t code);

/// The codec of an operator type Op (kind Op::kind_name).
template <class Op, class T = typename Op::value_type>
NativeCodec<T> make_native_codec(
    std::uint32_t code,
    std::type_identity_t<std::function<void(const Op &, NativeEncoder<T> &)>> encode,
    std::type_identity_t<std::function<OperatorPtr<T>(NativeDecoder<T> &)>> decode,
    std::string label = std::string(Op::kind_name)) {
  NativeCodec<T> c;
  c.kind = std::string(Op::kind_name);
  c.code = code;
  c.label = std::move(label);
  c.type = &typeid(Op);
  c.encode = [encode = std::move(encode)](const LinearOperator<T> &op,
                                          NativeEncoder<T> &out) {
    encode(static_cast<const Op &>(op), out); // the registry checked typeid(op)
  };
  c.decode = std::move(decode);
  return c;
}

/// register_native_codec for an operator type Op (kind Op::kind_name).
template <class Op, class T = typename Op::value_type>
void register_native_codec(
    std::uint32_t code,
    std::type_identity_t<std::function<void(const Op &, NativeEncoder<T> &)>> encode,
    std::type_identity_t<std::function<OperatorPtr<T>(NativeDecoder<T> &)>> decode,
    std::string label = std::string(Op::kind_name)) {
  register_native_codec<T>(make_native_codec<Op>(code, std::move(encode),
                                                 std::move(decode), std::move(label)));
}

} // namespace tacit::inline v1
