// tacit solve: outputs y = C x + D u + c of a model for a file of inputs.

#include <algorithm>
#include <iostream>

#include <tacit/core/isa.hpp>
#include <tacit/core/model.hpp>
#include <tacit/io/io.hpp>
#include <tacit/solve/solve.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

SolveOptions solve_options(const Arguments &args, Precision precision) {
  SolveOptions options = default_solve_options(precision);
  if (const auto m = args.choice("method", {"auto", "picard", "sweep"}))
    options.method = parse_solve_method(*m);
  auto &picard = options.picard;
  if (const auto k = args.integer("max-iterations", 1, 2000000000))
    picard.max_iterations = static_cast<int>(*k);
  if (const auto t = args.real("tol", 0.0, 1.0))
    picard.rel_tol = *t;
  if (const auto t = args.real("abs-tol", 0.0, 1e300))
    picard.abs_tol = *t;
  if (const auto m = args.integer("anderson", 0, 64))
    picard.anderson_depth = static_cast<int>(*m);
  return options;
}

template <class T>
int solve(Invocation &inv, const std::filesystem::path &model_path,
          const std::filesystem::path &input, const std::filesystem::path &output,
          const std::optional<std::filesystem::path> &states, Precision precision) {
  SolveOptions options = solve_options(inv.args, precision);
  Progress progress(inv.progress_enabled());

  progress.update("loading " + model_path.string() + " ...", true);
  Stopwatch clock;
  const auto model = load_model<T>(model_path);
  progress.update("reading " + input.string() + " ...", true);
  const Batch<T> U = read_vectors<T>(input, model.inputs());
  const double load_seconds = clock.seconds();
  if (U.cols() == 0)
    throw CommandFailure(exit_input, input.string() +
                                         ": no input vectors (expected lines of " +
                                         std::to_string(model.inputs()) + " numbers)");

  if (progress.enabled())
    options.progress = [&progress](int step, double size) {
      progress.update(size > 0 ? "Picard iteration " + std::to_string(step) + ", step " +
                                     fmt_g(size, 3)
                               : "sweep: level " + std::to_string(step));
    };
  progress.update("analysing the structure of A ...", true);
  clock.restart();
  EquilibriumSolver<T> solver(model, options);
  const double setup_seconds = clock.seconds();
  Batch<T> X, Y;
  // --repeat N: the same solve N times (the outputs do not change: no warm
  // start); the first solve's time and the best one's.
  const int repeat = static_cast<int>(inv.args.integer("repeat", 1, 1000000).value_or(1));
  // Without --states the states are not kept (a network then sweeps through
  // a few blocks' worth of memory).
  auto predict = [&] { return states ? solver.predict(U, X, Y) : solver.predict(U, Y); };
  clock.restart();
  SolveReport report = predict();
  const double solve_seconds = clock.seconds();
  double best_seconds = solve_seconds;
  for (int r = 1; r < repeat; ++r) {
    progress.update("solve " + std::to_string(r + 1) + " of " + std::to_string(repeat) +
                        " ...",
                    true);
    clock.restart();
    report = predict();
    best_seconds = std::min(best_seconds, clock.seconds());
  }

  progress.update("writing " + output.string() + " ...", true);
  write_output(output,
               [&](const std::filesystem::path &path) { write_vectors(path, Y); });
  if (states)
    write_output(*states,
                 [&](const std::filesystem::path &path) { write_vectors(path, X); });
  progress.clear();

  index_t unconverged = 0;
  for (const auto s : report.column_status)
    unconverged += s != SolveStatus::converged ? 1 : 0;
  if (inv.json) {
    nlohmann::json doc = {{"model", model_path.string()},
                          {"input", input.string()},
                          {"output", output.string()},
                          {"precision", to_string(precision)},
                          {"n", model.states()},
                          {"p", model.inputs()},
                          {"q", model.outputs()},
                          {"columns", U.cols()},
                          {"method", to_string(report.method)},
                          {"method_reason", solver.method_reason()},
                          {"status", to_string(report.status)},
                          {"converged", report.ok()},
                          {"unconverged_columns", unconverged},
                          {"iterations", report.iterations},
                          {"residual", report.residual},
                          {"message", report.message},
                          {"load_seconds", load_seconds},
                          {"setup_seconds", setup_seconds},
                          {"solve_seconds", solve_seconds},
                          {"repeat", repeat},
                          {"best_solve_seconds", best_seconds},
                          {"isa", to_string(active_isa())}};
    if (states)
      doc["states"] = states->string();
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "solved " << fmt_count(U.cols()) << " input"
              << (U.cols() == 1 ? "" : "s") << " of " << input.string() << " -> "
              << output.string() << "\n"
              << "  model: n = " << fmt_count(model.states())
              << ", p = " << fmt_count(model.inputs())
              << ", q = " << fmt_count(model.outputs()) << ", " << to_string(precision)
              << "\n"
              << "  method: " << to_string(report.method) << " ("
              << solver.method_reason() << ")\n"
              << "  status: " << to_string(report.status) << ", " << report.iterations
              << " iterations, residual " << fmt_g(report.residual, 3) << "\n"
              << "  time: load " << fmt_seconds(load_seconds) << ", setup "
              << fmt_seconds(setup_seconds) << ", solve " << fmt_seconds(solve_seconds)
              << " (" << fmt_seconds(solve_seconds / double(U.cols())) << " per input)";
    if (repeat > 1)
      std::cout << ", best of " << repeat << " solves " << fmt_seconds(best_seconds)
                << " (" << fmt_seconds(best_seconds / double(U.cols())) << " per input)";
    std::cout << "\n  kernels: " << kernel_level() << "\n";
  }
  if (!report.ok()) {
    std::string text = "the solve did not converge: status " + to_string(report.status) +
                       " after " + std::to_string(report.iterations) +
                       " iterations, residual " + fmt_g(report.residual, 3) + " (" +
                       std::to_string(unconverged) + " of " + std::to_string(U.cols()) +
                       " inputs not converged)";
    text += "; outputs written to " + output.string() + " anyway";
    if (!report.message.empty())
      text += "\n  detail: " + report.message;
    inv.warn(text);
    return exit_numerical;
  }
  return exit_ok;
}

int run_solve(Invocation &inv) {
  const std::filesystem::path model = inv.args.positionals().at(0);
  const auto input = inv.args.text("input");
  if (!input)
    throw UsageError("missing required option --input (-i)");
  const auto output = inv.args.text("output");
  if (!output)
    throw UsageError("missing required option --output (-o)");
  std::optional<std::filesystem::path> states;
  if (const auto s = inv.args.text("states"))
    states = *s;
  if (is_matrix_market_path(model))
    throw UsageError("solve needs a model (directory or .tacit file), not a matrix: " +
                     model.string());
  const Precision precision = precision_of(inv.args);
  solve_options(inv.args, precision); // validate every option before any work
  inv.args.integer("repeat", 1, 1000000);
  return precision == Precision::float32
             ? solve<float>(inv, model, *input, *output, states, precision)
             : solve<double>(inv, model, *input, *output, states, precision);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "solve",
    .summary =
        "outputs y = C x + D u + c for a file of inputs (batched equilibrium solve)",
    .description =
        "Solves x = phi(A x + B u + b) for every input u of the input file (one per "
        "line,\n"
        "p numbers separated by blanks or commas; '#' lines ignored) and writes the\n"
        "outputs y = C x + D u + c, one per line (q numbers, printed so that they read\n"
        "back to the same bits). The method 'auto' sweeps the strongly connected\n"
        "components of A in dependency order (exact in one pass for a feed-forward A)\n"
        "when that pays, Picard iteration otherwise. A column stops when its step\n"
        "||x_{t+1} - x_t||_inf <= abs-tol + tol * ||x_{t+1}||_inf.\n"
        "If the solve does not converge, the outputs reached are still written, a\n"
        "warning gives the status and residual, and the exit code is 3.",
    .positionals = {{"MODEL", "model directory or native model file"}},
    .options = {{"input", 'i', "U.txt", "inputs, one per line (required)"},
                {"output", 'o', "Y.txt", "where to write the outputs (required)"},
                {"states", 0, "X.txt", "also write the equilibrium states, one per line"},
                {"method", 0, "M", "auto, picard or sweep (default auto)"},
                precision_option,
                {"max-iterations", 0, "K", "Picard iteration budget (default 10000)"},
                {"tol", 0, "T",
                 "relative stopping tolerance (default 1e-10; 1e-5 for float32)"},
                {"abs-tol", 0, "T",
                 "absolute stopping tolerance (default 1e-12; 1e-7 for float32)"},
                {"anderson", 0, "M",
                 "Anderson acceleration depth, 0..64 (default 0: off)"},
                {"repeat", 0, "N",
                 "solve N times (same outputs) and report the first and the best time"}},
    .epilog =
        "JSON fields: method, method_reason, status (converged|max_iterations|diverged|\n"
        "non_finite|ill_posed), converged, iterations, residual, columns,\n"
        "load_seconds, setup_seconds, solve_seconds (the first solve), repeat,\n"
        "best_solve_seconds (the best of the repeats), isa (the kernels' level).\n",
    .order = 30,
    .run = run_solve,
    .usage = "MODEL --input U.txt --output Y.txt [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
