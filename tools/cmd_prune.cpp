// tacit prune: removes the zero groups of a model and everything only they
// feed, writing a smaller model with the same predictions (tacit/train/prune.hpp).

#include <iostream>

#include <tacit/config.hpp>

#include <tacit/io/io.hpp>
#include <tacit/train/prune.hpp>
#if TACIT_HAVE_ONNX
#include <tacit/nn/onnx.hpp>
#endif

#include "cli_common.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

nlohmann::json size_json(const ModelSize &s) {
  return {{"states", s.states},         {"inputs", s.inputs},     {"outputs", s.outputs},
          {"parameters", s.parameters}, {"nonzeros", s.nonzeros}, {"flops", s.flops}};
}

nlohmann::json channels_json(const std::vector<BlockChannels> &cs) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto &c : cs)
    j.push_back({{"block", c.name},
                 {"plane", c.plane},
                 {"before", c.before},
                 {"after", c.after}});
  return j;
}

template <class T> int prune_command(Invocation &inv) {
  const Arguments &args = inv.args;
  const auto out = args.text("output");
  if (!out)
    throw UsageError("missing required option --output (-o)");
  const std::filesystem::path in = args.positionals().at(0);
  check_distinct(in, *out);
  PruneOptions o;
  o.threshold = args.real("threshold", 0.0, 1e300).value_or(0.0);
  o.keep_inputs = args.flag("keep-inputs");
  Progress progress(inv.progress_enabled());
  progress.update("reading " + in.string() + " ...", true);
  const Model<T> model = read_parameter_model<T>(in);
  progress.update("pruning ...", true);
  PruneResult<T> r = [&] {
    try {
      return prune_model(model, o);
    } catch (const InvalidArgument &e) {
      throw CommandFailure(exit_usage,
                           std::string(e.what()) + "; nothing written to " + *out);
    }
  }();
  progress.update("writing " + *out + " ...", true);
  save_model_as(r.pruned, *out, output_format(args, *out));
  progress.clear();
  if (inv.json) {
    inv.emit({{"input", in.string()},
              {"output", *out},
              {"threshold", o.threshold},
              {"before", size_json(r.before)},
              {"after", size_json(r.after)},
              {"kept_states", r.kept_states},
              {"kept_inputs", r.kept_inputs},
              {"channels", channels_json(r.channels)}});
  } else if (inv.human()) {
    auto ratio = [](double a, double b) {
      return b > 0 ? fmt_g(100 * a / b, 3) + "%" : "-";
    };
    const auto &b = r.before, &a = r.after;
    std::cout << "pruned " << in.string() << " -> " << *out << " (threshold "
              << fmt_g(o.threshold, 4) << ")\n";
    auto row = [&](const char *what, double x, double y) {
      std::cout << "  " << what << fmt_count(static_cast<std::int64_t>(x)) << " -> "
                << fmt_count(static_cast<std::int64_t>(y)) << " (" << ratio(y, x)
                << ")\n";
    };
    row("states:      ", double(b.states), double(a.states));
    row("inputs:      ", double(b.inputs), double(a.inputs));
    row("parameters:  ", double(b.parameters), double(a.parameters));
    row("nonzeros:    ", double(b.nonzeros), double(a.nonzeros));
    row("FLOPs/input: ", double(b.flops), double(a.flops));
    bool maps = false;
    for (const auto &c : r.channels)
      maps = maps || c.plane > 1;
    if (maps) {
      std::cout << "  channels per block:\n";
      for (const auto &c : r.channels)
        std::cout << "    " << c.name << ": " << fmt_count(c.before) << " -> "
                  << fmt_count(c.after)
                  << (c.plane > 1 ? " channels of " + fmt_count(c.plane) + " states"
                                  : std::string(" states"))
                  << "\n";
    }
    if (a.inputs < b.inputs)
      std::cout << "  the pruned model reads " << fmt_count(a.inputs)
                << " of the inputs (kept_inputs in --json)\n";
  }
  return exit_ok;
}

int run_prune(Invocation &inv) {
  return precision_of(inv.args) == Precision::float32 ? prune_command<float>(inv)
                                                      : prune_command<double>(inv);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "prune",
    .summary = "removes zero groups: a smaller model with the same predictions",
    .description =
        "Removes the states that are identically zero (a zero row of (A, B) and bias,\n"
        "phi(0) = 0, or fed only by such states) or that nothing kept reads (a zero\n"
        "column of (A; C)), and the inputs that no kept row of B and no row of D reads.\n"
        "A structured network (convolutions, batch norm, residual additions) loses\n"
        "whole channels: the kernel slices that produce them and those that read them,\n"
        "channels tied by a residual addition together; it keeps its inputs and its\n"
        "kind (it exports to ONNX as before). A prune that would remove every channel\n"
        "of a block is an error.\n"
        "Entries with |value| <= --threshold count as zero. The pruned model's\n"
        "predictions equal the masked model's (the removed entries taken out) bit for\n"
        "bit, in float32 and float64; with threshold 0 the masked model is the model\n"
        "itself (up to the order of the CSR kernels' accumulators). The output is\n"
        "written atomically; a prune that would remove every state writes nothing.",
    .positionals = {{"MODEL", "model directory, .tacit or .onnx file"}},
    .options = {{"output", 'o', "OUT", "where to write the pruned model"},
                {"threshold", 0, "T",
                 "entries with |value| <= T count as zero (default 0)"},
                {"keep-inputs", 0, "", "keep every input (the same input vectors)"},
                format_option,
                precision_option},
    .epilog = "JSON fields: before and after {states, inputs, outputs, parameters,\n"
              "nonzeros, flops}, kept_states, kept_inputs (original indices), channels\n"
              "[{block, plane, before, after}] per state block.\n",
    .order = 62,
    .run = run_prune,
    .usage = "MODEL -o OUT [--threshold T] [--keep-inputs]",
});

} // namespace
} // namespace tacit::cli
