#pragma once
/// \file activation.hpp
/// Componentwise activations phi of x = phi(A x + B u + b).
///
/// Thread safety: Activation is a value; any number of threads may use one.

#include <string>
#include <string_view>

#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

enum class ActivationKind { relu, leaky_relu, tanh, sigmoid, identity };

/// A componentwise activation. `slope` is the negative-side slope of the
/// leaky ReLU (ignored otherwise). A value type: any number of threads may
/// use one object at the same time.
struct TACIT_EXPORT Activation {
  ActivationKind kind = ActivationKind::relu;
  double slope = 0.01;

  /// phi(s z) = s phi(z) for s >= 0: ReLU, leaky ReLU, identity. Required for
  /// diagonal rescaling.
  bool positively_homogeneous() const noexcept;
  /// Lipschitz constant of phi (1 for all but sigmoid: 1/4; leaky: max(1,|slope|)).
  double lipschitz() const noexcept;
  /// "relu", "leaky_relu", "tanh", "sigmoid", "identity".
  std::string name() const;
  /// Inverse of name(). \throws InvalidArgument for an unknown name.
  static Activation parse(std::string_view name, double slope = 0.01);

  template <class T> T operator()(T z) const noexcept;
  friend bool operator==(const Activation &, const Activation &) = default;
};

} // namespace tacit::inline v1
