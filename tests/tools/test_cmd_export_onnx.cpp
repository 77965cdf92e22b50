// End-to-end tests of `tacit export-onnx`: the exported graph runs in PyTorch
// (tools/onnx_torch.py, torch.nn.functional in float64) with tacit's outputs,
// and one full-batch SGD step of `tacit train` from an exported file equals
// PyTorch's SGD step from the same file to 1e-10 relative per tensor.
#ifdef TACIT_CLI_PATH

#include <catch2/catch.hpp>

#include "cli_test_util.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

const fs::path data_dir = fs::path(TACIT_TEST_DATA_DIR);
const fs::path script = data_dir.parent_path().parent_path() / "tools" / "onnx_torch.py";

using Dir = tacit_test::CommandDir;
using Result = tacit_test::CommandResult;
using tacit_test::read_text;
using tacit_test::run_program;

Result run_cli(const Dir &dir, const std::vector<std::string> &args) {
  return run_program(dir, TACIT_CLI_PATH, args);
}
Result python(const Dir &dir, const std::vector<std::string> &args) {
  std::vector<std::string> a = {script.string()};
  a.insert(a.end(), args.begin(), args.end());
  return run_program(dir, "/usr/bin/python3", a);
}

/// `count` random inputs of size p (normal, 17 digits) and labels in [0, q).
void write_data(const Dir &d, int count, int p, int q, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::ofstream u(d / "U.txt"), l(d / "L.txt");
  char buf[40];
  for (int j = 0; j < count; ++j) {
    for (int i = 0; i < p; ++i) {
      std::snprintf(buf, sizeof buf, "%.17g", normal(rng));
      u << buf << (i + 1 < p ? " " : "\n");
    }
    l << (rng() % static_cast<unsigned>(q)) << "\n";
  }
}

} // namespace

TEST_CASE("tacit export-onnx: the graph runs in PyTorch with tacit's outputs",
          "[cli][onnx_export]") {
  struct Case {
    const char *file;
    int p, q;
  };
  for (const Case c :
       {Case{"onnx/tiny_cnn.onnx", 3 * 10 * 10, 5}, Case{"onnx/residual_mlp.onnx", 20, 6},
        Case{"train/cnn.onnx", 1 * 8 * 8, 3},
        Case{"onnx/resnet20.onnx", 3 * 32 * 32, 10}}) {
    Dir d;
    INFO(c.file);
    const auto model = d / "m.tacit";
    Result r = run_cli(d, {"import-onnx", (data_dir / c.file).string(), "-o", model});
    INFO(r.err);
    REQUIRE(r.code == 0);
    r = run_cli(d, {"export-onnx", model, "-o", d / "net.onnx"});
    REQUIRE(r.code == 0);
    REQUIRE(r.out.find("exported") != std::string::npos);
    write_data(d, 5, c.p, c.q, 3);
    r = run_cli(d, {"solve", model, "-i", d / "U.txt", "-o", d / "Y.txt"});
    REQUIRE(r.code == 0);
    r = python(d, {"compare", d / "net.onnx", "-i", d / "U.txt", "-y", d / "Y.txt",
                   "--tol", "1e-12"});
    INFO(r.out << r.err);
    CHECK(r.code == 0);
  }
}

TEST_CASE("tacit export-onnx: one SGD step of tacit train equals PyTorch's",
          "[cli][onnx_export][train]") {
  // The small CNN (batch norm folded, a residual connection) and the MLP of
  // the training fixtures, exported, then one full-batch SGD step in float64.
  struct Case {
    const char *file;
    int p, q;
  };
  for (const Case c :
       {Case{"train/cnn.onnx", 1 * 8 * 8, 3}, Case{"train/mlp.onnx", 12, 4}}) {
    Dir d;
    INFO(c.file);
    Result r =
        run_cli(d, {"export-onnx", (data_dir / c.file).string(), "-o", d / "net.onnx"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    write_data(d, 16, c.p, c.q, 9);
    r = run_cli(d, {"train",        d / "net.onnx",
                    "-i",           d / "U.txt",
                    "--labels",     d / "L.txt",
                    "--loss",       "cross-entropy",
                    "--optimizer",  "sgd",
                    "--lr",         "0.5",
                    "--batch-size", "16",
                    "--epochs",     "1",
                    "--shuffle",    "none",
                    "--precision",  "float64",
                    "-o",           d / "stepped.tacit"});
    REQUIRE(r.code == 0);
    r = run_cli(d, {"export-onnx", d / "stepped.tacit", "-o", d / "stepped.onnx"});
    REQUIRE(r.code == 0);
    r = python(d, {"sgd-step", d / "net.onnx", d / "stepped.onnx", "-i", d / "U.txt",
                   "--labels", d / "L.txt", "--lr", "0.5", "--tol", "1e-10"});
    INFO(r.out << r.err);
    CHECK(r.code == 0);
    CHECK(r.out.find("largest relative error") != std::string::npos);
  }
}

TEST_CASE("tacit export-onnx: a model without an ONNX form is an error, nothing written",
          "[cli][onnx_export]") {
  Dir d;
  // A truly implicit model from `tacit train --init` is not feed-forward.
  write_data(d, 6, 4, 3, 1);
  Result r =
      run_cli(d, {"train", "--init", "implicit:n=8,p=4,q=3,density=0.5,kappa=0.9", "-i",
                  d / "U.txt", "--labels", d / "L.txt", "--lr", "0.01", "--epochs", "1",
                  "--batch-size", "6", "-o", d / "implicit.tacit"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  r = run_cli(d, {"export-onnx", d / "implicit.tacit", "-o", d / "net.onnx"});
  CHECK(r.code != 0);
  CHECK(r.err.find("feed-forward") != std::string::npos);
  CHECK(!fs::exists(d.path() / "net.onnx"));
  r = run_cli(d, {"export-onnx", d / "implicit.tacit"});
  CHECK(r.code != 0);
  CHECK(r.err.find("-o") != std::string::npos);
}

#endif // TACIT_CLI_PATH
