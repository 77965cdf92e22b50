// tacit train: trains a model (or a fresh one, --init) on labelled or
// targeted data; tacit gradient: the gradient of the mean loss as a model.
// The loop and the gradients live in the library (tacit/train); this file
// reads the data, maps options and reports.

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <utility>

#include <tacit/config.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/io/io.hpp>
#include <tacit/train/gradient.hpp>
#include <tacit/train/init.hpp>
#include <tacit/train/path.hpp>
#include <tacit/train/prox.hpp>
#include <tacit/train/select.hpp>
#include <tacit/train/trainer.hpp>
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

namespace fs = std::filesystem;

/// One non-negative integer label per line, with its line number for
/// messages ('#' lines and blank lines skipped).
std::vector<int> read_label_file(const fs::path &path, index_t classes,
                                 std::vector<std::int64_t> *lines = nullptr) {
  std::ifstream in(path);
  if (!in)
    throw FileError(path.string(), 0, "cannot open the label file");
  std::vector<int> labels;
  std::string line;
  std::int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    const auto a = line.find_first_not_of(" \t\r");
    if (a == std::string::npos || line[a] == '#')
      continue;
    const auto b = line.find_last_not_of(" \t\r");
    long long v = 0;
    const char *first = line.data() + a, *last = line.data() + b + 1;
    const auto [ptr, ec] = std::from_chars(first, last, v);
    if (ec != std::errc() || ptr != last)
      throw FileError(path.string(), number,
                      "expected one integer label, got '" + line.substr(a, b - a + 1) +
                          "'");
    if (v < 0 || (classes > 0 && v >= classes))
      throw FileError(
          path.string(), number,
          "label " + std::to_string(v) + " is outside [0, " + std::to_string(classes) +
              ") (the model has q = " + std::to_string(classes) + " outputs)");
    labels.push_back(static_cast<int>(v));
    if (lines)
      lines->push_back(number);
  }
  return labels;
}

/// The model to train: MODEL (directory, .tacit or .onnx) or --init.
template <class T> Model<T> load_or_init(const Arguments &args) {
  const auto init = args.text("init");
  const bool has_model = !args.positionals().empty();
  if (init && has_model)
    throw UsageError("give either MODEL or --init, not both");
  if (init) {
    const auto seed = args.integer("seed", 0, std::numeric_limits<std::int64_t>::max());
    return init_model<T>(*init, static_cast<std::uint64_t>(seed.value_or(1)));
  }
  if (!has_model)
    throw UsageError("missing MODEL (a model directory, .tacit or .onnx file) or --init "
                     "(e.g. --init mlp:784,64,10)");
  const fs::path path = args.positionals().at(0);
  return read_parameter_model<T>(path);
}

/// --teacher MODEL: the teacher's outputs for every training sample
/// (Dataset::teacher), read by --distill and --fine-tune-distill; and those
/// options into `o` and `fine_tune` (path only).
template <class T>
void attach_teacher(const Arguments &args, const Model<T> &student, TrainOptions &o,
                    std::optional<Distillation> *fine_tune, Dataset<T> &data) {
  const auto file = args.text("teacher");
  const auto weight = args.real("distill", 0.0, 1.0);
  const auto tune_weight = args.real("fine-tune-distill", 0.0, 1.0);
  const auto temperature = args.real("temperature", 1e-300, 1e300);
  if (tune_weight && !fine_tune)
    throw UsageError("--fine-tune-distill belongs to --group-lasso-path");
  if (!file) {
    if (weight || tune_weight || temperature)
      throw UsageError(
          "--distill, --fine-tune-distill and --temperature need --teacher MODEL");
    return;
  }
  if (!weight && !tune_weight)
    throw UsageError("--teacher needs --distill W" +
                     std::string(fine_tune ? " or --fine-tune-distill W" : "") +
                     " (the weight of the teacher's soft targets, in [0, 1])");
  if (o.gradient.loss != LossKind::cross_entropy)
    throw UsageError("--teacher needs the cross-entropy loss (labels)");
  Distillation d;
  d.temperature = temperature.value_or(1.0);
  d.weight = weight.value_or(0.0);
  o.distillation = d;
  if (tune_weight) {
    d.weight = *tune_weight;
    *fine_tune = d;
  }
  const Model<T> teacher = read_parameter_model<T>(*file);
  if (teacher.inputs() != student.inputs() || teacher.outputs() != student.outputs())
    throw FileError(*file, 0,
                    "the teacher has " + std::to_string(teacher.inputs()) +
                        " inputs and " + std::to_string(teacher.outputs()) +
                        " outputs, the model being trained " +
                        std::to_string(student.inputs()) + " and " +
                        std::to_string(student.outputs()));
  EquilibriumSolver<T> solver(teacher, o.gradient.forward);
  Batch<T> Y;
  const SolveReport r = solver.predict(data.inputs, Y);
  if (!r.ok())
    throw CommandFailure(exit_numerical,
                         *file +
                             ": the teacher's solve on the training data did not "
                             "converge (residual " +
                             fmt_g(r.residual, 4) + " after " +
                             std::to_string(r.iterations) + " iterations)");
  data.teacher = std::move(Y);
}

/// Training and validation data from --data DIR or --input with --labels or
/// --targets.
template <class T>
void load_data(const Arguments &args, const Model<T> &model, LossKind loss,
               Dataset<T> &train, Dataset<T> &validation, bool want_validation) {
  const auto data = args.text("data");
  const auto input = args.text("input");
  const auto labels = args.text("labels");
  const auto targets = args.text("targets");
  const index_t p = model.inputs(), q = model.outputs();
  if (data && (input || labels || targets))
    throw UsageError("give either --data or --input with --labels/--targets, not both");
  if (data) {
#if TACIT_HAVE_IDX
    if (loss != LossKind::cross_entropy)
      throw UsageError("--data gives labels: use --loss cross-entropy");
    const fs::path dir = *data;
    const auto limit = args.integer("limit", 1, std::numeric_limits<index_t>::max());
    auto set = read_idx_dataset<T>(find_idx_file(dir, "train-images-idx3-ubyte"),
                                   find_idx_file(dir, "train-labels-idx1-ubyte"),
                                   limit.value_or(-1));
    train.inputs = std::move(set.images);
    train.labels = std::move(set.labels);
    train.name = (dir / "train-images-idx3-ubyte").string();
    if (want_validation) {
      auto test = read_idx_dataset<T>(find_idx_file(dir, "t10k-images-idx3-ubyte"),
                                      find_idx_file(dir, "t10k-labels-idx1-ubyte"));
      validation.inputs = std::move(test.images);
      validation.labels = std::move(test.labels);
      validation.name = (dir / "t10k-images-idx3-ubyte").string();
    }
#else
    throw Unsupported(
        "--data needs the IDX reader (component idx, zlib), which this build "
        "lacks; use --input with --labels");
#endif
  } else {
    if (!input)
      throw UsageError("missing data: give --data DIR, or --input U.txt with --labels "
                       "L.txt or --targets Y.txt");
    if (loss == LossKind::cross_entropy && !labels)
      throw UsageError("--loss cross-entropy needs --labels L.txt");
    if (loss == LossKind::squared && !targets)
      throw UsageError("--loss squared needs --targets Y.txt");
    if (labels && targets)
      throw UsageError("give --labels or --targets, not both");
    train.inputs = read_vectors<T>(*input, p);
    train.name = *input;
    if (labels) {
      train.labels = read_label_file(*labels, q);
      if (static_cast<index_t>(train.labels.size()) != train.inputs.cols())
        throw FileError(*labels, 0,
                        std::to_string(train.labels.size()) + " labels for " +
                            std::to_string(train.inputs.cols()) + " inputs in " + *input);
    } else {
      train.targets = read_vectors<T>(*targets, q);
      if (train.targets.cols() != train.inputs.cols())
        throw FileError(*targets, 0,
                        std::to_string(train.targets.cols()) + " targets for " +
                            std::to_string(train.inputs.cols()) + " inputs in " + *input);
    }
    if (want_validation) {
      const auto test_input = args.text("test-input");
      const auto test_labels = args.text("test-labels");
      const auto test_targets = args.text("test-targets");
      if (!test_input)
        throw UsageError("--validate-on test needs --data (the IDX test files) or "
                         "--test-input with --test-labels or --test-targets");
      if (bool(test_labels) != bool(labels) || bool(test_targets) != bool(targets))
        throw UsageError("--test-input needs --test-labels with --labels, --test-targets "
                         "with --targets");
      validation.inputs = read_vectors<T>(*test_input, p);
      validation.name = *test_input;
      if (test_labels) {
        validation.labels = read_label_file(*test_labels, q);
        if (static_cast<index_t>(validation.labels.size()) != validation.inputs.cols())
          throw FileError(*test_labels, 0,
                          std::to_string(validation.labels.size()) + " labels for " +
                              std::to_string(validation.inputs.cols()) + " inputs in " +
                              *test_input);
      } else {
        validation.targets = read_vectors<T>(*test_targets, q);
        if (validation.targets.cols() != validation.inputs.cols())
          throw FileError(*test_targets, 0,
                          std::to_string(validation.targets.cols()) + " targets for " +
                              std::to_string(validation.inputs.cols()) + " inputs in " +
                              *test_input);
      }
    }
  }
  if (train.inputs.cols() == 0)
    throw CommandFailure(exit_input, train.name + ": no training samples");
}

GradientOptions gradient_options(const Arguments &args, Precision precision) {
  GradientOptions g;
  g.loss = parse_loss(
      args.choice("loss", {"cross-entropy", "squared"}).value_or("cross-entropy"));
  g.forward = default_solve_options(precision);
  g.adjoint.picard = g.forward.picard;
  if (const auto m = args.choice("adjoint", {"auto", "sweep", "picard", "klu"}))
    g.adjoint.method = parse_adjoint_method(*m);
  if (const auto t = args.real("tol", 0.0, 1.0))
    g.forward.picard.rel_tol = g.adjoint.picard.rel_tol = *t;
  if (const auto a = args.integer("anderson", 0, 64))
    g.forward.picard.anderson_depth = g.adjoint.picard.anderson_depth =
        static_cast<int>(*a);
  if (const auto k = args.integer("max-iterations", 1, 2000000000))
    g.forward.picard.max_iterations = g.adjoint.picard.max_iterations =
        static_cast<int>(*k);
  return g;
}

nlohmann::json epoch_json(const EpochReport &r) {
  nlohmann::json j = {{"event", "epoch"},
                      {"epoch", r.epoch},
                      {"lr", r.lr},
                      {"train_loss", r.train_loss},
                      {"train_accuracy", r.train_accuracy},
                      {"samples", r.samples},
                      {"seconds", r.seconds},
                      {"images_per_second", r.images_per_second},
                      {"lambda_pf", {r.lambda_lower, r.lambda_upper}},
                      {"norm_inf", r.norm_inf},
                      {"certified", r.certified},
                      {"constrained", r.constrained},
                      {"forward_iterations", r.forward_iterations},
                      {"adjoint_iterations", r.adjoint_iterations}};
  if (r.validation_loss)
    j["validation_loss"] = *r.validation_loss;
  if (r.validation_accuracy)
    j["validation_accuracy"] = *r.validation_accuracy;
  return j;
}

/// The penalty of --group-lasso, --l1 or --sparse-group-lasso (none: lambda
/// 0) and its options.
PenaltyOptions penalty_options(const Arguments &args) {
  PenaltyOptions p;
  int given = 0;
  const double inf = std::numeric_limits<double>::infinity();
  for (const auto &[name, kind] :
       {std::pair{"group-lasso", PenaltyKind::group_lasso},
        std::pair{"l1", PenaltyKind::l1},
        std::pair{"sparse-group-lasso", PenaltyKind::sparse_group_lasso}})
    if (const auto l = args.real(name, -inf, inf)) {
      ++given;
      p.kind = kind;
      p.lambda = *l;
    }
  if (given > 1)
    throw UsageError("give one of --group-lasso, --l1 and --sparse-group-lasso");
  if (const auto a = args.real("alpha", -inf, inf))
    p.alpha = *a;
  if (const auto r = args.integer("reweight", 0, 1000000))
    p.reweight_every = static_cast<int>(*r);
  if (const auto e = args.real("reweight-eps", -inf, inf))
    p.reweight_eps = *e;
  try {
    p.validate();
  } catch (const InvalidArgument &e) {
    throw UsageError(e.what());
  }
  if (given > 0 && args.text("group-lasso-path"))
    throw UsageError("give either --group-lasso-path or a single penalty (--group-lasso, "
                     "--l1, --sparse-group-lasso), not both");
  if (given == 0 && !args.text("group-lasso-path") &&
      (args.text("groups") || args.text("alpha") || args.text("reweight")))
    throw UsageError("--groups, --alpha and --reweight need --group-lasso, --l1, "
                     "--sparse-group-lasso or --group-lasso-path");
  return p;
}

/// The groups of --groups: a kind (default states) or a file.
template <class T>
GroupSet groups_of(const Arguments &args, const TrainableModel<T> &tm) {
  const std::string g = args.text("groups").value_or("states");
  for (const char *k : {"inputs", "states", "state-rows", "state-columns", "states-both",
                        "blocks", "channels"})
    if (g == k) {
      try {
        return make_groups(tm, parse_group_kind(g));
      } catch (const InvalidArgument &e) {
        throw UsageError(std::string("--groups ") + g + ": " + e.what());
      }
    }
  return read_group_file(tm, g);
}

/// The lambdas of --group-lasso-path L1,L2,...
std::vector<double> path_lambdas(const std::string &text) {
  std::vector<double> out;
  std::size_t a = 0;
  for (int entry = 1;; ++entry) {
    const auto b = text.find(',', a);
    const std::string item = text.substr(a, b == std::string::npos ? b : b - a);
    out.push_back(parse_real(item, "--group-lasso-path entry " + std::to_string(entry),
                             -1e300, 1e300));
    if (b == std::string::npos)
      break;
    a = b + 1;
  }
  return out;
}

nlohmann::json path_size_json(const ModelSize &s) {
  return {{"states", s.states},
          {"inputs", s.inputs},
          {"parameters", s.parameters},
          {"nonzeros", s.nonzeros},
          {"flops", s.flops}};
}

/// tacit train --group-lasso-path: the path over lambda with warm starts
/// (tacit/train/path.hpp), its models written into the directory -o.
template <class T>
int path_command(Invocation &inv, Precision precision, TrainOptions o,
                 const PenaltyOptions &penalty, const std::string &out) {
  const Arguments &args = inv.args;
  PathOptions po;
  po.lambdas = path_lambdas(*args.text("group-lasso-path"));
  po.penalty = penalty;
  po.penalty.kind = PenaltyKind::group_lasso;
  if (const auto e = args.integer("path-epochs", 0, 1000000))
    o.epochs = static_cast<int>(*e);
  po.fine_tune_epochs =
      static_cast<int>(args.integer("fine-tune-epochs", 0, 1000000).value_or(0));
  po.fine_tune_lr = args.real("fine-tune-lr", 0.0, 1e6).value_or(0.0);
  if (const auto s = args.text("fine-tune-schedule")) {
    try {
      po.fine_tune_schedule = Schedule::parse(*s);
    } catch (const InvalidArgument &e) {
      throw UsageError("--fine-tune-schedule: " + std::string(e.what()));
    }
  }
  po.prune.keep_inputs = args.flag("keep-inputs");
  po.prune.threshold = args.real("threshold", 0.0, 1e300).value_or(0.0);
  if (!o.checkpoint_dir.empty() || args.flag("resume"))
    throw UsageError(
        "--group-lasso-path has no checkpoints: drop --checkpoint and --resume");
  po.train = o;
  try {
    po.validate();
  } catch (const InvalidArgument &e) {
    throw UsageError(e.what());
  }

  Progress progress(inv.progress_enabled());
  progress.update("preparing the model ...", true);
  const Model<T> model = load_or_init<T>(args);
  if (!args.positionals().empty())
    check_distinct(args.positionals().at(0), out);
  const fs::path dir = out;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw FileError(out, 0,
                    "exists and is not a directory (--group-lasso-path writes a "
                    "directory of models)");
  progress.update("reading the data ...", true);
  Dataset<T> data, validation;
  const std::string validate =
      args.choice("validate-on", {"test", "none"})
          .value_or(args.text("data") || args.text("test-input") ? "test" : "none");
  load_data(args, model, o.gradient.loss, data, validation, validate == "test");
  attach_teacher(args, model, po.train, &po.fine_tune_distillation, data);
  const GroupSet groups = groups_of(args, TrainableModel<T>(model));
  const std::string group_text = args.text("groups").value_or("states");
  const ModelSize start = model_size(model);
  fs::create_directories(dir);

  std::size_t point = 0;
  bool tuning = false;
  po.on_phase = [&](std::size_t k, double, bool t) {
    point = k;
    tuning = t;
  };
  po.train.on_step = [&](const StepProgress &p) {
    if (progress.enabled())
      progress.update("lambda " + fmt_g(po.lambdas[point], 6) +
                      (tuning ? " fine-tuning" : "") + "  epoch " +
                      std::to_string(p.epoch) + "/" + std::to_string(p.epochs) +
                      "  batch " + std::to_string(p.step) + "/" +
                      std::to_string(p.steps) + "  loss " + fmt_g(p.loss, 4));
  };
  po.train.on_epoch = [&](const EpochReport &r) {
    progress.clear();
    if (inv.json) {
      auto j = epoch_json(r);
      j["lambda"] = po.lambdas[point];
      j["phase"] = tuning ? "fine-tune" : "train";
      std::cout << j.dump() << std::endl;
    } else if (inv.human()) {
      std::cout << "lambda " << fmt_g(po.lambdas[point], 6)
                << (tuning ? " fine-tuning" : "") << " epoch " << r.epoch
                << ": train loss " << fmt_g(r.train_loss, 5);
      if (r.validation_accuracy)
        std::cout << ", test accuracy " << fmt_g(100 * *r.validation_accuracy, 4) << "%";
      std::cout << "; " << fmt_seconds(r.seconds) << std::endl;
    }
  };

  nlohmann::json doc = {
      {"command", "train --group-lasso-path"},
      {"precision", to_string(precision)},
      {"groups", group_text},
      {"group_count", groups.groups.size()},
      {"epochs", o.epochs},
      {"fine_tune_epochs", po.fine_tune_epochs},
      {"lr", o.optimizer.lr},
      {"fine_tune_lr", po.fine_tune_lr > 0 ? po.fine_tune_lr : o.optimizer.lr},
      {"fine_tune_schedule", po.fine_tune_schedule ? po.fine_tune_schedule->to_string()
                                                   : o.schedule.to_string()},
      {"reweight", po.penalty.reweight_every},
      {"distill", po.train.distillation.weight},
      {"fine_tune_distill", po.fine_tune_distillation ? po.fine_tune_distillation->weight
                                                      : po.train.distillation.weight},
      {"temperature", po.train.distillation.temperature},
      {"start", path_size_json(start)},
      {"points", nlohmann::json::array()}};
  auto file = [&](const char *what, double l) {
    return (dir / (std::string(what) + "_" + fmt_g(l, 6) + ".tacit")).string();
  };
  auto on_point = [&](const PathPoint<T> &pt) {
    progress.update("writing the models of lambda " + fmt_g(pt.lambda, 6) + " ...", true);
    save_model_as(pt.trained, file("trained", pt.lambda), ModelFormat::native);
    save_model_as(pt.prune.pruned, file("pruned", pt.lambda), ModelFormat::native);
    nlohmann::json j = {{"lambda", pt.lambda},
                        {"zero_groups", pt.zero_groups},
                        {"groups", pt.groups},
                        {"size", path_size_json(pt.prune.after)},
                        {"kept_inputs", pt.prune.kept_inputs},
                        {"trained", file("trained", pt.lambda)},
                        {"pruned", file("pruned", pt.lambda)}};
    if (pt.accuracy)
      j["accuracy"] = *pt.accuracy;
    if (pt.loss)
      j["loss"] = *pt.loss;
    if (pt.tuned) {
      save_model_as(*pt.tuned, file("tuned", pt.lambda), ModelFormat::native);
      j["tuned"] = file("tuned", pt.lambda);
      if (pt.tuned_accuracy)
        j["tuned_accuracy"] = *pt.tuned_accuracy;
      if (pt.tuned_loss)
        j["tuned_loss"] = *pt.tuned_loss;
    }
    doc["points"].push_back(j);
    // The report so far, rewritten after every point (atomically).
    write_file_atomically(dir / "path.json", doc.dump(1) + "\n");
    progress.clear();
    if (inv.json) {
      auto line = j;
      line["event"] = "point";
      std::cout << line.dump() << std::endl;
    }
  };
  Stopwatch clock;
  try {
    lambda_path(model, groups, data, validation.size() ? &validation : nullptr, po,
                std::function<void(const PathPoint<T> &)>(on_point));
  } catch (const TrainingError &e) {
    progress.clear();
    throw CommandFailure(exit_numerical, "lambda " + fmt_g(po.lambdas[point], 6) +
                                             (tuning ? " (fine-tuning)" : "") + ": " +
                                             e.what() + "; the points before it are in " +
                                             out);
  } catch (const InvalidArgument &e) {
    progress.clear();
    throw CommandFailure(exit_usage, "lambda " + fmt_g(po.lambdas[point], 6) + ": " +
                                         e.what() + "; the points before it are in " +
                                         out);
  }
  const double seconds = clock.seconds();
  if (inv.json) {
    doc["event"] = "done";
    doc["output"] = out;
    doc["seconds"] = seconds;
    std::cout << doc.dump() << std::endl;
  } else if (inv.human()) {
    auto pct = [](double a, double b) { return fmt_g(100 * a / b, 3) + "%"; };
    std::cout << "lambda path of the group lasso on " << fmt_count(groups.groups.size())
              << " groups (" << group_text << "), " << o.epochs
              << " epochs per lambda, warm-started; " << fmt_count(start.states)
              << " states, " << fmt_count(start.inputs) << " inputs, "
              << fmt_count(start.parameters) << " parameters at the start ("
              << fmt_seconds(seconds) << ") -> " << out << "\n";
    std::cout
        << "  lambda      states   inputs   parameters          nonzeros            "
           "accuracy  fine-tuned\n";
    for (const auto &j : doc["points"]) {
      const auto &z = j["size"];
      char line[256];
      std::snprintf(
          line, sizeof line, "  %-10s  %-7s  %-7s  %-18s  %-18s  %-8s  %s\n",
          fmt_g(j["lambda"].get<double>(), 6).c_str(),
          fmt_count(z["states"].get<index_t>()).c_str(),
          fmt_count(z["inputs"].get<index_t>()).c_str(),
          (fmt_count(z["parameters"].get<index_t>()) + " (" +
           pct(z["parameters"].get<double>(), double(start.parameters)) + ")")
              .c_str(),
          (fmt_count(z["nonzeros"].get<std::int64_t>()) + " (" +
           pct(z["nonzeros"].get<double>(), double(start.nonzeros)) + ")")
              .c_str(),
          j.contains("accuracy")
              ? (fmt_g(100 * j["accuracy"].get<double>(), 4) + "%").c_str()
              : "-",
          j.contains("tuned_accuracy")
              ? (fmt_g(100 * j["tuned_accuracy"].get<double>(), 4) + "%").c_str()
              : "-");
      std::cout << line;
    }
  }
  return exit_ok;
}

template <class T> int train_command(Invocation &inv, Precision precision) {
  const Arguments &args = inv.args;
  const auto out = args.text("output");
  if (!out)
    throw UsageError("missing required option --output (-o)");
  TrainOptions o;
  o.gradient = gradient_options(args, precision);
  o.optimizer.kind =
      parse_optimizer(args.choice("optimizer", {"sgd", "adam", "adamw"}).value_or("sgd"));
  o.optimizer.lr = args.real("lr", 0.0, 1e6).value_or(0.01);
  o.optimizer.momentum = args.real("momentum", 0.0, 1.0).value_or(0.0);
  o.optimizer.nesterov = args.flag("nesterov");
  o.optimizer.weight_decay = args.real("weight-decay", 0.0, 1e6).value_or(0.0);
  if (const auto b = args.real("beta1", 0.0, 0.999999))
    o.optimizer.beta1 = *b;
  if (const auto b = args.real("beta2", 0.0, 0.999999999))
    o.optimizer.beta2 = *b;
  try {
    o.optimizer.validate();
  } catch (const InvalidArgument &e) {
    throw UsageError(e.what());
  }
  if (const auto s = args.text("schedule")) {
    try {
      o.schedule = Schedule::parse(*s);
    } catch (const InvalidArgument &e) {
      throw UsageError(e.what());
    }
  }
  o.batch_size =
      args.integer("batch-size", 1, std::numeric_limits<index_t>::max()).value_or(128);
  o.epochs = static_cast<int>(args.integer("epochs", 0, 1000000).value_or(1));
  if (const auto s = args.text("shuffle")) {
    if (*s == "none")
      o.shuffle_seed.reset();
    else
      o.shuffle_seed = static_cast<std::uint64_t>(
          parse_integer(*s, "--shuffle", 0, std::numeric_limits<std::int64_t>::max()));
  }
  o.kappa = args.real("kappa", 1e-12, 1 - 1e-12).value_or(0.95);
  if (const auto c = args.choice("constraint", {"auto", "none", "inf-norm", "perron"}))
    o.constraint = parse_constraint(*c);
  const std::string validate =
      args.choice("validate-on", {"test", "none"})
          .value_or(args.text("data") || args.text("test-input") ? "test" : "none");
  if (const auto c = args.text("checkpoint"))
    o.checkpoint_dir = *c;
  const PenaltyOptions penalty = penalty_options(args);
  if (args.text("group-lasso-path") && args.text("refit-select"))
    throw UsageError("--refit-select does not combine with --group-lasso-path");
  const auto standardize = args.text("standardize");
  if (standardize && (args.text("group-lasso-path") || args.text("refit-select")))
    throw UsageError("--standardize does not combine with --group-lasso-path or "
                     "--refit-select (their models are saved unfolded)");
  if (args.text("group-lasso-path"))
    return path_command<T>(inv, precision, o, penalty, *out);
  for (const char *only : {"path-epochs", "fine-tune-epochs", "fine-tune-lr",
                           "fine-tune-schedule", "keep-inputs", "threshold"})
    if (args.flag(only))
      throw UsageError(std::string("--") + only + " belongs to --group-lasso-path");

  Progress progress(inv.progress_enabled());
  progress.update("preparing the model ...", true);
  const Model<T> model = load_or_init<T>(args);
  if (!args.positionals().empty())
    check_distinct(args.positionals().at(0), *out);
  progress.update("reading the data ...", true);
  Dataset<T> data, validation;
  load_data(args, model, o.gradient.loss, data, validation, validate == "test");
  if (const auto teacher = args.text("teacher"))
    check_distinct(*teacher, *out);
  attach_teacher(args, model, o, nullptr, data);
  if (standardize) {
    if (*standardize == "auto") {
      // Mean and standard deviation of every input value of the training set.
      double sum = 0, sq = 0;
      const index_t cnt = data.inputs.rows() * data.inputs.cols();
      for (index_t j = 0; j < data.inputs.cols(); ++j)
        for (index_t i = 0; i < data.inputs.rows(); ++i) {
          const double v = double(data.inputs(i, j));
          sum += v;
          sq += v * v;
        }
      o.input_mean = cnt ? sum / double(cnt) : 0.0;
      const double var = cnt ? sq / double(cnt) - o.input_mean * o.input_mean : 0.0;
      o.input_std = std::sqrt(std::max(var, 0.0));
      if (!(o.input_std > 0))
        throw UsageError("--standardize auto: the training inputs are constant (" +
                         fmt_g(o.input_mean, 6) + "); give --standardize MEAN,STD");
    } else {
      if (std::count(standardize->begin(), standardize->end(), ',') != 1)
        throw UsageError("--standardize expects auto or MEAN,STD, got '" + *standardize +
                         "'");
      const std::size_t comma = standardize->find(',');
      o.input_mean =
          parse_real(standardize->substr(0, comma), "--standardize mean", -1e300, 1e300);
      o.input_std =
          parse_real(standardize->substr(comma + 1), "--standardize std", 1e-300, 1e300);
    }
  }
  std::optional<SelectOptions> select;
  std::optional<int> refit_epochs;
  if (const auto tol = args.real("refit-select", 0, 1e300)) {
    select.emplace();
    select->tolerance = *tol;
    if (const auto e = args.integer("trial-epochs", 1, 1000000))
      select->trial_epochs = static_cast<int>(*e);
    if (const auto f = args.real("select-floor", 0, 1e300))
      select->floor = *f;
    if (const auto e = args.integer("refit-epochs", 0, 1000000))
      refit_epochs = static_cast<int>(*e);
    if (args.flag("resume"))
      throw UsageError("--refit-select cannot be combined with --resume");
  } else if (args.text("trial-epochs") || args.text("refit-epochs") ||
             args.text("select-floor")) {
    throw UsageError(
        "--trial-epochs, --refit-epochs and --select-floor belong to --refit-select");
  }
  TrainableModel<T> tm(model);
  std::optional<ProximalPenalty<T>> prox;
  if (penalty.lambda > 0) {
    prox.emplace(tm, groups_of(args, tm), penalty);
    o.after_step = [&](int e, std::int64_t s, double lr) { prox->step(e, s, lr); };
  }

  o.on_step = [&](const StepProgress &p) {
    if (progress.enabled())
      progress.update("epoch " + std::to_string(p.epoch) + "/" +
                      std::to_string(p.epochs) + "  batch " + std::to_string(p.step) +
                      "/" + std::to_string(p.steps) + "  loss " + fmt_g(p.loss, 4) +
                      (o.gradient.loss == LossKind::cross_entropy
                           ? "  accuracy " + fmt_g(100 * p.accuracy, 4) + "%"
                           : std::string()) +
                      "  " + fmt_g(p.images_per_second, 3) + " images/s");
  };
  o.on_epoch = [&](const EpochReport &r) {
    progress.clear();
    if (inv.json) {
      std::cout << epoch_json(r).dump() << std::endl;
    } else if (inv.human()) {
      std::cout << "epoch " << r.epoch << "/" << o.epochs << ": lr " << fmt_g(r.lr, 4)
                << ", train loss " << fmt_g(r.train_loss, 5);
      if (o.gradient.loss == LossKind::cross_entropy)
        std::cout << ", accuracy " << fmt_g(100 * r.train_accuracy, 4) << "%";
      if (r.validation_loss) {
        std::cout << "; test loss " << fmt_g(*r.validation_loss, 5);
        if (o.gradient.loss == LossKind::squared)
          std::cout << " (RMSE " << fmt_g(std::sqrt(*r.validation_loss), 5) << ")";
      }
      if (r.validation_accuracy)
        std::cout << ", accuracy " << fmt_g(100 * *r.validation_accuracy, 4) << "%";
      std::cout << "; " << fmt_seconds(r.seconds) << " (" << fmt_g(r.images_per_second, 3)
                << " images/s)";
      if (r.lambda_upper > 0 || r.norm_inf > 0)
        std::cout << "; lambda_PF(|A|) <= " << fmt_g(r.lambda_upper, 4)
                  << (r.certified ? " (certified)" : " (NOT certified)")
                  << ", ||A||_inf = " << fmt_g(r.norm_inf, 4);
      if (prox)
        std::cout << "; zero groups " << fmt_count(prox->zero_groups()) << "/"
                  << fmt_count(static_cast<index_t>(prox->groups().groups.size()));
      std::cout << std::endl;
    }
  };
  if (inv.json)
    o.on_epoch = [&](const EpochReport &r) {
      progress.clear();
      auto j = epoch_json(r);
      if (prox) {
        j["zero_groups"] = prox->zero_groups();
        j["groups"] = prox->groups().groups.size();
        j["penalty"] = prox->value();
      }
      std::cout << j.dump() << std::endl;
    };

  std::optional<Checkpoint<T>> cp;
  if (args.flag("resume")) {
    if (o.checkpoint_dir.empty())
      throw UsageError("--resume needs --checkpoint DIR");
    cp = load_checkpoint<T>(o.checkpoint_dir);
    if (!cp)
      throw FileError(o.checkpoint_dir.string(), 0,
                      "no complete checkpoint to resume from");
  }
  Stopwatch clock;
  TrainReport report;
  try {
    report = cp ? resume(tm, *cp, data, validation.size() ? &validation : nullptr, o)
                : train(tm, data, validation.size() ? &validation : nullptr, o);
  } catch (const TrainingError &e) {
    progress.clear();
    throw CommandFailure(exit_numerical,
                         std::string(e.what()) + "; nothing written to " + *out);
  }
  std::optional<SelectResult<T>> selection;
  if (select) {
    SelectOptions so = *select;
    so.refit = o;
    so.refit.after_step = {};
    so.refit.on_epoch = {};
    so.refit.on_step = {};
    so.refit.checkpoint_dir.clear();
    so.refit.epochs = refit_epochs.value_or(o.epochs);
    try {
      selection = select_inputs<T>(tm.model(), data, so,
                                   select_trial_reporter(inv, progress, "loss"));
    } catch (const TrainingError &e) {
      progress.clear();
      throw CommandFailure(exit_numerical, std::string("--refit-select: ") + e.what() +
                                               "; nothing written to " + *out);
    }
  }
  const double seconds = clock.seconds();
  progress.update("writing " + *out + " ...", true);
  save_model_as(selection ? selection->model
                : standardize
                    ? fold_input_standardization(tm.model(), o.input_mean, o.input_std)
                    : tm.model(),
                *out, output_format(args, *out));
  progress.clear();
  if (inv.json) {
    nlohmann::json doc = {{"event", "done"},
                          {"output", *out},
                          {"precision", to_string(precision)},
                          {"n", tm.model().states()},
                          {"p", tm.model().inputs()},
                          {"q", tm.model().outputs()},
                          {"parameters", tm.size()},
                          {"samples", data.size()},
                          {"epochs", report.epochs.size()},
                          {"forward_method", report.forward_method},
                          {"adjoint_method", report.adjoint_method},
                          {"constraint", to_string(report.constraint)},
                          {"constraint_reason", report.constraint_reason},
                          {"seconds", seconds}};
    if (o.distillation.weight > 0) {
      doc["distill"] = o.distillation.weight;
      doc["temperature"] = o.distillation.temperature;
    }
    if (prox) {
      doc["penalty_kind"] = to_string(penalty.kind);
      doc["lambda"] = penalty.lambda;
      doc["zero_groups"] = prox->zero_groups();
      doc["groups"] = prox->groups().groups.size();
    }
    if (selection) {
      doc["candidates"] = selection->candidates;
      doc["selected_inputs"] = selection->selected;
      doc["refit_loss"] = selection->refit_loss;
      doc["selection_loss"] = selection->loss;
    }
    if (!report.epochs.empty()) {
      const auto &last = report.epochs.back();
      doc["train_loss"] = last.train_loss;
      if (last.validation_accuracy)
        doc["validation_accuracy"] = *last.validation_accuracy;
    }
    std::cout << doc.dump() << std::endl;
  } else if (inv.human()) {
    std::cout << "trained " << fmt_count(tm.size()) << " parameters ("
              << to_string(precision) << ") on " << fmt_count(data.size())
              << " samples of " << data.name << " for " << report.epochs.size()
              << " epoch" << (report.epochs.size() == 1 ? "" : "s") << " in "
              << fmt_seconds(seconds) << " -> " << *out << "\n"
              << "  forward: " << report.forward_method << "\n"
              << "  adjoint: " << report.adjoint_method << "\n"
              << "  well-posedness: " << to_string(report.constraint) << " ("
              << report.constraint_reason << ")\n";
    if (prox)
      std::cout << "  penalty: " << to_string(penalty.kind) << ", lambda "
                << fmt_g(penalty.lambda, 6) << " on "
                << fmt_count(static_cast<index_t>(prox->groups().groups.size()))
                << " groups, " << fmt_count(prox->zero_groups())
                << " of them zero (tacit prune removes them)\n";
    if (selection) {
      std::cout << "  selection: " << selection->selected.size() << " of "
                << selection->candidates.size() << " candidate inputs kept (";
      for (std::size_t k = 0; k < selection->selected.size(); ++k)
        std::cout << (k ? " " : "") << selection->selected[k];
      std::cout << "), training loss " << fmt_g(selection->refit_loss, 5)
                << " after the refit, " << fmt_g(selection->loss, 5) << " at the end\n";
    }
  }
  return exit_ok;
}

int run_train(Invocation &inv) {
  const Precision precision = precision_of(inv.args);
  return precision == Precision::float32 ? train_command<float>(inv, precision)
                                         : train_command<double>(inv, precision);
}

/// The gradient as a model of the same structure: each tensor's values
/// replaced by its gradient.
template <class T> int gradient_command(Invocation &inv, Precision precision) {
  const Arguments &args = inv.args;
  const auto out = args.text("output");
  if (!out)
    throw UsageError("missing required option --output (-o)");
  const GradientOptions go = gradient_options(args, precision);
  const Model<T> model = load_or_init<T>(args);
  Dataset<T> data, none;
  load_data(args, model, go.loss, data, none, false);
  check_dataset(data, model.inputs(), model.outputs(), go.loss);
  TrainableModel<T> tm(model);
  GradientEngine<T> engine(tm, go);
  Targets<T> t;
  t.labels = data.labels;
  t.values = &data.targets;
  std::vector<T> grad(static_cast<std::size_t>(tm.size()));
  const GradientResult r = engine.compute(data.inputs, t, grad);
  if (!r.ok())
    throw CommandFailure(exit_numerical,
                         std::string("the ") + (r.forward.ok() ? "adjoint" : "forward") +
                             " solve did not converge: " +
                             (r.forward.ok() ? r.adjoint.message : r.forward.message) +
                             "; nothing written to " + *out);
  tm.write(grad);
  save_model_as(tm.model(), *out, output_format(args, *out));
  double norm = 0;
  for (const T g : grad)
    norm += double(g) * double(g);
  norm = std::sqrt(norm);
  if (inv.json) {
    nlohmann::json tensors = nlohmann::json::array();
    const auto v = std::as_const(tm).values();
    for (std::size_t k = 0; k < tm.tensors().size(); ++k) {
      double s = 0;
      for (const T g : v[k])
        s += double(g) * double(g);
      tensors.push_back({{"name", tm.tensors()[k].name},
                         {"shape", tm.tensors()[k].shape},
                         {"norm", std::sqrt(s)}});
    }
    inv.emit({{"output", *out},
              {"loss", r.loss},
              {"samples", r.samples},
              {"correct", r.correct},
              {"gradient_norm", norm},
              {"parameters", tm.size()},
              {"tensors", tensors},
              {"forward_method", engine.forward_method()},
              {"adjoint_method", engine.adjoint_method()},
              {"adjoint_iterations", r.adjoint.iterations}});
  } else if (inv.human()) {
    std::cout << "gradient of the mean " << to_string(go.loss) << " loss "
              << fmt_g(r.loss, 10) << " over " << fmt_count(r.samples) << " samples -> "
              << *out << "\n"
              << "  " << fmt_count(tm.size()) << " parameters in " << tm.tensors().size()
              << " tensors, ||gradient||_2 = " << fmt_g(norm, 6) << "\n"
              << "  adjoint: " << engine.adjoint_method() << "\n";
  }
  return exit_ok;
}

int run_gradient(Invocation &inv) {
  const Precision precision = precision_of(inv.args);
  return precision == Precision::float32 ? gradient_command<float>(inv, precision)
                                         : gradient_command<double>(inv, precision);
}

const std::vector<OptionSpec> common_options = {
    {"init", 0, "SPEC",
     "a fresh model instead of MODEL: mlp:784,64,32,16,10 (phi=tanh as a last item: "
     "tanh states) or implicit:n=N,p=P,q=Q,density=D,kappa=K"},
    {"seed", 0, "S", "seed of --init (default 1)"},
    {"data", 0, "DIR", "IDX directory: train-* for training, t10k-* for validation"},
    {"limit", 0, "N", "use the first N training images of --data"},
    {"input", 'i', "U.txt", "inputs, one per line (with --labels or --targets)"},
    {"labels", 0, "L.txt", "one integer label per line (cross-entropy)"},
    {"targets", 0, "Y.txt", "q target values per line (squared loss)"},
    {"loss", 0, "L", "cross-entropy (default) or squared (mean of (y - t)^2)"},
    {"output", 'o', "OUT", "where to write the model (.tacit: native file)"},
    format_option,
    precision_option,
    {"adjoint", 0, "M", "auto, sweep, picard or klu: how the adjoint is solved"},
    {"tol", 0, "T", "relative stopping tolerance of the solves"},
    {"anderson", 0, "M", "Anderson depth of the iterative solves (default 0)"},
    {"max-iterations", 0, "K", "iteration budget of the iterative solves"}};

std::vector<OptionSpec> train_options() {
  auto o = common_options;
  o.insert(
      o.end(),
      {{"optimizer", 0, "O", "sgd (default), adam or adamw"},
       {"lr", 0, "R", "learning rate (default 0.01)"},
       {"momentum", 0, "M", "SGD momentum (default 0)"},
       {"nesterov", 0, "", "Nesterov momentum (SGD)"},
       {"weight-decay", 0, "W", "weight decay (L2 for sgd/adam, decoupled for adamw)"},
       {"beta1", 0, "B", "Adam beta1 (default 0.9)"},
       {"beta2", 0, "B", "Adam beta2 (default 0.999)"},
       {"schedule", 0, "S", "constant (default), step:EPOCHS[:GAMMA], cosine[:MIN]"},
       {"batch-size", 0, "K", "mini-batch size (default 128)"},
       {"epochs", 0, "E", "epochs (default 1)"},
       {"shuffle", 0, "SEED", "seed of the batch order, or none (default 1)"},
       {"kappa", 0, "K", "bound kept on ||A||_inf or lambda_PF(|A|) (default 0.95)"},
       {"constraint", 0, "C", "auto, inf-norm, perron or none (models with cycles)"},
       {"validate-on", 0, "S", "test (default with --data or --test-input) or none"},
       {"test-input", 0, "U.txt", "test inputs for the validation each epoch"},
       {"test-labels", 0, "L.txt", "their labels (with --labels)"},
       {"test-targets", 0, "Y.txt", "their targets (with --targets)"},
       {"standardize", 0, "M,S",
        "train on (u - M) / S, or auto: the training inputs' mean and standard "
        "deviation; the saved model takes raw inputs (folded into B, D and the biases)"},
       {"checkpoint", 0, "DIR", "write DIR/epoch-NNNN after each epoch"},
       {"resume", 0, "", "continue from the last checkpoint in --checkpoint DIR"},
       {"group-lasso", 0, "LAMBDA",
        "proximal group lasso lambda sum_g w_g ||theta_g||_2 after every step"},
       {"l1", 0, "LAMBDA", "proximal l1 penalty on the members of the groups"},
       {"sparse-group-lasso", 0, "LAMBDA", "both: l1 share --alpha (default 0.5)"},
       {"alpha", 0, "A", "l1 share of --sparse-group-lasso, in [0, 1]"},
       {"groups", 0, "G",
        "states (rows of (A, B) with the bias; default), inputs, state-columns, "
        "states-both, blocks, channels (of convolutions and dense layers, tied across "
        "residual additions), or a group file"},
       {"reweight", 0, "E",
        "reweighted group lasso: w_g = w_g0 / (||theta_g|| + eps) every E epochs"},
       {"reweight-eps", 0, "EPS", "eps of --reweight (default 1e-3)"},
       {"group-lasso-path", 0, "L1,L2,...",
        "the lambda path: group lasso at each lambda (increasing) warm-started from the "
        "previous one, each pruned (and fine-tuned); -o is a directory"},
       {"path-epochs", 0, "E", "epochs per lambda of the path (default --epochs)"},
       {"fine-tune-epochs", 0, "F",
        "path: epochs without the penalty on each pruned model (default 0)"},
       {"fine-tune-lr", 0, "R", "path: learning rate of the fine-tuning (default --lr)"},
       {"teacher", 0, "MODEL",
        "knowledge distillation: a trained model whose outputs on the training data are "
        "soft targets (with --distill or --fine-tune-distill)"},
       {"distill", 0, "W",
        "weight in [0, 1] of the teacher's soft targets: loss (1 - W) CE + W T^2 "
        "KL(softmax(teacher / T) || softmax(y / T))"},
       {"temperature", 0, "T", "temperature T of --distill (default 1)"},
       {"fine-tune-distill", 0, "W",
        "--group-lasso-path: --distill W for the fine-tuning only"},
       {"fine-tune-schedule", 0, "S",
        "path: schedule of the fine-tuning over its epochs (default --schedule)"},
       {"keep-inputs", 0, "", "path: the pruned models keep every input"},
       {"threshold", 0, "T",
        "path: entries with |value| <= T count as zero in the prune"},
       {"refit-select", 0, "TOL",
        "after training: refit on the inputs read (others held at 0) without the "
        "penalty, then drop inputs one by one while the training loss stays within "
        "(1 + TOL) times the control refit's"},
       {"refit-epochs", 0, "E",
        "--refit-select: epochs of the first refit (default --epochs)"},
       {"trial-epochs", 0, "E",
        "--refit-select: epochs of the control and of each trial refit (default 50)"},
       {"select-floor", 0, "F",
        "--refit-select: a loss that counts as zero (drop when the loss <= (1 + TOL) "
        "control + F; for data fitted exactly; default 0)"}});
  return o;
}

[[maybe_unused]] const bool registered_train = register_command({
    .name = "train",
    .summary = "trains a model by exact gradients through the equilibrium",
    .description =
        "Trains MODEL (a model directory, .tacit file or .onnx network) or a fresh\n"
        "model (--init) on labelled images (--data DIR: Fashion-MNIST/MNIST IDX files) "
        "or\n"
        "on text inputs with labels or targets. Each step solves the equilibrium, the\n"
        "adjoint w = A^T J w + C^T g (a reverse block sweep for a network, Picard,\n"
        "Anderson or KLU when A has cycles) and applies the optimiser. A model with\n"
        "cycles is kept well-posed: A is projected onto ||A||_inf <= kappa after every\n"
        "step (or scaled to lambda_PF(|A|) <= kappa with --constraint perron), and "
        "every\n"
        "epoch certifies lambda_PF(|A|) < 1. A solve that does not converge stops with\n"
        "the epoch, the step and the numbers (exit code 3) and writes nothing.\n"
        "Batches are drawn in a seeded order; the same seed gives the same bits for any\n"
        "thread count, and --resume continues a checkpointed run with the same bits.\n"
        "A penalty (--group-lasso, --l1, --sparse-group-lasso) is applied as a proximal\n"
        "step after every optimiser step, before the projection of A; its zero groups\n"
        "are removed by tacit prune. Group file lines: LABEL state|row|column|input\n"
        "INDEX... (0-based indices or ranges A-B).\n"
        "--group-lasso-path L1,L2,... trains at each lambda (strictly increasing) for\n"
        "--path-epochs epochs, starting from the model trained at the previous lambda\n"
        "(the first from MODEL or --init: a plain --group-lasso run), prunes each\n"
        "trained model, optionally fine-tunes the pruned one (--fine-tune-epochs, its\n"
        "rate --fine-tune-lr and --fine-tune-schedule; by default --lr and --schedule) "
        "and\n"
        "reports per lambda the states, inputs, parameters and nonzeros kept and the\n"
        "test accuracy before and after fine-tuning. -o DIR receives trained_L.tacit,\n"
        "pruned_L.tacit, tuned_L.tacit and path.json (rewritten after every lambda;\n"
        "tacit plot curve draws it), each written atomically.\n"
        "--refit-select TOL, after training (typically with --group-lasso on --groups\n"
        "inputs, as a screen): refits without the penalty on the inputs the trained\n"
        "model reads (the others held at exactly 0), then drops inputs one at a time\n"
        "(backward elimination: per round a control refit and one trial refit without\n"
        "each input, --trial-epochs epochs each, warm-started) while the best trial's\n"
        "training loss is at most (1 + TOL) times the control's; -o receives the last\n"
        "refit (tacit prune then removes the dropped inputs).",
    .positionals = {{"MODEL", "model directory, .tacit or .onnx file (or --init)",
                     false}},
    .options = train_options(),
    .epilog = "Example (the Fashion-MNIST MLP of the README):\n"
              "  tacit train --init mlp:784,64,32,16,10 --data "
              "/usr/share/datasets/fashion-mnist \\\n"
              "      --optimizer sgd --lr 0.05 --momentum 0.9 --batch-size 128 --epochs "
              "10 -o mlp.tacit\n"
              "With --json: one line per epoch ({\"event\": \"epoch\", ...}) and a final "
              "line\n({\"event\": \"done\", ...}).\n"
              "The lambda path (states groups, 10 epochs per lambda, 2 of fine-tuning):\n"
              "  tacit train --init mlp:784,64,32,16,10 --data DIR --lr 0.05 --momentum "
              "0.9 \\\n"
              "      --group-lasso-path 0.0002,0.0005,0.001,0.002 --path-epochs 10 \\\n"
              "      --fine-tune-epochs 2 --fine-tune-lr 0.01 --keep-inputs -o path/\n"
              "  (--json: epoch lines with lambda and phase, a {\"event\": \"point\"} "
              "line per\n"
              "  lambda, a final {\"event\": \"done\", \"points\": [...]} line)\n",
    .order = 60,
    .run = run_train,
    .usage =
        "[MODEL | --init SPEC] (--data DIR | --input U.txt (--labels L.txt | --targets "
        "Y.txt)) -o OUT [OPTIONS]",
});

[[maybe_unused]] const bool registered_gradient = register_command({
    .name = "gradient",
    .summary = "the gradient of the mean loss, written as a model of the same shape",
    .description =
        "Computes the gradient of the mean loss over the inputs with respect to every\n"
        "parameter (A on its pattern, B, C, D, the biases; a network's kernels and\n"
        "weights) by implicit differentiation, and writes it as a model of the same\n"
        "structure: dL/dA in place of A, dL/dB in place of B, and so on.",
    .positionals = {{"MODEL", "model directory, .tacit or .onnx file (or --init)",
                     false}},
    .options = common_options,
    .epilog = "JSON fields: loss, samples, gradient_norm, tensors (name, shape, norm),\n"
              "forward_method, adjoint_method.\n",
    .order = 61,
    .run = run_gradient,
    .usage = "MODEL (--input U.txt (--labels L.txt | --targets Y.txt) | --data DIR) -o G "
             "[OPTIONS]",
});

} // namespace
} // namespace tacit::cli
