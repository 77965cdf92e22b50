// Attacks: sparse top-k attack on rows of S and l_inf PGD, with gradients
// through the equilibrium (the LP attack is in lp_attack.cpp).

#include <tacit/analysis/attack.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <tacit/analysis/sensitivity.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/solve/solve.hpp>

#include "analysis/detail/attack_common.hpp"

namespace tacit::inline v1 {

using namespace detail;

SignMethod parse_sign_method(std::string_view s) {
  if (s == "random")
    return SignMethod::random;
  if (s == "gradient")
    return SignMethod::gradient;
  throw InvalidArgument("unknown sign method '" + std::string(s) +
                        "' (expected random or gradient)");
}

std::string to_string(SignMethod m) {
  return m == SignMethod::random ? "random" : "gradient";
}

template <class T>
std::vector<T> margin_gradient(const Model<T> &model, std::span<const T> u, int label,
                               int other, std::vector<T> *y, Execution exec) {
  return exec.run([&]() -> std::vector<T> {
    if (static_cast<index_t>(u.size()) != model.inputs())
      throw InvalidArgument(
          "margin_gradient: u has " + std::to_string(u.size()) +
          " entries, the model has p = " + std::to_string(model.inputs()));
    if (label < 0 || label >= model.outputs() || other < 0 || other >= model.outputs())
      throw InvalidArgument("margin_gradient: outputs " + std::to_string(label) + ", " +
                            std::to_string(other) + " not in [0, " +
                            std::to_string(model.outputs()) + ")");
    Evaluator<T> ev(model);
    std::vector<T> yy;
    auto g = ev.gradient(u, label, other, yy);
    if (y)
      *y = std::move(yy);
    return g;
  });
}

template <class T>
AttackSummary topk_attack(const Model<T> &model, const Batch<T> &U,
                          std::span<const int> labels, const TopKOptions &options,
                          const std::function<void(index_t, index_t)> &progress) {
  return options.exec.run([&]() -> AttackSummary {
    const auto start = std::chrono::steady_clock::now();
    check_dataset(model, U, labels, "top-k attack");
    const index_t p = model.inputs(), q = model.outputs(), count = U.cols();
    index_t kmax = 0;
    for (const auto k : options.k) {
      if (k < 0 || k > p)
        throw InvalidArgument("top-k attack: k = " + std::to_string(k) +
                              " is not in [0, " + std::to_string(p) + "]");
      kmax = std::max(kmax, k);
    }
    // Rows of S and their top entries.
    SensitivityOperator<T> S(model);
    const std::vector<T> rows = S.rows_dense();
    std::vector<std::vector<index_t>> top(q);
    index_t heavy = 0;
    double heavy_mass = -1;
    for (index_t r = 0; r < q; ++r) {
      const T *row = rows.data() + r * p;
      top[r] =
          top_entries(std::span<const T>(row, static_cast<std::size_t>(p)), kmax).indices;
      double mass = 0;
      for (index_t j = 0; j < p; ++j)
        mass += row[j];
      if (mass > heavy_mass) {
        heavy_mass = mass;
        heavy = r;
      }
    }
    const std::vector<int> clean = predictions(model, U);
    // Signs per input.
    std::vector<T> sign(p * count, T(1));
    tbb::enumerable_thread_specific<std::optional<Evaluator<T>>> evaluators;
    std::atomic<index_t> done{0};
    std::mutex mutex;
    tbb::parallel_for(index_t(0), count, [&](index_t j) {
      std::vector<T> u(p);
      U.get_column(j, u);
      if (options.signs == SignMethod::random) {
        std::uint64_t state = mix(options.seed * 0x100000001b3ull + std::uint64_t(j));
        for (index_t i = 0; i < p; ++i)
          sign[j * p + i] = uniform01(state) < 0.5 ? T(-1) : T(1);
      } else {
        auto &ev = evaluators.local();
        if (!ev)
          ev.emplace(model);
        std::vector<T> y(q), x;
        ev->eval(u, x, y);
        const int other = runner_up<T>(y, labels[j]);
        const auto g = ev->gradient(u, labels[j], other, y);
        for (index_t i = 0; i < p; ++i)
          sign[j * p + i] = g[i] > T(0) ? T(-1) : T(1);
      }
      if (progress) {
        const index_t d = ++done;
        std::lock_guard<std::mutex> lock(mutex);
        progress(d, count);
      }
    });

    AttackSummary out;
    out.count = count;
    for (index_t j = 0; j < count; ++j)
      out.clean_correct += clean[j] == labels[j] ? 1 : 0;
    Batch<T> V(p, count);
    std::vector<T> u(p);
    for (const auto k : options.k) {
      double changed = 0;
      for (index_t j = 0; j < count; ++j) {
        U.get_column(j, u);
        const auto &idx = top[options.max_mass_row ? heavy : labels[j]];
        for (index_t t = 0; t < k; ++t) {
          const index_t i = idx[t];
          const T v = clip(u[i] + sign[j * p + i] * static_cast<T>(options.magnitude),
                           options.domain_lo, options.domain_hi);
          changed += v != u[i] ? 1 : 0;
          u[i] = v;
        }
        V.set_column(j, u);
      }
      const auto pred = predictions(model, V);
      index_t correct = 0;
      for (index_t j = 0; j < count; ++j)
        correct += pred[j] == labels[j] && clean[j] == labels[j] ? 1 : 0;
      out.budgets.push_back(double(k));
      out.correct.push_back(correct);
      out.mean_changed.push_back(count ? changed / double(count) : 0.0);
    }
    out.seconds = since(start);
    return out;
  });
}

template <class T>
PgdResult<T> pgd_attack(const Model<T> &model, std::span<const T> u0, int label,
                        const PgdOptions &options) {
  return options.exec.run([&]() -> PgdResult<T> {
    const index_t p = model.inputs();
    if (static_cast<index_t>(u0.size()) != p)
      throw InvalidArgument("PGD: u0 has " + std::to_string(u0.size()) +
                            " entries, the model has p = " + std::to_string(p));
    if (label < 0 || label >= model.outputs())
      throw InvalidArgument("PGD: label " + std::to_string(label) + " out of range");
    if (!(options.eps >= 0) || options.steps < 0 || options.restarts < 0)
      throw InvalidArgument("PGD: eps must be >= 0, steps and restarts >= 0");
    const auto box =
        linf_box<T>(u0, static_cast<T>(options.eps), static_cast<T>(options.domain_lo),
                    static_cast<T>(options.domain_hi));
    const double alpha = options.step_size > 0
                             ? options.step_size
                             : 2.5 * options.eps / std::max(1, options.steps);
    Evaluator<T> ev(model);
    PgdResult<T> best;
    best.margin = std::numeric_limits<double>::infinity();
    std::uint64_t state = mix(options.seed);
    std::vector<T> u(p), x, y;
    const auto margin_of = [&](const std::vector<T> &yy) {
      double m = std::numeric_limits<double>::infinity();
      for (std::size_t k = 0; k < yy.size(); ++k)
        if (static_cast<int>(k) != label)
          m = std::min(m, double(yy[label]) - double(yy[k]));
      return m;
    };
    for (int r = 0; r <= options.restarts && !best.success; ++r) {
      for (index_t i = 0; i < p; ++i)
        u[i] = r == 0 ? u0[i]
                      : box.lower[i] + static_cast<T>(uniform01(state)) *
                                           (box.upper[i] - box.lower[i]);
      for (int s = 0; s <= options.steps; ++s) {
        ev.eval(u, x, y);
        const double m = margin_of(y);
        if (m < best.margin) {
          best.margin = m;
          best.u = u;
        }
        if (argmax<T>(y) != label) {
          best.success = true;
          best.u = u;
          break;
        }
        if (s == options.steps)
          break;
        const int other = runner_up<T>(y, label);
        const auto g = ev.gradient(u, label, other, y);
        for (index_t i = 0; i < p; ++i) {
          const T step = g[i] > T(0) ? T(-alpha) : (g[i] < T(0) ? T(alpha) : T(0));
          u[i] = std::min(std::max(u[i] + step, box.lower[i]), box.upper[i]);
        }
      }
    }
    return best;
  });
}

#define TACIT_INSTANTIATE(T)                                                             \
  template std::vector<T> margin_gradient<T>(const Model<T> &, std::span<const T>, int,  \
                                             int, std::vector<T> *, Execution);          \
  template AttackSummary topk_attack<T>(const Model<T> &, const Batch<T> &,              \
                                        std::span<const int>, const TopKOptions &,       \
                                        const std::function<void(index_t, index_t)> &);  \
  template struct PgdResult<T>;                                                          \
  template PgdResult<T> pgd_attack<T>(const Model<T> &, std::span<const T>, int,         \
                                      const PgdOptions &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
