// tacit compose: cascade, parallel or feedback connection of two models as
// one implicit model (seed 001, section 2.3).

#include <iostream>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/model.hpp>
#include <tacit/io/io.hpp>
#include <tacit/nn/compose.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

template <class T>
nlohmann::json compose_and_save(const Invocation &inv, const std::string &kind,
                                const std::filesystem::path &first,
                                const std::filesystem::path &second,
                                const std::filesystem::path &out, ModelFormat format) {
  Progress progress(inv.progress_enabled());
  progress.update("loading the models ...", true);
  const Model<T> m1 = load_model<T>(first), m2 = load_model<T>(second);
  Stopwatch clock;
  const Model<T> model = kind == "cascade"    ? cascade(m1, m2)
                         : kind == "parallel" ? parallel(m1, m2)
                                              : feedback(m1, m2);
  const double compose_seconds = clock.seconds();
  progress.update("certifying well-posedness ...", true);
  PerronBound pf;
  std::string source;
  if (kind == "feedback") {
    pf = analyse_well_posedness(model.A()).pf;
    source = "analysed on the composed A (the loop couples the parts)";
  } else {
    pf = cascade_perron_bound(analyse_well_posedness(m1.A()).pf,
                              analyse_well_posedness(m2.A()).pf);
    source = "from the parts (A is block lower triangular with the parts' A on its "
             "diagonal)";
  }
  progress.update("writing " + out.string() + " ...", true);
  save_model_as(model, out, format);
  progress.clear();
  nlohmann::json blocks = nlohmann::json::array();
  for (const auto &b : model.blocks())
    blocks.push_back(block_json(b));
  return {{"kind", kind},
          {"first", first.string()},
          {"second", second.string()},
          {"output", out.string()},
          {"format", to_string(format)},
          {"n", model.states()},
          {"p", model.inputs()},
          {"q", model.outputs()},
          {"state_blocks", model.blocks().size()},
          {"blocks", blocks},
          {"A_kind", model.A().kind()},
          {"lambda_pf_lower", pf.lower},
          {"lambda_pf_upper", pf.upper},
          {"certified", pf.certified()},
          {"certificate", source},
          {"compose_seconds", compose_seconds}};
}

int run_compose(Invocation &inv) {
  const std::string kind = inv.args.positionals().at(0);
  if (kind != "cascade" && kind != "parallel" && kind != "feedback")
    throw UsageError("unknown composition '" + kind +
                     "' (expected cascade, parallel or feedback)");
  const std::filesystem::path first = inv.args.positionals().at(1);
  const std::filesystem::path second = inv.args.positionals().at(2);
  const auto out_text = inv.args.text("output");
  if (!out_text)
    throw UsageError("missing -o OUT (the composed model to write)");
  const std::filesystem::path out = *out_text;
  check_distinct(first, out);
  check_distinct(second, out);
  const ModelFormat format = output_format(inv.args, out);
  const Precision precision = precision_of(inv.args);
  auto doc = precision == Precision::float32
                 ? compose_and_save<float>(inv, kind, first, second, out, format)
                 : compose_and_save<double>(inv, kind, first, second, out, format);
  doc["precision"] = to_string(precision);
  if (inv.json) {
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << kind << " of " << first.string() << " and " << second.string() << " -> "
              << out.string() << " (" << to_string(format) << ", " << to_string(precision)
              << ")\n"
              << "  n = " << fmt_count(doc["n"]) << " states in "
              << doc["state_blocks"].get<std::size_t>()
              << " blocks, p = " << fmt_count(doc["p"]) << ", q = " << fmt_count(doc["q"])
              << "\n"
              << "  lambda_PF(|A|) in [" << fmt_g(doc["lambda_pf_lower"].get<double>())
              << ", " << fmt_g(doc["lambda_pf_upper"].get<double>()) << "]: "
              << (doc["certified"].get<bool>() ? "certified well-posed" : "not certified")
              << ", " << doc["certificate"].get<std::string>() << "\n";
  }
  return exit_ok;
}

[[maybe_unused]] const bool registered = register_command({
    .name = "compose",
    .summary = "compose two models: cascade, parallel or feedback",
    .description =
        "Writes one implicit model made of two (seed 001, section 2.3):\n"
        "  cascade   y = M2(M1(u)): A = [A1 0; B2 C1 A2], B = [B1; B2 D1],\n"
        "            C = [D2 C1 C2], D = D2 D1\n"
        "  parallel  y = (M1(u), M2(u)): block-diagonal A and C, stacked B and D\n"
        "  feedback  y = y1 with u1 = u + y2, u2 = y1 (M1 or M2 without D)\n"
        "The parts' operators stay as they are (convolutions stay convolutions) and\n"
        "products such as B2 C1 are kept unevaluated. State blocks are named 1.<name>\n"
        "and 2.<name>. The certified lambda_PF(|A|) of a cascade or parallel model\n"
        "is the maximum of its parts'; a feedback loop is analysed as a whole.",
    .positionals = {{"KIND", "cascade, parallel or feedback"},
                    {"M1", "the first model (directory or .tacit)"},
                    {"M2", "the second model (directory or .tacit)"}},
    .options = {{"output", 'o', "OUT", "the composed model (.tacit file or directory)"},
                format_option,
                precision_option},
    .epilog = "Examples:\n"
              "  tacit compose cascade features.tacit head.tacit -o net.tacit\n"
              "  tacit compose feedback plant.tacit controller.tacit -o loop.tacit\n",
    .order = 57,
    .run = run_compose,
    .usage = "KIND M1 M2 -o OUT [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
