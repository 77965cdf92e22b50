#pragma once
/// \file compress.hpp
/// State-driven compression: a trained model and data in, a model with far
/// fewer nonzeros that reproduces its predictions out.
///
/// The model is solved on the data U (p x m), giving its states X and
/// pre-activations Z = A X + B U + b. Each row i of (A, B, b) is then refitted
/// by the convex program
///
///   min_w  1/(2m) ||z_i - w F||^2 + lambda sum_j s_j |w_j|
///          s.t. sum_{j in A} |w_j| <= kappa,
///
/// F = [X; U; 1] the features, s_j = sqrt(F_j F_j^T / m) their root mean
/// square (so lambda acts on standardised features; the intercept b_i is not
/// penalised), w restricted to the entries of the model's row i (a zero of
/// A or B stays zero: a feed-forward A stays feed-forward, a layer reads
/// only what it read). Rows are solved independently and in parallel by
/// accelerated proximal gradient (FISTA with gradient restarts) on the
/// Gram matrix F F^T / m, started from the model's own row (the exact
/// solution at lambda = 0); the proximal step of the penalty and the
/// constraint together is exact: soft-thresholding followed by the
/// projection of the A part onto the l1 ball. Without a constraint each row
/// is solved by coordinate descent (covariance form, active set) instead.
/// With `debias` each row is then refitted on the entries it kept without
/// the penalty (relaxed lasso).
///
/// Passes. A feed-forward A (no cycles) is refitted `depth` times, depth the
/// longest path in A's pattern: pass k takes as features the states of the
/// model fitted by pass k - 1, so that each layer learns to reproduce the
/// original pre-activations from the compressed layers before it (after
/// `depth` passes every level has seen its final inputs). A model with
/// cycles is fitted once on its recorded states (the state-driven
/// formulation), with ||a_i||_1 <= kappa keeping ||A||_inf <= kappa.
///
/// Outputs. C, D and c are refitted by least squares (a ridge of
/// 1e-10 * trace / size on the Gram matrix) to the model's outputs on U from
/// the final model's states, each row on the entries of the model's row.
///
/// The result has the model's dimensions and blocks (activations); A, B, C
/// and D are CSR with only the nonzeros kept. `tacit prune` removes the
/// states and inputs this leaves unused.
///
/// Cost: the Gram matrix of the n + p + 1 features is formed (at most
/// `max_features`), O(m (n + p)^2) per pass, and FISTA costs O(d_i^2) per
/// iteration for a row with d_i entries.
///
/// Thread safety: a pure function of immutable inputs.

#include <cstdint>
#include <limits>

#include <tacit/core/dense.hpp>
#include <tacit/core/execution.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>

namespace tacit::inline v1 {

struct TACIT_EXPORT StateCompressionOptions {
  /// Weight of the l1 penalty (on standardised features); >= 0.
  double lambda = 1e-3;
  /// Bound on ||a_i||_1; negative: none when A has no cycles, ||A||_inf of
  /// the model otherwise (the model's own bound is kept).
  double kappa = -1;
  /// Refitting passes; 0: depth of A when A has no cycles, 1 otherwise.
  int passes = 0;
  /// FISTA iterations per row group and pass.
  int max_iterations = 5000;
  /// A row group has converged when no entry moved by more than
  /// tolerance * max(1, largest |entry|) in one iteration.
  double tolerance = 1e-5;
  /// Refit each row on the support the penalty selected without the
  /// penalty (the relaxed lasso: the l1 shrinkage of the kept entries
  /// undone), under the same constraint.
  bool debias = true;
  /// Refit C, D and c (least squares) to the model's outputs.
  bool refit_outputs = true;
  /// Largest n + p + 1 for which the Gram matrix is formed.
  std::int64_t max_features = 16384;
  Execution exec = Execution::parallel;
};

struct TACIT_EXPORT StateCompressionReport {
  /// Nonzeros of A and B before and after.
  std::int64_t nonzeros_before = 0, nonzeros_after = 0;
  /// Nonzeros of C and D before and after.
  std::int64_t output_nonzeros_before = 0, output_nonzeros_after = 0;
  int passes = 0;
  bool feed_forward = false;
  double kappa = std::numeric_limits<double>::infinity(); ///< the bound used
  /// Largest number of FISTA iterations of a row group (last pass).
  int max_iterations_used = 0;
  /// Row groups that reached max_iterations without converging (last pass).
  int groups_not_converged = 0;
  /// sqrt(sum_i ||z_i - w_i F||^2 / sum_i ||z_i||^2) on the features of the
  /// last pass: how well the rows reproduce the original pre-activations.
  double relative_fit_error = 0;
  /// The same for the outputs (||Y - Y'|| / ||Y|| of the final model on U).
  double relative_output_error = 0;
};

/// The compressed model (see the file comment). U holds the data, one input
/// per column.
/// \throws InvalidArgument for lambda < 0, a U without p rows or without
/// columns, or tolerance/iterations out of range; Unsupported when n + p + 1
/// exceeds max_features; NumericalError when the model's solve on U does
/// not converge (with its status and residual) or when a constraint kappa
/// < 0 would be needed.
template <class T>
TACIT_EXPORT Model<T> compress_states(const Model<T> &model, const Batch<T> &U,
                                      const StateCompressionOptions &options = {},
                                      StateCompressionReport *report = nullptr);

} // namespace tacit::inline v1
