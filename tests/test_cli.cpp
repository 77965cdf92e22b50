// End-to-end tests of the `tacit` command: each test writes its inputs into a
// fresh temporary directory, runs the binary with std::system and checks the
// exit code, stdout (human text or JSON) and stderr.
#ifdef TACIT_CLI_PATH

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

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

/// A fresh directory removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("tacit_cli_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string &name) const { return path / name; }
};

std::string read_text(const fs::path &file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const fs::path &file, const std::string &text) {
  std::ofstream out(file, std::ios::binary);
  out << text;
}

/// Single-quotes an argument for /bin/sh.
std::string shell_quote(const std::string &arg) {
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

struct RunResult {
  int code = -1; ///< exit code; -1 when killed by a signal
  std::string out;
  std::string err;
  /// stdout parsed as JSON (fails the test if it is not JSON).
  json parsed() const {
    json doc;
    REQUIRE_NOTHROW(doc = json::parse(out));
    return doc;
  }
};

/// Runs `tacit ARGS...` with stdout and stderr captured in `dir`.
RunResult run_tacit(const TempDir &dir, const std::vector<std::string> &args) {
  std::string command = shell_quote(TACIT_CLI_PATH);
  for (const auto &a : args) command += " " + shell_quote(a);
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  command += " > " + shell_quote(out.string()) + " 2> " + shell_quote(err.string()) +
             " < /dev/null";
  const int status = std::system(command.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  INFO("tacit stderr: " << r.err);
  return r;
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

#endif // TACIT_CLI_PATH
