#pragma once
// Helpers shared by the subcommands that read and write models: precision
// and output-format choices, CSR access, JSON/human summaries of a model.

#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <tacit/config.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/io/io.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/train/select.hpp>
#if TACIT_HAVE_ONNX
#include <tacit/nn/onnx.hpp>
#endif

#include "cli_common.hpp"

namespace tacit::cli {

enum class Precision { float32, float64 };

inline const OptionSpec precision_option{
    "precision", 0, "P",
    "float32 or float64: value type to compute in (default float64)"};

inline Precision precision_of(const Arguments &args) {
  const auto p = args.choice("precision", {"float32", "float64"});
  return p && *p == "float32" ? Precision::float32 : Precision::float64;
}

inline std::string to_string(Precision p) {
  return p == Precision::float32 ? "float32" : "float64";
}

/// The library's solver options for the precision (stopping tolerances
/// reachable in it).
inline SolveOptions default_solve_options(Precision precision) {
  return precision == Precision::float32 ? tacit::default_solve_options<float>()
                                         : tacit::default_solve_options<double>();
}

enum class ModelFormat { directory, native };

inline const OptionSpec format_option{
    "format", 0, "F",
    "dir or native: how to write the model (default: native when the output ends in "
    ".tacit, a directory otherwise)"};

/// The output format: --format, else from the extension of `out`.
inline ModelFormat output_format(const Arguments &args,
                                 const std::filesystem::path &out) {
  if (const auto f = args.choice("format", {"dir", "native"}))
    return *f == "native" ? ModelFormat::native : ModelFormat::directory;
  return has_native_extension(out) ? ModelFormat::native : ModelFormat::directory;
}

inline std::string to_string(ModelFormat f) {
  return f == ModelFormat::native ? "native" : "dir";
}

template <class T>
void save_model_as(const Model<T> &model, const std::filesystem::path &out,
                   ModelFormat f) {
  if (f == ModelFormat::native) {
    write_output(
        out, [&](const std::filesystem::path &path) { save_model_native(model, path); });
    return;
  }
  std::error_code ec;
  if (std::filesystem::exists(out, ec) && !std::filesystem::is_directory(out, ec))
    throw FileError(out.string(), 0,
                    "exists and is not a directory; a model directory cannot replace it "
                    "(use a .tacit name or --format native for a single file)");
  save_model_directory(model, out);
}

/// Structure summary as JSON (the "scc" record of info, demo and wellposed).
inline nlohmann::json scc_json(const StructureSummary &s) {
  nlohmann::json j = {{"count", s.components},      {"largest", s.largest},
                      {"levels", s.levels},         {"cyclic", s.cyclic},
                      {"singletons", s.singletons}, {"nilpotent", s.nilpotent}};
  if (s.source == StructureSource::blocks) {
    // Levels of the block DAG, not of the state graph.
    j.erase("levels");
    j["block_levels"] = s.levels;
  }
  return j;
}
inline nlohmann::json scc_json(const SccDecomposition &scc) {
  return scc_json(summarise(scc));
}

/// Block table entry as JSON.
inline nlohmann::json block_json(const StateBlock &b) {
  nlohmann::json j = {{"name", b.name},
                      {"offset", b.offset},
                      {"size", b.size},
                      {"activation", b.activation.name()}};
  if (b.activation.kind == ActivationKind::leaky_relu)
    j["slope"] = b.activation.slope;
  return j;
}

/// The progress of --refit-select (tacit train, tacit bcd): a JSON event
/// per refit with --json, else a progress line naming the refit and its
/// `loss_name`.
inline std::function<void(const SelectTrial &)>
select_trial_reporter(const Invocation &inv, Progress &progress, std::string loss_name) {
  return [&inv, &progress, loss_name = std::move(loss_name)](const SelectTrial &t) {
    progress.clear();
    if (inv.json)
      std::cout << nlohmann::json{{"event", "select"},
                                  {"round", t.round},
                                  {"input", t.input},
                                  {"loss", t.loss},
                                  {"dropped", t.dropped}}
                       .dump()
                << std::endl;
    else
      progress.update("selection round " + std::to_string(t.round) + ": " +
                          (t.input < 0 ? std::string("control")
                                       : "without input " + std::to_string(t.input)) +
                          ", " + loss_name + " " + fmt_g(t.loss, 5),
                      true);
  };
}

/// Refuses to overwrite an input with an output.
inline void check_distinct(const std::filesystem::path &in,
                           const std::filesystem::path &out) {
  std::error_code ec;
  if (std::filesystem::exists(out, ec) && std::filesystem::equivalent(in, out, ec))
    throw UsageError("the output " + out.string() + " is the input; choose another path");
}

/// A model whose parameters are trained, pruned or refitted: a native file or
/// model directory, or an ONNX file imported with each layer's own parameters
/// (dense products not folded).
template <class T> Model<T> read_parameter_model(const std::filesystem::path &path) {
  if (path.extension() == ".onnx") {
#if TACIT_HAVE_ONNX
    OnnxImportOptions o;
    o.fold_dense_products = false;
    return import_onnx<T>(path, o);
#else
    throw Unsupported("reading .onnx needs the onnx component, which this build lacks");
#endif
  }
  return load_model<T>(path);
}

} // namespace tacit::cli
