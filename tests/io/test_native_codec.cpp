// The codec registry of the native format: an operator type defined here
// registers its codec and is saved and loaded as itself, inside a block
// operator; an unregistered type is saved as CSR; clashes and damaged nodes
// are reported.

#include <catch2/catch.hpp>

#include <tacit/core/operator_base.hpp>
#include <tacit/io/io.hpp>
#include <tacit/io/native_codec.hpp>
#include <tacit/operators/structured.hpp>

#include <cstring>
#include <mutex>

#include "io_test_util.hpp"

using namespace tacit;
using namespace tacit_test;

namespace {

/// y_i = scale * x_{i-1} (y_0 = 0): a shift, with nothing but its product.
template <class T> class Shift final : public OperatorBase<Shift<T>, T> {
public:
  static constexpr std::string_view kind_name = "test_shift";
  Shift(index_t n, T scale) : OperatorBase<Shift<T>, T>(n, n), scale_(scale) {}
  T scale() const noexcept { return scale_; }

private:
  friend OperatorBase<Shift<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution) const {
    const T s = is_absolute(mode) ? std::abs(scale_) : scale_;
    for (index_t i = 0; i < y.rows; ++i)
      for (index_t c = 0; c < y.cols; ++c) {
        const index_t j = is_transposed(mode) ? i + 1 : i - 1;
        const T v = j >= 0 && j < x.rows ? s * x(j, c) : T(0);
        y(i, c) = alpha * v + (beta == T(0) ? T(0) : beta * y(i, c));
      }
  }
  T scale_;
};

/// The same operator under another kind, never registered.
template <class T> class Unregistered final : public OperatorBase<Unregistered<T>, T> {
public:
  static constexpr std::string_view kind_name = "test_unregistered";
  explicit Unregistered(index_t n)
      : OperatorBase<Unregistered<T>, T>(n, n), shift_(n, 2) {}

private:
  friend OperatorBase<Unregistered<T>, T>;
  void product(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
               Execution exec) const {
    shift_.apply(mode, alpha, x, beta, y, exec);
  }
  Shift<T> shift_;
};

constexpr std::uint32_t shift_code = 4242;

template <class T> void register_shift() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_native_codec<Shift<T>>(
        shift_code,
        [](const Shift<T> &op, NativeEncoder<T> &out) { out.put_value(op.scale()); },
        [](NativeDecoder<T> &in) -> OperatorPtr<T> {
          const T scale = in.value("shift scale");
          if (scale == T(0))
            throw InvalidArgument("a shift by 0 is not stored");
          return std::make_shared<Shift<T>>(in.rows(), scale);
        },
        "test shift");
  });
}

template <class T> Model<T> shift_model(T scale, OperatorPtr<T> diagonal) {
  const index_t m = 4;
  std::vector<BlockEntry<T>> e = {{1, 0, std::make_shared<Shift<T>>(m, scale)},
                                  {2, 1, std::make_shared<Shift<T>>(m, scale / 2)}};
  if (diagonal)
    e.push_back({2, 2, diagonal});
  auto A = std::make_shared<BlockOperator<T>>(std::vector<index_t>{m, m, m},
                                              std::vector<index_t>{m, m, m}, e);
  auto B = std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::identity(3 * m, T(0.5)));
  auto C = std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::identity(3 * m));
  return Model<T>(A, B, C);
}

} // namespace

TEMPLATE_TEST_CASE("A registered operator type is stored in its own form and loaded "
                   "back as itself",
                   "[io][codec]", float, double) {
  using T = TestType;
  register_shift<T>();
  const auto *codec = find_native_codec<T>(shift_code);
  REQUIRE(codec);
  CHECK(codec->kind == "test_shift");
  CHECK(find_native_codec<T>(Shift<T>(3, T(1))));
  CHECK(!find_native_codec<T>(Unregistered<T>(3)));
  CHECK(!find_native_codec<T>(CsrMatrix<T>::identity(3)));

  ScratchDir dir;
  const auto model =
      shift_model<T>(T(1.5), std::make_shared<Unregistered<T>>(4)); // one unregistered
  save_model_native(model, dir / "m.tacit");
  const auto back = load_model_native<T>(dir / "m.tacit");
  const auto *blocks = capability<BlockStructured<T>>(back.A());
  REQUIRE(blocks);
  const auto entries = blocks->block_structure().entries();
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].op->kind() == "test_shift");
  CHECK(entries[1].op->kind() == "test_shift");
  CHECK(entries[2].op->kind() == "csr"); // no codec: stored as its CSR form
  CHECK(back.A().to_csr().to_dense() == model.A().to_csr().to_dense());
  // Read in the other precision: still the registered type when registered there.
  register_shift<float>();
  register_shift<double>();
  CHECK(load_model_native<double>(dir / "m.tacit").A().to_csr().nnz() ==
        model.A().to_csr().nnz());

  // A decoder's InvalidArgument is a FileError naming the node's codec.
  save_model_native(shift_model<T>(T(0), nullptr), dir / "zero.tacit");
  CHECK_THROWS_WITH(load_model_native<T>(dir / "zero.tacit"),
                    Catch::Contains("zero.tacit") &&
                        Catch::Contains("invalid test shift") &&
                        Catch::Contains("a shift by 0"));
}

TEST_CASE("Codec registration refuses clashes and incomplete codecs", "[io][codec]") {
  register_shift<double>();
  NativeCodec<double> c;
  c.kind = "test_other";
  c.code = shift_code; // taken
  c.type = &typeid(Shift<double>);
  c.encode = [](const LinearOperator<double> &, NativeEncoder<double> &) {};
  c.decode = [](NativeDecoder<double> &) -> OperatorPtr<double> { return nullptr; };
  CHECK_THROWS_WITH(register_native_codec<double>(c), Catch::Contains("clashes"));
  c.code = shift_code + 1;
  c.kind = "conv2d"; // tacit's
  CHECK_THROWS_WITH(register_native_codec<double>(c), Catch::Contains("clashes"));
  c.kind = "test_other";
  c.code = 1; // the CSR node
  CHECK_THROWS_WITH(register_native_codec<double>(c), Catch::Contains("reserved"));
  c.code = shift_code + 1;
  c.decode = nullptr;
  CHECK_THROWS_AS(register_native_codec<double>(c), InvalidArgument);
  // tacit's own types are registered.
  CHECK(find_native_codec<double>(2)->kind == "conv2d");
  CHECK(find_native_codec<double>(8)->kind == "block");
}
