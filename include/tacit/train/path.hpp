#pragma once
/// \file path.hpp
/// A regularisation path over lambda with warm starts: the accuracy-size
/// curve of a group-sparse penalty.
///
/// For lambda_1 < lambda_2 < ... (each >= 0) the path trains the model at
/// lambda_1 from the given start, then at lambda_2 from the model trained
/// at lambda_1 (the warm start: the parameters, not the optimiser state,
/// which starts afresh at every lambda, nor the reweighted group weights,
/// which start from the groups' own weights), and so on. Each point is
/// trained exactly as a single run of train() with a ProximalPenalty at
/// that lambda from the previous point's trained model would be (the same
/// options, the same batch order, the same bits), so its first point is a
/// plain proximal training run at lambda_1 bit for bit. Each trained model
/// is pruned (prune.hpp) and, with fine_tune_epochs > 0, the pruned model
/// is trained further without the penalty; accuracies are measured on the
/// validation set (the pruned model reads only its kept inputs: the data
/// are restricted to them).
///
/// Thread safety: the function changes nothing it is given; the models of
/// the points are its own.

#include <cstddef>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/train/groups.hpp>
#include <tacit/train/prox.hpp>
#include <tacit/train/prune.hpp>
#include <tacit/train/trainer.hpp>

namespace tacit::inline v1 {

struct TACIT_EXPORT PathOptions {
  /// The lambdas, strictly increasing, each finite and >= 0.
  std::vector<double> lambdas;
  /// The penalty's kind, alpha and reweighting (its lambda is ignored).
  PenaltyOptions penalty;
  /// Training at each lambda: train.epochs epochs (after_step and
  /// checkpoint_dir must be empty: the path sets the former and has no
  /// checkpoints).
  TrainOptions train;
  PruneOptions prune;
  /// Epochs of training without the penalty on each pruned model (0: none).
  int fine_tune_epochs = 0;
  /// Learning rate of the fine-tuning (0: train.optimizer.lr).
  double fine_tune_lr = 0;
  /// Schedule of the fine-tuning over its fine_tune_epochs epochs (none:
  /// train.schedule), so that the penalised phase can keep a constant rate
  /// while the fine-tuning decays its own.
  std::optional<Schedule> fine_tune_schedule;
  /// Distillation of the fine-tuning (none: train.distillation): a
  /// teacher (Dataset::teacher) can guide the pruned model's fine-tuning
  /// alone, the penalised phase being left as it is.
  std::optional<Distillation> fine_tune_distillation;
  /// Called before each phase: (point index, lambda, fine-tuning or not).
  std::function<void(std::size_t, double, bool)> on_phase;
  /// \throws InvalidArgument naming the entry (1-based) and what is wrong:
  /// no lambda, a lambda negative or not finite, lambdas not strictly
  /// increasing; fine_tune_epochs < 0, fine_tune_lr < 0; after_step or
  /// checkpoint_dir set; the penalty options (PenaltyOptions::validate).
  void validate() const;
};

/// One point of the path.
template <class T> struct TACIT_EXPORT PathPoint {
  PathPoint(std::size_t index_, double lambda_, Model<T> trained_, PruneResult<T> prune_)
      : index(index_), lambda(lambda_), trained(std::move(trained_)),
        prune(std::move(prune_)) {}
  std::size_t index = 0; ///< 0-based position in the path
  double lambda = 0;
  /// The model trained at lambda (the warm start of the next point).
  Model<T> trained;
  /// The trained model pruned (sizes before and after, kept states and inputs).
  PruneResult<T> prune;
  /// The pruned model after fine-tuning (fine_tune_epochs > 0).
  std::optional<Model<T>> tuned;
  index_t zero_groups = 0, groups = 0; ///< of the penalty, after training
  TrainReport report, tuned_report;
  /// Validation loss and accuracy of the pruned model and of the tuned one
  /// (none without a validation set; accuracy only with labels).
  std::optional<double> loss, accuracy, tuned_loss, tuned_accuracy;
};

/// The rows `kept` (ascending, < data.inputs.rows()) of a data set's inputs;
/// labels, targets and name copied.
template <class T>
TACIT_EXPORT Dataset<T> restrict_inputs(const Dataset<T> &data,
                                        std::span<const index_t> kept);

/// Runs the path from `start`; `groups` are positions in the flat parameter
/// vector of TrainableModel<T>(start) (every point has the same layout).
/// `on_point` receives each point when it is done (to write its models
/// while the path goes on); the points are also returned.
/// \throws InvalidArgument on bad options (PathOptions::validate) or data;
/// TrainingError from training, as train() throws it (on_phase tells
/// which lambda was running).
template <class T>
TACIT_EXPORT std::vector<PathPoint<T>>
lambda_path(const Model<T> &start, const GroupSet &groups, const Dataset<T> &data,
            const std::type_identity_t<Dataset<T>> *validation,
            const PathOptions &options,
            const std::function<void(const PathPoint<T> &)> &on_point = {});

} // namespace tacit::inline v1
