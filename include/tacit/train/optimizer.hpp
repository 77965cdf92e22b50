#pragma once
/// \file optimizer.hpp
/// First-order optimisers on a flat parameter vector and learning-rate
/// schedules, with PyTorch's update rules (torch.optim 1.13):
///
/// - SGD: b = momentum b + (g + wd theta) (b = g + wd theta on the first
///   step), theta -= lr b; Nesterov: theta -= lr (g + wd theta + momentum b).
/// - Adam: g' = g + wd theta, m = beta1 m + (1 - beta1) g',
///   v = beta2 v + (1 - beta2) g'^2,
///   theta -= lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
/// - AdamW: theta *= 1 - lr wd, then Adam without the decay in g'.
///
/// Updates run elementwise in parallel (each value depends only on its own
/// state: the same bits for any thread count). States are flat vectors that
/// a checkpoint stores exactly.
///
/// Thread safety: an Optimizer holds its moments and step count and is used by
/// one thread at a time; a Schedule is a value.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/core/dense.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

enum class OptimizerKind { sgd, adam, adamw };
TACIT_EXPORT std::string to_string(OptimizerKind k);
/// "sgd", "adam", "adamw". \throws InvalidArgument otherwise.
TACIT_EXPORT OptimizerKind parse_optimizer(std::string_view s);

struct TACIT_EXPORT OptimizerOptions {
  OptimizerKind kind = OptimizerKind::sgd;
  double lr = 0.01;
  double momentum = 0;   ///< SGD
  bool nesterov = false; ///< SGD (needs momentum > 0)
  double weight_decay = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8; ///< Adam, AdamW
  /// \throws InvalidArgument naming the bad field (negative or non-finite
  /// rates, betas outside [0, 1), Nesterov without momentum).
  void validate() const;
};

enum class ScheduleKind { constant, step, cosine };

/// Learning rate per epoch: constant; step (lr gamma^floor(epoch /
/// step_size)); cosine (eta_min + (lr - eta_min) (1 + cos(pi epoch /
/// epochs)) / 2, per epoch as PyTorch's CosineAnnealingLR with T_max = the
/// number of epochs).
struct TACIT_EXPORT Schedule {
  ScheduleKind kind = ScheduleKind::constant;
  int step_size = 1;
  double gamma = 0.1;
  double eta_min = 0;
  /// The rate for epoch (0-based) of `epochs`, from the base rate.
  double rate(double base, int epoch, int epochs) const;
  /// "constant", "step:S[:GAMMA]", "cosine[:ETA_MIN]".
  /// \throws InvalidArgument otherwise.
  static Schedule parse(std::string_view s);
  std::string to_string() const;
};

template <class T> class TACIT_EXPORT Optimizer {
public:
  /// For `size` parameters. \throws InvalidArgument on bad options.
  Optimizer(OptimizerOptions options, index_t size);

  const OptimizerOptions &options() const noexcept { return options_; }
  /// Steps taken so far.
  std::int64_t steps() const noexcept { return steps_; }

  /// One step with learning rate lr on the tensors `params` (in order,
  /// together `size` values) with the gradient `grad` (flat, the same
  /// order).
  void step(std::span<const std::span<T>> params, std::span<const T> grad, double lr);

  /// The state (step count and moment vectors) as bytes, and back.
  /// \throws InvalidArgument on a state of another optimiser or size.
  std::string save_state() const;
  void load_state(std::string_view bytes);

private:
  OptimizerOptions options_;
  index_t size_;
  std::int64_t steps_ = 0;
  std::vector<T> m_, v_;
};

} // namespace tacit::inline v1
