#pragma once
// Collective error handling and PETSc helpers of the mpi component.

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include <mpi.h>
#include <petscmat.h>

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>

namespace tacit::inline v1::mpi::detail {

/// Marks an exception that every rank of the communicator threw.
struct OnEveryRank {
  virtual ~OnEveryRank() = default;
};

template <class E> struct Agreed final : E, OnEveryRank { using E::E; };

/// Runs f() on every rank. When f throws on some rank, every rank throws the
/// error of the lowest failing rank (same kind, its message naming the rank),
/// so that the ranks leave together instead of waiting for each other.
/// Returns f()'s result otherwise.
void agree(MPI_Comm comm, const std::exception *error);

template <class F> decltype(auto) collective(MPI_Comm comm, F &&f) {
  using R = decltype(f());
  if constexpr (std::is_void_v<R>) {
    try {
      f();
    } catch (const OnEveryRank &) {
      throw;
    } catch (const std::exception &e) {
      agree(comm, &e);
    }
    agree(comm, nullptr);
  } else {
    R result{};
    try {
      result = f();
    } catch (const OnEveryRank &) {
      throw;
    } catch (const std::exception &e) {
      agree(comm, &e);
    }
    agree(comm, nullptr);
    return result;
  }
}

/// Throws tacit::Error naming the PETSc call when code != 0.
void petsc_check(PetscErrorCode code, const char *call);
#define TACIT_PETSC(call) ::tacit::mpi::detail::petsc_check((call), #call)

/// A PETSc object destroyed at scope exit.
template <class H, PetscErrorCode (*Destroy)(H *)> class Handle {
public:
  Handle() = default;
  explicit Handle(H h) : h_(h) {}
  ~Handle() {
    if (h_)
      Destroy(&h_);
  }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  Handle(Handle &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Handle &operator=(Handle &&o) noexcept {
    if (this != &o) {
      if (h_)
        Destroy(&h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  H *out() { return &h_; }
  H get() const { return h_; }
  operator H() const { return h_; }

private:
  H h_ = nullptr;
};
using MatHandle = Handle<Mat, MatDestroy>;
using VecHandle = Handle<Vec, VecDestroy>;
using ISHandle = Handle<IS, ISDestroy>;
using ScatterHandle = Handle<VecScatter, VecScatterDestroy>;

/// A MatMPIAIJ from a rank's CSR rows (global columns): `local_cols` is this
/// rank's share of the column layout (the state partition for A and C).
/// Values made absolute when `absolute`.
MatHandle petsc_matrix(MPI_Comm comm, const CsrMatrix<double> &local, index_t global_rows,
                       index_t global_cols, index_t local_cols, bool absolute);

} // namespace tacit::inline v1::mpi::detail
