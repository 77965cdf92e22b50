// SGD (momentum, Nesterov), Adam, AdamW and learning-rate schedules.

#include <tacit/train/optimizer.hpp>

#include <tacit/core/error.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <numbers>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

namespace tacit::inline v1 {

std::string to_string(OptimizerKind k) {
  switch (k) {
  case OptimizerKind::sgd:
    return "sgd";
  case OptimizerKind::adam:
    return "adam";
  case OptimizerKind::adamw:
    return "adamw";
  }
  return "?";
}

OptimizerKind parse_optimizer(std::string_view s) {
  if (s == "sgd")
    return OptimizerKind::sgd;
  if (s == "adam")
    return OptimizerKind::adam;
  if (s == "adamw")
    return OptimizerKind::adamw;
  throw InvalidArgument("unknown optimizer '" + std::string(s) +
                        "' (expected sgd, adam or adamw)");
}

namespace {
void require(bool ok, const std::string &what) {
  if (!ok)
    throw InvalidArgument("optimizer: " + what);
}
std::string num(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}
} // namespace

void OptimizerOptions::validate() const {
  require(std::isfinite(lr) && lr >= 0, "learning rate " + num(lr) + " must be >= 0");
  require(std::isfinite(momentum) && momentum >= 0,
          "momentum " + num(momentum) + " must be >= 0");
  require(std::isfinite(weight_decay) && weight_decay >= 0,
          "weight decay " + num(weight_decay) + " must be >= 0");
  require(!nesterov || momentum > 0, "Nesterov momentum needs momentum > 0");
  require(beta1 >= 0 && beta1 < 1, "beta1 " + num(beta1) + " must be in [0, 1)");
  require(beta2 >= 0 && beta2 < 1, "beta2 " + num(beta2) + " must be in [0, 1)");
  require(std::isfinite(eps) && eps >= 0, "eps " + num(eps) + " must be >= 0");
}

double Schedule::rate(double base, int epoch, int epochs) const {
  switch (kind) {
  case ScheduleKind::constant:
    return base;
  case ScheduleKind::step:
    return base * std::pow(gamma, epoch / std::max(1, step_size));
  case ScheduleKind::cosine:
    if (epochs <= 0)
      return base;
    return eta_min +
           (base - eta_min) * (1 + std::cos(std::numbers::pi * epoch / epochs)) / 2;
  }
  return base;
}

Schedule Schedule::parse(std::string_view s) {
  auto number = [&](std::string_view t, double &out) {
    const auto r = std::from_chars(t.data(), t.data() + t.size(), out);
    if (r.ec != std::errc() || r.ptr != t.data() + t.size() || !std::isfinite(out))
      throw InvalidArgument("schedule '" + std::string(s) + "': '" + std::string(t) +
                            "' is not a number");
  };
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const auto colon = s.find(':', start);
    parts.push_back(
        s.substr(start, colon == std::string_view::npos ? s.npos : colon - start));
    if (colon == std::string_view::npos)
      break;
    start = colon + 1;
  }
  Schedule r;
  if (parts[0] == "constant" && parts.size() == 1)
    return r;
  if (parts[0] == "step" && (parts.size() == 2 || parts.size() == 3)) {
    r.kind = ScheduleKind::step;
    double v = 0;
    number(parts[1], v);
    if (v < 1 || v != std::floor(v))
      throw InvalidArgument("schedule '" + std::string(s) +
                            "': the step size must be a whole number of epochs >= 1");
    r.step_size = static_cast<int>(v);
    if (parts.size() == 3)
      number(parts[2], r.gamma);
    if (!(r.gamma > 0))
      throw InvalidArgument("schedule '" + std::string(s) + "': gamma must be > 0");
    return r;
  }
  if (parts[0] == "cosine" && parts.size() <= 2) {
    r.kind = ScheduleKind::cosine;
    if (parts.size() == 2)
      number(parts[1], r.eta_min);
    return r;
  }
  throw InvalidArgument("unknown schedule '" + std::string(s) +
                        "' (expected constant, step:EPOCHS[:GAMMA] or cosine[:ETA_MIN])");
}

std::string Schedule::to_string() const {
  switch (kind) {
  case ScheduleKind::constant:
    return "constant";
  case ScheduleKind::step:
    return "step:" + std::to_string(step_size) + ":" + num(gamma);
  case ScheduleKind::cosine:
    return "cosine:" + num(eta_min);
  }
  return "?";
}

template <class T>
Optimizer<T>::Optimizer(OptimizerOptions options, index_t size)
    : options_(options), size_(size) {
  options_.validate();
  if (size < 0)
    throw InvalidArgument("optimizer: negative size");
  const bool momentum = options_.kind == OptimizerKind::sgd && options_.momentum > 0;
  if (momentum || options_.kind != OptimizerKind::sgd)
    m_.assign(static_cast<std::size_t>(size), T(0));
  if (options_.kind != OptimizerKind::sgd)
    v_.assign(static_cast<std::size_t>(size), T(0));
}

template <class T>
void Optimizer<T>::step(std::span<const std::span<T>> params, std::span<const T> grad,
                        double lr) {
  index_t total = 0;
  for (const auto &p : params)
    total += static_cast<index_t>(p.size());
  if (total != size_ || static_cast<index_t>(grad.size()) != size_)
    throw InvalidArgument("optimizer step: " + std::to_string(total) +
                          " parameters and " + std::to_string(grad.size()) +
                          " gradient values, expected " + std::to_string(size_));
  if (!(lr >= 0) || !std::isfinite(lr))
    throw InvalidArgument("optimizer step: learning rate " + num(lr));
  ++steps_;
  const auto &o = options_;
  const T wd = static_cast<T>(o.weight_decay), mu = static_cast<T>(o.momentum);
  const T rate = static_cast<T>(lr);
  const bool first = steps_ == 1;
  const double bc1 = 1 - std::pow(o.beta1, double(steps_));
  const double bc2 = 1 - std::pow(o.beta2, double(steps_));
  const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
  const T step_size = static_cast<T>(lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  const T eps = static_cast<T>(o.eps);
  const T decay = static_cast<T>(1 - lr * o.weight_decay);
  index_t offset = 0;
  for (const auto &p : params) {
    const index_t n = static_cast<index_t>(p.size());
    T *theta = p.data();
    const T *g = grad.data() + offset;
    T *m = m_.empty() ? nullptr : m_.data() + offset;
    T *v = v_.empty() ? nullptr : v_.data() + offset;
    auto body = [&](index_t i0, index_t i1) {
      switch (o.kind) {
      case OptimizerKind::sgd:
        for (index_t i = i0; i < i1; ++i) {
          T d = g[i];
          if (wd != T(0))
            d += wd * theta[i];
          if (m) {
            m[i] = first ? d : mu * m[i] + d;
            d = o.nesterov ? d + mu * m[i] : m[i];
          }
          theta[i] -= rate * d;
        }
        break;
      case OptimizerKind::adam:
      case OptimizerKind::adamw:
        for (index_t i = i0; i < i1; ++i) {
          T d = g[i];
          if (o.kind == OptimizerKind::adamw)
            theta[i] *= decay;
          else if (wd != T(0))
            d += wd * theta[i];
          m[i] = m[i] * b1 + (T(1) - b1) * d;
          v[i] = v[i] * b2 + (T(1) - b2) * d * d;
          const T denom = std::sqrt(v[i]) / bc2_sqrt + eps;
          theta[i] -= step_size * (m[i] / denom);
        }
        break;
      }
    };
    if (n < 65536)
      body(0, n);
    else
      tbb::parallel_for(
          tbb::blocked_range<index_t>(0, n, 16384),
          [&](const tbb::blocked_range<index_t> &r) { body(r.begin(), r.end()); });
    offset += n;
  }
}

namespace {
constexpr char state_magic[8] = {'T', 'A', 'C', 'I', 'T', 'O', 'P', 'T'};
}

template <class T> std::string Optimizer<T>::save_state() const {
  std::string out(state_magic, 8);
  auto put = [&](const void *p, std::size_t n) {
    if (n > 0) // an empty moment vector's data() may be null
      out.append(static_cast<const char *>(p), n);
  };
  const std::uint32_t kind = static_cast<std::uint32_t>(options_.kind), bytes = sizeof(T);
  const std::int64_t size = size_, steps = steps_;
  const std::uint64_t nm = m_.size(), nv = v_.size();
  put(&kind, 4);
  put(&bytes, 4);
  put(&size, 8);
  put(&steps, 8);
  put(&nm, 8);
  put(&nv, 8);
  put(m_.data(), m_.size() * sizeof(T));
  put(v_.data(), v_.size() * sizeof(T));
  return out;
}

template <class T> void Optimizer<T>::load_state(std::string_view in) {
  std::size_t at = 0;
  auto get = [&](void *p, std::size_t n) {
    if (in.size() - at < n)
      throw InvalidArgument("optimizer state: truncated");
    if (n > 0) // an empty moment vector's data() may be null
      std::memcpy(p, in.data() + at, n);
    at += n;
  };
  char magic[8];
  get(magic, 8);
  if (std::memcmp(magic, state_magic, 8) != 0)
    throw InvalidArgument("optimizer state: not an optimizer state");
  std::uint32_t kind = 0, bytes = 0;
  std::int64_t size = 0, steps = 0;
  std::uint64_t nm = 0, nv = 0;
  get(&kind, 4);
  get(&bytes, 4);
  get(&size, 8);
  get(&steps, 8);
  get(&nm, 8);
  get(&nv, 8);
  if (kind != static_cast<std::uint32_t>(options_.kind) || bytes != sizeof(T) ||
      size != size_ || nm != m_.size() || nv != v_.size() || steps < 0)
    throw InvalidArgument("optimizer state: saved for another optimizer, precision or "
                          "model size (" +
                          to_string(static_cast<OptimizerKind>(kind)) + ", " +
                          std::to_string(size) + " parameters)");
  get(m_.data(), m_.size() * sizeof(T));
  get(v_.data(), v_.size() * sizeof(T));
  if (at != in.size())
    throw InvalidArgument("optimizer state: trailing bytes");
  steps_ = steps;
}

template class Optimizer<float>;
template class Optimizer<double>;

} // namespace tacit::inline v1
