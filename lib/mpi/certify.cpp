// Certification on a CSR model distributed by states: the single-process
// certify_at / certified_radius / certify_dataset (lib/analysis/certify.cpp)
// over DistributedBoundAnalyzer, one input at a time, every step collective.

#include <tacit/mpi/certify.hpp>

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "analysis/detail/radius_search.hpp"
#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::vector<double> gather(MPI_Comm comm, double mine, int ranks) {
  std::vector<double> all(static_cast<std::size_t>(ranks), mine);
  MPI_Gather(&mine, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, 0, comm);
  return all;
}
} // namespace

bool certify_at(const DistributedBoundAnalyzer &analyzer, const NominalPoint<double> &nominal,
                int label, double eps, const CertifyOptions &options) {
  if (nominal.predicted() != label) // y is the same on every rank
    return false;
  // In float64 the radius and the domain need no rounding outward (the
  // single process rounds them to its T); the box itself is rounded outward.
  const InputBox<double> box =
      linf_box<double>(nominal.u, eps, options.domain_lo, options.domain_hi);
  return analyzer.margins(nominal, box, label, options.method).certified();
}

double certified_radius(const DistributedBoundAnalyzer &analyzer,
                        const NominalPoint<double> &nominal, int label,
                        const CertifyOptions &options) {
  if (nominal.predicted() != label)
    return 0.0;
  const double cap = options.max_radius;
  if (!(cap > 0))
    throw InvalidArgument("certified_radius: max_radius must be > 0");
  return tacit::detail::radius_search(cap, options.bisection_steps, 0.0, [&](double e) {
    return certify_at(analyzer, nominal, label, e, options);
  });
}

CertifiedAccuracy certify_states(const DistributedBoundAnalyzer &analyzer,
                                 const Batch<double> &U, std::span<const int> labels,
                                 std::span<const double> eps, bool radius,
                                 const CertifyOptions &options, const PicardOptions &solve,
                                 RankTimings *timings,
                                 const std::function<void(index_t, index_t)> &progress) {
  const double start = now();
  const DistributedModel &model = analyzer.model();
  detail::collective(model.comm, [&] {
    if (U.rows() != model.p)
      throw InvalidArgument("certify: inputs have " + std::to_string(U.rows()) +
                            " rows, the model has p = " + std::to_string(model.p));
    if (static_cast<index_t>(labels.size()) != U.cols())
      throw InvalidArgument("certify: " + std::to_string(labels.size()) + " labels for " +
                            std::to_string(U.cols()) + " inputs");
    for (std::size_t j = 0; j < labels.size(); ++j)
      if (labels[j] < 0 || labels[j] >= model.q)
        throw InvalidArgument("certify: label " + std::to_string(labels[j]) + " of input " +
                              std::to_string(j + 1) + " is not in [0, " +
                              std::to_string(model.q) + ")");
    for (const double e : eps)
      if (!(e >= 0) || !std::isfinite(e))
        throw InvalidArgument("certify: epsilon " + std::to_string(e) + " is not >= 0");
    if (options.method == BoundMethod::linear)
      throw Unsupported("certify: the linear bound is not available on a model "
                        "distributed by states (global, interval or best)");
  });
  const index_t count = U.cols();
  CertifiedAccuracy out;
  out.count = count;
  out.eps.assign(eps.begin(), eps.end());
  out.certified.assign(eps.size(), 0);
  out.per_input.resize(count);
  RankTimings solve_times;
  Batch<double> X_own;
  if (count > 0) {
    Batch<double> Y;
    distributed_predict(model, U, Y, solve, &solve_times, &X_own);
  }
  const double t0 = now();
  const index_t own = model.own_end() - model.own_begin();
  std::vector<double> u(static_cast<std::size_t>(model.p)), x(static_cast<std::size_t>(own));
  for (index_t j = 0; j < count; ++j) {
    U.get_column(j, u);
    X_own.get_column(j, x);
    const NominalPoint<double> nom = analyzer.nominal(u, x);
    Certificate &c = out.per_input[j];
    c.label = labels[j];
    c.predicted = nom.predicted();
    c.certified.assign(eps.size(), 0);
    if (c.predicted == c.label) {
      for (std::size_t e = 0; e < eps.size(); ++e)
        c.certified[e] = certify_at(analyzer, nom, c.label, eps[e], options) ? 1 : 0;
      if (radius)
        c.radius = certified_radius(analyzer, nom, c.label, options);
    }
    if (progress)
      progress(j + 1, count);
  }
  const double certify_seconds = now() - t0;
  for (const auto &c : out.per_input) {
    out.correct += c.predicted == c.label ? 1 : 0;
    for (std::size_t e = 0; e < eps.size(); ++e)
      out.certified[e] += c.certified[e] ? 1 : 0;
  }
  if (timings) {
    // distributed_predict gathers its phases on rank 0; the certification's
    // own seconds are gathered here.
    timings->setup = count > 0 ? solve_times.setup : std::vector<double>(model.ranks, 0.0);
    timings->solve = count > 0 ? solve_times.solve : std::vector<double>(model.ranks, 0.0);
    timings->output = gather(model.comm, certify_seconds, model.ranks);
  }
  // The slowest rank's wall time, the same on every rank.
  double seconds = now() - start;
  MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, model.comm);
  out.seconds = seconds;
  return out;
}

} // namespace tacit::inline v1::mpi
