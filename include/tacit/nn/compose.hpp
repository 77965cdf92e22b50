#pragma once
/// \file compose.hpp
/// Composition of implicit models (seed 001, section 2.3): cascade,
/// parallel and feedback connections of two models as one implicit model.
///
/// With parts (A_i, B_i, C_i, D_i, b_i, c_i) and activations phi_i, the
/// result has the states x = (x_1, x_2), phi = (phi_1, phi_2) and the block
/// matrices below. Its A, B, C, D are `BlockOperator`s whose entries are the
/// parts' operators, shared, and products of them kept as
/// `ComposedOperator`s (B_2 C_1 is never formed): structured blocks stay
/// structured. A part whose A is a BlockOperator over a square partition
/// (and whose B and C conform to it, as NetworkBuilder and import_onnx
/// make) contributes its blocks, so a cascade of two feed-forward networks
/// is again strictly block lower triangular and solved by one block sweep.
///
/// - cascade (y_1 feeds the second model: u_2 = y_1):
///       A = [A_1 0; B_2 C_1 A_2],  B = [B_1; B_2 D_1],
///       C = [D_2 C_1  C_2],        D = D_2 D_1,
///       b = (b_1, b_2 + B_2 c_1),  c = c_2 + D_2 c_1.
///   A is block lower triangular with A_1 and A_2 on its diagonal, so
///   lambda_PF(|A|) = max(lambda_PF(|A_1|), lambda_PF(|A_2|)): the cascade
///   is well-posed when both parts are, and its certificate is theirs
///   (cascade_perron_bound).
/// - parallel (shared input, stacked outputs y = (y_1, y_2)):
///       A = diag(A_1, A_2),  B = [B_1; B_2],  C = diag(C_1, C_2),
///       D = [D_1; D_2],      b = (b_1, b_2),  c = (c_1, c_2).
/// - feedback (u_1 = u + y_2, u_2 = y_1, output y_1), for parts with D_1 = 0
///   or D_2 = 0 (no algebraic loop):
///       A = [A_1 + B_1 D_2 C_1   B_1 C_2; B_2 C_1   A_2 + B_2 D_1 C_2],
///       B = [B_1; B_2 D_1],  C = [C_1  D_1 C_2],  D = D_1,
///       b = (b_1 + B_1 (c_2 + D_2 c_1), b_2 + B_2 (c_1 + D_1 c_2)),
///       c = c_1 + D_1 c_2.
///   A has cycles through the loop: its well-posedness is analysed on the
///   result (analyse_well_posedness), not inherited.
///
/// State blocks keep their activations and take the names
/// `<prefix_1><name>` and `<prefix_2><name>`.
///
/// Thread safety: the functions are reentrant; the result shares the parts'
/// operators (immutable), so the parts may be used concurrently.

#include <string>

#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>

namespace tacit::inline v1 {

/// Names given to the state blocks of the two parts.
struct TACIT_EXPORT ComposeOptions {
  std::string first_prefix = "1.";
  std::string second_prefix = "2.";
};

/// y = second(first(u)). \throws InvalidArgument unless
/// first.outputs() == second.inputs().
template <class T>
TACIT_EXPORT Model<T> cascade(const Model<T> &first, const Model<T> &second,
                              const ComposeOptions &options = {});

/// y = (a(u), b(u)). \throws InvalidArgument unless a.inputs() == b.inputs().
template <class T>
TACIT_EXPORT Model<T> parallel(const Model<T> &a, const Model<T> &b,
                               const ComposeOptions &options = {});

/// y = y_1 with u_1 = u + y_2, u_2 = y_1. \throws InvalidArgument unless
/// loop.inputs() == forward.outputs() and loop.outputs() ==
/// forward.inputs(), or when both D matrices are nonzero (an algebraic
/// loop).
template <class T>
TACIT_EXPORT Model<T> feedback(const Model<T> &forward, const Model<T> &loop,
                               const ComposeOptions &options = {});

/// The certificate of a cascade (or a parallel composition) from its parts'
/// bounds: lambda_PF(|A|) = max(lambda_PF(|A_1|), lambda_PF(|A_2|)), so
/// [max of the lower bounds, max of the upper bounds] encloses it; blocks,
/// cyclic blocks and iterations add up, the status is the worse one.
TACIT_EXPORT PerronBound cascade_perron_bound(const PerronBound &first,
                                              const PerronBound &second);

} // namespace tacit::inline v1
