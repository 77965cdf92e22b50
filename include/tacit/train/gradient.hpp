#pragma once
/// \file gradient.hpp
/// Losses of the outputs and their exact gradients with respect to every
/// parameter of a model, by implicit differentiation through the
/// equilibrium (tacit/solve/adjoint.hpp):
///
///   forward   X = x(U) (EquilibriumSolver), Y = C X + D U + c
///   loss      L = mean over the batch; G = dL/dY
///   adjoint   V = J (A^T V + C^T G)          (AdjointSolver)
///   gradient  dL/dA = V X^T, dL/dB = V U^T, dL/dC = G X^T, dL/dD = G U^T,
///             dL/db = V 1, dL/dc = G 1, each restricted to the operator's
///             structure (Trainable::accumulate_gradient), tied biases
///             summed over their channel planes.
///
/// Every step is batched, parallel and deterministic (the same bits for 1 or
/// N threads). A forward or adjoint solve that does not converge is reported
/// in the result (status and numbers), never hidden; the gradient is then
/// not meaningful.
///
/// Thread safety: a GradientEngine keeps its workspace between calls and is
/// used by one thread at a time (compute() and refresh()); it parallelises
/// each call itself. loss_and_gradient is reentrant.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/solve/adjoint.hpp>
#include <tacit/solve/solve.hpp>
#include <tacit/train/trainable.hpp>

namespace tacit::inline v1 {

enum class LossKind {
  cross_entropy, ///< softmax cross-entropy with integer labels (mean over samples)
  squared,       ///< mean over samples and outputs of (y - t)^2 (PyTorch MSELoss)
  custom         ///< the caller's function of the outputs and its gradient
};

TACIT_EXPORT std::string to_string(LossKind k);
/// "cross-entropy", "squared". \throws InvalidArgument otherwise.
TACIT_EXPORT LossKind parse_loss(std::string_view s);

/// What a batch is compared with.
template <class T> struct TACIT_EXPORT Targets {
  std::span<const int> labels;      ///< cross_entropy: one class per column
  const Batch<T> *values = nullptr; ///< squared: q x k targets
  /// cross_entropy with knowledge distillation: a teacher's outputs (logits,
  /// q x k) for the same columns. The loss of a column is then
  ///   (1 - w) CE(y, label) + w tau^2 KL(softmax(t / tau) || softmax(y / tau))
  /// (w = teacher_weight in [0, 1], tau = temperature > 0; the tau^2 keeps
  /// the soft term's gradient, w tau (softmax(y / tau) - softmax(t / tau)),
  /// on the scale of the hard term's as tau changes). Null: plain CE.
  const Batch<T> *teacher = nullptr;
  double teacher_weight = 0;
  double temperature = 1;
  /// custom: returns the summed loss of the batch's columns and sets G to
  /// its gradient with respect to Y (both summed over the columns, not
  /// averaged: the caller divides by the batch size).
  std::function<double(const Batch<T> &Y, Batch<T> &G)> custom;
};

/// Sum over the columns of the loss and G = d(sum)/dY (q x k, Y's layout);
/// for cross-entropy also the number of columns whose largest output is
/// the label. \throws InvalidArgument on a label outside [0, q), targets of
/// the wrong shape, or a missing target for the kind.
template <class T>
TACIT_EXPORT double loss_and_gradient(LossKind kind, const Batch<T> &Y,
                                      const Targets<T> &targets, Batch<T> &G,
                                      index_t *correct = nullptr);

struct TACIT_EXPORT GradientOptions {
  LossKind loss = LossKind::cross_entropy;
  SolveOptions forward;
  AdjointOptions adjoint;
  /// Also compute dL/dU (GradientResult::input_gradient).
  bool input_gradient = false;
};

/// Outcome of one gradient evaluation.
struct TACIT_EXPORT GradientResult {
  double loss = 0;     ///< mean over the batch
  index_t correct = 0; ///< cross-entropy: columns predicted right
  index_t samples = 0;
  SolveReport forward;
  AdjointReport adjoint;
  bool ok() const noexcept { return forward.ok() && adjoint.ok(); }
};

/// Gradients of a loss for one trainable model, with solvers and buffers
/// kept between calls (no allocation once the batch shape repeats).
/// refresh() after the model's parameters changed.
template <class T> class TACIT_EXPORT GradientEngine {
public:
  GradientEngine(TrainableModel<T> &model, GradientOptions options = {});
  ~GradientEngine();
  GradientEngine(GradientEngine &&) noexcept;
  GradientEngine &operator=(GradientEngine &&) noexcept;

  /// Rebuilds the solvers from the model's current parameters.
  void refresh();

  /// The mean loss over the columns of U and its gradient: grad (the
  /// model's flat layout, size model.size()) is overwritten.
  /// \throws InvalidArgument on shapes or targets that do not fit.
  GradientResult compute(const Batch<T> &U, const Targets<T> &targets, std::span<T> grad);

  /// The loss and predictions only (forward solve): mean loss, correct.
  GradientResult evaluate(const Batch<T> &U, const Targets<T> &targets);

  /// After compute(): the states, outputs, output gradients (of the mean
  /// loss), adjoint and, with options.input_gradient, dL/dU.
  const Batch<T> &states() const noexcept;
  const Batch<T> &outputs() const noexcept;
  const Batch<T> &output_gradient() const noexcept;
  const Batch<T> &adjoint() const noexcept;
  const Batch<T> &input_gradient() const noexcept;

  const std::string &forward_method() const;
  const std::string &adjoint_method() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Adds the parameter gradients of one batch to grad: with V the adjoint
/// and G the output gradients, dA += V X^T, dB += V U^T, dC += G X^T,
/// dD += G U^T, db += V 1 (tied biases summed over their planes),
/// dc += G 1. The last step of GradientEngine::compute, exposed for callers
/// with their own loss or adjoint.
template <class T>
TACIT_EXPORT void
accumulate_parameter_gradient(const TrainableModel<T> &model, const Batch<T> &U,
                              const Batch<T> &X, const Batch<T> &V, const Batch<T> &G,
                              std::span<T> grad, Execution exec = Execution::parallel);

} // namespace tacit::inline v1
