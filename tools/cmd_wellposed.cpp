// tacit wellposed / rescale / project: certify lambda_PF(|A|) < 1, rescale a
// model to ||A||_inf < 1, project A onto ||A||_inf <= kappa.

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>

#include <tacit/core/error.hpp>
#include <tacit/io/io.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/analysis/wellposed.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

const OptionSpec rel_width_option{
    "rel-width", 0, "W",
    "stop tightening the lambda_PF interval once upper - lower <= W * upper "
    "(default 1e-9)"};
const OptionSpec max_iterations_option{
    "max-iterations", 0, "K",
    "power-iteration budget per cyclic SCC block (default 200000)"};
const OptionSpec decide_option{
    "decide", 0, "",
    "stop as soon as the interval lies on one side of 1 (faster, looser)"};

PerronOptions perron_options(const Arguments &args) {
  PerronOptions options;
  if (const auto w = args.real("rel-width", 0.0, 1.0))
    options.rel_width = *w;
  if (const auto k = args.integer("max-iterations", 1, 2000000000))
    options.max_iterations = static_cast<int>(*k);
  options.stop_when_decided = args.flag("decide");
  return options;
}

nlohmann::json interval_json(const PerronBound &pf) {
  return {{"lower", pf.lower}, {"upper", pf.upper}};
}

/// One sentence on what the interval means for well-posedness.
std::string verdict(const PerronBound &pf) {
  if (pf.certified())
    return "certified well-posed: lambda_PF(|A|) <= " + fmt_g(pf.upper, 10) +
           " < 1\n"
           "    (a unique equilibrium for every input and every componentwise "
           "1-Lipschitz\n"
           "    activation, and Picard iteration converges)";
  if (pf.lower >= 1)
    return "NOT certified: lambda_PF(|A|) >= " + fmt_g(pf.lower, 10) +
           " >= 1\n"
           "    (the sufficient condition lambda_PF(|A|) < 1 fails: equilibria may still "
           "be\n"
           "    unique, but nothing guarantees it nor Picard convergence; 'tacit "
           "project\n"
           "    --kappa K' with K < 1 makes ||A||_inf <= K)";
  return "undecided: the interval contains 1\n"
         "    (retry with a larger --max-iterations or a smaller --rel-width)";
}

// ---------------------------------------------------------------- wellposed

int run_wellposed(Invocation &inv) {
  const std::filesystem::path path = inv.args.positionals().at(0);
  const PerronOptions options = perron_options(inv.args);
  Progress progress(inv.progress_enabled());
  progress.update("loading " + path.string() + " ...", true);
  Stopwatch clock;
  std::unique_ptr<LinearOperator<double>> matrix;
  std::optional<Model<double>> model;
  if (is_matrix_market_path(path))
    matrix = std::make_unique<CsrMatrix<double>>(read_matrix_market<double>(path));
  else
    model.emplace(load_model<double>(path));
  const LinearOperator<double> &A = model ? model->A() : *matrix;
  const double load_seconds = clock.seconds();

  progress.update("bounding lambda_PF(|A|) for n = " + fmt_count(A.rows()) + " ...",
                  true);
  clock.restart();
  const WellPosednessReport report = analyse_well_posedness(A, options);
  const double seconds = clock.seconds();
  progress.clear();
  const PerronBound &pf = report.pf;

  if (inv.json) {
    nlohmann::json doc = {{"path", path.string()},
                          {"kind", model ? "model" : "matrix"},
                          {"n", report.n},
                          {"nnz", report.nnz},
                          {"norm_inf", report.norm_inf},
                          {"norm_1", report.norm_1},
                          {"lambda_pf", interval_json(pf)},
                          {"certified", pf.certified()},
                          {"status", to_string(pf.status)},
                          {"iterations", pf.iterations},
                          {"shift_invert_steps", pf.shift_invert_steps},
                          {"nilpotent", report.nilpotent},
                          {"scc",
                           {{"count", report.scc_count},
                            {"largest", report.scc_largest},
                            {"cyclic", pf.cyclic_blocks}}},
                          {"message", pf.message},
                          {"load_seconds", load_seconds},
                          {"seconds", seconds}};
    if (model)
      doc["activations_lipschitz_le_1"] = [&] {
        for (const auto &b : model->blocks())
          if (b.activation.lipschitz() > 1)
            return false;
        return true;
      }();
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << (model ? "model " : "matrix ") << path.string() << "\n"
              << "  A: n = " << fmt_count(report.n) << ", " << fmt_count(report.nnz)
              << " nonzeros\n"
              << "  norms: ||A||_inf = " << fmt_g(report.norm_inf)
              << ", ||A||_1 = " << fmt_g(report.norm_1)
              << (report.norm_inf < 1 ? "  (||A||_inf < 1 already certifies)" : "")
              << "\n"
              << "  SCCs: " << fmt_count(report.scc_count) << " (largest "
              << fmt_count(report.scc_largest) << " states, "
              << fmt_count(pf.cyclic_blocks) << " cyclic)"
              << (report.nilpotent ? ": A is nilpotent (feed-forward)" : "") << "\n"
              << "  lambda_PF(|A|) in [" << fmt_g(pf.lower, 10) << ", "
              << fmt_g(pf.upper, 10) << "]  (" << to_string(pf.status) << ", "
              << fmt_count(pf.iterations) << " iterations, " << fmt_seconds(seconds)
              << ")\n";
    if (pf.status != PerronStatus::tight && !pf.message.empty())
      std::cout << "  note: " << pf.message << "\n";
    std::cout << "  " << verdict(pf) << "\n";
    if (model && pf.certified())
      for (const auto &b : model->blocks())
        if (b.activation.lipschitz() > 1) {
          std::cout << "  caution: block '" << b.name << "' has a " << b.activation.name()
                    << " activation with Lipschitz constant "
                    << fmt_g(b.activation.lipschitz())
                    << " > 1, which the certificate does not cover\n";
          break;
        }
  }
  return exit_ok;
}

// ---------------------------------------------------------------- rescale

int run_rescale(Invocation &inv) {
  const std::filesystem::path in = inv.args.positionals().at(0);
  const auto out_text = inv.args.text("output");
  if (!out_text)
    throw UsageError("missing required option --output (-o)");
  const std::filesystem::path out = *out_text;
  check_distinct(in, out);
  const ModelFormat format = output_format(inv.args, out);
  const double target = inv.args.real("target", 0.0, 1.0).value_or(0.0);
  if (inv.args.has("target") && (target <= 0 || target >= 1))
    throw UsageError("--target must lie strictly between 0 and 1, got " + fmt_g(target));

  Progress progress(inv.progress_enabled());
  progress.update("loading " + in.string() + " ...", true);
  const auto model = load_model<double>(in);

  progress.update("certifying lambda_PF(|A|) and rescaling ...", true);
  Stopwatch clock;
  RescaleReport report;
  // Unsupported for a tanh or sigmoid block (exit 2); NumericalError when not
  // certified or the target is not reachable (exit 3).
  const Model<double> rescaled =
      rescale_model(model, target, &report, perron_options(inv.args));
  const double seconds = clock.seconds();
  progress.update("writing " + out.string() + " ...", true);
  save_model_as(rescaled, out, format);
  progress.clear();

  double dmin = 0, dmax = 0;
  if (!report.scaling.empty()) {
    dmin = *std::min_element(report.scaling.begin(), report.scaling.end());
    dmax = *std::max_element(report.scaling.begin(), report.scaling.end());
  }
  if (inv.json) {
    inv.emit({{"input", in.string()},
              {"output", out.string()},
              {"format", to_string(format)},
              {"n", model.states()},
              {"target", report.target},
              {"norm_before", report.norm_before},
              {"norm_after", report.norm_after},
              {"lambda_pf", interval_json(report.pf)},
              {"iterations", report.iterations},
              {"scaling", {{"min", dmin}, {"max", dmax}}},
              {"seconds", seconds}});
  } else if (inv.human()) {
    std::cout << "rescaled " << in.string() << " -> " << out.string() << " ("
              << to_string(format) << ")\n"
              << "  lambda_PF(|A|) in [" << fmt_g(report.pf.lower, 10) << ", "
              << fmt_g(report.pf.upper, 10) << "]\n"
              << "  ||A||_inf: " << fmt_g(report.norm_before, 9) << " -> "
              << fmt_g(report.norm_after, 9) << "  (target " << fmt_g(report.target, 9)
              << ")\n"
              << "  scaling D = diag(d), d in [" << fmt_g(dmin) << ", " << fmt_g(dmax)
              << "]; outputs are unchanged\n";
  }
  return exit_ok;
}

// ---------------------------------------------------------------- project

int run_project(Invocation &inv) {
  const std::filesystem::path in = inv.args.positionals().at(0);
  const auto out_text = inv.args.text("output");
  if (!out_text)
    throw UsageError("missing required option --output (-o)");
  const auto kappa = inv.args.real("kappa", 0.0, 1e300);
  if (!kappa)
    throw UsageError("missing required option --kappa");
  const std::filesystem::path out = *out_text;
  check_distinct(in, out);
  const bool is_matrix = is_matrix_market_path(in);
  if (is_matrix && inv.args.has("format"))
    throw UsageError("--format applies to models; a .mtx input gives a .mtx output");
  const ModelFormat format = output_format(inv.args, out);

  Progress progress(inv.progress_enabled());
  progress.update("loading " + in.string() + " ...", true);
  std::optional<Model<double>> model;
  std::optional<CsrMatrix<double>> A;
  if (is_matrix) {
    A.emplace(read_matrix_market<double>(in));
    if (A->rows() != A->cols())
      throw CommandFailure(exit_input, in.string() + ": A must be square, got " +
                                           std::to_string(A->rows()) + " x " +
                                           std::to_string(A->cols()));
  } else {
    model.emplace(load_model<double>(in));
  }

  progress.update("projecting ...", true);
  Stopwatch clock;
  ProjectionReport report;
  if (is_matrix)
    A.emplace(project_matrix(*A, *kappa, &report));
  else
    model.emplace(project_model(*model, *kappa, &report));
  const double seconds = clock.seconds();

  progress.update("writing " + out.string() + " ...", true);
  if (is_matrix)
    write_output(
        out, [&](const std::filesystem::path &path) { write_matrix_market(path, *A); });
  else
    save_model_as(*model, out, format);
  progress.clear();

  const index_t rows = model ? model->states() : A->rows();
  if (inv.json) {
    nlohmann::json doc = {{"input", in.string()},
                          {"output", out.string()},
                          {"kind", is_matrix ? "matrix" : "model"},
                          {"kappa", *kappa},
                          {"n", rows},
                          {"rows_changed", report.rows_changed},
                          {"norm_before", report.norm_before},
                          {"norm_after", report.norm_after},
                          {"distance_frobenius", report.distance},
                          {"seconds", seconds}};
    if (!is_matrix)
      doc["format"] = to_string(format);
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "projected A of " << in.string()
              << " onto ||A||_inf <= " << fmt_g(*kappa, 9) << " -> " << out.string()
              << "\n"
              << "  rows changed: " << fmt_count(report.rows_changed) << " of "
              << fmt_count(rows) << "\n"
              << "  ||A||_inf: " << fmt_g(report.norm_before, 9) << " -> "
              << fmt_g(report.norm_after, 9) << "\n"
              << "  Frobenius distance moved: " << fmt_g(report.distance) << "\n";
    if (*kappa < 1)
      std::cout << "  kappa < 1: ||A||_inf < 1 now certifies well-posedness\n";
  }
  return exit_ok;
}

const OptionSpec output_option{"output", 'o', "OUT",
                               "where to write the result (required)"};

[[maybe_unused]] const bool registered_wellposed = register_command({
    .name = "wellposed",
    .summary = "certify well-posedness: a certified interval for lambda_PF(|A|)",
    .description =
        "Computes ||A||_inf, ||A||_1, the strongly connected components of A and a\n"
        "certified interval lower <= lambda_PF(|A|) <= upper (Collatz-Wielandt bounds "
        "with\n"
        "rounding allowance). upper < 1 certifies that x = phi(A x + B u + b) has a "
        "unique\n"
        "solution for every input and componentwise 1-Lipschitz activation, and that\n"
        "Picard iteration converges. The exit code is 0 whatever the answer: read\n"
        "'certified' (JSON) or the last line of the report.",
    .positionals = {{"MODEL",
                     "model directory, native model file, or a .mtx matrix taken as A"}},
    .options = {rel_width_option, max_iterations_option, decide_option},
    .epilog =
        "JSON fields: n, nnz, norm_inf, norm_1, lambda_pf {lower, upper}, certified,\n"
        "status (tight|budget_exhausted|decided|stalled), iterations, nilpotent,\n"
        "scc {count, largest, cyclic}, seconds.\n",
    .order = 20,
    .run = run_wellposed,
    .usage = "MODEL_OR_A.mtx [OPTIONS]",
});

[[maybe_unused]] const bool registered_rescale = register_command({
    .name = "rescale",
    .summary = "rescale a model to an equivalent one with ||A||_inf < 1",
    .description = "Builds the equivalent model x' = D x with ||D A D^-1||_inf <= target "
                   "< 1 from a\n"
                   "certified Perron vector (requires lambda_PF(|A|) < 1 and positively "
                   "homogeneous\n"
                   "activations: relu, leaky_relu, identity). Predictions are unchanged.",
    .positionals = {{"MODEL", "model directory or native model file"}},
    .options =
        {output_option,
         {"target", 0, "RHO",
          "bound on the new ||A||_inf, between the certified lambda_PF bound and 1 "
          "(default: their midpoint)"},
         format_option,
         rel_width_option,
         max_iterations_option},
    .epilog =
        "Exit code 3 when lambda_PF(|A|) < 1 cannot be certified or the target is not\n"
        "reachable; 2 for a model with tanh or sigmoid blocks.\n",
    .order = 40,
    .run = run_rescale,
    .usage = "MODEL -o OUT [OPTIONS]",
});

[[maybe_unused]] const bool registered_project = register_command({
    .name = "project",
    .summary = "project A onto ||A||_inf <= kappa (exact Euclidean projection)",
    .description =
        "Replaces A by its exact Frobenius-nearest matrix with ||A||_inf <= kappa: each "
        "row\n"
        "is projected onto the l1 ball of radius kappa, keeping the sparsity pattern.\n"
        "For a model, writes the model with the projected A (kappa < 1 makes it\n"
        "well-posed); for a .mtx matrix, writes the projected matrix as .mtx.",
    .positionals = {{"MODEL_OR_A", "model directory, native model file or .mtx matrix"}},
    .options = {{"kappa", 0, "K", "bound on the row absolute sums (required, >= 0)"},
                output_option,
                format_option},
    .epilog = "",
    .order = 50,
    .run = run_project,
    .usage = "MODEL_OR_A --kappa K -o OUT [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
