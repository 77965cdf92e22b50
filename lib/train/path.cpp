// A regularisation path over lambda with warm starts (see tacit/train/path.hpp).

#include <tacit/train/path.hpp>

#include <tacit/core/error.hpp>
#include <tacit/core/format.hpp>

#include <cmath>
#include <string>

namespace tacit::inline v1 {

void PathOptions::validate() const {
  if (lambdas.empty())
    throw InvalidArgument("lambda path: no lambda given");
  for (std::size_t k = 0; k < lambdas.size(); ++k) {
    const double l = lambdas[k];
    if (!std::isfinite(l) || l < 0)
      throw InvalidArgument("lambda path: entry " + std::to_string(k + 1) + " (" +
                            format_number(l, 6) + ") must be finite and >= 0");
    if (k > 0 && !(l > lambdas[k - 1]))
      throw InvalidArgument("lambda path: entry " + std::to_string(k + 1) + " (" +
                            format_number(l, 6) + ") is not larger than entry " +
                            std::to_string(k) + " (" + format_number(lambdas[k - 1], 6) +
                            "); the path runs over strictly increasing lambdas");
  }
  if (fine_tune_epochs < 0)
    throw InvalidArgument("lambda path: fine_tune_epochs " +
                          std::to_string(fine_tune_epochs) + " must be >= 0");
  if (!(fine_tune_lr >= 0) || !std::isfinite(fine_tune_lr))
    throw InvalidArgument("lambda path: fine_tune_lr " + format_number(fine_tune_lr, 6) +
                          " must be finite and >= 0");
  if (train.after_step)
    throw InvalidArgument("lambda path: train.after_step is set; the path sets it");
  if (!train.checkpoint_dir.empty())
    throw InvalidArgument("lambda path: checkpoints are not supported (checkpoint_dir '" +
                          train.checkpoint_dir.string() + "')");
  PenaltyOptions p = penalty;
  p.lambda = lambdas.front();
  p.validate();
}

template <class T>
Dataset<T> restrict_inputs(const Dataset<T> &data, std::span<const index_t> kept) {
  const index_t p = data.inputs.rows(), m = data.inputs.cols();
  for (std::size_t k = 0; k < kept.size(); ++k)
    if (kept[k] < 0 || kept[k] >= p || (k > 0 && kept[k] <= kept[k - 1]))
      throw InvalidArgument("restrict_inputs: kept input " + std::to_string(kept[k]) +
                            " (entry " + std::to_string(k + 1) +
                            ") is not ascending within [0, " + std::to_string(p) + ")");
  Dataset<T> out;
  out.inputs = Batch<T>(static_cast<index_t>(kept.size()), m, data.inputs.slab_width());
  for (index_t s = 0; s < data.inputs.slab_count(); ++s) {
    const auto from = data.inputs.slab(s);
    auto to = out.inputs.slab(s);
    for (std::size_t k = 0; k < kept.size(); ++k) {
      const T *a = from.row(kept[k]);
      T *b = to.row(static_cast<index_t>(k));
      for (index_t j = 0; j < from.cols; ++j)
        b[j] = a[j];
    }
  }
  out.labels = data.labels;
  out.targets = data.targets;
  out.teacher = data.teacher;
  out.name = data.name;
  return out;
}

namespace {

template <class T>
void measure(const Model<T> &model, const Dataset<T> &validation,
             const GradientOptions &options, index_t batch, index_t slab,
             std::optional<double> &loss, std::optional<double> &accuracy) {
  TrainableModel<T> tm(model);
  const GradientResult r = evaluate(tm, validation, options, batch, slab);
  if (!r.forward.ok())
    throw TrainingError(0, 0,
                        "the validation solve did not converge: " + r.forward.message);
  loss = r.loss;
  if (!validation.labels.empty() && r.samples > 0)
    accuracy = double(r.correct) / double(r.samples);
}

} // namespace

template <class T>
std::vector<PathPoint<T>>
lambda_path(const Model<T> &start, const GroupSet &groups, const Dataset<T> &data,
            const std::type_identity_t<Dataset<T>> *validation,
            const PathOptions &options,
            const std::function<void(const PathPoint<T> &)> &on_point) {
  options.validate();
  std::vector<PathPoint<T>> points;
  Model<T> current = start;
  for (std::size_t k = 0; k < options.lambdas.size(); ++k) {
    const double lambda = options.lambdas[k];
    if (options.on_phase)
      options.on_phase(k, lambda, false);
    TrainableModel<T> tm(current);
    PenaltyOptions po = options.penalty;
    po.lambda = lambda;
    std::optional<ProximalPenalty<T>> prox;
    TrainOptions o = options.train;
    if (lambda > 0) {
      prox.emplace(tm, groups, po);
      o.after_step = [&](int e, std::int64_t s, double lr) { prox->step(e, s, lr); };
    }
    TrainReport report = train(tm, data, validation, o);
    Model<T> trained = tm.model();
    PathPoint<T> pt(k, lambda, trained, prune_model(trained, options.prune));
    pt.report = std::move(report);
    pt.groups = static_cast<index_t>(groups.groups.size());
    if (prox)
      pt.zero_groups = prox->zero_groups();
    const bool all_inputs = pt.prune.after.inputs == start.inputs();
    std::optional<Dataset<T>> vsmall, tsmall;
    if (!all_inputs) {
      if (validation)
        vsmall = restrict_inputs(*validation, pt.prune.kept_inputs);
      if (options.fine_tune_epochs > 0)
        tsmall = restrict_inputs(data, pt.prune.kept_inputs);
    }
    const Dataset<T> *v = vsmall ? &*vsmall : validation;
    if (v)
      measure(pt.prune.pruned, *v, o.gradient, o.validation_batch, o.slab_width, pt.loss,
              pt.accuracy);
    if (options.fine_tune_epochs > 0) {
      if (options.on_phase)
        options.on_phase(k, lambda, true);
      TrainOptions f = options.train;
      f.epochs = options.fine_tune_epochs;
      if (options.fine_tune_lr > 0)
        f.optimizer.lr = options.fine_tune_lr;
      if (options.fine_tune_schedule)
        f.schedule = *options.fine_tune_schedule;
      if (options.fine_tune_distillation)
        f.distillation = *options.fine_tune_distillation;
      TrainableModel<T> small(pt.prune.pruned);
      pt.tuned_report = train(small, tsmall ? *tsmall : data, v, f);
      pt.tuned = small.model();
      if (v)
        measure(*pt.tuned, *v, f.gradient, f.validation_batch, f.slab_width,
                pt.tuned_loss, pt.tuned_accuracy);
    }
    current = pt.trained;
    if (on_point)
      on_point(pt);
    points.push_back(std::move(pt));
  }
  return points;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template Dataset<T> restrict_inputs(const Dataset<T> &, std::span<const index_t>);     \
  template std::vector<PathPoint<T>> lambda_path(                                        \
      const Model<T> &, const GroupSet &, const Dataset<T> &, const Dataset<T> *,        \
      const PathOptions &, const std::function<void(const PathPoint<T> &)> &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
