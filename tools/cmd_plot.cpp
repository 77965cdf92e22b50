// tacit plot spy: the sparsity pattern of a model's matrix as a PNG.

#include <cmath>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <utility>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/model.hpp>
#include <tacit/io/image.hpp>
#include <tacit/io/io.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

namespace fs = std::filesystem;

/// The image size of --width and --height (defaults 640 x 400).
std::pair<index_t, index_t> chart_size(const Arguments &args) {
  return {args.integer("width", 20, 16384).value_or(640),
          args.integer("height", 20, 16384).value_or(400)};
}

void write_chart(Invocation &inv, const Image &img, const std::string &out,
                 const nlohmann::json &report, const std::string &what) {
  write_output(out, [&](const fs::path &f) { write_png(f, img); });
  if (inv.json) {
    auto j = report;
    j["output"] = out;
    j["width"] = img.width;
    j["height"] = img.height;
    inv.emit(j);
  } else if (inv.human()) {
    std::cout << what << " -> " << out << " (" << img.width << " x " << img.height
              << " pixels)\n";
  }
}

/// The path.json report of `tacit train --group-lasso-path`, parsed.
nlohmann::json read_path_report(const fs::path &path) {
  std::ifstream in(path);
  if (!in)
    throw FileError(path.string(), 0, "cannot open the path report");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception &e) {
    throw FileError(path.string(), 0, std::string("not JSON: ") + e.what());
  }
}

/// tacit plot curve PATH.json: accuracy against parameters (or states) of a
/// lambda path, before (blue) and after (orange) fine-tuning.
int plot_curve(Invocation &inv, const fs::path &path, const std::string &out) {
  const nlohmann::json doc = read_path_report(path);
  if (!doc.contains("points") || !doc["points"].is_array())
    throw FileError(path.string(), 0,
                    "no 'points' array (expected the path.json of tacit train "
                    "--group-lasso-path)");
  const std::string xkey =
      inv.args.choice("x", {"parameters", "states", "nonzeros", "inputs"})
          .value_or("parameters");
  ChartSeries before{{}, {}, {40, 90, 160}}, after{{}, {}, {230, 120, 20}};
  nlohmann::json rows = nlohmann::json::array();
  std::size_t k = 0;
  for (const auto &p : doc["points"]) {
    ++k;
    if (!p.contains("size") || !p["size"].contains(xkey) || !p.contains("accuracy"))
      throw FileError(path.string(), 0,
                      "point " + std::to_string(k) + " has no size." + xkey +
                          " or no accuracy");
    const double x = p["size"][xkey].get<double>();
    before.x.push_back(x);
    before.y.push_back(100 * p["accuracy"].get<double>());
    if (p.contains("tuned_accuracy")) {
      after.x.push_back(x);
      after.y.push_back(100 * p["tuned_accuracy"].get<double>());
    }
    rows.push_back(
        {{"lambda", p.value("lambda", 0.0)}, {xkey, x}, {"accuracy", before.y.back()}});
  }
  const ChartSeries series[] = {before, after};
  const auto [w, h] = chart_size(inv.args);
  const Image img = line_chart(series, w, h);
  write_chart(inv, img, out, {{"input", path.string()}, {"x", xkey}, {"points", rows}},
              "accuracy (%, blue: pruned, orange: fine-tuned) against " + xkey + " of " +
                  std::to_string(k) + " lambdas of " + path.string());
  return exit_ok;
}

/// tacit plot columns MODEL: the column norms of B as bars, with the true
/// columns (--true: p norms, or the indices of the true support) as red marks.
int plot_columns(Invocation &inv, const fs::path &path, const std::string &out) {
  const Model<double> model = load_model<double>(path);
  const CsrMatrix<double> B = model.B().to_csr();
  const index_t p = B.cols();
  std::vector<double> norms(static_cast<std::size_t>(p), 0.0);
  const auto vals = B.values();
  B.visit_columns([&](auto cols) {
    for (std::size_t e = 0; e < vals.size(); ++e)
      norms[static_cast<std::size_t>(cols[e])] += vals[e] * vals[e];
  });
  double top = 0;
  for (auto &v : norms) {
    v = std::sqrt(v);
    top = std::max(top, v);
  }
  std::vector<double> marks;
  if (const auto t = inv.args.text("true")) {
    std::ifstream in(*t);
    if (!in)
      throw FileError(*t, 0, "cannot open the true columns");
    std::vector<double> v;
    std::string word;
    while (in >> word)
      v.push_back(
          parse_real(word, *t + " entry " + std::to_string(v.size() + 1), 0, 1e300));
    if (static_cast<index_t>(v.size()) == p) {
      marks = v;
    } else {
      marks.assign(static_cast<std::size_t>(p), 0.0);
      for (std::size_t k = 0; k < v.size(); ++k) {
        if (v[k] != std::floor(v[k]) || v[k] >= double(p))
          throw FileError(*t, 0,
                          "entry " + std::to_string(k + 1) + " (" + fmt_g(v[k], 6) +
                              ") is not a column index below p = " + std::to_string(p) +
                              " (expected p = " + std::to_string(p) +
                              " norms or the indices of the true columns)");
        marks[static_cast<std::size_t>(v[k])] = top > 0 ? top : 1;
      }
    }
  }
  const auto [w, h] = chart_size(inv.args);
  const Image img = bar_chart(norms, marks, w, h);
  index_t read = 0;
  for (double v : norms)
    read += v > 0 ? 1 : 0;
  write_chart(inv, img, out,
              {{"input", path.string()},
               {"columns", p},
               {"nonzero_columns", read},
               {"column_norms", norms}},
              "column norms of B of " + path.string() + " (" + std::to_string(read) +
                  " of " + std::to_string(p) + " columns nonzero" +
                  (marks.empty() ? "" : "; red: the true columns") + ")");
  return exit_ok;
}

/// tacit plot mask PATH.json --lambda L: the kept inputs of one point of a
/// lambda path as a W x H image (kept: yellow, removed: dark blue).
int plot_mask(Invocation &inv, const fs::path &path, const std::string &out) {
  const nlohmann::json doc = read_path_report(path);
  const auto lambda = inv.args.real("lambda", 0.0, 1e300);
  if (!lambda)
    throw UsageError("plot mask needs --lambda L (a lambda of the path)");
  if (!doc.contains("start") || !doc.contains("points"))
    throw FileError(path.string(), 0, "no 'start' or 'points' (expected a path.json)");
  const index_t p = doc["start"].at("inputs").get<index_t>();
  const nlohmann::json *point = nullptr;
  for (const auto &q : doc["points"])
    if (std::abs(q.at("lambda").get<double>() - *lambda) <=
        1e-12 * std::max(1.0, *lambda))
      point = &q;
  if (!point)
    throw FileError(path.string(), 0, "no point with lambda " + fmt_g(*lambda, 6));
  index_t w = static_cast<index_t>(std::lround(std::sqrt(double(p)))), h = w;
  if (const auto sh = inv.args.text("shape")) {
    const auto c = sh->find(',');
    if (c == std::string::npos)
      throw UsageError("--shape H,W");
    h = parse_integer(sh->substr(0, c), "--shape", 1, p);
    w = parse_integer(sh->substr(c + 1), "--shape", 1, p);
  }
  if (w * h != p)
    throw UsageError("the mask of " + std::to_string(p) + " inputs is not " +
                     std::to_string(h) + " x " + std::to_string(w) +
                     " (give --shape H,W)");
  std::vector<double> mask(static_cast<std::size_t>(p), 0.0);
  for (const auto &k : point->at("kept_inputs")) {
    const index_t i = k.get<index_t>();
    if (i < 0 || i >= p)
      throw FileError(path.string(), 0,
                      "kept input " + std::to_string(i) + " outside [0, " +
                          std::to_string(p) + ")");
    mask[static_cast<std::size_t>(i)] = 1;
  }
  const index_t scale = inv.args.integer("scale", 1, 256).value_or(8);
  const Image img = heat_map(mask, w, h, 0, 1, scale);
  const index_t kept = static_cast<index_t>(point->at("kept_inputs").size());
  write_chart(inv, img, out,
              {{"input", path.string()},
               {"lambda", *lambda},
               {"kept_inputs", kept},
               {"inputs", p}},
              "kept inputs of lambda " + fmt_g(*lambda, 6) + " (" + std::to_string(kept) +
                  " of " + std::to_string(p) + ", yellow) of " + path.string());
  return exit_ok;
}

int run_plot(Invocation &inv) {
  const auto &pos = inv.args.positionals();
  const std::string &kind = pos.at(0);
  using Plot = int (*)(Invocation &, const fs::path &, const std::string &);
  struct Kind {
    const char *name, *file, *usage;
    Plot plot;
  };
  static const Kind kinds[] = {
      {"spy", "MODEL", "tacit plot spy MODEL -o A.png", nullptr},
      {"curve", "PATH.json", "tacit plot curve PATH.json -o curve.png", plot_curve},
      {"columns", "MODEL", "tacit plot columns MODEL -o columns.png", plot_columns},
      {"mask", "PATH.json", "tacit plot mask PATH.json --lambda L -o mask.png", plot_mask}};
  const Kind *k = nullptr;
  for (const auto &candidate : kinds)
    if (kind == candidate.name)
      k = &candidate;
  if (!k)
    throw UsageError("unknown plot kind '" + kind + "' (expected: spy, curve, columns, mask)");
  if (pos.size() < 2)
    throw UsageError("missing " + std::string(k->file) + ": " + k->usage);
  const auto out = inv.args.text("output");
  if (!out)
    throw UsageError("missing required option --output (-o)");
  if (k->plot)
    return k->plot(inv, pos[1], *out);
  const std::filesystem::path path = pos[1];
  SpyOptions options;
  options.size = inv.args.integer("size", 1, 65536).value_or(1024);
  options.density = !inv.args.flag("binary");
  options.outline = !inv.args.flag("no-outline");
  const std::string which = inv.args.choice("matrix", {"A", "B", "C", "D"}).value_or("A");

  Progress progress(inv.progress_enabled());
  progress.update("loading " + path.string() + " ...", true);
  Stopwatch clock;
  std::optional<Model<double>> model;
  std::optional<CsrMatrix<double>> matrix;
  const LinearOperator<double> *op = nullptr;
  std::vector<index_t> row_bounds, col_bounds;
  if (is_matrix_market_path(path)) {
    matrix.emplace(read_matrix_market<double>(path));
    op = &*matrix;
  } else {
    model.emplace(load_model<double>(path));
    const auto blocks = state_block_bounds(*model);
    if (which == "A") {
      op = &model->A();
      row_bounds = col_bounds = blocks;
    } else if (which == "B") {
      op = &model->B();
      row_bounds = blocks;
    } else if (which == "C") {
      op = &model->C();
      col_bounds = blocks;
    } else {
      if (!model->D())
        throw CommandFailure(exit_input, path.string() + ": the model has no D (D = 0)");
      op = model->D();
    }
  }
  progress.update("rasterising " + fmt_count(op->rows()) + " x " + fmt_count(op->cols()) +
                      " ...",
                  true);
  const Image img = spy_plot(*op, options, row_bounds, col_bounds);
  write_output(*out, [&](const std::filesystem::path &f) { write_png(f, img); });
  const double seconds = clock.seconds();
  progress.clear();
  if (inv.json) {
    inv.emit({{"input", path.string()},
              {"matrix", matrix ? "file" : which},
              {"rows", op->rows()},
              {"cols", op->cols()},
              {"kind", op->kind()},
              {"nnz", op->nnz()},
              {"output", *out},
              {"width", img.width},
              {"height", img.height},
              {"seconds", seconds}});
  } else if (inv.human()) {
    std::cout << "spy plot of "
              << (matrix ? path.string() : which + " of " + path.string()) << " ("
              << fmt_count(op->rows()) << " x " << fmt_count(op->cols()) << ", "
              << op->kind() << ") -> " << *out << " (" << img.width << " x " << img.height
              << " pixels, " << fmt_seconds(seconds) << ")\n";
  }
  return exit_ok;
}

[[maybe_unused]] const bool registered = register_command({
    .name = "plot",
    .summary = "figures as PNG: 'spy' (sparsity of A, B, C, D), 'curve' (accuracy-size "
               "curve of a lambda path), 'columns' (column norms of B)",
    .description =
        "tacit plot spy MODEL -o A.png: a spy plot of the model's A. Each pixel covers "
        "a\n"
        "cell of the matrix and is coloured by the density of nonzeros in it (log\n"
        "scale, dark = dense) on a white background; state blocks (or the blocks of a\n"
        "structured A) are outlined in gray. Rows are streamed (CSR) or taken block by\n"
        "block (structured operators), so the matrix is never held twice. MODEL may\n"
        "also be a .mtx matrix.\n"
        "tacit plot curve PATH.json -o curve.png: the accuracy of a lambda path (the\n"
        "path.json of tacit train --group-lasso-path) against its parameters (--x\n"
        "states, nonzeros, inputs): blue the pruned models, orange the fine-tuned ones.\n"
        "tacit plot columns MODEL -o cols.png: the l2 norm of each column of B as a\n"
        "bar; --true FILE adds red marks: p true norms, or the indices of the true\n"
        "columns (marked at the top). Charts carry no text: the report (--json) gives\n"
        "the numbers.\n"
        "tacit plot mask PATH.json --lambda L -o mask.png: the inputs kept at lambda L\n"
        "(input groups) as an image, kept yellow, removed dark.",
    .positionals = {{"KIND", "the kind of figure: spy, curve, columns or mask"},
                    {"FILE", "model directory, native model file or .mtx matrix (spy, "
                             "columns); path.json (curve)"}},
    .options = {{"output", 'o', "FILE.png", "where to write the PNG (required)"},
                {"size", 0, "PIXELS", "longer side in pixels (default 1024)"},
                {"matrix", 0, "M", "A, B, C or D (default A)"},
                {"binary", 0, "", "black for any nonzero instead of a density colour"},
                {"no-outline", 0, "", "do not outline the blocks"},
                {"width", 0, "PIXELS", "curve, columns: image width (default 640)"},
                {"height", 0, "PIXELS", "curve, columns: image height (default 400)"},
                {"x", 0, "WHAT",
                 "curve: parameters (default), states, nonzeros or inputs"},
                {"true", 0, "FILE", "columns: true column norms or true column indices"},
                {"lambda", 0, "L", "mask: the point of the path"},
                {"shape", 0, "H,W", "mask: the inputs' image shape (default square)"},
                {"scale", 0, "S", "mask: pixels per input (default 8)"}},
    .epilog = "JSON fields: rows, cols, kind, nnz, width, height, output, seconds.\n",
    .order = 80,
    .run = run_plot,
    .usage =
        "spy MODEL -o A.png [--size PIXELS] | curve PATH.json -o curve.png | columns "
        "MODEL [--true FILE] -o cols.png",
});

} // namespace
} // namespace tacit::cli
