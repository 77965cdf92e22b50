// Input selection by refitting (see tacit/train/select.hpp).

#include <tacit/train/select.hpp>

#include <tacit/core/error.hpp>
#include <tacit/core/format.hpp>
#include <tacit/train/groups.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>

namespace tacit::inline v1 {

void SelectOptions::validate() const {
  if (trial_epochs < 1)
    throw InvalidArgument("input selection: trial_epochs " +
                          std::to_string(trial_epochs) + " must be >= 1");
  if (refit.epochs < 0)
    throw InvalidArgument("input selection: refit.epochs " +
                          std::to_string(refit.epochs) + " must be >= 0");
  if (!std::isfinite(tolerance) || tolerance < 0)
    throw InvalidArgument("input selection: tolerance " + format_number(tolerance, 6) +
                          " must be finite and >= 0");
  if (!std::isfinite(floor) || floor < 0)
    throw InvalidArgument("input selection: floor " + format_number(floor, 6) +
                          " must be finite and >= 0");
  if (!std::isfinite(threshold) || threshold < 0)
    throw InvalidArgument("input selection: threshold " + format_number(threshold, 6) +
                          " must be finite and >= 0");
  if (refit.after_step)
    throw InvalidArgument(
        "input selection: refit.after_step is set; the selection sets it");
  if (!refit.checkpoint_dir.empty())
    throw InvalidArgument(
        "input selection: checkpoints are not supported (checkpoint_dir '" +
        refit.checkpoint_dir.string() + "')");
}

namespace {

/// Input j -> its members in the flat parameter vector (inputs without a
/// parameter are absent).
template <class T>
std::map<index_t, std::vector<index_t>> input_members(const Model<T> &m) {
  TrainableModel<T> tm(m);
  std::map<index_t, std::vector<index_t>> out;
  for (const ParameterGroup &g : make_groups(tm, GroupKind::input).groups)
    out[g.index] = g.members;
  return out;
}

template <class T> class Refitter {
public:
  Refitter(const Dataset<T> &data, const SelectOptions &options,
           const std::map<index_t, std::vector<index_t>> &members)
      : data_(data), options_(options), members_(members) {}

  /// Trains `from` for `epochs` epochs with every input outside `kept`
  /// held at zero; returns the model and its training loss.
  std::pair<Model<T>, double> fit(const Model<T> &from, const std::vector<index_t> &kept,
                                  int epochs) const {
    std::vector<index_t> zero;
    for (const auto &[input, mem] : members_)
      if (!std::binary_search(kept.begin(), kept.end(), input))
        zero.insert(zero.end(), mem.begin(), mem.end());
    TrainableModel<T> tm(from);
    std::vector<T> flat(static_cast<std::size_t>(tm.size()));
    const auto clear = [&] {
      tm.read(flat);
      for (const index_t k : zero)
        flat[static_cast<std::size_t>(k)] = T(0);
      tm.write(flat);
    };
    clear();
    TrainOptions o = options_.refit;
    o.epochs = epochs;
    o.after_step = [&](int, std::int64_t, double) { clear(); };
    if (epochs > 0)
      train(tm, data_, nullptr, o);
    const GradientResult r =
        evaluate(tm, data_, o.gradient, o.validation_batch, o.slab_width);
    if (!r.forward.ok())
      throw TrainingError(0, 0,
                          "input selection: the forward solve on the training data did "
                          "not converge: " +
                              r.forward.message);
    return {tm.model(), r.loss};
  }

private:
  const Dataset<T> &data_;
  const SelectOptions &options_;
  const std::map<index_t, std::vector<index_t>> &members_;
};

} // namespace

template <class T>
std::vector<index_t> inputs_read(const Model<T> &model, double threshold) {
  TrainableModel<T> tm(model);
  std::vector<T> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  std::vector<index_t> out;
  for (const ParameterGroup &g : make_groups(tm, GroupKind::input).groups)
    for (const index_t k : g.members)
      if (std::abs(double(flat[static_cast<std::size_t>(k)])) > threshold) {
        out.push_back(g.index);
        break;
      }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

/// The elimination of the file comment of select.hpp over any refit:
/// fit(from, kept, epochs) -> (model, training loss).
template <class M, class Fit>
void eliminate(M &current, double &loss, std::vector<index_t> &kept, const Fit &fit,
               int trial_epochs, double tolerance, double floor,
               std::vector<SelectTrial> &trials,
               const std::function<void(const SelectTrial &)> &on_trial) {
  const auto report = [&](const SelectTrial &t) {
    trials.push_back(t);
    if (on_trial)
      on_trial(t);
  };
  for (int round = 1; !kept.empty(); ++round) {
    auto [control, control_loss] = fit(current, kept, trial_epochs);
    report({round, -1, control_loss, false});
    std::size_t best = 0;
    std::optional<std::pair<M, double>> best_fit;
    std::vector<SelectTrial> round_trials;
    for (std::size_t k = 0; k < kept.size(); ++k) {
      std::vector<index_t> without = kept;
      without.erase(without.begin() + static_cast<std::ptrdiff_t>(k));
      auto f = fit(current, without, trial_epochs);
      round_trials.push_back({round, kept[k], f.second, false});
      if (!best_fit || f.second < best_fit->second) {
        best = k;
        best_fit = std::move(f);
      }
    }
    const bool drop = best_fit->second <= (1 + tolerance) * control_loss + floor;
    round_trials[best].dropped = drop;
    for (const SelectTrial &t : round_trials)
      report(t);
    if (!drop) {
      current = std::move(control);
      loss = control_loss;
      return;
    }
    kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(best));
    current = std::move(best_fit->first);
    loss = best_fit->second;
  }
}

} // namespace

template <class T>
SelectResult<T> select_inputs(const Model<T> &start, const Dataset<T> &data,
                              const SelectOptions &options,
                              const std::function<void(const SelectTrial &)> &on_trial) {
  options.validate();
  check_dataset(data, start.inputs(), start.outputs(), options.refit.gradient.loss);
  const auto members = input_members(start);
  const Refitter<T> refitter(data, options, members);
  SelectResult<T> res{start, inputs_read(start, options.threshold), {}, 0, 0, {}};
  std::vector<index_t> kept = res.candidates;
  auto [current, loss] = refitter.fit(start, kept, options.refit.epochs);
  res.refit_loss = loss;
  eliminate(
      current, loss, kept,
      [&](const Model<T> &from, const std::vector<index_t> &k, int e) {
        return refitter.fit(from, k, e);
      },
      options.trial_epochs, options.tolerance, options.floor, res.trials, on_trial);
  res.model = std::move(current);
  res.selected = kept;
  res.loss = loss;
  return res;
}

void BcdSelectOptions::validate(index_t n, index_t p) const {
  bcd.validate(n, p);
  if (refit_iterations < 0)
    throw InvalidArgument("BCD input selection: refit_iterations " +
                          std::to_string(refit_iterations) + " must be >= 0");
  if (trial_iterations < 1)
    throw InvalidArgument("BCD input selection: trial_iterations " +
                          std::to_string(trial_iterations) + " must be >= 1");
  if (!std::isfinite(tolerance) || tolerance < 0)
    throw InvalidArgument("BCD input selection: tolerance " +
                          format_number(tolerance, 6) + " must be finite and >= 0");
  if (!std::isfinite(floor) || floor < 0)
    throw InvalidArgument("BCD input selection: floor " + format_number(floor, 6) +
                          " must be finite and >= 0");
}

BcdSelectResult
bcd_select_inputs(const BcdParameters &start, const BcdMatrix &U, const BcdMatrix &Y,
                  const BcdSelectOptions &options,
                  const std::function<void(const SelectTrial &)> &on_trial) {
  options.validate(start.states(), start.inputs());
  BcdOptions o = options.bcd;
  o.penalty = BcdPenalty::none; // the refits are unpenalised
  o.penalty_lambda = 0;
  o.reweight_every = 0;
  o.group_weights.clear();
  const auto fit = [&](const BcdParameters &from, const std::vector<index_t> &kept,
                       int iterations) {
    BcdParameters m = from;
    for (index_t j = 0; j < m.inputs(); ++j)
      if (!std::binary_search(kept.begin(), kept.end(), j))
        for (index_t i = 0; i < m.states(); ++i) {
          m.B(i, j) = 0;
          m.maskB(i, j) = 0;
        }
    BcdOptions oi = o;
    oi.iterations = iterations;
    BcdParameters out = bcd_train(m, U, Y, oi).params;
    const double r = bcd_rmse(out, U, Y, o.exec);
    return std::pair<BcdParameters, double>{std::move(out), r * r};
  };
  BcdSelectResult res;
  const auto norms = bcd_column_norms(start.B);
  for (index_t j = 0; j < start.inputs(); ++j)
    if (norms[std::size_t(j)] > 0)
      res.candidates.push_back(j);
  std::vector<index_t> kept = res.candidates;
  auto [current, loss] = fit(start, kept, options.refit_iterations);
  res.refit_loss = loss;
  eliminate(current, loss, kept, fit, options.trial_iterations, options.tolerance,
            options.floor, res.trials, on_trial);
  res.params = std::move(current);
  res.selected = kept;
  res.loss = loss;
  return res;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template std::vector<index_t> inputs_read(const Model<T> &, double);                   \
  template SelectResult<T> select_inputs(                                                \
      const Model<T> &, const Dataset<T> &, const SelectOptions &,                       \
      const std::function<void(const SelectTrial &)> &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
