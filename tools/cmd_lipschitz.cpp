// tacit lipschitz: per-output bounds on the l_inf -> l_inf Lipschitz constant:
// upper from the sensitivity matrix (row sums of S), lower from gradients
// through the equilibrium at sampled inputs; with --eps, the same locally on
// l_inf boxes around given inputs (upper from the interval Jacobian on the
// linear state bounds, lower from gradients sampled in the box).

#include <algorithm>
#include <cmath>
#include <iostream>
#include <optional>
#include <random>
#include <vector>

#include <tacit/analysis/bounds.hpp>
#include <tacit/core/error.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/io/io.hpp>
#include <tacit/core/model.hpp>
#include <tacit/analysis/sensitivity.hpp>

#include "cli_common.hpp"
#include "cli_dataset.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

/// Local bounds on the boxes |u - u0| <= eps around each centre u0.
struct LocalReport {
  double eps = 0;
  std::string source;
  index_t samples = 0;                           ///< gradient samples per box
  std::vector<std::vector<double>> upper, lower; ///< per centre, per output
  std::vector<std::string> status;               ///< per centre
  std::vector<double> mean_upper, mean_lower;    ///< over the centres with finite bounds
  index_t bounded = 0;
  double seconds = 0;
};

template <class T>
std::optional<LocalReport> local_bounds(Invocation &inv, const Model<T> &model,
                                        Progress &progress) {
  const auto &a = inv.args;
  if (!a.has("eps")) {
    if (a.has("data") || a.has("input"))
      throw UsageError(
          "--data and --input give the centres of the local bound: add --eps");
    return std::nullopt;
  }
  const double eps = a.real("eps", 0.0, 1e300).value();
  const index_t limit = a.integer("limit", 1, std::int64_t(1) << 40).value_or(10);
  const index_t samples = a.integer("local-samples", 0, 1000000).value_or(32);
  const index_t p = model.inputs(), q = model.outputs();
  LocalReport r;
  r.eps = eps;
  r.samples = samples;
  Batch<double> centres;
  bool images = false;
  if (const auto dir = a.text("data")) {
    if (a.has("input"))
      throw UsageError("give either --data or --input, not both");
#if TACIT_HAVE_IDX
    const std::filesystem::path file = find_idx_file(*dir, "t10k-images-idx3-ubyte");
    centres = read_idx_images<double>(file, limit).images;
    r.source = file.string();
#else
    throw Unsupported("--data needs the IDX reader (component idx, zlib), which this "
                      "build lacks; use --input");
#endif
    images = true;
  } else if (const auto input = a.text("input")) {
    centres = read_vectors<double>(*input, p);
    r.source = *input;
  } else {
    throw UsageError("--eps needs the centres of the boxes: --data DIR or --input U.txt");
  }
  if (centres.rows() != p)
    throw CommandFailure(exit_input,
                         r.source + ": inputs have " + std::to_string(centres.rows()) +
                             " values, the model has p = " + std::to_string(p));
  // Bounds are computed in double whatever --precision says.
  const Model<double> m64 = convert_model<double>(model);
  Stopwatch clock;
  BoundAnalyzer<double> analyzer(m64);
  const index_t count = std::min(limit, centres.cols());
  std::mt19937_64 rng(
      static_cast<std::uint64_t>(a.integer("seed", 0, INT64_MAX).value_or(1)));
  r.mean_upper.assign(q, 0.0);
  r.mean_lower.assign(q, 0.0);
  std::vector<double> u0(static_cast<std::size_t>(p));
  for (index_t c = 0; c < count; ++c) {
    progress.update("local bounds: box " + std::to_string(c + 1) + " of " +
                    std::to_string(count) + " ...");
    centres.get_column(c, u0);
    const auto box =
        images ? linf_box<double>(u0, eps, 0.0, 1.0) : linf_box<double>(u0, eps);
    const auto nominal = analyzer.nominal(std::span<const double>(u0));
    const LocalLipschitz L =
        analyzer.local_lipschitz(analyzer.linear_state_bounds(nominal, box));
    // Gradients at the centre and at points of the box.
    const std::vector<double> lower = local_lipschitz_lower<double>(
        m64, u0, box.lower, box.upper, samples, rng);
    r.upper.push_back(L.upper);
    r.lower.push_back(lower);
    r.status.push_back(to_string(L.status));
    if (L.status != BoundStatus::unbounded) {
      ++r.bounded;
      for (index_t k = 0; k < q; ++k) {
        r.mean_upper[k] += L.upper[k];
        r.mean_lower[k] += lower[k];
      }
    }
  }
  for (index_t k = 0; k < q; ++k) {
    r.mean_upper[k] /= std::max<index_t>(1, r.bounded);
    r.mean_lower[k] /= std::max<index_t>(1, r.bounded);
  }
  r.seconds = clock.seconds();
  return r;
}

template <class T> int run(Invocation &inv, Precision precision) {
  const std::filesystem::path path = inv.args.positionals().at(0);
  const index_t samples = inv.args.integer("samples", 0, 1000000).value_or(32);
  const auto seed =
      static_cast<std::uint64_t>(inv.args.integer("seed", 0, INT64_MAX).value_or(1));
  const double radius = inv.args.real("radius", 0.0, 1e300).value_or(1.0);

  Progress progress(inv.progress_enabled());
  progress.update("loading " + path.string() + " ...", true);
  Stopwatch total;
  const Model<T> model = load_model<T>(path);
  for (const auto &b : model.blocks())
    if (b.activation.lipschitz() > 1)
      throw CommandFailure(exit_input,
                           path.string() + ": block '" + b.name + "' uses " +
                               b.activation.name() + " with Lipschitz constant " +
                               fmt_g(b.activation.lipschitz()) +
                               " > 1; the bounds need 1-Lipschitz activations");
  progress.update("sensitivity operator ...", true);
  Stopwatch clock;
  std::optional<SensitivityOperator<T>> S;
  S.emplace(model); // NumericalError when not certified: exit 3
  progress.update("upper bounds (S 1) and gradients at " + std::to_string(samples) +
                      " samples ...",
                  true);
  Batch<T> U = random_batch<T>(model.inputs(), samples, seed);
  if (radius != 1.0)
    for (auto &v : U.storage())
      v = static_cast<T>(v * radius);
  const LipschitzReport report = lipschitz_bounds(model, *S, U);
  const double seconds = clock.seconds();
  progress.clear();

  const index_t q = model.outputs();
  const std::optional<LocalReport> local = local_bounds(inv, model, progress);
  std::vector<double> gap(static_cast<std::size_t>(q)), ratio(gap.size());
  for (index_t k = 0; k < q; ++k) {
    gap[k] = report.upper[k] - report.lower[k];
    ratio[k] = report.lower[k] > 0 ? report.upper[k] / report.lower[k]
                                   : std::numeric_limits<double>::infinity();
  }
  if (inv.json) {
    nlohmann::json outputs = nlohmann::json::array();
    for (index_t k = 0; k < q; ++k) {
      nlohmann::json o = {{"output", k},
                          {"upper", report.upper[k]},
                          {"lower", report.lower[k]},
                          {"gap", gap[k]},
                          {"argmax_sample", report.argmax[k]}};
      o["ratio"] = std::isfinite(ratio[k]) ? nlohmann::json(ratio[k]) : nlohmann::json();
      outputs.push_back(o);
    }
    nlohmann::json local_json;
    if (local) {
      nlohmann::json boxes = nlohmann::json::array();
      for (std::size_t c = 0; c < local->upper.size(); ++c) {
        nlohmann::json up = nlohmann::json::array(), lo = nlohmann::json::array();
        for (index_t k = 0; k < q; ++k) {
          up.push_back(std::isfinite(local->upper[c][k])
                           ? nlohmann::json(local->upper[c][k])
                           : nlohmann::json());
          lo.push_back(local->lower[c][k]);
        }
        boxes.push_back(
            {{"input", c}, {"status", local->status[c]}, {"upper", up}, {"lower", lo}});
      }
      local_json = {{"eps", local->eps},
                    {"centres", local->source},
                    {"bounded", local->bounded},
                    {"samples_per_box", local->samples},
                    {"mean_upper", local->mean_upper},
                    {"mean_lower", local->mean_lower},
                    {"boxes", boxes},
                    {"seconds", local->seconds}};
    }
    inv.emit({{"local", local_json},
              {"model", path.string()},
              {"precision", to_string(precision)},
              {"n", model.states()},
              {"p", model.inputs()},
              {"q", q},
              {"samples", samples},
              {"seed", seed},
              {"radius", radius},
              {"method", to_string(S->method())},
              {"method_reason", S->method_reason()},
              {"outputs", outputs},
              {"seconds", seconds},
              {"total_seconds", total.seconds()},
              {"threads", inv.threads}});
  } else if (inv.human()) {
    std::cout << "l_inf -> l_inf Lipschitz bounds of " << path.string() << " (q = " << q
              << " outputs)\n"
              << "  upper: row sums of S (" << to_string(S->method())
              << "); lower: max ||grad y_k(u)||_1 over " << samples
              << " inputs uniform in [-" << fmt_g(radius) << ", " << fmt_g(radius)
              << "]^p\n"
              << "  output         lower          upper     upper/lower\n";
    for (index_t k = 0; k < q; ++k) {
      char line[160];
      std::snprintf(line, sizeof line, "  %6lld  %13.6g  %13.6g  %13.4g\n",
                    static_cast<long long>(k), report.lower[k], report.upper[k],
                    ratio[k]);
      std::cout << line;
    }
    std::cout << "  " << fmt_seconds(seconds) << " (" << inv.threads << " thread(s))\n";
    if (local) {
      std::cout
          << "local bounds on |u - u0|_inf <= " << fmt_g(local->eps) << " around "
          << local->upper.size() << " input(s) of " << local->source << " ("
          << local->bounded << " bounded)\n"
          << "  upper: interval Jacobian on the linear state bounds; lower: max "
             "||grad y_k||_1 over the centre and "
          << local->samples << " points of each box; means over the boxes\n"
          << "  output    local lower    local upper     upper/lower   global upper\n";
      for (index_t k = 0; k < q; ++k) {
        const double lo = local->mean_lower[k], up = local->mean_upper[k];
        char line[160];
        std::snprintf(line, sizeof line, "  %6lld  %13.6g  %13.6g  %14.4g  %13.6g\n",
                      static_cast<long long>(k), lo, up,
                      lo > 0 ? up / lo : std::numeric_limits<double>::infinity(),
                      report.upper[k]);
        std::cout << line;
      }
      std::cout << "  " << fmt_seconds(local->seconds) << "\n";
    }
  }
  return exit_ok;
}

int run_lipschitz(Invocation &inv) {
  const Precision precision = precision_of(inv.args);
  return precision == Precision::float32 ? run<float>(inv, precision)
                                         : run<double>(inv, precision);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "lipschitz",
    .summary = "per-output Lipschitz bounds (l_inf -> l_inf): upper from S, lower "
               "from gradients",
    .description =
        "For each output k, bounds the smallest L_k with |y_k(u) - y_k(u')| <=\n"
        "L_k ||u - u'||_inf for all inputs. Upper bound: the row sum (S 1)_k of the\n"
        "sensitivity matrix S = |C| (I - |A|)^-1 |B| + |D| (needs lambda_PF(|A|) < 1\n"
        "and 1-Lipschitz activations). Lower bound: the largest ||grad y_k(u)||_1 over\n"
        "sampled inputs u, the gradient taken through the equilibrium\n"
        "(grad y_k = D^T e_k + B^T P (I - A^T P)^-1 C^T e_k, P = diag(phi'(z))).",
    .positionals = {{"MODEL", "model directory or native model file"}},
    .options = {{"samples", 0, "N", "number of sampled inputs (default 32)"},
                {"seed", 0, "S", "seed of the sampled inputs (default 1)"},
                {"radius", 0, "R", "inputs uniform in [-R, R]^p (default 1)"},
                {"eps", 0, "E",
                 "also bound the constants locally, on the boxes |u - u0|_inf <= E "
                 "around the inputs of --data or --input"},
                {"data", 0, "DIR",
                 "IDX directory: centres from its test images (boxes clipped to [0, 1])"},
                {"input", 'i', "U.txt", "centres, one input per line"},
                {"limit", 0, "N", "number of centres (default 10)"},
                {"local-samples", 0, "M",
                 "gradient samples per box for the local lower bound (default 32)"},
                precision_option},
    .epilog =
        "JSON fields: outputs [{output, upper, lower, gap, ratio, argmax_sample}],\n"
        "method, samples, seconds; with --eps also local {eps, mean_upper, mean_lower,\n"
        "boxes [{input, status, upper, lower}], seconds}.\n"
        "Example: tacit lipschitz cnn.tacit --eps 0.01 --data "
        "/usr/share/datasets/fashion-mnist --limit 100\n",
    .order = 72,
    .run = run_lipschitz,
    .usage = "MODEL [--samples N] [--eps E (--data DIR | --input U.txt)] [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
