// tacit sensitivity: rows of the sensitivity matrix S = |C| (I - |A|)^-1 |B| + |D|,
// their largest entries and heat maps in the input's shape.

#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <tacit/core/error.hpp>
#include <tacit/io/image.hpp>
#include <tacit/io/io.hpp>
#include <tacit/core/model.hpp>
#include <tacit/analysis/sensitivity.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

/// Comma-separated whole numbers.
std::vector<std::int64_t> parse_list(const std::string &text, const std::string &what,
                                     std::int64_t min, std::int64_t max) {
  std::vector<std::int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    out.push_back(parse_integer(item, what, min, max));
  if (out.empty())
    throw UsageError(what + " needs at least one value");
  return out;
}

template <class T> int run(Invocation &inv, Precision precision) {
  const std::filesystem::path path = inv.args.positionals().at(0);
  SensitivityOptions options;
  if (const auto m = inv.args.choice("method", {"auto", "sweep", "klu", "iterative"}))
    options.method = parse_sensitivity_method(*m);
  if (const auto t = inv.args.real("tol", 0.0, 1.0))
    options.rel_tol = *t;
  const auto output = inv.args.text("output");
  const auto heatmap = inv.args.text("heatmap");
  const auto shape_text = inv.args.text("input-shape");
  const auto top = inv.args.integer("top", 0, 1000000);
  if (heatmap && !shape_text)
    throw UsageError("--heatmap needs --input-shape C,H,W");

  Progress progress(inv.progress_enabled());
  progress.update("loading " + path.string() + " ...", true);
  Stopwatch clock;
  const Model<T> model = load_model<T>(path);
  const double load_seconds = clock.seconds();
  const index_t p = model.inputs(), q = model.outputs();

  std::vector<index_t> rows;
  if (const auto r = inv.args.text("rows"))
    for (auto k : parse_list(*r, "--rows", 0, std::max<index_t>(0, q - 1)))
      rows.push_back(k);
  else
    for (index_t k = 0; k < q; ++k)
      rows.push_back(k);
  index_t channels = 1, height = 1, width = p;
  if (shape_text) {
    const auto s = parse_list(*shape_text, "--input-shape", 1, index_t(1) << 40);
    if (s.size() != 3)
      throw UsageError("--input-shape takes three numbers C,H,W, got " + *shape_text);
    channels = s[0];
    height = s[1];
    width = s[2];
    if (channels * height * width != p)
      throw UsageError("--input-shape " + *shape_text + " has " +
                       std::to_string(channels * height * width) +
                       " entries, the model has p = " + std::to_string(p) + " inputs");
  }

  progress.update("analysing A (n = " + fmt_count(model.states()) + ") ...", true);
  clock.restart();
  std::optional<SensitivityOperator<T>> S;
  S.emplace(model, options); // NumericalError when not certified: exit 3
  const double setup_seconds = clock.seconds();
  progress.update("computing " + std::to_string(rows.size()) + " rows of S (" +
                      to_string(S->method()) + ") ...",
                  true);
  clock.restart();
  const std::vector<T> values = S->rows_dense(rows);
  const double seconds = clock.seconds();
  const SensitivitySolveStats stats = S->last_solve();
  const index_t m = static_cast<index_t>(rows.size());

  if (output) {
    progress.update("writing " + *output + " ...", true);
    Batch<T> out(p, m);
    for (index_t j = 0; j < m; ++j)
      out.set_column(
          j, std::span<const T>(values.data() + j * p, static_cast<std::size_t>(p)));
    write_output(*output,
                 [&](const std::filesystem::path &file) { write_vectors(file, out); });
  }
  std::vector<std::string> images;
  if (heatmap) {
    // Each row summed over channels, drawn as an H x W map, enlarged so that
    // the longer side has at least 256 pixels.
    const index_t scale = std::max<index_t>(1, 256 / std::max(height, width));
    for (index_t j = 0; j < m; ++j) {
      std::vector<double> plane(static_cast<std::size_t>(height * width), 0.0);
      for (index_t c = 0; c < channels; ++c)
        for (index_t i = 0; i < height * width; ++i)
          plane[i] += static_cast<double>(values[j * p + c * height * width + i]);
      const std::string file = *heatmap + std::to_string(rows[j]) + ".png";
      progress.update("writing " + file + " ...", true);
#if TACIT_HAVE_IMAGE
      const Image img = heat_map(plane, width, height, 0, 0, scale);
      write_output(file, [&](const std::filesystem::path &f) { write_png(f, img); });
#else
      throw Unsupported("--heatmap needs the image component (libpng), which this build "
                        "lacks");
#endif
      images.push_back(file);
    }
  }
  progress.clear();

  std::vector<double> sums(static_cast<std::size_t>(m), 0.0), maxima(sums.size(), 0.0);
  for (index_t j = 0; j < m; ++j)
    for (index_t i = 0; i < p; ++i) {
      sums[j] += static_cast<double>(values[j * p + i]);
      maxima[j] = std::max(maxima[j], static_cast<double>(values[j * p + i]));
    }
  // Top entries straight from the computed rows (no second solve).
  std::vector<TopEntries> tops;
  if (top && *top > 0)
    for (index_t j = 0; j < m; ++j)
      tops.push_back(top_entries(
          std::span<const T>(values.data() + j * p, static_cast<std::size_t>(p)), *top));

  const SensitivityInfo &info = S->info();
  if (inv.json) {
    nlohmann::json doc = {
        {"model", path.string()},
        {"precision", to_string(precision)},
        {"n", model.states()},
        {"p", p},
        {"q", q},
        {"method", to_string(info.method)},
        {"method_reason", info.reason},
        {"exact", info.exact},
        {"lambda_pf", {{"lower", info.lambda_lower}, {"upper", info.lambda_upper}}},
        {"rows", rows},
        {"row_sums", sums},
        {"row_max", maxima},
        {"load_seconds", load_seconds},
        {"setup_seconds", setup_seconds},
        {"seconds", seconds},
        {"threads", inv.threads}};
    if (info.method == SensitivityMethod::iterative) {
      doc["theta"] = info.theta;
      doc["iterations"] = stats.iterations;
      doc["error_bound"] = stats.error_bound;
      doc["converged"] = stats.converged;
    }
    if (info.method == SensitivityMethod::klu)
      doc["factor_entries"] = info.factor_entries;
    if (output)
      doc["output"] = *output;
    if (!images.empty())
      doc["heatmaps"] = images;
    if (!tops.empty()) {
      nlohmann::json t = nlohmann::json::array();
      for (index_t j = 0; j < m; ++j)
        t.push_back(
            {{"row", rows[j]}, {"indices", tops[j].indices}, {"values", tops[j].values}});
      doc["top"] = t;
    }
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "sensitivity of " << path.string() << ": S is " << fmt_count(q) << " x "
              << fmt_count(p) << " (n = " << fmt_count(model.states()) << " states)\n"
              << "  method: " << to_string(info.method) << " (" << info.reason << ")\n"
              << "  lambda_PF(|A|) in [" << fmt_g(info.lambda_lower) << ", "
              << fmt_g(info.lambda_upper) << "]\n";
    if (info.method == SensitivityMethod::iterative)
      std::cout << "  iterations: " << stats.iterations
                << ", certified relative error bound " << fmt_g(stats.error_bound, 3)
                << (stats.converged ? "" : "  (NOT converged)") << "\n";
    std::cout << "  " << m << " row(s) in " << fmt_seconds(seconds) << " (setup "
              << fmt_seconds(setup_seconds) << ", " << inv.threads << " thread(s))\n";
    for (index_t j = 0; j < std::min<index_t>(m, 20); ++j) {
      std::cout << "  row " << rows[j] << ": sum " << fmt_g(sums[j]) << ", max "
                << fmt_g(maxima[j]);
      if (!tops.empty()) {
        std::cout << "; top:";
        for (std::size_t t = 0; t < tops[j].indices.size() && t < 8; ++t)
          std::cout << " " << tops[j].indices[t] << " (" << fmt_g(tops[j].values[t], 4)
                    << ")";
        if (tops[j].indices.size() > 8)
          std::cout << " ...";
      }
      std::cout << "\n";
    }
    if (m > 20)
      std::cout << "  ...\n";
    if (output)
      std::cout << "  rows written to " << *output << "\n";
    if (!images.empty())
      std::cout << "  heat maps: " << images.front()
                << (images.size() > 1 ? " ... " + images.back() : "") << "\n";
  }
  if (info.method == SensitivityMethod::iterative && !stats.converged) {
    inv.warn("the iteration stopped with certified relative error bound " +
             fmt_g(stats.error_bound, 3) + " above the tolerance");
    return exit_numerical;
  }
  return exit_ok;
}

int run_sensitivity(Invocation &inv) {
  const Precision precision = precision_of(inv.args);
  return precision == Precision::float32 ? run<float>(inv, precision)
                                         : run<double>(inv, precision);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "sensitivity",
    .summary = "rows of the sensitivity matrix S = |C| (I - |A|)^-1 |B| + |D|",
    .description =
        "Computes rows of S = |C| (I - |A|)^-1 |B| + |D| without forming the inverse:\n"
        "|y(u) - y(u0)| <= S |u - u0| componentwise for every pair of inputs when\n"
        "lambda_PF(|A|) < 1 and the activations are 1-Lipschitz. Row k of S ranks the\n"
        "inputs by their worst-case influence on output k (sparse attacks target its\n"
        "largest entries). The back-end is a forward/backward substitution when A is\n"
        "block triangular (feed-forward networks), a sparse LU (KLU) of I - |A| for a\n"
        "general sparse A, or a certified fixed-point iteration (error bound reported).\n"
        "A model for which lambda_PF(|A|) < 1 cannot be certified is refused (exit 3).",
    .positionals = {{"MODEL", "model directory or native model file"}},
    .options = {{"rows", 0, "I,J,...",
                 "rows (outputs, from 0) to compute (default: all)"},
                {"output", 'o', "S.txt",
                 "write the rows, one per line (p numbers that read back to the same "
                 "bits)"},
                {"method", 0, "M", "auto, sweep, klu or iterative (default auto)"},
                {"tol", 0, "T",
                 "iterative back-end: certified relative error to reach (default 1e-14)"},
                {"top", 0, "K", "report the K largest entries of each row"},
                {"heatmap", 0, "PREFIX",
                 "write each row as a heat map PREFIX<row>.png in the input's shape "
                 "(summed over channels)"},
                {"input-shape", 0, "C,H,W", "shape of one input (needed by --heatmap)"},
                precision_option},
    .epilog =
        "JSON fields: method, method_reason, exact, lambda_pf {lower, upper}, rows,\n"
        "row_sums, row_max, top [{row, indices, values}], iterations, error_bound,\n"
        "converged (iterative), factor_entries (klu), load_seconds, setup_seconds,\n"
        "seconds, heatmaps.\n"
        "Example: tacit sensitivity net.tacit --top 5 --heatmap S_ --input-shape "
        "1,28,28\n",
    .order = 70,
    .run = run_sensitivity,
    .usage = "MODEL [--rows I,J,...] [-o S.txt] [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
