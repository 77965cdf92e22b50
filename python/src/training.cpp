// tacit.Trainable: a model's parameters as one flat vector, and the exact
// vector-Jacobian products through the equilibrium that tacit.torch's
// ImplicitLayer differentiates with.
#include "common.hpp"

#include <mutex>

#include <tacit/core/error.hpp>
#include <tacit/io/io.hpp>
#include <tacit/solve/adjoint.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/train/gradient.hpp>
#include <tacit/train/trainable.hpp>

namespace tacit::python {
namespace {

/// What backward needs from a forward solve: the inputs and the equilibrium.
template <class T> struct TypedTape {
  Batch<T> U, X;
  SolveReport report;
  std::uint64_t version = 0; ///< of the parameters it was made with
  std::vector<T> parameters; ///< their values, restored by backward if changed since
};
struct Tape {
  std::variant<std::shared_ptr<TypedTape<float>>, std::shared_ptr<TypedTape<double>>>
      held;
};

template <class T> struct TypedTrainable {
  using value_type = T;
  std::unique_ptr<TrainableModel<T>> model;
  // Built on first use and after every change of the parameters.
  std::unique_ptr<EquilibriumSolver<T>> forward;
  std::unique_ptr<AdjointSolver<T>> adjoint;
  SolveOptions options = default_solve_options<T>();

  void invalidate() {
    forward.reset();
    adjoint.reset();
  }
  EquilibriumSolver<T> &forward_solver() {
    if (!forward)
      forward = std::make_unique<EquilibriumSolver<T>>(model->model(), options);
    return *forward;
  }
  AdjointSolver<T> &adjoint_solver() {
    if (!adjoint) {
      AdjointOptions a;
      a.picard = options.picard;
      adjoint = std::make_unique<AdjointSolver<T>>(model->model(), a);
    }
    return *adjoint;
  }
};

/// Calls on one Trainable are serialised (its solvers own their workspace).
struct PyTrainable {
  std::variant<TypedTrainable<float>, TypedTrainable<double>> held;
  std::mutex mutex;
  int threads = 0;
  std::uint64_t version = 0; ///< counts changes of the parameters

  template <class F> decltype(auto) locked(F &&f) {
    std::unique_lock lock(mutex, std::defer_lock);
    {
      py::gil_scoped_release release;
      lock.lock();
    }
    return std::visit(f, held);
  }
};

template <class T> using Flat = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
py::tuple forward(TypedTrainable<T> &t, const py::array &U_in, int threads,
                  std::uint64_t version) {
  const auto &model = t.model->model();
  auto tape = std::make_shared<TypedTape<T>>();
  tape->version = version;
  tape->parameters.resize(static_cast<std::size_t>(t.model->size()));
  t.model->read(tape->parameters);
  tape->U = batch_from_samples<T>(U_in, model.inputs(), "forward: U");
  Batch<T> Y;
  run_released(threads, [&] {
    tape->report = t.forward_solver().solve(tape->U, tape->X);
    Y = Batch<T>(model.outputs(), tape->U.cols(), tape->X.slab_width());
    model.output(tape->X, tape->U, Y);
  });
  return py::make_tuple(samples_from_batch(Y, U_in.ndim() == 1), Tape{tape},
                        tape->report);
}

template <class T>
py::tuple backward(TypedTrainable<T> &t, TypedTape<T> &tape, const py::array &G_in,
                   int threads, std::uint64_t &version) {
  const auto &model = t.model->model();
  if (tape.version != version) {
    // The parameters changed since this forward (finite differences, a
    // second forward): differentiate at the forward's parameters.
    t.model->write(tape.parameters);
    t.invalidate();
    tape.version = ++version;
  }
  if (G_in.ndim() == 2 && G_in.shape(0) != tape.U.cols())
    throw InvalidArgument("backward: the output gradient has " +
                          std::to_string(G_in.shape(0)) + " samples, the forward had " +
                          std::to_string(tape.U.cols()));
  Batch<T> G = batch_from_samples<T>(G_in, model.outputs(), "backward: output gradient");
  if (G.cols() != tape.U.cols())
    throw InvalidArgument("backward: output gradient for " + std::to_string(G.cols()) +
                          " samples, the forward had " + std::to_string(tape.U.cols()));
  Flat<T> grad(t.model->size());
  Batch<T> V, dU;
  AdjointReport report;
  std::span<T> g(grad.mutable_data(), static_cast<std::size_t>(grad.size()));
  run_released(threads, [&] {
    // The adjoint and the gradient use the batch layout of the forward.
    Batch<T> Gs(G.rows(), G.cols(), tape.X.slab_width());
    for (index_t j = 0; j < G.cols(); ++j)
      for (index_t i = 0; i < G.rows(); ++i)
        Gs(i, j) = G(i, j);
    report = t.adjoint_solver().solve_outputs(tape.X, tape.U, Gs, V);
    std::fill(g.begin(), g.end(), T(0));
    accumulate_parameter_gradient(*t.model, tape.U, tape.X, V, Gs, g);
    input_gradient(model, V, Gs, dU);
  });
  return py::make_tuple(grad, samples_from_batch(dU, G_in.ndim() == 1), report);
}

} // namespace

void bind_training(py::module_ &m) {
  py::class_<Tape>(m, "Tape",
                   "The inputs and equilibrium of a forward solve, for backward.");

  py::class_<AdjointReport>(m, "AdjointReport", "The outcome of an adjoint solve.")
      .def_property_readonly("method",
                             [](const AdjointReport &r) { return to_string(r.method); })
      .def_property_readonly("status",
                             [](const AdjointReport &r) { return to_string(r.status); })
      .def_property_readonly("ok", &AdjointReport::ok)
      .def_readonly("iterations", &AdjointReport::iterations)
      .def_readonly("residual", &AdjointReport::residual)
      .def_readonly("message", &AdjointReport::message)
      .def("__repr__", [](const AdjointReport &r) {
        return "<tacit.AdjointReport " + to_string(r.status) + " by " +
               to_string(r.method) + ", " + std::to_string(r.iterations) + " iterations>";
      });

  py::class_<PyTrainable>(m, "Trainable", R"doc(
A deep copy of a model whose parameters can change: the values of A, B, C, D
on their structure (convolution kernels, dense weights, CSR values on the
pattern) and the biases, as one flat vector (``parameters()``, ``tensors``),
with exact vector-Jacobian products through the equilibrium (``forward`` and
``backward``: the adjoint solve, then the gradients restricted to each
operator's structure). Calls on one object are serialised.)doc")
      .def(py::init([](const PyModel &model, int threads) {
             auto t = std::make_unique<PyTrainable>();
             t->threads = threads;
             model.visit([&](const auto &mm, auto &) {
               using T = model_value_t<std::decay_t<decltype(mm)>>;
               TypedTrainable<T> typed;
               typed.model = std::make_unique<TrainableModel<T>>(mm);
               t->held = std::move(typed);
             });
             return t;
           }),
           py::arg("model"), py::arg("threads") = 0)
      .def_property_readonly("size",
                             [](PyTrainable &p) {
                               return p.locked([](auto &t) { return t.model->size(); });
                             })
      .def_property_readonly(
          "tensors",
          [](PyTrainable &p) {
            return p.locked([](auto &t) {
              py::list out;
              for (const auto &info : t.model->tensors())
                out.append(py::make_tuple(info.name, py::tuple(py::cast(info.shape)),
                                          info.offset, info.size));
              return out;
            });
          },
          "The parameter tensors as (name, shape, offset, size), in flat order.")
      .def(
          "parameters",
          [](PyTrainable &p) {
            return p.locked([](auto &t) -> py::array {
              using T = typename std::decay_t<decltype(t)>::value_type;
              Flat<T> out(t.model->size());
              t.model->read(std::span<T>(out.mutable_data(), out.size()));
              return out;
            });
          },
          "A copy of the parameters (flat).")
      .def(
          "set_parameters",
          [](PyTrainable &p, const py::object &flat_in) {
            p.locked([&](auto &t) {
              using T = typename std::decay_t<decltype(t)>::value_type;
              auto flat = Flat<T>::ensure(flat_in);
              if (!flat || flat.ndim() != 1 || flat.shape(0) != t.model->size())
                throw InvalidArgument("set_parameters: expected a vector of " +
                                      std::to_string(t.model->size()) + " values");
              t.model->write(std::span<const T>(flat.data(), flat.size()));
              t.invalidate();
              ++p.version;
            });
          },
          py::arg("flat"),
          "Sets every parameter from a flat vector (the layout of tensors).")
      .def(
          "forward",
          [](PyTrainable &p, const py::object &U_obj) {
            py::array U = as_array(U_obj, "forward: U");
            return p.locked([&](auto &t) { return forward(t, U, p.threads, p.version); });
          },
          py::arg("U"),
          "Outputs (k, q) for samples U (k, p), a Tape for backward, and the solve "
          "report.")
      .def(
          "backward",
          [](PyTrainable &p, Tape &tape, const py::object &G_obj) {
            py::array G = as_array(G_obj, "backward: G");
            return p.locked([&](auto &t) -> py::tuple {
              using T = typename std::decay_t<decltype(t)>::value_type;
              auto *typed = std::get_if<std::shared_ptr<TypedTape<T>>>(&tape.held);
              if (!typed)
                throw InvalidArgument("backward: the tape is of another precision");
              return backward(t, **typed, G, p.threads, p.version);
            });
          },
          py::arg("tape"), py::arg("G"),
          "Given dL/dY (k, q) for the outputs of a forward: (dL/dparameters (flat), "
          "dL/dU "
          "(k, p), the adjoint report), at the parameters of that forward.")
      .def("save", [](PyTrainable &p, const std::filesystem::path &path) {
        p.locked([&](auto &t) {
          py::gil_scoped_release release;
          save_model_native(t.model->model(), path);
        });
      });
}

} // namespace tacit::python
