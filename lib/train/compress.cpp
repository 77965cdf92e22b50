// State-driven compression (tacit/train/compress.hpp): rows of (A, B, b)
// refitted to the model's pre-activations by l1-penalised least squares on
// the Gram matrix of the features, FISTA per group of rows sharing a pattern.
#include <tacit/train/compress.hpp>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/solve/solve.hpp>

#include <Eigen/Dense>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace tacit::inline v1 {
namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

/// The stored entries of each row of an operator, as (column, value).
template <class T> struct Rows {
  std::vector<std::vector<std::pair<index_t, double>>> rows;
  std::int64_t nnz = 0;
};
template <class T> Rows<T> rows_of(const LinearOperator<T> *op, index_t nrows) {
  Rows<T> r;
  r.rows.resize(static_cast<std::size_t>(nrows));
  if (!op)
    return r;
  const CsrView<T> csr = csr_view(*op);
  const auto ptr = csr->row_ptr();
  const auto val = csr->values();
  for (index_t i = 0; i < nrows; ++i)
    for (std::int64_t k = ptr[i]; k < ptr[i + 1]; ++k)
      if (val[k] != T(0)) {
        r.rows[i].emplace_back(csr->column(k), double(val[k]));
        ++r.nnz;
      }
  return r;
}

/// Longest path (in edges + 1) of A's pattern, or 0 when it has a cycle.
int pattern_depth(const std::vector<std::vector<std::pair<index_t, double>>> &a,
                  index_t n) {
  // Edge j -> i for each entry (i, j): i reads j.
  std::vector<index_t> indegree(static_cast<std::size_t>(n), 0);
  std::vector<std::vector<index_t>> readers(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i)
    for (const auto &[j, v] : a[i]) {
      readers[j].push_back(i);
      ++indegree[i];
    }
  std::vector<index_t> order, level(static_cast<std::size_t>(n), 1);
  for (index_t i = 0; i < n; ++i)
    if (indegree[i] == 0)
      order.push_back(i);
  int depth = n > 0 ? 1 : 0;
  for (std::size_t q = 0; q < order.size(); ++q) {
    const index_t j = order[q];
    for (const index_t i : readers[j]) {
      level[i] = std::max(level[i], level[j] + 1);
      depth = std::max<int>(depth, static_cast<int>(level[i]));
      if (--indegree[i] == 0)
        order.push_back(i);
    }
  }
  return static_cast<index_t>(order.size()) == n ? depth : 0;
}

/// Gram matrix G = F F^T / m (lower and upper filled), H = Z F^T / m and
/// z2_i = ||z_i||^2 / m for the features F = [X; U; 1] and targets Z, summed
/// in a fixed number of parts (the same bits for any number of threads).
template <class T> struct Gram {
  Mat G, H;
  Vec z2;
};
template <class T>
Gram<T> gram(const Batch<T> &X, const Batch<T> &U, const Mat &Z, Execution exec) {
  const index_t n = X.rows(), p = U.rows(), m = U.cols(), d = n + p + 1;
  const index_t q = static_cast<index_t>(Z.rows());
  constexpr index_t chunk = 256;
  const index_t chunks = (m + chunk - 1) / chunk;
  const double bytes = 8.0 * double(d) * double(d);
  const index_t parts = std::clamp<index_t>(static_cast<index_t>(1e9 / bytes), 1,
                                            std::min<index_t>(8, chunks));
  std::vector<Mat> Gp(parts), Hp(parts);
  std::vector<Vec> zp(parts);
  auto part = [&](index_t k) {
    Mat &G = Gp[k];
    Mat &H = Hp[k];
    G.setZero(d, d);
    H.setZero(q, d);
    zp[k].setZero(q);
    Mat F(d, chunk), Zc(q, chunk);
    for (index_t c = k * chunks / parts; c < (k + 1) * chunks / parts; ++c) {
      const index_t j0 = c * chunk, w = std::min(chunk, m - j0);
      if (w < chunk) {
        F.resize(d, w);
        Zc.resize(q, w);
      }
      for (index_t j = 0; j < w; ++j) {
        for (index_t i = 0; i < n; ++i)
          F(i, j) = double(X(i, j0 + j));
        for (index_t i = 0; i < p; ++i)
          F(n + i, j) = double(U(i, j0 + j));
        F(n + p, j) = 1.0;
      }
      Zc = Z.middleCols(j0, w);
      G.template selfadjointView<Eigen::Lower>().rankUpdate(F);
      H.noalias() += Zc * F.transpose();
      zp[k] += Zc.rowwise().squaredNorm();
    }
  };
  exec.run([&] {
    if (exec.is_reference())
      for (index_t k = 0; k < parts; ++k)
        part(k);
    else
      tbb::parallel_for(index_t(0), parts, [&](index_t k) { part(k); });
  });
  Gram<T> g{std::move(Gp[0]), std::move(Hp[0]), std::move(zp[0])};
  for (index_t k = 1; k < parts; ++k) {
    g.G += Gp[k];
    g.H += Hp[k];
    g.z2 += zp[k];
  }
  {
    Mat full = g.G.template selfadjointView<Eigen::Lower>();
    g.G = std::move(full);
  }
  const double inv = 1.0 / double(m);
  g.G *= inv;
  g.H *= inv;
  g.z2 *= inv;
  return g;
}

/// The pre-activations Z = A X + B U + b (n x m) as a dense matrix.
template <class T>
Mat pre_activations(const Model<T> &model, const Batch<T> &X, const Batch<T> &U,
                    Execution exec) {
  const index_t n = model.states(), m = U.cols();
  Batch<T> Zb(n, m, U.slab_width());
  model.A().apply(Mode::normal, T(1), X, T(0), Zb, exec);
  model.B().apply(Mode::normal, T(1), U, T(1), Zb, exec);
  Mat Z(n, m);
  const auto b = model.bias_x();
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j)
      Z(i, j) = double(Zb(i, j)) + double(b[i]);
  return Z;
}

/// A group of rows sharing one pattern (feature indices, sorted).
struct RowGroup {
  std::vector<index_t> features;
  std::vector<index_t> rows;
};

struct FitResult {
  int iterations = 0;
  bool converged = true;
};

/// FISTA with gradient restarts on rows W (r x d) of
///   1/2 w G w^T - h w^T + lambda sum_j s_j |w_j|,  sum_{j < a_end} |w_j| <= kappa.
FitResult fista(Mat &W, const Mat &G, const Mat &H, const Vec &s, index_t a_end,
                double lambda, double kappa, int max_iterations, double tolerance) {
  const index_t r = W.rows(), d = W.cols();
  FitResult out;
  if (d == 0)
    return out;
  // Lipschitz constant of the gradient: lambda_max(G), by power iteration
  // (Rayleigh quotient, widened by 10%) capped by Gershgorin's bound, which
  // is never below it.
  double gersh = 0;
  for (index_t i = 0; i < d; ++i)
    gersh = std::max(gersh, G.row(i).cwiseAbs().sum());
  Vec v = Vec::Ones(d) / std::sqrt(double(d));
  double ray = 0;
  for (int it = 0; it < 200; ++it) {
    Vec w = G * v;
    ray = v.dot(w);
    const double nw = w.norm();
    if (!(nw > 0))
      break;
    v = w / nw;
  }
  const double L = std::max(std::min(gersh, 1.1 * ray), 1e-300);
  const double t = 1.0 / L;
  const bool ball = std::isfinite(kappa);
  auto prox = [&](Mat &V) {
    for (index_t i = 0; i < r; ++i) {
      for (index_t j = 0; j < d; ++j) {
        const double thr = lambda * t * s[j];
        const double x = V(i, j);
        V(i, j) = s[j] < 0 ? 0.0 : (x > thr ? x - thr : (x < -thr ? x + thr : 0.0));
      }
      if (ball && a_end > 0) {
        std::vector<double> a(static_cast<std::size_t>(a_end));
        for (index_t j = 0; j < a_end; ++j)
          a[j] = V(i, j);
        if (project_l1_ball<double>(a, kappa))
          for (index_t j = 0; j < a_end; ++j)
            V(i, j) = a[j];
      }
    }
  };
  prox(W); // a feasible start
  Mat Y = W, Wn(r, d), Grad(r, d);
  double theta = 1;
  for (int it = 1; it <= max_iterations; ++it) {
    Grad.noalias() = Y * G;
    Grad -= H;
    Wn = Y - t * Grad;
    prox(Wn);
    const double delta = (Wn - W).cwiseAbs().maxCoeff();
    const double scale = std::max(1.0, Wn.cwiseAbs().maxCoeff());
    if ((Y - Wn).cwiseProduct(Wn - W).sum() > 0) {
      theta = 1;
      Y = Wn;
    } else {
      const double next = 0.5 * (1 + std::sqrt(1 + 4 * theta * theta));
      Y = Wn + ((theta - 1) / next) * (Wn - W);
      theta = next;
    }
    W.swap(Wn);
    out.iterations = it;
    if (delta <= tolerance * scale)
      return out;
  }
  out.converged = false;
  return out;
}

/// Cyclic coordinate descent (covariance form, active set) on one row w
/// (size d) of 1/2 w G w^T - h w^T + lambda sum_j s_j |w_j|, no constraint:
/// full sweeps alternate with sweeps over the nonzero entries until a full
/// sweep moves no entry by more than tolerance * max(1, largest |w_j|).
FitResult coordinate_descent(Eigen::Ref<Vec> w, const Mat &G, const Vec &h, const Vec &s,
                             double lambda, int max_iterations, double tolerance) {
  const index_t d = w.size();
  FitResult out;
  for (index_t j = 0; j < d; ++j)
    if (s[j] < 0 || !(G(j, j) > 0))
      w[j] = 0;
  Vec g = G * w - h; // gradient, kept up to date
  auto update = [&](index_t j) {
    const double gjj = G(j, j);
    if (s[j] < 0 || !(gjj > 0))
      return 0.0;
    const double z = w[j] - g[j] / gjj, thr = lambda * s[j] / gjj;
    const double next = z > thr ? z - thr : (z < -thr ? z + thr : 0.0);
    const double delta = next - w[j];
    if (delta != 0) {
      g += delta * G.col(j);
      w[j] = next;
    }
    return std::abs(delta);
  };
  std::vector<index_t> active;
  for (int sweep = 1; sweep <= max_iterations; ++sweep) {
    double moved = 0;
    for (index_t j = 0; j < d; ++j)
      moved = std::max(moved, update(j));
    out.iterations = sweep;
    const double scale = std::max(1.0, w.cwiseAbs().maxCoeff());
    if (moved <= tolerance * scale)
      return out;
    active.clear();
    for (index_t j = 0; j < d; ++j)
      if (w[j] != 0)
        active.push_back(j);
    for (; sweep < max_iterations; ++sweep) {
      double moved_active = 0;
      for (const index_t j : active)
        moved_active = std::max(moved_active, update(j));
      if (moved_active <= tolerance * std::max(1.0, w.cwiseAbs().maxCoeff()))
        break;
    }
  }
  out.converged = false;
  return out;
}

template <class T> OperatorPtr<T> csr_operator(index_t rows, index_t cols,
                                               std::vector<Triplet<T>> &t) {
  return std::make_shared<const CsrMatrix<T>>(
      CsrMatrix<T>::from_triplets(rows, cols, t));
}

template <class T> Batch<T> solve_states(const Model<T> &model, const Batch<T> &U,
                                         Execution exec, const char *which) {
  SolveOptions o = default_solve_options<T>();
  o.exec = exec;
  EquilibriumSolver<T> solver(model, o);
  Batch<T> X;
  const SolveReport r = solver.solve(U, X);
  if (!r.ok())
    throw NumericalError(std::string("state-driven compression: the solve of the ") +
                             which + " model on the data did not converge (" +
                             to_string(r.status) + ", residual " +
                             std::to_string(r.residual) + ")",
                         r.residual, double(o.picard.abs_tol), r.iterations);
  return X;
}

} // namespace

template <class T>
Model<T> compress_states(const Model<T> &model, const Batch<T> &U,
                         const StateCompressionOptions &o,
                         StateCompressionReport *report) {
  const index_t n = model.states(), p = model.inputs(), q = model.outputs();
  if (!(o.lambda >= 0) || !std::isfinite(o.lambda))
    throw InvalidArgument("state-driven compression: lambda must be finite and >= 0, got " +
                          std::to_string(o.lambda));
  if (std::isnan(o.kappa))
    throw InvalidArgument("state-driven compression: kappa is NaN");
  if (o.max_iterations < 1 || !(o.tolerance > 0))
    throw InvalidArgument("state-driven compression: max_iterations must be >= 1 and "
                          "tolerance > 0");
  if (o.passes < 0)
    throw InvalidArgument("state-driven compression: passes must be >= 0");
  if (U.rows() != p)
    throw InvalidArgument("state-driven compression: the data has " +
                          std::to_string(U.rows()) + " values per input, the model p = " +
                          std::to_string(p));
  if (U.cols() < 1)
    throw InvalidArgument("state-driven compression: no data (U has no columns)");
  const std::int64_t d = std::int64_t(n) + p + 1;
  if (d > o.max_features)
    throw Unsupported("state-driven compression forms the Gram matrix of the n + p + 1 = " +
                      std::to_string(d) + " features; at most max_features = " +
                      std::to_string(o.max_features));

  const Rows<T> A = rows_of<T>(&model.A(), n), B = rows_of<T>(&model.B(), n);
  const Rows<T> C = rows_of<T>(&model.C(), q), D = rows_of<T>(model.D(), q);
  const int depth = pattern_depth(A.rows, n);
  const bool feed_forward = depth > 0;
  double kappa = o.kappa;
  if (kappa < 0)
    kappa = feed_forward ? std::numeric_limits<double>::infinity() : norm_inf(model.A());
  const int passes = o.passes > 0 ? o.passes : (feed_forward ? depth : 1);

  // Groups of rows with the same pattern (A columns, B columns + n, the
  // intercept n + p), in chunks of at most 16 rows: the unit of parallel work.
  std::map<std::vector<index_t>, std::vector<index_t>> by_pattern;
  for (index_t i = 0; i < n; ++i) {
    std::vector<index_t> f;
    for (const auto &[j, v] : A.rows[i])
      f.push_back(j);
    for (const auto &[j, v] : B.rows[i])
      f.push_back(n + j);
    f.push_back(n + p);
    by_pattern[f].push_back(i);
  }
  std::vector<RowGroup> groups;
  for (auto &[f, rows] : by_pattern)
    for (std::size_t k = 0; k < rows.size(); k += 16)
      groups.push_back(
          {f, std::vector<index_t>(rows.begin() + k,
                                   rows.begin() + std::min(rows.size(), k + 16))});

  // The current rows (dense, features order) start from the model's.
  Mat W = Mat::Zero(n, d);
  for (index_t i = 0; i < n; ++i) {
    for (const auto &[j, v] : A.rows[i])
      W(i, j) = v;
    for (const auto &[j, v] : B.rows[i])
      W(i, n + j) = v;
    W(i, n + p) = double(model.bias_x()[i]);
  }

  const Batch<T> X0 = solve_states(model, U, o.exec, "given");
  const Mat Z = pre_activations(model, X0, U, o.exec);

  auto build = [&](const Mat &Wc) {
    std::vector<Triplet<T>> ta, tb;
    std::vector<T> b(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      for (const auto &[j, v] : A.rows[i])
        if (Wc(i, j) != 0)
          ta.push_back({i, j, static_cast<T>(Wc(i, j))});
      for (const auto &[j, v] : B.rows[i])
        if (Wc(i, n + j) != 0)
          tb.push_back({i, j, static_cast<T>(Wc(i, n + j))});
      b[i] = static_cast<T>(Wc(i, n + p));
    }
    return Model<T>(csr_operator<T>(n, n, ta), csr_operator<T>(n, p, tb), model.C_ptr(),
                    model.D_ptr(), std::move(b),
                    std::vector<T>(model.bias_y().begin(), model.bias_y().end()),
                    model.blocks());
  };

  StateCompressionReport rep;
  rep.nonzeros_before = A.nnz + B.nnz;
  rep.output_nonzeros_before = C.nnz + D.nnz;
  rep.passes = passes;
  rep.feed_forward = feed_forward;
  rep.kappa = kappa;

  Batch<T> X = X0;
  Gram<T> g;
  for (int pass = 0; pass < passes; ++pass) {
    if (pass > 0)
      X = solve_states(build(W), U, o.exec, "compressed");
    g = gram(X, U, Z, o.exec);
    Vec s(d);
    for (index_t j = 0; j < d; ++j)
      s[j] = std::sqrt(std::max(0.0, g.G(j, j)));
    std::vector<FitResult> fits(groups.size());
    auto fit = [&](std::size_t k) {
      const RowGroup &grp = groups[k];
      const index_t dg = static_cast<index_t>(grp.features.size());
      const index_t r = static_cast<index_t>(grp.rows.size());
      Mat Gs(dg, dg), Hs(r, dg), Wg(r, dg);
      Vec sg(dg);
      index_t a_end = 0;
      for (index_t a = 0; a < dg; ++a) {
        const index_t fa = grp.features[a];
        if (fa < n)
          a_end = a + 1;
        for (index_t b = 0; b < dg; ++b)
          Gs(a, b) = g.G(fa, grp.features[b]);
        // A feature that is zero on all data is left out (weight -1: held
        // at zero); the intercept is not penalised.
        sg[a] = fa == n + p ? 0.0 : (s[fa] > 0 ? s[fa] : -1.0);
        for (index_t i = 0; i < r; ++i) {
          Hs(i, a) = g.H(grp.rows[i], fa);
          Wg(i, a) = W(grp.rows[i], fa);
        }
      }
      auto merge = [&](const FitResult &f) {
        fits[k].iterations = std::max(fits[k].iterations, f.iterations);
        fits[k].converged = fits[k].converged && f.converged;
      };
      if (std::isfinite(kappa) && a_end > 0) {
        merge(fista(Wg, Gs, Hs, sg, a_end, o.lambda, kappa, o.max_iterations,
                    o.tolerance));
        if (o.debias && o.lambda > 0) {
          // The same rows on their support without the penalty: one FISTA
          // run per row, the entries off the support held at zero.
          for (index_t i = 0; i < r; ++i) {
            Vec si = sg;
            for (index_t a = 0; a < dg; ++a)
              si[a] = Wg(i, a) == 0 && sg[a] != 0 ? -1.0 : (sg[a] < 0 ? -1.0 : 0.0);
            Mat wi = Wg.row(i);
            const Mat hi = Hs.row(i);
            merge(fista(wi, Gs, hi, si, a_end, 0.0, kappa, o.max_iterations, o.tolerance));
            Wg.row(i) = wi;
          }
        }
      } else {
        for (index_t i = 0; i < r; ++i) {
          Vec w = Wg.row(i).transpose();
          const Vec h = Hs.row(i).transpose();
          merge(coordinate_descent(w, Gs, h, sg, o.lambda, o.max_iterations, o.tolerance));
          if (o.debias && o.lambda > 0) {
            Vec si = sg;
            for (index_t a = 0; a < dg; ++a)
              si[a] = w[a] == 0 && sg[a] != 0 ? -1.0 : (sg[a] < 0 ? -1.0 : 0.0);
            merge(coordinate_descent(w, Gs, h, si, 0.0, o.max_iterations, o.tolerance));
          }
          Wg.row(i) = w.transpose();
        }
      }
      for (index_t i = 0; i < r; ++i)
        for (index_t a = 0; a < dg; ++a)
          W(grp.rows[i], grp.features[a]) = Wg(i, a);
    };
    o.exec.run([&] {
      if (o.exec.is_reference())
        for (std::size_t k = 0; k < groups.size(); ++k)
          fit(k);
      else
        tbb::parallel_for(std::size_t(0), groups.size(), [&](std::size_t k) { fit(k); },
                          tbb::simple_partitioner{});
    });
    rep.max_iterations_used = 0;
    rep.groups_not_converged = 0;
    for (const FitResult &f : fits) {
      rep.max_iterations_used = std::max(rep.max_iterations_used, f.iterations);
      rep.groups_not_converged += f.converged ? 0 : 1;
    }
  }
  // Fit of the rows on the last pass's features.
  {
    double err = 0, tot = g.z2.sum();
    for (index_t i = 0; i < n; ++i) {
      const Vec w = W.row(i).transpose();
      err += std::max(0.0, w.dot(g.G * w) - 2 * g.H.row(i).dot(w) + g.z2[i]);
    }
    rep.relative_fit_error = tot > 0 ? std::sqrt(err / tot) : std::sqrt(err);
  }
  Model<T> fitted = build(W);
  for (index_t i = 0; i < n; ++i)
    rep.nonzeros_after += (W.row(i).head(n + p).array() != 0).count();

  // Outputs: the model's Y on U as targets, the fitted model's states.
  const index_t m = U.cols();
  Mat Y(q, m);
  {
    Batch<T> Yb(q, m, U.slab_width());
    model.output(X0, U, Yb, o.exec);
    for (index_t i = 0; i < q; ++i)
      for (index_t j = 0; j < m; ++j)
        Y(i, j) = double(Yb(i, j));
  }
  const Batch<T> Xf = solve_states(fitted, U, o.exec, "compressed");
  Model<T> result = fitted;
  if (o.refit_outputs) {
    const Gram<T> go = gram(Xf, U, Y, o.exec);
    std::vector<Triplet<T>> tc, td;
    std::vector<T> c(static_cast<std::size_t>(q));
    for (index_t i = 0; i < q; ++i) {
      std::vector<index_t> f;
      for (const auto &[j, v] : C.rows[i])
        f.push_back(j);
      for (const auto &[j, v] : D.rows[i])
        f.push_back(n + j);
      f.push_back(n + p);
      const index_t dg = static_cast<index_t>(f.size());
      Mat Gs(dg, dg);
      Vec h(dg);
      for (index_t a = 0; a < dg; ++a) {
        h[a] = go.H(i, f[a]);
        for (index_t b = 0; b < dg; ++b)
          Gs(a, b) = go.G(f[a], f[b]);
      }
      const double ridge = 1e-10 * std::max(Gs.trace() / double(dg), 1e-300);
      Gs.diagonal().array() += ridge;
      const Vec w = Gs.ldlt().solve(h);
      for (index_t a = 0; a + 1 < dg; ++a)
        if (w[a] != 0 && std::isfinite(w[a])) {
          if (f[a] < n)
            tc.push_back({i, f[a], static_cast<T>(w[a])});
          else
            td.push_back({i, f[a] - n, static_cast<T>(w[a])});
        }
      c[i] = static_cast<T>(w[dg - 1]);
      rep.output_nonzeros_after += dg - 1;
    }
    OperatorPtr<T> Dn;
    if (!td.empty())
      Dn = csr_operator<T>(q, p, td);
    result = Model<T>(fitted.A_ptr(), fitted.B_ptr(), csr_operator<T>(q, n, tc), Dn,
                      std::vector<T>(fitted.bias_x().begin(), fitted.bias_x().end()),
                      std::move(c), model.blocks());
  } else {
    rep.output_nonzeros_after = rep.output_nonzeros_before;
  }
  {
    Batch<T> Yb(q, m, U.slab_width());
    result.output(Xf, U, Yb, o.exec);
    double err = 0, tot = 0;
    for (index_t i = 0; i < q; ++i)
      for (index_t j = 0; j < m; ++j) {
        const double e = double(Yb(i, j)) - Y(i, j);
        err += e * e;
        tot += Y(i, j) * Y(i, j);
      }
    rep.relative_output_error = tot > 0 ? std::sqrt(err / tot) : std::sqrt(err);
  }
  if (report)
    *report = rep;
  return result;
}

#define TACIT_INSTANTIATE(T)                                                             \
  template Model<T> compress_states(const Model<T> &, const Batch<T> &,                  \
                                    const StateCompressionOptions &,                     \
                                    StateCompressionReport *);
TACIT_INSTANTIATE(float)
TACIT_INSTANTIATE(double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
