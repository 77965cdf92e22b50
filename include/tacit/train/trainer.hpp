#pragma once
/// \file trainer.hpp
/// The training loop: mini-batches in a seeded order, exact gradients
/// (gradient.hpp), an optimiser step (optimizer.hpp), well-posedness kept
/// for models with cycles, validation and checkpoints each epoch.
///
/// Well-posedness. A model whose A is strictly block lower triangular (a
/// network) stays so: training changes values, never the structure. For
/// any other A the constraint is applied after every step:
/// - inf_norm: the exact Euclidean projection of A's values onto
///   ||A||_inf <= kappa (row-wise l1-ball projections, Condat's algorithm),
///   which keeps lambda_PF(|A|) <= kappa < 1;
/// - perron: when the certified upper bound of lambda_PF(|A|) exceeds kappa,
///   A is scaled by kappa / upper (checked every step, certified with the
///   Perron vectors of A's cyclic blocks);
/// - none: nothing (a forward solve that stops converging stops training).
/// Every epoch certifies lambda_PF(|A|) < 1 (reported with the interval).
///
/// Failures are errors, never a NaN model: a forward or adjoint solve that
/// does not converge, a non-finite loss, gradient or parameter, or an
/// uncertified epoch throws TrainingError naming the epoch and step and
/// giving the numbers; the model keeps the parameters of the last good
/// step.
///
/// Determinism: the same options, data and seed give the same bits for any
/// thread count, and resuming from a checkpoint gives the same bits as not
/// stopping (the batch order of epoch e depends only on the seed and e).
///
/// Thread safety: train() changes the model's parameters; no other call may
/// use that model (or operators it shares) while it runs. Distinct models
/// train independently.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <tacit/core/error.hpp>
#include <tacit/core/export.hpp>
#include <tacit/train/gradient.hpp>
#include <tacit/train/optimizer.hpp>
#include <tacit/train/trainable.hpp>

namespace tacit::inline v1 {

/// Training stopped on a numerical failure (solve not converged, non-finite
/// values, well-posedness lost). The message names the epoch and step.
class TACIT_EXPORT TrainingError : public Error {
public:
  TrainingError(int epoch, std::int64_t step, const std::string &what);
  int epoch() const noexcept { return epoch_; }        ///< 1-based
  std::int64_t step() const noexcept { return step_; } ///< 1-based within the epoch

private:
  int epoch_;
  std::int64_t step_;
};

/// Inputs with labels (classification) or target values (regression).
template <class T> struct TACIT_EXPORT Dataset {
  Batch<T> inputs;         ///< p x m
  std::vector<int> labels; ///< m labels, or empty
  Batch<T> targets;        ///< q x m targets, or empty
  std::string name;        ///< for messages
  /// q x m outputs (logits) of a teacher model for the same samples, read
  /// by knowledge distillation (TrainOptions::distillation), or empty.
  Batch<T> teacher;
  index_t size() const noexcept { return inputs.cols(); }
};

/// A copy of `data` with each sample's inputs and targets contiguous (slab
/// width 1). train() gathers its shuffled mini-batches from that layout: it
/// makes such a copy of a dataset given in wider slabs at every call, which
/// this function lets a caller make once.
template <class T> TACIT_EXPORT Dataset<T> sample_major(const Dataset<T> &data);

enum class Constraint { automatic, none, inf_norm, perron };
TACIT_EXPORT std::string to_string(Constraint c);
/// "auto", "none", "inf-norm", "perron". \throws InvalidArgument otherwise.
TACIT_EXPORT Constraint parse_constraint(std::string_view s);

/// Progress of one step (for a progress line).
struct TACIT_EXPORT StepProgress {
  int epoch = 0, epochs = 0;        ///< 1-based
  std::int64_t step = 0, steps = 0; ///< 1-based within the epoch
  double loss = 0;                  ///< running mean over the epoch so far
  double accuracy = 0;              ///< running fraction correct (labels)
  double images_per_second = 0;
};

/// What one epoch did.
struct TACIT_EXPORT EpochReport {
  int epoch = 0; ///< 1-based
  double lr = 0;
  double train_loss = 0, train_accuracy = 0; ///< running over the epoch's steps
  index_t samples = 0;
  std::optional<double> validation_loss, validation_accuracy;
  double seconds = 0, images_per_second = 0;
  /// Well-posedness: the certified interval of lambda_PF(|A|) and ||A||_inf
  /// at the end of the epoch (0 for a strictly block triangular A).
  double lambda_lower = 0, lambda_upper = 0, norm_inf = 0;
  bool certified = true;
  /// Rows changed by the projections, or steps rescaled, over the epoch.
  std::int64_t constrained = 0;
  int forward_iterations = 0, adjoint_iterations = 0; ///< largest in the epoch
};

/// Knowledge distillation: with the cross-entropy loss and a dataset that
/// holds a teacher's outputs (Dataset::teacher), each sample's loss is
/// (1 - weight) CE + weight tau^2 KL(softmax(teacher / tau) || softmax(y /
/// tau)) (Targets in gradient.hpp). The validation loss stays the plain
/// cross-entropy. weight 0: off (the teacher is not read).
struct TACIT_EXPORT Distillation {
  double weight = 0;      ///< in [0, 1]
  double temperature = 1; ///< tau > 0
};

struct TACIT_EXPORT TrainOptions {
  GradientOptions gradient; ///< loss, forward and adjoint solver options
  OptimizerOptions optimizer;
  Schedule schedule;
  index_t batch_size = 128;
  int epochs = 1;
  /// Seed of the batch order (a permutation per epoch); none: data order.
  std::optional<std::uint64_t> shuffle_seed = 1;
  /// automatic: none for a block triangular A, inf_norm otherwise.
  Constraint constraint = Constraint::automatic;
  double kappa = 0.95;
  /// Slab width of the batches (columns per slab).
  index_t slab_width = default_slab_width;
  /// Batch size of the validation pass.
  index_t validation_batch = 1000;
  /// Inputs standardised as (u - input_mean) / input_std before they reach
  /// the model, training and validation data alike (torchvision's
  /// Normalize): the model is trained on that scale, and
  /// fold_input_standardization() turns it into the model of the raw inputs.
  /// The defaults (0, 1) leave the inputs as they are.
  double input_mean = 0, input_std = 1;
  /// A checkpoint after each epoch in this directory (empty: none): the
  /// subdirectory epoch-NNNN holding model.tacit (native format) and
  /// state.bin (optimizer state, epoch), written into a temporary directory
  /// and renamed, so a checkpoint is complete or absent. With standardised
  /// inputs, model.tacit is the model being trained (on the standardised
  /// scale) and the file standardization holds "mean std".
  std::filesystem::path checkpoint_dir;
  std::function<void(const StepProgress &)> on_step;
  std::function<void(const EpochReport &)> on_epoch;
  /// Called after each optimiser step with (epoch, step, learning rate),
  /// 1-based, before the well-posedness constraint is applied: a proximal
  /// step (ProximalPenalty::step, prox.hpp) changes the parameters here and
  /// commits them. Empty: nothing.
  std::function<void(int, std::int64_t, double)> after_step;
  /// Knowledge distillation from Dataset::teacher (weight 0: off).
  Distillation distillation;
};

/// The outcome of train().
struct TACIT_EXPORT TrainReport {
  std::vector<EpochReport> epochs;
  std::string forward_method, adjoint_method;
  Constraint constraint = Constraint::none;
  std::string constraint_reason;
  int first_epoch = 1; ///< 1 unless resumed
};

/// Trains `model` in place for options.epochs epochs (from start_epoch,
/// 0-based, with `optimizer` state when resuming).
/// \throws TrainingError on a numerical failure (see the file comment);
/// InvalidArgument on data that does not fit the model (naming the data
/// set, the column and the problem: wrong sizes, labels out of range, NaN).
template <class T>
TACIT_EXPORT TrainReport train(TrainableModel<T> &model, const Dataset<T> &data,
                               const std::type_identity_t<Dataset<T>> *validation,
                               const TrainOptions &options);

/// A checkpoint read back: the model, the optimizer state, the epochs done.
template <class T> struct TACIT_EXPORT Checkpoint {
  Model<T> model;
  std::string optimizer_state;
  int epochs_done = 0;
  double input_mean = 0, input_std = 1; ///< the standardisation trained with
};

/// The model of raw inputs u equivalent to `model` trained on
/// (u - mean) / std: B and D scaled by 1/std, the state bias b shifted by
/// -(mean/std) B 1 and the output bias c by -(mean/std) D 1. Exact in real
/// arithmetic for any linear B (a padded convolution's border included,
/// whence a bias per state, not per channel). 	hrows InvalidArgument when
/// std is not positive and finite, mean is not finite, or B (or D, when
/// present) has no trainable parameters to scale.
template <class T>
TACIT_EXPORT Model<T> fold_input_standardization(const Model<T> &model, double mean,
                                                 double std);

/// The last complete checkpoint in `dir` (highest epoch-NNNN), if any.
/// \throws FileError on an unreadable or inconsistent checkpoint.
template <class T>
TACIT_EXPORT std::optional<Checkpoint<T>>
load_checkpoint(const std::filesystem::path &dir);

/// Resumes training from a checkpoint: the model's parameters and the
/// optimizer state are taken from it and epochs continue after its epoch.
template <class T>
TACIT_EXPORT TrainReport resume(TrainableModel<T> &model, const Checkpoint<T> &checkpoint,
                                const Dataset<T> &data,
                                const std::type_identity_t<Dataset<T>> *validation,
                                const TrainOptions &options);

/// Checks a data set against a model: p inputs, labels in [0, q) or q
/// targets, finite values. \throws InvalidArgument naming the data set, the
/// column (1-based sample) and the problem.
template <class T>
TACIT_EXPORT void check_dataset(const Dataset<T> &data, index_t p, index_t q,
                                LossKind loss);

/// Mean loss and accuracy of the model on a data set (forward only, in
/// batches of `batch` columns).
template <class T>
TACIT_EXPORT GradientResult evaluate(TrainableModel<T> &model, const Dataset<T> &data,
                                     const GradientOptions &options, index_t batch = 1000,
                                     index_t slab_width = default_slab_width);

} // namespace tacit::inline v1
