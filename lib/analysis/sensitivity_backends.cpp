// Back-ends of the sensitivity operator (see lib/analysis/detail/sensitivity_backends.hpp
// and include/tacit/analysis/sensitivity.hpp):
// - CsrSweep: forward / backward substitution over the SCC order of a CSR M
//   whose components are single states with |m_ii| < 1;
// - BlockSweep: the same over the blocks of a block lower triangular block
//   structure (any BlockStructured M), with the blocks' own |op| and |op|^T
//   products;
// - KluSolve: sparse LU of I - |M| (SuiteSparse KLU);
// - IterativeSolve: w <- |M| w + r with a certified a-posteriori stop.

#include "analysis/detail/sensitivity_backends.hpp"

#include <tacit/core/csr.hpp>
#include <tacit/core/format.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/operators/structured.hpp>

#include "analysis/detail/perron.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>
#include <tbb/partitioner.h>

#include <klu.h>

namespace tacit::inline v1::detail {
namespace {

/// Columns handled per pass of a sweep (the per-row accumulator).
constexpr index_t sweep_chunk = 32;

template <class T> MatrixView<T> row_range(MatrixView<T> w, index_t r0, index_t r1) {
  return {w.data + r0 * w.ld, r1 - r0, w.cols, w.ld};
}
template <class T>
ConstMatrixView<T> row_range(ConstMatrixView<T> w, index_t r0, index_t r1) {
  return {w.data + r0 * w.ld, r1 - r0, w.cols, w.ld};
}

/// The operator as CSR, sharing it when it is one.
template <class T>
std::shared_ptr<const CsrMatrix<T>> shared_csr(const OperatorPtr<T> &M) {
  return csr_view(M).shared();
}

// ------------------------------------------------------------------ CSR sweep

/// One row of a sweep: w_i <- (w_i + sum_{j != i} |a_ij| w_j) / (1 - |a_ii|).
/// Zero entries are skipped (they may point to rows not solved yet).
template <class T, class I>
inline void sweep_row(index_t i, const std::int64_t *rp, const I *cols, const T *vals,
                      T inv, MatrixView<T> w, index_t c0, index_t kc) {
  alignas(64) T acc[sweep_chunk];
  T *wi = w.row(i) + c0;
  for (index_t c = 0; c < kc; ++c)
    acc[c] = wi[c];
  for (auto e = rp[i]; e < rp[i + 1]; ++e) {
    const index_t j = cols[e];
    T a = vals[e];
    if (j == i || a == T(0))
      continue;
    a = std::abs(a);
    const T *wj = w.row(j) + c0;
    for (index_t c = 0; c < kc; ++c)
      acc[c] += a * wj[c];
  }
  for (index_t c = 0; c < kc; ++c)
    wi[c] = acc[c] * inv;
}

template <class T> class CsrSweep final : public Resolvent<T> {
public:
  CsrSweep(std::shared_ptr<const CsrMatrix<T>> A, SccDecomposition scc)
      : A_(std::move(A)), scc_(std::move(scc)) {
    read_values();
    for (index_t l = 0; l < scc_.level_count(); ++l)
      levels_.emplace_back(scc_.block_ptr[scc_.level_ptr[l]],
                           scc_.block_ptr[scc_.level_ptr[l + 1]]);
  }

  /// Whether M qualifies: every SCC a single state with |m_ii| < 1. Else the
  /// reason.
  static std::optional<std::string>
  unsuitable(const CsrMatrix<T> &A, const SccDecomposition &scc, double *max_diag) {
    if (scc.largest_block() > 1)
      return "A has a strongly connected component of " +
             std::to_string(scc.largest_block()) + " states (a cycle)";
    const std::vector<T> d = A.diagonal();
    double m = 0;
    for (std::size_t i = 0; i < d.size(); ++i) {
      const double a = std::abs(static_cast<double>(d[i]));
      if (!(a < 1))
        return "state " + std::to_string(i) + " has |a_ii| = " + format_number(a, 6) + " >= 1";
      m = std::max(m, a);
    }
    if (max_diag)
      *max_diag = m;
    return std::nullopt;
  }

  void solve(MatrixView<T> w, bool transposed, Execution exec,
             SensitivitySolveStats &stats) const override {
    stats = {};
    run(transposed ? transpose() : *A_, transposed, w, exec);
  }

  std::size_t bytes() const override {
    std::size_t b = (diag_.size() + inv_.size()) * sizeof(T) +
                    scc_.order.size() * sizeof(index_t) * 3;
    if (A_.use_count() == 1)
      b += A_->bytes();
    std::lock_guard lock(mutex_);
    if (At_)
      b += At_->bytes();
    return b;
  }

  void update(const OperatorPtr<T> &M, const SensitivityOptions &,
              SensitivityInfo &info) override {
    auto A = shared_csr(M);
    if (!same_pattern(*A, *A_))
      throw InvalidArgument("update_values: the new A has another sparsity pattern");
    double m = 0;
    if (const auto why = unsuitable(*A, scc_, &m))
      throw NumericalError("update_values: the sweep no longer applies: " + *why, m, 1.0);
    A_ = std::move(A);
    read_values();
    std::lock_guard lock(mutex_);
    At_.reset();
    info.lambda_lower = info.lambda_upper = m;
  }

  static bool same_pattern(const CsrMatrix<T> &a, const CsrMatrix<T> &b) {
    if (a.rows() != b.rows() || a.cols() != b.cols() || a.nnz() != b.nnz())
      return false;
    if (!std::equal(a.row_ptr().begin(), a.row_ptr().end(), b.row_ptr().begin()))
      return false;
    for (std::int64_t e = 0; e < a.nnz(); ++e)
      if (a.column(e) != b.column(e))
        return false;
    return true;
  }

private:
  void read_values() {
    diag_ = A_->diagonal();
    inv_.resize(diag_.size());
    for (std::size_t i = 0; i < diag_.size(); ++i)
      inv_[i] = T(1) / (T(1) - std::abs(diag_[i]));
  }

  const CsrMatrix<T> &transpose() const {
    std::lock_guard lock(mutex_);
    if (!At_)
      At_ = std::make_unique<CsrMatrix<T>>(A_->transpose());
    return *At_;
  }

  void run(const CsrMatrix<T> &M, bool reverse, MatrixView<T> w, Execution exec) const {
    const index_t k = w.cols;
    const index_t L = static_cast<index_t>(levels_.size());
    const std::int64_t *rp = M.row_ptr().data();
    const T *vals = M.values().data();
    const index_t *order = scc_.order.data();
    const bool parallel = !exec.is_reference();
    M.visit_columns([&](auto cols_span) {
      const auto *cols = cols_span.data();
      for (index_t c0 = 0; c0 < k; c0 += sweep_chunk) {
        const index_t kc = std::min(sweep_chunk, k - c0);
        auto rows = [&](index_t a, index_t b) {
          for (index_t pos = a; pos < b; ++pos) {
            const index_t i = order[pos];
            sweep_row<T>(i, rp, cols, vals, inv_[i], w, c0, kc);
          }
        };
        for (index_t li = 0; li < L; ++li) {
          const auto [p0, p1] = levels_[reverse ? L - 1 - li : li];
          if (parallel && p1 - p0 >= 256)
            tbb::parallel_for(
                tbb::blocked_range<index_t>(p0, p1, 64),
                [&](const tbb::blocked_range<index_t> &r) { rows(r.begin(), r.end()); });
          else
            rows(p0, p1);
        }
      }
    });
  }

  std::shared_ptr<const CsrMatrix<T>> A_;
  SccDecomposition scc_;
  std::vector<T> diag_, inv_;
  std::vector<std::pair<index_t, index_t>> levels_;
  mutable std::mutex mutex_;
  mutable std::unique_ptr<CsrMatrix<T>> At_;
};

// ------------------------------------------------------------------ KLU

template <class T> class KluSolve final : public Resolvent<T> {
public:
  /// Analyses the pattern of I - |A| (call factor() next).
  explicit KluSolve(const CsrMatrix<T> &A) : n_(A.rows()) {
    klu_l_defaults(&common_);
    build(A);
    // The rows of I - |A| are handed to KLU as columns: it factors the
    // transpose; klu_l_tsolve then solves with I - |A|, klu_l_solve with
    // (I - |A|)^T.
    symbolic_ = klu_l_analyze(n_, ap_.data(), ai_.data(), &common_);
    if (!symbolic_)
      throw NumericalError("sensitivity: KLU could not analyse I - |A| (status " +
                               std::to_string(common_.status) + ")",
                           common_.status);
  }
  ~KluSolve() override {
    if (numeric_)
      klu_l_free_numeric(&numeric_, &common_);
    if (symbolic_)
      klu_l_free_symbolic(&symbolic_, &common_);
  }
  KluSolve(const KluSolve &) = delete;
  KluSolve &operator=(const KluSolve &) = delete;

  /// Predicted entries of L + U.
  double predicted_fill() const { return symbolic_->lnz + symbolic_->unz; }
  double entries() const { return static_cast<double>(ai_.size()); }

  void factor() {
    numeric_ = klu_l_factor(ap_.data(), ai_.data(), ax_.data(), symbolic_, &common_);
    if (!numeric_)
      throw NumericalError("sensitivity: KLU could not factor I - |A| (status " +
                               std::to_string(common_.status) + ")",
                           common_.status);
  }
  std::int64_t factor_entries() const {
    return numeric_ ? static_cast<std::int64_t>(numeric_->lnz + numeric_->unz) : 0;
  }

  void solve(MatrixView<T> w, bool transposed, Execution,
             SensitivitySolveStats &stats) const override {
    stats = {};
    const index_t k = w.cols;
    constexpr index_t chunk = 16;
    std::lock_guard lock(mutex_);
    buffer_.resize(static_cast<std::size_t>(n_ * std::min(k, chunk)));
    for (index_t c0 = 0; c0 < k; c0 += chunk) {
      const index_t kc = std::min(chunk, k - c0);
      for (index_t i = 0; i < n_; ++i) {
        const T *wi = w.row(i) + c0;
        for (index_t c = 0; c < kc; ++c)
          buffer_[static_cast<std::size_t>(c * n_ + i)] = static_cast<double>(wi[c]);
      }
      const int ok =
          transposed
              ? klu_l_solve(symbolic_, numeric_, n_, kc, buffer_.data(), &common_)
              : klu_l_tsolve(symbolic_, numeric_, n_, kc, buffer_.data(), &common_);
      if (!ok)
        throw NumericalError("sensitivity: KLU solve failed (status " +
                                 std::to_string(common_.status) + ")",
                             common_.status);
      for (index_t i = 0; i < n_; ++i) {
        T *wi = w.row(i) + c0;
        for (index_t c = 0; c < kc; ++c)
          wi[c] = static_cast<T>(buffer_[static_cast<std::size_t>(c * n_ + i)]);
      }
    }
  }

  std::size_t bytes() const override {
    std::size_t b = ap_.size() * sizeof(SuiteSparse_long) +
                    ai_.size() * (sizeof(SuiteSparse_long) + sizeof(double));
    b += static_cast<std::size_t>(factor_entries()) *
         (sizeof(double) + sizeof(SuiteSparse_long));
    return b;
  }

  void update(const OperatorPtr<T> &M, const SensitivityOptions &,
              SensitivityInfo &) override {
    const auto A = shared_csr(M);
    std::vector<SuiteSparse_long> ap, ai;
    std::vector<double> ax;
    if (A->rows() == n_)
      build(*A, ap, ai, ax);
    if (ap != ap_ || ai != ai_)
      throw InvalidArgument("update_values: the new A has another sparsity pattern");
    std::lock_guard lock(mutex_);
    ax_ = std::move(ax);
    if (!klu_l_refactor(ap_.data(), ai_.data(), ax_.data(), symbolic_, numeric_,
                        &common_))
      throw NumericalError("update_values: KLU refactorisation failed (status " +
                               std::to_string(common_.status) + ")",
                           common_.status);
  }

private:
  void build(const CsrMatrix<T> &A) { build(A, ap_, ai_, ax_); }

  /// The rows of I - |A| (diagonal always stored), as KLU columns.
  void build(const CsrMatrix<T> &A, std::vector<SuiteSparse_long> &ap_,
             std::vector<SuiteSparse_long> &ai_, std::vector<double> &ax_) const {
    const auto rp = A.row_ptr();
    const auto vals = A.values();
    ap_.assign(static_cast<std::size_t>(n_ + 1), 0);
    ai_.clear();
    ax_.clear();
    ai_.reserve(static_cast<std::size_t>(A.nnz() + n_));
    ax_.reserve(static_cast<std::size_t>(A.nnz() + n_));
    for (index_t r = 0; r < n_; ++r) {
      ap_[r] = static_cast<SuiteSparse_long>(ai_.size());
      bool diag_done = false;
      for (auto e = rp[r]; e < rp[r + 1]; ++e) {
        const index_t c = A.column(e);
        if (!diag_done && c > r) {
          ai_.push_back(r);
          ax_.push_back(1.0);
          diag_done = true;
        }
        const double a = std::abs(static_cast<double>(vals[e]));
        if (c == r) {
          ai_.push_back(r);
          ax_.push_back(1.0 - a);
          diag_done = true;
        } else {
          ai_.push_back(c);
          ax_.push_back(-a);
        }
      }
      if (!diag_done) {
        ai_.push_back(r);
        ax_.push_back(1.0);
      }
    }
    ap_[n_] = static_cast<SuiteSparse_long>(ai_.size());
  }

  index_t n_;
  std::vector<SuiteSparse_long> ap_, ai_;
  std::vector<double> ax_;
  mutable klu_l_common common_{};
  klu_l_symbolic *symbolic_ = nullptr;
  klu_l_numeric *numeric_ = nullptr;
  mutable std::mutex mutex_;
  mutable std::vector<double> buffer_;
};

// ------------------------------------------------------------------ iterative

/// v > 0 with |A| v <= theta v, built from the certified Perron vectors of
/// the SCC blocks (as in lib/analysis/rescale.cpp), and theta measured on it.
struct Certificate {
  PerronBound pf;
  std::vector<double> v;
  double theta = 1;
  std::string problem; ///< why no certificate vector (empty if there is one)
};

template <class T>
Certificate make_certificate(const CsrMatrix<T> &A, const SccDecomposition &scc,
                             const PerronOptions &options) {
  Certificate cert;
  std::vector<PerronBlockVector> blocks;
  cert.pf = perron_bound_with_vectors(A, scc, options, &blocks);
  if (!cert.pf.certified()) {
    cert.problem = "not certified";
    return cert;
  }
  const index_t n = A.rows();
  const double rho = cert.pf.upper + 0.2 * (1 - cert.pf.upper);
  std::vector<double> p(static_cast<std::size_t>(n), 1.0);
  for (const auto &bv : blocks) {
    if (bv.vector.size() != bv.states.size()) {
      cert.problem = "no positive Perron vector for a cyclic block";
      return cert;
    }
    for (std::size_t r = 0; r < bv.states.size(); ++r) {
      if (!(bv.vector[r] > 0)) {
        cert.problem = "a Perron vector has a zero entry";
        return cert;
      }
      p[bv.states[r]] = bv.vector[r];
    }
  }
  std::vector<double> v(static_cast<std::size_t>(n), 0.0);
  const auto rp = A.row_ptr();
  const auto vals = A.values();
  for (index_t b = 0; b < scc.block_count(); ++b) {
    const double u = blocks[b].upper;
    double t = 1;
    for (index_t k = scc.block_ptr[b]; k < scc.block_ptr[b + 1]; ++k) {
      const index_t i = scc.order[k];
      double inflow = 0;
      for (auto e = rp[i]; e < rp[i + 1]; ++e) {
        const index_t j = A.column(e);
        if (vals[e] != T(0) && scc.block_of[j] != b)
          inflow += std::abs(static_cast<double>(vals[e])) * v[j];
      }
      t = std::max(t, 2 * inflow / ((rho - u) * p[i]));
    }
    for (index_t k = scc.block_ptr[b]; k < scc.block_ptr[b + 1]; ++k)
      v[scc.order[k]] = t * p[scc.order[k]];
  }
  double vmin = std::numeric_limits<double>::infinity(), vmax = 0;
  for (double x : v) {
    vmin = std::min(vmin, x);
    vmax = std::max(vmax, x);
  }
  if (n > 0 && (!std::isfinite(vmax) || !(vmin > 0) || vmax / vmin > 1e200)) {
    cert.problem = "the certificate vector leaves the range of double";
    return cert;
  }
  if (n > 0) {
    const double centre = std::exp(0.5 * (std::log(vmin) + std::log(vmax)));
    for (double &x : v)
      x /= centre;
  }
  // theta = max_i (|A| v)_i / v_i with an allowance for the rounding of the
  // row sums (and of T's values: |A| is applied in T).
  double theta = 0;
  std::int64_t longest = 0;
  for (index_t i = 0; i < n; ++i) {
    double s = 0;
    for (auto e = rp[i]; e < rp[i + 1]; ++e)
      s += std::abs(static_cast<double>(vals[e])) * v[A.column(e)];
    theta = std::max(theta, s / v[i]);
    longest = std::max(longest, rp[i + 1] - rp[i]);
  }
  const double eps = std::numeric_limits<T>::epsilon();
  theta *= 1 + 2 * double(longest + 2) * eps;
  cert.theta = theta;
  cert.v = std::move(v);
  if (!(theta < 1))
    cert.problem = "rounding leaves the contraction ratio at " + format_number(theta, 6);
  return cert;
}

template <class T> class IterativeSolve final : public Resolvent<T> {
public:
  IterativeSolve(OperatorPtr<T> A, Certificate cert, const SensitivityOptions &options)
      : A_(std::move(A)), v_(std::move(cert.v)), theta_(cert.theta),
        max_iterations_(options.max_iterations) {
    const double floor = 16 * double(std::numeric_limits<T>::epsilon()) / (1 - theta_);
    tol_ = std::max(options.rel_tol, floor);
  }

  double theta() const { return theta_; }

  void solve(MatrixView<T> w, bool transposed, Execution exec,
             SensitivitySolveStats &stats) const override {
    iterate(w, transposed ? Mode::abs_transpose : Mode::abs, !transposed, exec, stats);
  }

  std::size_t bytes() const override { return v_.size() * sizeof(double); }

  void update(const OperatorPtr<T> &M, const SensitivityOptions &options,
              SensitivityInfo &info) override {
    const auto A = shared_csr(M);
    const SccDecomposition scc = strongly_connected_components(*A);
    Certificate cert = make_certificate(*A, scc, options.perron);
    if (!cert.problem.empty())
      throw NumericalError("update_values: no certified contraction for the new A: " +
                               cert.problem + " (lambda_PF(|A|) in [" +
                               format_number(cert.pf.lower, 6) + ", " + format_number(cert.pf.upper, 6) + "])",
                           cert.pf.upper, 1.0, cert.pf.iterations);
    info.lambda_lower = cert.pf.lower;
    info.lambda_upper = cert.pf.upper;
    info.theta = cert.theta;
    A_ = M;
    v_ = std::move(cert.v);
    theta_ = cert.theta;
    const double floor = 16 * double(std::numeric_limits<T>::epsilon()) / (1 - theta_);
    tol_ = std::max(options.rel_tol, floor);
    max_iterations_ = options.max_iterations;
  }

private:
  /// Column norms of d and x: weighted max (max_i |.|/v_i) or weighted sum
  /// (sum_i v_i |.|), deterministic for any thread count.
  void norms(ConstMatrixView<T> d, ConstMatrixView<T> x, bool max_norm, Execution exec,
             std::vector<double> &nd, std::vector<double> &nx) const {
    const index_t n = d.rows, k = d.cols;
    using Acc = std::vector<double>;
    auto body = [&](const tbb::blocked_range<index_t> &r, Acc acc) {
      for (index_t i = r.begin(); i < r.end(); ++i) {
        const double vi = v_[static_cast<std::size_t>(i)];
        const T *di = d.row(i), *xi = x.row(i);
        for (index_t c = 0; c < k; ++c) {
          const double a = std::abs(static_cast<double>(di[c]));
          const double b = std::abs(static_cast<double>(xi[c]));
          if (max_norm) {
            acc[c] = std::max(acc[c], a / vi);
            acc[k + c] = std::max(acc[k + c], b / vi);
          } else {
            acc[c] += vi * a;
            acc[k + c] += vi * b;
          }
        }
      }
      return acc;
    };
    auto join = [&](Acc a, const Acc &b) {
      for (std::size_t c = 0; c < a.size(); ++c)
        a[c] = max_norm ? std::max(a[c], b[c]) : a[c] + b[c];
      return a;
    };
    const Acc zero(static_cast<std::size_t>(2 * k), 0.0);
    Acc total;
    if (!exec.is_reference() && n >= 8192)
      total =
          tbb::parallel_deterministic_reduce(tbb::blocked_range<index_t>(0, n, 4096),
                                             zero, body, join, tbb::simple_partitioner());
    else
      total = body(tbb::blocked_range<index_t>(0, n, n > 0 ? n : 1), zero);
    nd.assign(total.begin(), total.begin() + k);
    nx.assign(total.begin() + k, total.end());
  }

  void iterate(MatrixView<T> w, Mode mode, bool max_norm, Execution exec,
               SensitivitySolveStats &stats) const {
    const index_t n = w.rows, k = w.cols;
    stats = {};
    std::vector<T> r(static_cast<std::size_t>(n * k)), a(r.size()), b(r.size());
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < k; ++c)
        r[static_cast<std::size_t>(i * k + c)] = w(i, c);
    // Start from w_0 = r.
    std::copy(r.begin(), r.end(), a.begin());
    MatrixView<T> cur{a.data(), n, k, k}, next{b.data(), n, k, k};
    std::vector<double> nd, nx;
    const double factor = theta_ / (1 - theta_);
    double best = std::numeric_limits<double>::infinity();
    int since_best = 0;
    for (int it = 1;; ++it) {
      // next = op(|M|) cur + r.
      std::copy(r.begin(), r.end(), next.data);
      A_->apply(mode, T(1), ConstMatrixView<T>(cur), T(1), next, exec);
      // cur <- next - cur (the step), then swap so that cur is the iterate.
      for (std::size_t e = 0; e < a.size(); ++e)
        cur.data[e] = next.data[e] - cur.data[e];
      norms(cur, next, max_norm, exec, nd, nx);
      std::swap(cur, next);
      double worst = 0;
      for (index_t c = 0; c < k; ++c) {
        const double bound = nd[c] == 0 ? 0 : factor * nd[c] / nx[c];
        worst = std::max(worst, bound);
      }
      stats.iterations = it;
      stats.error_bound = worst;
      if (!(worst > tol_)) {
        stats.converged = true;
        break;
      }
      if (worst < best) {
        best = worst;
        since_best = 0;
      } else if (++since_best >= 20 || it >= max_iterations_) {
        // Stagnation (rounding floor) or budget: report the bound reached.
        stats.converged = worst <= 1e3 * tol_ && it < max_iterations_;
        break;
      }
      if (it >= max_iterations_) {
        stats.converged = false;
        break;
      }
    }
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < k; ++c)
        w(i, c) = cur(i, c);
  }

  OperatorPtr<T> A_;
  std::vector<double> v_;
  double theta_ = 1, tol_ = 0;
  int max_iterations_ = 0;
};

// ------------------------------------------------------------------ block sweep

template <class T> class BlockSweep final : public Resolvent<T> {
public:
  /// One operator per nonzero block position (entries at the same position
  /// summed into a CSR matrix, so that |sum| is exact).
  struct Position {
    index_t row = 0, col = 0;
    OperatorPtr<T> op;
  };

  BlockSweep(OperatorPtr<T> keep, const BlockStructure<T> &A,
             const SensitivityOptions &options, SensitivityInfo &info)
      : keep_(std::move(keep)) {
    const index_t nb = A.row_blocks();
    offsets_.resize(static_cast<std::size_t>(nb + 1));
    for (index_t i = 0; i <= nb; ++i)
      offsets_[i] = A.row_offset(i);
    const auto entries = A.entries();
    by_row_.resize(static_cast<std::size_t>(nb));
    by_col_.resize(static_cast<std::size_t>(nb));
    diag_.resize(static_cast<std::size_t>(nb));
    double lambda_upper = 0, lambda_lower = 0;
    for (std::size_t e = 0; e < entries.size();) {
      std::size_t f = e + 1;
      while (f < entries.size() && entries[f].block_row == entries[e].block_row &&
             entries[f].block_col == entries[e].block_col)
        ++f;
      Position pos{entries[e].block_row, entries[e].block_col, entries[e].op};
      if (f - e > 1) {
        std::vector<Triplet<T>> trips;
        for (std::size_t g = e; g < f; ++g) {
          const CsrMatrix<T> m = entries[g].op->to_csr();
          for (index_t r = 0; r < m.rows(); ++r)
            for (auto x = m.row_ptr()[r]; x < m.row_ptr()[r + 1]; ++x)
              trips.push_back({r, m.column(x), m.values()[x]});
        }
        pos.op = std::make_shared<const CsrMatrix<T>>(CsrMatrix<T>::from_triplets(
            entries[e].op->rows(), entries[e].op->cols(), trips));
      }
      if (pos.row == pos.col) {
        ResolventChoice nested;
        SensitivityOptions o = options;
        o.method = SensitivityMethod::automatic;
        diag_[pos.row] = make_resolvent<T>(pos.op, o, nested);
        lambda_upper = std::max(lambda_upper, nested.info.lambda_upper);
        lambda_lower = std::max(lambda_lower, nested.info.lambda_lower);
        if (!nested.info.exact)
          info.exact = false;
        ++diagonal_blocks_;
      } else {
        by_row_[pos.row].push_back(positions_.size());
        by_col_[pos.col].push_back(positions_.size());
        positions_.push_back(std::move(pos));
      }
      e = f;
    }
    info.lambda_lower = lambda_lower;
    info.lambda_upper = lambda_upper;
  }

  index_t diagonal_blocks() const { return diagonal_blocks_; }

  void solve(MatrixView<T> w, bool transposed, Execution exec,
             SensitivitySolveStats &stats) const override {
    run(w, transposed, exec, stats);
  }

  std::size_t bytes() const override {
    std::size_t b = 0;
    for (const auto &d : diag_)
      if (d)
        b += d->bytes();
    return b;
  }

  void update(const OperatorPtr<T> &, const SensitivityOptions &,
              SensitivityInfo &) override {
    throw Unsupported("update_values: a structured A is not updated in place; build a "
                      "new sensitivity operator");
  }

private:
  void run(MatrixView<T> w, bool transposed, Execution exec,
           SensitivitySolveStats &stats) const {
    stats = {};
    const index_t nb = static_cast<index_t>(by_row_.size());
    const Mode mode = transposed ? Mode::abs_transpose : Mode::abs;
    for (index_t s = 0; s < nb; ++s) {
      const index_t b = transposed ? nb - 1 - s : s;
      MatrixView<T> wb = row_range(w, offsets_[b], offsets_[b + 1]);
      // Block row b of M (forward) or block column b (transposed): entries
      // whose other end is already solved.
      for (std::size_t idx : transposed ? by_col_[b] : by_row_[b]) {
        const Position &pos = positions_[idx];
        const index_t o = transposed ? pos.row : pos.col;
        pos.op->apply(mode, T(1),
                      ConstMatrixView<T>(row_range(w, offsets_[o], offsets_[o + 1])),
                      T(1), wb, exec);
      }
      if (diag_[b]) {
        SensitivitySolveStats inner;
        diag_[b]->solve(wb, transposed, exec, inner);
        stats.iterations = std::max(stats.iterations, inner.iterations);
        stats.error_bound = std::max(stats.error_bound, inner.error_bound);
        stats.converged = stats.converged && inner.converged;
      }
    }
  }

  OperatorPtr<T> keep_;
  std::vector<index_t> offsets_;
  std::vector<Position> positions_;
  std::vector<std::vector<std::size_t>> by_row_, by_col_;
  std::vector<std::unique_ptr<Resolvent<T>>> diag_;
  index_t diagonal_blocks_ = 0;
};

/// M's block structure when it is square and block lower triangular.
template <class T>
const BlockStructure<T> *as_block_triangular(const LinearOperator<T> &M) {
  const auto *blocks = capability<BlockStructured<T>>(M);
  if (!blocks)
    return nullptr;
  const auto &s = blocks->block_structure();
  return s.square_partition() && s.block_lower_triangular() ? &s : nullptr;
}

std::string interval(const PerronBound &pf) {
  return "[" + format_number(pf.lower, 6) + ", " + format_number(pf.upper, 6) + "]";
}

} // namespace

template <class T>
std::unique_ptr<Resolvent<T>> make_resolvent(const OperatorPtr<T> &M,
                                             const SensitivityOptions &options,
                                             ResolventChoice &choice) {
  if (!M || M->rows() != M->cols())
    throw InvalidArgument("sensitivity: A must be a square operator");
  SensitivityInfo &info = choice.info;
  const SensitivityMethod method = options.method;
  const bool may_sweep =
      method == SensitivityMethod::automatic || method == SensitivityMethod::sweep;

  if (may_sweep) {
    if (const auto *block = as_block_triangular(*M)) {
      auto r = std::make_unique<BlockSweep<T>>(M, *block, options, info);
      info.method = SensitivityMethod::sweep;
      info.reason = std::string("A is ") +
                    (r->diagonal_blocks() ? "block lower triangular (" +
                                                std::to_string(r->diagonal_blocks()) +
                                                " diagonal blocks solved nested)"
                                          : "strictly block lower triangular "
                                            "(feed-forward)") +
                    " over " + std::to_string(block->row_blocks()) +
                    " state blocks: block substitution with the blocks' |op| products";
      return r;
    }
  }

  const auto A = shared_csr(M);
  const SccDecomposition scc = strongly_connected_components(*A);
  double max_diag = 0;
  const auto unsuitable = CsrSweep<T>::unsuitable(*A, scc, &max_diag);
  if (may_sweep && !unsuitable) {
    info.method = SensitivityMethod::sweep;
    info.lambda_lower = info.lambda_upper = max_diag;
    info.reason = "the strongly connected components of A are single states (" +
                  std::to_string(scc.level_count()) +
                  " levels) with |a_ii| < 1: forward/backward substitution";
    return std::make_unique<CsrSweep<T>>(A, scc);
  }
  if (method == SensitivityMethod::sweep)
    // The substitution needs single-state components with |a_ii| < 1: a
    // property of A's values found by the analysis, like the certificate.
    throw NumericalError("sensitivity: the sweep back-end does not apply: " + *unsuitable);

  Certificate cert = make_certificate(*A, scc, options.perron);
  info.lambda_lower = cert.pf.lower;
  info.lambda_upper = cert.pf.upper;
  if (!cert.pf.certified())
    throw NumericalError(
        "sensitivity: lambda_PF(|A|) < 1 is not certified: lambda_PF(|A|) in " +
            interval(cert.pf) +
            "; S = |C| (I - |A|)^-1 |B| + |D| is only defined (and a bound) when "
            "lambda_PF(|A|) < 1" +
            (cert.pf.message.empty() ? "" : " (" + cert.pf.message + ")"),
        cert.pf.upper, 1.0, cert.pf.iterations);
  const std::string why_not_sweep = unsuitable ? *unsuitable : "sweep not requested";

  if (method == SensitivityMethod::automatic || method == SensitivityMethod::klu) {
    auto klu = std::make_unique<KluSolve<T>>(*A);
    const double fill = klu->predicted_fill();
    const double limit = options.klu_fill_limit * std::max(1.0, klu->entries());
    if (method == SensitivityMethod::klu || fill <= limit) {
      klu->factor();
      info.method = SensitivityMethod::klu;
      info.factor_entries = klu->factor_entries();
      info.reason =
          (method == SensitivityMethod::klu ? std::string("requested") : why_not_sweep) +
          "; lambda_PF(|A|) in " + interval(cert.pf) + ": sparse LU of I - |A| (KLU, " +
          std::to_string(info.factor_entries) + " factor entries)";
      return klu;
    }
    info.reason = why_not_sweep + "; KLU fill " + format_number(fill, 6) + " exceeds " +
                  format_number(options.klu_fill_limit, 6) + " x nnz";
  } else {
    info.reason = "requested";
  }
  if (!cert.problem.empty())
    throw NumericalError("sensitivity: the iterative back-end has no certified "
                         "contraction: " +
                             cert.problem + " (lambda_PF(|A|) in " + interval(cert.pf) +
                             ")",
                         cert.pf.upper, 1.0, cert.pf.iterations);
  info.method = SensitivityMethod::iterative;
  info.theta = cert.theta;
  info.exact = false;
  info.reason += "; lambda_PF(|A|) in " + interval(cert.pf) +
                 ": iteration w <- |A| w + r, contraction ratio " + format_number(cert.theta, 6) +
                 " certified on a Perron vector";
  return std::make_unique<IterativeSolve<T>>(M, std::move(cert), options);
}

template std::unique_ptr<Resolvent<float>>
make_resolvent(const OperatorPtr<float> &, const SensitivityOptions &, ResolventChoice &);
template std::unique_ptr<Resolvent<double>> make_resolvent(const OperatorPtr<double> &,
                                                           const SensitivityOptions &,
                                                           ResolventChoice &);

} // namespace tacit::inline v1::detail
