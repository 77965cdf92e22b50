// tacit.Trainable: a model's parameters as one flat vector, and the exact
// vector-Jacobian products through the equilibrium that tacit.torch's
// ImplicitLayer differentiates with.
#include "common.hpp"

#include <mutex>

#include <tacit/core/error.hpp>
#include <tacit/io/io.hpp>
#include <tacit/solve/adjoint.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/train/bcd.hpp>
#include <tacit/train/gradient.hpp>
#include <tacit/train/groups.hpp>
#include <tacit/train/prox.hpp>
#include <tacit/train/prune.hpp>
#include <tacit/train/trainable.hpp>
#include <tacit/train/trainer.hpp>

#include <cmath>
#include <limits>

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

/// The settings of tacit.train (the command's options).
struct TrainSettings {
  std::string loss, optimizer = "sgd", schedule, constraint = "auto", adjoint = "auto";
  double lr = 0.01, momentum = 0, weight_decay = 0, beta1 = 0.9, beta2 = 0.999;
  bool nesterov = false;
  index_t batch_size = 128;
  int epochs = 1;
  std::optional<std::uint64_t> shuffle = 1;
  double kappa = 0.95;
  std::optional<double> tol;
  std::optional<int> anderson, max_iterations;
  std::string penalty;
  double lam = 0, alpha = 0.5, reweight_eps = 1e-3;
  int reweight = 0;
  std::string groups = "states";
  std::optional<std::filesystem::path> checkpoint;
  bool resume = false;
  py::object teacher = py::none(); ///< (k, q) teacher outputs, or None
  double distill = 0, temperature = 1;
};

py::dict epoch_dict(const EpochReport &r) {
  py::dict d;
  d["epoch"] = r.epoch;
  d["lr"] = r.lr;
  d["train_loss"] = r.train_loss;
  d["train_accuracy"] = r.train_accuracy;
  d["samples"] = r.samples;
  d["validation_loss"] = r.validation_loss ? py::cast(*r.validation_loss) : py::none();
  d["validation_accuracy"] =
      r.validation_accuracy ? py::cast(*r.validation_accuracy) : py::none();
  d["seconds"] = r.seconds;
  d["lambda_pf"] = py::make_tuple(r.lambda_lower, r.lambda_upper);
  d["norm_inf"] = r.norm_inf;
  d["certified"] = r.certified;
  d["constrained"] = r.constrained;
  d["forward_iterations"] = r.forward_iterations;
  d["adjoint_iterations"] = r.adjoint_iterations;
  return d;
}

template <class T>
Dataset<T> make_dataset(const py::object &U, const py::object &labels,
                        const py::object &targets, const Model<T> &model,
                        const std::string &name) {
  Dataset<T> d;
  d.name = name;
  d.inputs = batch_from_samples<T>(U, model.inputs(), (name + ": U").c_str());
  if (!labels.is_none()) {
    auto l = py::array_t<int, py::array::c_style | py::array::forcecast>::ensure(
        as_numpy(labels));
    if (!l || l.ndim() != 1)
      throw InvalidArgument(name + ": labels must be a vector of class indices");
    d.labels.assign(l.data(), l.data() + l.shape(0));
  }
  if (!targets.is_none())
    d.targets =
        batch_from_samples<T>(targets, model.outputs(), (name + ": targets").c_str());
  return d;
}

template <class T>
py::tuple train_model(const Model<T> &model, const py::object &U,
                      const py::object &labels, const py::object &targets,
                      const py::object &validation, const TrainSettings &s, int threads) {
  if (labels.is_none() == targets.is_none())
    throw InvalidArgument("train: give labels (classification) or targets (regression)");
  TrainOptions o;
  o.gradient.loss = parse_loss(
      s.loss.empty() ? (labels.is_none() ? "squared" : "cross-entropy") : s.loss);
  o.gradient.forward = default_solve_options<T>();
  o.gradient.adjoint.picard = o.gradient.forward.picard;
  o.gradient.adjoint.method = parse_adjoint_method(s.adjoint);
  if (s.tol)
    o.gradient.forward.picard.rel_tol = o.gradient.adjoint.picard.rel_tol = *s.tol;
  if (s.anderson) {
    if (*s.anderson < 0 || *s.anderson > 64)
      throw InvalidArgument("train: anderson must be in [0, 64]");
    o.gradient.forward.picard.anderson_depth = o.gradient.adjoint.picard.anderson_depth =
        *s.anderson;
  }
  if (s.max_iterations) {
    if (*s.max_iterations < 1)
      throw InvalidArgument("train: max_iterations must be >= 1");
    o.gradient.forward.picard.max_iterations = o.gradient.adjoint.picard.max_iterations =
        *s.max_iterations;
  }
  o.optimizer.kind = parse_optimizer(s.optimizer);
  o.optimizer.lr = s.lr;
  o.optimizer.momentum = s.momentum;
  o.optimizer.nesterov = s.nesterov;
  o.optimizer.weight_decay = s.weight_decay;
  o.optimizer.beta1 = s.beta1;
  o.optimizer.beta2 = s.beta2;
  o.optimizer.validate();
  if (!s.schedule.empty())
    o.schedule = Schedule::parse(s.schedule);
  if (s.batch_size < 1)
    throw InvalidArgument("train: batch_size must be >= 1");
  if (s.epochs < 0)
    throw InvalidArgument("train: epochs must be >= 0");
  o.batch_size = s.batch_size;
  o.epochs = s.epochs;
  o.shuffle_seed = s.shuffle;
  if (!(s.kappa > 0 && s.kappa < 1))
    throw InvalidArgument("train: kappa must be in (0, 1)");
  o.kappa = s.kappa;
  o.constraint = parse_constraint(s.constraint);
  if (s.resume && !s.checkpoint)
    throw InvalidArgument("train: resume needs checkpoint (the directory)");
  if (s.checkpoint)
    o.checkpoint_dir = *s.checkpoint;

  Dataset<T> data = make_dataset<T>(U, labels, targets, model, "train");
  if (!s.teacher.is_none()) {
    if (!(s.distill > 0))
      throw InvalidArgument(
          "train: teacher needs distill > 0 (the weight of its soft targets)");
    data.teacher = batch_from_samples<T>(s.teacher, model.outputs(), "train: teacher");
  } else if (s.distill != 0) {
    throw InvalidArgument("train: distill needs teacher (the teacher's outputs, (k, q))");
  }
  o.distillation.weight = s.distill;
  o.distillation.temperature = s.temperature;
  Dataset<T> val;
  if (!validation.is_none()) {
    py::tuple t(validation);
    if (t.size() != 2)
      throw InvalidArgument("train: validation is (U, labels) or (U, targets)");
    const bool with_labels = !labels.is_none();
    const py::object second = t[1], none = py::none();
    val = make_dataset<T>(t[0], with_labels ? second : none, with_labels ? none : second,
                          model, "validation");
  }
  PenaltyOptions penalty;
  if (!s.penalty.empty()) {
    if (s.penalty == "group-lasso")
      penalty.kind = PenaltyKind::group_lasso;
    else if (s.penalty == "l1")
      penalty.kind = PenaltyKind::l1;
    else if (s.penalty == "sparse-group-lasso")
      penalty.kind = PenaltyKind::sparse_group_lasso;
    else
      throw InvalidArgument(
          "train: penalty must be group-lasso, l1 or sparse-group-lasso, "
          "not '" +
          s.penalty + "'");
    penalty.lambda = s.lam;
    penalty.alpha = s.alpha;
    penalty.reweight_every = s.reweight;
    penalty.reweight_eps = s.reweight_eps;
    penalty.validate();
  }
  TrainableModel<T> tm(model);
  std::optional<ProximalPenalty<T>> prox;
  if (penalty.lambda > 0) {
    prox.emplace(tm, make_groups(tm, parse_group_kind(s.groups)), penalty);
    o.after_step = [&](int e, std::int64_t step, double lr) { prox->step(e, step, lr); };
  }
  std::optional<Checkpoint<T>> cp;
  if (s.resume) {
    {
      py::gil_scoped_release release;
      cp = load_checkpoint<T>(o.checkpoint_dir);
    }
    if (!cp)
      throw FileError(o.checkpoint_dir.string(), 0,
                      "no complete checkpoint to resume from");
  }
  TrainReport report;
  std::shared_ptr<const Model<T>> trained;
  run_released(threads, [&] {
    report = cp ? resume(tm, *cp, data, val.size() ? &val : nullptr, o)
                : train(tm, data, val.size() ? &val : nullptr, o);
    trained = std::make_shared<const Model<T>>(tm.model());
  });
  py::dict out;
  py::list epochs;
  for (const auto &e : report.epochs)
    epochs.append(epoch_dict(e));
  out["epochs"] = epochs;
  out["forward_method"] = report.forward_method;
  out["adjoint_method"] = report.adjoint_method;
  out["constraint"] = to_string(report.constraint);
  out["constraint_reason"] = report.constraint_reason;
  out["parameters"] = tm.size();
  out["first_epoch"] = report.first_epoch;
  if (prox) {
    out["zero_groups"] = prox->zero_groups();
    out["groups"] = prox->groups().groups.size();
  }
  return py::make_tuple(PyModel{trained}, out);
}

py::dict size_dict(const ModelSize &s) {
  py::dict d;
  d["states"] = s.states;
  d["inputs"] = s.inputs;
  d["outputs"] = s.outputs;
  d["parameters"] = s.parameters;
  d["nonzeros"] = s.nonzeros;
  d["flops"] = s.flops;
  return d;
}

/// The settings of tacit.bcd (the options of tacit bcd).
struct BcdSettings {
  int iterations = 5;
  double lam = 1, mu = 1;
  std::optional<double> layer_eps, kappa;
  std::string penalty;
  double penalty_lam = 0;
  int reweight = 0;
  double reweight_eps = 1e-3;
  int state_sweeps = 1, ab_iterations = 300;
  double state_scale = 0;
};

py::dict bcd_iteration_dict(const BcdIterationReport &r) {
  py::dict d;
  d["iteration"] = r.iteration;
  d["objective"] = r.objective.total();
  d["loss"] = r.objective.loss;
  d["divergence"] = r.objective.divergence;
  d["coupling"] = r.objective.coupling;
  d["penalty"] = r.objective.penalty;
  d["train_rmse"] = r.train_rmse;
  d["test_rmse"] = r.test_rmse >= 0 ? py::cast(r.test_rmse) : py::none();
  d["x_iterations"] = r.x_iterations;
  d["ab_iterations"] = r.ab_iterations;
  d["zero_columns"] = r.zero_columns;
  d["norm_inf_A"] = r.norm_inf_A;
  d["seconds"] = r.seconds;
  return d;
}

py::tuple bcd_model(const Model<double> &model, const py::object &U_in,
                    const py::object &Y_in, const py::object &test, const BcdSettings &s,
                    int threads) {
  BcdOptions o;
  if (s.iterations < 0)
    throw InvalidArgument("bcd: iterations must be >= 0");
  o.iterations = s.iterations;
  if (!(s.lam > 0) || !std::isfinite(s.lam))
    throw InvalidArgument("bcd: lam must be finite and > 0");
  if (!(s.mu > 0) || !std::isfinite(s.mu))
    throw InvalidArgument("bcd: mu must be finite and > 0");
  o.lambda = s.lam;
  o.mu = s.mu;
  if (s.state_sweeps < 1)
    throw InvalidArgument("bcd: state_sweeps must be >= 1");
  if (s.ab_iterations < 1)
    throw InvalidArgument("bcd: ab_iterations must be >= 1");
  o.state_sweeps = s.state_sweeps;
  o.ab_max_iterations = s.ab_iterations;
  if (!(s.state_scale >= 0) || !std::isfinite(s.state_scale))
    throw InvalidArgument("bcd: state_scale = " + std::to_string(s.state_scale) +
                          " must be finite and >= 0");
  o.state_scale = s.state_scale;
  if (s.penalty == "group-lasso")
    o.penalty = BcdPenalty::group_inputs;
  else if (s.penalty == "l1")
    o.penalty = BcdPenalty::l1;
  else if (!s.penalty.empty())
    throw InvalidArgument("bcd: penalty must be group-lasso or l1, not '" + s.penalty +
                          "'");
  if (!s.penalty.empty()) {
    if (!(s.penalty_lam >= 0) || !std::isfinite(s.penalty_lam))
      throw InvalidArgument("bcd: the penalty's lambda = " +
                            std::to_string(s.penalty_lam) + " must be finite and >= 0");
    o.penalty_lambda = s.penalty_lam;
  }
  if (s.reweight < 0)
    throw InvalidArgument("bcd: reweight must be >= 0");
  o.reweight_every = s.reweight;
  if (!(s.reweight_eps > 0) || !std::isfinite(s.reweight_eps))
    throw InvalidArgument("bcd: reweight_eps must be finite and > 0");
  o.reweight_eps = s.reweight_eps;
  if (o.reweight_every > 0 && o.penalty != BcdPenalty::group_inputs)
    throw InvalidArgument("bcd: reweight needs penalty='group-lasso'");

  BcdParameters initial = bcd_parameters(model);
  const index_t n = initial.states(), p = initial.inputs(), q = initial.outputs();
  if (s.layer_eps) {
    // The seed's scaled model (11): block k of K gets lambda = eps^(K - k + 1).
    if (!(*s.layer_eps > 0) || !std::isfinite(*s.layer_eps))
      throw InvalidArgument("bcd: layer_eps must be finite and > 0");
    const auto &blocks = model.blocks();
    const auto K = static_cast<int>(blocks.size());
    o.lambdas.assign(static_cast<std::size_t>(n), 0.0);
    for (int k = 0; k < K; ++k)
      for (index_t i = 0; i < blocks[std::size_t(k)].size; ++i)
        o.lambdas[std::size_t(blocks[std::size_t(k)].offset + i)] =
            std::pow(*s.layer_eps, K - k);
  }
  const auto lam = bcd_lambdas(o, n);
  const double lmax = *std::max_element(lam.begin(), lam.end());
  if (s.kappa && !(*s.kappa > 0))
    throw InvalidArgument("bcd: kappa must be > 0 (None: sqrt(mu / lambda))");
  o.kappa = s.kappa ? *s.kappa : std::sqrt(o.mu / lmax);
  o.validate(n, p);

  const BcdMatrix U = bcd_matrix(batch_from_samples<double>(U_in, p, "bcd: U")),
                  Y = bcd_matrix(batch_from_samples<double>(Y_in, q, "bcd: Y"));
  if (U.cols != Y.cols)
    throw InvalidArgument("bcd: " + std::to_string(Y.cols) + " targets for " +
                          std::to_string(U.cols) + " inputs");
  if (U.cols == 0)
    throw InvalidArgument("bcd: no training samples");
  std::optional<BcdMatrix> TU, TY;
  if (!test.is_none()) {
    py::tuple t(test);
    if (t.size() != 2)
      throw InvalidArgument("bcd: test is (U, Y)");
    TU = bcd_matrix(batch_from_samples<double>(t[0], p, "bcd: test U"));
    TY = bcd_matrix(batch_from_samples<double>(t[1], q, "bcd: test Y"));
    if (TU->cols != TY->cols)
      throw InvalidArgument("bcd: " + std::to_string(TY->cols) + " test targets for " +
                            std::to_string(TU->cols) + " test inputs");
  }
  std::vector<BcdIterationReport> reports;
  double start_train = 0, start_test = -1, end_train = 0, end_test = -1;
  std::shared_ptr<const Model<double>> trained;
  std::vector<double> norms;
  run_released(threads, [&] {
    start_train = bcd_rmse(initial, U, Y);
    if (TU)
      start_test = bcd_rmse(initial, *TU, *TY);
    const BcdState st = bcd_train(
        initial, U, Y, o, [&](const BcdIterationReport &r) { reports.push_back(r); },
        TU ? &*TU : nullptr, TY ? &*TY : nullptr);
    trained = std::make_shared<const Model<double>>(bcd_apply(model, st.params));
    end_train = bcd_rmse(st.params, U, Y);
    if (TU)
      end_test = bcd_rmse(st.params, *TU, *TY);
    norms = bcd_column_norms(st.params.B);
  });
  py::dict out;
  py::list its;
  for (const auto &r : reports)
    its.append(bcd_iteration_dict(r));
  std::vector<index_t> read;
  for (index_t j = 0; j < p; ++j)
    if (norms[std::size_t(j)] != 0)
      read.push_back(j);
  out["iterations"] = its;
  out["start_train_rmse"] = start_train;
  out["start_test_rmse"] = TU ? py::cast(start_test) : py::none();
  out["train_rmse"] = end_train;
  out["test_rmse"] = TU ? py::cast(end_test) : py::none();
  out["lambda_max"] = lmax;
  out["mu"] = o.mu;
  out["kappa"] = o.kappa;
  out["inputs_read"] = to_array(read);
  out["column_norms"] = to_array(norms);
  return py::make_tuple(PyModel{trained}, out);
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
               {
                 py::gil_scoped_release release;
                 typed.model = std::make_unique<TrainableModel<T>>(mm);
               }
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
  m.def(
      "train",
      [](const PyModel &model, const py::object &U, const py::object &labels,
         const py::object &targets, const py::object &validation, int epochs,
         index_t batch_size, const std::string &optimizer, double lr, double momentum,
         bool nesterov, double weight_decay, double beta1, double beta2,
         const std::string &schedule, const py::object &shuffle, const std::string &loss,
         const std::string &constraint, double kappa, const std::string &adjoint,
         std::optional<double> tol, std::optional<int> anderson,
         std::optional<int> max_iterations, const std::string &penalty, double lam,
         const std::string &groups, double alpha, int reweight, double reweight_eps,
         const std::optional<std::filesystem::path> &checkpoint, bool resume, int threads,
         const py::object &teacher, double distill, double temperature) {
        TrainSettings s;
        s.teacher = teacher;
        s.distill = distill;
        s.temperature = temperature;
        s.epochs = epochs;
        s.batch_size = batch_size;
        s.optimizer = optimizer;
        s.lr = lr;
        s.momentum = momentum;
        s.nesterov = nesterov;
        s.weight_decay = weight_decay;
        s.beta1 = beta1;
        s.beta2 = beta2;
        s.schedule = schedule;
        if (shuffle.is_none())
          s.shuffle.reset();
        else {
          const auto seed = shuffle.cast<std::int64_t>();
          if (seed < 0)
            throw InvalidArgument("train: shuffle must be a seed >= 0 or None");
          s.shuffle = static_cast<std::uint64_t>(seed);
        }
        s.loss = loss;
        s.constraint = constraint;
        s.kappa = kappa;
        s.adjoint = adjoint;
        s.tol = tol;
        s.anderson = anderson;
        s.max_iterations = max_iterations;
        s.penalty = penalty;
        s.lam = lam;
        s.groups = groups;
        s.alpha = alpha;
        s.reweight = reweight;
        s.reweight_eps = reweight_eps;
        s.checkpoint = checkpoint;
        s.resume = resume;
        return model.visit([&](const auto &mm, auto &) {
          return train_model(mm, U, labels, targets, validation, s, threads);
        });
      },
      py::arg("model"), py::arg("U"), py::arg("labels") = py::none(),
      py::arg("targets") = py::none(), py::arg("validation") = py::none(),
      py::arg("epochs") = 1, py::arg("batch_size") = 128, py::arg("optimizer") = "sgd",
      py::arg("lr") = 0.01, py::arg("momentum") = 0.0, py::arg("nesterov") = false,
      py::arg("weight_decay") = 0.0, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
      py::arg("schedule") = "", py::arg("shuffle") = 1, py::arg("loss") = "",
      py::arg("constraint") = "auto", py::arg("kappa") = 0.95,
      py::arg("adjoint") = "auto", py::arg("tol") = py::none(),
      py::arg("anderson") = py::none(), py::arg("max_iterations") = py::none(),
      py::arg("penalty") = "", py::arg("lam") = 0.0, py::arg("groups") = "states",
      py::arg("alpha") = 0.5, py::arg("reweight") = 0, py::arg("reweight_eps") = 1e-3,
      py::arg("checkpoint") = py::none(), py::arg("resume") = false,
      py::arg("threads") = 0, py::arg("teacher") = py::none(), py::arg("distill") = 0.0,
      py::arg("temperature") = 1.0,
      R"doc(Trains a copy of ``model`` on the samples of U (k, p) with labels
(softmax cross-entropy) or targets (k, q) (squared error): the loop of
``tacit train`` (seeded batch order ``shuffle``, None: data order; SGD, Adam or
AdamW; schedule 'constant', 'step:S[:GAMMA]' or 'cosine[:ETA_MIN]'; models
with cycles kept well-posed by ``constraint`` with ``kappa``; an optional
proximal ``penalty`` 'group-lasso', 'l1' or 'sparse-group-lasso' of weight
``lam`` on ``groups``). ``validation`` is (U, labels) or (U, targets),
evaluated every epoch. ``checkpoint``: a directory receiving epoch-NNNN
(model and optimizer state) after each epoch; ``resume=True`` continues from
its last complete checkpoint up to ``epochs`` (the same bits as a run that
was never interrupted; OSError when there is none). Knowledge distillation:
``teacher`` (k, q), a teacher's outputs (logits) for the samples of U (from a
tacit model or any other, e.g. a PyTorch network), read with the labels as
(1 - distill) CE + distill T^2 KL(softmax(teacher / T) || softmax(y / T)),
T = ``temperature``. Returns (trained model,
report dict with the epochs run, from 'first_epoch').
The same arguments give the command's model bit for bit. Raises
tacit.NumericalError when a solve stops converging or a value is not finite.)doc");

  m.def(
      "prune",
      [](const PyModel &model, double threshold, bool keep_inputs) {
        if (!(threshold >= 0) || !std::isfinite(threshold))
          throw InvalidArgument("prune: threshold must be finite and >= 0");
        PruneOptions o;
        o.threshold = threshold;
        o.keep_inputs = keep_inputs;
        return model.visit([&](const auto &mm, auto &) {
          using T = model_value_t<std::decay_t<decltype(mm)>>;
          std::optional<PruneResult<T>> r;
          {
            py::gil_scoped_release release;
            r.emplace(prune_model(mm, o));
          }
          py::dict info;
          info["before"] = size_dict(r->before);
          info["after"] = size_dict(r->after);
          info["kept_states"] = to_array(r->kept_states);
          info["kept_inputs"] = to_array(r->kept_inputs);
          info["masked"] =
              PyModel{std::make_shared<const Model<T>>(std::move(r->masked))};
          return py::make_tuple(
              PyModel{std::make_shared<const Model<T>>(std::move(r->pruned))}, info);
        });
      },
      py::arg("model"), py::arg("threshold") = 0.0, py::arg("keep_inputs") = false,
      R"doc(Removes the states that are identically zero or unread and the inputs
nothing reads (entries with |value| <= threshold count as absent), as
``tacit prune``: returns (pruned model, info) with info's 'before' and
'after' sizes, 'kept_states', 'kept_inputs' (original indices) and 'masked'
(the model with the removed entries taken out, whose outputs the pruned
model's equal bit for bit). ValueError when every state would go.)doc");

  m.def(
      "bcd",
      [](const PyModel &model, const py::object &U, const py::object &Y,
         const py::object &test, int iterations, double lam,
         std::optional<double> layer_eps, double mu, std::optional<double> kappa,
         const std::string &penalty, double penalty_lam, int reweight,
         double reweight_eps, int state_sweeps, int ab_iterations, double state_scale,
         int threads) {
        BcdSettings s;
        s.iterations = iterations;
        s.lam = lam;
        s.layer_eps = layer_eps;
        s.mu = mu;
        s.kappa = kappa;
        s.penalty = penalty;
        s.penalty_lam = penalty_lam;
        s.reweight = reweight;
        s.reweight_eps = reweight_eps;
        s.state_sweeps = state_sweeps;
        s.ab_iterations = ab_iterations;
        s.state_scale = state_scale;
        // BCD runs in float64 (as the command's).
        const auto m64 = float64_model(model);
        return bcd_model(*m64, U, Y, test, s, threads);
      },
      py::arg("model"), py::arg("U"), py::arg("Y"), py::arg("test") = py::none(),
      py::arg("iterations") = 5, py::arg("lam") = 1.0, py::arg("layer_eps") = py::none(),
      py::arg("mu") = 1.0, py::arg("kappa") = py::none(), py::arg("penalty") = "",
      py::arg("penalty_lam") = 0.0, py::arg("reweight") = 0,
      py::arg("reweight_eps") = 1e-3, py::arg("state_sweeps") = 1,
      py::arg("ab_iterations") = 300, py::arg("state_scale") = 0.0,
      py::arg("threads") = 0,
      R"doc(Fits ``model`` (ReLU or tanh states, entries of single matrices) to
samples U (k, p) and targets Y (k, q) by block-coordinate descent on the
Fenchel divergence relaxation, as ``tacit bcd``: ``lam`` the divergence
weight of every state (or ``layer_eps``: eps^(K - k + 1) for block k of K),
``mu`` the coupling, ``kappa`` the bound on ||A||_inf (None: sqrt(mu /
lambda_max)), an optional ``penalty`` 'group-lasso' (columns of B) or 'l1'
of weight ``penalty_lam``, reweighted every ``reweight`` iterations; ``state_scale`` > 0 ends every
iteration by rescaling the ReLU states to that RMS (``--state-scale``).
``test`` is (U, Y), reported every iteration. In float64. Returns (trained
model, report dict: 'iterations', RMSEs, 'inputs_read', 'column_norms');
the command's model bit for bit. Raises tacit.NumericalError when a step
fails (e.g. kappa above sqrt(mu / lambda)).)doc");
}

} // namespace tacit::python
