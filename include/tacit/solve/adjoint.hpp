#pragma once
/// \file adjoint.hpp
/// The adjoint of the equilibrium: gradients through x = phi(A x + B u + b).
///
/// At an equilibrium x with z = A x + B u + b and J = diag(phi'(z)), the
/// derivative of a function of the states and outputs is carried back by
/// the adjoint equation
///
///     w = A^T J w + r          (r = C^T g_y for a loss of the outputs)
///
/// solved here for v = J w, which satisfies v = J (A^T v + r). From v, the
/// gradient with respect to the inputs is B^T v + D^T g_y (input_gradient)
/// and with respect to the parameters the outer products v x^T, v u^T
/// restricted to each operator's structure (tacit/train).
///
/// Methods (chosen once per solver, the choice and its reason reported):
/// - sweep: A block triangular, solved exactly in reverse dependency order
///   (backpropagation): a BlockStructured A block by block with the blocks'
///   transposed products (a diagonal block by Picard on that block), a CSR A
///   whose strongly connected components are single states row by row
///   (v_i = J_i s_i / (1 - J_i a_ii)).
/// - picard: v <- J (A^T v + r), optionally Anderson-accelerated, with the
///   forward solver's per-column stopping rule and status. Converges when
///   lambda_PF(|A|) < 1 (|J| <= 1 for the non-expansive activations).
/// - klu: per column a sparse LU of I - J A^T (SuiteSparse KLU: one
///   symbolic analysis, one numeric factorisation per column); exact, for
///   small and moderate A with cycles.
///
/// phi'(z) at z = 0 is 0 for ReLU and the negative slope for leaky ReLU (as
/// PyTorch). The derivatives are taken from x where that is exact (ReLU,
/// leaky ReLU with slope >= 0, tanh: 1 - x^2, sigmoid: x (1 - x),
/// identity), else from z.
///
/// Results are deterministic: the same bits for 1 or N threads; a column's
/// result does not depend on the other columns of the batch.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>
#include <tacit/solve/solve.hpp>

namespace tacit::inline v1 {

enum class AdjointMethod { automatic, sweep, picard, klu };

TACIT_EXPORT std::string to_string(AdjointMethod m);
/// "auto", "sweep", "picard", "klu". \throws InvalidArgument otherwise.
TACIT_EXPORT AdjointMethod parse_adjoint_method(std::string_view s);

struct TACIT_EXPORT AdjointOptions {
  /// automatic: sweep when A is block triangular with single-state (CSR) or
  /// block (structured) components, else picard.
  AdjointMethod method = AdjointMethod::automatic;
  /// Stopping rule, budget, divergence test and Anderson depth of the
  /// iterative method (and of the diagonal blocks of a block sweep), as for
  /// the forward solve.
  PicardOptions picard;
};

/// Outcome of an adjoint solve (status semantics as SolveReport's).
struct TACIT_EXPORT AdjointReport {
  AdjointMethod method = AdjointMethod::sweep;
  SolveStatus status = SolveStatus::converged;
  int iterations = 0;
  /// max over columns of ||v - J (A^T v + r)||_inf at the returned v (0 for
  /// the exact methods, which do not evaluate it).
  double residual = 0;
  std::vector<double> column_residuals;
  std::vector<SolveStatus> column_status;
  std::vector<int> column_iterations;
  std::string message;
  bool ok() const noexcept { return status == SolveStatus::converged; }
};

/// An adjoint solver prepared for one model (structure analysed once,
/// workspace kept between calls). Rebuild it (rebuild()) when the model's
/// parameters change (it keeps copies derived from A). One solver must not
/// be used from several threads at once.
template <class T> class TACIT_EXPORT AdjointSolver {
public:
  /// \throws InvalidArgument when the requested method does not apply.
  explicit AdjointSolver(const Model<T> &model, AdjointOptions options = {});
  ~AdjointSolver();
  AdjointSolver(AdjointSolver &&) noexcept;
  AdjointSolver &operator=(AdjointSolver &&) noexcept;

  /// Prepares the solver again for `model` (the same model after its
  /// parameters changed in place), keeping the workspace (see
  /// EquilibriumSolver::rebuild). \throws InvalidArgument when the numbers
  /// of states, inputs or outputs differ.
  void rebuild(const Model<T> &model);

  AdjointMethod method() const noexcept;
  const std::string &method_reason() const noexcept;

  /// V = J (A^T V + R) at the equilibrium X of the inputs U (X: n x k, U:
  /// p x k, R: n x k, all with X's slab width). V is resized if needed.
  /// \throws InvalidArgument on mismatched shapes.
  AdjointReport solve(const Batch<T> &X, const Batch<T> &U, const Batch<T> &R,
                      Batch<T> &V);
  /// The same with R = C^T G for the gradients G (q x k) of a loss with
  /// respect to the outputs.
  AdjointReport solve_outputs(const Batch<T> &X, const Batch<T> &U, const Batch<T> &G,
                              Batch<T> &V);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// J = phi'(z) per state and column at the equilibrium X of U (n x k, X's
/// layout), taken from x where exact (see the file comment).
template <class T>
TACIT_EXPORT void activation_derivatives(const Model<T> &model, const Batch<T> &X,
                                         const Batch<T> &U, Batch<T> &J);

/// dU = B^T V + D^T G (p x k): the gradient with respect to the inputs, from
/// the adjoint V and the output gradients G (G may be empty when D = 0 or
/// the loss does not read the outputs directly).
template <class T>
TACIT_EXPORT void input_gradient(const Model<T> &model, const Batch<T> &V,
                                 const Batch<T> &G, Batch<T> &dU);

} // namespace tacit::inline v1
