// tacit export-onnx: a feed-forward structured model -> an ONNX graph.

#include <iostream>

#include <tacit/core/model.hpp>
#include <tacit/io/io.hpp>
#include <tacit/nn/onnx.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

template <class T>
nlohmann::json load_and_export(const Invocation &inv, const std::filesystem::path &in,
                               const std::filesystem::path &out) {
  Progress progress(inv.progress_enabled());
  progress.update("loading " + in.string() + " ...", true);
  Stopwatch clock;
  Model<T> model = in.extension() == ".onnx" ? import_onnx<T>(in) : load_model<T>(in);
  const double load_seconds = clock.seconds();
  progress.update("writing " + out.string() + " ...", true);
  clock.restart();
  write_output(out, [&](const std::filesystem::path &path) { export_onnx(model, path); });
  const double export_seconds = clock.seconds();
  progress.clear();
  return {{"input", in.string()},
          {"output", out.string()},
          {"n", model.states()},
          {"p", model.inputs()},
          {"q", model.outputs()},
          {"state_blocks", model.blocks().size()},
          {"bytes_written", disk_size(out)},
          {"load_seconds", load_seconds},
          {"export_seconds", export_seconds}};
}

int run_export_onnx(Invocation &inv) {
  const std::filesystem::path in = inv.args.positionals().at(0);
  const auto out_text = inv.args.text("output");
  if (!out_text)
    throw UsageError("missing -o NET.onnx (the ONNX file to write)");
  const std::filesystem::path out = *out_text;
  check_distinct(in, out);
  const Precision precision = precision_of(inv.args);
  auto doc = precision == Precision::float32 ? load_and_export<float>(inv, in, out)
                                             : load_and_export<double>(inv, in, out);
  doc["precision"] = to_string(precision);
  if (inv.json) {
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "exported " << in.string() << " -> " << out.string()
              << " (ONNX opset 13, " << to_string(precision) << ", "
              << fmt_bytes(doc["bytes_written"].get<double>()) << ")\n"
              << "  n = " << fmt_count(doc["n"]) << " states in "
              << doc["state_blocks"].get<std::size_t>()
              << " blocks, p = " << fmt_count(doc["p"]) << ", q = " << fmt_count(doc["q"])
              << "\n";
  }
  return exit_ok;
}

[[maybe_unused]] const bool registered = register_command({
    .name = "export-onnx",
    .summary = "write a feed-forward structured model as an ONNX graph",
    .description =
        "Writes MODEL (a model directory, .tacit file or .onnx network), a feed-forward\n"
        "structured model as import-onnx or tacit train make, as an ONNX graph (opset "
        "13):\n"
        "per state block its terms (Conv, Gemm, BatchNormalization for a diagonal,\n"
        "AveragePool, GlobalAveragePool, Slice and Pad for the option-A shortcut, "
        "Flatten),\n"
        "their Add and the block's activation node (Relu, LeakyRelu, Sigmoid, Tanh) "
        "named\n"
        "after the block. Importing the file gives the same model bit for bit. A model\n"
        "with cycles, CSR blocks or identity activations has no such form: the error\n"
        "names the block and nothing is written (the file is written atomically).",
    .positionals = {{"MODEL", "the model (directory, .tacit or .onnx)"}},
    .options = {{"output", 'o', "NET.onnx", "the ONNX file to write"},
                {"precision", 0, "P",
                 "float32 or float64: element type of the graph (default float64)"}},
    .epilog = "Examples:\n"
              "  tacit export-onnx trained.tacit -o trained.onnx\n"
              "  tacit export-onnx resnet20.tacit -o resnet20.onnx --precision float32\n",
    .order = 56,
    .run = run_export_onnx,
    .usage = "MODEL -o NET.onnx [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
