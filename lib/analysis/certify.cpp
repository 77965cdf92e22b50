// Certification: certified l_inf radii per input (geometric search then
// bisection) and certified accuracy over a dataset.

#include <tacit/analysis/bounds.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>

#include <tbb/parallel_for.h>

#include <tacit/core/error.hpp>
#include <tacit/solve/solve.hpp>

#include "analysis/detail/radius_search.hpp"

namespace tacit::inline v1 {

namespace {
// v rounded to T toward +infinity (up) or -infinity.
template <class T> T round_to(double v, bool up) {
  T t = static_cast<T>(v);
  if (up ? double(t) < v : double(t) > v)
    t = std::nextafter(t, up ? std::numeric_limits<T>::infinity()
                             : -std::numeric_limits<T>::infinity());
  return t;
}

// Whether certification uses the interval bound around the nominal point's
// precise states (BoundAnalyzer::interval_margins_around).
template <class T>
bool interval_around(const BoundAnalyzer<T> &analyzer, const NominalPoint<T> &nominal,
                     const CertifyOptions &options) {
  return options.method == BoundMethod::interval && nominal.precise &&
         analyzer.options().linear_region;
}
} // namespace

template <class T>
bool certify_at(const BoundAnalyzer<T> &analyzer, const NominalPoint<T> &nominal,
                int label, double eps, const CertifyOptions &options) {
  if (nominal.predicted() != label)
    return false;
  // The interval bound around a precise nominal point: the ball itself, not
  // a box rounded to T. Both forms are sound and equal in exact arithmetic;
  // the box form is still tried when the offsets do not certify, so the
  // result is never below the box bound's.
  if (interval_around(analyzer, nominal, options) &&
      analyzer
          .interval_margins_around(nominal, *nominal.precise, eps, label,
                                   options.domain_lo, options.domain_hi)
          .certified())
    return true;
  // Within the linear region the margins are those of the exact affine map
  // on the ball itself: a float box (rounded out by one unit in the last
  // place of u0, 6e-8 at 0.5) would leave the region for any eps below it.
  const bool in_region =
      nominal.region && analyzer.options().linear_region &&
      (options.method == BoundMethod::linear || options.method == BoundMethod::best) &&
      eps <= nominal.region->radius;
  if (in_region) {
    bool all = true;
    for (int k = 0; k < nominal.region->outputs && all; ++k)
      all = k == label || nominal.region->margin_lower(label, k, eps) > 0;
    if (all)
      return true;
  }
  // The radius and the domain rounded outward: the box in T contains every
  // real input the certificate speaks of.
  const InputBox<T> box = linf_box<T>(nominal.u, round_to<T>(eps, true),
                                      round_to<T>(options.domain_lo, false),
                                      round_to<T>(options.domain_hi, true));
  return analyzer.margins(nominal, box, label, options.method).certified();
}

template <class T>
double certified_radius(const BoundAnalyzer<T> &analyzer, const NominalPoint<T> &nominal,
                        int label, const CertifyOptions &options) {
  if (nominal.predicted() != label)
    return 0.0;
  const double cap = options.max_radius;
  if (!(cap > 0))
    throw InvalidArgument("certified_radius: max_radius must be > 0");
  const auto ok = [&](double e) {
    return certify_at(analyzer, nominal, label, e, options);
  };
  // From the linear region's radius: certified in closed form; beyond it
  // the other bounds take over.
  const bool use_region =
      nominal.region && analyzer.options().linear_region &&
      (options.method == BoundMethod::linear || options.method == BoundMethod::best);
  const double from_region = use_region ? nominal.region->certified_radius(label) : 0.0;
  // The interval bound around a precise nominal point reaches radii far
  // below the box bound's (down to the margins over |A|'s growth, 1e-18 on
  // ResNet20), and one bound costs about two forward passes: search down to
  // 2^-100 of the cap instead of 2^-30.
  return detail::radius_search(cap, options.bisection_steps, from_region, ok,
                               interval_around(analyzer, nominal, options) ? 100 : 30);
}

template <class T>
CertifiedAccuracy certify_dataset(const BoundAnalyzer<T> &analyzer, const Batch<T> &U,
                                  std::span<const int> labels,
                                  std::span<const double> eps, bool radius,
                                  const CertifyOptions &options,
                                  const std::function<void(index_t, index_t)> &progress) {
  const auto start = std::chrono::steady_clock::now();
  const Model<T> &model = analyzer.model();
  if (U.rows() != model.inputs())
    throw InvalidArgument("certify: inputs have " + std::to_string(U.rows()) +
                          " rows, the model has p = " + std::to_string(model.inputs()));
  if (static_cast<index_t>(labels.size()) != U.cols())
    throw InvalidArgument("certify: " + std::to_string(labels.size()) + " labels for " +
                          std::to_string(U.cols()) + " inputs");
  for (std::size_t j = 0; j < labels.size(); ++j)
    if (labels[j] < 0 || labels[j] >= model.outputs())
      throw InvalidArgument("certify: label " + std::to_string(labels[j]) + " of input " +
                            std::to_string(j + 1) + " is not in [0, " +
                            std::to_string(model.outputs()) + ")");
  for (const double e : eps)
    if (!(e >= 0) || !std::isfinite(e))
      throw InvalidArgument("certify: epsilon " + std::to_string(e) + " is not >= 0");

  const index_t count = U.cols();
  CertifiedAccuracy out;
  out.count = count;
  out.eps.assign(eps.begin(), eps.end());
  out.certified.assign(eps.size(), 0);
  out.per_input.resize(count);
  const Execution exec = analyzer.options().exec;
  Batch<T> X;
  if (count > 0) {
    SolveOptions solve_options;
    solve_options.exec = exec;
    EquilibriumSolver<T> solver(model, solve_options);
    solver.solve(U, X);
  }
  const bool with_region =
      analyzer.options().linear_region &&
      (options.method == BoundMethod::linear || options.method == BoundMethod::best) &&
      analyzer.linear_region_supported();
  const bool with_precise = analyzer.options().linear_region &&
                            options.method == BoundMethod::interval &&
                            analyzer.linear_region_supported();
  std::atomic<index_t> done{0};
  std::mutex mutex;
  exec.run([&] {
    tbb::parallel_for(index_t(0), count, [&](index_t j) {
      std::vector<T> u(model.inputs()), x(model.states());
      U.get_column(j, u);
      X.get_column(j, x);
      NominalPoint<T> nom =
          analyzer.nominal(std::span<const T>(u), std::span<const T>(x));
      Certificate &c = out.per_input[j];
      c.label = labels[j];
      c.predicted = nom.predicted();
      c.certified.assign(eps.size(), 0);
      if (c.predicted == c.label && with_region) {
        nom.region = std::make_shared<const LinearRegion>(analyzer.linear_region(nom));
        c.region_radius = nom.region->radius;
      }
      if (c.predicted == c.label && with_precise)
        nom.precise =
            std::make_shared<const PreciseNominal>(analyzer.precise_nominal(nom));
      if (c.predicted == c.label) {
        for (std::size_t e = 0; e < eps.size(); ++e)
          c.certified[e] = certify_at(analyzer, nom, c.label, eps[e], options) ? 1 : 0;
        if (radius)
          c.radius = certified_radius(analyzer, nom, c.label, options);
      }
      const index_t d = ++done;
      if (progress) {
        std::lock_guard<std::mutex> lock(mutex);
        progress(d, count);
      }
    });
  });
  for (const auto &c : out.per_input) {
    out.correct += c.predicted == c.label ? 1 : 0;
    for (std::size_t e = 0; e < eps.size(); ++e)
      out.certified[e] += c.certified[e] ? 1 : 0;
  }
  out.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template bool certify_at<T>(const BoundAnalyzer<T> &, const NominalPoint<T> &, int,    \
                              double, const CertifyOptions &);                           \
  template double certified_radius<T>(const BoundAnalyzer<T> &, const NominalPoint<T> &, \
                                      int, const CertifyOptions &);                      \
  template CertifiedAccuracy certify_dataset<T>(                                         \
      const BoundAnalyzer<T> &, const Batch<T> &, std::span<const int>,                  \
      std::span<const double>, bool, const CertifyOptions &,                             \
      const std::function<void(index_t, index_t)> &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
