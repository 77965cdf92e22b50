// Block-coordinate descent on the Fenchel-divergence relaxation (see
// tacit/train/bcd.hpp; seed 001 sections 4.1 and 4.2).

#include <tacit/train/bcd.hpp>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/error.hpp>
#include <tacit/train/groups.hpp>
#include <tacit/train/trainable.hpp>

#include <Eigen/Dense>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

namespace tacit::inline v1 {

namespace {

using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapR = Eigen::Map<RowMat>;
using CMapR = Eigen::Map<const RowMat>;
using Vec = Eigen::VectorXd;

MapR map(BcdMatrix &m) {
  return MapR(m.values.data(), m.rows, m.cols);
}
CMapR map(const BcdMatrix &m) {
  return CMapR(m.values.data(), m.rows, m.cols);
}
CMapR cmap(const BcdMatrix &m) {
  return CMapR(m.values.data(), m.rows, m.cols);
}

std::string num(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

/// f(i) for i in [0, n), in parallel (each index computed on its own, so the
/// result does not depend on the partition).
template <class F> void for_each_index(index_t n, const Execution &exec, F &&f) {
  if (exec.is_reference()) {
    for (index_t i = 0; i < n; ++i)
      f(i);
    return;
  }
  exec.run([&] {
    tbb::parallel_for(tbb::blocked_range<index_t>(0, n), [&](const auto &r) {
      for (index_t i = r.begin(); i < r.end(); ++i)
        f(i);
    });
  });
}

double phi(BcdActivation a, double z) {
  return a == BcdActivation::relu ? (z > 0 ? z : 0.0) : std::tanh(z);
}

/// psi*(p) = 1/2 ((1 + p) log(1 + p) + (1 - p) log(1 - p)), the conjugate of
/// log cosh; equal to the seed's 1/2 (p log((1+p)/(1-p)) + log(1 - p^2)).
double psi_star(double p) {
  const double a = p == -1 ? 0.0 : (1 + p) * std::log1p(p);
  const double b = p == 1 ? 0.0 : (1 - p) * std::log1p(-p);
  return 0.5 * (a + b);
}

/// log cosh(z), without overflow.
double log_cosh(double z) {
  const double a = std::abs(z);
  return a + std::log1p(std::exp(-2 * a)) - std::log(2.0);
}

void check_shape(const BcdMatrix &m, index_t r, index_t c, const char *what) {
  if (m.rows != r || m.cols != c || static_cast<index_t>(m.values.size()) != r * c)
    throw InvalidArgument(std::string("BCD: ") + what + " is " + std::to_string(m.rows) +
                          " x " + std::to_string(m.cols) + ", expected " +
                          std::to_string(r) + " x " + std::to_string(c));
}

void check_parameters(const BcdParameters &m) {
  const index_t n = m.A.rows, p = m.B.cols, q = m.C.rows;
  check_shape(m.A, n, n, "A");
  check_shape(m.B, n, p, "B");
  check_shape(m.C, q, n, "C");
  check_shape(m.D, q, p, "D");
  check_shape(m.maskA, n, n, "the mask of A");
  check_shape(m.maskB, n, p, "the mask of B");
  check_shape(m.maskC, q, n, "the mask of C");
  check_shape(m.maskD, q, p, "the mask of D");
  if (static_cast<index_t>(m.b.size()) != n || static_cast<index_t>(m.c.size()) != q)
    throw InvalidArgument("BCD: b must have n = " + std::to_string(n) +
                          " values and c q = " + std::to_string(q));
}

void check_data(const BcdParameters &m, const BcdMatrix &U, const BcdMatrix *Y) {
  check_parameters(m);
  if (U.rows != m.inputs())
    throw InvalidArgument("BCD: the inputs have " + std::to_string(U.rows) +
                          " rows, the model has p = " + std::to_string(m.inputs()));
  if (Y && (Y->rows != m.outputs() || Y->cols != U.cols))
    throw InvalidArgument("BCD: the targets are " + std::to_string(Y->rows) + " x " +
                          std::to_string(Y->cols) + ", expected q x m = " +
                          std::to_string(m.outputs()) + " x " + std::to_string(U.cols));
  for (const BcdMatrix *M : {&U, Y})
    if (M)
      for (std::size_t k = 0; k < M->values.size(); ++k)
        if (!std::isfinite(M->values[k]))
          throw InvalidArgument(
              std::string("BCD: the ") + (M == &U ? "inputs" : "targets") +
              " hold a non-finite value at column " + std::to_string(k % M->cols + 1) +
              ", row " + std::to_string(k / M->cols + 1));
}

double norm_inf(const BcdMatrix &A) {
  double mx = 0;
  for (index_t i = 0; i < A.rows; ++i) {
    double s = 0;
    for (index_t j = 0; j < A.cols; ++j)
      s += std::abs(A(i, j));
    mx = std::max(mx, s);
  }
  return mx;
}

/// Projects each row of A (its free entries) onto the l1 ball of radius kappa.
void project_rows(BcdMatrix &A, const BcdMatrix &mask, double kappa, index_t i,
                  std::vector<double> &buf) {
  buf.clear();
  for (index_t j = 0; j < A.cols; ++j)
    if (mask(i, j) != 0)
      buf.push_back(A(i, j));
  if (project_l1_ball<double>(buf, kappa)) {
    std::size_t k = 0;
    for (index_t j = 0; j < A.cols; ++j)
      if (mask(i, j) != 0)
        A(i, j) = buf[k++];
  }
}

double penalty_value(const BcdMatrix &B, const BcdOptions &o) {
  if (o.penalty == BcdPenalty::none || o.penalty_lambda == 0)
    return 0;
  double s = 0;
  if (o.penalty == BcdPenalty::l1) {
    for (const double v : B.values)
      s += std::abs(v);
  } else {
    const auto norms = bcd_column_norms(B);
    for (std::size_t j = 0; j < norms.size(); ++j)
      s += (o.group_weights.empty() ? 1.0 : o.group_weights[j]) * norms[j];
  }
  return o.penalty_lambda * s;
}

/// sum_k lambda_i F(P_ik, Z_ik) for row i of Z.
double row_divergence(BcdActivation a, double lambda, const double *p, const double *z,
                      index_t m) {
  double s = 0;
  for (index_t k = 0; k < m; ++k)
    s += fenchel_divergence(a, p[k], z[k]);
  return lambda * s;
}

} // namespace

void BcdOptions::validate(index_t n, index_t p) const {
  auto positive = [](double v, const char *name) {
    if (!(v > 0) || !std::isfinite(v))
      throw InvalidArgument(std::string("BCD: ") + name + " = " + num(v) +
                            " must be positive and finite");
  };
  positive(lambda, "lambda");
  positive(mu, "mu");
  if (!lambdas.empty()) {
    if (static_cast<index_t>(lambdas.size()) != n)
      throw InvalidArgument("BCD: " + std::to_string(lambdas.size()) +
                            " values of lambda for n = " + std::to_string(n) + " states");
    for (const double l : lambdas)
      positive(l, "a state's lambda");
  }
  if (!(kappa > 0))
    throw InvalidArgument("BCD: kappa = " + num(kappa) + " must be positive");
  if (!(penalty_lambda >= 0) || !std::isfinite(penalty_lambda))
    throw InvalidArgument("BCD: the penalty's lambda = " + num(penalty_lambda) +
                          " must be >= 0 and finite");
  if (!group_weights.empty() && static_cast<index_t>(group_weights.size()) != p)
    throw InvalidArgument("BCD: " + std::to_string(group_weights.size()) +
                          " group weights for p = " + std::to_string(p) + " inputs");
  for (const double w : group_weights)
    if (!(w >= 0) || !std::isfinite(w))
      throw InvalidArgument("BCD: group weight " + num(w) + " must be >= 0 and finite");
  if (iterations < 0 || state_sweeps < 1 || x_max_iterations < 1 ||
      p_max_iterations < 1 || ab_max_iterations < 1 || reweight_every < 0)
    throw InvalidArgument(
        "BCD: iteration counts must be >= 1 (iterations, reweight_every "
        ">= 0)");
  if (!(growth >= 1) || !std::isfinite(growth))
    throw InvalidArgument("BCD: growth = " + num(growth) + " must be finite and >= 1");
  if (!(penalty_growth >= 1) || !std::isfinite(penalty_growth))
    throw InvalidArgument("BCD: penalty_growth = " + num(penalty_growth) +
                          " must be finite and >= 1");
  if (!(state_scale >= 0) || !std::isfinite(state_scale))
    throw InvalidArgument("BCD: state_scale = " + num(state_scale) +
                          " must be >= 0 and finite (0: off)");
  if (!(x_tol > 0) || !(p_tol > 0) || !(ab_tol > 0) || !(reweight_eps > 0))
    throw InvalidArgument("BCD: tolerances and reweight_eps must be positive");
}

double bcd_rescale_states(BcdState &s, double rms) {
  if (s.params.activation != BcdActivation::relu)
    throw InvalidArgument("BCD: the states can be rescaled only for relu (tanh is not "
                          "positively homogeneous)");
  if (!(rms > 0) || !std::isfinite(rms))
    throw InvalidArgument("BCD: the states' root mean square " + num(rms) +
                          " must be positive and finite");
  double ss = 0;
  for (const double v : s.X.values)
    ss += v * v;
  if (!(ss > 0) || s.X.values.empty())
    return 1;
  const double f = rms / std::sqrt(ss / double(s.X.values.size()));
  if (!std::isfinite(f) || !(f > 0))
    return 1;
  for (double &v : s.X.values)
    v *= f;
  for (double &v : s.P.values)
    v *= f;
  for (double &v : s.params.B.values)
    v *= f;
  for (double &v : s.params.b)
    v *= f;
  for (double &v : s.params.C.values)
    v /= f;
  return f;
}

std::vector<double> bcd_lambdas(const BcdOptions &o, index_t n) {
  if (!o.lambdas.empty())
    return o.lambdas;
  return std::vector<double>(static_cast<std::size_t>(n), o.lambda);
}

double fenchel_divergence(BcdActivation a, double p, double z) {
  const double inf = std::numeric_limits<double>::infinity();
  if (a == BcdActivation::relu) {
    // (7): 1/2 p^2 + 1/2 relu(z)^2 - p z on p >= 0.
    if (p < 0)
      return inf;
    const double r = z > 0 ? z : 0.0;
    return 0.5 * p * p + 0.5 * r * r - p * z;
  }
  // (8): psi*(p) + log cosh(z) - p z on |p| <= 1.
  if (!(std::abs(p) <= 1))
    return inf;
  return psi_star(p) + log_cosh(z) - p * z;
}

BcdMatrix bcd_preactivation(const BcdParameters &m, const BcdMatrix &X,
                            const BcdMatrix &U, Execution exec) {
  const index_t n = m.states(), k = U.cols;
  BcdMatrix Z(n, k);
  const CMapR A = cmap(m.A), B = cmap(m.B), Xm = cmap(X), Um = cmap(U);
  MapR Zm = map(Z);
  for_each_index(n, exec, [&](index_t i) {
    Zm.row(i).noalias() = A.row(i) * Xm;
    Zm.row(i).noalias() += B.row(i) * Um;
    Zm.row(i).array() += m.b[std::size_t(i)];
  });
  return Z;
}

BcdObjective bcd_objective(const BcdState &s, const BcdMatrix &U, const BcdMatrix &Y,
                           const BcdOptions &o) {
  const BcdParameters &m = s.params;
  const index_t n = m.states(), k = U.cols;
  const auto lam = bcd_lambdas(o, n);
  BcdObjective r;
  RowMat R = map(Y) - map(m.C) * map(s.P) - map(m.D) * map(U);
  for (index_t j = 0; j < m.outputs(); ++j)
    R.row(j).array() -= m.c[std::size_t(j)];
  r.loss = 0.5 * R.squaredNorm();
  const BcdMatrix Z = bcd_preactivation(m, s.X, U, o.exec);
  for (index_t i = 0; i < n; ++i)
    r.divergence += row_divergence(m.activation, lam[std::size_t(i)],
                                   s.P.values.data() + i * k, Z.values.data() + i * k, k);
  r.coupling = 0.5 * o.mu * (map(s.X) - map(s.P)).squaredNorm();
  r.penalty = penalty_value(m.B, o);
  return r;
}

/// (C, D)-step: each output row r by least squares on its free features
/// (rows of P, rows of U, 1), min-norm when rank deficient (Eigen's complete
/// orthogonal decomposition); the closed form of the squared loss.
void bcd_cd_step(BcdState &s, const BcdMatrix &U, const BcdMatrix &Y,
                 const BcdOptions &o) {
  BcdParameters &m = s.params;
  check_data(m, U, &Y);
  const index_t n = m.states(), p = m.inputs(), k = U.cols;
  for_each_index(m.outputs(), o.exec, [&](index_t r) {
    std::vector<index_t> fp, fu;
    for (index_t i = 0; i < n; ++i)
      if (m.maskC(r, i) != 0)
        fp.push_back(i);
    for (index_t j = 0; j < p; ++j)
      if (m.maskD(r, j) != 0)
        fu.push_back(j);
    const index_t cols = index_t(fp.size() + fu.size()) + (m.fit_c ? 1 : 0);
    if (cols == 0)
      return;
    Eigen::MatrixXd F(k, cols);
    Vec t(k);
    for (index_t c = 0; c < k; ++c) {
      double fixed = m.fit_c ? 0.0 : m.c[std::size_t(r)];
      for (index_t i = 0; i < n; ++i)
        if (m.maskC(r, i) == 0)
          fixed += m.C(r, i) * s.P(i, c);
      for (index_t j = 0; j < p; ++j)
        if (m.maskD(r, j) == 0)
          fixed += m.D(r, j) * U(j, c);
      t[c] = Y(r, c) - fixed;
      index_t col = 0;
      for (const index_t i : fp)
        F(c, col++) = s.P(i, c);
      for (const index_t j : fu)
        F(c, col++) = U(j, c);
      if (m.fit_c)
        F(c, col++) = 1.0;
    }
    const Vec theta = F.completeOrthogonalDecomposition().solve(t);
    index_t col = 0;
    for (const index_t i : fp)
      m.C(r, i) = theta[col++];
    for (const index_t j : fu)
      m.D(r, j) = theta[col++];
    if (m.fit_c)
      m.c[std::size_t(r)] = theta[col++];
  });
}

/// min 1/2 p^T H p - rhs^T p over p >= 0 (H symmetric positive definite) by
/// the primal active-set method, from the clipped unconstrained minimiser
/// in `p`: exact after finitely many working-set changes (at most
/// `max_changes`), whatever H's condition (coordinate descent stalls when
/// C^T C dominates lambda + mu). Returns false when the budget runs out.
bool nonnegative_qp(const Eigen::MatrixXd &H, const Vec &rhs, Vec &p, int max_changes) {
  const index_t n = H.rows();
  p = p.cwiseMax(0.0);
  std::vector<char> free(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i)
    free[std::size_t(i)] = p[i] > 0;
  for (int change = 0; change <= max_changes; ++change) {
    std::vector<index_t> F;
    for (index_t i = 0; i < n; ++i)
      if (free[std::size_t(i)])
        F.push_back(i);
    Vec target = Vec::Zero(n);
    if (!F.empty()) {
      const index_t k = index_t(F.size());
      Eigen::MatrixXd HF(k, k);
      Vec rF(k);
      for (index_t a = 0; a < k; ++a) {
        rF[a] = rhs[F[a]];
        for (index_t b = 0; b < k; ++b)
          HF(a, b) = H(F[a], F[b]);
      }
      const Vec xF = HF.llt().solve(rF);
      for (index_t a = 0; a < k; ++a)
        target[F[a]] = xF[a];
    }
    if (target.minCoeff() >= 0) {
      p = target;
      // Optimal when no bound's multiplier (the gradient there) is negative.
      const Vec g = H * p - rhs;
      index_t worst = -1;
      double most = -1e-14 * std::max(1.0, rhs.cwiseAbs().maxCoeff());
      for (index_t i = 0; i < n; ++i)
        if (!free[std::size_t(i)] && g[i] < most) {
          most = g[i];
          worst = i;
        }
      if (worst < 0)
        return true;
      free[std::size_t(worst)] = 1;
      continue;
    }
    // Move towards the target until the first free variable reaches 0.
    double step = 1;
    for (const index_t i : F)
      if (target[i] < 0)
        step = std::min(step, p[i] / (p[i] - target[i]));
    p += step * (target - p);
    for (const index_t i : F)
      if (target[i] < 0 && p[i] <= 1e-15 * std::max(1.0, p.cwiseAbs().maxCoeff())) {
        p[i] = 0;
        free[std::size_t(i)] = 0;
      }
  }
  return false;
}

/// P-step (15), column by column.
void bcd_p_step(BcdState &s, const BcdMatrix &U, const BcdMatrix &Y,
                const BcdOptions &o) {
  BcdParameters &m = s.params;
  check_data(m, U, &Y);
  const index_t n = m.states(), k = U.cols;
  const auto lamv = bcd_lambdas(o, n);
  const Vec lam = Eigen::Map<const Vec>(lamv.data(), n);
  const BcdMatrix Z = bcd_preactivation(m, s.X, U, o.exec);
  const Eigen::MatrixXd C = map(m.C);
  const Eigen::MatrixXd CtC = C.transpose() * C;
  // Targets of C P: T = Y - D U - c 1^T.
  RowMat T = map(Y) - map(m.D) * map(U);
  for (index_t j = 0; j < m.outputs(); ++j)
    T.row(j).array() -= m.c[std::size_t(j)];
  const RowMat CtT = C.transpose() * T;
  const double mu = o.mu;
  std::vector<int> failed(static_cast<std::size_t>(k), 0);

  if (m.activation == BcdActivation::relu) {
    // The seed's closed form: (C^T C + diag(lambda + mu)) p = C^T t + lambda z + mu x,
    // i.e. p minimises 1/2 ||t - C p||^2 + (lambda + mu)/2 ||p - p0||^2.
    Eigen::MatrixXd H = CtC;
    H.diagonal() += lam + Vec::Constant(n, mu);
    const Eigen::LLT<Eigen::MatrixXd> llt(H);
    for_each_index(k, o.exec, [&](index_t c) {
      Vec rhs(n);
      for (index_t i = 0; i < n; ++i)
        rhs[i] = CtT(i, c) + lam[i] * Z(i, c) + mu * s.X(i, c);
      Vec pc = llt.solve(rhs);
      if (pc.minCoeff() < 0 && !nonnegative_qp(H, rhs, pc, o.p_max_iterations))
        failed[std::size_t(c)] = 1;
      for (index_t i = 0; i < n; ++i)
        s.P(i, c) = pc[i];
    });
  } else {
    // tanh: damped Newton on g(p) = 1/2 ||C p - t||^2 + sum_i lambda_i
    // (psi*(p_i) - p_i z_i) + mu/2 ||p - x||^2 over |p| < 1.
    for_each_index(k, o.exec, [&](index_t c) {
      const double edge = 1 - 1e-12;
      Vec pc(n), z(n), x(n), t(T.rows());
      for (index_t i = 0; i < n; ++i) {
        pc[i] = std::clamp(s.P(i, c), -edge, edge);
        z[i] = Z(i, c);
        x[i] = s.X(i, c);
      }
      for (index_t j = 0; j < T.rows(); ++j)
        t[j] = T(j, c);
      auto value = [&](const Vec &v) {
        double f = 0.5 * (C * v - t).squaredNorm() + 0.5 * mu * (v - x).squaredNorm();
        for (index_t i = 0; i < n; ++i)
          f += lam[i] * (psi_star(v[i]) - v[i] * z[i]);
        return f;
      };
      double f = value(pc);
      bool done = false;
      for (int it = 0; it < o.p_max_iterations && !done; ++it) {
        Vec g = CtC * pc - Eigen::VectorXd(CtT.col(c)) + mu * (pc - x);
        Eigen::MatrixXd H = CtC;
        for (index_t i = 0; i < n; ++i) {
          g[i] += lam[i] * (std::atanh(pc[i]) - z[i]);
          H(i, i) += lam[i] / (1 - pc[i] * pc[i]) + mu;
        }
        const Vec dp = -H.llt().solve(g);
        const double decrement = -g.dot(dp);
        // Converged when the Newton step is negligible or the decrease it
        // promises (decrement / 2) is below double precision of f.
        if (!(decrement > 1e-20 * (1 + std::abs(f))) ||
            dp.cwiseAbs().maxCoeff() <=
                o.p_tol * std::max(1.0, pc.cwiseAbs().maxCoeff())) {
          done = true;
          break;
        }
        double step = 1;
        for (index_t i = 0; i < n; ++i)
          if (dp[i] > 0)
            step = std::min(step, 0.99 * (edge - pc[i]) / dp[i]);
          else if (dp[i] < 0)
            step = std::min(step, 0.99 * (-edge - pc[i]) / dp[i]);
        Vec next = pc + step * dp;
        double fn = value(next);
        int halvings = 0;
        // Armijo's test, and a strict decrease (a step that leaves f equal
        // to double precision is no progress).
        auto accepted = [&] { return fn <= f - 1e-4 * step * decrement && fn < f; };
        while (!accepted() && halvings < 60) {
          step *= 0.5;
          next = pc + step * dp;
          fn = value(next);
          ++halvings;
        }
        if (!accepted()) {
          // No decrease along the Newton direction: the objective is flat
          // to double precision here.
          done = true;
          break;
        }
        pc = next;
        f = fn;
        if (step * dp.cwiseAbs().maxCoeff() <=
            o.p_tol * std::max(1.0, pc.cwiseAbs().maxCoeff())) {
          done = true; // the move is negligible (at the edge |p| = 1 - 1e-12)
          break;
        }
      }
      if (!done)
        failed[std::size_t(c)] = 1;
      for (index_t i = 0; i < n; ++i)
        s.P(i, c) = pc[i];
    });
  }
  for (index_t c = 0; c < k; ++c)
    if (failed[std::size_t(c)])
      throw NumericalError("BCD P-step: column " + std::to_string(c + 1) +
                               " did not converge within p_max_iterations = " +
                               std::to_string(o.p_max_iterations),
                           std::numeric_limits<double>::quiet_NaN(), o.p_tol,
                           o.p_max_iterations);
}

/// X-step (14): the seed's fixed point X = P - (1/mu) A^T Lambda (phi(A X +
/// B U + b) - P), Picard per column.
int bcd_x_step(BcdState &s, const BcdMatrix &U, const BcdOptions &o) {
  BcdParameters &m = s.params;
  check_data(m, U, nullptr);
  const index_t n = m.states(), k = U.cols;
  const auto lamv = bcd_lambdas(o, n);
  const double lmax = *std::max_element(lamv.begin(), lamv.end());
  const double a = norm_inf(m.A), limit = std::sqrt(o.mu / lmax);
  if (a > limit * (1 + 1e-12))
    throw NumericalError("BCD X-step: ||A||_inf = " + num(a) +
                             " exceeds sqrt(mu / lambda) = " + num(limit) +
                             " (mu = " + num(o.mu) + ", lambda = " + num(lmax) +
                             "): the fixed-point iteration X = P - (lambda/mu) A^T "
                             "(phi(A X + B U) - P) is not guaranteed to converge; raise "
                             "mu or lower kappa",
                         a, limit);
  const Eigen::MatrixXd A = map(m.A);
  const Eigen::MatrixXd AtL =
      A.transpose() * Eigen::Map<const Vec>(lamv.data(), n).asDiagonal();
  // The iteration is gradient descent on (14) with step 1/mu; the gradient's
  // Lipschitz constant is mu + ell, ell = ||A^T Lambda A||_2 (phi' <= 1). The
  // seed's condition bounds ||A||_inf, not ||A||_2, so ell may exceed mu with
  // the condition met (large column sums): the plain iteration would not
  // contract. The iteration is therefore always relaxed, X <- (1 - omega) X
  // + omega T(X) with omega = 2 mu / (2 mu + ell) (gradient descent with step
  // 2 / (L + mu), the Hessian's eigenvalues lying in [mu, mu + ell]), which
  // has the same fixed point and contracts by ell / (2 mu + ell) < 1/3 when
  // ell < mu. (The plain iteration contracts only by ell / mu, close to 1
  // when ell is just below mu: columns then ran out of x_max_iterations.)
  const double ell =
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(AtL * A, Eigen::EigenvaluesOnly)
          .eigenvalues()
          .maxCoeff();
  const double omega = 2 * o.mu / (2 * o.mu + ell);
  // S = B U + b 1^T, fixed during the step.
  BcdMatrix S(n, k);
  {
    const CMapR B = cmap(m.B), Um = cmap(U);
    MapR Sm = map(S);
    for_each_index(n, o.exec, [&](index_t i) {
      Sm.row(i).noalias() = B.row(i) * Um;
      Sm.row(i).array() += m.b[std::size_t(i)];
    });
  }
  std::vector<int> its(static_cast<std::size_t>(k), 0);
  std::vector<double> last(static_cast<std::size_t>(k), 0);
  for_each_index(k, o.exec, [&](index_t c) {
    Vec x(n), pc(n), sc(n), z(n), r(n);
    for (index_t i = 0; i < n; ++i) {
      x[i] = s.X(i, c);
      pc[i] = s.P(i, c);
      sc[i] = S(i, c);
    }
    int it = 0;
    double change = 0;
    for (; it < o.x_max_iterations; ++it) {
      z.noalias() = A * x;
      for (index_t i = 0; i < n; ++i)
        r[i] = phi(m.activation, z[i] + sc[i]) - pc[i];
      Vec next = pc;
      next.noalias() -= (1 / o.mu) * (AtL * r);
      next = (1 - omega) * x + omega * next;
      change = (next - x).cwiseAbs().maxCoeff();
      const double scale = std::max(1.0, next.cwiseAbs().maxCoeff());
      x = next;
      if (!std::isfinite(change) || change <= o.x_tol * scale)
        break;
    }
    its[std::size_t(c)] = it + 1;
    last[std::size_t(c)] = change;
    for (index_t i = 0; i < n; ++i)
      s.X(i, c) = x[i];
  });
  int worst = 0;
  for (index_t c = 0; c < k; ++c) {
    if (!std::isfinite(last[std::size_t(c)]) || its[std::size_t(c)] > o.x_max_iterations)
      throw NumericalError(
          "BCD X-step: the fixed-point iteration of column " + std::to_string(c + 1) +
              " did not converge in " + std::to_string(o.x_max_iterations) +
              " iterations (last step " + num(last[std::size_t(c)]) +
              ", ||A||_inf = " + num(a) + ", sqrt(mu/lambda) = " + num(limit) + ")",
          last[std::size_t(c)], o.x_tol, o.x_max_iterations);
    worst = std::max(worst, its[std::size_t(c)]);
  }
  return worst;
}

/// (A, B)-step (13): monotone FISTA (Beck and Teboulle's MFISTA) on
/// sum_i lambda_i f(P_i, a_i X + b_i U + b_i) + Pen(B), projecting each row
/// of A onto ||a_i||_1 <= kappa and taking the prox of Pen on B.
int bcd_ab_step(BcdState &s, const BcdMatrix &U, const BcdOptions &o) {
  BcdParameters &m = s.params;
  check_data(m, U, nullptr);
  const index_t n = m.states(), p = m.inputs(), k = U.cols;
  const auto lam = bcd_lambdas(o, n);
  const double lmax = *std::max_element(lam.begin(), lam.end());
  const CMapR Xm = cmap(s.X), Um = cmap(U);
  // Lipschitz constant of the smooth part: phi' <= 1, so lambda_max times the
  // largest eigenvalue of W W^T, W = [X; U; 1].
  double L;
  {
    const index_t w = n + p + 1;
    Eigen::MatrixXd G(w, w);
    G.topLeftCorner(n, n).noalias() = Xm * Xm.transpose();
    G.block(0, n, n, p).noalias() = Xm * Um.transpose();
    G.block(n, 0, p, n) = G.block(0, n, n, p).transpose();
    G.block(n, n, p, p).noalias() = Um * Um.transpose();
    const Vec xs = Xm.rowwise().sum(), us = Um.rowwise().sum();
    G.block(0, n + p, n, 1) = xs;
    G.block(n, n + p, p, 1) = us;
    G.block(n + p, 0, 1, n) = xs.transpose();
    G.block(n + p, n, 1, p) = us.transpose();
    G(n + p, n + p) = double(k);
    L = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(G, Eigen::EigenvaluesOnly)
            .eigenvalues()
            .maxCoeff();
  }
  const double step = 1 / (lmax * std::max(L, 1e-300));
  const bool constrain = std::isfinite(o.kappa);

  // The variables (A, B, b) as one parameter set; smooth value and gradient
  // row by row.
  struct Point {
    BcdMatrix A, B;
    std::vector<double> b;
  };
  auto smooth = [&](const Point &x, Point *grad) {
    std::vector<double> rows(static_cast<std::size_t>(n), 0.0);
    const CMapR A = cmap(x.A), B = cmap(x.B);
    for_each_index(n, o.exec, [&](index_t i) {
      Eigen::RowVectorXd z = A.row(i) * Xm;
      z.noalias() += B.row(i) * Um;
      z.array() += x.b[std::size_t(i)];
      const double li = lam[std::size_t(i)];
      rows[std::size_t(i)] =
          row_divergence(m.activation, li, s.P.values.data() + i * k, z.data(), k);
      if (grad) {
        Eigen::RowVectorXd r(k);
        for (index_t c = 0; c < k; ++c)
          r[c] = li * (phi(m.activation, z[c]) - s.P(i, c));
        MapR gA = map(grad->A), gB = map(grad->B);
        gA.row(i).noalias() = r * Xm.transpose();
        gB.row(i).noalias() = r * Um.transpose();
        for (index_t j = 0; j < n; ++j)
          if (m.maskA(i, j) == 0)
            gA(i, j) = 0;
        for (index_t j = 0; j < p; ++j)
          if (m.maskB(i, j) == 0)
            gB(i, j) = 0;
        grad->b[std::size_t(i)] = m.fit_b ? r.sum() : 0.0;
      }
    });
    double total = 0;
    for (const double v : rows)
      total += v;
    return total;
  };
  auto objective = [&](const Point &x) {
    return smooth(x, nullptr) + penalty_value(x.B, o);
  };
  // The proximal map at v: projection of A's rows, prox of t Pen on B.
  auto prox = [&](Point &v) {
    if (constrain)
      for_each_index(n, o.exec, [&](index_t i) {
        std::vector<double> buf;
        project_rows(v.A, m.maskA, o.kappa, i, buf);
      });
    const double t = step * o.penalty_lambda;
    if (o.penalty == BcdPenalty::l1 && t > 0) {
      for (double &b : v.B.values)
        b = b > t ? b - t : (b < -t ? b + t : 0.0);
    } else if (o.penalty == BcdPenalty::group_inputs && t > 0) {
      for_each_index(p, o.exec, [&](index_t j) {
        double nrm = 0;
        for (index_t i = 0; i < n; ++i)
          nrm += v.B(i, j) * v.B(i, j);
        nrm = std::sqrt(nrm);
        const double w = o.group_weights.empty() ? 1.0 : o.group_weights[std::size_t(j)];
        const double f = nrm > t * w ? 1 - t * w / nrm : 0.0;
        for (index_t i = 0; i < n; ++i)
          v.B(i, j) = f == 0 ? 0.0 : v.B(i, j) * f;
      });
    }
  };
  auto axpy = [](Point &out, const Point &x, double a, const Point &d) {
    for (std::size_t e = 0; e < out.A.values.size(); ++e)
      out.A.values[e] = x.A.values[e] + a * d.A.values[e];
    for (std::size_t e = 0; e < out.B.values.size(); ++e)
      out.B.values[e] = x.B.values[e] + a * d.B.values[e];
    for (std::size_t e = 0; e < out.b.size(); ++e)
      out.b[e] = x.b[e] + a * d.b[e];
  };
  auto diff_norm = [](const Point &a, const Point &b) {
    double s2 = 0;
    for (std::size_t e = 0; e < a.A.values.size(); ++e)
      s2 += (a.A.values[e] - b.A.values[e]) * (a.A.values[e] - b.A.values[e]);
    for (std::size_t e = 0; e < a.B.values.size(); ++e)
      s2 += (a.B.values[e] - b.B.values[e]) * (a.B.values[e] - b.B.values[e]);
    for (std::size_t e = 0; e < a.b.size(); ++e)
      s2 += (a.b[e] - b.b[e]) * (a.b[e] - b.b[e]);
    return std::sqrt(s2);
  };
  auto norm = [](const Point &a) {
    double s2 = 0;
    for (const double v : a.A.values)
      s2 += v * v;
    for (const double v : a.B.values)
      s2 += v * v;
    for (const double v : a.b)
      s2 += v * v;
    return std::sqrt(s2);
  };

  Point x{m.A, m.B, m.b};
  double fx = objective(x);
  if (!std::isfinite(fx))
    throw NumericalError("BCD (A, B)-step: the objective at the start is not finite "
                         "(P outside the divergence's domain?)",
                         fx);
  Point y = x, grad = x, z = x, prev = x;
  double tk = 1;
  int it = 0;
  for (; it < o.ab_max_iterations; ++it) {
    smooth(y, &grad);
    axpy(z, y, -step, grad);
    prox(z);
    const double fz = objective(z);
    if (!std::isfinite(fz))
      throw NumericalError("BCD (A, B)-step: non-finite objective at iteration " +
                               std::to_string(it + 1),
                           fz);
    const double moved = diff_norm(z, y);
    prev = x;
    if (fz <= fx) {
      x = z;
      fx = fz;
    }
    const double tn = (1 + std::sqrt(1 + 4 * tk * tk)) / 2;
    // y = x + (tk/tn)(z - x) + ((tk - 1)/tn)(x - prev)
    for (std::size_t e = 0; e < y.A.values.size(); ++e)
      y.A.values[e] = x.A.values[e] + tk / tn * (z.A.values[e] - x.A.values[e]) +
                      (tk - 1) / tn * (x.A.values[e] - prev.A.values[e]);
    for (std::size_t e = 0; e < y.B.values.size(); ++e)
      y.B.values[e] = x.B.values[e] + tk / tn * (z.B.values[e] - x.B.values[e]) +
                      (tk - 1) / tn * (x.B.values[e] - prev.B.values[e]);
    for (std::size_t e = 0; e < y.b.size(); ++e)
      y.b[e] =
          x.b[e] + tk / tn * (z.b[e] - x.b[e]) + (tk - 1) / tn * (x.b[e] - prev.b[e]);
    tk = tn;
    if (moved <= o.ab_tol * (1 + norm(x))) {
      ++it;
      break;
    }
  }
  m.A = std::move(x.A);
  m.B = std::move(x.B);
  m.b = std::move(x.b);
  return it;
}

BcdMatrix bcd_forward(const BcdParameters &m, const BcdMatrix &U, Execution exec) {
  check_data(m, U, nullptr);
  const index_t n = m.states(), k = U.cols;
  const Eigen::MatrixXd A = map(m.A);
  BcdMatrix X(n, k);
  BcdMatrix S(n, k);
  {
    const CMapR B = cmap(m.B), Um = cmap(U);
    MapR Sm = map(S);
    for_each_index(n, exec, [&](index_t i) {
      Sm.row(i).noalias() = B.row(i) * Um;
      Sm.row(i).array() += m.b[std::size_t(i)];
    });
  }
  const int budget = 100000;
  std::vector<int> bad(static_cast<std::size_t>(k), 0);
  for_each_index(k, exec, [&](index_t c) {
    Vec x = Vec::Zero(n), z(n);
    int it = 0;
    for (; it < budget; ++it) {
      z.noalias() = A * x;
      double change = 0, scale = 1;
      for (index_t i = 0; i < n; ++i) {
        const double v = phi(m.activation, z[i] + S(i, c));
        change = std::max(change, std::abs(v - x[i]));
        scale = std::max(scale, std::abs(v));
        x[i] = v;
      }
      if (!std::isfinite(change)) {
        it = budget;
        break;
      }
      if (change <= 1e-15 * scale)
        break;
    }
    if (it >= budget)
      bad[std::size_t(c)] = 1;
    for (index_t i = 0; i < n; ++i)
      X(i, c) = x[i];
  });
  for (index_t c = 0; c < k; ++c)
    if (bad[std::size_t(c)])
      throw NumericalError(
          "BCD: the model's states x = phi(A x + B u + b) for input " +
              std::to_string(c + 1) + " did not converge in " + std::to_string(budget) +
              " Picard iterations (||A||_inf = " + num(norm_inf(m.A)) + ")",
          norm_inf(m.A), 1, budget);
  return X;
}

BcdMatrix bcd_predict(const BcdParameters &m, const BcdMatrix &U, Execution exec) {
  const BcdMatrix X = bcd_forward(m, U, exec);
  BcdMatrix Yh(m.outputs(), U.cols);
  MapR Ym = map(Yh);
  Ym.noalias() = map(m.C) * map(X);
  Ym.noalias() += map(m.D) * map(U);
  for (index_t j = 0; j < m.outputs(); ++j)
    Ym.row(j).array() += m.c[std::size_t(j)];
  return Yh;
}

double bcd_rmse(const BcdParameters &m, const BcdMatrix &U, const BcdMatrix &Y,
                Execution exec) {
  check_data(m, U, &Y);
  const BcdMatrix Yh = bcd_predict(m, U, exec);
  const double count = double(Y.rows) * double(Y.cols);
  return count > 0 ? std::sqrt((map(Y) - map(Yh)).squaredNorm() / count) : 0.0;
}

std::vector<double> bcd_column_norms(const BcdMatrix &B) {
  std::vector<double> s(static_cast<std::size_t>(B.cols), 0.0);
  for (index_t i = 0; i < B.rows; ++i)
    for (index_t j = 0; j < B.cols; ++j)
      s[std::size_t(j)] += B(i, j) * B(i, j);
  for (double &v : s)
    v = std::sqrt(v);
  return s;
}

BcdParameters bcd_parameters(const Model<double> &model) {
  const index_t n = model.states(), p = model.inputs(), q = model.outputs();
  BcdParameters m;
  bool relu = false, tanh = false;
  for (const auto &blk : model.blocks()) {
    if (blk.activation.kind == ActivationKind::relu)
      relu = true;
    else if (blk.activation.kind == ActivationKind::tanh)
      tanh = true;
    else
      throw InvalidArgument("BCD: state block '" + blk.name + "' has activation " +
                            blk.activation.name() +
                            "; the Fenchel divergences exist here for relu and tanh");
  }
  if (relu && tanh)
    throw InvalidArgument("BCD: the model mixes relu and tanh blocks; BCD needs one "
                          "activation for every state");
  m.activation = tanh ? BcdActivation::tanh : BcdActivation::relu;
  m.A = m.maskA = BcdMatrix(n, n);
  m.B = m.maskB = BcdMatrix(n, p);
  m.C = m.maskC = BcdMatrix(q, n);
  m.D = m.maskD = BcdMatrix(q, p);
  m.b.assign(std::size_t(n), 0.0);
  m.c.assign(std::size_t(q), 0.0);
  for (index_t i = 0; i < n; ++i)
    m.b[std::size_t(i)] = model.bias_x()[std::size_t(i)];
  for (index_t j = 0; j < q; ++j)
    m.c[std::size_t(j)] = model.bias_y()[std::size_t(j)];
  m.fit_b = m.fit_c = false;
  TrainableModel<double> tm(model, BiasTying::none);
  const auto pos = parameter_positions(tm);
  std::vector<double> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  for (std::size_t e = 0; e < pos.size(); ++e) {
    const auto &ps = pos[e];
    const double v = flat[e];
    switch (ps.matrix) {
    case 0:
      m.A(ps.row, ps.col) = v, m.maskA(ps.row, ps.col) = 1;
      break;
    case 1:
      m.B(ps.row, ps.col) = v, m.maskB(ps.row, ps.col) = 1;
      break;
    case 2:
      m.C(ps.row, ps.col) = v, m.maskC(ps.row, ps.col) = 1;
      break;
    case 3:
      m.D(ps.row, ps.col) = v, m.maskD(ps.row, ps.col) = 1;
      break;
    case 4:
      m.fit_b = true;
      break;
    case 5:
      m.fit_c = true;
      break;
    default:
      throw InvalidArgument(
          "BCD: parameter " + std::to_string(e) +
          " of the model is not a single entry of A, B, C, D or the "
          "biases (a convolution or shared weight); BCD needs CSR, dense "
          "or diagonal operators");
    }
  }
  return m;
}

Model<double> bcd_apply(const Model<double> &model, const BcdParameters &m) {
  check_parameters(m);
  if (m.states() != model.states() || m.inputs() != model.inputs() ||
      m.outputs() != model.outputs())
    throw InvalidArgument("BCD: the parameters do not have the model's sizes");
  TrainableModel<double> tm(model, BiasTying::none);
  const auto pos = parameter_positions(tm);
  std::vector<double> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  for (std::size_t e = 0; e < pos.size(); ++e) {
    const auto &ps = pos[e];
    switch (ps.matrix) {
    case 0:
      flat[e] = m.A(ps.row, ps.col);
      break;
    case 1:
      flat[e] = m.B(ps.row, ps.col);
      break;
    case 2:
      flat[e] = m.C(ps.row, ps.col);
      break;
    case 3:
      flat[e] = m.D(ps.row, ps.col);
      break;
    case 4:
      flat[e] = m.b[std::size_t(ps.row)];
      break;
    case 5:
      flat[e] = m.c[std::size_t(ps.row)];
      break;
    default:
      throw InvalidArgument("BCD: the model has parameters that are not single entries");
    }
  }
  tm.write(flat);
  return tm.model();
}

BcdMatrix bcd_matrix(const Batch<double> &batch) {
  BcdMatrix M(batch.rows(), batch.cols());
  std::vector<double> col(static_cast<std::size_t>(batch.rows()));
  for (index_t c = 0; c < batch.cols(); ++c) {
    batch.get_column(c, col);
    for (index_t i = 0; i < batch.rows(); ++i)
      M(i, c) = col[std::size_t(i)];
  }
  return M;
}

BcdState bcd_train(const BcdParameters &initial, const BcdMatrix &U, const BcdMatrix &Y,
                   const BcdOptions &options,
                   const std::function<void(const BcdIterationReport &)> &on_iteration,
                   const BcdMatrix *test_U, const BcdMatrix *test_Y) {
  check_data(initial, U, &Y);
  if ((test_U == nullptr) != (test_Y == nullptr))
    throw InvalidArgument("BCD: give both the test inputs and the test targets");
  if (test_U)
    check_data(initial, *test_U, test_Y);
  BcdOptions o = options;
  o.validate(initial.states(), initial.inputs());
  if (o.state_scale > 0 && initial.activation != BcdActivation::relu)
    throw InvalidArgument("BCD: state_scale = " + num(o.state_scale) +
                          " needs relu states (tanh is not positively homogeneous)");
  const auto lam = bcd_lambdas(o, initial.states());
  const double lmax = *std::max_element(lam.begin(), lam.end());
  if (std::isfinite(o.kappa) && o.kappa > std::sqrt(o.mu / lmax) * (1 + 1e-12))
    throw NumericalError(
        "BCD: kappa = " + num(o.kappa) +
            " exceeds sqrt(mu / lambda) = " + num(std::sqrt(o.mu / lmax)) +
            " (mu = " + num(o.mu) + ", lambda = " + num(lmax) +
            "): the X-step's fixed-point iteration needs ||A||_inf <= "
            "sqrt(mu / lambda); raise mu or lower kappa",
        o.kappa, std::sqrt(o.mu / lmax));
  BcdState s;
  s.params = initial;
  if (std::isfinite(o.kappa)) {
    std::vector<double> buf;
    for (index_t i = 0; i < s.params.states(); ++i)
      project_rows(s.params.A, s.params.maskA, o.kappa, i, buf);
  }
  s.X = bcd_forward(s.params, U, o.exec);
  s.P = s.X;
  for (int it = 1; it <= o.iterations; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    BcdIterationReport r;
    r.iteration = it;
    bcd_cd_step(s, U, Y, o);
    for (int sweep = 0; sweep < o.state_sweeps; ++sweep) {
      bcd_p_step(s, U, Y, o);
      r.x_iterations = std::max(r.x_iterations, bcd_x_step(s, U, o));
    }
    r.ab_iterations = bcd_ab_step(s, U, o);
    if (o.state_scale > 0) // fix the gauge (see BcdOptions::state_scale)
      bcd_rescale_states(s, o.state_scale);
    if (o.penalty == BcdPenalty::group_inputs && o.reweight_every > 0 &&
        it % o.reweight_every == 0 && it < o.iterations) {
      const auto norms = bcd_column_norms(s.params.B);
      o.group_weights.resize(norms.size());
      for (std::size_t j = 0; j < norms.size(); ++j)
        o.group_weights[j] = 1 / (norms[j] + o.reweight_eps);
    }
    r.objective = bcd_objective(s, U, Y, o);
    if (o.growth > 1) { // continuation, after the report's objective
      o.lambda *= o.growth;
      for (double &l : o.lambdas)
        l *= o.growth;
      o.mu *= o.growth;
    }
    o.penalty_lambda *= o.penalty_growth;
    r.train_rmse = bcd_rmse(s.params, U, Y, o.exec);
    if (test_U)
      r.test_rmse = bcd_rmse(s.params, *test_U, *test_Y, o.exec);
    for (const double v : bcd_column_norms(s.params.B))
      r.zero_columns += v == 0 ? 1 : 0;
    r.norm_inf_A = norm_inf(s.params.A);
    r.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (on_iteration)
      on_iteration(r);
  }
  return s;
}

} // namespace tacit::inline v1
