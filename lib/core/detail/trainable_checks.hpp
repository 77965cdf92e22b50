#pragma once
// Argument checks shared by the Trainable implementations.

#include <span>
#include <string>
#include <vector>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/error.hpp>

namespace tacit::inline v1::detail {

/// \throws InvalidArgument unless v is op.rows() x k, x is op.cols() x k
/// (same k, ld >= cols) and grad has one span of each tensor's size.
template <class T>
void check_gradient_arguments(const LinearOperator<T> &op, ConstMatrixView<T> v,
                              ConstMatrixView<T> x, std::span<const std::span<T>> grad,
                              const std::vector<ParameterShape> &shapes) {
  const std::string who = "accumulate_gradient (" + op.kind() + " operator)";
  if (v.rows != op.rows() || x.rows != op.cols() || v.cols != x.cols || v.ld < v.cols ||
      x.ld < x.cols)
    throw InvalidArgument(who + ": v is " + std::to_string(v.rows) + " x " +
                          std::to_string(v.cols) + ", x is " + std::to_string(x.rows) +
                          " x " + std::to_string(x.cols) + ", the operator is " +
                          std::to_string(op.rows()) + " x " + std::to_string(op.cols()));
  if (grad.size() != shapes.size())
    throw InvalidArgument(who + ": " + std::to_string(grad.size()) +
                          " gradient tensors given, the operator has " +
                          std::to_string(shapes.size()));
  for (std::size_t t = 0; t < shapes.size(); ++t)
    if (static_cast<index_t>(grad[t].size()) != shapes[t].size())
      throw InvalidArgument(who + ": gradient tensor '" + shapes[t].name + "' has " +
                            std::to_string(grad[t].size()) + " values, expected " +
                            std::to_string(shapes[t].size()));
}

} // namespace tacit::inline v1::detail
