#pragma once
/// \file bcd.hpp
/// Block-coordinate descent (BCD) on the Fenchel-divergence relaxation of
/// the training problem (seed 001, sections 4.1 and 4.2).
///
/// The model y = C x + D u + c, x = phi(A x + B u + b) is fitted to inputs
/// U (p x m) and targets Y (q x m) through the bi-convex relaxation (10)
/// (with one lambda_i per state, the "scaled" model (11)):
///
///   min  1/2 ||Y - C P - D U - c 1^T||_F^2
///        + sum_i lambda_i f_phi(P_i, (A X + B U + b 1^T)_i)
///        + mu/2 ||X - P||_F^2 + Pen(B)       s.t. ||A||_inf <= kappa,
///
/// with the Fenchel divergences of the seed, elementwise:
///   ReLU (7): F(p, z) = 1/2 p^2 + 1/2 relu(z)^2 - p z        (p >= 0)
///   tanh (8): F(p, z) = 1/2 (p log((1+p)/(1-p)) + log(1 - p^2))
///                       + log cosh(z) - p z                    (|p| < 1)
/// (both >= 0, zero exactly when p = phi(z), and dF/dz = phi(z) - p).
/// Pen is lambda_B sum_j w_j ||B e_j||_2 (the column penalty (19) on B,
/// alpha = 2) or lambda_B ||B||_1, or none.
///
/// One BCD iteration runs, in this order (the P- and X-steps repeated
/// `state_sweeps` times):
///   (C, D)-step  least squares in closed form (the squared loss, (12)
///                without its l1 constraint), one output row at a time;
///   P-step       (15): for ReLU the seed's closed form
///                P = argmin 1/2 ||Y - C P - D U||^2 + (lambda + mu)/2
///                ||P - P0||^2, P0 = (lambda Z + mu X)/(lambda + mu), i.e.
///                (C^T C + diag(lambda + mu)) p = C^T (y - D u - c) +
///                lambda z + mu x per column; when that leaves negative
///                entries (outside the divergence's domain p >= 0) the same
///                quadratic is minimised over p >= 0 (the primal
///                active-set method from the clipped closed form, exact
///                for any condition of C^T C). For tanh a damped Newton
///                iteration per column on the same objective (15);
///   X-step       (14) by the seed's fixed-point (Picard) iteration
///                X = P - (1/mu) A^T Lambda (phi(A X + B U + b) - P),
///                started from the current X. The seed states it converges
///                when ||A||_inf <= sqrt(mu / lambda) (lambda the largest
///                lambda_i): checked before the step, a violation is a
///                NumericalError with the numbers. The iteration is gradient
///                descent on (14) with step 1/mu and contracts when ell =
///                ||A^T Lambda A||_2 < mu, by ell / mu; ||A||_inf alone
///                does not bound ell (large column sums of A), and ell / mu
///                is close to 1 when ell is just below mu, so the iteration
///                is always relaxed, X <- (1 - w) X + w T(X) with w =
///                2 mu / (2 mu + ell): the same fixed point, contraction
///                factor ell / (2 mu + ell) < 1;
///   (A, B)-step  (13): min sum_i lambda_i f_phi(P_i, a_i X + b_i U + b_i)
///                + Pen(B) s.t. ||a_i||_1 <= kappa, by accelerated projected
///                proximal gradient (monotone FISTA, step 1 / (lambda_max
///                L), L the largest eigenvalue of W W^T, W = [X; U; 1]);
///                the smooth part and the projection are row-separable and
///                run over rows in parallel (TBB), the column prox over
///                columns.
///
/// Every parameter keeps its pattern: only the entries a model stores
/// (its CSR pattern, its dense blocks) are free, the others stay zero, so a
/// network (strictly block lower triangular A) stays one. The matrices are
/// held dense: BCD is for small models (n + p up to a few thousand).
///
/// Determinism: every row and column is computed on its own, so the result
/// is the same bits for any thread count.
///
/// Thread safety: the functions change only their arguments.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <tacit/core/execution.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>

namespace tacit::inline v1 {

/// A dense row-major matrix of doubles (the BCD variables).
struct TACIT_EXPORT BcdMatrix {
  index_t rows = 0, cols = 0;
  std::vector<double> values; ///< row-major, rows * cols
  BcdMatrix() = default;
  BcdMatrix(index_t r, index_t c, double v = 0)
      : rows(r), cols(c), values(static_cast<std::size_t>(r * c), v) {}
  double &operator()(index_t i, index_t j) { return values[std::size_t(i * cols + j)]; }
  double operator()(index_t i, index_t j) const {
    return values[std::size_t(i * cols + j)];
  }
};

/// The activation of the states: the divergences exist for these two.
enum class BcdActivation { relu, tanh };

/// The parameters of the model being fitted, with their patterns.
struct TACIT_EXPORT BcdParameters {
  BcdMatrix A, B, C, D;  ///< n x n, n x p, q x n, q x p
  std::vector<double> b; ///< n (bias of the states)
  std::vector<double> c; ///< q (output bias)
  /// 1 where the entry is free, 0 where it stays zero (same shapes).
  BcdMatrix maskA, maskB, maskC, maskD;
  bool fit_b = true, fit_c = true; ///< whether the biases are free
  BcdActivation activation = BcdActivation::relu;
  index_t states() const noexcept { return A.rows; }
  index_t inputs() const noexcept { return B.cols; }
  index_t outputs() const noexcept { return C.rows; }
};

enum class BcdPenalty { none, group_inputs, l1 };

struct TACIT_EXPORT BcdOptions {
  double lambda = 1;           ///< lambda_i of every state (model (10))
  std::vector<double> lambdas; ///< per state (model (11)); overrides lambda
  double mu = 1;               ///< weight of mu/2 ||X - P||_F^2
  /// ||A||_inf <= kappa in the (A, B)-step (infinity: no constraint). Must
  /// satisfy kappa <= sqrt(mu / max lambda_i) for the X-step.
  double kappa = 0.5;
  BcdPenalty penalty = BcdPenalty::none;
  double penalty_lambda = 0; ///< lambda_B of Pen
  /// Group weights w_j of the column penalty (size p; empty: all 1).
  std::vector<double> group_weights;
  /// Reweighted column penalty: after every `reweight_every` iterations
  /// w_j = 1 / (||B e_j||_2 + reweight_eps) (0: never).
  int reweight_every = 0;
  double reweight_eps = 1e-3;
  /// Scale of the states (ReLU only; 0: off). With ReLU the relaxation is
  /// 2-homogeneous in the states: scaling (X, P, B, b) by s > 0 and C by
  /// 1/s leaves the model's predictions and the loss unchanged and
  /// multiplies the divergence and the coupling by s^2 and Pen(B) by s.
  /// Without a penalty on C its infimum is therefore approached as s -> 0
  /// (vanishing states, a growing C, the divergence enforcing nothing).
  /// With state_scale = r > 0 every iteration ends by rescaling so that the
  /// root mean square of X is r (the same s for every state, so A and
  /// ||A||_inf are unchanged and the model computes the same function): the
  /// scale is fixed and the penalty acts on B relative to it.
  double state_scale = 0;
  /// Continuation: after every iteration lambda (and lambdas) and mu are
  /// multiplied by `growth` (>= 1; 1: off), so that the relaxation tightens
  /// (the divergence and the coupling weigh more against the loss) while
  /// mu / lambda, and with it the X-step's condition, stays the same.
  double growth = 1;
  /// Continuation of the penalty: after every iteration penalty_lambda is
  /// multiplied by `penalty_growth` (>= 1; 1: off). With penalty_growth =
  /// growth the (A, B)-step's problem lambda f + Pen keeps its balance while
  /// the relaxation tightens against the loss (with growth alone the penalty
  /// weighs less and less against the divergence).
  double penalty_growth = 1;
  int iterations = 5; ///< BCD iterations
  /// P- and X-steps per iteration: the pair (P-step, X-step) is repeated
  /// this many times before the (A, B)-step, which lets the targets reach
  /// the lower layers of a network in one iteration (1: the plain order).
  int state_sweeps = 1;
  int x_max_iterations = 10000; ///< Picard iterations of one X-step
  double x_tol = 1e-10; ///< X-step: stop when max |X_{k+1} - X_k| <= x_tol max(1, max|X|)
  /// Per column: Newton steps (tanh), changes of the active set (relu).
  int p_max_iterations = 200;
  double p_tol = 1e-12;
  int ab_max_iterations = 300; ///< proximal-gradient iterations of one (A, B)-step
  double ab_tol = 1e-9;        ///< stop when ||step|| <= ab_tol (1 + ||(A, B, b)||)
  Execution exec = Execution::parallel;
  /// \throws InvalidArgument naming the field: lambda, lambdas, mu <= 0 or
  /// not finite, kappa <= 0, penalty_lambda < 0, iterations < 0, ...
  void validate(index_t n, index_t p) const;
};

/// The relaxed objective (10)/(11), by parts.
struct TACIT_EXPORT BcdObjective {
  double loss = 0;       ///< 1/2 ||Y - C P - D U - c 1^T||_F^2
  double divergence = 0; ///< sum_i lambda_i f_phi(P_i, Z_i)
  double coupling = 0;   ///< mu/2 ||X - P||_F^2
  double penalty = 0;    ///< Pen(B)
  double total() const noexcept { return loss + divergence + coupling + penalty; }
};

/// What one BCD iteration did.
struct TACIT_EXPORT BcdIterationReport {
  int iteration = 0;        ///< 1-based
  BcdObjective objective;   ///< after the iteration
  double train_rmse = 0;    ///< of the model's own predictions (x = phi(A x + B u + b))
  double test_rmse = -1;    ///< on the test set when given, else -1
  int x_iterations = 0;     ///< Picard iterations of the X-step (largest column)
  int ab_iterations = 0;    ///< proximal-gradient iterations of the (A, B)-step
  index_t zero_columns = 0; ///< columns of B that are exactly zero
  double norm_inf_A = 0;    ///< ||A||_inf after the iteration
  double seconds = 0;
};

/// The state of a BCD run: parameters, X and P.
struct TACIT_EXPORT BcdState {
  BcdParameters params;
  BcdMatrix X, P; ///< n x m
};

/// Rescales the state (uniformly, s > 0): X, P, B, b times s, C times 1/s,
/// with s such that the root mean square of X becomes `rms`; returns s (1
/// when X is zero). For ReLU states the model's predictions are unchanged
/// (relu(s z) = s relu(z)). \throws InvalidArgument for tanh states or rms
/// <= 0.
TACIT_EXPORT double bcd_rescale_states(BcdState &s, double rms);

/// lambda_i of every state from the options.
TACIT_EXPORT std::vector<double> bcd_lambdas(const BcdOptions &o, index_t n);

/// The Fenchel divergence F(p, z) of (7) or (8) (+infinity outside the
/// domain p >= 0, |p| <= 1).
TACIT_EXPORT double fenchel_divergence(BcdActivation phi, double p, double z);

/// Z = A X + B U + b 1^T (n x m).
TACIT_EXPORT BcdMatrix bcd_preactivation(const BcdParameters &m, const BcdMatrix &X,
                                         const BcdMatrix &U,
                                         Execution exec = Execution::parallel);

/// The objective of `s` on (U, Y).
TACIT_EXPORT BcdObjective bcd_objective(const BcdState &s, const BcdMatrix &U,
                                        const BcdMatrix &Y, const BcdOptions &o);

/// (C, D)-step: C, D, c (free entries) by least squares on Y ~ C P + D U + c.
TACIT_EXPORT void bcd_cd_step(BcdState &s, const BcdMatrix &U, const BcdMatrix &Y,
                              const BcdOptions &o);
/// P-step (15). \throws NumericalError when a column does not converge.
TACIT_EXPORT void bcd_p_step(BcdState &s, const BcdMatrix &U, const BcdMatrix &Y,
                             const BcdOptions &o);
/// X-step (14) by the fixed-point iteration; returns the largest number of
/// iterations over the columns. \throws NumericalError when ||A||_inf >
/// sqrt(mu / lambda_max) (with both numbers) or when a column does not
/// converge within x_max_iterations (with the step and the count).
TACIT_EXPORT int bcd_x_step(BcdState &s, const BcdMatrix &U, const BcdOptions &o);
/// (A, B)-step (13) with the penalty; returns the iterations taken.
/// \throws NumericalError on non-finite values.
TACIT_EXPORT int bcd_ab_step(BcdState &s, const BcdMatrix &U, const BcdOptions &o);

/// The model's states x = phi(A x + B u + b) for every column of U (Picard,
/// which converges for ||A||_inf < 1 and for a strictly triangular A).
/// \throws NumericalError when it does not converge.
TACIT_EXPORT BcdMatrix bcd_forward(const BcdParameters &m, const BcdMatrix &U,
                                   Execution exec = Execution::parallel);
/// Predictions C x + D u + c of the model.
TACIT_EXPORT BcdMatrix bcd_predict(const BcdParameters &m, const BcdMatrix &U,
                                   Execution exec = Execution::parallel);
/// sqrt(mean of (y - yhat)^2 over all q x m entries) of the model's predictions.
TACIT_EXPORT double bcd_rmse(const BcdParameters &m, const BcdMatrix &U,
                             const BcdMatrix &Y, Execution exec = Execution::parallel);
/// ||B e_j||_2 for every input j.
TACIT_EXPORT std::vector<double> bcd_column_norms(const BcdMatrix &B);

/// The parameters of a model: A, B, C, D, b, c with the patterns of its
/// stored entries. \throws InvalidArgument when a parameter is not a single
/// matrix entry (convolutions) or a state block's activation is neither
/// ReLU nor tanh, or the blocks mix the two.
TACIT_EXPORT BcdParameters bcd_parameters(const Model<double> &model);
/// `model` with its parameters replaced by those of `p` (same structure).
TACIT_EXPORT Model<double> bcd_apply(const Model<double> &model, const BcdParameters &p);

/// A matrix from a batch (rows x columns of the batch) and back.
TACIT_EXPORT BcdMatrix bcd_matrix(const Batch<double> &batch);

/// Runs `options.iterations` BCD iterations from `model` on (U, Y): X and P
/// start at the model's states; A is first projected onto ||A||_inf <=
/// kappa. Reports each iteration to `on_iteration` (with the test RMSE when
/// test inputs are given). Returns the final state.
/// \throws InvalidArgument on inconsistent sizes or options, NumericalError
/// as the steps do.
TACIT_EXPORT BcdState
bcd_train(const BcdParameters &initial, const BcdMatrix &U, const BcdMatrix &Y,
          const BcdOptions &options,
          const std::function<void(const BcdIterationReport &)> &on_iteration = {},
          const BcdMatrix *test_U = nullptr, const BcdMatrix *test_Y = nullptr);

} // namespace tacit::inline v1
