// End-to-end tests of the `tacit` command: each test writes its inputs into a
// fresh temporary directory, runs the binary with std::system and checks the
// exit code, stdout (human text or JSON) and stderr.
#ifdef TACIT_CLI_PATH

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <tacit/core/isa.hpp>

#include <tacit/tacit.hpp>

#include "cli_test_util.hpp"
#include "fashion_test_util.hpp"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace tacit;

using TempDir = tacit_test::ScratchDir;
using RunResult = tacit_test::CommandResult;
using tacit_test::read_text;
using tacit_test::run_tacit;
using tacit_test::write_text;

/// The dense values of an operator (small matrices only).
template <class T> std::vector<T> dense(const LinearOperator<T> &op) {
  return op.to_csr().to_dense();
}

/// A small truly implicit model (cyclic A, ||A||_inf = 0.9).
Model<double> implicit_model(index_t n = 40) {
  return random_implicit_model<double>(n, 5, 3, 4, 0.9, 11);
}

/// A cyclic permutation scaled by `scale`: lambda_PF(|A|) = scale exactly.
CsrMatrix<double> scaled_cycle(index_t n, double scale) {
  std::vector<Triplet<double>> t;
  for (index_t i = 0; i < n; ++i)
    t.push_back({i, (i + 1) % n, scale});
  return CsrMatrix<double>::from_triplets(n, n, t);
}

/// A model around a given A with p = 2 inputs, q = 1 output.
Model<double> model_around(CsrMatrix<double> A, std::vector<StateBlock> blocks = {}) {
  const index_t n = A.rows();
  std::vector<Triplet<double>> b, c;
  for (index_t i = 0; i < n; ++i)
    b.push_back({i, i % 2, 1.0 + 0.1 * double(i)});
  for (index_t i = 0; i < n; ++i)
    c.push_back({0, i, 0.5});
  return Model<double>(
      std::make_shared<CsrMatrix<double>>(std::move(A)),
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(n, 2, b)),
      std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(1, n, c)),
      nullptr, {}, {}, std::move(blocks));
}

/// Writes `count` deterministic inputs of length p, one per line.
fs::path write_inputs(const TempDir &dir, const std::string &name, index_t p,
                      index_t count, std::uint64_t seed = 5) {
  write_vectors(dir / name, random_batch<double>(p, count, seed));
  return dir / name;
}

/// The column-major values of a batch.
template <class T> std::vector<T> columns(const Batch<T> &b) {
  std::vector<T> v;
  for (index_t j = 0; j < b.cols(); ++j)
    for (index_t i = 0; i < b.rows(); ++i)
      v.push_back(b(i, j));
  return v;
}

/// FNV-1a 64 of the column-major values, as the demo prints it.
template <class T> std::string fnv1a_hex(const Batch<T> &b) {
  std::uint64_t h = 14695981039346656037ull;
  for (const T v : columns(b)) {
    const auto *p = reinterpret_cast<const unsigned char *>(&v);
    for (std::size_t k = 0; k < sizeof v; ++k) {
      h ^= p[k];
      h *= 1099511628211ull;
    }
  }
  char text[32];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

} // namespace

TEST_CASE("tacit --help lists commands, global options and exit codes", "[cli]") {
  TempDir dir;
  const auto r = run_tacit(dir, {"--help"});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("Usage: tacit COMMAND"));
  CHECK_THAT(r.out, Catch::Contains("--threads N"));
  CHECK_THAT(r.out, Catch::Contains("--json"));
  CHECK_THAT(r.out, Catch::Contains("Exit codes:"));
  CHECK_THAT(r.out, Catch::Contains("3  numerical failure"));
  CHECK(r.err.empty());
  CHECK(run_tacit(dir, {"help"}).out == r.out);
  const auto v = run_tacit(dir, {"--version"});
  CHECK(v.code == 0);
  CHECK_THAT(v.out, Catch::StartsWith("tacit 0."));
  CHECK_THAT(v.out, Catch::Contains("kernels: " + to_string(active_isa())));
}

TEST_CASE("tacit rejects a missing or unknown command with exit code 1", "[cli]") {
  TempDir dir;
  const auto none = run_tacit(dir, {});
  CHECK(none.code == 1);
  CHECK_THAT(none.err, Catch::Contains("missing command"));
  CHECK(none.out.empty());

  const auto unknown = run_tacit(dir, {"frobnicate"});
  CHECK(unknown.code == 1);
  CHECK_THAT(unknown.err, Catch::Contains("unknown command 'frobnicate'"));

  const auto help_unknown = run_tacit(dir, {"help", "frobnicate"});
  CHECK(help_unknown.code == 1);
  CHECK_THAT(help_unknown.err, Catch::Contains("frobnicate"));

  const auto bad_global = run_tacit(dir, {"--frobnicate"});
  CHECK(bad_global.code == 1);
  CHECK_THAT(bad_global.err, Catch::Contains("unknown option '--frobnicate'"));

  // With --json the error is also reported as JSON on stdout.
  const auto as_json = run_tacit(dir, {"--json", "frobnicate"});
  CHECK(as_json.code == 1);
  const auto doc = as_json.parsed();
  CHECK(doc.at("exit_code") == 1);
  CHECK_THAT(doc.at("error").get<std::string>(), Catch::Contains("frobnicate"));
}

TEST_CASE("every command has a help text with usage, options and exit codes", "[cli]") {
  TempDir dir;
  for (const std::string name :
       {"info", "wellposed", "solve", "convert", "rescale", "project", "demo"}) {
    INFO("command " << name);
    const auto r = run_tacit(dir, {name, "--help"});
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Catch::StartsWith("Usage: tacit " + name));
    CHECK_THAT(r.out, Catch::Contains("--json"));
    CHECK_THAT(r.out, Catch::Contains("Exit codes:"));
    CHECK(run_tacit(dir, {"help", name}).out == r.out);
    CHECK_THAT(run_tacit(dir, {"--help"}).out, Catch::Contains("  " + name + " "));
  }
}

TEST_CASE("command-line mistakes are usage errors naming the option", "[cli]") {
  TempDir dir;
  const auto model = implicit_model();
  save_model_directory(model, dir / "m");
  const std::string m = (dir / "m").string();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"info"}, "missing argument MODEL"},
      {{"info", m, "extra"}, "unexpected argument 'extra'"},
      {{"info", m, "--bogus"}, "unknown option '--bogus'"},
      {{"info", m, "--json=yes"}, "--json takes no value"},
      {{"info", m, "--threads"}, "--threads requires a value"},
      {{"info", m, "--threads", "two"}, "invalid value 'two' for --threads"},
      {{"info", m, "--threads", "0"}, "--threads is out of range"},
      {{"wellposed", m, "--rel-width", "1e-3x"}, "invalid value '1e-3x' for --rel-width"},
      {{"wellposed", m, "--rel-width", "nan"}, "--rel-width: expected a finite number"},
      {{"wellposed", m, "--max-iterations", "-5"}, "--max-iterations is out of range"},
      {{"wellposed", m, "--max-iterations", "1.5"}, "expected a whole number"},
      {{"wellposed", m, "--decide", "--decide"}, "--decide given more than once"},
      {{"project", m, "-o", (dir / "p").string()}, "missing required option --kappa"},
      {{"project", m, "--kappa", "0.5"}, "missing required option --output"},
      {{"project", m, "--kappa", "-1", "-o", (dir / "p").string()},
       "--kappa is out of range"},
      {{"rescale", m, "-o", (dir / "r").string(), "--target", "1.5"}, "--target"},
      {{"convert", m}, "missing argument OUT"},
      {{"convert", m, (dir / "c").string(), "--format", "zip"},
       "invalid value 'zip' for --format: expected dir or native"},
      {{"convert", m, (dir / "c").string(), "--precision", "half"},
       "expected float32 or float64"},
      {{"convert", m, m}, "is the input"},
  };
  for (const auto &c : cases) {
    std::string shown;
    for (const auto &a : c.args)
      shown += a + " ";
    INFO("tacit " << shown);
    const auto r = run_tacit(dir, c.args);
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Catch::Contains(c.message));
    CHECK_THAT(r.err, Catch::Contains("--help"));
    CHECK(r.out.empty());
  }
  CHECK(!fs::exists(dir / "p"));
  CHECK(!fs::exists(dir / "c"));
}

TEST_CASE("file errors exit with code 2 and name the file and line", "[cli]") {
  TempDir dir;
  // Missing model.
  auto r = run_tacit(dir, {"info", (dir / "nowhere").string()});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains((dir / "nowhere").string()));

  // Malformed A.mtx inside a model directory: the message has file:line.
  save_model_directory(implicit_model(), dir / "m");
  write_text(
      dir / "m" / "A.mtx",
      "%%MatrixMarket matrix coordinate real general\n40 40 2\n1 1 0.5\n2 x 0.5\n");
  for (const std::string cmd : {"info", "wellposed"}) {
    r = run_tacit(dir, {cmd, (dir / "m").string()});
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains((dir / "m" / "A.mtx").string() + ":4"));
    CHECK(r.out.empty());
  }
  // The same error as JSON.
  r = run_tacit(dir, {"wellposed", (dir / "m").string(), "--json"});
  CHECK(r.code == 2);
  CHECK(r.parsed().at("exit_code") == 2);
  CHECK_THAT(r.parsed().at("error").get<std::string>(), Catch::Contains("A.mtx:4"));

  // A bare .mtx with a bad header.
  write_text(dir / "bad.mtx",
             "%%MatrixMarket matrix coordinate complex general\n1 1 1\n");
  r = run_tacit(dir, {"wellposed", (dir / "bad.mtx").string()});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("bad.mtx"));

  // A truncated native file.
  save_model_native(implicit_model(), dir / "m.tacit");
  const auto bytes = read_text(dir / "m.tacit");
  write_text(dir / "cut.tacit", bytes.substr(0, bytes.size() / 2));
  r = run_tacit(dir, {"convert", (dir / "cut.tacit").string(), (dir / "out").string()});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("cut.tacit"));
  CHECK(!fs::exists(dir / "out"));
}

TEST_CASE("each kind of library error has its own exit code", "[cli]") {
  TempDir dir;
  save_model_directory(model_around(scaled_cycle(4, 0.5)), dir / "m");
  const std::string m = (dir / "m").string();
  // FileError: 2.
  auto r = run_tacit(dir, {"sensitivity", (dir / "nowhere").string()});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("nowhere"));
  // NumericalError (lambda_PF(|A|) = 1.25 is not below 1): 3.
  save_model_directory(model_around(scaled_cycle(4, 1.25)), dir / "bad");
  r = run_tacit(dir, {"sensitivity", (dir / "bad").string()});
  CHECK(r.code == 3);
  CHECK_THAT(r.err, Catch::Contains("not certified"));
  // InvalidArgument (a budget of 5 changed inputs on a model of 2): 1.
  const auto inputs = write_inputs(dir, "u.txt", 2, 3).string();
  write_text(dir / "l.txt", "0\n0\n0\n");
  const std::vector<std::string> attack = {
      "attack", m, "--input", inputs, "--labels", (dir / "l.txt").string(), "--k", "5"};
  r = run_tacit(dir, attack);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::Contains("k = 5"));
  auto as_json = attack;
  as_json.push_back("--json");
  r = run_tacit(dir, as_json);
  CHECK(r.code == 1);
  CHECK(r.parsed().at("exit_code") == 1);
  // The same command within the model's inputs succeeds.
  auto fits = attack;
  fits.back() = "2";
  CHECK(run_tacit(dir, fits).code == 0);
}

TEST_CASE("tacit info reports what the library sees", "[cli]") {
  TempDir dir;
  const auto model = implicit_model();
  save_model_directory(model, dir / "m");
  save_model_native(model, dir / "m.tacit");
  const auto loaded = load_model<double>(dir / "m");
  const auto scc = strongly_connected_components(loaded.A().to_csr());

  for (const std::string path : {(dir / "m").string(), (dir / "m.tacit").string()}) {
    INFO(path);
    const auto r = run_tacit(dir, {"info", path, "--json"});
    REQUIRE(r.code == 0);
    const auto doc = r.parsed();
    CHECK(doc.at("kind") == "model");
    CHECK(doc.at("n") == 40);
    CHECK(doc.at("p") == 5);
    CHECK(doc.at("q") == 3);
    CHECK(doc.at("nnz").at("A") == loaded.A().nnz());
    CHECK(doc.at("nnz").at("B") == loaded.B().nnz());
    CHECK(doc.at("nnz").at("C") == loaded.C().nnz());
    CHECK(doc.at("nnz").at("D") == 0);
    CHECK(doc.at("a_bytes") == loaded.A().bytes());
    CHECK(doc.at("norm_inf").get<double>() == norm_inf(loaded.A()));
    CHECK(doc.at("scc").at("count") == scc.block_count());
    CHECK(doc.at("scc").at("largest") == scc.largest_block());
    CHECK(doc.at("scc").at("levels") == scc.level_count());
    CHECK(doc.at("scc").at("nilpotent") == false);
    REQUIRE(doc.at("blocks").size() == loaded.blocks().size());
    CHECK(doc.at("blocks")[0].at("activation") == "relu");
    CHECK(doc.at("blocks")[0].at("size") == 40);
  }
  CHECK(run_tacit(dir, {"info", (dir / "m.tacit").string(), "--json"})
            .parsed()
            .at("format") == "native");

  // Human output.
  const auto r = run_tacit(dir, {"info", (dir / "m").string()});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("states n = 40, inputs p = 5, outputs q = 3"));
  CHECK_THAT(r.out, Catch::Contains("D: none"));
  CHECK(r.err.empty());
  CHECK(run_tacit(dir, {"info", (dir / "m").string(), "--quiet"}).out.empty());

  // A feed-forward model: nilpotent, one block per layer, as many levels as layers.
  ResNetLikeShape shape;
  shape.image = 4;
  shape.stage_channels = {2, 3};
  shape.stage_layers = {2, 2};
  shape.classes = 3;
  const auto ff = resnet_like_model<double>(shape, 3);
  save_model_directory(ff, dir / "ff");
  const auto doc = run_tacit(dir, {"info", (dir / "ff").string(), "--json"}).parsed();
  CHECK(doc.at("scc").at("nilpotent") == true);
  CHECK(doc.at("scc").at("count") == ff.states());
  CHECK(doc.at("scc").at("largest") == 1);
  CHECK(doc.at("blocks").size() == 4);
  CHECK(doc.at("n") == ff.states());

  // A bare matrix.
  write_matrix_market(dir / "A.mtx", scaled_cycle(5, 0.5));
  const auto m = run_tacit(dir, {"info", (dir / "A.mtx").string(), "--json"}).parsed();
  CHECK(m.at("kind") == "matrix");
  CHECK(m.at("n") == 5);
  CHECK(m.at("nnz").at("A") == 5);
  CHECK(m.at("scc").at("count") == 1);
  CHECK(m.at("scc").at("largest") == 5);
  CHECK(m.at("norm_inf") == 0.5);
}

TEST_CASE("tacit wellposed matches analyse_well_posedness", "[cli]") {
  TempDir dir;
  const auto model = implicit_model(60);
  save_model_directory(model, dir / "m");
  const auto expected = analyse_well_posedness(load_model<double>(dir / "m").A());
  REQUIRE(expected.pf.certified());

  auto r = run_tacit(dir, {"wellposed", (dir / "m").string(), "--json"});
  REQUIRE(r.code == 0);
  auto doc = r.parsed();
  CHECK(doc.at("n") == 60);
  CHECK(doc.at("nnz") == expected.nnz);
  CHECK(doc.at("norm_inf").get<double>() == expected.norm_inf);
  CHECK(doc.at("norm_1").get<double>() == expected.norm_1);
  CHECK(doc.at("lambda_pf").at("lower").get<double>() == expected.pf.lower);
  CHECK(doc.at("lambda_pf").at("upper").get<double>() == expected.pf.upper);
  CHECK(doc.at("certified") == true);
  CHECK(doc.at("status") == to_string(expected.pf.status));
  CHECK(doc.at("iterations") == expected.pf.iterations);
  CHECK(doc.at("scc").at("count") == expected.scc_count);
  CHECK(doc.at("scc").at("largest") == expected.scc_largest);
  CHECK(doc.at("nilpotent") == false);

  // The same through a bare .mtx and with one thread: same bits.
  write_matrix_market(dir / "A.mtx", load_model<double>(dir / "m").A().to_csr());
  r = run_tacit(dir, {"wellposed", (dir / "A.mtx").string(), "--json", "--threads", "1"});
  REQUIRE(r.code == 0);
  CHECK(r.parsed().at("lambda_pf") == doc.at("lambda_pf"));

  // Options reach the library.
  PerronOptions loose;
  loose.rel_width = 1e-2;
  loose.max_iterations = 3;
  const auto coarse = analyse_well_posedness(load_model<double>(dir / "m").A(), loose);
  r = run_tacit(dir, {"wellposed", (dir / "m").string(), "--json", "--rel-width", "1e-2",
                      "--max-iterations", "3"});
  REQUIRE(r.code == 0);
  CHECK(r.parsed().at("lambda_pf").at("upper").get<double>() == coarse.pf.upper);
  CHECK(r.parsed().at("iterations") == coarse.pf.iterations);

  // Human report.
  r = run_tacit(dir, {"wellposed", (dir / "m").string()});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("certified well-posed"));

  // lambda_PF(|A|) = 1.25 exactly: not certified, still exit code 0.
  save_model_directory(model_around(scaled_cycle(6, 1.25)), dir / "bad");
  r = run_tacit(dir, {"wellposed", (dir / "bad").string(), "--json"});
  CHECK(r.code == 0);
  doc = r.parsed();
  CHECK(doc.at("certified") == false);
  CHECK(doc.at("lambda_pf").at("lower").get<double>() <= 1.25);
  CHECK(doc.at("lambda_pf").at("upper").get<double>() >= 1.25);
  CHECK(doc.at("lambda_pf").at("lower").get<double>() > 1);
  r = run_tacit(dir, {"wellposed", (dir / "bad").string()});
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("NOT certified"));

  // Feed-forward: nilpotent, lambda_PF = 0.
  std::vector<Triplet<double>> chain = {{1, 0, 3.0}, {2, 1, -4.0}};
  write_matrix_market(dir / "chain.mtx", CsrMatrix<double>::from_triplets(3, 3, chain));
  doc = run_tacit(dir, {"wellposed", (dir / "chain.mtx").string(), "--json"}).parsed();
  CHECK(doc.at("nilpotent") == true);
  CHECK(doc.at("lambda_pf").at("upper") == 0.0);
  CHECK(doc.at("certified") == true);
  CHECK(doc.at("norm_inf") == 4.0);
}

TEST_CASE("tacit convert round-trips models bit-exactly", "[cli]") {
  TempDir dir;
  const auto model = implicit_model();
  save_model_directory(model, dir / "m");
  const auto original = load_model<double>(dir / "m");

  auto r = run_tacit(
      dir, {"convert", (dir / "m").string(), (dir / "m.tacit").string(), "--json"});
  REQUIRE(r.code == 0);
  CHECK(r.parsed().at("format") == "native");
  CHECK(r.parsed().at("precision") == "float64");
  CHECK(is_native_model_file(dir / "m.tacit"));
  r = run_tacit(dir, {"convert", (dir / "m.tacit").string(), (dir / "back").string()});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("converted"));
  const auto back = load_model<double>(dir / "back");
  CHECK(dense(back.A()) == dense(original.A()));
  CHECK(dense(back.B()) == dense(original.B()));
  CHECK(dense(back.C()) == dense(original.C()));
  CHECK(std::vector<double>(back.bias_x().begin(), back.bias_x().end()) ==
        std::vector<double>(original.bias_x().begin(), original.bias_x().end()));
  CHECK(back.blocks() == original.blocks());

  // --format overrides the extension; float32 rounds like convert_model.
  r = run_tacit(dir, {"convert", (dir / "m").string(), (dir / "f32").string(), "--format",
                      "native", "--precision", "float32", "--json"});
  REQUIRE(r.code == 0);
  CHECK(r.parsed().at("precision") == "float32");
  CHECK(is_native_model_file(dir / "f32"));
  const auto f32 = load_model<float>(dir / "f32");
  CHECK(dense(f32.A()) == dense(convert_model<float>(original).A()));
}

TEST_CASE("tacit project matches project_inf_norm", "[cli]") {
  TempDir dir;
  const auto model = implicit_model();
  save_model_directory(model, dir / "m");
  const auto original = load_model<double>(dir / "m");
  auto expected = original.A().to_csr();
  const index_t changed = project_inf_norm(expected, 0.5);
  REQUIRE(changed > 0);

  // A model: the written model has the projected A, the rest unchanged.
  auto r = run_tacit(dir, {"project", (dir / "m").string(), "--kappa", "0.5", "-o",
                           (dir / "p").string(), "--json"});
  REQUIRE(r.code == 0);
  auto doc = r.parsed();
  CHECK(doc.at("rows_changed") == changed);
  CHECK(doc.at("norm_before").get<double>() == norm_inf(original.A()));
  CHECK(doc.at("norm_after").get<double>() == norm_inf(expected));
  CHECK(doc.at("norm_after").get<double>() <= 0.5 * (1 + 1e-12));
  const auto projected = load_model<double>(dir / "p");
  CHECK(dense(projected.A()) == expected.to_dense());
  CHECK(dense(projected.B()) == dense(original.B()));
  CHECK(dense(projected.C()) == dense(original.C()));

  // A bare matrix to a .mtx, and a native output.
  write_matrix_market(dir / "A.mtx", original.A().to_csr());
  r = run_tacit(dir, {"project", (dir / "A.mtx").string(), "--kappa", "0.5", "--output",
                      (dir / "P.mtx").string()});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("rows changed: " + std::to_string(changed)));
  CHECK(read_matrix_market<double>(dir / "P.mtx").to_dense() == expected.to_dense());
  r = run_tacit(dir, {"project", (dir / "m").string(), "--kappa", "0.5", "-o",
                      (dir / "p.tacit").string()});
  REQUIRE(r.code == 0);
  CHECK(dense(load_model<double>(dir / "p.tacit").A()) == expected.to_dense());

  // kappa above the norm changes nothing.
  doc = run_tacit(dir, {"project", (dir / "A.mtx").string(), "--kappa", "5", "-o",
                        (dir / "same.mtx").string(), "--json"})
            .parsed();
  CHECK(doc.at("rows_changed") == 0);
  CHECK(doc.at("distance_frobenius") == 0.0);
}

TEST_CASE("tacit rescale matches rescale_model and reports failures", "[cli]") {
  TempDir dir;
  // ||A||_inf = 1.2 but lambda_PF(|A|) = 0.6: rescaling brings the norm below 1.
  std::vector<Triplet<double>> t = {{0, 1, 1.2}, {1, 0, 0.3}, {2, 0, 0.7}, {2, 2, 0.1}};
  const auto model = model_around(CsrMatrix<double>::from_triplets(3, 3, t));
  save_model_directory(model, dir / "m");
  RescaleReport expected_report;
  const auto expected =
      rescale_model(load_model<double>(dir / "m"), 0.8, &expected_report);

  auto r = run_tacit(dir, {"rescale", (dir / "m").string(), "-o", (dir / "r").string(),
                           "--target", "0.8", "--json"});
  REQUIRE(r.code == 0);
  const auto doc = r.parsed();
  CHECK(doc.at("norm_before").get<double>() == 1.2);
  CHECK(doc.at("norm_after").get<double>() == expected_report.norm_after);
  CHECK(doc.at("norm_after").get<double>() <= 0.8);
  CHECK(doc.at("target") == 0.8);
  const auto rescaled = load_model<double>(dir / "r");
  CHECK(dense(rescaled.A()) == dense(expected.A()));
  CHECK(dense(rescaled.B()) == dense(expected.B()));
  CHECK(norm_inf(rescaled.A()) <= 0.8);

  r = run_tacit(dir,
                {"rescale", (dir / "m").string(), "-o", (dir / "r2.tacit").string()});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("||A||_inf: 1.2 ->"));
  CHECK(is_native_model_file(dir / "r2.tacit"));

  // Not certifiable (lambda_PF = 1.25): numerical failure, nothing written.
  save_model_directory(model_around(scaled_cycle(4, 1.25)), dir / "bad");
  r = run_tacit(dir, {"rescale", (dir / "bad").string(), "-o", (dir / "bad_r").string()});
  CHECK(r.code == 3);
  CHECK_THAT(r.err, Catch::Contains("not certified"));
  CHECK(!fs::exists(dir / "bad_r"));
  // A target below the certified bound cannot be reached.
  r = run_tacit(dir, {"rescale", (dir / "m").string(), "-o", (dir / "r3").string(),
                      "--target", "0.1"});
  CHECK(r.code == 3);
  CHECK_THAT(r.err, Catch::Contains("0.1"));

  // tanh is not positively homogeneous: the model does not allow it.
  save_model_directory(model_around(scaled_cycle(4, 0.5),
                                    {{"hidden", 0, 4, Activation{ActivationKind::tanh}}}),
                       dir / "tanh");
  r = run_tacit(dir,
                {"rescale", (dir / "tanh").string(), "-o", (dir / "tanh_r").string()});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("'hidden'"));
  CHECK_THAT(r.err, Catch::Contains("tanh"));
}

TEST_CASE("tacit solve writes the library's outputs bit-exactly", "[cli]") {
  TempDir dir;
  save_model_directory(implicit_model(), dir / "m");
  const auto model = load_model<double>(dir / "m");
  const auto input = write_inputs(dir, "U.txt", model.inputs(), 7);
  const auto U = read_vectors<double>(input, model.inputs());

  EquilibriumSolver<double> solver(model);
  Batch<double> X, Y;
  const auto expected = solver.predict(U, X, Y);
  REQUIRE(expected.ok());

  auto r = run_tacit(dir, {"solve", (dir / "m").string(), "--input", input.string(),
                           "--output", (dir / "Y.txt").string(), "--states",
                           (dir / "X.txt").string(), "--json"});
  REQUIRE(r.code == 0);
  auto doc = r.parsed();
  CHECK(doc.at("method") == to_string(expected.method));
  CHECK(doc.at("method") == "picard");
  CHECK(doc.at("status") == "converged");
  CHECK(doc.at("converged") == true);
  CHECK(doc.at("iterations") == expected.iterations);
  CHECK(doc.at("residual").get<double>() == expected.residual);
  CHECK(doc.at("columns") == 7);
  CHECK(doc.at("precision") == "float64");
  for (const char *key : {"load_seconds", "setup_seconds", "solve_seconds"})
    CHECK(doc.at(key).get<double>() >= 0);
  CHECK(columns(read_vectors<double>(dir / "Y.txt", model.outputs())) == columns(Y));
  CHECK(columns(read_vectors<double>(dir / "X.txt", model.states())) == columns(X));

  // Same bits with one thread, from a native file, and as human output.
  save_model_native(model, dir / "m.tacit");
  r = run_tacit(dir, {"solve", (dir / "m.tacit").string(), "-i", input.string(), "-o",
                      (dir / "Y1.txt").string(), "--threads", "1"});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("status: converged"));
  CHECK(read_text(dir / "Y1.txt") == read_text(dir / "Y.txt"));
  CHECK(run_tacit(dir, {"solve", (dir / "m").string(), "-i", input.string(), "-o",
                        (dir / "Y2.txt").string(), "--quiet"})
            .out.empty());

  // --repeat: the same outputs, the first and the best time, the kernels' level.
  r = run_tacit(dir, {"solve", (dir / "m").string(), "-i", input.string(), "-o",
                      (dir / "Y3.txt").string(), "--repeat", "3", "--json"});
  REQUIRE(r.code == 0);
  doc = r.parsed();
  CHECK(doc.at("repeat") == 3);
  CHECK(doc.at("best_solve_seconds").get<double>() <=
        doc.at("solve_seconds").get<double>());
  CHECK(doc.at("isa") == to_string(active_isa()));
  CHECK(read_text(dir / "Y3.txt") == read_text(dir / "Y.txt"));
  r = run_tacit(dir, {"solve", (dir / "m").string(), "-i", input.string(), "-o",
                      (dir / "Y3.txt").string(), "--repeat", "2"});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("best of 2 solves"));
  CHECK_THAT(r.out, Catch::Contains("kernels: "));
  CHECK(run_tacit(dir, {"solve", (dir / "m").string(), "-i", input.string(), "-o",
                        (dir / "Y3.txt").string(), "--repeat", "0"})
            .code == 1);

  // Options reach the solver: Picard with Anderson acceleration and a tolerance.
  SolveOptions options;
  options.method = SolveMethod::picard;
  options.picard.anderson_depth = 3;
  options.picard.rel_tol = 1e-6;
  EquilibriumSolver<double> anderson(model, options);
  Batch<double> XA, YA;
  const auto with_anderson = anderson.predict(U, XA, YA);
  r = run_tacit(dir, {"solve", (dir / "m").string(), "-i", input.string(), "-o",
                      (dir / "YA.txt").string(), "--method", "picard", "--anderson", "3",
                      "--tol", "1e-6", "--json"});
  REQUIRE(r.code == 0);
  CHECK(r.parsed().at("iterations") == with_anderson.iterations);
  CHECK(columns(read_vectors<double>(dir / "YA.txt", model.outputs())) == columns(YA));

  // float32 with the command's float32 tolerances.
  const auto model32 = load_model<float>(dir / "m");
  SolveOptions options32;
  options32.picard.rel_tol = 1e-5;
  options32.picard.abs_tol = 1e-7;
  EquilibriumSolver<float> solver32(model32, options32);
  Batch<float> X32, Y32;
  REQUIRE(solver32.predict(read_vectors<float>(input, model.inputs()), X32, Y32).ok());
  r = run_tacit(dir, {"solve", (dir / "m").string(), "-i", input.string(), "-o",
                      (dir / "Y32.txt").string(), "--precision", "float32", "--json"});
  REQUIRE(r.code == 0);
  CHECK(r.parsed().at("precision") == "float32");
  CHECK(columns(read_vectors<float>(dir / "Y32.txt", model.outputs())) == columns(Y32));
}

TEST_CASE("outputs go through symbolic links and devices without replacing them",
          "[cli]") {
  TempDir dir;
  save_model_directory(implicit_model(), dir / "m");
  const std::string m = (dir / "m").string();
  const auto input = write_inputs(dir, "U.txt", 5, 3).string();
  REQUIRE(
      run_tacit(dir, {"solve", m, "-i", input, "-o", (dir / "Y.txt").string()}).code ==
      0);
  const std::string expected = read_text(dir / "Y.txt");
  REQUIRE(!expected.empty());

  // /dev/stdout is a symbolic link: the outputs come out on stdout.
  auto r = run_tacit(dir, {"solve", m, "-i", input, "-o", "/dev/stdout", "--quiet"});
  CHECK(r.code == 0);
  CHECK(r.out == expected);
  CHECK(fs::is_symlink("/dev/stdout"));
  r = run_tacit(dir, {"solve", m, "-i", input, "-o", "/dev/null"});
  CHECK(r.code == 0);
  CHECK(fs::is_character_file("/dev/null"));
  if (fs::is_character_file("/dev/full")) {
    r = run_tacit(dir, {"solve", m, "-i", input, "-o", "/dev/full"});
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains("/dev/full"));
    CHECK(fs::is_character_file("/dev/full"));
  }

  // A user's link keeps pointing at its target, which receives the outputs.
  write_text(dir / "target.txt", "old\n");
  fs::create_symlink(dir / "target.txt", dir / "link.txt");
  r = run_tacit(dir, {"solve", m, "-i", input, "-o", (dir / "link.txt").string()});
  CHECK(r.code == 0);
  CHECK(fs::is_symlink(dir / "link.txt"));
  CHECK(read_text(dir / "target.txt") == expected);

  // A model directory cannot replace a file.
  write_text(dir / "file", "keep");
  r = run_tacit(dir, {"convert", m, (dir / "file").string()});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("not a directory"));
  CHECK(read_text(dir / "file") == "keep");
}

TEST_CASE("tacit solve sweeps a feed-forward model", "[cli]") {
  TempDir dir;
  ResNetLikeShape shape;
  shape.image = 4;
  shape.stage_channels = {2, 3};
  shape.stage_layers = {2, 2};
  shape.classes = 3;
  save_model_directory(resnet_like_model<double>(shape, 3), dir / "ff");
  const auto model = load_model<double>(dir / "ff");
  const auto input = write_inputs(dir, "U.txt", model.inputs(), 3);
  EquilibriumSolver<double> solver(model);
  Batch<double> X, Y;
  REQUIRE(solver.predict(read_vectors<double>(input, model.inputs()), X, Y).ok());

  const auto r = run_tacit(dir, {"solve", (dir / "ff").string(), "-i", input.string(),
                                 "-o", (dir / "Y.txt").string(), "--json"});
  REQUIRE(r.code == 0);
  CHECK(r.parsed().at("method") == "sweep");
  CHECK(r.parsed().at("iterations") == 0);
  CHECK(columns(read_vectors<double>(dir / "Y.txt", model.outputs())) == columns(Y));
}

TEST_CASE("tacit certify --widths reports the pre-activation widths of each state block",
          "[cli]") {
  TempDir dir;
  ResNetLikeShape shape;
  shape.image = 4;
  shape.stage_channels = {2, 3};
  shape.stage_layers = {2, 2};
  shape.classes = 3;
  save_model_directory(resnet_like_model<double>(shape, 3), dir / "ff");
  const auto model = load_model<double>(dir / "ff");
  REQUIRE(model.blocks().size() >= 2);
  const auto input = write_inputs(dir, "U.txt", model.inputs(), 2);
  write_text(dir / "L.txt", "0\n1\n");
  const std::vector<double> eps = {0.001, 0.01};

  const auto r =
      run_tacit(dir, {"certify", (dir / "ff").string(), "-i", input.string(), "--labels",
                      (dir / "L.txt").string(), "--eps", "0.001,0.01", "--bound",
                      "linear", "--widths", "--json"});
  REQUIRE(r.code == 0);
  const auto doc = r.parsed();
  const auto &widths = doc.at("widths");
  REQUIRE(widths.size() == 4); // interval and linear at each eps

  // The same quantities from the library, on the first input.
  BoundAnalyzer<double> an(model);
  std::vector<double> u0(static_cast<std::size_t>(model.inputs()));
  read_vectors<double>(input, model.inputs()).get_column(0, u0);
  const auto nom = an.nominal(std::span<const double>(u0));
  for (std::size_t e = 0; e < eps.size(); ++e) {
    const auto box = linf_box<double>(u0, eps[e]);
    LinearBoundStats stats;
    const StateBounds<double> bounds[2] = {an.interval_bounds(nom, box),
                                           an.linear_state_bounds(nom, box, &stats)};
    CHECK(widths.at(2 * e + 1).at("refined") == stats.refined);
    CHECK(widths.at(2 * e + 1).at("truncated") == stats.truncated);
    CHECK_FALSE(widths.at(2 * e).contains("refined"));
    for (int b = 0; b < 2; ++b) {
      const auto &row = widths.at(2 * e + b);
      CHECK(row.at("eps").get<double>() == eps[e]);
      CHECK(row.at("bound") == (b == 0 ? "interval" : "linear"));
      const auto &blocks = row.at("blocks");
      REQUIRE(blocks.size() == model.blocks().size());
      for (std::size_t k = 0; k < model.blocks().size(); ++k) {
        const StateBlock &sb = model.blocks()[k];
        CAPTURE(e, b, sb.name);
        double sum = 0, most = 0;
        index_t unstable = 0;
        for (index_t i = sb.offset; i < sb.offset + sb.size; ++i) {
          const double w = bounds[b].z_upper[i] - bounds[b].z_lower[i];
          sum += w;
          most = std::max(most, w);
          unstable += bounds[b].z_lower[i] < 0 && bounds[b].z_upper[i] > 0 ? 1 : 0;
        }
        CHECK(blocks.at(k).at("name") == sb.name);
        CHECK(blocks.at(k).at("states") == sb.size);
        CHECK(blocks.at(k).at("mean_width").get<double>() ==
              Approx(sum / double(sb.size)).epsilon(1e-12));
        CHECK(blocks.at(k).at("max_width").get<double>() == Approx(most).epsilon(1e-12));
        CHECK(blocks.at(k).at("unstable") == unstable);
      }
    }
  }
  // The deepest block's interval widths grow with eps.
  const auto &last0 = widths.at(0).at("blocks").back(),
             &last1 = widths.at(2).at("blocks").back();
  CHECK(last1.at("mean_width").get<double>() > last0.at("mean_width").get<double>());

  // Human output: one line per block and bound.
  const auto h = run_tacit(dir, {"certify", (dir / "ff").string(), "-i", input.string(),
                                 "--labels", (dir / "L.txt").string(), "--eps", "0.01",
                                 "--bound", "interval", "--widths"});
  REQUIRE(h.code == 0);
  CHECK(h.out.find("eps 0.01, interval bound:") != std::string::npos);
  CHECK(h.out.find(model.blocks().back().name + ": ") != std::string::npos);
  CHECK(h.out.find("linear bound:") == std::string::npos);
}

TEST_CASE("tacit solve reports non-convergence with exit code 3 and still writes",
          "[cli]") {
  TempDir dir;
  save_model_directory(implicit_model(), dir / "m");
  const auto model = load_model<double>(dir / "m");
  const auto input = write_inputs(dir, "U.txt", model.inputs(), 4);
  SolveOptions options;
  options.picard.max_iterations = 2;
  EquilibriumSolver<double> solver(model, options);
  Batch<double> X, Y;
  const auto expected = solver.predict(read_vectors<double>(input, model.inputs()), X, Y);
  REQUIRE(expected.status == SolveStatus::max_iterations);

  auto r = run_tacit(dir, {"solve", (dir / "m").string(), "-i", input.string(), "-o",
                           (dir / "Y.txt").string(), "--max-iterations", "2"});
  CHECK(r.code == 3);
  CHECK_THAT(r.err, Catch::Contains("warning: the solve did not converge"));
  CHECK_THAT(r.err, Catch::Contains("max_iterations"));
  CHECK_THAT(r.err, Catch::Contains("residual"));
  CHECK_THAT(r.out, Catch::Contains("status: max_iterations"));
  REQUIRE(fs::exists(dir / "Y.txt"));
  CHECK(columns(read_vectors<double>(dir / "Y.txt", model.outputs())) == columns(Y));

  r = run_tacit(dir, {"solve", (dir / "m").string(), "-i", input.string(), "-o",
                      (dir / "Y.txt").string(), "--max-iterations", "2", "--json"});
  CHECK(r.code == 3);
  const auto doc = r.parsed();
  CHECK(doc.at("status") == "max_iterations");
  CHECK(doc.at("converged") == false);
  CHECK(doc.at("residual").get<double>() == expected.residual);
  CHECK(doc.at("residual").get<double>() > 0);
}

TEST_CASE("tacit solve rejects bad inputs and options", "[cli]") {
  TempDir dir;
  save_model_directory(implicit_model(), dir / "m");
  const std::string m = (dir / "m").string(), y = (dir / "Y.txt").string();
  const auto good = write_inputs(dir, "U.txt", 5, 2).string();

  // Input errors: exit 2, message naming the file (and line).
  write_text(dir / "short.txt", "1 2 3 4 5\n1 2 3\n");
  auto r = run_tacit(dir, {"solve", m, "-i", (dir / "short.txt").string(), "-o", y});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains((dir / "short.txt").string() + ":2"));
  write_text(dir / "word.txt", "1 2 three 4 5\n");
  r = run_tacit(dir, {"solve", m, "-i", (dir / "word.txt").string(), "-o", y});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("word.txt:1"));
  write_text(dir / "empty.txt", "# nothing\n");
  r = run_tacit(dir, {"solve", m, "-i", (dir / "empty.txt").string(), "-o", y});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("no input vectors"));
  r = run_tacit(dir, {"solve", m, "-i", (dir / "missing.txt").string(), "-o", y});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("missing.txt"));
  r = run_tacit(dir, {"solve", (dir / "nomodel").string(), "-i", good, "-o", y});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("nomodel"));
  r = run_tacit(dir,
                {"solve", m, "-i", good, "-o", (dir / "no" / "such" / "Y.txt").string()});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("Y.txt"));
  CHECK(!fs::exists(y));

  // Usage errors: exit 1, message naming the option.
  const std::vector<std::pair<std::vector<std::string>, std::string>> usage = {
      {{"solve", m, "-o", y}, "missing required option --input"},
      {{"solve", m, "-i", good}, "missing required option --output"},
      {{"solve", m, "-i", good, "-o", y, "--method", "newton"}, "invalid value 'newton'"},
      {{"solve", m, "-i", good, "-o", y, "--anderson", "100"},
       "--anderson is out of range"},
      {{"solve", m, "-i", good, "-o", y, "--tol", "small"}, "--tol"},
      {{"solve", m, "-i", good, "-o", y, "--max-iterations", "0"}, "--max-iterations"},
      {{"solve", (dir / "A.mtx").string(), "-i", good, "-o", y}, "not a matrix"},
  };
  for (const auto &[args, message] : usage) {
    INFO(message);
    r = run_tacit(dir, args);
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Catch::Contains(message));
  }
  CHECK(!fs::exists(y));
}

TEST_CASE("tacit demo: structured ResNet20 against its CSR form, the implicit model at a "
          "reduced size and certified accuracy, deterministically",
          "[cli][slow]") {
  TempDir dir;
#if defined(__SANITIZE_ADDRESS__)
  const bool csr = false; // sanitizer builds: the 0.5 GB CSR form is left out
#else
  const bool csr = true;
#endif
  std::vector<std::string> args = {"demo", "--size",    "8",  "--batch",
                                   "4",    "--certify", "20", "--json"};
  if (!csr)
    args.push_back("--no-csr");
  auto r = run_tacit(dir, args);
  REQUIRE(r.code == 0);
  const auto doc = r.parsed();
  CHECK(doc.at("size") == 8);
  CHECK(doc.at("batch") == 4);
  REQUIRE(doc.at("models").size() == 2);
  const auto &ff = doc.at("models")[0];
  const auto &im = doc.at("models")[1];

  // The feed-forward model is the library's ResNet20 (seed 20), structured.
  const auto resnet = resnet20<double>(ResNetShortcut::option_a, 20);
  CHECK(ff.at("kind") == "feed-forward");
  CHECK(ff.at("n") == resnet.states());
  CHECK(ff.at("nnz") == resnet.A().nnz());
  CHECK(ff.at("a_bytes") == resnet.A().bytes());
  CHECK(ff.at("a_bytes").get<double>() * 100 < ff.at("a_csr_bytes").get<double>());
  CHECK(ff.at("certified") == true);
  CHECK(ff.at("lambda_pf").at("upper") == 0.0);
  CHECK(ff.at("method") == "sweep");
  CHECK(ff.at("status") == "converged");
  CHECK(ff.at("first_solve_seconds").get<double>() > 0);
  CHECK(ff.at("solve_seconds").get<double>() > 0);
  // Its checksum is that of the library's outputs for the same inputs.
  EquilibriumSolver<double> solver(resnet);
  Batch<double> X, Y;
  REQUIRE(solver.predict(resnet20_inputs<double>(4, 120), X, Y).ok());
  CHECK(ff.at("checksum") == fnv1a_hex(Y));
  // The same network as CSR gives the same outputs up to rounding.
  REQUIRE(ff.contains("csr") == csr);
  if (csr) {
    CHECK(ff.at("csr").at("status") == "converged");
    CHECK(ff.at("csr").at("max_abs_difference").get<double>() < 1e-9);
    CHECK(ff.at("csr").at("solve_seconds").get<double>() > 0);
  }

  CHECK(im.at("kind") == "implicit");
  CHECK(im.at("certified") == true);
  CHECK(im.at("lambda_pf").at("upper").get<double>() <= 0.9);
  CHECK(im.at("scc").at("nilpotent") == false);
  CHECK(im.at("method") == "picard");
  CHECK(im.at("status") == "converged");
  CHECK(im.at("iterations").get<int>() > 0);
  CHECK(im.at("residual").get<double>() < 1e-8);

  // Certified accuracy: the library's on the same images with the committed
  // CNN (a missing dataset fails here, naming it).
  const auto &rb = doc.at("robustness");
  REQUIRE_FALSE(rb.contains("skipped"));
  {
    const auto data_dir = testutil::fashion_test_data();
    const auto data = testutil::fashion_test_images(data_dir, 20);
    BoundAnalyzer<double> analyzer(testutil::fashion_model("fashion_cnn"));
    const std::vector<double> eps = {0.01};
    const auto expected =
        certify_dataset<double>(analyzer, data.images, data.labels, eps, false,
                                testutil::pixel_certify_options(BoundMethod::linear));
    CHECK(rb.at("images") == 20);
    CHECK(rb.at("correct") == expected.correct);
    CHECK(rb.at("certified") == expected.certified[0]);
    CHECK(expected.certified[0] > 0);
  }

  // Same checksums with one thread; human output.
  r = run_tacit(dir, {"demo", "--size", "8", "--batch", "4", "--threads", "1", "--no-csr",
                      "--certify", "0"});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("fnv1a " + ff.at("checksum").get<std::string>()));
  CHECK_THAT(r.out, Catch::Contains("fnv1a " + im.at("checksum").get<std::string>()));
  CHECK_THAT(r.out, Catch::Contains("ResNet20"));
  CHECK_THAT(r.out, Catch::Contains("vs SpMM"));
  CHECK_THAT(r.out, !Catch::Contains("vs CSR"));
  CHECK_THAT(r.out, !Catch::Contains("Fashion-MNIST"));

  r = run_tacit(dir, {"demo", "--size", "6"});
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::Contains("--size must be a multiple of 4"));
}

#endif // TACIT_CLI_PATH
