// The LP attack of the implicit-model literature on top of COIN-OR CLP
// (component tacit::lp).

#include <tacit/analysis/attack.hpp>
#include <tacit/analysis/sensitivity.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>

#include <ClpSimplex.hpp>
#include <CoinPackedMatrix.hpp>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>

#include "analysis/detail/attack_common.hpp"

namespace tacit::inline v1 {

using namespace detail;

template <class T>
AttackSummary lp_attack(const BoundAnalyzer<T> &analyzer, const Batch<T> &U,
                        std::span<const int> labels, const LpAttackOptions &options,
                        const std::function<void(index_t, index_t)> &progress) {
  return options.exec.run([&]() -> AttackSummary {
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
        CoinPackedMatrix M(false, ri.data(), ci.data(), vi.data(),
                           CoinBigIndex(vi.size()));
        std::vector<double> obj(cols, 0.0);
        ClpSimplex lp;
        lp.setLogLevel(0);
        lp.loadProblem(M, clo.data(), chi.data(), obj.data(), rlo.data(), rhi.data());
        lp.setOptimizationDirection(-1); // maximise
        // Targets by nominal output, highest first (ties by class index).
        std::vector<int> order;
        for (const index_t k :
             top_entries(std::span<const T>(y0.data(), y0.size()), q).indices)
          if (k != c)
            order.push_back(int(k));
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
  });
}

#define TACIT_INSTANTIATE(T)                                                             \
  template AttackSummary lp_attack<T>(const BoundAnalyzer<T> &, const Batch<T> &,        \
                                      std::span<const int>, const LpAttackOptions &,     \
                                      const std::function<void(index_t, index_t)> &);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
