// tacit plot spy: the sparsity pattern of a model's matrix as a PNG.

#include <iostream>
#include <memory>
#include <optional>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/io/image.hpp>
#include <tacit/io/io.hpp>
#include <tacit/core/model.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

int run_plot(Invocation &inv) {
  const auto &pos = inv.args.positionals();
  if (pos.at(0) != "spy")
    throw UsageError("unknown plot kind '" + pos.at(0) + "' (expected: spy)");
  if (pos.size() < 2)
    throw UsageError("missing MODEL: tacit plot spy MODEL -o A.png");
  const std::filesystem::path path = pos[1];
  const auto out = inv.args.text("output");
  if (!out)
    throw UsageError("missing required option --output (-o)");
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
    .summary = "figures: 'plot spy' draws the sparsity pattern of A (or B, C, D) as PNG",
    .description =
        "tacit plot spy MODEL -o A.png: a spy plot of the model's A. Each pixel covers "
        "a\n"
        "cell of the matrix and is coloured by the density of nonzeros in it (log\n"
        "scale, dark = dense) on a white background; state blocks (or the blocks of a\n"
        "structured A) are outlined in gray. Rows are streamed (CSR) or taken block by\n"
        "block (structured operators), so the matrix is never held twice. MODEL may\n"
        "also be a .mtx matrix.",
    .positionals = {{"KIND", "the kind of figure: spy"},
                    {"MODEL", "model directory, native model file or .mtx matrix"}},
    .options = {{"output", 'o', "FILE.png", "where to write the PNG (required)"},
                {"size", 0, "PIXELS", "longer side in pixels (default 1024)"},
                {"matrix", 0, "M", "A, B, C or D (default A)"},
                {"binary", 0, "", "black for any nonzero instead of a density colour"},
                {"no-outline", 0, "", "do not outline the blocks"}},
    .epilog = "JSON fields: rows, cols, kind, nnz, width, height, output, seconds.\n",
    .order = 80,
    .run = run_plot,
    .usage = "spy MODEL -o A.png [--size PIXELS] [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
