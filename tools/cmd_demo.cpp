// tacit demo: the built-in showcase. Builds a ResNet20-like feed-forward
// network and a truly implicit model, certifies the well-posedness of each,
// solves a batch of inputs with the automatic method and compares the solve
// with one sparse product of the same matrix.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>
#include <string>

#include <tacit/nn/generate.hpp>
#include <tacit/core/model.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/analysis/wellposed.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

constexpr index_t default_image = 32;
/// States of the implicit model at the default size (scaled with size^2).
constexpr double implicit_states_at_default = 100000;

struct DemoSettings {
  index_t image = default_image;
  index_t batch = 32;
  std::uint64_t seed = 1;
  Precision precision = Precision::float64;
};

/// Best of `repeats` timings of one product A X (X: n x batch).
template <class T>
double time_spmm(const LinearOperator<T> &A, const Batch<T> &X, int repeats) {
  Batch<T> Z(A.rows(), X.cols(), X.slab_width());
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    Stopwatch clock;
    A.apply(Mode::normal, T(1), X, T(0), Z);
    best = std::min(best, clock.seconds());
  }
  return best;
}

/// Certifies, solves and times one model; returns its JSON record.
template <class T>
nlohmann::json run_model(const Invocation &inv, Progress &progress,
                         const std::string &title, const Model<T> &model,
                         double build_seconds, const DemoSettings &settings) {
  nlohmann::json rec = {{"name", title},
                        {"n", model.states()},
                        {"p", model.inputs()},
                        {"q", model.outputs()},
                        {"nnz", model.A().nnz()},
                        {"a_bytes", model.A().bytes()},
                        {"a_storage", model.A().kind()},
                        {"build_seconds", build_seconds}};

  // Certification: SCCs, then the lambda_PF interval over the cyclic blocks.
  progress.update(title + ": certifying well-posedness ...", true);
  Stopwatch clock;
  const auto A_csr = csr_view(model.A());
  const CsrMatrix<T> &A = *A_csr;
  const SccDecomposition scc = strongly_connected_components(A);
  PerronOptions perron;
  perron.rel_width = 1e-6;
  const PerronBound pf = perron_frobenius_bound(A, scc, perron);
  rec["certify_seconds"] = clock.seconds();
  rec["lambda_pf"] = {{"lower", pf.lower}, {"upper", pf.upper}};
  rec["certified"] = pf.certified();
  rec["pf_status"] = to_string(pf.status);
  rec["pf_iterations"] = pf.iterations;
  rec["scc"] = scc_json(scc);

  // The batch solve with the automatic method.
  progress.update(title + ": preparing the solver ...", true);
  const Batch<T> U = random_batch<T>(model.inputs(), settings.batch, settings.seed + 100);
  SolveOptions options = default_solve_options(settings.precision);
  if (progress.enabled())
    options.progress = [&progress, &title](int step, double size) {
      progress.update(title + ": " +
                      (size > 0 ? "Picard iteration " + std::to_string(step) + ", step " +
                                      fmt_g(size, 3)
                                : "sweep level " + std::to_string(step)));
    };
  clock.restart();
  EquilibriumSolver<T> solver(model, options);
  rec["setup_seconds"] = clock.seconds();
  Batch<T> X, Y;
  progress.update(title + ": solving " + std::to_string(settings.batch) + " inputs ...",
                  true);
  clock.restart();
  SolveReport report = solver.predict(U, X, Y);
  const double first_seconds = clock.seconds(); // with first-touch of X, Y, Z
  // Steady state, as the baseline product below: best of 3.
  double solve_seconds = 1e300;
  for (int r = 0; r < 3 && report.ok(); ++r) {
    clock.restart();
    report = solver.predict(U, X, Y);
    solve_seconds = std::min(solve_seconds, clock.seconds());
  }
  if (!report.ok())
    solve_seconds = first_seconds;
  rec["method"] = to_string(report.method);
  rec["method_reason"] = solver.method_reason();
  rec["status"] = to_string(report.status);
  rec["converged"] = report.ok();
  rec["iterations"] = report.iterations;
  rec["residual"] = report.residual;
  rec["first_solve_seconds"] = first_seconds;
  rec["solve_seconds"] = solve_seconds;
  rec["seconds_per_input"] = solve_seconds / double(settings.batch);

  // Baseline: one product of A with a batch of the same width.
  progress.update(title + ": timing one SpMM with A ...", true);
  const double spmm = time_spmm(model.A(), X, 3);
  rec["spmm_seconds"] = spmm;
  rec["solve_per_spmm"] = spmm > 0 ? solve_seconds / spmm : 0.0;

  // Checksum of the outputs (column by column), stable across thread counts.
  Fnv1a hash;
  double sum = 0;
  for (index_t j = 0; j < Y.cols(); ++j)
    for (index_t i = 0; i < Y.rows(); ++i) {
      const T v = Y(i, j);
      hash.add(&v, sizeof v);
      sum += double(v);
    }
  rec["checksum"] = hash.hex();
  rec["y_sum"] = sum;
  progress.clear();

  if (inv.human()) {
    const auto line = [](const std::string &label, const std::string &text) {
      std::cout << "    " << label << std::string(12 - label.size(), ' ') << text << "\n";
    };
    line("model:", "n = " + fmt_count(model.states()) +
                       " states, p = " + fmt_count(model.inputs()) +
                       " inputs, q = " + fmt_count(model.outputs()) +
                       " outputs; built in " + fmt_seconds(build_seconds));
    line("A:", fmt_count(model.A().nnz()) + " nonzeros, " +
                   fmt_bytes(double(model.A().bytes())) + " (" + model.A().kind() + ")");
    std::string structure = fmt_count(scc.block_count()) + " SCCs in " +
                            fmt_count(scc.level_count()) + " levels, largest " +
                            fmt_count(scc.largest_block()) + " states";
    if (scc.nilpotent())
      structure += ": nilpotent (feed-forward)";
    line("structure:", structure);
    line("certify:", std::string(pf.certified() ? "well-posed, " : "NOT certified, ") +
                         "lambda_PF(|A|) in [" + fmt_g(pf.lower, 6) + ", " +
                         fmt_g(pf.upper, 6) + "] (" +
                         fmt_seconds(rec["certify_seconds"]) + ")");
    line("solve:", to_string(report.method) + ", " + to_string(report.status) + ", " +
                       std::to_string(report.iterations) + " iterations, residual " +
                       fmt_g(report.residual, 3));
    line("time:", fmt_seconds(solve_seconds) + " for " + std::to_string(settings.batch) +
                      " inputs = " + fmt_seconds(solve_seconds / double(settings.batch)) +
                      " per input, best of 3 (setup " +
                      fmt_seconds(rec["setup_seconds"]) + ", first solve " +
                      fmt_seconds(first_seconds) + ")");
    char ratio[64];
    std::snprintf(ratio, sizeof ratio, "%.2f", rec["solve_per_spmm"].get<double>());
    line("vs SpMM:", "one product A X (" + std::to_string(settings.batch) + " columns) " +
                         fmt_seconds(spmm) + ": the solve costs " + ratio + " SpMM");
    line("checksum:", "Y (" + std::to_string(Y.rows()) + " x " +
                          std::to_string(Y.cols()) + ") fnv1a " + hash.hex() + ", sum " +
                          fmt_g(sum, 12));
  }
  return rec;
}

/// The real CIFAR ResNet20 with structured operators: build, certify from the
/// structure, solve a batch with the block sweep, report time and memory.
template <class T> int resnet20_demo(Invocation &inv, const DemoSettings &settings) {
  Progress progress(inv.progress_enabled());
  Stopwatch total;
  if (inv.human())
    std::cout
        << "tacit demo --resnet20: CIFAR ResNet20 (option A shortcuts) as an implicit "
           "model with structured operators\n  batch of "
        << settings.batch << " images (3x32x32), " << to_string(settings.precision)
        << ", " << inv.threads << " thread" << (inv.threads == 1 ? "" : "s") << "\n";
  progress.update("ResNet20: building ...", true);
  Stopwatch clock;
  const Model<T> model = resnet20<T>(ResNetShortcut::option_a, settings.seed);
  const double build_seconds = clock.seconds();

  progress.update("ResNet20: certifying well-posedness ...", true);
  clock.restart();
  const WellPosednessReport wp = analyse_well_posedness(model.A());
  const double certify_seconds = clock.seconds();

  progress.update("ResNet20: solving ...", true);
  const Batch<T> U = resnet20_inputs<T>(settings.batch, settings.seed + 100);
  clock.restart();
  EquilibriumSolver<T> solver(model, default_solve_options(settings.precision));
  const double setup_seconds = clock.seconds();
  Batch<T> X, Y;
  clock.restart();
  SolveReport report = solver.predict(U, X, Y); // first solve: sizes the workspace
  const double first_seconds = clock.seconds();
  double solve_seconds = 1e300;
  for (int r = 0; r < 3; ++r) {
    clock.restart();
    report = solver.predict(U, X, Y);
    solve_seconds = std::min(solve_seconds, clock.seconds());
  }
  progress.clear();

  // Memory: the structured A against the same matrix in CSR (32-bit column
  // indices, 64-bit row pointers).
  const auto nnz = model.A().nnz();
  const double csr_bytes =
      double(nnz) * double(sizeof(T) + 4) + double(model.states() + 1) * 8.0;
  Fnv1a hash;
  double sum = 0;
  for (index_t j = 0; j < Y.cols(); ++j)
    for (index_t i = 0; i < Y.rows(); ++i) {
      const T v = Y(i, j);
      hash.add(&v, sizeof v);
      sum += double(v);
    }
  const double seconds = total.seconds();
  if (inv.json) {
    inv.emit({{"model", "resnet20"},
              {"shortcut", "a"},
              {"batch", settings.batch},
              {"seed", settings.seed},
              {"precision", to_string(settings.precision)},
              {"threads", inv.threads},
              {"n", model.states()},
              {"p", model.inputs()},
              {"q", model.outputs()},
              {"nnz", nnz},
              {"a_bytes", model.A().bytes()},
              {"a_csr_bytes", csr_bytes},
              {"memory_ratio", csr_bytes / double(model.A().bytes())},
              {"lambda_pf", {{"lower", wp.pf.lower}, {"upper", wp.pf.upper}}},
              {"certified", wp.pf.certified()},
              {"norm_inf", wp.norm_inf},
              {"method", to_string(report.method)},
              {"method_reason", solver.method_reason()},
              {"status", to_string(report.status)},
              {"converged", report.ok()},
              {"build_seconds", build_seconds},
              {"certify_seconds", certify_seconds},
              {"setup_seconds", setup_seconds},
              {"first_solve_seconds", first_seconds},
              {"solve_seconds", solve_seconds},
              {"seconds_per_input", solve_seconds / double(settings.batch)},
              {"checksum", hash.hex()},
              {"y_sum", sum},
              {"total_seconds", seconds}});
  } else if (inv.human()) {
    const auto line = [](const std::string &label, const std::string &text) {
      std::cout << "    " << label << std::string(12 - label.size(), ' ') << text << "\n";
    };
    line("model:", "n = " + fmt_count(model.states()) + " states in " +
                       std::to_string(model.blocks().size()) + " ReLU blocks, p = " +
                       fmt_count(model.inputs()) + ", q = " + fmt_count(model.outputs()) +
                       "; built in " + fmt_seconds(build_seconds));
    char ratio[64];
    std::snprintf(ratio, sizeof ratio, "%.0f", csr_bytes / double(model.A().bytes()));
    line("A:", fmt_count(nnz) + " nonzeros held as " +
                   fmt_bytes(double(model.A().bytes())) +
                   " of structured operators (as CSR: " + fmt_bytes(csr_bytes) + ", " +
                   ratio + "x more)");
    line("certify:", std::string(wp.pf.certified() ? "well-posed, " : "NOT certified, ") +
                         "lambda_PF(|A|) = " + fmt_g(wp.pf.upper) +
                         " (strictly block lower triangular) in " +
                         fmt_seconds(certify_seconds));
    line("solve:", to_string(report.method) + " (block sweep), " +
                       to_string(report.status) + "; setup " +
                       fmt_seconds(setup_seconds) + ", first solve " +
                       fmt_seconds(first_seconds));
    line("time:", fmt_seconds(solve_seconds) + " for " + std::to_string(settings.batch) +
                      " images = " + fmt_seconds(solve_seconds / double(settings.batch)) +
                      " per image (best of 3)");
    line("checksum:", "Y (" + std::to_string(Y.rows()) + " x " +
                          std::to_string(Y.cols()) + ") fnv1a " + hash.hex() + ", sum " +
                          fmt_g(sum, 12));
    std::cout << "\ntotal " << fmt_seconds(seconds) << "\n";
  }
  if (!report.ok()) {
    inv.warn("the ResNet20 solve did not converge: " + report.message);
    return exit_numerical;
  }
  return exit_ok;
}

template <class T> int demo(Invocation &inv, const DemoSettings &settings) {
  Progress progress(inv.progress_enabled());
  Stopwatch total;
  nlohmann::json models = nlohmann::json::array();
  bool all_converged = true;
  if (inv.human())
    std::cout << "tacit demo: batch of " << settings.batch << " inputs, "
              << to_string(settings.precision) << ", " << inv.threads << " thread"
              << (inv.threads == 1 ? "" : "s") << "\n";

  {
    ResNetLikeShape shape;
    shape.image = settings.image;
    index_t layers = 0;
    for (const auto l : shape.stage_layers)
      layers += l;
    const std::string title = "ResNet20-like network";
    if (inv.human())
      std::cout << "\n[1] " << title << ": feed-forward, " << layers
                << " 3x3 convolution layers (16/32/64 channels) with residual lines, "
                << settings.image << "x" << settings.image << "x3 images\n";
    progress.update(title + ": building ...", true);
    Stopwatch clock;
    const auto model = resnet_like_model<T>(shape, settings.seed);
    const double build = clock.seconds();
    nlohmann::json rec = run_model(inv, progress, title, model, build, settings);
    rec["kind"] = "feed-forward";
    all_converged = all_converged && rec["converged"].get<bool>();
    models.push_back(std::move(rec));
  }
  {
    const double scale = double(settings.image) / double(default_image);
    const index_t states =
        std::max<index_t>(64, std::llround(implicit_states_at_default * scale * scale));
    const index_t inputs = std::max<index_t>(8, std::llround(1024 * scale * scale));
    const std::string title = "Implicit model";
    if (inv.human())
      std::cout
          << "\n[2] " << title
          << ": random sparse A with cycles (16 nonzeros per row), ||A||_inf = 0.9\n";
    progress.update(title + ": building ...", true);
    Stopwatch clock;
    const auto model =
        random_implicit_model<T>(states, inputs, 10, 16, 0.9, settings.seed + 1);
    const double build = clock.seconds();
    nlohmann::json rec = run_model(inv, progress, title, model, build, settings);
    rec["kind"] = "implicit";
    all_converged = all_converged && rec["converged"].get<bool>();
    models.push_back(std::move(rec));
  }

  const double seconds = total.seconds();
  if (inv.json) {
    inv.emit({{"size", settings.image},
              {"batch", settings.batch},
              {"seed", settings.seed},
              {"precision", to_string(settings.precision)},
              {"threads", inv.threads},
              {"models", models},
              {"total_seconds", seconds}});
  } else if (inv.human()) {
    std::cout << "\ntotal " << fmt_seconds(seconds) << "\n";
  }
  if (!all_converged) {
    inv.warn("a demo solve did not converge (see the status above)");
    return exit_numerical;
  }
  return exit_ok;
}

int run_demo(Invocation &inv) {
  DemoSettings settings;
  settings.image = inv.args.integer("size", 4, 64).value_or(default_image);
  if (settings.image % 4 != 0)
    throw UsageError("--size must be a multiple of 4 (the image is halved twice), got " +
                     std::to_string(settings.image));
  const bool resnet = inv.args.flag("resnet20");
  settings.batch = inv.args.integer("batch", 1, 256).value_or(resnet ? 128 : 32);
  settings.seed = static_cast<std::uint64_t>(
      inv.args.integer("seed", 0, std::numeric_limits<std::int64_t>::max()).value_or(1));
  settings.precision = precision_of(inv.args);
  if (resnet) {
    if (!inv.args.has("seed"))
      settings.seed = 20;
    return settings.precision == Precision::float32
               ? resnet20_demo<float>(inv, settings)
               : resnet20_demo<double>(inv, settings);
  }
  return settings.precision == Precision::float32 ? demo<float>(inv, settings)
                                                  : demo<double>(inv, settings);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "demo",
    .summary = "build, certify and solve a ResNet20-like network and an implicit model",
    .description =
        "The built-in showcase, with no files needed. Builds\n"
        "  1. a ResNet20-like feed-forward network as an implicit model (strictly block\n"
        "     triangular A: n = 188,416 states, about 40M nonzeros at the default size), "
        "and\n"
        "  2. a truly implicit model (random sparse A with cycles, 100,000 states at "
        "the\n"
        "     default size, ||A||_inf = 0.9),\n"
        "then for each: certifies well-posedness (SCCs and a certified lambda_PF(|A|)\n"
        "interval), solves a batch of deterministic random inputs with the automatic\n"
        "method (a sweep for the feed-forward network, Picard for the implicit model),\n"
        "compares the solve time with one sparse product A X of the same batch width,\n"
        "and prints a checksum of the outputs Y (the same bits for any thread count).\n"
        "With --resnet20: the CIFAR ResNet20 built layer by layer (convolution, batch\n"
        "norm, residual adds, pooling, dense) into structured operators, certified from\n"
        "its block structure, solved by the block sweep with the convolution kernels;\n"
        "reports the build, certification and solve times and A's memory against CSR.",
    .positionals = {},
    .options =
        {{"size", 0, "N",
          "image side, a multiple of 4 (default 32); the implicit model scales as N^2"},
         {"batch", 0, "K", "inputs per batch (default 32)"},
         {"seed", 0, "S", "seed of the generated models and inputs (default 1)"},
         precision_option,
         {"resnet20", 0, "",
          "instead: the real CIFAR ResNet20 with structured operators (batch 128 by "
          "default)"}},
    .epilog =
        "JSON fields: size, batch, precision, threads, total_seconds, models [{name,\n"
        "kind, n, p, q, nnz, a_bytes, build_seconds, certify_seconds, lambda_pf\n"
        "{lower, upper}, certified, scc, method, status, iterations, residual,\n"
        "setup_seconds, first_solve_seconds, solve_seconds, seconds_per_input, "
        "spmm_seconds,\n"
        "solve_per_spmm, checksum, y_sum}].\n",
    .order = 5,
    .run = run_demo,
    .usage = "[OPTIONS]",
});

} // namespace
} // namespace tacit::cli
