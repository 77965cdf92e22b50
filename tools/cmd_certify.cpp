// tacit certify: certified l_inf robustness of a model on labelled inputs.

#include <algorithm>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include <tacit/analysis/bounds.hpp>
#include <tacit/core/model.hpp>
#include <tacit/io/io.hpp>

#include "cli_common.hpp"
#include "cli_dataset.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

/// Pre-activation widths of one bound per state block: where a bound loses
/// its tightness through depth, and how many ReLU-like states it leaves
/// unstable (their pre-activation interval contains 0).
struct BlockWidths {
  std::string name;
  index_t states = 0, unstable = 0;
  double mean_width = 0, max_width = 0;
};
struct WidthReport {
  double eps = 0;
  std::string bound;
  std::vector<BlockWidths> blocks;
  /// Linear bound: pre-activation bounds refined by back-substitution, and
  /// whether the refinement stopped at its work budget.
  index_t refined = 0;
  bool truncated = false;
};

template <class T>
std::vector<BlockWidths> block_widths(const Model<T> &model, const StateBounds<T> &s) {
  std::vector<StateBlock> blocks = model.blocks();
  if (blocks.empty())
    blocks.push_back({"states", 0, model.states(), {}});
  std::vector<BlockWidths> out;
  for (const StateBlock &b : blocks) {
    BlockWidths w;
    w.name = b.name;
    w.states = b.size;
    for (index_t i = b.offset; i < b.offset + b.size; ++i) {
      const double width = double(s.z_upper[i]) - double(s.z_lower[i]);
      w.mean_width += width;
      w.max_width = std::max(w.max_width, width);
      w.unstable += s.z_lower[i] < T(0) && s.z_upper[i] > T(0) ? 1 : 0;
    }
    w.mean_width = b.size ? w.mean_width / double(b.size) : 0.0;
    out.push_back(std::move(w));
  }
  return out;
}

/// The widths of the bounds up to `method` on the first input at each eps.
template <class T>
std::vector<WidthReport>
width_reports(const BoundAnalyzer<T> &analyzer, const Batch<T> &inputs,
              std::span<const double> eps, const CertifyOptions &options) {
  std::vector<T> u0(static_cast<std::size_t>(inputs.rows()));
  inputs.get_column(0, u0);
  const auto nom = analyzer.nominal(std::span<const T>(u0));
  const Model<T> &model = analyzer.model();
  std::vector<WidthReport> out;
  for (const double e : eps) {
    const auto box = linf_box<T>(u0, static_cast<T>(e), static_cast<T>(options.domain_lo),
                                 static_cast<T>(options.domain_hi));
    if (options.method == BoundMethod::global) {
      out.push_back({e, "global", block_widths(model, analyzer.global_bounds(nom, box))});
      continue;
    }
    out.push_back(
        {e, "interval", block_widths(model, analyzer.interval_bounds(nom, box))});
    if (options.method != BoundMethod::interval) {
      LinearBoundStats stats;
      const auto s = analyzer.linear_state_bounds(nom, box, &stats);
      out.push_back(
          {e, "linear", block_widths(model, s), stats.refined, stats.truncated});
    }
  }
  return out;
}

template <class T> int certify(Invocation &inv) {
  const std::filesystem::path model_path = inv.args.positionals().at(0);
  const auto &a = inv.args;
  const std::vector<double> eps =
      parse_list(a.text("eps").value_or("0.005,0.01,0.02,0.05"), "--eps", 0.0, 1e6);
  const BoundMethod method = parse_bound_method(
      a.choice("bound", {"global", "interval", "linear", "best"}).value_or("best"));
  const index_t limit = a.integer("limit", 0, std::int64_t(1) << 40).value_or(-1);
  std::optional<std::filesystem::path> radius_path;
  if (const auto r = a.text("radius-output"))
    radius_path = *r;
  std::optional<std::vector<double>> domain;
  if (const auto d = a.text("domain")) {
    if (*d != "none") {
      domain = parse_list(*d, "--domain", -1e300, 1e300);
      if (domain->size() != 2 || (*domain)[0] > (*domain)[1])
        throw UsageError("--domain expects LO,HI with LO <= HI, or none");
    }
  }
  const bool no_refine = a.flag("no-refine");
  const bool no_region = a.flag("no-region");
  const bool widths = a.flag("widths");
  const int slope_steps =
      static_cast<int>(a.integer("slope-steps", 0, 100000).value_or(20));

  Progress progress(inv.progress_enabled());
  progress.update("loading " + model_path.string() + " ...", true);
  Stopwatch clock;
  const auto model = load_model<T>(model_path);
  const LabelledData data = load_labelled(a, model.inputs(), limit);
  Batch<T> inputs(data.inputs.rows(), data.inputs.cols());
  for (index_t j = 0; j < inputs.cols(); ++j)
    for (index_t i = 0; i < inputs.rows(); ++i)
      inputs(i, j) = static_cast<T>(data.inputs(i, j));
  const double load_seconds = clock.seconds();
  for (std::size_t j = 0; j < data.labels.size(); ++j)
    if (data.labels[j] >= model.outputs())
      throw CommandFailure(exit_input,
                           data.source + ": label " + std::to_string(data.labels[j]) +
                               " of input " + std::to_string(j + 1) +
                               " is not below q = " + std::to_string(model.outputs()));
  CertifyOptions options;
  options.method = method;
  options.bounds.refine = !no_refine;
  options.bounds.linear_region = !no_region;
  options.bounds.slope_steps = slope_steps;
  if (domain) {
    options.domain_lo = (*domain)[0];
    options.domain_hi = (*domain)[1];
  } else if (data.images && !a.has("domain")) {
    options.domain_lo = 0; // images: pixels stay in [0, 1]
    options.domain_hi = 1;
  }
  progress.update("analysing the model ...", true);
  clock.restart();
  BoundAnalyzer<T> analyzer(model, options.bounds);
  const double setup_seconds = clock.seconds();
  if (!analyzer.certified_well_posed())
    inv.warn("lambda_PF(L|A|) < 1 is not certified: every bound is infinite and nothing "
             "can be certified");
  const index_t count = data.inputs.cols();
  const auto result =
      certify_dataset<T>(analyzer, inputs, data.labels, eps, radius_path.has_value(),
                         options, [&](index_t done, index_t total) {
                           progress.update("certified " + fmt_count(done) + " / " +
                                           fmt_count(total) + " inputs");
                         });
  const CertificationReport report(result);
  const std::optional<std::string> radius_name =
      radius_path ? std::optional<std::string>(radius_path->string()) : std::nullopt;
  if (radius_path)
    report.write_radii(*radius_path);
  std::vector<WidthReport> reports;
  if (widths && count > 0) {
    progress.update("pre-activation widths of input 1 ...", true);
    reports = width_reports(analyzer, inputs, eps, options);
  }
  progress.clear();

  if (inv.json) {
    nlohmann::json doc = {
        {"model", model_path.string()},
        {"data", data.source},
        {"inputs", count},
        {"bound", to_string(method)},
        {"precision", to_string(precision_of(a))},
        {"refine", !no_refine},
        {"feed_forward", analyzer.feed_forward()},
        {"levels", analyzer.levels()},
        {"well_posed_certified", analyzer.certified_well_posed()},
        {"load_seconds", load_seconds},
        {"setup_seconds", setup_seconds}};
    report.add_json(doc, radius_name);
    if (options.domain_lo <= options.domain_hi)
      doc["domain"] = {options.domain_lo, options.domain_hi};
    if (widths) {
      nlohmann::json w = nlohmann::json::array();
      for (const auto &r : reports) {
        nlohmann::json blocks = nlohmann::json::array();
        for (const auto &b : r.blocks)
          blocks.push_back({{"name", b.name},
                            {"states", b.states},
                            {"mean_width", b.mean_width},
                            {"max_width", b.max_width},
                            {"unstable", b.unstable}});
        nlohmann::json row = {{"eps", r.eps}, {"bound", r.bound}, {"blocks", blocks}};
        if (r.bound == "linear") {
          row["refined"] = r.refined;
          row["truncated"] = r.truncated;
        }
        w.push_back(row);
      }
      doc["widths"] = w;
    }
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "certified " << fmt_count(count) << " input" << (count == 1 ? "" : "s")
              << " of " << data.source << " with the " << to_string(method) << " bound"
              << (no_refine ? " (no refinement)" : "") << ", "
              << to_string(precision_of(a)) << "\n"
              << "  model: n = " << fmt_count(model.states())
              << ", p = " << fmt_count(model.inputs()) << ", q = " << model.outputs()
              << (analyzer.feed_forward() ? ", feed-forward, " : ", implicit, ")
              << analyzer.levels() << " levels\n";
    report.print(std::cout, radius_name);
    std::cout << "  time: load " << fmt_seconds(load_seconds) << ", setup "
              << fmt_seconds(setup_seconds) << ", certify " << fmt_seconds(result.seconds)
              << " (" << fmt_seconds(count ? result.seconds / double(count) : 0.0)
              << " per input)\n";
    if (!reports.empty())
      std::cout
          << "  pre-activation widths on input 1 (per state block: mean and largest "
             "upper - lower; unstable: intervals containing 0):\n";
    for (const auto &r : reports) {
      std::cout << "  eps " << fmt_g(r.eps, 4) << ", " << r.bound << " bound";
      if (r.bound == "linear")
        std::cout << " (" << fmt_count(r.refined) << " pre-activation bounds refined"
                  << (r.truncated ? ", stopped at the work budget" : "") << ")";
      std::cout << ":\n";
      for (const auto &b : r.blocks)
        std::cout << "    " << b.name << ": " << fmt_count(b.states) << " states, width "
                  << fmt_g(b.mean_width, 3) << " / " << fmt_g(b.max_width, 3)
                  << ", unstable " << fmt_count(b.unstable) << "\n";
    }
  }
  return exit_ok;
}

int run_certify(Invocation &inv) {
  return precision_of(inv.args) == Precision::float32 ? certify<float>(inv)
                                                      : certify<double>(inv);
}

std::vector<OptionSpec> certify_options() {
  std::vector<OptionSpec> o = data_options();
  o.push_back(
      {"eps", 0, "E,...", "l_inf radii to certify at (default 0.005,0.01,0.02,0.05)"});
  o.push_back({"bound", 0, "B",
               "global, interval, linear or best (default best: global, then interval, "
               "then linear until one certifies)"});
  o.push_back(
      {"radius-output", 0, "R.txt",
       "write the largest certified radius of each input (0 when misclassified)"});
  o.push_back({"domain", 0, "LO,HI",
               "clip perturbed inputs to [LO, HI] (default 0,1 with --data, none "
               "otherwise; 'none' to disable)"});
  o.push_back({"no-refine", 0, "",
               "linear bound without refining intermediate bounds (faster, looser)"});
  o.push_back({"no-region", 0, "",
               "linear and best bounds without the linear region of each input (the "
               "exact affine map on the radius where no ReLU changes sign; computed for "
               "piecewise-linear feed-forward models)"});
  o.push_back(
      {"slope-steps", 0, "N",
       "linear bound of a feed-forward model: optimise the lower ReLU slopes of "
       "margins not yet proven positive for N gradient steps (default 20; 0: off)"});
  o.push_back({"widths", 0, "",
               "also report, on the first input at each eps, the mean and largest "
               "pre-activation width and the unstable states of each state block, for "
               "the bounds up to the chosen one"});
  o.push_back(precision_option);
  return o;
}

[[maybe_unused]] const bool registered = register_command({
    .name = "certify",
    .summary = "certified l_inf robustness: certified accuracy and radii per input",
    .description =
        "For every labelled input u0, bounds the margins y_label - y_k over the box\n"
        "|u - u0| <= eps and counts the input as certified when all are positive (and\n"
        "the nominal prediction is right). Bounds: 'global' from (I - |A|)^-1 |B| eps;\n"
        "'interval' the interval fixed point of x = phi(A x + B u + b); 'linear' a\n"
        "linear relaxation of each activation propagated back through the equilibrium\n"
        "(CROWN-style, with refined intermediate bounds); each is at least as tight as\n"
        "the previous one. For a feed-forward network of ReLU-like activations the\n"
        "linear and best bounds also compute each input's linear region: the radius\n"
        "on which no activation changes sign, found by pushing the Jacobian through\n"
        "the network, where the margins follow from the exact affine map (states at\n"
        "the input in double-double arithmetic; every rounding bounded). With\n"
        "--radius-output, the largest certified radius of each input is searched\n"
        "(from the linear region's, or by geometric growth, then bisection) and\n"
        "written one per line in input order. With --precision float32 the model is analysed in float:\n"
        "a certificate holds for the exact real-number model with the float32\n"
        "parameters (see the README on rounding).",
    .positionals = {{"MODEL", "model directory or native model file"}},
    .options = certify_options(),
    .epilog =
        "JSON fields: inputs, correct, accuracy, certified (eps, certified,\n"
        "certified_accuracy), bound, precision, linear_regions, region_mean_radius,\n"
        "mean_radius, median_radius, certify_seconds; with --widths, widths (eps, bound, blocks: name, states,\n"
        "mean_width, max_width, unstable).\n"
        "Example: tacit certify mlp.tacit --data /usr/share/datasets/fashion-mnist "
        "--limit 1000 --eps 0.005,0.01\n",
    .order = 60,
    .run = run_certify,
    .usage = "MODEL (--data DIR | --input U.txt --labels L.txt) [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
