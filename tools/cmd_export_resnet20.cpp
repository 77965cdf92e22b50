// tacit export-resnet20: writes the built-in CIFAR ResNet20 (structured
// operators) as a native model file, and optionally deterministic inputs.

#include <iostream>
#include <limits>

#include <tacit/io/io.hpp>
#include <tacit/nn/network.hpp>

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

template <class T>
int export_model(Invocation &inv, const std::filesystem::path &out,
                 ResNetShortcut shortcut, std::uint64_t seed, Precision precision) {
  Progress progress(inv.progress_enabled());
  progress.update("building ResNet20 ...", true);
  Stopwatch clock;
  const Model<T> model = resnet20<T>(shortcut, seed);
  const double build_seconds = clock.seconds();
  progress.update("writing " + out.string() + " ...", true);
  clock.restart();
  write_output(
      out, [&](const std::filesystem::path &path) { save_model_native(model, path); });
  const double write_seconds = clock.seconds();
  std::optional<std::filesystem::path> inputs;
  index_t count = 0;
  if (const auto in = inv.args.text("inputs")) {
    inputs = *in;
    count = inv.args.integer("count", 1, 100000).value_or(128);
    const Batch<T> U = resnet20_inputs<T>(count, seed + 1);
    progress.update("writing " + inputs->string() + " ...", true);
    write_output(*inputs,
                 [&](const std::filesystem::path &path) { write_vectors(path, U); });
  }
  progress.clear();
  const auto bytes = disk_size(out);
  const std::string option = shortcut == ResNetShortcut::option_a ? "a" : "b";
  if (inv.json) {
    nlohmann::json doc = {{"output", out.string()},
                          {"shortcut", option},
                          {"seed", seed},
                          {"precision", to_string(precision)},
                          {"n", model.states()},
                          {"p", model.inputs()},
                          {"q", model.outputs()},
                          {"nnz", model.A().nnz()},
                          {"a_bytes", model.A().bytes()},
                          {"file_bytes", bytes},
                          {"build_seconds", build_seconds},
                          {"write_seconds", write_seconds}};
    if (inputs) {
      doc["inputs"] = inputs->string();
      doc["count"] = count;
    }
    inv.emit(doc);
  } else if (inv.human()) {
    std::cout << "ResNet20 (option " << option << ", seed " << seed << ", "
              << to_string(precision) << ") -> " << out.string() << "\n"
              << "  n = " << fmt_count(model.states()) << " states in "
              << model.blocks().size() << " blocks, p = " << fmt_count(model.inputs())
              << ", q = " << fmt_count(model.outputs()) << "\n"
              << "  A: " << fmt_count(model.A().nnz()) << " nonzeros held as "
              << fmt_bytes(double(model.A().bytes())) << " of structured operators\n"
              << "  file: " << fmt_bytes(double(bytes)) << " (built in "
              << fmt_seconds(build_seconds) << ", written in "
              << fmt_seconds(write_seconds) << ")\n";
    if (inputs)
      std::cout << "  inputs: " << count << " deterministic images -> "
                << inputs->string() << "\n";
  }
  return exit_ok;
}

int run_export_resnet20(Invocation &inv) {
  const auto out = inv.args.text("output");
  if (!out)
    throw UsageError("missing required option --output (-o)");
  const auto s = inv.args.choice("shortcut", {"a", "b"});
  const ResNetShortcut shortcut =
      s && *s == "b" ? ResNetShortcut::option_b : ResNetShortcut::option_a;
  const auto seed = static_cast<std::uint64_t>(
      inv.args.integer("seed", 0, std::numeric_limits<std::int64_t>::max()).value_or(20));
  const Precision precision = precision_of(inv.args);
  return precision == Precision::float32
             ? export_model<float>(inv, *out, shortcut, seed, precision)
             : export_model<double>(inv, *out, shortcut, seed, precision);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "export-resnet20",
    .summary = "write the built-in CIFAR ResNet20 as a native model file",
    .description =
        "Builds the CIFAR ResNet20 (conv3x3 16 + BN + ReLU, 3 stages of 3 basic blocks\n"
        "with 16/32/64 channels, global average pooling, dense 64 -> 10) with\n"
        "deterministic weights and batch-norm statistics from --seed, as an implicit\n"
        "model with structured operators (n = 188,416 states, A strictly block lower\n"
        "triangular), and writes it as a native model file (version 2: operator\n"
        "trees, about the size of the weights). --inputs also writes deterministic\n"
        "3x32x32 images, one per line, for `tacit solve`.",
    .positionals = {},
    .options = {{"output", 'o', "FILE", "native model file to write (required)"},
                {"shortcut", 0, "a|b",
                 "a: zero channel padding (default); b: 1x1 convolution + BN"},
                {"seed", 0, "S", "seed of the weights (default 20)"},
                precision_option,
                {"inputs", 0, "U.txt", "also write deterministic input images"},
                {"count", 0, "K", "number of input images (default 128)"}},
    .epilog = "Example:\n"
              "  tacit export-resnet20 -o resnet20.tacit --precision float32 --inputs "
              "U.txt\n"
              "  tacit solve resnet20.tacit -i U.txt -o Y.txt --precision float32\n"
              "JSON fields: output, shortcut, seed, precision, n, p, q, nnz, a_bytes,\n"
              "file_bytes, build_seconds, write_seconds.\n",
    .order = 60,
    .run = run_export_resnet20,
    .usage = "--output FILE [OPTIONS]",
});

} // namespace
} // namespace tacit::cli
