// Losses and gradients through the equilibrium (see tacit/train/gradient.hpp).

#include <tacit/train/gradient.hpp>

#include <tacit/core/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "core/detail/gradient_dot.hpp"

namespace tacit::inline v1 {

std::string to_string(LossKind k) {
  switch (k) {
  case LossKind::cross_entropy:
    return "cross-entropy";
  case LossKind::squared:
    return "squared";
  case LossKind::custom:
    return "custom";
  }
  return "?";
}

LossKind parse_loss(std::string_view s) {
  if (s == "cross-entropy" || s == "cross_entropy" || s == "ce")
    return LossKind::cross_entropy;
  if (s == "squared" || s == "mse")
    return LossKind::squared;
  throw InvalidArgument("unknown loss '" + std::string(s) +
                        "' (expected cross-entropy or squared)");
}

namespace {
std::string shape(index_t r, index_t c) {
  return std::to_string(r) + " x " + std::to_string(c);
}
std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}
} // namespace

template <class T>
double loss_and_gradient(LossKind kind, const Batch<T> &Y, const Targets<T> &targets,
                         Batch<T> &G, index_t *correct) {
  const index_t q = Y.rows(), k = Y.cols(), W = Y.slab_width();
  if (G.rows() != q || G.cols() != k || G.slab_width() != W)
    G = Batch<T>(q, k, W);
  if (correct)
    *correct = 0;
  double total = 0;
  switch (kind) {
  case LossKind::cross_entropy: {
    if (static_cast<index_t>(targets.labels.size()) != k)
      throw InvalidArgument(
          "cross-entropy loss: " + std::to_string(targets.labels.size()) +
          " labels for " + std::to_string(k) + " outputs");
    const Batch<T> *teacher = targets.teacher;
    const double w = teacher ? targets.teacher_weight : 0.0, tau = targets.temperature;
    if (teacher) {
      if (teacher->rows() != q || teacher->cols() != k)
        throw InvalidArgument("distillation: the teacher's outputs are " +
                              shape(teacher->rows(), teacher->cols()) +
                              ", the model's are " + shape(q, k));
      if (!(w >= 0 && w <= 1))
        throw InvalidArgument("distillation: the teacher's weight " + fmt(w) +
                              " must be in [0, 1]");
      if (!(tau > 0) || !std::isfinite(tau))
        throw InvalidArgument("distillation: the temperature " + fmt(tau) +
                              " must be positive and finite");
    }
    for (index_t c = 0; c < k; ++c) {
      const int label = targets.labels[c];
      if (label < 0 || label >= q)
        throw InvalidArgument("cross-entropy loss: label " + std::to_string(label) +
                              " of column " + std::to_string(c + 1) + " is outside [0, " +
                              std::to_string(q) + ")");
      // log-sum-exp in double around the largest output.
      double mx = -std::numeric_limits<double>::infinity();
      index_t best = 0;
      for (index_t j = 0; j < q; ++j) {
        const double y = double(Y(j, c));
        if (y > mx) {
          mx = y;
          best = j;
        }
      }
      double sum = 0;
      for (index_t j = 0; j < q; ++j)
        sum += std::exp(double(Y(j, c)) - mx);
      const double lse = mx + std::log(sum);
      if (!teacher) {
        total += lse - double(Y(label, c));
        for (index_t j = 0; j < q; ++j)
          G(j, c) =
              static_cast<T>(std::exp(double(Y(j, c)) - lse) - (j == label ? 1.0 : 0.0));
      } else {
        // Soft term: log-sum-exps of y / tau and t / tau around their maxima.
        double ms = -std::numeric_limits<double>::infinity(), mt = ms;
        for (index_t j = 0; j < q; ++j) {
          ms = std::max(ms, double(Y(j, c)) / tau);
          mt = std::max(mt, double((*teacher)(j, c)) / tau);
        }
        double ss = 0, st = 0;
        for (index_t j = 0; j < q; ++j) {
          ss += std::exp(double(Y(j, c)) / tau - ms);
          st += std::exp(double((*teacher)(j, c)) / tau - mt);
        }
        const double lse_s = ms + std::log(ss), lse_t = mt + std::log(st);
        double kl = 0;
        for (index_t j = 0; j < q; ++j) {
          const double log_pt = double((*teacher)(j, c)) / tau - lse_t;
          const double log_ps = double(Y(j, c)) / tau - lse_s;
          const double pt = std::exp(log_pt), ps = std::exp(log_ps);
          kl += pt > 0 ? pt * (log_pt - log_ps) : 0.0;
          const double hard = std::exp(double(Y(j, c)) - lse) - (j == label ? 1.0 : 0.0);
          G(j, c) = static_cast<T>((1 - w) * hard + w * tau * (ps - pt));
        }
        total += (1 - w) * (lse - double(Y(label, c))) + w * tau * tau * kl;
      }
      if (correct && best == label)
        ++*correct;
    }
    return total;
  }
  case LossKind::squared: {
    const Batch<T> *t = targets.values;
    if (!t || t->rows() != q || t->cols() != k)
      throw InvalidArgument("squared loss: targets are " +
                            (t ? shape(t->rows(), t->cols()) : std::string("missing")) +
                            ", the outputs are " + shape(q, k));
    const double scale = q > 0 ? 1.0 / double(q) : 0.0;
    for (index_t c = 0; c < k; ++c)
      for (index_t j = 0; j < q; ++j) {
        const double d = double(Y(j, c)) - double((*t)(j, c));
        total += d * d * scale;
        G(j, c) = static_cast<T>(2.0 * d * scale);
      }
    return total;
  }
  case LossKind::custom:
    if (!targets.custom)
      throw InvalidArgument("custom loss: no function given");
    return targets.custom(Y, G);
  }
  return total;
}

template <class T>
void accumulate_parameter_gradient(const TrainableModel<T> &tm, const Batch<T> &U,
                                   const Batch<T> &X, const Batch<T> &V,
                                   const Batch<T> &G, std::span<T> grad, Execution exec) {
  const Model<T> &m = tm.model();
  const index_t k = X.cols(), W = X.slab_width();
  if (U.cols() != k || V.cols() != k || G.cols() != k || U.slab_width() != W ||
      V.slab_width() != W || G.slab_width() != W || U.rows() != m.inputs() ||
      X.rows() != m.states() || V.rows() != m.states() || G.rows() != m.outputs())
    throw InvalidArgument("accumulate_parameter_gradient: U " +
                          shape(U.rows(), U.cols()) + ", X " + shape(X.rows(), X.cols()) +
                          ", V " + shape(V.rows(), V.cols()) + ", G " +
                          shape(G.rows(), G.cols()) +
                          " do not fit the model (n = " + std::to_string(m.states()) +
                          ", p = " + std::to_string(m.inputs()) +
                          ", q = " + std::to_string(m.outputs()) + ") with equal slabs");
  const auto g = tm.split(grad);
  const LinearOperator<T> *ops[4] = {&m.A(), &m.B(), &m.C(), m.D()};
  const Batch<T> *left[4] = {&V, &V, &G, &G};
  const Batch<T> *right[4] = {&X, &U, &X, &U};
  for (int w = 0; w < 4; ++w) {
    const auto r = tm.operator_tensors(w);
    if (r.count == 0)
      continue;
    const auto *t = capability<Trainable<T>>(*ops[w]);
    const std::span<const std::span<T>> gw(g.data() + r.first, r.count);
    for (index_t s = 0; s < X.slab_count(); ++s)
      t->accumulate_gradient(left[w]->slab(s), right[w]->slab(s), gw, exec);
  }
  // Biases: row sums of V (each row in slab order), folded over planes.
  for (const auto &bb : tm.bias_blocks()) {
    T *gb = g[bb.tensor].data();
    auto rows = [&](index_t r0, index_t r1) {
      for (index_t ch = r0; ch < r1; ++ch) {
        T acc = T(0);
        for (index_t q = 0; q < bb.plane; ++q) {
          const index_t i = bb.offset + ch * bb.plane + q;
          for (index_t s = 0; s < V.slab_count(); ++s) {
            const auto vs = V.slab(s);
            acc += detail::column_sum(vs.row(i), vs.cols);
          }
        }
        gb[ch] += acc;
      }
    };
    // Each channel's sum is one task's own (any partition gives the same
    // bits); the grain keeps a task at >= ~16k values, so a few wide
    // channels (a convolution's 16 maps of 1024 pixels x 128 images) still
    // spread over the threads.
    const index_t count = bb.size / bb.plane;
    const index_t per_channel = bb.plane * k;
    if (exec == Execution::reference || count * per_channel < 16384)
      rows(0, count);
    else
      tbb::parallel_for(
          tbb::blocked_range<index_t>(
              0, count, std::max<index_t>(1, 16384 / std::max<index_t>(1, per_channel))),
          [&](const tbb::blocked_range<index_t> &rg) { rows(rg.begin(), rg.end()); });
  }
  T *gy = g[tm.output_bias_tensor()].data();
  for (index_t j = 0; j < m.outputs(); ++j) {
    T acc = T(0);
    for (index_t s = 0; s < G.slab_count(); ++s) {
      const auto gs = G.slab(s);
      acc += detail::column_sum(gs.row(j), gs.cols);
    }
    gy[j] += acc;
  }
}

template <class T> struct GradientEngine<T>::Impl {
  TrainableModel<T> *model;
  GradientOptions options;
  std::unique_ptr<EquilibriumSolver<T>> forward;
  std::unique_ptr<AdjointSolver<T>> adjoint;
  Batch<T> X, Y, G, V, dU;
};

template <class T>
GradientEngine<T>::GradientEngine(TrainableModel<T> &model, GradientOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->model = &model;
  impl_->options = std::move(options);
  refresh();
}
template <class T> GradientEngine<T>::~GradientEngine() = default;
template <class T>
GradientEngine<T>::GradientEngine(GradientEngine &&) noexcept = default;
template <class T>
GradientEngine<T> &GradientEngine<T>::operator=(GradientEngine &&) noexcept = default;

template <class T> void GradientEngine<T>::refresh() {
  auto &im = *impl_;
  if (im.forward && im.adjoint && im.forward->method() != SolveMethod::picard) {
    // Keep the solvers' workspace: a fresh one costs page faults and zeroing
    // of several n x k buffers per training step.
    im.forward->rebuild(im.model->model());
    im.adjoint->rebuild(im.model->model());
    return;
  }
  im.forward =
      std::make_unique<EquilibriumSolver<T>>(im.model->model(), im.options.forward);
  im.adjoint = std::make_unique<AdjointSolver<T>>(im.model->model(), im.options.adjoint);
}

template <class T>
GradientResult GradientEngine<T>::evaluate(const Batch<T> &U, const Targets<T> &targets) {
  auto &im = *impl_;
  GradientResult res;
  res.samples = U.cols();
  res.forward = im.forward->predict(U, im.X, im.Y);
  const double total =
      loss_and_gradient(im.options.loss, im.Y, targets, im.G, &res.correct);
  res.loss = U.cols() > 0 ? total / double(U.cols()) : 0.0;
  return res;
}

template <class T>
GradientResult GradientEngine<T>::compute(const Batch<T> &U, const Targets<T> &targets,
                                          std::span<T> grad) {
  auto &im = *impl_;
  const TrainableModel<T> &tm = *im.model;
  if (static_cast<index_t>(grad.size()) != tm.size())
    throw InvalidArgument("gradient: grad has " + std::to_string(grad.size()) +
                          " values, the model has " + std::to_string(tm.size()) +
                          " parameters");
  GradientResult res = evaluate(U, targets);
  std::fill(grad.begin(), grad.end(), T(0));
  if (U.cols() == 0)
    return res;
  // G of the mean loss.
  const T scale = T(1) / static_cast<T>(U.cols());
  for (auto &v : im.G.storage())
    v *= scale;
  if (!res.forward.ok())
    return res;
  res.adjoint = im.adjoint->solve_outputs(im.X, U, im.G, im.V);
  if (!res.adjoint.ok())
    return res;
  accumulate_parameter_gradient(tm, U, im.X, im.V, im.G, grad);
  if (im.options.input_gradient)
    tacit::input_gradient(tm.model(), im.V, im.G, im.dU);
  return res;
}

template <class T> const Batch<T> &GradientEngine<T>::states() const noexcept {
  return impl_->X;
}
template <class T> const Batch<T> &GradientEngine<T>::outputs() const noexcept {
  return impl_->Y;
}
template <class T> const Batch<T> &GradientEngine<T>::output_gradient() const noexcept {
  return impl_->G;
}
template <class T> const Batch<T> &GradientEngine<T>::adjoint() const noexcept {
  return impl_->V;
}
template <class T> const Batch<T> &GradientEngine<T>::input_gradient() const noexcept {
  return impl_->dU;
}
template <class T> const std::string &GradientEngine<T>::forward_method() const {
  return impl_->forward->method_reason();
}
template <class T> const std::string &GradientEngine<T>::adjoint_method() const {
  return impl_->adjoint->method_reason();
}

template class GradientEngine<float>;
template class GradientEngine<double>;
template double loss_and_gradient(LossKind, const Batch<float> &, const Targets<float> &,
                                  Batch<float> &, index_t *);
template double loss_and_gradient(LossKind, const Batch<double> &,
                                  const Targets<double> &, Batch<double> &, index_t *);
template void accumulate_parameter_gradient(const TrainableModel<float> &,
                                            const Batch<float> &, const Batch<float> &,
                                            const Batch<float> &, const Batch<float> &,
                                            std::span<float>, Execution);
template void accumulate_parameter_gradient(const TrainableModel<double> &,
                                            const Batch<double> &, const Batch<double> &,
                                            const Batch<double> &, const Batch<double> &,
                                            std::span<double>, Execution);

} // namespace tacit::inline v1
