// Certified output bounds and certification of data sets from Python.
#include "common.hpp"

#include <tacit/analysis/attack.hpp>
#include <tacit/analysis/bounds.hpp>
#include <tacit/config.hpp>
#include <tacit/core/model.hpp>

#include <cmath>
#include <tacit/core/error.hpp>

namespace tacit::python {
namespace {

template <class T>
std::vector<T> as_sample(const py::handle &a, index_t p, const char *what) {
  auto v = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!v || v.ndim() != 1 || v.shape(0) != p)
    throw InvalidArgument(std::string(what) + ": expected a vector of " +
                          std::to_string(p) + " inputs");
  return std::vector<T>(v.data(), v.data() + p);
}

struct Domain {
  double lo = 1, hi = 0; // no clipping
};

Domain domain_of(const py::object &domain) {
  Domain d;
  if (domain.is_none())
    return d;
  auto t = domain.cast<std::pair<double, double>>();
  if (!(t.first <= t.second))
    throw InvalidArgument("domain: expected (lo, hi) with lo <= hi");
  d.lo = t.first;
  d.hi = t.second;
  return d;
}

/// Bounds on the outputs (and margins of a label) over an l_inf ball.
struct OutputBounds {
  py::object y_lower, y_upper, margin_lower;
  std::string status;
  int label = 0;
  bool certified = false;
};

} // namespace

void bind_bounds(py::module_ &m) {
  py::class_<OutputBounds>(m, "OutputBounds", R"doc(
Certified bounds over an l_inf ball: y_lower <= y(u) <= y_upper for every u
in the ball, and lower bounds of the margins y_label - y_k (``certified``
when they are all positive). Rounding is accounted for: the bounds hold for
the exact model as well as its floating-point execution.)doc")
      .def_readonly("y_lower", &OutputBounds::y_lower)
      .def_readonly("y_upper", &OutputBounds::y_upper)
      .def_readonly("margin_lower", &OutputBounds::margin_lower)
      .def_readonly("status", &OutputBounds::status)
      .def_readonly("label", &OutputBounds::label)
      .def_readonly("certified", &OutputBounds::certified);

  m.def(
      "bounds",
      [](const PyModel &model, const py::object &u0, double eps, const py::object &label,
         const std::string &method, const py::object &domain, int threads) {
        const Domain d = domain_of(domain);
        const BoundMethod bm = parse_bound_method(method);
        return model.visit([&](const auto &mm, auto &) {
          using T = model_value_t<std::decay_t<decltype(mm)>>;
          auto u = as_sample<T>(u0, mm.inputs(), "bounds: u0");
          OutputBounds out;
          MarginBounds<T> mb;
          run_released(threads, [&] {
            BoundAnalyzer<T> analyzer(mm);
            auto nominal = analyzer.nominal(u);
            const int l = label.is_none() ? nominal.predicted() : label.cast<int>();
            if (l < 0 || l >= mm.outputs())
              throw InvalidArgument("bounds: label " + std::to_string(l) +
                                    " outside [0, " + std::to_string(mm.outputs()) + ")");
            auto box = linf_box<T>(u, T(eps), T(d.lo), T(d.hi));
            mb = analyzer.margins(nominal, box, l, bm);
          });
          out.y_lower = to_array(mb.y_lower);
          out.y_upper = to_array(mb.y_upper);
          out.margin_lower = to_array(mb.margin_lower);
          out.status = to_string(mb.status);
          out.label = mb.label;
          out.certified = mb.certified();
          return out;
        });
      },
      py::arg("model"), py::arg("u0"), py::arg("eps"), py::arg("label") = py::none(),
      py::arg("bound") = "linear", py::arg("domain") = py::none(), py::arg("threads") = 0,
      "Certified bounds on the outputs over |u - u0|_inf <= eps (clipped to domain=(lo, "
      "hi) "
      "if given) with the global, interval, linear or best bound; margins of `label` "
      "(default: "
      "the predicted class).");

  py::class_<CertifiedAccuracy>(m, "CertifiedAccuracy",
                                "Certification of a data set: per input and in total.")
      .def_readonly("count", &CertifiedAccuracy::count)
      .def_readonly("correct", &CertifiedAccuracy::correct)
      .def_readonly("eps", &CertifiedAccuracy::eps)
      .def_readonly("certified", &CertifiedAccuracy::certified,
                    "Per eps: inputs certified (and correctly classified).")
      .def_readonly("seconds", &CertifiedAccuracy::seconds)
      .def_property_readonly("predicted",
                             [](const CertifiedAccuracy &c) {
                               py::array_t<int> out(
                                   static_cast<py::ssize_t>(c.per_input.size()));
                               for (std::size_t i = 0; i < c.per_input.size(); ++i)
                                 out.mutable_data()[i] = c.per_input[i].predicted;
                               return out;
                             })
      .def_property_readonly(
          "radius",
          [](const CertifiedAccuracy &c) {
            py::array_t<double> out(static_cast<py::ssize_t>(c.per_input.size()));
            for (std::size_t i = 0; i < c.per_input.size(); ++i)
              out.mutable_data()[i] = c.per_input[i].radius;
            return out;
          },
          "Largest certified radius per input (when radius=True).")
      .def_property_readonly(
          "certified_inputs",
          [](const CertifiedAccuracy &c) {
            const auto k = static_cast<py::ssize_t>(c.per_input.size());
            const auto e = static_cast<py::ssize_t>(c.eps.size());
            py::array_t<bool> out({k, e});
            for (py::ssize_t i = 0; i < k; ++i)
              for (py::ssize_t j = 0; j < e; ++j)
                out.mutable_data()[i * e + j] = c.per_input[i].certified[j] != 0;
            return out;
          },
          "(inputs, eps) booleans: input i certified at eps j.");

  m.def(
      "certify",
      [](const PyModel &model, const py::object &U, const py::object &labels_in,
         std::vector<double> eps, const std::string &method, bool radius,
         const py::object &domain, bool refine, int slope_steps, int threads) {
        const Domain d = domain_of(domain);
        CertifyOptions options;
        options.method = parse_bound_method(method);
        if (slope_steps < 0)
          throw InvalidArgument("certify: slope_steps must be >= 0");
        options.bounds.refine = refine;
        options.bounds.slope_steps = slope_steps;
        options.domain_lo = d.lo;
        options.domain_hi = d.hi;
        auto labels = py::array_t<int, py::array::c_style | py::array::forcecast>::ensure(
            labels_in);
        if (!labels || labels.ndim() != 1)
          throw InvalidArgument("certify: labels must be a vector of class indices");
        return model.visit([&](const auto &mm, auto &) {
          using T = model_value_t<std::decay_t<decltype(mm)>>;
          Batch<T> u = batch_from_samples<T>(U, mm.inputs(), "certify: U");
          if (labels.shape(0) != u.cols())
            throw InvalidArgument("certify: " + std::to_string(labels.shape(0)) +
                                  " labels for " + std::to_string(u.cols()) + " inputs");
          std::span<const int> l(labels.data(),
                                 static_cast<std::size_t>(labels.shape(0)));
          for (std::size_t i = 0; i < l.size(); ++i)
            if (l[i] < 0 || l[i] >= mm.outputs())
              throw InvalidArgument("certify: label " + std::to_string(l[i]) +
                                    " of input " + std::to_string(i) + " outside [0, " +
                                    std::to_string(mm.outputs()) + ")");
          CertifiedAccuracy result;
          run_released(threads, [&] {
            BoundAnalyzer<T> analyzer(mm, options.bounds);
            result = certify_dataset(analyzer, u, l, eps, radius, options);
          });
          return result;
        });
      },
      py::arg("model"), py::arg("U"), py::arg("labels"), py::arg("eps"),
      py::arg("bound") = "best", py::arg("radius") = false,
      py::arg("domain") = py::none(), py::arg("refine") = true,
      py::arg("slope_steps") = 20, py::arg("threads") = 0,
      "Certifies every sample of U (k, p) with its label at each radius in eps; with "
      "radius=True also searches each input's largest certified radius. refine=False: "
      "the linear bound without refining intermediate bounds (--no-refine); "
      "slope_steps: gradient steps on the lower ReLU slopes of a feed-forward model's "
      "unproven margins (0: off).");
  py::class_<AttackSummary>(m, "AttackSummary", R"doc(
Accuracy under attack: per budget (``budgets``: k for the top-k and LP
attacks) the inputs still classified correctly and the mean number of inputs
changed.)doc")
      .def_readonly("count", &AttackSummary::count)
      .def_readonly("clean_correct", &AttackSummary::clean_correct)
      .def_readonly("budgets", &AttackSummary::budgets)
      .def_readonly("correct", &AttackSummary::correct)
      .def_readonly("mean_changed", &AttackSummary::mean_changed)
      .def_readonly("seconds", &AttackSummary::seconds)
      .def_property_readonly("accuracy",
                             [](const AttackSummary &s) {
                               std::vector<double> a;
                               for (index_t c : s.correct)
                                 a.push_back(s.count ? double(c) / double(s.count) : 0.0);
                               return a;
                             })
      .def("__repr__", [](const AttackSummary &s) {
        return "<tacit.AttackSummary " + std::to_string(s.count) + " inputs, " +
               std::to_string(s.clean_correct) + " correct before the attack>";
      });

  m.def(
      "attack",
      [](const PyModel &model, const py::object &U, const py::object &labels_in,
         std::vector<double> k, const std::string &method, double magnitude,
         bool max_mass_row, std::uint64_t seed, double sigma, int targets,
         const py::object &domain, int threads) {
        const Domain d = domain_of(domain);
        if (method != "random" && method != "gradient" && method != "lp")
          throw InvalidArgument("attack: method must be random, gradient or lp, not '" +
                                method + "'");
        if (!(magnitude >= 0) || !std::isfinite(magnitude))
          throw InvalidArgument("attack: magnitude must be finite and >= 0");
        if (!(sigma > 0) || !std::isfinite(sigma))
          throw InvalidArgument("attack: sigma must be finite and > 0");
        if (targets < 1)
          throw InvalidArgument("attack: targets must be >= 1");
        for (double v : k)
          if (!(v >= 0) || !std::isfinite(v))
            throw InvalidArgument("attack: budgets k must be finite and >= 0");
        auto labels = py::array_t<int, py::array::c_style | py::array::forcecast>::ensure(
            as_numpy(labels_in));
        if (!labels || labels.ndim() != 1)
          throw InvalidArgument("attack: labels must be a vector of class indices");
        // The attacks run in float64 (as the command's).
        const auto m64 = float64_model(model);
        Batch<double> u = batch_from_samples<double>(U, m64->inputs(), "attack: U");
        if (labels.shape(0) != u.cols())
          throw InvalidArgument("attack: " + std::to_string(labels.shape(0)) +
                                " labels for " + std::to_string(u.cols()) + " inputs");
        std::span<const int> l(labels.data(), static_cast<std::size_t>(labels.shape(0)));
        for (std::size_t i = 0; i < l.size(); ++i)
          if (l[i] < 0 || l[i] >= m64->outputs())
            throw InvalidArgument("attack: label " + std::to_string(l[i]) +
                                  " of input " + std::to_string(i) + " outside [0, " +
                                  std::to_string(m64->outputs()) + ")");
        AttackSummary result;
        if (method == "lp") {
#if TACIT_HAVE_LP
          LpAttackOptions o;
          o.k = k;
          o.sigma = sigma;
          o.targets = targets;
          o.domain_lo = d.lo;
          o.domain_hi = d.hi;
          run_released(threads, [&] {
            BoundAnalyzer<double> analyzer(*m64);
            result = lp_attack<double>(analyzer, u, l, o);
          });
#else
          throw Unsupported("attack: method 'lp' needs the LP component (COIN-OR CLP), "
                            "which this build lacks");
#endif
        } else {
          TopKOptions o;
          o.k.clear();
          for (double v : k) {
            if (v != std::floor(v))
              throw InvalidArgument("attack: the top-k attack needs whole numbers, got " +
                                    std::to_string(v));
            o.k.push_back(static_cast<index_t>(v));
          }
          o.signs = parse_sign_method(method);
          o.max_mass_row = max_mass_row;
          o.magnitude = magnitude;
          o.domain_lo = d.lo;
          o.domain_hi = d.hi;
          o.seed = seed;
          run_released(threads, [&] { result = topk_attack<double>(*m64, u, l, o); });
        }
        return result;
      },
      py::arg("model"), py::arg("U"), py::arg("labels"),
      py::arg("k") = std::vector<double>{1, 2, 5, 10}, py::arg("method") = "random",
      py::arg("magnitude") = 1.0, py::arg("max_mass_row") = false, py::arg("seed") = 1,
      py::arg("sigma") = 0.1, py::arg("targets") = 1, py::arg("domain") = py::none(),
      py::arg("threads") = 0,
      R"doc(Sparse attacks on the samples of U (k, p) with their labels, in float64
(tacit attack). method 'random' or 'gradient': for each input the k largest
entries of a row of S (its class's, or the heaviest with max_mass_row) name
the inputs changed by +-magnitude (random signs from `seed`, or the signs
that decrease the margin); 'lp': the LP attack with |u - u0| <= sigma and
l1 budget k sigma, `targets` classes tried. domain=(lo, hi) clips the
attacked inputs (None: no clipping).)doc");
}

} // namespace tacit::python
