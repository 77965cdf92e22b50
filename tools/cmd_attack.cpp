// tacit attack: sparse top-k attacks (rows of S) and the LP attack.

#include <cmath>
#include <cstdint>
#include <iostream>

#include <tacit/analysis/attack.hpp>
#include <tacit/analysis/bounds.hpp>
#include <tacit/io/io.hpp>
#include <tacit/core/model.hpp>

#include "cli_common.hpp"
#include "cli_dataset.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

int run_attack(Invocation &inv) {
  const std::filesystem::path model_path = inv.args.positionals().at(0);
  const auto &a = inv.args;
  const std::string method =
      a.choice("method", {"random", "gradient", "lp"}).value_or("random");
  const std::vector<double> ks =
      parse_list(a.text("k").value_or("1,2,5,10"), "--k", 0.0, 1e9);
  const index_t limit = a.integer("limit", 0, std::int64_t(1) << 40).value_or(-1);
  const double magnitude = a.real("magnitude", 0.0, 1e300).value_or(1.0);
  const double sigma = a.real("sigma", 1e-12, 1e300).value_or(0.1);
  const int targets = static_cast<int>(a.integer("targets", 1, 1000).value_or(1));
  const auto seed =
      static_cast<std::uint64_t>(a.integer("seed", 0, INT64_MAX).value_or(1));
  const bool max_mass = a.flag("max-mass-row");

  Progress progress(inv.progress_enabled());
  progress.update("loading " + model_path.string() + " ...", true);
  const auto model = load_model<double>(model_path);
  const LabelledData data = load_labelled(a, model.inputs(), limit);
  const double lo = data.images ? 0.0 : 1.0, hi = data.images ? 1.0 : 0.0;
  for (std::size_t j = 0; j < data.labels.size(); ++j)
    if (data.labels[j] >= model.outputs())
      throw CommandFailure(exit_input,
                           data.source + ": label " + std::to_string(data.labels[j]) +
                               " of input " + std::to_string(j + 1) +
                               " is not below q = " + std::to_string(model.outputs()));
  const auto report = [&](index_t done, index_t total) {
    progress.update("attacked " + fmt_count(done) + " / " + fmt_count(total) + " inputs");
  };
  AttackSummary res;
  if (method == "lp") {
    LpAttackOptions o;
    o.k = ks;
    o.sigma = sigma;
    o.targets = targets;
    o.domain_lo = lo;
    o.domain_hi = hi;
    progress.update("analysing the model ...", true);
#if TACIT_HAVE_LP
    BoundAnalyzer<double> analyzer(model);
    res = lp_attack<double>(analyzer, data.inputs, data.labels, o, report);
#else
    throw Unsupported("--method lp needs the LP component (COIN-OR CLP), which this build "
                      "lacks");
#endif
  } else {
    TopKOptions o;
    o.k.clear();
    for (double k : ks) {
      if (k != std::floor(k))
        throw UsageError("--k: the top-k attack needs whole numbers, got " + fmt_g(k));
      o.k.push_back(static_cast<index_t>(k));
    }
    o.signs = parse_sign_method(method);
    o.max_mass_row = max_mass;
    o.magnitude = magnitude;
    o.domain_lo = lo;
    o.domain_hi = hi;
    o.seed = seed;
    res = topk_attack<double>(model, data.inputs, data.labels, o, report);
  }
  progress.clear();
  const auto frac = [&](index_t v) {
    return res.count ? double(v) / double(res.count) : 0.0;
  };
  if (inv.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (std::size_t b = 0; b < res.budgets.size(); ++b)
      rows.push_back({{"k", res.budgets[b]},
                      {"correct", res.correct[b]},
                      {"accuracy", frac(res.correct[b])},
                      {"mean_changed", res.mean_changed[b]}});
    nlohmann::json doc = {{"model", model_path.string()},
                          {"data", data.source},
                          {"method", method},
                          {"inputs", res.count},
                          {"clean_correct", res.clean_correct},
                          {"clean_accuracy", frac(res.clean_correct)},
                          {"results", rows},
                          {"seconds", res.seconds}};
    if (method == "lp") {
      doc["sigma"] = sigma;
      doc["targets"] = targets;
    } else {
      doc["magnitude"] = magnitude;
      doc["row"] = max_mass ? "max-mass" : "true-class";
    }
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "attacked " << fmt_count(res.count) << " input"
              << (res.count == 1 ? "" : "s") << " of " << data.source << " (" << method
              << (method == "lp" ? ", sigma " + fmt_g(sigma)
                                 : ", magnitude " + fmt_g(magnitude))
              << ")\n"
              << "  clean accuracy: " << fmt_g(100 * frac(res.clean_correct), 4) << "%\n";
    for (std::size_t b = 0; b < res.budgets.size(); ++b)
      std::cout << "  k = " << fmt_g(res.budgets[b]) << ": accuracy "
                << fmt_g(100 * frac(res.correct[b]), 4) << "%, "
                << fmt_g(res.mean_changed[b], 4) << " inputs changed on average\n";
    std::cout << "  time: " << fmt_seconds(res.seconds) << "\n";
  }
  return exit_ok;
}

std::vector<OptionSpec> attack_options() {
  std::vector<OptionSpec> o = data_options();
  o.push_back(
      {"k", 0, "K,...",
       "top-k: inputs changed; lp: l1 budget in units of sigma (default 1,2,5,10)"});
  o.push_back({"method", 0, "M",
               "random or gradient (top-k attack signs), or lp (default random)"});
  o.push_back({"magnitude", 0, "M", "top-k: change of each input (default 1)"});
  o.push_back({"max-mass-row", 0, "", "top-k: attack the row of S with the largest sum"});
  o.push_back({"seed", 0, "S", "top-k random signs: seed (default 1)"});
  o.push_back({"sigma", 0, "S", "lp: bound on each |u_i - u0_i| (default 0.1)"});
  o.push_back({"targets", 0, "T", "lp: classes tried, highest output first (default 1)"});
  return o;
}

[[maybe_unused]] const bool registered = register_command({
    .name = "attack",
    .summary = "sparse attacks: top-k entries of a row of S, or the LP attack",
    .description =
        "Top-k attack: for each input, the k largest entries of the row of\n"
        "S = |C| (I - |A|)^-1 |B| + |D| of its true class (or of the heaviest row)\n"
        "name the inputs to change by +-magnitude (clipped to [0, 1] for images), with\n"
        "random signs or the signs that decrease the margin to the runner-up class\n"
        "(gradient through the equilibrium). LP attack: maximises y_target - y_label\n"
        "over a linear relaxation of the equilibrium with |u - u0| <= sigma and\n"
        "||u - u0||_1 <= k sigma (COIN-OR CLP), then runs the true model on the LP's\n"
        "input. Reports the accuracy under attack for each k and the mean number of\n"
        "inputs changed.",
    .positionals = {{"MODEL", "model directory or native model file"}},
    .options = attack_options(),
    .epilog =
        "JSON fields: clean_accuracy, results (k, correct, accuracy, mean_changed),\n"
        "seconds.\n",
    .order = 61,
    .run = run_attack,
    .usage = "MODEL (--data DIR | --input U.txt --labels L.txt) --k K,... [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
