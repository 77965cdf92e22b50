// tacit-mpi: `mpirun -np N tacit-mpi solve|wellposed MODEL ...`, the
// distributed counterparts of `tacit solve` and `tacit wellposed` for CSR
// models in native files, with the partition and per-rank timings.

#include <tacit/analysis/sensitivity.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/isa.hpp>
#include <tacit/io/io.hpp>
#include <tacit/mpi/mpi.hpp>
#include <tacit/mpi/sensitivity.hpp>

#include <nlohmann/json.hpp>

#include "batch_commands.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace tacit;
using nlohmann::json;

constexpr int exit_ok = 0, exit_usage = 1, exit_input = 2, exit_numerical = 3,
              exit_internal = 4;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char *usage_text =
    "usage: mpirun -np N tacit-mpi COMMAND MODEL [OPTIONS]\n"
    "\n"
    "The distributed counterparts of `tacit solve`, `wellposed`, `certify` and\n"
    "`sensitivity` for CSR\n"
    "models in native files (.tacit) or model directories: the states are split\n"
    "over the ranks (contiguous ranges balancing the nonzeros plus rows of A), each\n"
    "rank reads only its own rows of the file (its share of a directory's files).\n"
    "\n"
    "commands:\n"
    "  solve MODEL -i U.txt -o Y.txt   outputs y = C x + D u + c for a file of inputs\n"
    "      (Picard: the states are the same bits as `tacit solve --method picard`)\n"
    "      --max-iterations K, --tol T, --abs-tol T, --anderson M (as tacit solve),\n"
    "      --method auto|picard|anderson (anderson: depth M, 5 by default),\n"
    "      --states X.txt (the equilibrium states, one per line)\n"
    "  wellposed MODEL                 norms and a certified interval for\n"
    "      lambda_PF(|A|) (distributed power iteration, Collatz-Wielandt bounds)\n"
    "      --rel-width W, --max-iterations K, --decide, --slepc (SLEPc's\n"
    "      Krylov-Schur estimate beside the certified interval)\n"
    "  certify MODEL (--data DIR | -i U.txt --labels L.txt)   certified l_inf\n"
    "      robustness as `tacit certify` with the global and interval bounds: the\n"
    "      margins the single-process bits on the same nominal states; --eps,\n"
    "      --bound global|interval|best (best, the default: global, then interval;\n"
    "      no linear bound by states), --radius-output, --domain, --limit\n"
    "  sensitivity MODEL               rows of S = |C| (I - |A|)^-1 |B| + |D|, each by\n"
    "      one solve with (I - |A|)^T (certified lambda_PF(|A|) < 1 and contraction\n"
    "      ratio, error bound reported): --rows I,J,... (default all), -o S.txt,\n"
    "      --method auto|gmres|richardson (auto: gmres; iterative: richardson),\n"
    "      --tol T (certified relative error, default 1e-14), --top K,\n"
    "      --max-iterations K\n"
    "\n"
    "common options: --json (report on stdout, rank 0), -q, --help,\n"
    "  --memory-budget BYTES (a rank whose share of the model needs more refuses)\n"
    "JSON fields: those of tacit solve / tacit wellposed that apply, plus ranks,\n"
    "partition (states, nnz and bytes per rank) and rank_seconds (per phase and rank).\n"
    "Exit codes: 0 success, 1 usage error, 2 input error, 3 numerical failure or\n"
    "no convergence, 4 internal error; an error is reported by every rank.\n";

/// --name value / --name=value / -x value options and positionals.
struct Args {
  std::vector<std::string> positionals;
  std::map<std::string, std::string> values;
  std::vector<std::string> flags;

  static Args parse(int argc, char **argv, const std::vector<std::string> &with_value,
                    const std::map<char, std::string> &short_names) {
    Args a;
    for (int i = 2; i < argc; ++i) {
      std::string s = argv[i];
      if (s.size() == 2 && s[0] == '-' && s[1] != '-') {
        const auto it = short_names.find(s[1]);
        if (it == short_names.end())
          throw UsageError("unknown option " + s);
        s = "--" + it->second;
      }
      if (s.rfind("--", 0) == 0) {
        std::string name = s.substr(2), value;
        const auto eq = name.find('=');
        const bool inline_value = eq != std::string::npos;
        if (inline_value) {
          value = name.substr(eq + 1);
          name = name.substr(0, eq);
        }
        if (std::find(with_value.begin(), with_value.end(), name) != with_value.end()) {
          if (!inline_value) {
            if (i + 1 >= argc)
              throw UsageError("option --" + name + " needs a value");
            value = argv[++i];
          }
          a.values[name] = value;
        } else if (name == "json" || name == "quiet" || name == "help" ||
                   name == "decide" || name == "slepc") {
          a.flags.push_back(name);
        } else {
          throw UsageError("unknown option --" + name);
        }
      } else {
        a.positionals.push_back(s);
      }
    }
    return a;
  }
  bool flag(const std::string &f) const {
    return std::find(flags.begin(), flags.end(), f) != flags.end();
  }
  std::optional<std::string> text(const std::string &n) const {
    const auto it = values.find(n);
    return it == values.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
  std::optional<double> real(const std::string &n, double lo, double hi) const {
    const auto t = text(n);
    if (!t)
      return std::nullopt;
    double v = 0;
    const auto r = std::from_chars(t->data(), t->data() + t->size(), v);
    if (r.ec != std::errc() || r.ptr != t->data() + t->size() || !(v >= lo && v <= hi))
      throw UsageError("--" + n + ": expected a number in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "], got '" + *t + "'");
    return v;
  }
  std::optional<long long> integer(const std::string &n, long long lo,
                                   long long hi) const {
    const auto t = text(n);
    if (!t)
      return std::nullopt;
    long long v = 0;
    const auto r = std::from_chars(t->data(), t->data() + t->size(), v);
    if (r.ec != std::errc() || r.ptr != t->data() + t->size() || v < lo || v > hi)
      throw UsageError("--" + n + ": expected an integer in [" + std::to_string(lo) +
                       ", " + std::to_string(hi) + "], got '" + *t + "'");
    return v;
  }
};

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Per-rank values gathered on rank 0.
std::vector<double> gather(MPI_Comm comm, double mine) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  std::vector<double> all(static_cast<std::size_t>(ranks), mine);
  MPI_Gather(&mine, 1, MPI_DOUBLE, rank == 0 ? all.data() : nullptr, 1, MPI_DOUBLE, 0,
             comm);
  return all;
}

std::string fmt(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

std::size_t memory_budget(const Args &args) {
  return static_cast<std::size_t>(args.integer("memory-budget", 1, 1LL << 60).value_or(0));
}

/// --anderson M as in tacit solve (0: plain Picard); --method anderson is
/// Anderson acceleration of depth M, 5 when --anderson is not given.
int anderson_depth(const Args &args, const std::optional<std::string> &method) {
  const auto m = args.integer("anderson", 0, 64);
  if (method && *method == "anderson") {
    if (m && *m == 0)
      throw UsageError("--method anderson with --anderson 0: give a depth of 1..64");
    return static_cast<int>(m.value_or(5));
  }
  return static_cast<int>(m.value_or(0));
}

int run_solve(const mpi::DistributedModel *, MPI_Comm comm, const Args &args,
              bool json_out, bool quiet) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (args.positionals.size() != 1)
    throw UsageError("solve needs one MODEL (a native .tacit file)");
  const std::string model_path = args.positionals[0];
  const auto input = args.text("input");
  const auto output = args.text("output");
  if (!input)
    throw UsageError("missing required option --input (-i)");
  if (!output)
    throw UsageError("missing required option --output (-o)");
  PicardOptions options;
  const auto method = args.text("method");
  if (method && *method != "auto" && *method != "picard" && *method != "anderson")
    throw UsageError(
        "--method " + *method +
        ": tacit-mpi solves by distributed Picard (auto, picard or anderson)");
  if (const auto k = args.integer("max-iterations", 1, 2000000000))
    options.max_iterations = static_cast<int>(*k);
  if (const auto t = args.real("tol", 0.0, 1.0))
    options.rel_tol = *t;
  if (const auto t = args.real("abs-tol", 0.0, 1e300))
    options.abs_tol = *t;
  options.anderson_depth = anderson_depth(args, method);
  if (const auto p = args.text("precision"); p && *p != "float64")
    throw UsageError("--precision " + *p + ": tacit-mpi computes in float64");

  double t0 = now();
  const auto model = mpi::load_distributed_model(model_path, comm, memory_budget(args));
  Batch<double> U;
  std::exception_ptr failure;
  try {
    U = read_vectors<double>(*input, model.p);
    if (U.cols() == 0)
      throw FileError(*input, 0,
                      "no input vectors (expected lines of " + std::to_string(model.p) +
                          " numbers)");
  } catch (...) {
    failure = std::current_exception();
  }
  mpi::collective_check(comm, failure);
  const double load_seconds = now() - t0;
  const auto load_all = gather(comm, load_seconds);

  mpi::RankTimings timings;
  Batch<double> Y, X_own;
  const SolveReport report =
      mpi::distributed_predict(model, U, Y, options, &timings, &X_own);

  // Outputs (and states) written by rank 0.
  failure = nullptr;
  if (rank == 0) {
    try {
      write_vectors(*output, Y);
    } catch (...) {
      failure = std::current_exception();
    }
  }
  mpi::collective_check(comm, failure);
  if (const auto states = args.text("states")) {
    // The states gathered on rank 0 in state order (small models; a large
    // model's states are better kept distributed).
    const index_t own = X_own.rows(), k = X_own.cols();
    std::vector<double> mine(static_cast<std::size_t>(own * k));
    for (index_t i = 0; i < own; ++i)
      for (index_t j = 0; j < k; ++j)
        mine[i * k + j] = X_own(i, j);
    std::vector<int> counts(static_cast<std::size_t>(model.ranks)),
        displs(static_cast<std::size_t>(model.ranks));
    for (int r = 0; r < model.ranks; ++r) {
      counts[r] = static_cast<int>(model.states.size(r) * k);
      displs[r] = static_cast<int>(model.states.begin(r) * k);
    }
    std::vector<double> all(rank == 0 ? static_cast<std::size_t>(model.n * k) : 0);
    MPI_Gatherv(mine.data(), static_cast<int>(mine.size()), MPI_DOUBLE, all.data(),
                counts.data(), displs.data(), MPI_DOUBLE, 0, comm);
    failure = nullptr;
    if (rank == 0) {
      try {
        Batch<double> X(model.n, k);
        for (index_t i = 0; i < model.n; ++i)
          for (index_t j = 0; j < k; ++j)
            X(i, j) = all[i * k + j];
        write_vectors(*states, X);
      } catch (...) {
        failure = std::current_exception();
      }
    }
    mpi::collective_check(comm, failure);
  }
  const json partition = mpi_cli::states_partition_json(model);

  index_t unconverged = 0;
  for (const auto s : report.column_status)
    unconverged += s != SolveStatus::converged ? 1 : 0;
  const double setup = *std::max_element(timings.setup.begin(), timings.setup.end());
  const double solve = *std::max_element(timings.solve.begin(), timings.solve.end());
  const double out_s = *std::max_element(timings.output.begin(), timings.output.end());
  if (rank == 0) {
    if (json_out) {
      json doc = {
          {"model", model_path},
          {"input", *input},
          {"output", *output},
          {"precision", "float64"},
          {"n", model.n},
          {"p", model.p},
          {"q", model.q},
          {"columns", U.cols()},
          {"method", to_string(report.method)},
          {"method_reason", "distributed picard" +
                                (options.anderson_depth > 0
                                     ? " with Anderson acceleration (depth " +
                                           std::to_string(options.anderson_depth) + ")"
                                     : std::string()) +
                                " over " + std::to_string(model.ranks) + " ranks"},
          {"anderson_depth", options.anderson_depth},
          {"status", to_string(report.status)},
          {"converged", report.ok()},
          {"unconverged_columns", unconverged},
          {"iterations", report.iterations},
          {"residual", report.residual},
          {"message", report.message},
          {"load_seconds", *std::max_element(load_all.begin(), load_all.end())},
          {"setup_seconds", setup},
          {"solve_seconds", solve},
          {"output_seconds", out_s},
          {"repeat", 1},
          {"best_solve_seconds", solve},
          {"isa", to_string(active_isa())},
          {"ranks", model.ranks},
          {"partition", partition},
          {"rank_seconds",
           {{"load", load_all},
            {"setup", timings.setup},
            {"solve", timings.solve},
            {"output", timings.output}}}};
      if (const auto states = args.text("states"))
        doc["states"] = *states;
      std::cout << doc.dump() << "\n";
    } else if (!quiet) {
      std::cout << "solved " << U.cols() << " input" << (U.cols() == 1 ? "" : "s")
                << " of " << *input << " -> " << *output << "\n"
                << "  model: n = " << model.n << ", p = " << model.p
                << ", q = " << model.q << ", float64, " << model.ranks << " ranks\n"
                << "  method: distributed picard"
                << (options.anderson_depth > 0
                        ? ", Anderson depth " + std::to_string(options.anderson_depth)
                        : std::string())
                << "\n"
                << "  status: " << to_string(report.status) << ", " << report.iterations
                << " iterations, residual " << fmt(report.residual) << "\n"
                << "  time (slowest rank): setup " << fmt(setup) << " s, solve "
                << fmt(solve) << " s, output " << fmt(out_s) << " s\n";
      for (int r = 0; r < model.ranks; ++r)
        std::cout << "  rank " << r << ": states [" << model.states.begin(r) << ", "
                  << model.states.end(r) << "), solve " << fmt(timings.solve[r])
                  << " s\n";
    }
  }
  if (!report.ok()) {
    if (rank == 0)
      std::cerr << "tacit-mpi: warning: the solve did not converge: status "
                << to_string(report.status) << " after " << report.iterations
                << " iterations, residual " << fmt(report.residual) << " (" << unconverged
                << " of " << U.cols() << " inputs not converged); outputs written to "
                << *output << " anyway\n  detail: " << report.message << "\n";
    return exit_numerical;
  }
  return exit_ok;
}

int run_wellposed(MPI_Comm comm, const Args &args, bool json_out, bool quiet) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (args.positionals.size() != 1)
    throw UsageError("wellposed needs one MODEL (a native .tacit file)");
  const std::string path = args.positionals[0];
  PerronOptions options;
  if (const auto w = args.real("rel-width", 0.0, 1.0))
    options.rel_width = *w;
  if (const auto k = args.integer("max-iterations", 1, 2000000000))
    options.max_iterations = static_cast<int>(*k);
  options.stop_when_decided = args.flag("decide");
  double t0 = now();
  const auto model = mpi::load_distributed_model(path, comm, memory_budget(args));
  const auto load_all = gather(comm, now() - t0);
  t0 = now();
  const auto [norm_inf, norm_1] = mpi::distributed_norms(model);
  mpi::RankTimings timings;
  const PerronBound pf = mpi::distributed_perron_bound(model, options, &timings);
  std::optional<double> slepc;
  if (args.flag("slepc"))
    slepc = mpi::slepc_spectral_radius_estimate(model);
  const double seconds = now() - t0;
  const json partition = mpi_cli::states_partition_json(model);
  if (rank == 0) {
    if (json_out) {
      json doc = {
          {"path", path},
          {"kind", "model"},
          {"n", model.n},
          {"nnz", model.A.global_nnz},
          {"norm_inf", norm_inf},
          {"norm_1", norm_1},
          {"lambda_pf", {{"lower", pf.lower}, {"upper", pf.upper}}},
          {"certified", pf.certified()},
          {"status", to_string(pf.status)},
          {"iterations", pf.iterations},
          {"shift_invert_steps", pf.shift_invert_steps},
          {"message", pf.message},
          {"load_seconds", *std::max_element(load_all.begin(), load_all.end())},
          {"seconds", seconds},
          {"ranks", model.ranks},
          {"partition", partition},
          {"rank_seconds",
           {{"load", load_all}, {"setup", timings.setup}, {"solve", timings.solve}}}};
      if (slepc)
        doc["slepc_estimate"] = std::isfinite(*slepc) ? json(*slepc) : json(nullptr);
      std::cout << doc.dump() << "\n";
    } else if (!quiet) {
      std::cout << path << ": n = " << model.n << ", nnz = " << model.A.global_nnz << ", "
                << model.ranks << " ranks\n"
                << "  ||A||_inf = " << fmt(norm_inf) << ", ||A||_1 = " << fmt(norm_1)
                << "\n"
                << "  lambda_PF(|A|) in [" << std::setprecision(17) << pf.lower << ", "
                << pf.upper << "] (" << to_string(pf.status) << ", " << pf.iterations
                << " products)\n"
                << "  "
                << (pf.certified() ? "certified well-posed (lambda_PF(|A|) < 1)"
                                   : "not certified")
                << "\n";
      if (slepc)
        std::cout << "  SLEPc estimate (not certified): " << *slepc << "\n";
    }
  }
  return exit_ok;
}

/// Comma-separated whole numbers in [0, max].
std::vector<index_t> index_list(const std::string &text, const std::string &what,
                                index_t max) {
  std::vector<index_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    long long v = 0;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), v);
    if (r.ec != std::errc() || r.ptr != item.data() + item.size() || v < 0 || v > max)
      throw UsageError(what + ": expected whole numbers in [0, " + std::to_string(max) +
                       "] separated by commas, got '" + item + "'");
    out.push_back(static_cast<index_t>(v));
  }
  if (out.empty())
    throw UsageError(what + " needs at least one value");
  return out;
}

int run_sensitivity(MPI_Comm comm, const Args &args, bool json_out, bool quiet) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (args.positionals.size() != 1)
    throw UsageError("sensitivity needs one MODEL (a native .tacit file)");
  const std::string path = args.positionals[0];
  mpi::DistributedSensitivityOptions options;
  if (const auto m = args.text("method")) {
    if (*m == "auto" || *m == "gmres")
      options.solver = mpi::SensitivitySolver::gmres;
    else if (*m == "iterative" || *m == "richardson")
      options.solver = mpi::SensitivitySolver::richardson;
    else
      throw UsageError("--method " + *m +
                       ": tacit-mpi solves with (I - |A|)^T by auto (gmres), gmres or "
                       "richardson (iterative)");
  }
  if (const auto t = args.real("tol", 0.0, 1.0))
    options.rel_tol = *t;
  if (const auto k = args.integer("max-iterations", 1, 2000000000))
    options.max_iterations = static_cast<int>(*k);
  const auto top = args.integer("top", 0, 1000000);
  const auto output = args.text("output");
  if (const auto p = args.text("precision"); p && *p != "float64")
    throw UsageError("--precision " + *p + ": tacit-mpi computes in float64");

  double t0 = now();
  const auto model = mpi::load_distributed_model(path, comm, memory_budget(args));
  const auto load_all = gather(comm, now() - t0);
  std::vector<index_t> rows;
  if (const auto r = args.text("rows")) {
    rows = index_list(*r, "--rows", std::max<index_t>(0, model.q - 1));
  } else {
    for (index_t k = 0; k < model.q; ++k)
      rows.push_back(k);
  }
  mpi::RankTimings timings;
  t0 = now();
  const auto S = mpi::distributed_sensitivity_rows(model, rows, options, &timings);
  const double seconds = now() - t0;
  const index_t p = model.p, m = static_cast<index_t>(rows.size());

  std::exception_ptr failure;
  if (rank == 0 && output) {
    try {
      Batch<double> out(p, m);
      for (index_t j = 0; j < m; ++j)
        out.set_column(j, std::span<const double>(S.values.data() + j * p,
                                                  static_cast<std::size_t>(p)));
      write_vectors(*output, out);
    } catch (...) {
      failure = std::current_exception();
    }
  }
  mpi::collective_check(comm, failure);
  const json partition = mpi_cli::states_partition_json(model);
  if (rank == 0) {
    std::vector<double> sums(static_cast<std::size_t>(m), 0.0), maxima(sums.size(), 0.0);
    for (index_t j = 0; j < m; ++j)
      for (index_t i = 0; i < p; ++i) {
        sums[j] += S.values[j * p + i];
        maxima[j] = std::max(maxima[j], S.values[j * p + i]);
      }
    std::vector<TopEntries> tops;
    if (top && *top > 0)
      for (index_t j = 0; j < m; ++j)
        tops.push_back(top_entries(
            std::span<const double>(S.values.data() + j * p, static_cast<std::size_t>(p)),
            static_cast<index_t>(*top)));
    const double setup = *std::max_element(timings.setup.begin(), timings.setup.end());
    if (json_out) {
      json doc = {{"model", path},
                  {"precision", "float64"},
                  {"n", model.n},
                  {"p", p},
                  {"q", model.q},
                  {"method", to_string(options.solver)},
                  {"method_reason", S.reason},
                  {"exact", false},
                  {"lambda_pf", {{"lower", S.lambda_lower}, {"upper", S.lambda_upper}}},
                  {"rows", rows},
                  {"row_sums", sums},
                  {"row_max", maxima},
                  {"theta", S.theta},
                  {"iterations", S.iterations},
                  {"error_bound", S.error_bound},
                  {"converged", S.converged},
                  {"load_seconds", *std::max_element(load_all.begin(), load_all.end())},
                  {"setup_seconds", setup},
                  {"seconds", seconds},
                  {"ranks", model.ranks},
                  {"partition", partition},
                  {"rank_seconds",
                   {{"load", load_all},
                    {"setup", timings.setup},
                    {"solve", timings.solve},
                    {"output", timings.output}}}};
      if (output)
        doc["output"] = *output;
      if (!tops.empty()) {
        json t = json::array();
        for (index_t j = 0; j < m; ++j)
          t.push_back({{"row", rows[j]},
                       {"indices", tops[j].indices},
                       {"values", tops[j].values}});
        doc["top"] = t;
      }
      std::cout << doc.dump() << "\n";
    } else if (!quiet) {
      std::cout << "sensitivity of " << path << ": S is " << model.q << " x " << p
                << " (n = " << model.n << " states, " << model.ranks << " ranks)\n"
                << "  method: " << to_string(options.solver) << " (" << S.reason << ")\n"
                << "  lambda_PF(|A|) in [" << fmt(S.lambda_lower) << ", "
                << fmt(S.lambda_upper) << "]\n"
                << "  iterations: " << S.iterations << ", certified relative error bound "
                << fmt(S.error_bound) << (S.converged ? "" : "  (NOT converged)") << "\n"
                << "  " << m << " row(s) in " << fmt(seconds) << " s\n";
      for (index_t j = 0; j < std::min<index_t>(m, 20); ++j) {
        std::cout << "  row " << rows[j] << ": sum " << fmt(sums[j]) << ", max "
                  << fmt(maxima[j]);
        if (!tops.empty()) {
          std::cout << "; top:";
          for (std::size_t t = 0; t < tops[j].indices.size() && t < 8; ++t)
            std::cout << " " << tops[j].indices[t] << " (" << fmt(tops[j].values[t])
                      << ")";
        }
        std::cout << "\n";
      }
      if (output)
        std::cout << "  rows written to " << *output << "\n";
    }
  }
  if (!S.converged) {
    if (rank == 0)
      std::cerr << "tacit-mpi: warning: the solves stopped with certified relative error "
                   "bound "
                << fmt(S.error_bound) << " above the tolerance\n";
    return exit_numerical;
  }
  return exit_ok;
}

} // namespace

int main(int argc, char **argv) {
  std::optional<mpi::Environment> env;
  try {
    env.emplace(argc, argv);
  } catch (const std::exception &e) {
    std::cerr << "tacit-mpi: error: " << e.what() << "\n";
    return exit_internal;
  }
  const MPI_Comm comm = MPI_COMM_WORLD;
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const std::string who =
      "tacit-mpi (rank " + std::to_string(rank) + " of " + std::to_string(ranks) + ")";
  int code = exit_ok;
  bool every_rank = true;
  std::string message;
  try {
    if (const auto by_batch = mpi_cli::run_batch_command(argc, argv, comm)) {
      code = *by_batch; // structured models: data parallel (batch_commands.cpp)
    } else if (argc < 2 || std::string(argv[1]) == "--help" ||
               std::string(argv[1]) == "-h") {
      if (rank == 0)
        std::cout << usage_text << mpi_cli::batch_usage_text();
      code = argc < 2 ? exit_usage : exit_ok;
    } else {
      const std::string command = argv[1];
      const Args args = Args::parse(
          argc, argv,
          {"input", "output", "states", "method", "max-iterations", "tol", "abs-tol",
           "anderson", "precision", "rel-width", "memory-budget", "rows", "top"},
          {{'i', "input"}, {'o', "output"}, {'q', "quiet"}});
      if (args.flag("help")) {
        if (rank == 0)
          std::cout << usage_text << mpi_cli::batch_usage_text();
      } else if (command == "solve") {
        code = run_solve(nullptr, comm, args, args.flag("json"), args.flag("quiet"));
      } else if (command == "wellposed") {
        code = run_wellposed(comm, args, args.flag("json"), args.flag("quiet"));
      } else if (command == "sensitivity") {
        code = run_sensitivity(comm, args, args.flag("json"), args.flag("quiet"));
      } else {
        throw UsageError("unknown command '" + command +
                         "' (solve, wellposed, sensitivity or certify)");
      }
    }
  } catch (const UsageError &e) {
    code = exit_usage;
    message = std::string("usage error: ") + e.what() + " (tacit-mpi --help)";
  } catch (const FileError &e) {
    code = exit_input;
    message = e.what();
    every_rank = mpi::error_on_every_rank(e);
  } catch (const Unsupported &e) {
    code = exit_input;
    message = e.what();
    every_rank = mpi::error_on_every_rank(e);
  } catch (const InvalidArgument &e) {
    code = exit_usage;
    message = e.what();
    every_rank = mpi::error_on_every_rank(e);
  } catch (const NumericalError &e) {
    code = exit_numerical;
    message = e.what();
    every_rank = mpi::error_on_every_rank(e);
  } catch (const std::exception &e) {
    code = exit_internal;
    message = e.what();
    every_rank = mpi::error_on_every_rank(e);
  }
  if (!message.empty()) {
    // One write per rank, so that the ranks' lines stay whole in mpirun's output.
    const std::string line = who + ": error: " + message + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
    if (!every_rank) {
      // Only this rank knows: the others may wait for it forever.
      MPI_Abort(comm, code);
    }
  }
  return code;
}
