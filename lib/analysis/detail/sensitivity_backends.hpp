#pragma once
// Back-ends of the sensitivity operator: solves with I - |M| and its
// transpose (in place, many right-hand sides), and the linearised transposed
// solve h = P (M^T h + c) used for gradients through the equilibrium.

#include <memory>

#include <tacit/analysis/sensitivity.hpp>

namespace tacit::inline v1::detail {

template <class T> class Resolvent {
public:
  virtual ~Resolvent() = default;
  /// In place: w <- (I - |M|)^-1 w, or (I - |M|)^-T w when `transposed`.
  virtual void solve(MatrixView<T> w, bool transposed, Execution exec,
                     SensitivitySolveStats &stats) const = 0;
  /// In place: with c = h on entry, h <- the solution of h = P .* (M^T h + c)
  /// (P entrywise, same shape as h, |P| <= 1).
  /// \throws Unsupported for a back-end that cannot (KLU).
  virtual void solve_linearised(MatrixView<T> h, ConstMatrixView<T> P, Execution exec,
                                SensitivitySolveStats &stats) const = 0;
  /// Bytes held (copies, factors, caches).
  virtual std::size_t bytes() const = 0;
  /// New values of M (same pattern). Updates `info` (certificate, reason).
  virtual void update(const OperatorPtr<T> &M, const SensitivityOptions &options,
                      SensitivityInfo &info) = 0;
};

struct ResolventChoice {
  SensitivityInfo info;
};

/// The back-end for S: options.method, or chosen automatically.
/// \throws InvalidArgument when lambda_PF(|M|) < 1 is not certified or the
/// requested method does not apply.
template <class T>
std::unique_ptr<Resolvent<T>> make_resolvent(const OperatorPtr<T> &M,
                                             const SensitivityOptions &options,
                                             ResolventChoice &choice);

/// A back-end able to solve_linearised: a sweep when M is block triangular,
/// else the certified iteration.
template <class T>
std::unique_ptr<Resolvent<T>>
make_linearised_resolvent(const OperatorPtr<T> &M, const SensitivityOptions &options);

} // namespace tacit::inline v1::detail
