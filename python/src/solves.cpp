// tacit.solve and tacit.Solver: the equilibrium and the outputs for batches of
// NumPy inputs, with the GIL released and the solver's report.
#include "common.hpp"

#include <mutex>

#include <tacit/core/error.hpp>
#include <tacit/solve/solve.hpp>

namespace tacit::python {
namespace {

struct SolveSettings {
  std::string method = "auto";
  int anderson = 0;
  std::optional<double> abs_tol, rel_tol;
  int max_iterations = 10000;
  int threads = 0;
  friend bool operator==(const SolveSettings &, const SolveSettings &) = default;
};

// The library's defaults for T (float32 stops at about 100 ulp), then the
// caller's settings.
template <class T> SolveOptions solve_options(const SolveSettings &s) {
  SolveOptions o = default_solve_options<T>();
  o.method = parse_solve_method(s.method);
  if (s.abs_tol)
    o.picard.abs_tol = *s.abs_tol;
  if (s.rel_tol)
    o.picard.rel_tol = *s.rel_tol;
  if (s.anderson < 0 || s.anderson > 64)
    throw InvalidArgument("anderson must be in [0, 64], got " +
                          std::to_string(s.anderson));
  if (s.max_iterations < 1)
    throw InvalidArgument("max_iterations must be >= 1, got " +
                          std::to_string(s.max_iterations));
  o.picard.anderson_depth = s.anderson;
  o.picard.max_iterations = s.max_iterations;
  return o;
}

/// What a solve returns: outputs (k x q, or q for one sample), the states on
/// request (k x n, or n), and the solver's report.
struct Solution {
  py::object outputs;
  py::object states;
  SolveReport report;
};

/// A solver prepared for one model (structure analysed once, workspace kept
/// between calls). Calls on one Solver are serialised.
struct PySolver {
  PyModel model;
  SolveSettings settings;
  std::variant<std::unique_ptr<EquilibriumSolver<float>>,
               std::unique_ptr<EquilibriumSolver<double>>>
      solver;
  std::mutex mutex;
  // States and outputs kept between calls: a batch of ResNet20 states is
  // 96 MB, and touching fresh pages on every call would cost a third of a
  // solve.
  std::variant<std::pair<Batch<float>, Batch<float>>,
               std::pair<Batch<double>, Batch<double>>>
      buffers;

  PySolver(PyModel m, SolveSettings s) : model(std::move(m)), settings(std::move(s)) {
    model.solver_cache.reset(); // no cycle: cache -> solver -> model -> cache
    model.visit([&](const auto &mm, auto &) {
      using T = model_value_t<std::decay_t<decltype(mm)>>;
      auto options = solve_options<T>(settings);
      std::unique_ptr<EquilibriumSolver<T>> made;
      run_released(settings.threads,
                   [&] { made = std::make_unique<EquilibriumSolver<T>>(mm, options); });
      solver = std::move(made);
    });
  }

  Solution solve(const py::object &U_obj, bool want_states, const py::object &out_obj) {
    py::array U = as_array(U_obj, "solve: U");
    // Wait for the lock without the GIL: the holder releases the GIL while it
    // works and must be able to take it back.
    std::unique_lock lock(mutex, std::defer_lock);
    {
      py::gil_scoped_release release;
      lock.lock();
    }
    return solve_locked(U, want_states, out_obj);
  }

  /// Frees the states kept between calls (the mutex held).
  void drop_states() {
    std::visit([](auto &b) { b.first = {}; }, buffers);
  }

  /// solve() with the mutex held by the caller.
  Solution solve_locked(const py::array &U, bool want_states, const py::object &out_obj) {
    return model.visit([&](const auto &mm, auto &) {
      using T = model_value_t<std::decay_t<decltype(mm)>>;
      auto &s = *std::get<std::unique_ptr<EquilibriumSolver<T>>>(solver);
      const bool vector = U.ndim() == 1;
      Batch<T> u = batch_from_samples<T>(U, mm.inputs(), "solve: U");
      const index_t q = mm.outputs(), k = u.cols();
      // `out`: the caller's array, written in place and returned as the outputs.
      if (!out_obj.is_none()) {
        const bool fits =
            py::isinstance<py::array_t<T, py::array::c_style>>(out_obj) && [&] {
              auto o = py::reinterpret_borrow<py::array>(out_obj);
              const bool shape_ok = vector ? o.ndim() == 1 && o.shape(0) == q
                                           : o.ndim() == 2 && o.shape(0) == k &&
                                                 o.shape(1) == q;
              return shape_ok && o.writeable();
            }();
        if (!fits)
          throw InvalidArgument(
              std::string("solve: out must be a writable C-contiguous ") + dtype_name<T>() +
              " array of shape " +
              (vector ? "(" + std::to_string(q) + ",)"
                      : "(" + std::to_string(k) + ", " + std::to_string(q) + ")"));
      }
      if (!std::holds_alternative<std::pair<Batch<T>, Batch<T>>>(buffers))
        buffers = std::pair<Batch<T>, Batch<T>>();
      auto &[x, y] = std::get<std::pair<Batch<T>, Batch<T>>>(buffers);
      SolveReport report;
      // Without states a network sweeps through a few blocks' memory.
      run_released(settings.threads, [&] {
        report = want_states ? s.predict(u, x, y) : s.predict(u, y);
      });
      Solution out;
      if (out_obj.is_none()) {
        out.outputs = samples_from_batch(y, vector);
      } else {
        auto o = py::reinterpret_borrow<py::array_t<T>>(out_obj);
        copy_samples(y, o.mutable_data());
        out.outputs = out_obj;
      }
      out.states = want_states ? py::object(samples_from_batch(x, vector)) : py::none();
      out.report = std::move(report);
      return out;
    });
  }
};

SolveSettings settings_from(const std::string &method, int anderson,
                            std::optional<double> abs_tol, std::optional<double> rel_tol,
                            int max_iterations, int threads) {
  SolveSettings s;
  s.method = method;
  s.anderson = anderson;
  s.abs_tol = abs_tol;
  s.rel_tol = rel_tol;
  s.max_iterations = max_iterations;
  s.threads = threads;
  return s;
}

py::list statuses(const SolveReport &r) {
  py::list out;
  for (auto s : r.column_status)
    out.append(to_string(s));
  return out;
}

} // namespace

void bind_solves(py::module_ &m) {
  py::class_<SolveReport>(m, "SolveReport", R"doc(
The outcome of a solve: never hidden. ``status`` is 'converged',
'max_iterations', 'diverged', 'non_finite' or 'ill_posed' (the worst over the
columns); ``residual`` is max over inputs of ||x - phi(A x + B u + b)||_inf
at the returned x.)doc")
      .def_property_readonly("method",
                             [](const SolveReport &r) { return to_string(r.method); })
      .def_property_readonly("status",
                             [](const SolveReport &r) { return to_string(r.status); })
      .def_property_readonly("ok", &SolveReport::ok)
      .def_readonly("iterations", &SolveReport::iterations)
      .def_readonly("residual", &SolveReport::residual)
      .def_readonly("column_residuals", &SolveReport::column_residuals)
      .def_property_readonly("column_status", &statuses)
      .def_readonly("column_iterations", &SolveReport::column_iterations)
      .def_readonly("step_history", &SolveReport::step_history)
      .def_readonly("message", &SolveReport::message)
      .def("__repr__", [](const SolveReport &r) {
        return "<tacit.SolveReport " + to_string(r.status) + " by " +
               to_string(r.method) + ", " + std::to_string(r.iterations) +
               " iterations, residual " + std::to_string(r.residual) + ">";
      });

  py::class_<Solution>(m, "Solution", "Outputs, states (when asked for) and the report.")
      .def_readonly("outputs", &Solution::outputs)
      .def_readonly("states", &Solution::states)
      .def_readonly("report", &Solution::report)
      .def("__repr__", [](const Solution &s) {
        return "<tacit.Solution " + to_string(s.report.status) + ">";
      });

  py::class_<PySolver>(m, "Solver", R"doc(
A solver prepared for one model: the structure of A is analysed once and the
workspace kept between calls, so repeated solves allocate nothing inside
iterations.

Solver(model, method='auto', anderson=0, abs_tol=None, rel_tol=None,
       max_iterations=10000, threads=0)

Tolerances default to the command's (abs 1e-12, rel 1e-10 in float64; 1e-7,
1e-5 in float32). threads=0 uses every core.)doc")
      .def(py::init([](const PyModel &model, const std::string &method, int anderson,
                       std::optional<double> abs_tol, std::optional<double> rel_tol,
                       int max_iterations, int threads) {
             return std::make_unique<PySolver>(
                 model, settings_from(method, anderson, abs_tol, rel_tol, max_iterations,
                                      threads));
           }),
           py::arg("model"), py::arg("method") = "auto", py::arg("anderson") = 0,
           py::arg("abs_tol") = py::none(), py::arg("rel_tol") = py::none(),
           py::arg("max_iterations") = 10000, py::arg("threads") = 0)
      .def_property_readonly("method",
                             [](PySolver &s) {
                               return std::visit(
                                   [](const auto &p) { return to_string(p->method()); },
                                   s.solver);
                             })
      .def_property_readonly(
          "method_reason",
          [](PySolver &s) {
            return std::visit([](const auto &p) { return p->method_reason(); }, s.solver);
          })
      .def("solve", &PySolver::solve, py::arg("U"), py::arg("states") = false,
           py::arg("out") = py::none(),
           "Solves for the samples in the rows of U (k, p) (or one sample (p,)); the GIL "
           "is released during the solve. `out`: an array (k, q) of the model's dtype "
           "to write the outputs into (returned as Solution.outputs).");

  m.def(
      "solve",
      [](const PyModel &model, const py::object &U, bool states, const py::object &out,
         const std::string &method, int anderson, std::optional<double> abs_tol,
         std::optional<double> rel_tol, int max_iterations, int threads) {
        // The model keeps the solver of its last call (analysed structure and
        // workspace) for the next one with the same settings; a call that
        // finds it busy (another thread) or set up otherwise makes its own.
        const SolveSettings settings =
            settings_from(method, anderson, abs_tol, rel_tol, max_iterations, threads);
        py::array u = as_array(U, "solve: U");
        // The states of a batch (96 MB for ResNet20 at 128) are not kept.
        auto run = [&](PySolver &s) {
          Solution r = s.solve_locked(u, states, out);
          if (states)
            s.drop_states();
          return r;
        };
        auto cached = std::static_pointer_cast<PySolver>(model.solver_cache);
        if (cached && cached->settings == settings) {
          std::unique_lock lock(cached->mutex, std::try_to_lock);
          if (lock.owns_lock())
            return run(*cached);
        }
        auto solver = std::make_shared<PySolver>(model, settings);
        model.solver_cache = solver;
        std::unique_lock lock(solver->mutex);
        return run(*solver);
      },
      py::arg("model"), py::arg("U"), py::arg("states") = false, py::arg("out") = py::none(),
      py::arg("method") = "auto", py::arg("anderson") = 0,
      py::arg("abs_tol") = py::none(), py::arg("rel_tol") = py::none(),
      py::arg("max_iterations") = 10000, py::arg("threads") = 0,
      R"doc(Outputs of ``model`` for the samples in the rows of U (k, p), or one
sample (p,). Returns a Solution (outputs (k, q), states (k, n) when
states=True, report); with ``out`` (a writable C-contiguous array (k, q) of
the model's dtype) the outputs are written into it and it is returned as the
outputs. The model keeps the solver of its last call for the next call with
the same settings (as tacit.Solver does). A solve that does not converge still returns its outputs: check
``report.status``.)doc");
}

} // namespace tacit::python
