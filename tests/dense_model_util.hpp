#pragma once
// Models built from dense row-major matrices, for the solver tests.

#include <tacit/core/model.hpp>

#include <memory>
#include <utility>
#include <vector>

namespace tacit::testutil {

/// CSR copy (in T) of an r x c dense row-major matrix.
template <class T>
std::shared_ptr<CsrMatrix<T>> csr(index_t r, index_t c, const std::vector<double> &a) {
  std::vector<T> v(a.begin(), a.end());
  return std::make_shared<CsrMatrix<T>>(CsrMatrix<T>::from_dense(r, c, v));
}

/// Model from dense matrices (C = I, no D, no output bias).
template <class T>
Model<T> dense_model(index_t n, index_t p, const std::vector<double> &A,
                     const std::vector<double> &B, std::vector<StateBlock> blocks,
                     const std::vector<double> &bx = {}) {
  std::vector<double> C(static_cast<std::size_t>(n * n), 0.0);
  for (index_t i = 0; i < n; ++i)
    C[i * n + i] = 1;
  std::vector<T> b(bx.begin(), bx.end());
  return Model<T>(csr<T>(n, n, A), csr<T>(n, p, B), csr<T>(n, n, C), nullptr, b, {},
                  std::move(blocks));
}

} // namespace tacit::testutil
