#pragma once
/// \file select.hpp
/// Input selection by refitting: the second stage of a two-stage support
/// recovery.
///
/// Stage 1 (a group lasso on input groups, prox.hpp) screens the inputs
/// with a penalty small enough to keep every input that matters, false
/// ones allowed. Its nonzero columns of (B; D) are the candidates. Stage 2
/// (select_inputs) works on the candidates only, without a penalty:
///
/// 1. refit: the model is trained from the stage-1 model with every
///    non-candidate input held at exactly zero (its column of (B; D) is
///    set to zero after every optimiser step);
/// 2. backward elimination, one input per round: a control refit continues
///    the current model for trial_epochs epochs with the current inputs;
///    for each current input j a trial refit continues the current model
///    for trial_epochs epochs with j's column zeroed and held at zero. The
///    input whose trial ends with the smallest training loss is dropped
///    when that loss is at most (1 + tolerance) times the control's loss
///    plus `floor` (the trial becomes the current model); otherwise the elimination
///    stops and the control is the result.
///
/// The criterion is relative to the fit's own loss, so it needs no noise
/// level; it suits data that the model class fits well (noiseless or
/// nearly so), where dropping an input that matters raises the loss by a
/// factor and dropping one that does not changes it by the refit's own
/// variation. The control refit has the same number of epochs from the
/// same start as every trial, so that the extra training is not mistaken
/// for an input's worth. Cost: about k^2 / 2 trial refits for k
/// candidates when all but a few are dropped.
///
/// Determinism: the same options, data and start give the same bits (each
/// refit is a train() run with the given options).
///
/// Thread safety: the function changes nothing it is given.

#include <functional>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/train/bcd.hpp>
#include <tacit/train/trainer.hpp>

namespace tacit::inline v1 {

struct TACIT_EXPORT SelectOptions {
  /// Training of the first refit (refit.epochs epochs); after_step and
  /// checkpoint_dir must be empty (the selection sets the former).
  TrainOptions refit;
  /// Epochs of the control and of each trial refit (warm started).
  int trial_epochs = 50;
  /// An input is dropped when its trial's training loss is at most
  /// (1 + tolerance) times the control's.
  double tolerance = 0.5;
  /// A loss that counts as zero: the rule is loss <= (1 + tolerance)
  /// control + floor. When the model fits the data exactly the control's
  /// loss is the optimiser's noise (1e-9 ... 1e-7 in the tests), where
  /// ratios mean nothing; a floor well below any input's worth fixes that.
  double floor = 0;
  /// A value of (B; D) with |value| <= threshold counts as zero when the
  /// candidates are read from the start model.
  double threshold = 0;
  /// \throws InvalidArgument naming the field: trial_epochs < 1,
  /// refit.epochs < 0, tolerance or floor < 0 or not finite, threshold < 0,
  /// after_step or checkpoint_dir set.
  void validate() const;
};

/// One refit of the elimination.
struct TACIT_EXPORT SelectTrial {
  int round = 0;      ///< 1-based
  index_t input = -1; ///< the input zeroed; -1 for the round's control
  double loss = 0;    ///< training loss at the end of the refit
  bool dropped = false;
};

template <class T> struct TACIT_EXPORT SelectResult {
  Model<T> model;                  ///< the last refit: unselected columns exactly 0
  std::vector<index_t> candidates; ///< the start model's inputs, ascending
  std::vector<index_t> selected;   ///< the inputs kept, ascending
  double loss = 0;                 ///< training loss of `model`
  double refit_loss = 0;           ///< training loss after the first refit
  std::vector<SelectTrial> trials; ///< every control and trial, in order
};

/// The inputs whose column of (B; D) has a value with |value| > threshold.
template <class T>
TACIT_EXPORT std::vector<index_t> inputs_read(const Model<T> &model,
                                              double threshold = 0);

/// Two-stage selection's second stage from `start` (the stage-1 model):
/// see the file comment. `on_trial` receives each refit when it is done.
/// \throws InvalidArgument on bad options (SelectOptions::validate) or
/// data; TrainingError from training, as train() throws it.
template <class T>
TACIT_EXPORT SelectResult<T>
select_inputs(const Model<T> &start, const Dataset<T> &data, const SelectOptions &options,
              const std::function<void(const SelectTrial &)> &on_trial = {});

/// The same second stage with BCD refits (bcd.hpp): the candidates are the
/// nonzero columns of `start`'s B; every refit is bcd_train() without a
/// penalty from the current parameters with the removed columns of B zero
/// and fixed (maskB), and its loss is the mean squared error of the
/// model's own predictions (bcd_rmse squared), not the relaxed objective.
struct TACIT_EXPORT BcdSelectOptions {
  /// The refits' options (their penalty and reweighting are ignored).
  BcdOptions bcd;
  int refit_iterations = 50; ///< the first refit
  int trial_iterations = 20; ///< the control and each trial
  double tolerance = 0.5;
  double floor = 0; ///< as SelectOptions::floor
  /// \throws InvalidArgument naming the field (and BcdOptions::validate).
  void validate(index_t n, index_t p) const;
};

struct TACIT_EXPORT BcdSelectResult {
  BcdParameters params; ///< the last refit: unselected columns of B exactly 0
  std::vector<index_t> candidates, selected;
  double loss = 0, refit_loss = 0; ///< mean squared errors
  std::vector<SelectTrial> trials;
};

/// \throws InvalidArgument on bad options or data; what bcd_train throws.
TACIT_EXPORT BcdSelectResult
bcd_select_inputs(const BcdParameters &start, const BcdMatrix &U, const BcdMatrix &Y,
                  const BcdSelectOptions &options,
                  const std::function<void(const SelectTrial &)> &on_trial = {});

} // namespace tacit::inline v1
