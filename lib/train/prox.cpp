// Proximal steps of group-sparse penalties (see tacit/train/prox.hpp).

#include <tacit/train/prox.hpp>

#include <tacit/core/error.hpp>
#include <tacit/core/format.hpp>

#include <algorithm>
#include <cmath>

namespace tacit::inline v1 {

std::string to_string(PenaltyKind k) {
  switch (k) {
  case PenaltyKind::group_lasso:
    return "group-lasso";
  case PenaltyKind::l1:
    return "l1";
  case PenaltyKind::sparse_group_lasso:
    return "sparse-group-lasso";
  }
  return "?";
}

void PenaltyOptions::validate() const {
  if (!(lambda >= 0) || !std::isfinite(lambda))
    throw InvalidArgument("penalty: lambda " + format_number(lambda, 6) +
                          " must be finite and >= 0");
  if (!(alpha >= 0 && alpha <= 1))
    throw InvalidArgument("penalty: alpha " + format_number(alpha, 6) +
                          " must be in [0, 1]");
  if (reweight_every < 0)
    throw InvalidArgument("penalty: reweight_every " + std::to_string(reweight_every) +
                          " must be >= 0");
  if (!(reweight_eps > 0) || !std::isfinite(reweight_eps))
    throw InvalidArgument("penalty: reweight_eps " + format_number(reweight_eps, 6) +
                          " must be finite and > 0");
}

namespace {

void check(std::size_t size, const GroupSet &groups, double t, const char *who) {
  if (!(t >= 0) || !std::isfinite(t))
    throw InvalidArgument(std::string(who) + ": the level " + format_number(t, 6) +
                          " must be finite and >= 0");
  for (const auto &g : groups.groups)
    if (!g.members.empty() &&
        (g.members.front() < 0 || static_cast<std::size_t>(g.members.back()) >= size))
      throw InvalidArgument(std::string(who) + ": group '" + g.name +
                            "' has a member outside the " + std::to_string(size) +
                            " parameters");
}

template <class T> double norm2(std::span<const T> theta, const ParameterGroup &g) {
  // Two accumulators in double: the norm of a float32 group at full precision.
  double s0 = 0, s1 = 0;
  const std::size_t m = g.members.size();
  std::size_t k = 0;
  for (; k + 1 < m; k += 2) {
    const double a = theta[static_cast<std::size_t>(g.members[k])];
    const double b = theta[static_cast<std::size_t>(g.members[k + 1])];
    s0 += a * a;
    s1 += b * b;
  }
  if (k < m) {
    const double a = theta[static_cast<std::size_t>(g.members[k])];
    s0 += a * a;
  }
  return std::sqrt(s0 + s1);
}

template <class T> T soft(T v, double t) {
  const double a = std::abs(double(v)) - t;
  return a > 0 ? static_cast<T>(std::copysign(a, double(v))) : T(0);
}

} // namespace

template <class T>
void prox_group_lasso(std::span<T> theta, const GroupSet &groups, double t) {
  check(theta.size(), groups, t, "prox_group_lasso");
  for (const auto &g : groups.groups) {
    const double nrm = norm2<T>(theta, g), level = t * g.weight;
    if (nrm <= level) {
      for (const index_t k : g.members)
        theta[static_cast<std::size_t>(k)] = T(0);
      continue;
    }
    const double scale = 1 - level / nrm;
    for (const index_t k : g.members)
      theta[static_cast<std::size_t>(k)] =
          static_cast<T>(double(theta[static_cast<std::size_t>(k)]) * scale);
  }
}

template <class T> void prox_l1(std::span<T> theta, const GroupSet &groups, double t) {
  check(theta.size(), groups, t, "prox_l1");
  std::vector<char> done(theta.size(), 0);
  for (const auto &g : groups.groups)
    for (const index_t k : g.members) {
      const auto i = static_cast<std::size_t>(k);
      if (done[i])
        continue;
      done[i] = 1;
      theta[i] = soft(theta[i], t);
    }
}

template <class T>
void prox_sparse_group_lasso(std::span<T> theta, const GroupSet &groups, double t,
                             double alpha) {
  if (!(alpha >= 0 && alpha <= 1))
    throw InvalidArgument("prox_sparse_group_lasso: alpha " + format_number(alpha, 6) +
                          " must be in [0, 1]");
  prox_l1(theta, groups, t * alpha);
  prox_group_lasso(theta, groups, t * (1 - alpha));
}

template <class T>
std::vector<double> group_norms(std::span<const T> theta, const GroupSet &groups) {
  check(theta.size(), groups, 0, "group_norms");
  std::vector<double> out;
  out.reserve(groups.groups.size());
  for (const auto &g : groups.groups)
    out.push_back(norm2<T>(theta, g));
  return out;
}

template <class T>
double penalty_value(std::span<const T> theta, const GroupSet &groups, PenaltyKind kind,
                     double alpha) {
  check(theta.size(), groups, 0, "penalty_value");
  double group = 0, l1 = 0;
  for (const auto &g : groups.groups)
    group += g.weight * norm2<T>(theta, g);
  std::vector<char> done(theta.size(), 0);
  for (const auto &g : groups.groups)
    for (const index_t k : g.members)
      if (!done[static_cast<std::size_t>(k)]) {
        done[static_cast<std::size_t>(k)] = 1;
        l1 += std::abs(double(theta[static_cast<std::size_t>(k)]));
      }
  switch (kind) {
  case PenaltyKind::group_lasso:
    return group;
  case PenaltyKind::l1:
    return l1;
  case PenaltyKind::sparse_group_lasso:
    return alpha * l1 + (1 - alpha) * group;
  }
  return 0;
}

template <class T>
ProximalPenalty<T>::ProximalPenalty(TrainableModel<T> &model, GroupSet groups,
                                    PenaltyOptions options)
    : model_(&model), groups_(std::move(groups)), options_(options) {
  options_.validate();
  check(static_cast<std::size_t>(model.size()), groups_, 0, "ProximalPenalty");
  for (const auto &g : groups_.groups)
    base_.push_back(g.weight);
  flat_.resize(static_cast<std::size_t>(model.size()));
}

template <class T> void ProximalPenalty<T>::reweight() {
  model_->read(flat_);
  const auto norms = group_norms<T>(flat_, groups_);
  for (std::size_t g = 0; g < groups_.groups.size(); ++g)
    groups_.groups[g].weight = base_[g] / (norms[g] + options_.reweight_eps);
}

template <class T>
void ProximalPenalty<T>::step(int epoch, std::int64_t step, double lr) {
  if (options_.lambda == 0)
    return;
  if (options_.reweight_every > 0 && step == 1 && epoch > 1 &&
      (epoch - 1) % options_.reweight_every == 0)
    reweight();
  model_->read(flat_);
  const double t = lr * options_.lambda;
  switch (options_.kind) {
  case PenaltyKind::group_lasso:
    prox_group_lasso<T>(flat_, groups_, t);
    break;
  case PenaltyKind::l1:
    prox_l1<T>(flat_, groups_, t);
    break;
  case PenaltyKind::sparse_group_lasso:
    prox_sparse_group_lasso<T>(flat_, groups_, t, options_.alpha);
    break;
  }
  model_->write(flat_);
}

template <class T> index_t ProximalPenalty<T>::zero_groups() const {
  std::vector<T> flat(static_cast<std::size_t>(model_->size()));
  model_->read(flat);
  index_t z = 0;
  for (const auto &g : groups_.groups) {
    bool zero = true;
    for (const index_t k : g.members)
      zero = zero && flat[static_cast<std::size_t>(k)] == T(0);
    z += zero ? 1 : 0;
  }
  return z;
}

template <class T> double ProximalPenalty<T>::value() const {
  std::vector<T> flat(static_cast<std::size_t>(model_->size()));
  model_->read(flat);
  return options_.lambda * penalty_value<T>(flat, groups_, options_.kind, options_.alpha);
}

#define TACIT_INSTANTIATE(T)                                                             \
  template void prox_group_lasso(std::span<T>, const GroupSet &, double);                \
  template void prox_l1(std::span<T>, const GroupSet &, double);                         \
  template void prox_sparse_group_lasso(std::span<T>, const GroupSet &, double, double); \
  template double penalty_value(std::span<const T>, const GroupSet &, PenaltyKind,       \
                                double);                                                 \
  template std::vector<double> group_norms(std::span<const T>, const GroupSet &);        \
  template class ProximalPenalty<T>;
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
