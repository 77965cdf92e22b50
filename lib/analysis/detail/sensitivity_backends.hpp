#pragma once
// Back-ends of the sensitivity operator: solves with I - |M| and its
// transpose (in place, many right-hand sides). (Gradients through the
// equilibrium solve their adjoint with tacit/solve/adjoint.hpp.)

#include <memory>

#include <tacit/analysis/sensitivity.hpp>

namespace tacit::inline v1::detail {

template <class T> class Resolvent {
public:
  virtual ~Resolvent() = default;
  /// In place: w <- (I - |M|)^-1 w, or (I - |M|)^-T w when `transposed`.
  virtual void solve(MatrixView<T> w, bool transposed, Execution exec,
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

} // namespace tacit::inline v1::detail
