// tacit compress: state-driven compression of a trained model
// (tacit/train/compress.hpp): rows of (A, B) refitted with an l1 penalty to
// the model's own pre-activations on data, C and D by least squares.

#include <iostream>

#include <tacit/config.hpp>

#include <tacit/io/io.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/train/compress.hpp>
#include <tacit/train/prune.hpp>
#if TACIT_HAVE_IDX
#include <tacit/io/idx.hpp>
#endif
#if TACIT_HAVE_ONNX
#include <tacit/nn/onnx.hpp>
#endif

#include "cli_common.hpp"
#include "cli_dataset.hpp"
#include "cli_model.hpp"

namespace tacit::cli {
namespace {

/// Predicted classes (argmax of the outputs) of `model` on U.
template <class T> std::vector<int> classes(const Model<T> &model, const Batch<T> &U) {
  SolveOptions o = tacit::default_solve_options<T>();
  EquilibriumSolver<T> solver(model, o);
  Batch<T> Y;
  const SolveReport r = solver.predict(U, Y);
  if (!r.ok())
    throw NumericalError("the solve for the accuracy did not converge (" +
                             to_string(r.status) + ", residual " +
                             std::to_string(r.residual) + ")",
                         r.residual);
  std::vector<int> c(static_cast<std::size_t>(U.cols()));
  for (index_t j = 0; j < U.cols(); ++j) {
    int best = 0;
    for (index_t i = 1; i < Y.rows(); ++i)
      if (Y(i, j) > Y(best, j))
        best = static_cast<int>(i);
    c[j] = best;
  }
  return c;
}

double accuracy(const std::vector<int> &predicted, const std::vector<int> &labels) {
  std::size_t hit = 0;
  for (std::size_t j = 0; j < labels.size(); ++j)
    hit += predicted[j] == labels[j];
  return labels.empty() ? 0.0 : double(hit) / double(labels.size());
}

template <class T> int compress_command(Invocation &inv) {
  const Arguments &args = inv.args;
  const auto out = args.text("output");
  if (!out)
    throw UsageError("missing required option --output (-o)");
  const std::filesystem::path in = args.positionals().at(0);
  check_distinct(in, *out);
  StateCompressionOptions o;
  o.lambda = args.real("lambda", 0.0, 1e300).value_or(o.lambda);
  o.kappa = args.real("kappa", 0.0, 1e300).value_or(-1.0);
  o.passes = static_cast<int>(args.integer("passes", 0, 1000).value_or(0));
  o.max_iterations =
      static_cast<int>(args.integer("max-iterations", 1, 100000000).value_or(o.max_iterations));
  o.tolerance = args.real("tol", 1e-300, 1.0).value_or(o.tolerance);
  o.refit_outputs = !args.flag("no-refit-outputs");
  const index_t limit = args.integer("limit", 1, 1000000000).value_or(-1);

  Progress progress(inv.progress_enabled());
  progress.update("reading " + in.string() + " ...", true);
  const Model<T> model = read_parameter_model<T>(in);
  const index_t p = model.inputs();

  // Fitting data, and data to measure accuracy on (with labels).
  Batch<T> fit, test;
  std::vector<int> test_labels;
  std::string source;
  const auto data = args.text("data");
  const auto input = args.text("input");
  if (data && input)
    throw UsageError("give either --data or --input, not both");
  if (data) {
#if TACIT_HAVE_IDX
    const std::filesystem::path dir = *data;
    progress.update("reading " + dir.string() + " ...", true);
    auto train = read_idx_dataset<T>(find_idx_file(dir, "train-images-idx3-ubyte"),
                                     find_idx_file(dir, "train-labels-idx1-ubyte"), limit);
    auto t10k = read_idx_dataset<T>(find_idx_file(dir, "t10k-images-idx3-ubyte"),
                                    find_idx_file(dir, "t10k-labels-idx1-ubyte"));
    fit = std::move(train.images);
    test = std::move(t10k.images);
    test_labels = std::move(t10k.labels);
    source = dir.string();
#else
    throw Unsupported("--data needs the IDX reader (component idx, zlib), which this "
                      "build lacks; use --input");
#endif
  } else if (input) {
    fit = read_vectors<T>(*input, p);
    if (limit > 0 && limit < fit.cols()) {
      Batch<T> cut(p, limit);
      std::vector<T> col(static_cast<std::size_t>(p));
      for (index_t j = 0; j < limit; ++j) {
        fit.get_column(j, col);
        cut.set_column(j, col);
      }
      fit = std::move(cut);
    }
    if (const auto labels = args.text("labels")) {
      test_labels = read_labels(*labels);
      if (static_cast<index_t>(test_labels.size()) != fit.cols())
        throw FileError(*labels, 0,
                        std::to_string(test_labels.size()) + " labels for " +
                            std::to_string(fit.cols()) + " inputs in " + *input);
      test = fit;
    }
    source = *input;
  } else {
    throw UsageError("missing data: give --data DIR (IDX) or --input U.txt");
  }
  if (fit.rows() != p)
    throw CommandFailure(exit_input, source + ": inputs have " +
                                         std::to_string(fit.rows()) +
                                         " values, the model has p = " + std::to_string(p));

  progress.update("fitting " + std::to_string(model.states()) + " rows on " +
                      std::to_string(fit.cols()) + " inputs ...",
                  true);
  Stopwatch watch;
  StateCompressionReport rep;
  const Model<T> small = [&] {
    try {
      return compress_states(model, fit, o, &rep);
    } catch (const InvalidArgument &e) {
      throw CommandFailure(exit_usage, std::string(e.what()) + "; nothing written to " + *out);
    }
  }();
  const double seconds = watch.seconds();
  progress.update("writing " + *out + " ...", true);
  save_model_as(small, *out, output_format(args, *out));

  nlohmann::json acc = nullptr;
  double before = 0, after = 0, agree = 0;
  if (!test_labels.empty()) {
    progress.update("measuring accuracy ...", true);
    const auto cb = classes(model, test), ca = classes(small, test);
    before = accuracy(cb, test_labels);
    after = accuracy(ca, test_labels);
    agree = accuracy(ca, cb);
    acc = {{"inputs", test_labels.size()},
           {"before", before},
           {"after", after},
           {"agreement", agree}};
  }
  progress.clear();
  const ModelSize sb = model_size(model), sa = model_size(small);
  if (inv.json) {
    inv.emit({{"input", in.string()},
              {"output", *out},
              {"data", source},
              {"fit_inputs", fit.cols()},
              {"lambda", o.lambda},
              {"kappa", std::isfinite(rep.kappa) ? nlohmann::json(rep.kappa) : nullptr},
              {"feed_forward", rep.feed_forward},
              {"passes", rep.passes},
              {"nonzeros_before", rep.nonzeros_before},
              {"nonzeros_after", rep.nonzeros_after},
              {"output_nonzeros_before", rep.output_nonzeros_before},
              {"output_nonzeros_after", rep.output_nonzeros_after},
              {"model_nonzeros_before", sb.nonzeros},
              {"model_nonzeros_after", sa.nonzeros},
              {"relative_fit_error", rep.relative_fit_error},
              {"relative_output_error", rep.relative_output_error},
              {"max_iterations_used", rep.max_iterations_used},
              {"groups_not_converged", rep.groups_not_converged},
              {"accuracy", acc},
              {"seconds", seconds}});
  } else if (inv.human()) {
    std::cout << "compressed " << in.string() << " -> " << *out << " (lambda "
              << fmt_g(o.lambda, 4) << ", " << rep.passes << " pass"
              << (rep.passes == 1 ? "" : "es") << ", " << fit.cols() << " inputs of "
              << source << ", " << fmt_g(seconds, 3) << " s)\n"
              << "  nonzeros of A and B: " << fmt_count(rep.nonzeros_before) << " -> "
              << fmt_count(rep.nonzeros_after) << " ("
              << fmt_g(100.0 * double(rep.nonzeros_after) /
                           double(std::max<std::int64_t>(1, rep.nonzeros_before)),
                       3)
              << "%)\n"
              << "  relative error of the pre-activations " << fmt_g(rep.relative_fit_error, 3)
              << ", of the outputs " << fmt_g(rep.relative_output_error, 3) << "\n";
    if (rep.groups_not_converged > 0)
      std::cout << "  " << rep.groups_not_converged
                << " row groups stopped at --max-iterations " << o.max_iterations
                << " before the tolerance " << fmt_g(o.tolerance, 3) << "\n";
    if (!test_labels.empty())
      std::cout << "  accuracy on " << test_labels.size() << " labelled inputs: "
                << fmt_g(100 * before, 4) << "% -> " << fmt_g(100 * after, 4)
                << "% (the same class for " << fmt_g(100 * agree, 4) << "%)\n";
  }
  return exit_ok;
}

int run_compress(Invocation &inv) {
  return precision_of(inv.args) == Precision::float32 ? compress_command<float>(inv)
                                                      : compress_command<double>(inv);
}

[[maybe_unused]] const bool registered = register_command({
    .name = "compress",
    .summary = "state-driven compression: sparse rows refitted to the model's states",
    .description =
        "Solves MODEL on the data, then refits each row of (A, B, b) to the model's own\n"
        "pre-activations by least squares with an l1 penalty (--lambda, on standardised\n"
        "features) on the entries the row already has, under ||a_i||_1 <= --kappa, and C,\n"
        "D, c by least squares to the model's outputs. A feed-forward model is refitted\n"
        "layer after layer on the compressed layers' states (--passes, default its\n"
        "depth); a model with cycles once, on its recorded states, keeping\n"
        "||A||_inf <= kappa (default: the model's own). With --data DIR (IDX) the fit\n"
        "uses the train split (--limit N images) and the accuracy is measured on the\n"
        "test split. The output is written atomically; `tacit prune` then removes the\n"
        "states and inputs nothing reads.",
    .positionals = {{"MODEL", "model directory, .tacit or .onnx file"}},
    .options = {{"output", 'o', "OUT", "where to write the compressed model"},
                {"lambda", 0, "L", "l1 weight on standardised features (default 1e-3)"},
                {"kappa", 0, "K", "bound on ||a_i||_1 (default: none for a feed-forward A)"},
                {"passes", 0, "P", "refitting passes (default: depth of A, or 1)"},
                {"max-iterations", 0, "N", "FISTA iterations per row group (default 5000)"},
                {"tol", 0, "T", "relative step at which a row group stops (default 1e-5)"},
                {"no-refit-outputs", 0, "", "keep C, D and c as they are"},
                {"data", 0, "DIR", "IDX directory: fit on train, accuracy on t10k"},
                {"input", 'i', "U.txt", "inputs to fit on, one per line"},
                {"labels", 0, "L.txt", "labels of --input (accuracy on them)"},
                {"limit", 0, "N", "use the first N fitting inputs only"},
                format_option,
                precision_option},
    .epilog = "JSON fields: lambda, kappa, feed_forward, passes, nonzeros_before/after (A\n"
              "and B), output_nonzeros_before/after (C and D), model_nonzeros_before/after,\n"
              "relative_fit_error, relative_output_error, max_iterations_used,\n"
              "groups_not_converged, accuracy {inputs, before, after, agreement}, seconds.\n",
    .order = 63,
    .run = run_compress,
    .usage = "MODEL -o OUT (--data DIR | --input U.txt [--labels L.txt]) [--lambda L]",
});

} // namespace
} // namespace tacit::cli
