// tacit lipschitz: per-output bounds on the l_inf -> l_inf Lipschitz constant:
// upper from the sensitivity matrix (row sums of S), lower from gradients
// through the equilibrium at sampled inputs.

#include <algorithm>
#include <cmath>
#include <iostream>
#include <optional>
#include <vector>

#include <tacit/error.hpp>
#include <tacit/generate.hpp>
#include <tacit/io.hpp>
#include <tacit/model.hpp>
#include <tacit/sensitivity.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

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
  try {
    S.emplace(model);
  } catch (const InvalidArgument &e) {
    throw CommandFailure(exit_numerical, e.what());
  }
  progress.update("upper bounds (S 1) and gradients at " + std::to_string(samples) +
                      " samples ...",
                  true);
  Batch<T> U = random_batch<T>(model.inputs(), samples, seed);
  if (radius != 1.0)
    for (auto &v : U.storage())
      v = static_cast<T>(v * radius);
  LipschitzReport report;
  try {
    report = lipschitz_bounds(model, *S, U);
  } catch (const InvalidArgument &e) {
    throw CommandFailure(exit_numerical, e.what());
  }
  const double seconds = clock.seconds();
  progress.clear();

  const index_t q = model.outputs();
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
    inv.emit({{"model", path.string()},
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
                precision_option},
    .epilog =
        "JSON fields: outputs [{output, upper, lower, gap, ratio, argmax_sample}],\n"
        "method, samples, seconds.\n",
    .order = 72,
    .run = run_lipschitz,
    .usage = "MODEL [--samples N] [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
