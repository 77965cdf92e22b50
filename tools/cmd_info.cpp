// tacit info: dimensions, storage, blocks and SCC structure of a model or
// of a bare Matrix Market matrix.

#include <iostream>
#include <optional>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/capabilities.hpp>
#include <tacit/core/isa.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/io/io.hpp>
#include <tacit/train/groups.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

std::string scc_line(const StructureSummary &s) {
  std::string line = fmt_count(s.components) + " (largest " + fmt_count(s.largest) +
                     " states, " + fmt_count(s.cyclic) + " cyclic), " +
                     fmt_count(s.levels) + (s.levels == 1 ? " level" : " levels");
  if (s.nilpotent)
    line += ": nilpotent (feed-forward), lambda_PF(|A|) = 0";
  return line;
}

int info_matrix(Invocation &inv, const std::filesystem::path &path) {
  Progress progress(inv.progress_enabled());
  progress.update("reading " + path.string() + " ...", true);
  Stopwatch clock;
  const auto A = read_matrix_market<double>(path);
  const double load_seconds = clock.seconds();
  std::optional<StructureSummary> scc;
  if (A.rows() == A.cols()) {
    progress.update("strongly connected components ...", true);
    scc = summarise(strongly_connected_components(A));
  }
  progress.clear();
  const double ninf = norm_inf(A), n1 = norm_1(A);

  if (inv.json) {
    nlohmann::json doc = {{"path", path.string()},
                          {"kind", "matrix"},
                          {"rows", A.rows()},
                          {"cols", A.cols()},
                          {"n", A.rows()},
                          {"nnz", {{"A", A.nnz()}}},
                          {"a_bytes", A.bytes()},
                          {"a_storage", A.kind()},
                          {"norm_inf", ninf},
                          {"norm_1", n1},
                          {"isa", to_string(active_isa())},
                          {"load_seconds", load_seconds}};
    if (scc)
      doc["scc"] = scc_json(*scc);
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "matrix " << path.string() << "\n"
              << "  size:      " << fmt_count(A.rows()) << " x " << fmt_count(A.cols())
              << ", " << fmt_count(A.nnz()) << " nonzeros, "
              << fmt_bytes(double(A.bytes())) << " (" << A.kind() << ")\n"
              << "  norms:     ||A||_inf = " << fmt_g(ninf) << ", ||A||_1 = " << fmt_g(n1)
              << "\n";
    if (scc)
      std::cout << "  SCCs:      " << scc_line(*scc) << "\n";
    else
      std::cout << "  SCCs:      not square, no SCC analysis\n";
    std::cout << "  kernels:   " << kernel_level() << "\n";
  }
  return exit_ok;
}

int info_model(Invocation &inv, const std::filesystem::path &path) {
  Progress progress(inv.progress_enabled());
  progress.update("loading " + path.string() + " ...", true);
  Stopwatch clock;
  const auto model = load_model<double>(path);
  const double load_seconds = clock.seconds();
  progress.update("structure ...", true);
  // A network is described from its block structure (the library decides):
  // materialising it for an SCC analysis would cost far more than the model.
  const StructureSummary structure = analyse_structure(model.A());
  const bool structured = structure.source == StructureSource::blocks;
  std::optional<WellPosednessReport> wp;
  if (structured)
    wp = analyse_well_posedness(model.A());
  progress.clear();

  // Group kinds need a trainable copy and the position of every parameter:
  // listed up to 10 M parameters (a large CSR model would double its memory).
  constexpr index_t group_limit = 10'000'000;
  index_t parameters = 0;
  for (const LinearOperator<double> *op : {&model.A(), &model.B(), &model.C(), model.D()})
    parameters += op ? parameter_count(*op) : 0;
  std::vector<GroupSummary> groups;
  if (parameters <= group_limit) {
    progress.update("parameter groups ...", true);
    groups = group_summary(TrainableModel<double>(model));
  }
  progress.clear();

  const auto &A = model.A();
  const auto *D = model.D();
  const double ninf = wp ? wp->norm_inf : norm_inf(A), n1 = wp ? wp->norm_1 : norm_1(A);
  if (inv.json) {
    nlohmann::json blocks = nlohmann::json::array();
    for (const auto &b : model.blocks())
      blocks.push_back(block_json(b));
    nlohmann::json doc = {{"path", path.string()},
                          {"kind", "model"},
                          {"format", is_native_model_file(path) ? "native" : "dir"},
                          {"n", model.states()},
                          {"p", model.inputs()},
                          {"q", model.outputs()},
                          {"nnz",
                           {{"A", A.nnz()},
                            {"B", model.B().nnz()},
                            {"C", model.C().nnz()},
                            {"D", D ? D->nnz() : 0}}},
                          {"bytes",
                           {{"A", A.bytes()},
                            {"B", model.B().bytes()},
                            {"C", model.C().bytes()},
                            {"D", D ? D->bytes() : 0}}},
                          {"a_bytes", A.bytes()},
                          {"a_storage", A.kind()},
                          {"norm_inf", ninf},
                          {"norm_1", n1},
                          {"positively_homogeneous", model.positively_homogeneous()},
                          {"blocks", blocks},
                          {"isa", to_string(active_isa())},
                          {"load_seconds", load_seconds}};
    nlohmann::json gj = nlohmann::json::array();
    for (const auto &g : groups)
      gj.push_back(
          {{"kind", to_string(g.kind)}, {"count", g.count}, {"largest", g.largest}});
    doc["groups"] = gj;
    doc["scc"] = scc_json(structure);
    if (structured) {
      // Every state is its own acyclic SCC; levels are those of the blocks.
      doc["structure"] = {{"state_blocks", structure.state_blocks},
                          {"entries", structure.block_entries},
                          {"strictly_block_lower_triangular", true}};
    }
    inv.emit(doc);
    return exit_ok;
  }
  if (!inv.human())
    return exit_ok;

  const auto op_line = [](const LinearOperator<double> &op) {
    return fmt_count(op.rows()) + " x " + fmt_count(op.cols()) + ", " +
           fmt_count(op.nnz()) + " nonzeros, " + fmt_bytes(double(op.bytes())) + " (" +
           op.kind() + ")";
  };
  std::cout << "model " << path.string() << " ("
            << (is_native_model_file(path) ? "native file" : "directory") << ")\n"
            << "  states n = " << fmt_count(model.states())
            << ", inputs p = " << fmt_count(model.inputs())
            << ", outputs q = " << fmt_count(model.outputs()) << "\n"
            << "  A: " << op_line(A) << "\n"
            << "     ||A||_inf = " << fmt_g(ninf) << ", ||A||_1 = " << fmt_g(n1) << "\n"
            << "  B: " << op_line(model.B()) << "\n"
            << "  C: " << op_line(model.C()) << "\n"
            << "  D: " << (D ? op_line(*D) : std::string("none (D = 0)")) << "\n"
            << (!structured ? "  SCCs of A: " + scc_line(structure)
                            : "  structure: block operator over " +
                                  fmt_count(structure.state_blocks) + " state blocks (" +
                                  fmt_count(structure.block_entries) +
                                  " nonzero blocks, " + fmt_count(structure.levels) +
                                  " block levels), strictly block lower triangular: "
                                  "nilpotent (feed-forward), lambda_PF(|A|) = 0")
            << "\n"
            << "  groups: ";
  if (parameters > group_limit)
    std::cout << "not listed above " << fmt_count(group_limit) << " parameters\n";
  else if (groups.empty())
    std::cout << "none (parameters without a single matrix position: convolution "
                 "weights)\n";
  for (std::size_t i = 0; i < groups.size(); ++i)
    std::cout << (i ? ", " : "") << to_string(groups[i].kind) << " "
              << fmt_count(groups[i].count) << (i + 1 == groups.size() ? "\n" : "");
  std::cout << "  blocks (" << model.blocks().size() << "):\n";
  constexpr std::size_t shown = 24;
  std::size_t width = 4;
  for (const auto &b : model.blocks())
    width = std::max(width, b.name.size());
  for (std::size_t i = 0; i < model.blocks().size() && i < shown; ++i) {
    const auto &b = model.blocks()[i];
    std::string activation = b.activation.name();
    if (b.activation.kind == ActivationKind::leaky_relu)
      activation += " (slope " + fmt_g(b.activation.slope) + ")";
    std::cout << "    " << b.name << ":" << std::string(width - b.name.size() + 1, ' ')
              << fmt_count(b.size) << " states (" << fmt_count(b.offset) << " .. "
              << fmt_count(b.offset + b.size - 1) << "), " << activation << "\n";
  }
  if (model.blocks().size() > shown)
    std::cout << "    ... " << model.blocks().size() - shown << " more (see --json)\n";
  std::cout << "  kernels: " << kernel_level() << "\n";
  return exit_ok;
}

int run_info(Invocation &inv) {
  const std::filesystem::path path = inv.args.positionals().at(0);
  return is_matrix_market_path(path) ? info_matrix(inv, path) : info_model(inv, path);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "info",
    .summary =
        "dimensions, storage, blocks and SCC structure of a model or a .mtx matrix",
    .description =
        "Prints the dimensions n (states), p (inputs), q (outputs), the nonzeros and\n"
        "storage of A, B, C, D, the norms of A, the state blocks with their activations\n"
        "and the strongly connected components of A (count, largest, levels; a "
        "nilpotent\n"
        "A is a feed-forward network), and the instruction-set level of the kernels\n"
        "(generic, avx2 or avx512: the best this CPU supports, or TACIT_ISA's).\n"
        "It lists the parameter groups of tacit train's penalties and their counts:\n"
        "inputs (columns of (B; D)), state-rows (rows of (A, B) with the bias),\n"
        "state-columns (columns of (A; C)), states-both, blocks and channels (a\n"
        "convolution's output channel or a dense unit with every slice that reads it,\n"
        "tied across residual additions).\n"
        "A bare .mtx file is taken as A alone.",
    .positionals = {{"MODEL",
                     "model directory, native model file (.tacit) or matrix (.mtx)"}},
    .options = {},
    .epilog =
        "JSON fields: kind (model|matrix), n, p, q, nnz {A, B, C, D}, a_bytes, bytes,\n"
        "norm_inf, norm_1, blocks [{name, offset, size, activation}], scc {count,\n"
        "largest, levels, cyclic, singletons, nilpotent}, groups [{kind, count,\n"
        "largest}], isa.\n",
    .order = 10,
    .run = run_info,
    .usage = "MODEL [--json]",
});

} // namespace
} // namespace tacit::cli
