// End-to-end tests of `tacit prune` and of the penalties of `tacit train`:
// proximal group lasso on the hidden states, prune, the same outputs from
// `tacit solve`; a negative lambda, a group file naming a state that does not
// exist and a prune that would remove every state are clear errors that write
// nothing; `tacit info` lists the group kinds. The small CNN of the training
// fixtures (a residual connection, folded batch norm): channel groups listed,
// trained with --groups channels; a lambda that zeroes every channel makes a
// prune that refuses, naming the block, and writes nothing; a prune of the
// trained network with some zero channels reports channels per block and
// `tacit solve` gives the same outputs.
#ifdef TACIT_CLI_PATH

#include <catch2/catch.hpp>

#include "cli_test_util.hpp"
#include <nlohmann/json.hpp>

#include <atomic>
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

const fs::path data_dir = fs::path(TACIT_TEST_DATA_DIR);

using Dir = tacit_test::CommandDir;
using Result = tacit_test::CommandResult;
using tacit_test::read_text;
using tacit_test::write_text;

Result run(const Dir &dir, const std::vector<std::string> &args) {
  return tacit_test::run_tacit(dir, args);
}

/// 24 samples of 4 inputs, labels in 0..2.
void write_data(const Dir &d) {
  std::string u, l;
  for (int j = 0; j < 24; ++j) {
    for (int i = 0; i < 4; ++i)
      u += std::to_string(((j * 7 + i * 3) % 11) / 10.0 - 0.5) + (i < 3 ? " " : "\n");
    l += std::to_string(j % 3) + "\n";
  }
  write_text(d / "U.txt", u);
  write_text(d / "L.txt", l);
}

std::vector<std::string> train_args(const Dir &d, const std::string &lambda) {
  return {"train",       "--init",
          "mlp:4,8,6,3", "-i",
          d / "U.txt",   "--labels",
          d / "L.txt",   "--epochs",
          "6",           "--batch-size",
          "6",           "--lr",
          "0.1",         "--group-lasso",
          lambda,        "--groups",
          "states",      "-o",
          d / "m.tacit", "--json"};
}

} // namespace

TEST_CASE("tacit train --group-lasso, tacit prune, the same outputs", "[cli][prune]") {
  Dir d;
  write_data(d);
  const auto t = run(d, train_args(d, "0.09"));
  INFO(t.err);
  REQUIRE(t.code == 0);
  nlohmann::json done;
  std::istringstream lines(t.out);
  for (std::string line; std::getline(lines, line);)
    done = nlohmann::json::parse(line);
  REQUIRE(done.at("event") == "done");
  CHECK(done.at("groups") == 14);
  const int zero = done.at("zero_groups").get<int>();
  REQUIRE(zero > 0);
  REQUIRE(zero < 14);
  const auto p = run(
      d, {"prune", d / "m.tacit", "--keep-inputs", "-o", d / "small.tacit", "--json"});
  INFO(p.err);
  REQUIRE(p.code == 0);
  const auto doc = nlohmann::json::parse(p.out);
  CHECK(doc.at("before").at("states") == 14);
  CHECK(doc.at("after").at("states").get<int>() <= 14 - zero);
  CHECK(doc.at("after").at("parameters").get<int>() <
        doc.at("before").at("parameters").get<int>());
  CHECK(doc.at("after").at("inputs") == 4);
  for (const char *m : {"m", "small"}) {
    const auto s = run(d, {"solve", d / (std::string(m) + ".tacit"), "-i", d / "U.txt",
                           "-o", d / (std::string(m) + ".Y")});
    INFO(s.err);
    REQUIRE(s.code == 0);
  }
  CHECK(read_text(d / "m.Y") == read_text(d / "small.Y"));
  const auto info = run(d, {"info", d / "m.tacit", "--json"});
  REQUIRE(info.code == 0);
  const auto groups = nlohmann::json::parse(info.out).at("groups");
  REQUIRE(groups.size() == 5);
  CHECK(groups.at(0).at("kind") == "inputs");
  CHECK(groups.at(0).at("count") == 4);
  CHECK(groups.at(1).at("kind") == "state-rows");
  CHECK(groups.at(1).at("count") == 14);
}

TEST_CASE("tacit train and prune: bad penalties, group files and prunes",
          "[cli][prune]") {
  Dir d;
  write_data(d);
  const auto neg = run(d, train_args(d, "-1"));
  CHECK(neg.code == 1);
  CHECK(neg.err.find("lambda -1") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "m.tacit"));
  write_text(d / "groups.txt", "ok state 0-2\nbad row 3 14\n");
  auto args = train_args(d, "0.1");
  args.at(16) = d / "groups.txt";
  const auto file = run(d, args);
  CHECK(file.code == 2);
  CHECK(file.err.find("groups.txt:2") != std::string::npos);
  CHECK(file.err.find("state 14 does not exist") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "m.tacit"));
  // A lambda that zeroes every state: the prune refuses and writes nothing.
  const auto all = run(d, train_args(d, "1000"));
  INFO(all.err);
  REQUIRE(all.code == 0);
  const auto p = run(d, {"prune", d / "m.tacit", "-o", d / "small.tacit"});
  CHECK(p.code == 1);
  CHECK(p.err.find("every one of the 14 states") != std::string::npos);
  CHECK(p.err.find("nothing written") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "small.tacit"));
}

TEST_CASE("tacit train --groups channels and tacit prune of a CNN", "[cli][prune]") {
  Dir d;
  // 24 samples of the fixture CNN's 1 x 8 x 8 input, labels in 0..2.
  std::string u, l;
  for (int j = 0; j < 24; ++j) {
    for (int i = 0; i < 64; ++i)
      u += std::to_string(((j * 7 + i * 3) % 11) / 10.0 - 0.5) + (i < 63 ? " " : "\n");
    l += std::to_string(j % 3) + "\n";
  }
  write_text(d / "U.txt", u);
  write_text(d / "L.txt", l);
  const std::string cnn = (data_dir / "train/cnn.onnx").string();
  const auto imported = run(d, {"import-onnx", cnn, "-o", d / "cnn.tacit"});
  INFO(imported.err);
  REQUIRE(imported.code == 0);
  const auto info = run(d, {"info", d / "cnn.tacit", "--json"});
  INFO(info.err);
  REQUIRE(info.code == 0);
  bool listed = false;
  const auto info_doc = nlohmann::json::parse(info.out);
  for (const auto &g : info_doc.at("groups"))
    listed = listed || (g.at("kind") == "channels" && g.at("count").get<int>() > 0);
  CHECK(listed);
  auto train = [&](const std::string &lambda, const std::string &out) {
    return run(d, {"train", cnn, "-i", d / "U.txt", "--labels", d / "L.txt", "--epochs",
                   "4", "--batch-size", "6", "--lr", "0.1", "--group-lasso", lambda,
                   "--groups", "channels", "-o", d / out, "--json"});
  };
  const auto all = train("1000", "zero.tacit");
  INFO(all.err);
  REQUIRE(all.code == 0);
  const auto p = run(d, {"prune", d / "zero.tacit", "-o", d / "small.tacit"});
  CHECK(p.code == 1);
  CHECK(p.err.find("every channel of block") != std::string::npos);
  CHECK(p.err.find("nothing written") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "small.tacit"));
  // A moderate lambda: some channels go.
  const auto t = train("0.05", "m.tacit");
  INFO(t.err);
  REQUIRE(t.code == 0);
  const auto q = run(d, {"prune", d / "m.tacit", "-o", d / "small.tacit", "--json"});
  INFO(q.err);
  REQUIRE(q.code == 0);
  const auto doc = nlohmann::json::parse(q.out);
  REQUIRE(doc.at("channels").size() > 0);
  int before = 0, after = 0;
  for (const auto &c : doc.at("channels")) {
    before += c.at("before").get<int>();
    after += c.at("after").get<int>();
  }
  CHECK(after < before);
  CHECK(doc.at("after").at("flops").get<double>() <
        doc.at("before").at("flops").get<double>());
  for (const char *m : {"m", "small"}) {
    const auto s = run(d, {"solve", d / (std::string(m) + ".tacit"), "-i", d / "U.txt",
                           "-o", d / (std::string(m) + ".Y")});
    INFO(s.err);
    REQUIRE(s.code == 0);
  }
  CHECK(read_text(d / "m.Y") == read_text(d / "small.Y"));
  // The pruned network through ONNX and back with its layers kept (the
  // classifier after the global pooling stays two operators, as trained):
  // the same outputs, every digit, in float64 and float32, and the same ONNX
  // file when exported again.
  const auto e = run(d, {"export-onnx", d / "small.tacit", "-o", d / "small.onnx"});
  INFO(e.err);
  REQUIRE(e.code == 0);
  const auto back =
      run(d, {"import-onnx", d / "small.onnx", "-o", d / "back.tacit", "--keep-layers"});
  INFO(back.err);
  REQUIRE(back.code == 0);
  for (const char *precision : {"float64", "float32"}) {
    INFO(precision);
    for (const char *m : {"small", "back"}) {
      const auto s = run(d, {"solve", d / (std::string(m) + ".tacit"), "-i", d / "U.txt",
                             "-o", d / (std::string(m) + "." + precision + ".Y"),
                             "--precision", precision});
      INFO(s.err);
      REQUIRE(s.code == 0);
    }
    CHECK(read_text(d / ("small." + std::string(precision) + ".Y")) ==
          read_text(d / ("back." + std::string(precision) + ".Y")));
  }
  const auto again = run(d, {"export-onnx", d / "back.tacit", "-o", d / "again.onnx"});
  INFO(again.err);
  REQUIRE(again.code == 0);
  CHECK(read_text(d / "small.onnx") == read_text(d / "again.onnx"));
}

#endif
