#pragma once
/// \file prox.hpp
/// Proximal steps for group-sparse training: after each optimiser step the
/// parameters theta are replaced by prox_{t P}(theta) with t = lr (the
/// step's learning rate) and the penalty P:
///
/// - group lasso: P = lambda sum_g w_g ||theta_g||_2; the prox is block
///   soft-thresholding, theta_g *= max(0, 1 - t lambda w_g / ||theta_g||_2);
/// - l1: P = lambda sum_{i in some group} |theta_i|; the prox is the
///   elementwise soft-thresholding sign(v) max(0, |v| - t lambda);
/// - sparse-group lasso: P = lambda (alpha ||theta||_1 + (1 - alpha)
///   sum_g w_g ||theta_g||_2); the prox is the l1 prox followed by the group
///   prox (exact for disjoint groups).
///
/// For disjoint groups each prox is exact. For overlapping groups
/// (states-both) the groups are shrunk one after the other, in group order:
/// a descent heuristic, not the exact prox of the sum.
///
/// Reweighted group lasso: every `reweight_every` epochs the weights become
/// w_g = base_g / (||theta_g||_2 + eps) (base_g the group's own weight), so
/// that small groups are pushed to exact zeros and large ones are left
/// almost free.
///
/// Composition with well-posedness: the trainer applies the prox first and
/// then the projection of A onto ||A||_inf <= kappa (a row-wise l1-ball
/// projection, itself a soft-thresholding of each row with its own level).
/// The projection maps zero entries to zero, so every zero the prox made
/// stays zero and every step ends feasible; the composition is the
/// projected proximal step, not the exact prox of penalty + constraint
/// (Dykstra's iterations would give that; they are not used).
///
/// Thread safety: the functions change only their arguments; a
/// ProximalPenalty changes its model and is used by one thread at a time.

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/train/groups.hpp>
#include <tacit/train/trainable.hpp>

namespace tacit::inline v1 {

enum class PenaltyKind { group_lasso, l1, sparse_group_lasso };
TACIT_EXPORT std::string to_string(PenaltyKind k);

struct TACIT_EXPORT PenaltyOptions {
  PenaltyKind kind = PenaltyKind::group_lasso;
  double lambda = 0;
  double alpha = 0.5;     ///< sparse-group lasso: the l1 share
  int reweight_every = 0; ///< epochs between reweightings (0: never)
  double reweight_eps = 1e-3;
  /// \throws InvalidArgument naming the field: lambda < 0 or not finite,
  /// alpha outside [0, 1], reweight_every < 0, eps <= 0.
  void validate() const;
};

/// Block soft-thresholding of each group of `theta` (flat) with level
/// t * w_g. \throws InvalidArgument when t < 0 or a member is out of range.
template <class T>
TACIT_EXPORT void prox_group_lasso(std::span<T> theta, const GroupSet &groups, double t);
/// Soft-thresholding with level t of every member of the groups (each once).
template <class T>
TACIT_EXPORT void prox_l1(std::span<T> theta, const GroupSet &groups, double t);
/// prox_l1 with level t * alpha, then prox_group_lasso with t * (1 - alpha).
template <class T>
TACIT_EXPORT void prox_sparse_group_lasso(std::span<T> theta, const GroupSet &groups,
                                          double t, double alpha);
/// The penalty value P(theta) / lambda of `kind` (sum_g w_g ||theta_g||_2,
/// the l1 norm of the members, or the sparse-group mix).
template <class T>
TACIT_EXPORT double penalty_value(std::span<const T> theta, const GroupSet &groups,
                                  PenaltyKind kind, double alpha = 0.5);
/// ||theta_g||_2 of each group.
template <class T>
TACIT_EXPORT std::vector<double> group_norms(std::span<const T> theta,
                                             const GroupSet &groups);

/// A penalty applied to a model after each optimiser step; its step()
/// is the trainer's TrainOptions::after_step.
template <class T> class TACIT_EXPORT ProximalPenalty {
public:
  /// \throws InvalidArgument on bad options or groups with members outside
  /// the model's parameters.
  ProximalPenalty(TrainableModel<T> &model, GroupSet groups, PenaltyOptions options);

  /// The prox with t = lr * lambda on the model's parameters (committed).
  /// Reweights first at step 1 of every epoch e > 1 (1-based) with
  /// (e - 1) % reweight_every == 0.
  void step(int epoch, std::int64_t step, double lr);
  /// w_g = base_g / (||theta_g|| + eps) from the current parameters.
  void reweight();

  const GroupSet &groups() const noexcept { return groups_; }
  const PenaltyOptions &options() const noexcept { return options_; }
  /// Groups whose parameters are all zero.
  index_t zero_groups() const;
  /// lambda * P(theta) at the current parameters.
  double value() const;

private:
  TrainableModel<T> *model_;
  GroupSet groups_;
  std::vector<double> base_;
  PenaltyOptions options_;
  std::vector<T> flat_;
};

} // namespace tacit::inline v1
