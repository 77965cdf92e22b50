#pragma once
// Running the `tacit` command from end-to-end tests: arguments quoted for
// /bin/sh, stdout and stderr captured in a scratch directory, the exit code
// decoded. TACIT_CLI_PATH (set by CMake) names the binary.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include <sys/wait.h>

#include "io_test_util.hpp"

namespace tacit_test {

/// Single-quotes an argument for /bin/sh.
inline std::string shell_quote(const std::string &arg) {
  std::string quoted = "'";
  for (char c : arg)
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

/// What one run of the command left behind.
struct CommandResult {
  int code = -1; ///< exit code; -1 when killed by a signal
  std::string out;
  std::string err;
  /// stdout parsed as JSON (fails the test if it is not JSON).
  nlohmann::json parsed() const {
    nlohmann::json doc;
    REQUIRE_NOTHROW(doc = nlohmann::json::parse(out));
    return doc;
  }
};

/// A scratch directory whose paths read as strings (command arguments).
struct CommandDir : ScratchDir {
  std::string operator/(const std::string &name) const {
    return (path() / name).string();
  }
};

/// Runs `PROGRAM ARGS...` with stdin from /dev/null and stdout and stderr
/// captured in files of `dir`.
inline CommandResult run_program(const ScratchDir &dir, const std::string &program,
                                 const std::vector<std::string> &args) {
  std::string command = shell_quote(program);
  for (const auto &a : args)
    command += " " + shell_quote(a);
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  command += " > " + shell_quote(out.string()) + " 2> " + shell_quote(err.string()) +
             " < /dev/null";
  const int status = std::system(command.c_str());
  CommandResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  INFO(program << " stderr: " << r.err);
  return r;
}

/// Runs `tacit ARGS...` (see run_program).
inline CommandResult run_tacit(const ScratchDir &dir,
                               const std::vector<std::string> &args) {
  return run_program(dir, TACIT_CLI_PATH, args);
}

} // namespace tacit_test
