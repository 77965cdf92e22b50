// End-to-end tests of `tacit train` and `tacit gradient`: training from text
// data, JSON per epoch, resuming a checkpoint with the same bits, and bad
// input (labels out of range, wrong column counts, NaN, lost
// well-posedness) reported with the file and line or the epoch and step,
// with nothing written.
#ifdef TACIT_CLI_PATH

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cli_test_util.hpp"

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

using Dir = tacit_test::CommandDir;
using tacit_test::read_text;
using tacit_test::write_text;

tacit_test::CommandResult run(const Dir &dir, const std::vector<std::string> &args) {
  return tacit_test::run_tacit(dir, args);
}

/// 12 samples of 4 inputs, labels in 0..2.
void write_data(const Dir &d) {
  std::string u, l;
  for (int j = 0; j < 12; ++j) {
    for (int i = 0; i < 4; ++i)
      u += std::to_string(((j * 7 + i * 3) % 11) / 10.0 - 0.5) + (i < 3 ? " " : "\n");
    l += std::to_string(j % 3) + "\n";
  }
  write_text(d / "U.txt", u);
  write_text(d / "L.txt", l);
}

} // namespace

TEST_CASE("tacit train: an MLP from text data, JSON per epoch, then its gradient",
          "[cli][train]") {
  Dir d;
  write_data(d);
  const auto r = run(d, {"train", "--init", "mlp:4,6,3", "-i", d / "U.txt", "--labels",
                         d / "L.txt", "--epochs", "3", "--batch-size", "5", "--lr", "0.1",
                         "--momentum", "0.9", "-o", d / "m.tacit", "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::istringstream lines(r.out);
  std::string line;
  int epochs = 0;
  bool done = false;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("event") == "epoch") {
      ++epochs;
      CHECK(j.at("epoch") == epochs);
      CHECK(j.at("samples") == 12);
    } else {
      CHECK(j.at("event") == "done");
      CHECK(j.at("constraint") == "none");
      done = true;
    }
  }
  CHECK(epochs == 3);
  CHECK(done);
  REQUIRE(fs::exists(d / "m.tacit"));
  const auto g = run(d, {"gradient", d / "m.tacit", "-i", d / "U.txt", "--labels",
                         d / "L.txt", "-o", d / "g.tacit", "--json"});
  INFO(g.err);
  REQUIRE(g.code == 0);
  const auto doc = nlohmann::json::parse(g.out);
  CHECK(doc.at("samples") == 12);
  CHECK(doc.at("tensors").size() == 4); // B and C weights, the hidden bias, by
  CHECK(fs::exists(d / "g.tacit"));
}

TEST_CASE(
    "tacit train --standardize: the saved model takes raw inputs, bad values refused",
    "[cli][train]") {
  Dir d;
  write_data(d);
  auto train = [&](const std::vector<std::string> &extra, const std::string &out) {
    std::vector<std::string> a = {
        "train",     "--init",       "mlp:4,6,3", "-i",
        d / "U.txt", "--labels",     d / "L.txt", "--epochs",
        "2",         "--batch-size", "4",         "--lr",
        "0.1",       "--test-input", d / "U.txt", "--test-labels",
        d / "L.txt", "-o",           d / out,     "--json"};
    a.insert(a.end(), extra.begin(), extra.end());
    return run(d, a);
  };
  auto last_validation = [](const std::string &out) {
    std::istringstream lines(out);
    std::string line;
    double loss = -1;
    while (std::getline(lines, line)) {
      const auto j = nlohmann::json::parse(line);
      if (j.at("event") == "epoch")
        loss = j.at("validation_loss").get<double>();
    }
    return loss;
  };
  for (const std::string how : {"auto", "0.1,0.4"}) {
    INFO(how);
    const auto r = train({"--standardize", how}, "s.tacit");
    INFO(r.err);
    REQUIRE(r.code == 0);
    const double trained = last_validation(r.out);
    REQUIRE(trained > 0);
    // lr 0: the validation pass of the saved model on the raw inputs.
    const auto check = run(d, {"train", d / "s.tacit", "-i", d / "U.txt", "--labels",
                               d / "L.txt", "--epochs", "1", "--lr", "0", "--test-input",
                               d / "U.txt", "--test-labels", d / "L.txt", "-o",
                               d / "check.tacit", "--json", "--precision", "float64"});
    INFO(check.err);
    REQUIRE(check.code == 0);
    CHECK(last_validation(check.out) == Approx(trained).epsilon(1e-9));
  }
  for (const std::string bad : {"1", "0.1,0", "0.1,-2", "a,b", "1,2,3"}) {
    INFO(bad);
    const auto r = train({"--standardize", bad}, "bad.tacit");
    CHECK(r.code == 1);
    CHECK(r.err.find("--standardize") != std::string::npos);
    CHECK_FALSE(fs::exists(d / "bad.tacit"));
  }
  const auto r = train({"--standardize", "auto", "--group-lasso-path", "0.1"}, "p");
  CHECK(r.code == 1);
  CHECK(r.err.find("does not combine") != std::string::npos);
}

TEST_CASE("tacit train: resuming a checkpoint gives the model of an uninterrupted run",
          "[cli][train]") {
  Dir d;
  write_data(d);
  const std::vector<std::string> common = {"--init",
                                           "implicit:n=8,p=4,q=3,density=0.4,kappa=0.8",
                                           "-i",
                                           d / "U.txt",
                                           "--labels",
                                           d / "L.txt",
                                           "--batch-size",
                                           "4",
                                           "--optimizer",
                                           "adam",
                                           "--lr",
                                           "0.05",
                                           "--precision",
                                           "float32",
                                           "-q"};
  auto args = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"train"};
    a.insert(a.end(), common.begin(), common.end());
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  REQUIRE(run(d, args({"--epochs", "3", "-o", d / "straight.tacit"})).code == 0);
  REQUIRE(run(d, args({"--epochs", "1", "--checkpoint", d / "cp", "-o", d / "one.tacit"}))
              .code == 0);
  CHECK(fs::exists(d / "cp/epoch-0001/model.tacit"));
  const auto r = run(d, args({"--epochs", "3", "--checkpoint", d / "cp", "--resume", "-o",
                              d / "resumed.tacit"}));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(read_text(d / "resumed.tacit") == read_text(d / "straight.tacit"));
}

TEST_CASE("tacit train: bad input names the file and line and writes nothing",
          "[cli][train]") {
  Dir d;
  write_data(d);
  auto train = [&](const std::string &u, const std::string &l) {
    return run(d, {"train", "--init", "mlp:4,6,3", "-i", u, "--labels", l, "-o",
                   d / "out.tacit"});
  };
  // Label 7 on line 3 (the model has 3 classes).
  std::string labels = read_text(d / "L.txt");
  labels.replace(labels.find('2'), 1, "7");
  write_text(d / "L7.txt", labels);
  auto r = train(d / "U.txt", d / "L7.txt");
  CHECK(r.code == 2);
  CHECK(r.err.find("L7.txt:3") != std::string::npos);
  CHECK(r.err.find("label 7") != std::string::npos);
  // Three values on line 2.
  std::string u = read_text(d / "U.txt");
  const auto eol = u.find('\n');
  std::string u2 =
      u.substr(0, eol + 1) + "0.1 0.2 0.3\n" + u.substr(u.find('\n', eol + 1) + 1);
  write_text(d / "U3.txt", u2);
  r = train(d / "U3.txt", d / "L.txt");
  CHECK(r.code == 2);
  CHECK(r.err.find("U3.txt:2") != std::string::npos);
  // NaN on line 1.
  write_text(d / "Unan.txt", "nan 0 0 0\n" + u.substr(eol + 1));
  r = train(d / "Unan.txt", d / "L.txt");
  CHECK(r.code == 2);
  CHECK(r.err.find("Unan.txt:1") != std::string::npos);
  // Targets with the wrong column count.
  write_text(d / "Y.txt", "1 2 3\n1 2\n");
  r = run(d, {"train", "--init", "mlp:4,6,3", "-i", d / "U.txt", "--targets", d / "Y.txt",
              "--loss", "squared", "-o", d / "out.tacit"});
  CHECK(r.code == 2);
  CHECK(r.err.find("Y.txt:2") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "out.tacit"));
}

TEST_CASE("tacit train --teacher: distillation from a trained model, its misuse refused",
          "[cli][train]") {
  Dir d;
  write_data(d);
  auto base = [&](const std::string &out) {
    return std::vector<std::string>{"train",     "--init",       "mlp:4,6,3", "-i",
                                    d / "U.txt", "--labels",     d / "L.txt", "--epochs",
                                    "3",         "--batch-size", "5",         "--lr",
                                    "0.1",       "-o",           out,         "--json"};
  };
  auto with = [](std::vector<std::string> a, const std::vector<std::string> &more) {
    a.insert(a.end(), more.begin(), more.end());
    return a;
  };
  // The teacher: a wider MLP trained longer on the same data.
  auto r = run(d, {"train", "--init", "mlp:4,16,3", "--seed", "3", "-i", d / "U.txt",
                   "--labels", d / "L.txt", "--epochs", "20", "--batch-size", "4", "--lr",
                   "0.1", "-o", d / "teacher.tacit"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  // Weight 0: the plain run, the same model file; weight 0.9: another one.
  REQUIRE(run(d, base(d / "plain.tacit")).code == 0);
  r = run(d, with(base(d / "w0.tacit"),
                  {"--teacher", d / "teacher.tacit", "--distill", "0"}));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(read_text(d / "w0.tacit") == read_text(d / "plain.tacit"));
  r = run(d, with(base(d / "w9.tacit"), {"--teacher", d / "teacher.tacit", "--distill",
                                         "0.9", "--temperature", "3"}));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(read_text(d / "w9.tacit") != read_text(d / "plain.tacit"));
  // Misuse: each a usage or input error, nothing written.
  r = run(d, with(base(d / "x.tacit"), {"--teacher", d / "teacher.tacit"}));
  CHECK(r.code == 1);
  CHECK(r.err.find("--distill") != std::string::npos);
  r = run(d, with(base(d / "x.tacit"), {"--distill", "0.5"}));
  CHECK(r.code == 1);
  CHECK(r.err.find("--teacher") != std::string::npos);
  r = run(d, with(base(d / "x.tacit"),
                  {"--teacher", d / "teacher.tacit", "--distill", "1.5"}));
  CHECK(r.code == 1);
  r = run(d, with(base(d / "x.tacit"),
                  {"--teacher", d / "teacher.tacit", "--fine-tune-distill", "0.5"}));
  CHECK(r.code == 1);
  CHECK(r.err.find("--group-lasso-path") != std::string::npos);
  std::string two;
  for (int j = 0; j < 12; ++j)
    two += std::to_string(j % 2) + "\n";
  write_text(d / "L2.txt", two);
  REQUIRE(run(d, {"train", "--init", "mlp:4,5,2", "-i", d / "U.txt", "--labels",
                  d / "L2.txt", "--epochs", "1", "-o", d / "two.tacit"})
              .code == 0);
  r = run(d,
          with(base(d / "x.tacit"), {"--teacher", d / "two.tacit", "--distill", "0.5"}));
  CHECK(r.code == 2);
  CHECK(r.err.find("two.tacit") != std::string::npos);
  CHECK(r.err.find("4 inputs and 2") != std::string::npos);
  // The teacher is not overwritten by the output.
  const std::string teacher_bytes = read_text(d / "teacher.tacit");
  r = run(d, with(base(d / "teacher.tacit"),
                  {"--teacher", d / "teacher.tacit", "--distill", "0.5"}));
  CHECK(r.code == 1);
  CHECK(r.err.find("is the input") != std::string::npos);
  CHECK(read_text(d / "teacher.tacit") == teacher_bytes);
  CHECK_FALSE(fs::exists(d / "x.tacit"));
}

TEST_CASE("tacit train: losing well-posedness stops with the epoch and step",
          "[cli][train]") {
  Dir d;
  write_data(d);
  const auto r =
      run(d, {"train", "--init", "implicit:n=8,p=4,q=3,density=0.5,kappa=0.9", "-i",
              d / "U.txt", "--labels", d / "L.txt", "--constraint", "none", "--lr",
              "1000", "--epochs", "5", "--batch-size", "4", "-o", d / "out.tacit"});
  CHECK(r.code == 3);
  CHECK(r.err.find("epoch") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "out.tacit"));
}

TEST_CASE("tacit train --group-lasso-path: a model per lambda, path.json, bad lambdas",
          "[cli][train][path]") {
  Dir d;
  write_data(d);
  const std::vector<std::string> common = {
      "train",     "--init",       "mlp:4,6,3", "-i",   d / "U.txt", "--labels",
      d / "L.txt", "--batch-size", "4",         "--lr", "0.1"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const auto r =
      run(d, with({"--group-lasso-path", "0.001,0.5", "--path-epochs", "2",
                   "--fine-tune-epochs", "1", "--keep-inputs", "-o", d / "p", "--json",
                   "--test-input", d / "U.txt", "--test-labels", d / "L.txt"}));
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto doc = nlohmann::json::parse(read_text(fs::path(d / "p") / "path.json"));
  REQUIRE(doc.at("points").size() == 2);
  for (const auto &p : doc.at("points")) {
    CHECK(fs::exists(p.at("trained").get<std::string>()));
    CHECK(fs::exists(p.at("pruned").get<std::string>()));
    CHECK(fs::exists(p.at("tuned").get<std::string>()));
    CHECK(p.at("size").at("inputs") == 4);
  }
  // Its figures: the curve and the kept-input mask (2 x 2 inputs, 3 pixels each).
  const auto c =
      run(d, {"plot", "curve", fs::path(d / "p") / "path.json", "--x", "states",
              "--width", "100", "--height", "60", "-o", d / "c.png", "--json"});
  INFO(c.err);
  REQUIRE(c.code == 0);
  CHECK(c.parsed().at("width") == 100);
  CHECK(fs::exists(d / "c.png"));
  const auto m = run(d, {"plot", "mask", fs::path(d / "p") / "path.json", "--lambda",
                         "0.5", "--scale", "3", "-o", d / "m.png", "--json"});
  INFO(m.err);
  REQUIRE(m.code == 0);
  CHECK(m.parsed().at("width") == 6);
  CHECK(m.parsed().at("kept_inputs") == 4);
  const auto bad = run(d, {"plot", "mask", fs::path(d / "p") / "path.json", "--lambda",
                           "0.7", "-o", d / "m2.png"});
  CHECK(bad.code == 2);
  CHECK(bad.err.find("no point with lambda 0.7") != std::string::npos);
  // Decreasing, repeated or negative lambdas: usage errors naming the entry.
  for (const auto &[list, what] :
       {std::pair{"0.01,0.001", "entry 2 (0.001) is not larger than entry 1"},
        std::pair{"0.01,0.01", "entry 2 (0.01) is not larger"},
        std::pair{"-0.1", "entry 1 (-0.1) must be finite and >= 0"},
        std::pair{"0.1,abc", "--group-lasso-path entry 2"}}) {
    const auto e = run(d, with({"--group-lasso-path", list, "-o", d / "q"}));
    CHECK(e.code == 1);
    CHECK(e.err.find(what) != std::string::npos);
    CHECK_FALSE(fs::exists(d / "q"));
  }
  const auto both =
      run(d, with({"--group-lasso-path", "0.1", "--group-lasso", "0.1", "-o", d / "q"}));
  CHECK(both.code == 1);
  // The fine-tuning's own schedule: in path.json, on its epoch lines; a bad
  // one is a usage error, and it needs the path.
  const auto sch =
      run(d, with({"--group-lasso-path", "0.001", "--path-epochs", "1",
                   "--fine-tune-epochs", "2", "--fine-tune-lr", "0.2",
                   "--fine-tune-schedule", "step:1:0.5", "-o", d / "s", "--json",
                   "--test-input", d / "U.txt", "--test-labels", d / "L.txt"}));
  INFO(sch.err);
  REQUIRE(sch.code == 0);
  const auto sdoc = nlohmann::json::parse(read_text(fs::path(d / "s") / "path.json"));
  CHECK(sdoc.at("fine_tune_schedule") == "step:1:0.5");
  std::vector<double> tune_lr;
  std::istringstream lines(sch.out);
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("event") == "epoch" && j.value("phase", "") == "fine-tune")
      tune_lr.push_back(j.at("lr").get<double>());
  }
  CHECK(tune_lr == std::vector<double>{0.2, 0.1});
  const auto badsch = run(d, with({"--group-lasso-path", "0.1", "--fine-tune-epochs", "1",
                                   "--fine-tune-schedule", "linear", "-o", d / "q"}));
  CHECK(badsch.code == 1);
  CHECK(badsch.err.find("--fine-tune-schedule") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "q"));
  const auto alone =
      run(d, with({"--fine-tune-schedule", "cosine", "-o", d / "m.tacit"}));
  CHECK(alone.code == 1);
  CHECK(alone.err.find("belongs to --group-lasso-path") != std::string::npos);
}

TEST_CASE("tacit train --refit-select: a selection from the inputs read, written",
          "[cli][train][select]") {
  Dir d;
  write_data(d);
  const auto r = run(d, {"train",
                         "--init",
                         "implicit:n=3,p=4,q=3,density=1,kappa=0.5",
                         "-i",
                         d / "U.txt",
                         "--labels",
                         d / "L.txt",
                         "--epochs",
                         "2",
                         "--batch-size",
                         "6",
                         "--kappa",
                         "0.5",
                         "--group-lasso",
                         "0.01",
                         "--groups",
                         "inputs",
                         "--refit-select",
                         "0.5",
                         "--refit-epochs",
                         "2",
                         "--trial-epochs",
                         "1",
                         "-o",
                         d / "s.tacit",
                         "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::vector<nlohmann::json> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);)
    lines.push_back(nlohmann::json::parse(line));
  const auto done = lines.back();
  REQUIRE(done.at("event") == "done");
  const auto candidates = done.at("candidates").get<std::vector<int>>();
  const auto selected = done.at("selected_inputs").get<std::vector<int>>();
  CHECK(candidates.size() == 4); // a small penalty for 2 epochs zeroes nothing
  CHECK(selected.size() <= candidates.size());
  int controls = 0, trials = 0;
  for (const auto &l : lines)
    if (l.at("event") == "select")
      ++(l.at("input").get<int>() < 0 ? controls : trials);
  CHECK(controls >= 1);
  CHECK(trials >= 4); // the first round tries every candidate
  CHECK(fs::exists(d / "s.tacit"));
  // The refit options belong to --refit-select.
  const auto lone = run(d, {"train", "--init", "mlp:4,3", "-i", d / "U.txt", "--labels",
                            d / "L.txt", "--trial-epochs", "3", "-o", d / "t.tacit"});
  CHECK(lone.code == 1);
  CHECK(lone.err.find("belong to --refit-select") != std::string::npos);
}

#endif
