// Picard / Anderson fixed-point engine (see solve/detail/fixed_point.hpp).
//
// Determinism: row sums use a fixed order (solve/detail/solve_kernels.hpp); the
// per-column reductions of a pass are maxima (exact, so any partition gives
// the same bits); Anderson's inner products are summed over a fixed
// partition of the rows (kAndersonChunk) in a fixed order.

#include "solve/detail/fixed_point.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <tbb/blocked_range.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>

#include "core/detail/parallel.hpp"
#include "core/detail/csr_schedule.hpp"
#include "solve/detail/solve_dispatch.hpp"

namespace tacit::inline v1::detail {

namespace {

constexpr index_t kAndersonChunk = 1024; // rows per inner-product partial
constexpr int kMaxAndersonDepth = 64;
constexpr double kAndersonRegularization = 1e-12;

template <class T> constexpr double min_rel_tol() {
  return 16 * static_cast<double>(std::numeric_limits<T>::epsilon());
}

enum UpdateMode : unsigned char { keep = 0, take_g, revert, first, mix };

template <class V> void grow(V &v, std::size_t n) {
  if (v.size() < n)
    v.resize(n);
}

index_t part_count(std::int64_t work) {
  const auto threads = static_cast<std::int64_t>(tbb::info::default_concurrency());
  return static_cast<index_t>(std::clamp<std::int64_t>(work / 16384, 1, 8 * threads));
}

/// Cholesky solve of the h x h system a z = b (row-major, overwritten), with
/// a relative Tikhonov shift. False when not numerically positive definite.
bool solve_normal_equations(double *a, double *b, int h) {
  double scale = 0;
  for (int i = 0; i < h; ++i)
    scale = std::max(scale, a[i * h + i]);
  if (!(scale > 0) || !std::isfinite(scale))
    return false;
  for (int i = 0; i < h; ++i)
    a[i * h + i] += kAndersonRegularization * scale;
  for (int j = 0; j < h; ++j) {
    double d = a[j * h + j];
    for (int k = 0; k < j; ++k)
      d -= a[j * h + k] * a[j * h + k];
    if (!(d > 1e-14 * scale))
      return false;
    d = std::sqrt(d);
    a[j * h + j] = d;
    for (int i = j + 1; i < h; ++i) {
      double s = a[i * h + j];
      for (int k = 0; k < j; ++k)
        s -= a[i * h + k] * a[j * h + k];
      a[i * h + j] = s / d;
    }
  }
  for (int i = 0; i < h; ++i) { // L z = b
    double s = b[i];
    for (int k = 0; k < i; ++k)
      s -= a[i * h + k] * b[k];
    b[i] = s / a[i * h + i];
  }
  for (int i = h - 1; i >= 0; --i) { // L^T z = z
    double s = b[i];
    for (int k = i + 1; k < h; ++k)
      s -= a[k * h + i] * b[k];
    b[i] = s / a[i * h + i];
  }
  for (int i = 0; i < h; ++i)
    if (!std::isfinite(b[i]))
      return false;
  return true;
}

} // namespace

void *allocate_aligned(std::size_t bytes, std::size_t align, bool huge_pages) {
  if (huge_pages && bytes >= huge_page_threshold) {
    const std::size_t rounded =
        (bytes + huge_page_size - 1) / huge_page_size * huge_page_size;
    void *p = ::operator new(rounded, std::align_val_t(huge_page_size));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE); // a hint: failure is harmless
#endif
    return p;
  }
  return ::operator new(bytes, std::align_val_t(align));
}

void deallocate_aligned(void *p, std::size_t bytes, std::size_t align,
                        bool huge_pages) noexcept {
  ::operator delete(p, std::align_val_t(huge_pages && bytes >= huge_page_threshold
                                            ? huge_page_size
                                            : align));
}

void validate(const PicardOptions &o) {
  auto bad = [](const std::string &what) {
    throw InvalidArgument("Picard options: " + what);
  };
  if (!(o.abs_tol >= 0) || !std::isfinite(o.abs_tol))
    bad("abs_tol must be finite and >= 0, got " + std::to_string(o.abs_tol));
  if (!(o.rel_tol >= 0) || !std::isfinite(o.rel_tol))
    bad("rel_tol must be finite and >= 0, got " + std::to_string(o.rel_tol));
  if (o.max_iterations < 0)
    bad("max_iterations must be >= 0, got " + std::to_string(o.max_iterations));
  if (!(o.divergence_factor > 1))
    bad("divergence_factor must be > 1, got " + std::to_string(o.divergence_factor));
  if (o.anderson_depth < 0 || o.anderson_depth > kMaxAndersonDepth)
    bad("anderson_depth must be in 0.." + std::to_string(kMaxAndersonDepth) + ", got " +
        std::to_string(o.anderson_depth));
}

// ---------------------------------------------------------------------------
// FixedPointSystem

template <class T>
FixedPointSystem<T>::FixedPointSystem(const CsrMatrix<T> &M,
                                      std::span<const Activation> activations)
    : csr_(&M), op_(&M), rows_(M.rows()), act_(activations.begin(), activations.end()) {
  if (M.rows() != M.cols() || static_cast<index_t>(act_.size()) != rows_)
    throw InvalidArgument("fixed point: M is " + std::to_string(M.rows()) + " x " +
                          std::to_string(M.cols()) + " with " +
                          std::to_string(act_.size()) + " activations");
  const int parts = static_cast<int>(part_count(M.nnz() + rows_));
  parts_.resize(static_cast<std::size_t>(parts) + 1);
  balanced_row_partition(M.row_ptr(), parts, parts_);
}

template <class T>
FixedPointSystem<T>::FixedPointSystem(const CsrMatrix<T> &M,
                                      std::span<const Activation> activations,
                                      index_t row_begin, index_t row_end)
    : csr_(&M), op_(&M), rows_(M.rows()), act_(activations.begin(), activations.end()) {
  if (M.rows() != M.cols() || static_cast<index_t>(act_.size()) != rows_)
    throw InvalidArgument("fixed point: M is " + std::to_string(M.rows()) + " x " +
                          std::to_string(M.cols()) + " with " +
                          std::to_string(act_.size()) + " activations");
  if (row_begin < 0 || row_end < row_begin || row_end > rows_)
    throw InvalidArgument("fixed point: rows [" + std::to_string(row_begin) + ", " +
                          std::to_string(row_end) + ") outside [0, " +
                          std::to_string(rows_) + ")");
  const auto rp = M.row_ptr();
  std::vector<std::int64_t> local(static_cast<std::size_t>(row_end - row_begin) + 1);
  for (index_t r = row_begin; r <= row_end; ++r)
    local[r - row_begin] = rp[r] - rp[row_begin];
  const int parts = static_cast<int>(part_count(local.back() + (row_end - row_begin)));
  parts_.resize(static_cast<std::size_t>(parts) + 1);
  balanced_row_partition(local, parts, parts_);
  for (auto &b : parts_)
    b += row_begin;
}

template <class T>
FixedPointSystem<T>::FixedPointSystem(const LinearOperator<T> &M,
                                      std::span<const Activation> activations)
    : csr_(stored_csr(M)), op_(&M), rows_(M.rows()),
      act_(activations.begin(), activations.end()) {
  if (M.rows() != M.cols() || static_cast<index_t>(act_.size()) != rows_)
    throw InvalidArgument("fixed point: M is " + std::to_string(M.rows()) + " x " +
                          std::to_string(M.cols()) + " with " +
                          std::to_string(act_.size()) + " activations");
  if (csr_) {
    const int parts = static_cast<int>(part_count(csr_->nnz() + rows_));
    parts_.resize(static_cast<std::size_t>(parts) + 1);
    balanced_row_partition(csr_->row_ptr(), parts, parts_);
  } else {
    // Only the activation pass is ours: equal row ranges.
    const index_t parts = part_count(rows_ * 4);
    parts_.resize(static_cast<std::size_t>(parts) + 1);
    for (index_t p = 0; p <= parts; ++p)
      parts_[p] = rows_ * p / parts;
  }
}

// ---------------------------------------------------------------------------
// FixedPointWork

template <class T>
void FixedPointWork<T>::reserve(index_t rows, index_t slabs, index_t width, int depth,
                                index_t parts, bool operator_buffer, bool c_buffer) {
  rows_ = rows;
  slabs_ = slabs;
  width_ = width;
  parts_ = parts;
  depth_ = depth;
  const auto big = static_cast<std::size_t>(rows * slabs * width);
  const auto cols = static_cast<std::size_t>(slabs * width);
  grow(x_[0], big);
  grow(x_[1], depth > 0 ? 0 : big);
  if (c_buffer)
    grow(c_, big);
  if (operator_buffer)
    grow(y_, big);
  if (depth > 0) {
    const auto d = static_cast<std::size_t>(depth);
    grow(g_, big);
    grow(g_prev_, big);
    grow(f_prev_, big);
    grow(dF_, big * d);
    grow(dG_, big * d);
    grow(gram_, cols * d * d + d * d); // + scratch for one solve
    grow(rhs_, cols * d + d);
    grow(gamma_, cols * d);
    const auto chunks =
        static_cast<std::size_t>((rows + kAndersonChunk - 1) / kAndersonChunk);
    grow(inner_, static_cast<std::size_t>(slabs) * std::max<std::size_t>(chunks, 1) *
                     static_cast<std::size_t>(width) * 2 * d);
  }
  grow(columns_, cols);
  grow(parity_, static_cast<std::size_t>(slabs));
  grow(slab_active_, static_cast<std::size_t>(slabs));
  grow(on_, cols);
  grow(column_max_, 3 * cols);
  grow(mask_, cols);
  const auto partials = cols * static_cast<std::size_t>(parts);
  grow(part_step_, partials);
  grow(part_norm_, partials);
  grow(part_bad_, partials);
}

template <class T> T *FixedPointWork<T>::current(index_t s) noexcept {
  return x_[depth_ > 0 ? 0 : parity_[s]].data() + s * slab_size();
}

// ---------------------------------------------------------------------------
// The engine

template <class T> struct FixedPointRunner {
  const FixedPointSystem<T> &sys;
  FixedPointWork<T> &w;
  const FixedPointRun<T> &run;
  const PicardOptions &opt;
  index_t n, W, S, P;
  // The iterated rows (all of them unless the run is distributed).
  index_t rb, re;
  // A step below a few ulps of the iterate is rounding noise of one
  // evaluation of g: such a tolerance could never be met.
  double rel_tol;
  // The active level's kernels, chosen once per run.
  const SolveKernelsOf<T> &kernels = solve_kernels().template of<T>();

  FixedPointRunner(const FixedPointSystem<T> &s, FixedPointWork<T> &work,
                   const FixedPointRun<T> &r, const PicardOptions &o)
      : sys(s), w(work), run(r), opt(o), n(s.rows()), W(work.width_), S(work.slabs_),
        P(static_cast<index_t>(s.parts().size()) - 1), rb(s.parts().front()),
        re(s.parts().back()), rel_tol(std::max(o.rel_tol, min_rel_tol<T>())) {}

  index_t slab_cols(index_t s) const {
    return std::clamp<index_t>(run.columns - s * W, 0, W);
  }
  index_t slab_size() const { return n * W; }

  /// One pass over every slab with slab_active set (all slabs if `all`):
  /// g = phi(M x + c) from x_[parity] (or x_[0]), per-column partial maxima,
  /// g written according to `write` into x_[1 - parity] or g_.
  template <FusedWrite Wr> void pass(bool product, bool all) {
    if (product && run.exchange)
      for (index_t s = 0; s < S; ++s)
        if ((all || w.slab_active_[s]) && slab_cols(s) > 0)
          (*run.exchange)(w.current(s), s);
    if (!sys.is_csr() && product) {
      // Operator products slab by slab (the operator parallelises inside).
      for (index_t s = 0; s < S; ++s) {
        if (!(all || w.slab_active_[s]) || slab_cols(s) == 0)
          continue;
        const T *x = w.current(s);
        sys.op().apply(Mode::normal, T(1), ConstMatrixView<T>(x, n, slab_cols(s), W),
                       T(0),
                       MatrixView<T>{w.y_.data() + s * slab_size(), n, slab_cols(s), W},
                       run.parallel ? Execution::parallel : Execution::reference);
      }
    }
    const auto parts = sys.parts();
    for_tasks(S * P, run.parallel, [&](index_t t) {
      const index_t s = t / P, p = t % P;
      const index_t ncols = slab_cols(s);
      T *step = w.part_step_.data() + t * W;
      T *norm = w.part_norm_.data() + t * W;
      T *bad = w.part_bad_.data() + t * W;
      std::fill(step, step + W, T(0));
      std::fill(norm, norm + W, T(0));
      std::fill(bad, bad + W, T(0));
      if (!(all || w.slab_active_[s]) || ncols == 0)
        return;
      const T *x = w.current(s);
      const T *c = run.c + s * slab_size();
      T *out = nullptr;
      if constexpr (Wr == write_select)
        out = w.x_[1 - w.parity_[s]].data() + s * slab_size();
      else if constexpr (Wr == write_always)
        out = w.g_.data() + s * slab_size();
      const T *on = w.mask_.data() + s * W;
      const T *y = (!sys.is_csr() && product) ? w.y_.data() + s * slab_size() : nullptr;
      auto go = [&](auto cols) {
        using I = typename decltype(cols)::value_type;
        const auto &M = *sys.csr();
        kernels.template fused<I>(Wr)(M.row_ptr().data(), cols.data(), M.values().data(),
                                      sys.activations(), parts[p], parts[p + 1], product,
                                      y, x, c, out, W, ncols, on, step, norm, bad);
      };
      if (sys.is_csr()) {
        sys.csr()->visit_columns(go);
      } else {
        kernels.template fused<std::int32_t>(Wr)(
            nullptr, nullptr, nullptr, sys.activations(), parts[p], parts[p + 1], false,
            y, x, c, out, W, ncols, on, step, norm, bad);
      }
    });
    // Per column: maxima over the parts (and over the processes).
    for (index_t s = 0; s < S; ++s)
      for (index_t j = 0; j < W; ++j) {
        T st = 0, nm = 0;
        bool b = false;
        for (index_t p = 0; p < P; ++p) {
          const index_t k = (s * P + p) * W + j;
          st = w.part_step_[k] > st ? w.part_step_[k] : st;
          nm = w.part_norm_[k] > nm ? w.part_norm_[k] : nm;
          b = b || w.part_bad_[k] != T(0);
        }
        double *out = w.column_max_.data() + 3 * (s * W + j);
        out[0] = static_cast<double>(st);
        out[1] = static_cast<double>(nm);
        out[2] = b ? 1.0 : 0.0;
      }
    if (run.reduce)
      (*run.reduce)(
          std::span<double>(w.column_max_.data(), static_cast<std::size_t>(3 * S * W)));
  }

  /// Column j of slab s: maxima over the parts of the last pass.
  void gather(index_t s, index_t j, double &step, double &norm, bool &bad) const {
    const double *m = w.column_max_.data() + 3 * (s * W + j);
    step = m[0];
    norm = m[1];
    bad = m[2] != 0;
  }

  bool any_active() {
    bool any = false;
    for (index_t s = 0; s < S; ++s) {
      bool a = false;
      for (index_t j = 0; j < W; ++j)
        a = a || w.columns_[s * W + j].active;
      w.slab_active_[s] = a;
      any = any || a;
    }
    return any;
  }

  /// The stop rules shared by both variants. Returns true when the column
  /// stops now (status set).
  bool stops(ColumnState &cs, double step, double norm, bool bad) const {
    if (bad) {
      cs.status = SolveStatus::non_finite;
      return true;
    }
    if (step <= opt.abs_tol + rel_tol * norm) {
      cs.status = SolveStatus::converged;
      return true;
    }
    if (step > opt.divergence_factor * std::max({cs.min_step, opt.abs_tol,
                                                 std::numeric_limits<double>::min()})) {
      cs.status = SolveStatus::diverged;
      return true;
    }
    if (cs.iterations >= opt.max_iterations) {
      cs.status = SolveStatus::max_iterations;
      return true;
    }
    return false;
  }

  void report(int it, double max_step) {
    if (run.step_history)
      run.step_history->push_back(max_step);
    if (run.progress && *run.progress)
      (*run.progress)(it, max_step);
  }

  void init() {
    if (chained() && opt.anderson_depth > 0) {
      const auto cnt = static_cast<std::size_t>(S * W * 2 * opt.anderson_depth);
      const index_t rows = re - rb;
      const auto chunks = static_cast<std::size_t>(rows / kAndersonChunk + 2);
      chunk_sums_.assign(chunks * cnt, 0.0);
      carry_.assign(2 * cnt, 0.0);
      totals_.assign(cnt, 0.0);
    }
    // No allocation inside the iterations (beyond 65536 entries, amortised).
    if (run.step_history)
      run.step_history->reserve(
          static_cast<std::size_t>(std::min(opt.max_iterations, 1 << 16)));
    for (index_t s = 0; s < S; ++s) {
      w.parity_[s] = 0;
      for (index_t j = 0; j < W; ++j) {
        ColumnState cs;
        cs.active = j < slab_cols(s);
        cs.min_step = std::numeric_limits<double>::infinity();
        w.columns_[s * W + j] = cs;
      }
    }
  }

  void stop_remaining() {
    for (index_t k = 0; k < S * W; ++k)
      if (w.columns_[k].active) {
        w.columns_[k].active = false;
        w.columns_[k].status = SolveStatus::max_iterations;
      }
  }

  void plain() {
    bool product = !run.zero_start;
    for (int it = 1;; ++it) {
      if (!any_active())
        return;
      if (it > opt.max_iterations) {
        stop_remaining();
        return;
      }
      for (index_t k = 0; k < S * W; ++k)
        w.mask_[k] = w.columns_[k].active ? T(1) : T(0);
      pass<write_select>(product, false);
      product = true;
      double max_step = 0;
      for (index_t s = 0; s < S; ++s) {
        if (!w.slab_active_[s])
          continue;
        for (index_t j = 0; j < W; ++j) {
          ColumnState &cs = w.columns_[s * W + j];
          if (!cs.active)
            continue;
          double step, norm;
          bool bad;
          gather(s, j, step, norm, bad);
          ++cs.iterations;
          cs.step = step;
          cs.norm = norm;
          max_step =
              bad ? std::numeric_limits<double>::infinity() : std::max(max_step, step);
          if (stops(cs, step, norm, bad))
            cs.active = false;
          cs.min_step = std::min(cs.min_step, step);
        }
        w.parity_[s] ^= 1;
      }
      report(it, max_step);
    }
  }

  // ---- Anderson ----------------------------------------------------------

  double *gram(index_t col) { return w.gram_.data() + col * w.depth_ * w.depth_; }
  double *rhs(index_t col) { return w.rhs_.data() + col * w.depth_; }
  double *gamma(index_t col) { return w.gamma_.data() + col * w.depth_; }
  index_t slot(int head, int l) const {
    const int d = w.depth_;
    return ((head - l) % d + d) % d;
  }

  bool chained() const { return run.global_rows > 0; }

  /// Pass B: store f and g of FIRST columns; for MIX columns push the new
  /// differences into ring slot `head` and (unless the run is chained, see
  /// anderson_chained_inner) form the inner products <dF_new, dF_q> and
  /// <dF_q, f> over fixed row chunks.
  void anderson_differences(int head) {
    const int d = w.depth_;
    const index_t rows = re - rb;
    const index_t chunks = (rows + kAndersonChunk - 1) / kAndersonChunk;
    const index_t big = slab_size() * S;
    const bool inner_here = !chained();
    for_tasks(S * chunks, run.parallel, [&](index_t t) {
      const index_t s = t / chunks, ch = t % chunks;
      double *inner = w.inner_.data() + t * W * 2 * d;
      if (inner_here)
        std::fill(inner, inner + W * 2 * d, 0.0);
      if (!w.slab_active_[s])
        return;
      const index_t r0 = rb + ch * kAndersonChunk, r1 = std::min(re, r0 + kAndersonChunk);
      const index_t ncols = slab_cols(s);
      const index_t off = s * slab_size();
      const unsigned char *mode = w.on_.data() + s * W;
      for (index_t r = r0; r < r1; ++r) {
        const index_t row = off + r * W;
        for (index_t j = 0; j < ncols; ++j) {
          const index_t e = row + j;
          if (mode[j] == first) {
            w.f_prev_[e] = w.g_[e] - w.x_[0][e];
            w.g_prev_[e] = w.g_[e];
          } else if (mode[j] == mix) {
            const T f = w.g_[e] - w.x_[0][e];
            const T df = f - w.f_prev_[e];
            w.dF_[head * big + e] = df;
            w.dG_[head * big + e] = w.g_[e] - w.g_prev_[e];
            w.f_prev_[e] = f;
            w.g_prev_[e] = w.g_[e];
            if (!inner_here)
              continue;
            double *ip = inner + j * 2 * d;
            for (int q = 0; q < d; ++q) {
              const double dq = static_cast<double>(w.dF_[q * big + e]);
              ip[q] += static_cast<double>(df) * dq;
              ip[d + q] += dq * static_cast<double>(f);
            }
          }
        }
      }
    });
  }

  /// Sums the chunk partials of MIX columns into their Gram matrix and
  /// solves for the mixing coefficients; falls back to a Picard step (and
  /// restarts the history) when the least-squares problem is singular.
  void anderson_coefficients(int head) {
    const int d = w.depth_;
    const index_t chunks = (re - rb + kAndersonChunk - 1) / kAndersonChunk;
    double *a = w.gram_.data() + S * W * d * d; // scratch
    double *b = w.rhs_.data() + S * W * d;
    for (index_t s = 0; s < S; ++s) {
      if (!w.slab_active_[s])
        continue;
      for (index_t j = 0; j < W; ++j) {
        const index_t col = s * W + j;
        ColumnState &cs = w.columns_[col];
        if (w.on_[col] != mix)
          continue;
        double *G = gram(col), *R = rhs(col), *gm = gamma(col);
        for (int q = 0; q < d; ++q) {
          double ip = 0, fr = 0;
          if (chained()) {
            ip = totals_[col * 2 * d + q];
            fr = totals_[col * 2 * d + d + q];
          }
          for (index_t ch = 0; ch < (chained() ? 0 : chunks); ++ch) {
            const double *inner = w.inner_.data() + ((s * chunks + ch) * W + j) * 2 * d;
            ip += inner[q];
            fr += inner[d + q];
          }
          G[head * d + q] = ip;
          G[q * d + head] = ip;
          R[q] = fr;
        }
        cs.history = std::min(cs.history + 1, d);
        bool solved = false;
        for (int h : {cs.history, 1}) {
          for (int l = 0; l < h; ++l) {
            b[l] = R[slot(head, l)];
            for (int m = 0; m < h; ++m)
              a[l * h + m] = G[slot(head, l) * d + slot(head, m)];
          }
          if (solve_normal_equations(a, b, h)) {
            for (int l = 0; l < h; ++l)
              gm[l] = b[l];
            cs.history = h;
            solved = true;
            break;
          }
          if (cs.history == 1)
            break;
        }
        if (solved) {
          cs.mixed_last = true;
        } else {
          cs.history = 0;
          cs.mixed_last = false;
          w.on_[col] = take_g; // Picard step; f_prev/g_prev already hold f, g
        }
      }
    }
  }

  // Chained inner products (a distributed run): the partial sums of the
  // chunks that start in this process's rows, and the running sums passed
  // along the processes (total over the finished chunks, then the partial
  // sum of the chunk still open), the totals of every column at the end.
  std::vector<double> chunk_sums_, carry_, totals_;

  /// Adds the products of the global rows [g0, g1) of slab s (all iterated
  /// here) to acc (W * 2d values: per column <dF_new, dF_q>, then <dF_q, f>),
  /// row by row in order: the single-process order within a chunk.
  void anderson_accumulate(int head, index_t s, index_t g0, index_t g1,
                           double *acc) const {
    if (!w.slab_active_[s])
      return;
    const int d = w.depth_;
    const index_t big = slab_size() * S, ncols = slab_cols(s), off = s * slab_size();
    const unsigned char *mode = w.on_.data() + s * W;
    for (index_t g = g0; g < g1; ++g) {
      const index_t row = off + (rb + g - run.global_begin) * W;
      for (index_t j = 0; j < ncols; ++j) {
        if (mode[j] != mix)
          continue;
        const index_t e = row + j;
        const T df = w.dF_[head * big + e];
        const T f = w.f_prev_[e];
        double *ip = acc + j * 2 * d;
        for (int q = 0; q < d; ++q) {
          const double dq = static_cast<double>(w.dF_[q * big + e]);
          ip[q] += static_cast<double>(df) * dq;
          ip[d + q] += dq * static_cast<double>(f);
        }
      }
    }
  }

  /// The inner products of MIX columns over all processes' rows, the same
  /// bits as the single-process sums: the chunks of kAndersonChunk global
  /// rows that start here are summed in parallel; then, in the order of the
  /// processes, each continues the chunk left open by the previous ones with
  /// its first rows, adds its finished chunks to the total and hands on.
  void anderson_chained_inner(int head) {
    const int d = w.depth_;
    const index_t cnt = S * W * 2 * d;
    const index_t g0 = run.global_begin, g1 = g0 + (re - rb), N = run.global_rows;
    const index_t K = kAndersonChunk;
    auto chunk_end = [&](index_t c) { return std::min(N, (c + 1) * K); };
    // Chunks that start in [g0, g1).
    const index_t c0 = (g0 + K - 1) / K, c1 = g1 > 0 ? (g1 - 1) / K + 1 : 0;
    const index_t starting = std::max<index_t>(c1 - c0, 0);
    std::fill(chunk_sums_.begin(),
              chunk_sums_.begin() + static_cast<std::ptrdiff_t>(starting * cnt), 0.0);
    for_tasks(S * starting, run.parallel, [&](index_t t) {
      const index_t s = t / starting, c = c0 + t % starting;
      anderson_accumulate(head, s, c * K, std::min(g1, chunk_end(c)),
                          chunk_sums_.data() + (c - c0) * cnt + s * W * 2 * d);
    });
    double *total = carry_.data(), *open = carry_.data() + cnt;
    std::fill(carry_.begin(), carry_.end(), 0.0);
    const std::span<double> carry(carry_.data(), static_cast<std::size_t>(2 * cnt));
    if (run.receive_previous && *run.receive_previous)
      (*run.receive_previous)(carry);
    if (g0 < g1 && g0 % K != 0) {
      // The first rows continue the chunk that a previous process opened.
      const index_t end = std::min(g1, chunk_end(g0 / K));
      for (index_t s = 0; s < S; ++s)
        anderson_accumulate(head, s, g0, end, open + s * W * 2 * d);
      if (chunk_end(g0 / K) <= g1)
        for (index_t i = 0; i < cnt; ++i) {
          total[i] += open[i];
          open[i] = 0;
        }
    }
    for (index_t c = c0; c < c1; ++c) {
      const double *sum = chunk_sums_.data() + (c - c0) * cnt;
      if (chunk_end(c) <= g1)
        for (index_t i = 0; i < cnt; ++i)
          total[i] += sum[i];
      else
        std::copy(sum, sum + cnt, open);
    }
    if (run.send_next && *run.send_next)
      (*run.send_next)(carry);
    if (run.broadcast_last && *run.broadcast_last)
      (*run.broadcast_last)(carry);
    std::copy(total, total + cnt, totals_.begin());
  }

  /// Pass C: the new iterate of each column according to its mode.
  void anderson_update(int head) {
    const index_t big = slab_size() * S;
    const index_t parts = (re - rb + kAndersonChunk - 1) / kAndersonChunk;
    for_tasks(S * parts, run.parallel, [&](index_t t) {
      const index_t s = t / parts, ch = t % parts;
      if (!w.slab_active_[s])
        return;
      const index_t r0 = rb + ch * kAndersonChunk, r1 = std::min(re, r0 + kAndersonChunk);
      const index_t ncols = slab_cols(s);
      const index_t off = s * slab_size();
      const unsigned char *mode = w.on_.data() + s * W;
      for (index_t r = r0; r < r1; ++r) {
        const index_t row = off + r * W;
        for (index_t j = 0; j < ncols; ++j) {
          const index_t e = row + j;
          switch (mode[j]) {
          case take_g:
          case first:
            w.x_[0][e] = w.g_[e];
            break;
          case revert:
            w.x_[0][e] = w.g_prev_[e];
            break;
          case mix: {
            const ColumnState &cs = w.columns_[s * W + j];
            const double *gm = w.gamma_.data() + (s * W + j) * w.depth_;
            T v = w.g_[e];
            for (int l = 0; l < cs.history; ++l)
              v -= static_cast<T>(gm[l]) * w.dG_[slot(head, l) * big + e];
            w.x_[0][e] = v;
            break;
          }
          default:
            break;
          }
        }
      }
    });
  }

  void anderson() {
    bool product = !run.zero_start;
    int head = -1;
    for (int it = 1;; ++it) {
      if (!any_active())
        return;
      if (it > opt.max_iterations) {
        stop_remaining();
        return;
      }
      pass<write_always>(product, false);
      product = true;
      double max_step = 0;
      bool any_mix = false, any_store = false;
      for (index_t s = 0; s < S; ++s) {
        for (index_t j = 0; j < W; ++j) {
          const index_t col = s * W + j;
          ColumnState &cs = w.columns_[col];
          w.on_[col] = keep;
          if (!w.slab_active_[s] || !cs.active)
            continue;
          double step, norm;
          bool bad;
          gather(s, j, step, norm, bad);
          ++cs.iterations;
          if (cs.mixed_last && (bad || step > cs.previous_residual)) {
            // The mixed step made the residual worse: take the Picard step
            // from the previous iterate instead and restart the history.
            w.on_[col] = revert;
            cs.history = 0;
            cs.mixed_last = false;
            if (cs.iterations >= opt.max_iterations) {
              cs.status = SolveStatus::max_iterations;
              cs.active = false;
            }
            continue;
          }
          max_step =
              bad ? std::numeric_limits<double>::infinity() : std::max(max_step, step);
          cs.step = step;
          cs.norm = norm;
          if (stops(cs, step, norm, bad)) {
            cs.active = false;
            w.on_[col] = take_g;
          } else if (!cs.have_previous) {
            w.on_[col] = first;
            cs.have_previous = true;
            cs.mixed_last = false;
            any_store = true;
          } else {
            w.on_[col] = mix;
            any_mix = any_store = true;
          }
          cs.previous_residual = step;
          cs.min_step = std::min(cs.min_step, step);
        }
      }
      if (any_mix)
        head = (head + 1) % w.depth_;
      if (any_store)
        anderson_differences(std::max(head, 0));
      if (any_mix && chained())
        anderson_chained_inner(head);
      if (any_mix)
        anderson_coefficients(head);
      anderson_update(std::max(head, 0));
      report(it, max_step);
    }
  }

  /// Residual ||x - g(x)||_inf of every real column at the returned x.
  void residuals() {
    pass<write_none>(true, true);
    for (index_t s = 0; s < S; ++s)
      for (index_t j = 0; j < W; ++j) {
        ColumnState &cs = w.columns_[s * W + j];
        if (j >= slab_cols(s)) {
          cs.residual = 0;
          continue;
        }
        double step, norm;
        bool bad;
        gather(s, j, step, norm, bad);
        cs.residual = bad ? std::numeric_limits<double>::infinity() : step;
      }
  }

  void go() {
    init();
    if (opt.anderson_depth > 0)
      anderson();
    else
      plain();
    residuals();
  }
};

template <class T>
void run_fixed_point(const FixedPointSystem<T> &system, FixedPointWork<T> &work,
                     const FixedPointRun<T> &run, const PicardOptions &options) {
  if (work.rows() != system.rows() || work.depth() != options.anderson_depth ||
      work.parts() < static_cast<index_t>(system.parts().size()) - 1)
    throw InvalidArgument("fixed point: workspace not reserved for this system");
  FixedPointRunner<T>(system, work, run, options).go();
}

template <class T>
void fixed_point_residuals(const FixedPointSystem<T> &system, const T *x, const T *c,
                           index_t slabs, index_t width, index_t columns,
                           std::span<double> out) {
  const index_t n = system.rows();
  const index_t P = static_cast<index_t>(system.parts().size()) - 1;
  const auto &kernels = solve_kernels().of<T>();
  const auto parts = system.parts();
  std::vector<T> step(static_cast<std::size_t>(slabs * P * width)), norm(step.size()),
      bad(step.size()), y;
  if (!system.is_csr())
    y.resize(static_cast<std::size_t>(n * slabs * width));
  for (index_t s = 0; s < slabs; ++s) {
    const index_t ncols = std::clamp<index_t>(columns - s * width, 0, width);
    if (!system.is_csr() && ncols > 0)
      system.op().apply(Mode::normal, T(1),
                        ConstMatrixView<T>(x + s * n * width, n, ncols, width), T(0),
                        MatrixView<T>{y.data() + s * n * width, n, ncols, width});
  }
  for_tasks(slabs * P, true, [&](index_t t) {
    const index_t s = t / P, p = t % P;
    const index_t ncols = std::clamp<index_t>(columns - s * width, 0, width);
    if (ncols == 0)
      return;
    const T *xs = x + s * n * width, *cs = c + s * n * width;
    if (system.is_csr()) {
      const auto &M = *system.csr();
      M.visit_columns([&](auto cols) {
        using I = typename decltype(cols)::value_type;
        kernels.template fused<I>(write_none)(
            M.row_ptr().data(), cols.data(), M.values().data(), system.activations(),
            parts[p], parts[p + 1], true, nullptr, xs, cs, nullptr, width, ncols, nullptr,
            step.data() + t * width, norm.data() + t * width, bad.data() + t * width);
      });
    } else {
      kernels.template fused<std::int32_t>(write_none)(
          nullptr, nullptr, nullptr, system.activations(), parts[p], parts[p + 1], false,
          y.data() + s * n * width, xs, cs, nullptr, width, ncols, nullptr,
          step.data() + t * width, norm.data() + t * width, bad.data() + t * width);
    }
  });
  for (index_t s = 0; s < slabs; ++s)
    for (index_t j = 0; j < width; ++j) {
      T st = 0;
      bool b = false;
      for (index_t p = 0; p < P; ++p) {
        const index_t k = (s * P + p) * width + j;
        st = step[k] > st ? step[k] : st;
        b = b || bad[k] != T(0);
      }
      const bool real = s * width + j < columns;
      out[s * width + j] = !real ? 0.0
                           : b   ? std::numeric_limits<double>::infinity()
                                 : static_cast<double>(st);
    }
}

template <class T>
void affine_batch(const LinearOperator<T> &B, std::span<const T> bias, const Batch<T> &U,
                  SlabBuffer<T> &Z) {
  const index_t n = B.rows();
  if (U.rows() != B.cols() || static_cast<index_t>(bias.size()) != n)
    throw InvalidArgument("affine_batch: B is " + std::to_string(n) + " x " +
                          std::to_string(B.cols()) + ", U has " +
                          std::to_string(U.rows()) + " rows, bias has " +
                          std::to_string(bias.size()) + " entries");
  Z.reshape(n, U.cols(), U.slab_width());
  const index_t S = Z.slabs, W = Z.width;
  const CsrMatrix<T> *csr = stored_csr(B);
  if (!csr) {
    for (index_t s = 0; s < S; ++s) {
      const index_t ncols = Z.slab_cols(s);
      T *z = Z.slab(s);
      for (index_t i = 0; i < n; ++i)
        std::fill(z + i * W, z + i * W + ncols, bias[i]);
      B.apply(Mode::normal, T(1), U.slab(s), T(1), MatrixView<T>{z, n, ncols, W});
    }
    return;
  }
  const index_t P = part_count(csr->nnz() + n);
  std::vector<index_t> bounds(static_cast<std::size_t>(P) + 1);
  balanced_row_partition(csr->row_ptr(), static_cast<int>(P), bounds);
  const auto &kernels = solve_kernels().of<T>();
  csr->visit_columns([&](auto cols) {
    using I = typename decltype(cols)::value_type;
    for_tasks(S * P, true, [&](index_t t) {
      const index_t s = t / P, p = t % P;
      kernels.template affine<I>()(csr->row_ptr().data(), cols.data(),
                                   csr->values().data(), bias.data(), bounds[p],
                                   bounds[p + 1], U.slab(s), Z.slab(s), W);
    });
  });
}

template void affine_batch(const LinearOperator<float> &, std::span<const float>,
                           const Batch<float> &, SlabBuffer<float> &);
template void affine_batch(const LinearOperator<double> &, std::span<const double>,
                           const Batch<double> &, SlabBuffer<double> &);

template class FixedPointSystem<float>;
template class FixedPointSystem<double>;
template class FixedPointWork<float>;
template class FixedPointWork<double>;
template void run_fixed_point(const FixedPointSystem<float> &, FixedPointWork<float> &,
                              const FixedPointRun<float> &, const PicardOptions &);
template void run_fixed_point(const FixedPointSystem<double> &, FixedPointWork<double> &,
                              const FixedPointRun<double> &, const PicardOptions &);
template void fixed_point_residuals(const FixedPointSystem<float> &, const float *,
                                    const float *, index_t, index_t, index_t,
                                    std::span<double>);
template void fixed_point_residuals(const FixedPointSystem<double> &, const double *,
                                    const double *, index_t, index_t, index_t,
                                    std::span<double>);

} // namespace tacit::inline v1::detail
