// tacit convert: model directory <-> native model file, in either precision.

#include <iostream>

#include <tacit/io/io.hpp>
#include <tacit/core/model.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

template <class T>
nlohmann::json convert(const Invocation &inv, const std::filesystem::path &in,
                       const std::filesystem::path &out, ModelFormat format) {
  Progress progress(inv.progress_enabled());
  progress.update("loading " + in.string() + " ...", true);
  Stopwatch clock;
  const auto model = load_model<T>(in);
  const double load_seconds = clock.seconds();
  progress.update("writing " + out.string() + " ...", true);
  clock.restart();
  save_model_as(model, out, format);
  const double save_seconds = clock.seconds();
  progress.clear();
  return {{"input", in.string()},
          {"output", out.string()},
          {"input_format", is_native_model_file(in) ? "native" : "dir"},
          {"format", to_string(format)},
          {"n", model.states()},
          {"p", model.inputs()},
          {"q", model.outputs()},
          {"nnz_A", model.A().nnz()},
          {"bytes_written", disk_size(out)},
          {"load_seconds", load_seconds},
          {"save_seconds", save_seconds}};
}

int run_convert(Invocation &inv) {
  const std::filesystem::path in = inv.args.positionals().at(0);
  const std::filesystem::path out = inv.args.positionals().at(1);
  if (is_matrix_market_path(in))
    throw UsageError("convert works on models (a directory or a .tacit file), not on " +
                     in.string());
  check_distinct(in, out);
  const ModelFormat format = output_format(inv.args, out);
  const Precision precision = precision_of(inv.args);
  auto doc = precision == Precision::float32 ? convert<float>(inv, in, out, format)
                                             : convert<double>(inv, in, out, format);
  doc["precision"] = to_string(precision);
  if (inv.json) {
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "converted " << in.string() << " ("
              << doc["input_format"].get<std::string>() << ") -> " << out.string() << " ("
              << to_string(format) << ", " << to_string(precision) << ")\n"
              << "  n = " << fmt_count(doc["n"]) << ", p = " << fmt_count(doc["p"])
              << ", q = " << fmt_count(doc["q"]) << ", " << fmt_count(doc["nnz_A"])
              << " nonzeros in A\n"
              << "  " << fmt_bytes(doc["bytes_written"].get<double>()) << " written in "
              << fmt_seconds(doc["save_seconds"]) << "\n";
  }
  return exit_ok;
}

[[maybe_unused]] const bool registered = register_command({
    .name = "convert",
    .summary = "convert a model between a directory and a native file (.tacit)",
    .description =
        "Reads a model (directory or native file) and writes it in the other form, or "
        "in\n"
        "the same form in another precision. The output format is --format, else native\n"
        "when OUT ends in .tacit, else a directory. Written atomically: on failure OUT "
        "is\n"
        "left as it was.",
    .positionals = {{"IN", "model directory or native model file"},
                    {"OUT", "output directory or file"}},
    .options =
        {format_option,
         {"precision", 0, "P",
          "float32 or float64: value type written (default float64; float32 rounds)"}},
    .epilog = "Examples:\n"
              "  tacit convert model/ model.tacit\n"
              "  tacit convert model.tacit model32.tacit --precision float32\n",
    .order = 60,
    .run = run_convert,
    .usage = "IN OUT [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
