#include <catch2/catch.hpp>

#include <tacit/io/io.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include "io/detail/io_common.hpp"
#include "io_test_util.hpp"

using namespace tacit;
using namespace tacit_test;

namespace {

const std::string mm_header = "%%MatrixMarket matrix coordinate real general\n";

/// Writes a minimal valid model directory: n = 3, p = 2, q = 1.
void write_small_model(const fs::path &dir) {
  fs::create_directories(dir);
  write_text(dir / "A.mtx", mm_header + "3 3 2\n2 1 0.5\n3 2 -0.25\n");
  write_text(dir / "B.mtx", mm_header + "3 2 2\n1 1 1\n2 2 2\n");
  write_text(dir / "C.mtx", mm_header + "1 3 1\n1 3 1\n");
}

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

/// Temporary names left by an interrupted or failed write.
bool has_temporaries(const fs::path &dir) {
  for (const auto &e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (name.find(".tmp-") != std::string::npos ||
        name.find(".old-") != std::string::npos)
      return true;
  }
  return false;
}

} // namespace

TEMPLATE_TEST_CASE("Model directories round-trip bit-exactly", "[io]", float, double) {
  ScratchDir dir;
  int variant = 0;
  for (bool with_d : {false, true})
    for (bool with_biases : {false, true})
      for (bool with_blocks : {false, true}) {
        INFO("D " << with_d << ", biases " << with_biases << ", blocks " << with_blocks);
        const auto model = random_model<TestType>(13, 4, 3, 100 + variant++, with_d,
                                                  with_biases, with_blocks);
        save_model_directory(model, dir / "model");
        const auto back = load_model<TestType>(dir / "model");
        CHECK(same_model(model, back));
        CHECK((back.D() != nullptr) == with_d);
        auto files = dir.list("model");
        std::vector<std::string> expected = {"A.mtx",  "B.mtx",  "C.mtx",
                                             "bx.txt", "by.txt", "model.json"};
        if (with_d)
          expected.insert(expected.begin() + 3, "D.mtx");
        CHECK(files == expected);
        CHECK(dir.list() == std::vector<std::string>{"model"}); // replaced in place
      }
  // Saved with a trailing slash. Text holds decimals: a float model read as
  // double gives values that round back to the same floats.
  const auto model = random_model<TestType>(9, 2, 2, 7, true, true, true);
  save_model_directory(model, (dir / "other").string() + "/");
  CHECK(same_model(load_model<TestType>(dir / "other"), model));
  if constexpr (std::is_same_v<TestType, float>) {
    const auto wide = load_model<double>(dir / "other");
    CHECK(same_model(convert_model<float>(wide), model));
  }
}

TEST_CASE("Model directory defaults and model.json", "[io]") {
  ScratchDir dir;
  write_small_model(dir / "m");
  write_text(dir / "m" / "README.txt", "other files are ignored\n");
  fs::create_directory(dir / "m" / "checkpoints");
  SECTION("defaults: ReLU, zero biases, D = 0") {
    const auto m = load_model<double>(dir / "m");
    CHECK((m.states() == 3 && m.inputs() == 2 && m.outputs() == 1));
    CHECK(m.D() == nullptr);
    CHECK(m.bias_x()[0] == 0.0);
    CHECK(m.bias_y()[0] == 0.0);
    REQUIRE(m.blocks().size() == 1);
    CHECK(m.blocks()[0].activation.kind == ActivationKind::relu);
    CHECK(m.blocks()[0].size == 3);
  }
  SECTION("biases, D and blocks with a top-level default activation") {
    write_text(dir / "m" / "bx.txt", "# state bias\n0.5\n\n-1\n2e-3\n");
    write_text(dir / "m" / "by.txt", "7\n");
    write_text(dir / "m" / "D.mtx", mm_header + "1 2 1\n1 2 0.5\n");
    write_text(dir / "m" / "model.json",
               R"({"format": "tacit-model", "version": 1, "activation": "tanh",
                   "blocks": [{"name": "l1", "size": 1},
                              {"name": "l2", "size": 2, "activation": "leaky_relu",
                               "slope": 0.1}],
                   "comment": "unknown keys are ignored"})");
    const auto m = load_model<float>(dir / "m");
    CHECK(std::vector<float>(m.bias_x().begin(), m.bias_x().end()) ==
          std::vector<float>{0.5f, -1.0f, 2e-3f});
    CHECK(m.bias_y()[0] == 7.0f);
    REQUIRE(m.D() != nullptr);
    CHECK(m.D()->nnz() == 1);
    REQUIRE(m.blocks().size() == 2);
    CHECK(m.blocks()[0] ==
          StateBlock{"l1", 0, 1, Activation{ActivationKind::tanh, 0.01}});
    CHECK(m.blocks()[1] ==
          StateBlock{"l2", 1, 2, Activation{ActivationKind::leaky_relu, 0.1}});
  }
  SECTION("top-level activation without blocks") {
    write_text(dir / "m" / "model.json", R"({"activation": "identity"})");
    const auto m = load_model<double>(dir / "m");
    REQUIRE(m.blocks().size() == 1);
    CHECK(m.blocks()[0].activation.kind == ActivationKind::identity);
  }
  SECTION("bad model.json") {
    const auto json = dir / "m" / "model.json";
    auto load = [&] { (void)load_model<double>(dir / "m"); };
    write_text(json, "{\"blocks\": [\n  {\"size\": 3,}\n]}");
    auto e = file_error(load);
    CHECK(e.line() == 2);
    check_words(e, {"model.json", "invalid JSON"});
    write_text(json, R"({"blocks": [{"name": "a", "size": 2}]})");
    check_words(file_error(load), {"model.json", "sum to 2", "n = 3"});
    write_text(json,
               R"({"blocks": [{"name": "a", "size": 2}, {"name": "b", "size": 5}]})");
    check_words(file_error(load), {"blocks[1]", "'b'", "ends past"});
    write_text(json, R"({"blocks": [{"name": "a", "size": 3, "activation": "swish"}]})");
    check_words(file_error(load), {"blocks[0]", "unknown activation 'swish'"});
    write_text(json, R"({"blocks": [{"name": "a", "size": -3}]})");
    check_words(file_error(load),
                {"blocks[0]", "\"size\"", "non-negative integer", "-3"});
    write_text(json, R"({"blocks": [{"name": "a", "size": "3"}]})");
    check_words(file_error(load), {"\"size\"", "\"3\""});
    write_text(json, R"({"version": 2})");
    check_words(file_error(load), {"unsupported version 2"});
    write_text(json, R"({"format": "onnx"})");
    check_words(file_error(load), {"\"format\"", "tacit-model"});
    write_text(json, R"({"activation": 3})");
    check_words(file_error(load), {"\"activation\"", "expected a string"});
    write_text(json, R"({"blocks": {"a": 1}})");
    check_words(file_error(load), {"\"blocks\" must be an array"});
    write_text(json, "[1, 2]");
    check_words(file_error(load), {"expected a JSON object"});
  }
}

TEST_CASE("Model directory errors name the files and sizes", "[io]") {
  ScratchDir dir;
  const auto m = dir / "m";
  write_small_model(m);
  auto load = [&] { (void)load_model<double>(m); };
  SECTION("dimension mismatches") {
    write_text(m / "B.mtx", mm_header + "4 2 0\n");
    check_words(file_error(load), {"B.mtx", "4 x 2", "A.mtx is 3 x 3", "n = 3 rows"});
    write_small_model(m);
    write_text(m / "C.mtx", mm_header + "1 4 0\n");
    check_words(file_error(load), {"C.mtx", "1 x 4", "A.mtx is 3 x 3", "n = 3 columns"});
    write_small_model(m);
    write_text(m / "D.mtx", mm_header + "2 2 0\n");
    check_words(file_error(load),
                {"D.mtx", "2 x 2", "C.mtx has q = 1", "B.mtx has p = 2", "1 x 2"});
    write_small_model(m);
    write_text(m / "A.mtx", mm_header + "3 2 0\n");
    check_words(file_error(load), {"A.mtx", "3 x 2", "square"});
  }
  SECTION("biases") {
    write_text(m / "bx.txt", "1\n2\n");
    check_words(file_error(load),
                {"bx.txt", "has 2 values, expected 3", "A.mtx is 3 x 3"});
    write_text(m / "bx.txt", "1\n2\n3\n");
    write_text(m / "by.txt", "1\n2\n");
    check_words(file_error(load),
                {"by.txt", "has 2 values, expected 1", "C.mtx is 1 x 3"});
    write_text(m / "by.txt", "1 2\n");
    auto e = file_error(load);
    CHECK(e.line() == 1);
    check_words(e, {"by.txt:1:", "column 3", "more than 1"});
    write_text(m / "by.txt", "\n\nnan\n");
    e = file_error(load);
    CHECK(e.line() == 3);
    check_words(e, {"by.txt:3:", "column 1", "'nan'", "not finite"});
  }
  SECTION("a broken matrix file is reported with its own name and line") {
    write_text(m / "C.mtx", mm_header + "1 3 1\n1 4 1\n");
    auto e = file_error(load);
    CHECK(e.line() == 3);
    check_words(e, {"C.mtx:3:", "column 4", "outside 1..3"});
  }
  SECTION("what is not a model") {
    fs::remove(m / "C.mtx");
    check_words(file_error(load), {"has no C.mtx", "A.mtx, B.mtx and C.mtx"});
    check_words(file_error([&] { (void)load_model<double>(m / "A.mtx"); }),
                {"A.mtx", "is not a model", "a model is a directory", "TACITMDL",
                 "single Matrix Market file"});
    check_words(file_error([&] { (void)load_model<double>(dir / "nothing"); }),
                {"nothing", "no such file"});
  }
}

TEST_CASE("Saving a model directory replaces safely and leaves nothing on failure",
          "[io]") {
  ScratchDir dir;
  const auto model = random_model<double>(6, 2, 2, 5, true, true, true);
  const auto other = random_model<double>(4, 1, 1, 6, false, false, false);
  save_model_directory(model, dir / "m");
  // Replacing a model with a smaller one drops the stale D.mtx.
  save_model_directory(other, dir / "m");
  CHECK(same_model(load_model<double>(dir / "m"), other));
  CHECK(!fs::exists(dir / "m" / "D.mtx"));
  CHECK(dir.list() == std::vector<std::string>{"m"});

  // A directory holding anything else is not replaced.
  fs::create_directory(dir / "home");
  write_text(dir / "home" / "thesis.tex", "precious");
  check_words(file_error([&] { save_model_directory(model, dir / "home"); }),
              {"home", "refusing to replace", "'thesis.tex'", "not a model file"});
  CHECK(read_text(dir / "home" / "thesis.tex") == "precious");
  write_text(dir / "file", "x");
  check_words(file_error([&] { save_model_directory(model, dir / "file"); }),
              {"not a directory"});

  // The parent does not exist: nothing is created anywhere.
  CHECK_THROWS_AS(save_model_directory(model, dir / "no" / "such" / "m"), FileError);
  CHECK(!has_temporaries(dir.path()));
  CHECK(dir.list() == std::vector<std::string>{"file", "home", "m"});

  // The same replacement with three renames instead of an atomic exchange.
  detail::replace_directory_by_exchange = false;
  struct Restore {
    ~Restore() { detail::replace_directory_by_exchange = true; }
  } restore;
  save_model_directory(model, dir / "m");
  CHECK(same_model(load_model<double>(dir / "m"), model));
  CHECK(dir.list() == std::vector<std::string>{"file", "home", "m"});
  detail::replace_directory_by_exchange = true;

  // Read-only parent: the old model stays intact.
  if (::geteuid() != 0) {
    fs::create_directory(dir / "ro");
    save_model_directory(model, dir / "ro" / "m");
    fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    CHECK_THROWS_AS(save_model_directory(other, dir / "ro" / "m"), FileError);
    fs::permissions(dir / "ro", fs::perms::owner_all);
    CHECK(dir.list("ro") == std::vector<std::string>{"m"});
    CHECK(same_model(load_model<double>(dir / "ro" / "m"), model));
  }
}

TEMPLATE_TEST_CASE("Vector files round-trip bit-exactly", "[io]", float, double) {
  ScratchDir dir;
  const index_t rows = 7, cols = 45; // two slabs of width 32
  Batch<TestType> Y(rows, cols);
  std::mt19937_64 rng(9);
  for (index_t j = 0; j < cols; ++j)
    for (index_t i = 0; i < rows; ++i)
      Y(i, j) = awkward_value<TestType>(rng);
  write_vectors(dir / "y.txt", Y);
  const auto back = read_vectors<TestType>(dir / "y.txt", rows);
  REQUIRE(back.cols() == cols);
  REQUIRE(back.rows() == rows);
  for (index_t j = 0; j < cols; ++j)
    for (index_t i = 0; i < rows; ++i)
      CHECK(bits(back(i, j)) == bits(Y(i, j)));
  // One column per line.
  const auto text = read_text(dir / "y.txt");
  CHECK(std::count(text.begin(), text.end(), '\n') == cols);
  CHECK(dir.list() == std::vector<std::string>{"y.txt"});
}

TEST_CASE("Vector files: separators, comments and errors", "[io]") {
  ScratchDir dir;
  const auto path = dir / "u.txt";
  write_text(path, "# inputs\n1, 2,3\n\n  4\t5 ,6  \r\n# end\n-1e-3 +2 3.5");
  const auto U = read_vectors<double>(path, 3);
  REQUIRE(U.cols() == 3);
  CHECK((U(0, 0) == 1 && U(1, 0) == 2 && U(2, 0) == 3));
  CHECK((U(0, 1) == 4 && U(1, 1) == 5 && U(2, 1) == 6));
  CHECK((U(0, 2) == -1e-3 && U(1, 2) == 2 && U(2, 2) == 3.5));

  auto error_for = [&](const std::string &text) {
    write_text(path, text);
    return file_error([&] { (void)read_vectors<double>(path, 3); });
  };
  auto e = error_for("1 2 3\n1 2\n");
  CHECK(e.line() == 2);
  check_words(e, {"u.txt:2:", "2 numbers, expected 3"});
  e = error_for("1 2 3\n\n1 2 3 4\n");
  CHECK(e.line() == 3);
  check_words(e, {"u.txt:3:", "column 7", "more than 3"});
  e = error_for("1 x 3\n");
  check_words(e, {"u.txt:1:", "column 3", "expected a number", "'x'"});
  e = error_for("1,,3\n");
  check_words(e, {"u.txt:1:", "column 3", "empty field"});
  e = error_for("1,2,\n");
  check_words(e, {"u.txt:1:", "column 5", "missing number after ','"});
  e = error_for("1 inf 3\n");
  check_words(e, {"column 3", "'inf'", "not finite"});
  e = error_for("1 1e999 3\n");
  check_words(e, {"column 3", "out of range for double"});
  CHECK_THROWS_AS(read_vectors<double>(path, -1), InvalidArgument);
  check_words(file_error([&] { (void)read_vectors<double>(dir / "none.txt", 3); }),
              {"none.txt", "cannot open"});
}

TEST_CASE("Atomic writes", "[io]") {
  ScratchDir dir;
  write_file_atomically(dir / "f.txt", "first");
  write_file_atomically(dir / "f.txt", "second");
  CHECK(read_text(dir / "f.txt") == "second");
  CHECK(dir.list() == std::vector<std::string>{"f.txt"});
  check_words(file_error([&] { write_file_atomically(dir / "missing" / "f.txt", "x"); }),
              {"f.txt", "cannot create a temporary file", "missing"});
  fs::create_directory(dir / "d");
  CHECK_THROWS_AS(write_file_atomically(dir / "d", "x"), FileError);
  CHECK_THROWS_AS(write_file_atomically(dir.path().string() + "/", "x"), FileError);
  CHECK(dir.list() == std::vector<std::string>{"d", "f.txt"});
  if (::geteuid() != 0) {
    fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
    CHECK_THROWS_AS(write_file_atomically(dir / "f.txt", "third"), FileError);
    fs::permissions(dir.path(), fs::perms::owner_all);
    CHECK(read_text(dir / "f.txt") == "second");
    CHECK(dir.list() == std::vector<std::string>{"d", "f.txt"});
  }
  // A read-only file system (even for root).
  check_words(file_error([&] { write_file_atomically("/proc/tacit_io_test.txt", "x"); }),
              {"/proc/tacit_io_test.txt", "cannot create a temporary file"});
  // Pieces of every size arrive in order (small ones are buffered, large
  // ones written directly after the buffer).
  {
    std::string expected;
    detail::AtomicFile file(dir / "pieces");
    std::mt19937_64 rng(3);
    for (std::size_t size :
         {std::size_t{10}, std::size_t{600000}, std::size_t{5}, std::size_t{1500000},
          std::size_t{300000}, std::size_t{700000}, std::size_t{524288}, std::size_t{1},
          std::size_t{1048576}}) {
      std::string piece(size, '\0');
      for (auto &c : piece)
        c = static_cast<char>('a' + rng() % 26);
      if (size > 100 || size == 5) {
        file.write(piece);
      } else {
        file.buffer() += piece;
        file.flush_if_large();
      }
      expected += piece;
    }
    file.commit();
    CHECK(read_text(dir / "pieces") == expected);
  }
  fs::remove(dir / "pieces");
  // Permissions follow the umask like any newly created file.
  const auto mask = ::umask(022);
  ::umask(mask);
  const auto perms = fs::status(dir / "f.txt").permissions();
  CHECK((static_cast<unsigned>(perms) & 0777u) == (0666u & ~static_cast<unsigned>(mask)));
}
