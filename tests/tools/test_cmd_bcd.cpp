// End-to-end tests of `tacit bcd`: a tanh network fitted by BCD (one JSON
// line per iteration, the RMSE going down, the written model predicting what
// the command reported); a kappa that breaks the X-step's condition and a
// negative penalty are clear errors that write nothing; `tacit train` with
// --test-input/--test-targets validates on text data.
#ifdef TACIT_CLI_PATH

#include <catch2/catch.hpp>

#include "cli_test_util.hpp"
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

using Dir = tacit_test::CommandDir;
using Result = tacit_test::CommandResult;
using tacit_test::read_text;
using tacit_test::write_text;

Result run(const Dir &dir, const std::vector<std::string> &args) {
  return tacit_test::run_tacit(dir, args);
}

/// 40 samples of 3 inputs and 2 targets y = (tanh(u0 - u1), 0.5 tanh(u2)).
void write_data(const Dir &d) {
  std::string u, y;
  for (int j = 0; j < 40; ++j) {
    const double a = ((j * 7) % 11) / 5.0 - 1, b = ((j * 5) % 13) / 6.0 - 1,
                 c = ((j * 3) % 7) / 3.0 - 1;
    u += std::to_string(a) + " " + std::to_string(b) + " " + std::to_string(c) + "\n";
    y += std::to_string(std::tanh(a - b)) + " " + std::to_string(0.5 * std::tanh(c)) +
         "\n";
  }
  write_text(d / "U.txt", u);
  write_text(d / "Y.txt", y);
}

std::vector<nlohmann::json> json_lines(const std::string &out) {
  std::vector<nlohmann::json> v;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);)
    v.push_back(nlohmann::json::parse(line));
  return v;
}

} // namespace

TEST_CASE("tacit bcd fits a tanh network and writes it", "[cli][bcd]") {
  Dir d;
  write_data(d);
  const auto r = run(d, {"bcd",
                         "--init",
                         "mlp:3,4,2,phi=tanh",
                         "-i",
                         d / "U.txt",
                         "--targets",
                         d / "Y.txt",
                         "--test-input",
                         d / "U.txt",
                         "--test-targets",
                         d / "Y.txt",
                         "--iterations",
                         "3",
                         "--lambda",
                         "0.1",
                         "--mu",
                         "0.1",
                         "-o",
                         d / "m.tacit",
                         "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 5); // start, 3 iterations, done
  CHECK(lines.front().at("event") == "start");
  CHECK(lines.at(3).at("iteration") == 3);
  const auto &done = lines.back();
  REQUIRE(done.at("event") == "done");
  const double start = lines.front().at("train_rmse"), end = done.at("train_rmse");
  CHECK(end < start);
  CHECK(done.at("test_rmse").get<double>() == Approx(end).epsilon(1e-12));
  // The written model predicts with that RMSE.
  const auto s = run(d, {"solve", d / "m.tacit", "-i", d / "U.txt", "-o", d / "P.txt"});
  INFO(s.err);
  REQUIRE(s.code == 0);
  std::istringstream pred(read_text(d / "P.txt")), targ(read_text(d / "Y.txt"));
  double sum = 0, a = 0, b = 0;
  int count = 0;
  while (pred >> a && targ >> b) {
    sum += (a - b) * (a - b);
    ++count;
  }
  REQUIRE(count == 80);
  CHECK(std::sqrt(sum / count) == Approx(end).epsilon(1e-6));
}

TEST_CASE("tacit bcd: the X-step condition and bad penalties are clear errors",
          "[cli][bcd]") {
  Dir d;
  write_data(d);
  const std::vector<std::string> base = {"bcd",       "--init",    "mlp:3,4,2,phi=tanh",
                                         "-i",        d / "U.txt", "--targets",
                                         d / "Y.txt", "-o",        d / "m.tacit"};
  auto args = base;
  args.insert(args.end(), {"--lambda", "1", "--mu", "0.25", "--kappa", "0.9"});
  const auto k = run(d, args);
  CHECK(k.code == 3);
  CHECK(k.err.find("kappa = 0.9 exceeds sqrt(mu / lambda) = 0.5") != std::string::npos);
  CHECK(k.err.find("nothing written") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "m.tacit"));
  args = base;
  args.insert(args.end(), {"--group-lasso", "-2"});
  const auto neg = run(d, args);
  CHECK(neg.code == 1);
  CHECK(neg.err.find("-2") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "m.tacit"));
  // A sigmoid network has no divergence here: refused, naming the block.
  args = base;
  args.at(2) = "mlp:3,4,2,phi=sigmoid";
  const auto sig = run(d, args);
  CHECK(sig.code == 1);
  CHECK(sig.err.find("sigmoid") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "m.tacit"));
}

TEST_CASE("tacit bcd --state-scale: relu states at that scale, tanh refused",
          "[cli][bcd]") {
  Dir d;
  write_data(d);
  const std::vector<std::string> base = {
      "-i", d / "U.txt", "--targets",   d / "Y.txt", "--iterations", "2", "--state-scale",
      "2",  "-o",        d / "m.tacit", "--json"};
  std::vector<std::string> args = {"bcd", "--init", "mlp:3,4,2,phi=tanh"};
  args.insert(args.end(), base.begin(), base.end());
  const auto t = run(d, args);
  CHECK(t.code == 1);
  CHECK(t.err.find("--state-scale 2 needs relu states") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "m.tacit"));
  args = {"bcd", "--init", "implicit:n=4,p=3,q=2,density=1,kappa=0.5", "--kappa", "0.5"};
  args.insert(args.end(), base.begin(), base.end());
  const auto r = run(d, args);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(fs::exists(d / "m.tacit"));
  const auto done = json_lines(r.out).back();
  CHECK(done.at("event") == "done");
  CHECK(std::isfinite(done.at("train_rmse").get<double>()));
}

TEST_CASE("tacit train --test-input --test-targets validates every epoch", "[cli][bcd]") {
  Dir d;
  write_data(d);
  const auto r = run(d, {"train",        "--init",    "mlp:3,4,2,phi=tanh",
                         "-i",           d / "U.txt", "--targets",
                         d / "Y.txt",    "--loss",    "squared",
                         "--test-input", d / "U.txt", "--test-targets",
                         d / "Y.txt",    "--epochs",  "2",
                         "--batch-size", "10",        "-o",
                         d / "t.tacit",  "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 3);
  CHECK(lines.at(1).at("validation_loss").get<double>() > 0);
  const auto h =
      run(d, {"train", "--init", "mlp:3,4,2,phi=tanh", "-i", d / "U.txt", "--targets",
              d / "Y.txt", "--loss", "squared", "--test-input", d / "U.txt",
              "--test-targets", d / "Y.txt", "--epochs", "1", "-o", d / "t.tacit"});
  REQUIRE(h.code == 0);
  CHECK(h.out.find("(RMSE ") != std::string::npos);
  const auto missing =
      run(d, {"train", "--init", "mlp:3,4,2", "-i", d / "U.txt", "--targets", d / "Y.txt",
              "--loss", "squared", "--test-input", d / "U.txt", "-o", d / "t.tacit"});
  CHECK(missing.code == 1);
  CHECK(missing.err.find("--test-targets") != std::string::npos);
}


TEST_CASE("tacit bcd --refit-select: BCD refits select among the columns B reads",
          "[cli][bcd][select]") {
  Dir d;
  write_data(d);
  const auto r = run(d, {"bcd", "--init", "implicit:n=4,p=3,q=2,density=1,kappa=0.5",
                         "--kappa", "0.5", "-i", d / "U.txt", "--targets", d / "Y.txt",
                         "--iterations", "2", "--group-lasso", "0.001", "--refit-select",
                         "0.5", "--refit-iterations", "2", "--trial-iterations", "1",
                         "--growth", "1.1", "-o", d / "m.tacit", "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto lines = json_lines(r.out);
  const auto done = lines.back();
  REQUIRE(done.at("event") == "done");
  const auto candidates = done.at("candidates").get<std::vector<int>>();
  const auto selected = done.at("selected_inputs").get<std::vector<int>>();
  CHECK(candidates.size() == 3);
  // The written model reads exactly the selected inputs.
  CHECK(done.at("inputs_read").get<std::vector<int>>() == selected);
  int trials = 0;
  for (const auto &l : lines)
    trials += l.at("event") == "select" && l.at("input").get<int>() >= 0 ? 1 : 0;
  CHECK(trials >= 3);
  const auto lone = run(d, {"bcd", "--init", "implicit:n=4,p=3,q=2,density=1,kappa=0.5",
                            "-i", d / "U.txt", "--targets", d / "Y.txt", "--select-floor",
                            "1", "-o", d / "n.tacit"});
  CHECK(lone.code == 1);
  CHECK(lone.err.find("belong to --refit-select") != std::string::npos);
  const auto shrink = run(d, {"bcd", "--init", "implicit:n=4,p=3,q=2,density=1,kappa=0.5",
                              "-i", d / "U.txt", "--targets", d / "Y.txt", "--growth",
                              "0.9", "-o", d / "n.tacit"});
  CHECK(shrink.code == 1);
}

#endif
