// The adjoint equation v = J (A^T v + r): reverse block and CSR sweeps,
// Picard/Anderson, per-column KLU (see include/tacit/solve/adjoint.hpp).

#include <tacit/solve/adjoint.hpp>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/structure.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <klu.h>

#include "core/detail/slab_buffer.hpp"
#include "solve/detail/fixed_point.hpp"

namespace tacit::inline v1 {

std::string to_string(AdjointMethod m) {
  switch (m) {
  case AdjointMethod::automatic:
    return "auto";
  case AdjointMethod::sweep:
    return "sweep";
  case AdjointMethod::picard:
    return "picard";
  case AdjointMethod::klu:
    return "klu";
  }
  return "?";
}

AdjointMethod parse_adjoint_method(std::string_view s) {
  if (s == "auto" || s == "automatic")
    return AdjointMethod::automatic;
  if (s == "sweep")
    return AdjointMethod::sweep;
  if (s == "picard")
    return AdjointMethod::picard;
  if (s == "klu")
    return AdjointMethod::klu;
  throw InvalidArgument("unknown adjoint method '" + std::string(s) +
                        "' (expected auto, sweep, picard or klu)");
}

namespace {

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string shape(index_t r, index_t c) {
  return std::to_string(r) + " x " + std::to_string(c);
}

template <class T> MatrixView<T> rows_of(MatrixView<T> v, index_t r0, index_t n) {
  return {v.data + r0 * v.ld, n, v.cols, v.ld};
}
template <class T>
ConstMatrixView<T> rows_of(ConstMatrixView<T> v, index_t r0, index_t n) {
  return {v.data + r0 * v.ld, n, v.cols, v.ld};
}

/// Calls f(r0, r1) over [0, n) in parallel chunks (elementwise work only).
template <class F> void parallel_rows(index_t n, index_t cols, F &&f) {
  const index_t grain = std::max<index_t>(64, 16384 / std::max<index_t>(1, cols));
  if (n <= grain) {
    f(index_t(0), n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<index_t>(0, n, grain),
                    [&](const tbb::blocked_range<index_t> &r) { f(r.begin(), r.end()); });
}

template <class T> T derivative_from_x(const Activation &a, T x) {
  switch (a.kind) {
  case ActivationKind::relu:
    return x > T(0) ? T(1) : T(0);
  case ActivationKind::leaky_relu:
    return x > T(0) ? T(1) : static_cast<T>(a.slope);
  case ActivationKind::tanh:
    return T(1) - x * x;
  case ActivationKind::sigmoid:
    return x * (T(1) - x);
  case ActivationKind::identity:
    return T(1);
  }
  return T(1);
}

template <class T> T derivative_from_z(const Activation &a, T z) {
  switch (a.kind) {
  case ActivationKind::relu:
    return z > T(0) ? T(1) : T(0);
  case ActivationKind::leaky_relu:
    return z > T(0) ? T(1) : static_cast<T>(a.slope);
  case ActivationKind::tanh: {
    const T t = std::tanh(z);
    return T(1) - t * t;
  }
  case ActivationKind::sigmoid: {
    const T s = T(1) / (T(1) + std::exp(-z));
    return s * (T(1) - s);
  }
  case ActivationKind::identity:
    return T(1);
  }
  return T(1);
}

/// Whether phi'(z) is a function of x = phi(z).
bool derivative_from_state(const Activation &a) {
  return a.kind != ActivationKind::leaky_relu || a.slope >= 0;
}

/// Per-column bookkeeping of an iterative adjoint run.
struct Column {
  SolveStatus status = SolveStatus::converged;
  bool active = true;
  int iterations = 0;
  double min_step = std::numeric_limits<double>::infinity();
  double residual = 0;
  // Anderson: valid differences in the ring, next slot, whether gprev/fprev
  // hold g and f of the previous iterate, whether the iterate is mixed.
  int history = 0, head = 0;
  bool has_previous = false, mixed_last = false;
  double previous_residual = std::numeric_limits<double>::infinity();
};

/// Workspace of the iterative method for one slab (rows x W, ld W).
template <class T> struct IterWork {
  detail::aligned_vector<T> t, g, gprev, fprev, dG, dF;
  std::vector<double> partial;
  void reserve(index_t n, index_t W, int depth) {
    const auto sz = static_cast<std::size_t>(n * W);
    for (auto *b : {&t, &g, &gprev, &fprev})
      if (b->size() < sz)
        b->resize(sz);
    const auto hs = sz * static_cast<std::size_t>(depth);
    if (dG.size() < hs) {
      dG.resize(hs);
      dF.resize(hs);
    }
  }
};

/// Deterministic column sums of f(i, c) over rows: fixed chunks of rows,
/// the chunks' sums added in order.
template <class F>
void column_sums(index_t n, index_t cols, std::vector<double> &partial,
                 std::span<double> out, F &&f) {
  constexpr index_t chunk = 2048;
  const index_t chunks = (n + chunk - 1) / chunk;
  partial.assign(static_cast<std::size_t>(chunks * cols), 0.0);
  auto body = [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) {
      double *p = partial.data() + ch * cols;
      const index_t r1 = std::min(n, (ch + 1) * chunk);
      for (index_t i = ch * chunk; i < r1; ++i)
        for (index_t c = 0; c < cols; ++c)
          p[c] += f(i, c);
    }
  };
  if (chunks <= 1)
    body(0, chunks);
  else
    tbb::parallel_for(
        tbb::blocked_range<index_t>(0, chunks, 1),
        [&](const tbb::blocked_range<index_t> &r) { body(r.begin(), r.end()); });
  std::fill(out.begin(), out.end(), 0.0);
  for (index_t ch = 0; ch < chunks; ++ch)
    for (index_t c = 0; c < cols; ++c)
      out[c] += partial[static_cast<std::size_t>(ch * cols + c)];
}

/// gamma = (G + ridge I)^-1 b for the m x m leading part of G (ld mmax);
/// empty when G is numerically singular.
inline std::vector<double> small_solve(const std::vector<double> &G, int mmax,
                                       const std::vector<double> &b, int m) {
  std::vector<double> L(static_cast<std::size_t>(m * m), 0.0);
  double trace = 0;
  for (int a = 0; a < m; ++a)
    trace += G[a * mmax + a];
  const double ridge = 1e-12 * trace;
  for (int a = 0; a < m; ++a)
    for (int c = 0; c <= a; ++c) {
      double s = G[a * mmax + c] + (a == c ? ridge : 0.0);
      for (int q = 0; q < c; ++q)
        s -= L[a * m + q] * L[c * m + q];
      if (a == c) {
        if (!(s > 0))
          return {};
        L[a * m + a] = std::sqrt(s);
      } else {
        L[a * m + c] = s / L[c * m + c];
      }
    }
  std::vector<double> y(static_cast<std::size_t>(m));
  for (int a = 0; a < m; ++a) {
    double s = b[a];
    for (int q = 0; q < a; ++q)
      s -= L[a * m + q] * y[q];
    y[a] = s / L[a * m + a];
  }
  for (int a = m - 1; a >= 0; --a) {
    double s = y[a];
    for (int q = a + 1; q < m; ++q)
      s -= L[q * m + a] * y[q];
    y[a] = s / L[a * m + a];
  }
  return y;
}

/// Picard/Anderson on v = J (A^T v + r) for one slab from v = 0:
/// `product(v, t)` sets t = A^T v (views of kc columns, ld W). v holds the
/// result, columns[c] its status. A column stops on the forward solver's
/// rule ||g(v) - v||_inf <= abs_tol + rel_tol ||g(v)||_inf and keeps v; a
/// mixed (Anderson) step that increases the residual is replaced by the
/// Picard step from the previous iterate and the history restarts.
template <class T, class Product>
void iterate(index_t n, index_t kc, index_t W, MatrixView<T> v, ConstMatrixView<T> r,
             ConstMatrixView<T> J, const Product &product, const PicardOptions &o,
             IterWork<T> &work, std::span<Column> columns) {
  const int depth = std::max(0, o.anderson_depth);
  work.reserve(n, W, depth);
  const double rel_tol = std::max(o.rel_tol, 16.0 * std::numeric_limits<T>::epsilon());
  MatrixView<T> t{work.t.data(), n, kc, W}, g{work.g.data(), n, kc, W};
  MatrixView<T> gprev{work.gprev.data(), n, kc, W}, fprev{work.fprev.data(), n, kc, W};
  const auto slot = [&](detail::aligned_vector<T> &b, int j) {
    return b.data() + static_cast<std::size_t>(j) * n * W;
  };
  for (auto &c : columns)
    c = Column{};
  for (index_t i = 0; i < n; ++i)
    std::fill(v.row(i), v.row(i) + kc, T(0));
  std::vector<double> step(kc), norm(kc), sums(kc);
  std::vector<char> bad(kc), act(kc), record(kc);
  std::vector<int> write_slot(kc);
  // What an active column does with its next iterate.
  enum : char { picard = 0, mix = 1, revert = 2 };
  std::vector<char> mode(kc);
  std::vector<std::vector<double>> gamma(kc);
  std::mutex merge;
  for (int it = 1;; ++it) {
    product(ConstMatrixView<T>(v), t);
    std::fill(step.begin(), step.end(), 0.0);
    std::fill(norm.begin(), norm.end(), 0.0);
    std::fill(bad.begin(), bad.end(), 0);
    parallel_rows(n, kc, [&](index_t r0, index_t r1) {
      std::vector<double> s(kc, 0.0), nm(kc, 0.0);
      std::vector<T> nf(kc, T(0));
      for (index_t i = r0; i < r1; ++i) {
        const T *ti = t.row(i), *ri = r.row(i), *ji = J.row(i), *vi = v.row(i);
        T *gi = g.row(i);
        for (index_t c = 0; c < kc; ++c) {
          const T gv = ji[c] * (ti[c] + ri[c]);
          gi[c] = gv;
          s[c] = std::max(s[c], std::abs(double(gv) - double(vi[c])));
          nm[c] = std::max(nm[c], std::abs(double(gv)));
          nf[c] += gv * T(0);
        }
      }
      std::lock_guard lock(merge); // max is exact: the merge order does not matter
      for (index_t c = 0; c < kc; ++c) {
        step[c] = std::max(step[c], s[c]);
        norm[c] = std::max(norm[c], nm[c]);
        bad[c] = bad[c] || !(nf[c] == T(0));
      }
    });
    bool any = false;
    for (index_t c = 0; c < kc; ++c) {
      Column &col = columns[c];
      act[c] = 0;
      record[c] = 0;
      if (!col.active)
        continue;
      col.iterations = it;
      col.residual = step[c];
      if (bad[c]) {
        col.status = SolveStatus::non_finite;
        col.residual = std::numeric_limits<double>::infinity();
        col.active = false;
        continue;
      }
      if (step[c] <= o.abs_tol + rel_tol * norm[c]) {
        col.status = SolveStatus::converged;
        col.active = false;
        continue;
      }
      if (it >= o.max_iterations) {
        col.status = SolveStatus::max_iterations;
        col.active = false;
        continue;
      }
      if (depth > 0 && col.mixed_last && step[c] > col.previous_residual) {
        mode[c] = revert;
        col.history = col.head = 0;
        col.has_previous = col.mixed_last = false;
      } else {
        col.min_step = std::min(col.min_step, step[c]);
        if (step[c] > o.divergence_factor * std::max(col.min_step, o.abs_tol)) {
          col.status = SolveStatus::diverged;
          col.active = false;
          continue;
        }
        mode[c] = depth > 0 ? mix : picard;
        if (depth > 0) {
          record[c] = col.has_previous;
          write_slot[c] = col.head;
          col.previous_residual = step[c];
        }
      }
      act[c] = 1;
      any = true;
    }
    if (!any)
      break;
    if (depth > 0) {
      // New differences (g - gprev, f - fprev), then gprev = g, fprev = f.
      parallel_rows(n, kc, [&](index_t r0, index_t r1) {
        for (index_t i = r0; i < r1; ++i) {
          const T *gi = g.row(i), *vi = v.row(i);
          T *gp = gprev.row(i), *fp = fprev.row(i);
          for (index_t c = 0; c < kc; ++c) {
            if (!act[c] || mode[c] != mix)
              continue;
            const T f = gi[c] - vi[c];
            if (record[c]) {
              const std::size_t at = static_cast<std::size_t>(i * W + c);
              slot(work.dG, write_slot[c])[at] = gi[c] - gp[c];
              slot(work.dF, write_slot[c])[at] = f - fp[c];
            }
            gp[c] = gi[c];
            fp[c] = f;
          }
        }
      });
      int mmax = 0;
      for (index_t c = 0; c < kc; ++c) {
        Column &col = columns[c];
        if (!act[c] || mode[c] != mix)
          continue;
        if (record[c]) {
          col.head = (col.head + 1) % depth;
          col.history = std::min(col.history + 1, depth);
        }
        col.has_previous = true;
        mmax = std::max(mmax, col.history);
      }
      // Per column: min ||f - dF gamma||_2 by the normal equations.
      std::vector<std::vector<double>> G(kc), b(kc);
      for (index_t c = 0; c < kc; ++c) {
        G[c].assign(static_cast<std::size_t>(mmax * mmax), 0.0);
        b[c].assign(static_cast<std::size_t>(mmax), 0.0);
      }
      for (int a = 0; a < mmax; ++a) {
        const T *Fa = slot(work.dF, a);
        for (int q = 0; q <= a; ++q) {
          const T *Fq = slot(work.dF, q);
          column_sums(n, kc, work.partial, sums, [&](index_t i, index_t c) {
            return double(Fa[i * W + c]) * double(Fq[i * W + c]);
          });
          for (index_t c = 0; c < kc; ++c)
            G[c][a * mmax + q] = G[c][q * mmax + a] = sums[c];
        }
        column_sums(n, kc, work.partial, sums, [&](index_t i, index_t c) {
          return double(Fa[i * W + c]) * double(fprev(i, c));
        });
        for (index_t c = 0; c < kc; ++c)
          b[c][a] = sums[c];
      }
      for (index_t c = 0; c < kc; ++c) {
        gamma[c].clear();
        if (act[c] && mode[c] == mix && columns[c].history > 0)
          gamma[c] = small_solve(G[c], mmax, b[c], columns[c].history);
      }
    }
    // The next iterate: g (Picard), g - dG gamma (mixed), gprev (revert).
    parallel_rows(n, kc, [&](index_t r0, index_t r1) {
      for (index_t i = r0; i < r1; ++i) {
        T *vi = v.row(i);
        const T *gi = g.row(i), *gp = gprev.row(i);
        for (index_t c = 0; c < kc; ++c) {
          if (!act[c])
            continue;
          if (mode[c] == revert) {
            vi[c] = gp[c];
          } else if (mode[c] == mix && !gamma[c].empty()) {
            double s = double(gi[c]);
            for (std::size_t a = 0; a < gamma[c].size(); ++a)
              s -= gamma[c][a] * double(slot(work.dG, static_cast<int>(a))[i * W + c]);
            vi[c] = static_cast<T>(s);
          } else {
            vi[c] = gi[c];
          }
        }
      }
    });
    for (index_t c = 0; c < kc; ++c)
      if (act[c])
        columns[c].mixed_last = mode[c] == mix && !gamma[c].empty();
  }
}

} // namespace

template <class T> struct AdjointSolver<T>::Impl {
  Model<T> model;
  AdjointOptions options;
  AdjointMethod method = AdjointMethod::picard;
  std::string reason;
  std::vector<Activation> activations;
  bool z_needed = false;

  // Block sweep: per block b, the entries (i, b) with i > b, and (b, b).
  const BlockStructure<T> *blocks = nullptr;
  std::vector<std::vector<index_t>> below, diagonal;

  // CSR sweep: A^T, the diagonal of A, the levels of A's SCC order.
  std::shared_ptr<const CsrMatrix<T>> At;
  std::vector<T> adiag;
  SccDecomposition scc;

  // KLU: pattern of I - J A^T in compressed columns (column j = row j of A,
  // diagonal always stored) and its symbolic analysis.
  std::vector<SuiteSparse_long> kp, ki;
  std::vector<index_t> kdiag; // position of the diagonal in each column
  std::vector<index_t> ksrc;  // entry of A feeding each stored value (-1: none)
  klu_l_common kcommon{};
  klu_l_symbolic *ksym = nullptr;

  Batch<T> J, R, Z;
  IterWork<T> work;

  // Block sweep from solve_outputs: per row block of A, whether R = C^T G is
  // zero there for every finite G (C reads none of its states); empty
  // outside such a call. Such blocks start from their first product.
  std::vector<char> outputs_zero;
  std::optional<std::vector<char>> c_silent; // per row block, computed once

  Impl(const Model<T> &m, AdjointOptions o) : model(m), options(std::move(o)) {}
  ~Impl() {
    if (ksym)
      klu_l_free_symbolic(&ksym, &kcommon);
  }
};

namespace {

template <class T>
const BlockStructure<T> *triangular_blocks(const LinearOperator<T> &A) {
  const auto *b = capability<BlockStructured<T>>(A);
  if (!b)
    return nullptr;
  const auto &s = b->block_structure();
  return s.square_partition() && s.block_lower_triangular() ? &s : nullptr;
}

} // namespace

template <class T>
AdjointSolver<T>::AdjointSolver(const Model<T> &model, AdjointOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(options))) {
  auto &im = *impl_;
  detail::validate(im.options.picard);
  im.activations = im.model.activations();
  for (const auto &b : im.model.blocks())
    if (b.size > 0 && !derivative_from_state(b.activation))
      im.z_needed = true;
  const LinearOperator<T> &A = im.model.A();
  const AdjointMethod want = im.options.method;
  const index_t n = im.model.states();

  if (want == AdjointMethod::automatic || want == AdjointMethod::sweep) {
    if (const auto *bs = triangular_blocks(A)) {
      im.blocks = bs;
      const index_t nb = bs->row_blocks();
      im.below.resize(static_cast<std::size_t>(nb));
      im.diagonal.resize(static_cast<std::size_t>(nb));
      const auto entries = bs->entries();
      for (std::size_t e = 0; e < entries.size(); ++e) {
        const auto &en = entries[e];
        (en.block_row == en.block_col ? im.diagonal[en.block_row]
                                      : im.below[en.block_col])
            .push_back(static_cast<index_t>(e));
      }
      index_t diag_blocks = 0;
      for (const auto &d : im.diagonal)
        diag_blocks += !d.empty();
      im.method = AdjointMethod::sweep;
      im.reason =
          std::string(want == AdjointMethod::sweep ? "sweep (requested): "
                                                   : "auto chose sweep: ") +
          "A is block lower triangular over " + std::to_string(nb) +
          " blocks; reverse block sweep (backpropagation)" +
          (diag_blocks ? ", " + std::to_string(diag_blocks) + " diagonal blocks by Picard"
                       : "");
      return;
    }
  }
  const auto csr = csr_view(im.model.A_ptr());
  if (want == AdjointMethod::automatic || want == AdjointMethod::sweep) {
    im.scc = strongly_connected_components(*csr);
    if (im.scc.largest_block() <= 1) {
      im.At = std::make_shared<const CsrMatrix<T>>(csr->transpose());
      im.adiag = csr->diagonal();
      im.method = AdjointMethod::sweep;
      im.reason = std::string(want == AdjointMethod::sweep ? "sweep (requested): "
                                                           : "auto chose sweep: ") +
                  "the strongly connected components of A are single states (" +
                  std::to_string(im.scc.level_count()) +
                  " levels): reverse substitution with A^T";
      return;
    }
    if (want == AdjointMethod::sweep)
      throw InvalidArgument("adjoint: the sweep does not apply: A has a strongly "
                            "connected component of " +
                            std::to_string(im.scc.largest_block()) +
                            " states (a cycle); use picard or klu");
  }
  if (want == AdjointMethod::klu) {
    // Column j of I - J A^T: rows i with a_ji != 0 (row j of A), the diagonal
    // always present. KLU factors this matrix; klu_l_solve solves with it.
    const auto rp = csr->row_ptr();
    im.kp.assign(static_cast<std::size_t>(n + 1), 0);
    im.kdiag.resize(static_cast<std::size_t>(n));
    for (index_t j = 0; j < n; ++j) {
      im.kp[j] = static_cast<SuiteSparse_long>(im.ki.size());
      bool done = false;
      for (auto e = rp[j]; e < rp[j + 1]; ++e) {
        const index_t i = csr->column(e);
        if (!done && i >= j) {
          if (i != j) {
            im.kdiag[j] = static_cast<index_t>(im.ki.size());
            im.ki.push_back(j);
            im.ksrc.push_back(-1);
          }
          done = true;
        }
        if (i == j)
          im.kdiag[j] = static_cast<index_t>(im.ki.size());
        im.ki.push_back(i);
        im.ksrc.push_back(e);
      }
      if (!done) {
        im.kdiag[j] = static_cast<index_t>(im.ki.size());
        im.ki.push_back(j);
        im.ksrc.push_back(-1);
      }
    }
    im.kp[n] = static_cast<SuiteSparse_long>(im.ki.size());
    klu_l_defaults(&im.kcommon);
    im.ksym = klu_l_analyze(n, im.kp.data(), im.ki.data(), &im.kcommon);
    if (!im.ksym)
      throw InvalidArgument("adjoint: KLU could not analyse I - J A^T (status " +
                            std::to_string(im.kcommon.status) + ")");
    im.At = csr.shared(); // A itself: its rows are the columns of A^T
    im.method = AdjointMethod::klu;
    im.reason = "klu (requested): per column a sparse LU of I - J A^T";
    return;
  }
  im.method = AdjointMethod::picard;
  if (!csr.borrowed())
    im.At = std::make_shared<const CsrMatrix<T>>(csr->transpose());
  im.reason =
      std::string(want == AdjointMethod::picard ? "picard (requested)"
                                                : "auto chose picard: A has "
                                                  "cycles") +
      (im.options.picard.anderson_depth > 0
           ? ", Anderson depth " + std::to_string(im.options.picard.anderson_depth)
           : "");
}

template <class T> void AdjointSolver<T>::rebuild(const Model<T> &model) {
  auto &old = *impl_;
  if (model.states() != old.model.states() || model.inputs() != old.model.inputs() ||
      model.outputs() != old.model.outputs())
    throw InvalidArgument(
        "AdjointSolver::rebuild: the model has n = " + std::to_string(model.states()) +
        ", p = " + std::to_string(model.inputs()) + ", q = " +
        std::to_string(model.outputs()) + ", the solver was prepared for n = " +
        std::to_string(old.model.states()) + ", p = " + std::to_string(old.model.inputs()) +
        ", q = " + std::to_string(old.model.outputs()));
  AdjointSolver fresh(model, old.options);
  // J, R, Z and the iteration buffers are sized on demand by every solve.
  auto &im = *fresh.impl_;
  im.J = std::move(old.J);
  im.R = std::move(old.R);
  im.Z = std::move(old.Z);
  im.work = std::move(old.work);
  impl_ = std::move(fresh.impl_);
}

template <class T> AdjointSolver<T>::~AdjointSolver() = default;
template <class T> AdjointSolver<T>::AdjointSolver(AdjointSolver &&) noexcept = default;
template <class T>
AdjointSolver<T> &AdjointSolver<T>::operator=(AdjointSolver &&) noexcept = default;

template <class T> AdjointMethod AdjointSolver<T>::method() const noexcept {
  return impl_->method;
}
template <class T> const std::string &AdjointSolver<T>::method_reason() const noexcept {
  return impl_->reason;
}

/// Calls piece(a, b, activation) for the pieces of rows [i0, i1) cut at the
/// state blocks' boundaries, so that each piece runs one activation's loop
/// (the switch hoisted out: the loops vectorise).
template <class F>
void for_block_pieces(std::span<const StateBlock> blocks, index_t i0, index_t i1, F &&piece) {
  std::size_t b = static_cast<std::size_t>(
      std::upper_bound(blocks.begin(), blocks.end(), i0,
                       [](index_t i, const auto &blk) { return i < blk.offset; }) -
      blocks.begin());
  b = b > 0 ? b - 1 : 0;
  for (; i0 < i1; ++b) {
    const auto &blk = blocks[b];
    const index_t e = std::min(i1, blk.offset + blk.size);
    if (e <= i0)
      continue;
    piece(i0, e, blk.activation);
    i0 = e;
  }
}

/// Calls map(f) with f(x) = phi'(x) for an activation whose derivative
/// follows from its output (derivative_from_state), ReLU and leaky ReLU as
/// branch-free selects.
template <class T, class Map> void with_state_derivative(const Activation &a, Map &&map) {
  switch (a.kind) {
  case ActivationKind::relu:
    map([](T x) { return x > T(0) ? T(1) : T(0); });
    break;
  case ActivationKind::leaky_relu: {
    const T slope = static_cast<T>(a.slope);
    map([slope](T x) { return x > T(0) ? T(1) : slope; });
    break;
  }
  default:
    map([a](T x) { return derivative_from_x(a, x); });
    break;
  }
}

template <class T>
void activation_derivatives(const Model<T> &model, const Batch<T> &X, const Batch<T> &U,
                            Batch<T> &J) {
  const index_t n = model.states(), k = X.cols(), W = X.slab_width();
  if (X.rows() != n || U.rows() != model.inputs() || U.cols() != k || U.slab_width() != W)
    throw InvalidArgument("activation_derivatives: X is " + shape(X.rows(), X.cols()) +
                          ", U is " + shape(U.rows(), U.cols()) + " (slab widths " +
                          std::to_string(W) + ", " + std::to_string(U.slab_width()) +
                          "), the model has n = " + std::to_string(n) +
                          ", p = " + std::to_string(model.inputs()));
  if (J.rows() != n || J.cols() != k || J.slab_width() != W)
    J = Batch<T>(n, k, W);
  bool need_z = false;
  for (const auto &b : model.blocks())
    need_z = need_z || (b.size > 0 && !derivative_from_state(b.activation));
  Batch<T> Z;
  if (need_z) {
    Z = Batch<T>(n, k, W);
    model.A().apply(Mode::normal, T(1), X, T(0), Z);
    model.B().apply(Mode::normal, T(1), U, T(1), Z);
  }
  const auto bx = model.bias_x();
  // One parallel pass over each slab's rows, each task's range cut at the
  // blocks' boundaries.
  const auto &blocks = model.blocks();
  for (index_t s = 0; s < X.slab_count(); ++s) {
    const auto xs = X.slab(s);
    auto js = J.slab(s);
    const index_t cols = xs.cols;
    const index_t grain = std::max<index_t>(16, 32768 / std::max<index_t>(1, cols));
    tbb::parallel_for(
        tbb::blocked_range<index_t>(0, n, grain), [&](const tbb::blocked_range<index_t> &r) {
          for_block_pieces(blocks, r.begin(), r.end(),
                           [&](index_t i0, index_t i1, const Activation &a) {
                             if (!derivative_from_state(a)) {
                               for (index_t i = i0; i < i1; ++i) {
                                 const T *zi = Z.slab(s).row(i);
                                 T *ji = js.row(i);
                                 for (index_t c = 0; c < cols; ++c)
                                   ji[c] = derivative_from_z(a, zi[c] + bx[i]);
                               }
                               return;
                             }
                             with_state_derivative<T>(a, [&](auto f) {
                               for (index_t i = i0; i < i1; ++i) {
                                 const T *__restrict xi = xs.row(i);
                                 T *__restrict ji = js.row(i);
                                 for (index_t c = 0; c < cols; ++c)
                                   ji[c] = f(xi[c]);
                               }
                             });
                           });
        });
  }
}

/// v_i *= phi'(x_i) for the rows [i0, i1) (states whose activations'
/// derivatives follow from x: derivative_from_state), the same products as
/// with J = activation_derivatives (each loop on one activation's rows).
template <class T>
void multiply_by_derivative(std::span<const StateBlock> blocks, ConstMatrixView<T> x,
                            MatrixView<T> v, index_t i0, index_t i1) {
  const index_t cols = v.cols;
  for_block_pieces(blocks, i0, i1, [&](index_t a0, index_t a1, const Activation &a) {
    with_state_derivative<T>(a, [&](auto f) {
      for (index_t i = a0; i < a1; ++i) {
        const T *__restrict xi = x.row(i);
        T *__restrict vi = v.row(i);
        for (index_t c = 0; c < cols; ++c)
          vi[c] *= f(xi[c]);
      }
    });
  });
}

template <class T>
AdjointReport AdjointSolver<T>::solve(const Batch<T> &X, const Batch<T> &U,
                                      const Batch<T> &R, Batch<T> &V) {
  auto &im = *impl_;
  const Model<T> &m = im.model;
  const index_t n = m.states(), k = X.cols(), W = X.slab_width();
  if (R.rows() != n || R.cols() != k || R.slab_width() != W)
    throw InvalidArgument("adjoint solve: R is " + shape(R.rows(), R.cols()) +
                          " (slab width " + std::to_string(R.slab_width()) +
                          "), expected " + shape(n, k) + " (slab width " +
                          std::to_string(W) + ")");
  // A block sweep without diagonal blocks multiplies each v_b by J_b once:
  // J_b from X_b at that point (when every activation's derivative follows
  // from its output), not a whole J made first (a pass less over n x k).
  bool derivative_in_sweep = im.method == AdjointMethod::sweep && im.blocks && !im.z_needed;
  if (derivative_in_sweep)
    for (const auto &d : im.diagonal)
      derivative_in_sweep = derivative_in_sweep && d.empty();
  if (!derivative_in_sweep)
    activation_derivatives(m, X, U, im.J);
  if (V.rows() != n || V.cols() != k || V.slab_width() != W)
    V = Batch<T>(n, k, W);
  AdjointReport report;
  report.method = im.method;
  report.column_residuals.assign(static_cast<std::size_t>(k), 0.0);
  report.column_status.assign(static_cast<std::size_t>(k), SolveStatus::converged);
  report.column_iterations.assign(static_cast<std::size_t>(k), 0);
  const auto &o = im.options.picard;

  for (index_t s = 0; s < X.slab_count(); ++s) {
    const index_t kc = X.slab_cols(s), c0 = s * W;
    MatrixView<T> v = V.slab(s);
    const ConstMatrixView<T> r = R.slab(s),
                             j = derivative_in_sweep ? ConstMatrixView<T>{} : im.J.slab(s);

    if (im.method == AdjointMethod::sweep && im.blocks) {
      // Reverse block sweep: v_b = J_b (sum_{i > b} A_ib^T v_i + r_b), a
      // diagonal block by Picard on v_b = J_b (A_bb^T v_b + rhs_b).
      const auto &bs = *im.blocks;
      const auto entries = bs.entries();
      for (index_t b = bs.row_blocks() - 1; b >= 0; --b) {
        const index_t off = bs.row_offset(b), nb = bs.row_block_size(b);
        MatrixView<T> vb = rows_of(v, off, nb);
        const ConstMatrixView<T> rb = rows_of(r, off, nb);
        const ConstMatrixView<T> jb =
            derivative_in_sweep ? ConstMatrixView<T>{} : rows_of(j, off, nb);
        const bool r_zero = !im.outputs_zero.empty() && im.outputs_zero[b];
        if (!r_zero || im.below[b].empty())
          parallel_rows(nb, kc, [&](index_t r0, index_t r1) {
            for (index_t i = r0; i < r1; ++i) {
              if (r_zero)
                std::fill(vb.row(i), vb.row(i) + kc, T(0));
              else
                std::copy(rb.row(i), rb.row(i) + kc, vb.row(i));
            }
          });
        bool first = true;
        for (const index_t e : im.below[b]) {
          const auto &en = entries[e];
          const index_t io = bs.row_offset(en.block_row),
                        in = bs.row_block_size(en.block_row);
          en.op->apply(Mode::transpose, T(1), ConstMatrixView<T>(rows_of(v, io, in)),
                       r_zero && first ? T(0) : T(1), vb);
          first = false;
        }
        if (im.diagonal[b].empty()) {
          if (derivative_in_sweep) {
            const ConstMatrixView<T> xs = X.slab(s);
            parallel_rows(nb, kc, [&](index_t r0, index_t r1) {
              multiply_by_derivative(m.blocks(), xs, v, off + r0, off + r1);
            });
            continue;
          }
          parallel_rows(nb, kc, [&](index_t r0, index_t r1) {
            for (index_t i = r0; i < r1; ++i) {
              T *vi = vb.row(i);
              const T *ji = jb.row(i);
              for (index_t c = 0; c < kc; ++c)
                vi[c] *= ji[c];
            }
          });
          continue;
        }
        // rhs = current vb (copied), then iterate on the block.
        detail::aligned_vector<T> rhs(static_cast<std::size_t>(nb * W));
        for (index_t i = 0; i < nb; ++i)
          std::copy(vb.row(i), vb.row(i) + kc, rhs.data() + i * W);
        const ConstMatrixView<T> rhsv{rhs.data(), nb, kc, W};
        std::vector<Column> cols(static_cast<std::size_t>(kc));
        const auto &diag = im.diagonal[b];
        auto product = [&](ConstMatrixView<T> x, MatrixView<T> t) {
          T beta = T(0);
          for (const index_t e : diag) {
            entries[e].op->apply(Mode::transpose, T(1), x, beta, t);
            beta = T(1);
          }
        };
        iterate<T>(nb, kc, W, vb, rhsv, jb, product, o, im.work, cols);
        for (index_t c = 0; c < kc; ++c) {
          auto &st = report.column_status[c0 + c];
          st = std::max(st, cols[c].status);
          report.column_iterations[c0 + c] =
              std::max(report.column_iterations[c0 + c], cols[c].iterations);
          report.column_residuals[c0 + c] =
              std::max(report.column_residuals[c0 + c], cols[c].residual);
        }
      }
      continue;
    }

    if (im.method == AdjointMethod::sweep) {
      // Reverse substitution over the SCC levels of A with rows of A^T:
      // v_i = J_i (r_i + sum_{j != i} a_ji v_j) / (1 - J_i a_ii).
      const auto &At = *im.At;
      const auto rp = At.row_ptr();
      const auto vals = At.values();
      const auto &scc = im.scc;
      bool ill = false;
      At.visit_columns([&](auto colidx) {
        auto rows = [&](index_t p0, index_t p1) {
          for (index_t p = p0; p < p1; ++p) {
            const index_t i = scc.order[p];
            T *vi = v.row(i);
            const T *ri = r.row(i), *ji = j.row(i);
            for (index_t c = 0; c < kc; ++c)
              vi[c] = ri[c];
            for (auto e = rp[i]; e < rp[i + 1]; ++e) {
              const index_t q = colidx[e];
              const T a = vals[e];
              if (q == i || a == T(0))
                continue;
              const T *vq = v.row(q);
              for (index_t c = 0; c < kc; ++c)
                vi[c] += a * vq[c];
            }
            const T d = im.adiag[i];
            for (index_t c = 0; c < kc; ++c) {
              const T den = T(1) - ji[c] * d;
              vi[c] = ji[c] * vi[c] / den;
            }
          }
        };
        for (index_t l = scc.level_count() - 1; l >= 0; --l) {
          const index_t p0 = scc.block_ptr[scc.level_ptr[l]],
                        p1 = scc.block_ptr[scc.level_ptr[l + 1]];
          if (p1 - p0 >= 256)
            tbb::parallel_for(tbb::blocked_range<index_t>(p0, p1, 64),
                              [&](const tbb::blocked_range<index_t> &rg) {
                                rows(rg.begin(), rg.end());
                              });
          else
            rows(p0, p1);
        }
      });
      // A zero pivot (J_i a_ii = 1) leaves a non-finite value.
      for (index_t c = 0; c < kc && !ill; ++c)
        for (index_t i = 0; i < n; ++i)
          if (!std::isfinite(v(i, c))) {
            report.column_status[c0 + c] = SolveStatus::non_finite;
            report.column_residuals[c0 + c] = std::numeric_limits<double>::infinity();
            break;
          }
      continue;
    }

    if (im.method == AdjointMethod::klu) {
      // (I - J A^T) v = J r per column: numeric factorisation and solve.
      const auto &A = *im.At;
      const auto avals = A.values();
      std::vector<double> ax(im.ki.size()), rhs(static_cast<std::size_t>(n));
      for (index_t c = 0; c < kc; ++c) {
        for (index_t col = 0; col < n; ++col)
          for (auto q = im.kp[col]; q < im.kp[col + 1]; ++q) {
            const index_t i = static_cast<index_t>(im.ki[q]);
            const index_t e = im.ksrc[q];
            const double a = e >= 0 ? double(avals[e]) : 0.0;
            ax[q] = (i == col ? 1.0 : 0.0) - double(j(i, c)) * a;
          }
        for (index_t i = 0; i < n; ++i)
          rhs[i] = double(j(i, c)) * double(r(i, c));
        klu_l_numeric *num =
            klu_l_factor(im.kp.data(), im.ki.data(), ax.data(), im.ksym, &im.kcommon);
        bool ok = num != nullptr;
        if (ok) {
          ok = klu_l_solve(im.ksym, num, n, 1, rhs.data(), &im.kcommon) != 0;
          klu_l_free_numeric(&num, &im.kcommon);
        }
        if (!ok) {
          report.column_status[c0 + c] = SolveStatus::ill_posed;
          report.column_residuals[c0 + c] = std::numeric_limits<double>::infinity();
          for (index_t i = 0; i < n; ++i)
            v(i, c) = std::numeric_limits<T>::quiet_NaN();
          continue;
        }
        for (index_t i = 0; i < n; ++i)
          v(i, c) = static_cast<T>(rhs[i]);
      }
      continue;
    }

    // Picard / Anderson on the whole A.
    std::vector<Column> cols(static_cast<std::size_t>(kc));
    const LinearOperator<T> &A = m.A();
    auto product = [&](ConstMatrixView<T> x, MatrixView<T> t) {
      if (im.At)
        im.At->apply(Mode::normal, T(1), x, T(0), t);
      else
        A.apply(Mode::transpose, T(1), x, T(0), t);
    };
    iterate<T>(n, kc, W, v, r, j, product, o, im.work, cols);
    for (index_t c = 0; c < kc; ++c) {
      report.column_status[c0 + c] = cols[c].status;
      report.column_iterations[c0 + c] = cols[c].iterations;
      report.column_residuals[c0 + c] = cols[c].residual;
    }
  }

  index_t worst = -1;
  for (index_t c = 0; c < k; ++c) {
    if (report.column_status[c] > report.status) {
      report.status = report.column_status[c];
      worst = c;
    }
    report.residual = std::max(report.residual, report.column_residuals[c]);
    report.iterations = std::max(report.iterations, report.column_iterations[c]);
  }
  report.message = im.reason;
  if (im.method == AdjointMethod::picard || im.method == AdjointMethod::sweep)
    if (report.iterations > 0)
      report.message += "; " + std::to_string(report.iterations) +
                        " iterations, residual " + fmt(report.residual);
  if (worst >= 0)
    report.message +=
        "; column " + std::to_string(worst + 1) + ": " +
        to_string(report.column_status[worst]) +
        (report.column_iterations[worst] > 0
             ? " after " + std::to_string(report.column_iterations[worst]) +
                   " iterations, residual " + fmt(report.column_residuals[worst])
             : "");
  return report;
}

template <class T>
AdjointReport AdjointSolver<T>::solve_outputs(const Batch<T> &X, const Batch<T> &U,
                                              const Batch<T> &G, Batch<T> &V) {
  auto &im = *impl_;
  const Model<T> &m = im.model;
  const index_t n = m.states(), k = X.cols(), W = X.slab_width();
  if (G.rows() != m.outputs() || G.cols() != k || G.slab_width() != W)
    throw InvalidArgument("adjoint solve: G is " + shape(G.rows(), G.cols()) +
                          " (slab width " + std::to_string(G.slab_width()) +
                          "), expected " + shape(m.outputs(), k) + " (slab width " +
                          std::to_string(W) + ")");
  if (im.R.rows() != n || im.R.cols() != k || im.R.slab_width() != W)
    im.R = Batch<T>(n, k, W);
  m.C().apply(Mode::transpose, T(1), G, T(0), im.R);
  if (im.method != AdjointMethod::sweep || !im.blocks)
    return solve(X, U, im.R, V);
  if (!im.c_silent) {
    // Row blocks of A whose states C never reads (zero column sums of |C|).
    const auto sums = m.C().col_abs_sums();
    const auto &bs = *im.blocks;
    std::vector<char> silent(static_cast<std::size_t>(bs.row_blocks()), 1);
    for (index_t b = 0; b < bs.row_blocks(); ++b)
      for (index_t i = bs.row_offset(b); i < bs.row_offset(b) + bs.row_block_size(b); ++i)
        if (sums[static_cast<std::size_t>(i)] != T(0)) {
          silent[static_cast<std::size_t>(b)] = 0;
          break;
        }
    im.c_silent = std::move(silent);
  }
  // 0 * G is 0 only for finite G: otherwise R is used as computed.
  bool finite = true;
  for (const T g : G.storage())
    finite = finite && std::isfinite(g);
  if (finite)
    im.outputs_zero = *im.c_silent;
  struct Reset {
    std::vector<char> &flags;
    ~Reset() { flags.clear(); }
  } reset{im.outputs_zero};
  return solve(X, U, im.R, V);
}

template <class T>
void input_gradient(const Model<T> &model, const Batch<T> &V, const Batch<T> &G,
                    Batch<T> &dU) {
  const index_t k = V.cols(), W = V.slab_width();
  if (V.rows() != model.states())
    throw InvalidArgument("input_gradient: V has " + std::to_string(V.rows()) +
                          " rows, the model has n = " + std::to_string(model.states()));
  const bool use_g = model.D() && G.cols() > 0;
  if (use_g && (G.rows() != model.outputs() || G.cols() != k || G.slab_width() != W))
    throw InvalidArgument("input_gradient: G is " + shape(G.rows(), G.cols()) +
                          ", expected " + shape(model.outputs(), k));
  if (dU.rows() != model.inputs() || dU.cols() != k || dU.slab_width() != W)
    dU = Batch<T>(model.inputs(), k, W);
  model.B().apply(Mode::transpose, T(1), V, T(0), dU);
  if (use_g)
    model.D()->apply(Mode::transpose, T(1), G, T(1), dU);
}

template class AdjointSolver<float>;
template class AdjointSolver<double>;
template void activation_derivatives(const Model<float> &, const Batch<float> &,
                                     const Batch<float> &, Batch<float> &);
template void activation_derivatives(const Model<double> &, const Batch<double> &,
                                     const Batch<double> &, Batch<double> &);
template void input_gradient(const Model<float> &, const Batch<float> &,
                             const Batch<float> &, Batch<float> &);
template void input_gradient(const Model<double> &, const Batch<double> &,
                             const Batch<double> &, Batch<double> &);

} // namespace tacit::inline v1
