#include <catch2/catch.hpp>

#include <tacit/io/io.hpp>

#include <charconv>
#include <optional>

#include <sys/stat.h>
#include <unistd.h>

#include "io/detail/io_common.hpp"
#include "io_test_util.hpp"

using namespace tacit;
using namespace tacit_test;

namespace {

/// Dense row-major copy as doubles.
template <class T> std::vector<double> dense(const CsrMatrix<T> &m) {
  const auto d = m.to_dense();
  return {d.begin(), d.end()};
}

/// Parses `text` expecting a FileError; returns it.
FileError parse_error(const std::string &text, const std::string &name = "m.mtx") {
  try {
    (void)parse_matrix_market<double>(text, name);
  } catch (const FileError &e) {
    return e;
  } catch (const std::exception &e) {
    FAIL("expected FileError, got another exception: " << e.what());
  }
  FAIL("expected FileError for:\n" << text);
  throw; // unreachable
}

/// Checks that parsing fails at `line` with a message holding every word.
void expect_error(const std::string &text, std::int64_t line,
                  std::initializer_list<const char *> words) {
  const auto e = parse_error(text);
  INFO("message: " << e.what());
  CHECK(e.path() == "m.mtx");
  CHECK(e.line() == line);
  const std::string msg = e.what();
  CHECK(msg.rfind(line > 0 ? "m.mtx:" + std::to_string(line) + ": " : "m.mtx: ", 0) == 0);
  for (const char *w : words)
    CHECK_THAT(msg, Catch::Contains(w));
}

const std::string coord_real = "%%MatrixMarket matrix coordinate real general\n";

} // namespace

TEST_CASE("Matrix Market reads every field and symmetry", "[io]") {
  SECTION("real general, with comments, blank lines, CRLF, tabs and signs") {
    const std::string text = "%%MatrixMarket Matrix Coordinate Real General\r\n"
                             "% a comment\r\n"
                             "\r\n"
                             "  % indented comment\n"
                             "2 3 4\n"
                             "1 1 1.5\n"
                             "% comment between entries\n"
                             "\n"
                             "2\t3\t-2e-3\r\n"
                             "  1   3   +4\n"
                             "2 1 0\n"
                             "% trailing comment\n";
    const auto m = parse_matrix_market<double>(text, "t");
    CHECK(m.rows() == 2);
    CHECK(m.cols() == 3);
    CHECK(m.nnz() == 4); // the explicit zero is kept
    CHECK(dense(m) == std::vector<double>{1.5, 0, 4, 0, 0, -2e-3});
  }
  SECTION("integer and pattern") {
    const auto mi = parse_matrix_market<float>(
        "%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 2 -7\n2 2 +12\n",
        "t");
    CHECK(dense(mi) == std::vector<double>{0, -7, 0, 12});
    const auto mp = parse_matrix_market<double>(
        "%%MatrixMarket matrix coordinate pattern general\n3 2 3\n3 1\n1 2\n2 2\n", "t");
    CHECK(dense(mp) == std::vector<double>{0, 1, 0, 1, 1, 0});
  }
  SECTION("symmetric and skew-symmetric expand the mirror entries") {
    const auto ms =
        parse_matrix_market<double>("%%MatrixMarket matrix coordinate real symmetric\n3 "
                                    "3 4\n1 1 2\n2 1 3\n3 1 4\n3 3 5\n",
                                    "t");
    CHECK(dense(ms) == std::vector<double>{2, 3, 4, 3, 0, 0, 4, 0, 5});
    const auto mk =
        parse_matrix_market<double>("%%MatrixMarket matrix coordinate real "
                                    "skew-symmetric\n3 3 3\n2 1 3\n3 2 -4\n2 2 0\n",
                                    "t");
    CHECK(dense(mk) == std::vector<double>{0, -3, 0, 3, 0, 4, 0, -4, 0});
    CHECK(mk.nnz() == 4); // the zero diagonal entry is not stored
    const auto mp = parse_matrix_market<double>(
        "%%MatrixMarket matrix coordinate pattern symmetric\n2 2 2\n2 1\n2 2\n", "t");
    CHECK(dense(mp) == std::vector<double>{0, 1, 1, 1});
  }
  SECTION("array general, symmetric, skew-symmetric, integer") {
    const auto mg = parse_matrix_market<double>(
        "%%MatrixMarket matrix array real general\n2 3\n1\n2\n% c\n\n0\n4\n5\n-6\n", "t");
    CHECK(dense(mg) == std::vector<double>{1, 0, 5, 2, 4, -6});
    CHECK(mg.nnz() == 5); // zeros of a dense array are not stored
    const auto ms = parse_matrix_market<double>(
        "%%MatrixMarket matrix array real symmetric\n3 3\n1\n2\n3\n4\n5\n6\n", "t");
    CHECK(dense(ms) == std::vector<double>{1, 2, 3, 2, 4, 5, 3, 5, 6});
    const auto mk = parse_matrix_market<double>(
        "%%MatrixMarket matrix array real skew-symmetric\n3 3\n1\n2\n3\n", "t");
    CHECK(dense(mk) == std::vector<double>{0, -1, -2, 1, 0, -3, 2, 3, 0});
    const auto mi = parse_matrix_market<float>(
        "%%MatrixMarket matrix array integer general\n1 2\n3\n-4\n", "t");
    CHECK(dense(mi) == std::vector<double>{3, -4});
  }
  SECTION("unsorted entries and empty matrices") {
    const auto m = parse_matrix_market<double>(
        coord_real + "3 3 5\n3 3 9\n1 3 3\n1 1 1\n3 1 7\n1 2 2\n", "t");
    CHECK(dense(m) == std::vector<double>{1, 2, 3, 0, 0, 0, 7, 0, 9});
    const auto e = parse_matrix_market<double>(coord_real + "0 0 0\n", "t");
    CHECK((e.rows() == 0 && e.cols() == 0 && e.nnz() == 0));
    const auto z = parse_matrix_market<double>(coord_real + "4 5 0\n", "t");
    CHECK((z.rows() == 4 && z.cols() == 5 && z.nnz() == 0));
    const auto a = parse_matrix_market<double>(
        "%%MatrixMarket matrix array real general\n0 3\n", "t");
    CHECK((a.rows() == 0 && a.cols() == 3));
  }
  SECTION("tiny values underflow to zero or a subnormal, as strtod does") {
    const auto m =
        parse_matrix_market<float>(coord_real + "1 2 2\n1 1 1e-50\n1 2 1e-40\n", "t");
    CHECK(m.values()[0] == 0.0f);
    CHECK(m.values()[1] == 1e-40f);
  }
}

TEMPLATE_TEST_CASE("Matrix Market write and read back are bit-exact", "[io]", float,
                   double) {
  ScratchDir dir;
  for (std::uint64_t seed : {1, 2, 3}) {
    for (auto width : {IndexWidth::narrow32, IndexWidth::wide64}) {
      const auto m = random_matrix<TestType>(37, 23, 0.2, seed, false, width);
      write_matrix_market(dir / "c.mtx", m, MatrixMarketFormat::coordinate);
      CHECK(same_csr(read_matrix_market<TestType>(dir / "c.mtx"), m));
      // A dense array does not keep explicit zeros: compare on a matrix without.
      const auto nz = random_matrix<TestType>(19, 11, 0.4, seed, true, width);
      write_matrix_market(dir / "a.mtx", nz, MatrixMarketFormat::array);
      CHECK(same_csr(read_matrix_market<TestType>(dir / "a.mtx"), nz));
    }
  }
  // Read every field and symmetry, write, read back: the same matrix.
  const std::vector<std::string> inputs = {
      "%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 2 -7\n2 2 12\n",
      "%%MatrixMarket matrix coordinate pattern general\n3 2 3\n3 1\n1 2\n2 2\n",
      "%%MatrixMarket matrix coordinate real symmetric\n3 3 3\n1 1 0.1\n2 1 0.3\n3 3 "
      "1e-7\n",
      "%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 2\n2 1 3.25\n3 2 -4\n",
      "%%MatrixMarket matrix array real symmetric\n2 2\n1.1\n2.2\n3.3\n",
      "%%MatrixMarket matrix array integer skew-symmetric\n3 3\n1\n0\n3\n"};
  for (const auto &text : inputs) {
    INFO(text);
    const auto m = parse_matrix_market<TestType>(text, "in");
    for (auto format : {MatrixMarketFormat::coordinate, MatrixMarketFormat::array}) {
      write_matrix_market(dir / "out.mtx", m, format);
      CHECK(same_csr(read_matrix_market<TestType>(dir / "out.mtx"), m));
    }
  }
  // The written text: banner, size line, one entry per line, shortest values.
  const auto small =
      CsrMatrix<double>::from_dense(2, 2, std::vector<double>{0.1, 0, -2, 1e300});
  write_matrix_market(dir / "s.mtx", small);
  CHECK(read_text(dir / "s.mtx") == "%%MatrixMarket matrix coordinate real general\n"
                                    "2 2 3\n1 1 0.1\n2 1 -2\n2 2 1e+300\n");
  write_matrix_market(dir / "s.mtx", small, MatrixMarketFormat::array);
  CHECK(read_text(dir / "s.mtx") ==
        "%%MatrixMarket matrix array real general\n2 2\n0.1\n-2\n0\n1e+300\n");
  CHECK(dir.list() == std::vector<std::string>{"a.mtx", "c.mtx", "out.mtx", "s.mtx"});
}

TEST_CASE("Matrix Market rejects malformed files with file, line and problem", "[io]") {
  SECTION("banner") {
    expect_error("", 0, {"empty file", "%%MatrixMarket"});
    expect_error("hello\n1 1 1\n", 1, {"not a Matrix Market file", "banner", "'hello'"});
    expect_error("%%MatrixMarket matrix coordinate real\n", 1, {"bad banner"});
    expect_error("%%MatrixMarket matrix coordinate real general extra\n", 1,
                 {"bad banner"});
    expect_error("%%MatrixMarket vector coordinate real general\n", 1,
                 {"unsupported object", "'vector'"});
    expect_error("%%MatrixMarket matrix sparse real general\n", 1,
                 {"unknown format", "'sparse'", "coordinate or array"});
    expect_error("%%MatrixMarket matrix coordinate quaternion general\n", 1,
                 {"unknown field", "'quaternion'"});
    expect_error("%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n", 1,
                 {"complex", "not supported"});
    expect_error("%%MatrixMarket matrix coordinate real hermitian\n", 1,
                 {"hermitian", "not supported"});
    expect_error("%%MatrixMarket matrix coordinate real diagonal\n", 1,
                 {"unknown symmetry", "'diagonal'"});
    expect_error("%%MatrixMarket matrix array pattern general\n", 1,
                 {"pattern", "array"});
    expect_error("% comment first\n" + coord_real + "1 1 0\n", 1,
                 {"not a Matrix Market file"});
  }
  SECTION("size line") {
    expect_error(coord_real + "% only comments\n\n", 3, {"missing size line"});
    expect_error(coord_real + "3 3\n", 2,
                 {"bad size line", "'3 3'", "rows columns entries"});
    expect_error(coord_real + "3 x 3\n", 2, {"bad size line", "column count", "'x'"});
    expect_error(coord_real + "-3 3 1\n", 2, {"negative row count -3"});
    expect_error(coord_real + "3 3 -1\n", 2, {"negative entry count"});
    expect_error(coord_real + "99999999999999999999 3 1\n", 2,
                 {"row count", "too large"});
    expect_error(coord_real + "100000000000 1 0\n", 2,
                 {"100000000000 x 1", "plausibly", "limit"});
    expect_error(coord_real + "2 2 5\n", 2, {"declares 5 entries", "4 positions"});
    expect_error("%%MatrixMarket matrix coordinate real symmetric\n2 3 1\n", 2,
                 {"symmetric", "square", "2 x 3"});
    expect_error("%%MatrixMarket matrix coordinate real symmetric\n2 2 4\n", 2,
                 {"declares 4 entries", "3 positions", "triangular"});
    expect_error("%%MatrixMarket matrix array real general\n2 2 4\n", 2,
                 {"bad size line", "rows columns"});
    expect_error("%%MatrixMarket matrix array real general\n30000 30000\n1\n", 2,
                 {"array of 30000 x 30000", "more values"});
  }
  SECTION("entries") {
    expect_error(coord_real + "3 4 2\n1 1 1\n0 2 1\n", 4,
                 {"entry (0, 2)", "row 0", "outside 1..3"});
    expect_error(coord_real + "3 4 2\n1 1 1\n4 2 1\n", 4,
                 {"entry (4, 2)", "row 4", "outside 1..3"});
    expect_error(coord_real + "3 4 2\n1 1 1\n2 5 1\n", 4,
                 {"entry (2, 5)", "column 5", "outside 1..4"});
    expect_error(coord_real + "3 4 2\n1 1 1\n2 -1 1\n", 4, {"column -1", "outside 1..4"});
    expect_error(coord_real + "3 3 2\n1 1 1\n2 2\n", 4,
                 {"expected 3 tokens (row column value), found 2", "'2 2'"});
    expect_error(coord_real + "3 3 2\n1 1 1\n2 2 1 7\n", 4,
                 {"expected 3 tokens", "found 4"});
    expect_error("%%MatrixMarket matrix coordinate pattern general\n3 3 1\n2 2 1\n", 3,
                 {"expected 2 tokens (row column)"});
    expect_error(coord_real + "3 3 2\n1 1 1\n2 2 abc\n", 4,
                 {"entry (2, 2)", "'abc'", "not a number"});
    expect_error(coord_real + "3 3 2\n1 1 1\n2 2 1.5.5\n", 4, {"not a number"});
    expect_error(coord_real + "3 3 2\n1 1 1\nx 2 1\n", 4,
                 {"row index 'x'", "not an integer"});
    expect_error(coord_real + "3 3 2\n1 1 1\n2 2 nan\n", 4,
                 {"entry (2, 2)", "'nan'", "not finite"});
    expect_error(coord_real + "3 3 2\n1 1 1\n3 1 -inf\n", 4,
                 {"entry (3, 1)", "'-inf'", "not finite"});
    expect_error(coord_real + "3 3 1\n1 1 1e999\n", 3,
                 {"'1e999'", "out of range for double"});
    expect_error("%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1.5\n", 3,
                 {"'1.5'", "not an integer"});
    expect_error(coord_real + "3 3 1\n1 99999999999999999999 1\n", 3,
                 {"column index", "out of range"});
    expect_error("%%MatrixMarket matrix coordinate real symmetric\n3 3 1\n1 2 1\n", 3,
                 {"entry (1, 2)", "above the diagonal", "lower triangle"});
    expect_error("%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 1\n2 2 0.5\n",
                 3, {"entry (2, 2)", "skew-symmetric", "must be zero", "'0.5'"});
    expect_error("%%MatrixMarket matrix array real general\n1 2\n1\nfoo\n", 4,
                 {"entry (1, 2)", "'foo'", "not a number"});
    expect_error("%%MatrixMarket matrix array real general\n1 2\n1 2\n", 3,
                 {"expected 1 token (value)", "found 2"});
    expect_error("%%MatrixMarket matrix array real general\n2 1\n1\ninf\n", 4,
                 {"entry (2, 1)", "not finite"});
  }
  SECTION("float range") {
    try {
      (void)parse_matrix_market<float>(coord_real + "1 1 1\n1 1 1e39\n", "f.mtx");
      FAIL("accepted 1e39 as float");
    } catch (const FileError &e) {
      CHECK(e.line() == 3);
      CHECK_THAT(e.what(), Catch::Contains("out of range for float"));
    }
  }
  SECTION("counts, duplicates and trailing content") {
    expect_error(coord_real + "3 3 3\n1 1 1\n% c\n2 2 2\n\n", 6,
                 {"too few entries", "line 2", "declares 3", "after 2"});
    expect_error(coord_real + "3 3 1\n1 1 1\n% c\n2 2 2\n", 5,
                 {"too many entries", "declares 1", "line 5"});
    expect_error(
        coord_real + "3 3 1\n1 1 1\ngarbage here\n", 4,
        {"unexpected content after the last of the 1 entries", "'garbage here'"});
    expect_error(coord_real + "3 3 3\n1 1 1\n2 2 2\n1 1 5\n", 5,
                 {"duplicate entry (1, 1)", "lines 3 and 5", "not summed"});
    expect_error(
        "%%MatrixMarket matrix coordinate real symmetric\n3 3 3\n2 1 1\n3 3 1\n2 1 4\n",
        5, {"duplicate entry (2, 1)", "lines 3 and 5"});
    expect_error("%%MatrixMarket matrix array real general\n1 2\n1\n2\n3\n", 5,
                 {"too many values", "holds 2"});
    expect_error("%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n", 5,
                 {"too few values", "needs 4", "after 3"});
  }
}

TEST_CASE("Matrix Market reading large files in chunks gives the serial result", "[io]") {
  // About 24 MB of text: several 8 MiB chunks parsed in parallel.
  const index_t n = 3000;
  std::mt19937_64 rng(11);
  std::vector<Triplet<double>> t;
  std::string text = coord_real;
  std::string body;
  std::vector<std::pair<index_t, index_t>> seen;
  const std::int64_t entries = 600000;
  for (std::int64_t k = 0; k < entries; ++k) {
    // Distinct positions: k-th entry at a pseudo-random permutation of cells.
    const auto cell = (static_cast<std::uint64_t>(k) * 2654435761ull) % (n * n);
    const index_t i = static_cast<index_t>(cell / n), j = static_cast<index_t>(cell % n);
    const double v = std::uniform_real_distribution<double>(-1, 1)(rng);
    t.push_back({i, j, v});
    body += std::to_string(i + 1) + " " + std::to_string(j + 1) + " ";
    {
      char buf[32];
      auto r = std::to_chars(buf, buf + 32, v);
      body.append(buf, r.ptr);
    }
    body += (k % 1000 == 0) ? "\n% a comment line\n" : "\n";
  }
  const std::string size = std::to_string(n) + " " + std::to_string(n) + " ";
  const auto expected = CsrMatrix<double>::from_triplets(n, n, t);
  const auto m = parse_matrix_market<double>(
      text + size + std::to_string(entries) + "\n" + body, "big");
  CHECK(same_csr(m, expected));

  // Errors late in the file name the right line.
  const std::int64_t lines_before_body = 2;
  auto line_count = [](const std::string &s) {
    return static_cast<std::int64_t>(std::count(s.begin(), s.end(), '\n'));
  };
  {
    std::string bad = body;
    const auto pos = bad.size() - 100;
    const auto line_start = bad.rfind('\n', pos) + 1;
    bad.insert(line_start, "1 1 abc\n");
    try {
      (void)parse_matrix_market<double>(
          text + size + std::to_string(entries + 1) + "\n" + bad, "big");
      FAIL("accepted a bad value");
    } catch (const FileError &e) {
      CHECK(e.line() == lines_before_body + line_count(bad.substr(0, line_start)) + 1);
      CHECK_THAT(e.what(), Catch::Contains("'abc'"));
    }
  }
  {
    // One entry too many, and a duplicate across chunks.
    try {
      (void)parse_matrix_market<double>(
          text + size + std::to_string(entries - 1) + "\n" + body, "big");
      FAIL("accepted too many entries");
    } catch (const FileError &e) {
      CHECK(e.line() == lines_before_body + line_count(body));
      CHECK_THAT(e.what(), Catch::Contains("too many entries"));
    }
    const auto first_line = body.substr(0, body.find('\n') + 1);
    try {
      (void)parse_matrix_market<double>(
          text + size + std::to_string(entries + 1) + "\n" + body + first_line, "big");
      FAIL("accepted a duplicate");
    } catch (const FileError &e) {
      CHECK(e.line() == lines_before_body + line_count(body) + 1);
      CHECK_THAT(e.what(), Catch::Contains("lines 3 and"));
    }
  }
}

TEST_CASE("Matrix Market file errors and atomic writes", "[io]") {
  ScratchDir dir;
  try {
    (void)read_matrix_market<double>(dir / "missing.mtx");
    FAIL("read a missing file");
  } catch (const FileError &e) {
    CHECK_THAT(e.what(),
               Catch::Contains("missing.mtx") && Catch::Contains("cannot open"));
  }
  try {
    (void)read_matrix_market<double>(dir.path());
    FAIL("read a directory");
  } catch (const FileError &e) {
    CHECK_THAT(e.what(), Catch::Contains("is a directory"));
  }
  std::istringstream in(coord_real + "1 1 1\n1 1 2.5\n");
  CHECK(read_matrix_market<double>(in, "stream").values()[0] == 2.5);

  const auto m = CsrMatrix<double>::identity(3, 2.0);
  // Into a directory that does not exist.
  CHECK_THROWS_AS(write_matrix_market(dir / "no/such/dir/m.mtx", m), FileError);
  // Over a directory: the rename fails, the temporary file is removed.
  fs::create_directory(dir / "sub.mtx");
  CHECK_THROWS_AS(write_matrix_market(dir / "sub.mtx", m), FileError);
  CHECK(dir.list() == std::vector<std::string>{"sub.mtx"});
  CHECK(fs::is_empty(dir / "sub.mtx"));
  // Into a read-only directory (meaningless for root, who may write anyway).
  if (::geteuid() != 0) {
    fs::create_directory(dir / "ro");
    write_matrix_market(dir / "ro/m.mtx", m);
    const auto before = read_text(dir / "ro/m.mtx");
    fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    try {
      write_matrix_market(dir / "ro/m.mtx", CsrMatrix<double>::identity(4));
      FAIL("wrote into a read-only directory");
    } catch (const FileError &e) {
      CHECK_THAT(e.what(), Catch::Contains("m.mtx") && Catch::Contains("temporary file"));
    }
    fs::permissions(dir / "ro", fs::perms::owner_all);
    CHECK(dir.list("ro") == std::vector<std::string>{"m.mtx"});
    CHECK(read_text(dir / "ro/m.mtx") == before);
  }
  // Non-finite values are refused before anything is written.
  auto bad = CsrMatrix<double>::identity(2);
  bad.mutable_values()[1] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(write_matrix_market(dir / "nan.mtx", bad), InvalidArgument);
  CHECK(!fs::exists(dir / "nan.mtx"));
}

TEST_CASE("Matrix Market reader survives random mutations", "[io]") {
  // Every mutated file must be read or rejected with FileError: never a
  // crash, a hang or another exception.
  const std::vector<std::string> seeds = {
      coord_real +
          "% comment\n4 5 6\n1 1 1.5\n2 3 -2e-3\n4 5 7\n3 1 0.25\n4 4 1e10\n1 5 -3\n",
      "%%MatrixMarket matrix coordinate real symmetric\n4 4 4\n1 1 2\n2 1 -1\n4 2 3\n4 4 "
      "1\n",
      "%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 2\n2 1 1\n3 1 -2\n",
      "%%MatrixMarket matrix coordinate pattern general\n3 3 3\n1 1\n2 2\n3 1\n",
      "%%MatrixMarket matrix coordinate integer symmetric\n3 3 2\n1 1 4\n3 2 -5\n",
      "%%MatrixMarket matrix array real general\n2 3\n1\n2\n0\n4\n5\n6\n",
      "%%MatrixMarket matrix array integer skew-symmetric\n3 3\n1\n2\n3\n"};
  std::mt19937_64 rng(2024);
  int accepted = 0, rejected = 0;
  for (const auto &seed : seeds)
    for (int k = 0; k < 1500; ++k) {
      const auto text = mutate(seed, rng);
      try {
        const auto m = parse_matrix_market<double>(text, "fuzz.mtx");
        (void)parse_matrix_market<float>(text, "fuzz.mtx");
        // An accepted file is a well-formed CSR matrix.
        const auto rp = m.row_ptr();
        REQUIRE(rp.size() == std::size_t(m.rows()) + 1);
        REQUIRE(rp.front() == 0);
        REQUIRE(rp.back() == m.nnz());
        for (index_t i = 0; i < m.rows(); ++i) {
          REQUIRE(rp[i] <= rp[i + 1]);
          for (auto a = rp[i]; a < rp[i + 1]; ++a) {
            REQUIRE(m.column(a) >= 0);
            REQUIRE(m.column(a) < m.cols());
            if (a > rp[i])
              REQUIRE(m.column(a - 1) < m.column(a));
          }
        }
        ++accepted;
      } catch (const FileError &) {
        ++rejected;
      } catch (const std::exception &e) {
        FAIL("unexpected exception " << e.what() << " for:\n" << text);
      }
    }
  CHECK(accepted > 100);
  CHECK(rejected > 1000);
}

TEST_CASE("Matrix Market files stream in blocks with the results and messages of text",
          "[io]") {
  // Small blocks put many block boundaries (and a line longer than a block)
  // into a small file; reading it must match parsing the same text in memory.
  ScratchDir dir;
  const auto saved = detail::matrix_market_block_bytes;
  detail::matrix_market_block_bytes = 1000;
  struct Restore {
    std::size_t v;
    ~Restore() { detail::matrix_market_block_bytes = v; }
  } restore{saved};

  std::mt19937_64 rng(5);
  std::string body;
  const int entries = 3000;
  for (int k = 0; k < entries; ++k) {
    body += std::to_string(k / 40 + 1) + " " + std::to_string(k % 40 + 1) + " " +
            std::to_string(std::uniform_real_distribution<double>(-1, 1)(rng)) +
            (k % 7 ? "\n" : "\r\n");
    if (k == 1500)
      body += "% " + std::string(5000, 'x') + "\n";
  }
  const std::string long_header_comments = [] {
    std::string s;
    for (int k = 0; k < 2000; ++k)
      s += "% header comment line " + std::to_string(k) + "\n";
    return s;
  }(); // about 50 KB before the size line
  auto file_text = [&](int declared, const std::string &b) {
    return coord_real + long_header_comments + "100 40 " + std::to_string(declared) +
           "\n" + b;
  };
  auto check_same = [&](const std::string &text) {
    write_text(dir / "f.mtx", text);
    std::string memory_error, file_error;
    std::optional<CsrMatrix<double>> from_memory, from_file;
    try {
      from_memory = parse_matrix_market<double>(text, (dir / "f.mtx").string());
    } catch (const FileError &e) {
      memory_error = e.what();
    }
    try {
      from_file = read_matrix_market<double>(dir / "f.mtx");
    } catch (const FileError &e) {
      file_error = e.what();
    }
    CHECK(memory_error == file_error);
    CHECK(from_memory.has_value() == from_file.has_value());
    if (from_memory && from_file)
      CHECK(same_csr(*from_memory, *from_file));
    return memory_error;
  };
  CHECK(check_same(file_text(entries, body)).empty());
  CHECK(check_same(file_text(entries, body + "% no final newline")).empty());
  CHECK_THAT(check_same(file_text(entries + 1, body + "1 1 1\n")),
             Catch::Contains("duplicate entry (1, 1)"));
  CHECK_THAT(check_same(file_text(entries - 1, body)),
             Catch::Contains("too many entries"));
  CHECK_THAT(check_same(file_text(entries + 1, body)),
             Catch::Contains("too few entries"));
  CHECK_THAT(check_same(file_text(entries, body + "junk")),
             Catch::Contains("unexpected content"));
  std::string bad = body;
  bad.replace(bad.size() - 30, 1, "z");
  CHECK_THAT(check_same(file_text(entries, bad)),
             Catch::Contains("z") && Catch::Contains("is not"));
  CHECK_THAT(check_same(coord_real + long_header_comments),
             Catch::Contains("missing size line"));
  // A file that is nothing but a long comment after the banner.
  CHECK_THAT(check_same(coord_real + "%" + std::string(30000, 'c')),
             Catch::Contains("missing size line"));
}
