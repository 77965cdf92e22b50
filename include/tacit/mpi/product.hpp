#pragma once
/// \file product.hpp
/// Products with a distributed model's A or |A| by tacit's own CSR kernel,
/// also as a PETSc shell matrix (component tacit::mpi).
///
/// Each rank keeps its rows of A with the columns renumbered into a local
/// index space: the ghosts below the own range (the other ranks' states its
/// rows read), the own states, the ghosts above, all in increasing global
/// order. That map is increasing, so every row keeps its column order and
/// its sum is formed in the single-process order: the product is the same
/// bits as CsrMatrix::apply on the whole A, for any number of ranks. A
/// product moves the ghosts from their owners (a PETSc VecScatter), then runs
/// the CSR kernel on the own rows. On one rank there are no ghosts and the
/// product reads PETSc's vector in place.
///
/// The transposed product (A^T x or |A|^T x) runs the kernel's transposed
/// product on the own rows and adds the ghosts' parts to their owners
/// (reverse scatter): it agrees with the single-process one to rounding, not
/// bit for bit (the owners add the other ranks' parts in PETSc's order).
///
/// Thread safety: apply() and the shell's products are collective over the
/// model's communicator and use buffers of the object: one call at a time.

#include <memory>
#include <span>

#include <tacit/core/operator.hpp>
#include <tacit/mpi/mpi.hpp>

/// PETSc's matrix handle, as petscmat.h declares it (this header does not
/// need PETSc's headers; a program that calls PETSc on the shell includes
/// petscmat.h and links PETSc).
typedef struct _p_Mat *Mat;

namespace tacit::inline v1::mpi {

/// op(A) for a distributed model, op one of Mode::normal, Mode::abs (A or
/// |A|, the values made absolute on the fly) and their transposes.
class TACIT_EXPORT DistributedProduct {
public:
  /// Builds the local matrix and the communication plan. Collective.
  /// \throws InvalidArgument when the model exceeds PETSc's indices.
  explicit DistributedProduct(const DistributedModel &model);
  ~DistributedProduct();
  DistributedProduct(const DistributedProduct &) = delete;
  DistributedProduct &operator=(const DistributedProduct &) = delete;

  /// y = op(A) x on the own states: x and y have own_end() - own_begin()
  /// entries. `mode` is Mode::normal or Mode::abs (the same bits as the
  /// single-process CsrMatrix::apply), or their transposes (to rounding).
  /// Collective. \throws InvalidArgument on wrong sizes.
  void apply(Mode mode, std::span<const double> x, std::span<double> y);

  /// A PETSc MATSHELL (n x n, the state partition as its row and column
  /// layout) whose MatMult and MatMultTranspose are apply(mode) and
  /// apply(transpose of mode); `mode` Mode::normal or Mode::abs. Owned by
  /// this object (valid while it lives; one per mode, made on first use).
  /// Collective.
  Mat petsc(Mode mode);

  /// Ghost states of this rank (received per product).
  index_t ghosts() const noexcept;

  /// The own rows with local columns (own x (own + ghosts)), and the local
  /// index of the first own state (the number of ghosts below).
  const CsrMatrix<double> &local_matrix() const noexcept;
  index_t ghosts_below() const noexcept;

  /// Fills the ghost entries of a local vector (own + ghosts entries, the
  /// own ones at [ghosts_below, ghosts_below + own)) from their owners.
  /// Collective.
  void exchange(std::span<double> local);
  /// The reverse: adds the ghost entries of `local` (own + ghosts entries)
  /// into their owners' entries of `own` (own entries). Collective.
  void add_to_owners(std::span<double> local, std::span<double> own);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace tacit::inline v1::mpi
