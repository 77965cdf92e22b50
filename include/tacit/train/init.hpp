#pragma once
/// \file init.hpp
/// Fresh models with a seeded initialisation (the same bits on every
/// machine: own generator, no std distributions).
///
/// Thread safety: the functions are reentrant (each call seeds its own
/// generator).

#include <cstdint>
#include <span>
#include <string_view>

#include <tacit/core/export.hpp>
#include <tacit/core/model.hpp>

namespace tacit::inline v1 {

/// A multilayer perceptron: sizes = {inputs, hidden..., outputs}, dense
/// layers with `phi` between them (one state block per hidden layer, named
/// "h1", "h2", ...), built as a structured network (A strictly block lower
/// triangular). Weights and biases uniform in +-1/sqrt(fan_in) (PyTorch's
/// default for nn.Linear).
/// \throws InvalidArgument with fewer than two sizes or a size < 1.
template <class T>
TACIT_EXPORT Model<T> init_mlp(std::span<const index_t> sizes, std::uint64_t seed = 1,
                               Activation phi = {});

/// A truly implicit model with n states, p inputs and q outputs, ReLU: A a
/// random sparse CSR matrix (each entry present with probability `density`,
/// cycles included) projected onto ||A||_inf <= kappa, B (n x p) and C
/// (q x n) dense; values uniform in +-1/sqrt(fan_in), biases zero.
/// \throws InvalidArgument on sizes < 1, density outside (0, 1] or kappa
/// outside (0, 1).
template <class T>
TACIT_EXPORT Model<T> init_implicit(index_t n, index_t p, index_t q, double density,
                                    double kappa, std::uint64_t seed = 1);

/// "mlp:784,64,32,16,10" (ReLU; "mlp:20,12,6,5,phi=tanh" for another
/// activation) or "implicit:n=1000,p=784,q=10,density=0.01,kappa=0.95"
/// (n, p, q required; density default 0.01, kappa default 0.95).
/// \throws InvalidArgument naming what is wrong in `spec`.
template <class T>
TACIT_EXPORT Model<T> init_model(std::string_view spec, std::uint64_t seed = 1);

} // namespace tacit::inline v1
