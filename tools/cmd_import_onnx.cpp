// tacit import-onnx: an ONNX network -> a structured implicit model (native
// file or Matrix Market directory).

#include <iostream>

#include <tacit/core/model.hpp>
#include <tacit/io/io.hpp>
#include <tacit/nn/onnx.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

std::string dims_string(const std::vector<index_t> &dims) {
  std::string s;
  for (std::size_t i = 0; i < dims.size(); ++i)
    s += (i ? " x " : "") + std::to_string(dims[i]);
  return s;
}

template <class T>
nlohmann::json import_and_save(const Invocation &inv, const std::filesystem::path &in,
                               const std::filesystem::path &out, ModelFormat format,
                               const OnnxImportOptions &options) {
  Progress progress(inv.progress_enabled());
  progress.update("importing " + in.string() + " ...", true);
  Stopwatch clock;
  OnnxImportInfo info;
  const auto model = import_onnx<T>(in, options, &info);
  const double import_seconds = clock.seconds();
  progress.update("writing " + out.string() + " ...", true);
  clock.restart();
  save_model_as(model, out, format);
  const double save_seconds = clock.seconds();
  progress.clear();
  nlohmann::json blocks = nlohmann::json::array();
  for (const auto &b : model.blocks())
    blocks.push_back(block_json(b));
  return {{"input", in.string()},
          {"output", out.string()},
          {"format", format == ModelFormat::native ? "native" : "mtx"},
          {"producer", info.producer},
          {"opset", info.opset},
          {"graph", info.graph_name},
          {"onnx_nodes", info.nodes},
          {"onnx_parameters", info.parameters},
          {"op_types", info.op_types},
          {"input_dims", info.input_dims},
          {"output_dims", info.output_dims},
          {"batch", info.batch},
          {"n", model.states()},
          {"p", model.inputs()},
          {"q", model.outputs()},
          {"state_blocks", model.blocks().size()},
          {"blocks", blocks},
          {"nnz_A", model.A().nnz()},
          {"bytes_written", disk_size(out)},
          {"import_seconds", import_seconds},
          {"save_seconds", save_seconds}};
}

int run_import_onnx(Invocation &inv) {
  const std::filesystem::path in = inv.args.positionals().at(0);
  const auto out_text = inv.args.text("output");
  if (!out_text)
    throw UsageError("missing -o OUT (the model file or directory to write)");
  const std::filesystem::path out = *out_text;
  check_distinct(in, out);
  ModelFormat format =
      has_native_extension(out) ? ModelFormat::native : ModelFormat::directory;
  if (const auto f = inv.args.choice("format", {"native", "mtx", "dir"}))
    format = *f == "native" ? ModelFormat::native : ModelFormat::directory;
  const Precision precision = precision_of(inv.args);
  OnnxImportOptions options;
  options.fold_dense_products = !inv.args.flag("keep-layers");
  auto doc = precision == Precision::float32
                 ? import_and_save<float>(inv, in, out, format, options)
                 : import_and_save<double>(inv, in, out, format, options);
  doc["precision"] = to_string(precision);
  doc["keep_layers"] = !options.fold_dense_products;
  if (inv.json) {
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "imported " << in.string() << " (" << doc["producer"].get<std::string>()
              << ", opset " << doc["opset"].get<std::int64_t>() << ", "
              << fmt_count(doc["onnx_nodes"]) << " nodes, "
              << fmt_count(doc["onnx_parameters"]) << " parameters)\n"
              << "  input " << dims_string(doc["input_dims"].get<std::vector<index_t>>())
              << " -> output "
              << dims_string(doc["output_dims"].get<std::vector<index_t>>())
              << " per sample (batch dimension: "
              << (doc["batch"].get<std::string>().empty()
                      ? std::string("unnamed")
                      : doc["batch"].get<std::string>())
              << ")\n"
              << "  n = " << fmt_count(doc["n"]) << " states in "
              << doc["state_blocks"].get<std::size_t>()
              << " blocks, p = " << fmt_count(doc["p"]) << ", q = " << fmt_count(doc["q"])
              << ", " << fmt_count(doc["nnz_A"]) << " nonzeros in A\n"
              << "  wrote " << out.string() << " (" << doc["format"].get<std::string>()
              << ", " << to_string(precision) << ", "
              << fmt_bytes(doc["bytes_written"].get<double>()) << ")\n";
  }
  return exit_ok;
}

[[maybe_unused]] const bool registered = register_command({
    .name = "import-onnx",
    .summary = "import an ONNX network as a structured implicit model",
    .description =
        "Reads a feed-forward ONNX network (Conv, Gemm, MatMul, BatchNormalization,\n"
        "Relu, LeakyRelu, Sigmoid, Tanh, Add, AveragePool, GlobalAveragePool, Flatten,\n"
        "Reshape, ResNet option-A shortcuts...) and writes the equivalent implicit "
        "model:\n"
        "one state block per activation node, A strictly block lower triangular.\n"
        "The first input dimension is the batch. An unsupported operator or attribute "
        "is\n"
        "reported with the node's name and nothing is written. The output is written\n"
        "atomically: a native file (--format native, the default for a .tacit name) or "
        "a\n"
        "Matrix Market directory (--format mtx: each operator materialised as CSR).\n"
        "A linear map after another (a classifier after a pooling) is folded into one\n"
        "dense matrix (fast inference); --keep-layers keeps each layer's own\n"
        "parameters, as tacit train reads ONNX files: a network written by tacit\n"
        "export-onnx from a trained model then comes back with the same operators and\n"
        "gives the same outputs bit for bit.",
    .positionals = {{"NET.onnx", "the ONNX model"}},
    .options = {{"output", 'o', "OUT", "the model file (.tacit) or directory to write"},
                {"format", 0, "F",
                 "native or mtx (default: native when OUT ends in .tacit, else mtx)"},
                {"precision", 0, "P",
                 "float32 or float64: value type written (default float64)"},
                {"keep-layers", 0, "",
                 "keep a linear layer after another (a classifier after a pooling) as "
                 "its own parameters instead of folding them into one matrix"}},
    .epilog = "Examples:\n"
              "  tacit import-onnx resnet20.onnx -o resnet20.tacit\n"
              "  tacit import-onnx mlp.onnx -o mlp_dir --format mtx\n"
              "  tacit import-onnx pruned.onnx -o pruned.tacit --keep-layers\n",
    .order = 55,
    .run = run_import_onnx,
    .usage = "NET.onnx -o OUT [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
