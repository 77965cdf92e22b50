// Attacks: sparse top-k attack on rows of S, the LP attack (COIN-OR CLP) and
// l_inf PGD, with gradients through the equilibrium.

#include <tacit/attack.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>

#include <ClpSimplex.hpp>
#include <CoinPackedMatrix.hpp>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <tacit/csr.hpp>
#include <tacit/error.hpp>
#include <tacit/sensitivity.hpp>
#include <tacit/solve.hpp>

#include "detail/bounds_common.hpp"

namespace tacit {

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

namespace {

/// splitmix64: deterministic per-input random streams.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
double uniform01(std::uint64_t &state) {
  state = mix(state);
  return double(state >> 11) * 0x1.0p-53;
}

template <class T> int argmax(std::span<const T> y) {
  int best = 0;
  for (std::size_t k = 1; k < y.size(); ++k)
    if (y[k] > y[best])
      best = static_cast<int>(k);
  return best;
}

/// Runner-up class: argmax over k != label.
template <class T> int runner_up(std::span<const T> y, int label) {
  int best = -1;
  for (std::size_t k = 0; k < y.size(); ++k)
    if (static_cast<int>(k) != label && (best < 0 || y[k] > y[best]))
      best = static_cast<int>(k);
  return best;
}

template <class T> T clip(T v, double lo, double hi) {
  if (lo > hi)
    return v;
  return std::min(std::max(v, static_cast<T>(lo)), static_cast<T>(hi));
}

/// Evaluates a model on single inputs and differentiates margins.
template <class T> class Evaluator {
public:
  explicit Evaluator(const Model<T> &m) : model_(m), solver_(m), U_(m.inputs(), 1) {
    for (const auto &a : m.activations())
      acts_.push_back(detail::StateAct::from(a));
  }

  /// y(u); x receives the states.
  void eval(std::span<const T> u, std::vector<T> &x, std::vector<T> &y) {
    U_.set_column(0, u);
    Batch<T> Y;
    solver_.predict(U_, X_, Y);
    x.resize(model_.states());
    y.resize(model_.outputs());
    X_.get_column(0, x);
    Y.get_column(0, y);
  }

  /// Gradient of g^T y at u, g = e_label - e_other.
  std::vector<T> gradient(std::span<const T> u, int label, int other, std::vector<T> &y) {
    std::vector<T> x;
    eval(u, x, y);
    const index_t n = model_.states(), p = model_.inputs(), q = model_.outputs();
    std::vector<T> z(n), d(n);
    model_.B().apply(Mode::normal, T(1), u, T(0), std::span<T>(z));
    model_.A().apply(Mode::normal, T(1), std::span<const T>(x), T(1), std::span<T>(z));
    const auto b = model_.bias_x();
    for (index_t i = 0; i < n; ++i)
      d[i] = acts_[i].derivative(z[i] + b[i]);
    std::vector<T> g(q, T(0));
    g[label] += T(1);
    g[other] -= T(1);
    std::vector<T> w(n), v(n), pv(n), next(n);
    model_.C().apply(Mode::transpose, T(1), std::span<const T>(g), T(0), std::span<T>(w));
    v = w;
    bool done = false;
    for (int it = 0; it < 5000 && !done; ++it) {
      for (index_t i = 0; i < n; ++i)
        pv[i] = d[i] * v[i];
      next = w;
      model_.A().apply(Mode::transpose, T(1), std::span<const T>(pv), T(1),
                       std::span<T>(next));
      double diff = 0, scale = 0;
      for (index_t i = 0; i < n; ++i) {
        diff = std::max(diff, std::abs(double(next[i]) - double(v[i])));
        scale = std::max(scale, std::abs(double(next[i])));
      }
      v.swap(next);
      done = diff <= 1e-13 * scale;
    }
    if (!done)
      throw InvalidArgument("margin gradient: the adjoint iteration did not converge");
    for (index_t i = 0; i < n; ++i)
      pv[i] = d[i] * v[i];
    std::vector<T> grad(p, T(0));
    model_.B().apply(Mode::transpose, T(1), std::span<const T>(pv), T(0),
                     std::span<T>(grad));
    if (model_.D())
      model_.D()->apply(Mode::transpose, T(1), std::span<const T>(g), T(1),
                        std::span<T>(grad));
    return grad;
  }

  const Model<T> &model() const { return model_; }

private:
  const Model<T> &model_;
  EquilibriumSolver<T> solver_;
  std::vector<detail::StateAct> acts_;
  Batch<T> U_, X_;
};

template <class T>
void check_dataset(const Model<T> &model, const Batch<T> &U, std::span<const int> labels,
                   const char *what) {
  if (U.rows() != model.inputs())
    throw InvalidArgument(std::string(what) + ": inputs have " +
                          std::to_string(U.rows()) +
                          " rows, the model has p = " + std::to_string(model.inputs()));
  if (static_cast<index_t>(labels.size()) != U.cols())
    throw InvalidArgument(std::string(what) + ": " + std::to_string(labels.size()) +
                          " labels for " + std::to_string(U.cols()) + " inputs");
  for (std::size_t j = 0; j < labels.size(); ++j)
    if (labels[j] < 0 || labels[j] >= model.outputs())
      throw InvalidArgument(std::string(what) + ": label " + std::to_string(labels[j]) +
                            " of input " + std::to_string(j + 1) + " is not in [0, " +
                            std::to_string(model.outputs()) + ")");
}

template <class T>
std::vector<int> predictions(const Model<T> &model, const Batch<T> &U) {
  EquilibriumSolver<T> solver(model);
  Batch<T> X, Y;
  solver.predict(U, X, Y);
  std::vector<int> out(U.cols());
  std::vector<T> y(model.outputs());
  for (index_t j = 0; j < U.cols(); ++j) {
    Y.get_column(j, y);
    out[j] = argmax<T>(y);
  }
  return out;
}

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

template <class T>
std::vector<T> margin_gradient(const Model<T> &model, std::span<const T> u, int label,
                               int other, std::vector<T> *y) {
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
}

template <class T>
AttackSummary topk_attack(const Model<T> &model, const Batch<T> &U,
                          std::span<const int> labels, const TopKOptions &options,
                          const std::function<void(index_t, index_t)> &progress) {
  const auto start = std::chrono::steady_clock::now();
  check_dataset(model, U, labels, "top-k attack");
  const index_t p = model.inputs(), q = model.outputs(), count = U.cols();
  index_t kmax = 0;
  for (const auto k : options.k) {
    if (k < 0 || k > p)
      throw InvalidArgument("top-k attack: k = " + std::to_string(k) + " is not in [0, " +
                            std::to_string(p) + "]");
    kmax = std::max(kmax, k);
  }
  // Rows of S and their top entries.
  SensitivityOperator<T> S(model);
  const std::vector<T> rows = S.rows_dense();
  std::vector<std::vector<index_t>> top(q);
  index_t heavy = 0;
  double heavy_mass = -1;
  for (index_t r = 0; r < q; ++r) {
    std::vector<index_t> idx(p);
    std::iota(idx.begin(), idx.end(), index_t(0));
    const T *row = rows.data() + r * p;
    std::stable_sort(idx.begin(), idx.end(),
                     [&](index_t a, index_t b) { return row[a] > row[b]; });
    idx.resize(kmax);
    top[r] = std::move(idx);
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
}

template <class T>
AttackSummary lp_attack(const BoundAnalyzer<T> &analyzer, const Batch<T> &U,
                        std::span<const int> labels, const LpAttackOptions &options,
                        const std::function<void(index_t, index_t)> &progress) {
  const auto start = std::chrono::steady_clock::now();
  const Model<T> &model = analyzer.model();
  check_dataset(model, U, labels, "LP attack");
  if (!(options.sigma > 0))
    throw InvalidArgument("LP attack: sigma must be > 0");
  const index_t n = model.states(), p = model.inputs(), q = model.outputs(),
                count = U.cols();
  std::optional<CsrMatrix<T>> sa, sb, sc, sd;
  const auto csr_of = [](const LinearOperator<T> &op, std::optional<CsrMatrix<T>> &s) {
    s.emplace(op.to_csr());
    return &*s;
  };
  const CsrMatrix<T> *A = csr_of(model.A(), sa), *B = csr_of(model.B(), sb),
                     *C = csr_of(model.C(), sc);
  const CsrMatrix<T> *D = model.D() ? csr_of(*model.D(), sd) : nullptr;
  const auto Cd = C->to_dense(); // q x n, q small
  const std::vector<T> Dd = D ? D->to_dense() : std::vector<T>();
  std::vector<detail::StateAct> acts;
  for (const auto &a : model.activations())
    acts.push_back(detail::StateAct::from(a));
  const auto bx = model.bias_x();

  const std::size_t nb = options.k.size();
  std::vector<std::vector<char>> broken(count, std::vector<char>(nb, 0));
  std::vector<std::vector<double>> changed(count, std::vector<double>(nb, 0.0));
  const std::vector<int> clean = predictions(model, U);
  tbb::enumerable_thread_specific<std::optional<Evaluator<T>>> evaluators;
  std::atomic<index_t> done{0};
  std::mutex mutex;

  tbb::parallel_for(index_t(0), count, [&](index_t j) {
    const int c = labels[j];
    std::vector<T> u0(p);
    U.get_column(j, u0);
    if (clean[j] == c) {
      auto &ev = evaluators.local();
      if (!ev)
        ev.emplace(model);
      std::vector<T> x0, y0;
      ev->eval(u0, x0, y0);
      const auto nom = analyzer.nominal(std::span<const T>(u0), std::span<const T>(x0));
      const auto box = linf_box<T>(u0, static_cast<T>(options.sigma),
                                   static_cast<T>(options.domain_lo),
                                   static_cast<T>(options.domain_hi));
      const auto sb_ = analyzer.interval_bounds(nom, box);
      // Columns: x (n), d+ (p), d- (p). Rows: lower and upper envelope per
      // state, then the l1 budget.
      const int cols = int(n + 2 * p), rows = int(2 * n + 1);
      std::vector<int> ri, ci;
      std::vector<double> vi;
      std::vector<double> rlo(rows), rhi(rows), clo(cols), chi(cols);
      std::vector<double> bu0(n, 0.0);
      const auto rp = B->row_ptr();
      const auto bv = B->values();
      for (index_t i = 0; i < n; ++i) {
        double s = double(bx[i]);
        for (auto t = rp[i]; t < rp[i + 1]; ++t)
          s += double(bv[t]) * double(u0[B->column(t)]);
        bu0[i] = s;
      }
      const auto arp = A->row_ptr();
      const auto av = A->values();
      const double inf = COIN_DBL_MAX;
      for (index_t i = 0; i < n; ++i) {
        const auto r = acts[i].relax(sb_.z_lower[i], sb_.z_upper[i]);
        for (int side = 0; side < 2; ++side) {
          const int row = int(2 * i + side);
          const double s = side == 0 ? double(r.lo_slope) : double(r.up_slope);
          const double icpt = side == 0 ? double(r.lo_icpt) : double(r.up_icpt);
          // x_i - s (A_i x + B_i (d+ - d-)) (>= or <=) icpt + s (B_i u0 + b_i)
          double diag = 1;
          for (auto t = arp[i]; t < arp[i + 1]; ++t) {
            const index_t col = A->column(t);
            if (col == i) {
              diag -= s * double(av[t]);
              continue;
            }
            ri.push_back(row);
            ci.push_back(int(col));
            vi.push_back(-s * double(av[t]));
          }
          ri.push_back(row);
          ci.push_back(int(i));
          vi.push_back(diag);
          if (s != 0)
            for (auto t = rp[i]; t < rp[i + 1]; ++t) {
              const int col = int(B->column(t));
              ri.push_back(row);
              ci.push_back(int(n) + col);
              vi.push_back(-s * double(bv[t]));
              ri.push_back(row);
              ci.push_back(int(n + p) + col);
              vi.push_back(s * double(bv[t]));
            }
          const double rhs = icpt + s * bu0[i];
          rlo[row] = side == 0 ? rhs : -inf;
          rhi[row] = side == 0 ? inf : rhs;
        }
        clo[i] = double(sb_.x_lower[i]);
        chi[i] = double(sb_.x_upper[i]);
      }
      for (index_t t = 0; t < p; ++t) {
        clo[n + t] = clo[n + p + t] = 0;
        chi[n + t] = double(box.upper[t] - u0[t]);
        chi[n + p + t] = double(u0[t] - box.lower[t]);
        ri.push_back(int(2 * n));
        ci.push_back(int(n + t));
        vi.push_back(1.0 / options.sigma);
        ri.push_back(int(2 * n));
        ci.push_back(int(n + p + t));
        vi.push_back(1.0 / options.sigma);
      }
      rlo[2 * n] = -inf;
      rhi[2 * n] = 0;
      CoinPackedMatrix M(false, ri.data(), ci.data(), vi.data(), CoinBigIndex(vi.size()));
      std::vector<double> obj(cols, 0.0);
      ClpSimplex lp;
      lp.setLogLevel(0);
      lp.loadProblem(M, clo.data(), chi.data(), obj.data(), rlo.data(), rhi.data());
      lp.setOptimizationDirection(-1); // maximise
      // Targets by nominal output, highest first.
      std::vector<int> order;
      for (int k = 0; k < q; ++k)
        if (k != c)
          order.push_back(k);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return y0[a] > y0[b]; });
      order.resize(std::min<std::size_t>(order.size(), std::max(1, options.targets)));
      std::vector<T> u(p), x, y;
      for (std::size_t bi = 0; bi < nb; ++bi) {
        lp.setRowUpper(int(2 * n), options.k[bi]);
        for (const int tgt : order) {
          for (index_t i = 0; i < n; ++i)
            lp.setObjectiveCoefficient(int(i),
                                       double(Cd[tgt * n + i]) - double(Cd[c * n + i]));
          for (index_t t = 0; t < p; ++t) {
            const double g = D ? double(Dd[tgt * p + t]) - double(Dd[c * p + t]) : 0.0;
            lp.setObjectiveCoefficient(int(n + t), g);
            lp.setObjectiveCoefficient(int(n + p + t), -g);
          }
          lp.primal();
          if (lp.status() != 0)
            continue;
          const double *sol = lp.primalColumnSolution();
          double ch = 0;
          for (index_t t = 0; t < p; ++t) {
            u[t] = clip(static_cast<T>(double(u0[t]) + sol[n + t] - sol[n + p + t]),
                        options.domain_lo, options.domain_hi);
            ch += std::abs(double(u[t]) - double(u0[t])) > 1e-9 ? 1 : 0;
          }
          ev->eval(u, x, y);
          changed[j][bi] = std::max(changed[j][bi], ch);
          if (argmax<T>(y) != c) {
            broken[j][bi] = 1;
            break;
          }
        }
      }
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
  for (std::size_t bi = 0; bi < nb; ++bi) {
    index_t correct = 0, attacked = 0;
    double ch = 0;
    for (index_t j = 0; j < count; ++j) {
      if (clean[j] != labels[j])
        continue;
      ++attacked;
      ch += changed[j][bi];
      correct += broken[j][bi] ? 0 : 1;
    }
    out.budgets.push_back(options.k[bi]);
    out.correct.push_back(correct);
    out.mean_changed.push_back(attacked ? ch / double(attacked) : 0.0);
  }
  out.seconds = since(start);
  return out;
}

template <class T>
PgdResult<T> pgd_attack(const Model<T> &model, std::span<const T> u0, int label,
                        const PgdOptions &options) {
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
}

#define TACIT_INSTANTIATE(T)                                                             \
  template std::vector<T> margin_gradient<T>(const Model<T> &, std::span<const T>, int,  \
                                             int, std::vector<T> *);                     \
  template AttackSummary topk_attack<T>(const Model<T> &, const Batch<T> &,              \
                                        std::span<const int>, const TopKOptions &,       \
                                        const std::function<void(index_t, index_t)> &);  \
  template AttackSummary lp_attack<T>(const BoundAnalyzer<T> &, const Batch<T> &,        \
                                      std::span<const int>, const LpAttackOptions &,     \
                                      const std::function<void(index_t, index_t)> &);    \
  template struct PgdResult<T>;                                                          \
  template PgdResult<T> pgd_attack<T>(const Model<T> &, std::span<const T>, int,         \
                                      const PgdOptions &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit
