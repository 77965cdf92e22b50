// Products with the distributed A and |A| by tacit's CSR kernel
// (lib/mpi/product.cpp), directly and through the PETSc shell matrix, against
// the single-process CsrMatrix::apply on the whole A.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <petscmat.h>

#include <tacit/mpi/product.hpp>

#include "mpi/detail/ghosts.hpp"
#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

/// The own entries of a PETSc vector.
std::vector<double> own_entries(Vec v) {
  const PetscScalar *a = nullptr;
  PetscInt size = 0;
  VecGetLocalSize(v, &size);
  VecGetArrayRead(v, &a);
  std::vector<double> out(a, a + size);
  VecRestoreArrayRead(v, &a);
  return out;
}

} // namespace

TEST_CASE("the distributed products with A and |A| are the single-process bits, the "
          "transposed ones agree to rounding",
          "[mpi][product]") {
  for (const index_t n : {index_t(7), index_t(400), index_t(5000)}) {
    INFO("n = " << n);
    const auto model =
        test_model(n, 3, 2, 51 + static_cast<std::uint64_t>(n), 0.9, n > 1000 ? 16 : 5);
    const auto A = csr_view(model.A());
    const auto dm = mpi::distribute_model(model);
    const index_t r0 = dm.own_begin(), r1 = dm.own_end(), own = r1 - r0;
    mpi::DistributedProduct product(dm);
    if (ranks() == 1)
      REQUIRE(product.ghosts() == 0);
    // x with signs and magnitudes that make the summation order visible.
    std::vector<double> x(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i)
      x[i] = std::sin(1.0 + 3.7 * static_cast<double>(i)) * std::pow(10.0, i % 7 - 3);
    const std::vector<double> x_own(x.begin() + r0, x.begin() + r1);
    std::vector<double> ax(x), mag(static_cast<std::size_t>(n));
    for (double &v : ax)
      v = std::abs(v);
    A->apply(Mode::abs_transpose, 1.0, std::span<const double>(ax), 0.0,
             std::span<double>(mag));
    for (const Mode mode :
         {Mode::normal, Mode::abs, Mode::transpose, Mode::abs_transpose}) {
      INFO("mode " << static_cast<int>(mode));
      std::vector<double> whole(static_cast<std::size_t>(n)), mine(own);
      A->apply(mode, 1.0, std::span<const double>(x), 0.0, std::span<double>(whole));
      product.apply(mode, x_own, mine);
      // Through the shell matrix: MatMult and MatMultTranspose.
      const Mode base =
          mode == Mode::abs || mode == Mode::abs_transpose ? Mode::abs : Mode::normal;
      Mat S = product.petsc(base);
      Vec xv = nullptr, yv = nullptr;
      MatCreateVecs(S, &xv, &yv);
      PetscScalar *xa = nullptr;
      VecGetArray(xv, &xa);
      std::copy(x_own.begin(), x_own.end(), xa);
      VecRestoreArray(xv, &xa);
      REQUIRE((is_transposed(mode) ? MatMultTranspose(S, xv, yv) : MatMult(S, xv, yv)) ==
              0);
      const auto shell = own_entries(yv);
      VecDestroy(&xv);
      VecDestroy(&yv);
      REQUIRE(shell.size() == static_cast<std::size_t>(own));
      for (index_t i = 0; i < own; ++i) {
        const double ref = whole[r0 + i];
        if (!is_transposed(mode)) {
          REQUIRE(mine[i] == ref); // the single-process summation order
          REQUIRE(shell[i] == ref);
        } else {
          // |A|^T |x| bounds the rounding of any order of the sum.
          REQUIRE(std::abs(mine[i] - ref) <= 1e-14 * mag[r0 + i]);
          REQUIRE(shell[i] == mine[i]);
        }
      }
    }
  }
}

TEST_CASE("the ghosts and local columns by the bitmap equal those by the sort, and "
          "both match the pattern",
          "[mpi][product]") {
  // Sizes whose own ranges start and end inside 64-bit words and at their
  // boundaries (n = 128 on 2 ranks), and rows reading few or many columns.
  for (const index_t n :
       {index_t(7), index_t(128), index_t(131), index_t(400), index_t(5000)}) {
    for (const index_t per_row : {index_t(2), index_t(16)}) {
      INFO("n = " << n << ", " << per_row << " per row");
      const auto model = test_model(n, 3, 2, 7 + static_cast<std::uint64_t>(n), 0.9,
                                    std::min(per_row, n));
      const auto dm = mpi::distribute_model(model);
      const auto bitmap = mpi::detail::ghost_columns_bitmap(dm);
      const auto sorted = mpi::detail::ghost_columns_sorted(dm);
      REQUIRE(bitmap.ghosts == sorted.ghosts);
      REQUIRE(bitmap.below == sorted.below);
      REQUIRE(bitmap.local == sorted.local);
      // Independently: local column k names ghost k below, own state
      // k - below, ghost k - own above.
      const index_t r0 = dm.own_begin(), r1 = dm.own_end(), own = r1 - r0;
      const auto &L = dm.A.local;
      for (std::int64_t e = 0; e < L.nnz(); ++e) {
        const index_t c = L.column(e), k = bitmap.local[e];
        const index_t global = k < bitmap.below         ? bitmap.ghosts[k]
                               : k < bitmap.below + own ? r0 + (k - bitmap.below)
                                                        : bitmap.ghosts[k - own];
        REQUIRE(global == c);
      }
      for (std::size_t k = 0; k < bitmap.ghosts.size(); ++k) {
        REQUIRE((bitmap.ghosts[k] < r0 || bitmap.ghosts[k] >= r1));
        if (k > 0)
          REQUIRE(bitmap.ghosts[k - 1] < bitmap.ghosts[k]);
      }
      if (ranks() == 1)
        REQUIRE(bitmap.ghosts.empty());
    }
  }
}

TEST_CASE("a distributed product refuses vectors of the wrong size", "[mpi][product]") {
  const auto dm = mpi::distribute_model(test_model(50, 3, 2, 52));
  mpi::DistributedProduct product(dm);
  const index_t own = dm.own_end() - dm.own_begin();
  std::vector<double> x(static_cast<std::size_t>(own) + 1),
      y(static_cast<std::size_t>(own));
  REQUIRE_THROWS_AS(product.apply(Mode::abs, x, y), InvalidArgument);
  REQUIRE_THROWS_AS(product.petsc(Mode::transpose), InvalidArgument);
}
