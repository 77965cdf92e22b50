// tacit bcd: trains a model by block-coordinate descent on the Fenchel
// divergence relaxation (tacit/train/bcd.hpp, seed 001 section 4.2). The
// steps live in the library; this file reads the data, maps options and
// reports.

#include <cmath>
#include <iostream>
#include <limits>
#include <optional>

#include <tacit/io/io.hpp>
#include <tacit/train/bcd.hpp>
#include <tacit/train/init.hpp>
#include <tacit/train/select.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

namespace fs = std::filesystem;

Model<double> bcd_model(const Arguments &args) {
  const auto init = args.text("init");
  const bool has_model = !args.positionals().empty();
  if (init && has_model)
    throw UsageError("give either MODEL or --init, not both");
  if (init) {
    const auto seed = args.integer("seed", 0, std::numeric_limits<std::int64_t>::max());
    try {
      return init_model<double>(*init, static_cast<std::uint64_t>(seed.value_or(1)));
    } catch (const InvalidArgument &e) {
      throw UsageError(e.what());
    }
  }
  if (!has_model)
    throw UsageError("missing MODEL (a model directory or .tacit file) or --init (e.g. "
                     "--init implicit:n=10,p=100,q=1,density=1,kappa=0.5)");
  return load_model<double>(args.positionals().at(0));
}

BcdMatrix read_matrix(const std::string &path, index_t rows) {
  return bcd_matrix(read_vectors<double>(path, rows));
}

int run_bcd(Invocation &inv) {
  const Arguments &args = inv.args;
  const auto out = args.text("output");
  if (!out)
    throw UsageError("missing required option --output (-o)");
  const auto input = args.text("input"), targets = args.text("targets");
  if (!input || !targets)
    throw UsageError("give the training data: --input U.txt --targets Y.txt");
  const auto test_input = args.text("test-input"),
             test_targets = args.text("test-targets");
  if (bool(test_input) != bool(test_targets))
    throw UsageError("give both --test-input and --test-targets");

  const double inf = std::numeric_limits<double>::infinity();
  BcdOptions o;
  o.iterations = static_cast<int>(args.integer("iterations", 0, 1000000).value_or(5));
  o.lambda = args.real("lambda", 1e-300, 1e300).value_or(1.0);
  o.mu = args.real("mu", 1e-300, 1e300).value_or(1.0);
  if (const auto r = args.integer("state-sweeps", 1, 1000000))
    o.state_sweeps = static_cast<int>(*r);
  if (const auto r = args.integer("ab-iterations", 1, 100000000))
    o.ab_max_iterations = static_cast<int>(*r);
  int given = 0;
  if (const auto l = args.real("group-lasso", -inf, inf)) {
    o.penalty = BcdPenalty::group_inputs;
    o.penalty_lambda = *l;
    ++given;
  }
  if (const auto l = args.real("l1", -inf, inf)) {
    o.penalty = BcdPenalty::l1;
    o.penalty_lambda = *l;
    ++given;
  }
  if (given > 1)
    throw UsageError("give --group-lasso or --l1, not both");
  if (o.penalty_lambda < 0)
    throw UsageError("the penalty's lambda = " + fmt_g(o.penalty_lambda) +
                     " must be >= 0");
  if (const auto r = args.integer("reweight", 0, 1000000))
    o.reweight_every = static_cast<int>(*r);
  if (const auto e = args.real("reweight-eps", 1e-300, inf))
    o.reweight_eps = *e;
  if (const auto r = args.real("state-scale", 0.0, 1e300))
    o.state_scale = *r;
  if (const auto g = args.real("growth", 1.0, 1e300))
    o.growth = *g;
  if (const auto g = args.real("penalty-growth", 1.0, 1e300))
    o.penalty_growth = *g;
  if (o.reweight_every > 0 && o.penalty != BcdPenalty::group_inputs)
    throw UsageError("--reweight needs --group-lasso");

  Progress progress(inv.progress_enabled());
  progress.update("preparing the model ...", true);
  const Model<double> model = bcd_model(args);
  if (!args.positionals().empty())
    check_distinct(args.positionals().at(0), *out);
  BcdParameters initial = [&] {
    try {
      return bcd_parameters(model);
    } catch (const InvalidArgument &e) {
      throw CommandFailure(exit_usage, e.what());
    }
  }();
  const index_t n = initial.states(), p = initial.inputs(), q = initial.outputs();
  if (o.state_scale > 0 && initial.activation != BcdActivation::relu)
    throw UsageError(
        "--state-scale " + fmt_g(o.state_scale) +
        " needs relu states; the model's are tanh (not positively homogeneous)");
  if (const auto eps = args.real("layer-eps", 1e-300, 1e300)) {
    // The seed's scaled model (11): block k of K gets lambda = eps^(K - k + 1)
    // (the last hidden layer eps, the first eps^K).
    if (args.has("lambda"))
      throw UsageError("give --lambda or --layer-eps, not both");
    const auto &blocks = model.blocks();
    const auto K = static_cast<int>(blocks.size());
    o.lambdas.assign(static_cast<std::size_t>(n), 0.0);
    for (int k = 0; k < K; ++k)
      for (index_t i = 0; i < blocks[std::size_t(k)].size; ++i)
        o.lambdas[std::size_t(blocks[std::size_t(k)].offset + i)] = std::pow(*eps, K - k);
  }
  const auto lam = bcd_lambdas(o, n);
  const double lmax = *std::max_element(lam.begin(), lam.end());
  if (const auto k = args.text("kappa")) {
    o.kappa =
        *k == "auto" ? std::sqrt(o.mu / lmax) : parse_real(*k, "--kappa", 1e-300, inf);
  } else {
    o.kappa = std::sqrt(o.mu / lmax);
  }
  try {
    o.validate(n, p);
  } catch (const InvalidArgument &e) {
    throw UsageError(e.what());
  }

  progress.update("reading the data ...", true);
  const BcdMatrix U = read_matrix(*input, p), Y = read_matrix(*targets, q);
  if (U.cols != Y.cols)
    throw FileError(*targets, 0,
                    std::to_string(Y.cols) + " targets for " + std::to_string(U.cols) +
                        " inputs in " + *input);
  if (U.cols == 0)
    throw CommandFailure(exit_input, *input + ": no training samples");
  BcdMatrix TU, TY;
  if (test_input) {
    TU = read_matrix(*test_input, p);
    TY = read_matrix(*test_targets, q);
    if (TU.cols != TY.cols)
      throw FileError(*test_targets, 0,
                      std::to_string(TY.cols) + " targets for " +
                          std::to_string(TU.cols) + " inputs in " + *test_input);
  }

  if (inv.human())
    std::cout << "BCD on " << fmt_count(U.cols) << " samples: n = " << n << " ("
              << (initial.activation == BcdActivation::relu ? "relu" : "tanh")
              << "), p = " << p << ", q = " << q << "; lambda "
              << (o.lambdas.empty() ? fmt_g(o.lambda, 4)
                                    : "per layer, largest " + fmt_g(lmax, 4))
              << ", mu " << fmt_g(o.mu, 4) << ", kappa " << fmt_g(o.kappa, 4)
              << std::endl;
  const double start_rmse = bcd_rmse(initial, U, Y);
  if (inv.json)
    std::cout << nlohmann::json(
                     {{"event", "start"},
                      {"train_rmse", start_rmse},
                      {"test_rmse", test_input ? bcd_rmse(initial, TU, TY) : -1.0}})
                     .dump()
              << std::endl;
  Stopwatch clock;
  auto report = [&](const BcdIterationReport &r) {
    progress.clear();
    if (inv.json) {
      nlohmann::json j = {{"event", "iteration"},
                          {"iteration", r.iteration},
                          {"objective", r.objective.total()},
                          {"loss", r.objective.loss},
                          {"divergence", r.objective.divergence},
                          {"coupling", r.objective.coupling},
                          {"penalty", r.objective.penalty},
                          {"train_rmse", r.train_rmse},
                          {"x_iterations", r.x_iterations},
                          {"ab_iterations", r.ab_iterations},
                          {"zero_columns", r.zero_columns},
                          {"norm_inf_A", r.norm_inf_A},
                          {"seconds", r.seconds}};
      if (r.test_rmse >= 0)
        j["test_rmse"] = r.test_rmse;
      std::cout << j.dump() << std::endl;
    } else if (inv.human()) {
      std::cout << "iteration " << r.iteration << "/" << o.iterations << ": objective "
                << fmt_g(r.objective.total(), 6) << ", train RMSE "
                << fmt_g(r.train_rmse, 5);
      if (r.test_rmse >= 0)
        std::cout << ", test RMSE " << fmt_g(r.test_rmse, 5);
      std::cout << "; X-step " << r.x_iterations << " Picard iterations, (A, B)-step "
                << r.ab_iterations << " iterations; ||A||_inf " << fmt_g(r.norm_inf_A, 4)
                << ", zero columns of B " << r.zero_columns << "/" << p << "; "
                << fmt_seconds(r.seconds) << std::endl;
    }
  };
  BcdState s;
  try {
    progress.update("BCD iterations ...", true);
    s = bcd_train(initial, U, Y, o, report, test_input ? &TU : nullptr,
                  test_input ? &TY : nullptr);
  } catch (const NumericalError &e) {
    progress.clear();
    throw CommandFailure(exit_numerical,
                         std::string(e.what()) + "; nothing written to " + *out);
  }
  std::optional<BcdSelectResult> selection;
  if (const auto tol = args.real("refit-select", 0.0, 1e300)) {
    BcdSelectOptions so;
    so.bcd = o;
    so.tolerance = *tol;
    if (const auto k = args.integer("refit-iterations", 0, 1000000))
      so.refit_iterations = static_cast<int>(*k);
    if (const auto k = args.integer("trial-iterations", 1, 1000000))
      so.trial_iterations = static_cast<int>(*k);
    if (const auto f = args.real("select-floor", 0.0, 1e300))
      so.floor = *f;
    try {
      selection = bcd_select_inputs(
          s.params, U, Y, so, select_trial_reporter(inv, progress, "mean squared error"));
    } catch (const NumericalError &e) {
      progress.clear();
      throw CommandFailure(exit_numerical, std::string("--refit-select: ") + e.what() +
                                               "; nothing written to " + *out);
    }
    s.params = selection->params;
  } else if (args.has("refit-iterations") || args.has("trial-iterations") ||
             args.has("select-floor")) {
    throw UsageError("--refit-iterations, --trial-iterations and --select-floor "
                     "belong to --refit-select");
  }
  const double seconds = clock.seconds();
  const Model<double> trained = bcd_apply(model, s.params);
  progress.update("writing " + *out + " ...", true);
  save_model_as(trained, *out, output_format(args, *out));
  progress.clear();
  const auto norms = bcd_column_norms(s.params.B);
  std::vector<index_t> read;
  for (index_t j = 0; j < p; ++j)
    if (norms[std::size_t(j)] != 0)
      read.push_back(j);
  if (inv.json) {
    nlohmann::json doc = {{"event", "done"},
                          {"output", *out},
                          {"n", n},
                          {"p", p},
                          {"q", q},
                          {"samples", U.cols},
                          {"iterations", o.iterations},
                          {"lambda_max", lmax},
                          {"mu", o.mu},
                          {"kappa", o.kappa},
                          {"train_rmse", bcd_rmse(s.params, U, Y)},
                          {"inputs_read", read},
                          {"column_norms", norms},
                          {"seconds", seconds}};
    if (test_input)
      doc["test_rmse"] = bcd_rmse(s.params, TU, TY);
    if (selection) {
      doc["candidates"] = selection->candidates;
      doc["selected_inputs"] = selection->selected;
      doc["refit_rmse"] = std::sqrt(selection->refit_loss);
    }
    std::cout << doc.dump() << std::endl;
  } else if (inv.human()) {
    std::cout << "trained by BCD in " << fmt_seconds(seconds) << " -> " << *out
              << "; B reads " << read.size() << " of the " << p << " inputs"
              << (read.size() <= 20 && read.size() < std::size_t(p) ? ":" : "");
    if (read.size() <= 20 && read.size() < std::size_t(p))
      for (const index_t j : read)
        std::cout << " " << j;
    std::cout << "\n";
  }
  return exit_ok;
}

[[maybe_unused]] const bool registered = register_command({
    .name = "bcd",
    .summary = "trains a model by block-coordinate descent with Fenchel divergences",
    .description =
        "Fits MODEL (or a fresh --init model) with relu or tanh states to inputs and\n"
        "targets by block-coordinate descent on the bi-convex relaxation of seed 001\n"
        "(10)/(11): 1/2 ||Y - C P - D U||^2 + sum_i lambda_i f_phi(P_i, (A X + B U)_i)\n"
        "+ mu/2 ||X - P||^2 + Pen(B), s.t. ||A||_inf <= kappa. Each iteration: the\n"
        "(C, D)-step (least squares), the P-step (closed form for relu, Newton for "
        "tanh),\n"
        "the X-step (the fixed point X = P - (lambda/mu) A^T (phi(A X + B U) - P), "
        "which\n"
        "needs ||A||_inf <= sqrt(mu/lambda): checked) and the (A, B)-step (projected\n"
        "proximal gradient, rows in parallel). Every parameter keeps its pattern, so a\n"
        "network stays a network. Pen is the column penalty lambda_B sum_j ||B e_j||_2\n"
        "(--group-lasso, input selection) or lambda_B ||B||_1 (--l1).",
    .positionals = {{"MODEL", "model directory or .tacit file (or --init)", false}},
    .options =
        {{"init", 0, "SPEC",
          "a fresh model: mlp:20,12,6,5,phi=tanh or "
          "implicit:n=N,p=P,q=Q,density=D,kappa=K"},
         {"seed", 0, "S", "seed of --init (default 1)"},
         {"input", 'i', "U.txt", "training inputs, one per line"},
         {"targets", 0, "Y.txt", "training targets, q values per line"},
         {"test-input", 0, "U.txt", "test inputs (test RMSE after every iteration)"},
         {"test-targets", 0, "Y.txt", "test targets"},
         {"output", 'o', "OUT", "where to write the model (.tacit: native file)"},
         format_option,
         {"iterations", 0, "N", "BCD iterations (default 5)"},
         {"lambda", 0, "L", "weight of the divergence (default 1)"},
         {"layer-eps", 0, "EPS",
          "per-block weights of the scaled model (11): block k of K gets EPS^(K-k+1)"},
         {"mu", 0, "M", "weight of mu/2 ||X - P||^2 (default 1)"},
         {"kappa", 0, "K", "||A||_inf <= K (default and 'auto': sqrt(mu / lambda))"},
         {"group-lasso", 0, "L", "column penalty L sum_j ||B e_j||_2 (input selection)"},
         {"l1", 0, "L", "penalty L ||B||_1"},
         {"reweight", 0, "E",
          "reweighted column penalty: w_j = 1/(||B e_j|| + eps) every E iterations"},
         {"reweight-eps", 0, "EPS", "eps of --reweight (default 1e-3)"},
         {"state-sweeps", 0, "S", "P- and X-steps per iteration (default 1)"},
         {"state-scale", 0, "R",
          "relu: end every iteration by rescaling states, B, b by s and C by 1/s so that "
          "the states' RMS is R (same predictions; fixes the scale the relaxation "
          "otherwise shrinks to 0; default 0: off)"},
         {"growth", 0, "G",
          "continuation: multiply lambda and mu by G after every iteration (the "
          "relaxation tightens; default 1: off)"},
         {"penalty-growth", 0, "G",
          "continuation of the penalty: multiply its lambda by G after every iteration "
          "(with --growth G the (A, B)-step keeps its balance; default 1: off)"},
         {"refit-select", 0, "TOL",
          "after BCD: refit by BCD without the penalty on the inputs B reads (the "
          "others fixed at 0), then drop inputs one by one while the training MSE stays "
          "within (1 + TOL) times the control refit's"},
         {"refit-iterations", 0, "K",
          "--refit-select: iterations of the first refit "
          "(default 50)"},
         {"trial-iterations", 0, "K",
          "--refit-select: iterations of the control and each trial refit (default 20)"},
         {"select-floor", 0, "F",
          "--refit-select: a mean squared error that counts as zero (default 0)"},
         {"ab-iterations", 0, "K",
          "proximal-gradient iterations per (A, B)-step (default 300)"}},
    .epilog =
        "Example (seed 001 section 7.2, tests/data/bcd):\n"
        "  tacit bcd --init implicit:n=10,p=100,q=1,density=1,kappa=0.5 \\\n"
        "      -i tests/data/bcd/recovery_U.txt --targets tests/data/bcd/recovery_Y.txt "
        "\\\n"
        "      --kappa 0.5 --group-lasso 5 -o recovered.tacit\n"
        "With --json: one line per iteration ({\"event\": \"iteration\", ...}) and a\n"
        "final line ({\"event\": \"done\", ...}) with inputs_read and column_norms.\n",
    .order = 62,
    .run = run_bcd,
    .usage = "[MODEL | --init SPEC] -i U.txt --targets Y.txt -o OUT [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
