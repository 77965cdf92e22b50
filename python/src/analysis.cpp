// Well-posedness, rescaling and the sensitivity operator
// S = |C| (I - |A|)^-1 |B| + |D| from Python.
#include "common.hpp"

#include <tacit/analysis/bounds.hpp>
#include <tacit/analysis/sensitivity.hpp>
#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/error.hpp>
#include <tacit/nn/generate.hpp>

#include <cmath>
#include <limits>
#include <random>

namespace tacit::python {
namespace {

/// Per-output l_inf -> l_inf Lipschitz bounds (tacit lipschitz).
struct PyLipschitz {
  py::array_t<double> upper, lower;
  py::array_t<index_t> argmax;
  index_t samples = 0;
  std::string method;
};

/// Local bounds on the boxes |u - u0|_inf <= eps (tacit lipschitz --eps).
struct PyLocalLipschitz {
  double eps = 0;
  index_t samples = 0;
  py::array_t<double> upper, lower, mean_upper, mean_lower;
  std::vector<std::string> status;
  index_t bounded = 0;
};

/// The model's activations are 1-Lipschitz (the bounds assume it).
template <class T> void check_lipschitz_activations(const Model<T> &mm, const char *what) {
  for (const auto &b : mm.blocks())
    if (b.activation.lipschitz() > 1)
      throw InvalidArgument(std::string(what) + ": block '" + b.name + "' uses " +
                            b.activation.name() + " with Lipschitz constant " +
                            std::to_string(b.activation.lipschitz()) +
                            " > 1; the bounds need 1-Lipschitz activations");
}

/// S with its row queries; also a tacit.Operator (products, .T, to_scipy).
struct PySensitivity : PyOperator {
  std::variant<std::shared_ptr<const SensitivityOperator<float>>,
               std::shared_ptr<const SensitivityOperator<double>>>
      S;
  PyModel model; // S keeps the model's operators; the handle keeps the model
};

} // namespace

void bind_analysis(py::module_ &m) {
  py::class_<PerronBound>(m, "PerronBound", R"doc(
A certified interval [lower, upper] for lambda_PF(|A|) (rounding included);
``certified`` when upper < 1 (the model is well-posed for 1-Lipschitz
activations).)doc")
      .def_readonly("lower", &PerronBound::lower)
      .def_readonly("upper", &PerronBound::upper)
      .def_property_readonly("certified", &PerronBound::certified)
      .def_property_readonly("status",
                             [](const PerronBound &b) { return to_string(b.status); })
      .def_readonly("iterations", &PerronBound::iterations)
      .def_readonly("blocks", &PerronBound::blocks)
      .def_readonly("largest_block", &PerronBound::largest_block)
      .def_readonly("cyclic_blocks", &PerronBound::cyclic_blocks)
      .def_readonly("message", &PerronBound::message)
      .def("__repr__", [](const PerronBound &b) {
        return "<tacit.PerronBound [" + std::to_string(b.lower) + ", " +
               std::to_string(b.upper) + "] " +
               (b.certified() ? "certified" : "not certified") + ">";
      });

  py::class_<WellPosednessReport>(
      m, "WellPosedness",
      "Norms, strongly connected components and the certified "
      "interval for lambda_PF(|A|).")
      .def_readonly("n", &WellPosednessReport::n)
      .def_readonly("nnz", &WellPosednessReport::nnz)
      .def_readonly("norm_inf", &WellPosednessReport::norm_inf)
      .def_readonly("norm_1", &WellPosednessReport::norm_1)
      .def_readonly("pf", &WellPosednessReport::pf)
      .def_readonly("scc_count", &WellPosednessReport::scc_count)
      .def_readonly("scc_largest", &WellPosednessReport::scc_largest)
      .def_readonly("nilpotent", &WellPosednessReport::nilpotent)
      .def_property_readonly(
          "certified", [](const WellPosednessReport &r) { return r.pf.certified(); })
      .def("__repr__", [](const WellPosednessReport &r) {
        return "<tacit.WellPosedness n=" + std::to_string(r.n) +
               " norm_inf=" + std::to_string(r.norm_inf) + " lambda_PF in [" +
               std::to_string(r.pf.lower) + ", " + std::to_string(r.pf.upper) + "]" +
               (r.pf.certified() ? " certified" : " not certified") + ">";
      });

  m.def(
      "wellposed",
      [](const py::object &what, double rel_width, int max_iterations, int threads) {
        PerronOptions o;
        o.rel_width = rel_width;
        o.max_iterations = max_iterations;
        WellPosednessReport report;
        auto analyse = [&](const auto &op) {
          run_released(threads, [&] { report = analyse_well_posedness(op, o); });
        };
        if (py::isinstance<PyModel>(what)) {
          what.cast<const PyModel &>().visit(
              [&](const auto &mm, auto &) { analyse(mm.A()); });
        } else if (py::isinstance<PyOperator>(what)) {
          what.cast<const PyOperator &>().visit([&](const auto &t) {
            if (t.mode != Mode::normal)
              throw InvalidArgument("wellposed: pass the matrix itself, not a view");
            analyse(*t.op);
          });
        } else {
          throw InvalidArgument("wellposed: expected a tacit.Model or a tacit.Operator");
        }
        return report;
      },
      py::arg("model"), py::arg("rel_width") = 1e-9, py::arg("max_iterations") = 200000,
      py::arg("threads") = 0,
      "Norms of A and a certified interval for lambda_PF(|A|) (power iteration with "
      "Collatz-Wielandt bounds per strongly connected component).");

  py::class_<RescaleReport>(m, "RescaleReport", "What a rescaling did.")
      .def_readonly("target", &RescaleReport::target)
      .def_readonly("norm_before", &RescaleReport::norm_before)
      .def_readonly("norm_after", &RescaleReport::norm_after)
      .def_readonly("pf", &RescaleReport::pf)
      .def_property_readonly("scaling",
                             [](const RescaleReport &r) { return to_array(r.scaling); });

  m.def(
      "rescale",
      [](const PyModel &model, double target, int threads) {
        RescaleReport report;
        PyModel out = model.visit([&](const auto &mm, auto &) {
          using T = model_value_t<std::decay_t<decltype(mm)>>;
          std::shared_ptr<const Model<T>> scaled;
          run_released(threads, [&] {
            scaled = std::make_shared<const Model<T>>(rescale_model(mm, target, &report));
          });
          return PyModel{scaled};
        });
        return py::make_tuple(out, report);
      },
      py::arg("model"), py::arg("target") = 0.0, py::arg("threads") = 0,
      "The equivalent model with ||D A D^-1||_inf < 1 from a certified Perron vector "
      "(ReLU, leaky ReLU, identity), and the report. target 0: midpoint between the "
      "certified bound and 1.");

  py::class_<PySensitivity, PyOperator>(m, "Sensitivity", R"doc(
S = |C| (I - |A|)^-1 |B| + |D| (q x p), never formed: products solve with
I - |A| (a sweep when A is block-triangular, KLU or a certified iteration
otherwise). ``row(k)`` and ``rows(ks)`` give rows of S, ``top(k, count)``
the largest entries of row k.)doc")
      .def_property_readonly(
          "method",
          [](const PySensitivity &s) {
            return std::visit([](const auto &p) { return to_string(p->method()); }, s.S);
          })
      .def_property_readonly("reason",
                             [](const PySensitivity &s) {
                               return std::visit(
                                   [](const auto &p) { return p->method_reason(); }, s.S);
                             })
      .def_property_readonly("exact",
                             [](const PySensitivity &s) {
                               return std::visit(
                                   [](const auto &p) { return p->info().exact; }, s.S);
                             })
      .def(
          "row",
          [](const PySensitivity &s, index_t k) {
            return std::visit(
                [&](const auto &p) -> py::array {
                  if (k < 0 || k >= p->rows())
                    throw InvalidArgument("row " + std::to_string(k) + " of S: S has " +
                                          std::to_string(p->rows()) + " rows");
                  using T = typename std::decay_t<decltype(*p)>::value_type;
                  std::vector<T> r;
                  {
                    py::gil_scoped_release release;
                    r = p->row(k);
                  }
                  return to_array(r);
                },
                s.S);
          },
          py::arg("k"))
      .def(
          "rows",
          [](const PySensitivity &s, std::vector<index_t> ks) {
            return std::visit(
                [&](const auto &p) -> py::array {
                  for (index_t k : ks)
                    if (k < 0 || k >= p->rows())
                      throw InvalidArgument("row " + std::to_string(k) + " of S: S has " +
                                            std::to_string(p->rows()) + " rows");
                  using T = typename std::decay_t<decltype(*p)>::value_type;
                  std::vector<T> dense;
                  {
                    py::gil_scoped_release release;
                    dense = p->rows_dense(ks);
                  }
                  const index_t count = ks.empty() ? p->rows() : index_t(ks.size());
                  py::array_t<T> out({count, p->cols()});
                  std::copy(dense.begin(), dense.end(), out.mutable_data());
                  return out;
                },
                s.S);
          },
          py::arg("ks") = std::vector<index_t>{},
          "The given rows of S as an array (len(ks), p); every row when ks is empty.")
      .def(
          "top",
          [](const PySensitivity &s, index_t k, index_t count) {
            return std::visit(
                [&](const auto &p) {
                  if (k < 0 || k >= p->rows())
                    throw InvalidArgument("row " + std::to_string(k) + " of S: S has " +
                                          std::to_string(p->rows()) + " rows");
                  TopEntries top;
                  {
                    py::gil_scoped_release release;
                    top = p->top_entries(k, count);
                  }
                  return py::make_tuple(to_array(top.indices), to_array(top.values));
                },
                s.S);
          },
          py::arg("k"), py::arg("count"),
          "The count largest entries of row k: (input indices, values), by decreasing "
          "value.");

  m.def(
      "sensitivity",
      [](const PyModel &model, const std::string &method, double tol, int threads) {
        if (!(tol > 0 && tol <= 1))
          throw InvalidArgument("sensitivity: tol must be in (0, 1], got " +
                                std::to_string(tol));
        PySensitivity out;
        out.model = model;
        model.visit([&](const auto &mm, auto &) {
          using T = model_value_t<std::decay_t<decltype(mm)>>;
          SensitivityOptions o;
          o.method = parse_sensitivity_method(method);
          o.rel_tol = tol;
          std::shared_ptr<const SensitivityOperator<T>> S;
          run_released(threads, [&] {
            S = std::make_shared<const SensitivityOperator<T>>(mm, o);
          });
          out.S = S;
          out.held = TypedOperator<T>{S, Mode::normal};
        });
        return out;
      },
      py::arg("model"), py::arg("method") = "auto", py::arg("tol") = 1e-14,
      py::arg("threads") = 0,
      "The sensitivity operator S of the model (see tacit.Sensitivity); tol: the "
      "certified relative error of the iterative back-end. Raises "
      "tacit.NumericalError when lambda_PF(|A|) < 1 is not certified.");
  py::class_<ProjectionReport>(m, "ProjectionReport", "What a projection of A did.")
      .def_readonly("rows_changed", &ProjectionReport::rows_changed)
      .def_readonly("norm_before", &ProjectionReport::norm_before)
      .def_readonly("norm_after", &ProjectionReport::norm_after)
      .def_readonly("distance", &ProjectionReport::distance,
                    "Frobenius distance between the old and the new A.")
      .def("__repr__", [](const ProjectionReport &r) {
        return "<tacit.ProjectionReport " + std::to_string(r.rows_changed) +
               " rows changed, ||A||_inf " + std::to_string(r.norm_before) + " -> " +
               std::to_string(r.norm_after) + ">";
      });

  m.def(
      "project",
      [](const PyModel &model, double kappa, int threads) {
        if (!(kappa >= 0) || !std::isfinite(kappa))
          throw InvalidArgument("project: kappa must be finite and >= 0, got " +
                                std::to_string(kappa));
        ProjectionReport report;
        PyModel out = model.visit([&](const auto &mm, auto &) {
          using T = model_value_t<std::decay_t<decltype(mm)>>;
          std::shared_ptr<const Model<T>> projected;
          run_released(threads, [&] {
            projected =
                std::make_shared<const Model<T>>(project_model(mm, T(kappa), &report));
          });
          return PyModel{projected};
        });
        return py::make_tuple(out, report);
      },
      py::arg("model"), py::arg("kappa"), py::arg("threads") = 0,
      "The model with A projected onto ||A||_inf <= kappa (the exact Euclidean "
      "projection, row by row, on A's sparsity pattern; A becomes CSR) and the "
      "report; kappa < 1 makes the model well-posed. (tacit project)");

  py::class_<PyLipschitz>(m, "LipschitzBounds", R"doc(
Per-output bounds lower_k <= L_k <= upper_k on the l_inf -> l_inf Lipschitz
constants: upper from the row sums of S, lower from gradients through the
equilibrium at sampled inputs (``argmax``: the sample attaining it).)doc")
      .def_readonly("upper", &PyLipschitz::upper)
      .def_readonly("lower", &PyLipschitz::lower)
      .def_readonly("argmax", &PyLipschitz::argmax)
      .def_readonly("samples", &PyLipschitz::samples)
      .def_readonly("method", &PyLipschitz::method, "How S was applied.");

  m.def(
      "lipschitz",
      [](const PyModel &model, index_t samples, std::uint64_t seed, double radius,
         int threads) {
        if (samples < 0)
          throw InvalidArgument("lipschitz: samples must be >= 0, got " +
                                std::to_string(samples));
        if (!(radius >= 0) || !std::isfinite(radius))
          throw InvalidArgument("lipschitz: radius must be finite and >= 0");
        PyLipschitz out;
        model.visit([&](const auto &mm, auto &) {
          using T = model_value_t<std::decay_t<decltype(mm)>>;
          check_lipschitz_activations(mm, "lipschitz");
          LipschitzReport report;
          run_released(threads, [&] {
            SensitivityOperator<T> S(mm);
            Batch<T> U = random_batch<T>(mm.inputs(), samples, seed);
            if (radius != 1.0)
              for (auto &v : U.storage())
                v = static_cast<T>(v * radius);
            report = lipschitz_bounds(mm, S, U);
            out.method = to_string(S.method());
          });
          out.upper = to_array(report.upper);
          out.lower = to_array(report.lower);
          out.argmax = to_array(report.argmax);
          out.samples = report.samples;
        });
        return out;
      },
      py::arg("model"), py::arg("samples") = 32, py::arg("seed") = 1,
      py::arg("radius") = 1.0, py::arg("threads") = 0,
      "Bounds on each output's l_inf -> l_inf Lipschitz constant: upper (S 1)_k, lower "
      "the largest ||grad y_k(u)||_1 over `samples` inputs uniform in [-radius, "
      "radius]^p (seeded as the command's). Raises tacit.NumericalError when "
      "lambda_PF(|A|) < 1 is not certified. (tacit lipschitz)");

  py::class_<PyLocalLipschitz>(m, "LocalLipschitzBounds", R"doc(
Per-box, per-output bounds lower[i, k] <= L_k(box i) <= upper[i, k] on the
l_inf -> l_inf Lipschitz constants over the boxes |u - U[i]|_inf <= eps:
upper from the interval Jacobian on the linear state bounds (+inf where
``status[i]`` is 'unbounded'), lower the largest ||grad y_k||_1 over the
centre and ``samples`` points of the box. ``mean_upper`` and ``mean_lower``
average over the ``bounded`` boxes.)doc")
      .def_readonly("eps", &PyLocalLipschitz::eps)
      .def_readonly("samples", &PyLocalLipschitz::samples)
      .def_readonly("upper", &PyLocalLipschitz::upper)
      .def_readonly("lower", &PyLocalLipschitz::lower)
      .def_readonly("status", &PyLocalLipschitz::status)
      .def_readonly("bounded", &PyLocalLipschitz::bounded)
      .def_readonly("mean_upper", &PyLocalLipschitz::mean_upper)
      .def_readonly("mean_lower", &PyLocalLipschitz::mean_lower)
      .def("__repr__", [](const PyLocalLipschitz &r) {
        return "<tacit.LocalLipschitzBounds eps=" + std::to_string(r.eps) + ", " +
               std::to_string(r.status.size()) + " boxes, " + std::to_string(r.bounded) +
               " bounded>";
      });

  m.def(
      "local_lipschitz",
      [](const PyModel &model, const py::object &U, double eps, index_t samples,
         std::uint64_t seed, const py::object &domain, int threads) {
        if (!(eps >= 0) || !std::isfinite(eps))
          throw InvalidArgument("local_lipschitz: eps must be finite and >= 0");
        if (samples < 0)
          throw InvalidArgument("local_lipschitz: samples must be >= 0, got " +
                                std::to_string(samples));
        double lo = 1, hi = 0; // no clipping
        if (!domain.is_none()) {
          const auto d = domain.cast<std::pair<double, double>>();
          if (!(d.first <= d.second))
            throw InvalidArgument("domain: expected (lo, hi) with lo <= hi");
          lo = d.first;
          hi = d.second;
        }
        // Bounds are computed on the model converted to double whatever its
        // precision, as the command's (the conversion of a double model is a
        // copy with the operators it would load: the same bits as its bounds).
        auto m64 = model.visit([](const auto &mm,
                                  const auto &) -> std::shared_ptr<const Model<double>> {
          check_lipschitz_activations(mm, "local_lipschitz");
          return std::make_shared<const Model<double>>(convert_model<double>(mm));
        });
        const Batch<double> centres =
            batch_from_samples<double>(U, m64->inputs(), "local_lipschitz: U");
        const index_t count = centres.cols(), q = m64->outputs();
        PyLocalLipschitz out;
        out.eps = eps;
        out.samples = samples;
        std::vector<double> upper(static_cast<std::size_t>(count * q)),
            lower(upper.size()), mean_upper(static_cast<std::size_t>(q), 0.0),
            mean_lower(mean_upper.size(), 0.0);
        std::vector<BoundStatus> status(static_cast<std::size_t>(count));
        run_released(threads, [&] {
          BoundAnalyzer<double> analyzer(*m64);
          std::mt19937_64 rng(seed);
          std::vector<double> u0(static_cast<std::size_t>(m64->inputs()));
          for (index_t c = 0; c < count; ++c) {
            centres.get_column(c, u0);
            const auto box = linf_box<double>(u0, eps, lo, hi);
            const auto nominal = analyzer.nominal(std::span<const double>(u0));
            const LocalLipschitz L =
                analyzer.local_lipschitz(analyzer.linear_state_bounds(nominal, box));
            const std::vector<double> lo_k = local_lipschitz_lower<double>(
                *m64, u0, box.lower, box.upper, samples, rng);
            status[std::size_t(c)] = L.status;
            for (index_t k = 0; k < q; ++k) {
              upper[std::size_t(c * q + k)] = L.upper[std::size_t(k)];
              lower[std::size_t(c * q + k)] = lo_k[std::size_t(k)];
            }
            if (L.status != BoundStatus::unbounded) {
              ++out.bounded;
              for (index_t k = 0; k < q; ++k) {
                mean_upper[std::size_t(k)] += L.upper[std::size_t(k)];
                mean_lower[std::size_t(k)] += lo_k[std::size_t(k)];
              }
            }
          }
          for (index_t k = 0; k < q; ++k) {
            mean_upper[std::size_t(k)] /= double(std::max<index_t>(1, out.bounded));
            mean_lower[std::size_t(k)] /= double(std::max<index_t>(1, out.bounded));
          }
        });
        out.upper = py::array_t<double>({count, q});
        out.lower = py::array_t<double>({count, q});
        std::copy(upper.begin(), upper.end(), out.upper.mutable_data());
        std::copy(lower.begin(), lower.end(), out.lower.mutable_data());
        out.mean_upper = to_array(mean_upper);
        out.mean_lower = to_array(mean_lower);
        for (const BoundStatus st : status)
          out.status.push_back(to_string(st));
        return out;
      },
      py::arg("model"), py::arg("U"), py::arg("eps"), py::arg("samples") = 32,
      py::arg("seed") = 1, py::arg("domain") = py::none(), py::arg("threads") = 0,
      "Local Lipschitz bounds on the boxes |u - U[i]|_inf <= eps around the samples of "
      "U (k, p), clipped to domain=(lo, hi) if given: upper from the interval Jacobian "
      "on the linear state bounds, lower from gradients at the centre and `samples` "
      "points of each box (one generator seeded with `seed` across the boxes), in "
      "float64. The command's numbers bit for bit (tacit lipschitz --eps; its --data "
      "is domain=(0, 1)).");
}

} // namespace tacit::python
