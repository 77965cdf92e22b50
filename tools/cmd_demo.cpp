// tacit demo: the built-in showcase. The CIFAR ResNet20 with structured
// operators (certified, solved, against the same network as CSR), a truly
// implicit model with cycles (certified, solved by Picard, against one
// sparse product) and the certified accuracy of the committed Fashion-MNIST
// CNN (embedded in the binary) on test images.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>
#include <string>

#include <tacit/analysis/bounds.hpp>
#include <tacit/analysis/wellposed.hpp>
#include <tacit/config.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/solve/solve.hpp>
#if TACIT_HAVE_ONNX && TACIT_HAVE_IDX
#include <tacit/io/idx.hpp>
#include <tacit/nn/onnx.hpp>
#endif

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
#if TACIT_HAVE_ONNX && TACIT_HAVE_IDX
/// The committed Fashion-MNIST CNN (tests/data/fashion/fashion_cnn.onnx),
/// embedded at build time (demo_fashion_cnn.cpp in the build tree).
std::string_view demo_fashion_cnn_onnx();
#endif
namespace {

constexpr index_t default_image = 32;
/// States of the implicit model at the default size (scaled with size^2).
constexpr double implicit_states_at_default = 100000;

struct DemoSettings {
  index_t image = default_image;
  index_t batch = 32;
  std::uint64_t seed = 1;
  Precision precision = Precision::float64;
  /// Seed of ResNet20's weights (its inputs: seed + 100).
  std::uint64_t resnet_seed = 20;
  /// Compare ResNet20's solve with the same network as CSR.
  bool csr = true;
  /// Fashion-MNIST test images to certify (0: none), and the radius.
  index_t certify = 200;
  double eps = 0.01;
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

/// Outputs' checksum (column by column, stable across thread counts) and sum.
template <class T> std::pair<std::string, double> checksum(const Batch<T> &Y) {
  Fnv1a hash;
  double sum = 0;
  for (index_t j = 0; j < Y.cols(); ++j)
    for (index_t i = 0; i < Y.rows(); ++i) {
      const T v = Y(i, j);
      hash.add(&v, sizeof v);
      sum += double(v);
    }
  return {hash.hex(), sum};
}

/// Best of 3 batch solves (outputs only) after a first (cold) one: {first, best}.
template <class T>
std::pair<double, double> time_solves(EquilibriumSolver<T> &solver, const Batch<T> &U,
                                      Batch<T> &Y, SolveReport &report) {
  Stopwatch clock;
  report = solver.predict(U, Y);
  const double first = clock.seconds();
  double best = 1e300;
  for (int r = 0; r < 3 && report.ok(); ++r) {
    clock.restart();
    report = solver.predict(U, Y);
    best = std::min(best, clock.seconds());
  }
  return {first, report.ok() ? best : first};
}

void demo_line(const std::string &label, const std::string &text) {
  std::cout << "    " << label
            << std::string(label.size() < 12 ? 12 - label.size() : 1, ' ') << text
            << "\n";
}

/// The CIFAR ResNet20 with structured operators: build, certify from the
/// structure, solve a batch with the block sweep; with `csr`, the same
/// network with A materialised as CSR, solved on the same batch.
template <class T>
nlohmann::json resnet20_section(const Invocation &inv, Progress &progress,
                                const DemoSettings &settings, bool csr) {
  progress.update("ResNet20: building ...", true);
  Stopwatch clock;
  const Model<T> model = resnet20<T>(ResNetShortcut::option_a, settings.resnet_seed);
  const double build_seconds = clock.seconds();

  progress.update("ResNet20: certifying well-posedness ...", true);
  clock.restart();
  const WellPosednessReport wp = analyse_well_posedness(model.A());
  const double certify_seconds = clock.seconds();

  progress.update("ResNet20: solving ...", true);
  const Batch<T> U = resnet20_inputs<T>(settings.batch, settings.resnet_seed + 100);
  clock.restart();
  EquilibriumSolver<T> solver(model, default_solve_options(settings.precision));
  const double setup_seconds = clock.seconds();
  Batch<T> Y;
  SolveReport report;
  const auto [first_seconds, solve_seconds] = time_solves(solver, U, Y, report);
  const auto [hash, sum] = checksum(Y);

  // Memory: the structured A against the same matrix in CSR (32-bit column
  // indices, 64-bit row pointers).
  const auto nnz = model.A().nnz();
  const double csr_bytes =
      double(nnz) * double(sizeof(T) + 4) + double(model.states() + 1) * 8.0;
  nlohmann::json rec = {{"name", "ResNet20"},
                        {"kind", "feed-forward"},
                        {"shortcut", "a"},
                        {"n", model.states()},
                        {"p", model.inputs()},
                        {"q", model.outputs()},
                        {"nnz", nnz},
                        {"a_bytes", model.A().bytes()},
                        {"a_storage", model.A().kind()},
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
                        {"checksum", hash},
                        {"y_sum", sum}};

  // The same network as CSR: materialised, set up and solved on the same
  // inputs (the same method, the sweep over its levels).
  double csr_build = 0, csr_setup = 0, csr_solve = 0, csr_diff = 0;
  std::string csr_hash;
  if (csr && report.ok()) {
    progress.update("ResNet20: materialising A as CSR ...", true);
    clock.restart();
    const Model<T> flat(
        std::make_shared<CsrMatrix<T>>(model.A().to_csr()), model.B_ptr(), model.C_ptr(),
        model.D_ptr(), std::vector<T>(model.bias_x().begin(), model.bias_x().end()),
        std::vector<T>(model.bias_y().begin(), model.bias_y().end()), model.blocks());
    csr_build = clock.seconds();
    progress.update("ResNet20 as CSR: solving ...", true);
    clock.restart();
    EquilibriumSolver<T> flat_solver(flat, default_solve_options(settings.precision));
    csr_setup = clock.seconds();
    Batch<T> Yc;
    SolveReport flat_report;
    csr_solve = time_solves(flat_solver, U, Yc, flat_report).second;
    csr_hash = checksum(Yc).first;
    for (index_t j = 0; j < Y.cols(); ++j)
      for (index_t i = 0; i < Y.rows(); ++i)
        csr_diff = std::max(csr_diff, std::abs(double(Yc(i, j)) - double(Y(i, j))));
    rec["csr"] = {{"build_seconds", csr_build},
                  {"max_abs_difference", csr_diff},
                  {"setup_seconds", csr_setup},
                  {"solve_seconds", csr_solve},
                  {"status", to_string(flat_report.status)},
                  {"checksum", csr_hash},
                  {"structured_speedup", csr_solve / solve_seconds}};
  }
  progress.clear();

  if (inv.human()) {
    demo_line("model:", "n = " + fmt_count(model.states()) + " states in " +
                            std::to_string(model.blocks().size()) +
                            " ReLU blocks, p = " + fmt_count(model.inputs()) +
                            ", q = " + fmt_count(model.outputs()) + "; built in " +
                            fmt_seconds(build_seconds));
    char ratio[64];
    std::snprintf(ratio, sizeof ratio, "%.0f", csr_bytes / double(model.A().bytes()));
    demo_line("A:", fmt_count(nnz) + " nonzeros held as " +
                        fmt_bytes(double(model.A().bytes())) +
                        " of structured operators (as CSR: " + fmt_bytes(csr_bytes) +
                        ", " + ratio + "x more)");
    demo_line("certify:",
              std::string(wp.pf.certified() ? "well-posed, " : "NOT certified, ") +
                  "lambda_PF(|A|) = " + fmt_g(wp.pf.upper) +
                  " (strictly block lower triangular) in " +
                  fmt_seconds(certify_seconds));
    demo_line("solve:", to_string(report.method) + " (block sweep), " +
                            to_string(report.status) + "; setup " +
                            fmt_seconds(setup_seconds) + ", first solve " +
                            fmt_seconds(first_seconds));
    demo_line("time:",
              fmt_seconds(solve_seconds) + " for " + std::to_string(settings.batch) +
                  " images = " + fmt_seconds(solve_seconds / double(settings.batch)) +
                  " per image (best of 3)");
    if (rec.contains("csr")) {
      char speed[64];
      std::snprintf(speed, sizeof speed, "%.1f", csr_solve / solve_seconds);
      demo_line("vs CSR:", "the same A as CSR (materialised in " +
                               fmt_seconds(csr_build) + ", solver set-up " +
                               fmt_seconds(csr_setup) +
                               "): " + fmt_seconds(csr_solve / double(settings.batch)) +
                               " per image; the structured solve is " + speed +
                               "x faster; outputs within " + fmt_g(csr_diff, 2));
    }
    demo_line("checksum:", "Y (" + std::to_string(Y.rows()) + " x " +
                               std::to_string(Y.cols()) + ") fnv1a " + hash + ", sum " +
                               fmt_g(sum, 12));
  }
  return rec;
}

/// `tacit demo --resnet20`: the ResNet20 part of the demo alone.
template <class T> int resnet20_demo(Invocation &inv, const DemoSettings &settings) {
  Progress progress(inv.progress_enabled());
  Stopwatch total;
  if (inv.human())
    std::cout
        << "tacit demo --resnet20: CIFAR ResNet20 (option A shortcuts) as an implicit "
           "model with structured operators\n  batch of "
        << settings.batch << " images (3x32x32), " << to_string(settings.precision)
        << ", " << inv.threads << " thread" << (inv.threads == 1 ? "" : "s") << "\n";
  nlohmann::json rec = resnet20_section<T>(inv, progress, settings, false);
  const double seconds = total.seconds();
  if (inv.json) {
    rec["model"] = "resnet20";
    rec["batch"] = settings.batch;
    rec["seed"] = settings.resnet_seed;
    rec["precision"] = to_string(settings.precision);
    rec["threads"] = inv.threads;
    rec["total_seconds"] = seconds;
    inv.emit(rec);
  } else if (inv.human()) {
    std::cout << "\ntotal " << fmt_seconds(seconds) << "\n";
  }
  if (!rec["converged"].get<bool>()) {
    inv.warn("the ResNet20 solve did not converge");
    return exit_numerical;
  }
  return exit_ok;
}

#if TACIT_HAVE_ONNX && TACIT_HAVE_IDX
/// Certified accuracy of the committed Fashion-MNIST CNN (embedded in the
/// binary) on the first `count` test images, linear bound, at eps.
template <class T>
nlohmann::json robustness_section(const Invocation &inv, Progress &progress,
                                  index_t count, double eps) {
  const auto dir = fashion_mnist_directory();
  if (!dir) {
    const std::string why = "Fashion-MNIST not found (Debian package "
                            "dataset-fashion-mnist, or TACIT_FASHION_MNIST_DIR)";
    if (inv.human())
      demo_line("skipped:", why);
    return {{"skipped", why}};
  }
  progress.update("Fashion-MNIST CNN: loading ...", true);
  Stopwatch clock;
  const Model<T> model =
      import_onnx_bytes<T>(demo_fashion_cnn_onnx(), "fashion_cnn.onnx");
  const auto data = read_idx_dataset<T>(*dir / "t10k-images-idx3-ubyte.gz",
                                        *dir / "t10k-labels-idx1-ubyte.gz", count);
  const double load_seconds = clock.seconds();
  CertifyOptions options;
  options.method = BoundMethod::linear;
  options.domain_lo = 0;
  options.domain_hi = 1;
  BoundAnalyzer<T> analyzer(model, options.bounds);
  const std::vector<double> radii = {eps};
  const auto result = certify_dataset<T>(
      analyzer, data.images, data.labels, radii, false, options,
      [&](index_t done, index_t total) {
        progress.update("Fashion-MNIST CNN: certified " + fmt_count(done) + " / " +
                        fmt_count(total) + " images");
      });
  progress.clear();
  const index_t n = data.images.cols();
  nlohmann::json rec = {{"name", "Fashion-MNIST CNN"},
                        {"n", model.states()},
                        {"images", n},
                        {"eps", eps},
                        {"bound", "linear"},
                        {"correct", result.correct},
                        {"certified", result.certified[0]},
                        {"load_seconds", load_seconds},
                        {"certify_seconds", result.seconds},
                        {"seconds_per_input", n ? result.seconds / double(n) : 0.0}};
  if (inv.human()) {
    const auto pct = [&](index_t v) {
      return fmt_g(100.0 * double(v) / double(n), 3) + "%";
    };
    demo_line("model:", "n = " + fmt_count(model.states()) +
                            " states, p = " + fmt_count(model.inputs()) +
                            ", q = " + fmt_count(model.outputs()) + " (committed ONNX, " +
                            std::to_string(analyzer.levels()) + " levels)");
    demo_line("accuracy:", fmt_count(result.correct) + " / " + fmt_count(n) + " (" +
                               pct(result.correct) + ") of the first test images");
    demo_line("certified:", fmt_count(result.certified[0]) + " (" +
                                pct(result.certified[0]) + ") at l_inf eps " +
                                fmt_g(eps, 3) + " (" + fmt_g(eps * 255, 3) +
                                "/255), linear bound");
    demo_line("time:", fmt_seconds(result.seconds) + " = " +
                           fmt_seconds(n ? result.seconds / double(n) : 0.0) +
                           " per image");
  }
  return rec;
}
#endif

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
    if (inv.human())
      std::cout << "\n[1] CIFAR ResNet20 (option A shortcuts) with structured operators: "
                   "feed-forward, 3x32x32 images\n";
    nlohmann::json rec = resnet20_section<T>(inv, progress, settings, settings.csr);
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
  nlohmann::json robustness;
  if (settings.certify > 0) {
    if (inv.human())
      std::cout << "\n[3] Certified robustness: the committed Fashion-MNIST CNN on its "
                   "test images\n";
#if TACIT_HAVE_ONNX && TACIT_HAVE_IDX
    robustness = robustness_section<T>(inv, progress, settings.certify, settings.eps);
#else
    const std::string why = "tacit was built without its onnx or idx component";
    if (inv.human())
      demo_line("skipped:", why);
    robustness = {{"skipped", why}};
#endif
  }

  const double seconds = total.seconds();
  if (inv.json) {
    nlohmann::json doc = {
        {"size", settings.image},  {"batch", settings.batch},
        {"seed", settings.seed},   {"precision", to_string(settings.precision)},
        {"threads", inv.threads},  {"models", models},
        {"total_seconds", seconds}};
    if (!robustness.is_null())
      doc["robustness"] = robustness;
    inv.emit(doc);
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
  if (inv.args.has("seed"))
    settings.resnet_seed = settings.seed;
  settings.csr = !inv.args.flag("no-csr");
  settings.certify = inv.args.integer("certify", 0, 10000).value_or(settings.certify);
  if (resnet) {
    return settings.precision == Precision::float32
               ? resnet20_demo<float>(inv, settings)
               : resnet20_demo<double>(inv, settings);
  }
  return settings.precision == Precision::float32 ? demo<float>(inv, settings)
                                                  : demo<double>(inv, settings);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "demo",
    .summary = "ResNet20, an implicit model and certified robustness, with no files",
    .description =
        "The built-in showcase, with no files needed:\n"
        "  1. the CIFAR ResNet20 (n = 188,416 states, 36.6M nonzeros in A) held as\n"
        "     structured operators: built, certified well-posed from its block\n"
        "     structure, a batch of deterministic images solved by the block sweep\n"
        "     (best of 3), and the same network with A materialised as CSR solved on\n"
        "     the same batch (time and memory against the structured form);\n"
        "  2. a truly implicit model (random sparse A with cycles, 100,000 states at\n"
        "     the default size, ||A||_inf = 0.9): SCCs and a certified lambda_PF(|A|)\n"
        "     interval, a batch solved by Picard, compared with one product A X;\n"
        "  3. the committed Fashion-MNIST CNN (built into the binary): accuracy and\n"
        "     certified accuracy at l_inf radius 0.01 with the linear bound on the\n"
        "     first test images (needs the dataset, see `tacit certify`).\n"
        "Each solve prints a checksum of its outputs (the same bits for any thread\n"
        "count). With --resnet20: part 1 alone, without the CSR comparison.",
    .positionals = {},
    .options =
        {{"size", 0, "N",
          "implicit model: image side, a multiple of 4 (default 32); it scales as N^2"},
         {"batch", 0, "K", "inputs per batch (default 32)"},
         {"seed", 0, "S",
          "seed of the generated models and inputs (default 1; ResNet20's weights 20)"},
         precision_option,
         {"no-csr", 0, "", "skip the CSR form of ResNet20 (it takes ~20 s and 0.5 GB)"},
         {"certify", 0, "N",
          "Fashion-MNIST test images to certify (default 200; 0: none)"},
         {"resnet20", 0, "",
          "instead: ResNet20 with structured operators only (batch 128 by default)"}},
    .epilog =
        "JSON fields: size, batch, precision, threads, total_seconds, models [{name,\n"
        "kind, n, p, q, nnz, a_bytes, build_seconds, certify_seconds, lambda_pf\n"
        "{lower, upper}, certified, method, status, setup_seconds,\n"
        "first_solve_seconds, solve_seconds, seconds_per_input, checksum, y_sum;\n"
        "ResNet20: a_csr_bytes, memory_ratio, csr {build_seconds, setup_seconds,\n"
        "solve_seconds, checksum, structured_speedup}; implicit model: scc,\n"
        "iterations, residual, spmm_seconds, solve_per_spmm}], robustness {images,\n"
        "eps, correct, certified, certify_seconds, seconds_per_input} or {skipped}.\n",
    .order = 5,
    .run = run_demo,
    .usage = "[OPTIONS]",
});

} // namespace
} // namespace tacit::cli
