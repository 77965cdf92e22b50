// `tacit-mpi solve|certify` distributed by batch: every rank loads the model
// (a structured network, or any model with --by batch), takes its share of
// the inputs in whole slabs, runs the single-process solver or certifier on
// it, and rank 0 writes the results in input order: the same bits as `tacit
// solve` / `tacit certify`. And `tacit-mpi certify` of a CSR model
// distributed by states (mpi::certify_states: no rank holds the whole
// model), with the options and report of `tacit certify`.

#include "batch_commands.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <tbb/global_control.h>

#include <tacit/analysis/bounds.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/isa.hpp>
#include <tacit/io/io.hpp>
#include <tacit/mpi/batch.hpp>
#include <tacit/mpi/bounds.hpp>
#include <tacit/mpi/certify.hpp>
#include <tacit/solve/solve.hpp>

#include "../cli_common.hpp"
#include "../cli_dataset.hpp"
#include "../cli_model.hpp"

namespace tacit::mpi_cli {

namespace {

using namespace tacit::cli;
using nlohmann::json;

const OptionSpec by_option{"by", 0, "batch",
                           "distribute the inputs, each rank holding the whole model "
                           "(the default for structured models)"};

Command solve_command() {
  Command c;
  c.name = "solve";
  c.options = {{"input", 'i', "U.txt", ""},
               {"output", 'o', "Y.txt", ""},
               {"states", 0, "X.txt", ""},
               {"method", 0, "M", ""},
               precision_option,
               {"max-iterations", 0, "K", ""},
               {"tol", 0, "T", ""},
               {"abs-tol", 0, "T", ""},
               {"anderson", 0, "M", ""},
               {"repeat", 0, "N", ""},
               by_option};
  c.positionals = {{"MODEL", ""}};
  return c;
}

Command certify_command() {
  Command c;
  c.name = "certify";
  c.options = data_options();
  for (const char *name : {"eps", "bound", "radius-output", "domain", "slope-steps"})
    c.options.push_back({name, 0, "V", ""});
  for (const char *name : {"no-refine", "no-region"})
    c.options.push_back({name, 0, "", ""});
  c.options.push_back(precision_option);
  c.options.push_back(by_option);
  c.positionals = {{"MODEL", ""}};
  return c;
}

/// certify by states: the options of tacit certify that apply to the global
/// and interval bounds, and the memory budget.
Command certify_states_command() {
  Command c;
  c.name = "certify";
  c.options = data_options();
  for (const char *name : {"eps", "bound", "radius-output", "domain", "memory-budget"})
    c.options.push_back({name, 0, "V", ""});
  c.options.push_back(precision_option);
  c.positionals = {{"MODEL", ""}};
  return c;
}

/// Options taking a value, for finding MODEL before the full parse.
bool takes_value(const std::string &name) {
  for (const Command &c : {solve_command(), certify_command()})
    for (const auto &o : c.options)
      if (o.name == name)
        return !o.metavar.empty();
  return name == "threads" || name == "memory-budget" || name == "rel-width";
}

/// A native file whose operators are stored as a tree (version 2).
bool structured_native(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  char head[12] = {};
  if (!in.read(head, sizeof head) || std::memcmp(head, "TACITMDL", 8) != 0)
    return false;
  std::uint32_t version = 0;
  std::memcpy(&version, head + 8, 4);
  return version == 2;
}

int rank_of(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}
int ranks_of(MPI_Comm comm) {
  int r = 1;
  MPI_Comm_size(comm, &r);
  return r;
}

/// A failure agreed by every rank: its exit code and the message of the
/// lowest failing rank.
struct Failure {
  int code = exit_ok;
  std::string message;
};

Failure failure_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const UsageError &x) {
    return {exit_usage, std::string("usage error: ") + x.what() + " (tacit-mpi --help)"};
  } catch (const CommandFailure &x) {
    return {x.code(), x.what()};
  } catch (const FileError &x) {
    return {exit_input, x.what()};
  } catch (const Unsupported &x) {
    return {exit_input, x.what()};
  } catch (const InvalidArgument &x) {
    return {exit_usage, x.what()};
  } catch (const NumericalError &x) {
    return {exit_numerical, x.what()};
  } catch (const std::exception &x) {
    return {exit_internal, x.what()};
  }
}

/// Runs f() on every rank; when it fails on some rank, every rank gets the
/// failure of the lowest failing rank (named in the message when it is not
/// the caller's own).
class Agreement {
public:
  explicit Agreement(MPI_Comm comm) : comm_(comm) {}
  template <class F> bool operator()(F &&f) {
    Failure mine;
    try {
      f();
    } catch (...) {
      mine = failure_of(std::current_exception());
    }
    const int rank = rank_of(comm_);
    int lowest = mine.code != exit_ok ? rank : ranks_of(comm_);
    MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_INT, MPI_MIN, comm_);
    if (lowest == ranks_of(comm_))
      return true;
    int code = mine.code;
    MPI_Bcast(&code, 1, MPI_INT, lowest, comm_);
    int size = static_cast<int>(mine.message.size());
    MPI_Bcast(&size, 1, MPI_INT, lowest, comm_);
    std::string text = mine.message;
    text.resize(static_cast<std::size_t>(size));
    MPI_Bcast(text.data(), size, MPI_CHAR, lowest, comm_);
    failure_.code = code;
    failure_.message = lowest == rank || mine.message == text
                           ? text
                           : text + " (on rank " + std::to_string(lowest) + ")";
    return false;
  }
  /// Reports the failure on this rank's stderr (one write) and gives its code.
  int report() const {
    const std::string line = "tacit-mpi (rank " + std::to_string(rank_of(comm_)) +
                             " of " + std::to_string(ranks_of(comm_)) +
                             "): error: " + failure_.message + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
    return failure_.code;
  }

private:
  MPI_Comm comm_;
  Failure failure_;
};

std::vector<double> gather(MPI_Comm comm, double mine) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  std::vector<double> all(static_cast<std::size_t>(ranks), mine);
  MPI_Gather(&mine, 1, MPI_DOUBLE, rank == 0 ? all.data() : nullptr, 1, MPI_DOUBLE, 0,
             comm);
  return all;
}

double max_of(const std::vector<double> &v) {
  return *std::max_element(v.begin(), v.end());
}

template <class T> std::size_t model_bytes(const Model<T> &m) {
  std::size_t b = m.A().bytes() + m.B().bytes() + m.C().bytes() +
                  (m.bias_x().size() + m.bias_y().size()) * sizeof(T);
  if (m.D_ptr())
    b += m.D_ptr()->bytes();
  return b;
}

/// The inputs of each rank and the bytes of the model it holds.
template <class T>
json partition_json(MPI_Comm comm, const mpi::RowPartition &parts,
                    const Model<T> &model) {
  const auto bytes = gather(comm, static_cast<double>(model_bytes(model)));
  json ranks = json::array();
  for (int r = 0; r < parts.ranks(); ++r)
    ranks.push_back({{"rank", r},
                     {"inputs", {parts.begin(r), parts.end(r)}},
                     {"bytes", static_cast<std::int64_t>(bytes[r])}});
  return {
      {"method", "by batch: contiguous whole slabs of inputs, the model on every rank"},
      {"ranks", ranks}};
}

SolveOptions solve_options(const Arguments &args, Precision precision) {
  SolveOptions options = default_solve_options(precision);
  if (const auto m = args.choice("method", {"auto", "picard", "sweep"}))
    options.method = parse_solve_method(*m);
  auto &picard = options.picard;
  if (const auto k = args.integer("max-iterations", 1, 2000000000))
    picard.max_iterations = static_cast<int>(*k);
  if (const auto t = args.real("tol", 0.0, 1.0))
    picard.rel_tol = *t;
  if (const auto t = args.real("abs-tol", 0.0, 1e300))
    picard.abs_tol = *t;
  if (const auto m = args.integer("anderson", 0, 64))
    picard.anderson_depth = static_cast<int>(*m);
  return options;
}

template <class T>
int solve(MPI_Comm comm, const Arguments &args, bool json_out, bool quiet,
          Precision precision) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  Agreement agree(comm);
  const std::string model_path = args.positionals().at(0);
  std::string input, output;
  std::optional<std::string> states;
  SolveOptions options;
  int repeat = 1;
  std::unique_ptr<Model<T>> model;
  Batch<T> U;
  Stopwatch clock;
  if (!agree([&] {
        const auto i = args.text("input");
        if (!i)
          throw UsageError("missing required option --input (-i)");
        const auto o = args.text("output");
        if (!o)
          throw UsageError("missing required option --output (-o)");
        input = *i;
        output = *o;
        states = args.text("states");
        options = solve_options(args, precision);
        repeat = static_cast<int>(args.integer("repeat", 1, 1000000).value_or(1));
        model = std::make_unique<Model<T>>(load_model<T>(model_path));
        U = read_vectors<T>(input, model->inputs());
        if (U.cols() == 0)
          throw CommandFailure(exit_input,
                               input + ": no input vectors (expected lines of " +
                                   std::to_string(model->inputs()) + " numbers)");
      }))
    return agree.report();
  const auto load_all = gather(comm, clock.seconds());
  std::unique_ptr<EquilibriumSolver<T>> solver;
  clock.restart();
  if (!agree([&] { solver = std::make_unique<EquilibriumSolver<T>>(*model, options); }))
    return agree.report();
  const auto setup_all = gather(comm, clock.seconds());
  Batch<T> X, Y;
  SolveReport report;
  mpi::RankTimings timings;
  double first = 0, best = 0;
  if (!agree([&] {
        for (int r = 0; r < repeat; ++r) {
          mpi::RankTimings t;
          report =
              mpi::batch_predict(comm, *solver, *model, U, Y, states ? &X : nullptr, &t);
          const double s = rank == 0 ? max_of(t.solve) : 0.0;
          if (r == 0) {
            timings = t;
            first = best = s;
          }
          best = std::min(best, s);
        }
      }))
    return agree.report();
  if (!agree([&] {
        if (rank != 0)
          return;
        write_output(output,
                     [&](const std::filesystem::path &p) { write_vectors(p, Y); });
        if (states)
          write_output(*states,
                       [&](const std::filesystem::path &p) { write_vectors(p, X); });
      }))
    return agree.report();
  const mpi::RowPartition parts = mpi::batch_partition(U.cols(), ranks, U.slab_width());
  const json partition = partition_json(comm, parts, *model);
  index_t unconverged = 0;
  for (const auto s : report.column_status)
    unconverged += s != SolveStatus::converged ? 1 : 0;
  if (rank == 0) {
    if (json_out) {
      json doc = {{"model", model_path},
                  {"input", input},
                  {"output", output},
                  {"precision", to_string(precision)},
                  {"n", model->states()},
                  {"p", model->inputs()},
                  {"q", model->outputs()},
                  {"columns", U.cols()},
                  {"method", to_string(report.method)},
                  {"method_reason", solver->method_reason()},
                  {"status", to_string(report.status)},
                  {"converged", report.ok()},
                  {"unconverged_columns", unconverged},
                  {"iterations", report.iterations},
                  {"residual", report.residual},
                  {"message", report.message},
                  {"load_seconds", max_of(load_all)},
                  {"setup_seconds", max_of(setup_all)},
                  {"solve_seconds", first},
                  {"output_seconds", max_of(timings.output)},
                  {"repeat", repeat},
                  {"best_solve_seconds", best},
                  {"isa", to_string(active_isa())},
                  {"ranks", ranks},
                  {"distribution", "batch"},
                  {"partition", partition},
                  {"rank_seconds",
                   {{"load", load_all},
                    {"setup", setup_all},
                    {"solve", timings.solve},
                    {"output", timings.output}}}};
      if (states)
        doc["states"] = *states;
      std::cout << doc.dump() << "\n";
    } else if (!quiet) {
      std::cout << "solved " << fmt_count(U.cols()) << " input"
                << (U.cols() == 1 ? "" : "s") << " of " << input << " -> " << output
                << "\n"
                << "  model: n = " << fmt_count(model->states())
                << ", p = " << fmt_count(model->inputs())
                << ", q = " << fmt_count(model->outputs()) << ", " << to_string(precision)
                << ", " << ranks << " ranks by batch\n"
                << "  method: " << to_string(report.method) << " ("
                << solver->method_reason() << ")\n"
                << "  status: " << to_string(report.status) << ", " << report.iterations
                << " iterations, residual " << fmt_g(report.residual, 3) << "\n"
                << "  time (slowest rank): load " << fmt_seconds(max_of(load_all))
                << ", setup " << fmt_seconds(max_of(setup_all)) << ", solve "
                << fmt_seconds(first) << " (" << fmt_seconds(first / double(U.cols()))
                << " per input)";
      if (repeat > 1)
        std::cout << ", best of " << repeat << " solves " << fmt_seconds(best);
      std::cout << "\n";
      for (int r = 0; r < ranks; ++r)
        std::cout << "  rank " << r << ": inputs [" << parts.begin(r) << ", "
                  << parts.end(r) << "), solve " << fmt_seconds(timings.solve[r]) << "\n";
    }
  }
  if (!report.ok()) {
    if (rank == 0)
      std::cerr << "tacit-mpi: warning: the solve did not converge: status "
                << to_string(report.status) << " after " << report.iterations
                << " iterations, residual " << fmt_g(report.residual, 3) << " ("
                << unconverged << " of " << U.cols()
                << " inputs not converged); outputs written to " << output
                << " anyway\n  detail: " << report.message << "\n";
    return exit_numerical;
  }
  return exit_ok;
}

template <class T>
int certify(MPI_Comm comm, const Arguments &a, bool json_out, bool quiet,
            Precision precision) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  Agreement agree(comm);
  const std::string model_path = a.positionals().at(0);
  std::vector<double> eps;
  BoundMethod method = BoundMethod::best;
  std::optional<std::string> radius_path;
  CertifyOptions options;
  bool no_refine = false;
  std::unique_ptr<Model<T>> model;
  LabelledData data;
  Batch<T> inputs;
  Stopwatch clock;
  if (!agree([&] {
        eps =
            parse_list(a.text("eps").value_or("0.005,0.01,0.02,0.05"), "--eps", 0.0, 1e6);
        method = parse_bound_method(
            a.choice("bound", {"global", "interval", "linear", "best"}).value_or("best"));
        const index_t limit = a.integer("limit", 0, std::int64_t(1) << 40).value_or(-1);
        radius_path = a.text("radius-output");
        std::optional<std::vector<double>> domain;
        if (const auto d = a.text("domain"); d && *d != "none") {
          domain = parse_list(*d, "--domain", -1e300, 1e300);
          if (domain->size() != 2 || (*domain)[0] > (*domain)[1])
            throw UsageError("--domain expects LO,HI with LO <= HI, or none");
        }
        no_refine = a.flag("no-refine");
        options.method = method;
        options.bounds.refine = !no_refine;
        options.bounds.linear_region = !a.flag("no-region");
        options.bounds.slope_steps =
            static_cast<int>(a.integer("slope-steps", 0, 100000).value_or(20));
        model = std::make_unique<Model<T>>(load_model<T>(model_path));
        data = load_labelled(a, model->inputs(), limit);
        inputs = Batch<T>(data.inputs.rows(), data.inputs.cols());
        for (index_t j = 0; j < inputs.cols(); ++j)
          for (index_t i = 0; i < inputs.rows(); ++i)
            inputs(i, j) = static_cast<T>(data.inputs(i, j));
        for (std::size_t j = 0; j < data.labels.size(); ++j)
          if (data.labels[j] >= model->outputs())
            throw CommandFailure(
                exit_input, data.source + ": label " + std::to_string(data.labels[j]) +
                                " of input " + std::to_string(j + 1) +
                                " is not below q = " + std::to_string(model->outputs()));
        if (domain) {
          options.domain_lo = (*domain)[0];
          options.domain_hi = (*domain)[1];
        } else if (data.images && !a.has("domain")) {
          options.domain_lo = 0; // images: pixels stay in [0, 1]
          options.domain_hi = 1;
        }
      }))
    return agree.report();
  const auto load_all = gather(comm, clock.seconds());
  clock.restart();
  std::unique_ptr<BoundAnalyzer<T>> analyzer;
  if (!agree(
          [&] { analyzer = std::make_unique<BoundAnalyzer<T>>(*model, options.bounds); }))
    return agree.report();
  const auto setup_all = gather(comm, clock.seconds());
  if (rank == 0 && !analyzer->certified_well_posed())
    std::cerr
        << "tacit-mpi: warning: lambda_PF(L|A|) < 1 is not certified: every bound is "
           "infinite and nothing can be certified\n";
  CertifiedAccuracy result;
  mpi::RankTimings timings;
  if (!agree([&] {
        result = mpi::batch_certify<T>(comm, *analyzer, inputs, data.labels, eps,
                                       radius_path.has_value(), options, &timings);
      }))
    return agree.report();
  const index_t count = inputs.cols();
  if (!agree([&] {
        if (rank != 0 || !radius_path)
          return;
        CertificationReport(result).write_radii(*radius_path);
      }))
    return agree.report();
  const mpi::RowPartition parts = mpi::batch_partition(count, ranks, inputs.slab_width());
  const json partition = partition_json(comm, parts, *model);
  if (rank != 0)
    return exit_ok;
  const CertificationReport report(result);
  if (json_out) {
    json doc = {{"model", model_path},
                {"data", data.source},
                {"inputs", count},
                {"bound", to_string(method)},
                {"precision", to_string(precision)},
                {"refine", !no_refine},
                {"feed_forward", analyzer->feed_forward()},
                {"levels", analyzer->levels()},
                {"well_posed_certified", analyzer->certified_well_posed()},
                {"load_seconds", max_of(load_all)},
                {"setup_seconds", max_of(setup_all)},
                {"ranks", ranks},
                {"distribution", "batch"},
                {"partition", partition},
                {"rank_seconds",
                 {{"load", load_all}, {"setup", setup_all}, {"certify", timings.solve}}}};
    if (options.domain_lo <= options.domain_hi)
      doc["domain"] = {options.domain_lo, options.domain_hi};
    report.add_json(doc, radius_path);
    std::cout << doc.dump() << "\n";
  } else if (!quiet) {
    std::cout << "certified " << fmt_count(count) << " input" << (count == 1 ? "" : "s")
              << " of " << data.source << " with the " << to_string(method) << " bound"
              << (no_refine ? " (no refinement)" : "") << ", " << to_string(precision)
              << ", " << ranks << " ranks by batch\n"
              << "  model: n = " << fmt_count(model->states())
              << ", p = " << fmt_count(model->inputs()) << ", q = " << model->outputs()
              << (analyzer->feed_forward() ? ", feed-forward, " : ", implicit, ")
              << analyzer->levels() << " levels\n";
    report.print(std::cout, radius_path);
    std::cout << "  time (slowest rank): load " << fmt_seconds(max_of(load_all))
              << ", setup " << fmt_seconds(max_of(setup_all)) << ", certify "
              << fmt_seconds(result.seconds) << "\n";
  }
  return exit_ok;
}

/// `tacit-mpi certify` of a CSR model distributed by states.
int certify_by_states(MPI_Comm comm, const Arguments &a, bool json_out, bool quiet) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  Agreement agree(comm);
  const std::string model_path = a.positionals().at(0);
  std::vector<double> eps;
  BoundMethod method = BoundMethod::best;
  std::optional<std::string> radius_path;
  std::optional<std::vector<double>> domain;
  CertifyOptions options;
  index_t limit = -1;
  std::size_t budget = 0;
  if (!agree([&] {
        eps =
            parse_list(a.text("eps").value_or("0.005,0.01,0.02,0.05"), "--eps", 0.0, 1e6);
        const std::string bound = a.text("bound").value_or("best");
        if (bound == "linear")
          throw UsageError("--bound linear: the linear bound is not available on a model "
                           "distributed by states (global, interval or best = global "
                           "then interval; --by batch holds the model on every rank)");
        method = parse_bound_method(
            a.choice("bound", {"global", "interval", "best"}).value_or("best"));
        if (precision_of(a) != Precision::float64)
          throw UsageError("--precision float32: a model distributed by states is "
                           "analysed in float64 (--by batch for float32)");
        limit = a.integer("limit", 0, std::int64_t(1) << 40).value_or(-1);
        radius_path = a.text("radius-output");
        if (const auto d = a.text("domain"); d && *d != "none") {
          domain = parse_list(*d, "--domain", -1e300, 1e300);
          if (domain->size() != 2 || (*domain)[0] > (*domain)[1])
            throw UsageError("--domain expects LO,HI with LO <= HI, or none");
        }
        budget = static_cast<std::size_t>(
            a.integer("memory-budget", 1, std::int64_t(1) << 60).value_or(0));
        options.method = method;
      }))
    return agree.report();
  Stopwatch clock;
  std::unique_ptr<mpi::DistributedModel> model;
  LabelledData data;
  Batch<double> inputs;
  if (!agree([&] {
        model = std::make_unique<mpi::DistributedModel>(
            mpi::load_distributed_model(model_path, comm, budget));
      }))
    return agree.report();
  if (!agree([&] {
        data = load_labelled(a, model->p, limit);
        inputs = data.inputs;
        for (std::size_t j = 0; j < data.labels.size(); ++j)
          if (data.labels[j] >= model->q)
            throw CommandFailure(exit_input,
                                 data.source + ": label " + std::to_string(data.labels[j]) +
                                     " of input " + std::to_string(j + 1) +
                                     " is not below q = " + std::to_string(model->q));
        if (domain) {
          options.domain_lo = (*domain)[0];
          options.domain_hi = (*domain)[1];
        } else if (data.images && !a.has("domain")) {
          options.domain_lo = 0; // images: pixels stay in [0, 1]
          options.domain_hi = 1;
        }
      }))
    return agree.report();
  const auto load_all = gather(comm, clock.seconds());
  clock.restart();
  std::unique_ptr<mpi::DistributedBoundAnalyzer> analyzer;
  if (!agree([&] {
        analyzer =
            std::make_unique<mpi::DistributedBoundAnalyzer>(*model, options.bounds, budget);
      }))
    return agree.report();
  const auto setup_all = gather(comm, clock.seconds());
  if (rank == 0 && !analyzer->certified_well_posed())
    std::cerr
        << "tacit-mpi: warning: lambda_PF(L|A|) < 1 is not certified: every bound is "
           "infinite and nothing can be certified\n";
  CertifiedAccuracy result;
  mpi::RankTimings timings;
  if (!agree([&] {
        result = mpi::certify_states(*analyzer, inputs, data.labels, eps,
                                     radius_path.has_value(), options, {}, &timings);
      }))
    return agree.report();
  const index_t count = inputs.cols();
  if (!agree([&] {
        if (rank != 0 || !radius_path)
          return;
        CertificationReport(result).write_radii(*radius_path);
      }))
    return agree.report();
  const json partition = states_partition_json(*model);
  if (rank != 0)
    return exit_ok;
  const CertificationReport report(result);
  if (json_out) {
    json doc = {{"model", model_path},
                {"data", data.source},
                {"inputs", count},
                {"bound", to_string(method)},
                {"precision", "float64"},
                {"refine", false},
                {"feed_forward", analyzer->feed_forward()},
                {"levels", analyzer->levels()},
                {"well_posed_certified", analyzer->certified_well_posed()},
                {"load_seconds", max_of(load_all)},
                {"setup_seconds", max_of(setup_all)},
                {"n", model->n},
                {"ranks", ranks},
                {"distribution", "states"},
                {"partition", partition},
                {"rank_seconds",
                 {{"load", load_all},
                  {"setup", setup_all},
                  {"nominal_setup", timings.setup},
                  {"nominal_solve", timings.solve},
                  {"certify", timings.output}}}};
    if (options.domain_lo <= options.domain_hi)
      doc["domain"] = {options.domain_lo, options.domain_hi};
    report.add_json(doc, radius_path);
    std::cout << doc.dump() << "\n";
  } else if (!quiet) {
    std::cout << "certified " << fmt_count(count) << " input" << (count == 1 ? "" : "s")
              << " of " << data.source << " with the " << to_string(method) << " bound"
              << (method == BoundMethod::best ? " (global, then interval)" : "")
              << ", float64, " << ranks << " ranks by states\n"
              << "  model: n = " << fmt_count(model->n) << ", p = " << fmt_count(model->p)
              << ", q = " << model->q
              << (analyzer->feed_forward()
                      ? ", feed-forward, " + std::to_string(analyzer->levels()) + " levels"
                      : std::string(", implicit"))
              << "\n";
    report.print(std::cout, radius_path);
    std::cout << "  time (slowest rank): load " << fmt_seconds(max_of(load_all))
              << ", setup " << fmt_seconds(max_of(setup_all)) << ", certify "
              << fmt_seconds(result.seconds) << " ("
              << fmt_seconds(count ? result.seconds / double(count) : 0.0)
              << " per input)\n";
    for (int r = 0; r < ranks; ++r)
      std::cout << "  rank " << r << ": states [" << model->states.begin(r) << ", "
                << model->states.end(r) << "), certify " << fmt_seconds(timings.output[r])
                << "\n";
  }
  return exit_ok;
}

} // namespace

json states_partition_json(const mpi::DistributedModel &m) {
  const auto nnz = gather(m.comm, static_cast<double>(m.A.local.nnz()));
  const auto bytes = gather(m.comm, static_cast<double>(m.local_bytes()));
  json ranks = json::array();
  for (int r = 0; r < m.ranks; ++r)
    ranks.push_back({{"rank", r},
                     {"states", {m.states.begin(r), m.states.end(r)}},
                     {"outputs", {m.outputs.begin(r), m.outputs.end(r)}},
                     {"a_nnz", static_cast<std::int64_t>(nnz[r])},
                     {"bytes", static_cast<std::int64_t>(bytes[r])}});
  return {{"method", "contiguous, balancing nonzeros + rows of A"},
          {"a_nnz", m.A.global_nnz},
          {"ranks", ranks}};
}

const char *batch_usage_text() {
  return "\n"
         "distributed by batch (data parallel: every rank holds the whole model and\n"
         "takes a contiguous share of the inputs in whole slabs; the default for\n"
         "structured models such as `tacit export-resnet20`'s, --by batch for any):\n"
         "  solve MODEL -i U.txt -o Y.txt   the options of `tacit solve` (--method,\n"
         "      --precision, --anderson, --states, --repeat ...); the same outputs\n"
         "  certify MODEL (--data DIR | -i U.txt --labels L.txt)   the options of\n"
         "      `tacit certify` (--eps, --bound, --radius-output, --domain, --limit "
         "...)\n"
         "      but --widths; the same counts and radii\n"
         "  --threads N: threads per rank\n"
         "JSON fields: those of tacit solve / tacit certify, plus ranks, distribution\n"
         "(batch), partition (inputs and model bytes per rank) and rank_seconds.\n";
}

std::optional<int> run_batch_command(int argc, char **argv, MPI_Comm comm) {
  if (argc < 3)
    return std::nullopt;
  const std::string command = argv[1];
  if (command != "solve" && command != "certify")
    return std::nullopt;
  // MODEL and --by, before the full parse.
  std::vector<std::string> args(argv + 2, argv + argc);
  std::optional<std::string> model, by;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string &s = args[i];
    if (s.rfind("--", 0) == 0) {
      std::string name = s.substr(2);
      std::optional<std::string> value;
      if (const auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (takes_value(name) && i + 1 < args.size()) {
        value = args[++i];
      }
      if (name == "by")
        by = value.value_or("");
    } else if (s.size() == 2 && s[0] == '-') {
      if (s[1] == 'i' || s[1] == 'o')
        ++i;
    } else if (!model) {
      model = s;
    }
  }
  const bool batch = by || (model && structured_native(*model));
  if (!batch && command == "solve")
    return std::nullopt; // tacit_mpi_main.cpp: solve by states
  const int rank = rank_of(comm);
  if (std::find(args.begin(), args.end(), "--help") != args.end() ||
      std::find(args.begin(), args.end(), "-h") != args.end()) {
    if (!batch)
      return std::nullopt; // certify by states: the full help (tacit_mpi_main.cpp)
    if (rank == 0)
      std::cout << batch_usage_text();
    return exit_ok;
  }
  Agreement agree(comm);
  Arguments parsed;
  Precision precision = Precision::float64;
  std::unique_ptr<tbb::global_control> threads;
  if (!agree([&] {
        const Command spec = !batch                ? certify_states_command()
                             : command == "solve" ? solve_command()
                                                  : certify_command();
        parsed = Arguments::parse(spec, args);
        if (const auto b = parsed.text("by"); b && *b != "batch")
          throw UsageError("--by " + *b +
                           ": only 'batch' (a CSR model without --by is "
                           "distributed by states)");
        precision = precision_of(parsed);
        if (const auto t = parsed.integer("threads", 1, 4096))
          threads = std::make_unique<tbb::global_control>(
              tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(*t));
      }))
    return agree.report();
  const bool json_out = parsed.flag("json"), quiet = parsed.flag("quiet");
  if (!batch)
    return certify_by_states(comm, parsed, json_out, quiet);
  if (command == "solve")
    return precision == Precision::float32
               ? solve<float>(comm, parsed, json_out, quiet, precision)
               : solve<double>(comm, parsed, json_out, quiet, precision);
  return precision == Precision::float32
             ? certify<float>(comm, parsed, json_out, quiet, precision)
             : certify<double>(comm, parsed, json_out, quiet, precision);
}

} // namespace tacit::mpi_cli
