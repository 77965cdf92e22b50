#include <catch2/catch.hpp>

#include <tacit/io/io.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>

#include <cstring>
#include <filesystem>

#include "io_test_util.hpp"
#include "network_test_util.hpp"

using namespace tacit;
using namespace tacit_test;
using namespace tacit_test::network;

namespace {

/// An operator that is not a CsrMatrix (it wraps one), to check that such
/// operators are materialised when saved.
template <class T> class WrappedOperator final : public LinearOperator<T> {
public:
  explicit WrappedOperator(CsrMatrix<T> m)
      : LinearOperator<T>(m.rows(), m.cols()), m_(std::move(m)) {}

private:
  void apply_impl(Mode mode, T alpha, ConstMatrixView<T> x, T beta, MatrixView<T> y,
                  Execution exec) const override {
    m_.apply(mode, alpha, x, beta, y, exec);
  }
  void row_abs_sums_impl(std::span<T> out) const override {
    const auto s = m_.row_abs_sums();
    std::copy(s.begin(), s.end(), out.begin());
  }
  void col_abs_sums_impl(std::span<T> out) const override {
    const auto s = m_.col_abs_sums();
    std::copy(s.begin(), s.end(), out.begin());
  }
  std::int64_t nnz_impl() const override { return m_.nnz(); }
  std::size_t bytes_impl() const override { return m_.bytes(); }
  std::string kind_impl() const override { return "wrapped"; }
  CsrMatrix<T> to_csr_impl() const override { return m_; }
  std::optional<Entry> find_non_finite_impl() const override {
    return m_.find_non_finite();
  }
  CsrMatrix<T> m_;
};

template <class F> FileError file_error(F &&f) {
  try {
    f();
  } catch (const FileError &e) {
    return e;
  } catch (const std::exception &e) {
    FAIL("expected FileError, got: " << e.what());
  }
  FAIL("expected FileError");
  throw;
}

void check_words(const FileError &e, std::initializer_list<const char *> words) {
  INFO("message: " << e.what());
  for (const char *w : words)
    CHECK_THAT(e.what(), Catch::Contains(w));
}

FileError parse_error(const std::string &bytes) {
  return file_error([&] { (void)parse_model_native<double>(bytes, "m.tacit"); });
}

template <class U> void put(std::string &s, std::size_t at, U v) {
  std::memcpy(s.data() + at, &v, sizeof v);
}
template <class U> U get(const std::string &s, std::size_t at) {
  U v;
  std::memcpy(&v, s.data() + at, sizeof v);
  return v;
}
/// CRC-32 (IEEE, as zlib), bit by bit: an independent reference.
std::uint32_t crc(const std::string &s, std::size_t from, std::size_t to) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t k = from; k < to; ++k) {
    c ^= static_cast<unsigned char>(s[k]);
    for (int b = 0; b < 8; ++b)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

/// Byte offsets of the sections of a native file: (start, role, payload length).
struct SectionInfo {
  std::size_t start;
  std::uint32_t role;
  std::uint64_t payload;
};
std::vector<SectionInfo> sections_of(const std::string &bytes) {
  std::vector<SectionInfo> r;
  std::size_t at = 56;
  const auto count = get<std::uint32_t>(bytes, 48);
  for (std::uint32_t k = 0; k < count; ++k) {
    SectionInfo s{at, get<std::uint32_t>(bytes, at), get<std::uint64_t>(bytes, at + 8)};
    r.push_back(s);
    at += 16 + s.payload + 4;
  }
  return r;
}
/// Recomputes the CRC of a section after editing it.
void reseal(std::string &bytes, const SectionInfo &s) {
  put(bytes, s.start + 16 + s.payload, crc(bytes, s.start, s.start + 16 + s.payload));
}

} // namespace

TEMPLATE_TEST_CASE("Native model files round-trip bit-exactly", "[io]", float, double) {
  ScratchDir dir;
  int variant = 0;
  for (bool with_d : {false, true})
    for (bool with_biases : {false, true})
      for (bool with_blocks : {false, true}) {
        INFO("D " << with_d << ", biases " << with_biases << ", blocks " << with_blocks);
        const auto model = random_model<TestType>(14, 5, 3, 300 + variant++, with_d,
                                                  with_biases, with_blocks);
        save_model_native(model, dir / "m.tacit");
        CHECK(is_native_model_file(dir / "m.tacit"));
        CHECK(same_model(load_model_native<TestType>(dir / "m.tacit"), model));
        CHECK(same_model(load_model<TestType>(dir / "m.tacit"), model)); // by magic
        // The other precision converts, like convert_model.
        using Other = std::conditional_t<std::is_same_v<TestType, float>, double, float>;
        const auto safe = random_model<TestType>(14, 5, 3, 400 + variant, with_d,
                                                 with_biases, with_blocks, true);
        save_model_native(safe, dir / "m.tacit");
        CHECK(same_model(load_model<Other>(dir / "m.tacit"), convert_model<Other>(safe)));
      }
  CHECK(dir.list() == std::vector<std::string>{"m.tacit"});
  // Wide column indices are kept.
  auto A = std::make_shared<CsrMatrix<TestType>>(
      random_matrix<TestType>(5, 5, 0.5, 1, false, IndexWidth::wide64));
  auto B = std::make_shared<CsrMatrix<TestType>>(random_matrix<TestType>(5, 2, 0.5, 2));
  auto C = std::make_shared<CsrMatrix<TestType>>(random_matrix<TestType>(1, 5, 0.5, 3));
  const Model<TestType> wide(A, B, C);
  save_model_native(wide, dir / "w.tacit");
  const auto back = load_model_native<TestType>(dir / "w.tacit");
  CHECK(same_model(back, wide));
  CHECK(back.A().to_csr().wide_indices());
}

TEST_CASE("Operators that are not CSR are materialised when saved", "[io]") {
  ScratchDir dir;
  const auto a = random_matrix<double>(6, 6, 0.4, 1);
  const auto b = random_matrix<double>(6, 2, 0.6, 2);
  const auto c = random_matrix<double>(3, 6, 0.6, 3);
  const Model<double> model(
      std::make_shared<WrappedOperator<double>>(a),
      std::make_shared<WrappedOperator<double>>(b),
      std::make_shared<WrappedOperator<double>>(c),
      std::make_shared<WrappedOperator<double>>(CsrMatrix<double>(3, 2)));
  save_model_native(model, dir / "m.tacit");
  const auto native = load_model<double>(dir / "m.tacit");
  CHECK(native.A().kind() == "csr");
  CHECK(same_model(native, model));
  save_model_directory(model, dir / "m");
  CHECK(same_model(load_model<double>(dir / "m"), model));
}

TEST_CASE("Native reader rejects damaged files, naming what is wrong", "[io]") {
  ScratchDir dir;
  const auto model = random_model<double>(10, 3, 2, 77, true, true, true);
  save_model_native(model, dir / "m.tacit");
  const std::string good = read_text(dir / "m.tacit");
  REQUIRE(same_model(parse_model_native<double>(good, "m.tacit"), model));
  const auto sections = sections_of(good);
  REQUIRE(sections.size() == 7);
  CHECK(sections[1].role == 2); // A

  SECTION("wrong magic, version, header") {
    check_words(parse_error("%%MatrixMarket matrix coordinate real general\n"),
                {"m.tacit", "not a tacit native model file", "TACITMDL"});
    check_words(parse_error("TACIT"), {"not a tacit native model file"});
    check_words(parse_error(""), {"not a tacit native model file"});
    auto bad = good;
    put<std::uint32_t>(bad, 8, 3);
    check_words(parse_error(bad), {"unsupported native format version 3", "version 1"});
    bad = good;
    bad[30] ^= 1; // inside n
    check_words(parse_error(bad), {"CRC mismatch in the file header"});
    bad = good;
    put<std::uint32_t>(bad, 16, 9);
    put(bad, 52, crc(bad, 0, 52));
    check_words(parse_error(bad), {"unknown value type 9"});
    bad = good;
    put<std::uint32_t>(bad, 12, 0x04030201u);
    put(bad, 52, crc(bad, 0, 52));
    check_words(parse_error(bad), {"byte-order mark", "0x04030201", "little-endian"});
    bad = good;
    put<std::uint64_t>(bad, 24, 11); // n disagrees with the matrices
    put(bad, 52, crc(bad, 0, 52));
    check_words(parse_error(bad), {"section A is 10 x 10", "n = 11"});
  }
  SECTION("corruption is reported as a CRC mismatch naming the section") {
    for (std::size_t k = 0; k < sections.size(); ++k) {
      auto bad = good;
      const auto &s = sections[k];
      bad[s.start + 16 + s.payload / 2] ^= 0x10;
      const char *names[] = {"blocks", "A", "B", "C", "D", "bx", "by"};
      const auto e = parse_error(bad);
      check_words(e, {"CRC mismatch", (std::string("section ") + names[k] + " ").c_str(),
                      ("byte offset " + std::to_string(s.start)).c_str(), "corrupt"});
    }
  }
  SECTION("truncation names the byte offset and what was expected") {
    for (std::size_t cut : {std::size_t{20}, std::size_t{56}, std::size_t{60},
                            sections[1].start + 40, good.size() - 1}) {
      INFO("cut at " << cut);
      const auto e = parse_error(good.substr(0, cut));
      check_words(e, {"truncated at byte offset", "expected"});
    }
    check_words(parse_error(good.substr(0, 20)), {"offset 8", "file header"});
    check_words(parse_error(good.substr(0, sections[1].start + 40)),
                {"section A (2 of 7", "payload"});
    check_words(parse_error(good.substr(0, good.size() - 2)), {"section by (7 of 7"});
    check_words(parse_error(good + "xyz"), {"3 unexpected bytes", "after the last of 7"});
  }
  SECTION("absurd sizes never allocate") {
    auto bad = good;
    const auto &a = sections[1];
    // Payload length far beyond the file.
    put<std::uint64_t>(bad, a.start + 8, std::uint64_t{1} << 60);
    check_words(parse_error(bad),
                {"truncated", "1152921504606846976-byte payload", "section A"});
    // A CSR header claiming 2^40 rows inside a payload of normal size, with a
    // valid CRC: inconsistent with its length.
    bad = good;
    put<std::uint64_t>(bad, a.start + 16, std::uint64_t{1} << 40);
    reseal(bad, a);
    check_words(parse_error(bad),
                {"section A", "inconsistent CSR header", "rows 1099511627776"});
    // Row pointers that decrease, with a valid CRC.
    bad = good;
    put<std::int64_t>(bad, a.start + 16 + 32 + 8 * 3, -5);
    reseal(bad, a);
    check_words(parse_error(bad), {"section A", "invalid CSR matrix"});
    // Unknown section kind (reserved for structured operators).
    bad = good;
    put<std::uint32_t>(bad, a.start + 4, 9);
    reseal(bad, a);
    check_words(parse_error(bad), {"section A", "kind 9", "not supported"});
    // Block table with an absurd count.
    bad = good;
    const auto &b = sections[0];
    put<std::uint64_t>(bad, b.start + 16, std::uint64_t{1} << 62);
    reseal(bad, b);
    check_words(parse_error(bad), {"section blocks", "block count"});
    // A NaN bias.
    bad = good;
    const auto &bx = sections[5];
    put<double>(bad, bx.start + 16 + 8, std::numeric_limits<double>::quiet_NaN());
    reseal(bad, bx);
    check_words(parse_error(bad), {"section bx", "value 1", "not finite"});
  }
  SECTION("missing and repeated sections") {
    auto bad = good;
    put<std::uint32_t>(bad, 20, 0); // header says no D, file holds D
    put(bad, 52, crc(bad, 0, 52));
    check_words(parse_error(bad), {"no D", "holds a D section"});
    // Drop the by section (and say so in the header).
    bad = good.substr(0, sections[6].start);
    put<std::uint32_t>(bad, 48, 6);
    put(bad, 52, crc(bad, 0, 52));
    check_words(parse_error(bad), {"missing section by"});
    // bx twice.
    bad = good.substr(0, sections[6].start) +
          good.substr(sections[5].start, sections[6].start - sections[5].start);
    put<std::uint32_t>(bad, 48, 7);
    put(bad, 52, crc(bad, 0, 52));
    check_words(parse_error(bad), {"section bx", "twice"});
  }
  SECTION("values out of range for float") {
    Model<double> big(
        std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(2, 1e300)),
        std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(2)),
        std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::identity(2)));
    save_model_native(big, dir / "big.tacit");
    check_words(file_error([&] { (void)load_model<float>(dir / "big.tacit"); }),
                {"big.tacit", "section A", "entry (1, 1)", "not finite in float"});
  }
  SECTION("files") {
    CHECK(!is_native_model_file(dir / "missing"));
    CHECK(!is_native_model_file(dir.path()));
    write_text(dir / "short", "TACIT");
    CHECK(!is_native_model_file(dir / "short"));
    check_words(file_error([&] { (void)load_model_native<double>(dir / "missing"); }),
                {"missing", "cannot open"});
    write_text(dir / "trunc.tacit", good.substr(0, 1000));
    check_words(file_error([&] { (void)load_model<double>(dir / "trunc.tacit"); }),
                {"trunc.tacit", "truncated"});
    // Atomic: a failed save leaves no temporary file and the old file intact.
    CHECK_THROWS_AS(save_model_native(model, dir / "no" / "m.tacit"), FileError);
    fs::create_directory(dir / "dir.tacit");
    CHECK_THROWS_AS(save_model_native(model, dir / "dir.tacit"), FileError);
    CHECK(fs::is_empty(dir / "dir.tacit"));
    for (const auto &name : dir.list())
      CHECK(name.find(".tmp-") == std::string::npos);
  }
}

TEST_CASE("Native reader survives random mutations", "[io]") {
  ScratchDir dir;
  std::vector<std::string> seeds;
  save_model_native(random_model<double>(6, 2, 2, 1, true, true, true), dir / "a");
  seeds.push_back(read_text(dir / "a"));
  save_model_native(random_model<float>(5, 3, 1, 2, false, false, false), dir / "b");
  seeds.push_back(read_text(dir / "b"));
  std::mt19937_64 rng(77);
  int rejected = 0;
  for (const auto &seed : seeds)
    for (int k = 0; k < 2000; ++k) {
      auto bytes = mutate(seed, rng);
      // Reseal half of the mutations so that the content checks behind the
      // CRCs get exercised too.
      if (k % 2 && bytes.size() >= 56) {
        put(bytes, 52, crc(bytes, 0, 52));
        std::size_t at = 56;
        while (at + 16 <= bytes.size()) {
          const auto len = get<std::uint64_t>(bytes, at + 8);
          if (len > bytes.size() - at - 16 || bytes.size() - at - 16 - len < 4)
            break;
          put(bytes, at + 16 + len, crc(bytes, at, at + 16 + len));
          at += 16 + len + 4;
        }
      }
      try {
        (void)parse_model_native<double>(bytes, "fuzz");
        (void)parse_model_native<float>(bytes, "fuzz");
      } catch (const FileError &) {
        ++rejected;
      } catch (const std::exception &e) {
        FAIL("unexpected exception: " << e.what());
      }
    }
  CHECK(rejected > 2000);
}

TEST_CASE("Native format: structured models round trip bitwise, damage is rejected",
          "[network][io]") {
  ScratchDir dir;
  const MiniResNet net(true, 3);
  const Model<float> model = net.build<float>();
  const auto path = dir / "mini.tacit";
  save_model_native(model, path);
  const Model<float> back = load_model_native<float>(path);
  CHECK(back.A().kind() == "block");
  CHECK(back.B().kind() == "block");
  const auto *A = dynamic_cast<const BlockOperator<float> *>(&model.A());
  const auto *A2 = dynamic_cast<const BlockOperator<float> *>(&back.A());
  REQUIRE(A2);
  CHECK(A2->entries().size() == A->entries().size());
  CHECK(back.blocks() == model.blocks());
  const Batch<float> U =
      to_batch<float>(random_inputs(3, net.input.size(), 3), net.input.size());
  Batch<float> X1, Y1, X2, Y2;
  EquilibriumSolver<float>(model).predict(U, X1, Y1);
  EquilibriumSolver<float>(back).predict(U, X2, Y2);
  CHECK(std::memcmp(X1.storage().data(), X2.storage().data(), X1.bytes()) == 0);
  CHECK(std::memcmp(Y1.storage().data(), Y2.storage().data(), Y1.bytes()) == 0);
  // The CSR matrices are the same bits.
  const auto a1 = model.A().to_csr(), a2 = back.A().to_csr();
  REQUIRE(a1.nnz() == a2.nnz());
  CHECK(std::memcmp(a1.values().data(), a2.values().data(), a1.values().size_bytes()) ==
        0);
  // Read as double: converted, still structured.
  CHECK(load_model_native<double>(path).A().kind() == "block");

  const std::string good = read_text(path);
  CHECK(good.size() < 200000);
  std::uint32_t version = 0;
  std::memcpy(&version, good.data() + 8, 4);
  CHECK(version == 2);
  for (const std::size_t cut : {good.size() - 1, good.size() / 2, std::size_t(100)}) {
    CAPTURE(cut);
    CHECK_THROWS_WITH(parse_model_native<float>(good.substr(0, cut), "cut.tacit"),
                      Catch::Contains("cut.tacit") && Catch::Contains("truncated"));
  }
  auto bad = good;
  bad[good.size() / 2] ^= 0x20;
  CHECK_THROWS_WITH(parse_model_native<float>(bad, "bad.tacit"),
                    Catch::Contains("CRC mismatch") && Catch::Contains("corrupt"));
}

TEST_CASE("Native format: ResNet20 file is about the size of its weights",
          "[network][io]") {
  ScratchDir dir;
  const Model<float> model = resnet20<float>();
  const auto path = dir / "resnet20.tacit";
  save_model_native(model, path);
  const auto size = std::filesystem::file_size(path);
  CHECK(size < 300000 * sizeof(float) + 200000); // weights + the dense classifier
  const Model<float> back = load_model_native<float>(path);
  CHECK(back.states() == 188416);
  const Batch<float> U = resnet20_inputs<float>(1);
  Batch<float> X1, Y1, X2, Y2;
  EquilibriumSolver<float>(model).predict(U, X1, Y1);
  EquilibriumSolver<float>(back).predict(U, X2, Y2);
  CHECK(std::memcmp(Y1.storage().data(), Y2.storage().data(), Y1.bytes()) == 0);
}
