// End-to-end tests of `tacit compose`: a cascade of two models written by
// `tacit train --init` gives the outputs of running them one after the
// other (`tacit solve`), with its certificate from the parts; a feedback
// connection is analysed as a whole; mismatched sizes are an error and
// nothing is written.
#ifdef TACIT_CLI_PATH

#include <catch2/catch.hpp>

#include "cli_test_util.hpp"
#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

using Dir = tacit_test::CommandDir;
using Result = tacit_test::CommandResult;
using tacit_test::read_text;
using tacit_test::write_text;

Result run(const Dir &dir, const std::vector<std::string> &args) {
  return tacit_test::run_tacit(dir, args);
}

std::vector<double> numbers(const std::string &text) {
  std::istringstream s(text);
  std::vector<double> v;
  double x;
  while (s >> x)
    v.push_back(x);
  return v;
}

/// A fresh model from `tacit train --init SPEC` (0 epochs: the initialisation).
void init_model(const Dir &d, const std::string &spec, int p, int q,
                const std::string &out) {
  std::ofstream u(d / "init_U.txt"), l(d / "init_L.txt");
  for (int j = 0; j < 4; ++j) {
    for (int i = 0; i < p; ++i)
      u << ((i * 3 + j) % 5) * 0.1 << (i + 1 < p ? " " : "\n");
    l << (j % q) << "\n";
  }
  u.close();
  l.close();
  const auto r = run(d, {"train", "--init", spec, "-i", d / "init_U.txt", "--labels",
                         d / "init_L.txt", "--lr", "0.01", "--epochs", "1",
                         "--batch-size", "4", "-o", out});
  INFO(r.err);
  REQUIRE(r.code == 0);
}

} // namespace

TEST_CASE("tacit compose cascade equals running the two models in turn",
          "[cli][compose]") {
  Dir d;
  init_model(d, "mlp:5,8,4", 5, 4, d / "m1.tacit");
  init_model(d, "implicit:n=12,p=4,q=3,density=0.4,kappa=0.8", 4, 3, d / "m2.tacit");
  {
    std::ofstream u(d / "U.txt");
    u << "0.5 -0.25 1 0.75 -1\n-0.5 0.25 0.125 -0.75 0.3\n";
  }
  auto r = run(d, {"compose", "cascade", d / "m1.tacit", d / "m2.tacit", "-o",
                   d / "c.tacit", "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto doc = nlohmann::json::parse(r.out);
  CHECK(doc["p"] == 5);
  CHECK(doc["q"] == 3);
  CHECK(doc["certified"] == true);
  CHECK(doc["lambda_pf_upper"].get<double>() > 0);
  r = run(d, {"solve", d / "m1.tacit", "-i", d / "U.txt", "-o", d / "Y1.txt"});
  REQUIRE(r.code == 0);
  r = run(d, {"solve", d / "m2.tacit", "-i", d / "Y1.txt", "-o", d / "Y2.txt"});
  REQUIRE(r.code == 0);
  r = run(d, {"solve", d / "c.tacit", "-i", d / "U.txt", "-o", d / "Y.txt"});
  REQUIRE(r.code == 0);
  const auto want = numbers(read_text(d.path() / "Y2.txt"));
  const auto got = numbers(read_text(d.path() / "Y.txt"));
  REQUIRE(got.size() == want.size());
  REQUIRE(want.size() == 6);
  for (std::size_t i = 0; i < want.size(); ++i)
    CHECK(std::abs(got[i] - want[i]) <= 1e-9 * (1 + std::abs(want[i])));

  // Feedback: m1 (5 -> 4) and a loop 4 -> 5.
  init_model(d, "implicit:n=6,p=4,q=5,density=0.4,kappa=0.3", 4, 5, d / "loop.tacit");
  r = run(d, {"compose", "feedback", d / "m1.tacit", d / "loop.tacit", "-o",
              d / "f.tacit", "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out)["certificate"].get<std::string>().find("composed") !=
        std::string::npos);

  // Sizes that do not connect: an error, nothing written.
  r = run(d,
          {"compose", "cascade", d / "m2.tacit", d / "m1.tacit", "-o", d / "bad.tacit"});
  CHECK(r.code == 1);
  CHECK(r.err.find("cascade") != std::string::npos);
  CHECK(!fs::exists(d.path() / "bad.tacit"));
  r = run(d,
          {"compose", "sideways", d / "m1.tacit", d / "m2.tacit", "-o", d / "bad.tacit"});
  CHECK(r.code != 0);
  CHECK(!fs::exists(d.path() / "bad.tacit"));
}

#endif // TACIT_CLI_PATH
