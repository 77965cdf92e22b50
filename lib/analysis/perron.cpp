// Certified enclosure of lambda_PF(|A|).
//
// lambda_PF(|A|) is the largest spectral radius of the diagonal blocks of the
// SCC decomposition. A 1x1 block contributes |a_ii| exactly. For a cyclic
// block we run a shifted power iteration v <- (|A_BB| + s I) v on the block
// (the shift makes irreducible, possibly periodic, blocks primitive) and take
// Collatz-Wielandt bounds from every positive iterate:
//     min_i (|A_BB| v)_i / v_i  <=  lambda_PF(|A_BB|)  <=  max_i (|A_BB| v)_i / v_i.
// The shift cancels out of these ratios, so it only steers the iteration.
// Every term of (|A_BB| v)_i is nonnegative, so the computed row sum is within
// a relative factor 1 +- gamma_k (k terms, gamma_k = k u / (1 - k u)) of the
// exact one, plus an absolute k * 2^-1075 should products underflow; the
// bounds are widened by that, and by the roundings of the ratio itself, so
// they hold for the exact matrix whatever the vector: certification never
// depends on how good the iterate is. When the power iteration converges
// slowly, a few shift-invert (Noda) steps with a sparse LU factorisation
// provide better vectors.

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/format.hpp>
#include <tacit/operators/structured.hpp>

#include "analysis/detail/perron.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <type_traits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>

extern "C" {
#include <klu.h>
}

namespace tacit::inline v1 {

std::string to_string(PerronStatus s) {
  switch (s) {
  case PerronStatus::tight:
    return "tight";
  case PerronStatus::budget_exhausted:
    return "budget_exhausted";
  case PerronStatus::decided:
    return "decided";
  case PerronStatus::stalled:
    return "stalled";
  }
  return "?";
}

namespace {

constexpr double unit_roundoff = 0x1p-53;
constexpr double infinity = std::numeric_limits<double>::infinity();
constexpr double denorm_min = std::numeric_limits<double>::denorm_min();

/// Blocks at least this large run their vector passes in parallel.
constexpr index_t parallel_pass_rows = index_t(1) << 15;
constexpr index_t pass_grain = index_t(1) << 13;

/// Shift-invert is skipped when the LU factors would exceed this many
/// nonzeros (relative to the block and in absolute terms).
constexpr double fill_factor_limit = 20;
constexpr double fill_absolute_limit = 5e7;
constexpr int shift_invert_max_steps = 200;
/// Steps shift-invert typically needs (for the cost comparison).
constexpr double shift_invert_expected_steps = 12;

/// Collatz-Wielandt ratios of one vector, before the final outward rounding,
/// and the max of the next iterate.
struct PassResult {
  double lower = infinity; ///< min over v_i > 0 of the widened-down ratio
  double upper = 0;        ///< max over i of the widened-up ratio
  double next_max = 0;
  bool zero_component = false;

  void merge(const PassResult &o) {
    lower = std::min(lower, o.lower);
    upper = std::max(upper, o.upper);
    next_max = std::max(next_max, o.next_max);
    zero_component = zero_component || o.zero_component;
  }
};

/// Rows [r0, r1): widened ratios of y = fl(M v) to v and, when `next` is
/// given, the next iterate next = (y + shift v) * scale. Branch-free so that
/// it vectorises.
inline void pass_rows(index_t r0, index_t r1, const std::int64_t *__restrict row_ptr,
                      const double *__restrict y, const double *__restrict v,
                      double shift, double scale, double *__restrict next,
                      PassResult &res) {
  constexpr double u = unit_roundoff;
  double lower = res.lower, upper = res.upper, next_max = res.next_max;
  bool zero = res.zero_component;
  for (index_t i = r0; i < r1; ++i) {
    const double k = static_cast<double>(row_ptr[i + 1] - row_ptr[i]);
    // k u (1 + 4 k u) >= k u / (1 - 2 k u) bounds both 1/(1 - gamma_k) - 1
    // and 1 - 1/(1 + gamma_k) (k u < 0.1); 6u more covers the roundings of
    // the sum, the ratio and the widening itself.
    const double rel = k * u * (1 + 4 * k * u) + 6 * u;
    const double absolute = 2 * k * denorm_min; // underflowed products
    const double vi = v[i], yi = y[i];
    // Divisions, not a reciprocal: 1 / v_i overflows for subnormal v_i.
    const double up = (yi + absolute) / vi; // +inf when v_i = 0 (flagged)
    const double num = yi - absolute;
    const double lo = (num > 0 ? num : 0.0) / vi; // NaN (0 / 0) never wins min
    const double up_w = up + up * rel, lo_w = lo - lo * rel;
    upper = up_w > upper ? up_w : upper;
    lower = lo_w < lower ? lo_w : lower;
    zero |= !(vi > 0);
    if (next) {
      const double w = (yi + shift * vi) * scale;
      next[i] = w;
      next_max = w > next_max ? w : next_max;
    }
  }
  res.lower = lower;
  res.upper = upper;
  res.next_max = next_max;
  res.zero_component = zero;
}

PassResult ratio_pass(const CsrMatrix<double> &M, const std::vector<double> &y,
                      const std::vector<double> &v, double shift, double scale,
                      double *next, bool parallel) {
  const index_t m = M.rows();
  const auto *rp = M.row_ptr().data();
  if (!parallel || m < parallel_pass_rows) {
    PassResult r;
    pass_rows(0, m, rp, y.data(), v.data(), shift, scale, next, r);
    return r;
  }
  // min / max / or are order-independent: the result does not depend on how
  // TBB splits the range.
  return tbb::parallel_reduce(
      tbb::blocked_range<index_t>(0, m, pass_grain), PassResult{},
      [&](const tbb::blocked_range<index_t> &r, PassResult acc) {
        pass_rows(r.begin(), r.end(), rp, y.data(), v.data(), shift, scale, next, acc);
        return acc;
      },
      [](PassResult a, const PassResult &b) {
        a.merge(b);
        return a;
      },
      tbb::simple_partitioner());
}

/// Certified bounds from a pass: one more outward rounding step.
std::pair<double, double> certified(const PassResult &r) {
  double lo = r.lower == infinity ? 0.0 : r.lower;
  lo = lo > 0 ? std::nextafter(lo, 0.0) : 0.0;
  const double up = r.zero_component ? infinity : std::nextafter(r.upper, infinity);
  return {lo, up};
}

/// A cyclic block: |A_BB| in double, states in increasing order.
struct CyclicBlock {
  std::vector<index_t> states;
  CsrMatrix<double> abs;
};

template <class T>
CyclicBlock extract_block(const CsrMatrix<T> &A, const SccDecomposition &scc, index_t b,
                          std::vector<index_t> &local_of) {
  CyclicBlock blk;
  blk.states.assign(scc.order.begin() + scc.block_ptr[b],
                    scc.order.begin() + scc.block_ptr[b + 1]);
  std::sort(blk.states.begin(), blk.states.end());
  const index_t m = static_cast<index_t>(blk.states.size());
  // local_of is shared by all blocks, but each block writes and reads only
  // its own states. Increasing states keep each row's columns increasing.
  for (index_t r = 0; r < m; ++r)
    local_of[blk.states[r]] = r;
  const auto rp = A.row_ptr();
  const auto vals = A.values();
  std::int64_t count = 0;
  for (index_t i : blk.states)
    count += rp[i + 1] - rp[i];
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(m) + 1, 0), cols;
  std::vector<double> values;
  cols.reserve(static_cast<std::size_t>(count));
  values.reserve(static_cast<std::size_t>(count));
  A.visit_columns([&](auto col) {
    for (index_t r = 0; r < m; ++r) {
      const index_t i = blk.states[r];
      for (auto e = rp[i]; e < rp[i + 1]; ++e) {
        const index_t j = col[e];
        if (vals[e] != T(0) && scc.block_of[j] == b) {
          cols.push_back(local_of[j]);
          values.push_back(std::abs(static_cast<double>(vals[e])));
        }
      }
      row_ptr[r + 1] = static_cast<std::int64_t>(cols.size());
    }
  });
  blk.abs = CsrMatrix<double>(m, m, std::move(row_ptr), cols, std::move(values));
  return blk;
}

struct BlockOutcome {
  double lower = 0;
  double upper = infinity;
  std::int64_t iterations = 0;
  std::int64_t shift_invert_steps = 0;
  PerronStatus status = PerronStatus::tight;
  bool underflow = false;
  std::vector<double> best_vector; ///< vector behind `upper` (if kept)
};

/// sigma I - |M| for a cyclic block, its KLU symbolic analysis and the cost
/// estimates that decide whether shift-invert pays off.
class ShiftInvertSystem {
public:
  explicit ShiftInvertSystem(const CsrMatrix<double> &M) : m_(M.rows()) {
    const auto rp = M.row_ptr();
    const auto vals = M.values();
    ap_.resize(static_cast<std::size_t>(m_) + 1);
    diag_pos_.resize(static_cast<std::size_t>(m_));
    diag_val_.assign(static_cast<std::size_t>(m_), 0.0);
    ai_.reserve(static_cast<std::size_t>(M.nnz() + m_));
    ax_.reserve(static_cast<std::size_t>(M.nnz() + m_));
    M.visit_columns([&](auto col) {
      for (index_t r = 0; r < m_; ++r) {
        ap_[r] = static_cast<SuiteSparse_long>(ai_.size());
        bool diag_done = false;
        auto put_diag = [&] {
          diag_pos_[r] = static_cast<std::int64_t>(ai_.size());
          ai_.push_back(r);
          ax_.push_back(0);
          diag_done = true;
        };
        for (auto e = rp[r]; e < rp[r + 1]; ++e) {
          const index_t c = col[e];
          if (!diag_done && c >= r)
            put_diag();
          if (c == r) {
            diag_val_[r] = std::abs(vals[e]);
          } else {
            ai_.push_back(c);
            ax_.push_back(-std::abs(vals[e]));
          }
        }
        if (!diag_done)
          put_diag();
      }
      ap_[m_] = static_cast<SuiteSparse_long>(ai_.size());
    });
    klu_l_defaults(&common_);
    // The rows of sigma I - M are handed to KLU as columns: it factors the
    // transpose, and klu_l_tsolve then solves with sigma I - M itself.
    symbolic_ = klu_l_analyze(m_, ap_.data(), ai_.data(), &common_);
    if (!symbolic_)
      return;
    const double entries = double(ap_[m_]);
    const double fill = symbolic_->lnz + symbolic_->unz;
    fits_ = fill <= fill_factor_limit * entries && fill <= fill_absolute_limit;
    // Flops of one factorisation and solve (AMD's estimate when available).
    const double factor =
        symbolic_->est_flops > 0 ? symbolic_->est_flops : fill * fill / double(m_);
    step_flops_ = factor + 4 * fill + 2 * entries;
  }
  ~ShiftInvertSystem() {
    if (symbolic_)
      klu_l_free_symbolic(&symbolic_, &common_);
  }
  ShiftInvertSystem(const ShiftInvertSystem &) = delete;
  ShiftInvertSystem &operator=(const ShiftInvertSystem &) = delete;

  /// Whether the LU factors stay moderate in size.
  bool usable() const { return symbolic_ && fits_; }
  /// Estimated flops of one shift-invert step.
  double step_flops() const { return step_flops_; }

  /// Solves (sigma I - M) x = b in place; false when the factorisation
  /// failed (sigma an eigenvalue in floating point, out of memory).
  bool solve(double sigma, std::vector<double> &b) {
    for (index_t r = 0; r < m_; ++r)
      ax_[diag_pos_[r]] = sigma - diag_val_[r];
    klu_l_numeric *numeric =
        klu_l_factor(ap_.data(), ai_.data(), ax_.data(), symbolic_, &common_);
    if (!numeric)
      return false;
    const bool ok = klu_l_tsolve(symbolic_, numeric, m_, 1, b.data(), &common_) != 0;
    klu_l_free_numeric(&numeric, &common_);
    return ok;
  }

private:
  index_t m_;
  std::vector<SuiteSparse_long> ap_, ai_;
  std::vector<double> ax_;
  std::vector<std::int64_t> diag_pos_;
  std::vector<double> diag_val_;
  klu_l_common common_{};
  klu_l_symbolic *symbolic_ = nullptr;
  bool fits_ = false;
  double step_flops_ = 0;
};

/// Iteration state of one block.
class BlockIteration {
public:
  /// M holds the block; `mode` is Mode::abs when its values may be signed.
  BlockIteration(const CsrMatrix<double> &M, Mode mode, const PerronOptions &opt,
                 bool keep_vector)
      : M_(M), mode_(mode), opt_(opt), keep_(keep_vector), m_(M.rows()),
        parallel_(!opt.exec.is_reference()), v_(m_, 1.0), y_(m_), w_(m_) {}

  BlockOutcome run(bool already_decided) {
    double shift = 0, scale = 1;
    std::int64_t last_progress = 0;
    std::int64_t checkpoint_iter = 0;
    double checkpoint_width = infinity;
    bool shift_invert_done = !opt_.shift_invert;
    out_.status = PerronStatus::budget_exhausted;
    std::int64_t it = 0;
    while (out_.iterations < opt_.max_iterations) {
      M_.apply(mode_, 1.0, std::span<const double>(v_), 0.0, std::span<double>(y_),
               opt_.exec);
      const PassResult r = ratio_pass(M_, y_, v_, shift, scale, w_.data(), parallel_);
      ++out_.iterations;
      if (record(r))
        last_progress = it;
      if (const auto s = finished(); s) {
        out_.status = *s;
        break;
      }
      if (already_decided) {
        out_.status = PerronStatus::decided;
        break;
      }
      if (it - last_progress > std::max<std::int64_t>(100, it / 2)) {
        out_.status = PerronStatus::stalled;
        break;
      }
      // Slow convergence: estimate the contraction of the width at doubling
      // checkpoints and switch to shift-invert when the power iteration
      // would cost more than a few factorisations.
      if (!shift_invert_done && it + 1 >= 32 && ((it + 1) & it) == 0) {
        const double width = out_.upper - out_.lower;
        if (std::isfinite(checkpoint_width) && std::isfinite(width) && width > 0) {
          const double rate =
              std::pow(width / checkpoint_width, 1.0 / double(it - checkpoint_iter));
          const double goal = opt_.rel_width * out_.upper;
          const double needed =
              rate < 1 ? std::log(goal / width) / std::log(rate) : infinity;
          if (needed > 16 && try_shift_invert(needed)) {
            shift_invert_done = true;
            if (const auto s = finished(); s) {
              out_.status = *s;
              break;
            }
            // Resume the power iteration from the shift-invert vector.
            last_progress = ++it;
            shift = 0.5 * estimate();
            scale = 1;
            continue;
          }
        }
        checkpoint_iter = it;
        checkpoint_width = width;
      }
      // Next step: v <- (M + s I) v with s about half of lambda (shrinks
      // rotating components of periodic blocks without slowing the decay of
      // the rest much); the scale keeps max(v) near 1 without another pass.
      std::swap(v_, w_);
      double vmax = r.next_max;
      if (!(vmax > 0x1p-300 && vmax < 0x1p300)) {
        // Far from 1 (first steps on badly scaled blocks): normalise now.
        if (!(vmax > 0) || !std::isfinite(vmax)) {
          out_.status = PerronStatus::stalled; // iterate overflowed or vanished
          break;
        }
        for (double &x : v_)
          x /= vmax;
        vmax = 1;
      }
      const double est = estimate();
      shift = 0.5 * est;
      scale = 1.0 / (vmax * (est + shift));
      if (!(std::isfinite(scale) && scale > 0))
        scale = 1.0 / vmax;
      ++it;
    }
    if (keep_) {
      // Max entry 1, unless that would flush the smallest entries to zero.
      double mx = 0, mn = infinity;
      for (double x : out_.best_vector) {
        mx = std::max(mx, x);
        mn = std::min(mn, x);
      }
      if (mx > 0 && std::isfinite(mx) && mn / mx >= std::numeric_limits<double>::min())
        for (double &x : out_.best_vector)
          x /= mx;
    }
    return std::move(out_);
  }

private:
  /// Folds a pass over v_ into the best bounds; true when one improved.
  bool record(const PassResult &r) {
    const auto [lo, up] = certified(r);
    if (r.zero_component)
      out_.underflow = true;
    bool progress = false;
    if (lo > out_.lower) {
      out_.lower = lo;
      progress = true;
    }
    if (up < out_.upper) {
      out_.upper = up;
      progress = true;
      if (keep_)
        out_.best_vector = v_;
    }
    return progress;
  }

  std::optional<PerronStatus> finished() const {
    if (out_.upper - out_.lower <= opt_.rel_width * out_.upper)
      return PerronStatus::tight;
    if (opt_.stop_when_decided && (out_.upper < 1 || out_.lower >= 1))
      return PerronStatus::decided;
    return std::nullopt;
  }

  double estimate() const {
    return std::isfinite(out_.upper) ? 0.5 * (out_.lower + out_.upper) : out_.lower;
  }

  /// Runs shift-invert when the factors are moderate and cheaper than
  /// `needed` more power iterations; true when it ran.
  bool try_shift_invert(double needed) {
    if (!system_)
      system_ = std::make_unique<ShiftInvertSystem>(M_);
    if (!system_->usable())
      return false;
    const double power_flops = needed * (2.0 * double(M_.nnz()) + 8.0 * double(m_));
    // Sparse LU runs at a fraction of the flop rate of a (bandwidth-bound)
    // sparse product: weigh its flops accordingly.
    if (4 * shift_invert_expected_steps * system_->step_flops() > power_flops)
      return false;
    return shift_invert();
  }

  /// Noda's shift-invert iteration, accelerated. With sigma above lambda,
  /// (sigma I - M)^-1 is a positive matrix, so w solving (sigma I - M) w =
  /// v > 0 is positive, and M w = sigma w - v < sigma w gives a
  /// Collatz-Wielandt bound below sigma (Noda: sigma <- that bound,
  /// quadratic once close). Conversely a w that is not positive means sigma
  /// <= lambda (up to rounding). On long, poorly mixing blocks Noda's early
  /// steps shrink only linearly; then the next sigma is the Aitken
  /// extrapolation of the upper bounds, and a trial that lands below lambda
  /// (w not positive) is followed by bisection towards the upper bound. Only
  /// the certified bounds of actual positive vectors enter the result. On
  /// return v_ holds the last positive vector.
  bool shift_invert() {
    double sigma = out_.upper;
    double below = out_.lower; // largest sigma believed <= lambda
    std::vector<double> w(static_cast<std::size_t>(m_));
    int stale = 0, failures = 0;
    bool ran = false;
    double previous_upper = out_.upper, last_decrease = 0;
    for (int step = 0;
         step < shift_invert_max_steps && out_.iterations < opt_.max_iterations; ++step) {
      w = v_;
      if (!system_->solve(sigma, w)) {
        // sigma hit an eigenvalue in floating point: step up a little.
        sigma = std::min(out_.upper, sigma * (1 + 1e-12));
        continue;
      }
      // Orient by the largest entry (the exact solution is positive when
      // sigma > lambda) and normalise.
      double big = 0;
      for (double x : w)
        if (std::abs(x) > std::abs(big))
          big = x;
      bool positive = std::isfinite(big) && big > 0;
      if (positive)
        for (double &x : w) {
          x /= big;
          if (!(x > 0) || !std::isfinite(x))
            positive = false;
        }
      if (!positive) {
        below = std::max(below, sigma);
        if (!(out_.upper > below))
          break;
        sigma = 0.5 * (out_.upper + below);
        if (++failures >= 60)
          break;
        continue;
      }
      std::swap(v_, w);
      M_.apply(mode_, 1.0, std::span<const double>(v_), 0.0, std::span<double>(y_),
               opt_.exec);
      const PassResult r = ratio_pass(M_, y_, v_, 0, 1, nullptr, parallel_);
      ++out_.iterations;
      ++out_.shift_invert_steps;
      ran = true;
      const bool progress = record(r);
      if (finished())
        break;
      stale = progress ? 0 : stale + 1;
      if (stale >= 3)
        break;
      below = std::max(below, out_.lower);
      const double decrease = previous_upper - out_.upper;
      sigma = out_.upper; // Noda
      if (decrease > 0 && last_decrease > 0 && decrease > 0.5 * last_decrease) {
        // Linear convergence at ratio q: the limit is about
        // upper - decrease * q / (1 - q).
        const double q = std::min(decrease / last_decrease, 0.95);
        const double aitken = out_.upper - decrease * q / (1 - q);
        sigma = aitken > below ? aitken : 0.5 * (out_.upper + below);
      }
      last_decrease = decrease;
      previous_upper = out_.upper;
    }
    return ran;
  }

  const CsrMatrix<double> &M_;
  const Mode mode_;
  const PerronOptions &opt_;
  const bool keep_;
  const index_t m_;
  const bool parallel_;
  std::vector<double> v_, y_, w_;
  std::unique_ptr<ShiftInvertSystem> system_;
  BlockOutcome out_;
};

template <class T> double diagonal_abs(const CsrMatrix<T> &A, index_t i) {
  const auto rp = A.row_ptr();
  for (auto e = rp[i]; e < rp[i + 1]; ++e)
    if (A.column(e) == i)
      return std::abs(static_cast<double>(A.values()[e]));
  return 0;
}

} // namespace

namespace detail {

void check_perron_options(const PerronOptions &o) {
  if (!(o.rel_width >= 0))
    throw InvalidArgument("perron_frobenius_bound: rel_width must be >= 0, got " +
                          format_number(o.rel_width, 10));
  if (o.max_iterations < 1)
    throw InvalidArgument("perron_frobenius_bound: max_iterations must be >= 1, got " +
                          std::to_string(o.max_iterations));
}

template <class T>
PerronBound perron_bound_with_vectors(const CsrMatrix<T> &A, const SccDecomposition &scc,
                                      const PerronOptions &options,
                                      std::vector<PerronBlockVector> *vectors) {
  const index_t n = A.rows();
  if (A.cols() != n)
    throw InvalidArgument("perron_frobenius_bound: A is " + std::to_string(n) + " x " +
                          std::to_string(A.cols()) + ", not square");
  if (static_cast<index_t>(scc.block_of.size()) != n ||
      static_cast<index_t>(scc.order.size()) != n ||
      static_cast<index_t>(scc.has_cycle.size()) != scc.block_count())
    throw InvalidArgument("perron_frobenius_bound: the SCC decomposition is for a "
                          "matrix of another size");
  check_perron_options(options);
  if (const auto e = A.find_non_finite())
    throw InvalidArgument("perron_frobenius_bound: A has a non-finite entry at (" +
                          std::to_string(e->row + 1) + ", " + std::to_string(e->col + 1) +
                          ")");
  const index_t nb = scc.block_count();
  PerronBound pf;
  pf.blocks = nb;
  pf.largest_block = scc.largest_block();
  if (vectors)
    vectors->assign(static_cast<std::size_t>(nb), PerronBlockVector{});

  // 1x1 blocks: exact.
  double single = 0;
  index_t single_at = -1;
  std::vector<index_t> cyclic;
  for (index_t b = 0; b < nb; ++b) {
    if (scc.block_size(b) > 1) {
      cyclic.push_back(b);
      continue;
    }
    if (!scc.has_cycle[b])
      continue;
    const double d = diagonal_abs(A, scc.order[scc.block_ptr[b]]);
    if (vectors)
      (*vectors)[b].upper = d;
    if (d > single) {
      single = d;
      single_at = scc.order[scc.block_ptr[b]];
    }
  }
  pf.cyclic_blocks = static_cast<index_t>(cyclic.size());
  const bool already_decided = options.stop_when_decided && single >= 1;

  // Cyclic blocks, each independent: in parallel over blocks (and within
  // large blocks); each block's result does not depend on the schedule.
  std::vector<BlockOutcome> outcomes(cyclic.size());
  std::vector<index_t> local_of(cyclic.empty() ? 0 : static_cast<std::size_t>(n));
  auto run_block = [&](std::size_t c) {
    const index_t b = cyclic[c];
    CyclicBlock blk;
    const CsrMatrix<double> *M = nullptr;
    Mode mode = Mode::normal;
    if constexpr (std::is_same_v<T, double>) {
      // One SCC over all states: iterate on A itself with |.| applied on the
      // fly instead of copying it. Stored zeros only count as terms in the
      // rounding allowance, which stays valid.
      if (scc.block_size(b) == n) {
        M = &A;
        mode = Mode::abs;
        if (vectors) {
          blk.states.resize(static_cast<std::size_t>(n));
          std::iota(blk.states.begin(), blk.states.end(), index_t(0));
        }
      }
    }
    if (!M) {
      blk = extract_block(A, scc, b, local_of);
      M = &blk.abs;
    }
    BlockIteration iteration(*M, mode, options, vectors != nullptr);
    outcomes[c] = iteration.run(already_decided);
    if (vectors) {
      auto &bv = (*vectors)[b];
      bv.states = std::move(blk.states);
      bv.vector = std::move(outcomes[c].best_vector);
      bv.upper = outcomes[c].upper;
    }
  };
  if (!options.exec.is_reference() && cyclic.size() > 1) {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, cyclic.size(), 1),
                      [&](const tbb::blocked_range<std::size_t> &r) {
                        for (std::size_t c = r.begin(); c < r.end(); ++c)
                          run_block(c);
                      });
  } else {
    for (std::size_t c = 0; c < cyclic.size(); ++c)
      run_block(c);
  }

  pf.lower = pf.upper = single;
  detail::DiagonalBlockMerge merged; // over the cyclic blocks
  for (std::size_t c = 0; c < cyclic.size(); ++c)
    merged.add(pf, static_cast<index_t>(c), outcomes[c]);
  merged.finish(pf);
  const index_t widest = merged.widest;

  std::string msg = "lambda_PF(|A|) in [" + format_number(pf.lower, 10) + ", " + format_number(pf.upper, 10) +
                    "]: " + std::to_string(nb) + " strongly connected components, " +
                    std::to_string(cyclic.size()) + " cyclic";
  if (!cyclic.empty())
    msg += " (largest " + std::to_string(pf.largest_block) + " states, " +
           std::to_string(pf.iterations) + " iterations" +
           (pf.shift_invert_steps
                ? ", " + std::to_string(pf.shift_invert_steps) + " of them shift-invert"
                : std::string()) +
           ")";
  if (cyclic.empty() && single == 0)
    msg += "; A is nilpotent (feed-forward)";
  else if (widest < 0 && single_at >= 0)
    msg += "; attained at the self-loop of state " + std::to_string(single_at + 1);
  else if (widest >= 0)
    msg += "; upper bound from the cyclic block of " +
           std::to_string(scc.block_size(cyclic[widest])) + " states";
  switch (pf.status) {
  case PerronStatus::budget_exhausted:
    msg += "; iteration budget (" + std::to_string(options.max_iterations) +
           " per block) exhausted before the relative width " + format_number(options.rel_width, 10);
    break;
  case PerronStatus::stalled:
    msg += "; stopped improving before reaching the relative width " +
           format_number(options.rel_width, 10);
    break;
  case PerronStatus::decided:
    msg += "; stopped once decided";
    break;
  case PerronStatus::tight:
    break;
  }
  if (pf.underflow)
    msg += "; an iterate underflowed (those steps gave no upper bound)";
  if (pf.upper < 1)
    msg += "; certified well-posed for componentwise non-expansive activations";
  else if (pf.lower >= 1)
    msg += "; lambda_PF(|A|) >= 1: the Perron-Frobenius condition fails";
  else
    msg += "; not certified (upper bound >= 1)";
  pf.message = std::move(msg);
  return pf;
}

template PerronBound perron_bound_with_vectors(const CsrMatrix<float> &,
                                               const SccDecomposition &,
                                               const PerronOptions &,
                                               std::vector<PerronBlockVector> *);
template PerronBound perron_bound_with_vectors(const CsrMatrix<double> &,
                                               const SccDecomposition &,
                                               const PerronOptions &,
                                               std::vector<PerronBlockVector> *);

} // namespace detail

template <class T>
PerronBound perron_frobenius_bound(const CsrMatrix<T> &A, const SccDecomposition &scc,
                                   const PerronOptions &options) {
  return options.exec.run(
      [&] { return detail::perron_bound_with_vectors(A, scc, options, nullptr); });
}

template <class T>
PerronBound perron_frobenius_bound(const CsrMatrix<T> &A, const PerronOptions &options) {
  detail::check_perron_options(options);
  return options.exec.run([&] {
    return perron_frobenius_bound(A, strongly_connected_components(A), options);
  });
}

template PerronBound perron_frobenius_bound(const CsrMatrix<float> &,
                                            const PerronOptions &);
template PerronBound perron_frobenius_bound(const CsrMatrix<double> &,
                                            const PerronOptions &);
template PerronBound perron_frobenius_bound(const CsrMatrix<float> &,
                                            const SccDecomposition &,
                                            const PerronOptions &);
template PerronBound perron_frobenius_bound(const CsrMatrix<double> &,
                                            const SccDecomposition &,
                                            const PerronOptions &);

} // namespace tacit::inline v1
